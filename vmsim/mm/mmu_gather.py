"""The mmu_gather: batching pages and tables to free until the TLB is flushed
(mm/mmu_gather.c, include/asm-generic/tlb.h).

Pages unmapped by a zap keep a reference held by the gather until tlb_flush_mmu()
has flushed the gathered range; only then are they freed (tlb_flush_mmu_free ->
free_pages_and_swap_cache -> folios_put). Page-table pages go the same way
(tlb_remove_table). Batch sizes are the kernel's: an embedded bundle of
MMU_GATHER_BUNDLE entries plus up to MAX_GATHER_BATCH_COUNT batches of
MAX_GATHER_BATCH; when they are full the zap forces a flush.
"""
from vmsim.arch.x86.mm.tlb import flush_tlb_mm_range, TLB_FLUSH_ALL

MMU_GATHER_BUNDLE = 8
MAX_GATHER_BATCH = (4096 - 16) // 8
MAX_GATHER_BATCH_COUNT = 10000 // MAX_GATHER_BATCH
GATHER_LIMIT = MMU_GATHER_BUNDLE + MAX_GATHER_BATCH_COUNT * MAX_GATHER_BATCH


class mmu_gather:
    """struct mmu_gather."""
    __slots__ = ("mm", "fullmm", "need_flush_all", "freed_tables", "cleared_ptes",
                 "cleared_pmds", "cleared_puds", "cleared_p4ds", "start", "end",
                 "pages", "tables", "page_size")

    def __init__(self, mm, fullmm=False):
        self.mm = mm
        self.fullmm = fullmm
        self.pages = []
        self.tables = []
        self.page_size = 4096
        self.__tlb_reset_range()

    def __tlb_reset_range(self):
        if self.fullmm:
            self.start, self.end = 0, TLB_FLUSH_ALL
        else:
            self.start, self.end = 1 << 64, 0
        self.freed_tables = False
        self.cleared_ptes = self.cleared_pmds = self.cleared_puds = self.cleared_p4ds = False
        self.need_flush_all = False

    def reset_range(self):
        self.__tlb_reset_range()


def tlb_gather_mmu(mm) -> mmu_gather:
    """tlb_gather_mmu(): start gathering for a range unmap."""
    return mmu_gather(mm, False)


def tlb_gather_mmu_fullmm(mm) -> mmu_gather:
    """tlb_gather_mmu_fullmm(): gathering for exit_mmap (the whole mm goes)."""
    return mmu_gather(mm, True)


def __tlb_adjust_range(tlb, address: int, size: int):
    if not tlb.fullmm:
        tlb.start = min(tlb.start, address)
        tlb.end = max(tlb.end, address + size)


def tlb_remove_tlb_entry(tlb, ptep: int, address: int):
    """tlb_remove_tlb_entry(): widen the range to flush by one page."""
    __tlb_adjust_range(tlb, address, 4096)
    tlb.cleared_ptes = True


def __tlb_remove_folio_pages(tlb, pfn: int, nr: int = 1) -> bool:
    """__tlb_remove_folio_pages(): gather a page; return True when the batch is full."""
    tlb.pages.append(pfn)
    return len(tlb.pages) >= GATHER_LIMIT


def pte_free_tlb(tlb, table_pfn: int, address: int):
    """pte_free_tlb(): free a PTE table after the flush (tlb_remove_table)."""
    __tlb_adjust_range(tlb, address, 4096)
    tlb.freed_tables = True
    tlb.cleared_pmds = True
    tlb.tables.append(table_pfn)


def pmd_free_tlb(tlb, table_pfn: int, address: int):
    __tlb_adjust_range(tlb, address, 4096)
    tlb.freed_tables = True
    tlb.cleared_puds = True
    tlb.tables.append(table_pfn)


def pud_free_tlb(tlb, table_pfn: int, address: int):
    __tlb_adjust_range(tlb, address, 4096)
    tlb.freed_tables = True
    tlb.cleared_p4ds = True
    tlb.tables.append(table_pfn)


p4d_free_tlb = pud_free_tlb


def tlb_flush_mmu_tlbonly(tlb):
    """tlb_flush_mmu_tlbonly(): flush the gathered range, if any, and reset it."""
    if not (tlb.fullmm or tlb.end > tlb.start):
        return
    if tlb.fullmm:
        flush_tlb_mm_range(tlb.mm, 0, TLB_FLUSH_ALL, 12, tlb.freed_tables)
    else:
        flush_tlb_mm_range(tlb.mm, tlb.start, tlb.end, 12, tlb.freed_tables)
    tlb.reset_range()


def tlb_flush_mmu_free(tlb):
    """tlb_flush_mmu_free(): free the gathered tables and pages."""
    from vmsim.arch.x86.mm.pgtable import pagetable_free
    from vmsim.mm.swap import folios_put
    k = tlb.mm.kernel
    tables, tlb.tables = tlb.tables, []
    for pfn in tables:
        pagetable_free(k, pfn)
    pages, tlb.pages = tlb.pages, []
    folios_put(k, pages)


def tlb_flush_mmu(tlb):
    """tlb_flush_mmu(): flush the TLB, then free what was gathered."""
    tlb_flush_mmu_tlbonly(tlb)
    tlb_flush_mmu_free(tlb)


def tlb_finish_mmu(tlb):
    """tlb_finish_mmu(): the final flush and free."""
    tlb_flush_mmu(tlb)


def gather_refs(k) -> dict:
    """Return {pfn: references held by live gathers} (always empty between syscalls)."""
    return {}
