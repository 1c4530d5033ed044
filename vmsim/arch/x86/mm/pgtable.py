"""Allocating and freeing page-table pages (arch/x86/mm/pgtable.c, asm/pgalloc.h,
include/linux/mm.h pagetable_alloc / pagetable_*_ctor).

Every user table page is a frame from the buddy allocator (GFP_PGTABLE_USER),
accounted in NR_PAGETABLE (nr_page_table_pages, meminfo PageTables) by its ctor; its
entries are a row of the table pool. PTI is off in the 6.18 profile, so the PGD is a
single page (PGD_ALLOCATION_ORDER 0).
"""
from vmsim.mm import vmstat
from vmsim.mm.page_alloc import GFP_PGTABLE_USER
from vmsim.mm.page_flags import PGTY_table

PGD_ALLOCATION_ORDER = 0
KERNEL_PGD_BOUNDARY = 256


def pagetable_alloc(k) -> int:
    """pagetable_alloc() + __pagetable_ctor(): a zeroed, accounted table page, or -1."""
    pfn = k.page_alloc.alloc_pages(GFP_PGTABLE_USER, 0, k._current_cpu())
    if pfn < 0:
        return -1
    k.mem.private[pfn] = k.ptpool._alloc_slot(pfn)
    k.mem.flags[pfn] = PGTY_table
    k.vmstat[vmstat.NR_PAGE_TABLE_PAGES] += 1
    return pfn


def pagetable_free(k, pfn: int):
    """pagetable_dtor_free(): unaccount and return a table page."""
    mem = k.mem
    k.ptpool._free_slot(mem.private[pfn])
    mem.private[pfn] = 0
    mem.flags[pfn] = 0
    k.vmstat[vmstat.NR_PAGE_TABLE_PAGES] -= 1
    mem.refcount[pfn] = 0
    k.page_alloc.free_frozen_pages(pfn, 0, k._current_cpu())


def pte_alloc_one(mm) -> int:
    """pte_alloc_one(): a PTE table page for ``mm``."""
    return pagetable_alloc(mm.kernel)


def pmd_alloc_one(mm) -> int:
    """pmd_alloc_one() (asm-generic/pgalloc.h __pmd_alloc_one): a PMD table page;
    pagetable_pmd_ctor -> pmd_ptlock_init() starts it with no deposited table
    (pmd_huge_pte NULL, its lru.prev word: mm/pgtable_generic.py)."""
    pfn = pagetable_alloc(mm.kernel)
    if pfn >= 0:
        mm.kernel.mem.lru_prev[pfn] = 0
    return pfn


pud_alloc_one = p4d_alloc_one = pte_alloc_one


def pgd_ctor(mm, pgd_ptr: int):
    """pgd_ctor(): share the kernel half with init_mm (clone_pgd_range)."""
    from vmsim.arch.x86.pgtable import clone_pgd_range
    src = mm.kernel.init_mm.pgd_ptr
    clone_pgd_range(mm, pgd_ptr + KERNEL_PGD_BOUNDARY, src + KERNEL_PGD_BOUNDARY,
                    512 - KERNEL_PGD_BOUNDARY)


def pgd_alloc(mm) -> int:
    """pgd_alloc(): the mm's PGD page with the kernel half cloned; returns its PFN or -1."""
    k = mm.kernel
    pfn = pagetable_alloc(k)          # __pgd_alloc -> pagetable_pgd_ctor
    if pfn < 0:
        return -1
    mm.pgd = pfn
    mm.pgd_ptr = k.mem.private[pfn] * 512
    pgd_ctor(mm, mm.pgd_ptr)
    return pfn


def pgd_free(mm):
    """pgd_free(): give back the PGD page."""
    if mm.pgd >= 0:
        pagetable_free(mm.kernel, mm.pgd)
        mm.pgd = -1
