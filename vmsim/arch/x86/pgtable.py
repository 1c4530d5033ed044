"""Page-table pages and the kernel's accessors (arch/x86/include/asm/pgtable*.h).

Table pages are frames from the page allocator; their 512 entries live in one
chunk-grown int64 pool, row ``mem_map.private[pfn]`` (the ptdesc). A "pointer to an
entry" (``pte_t *``, ``pmd_t *`` ...) is a flat index into the pool: row * 512 + index.
Entries are int64 (bit 63, NX, is the sign bit); see pgtable_types.

The P4D level is folded at runtime on 4-level paging (pgtable_l5_enabled() false):
p4d_offset() returns the pgd pointer itself, as in arch/x86/include/asm/pgtable.h.
"""
import numpy as np

from vmsim.arch.x86.pgtable_types import (
    _PAGE_PRESENT, _PAGE_RW, _PAGE_USER, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PSE,
    _PAGE_SPECIAL, _PAGE_PROTNONE, _PAGE_SOFT_DIRTY, _PAGE_UFFD_WP, PTE_PFN_MASK,
    PAGE_SHIFT)

PTRS_PER_TABLE = 512
_PFN_MASK = PTE_PFN_MASK


class PageTablePool:
    """The rows of 512 entries backing every page-table page, indexed via the PFN.

    One anonymous MAP_NORESERVE mapping sized for the worst case (every frame a table
    page) backs the pool, so rows never move: the host maps a page of it only when a
    row is written, and views of it stay valid while tables come and go.
    """

    def __init__(self, max_tables: int):
        import mmap as _mmap
        size = max(max_tables, 1) * PTRS_PER_TABLE * 8
        self._map = _mmap.mmap(-1, size, flags=_mmap.MAP_PRIVATE | _mmap.MAP_ANONYMOUS |
                               getattr(_mmap, "MAP_NORESERVE", 0x4000))
        self.arr = np.frombuffer(self._map, dtype=np.int64)
        self.mv = memoryview(self.arr)
        # The ptdesc of each table page, by row: its PFN and the PMD share count
        # (hugetlb). pmd_huge_pte (THP) is in mem_map: mm/pgtable_generic.py.
        self.slot_pfn = []
        self.pt_share_count = []
        self.free_slots = []
        self.used = 0
        self.max_tables = max_tables

    def _alloc_slot(self, pfn: int) -> int:
        if self.free_slots:
            slot = self.free_slots.pop()
            self.slot_pfn[slot] = pfn
            self.pt_share_count[slot] = 0
        else:
            if self.used == self.max_tables:
                raise MemoryError("page-table pool exhausted")
            slot = self.used
            self.used += 1
            self.slot_pfn.append(pfn)
            self.pt_share_count.append(0)
        return slot

    def _free_slot(self, slot: int):
        base = slot * PTRS_PER_TABLE
        self.arr[base:base + PTRS_PER_TABLE] = 0
        self.slot_pfn[slot] = 0
        self.free_slots.append(slot)

    def _alloc_slots(self, pfns):
        """_alloc_slot() of each of ``pfns`` in turn; returns their rows."""
        out = []
        free, slot_pfn, share = self.free_slots, self.slot_pfn, self.pt_share_count
        for pfn in pfns:
            if free:
                slot = free.pop()
                slot_pfn[slot] = pfn
                share[slot] = 0
                out.append(slot)
            else:
                out.append(self._alloc_slot(pfn))
        return out

    def _free_slots(self, slots, empty: bool = False):
        """_free_slot() of each of ``slots`` in turn (the rows zeroed in one store, or
        not at all when the caller knows them ``empty``: writing zeros would map
        host pages for rows never written)."""
        if len(slots) and not empty:
            self.arr.reshape(-1, PTRS_PER_TABLE)[slots] = 0
        slot_pfn = self.slot_pfn
        for slot in slots:
            slot_pfn[slot] = 0
        self.free_slots.extend(slots)

    def _nr_tables(self) -> int:
        return self.used - len(self.free_slots)


# --- entry tests (pgtable.h) --------------------------------------------------
def pte_none(pte: int) -> bool:
    """Return whether the entry is empty (pte_none: no bits but A/D ignored on x86)."""
    return pte == 0


def pte_present(pte: int) -> bool:
    return bool(pte & (_PAGE_PRESENT | _PAGE_PROTNONE))


def pte_protnone(pte: int) -> bool:
    return (pte & (_PAGE_PROTNONE | _PAGE_PRESENT)) == _PAGE_PROTNONE


def pte_write(pte: int) -> bool:
    return bool(pte & _PAGE_RW)


def pte_dirty(pte: int) -> bool:
    return bool(pte & _PAGE_DIRTY)


def pte_young(pte: int) -> bool:
    return bool(pte & _PAGE_ACCESSED)


def pte_special(pte: int) -> bool:
    return bool(pte & _PAGE_SPECIAL)


def pte_pfn(pte: int) -> int:
    return (pte & _PFN_MASK) >> PAGE_SHIFT


def pmd_none(pmd: int) -> bool:
    return pmd == 0


def pmd_present(pmd: int) -> bool:
    return bool(pmd & (_PAGE_PRESENT | _PAGE_PROTNONE | _PAGE_PSE))


def pmd_trans_huge(pmd: int) -> bool:
    """Return whether the PMD maps a huge page (PS bit set)."""
    return (pmd & (_PAGE_PSE | _PAGE_PRESENT)) == (_PAGE_PSE | _PAGE_PRESENT)


pud_none = p4d_none = pgd_none = pmd_none


def pud_trans_huge(pud: int) -> bool:
    return (pud & (_PAGE_PSE | _PAGE_PRESENT)) == (_PAGE_PSE | _PAGE_PRESENT)


def pmd_write(pmd: int) -> bool:
    return bool(pmd & _PAGE_RW)


pud_write = pmd_write


# --- entry constructors / modifiers --------------------------------------------
def pfn_pte(pfn: int, prot: int) -> int:
    """Return a pte mapping ``pfn`` with protection ``prot`` (pfn_pte)."""
    return (pfn << PAGE_SHIFT) | prot


def pte_mkyoung(pte: int) -> int:
    return pte | _PAGE_ACCESSED


def pte_mkold(pte: int) -> int:
    return pte & ~_PAGE_ACCESSED


def pte_mkdirty(pte: int) -> int:
    """pte_mkdirty(): x86 sets _PAGE_DIRTY and _PAGE_SOFT_DIRTY (0 in this profile)."""
    return pte | _PAGE_DIRTY | _PAGE_SOFT_DIRTY


def pte_mkclean(pte: int) -> int:
    return pte & ~_PAGE_DIRTY


def pte_mkwrite(pte: int, vma=None) -> int:
    """pte_mkwrite(): shadow-stack VMAs are not modelled, so just set RW."""
    return pte | _PAGE_RW


def pte_wrprotect(pte: int) -> int:
    return pte & ~_PAGE_RW


def pte_mkspecial(pte: int) -> int:
    return pte | _PAGE_SPECIAL


def pte_modify(pte: int, newprot: int) -> int:
    """pte_modify(): keep PFN, A, D, special, soft-dirty, uffd-wp; take the rest from newprot."""
    _PAGE_CHG_MASK = (_PFN_MASK | _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_SPECIAL |
                      _PAGE_SOFT_DIRTY | _PAGE_UFFD_WP | 0x18)   # PCD|PWT
    return (pte & _PAGE_CHG_MASK) | (newprot & ~_PAGE_CHG_MASK)


def _mk_table_entry(pfn: int) -> int:
    """The entry a p*d_populate() writes for a user table: _PAGE_TABLE | pfn."""
    return (pfn << PAGE_SHIFT) | _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY


def _mk_kernel_table_entry(pfn: int) -> int:
    """_KERNPG_TABLE | pfn, as init_mm's tables are populated."""
    return (pfn << PAGE_SHIFT) | _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY


def pgprot_val(prot: int) -> int:
    return prot


# --- walking: the *_offset accessors ---------------------------------------------
# A pointer is a flat pool index. vmsim's accessors take the mm (for the pool and
# mem_map) where the kernel's take only the pointer.
def pgd_index(mm, addr: int) -> int:
    return (addr >> mm.kernel.pgdir_shift) & 511


def pgd_offset(mm, addr: int) -> int:
    """Return the pointer to the PGD entry of ``addr`` (pgd_offset())."""
    return mm.pgd_ptr + ((addr >> mm.kernel.pgdir_shift) & 511)


def _table_of(k, entry: int) -> int:
    return k.mem.private[(entry & _PFN_MASK) >> PAGE_SHIFT] * PTRS_PER_TABLE


def p4d_offset(mm, pgdp: int, addr: int) -> int:
    """p4d_offset(): with 4-level paging the P4D is folded into the PGD (same pointer)."""
    k = mm.kernel
    if not k.la57:
        return pgdp
    return _table_of(k, k.ptpool.mv[pgdp]) + ((addr >> 39) & 511)


def pud_offset(mm, p4dp: int, addr: int) -> int:
    k = mm.kernel
    return k.mem.private[(k.ptpool.mv[p4dp] & _PFN_MASK) >> PAGE_SHIFT] * PTRS_PER_TABLE + ((addr >> 30) & 511)


def pmd_offset(mm, pudp: int, addr: int) -> int:
    k = mm.kernel
    return k.mem.private[(k.ptpool.mv[pudp] & _PFN_MASK) >> PAGE_SHIFT] * PTRS_PER_TABLE + ((addr >> 21) & 511)


def pte_offset_map(mm, pmdp: int, addr: int) -> int:
    """Return the pointer to the PTE of ``addr`` (pte_offset_map(); no kmap on 64-bit)."""
    k = mm.kernel
    return _table_of(k, k.ptpool.mv[pmdp]) + ((addr >> 12) & 511)


def pmd_pgtable(mm, pmd: int) -> int:
    """Return the PFN of the PTE table a PMD entry points to (pmd_pgtable())."""
    return (pmd & _PFN_MASK) >> PAGE_SHIFT


def _ptr_table_pfn(mm, ptr: int) -> int:
    """Return the PFN of the table page holding entry pointer ``ptr``."""
    return mm.kernel.ptpool.slot_pfn[ptr // PTRS_PER_TABLE]


def ptep_get(mm, ptep: int) -> int:
    return mm.kernel.ptpool.mv[ptep]


# --- writing entries -------------------------------------------------------------
# Every change of a page-table entry goes through one of these, named as the 6.18
# function that makes it, so that the tracer shows it with the entry before and after.
def set_pte_at(mm, addr: int, ptep: int, pte: int):
    """set_pte_at(): store a PTE (page_table_check_pte_set is done by the checker)."""
    mm.kernel.ptpool.mv[ptep] = pte


def set_ptes(mm, addr: int, ptep: int, pte: int, nr: int):
    """set_ptes() (include/linux/pgtable.h): map nr consecutive pages starting at pte."""
    mv = mm.kernel.ptpool.mv
    if nr == 1:
        mv[ptep] = pte
        return
    if nr >= 16:                      # a large folio: one vector store
        import numpy as np
        p = pte - (1 << 64) if pte >= 1 << 63 else pte
        mm.kernel.ptpool.arr[ptep:ptep + nr] = p + (np.arange(nr, dtype=np.int64) << PAGE_SHIFT)
        return
    for i in range(nr):
        mv[ptep + i] = pte + (i << PAGE_SHIFT)


def ptep_get_and_clear(mm, addr: int, ptep: int) -> int:
    """ptep_get_and_clear(): atomically read and clear (native_ptep_get_and_clear)."""
    mv = mm.kernel.ptpool.mv
    pte = mv[ptep]
    mv[ptep] = 0
    return pte


def ptep_get_and_clear_full(mm, addr: int, ptep: int, full: int) -> int:
    """ptep_get_and_clear_full() (arch/x86/include/asm/pgtable.h): as
    ptep_get_and_clear; ``full`` (the whole mm goes) only skips the atomic op."""
    mv = mm.kernel.ptpool.mv
    pte = mv[ptep]
    mv[ptep] = 0
    return pte


def get_and_clear_full_ptes(mm, addr: int, ptep: int, nr: int, full: int) -> int:
    """get_and_clear_full_ptes() (include/linux/pgtable.h): clear nr PTEs; return the
    first with the dirty and young bits of all of them."""
    mv = mm.kernel.ptpool.mv
    pte = mv[ptep]
    mv[ptep] = 0
    for i in range(1, nr):
        pte |= mv[ptep + i] & (_PAGE_DIRTY | _PAGE_ACCESSED)
        mv[ptep + i] = 0
    return pte


def clear_full_ptes(mm, addr: int, ptep: int, nr: int, full: int):
    """clear_full_ptes() (include/linux/pgtable.h): clear nr PTEs, A/D not needed."""
    mv = mm.kernel.ptpool.mv
    for i in range(nr):
        mv[ptep + i] = 0


def pte_clear_not_present_full(mm, addr: int, ptep: int, full: int):
    """pte_clear_not_present_full() (include/linux/pgtable.h): pte_clear of a
    not-present entry (a PTE marker)."""
    mm.kernel.ptpool.mv[ptep] = 0


def clear_not_present_full_ptes(mm, addr: int, ptep: int, nr: int, full: int):
    """clear_not_present_full_ptes() (include/linux/pgtable.h): nr not-present PTEs."""
    mv = mm.kernel.ptpool.mv
    for i in range(nr):
        mv[ptep + i] = 0


def get_and_clear_ptes(mm, addr: int, ptep: int, nr: int) -> int:
    """get_and_clear_ptes() (include/linux/pgtable.h): get_and_clear_full_ptes, not full."""
    return get_and_clear_full_ptes(mm, addr, ptep, nr, 0)


def ptep_set_wrprotect(mm, addr: int, ptep: int):
    """ptep_set_wrprotect(): clear RW (clear_bit(_PAGE_BIT_RW))."""
    mv = mm.kernel.ptpool.mv
    mv[ptep] = mv[ptep] & ~_PAGE_RW


def wrprotect_ptes(mm, addr: int, ptep: int, nr: int):
    """wrprotect_ptes() (include/linux/pgtable.h): ptep_set_wrprotect on nr PTEs."""
    mv = mm.kernel.ptpool.mv
    for i in range(nr):
        mv[ptep + i] = mv[ptep + i] & ~_PAGE_RW


def modify_prot_commit_ptes(vma, addr: int, ptep: int, old_pte: int, pte: int, nr: int):
    """modify_prot_commit_ptes() (include/linux/pgtable.h): mprotect's new PTEs
    (ptep_modify_prot_commit -> set_pte_at for each)."""
    mv = vma.vm_mm.kernel.ptpool.mv
    for i in range(nr):
        mv[ptep + i] = pte + (i << PAGE_SHIFT)


CYDP_CLEAR_YOUNG = 1 << 0          # include/linux/mm_types.h
CYDP_CLEAR_DIRTY = 1 << 1


def clear_young_dirty_ptes(vma, addr: int, ptep: int, nr: int, flags: int):
    """clear_young_dirty_ptes() (include/linux/pgtable.h, the generic one x86 uses)."""
    mm = vma.vm_mm
    for i in range(nr):
        if flags == CYDP_CLEAR_YOUNG:
            ptep_test_and_clear_young(vma, addr, ptep + i)
        else:
            pte = ptep_get_and_clear(mm, addr, ptep + i)
            if flags & CYDP_CLEAR_YOUNG:
                pte = pte_mkold(pte)
            if flags & CYDP_CLEAR_DIRTY:
                pte = pte_mkclean(pte)
            set_pte_at(mm, addr, ptep + i, pte)
        addr += 1 << PAGE_SHIFT


# The upper levels (arch/x86/include/asm/pgalloc.h, pgtable.h). The kernel's take the
# entry pointer only; vmsim's also take the mm, whose pool the pointer indexes.
def pmd_populate(mm, pmdp: int, pfn: int):
    """pmd_populate(): point an empty PMD at the PTE table ``pfn`` (_PAGE_TABLE)."""
    mm.kernel.ptpool.mv[pmdp] = _mk_table_entry(pfn)


def pud_populate(mm, pudp: int, pfn: int):
    """pud_populate(): point an empty PUD at the PMD table ``pfn``."""
    mm.kernel.ptpool.mv[pudp] = _mk_table_entry(pfn)


def p4d_populate(mm, p4dp: int, pfn: int):
    """p4d_populate(): point an empty P4D (the PGD entry on 4-level) at a PUD table."""
    mm.kernel.ptpool.mv[p4dp] = _mk_table_entry(pfn)


def pgd_populate(mm, pgdp: int, pfn: int):
    """pgd_populate(): point an empty PGD entry at a P4D table (5-level only)."""
    mm.kernel.ptpool.mv[pgdp] = _mk_table_entry(pfn)


def pmd_clear(mm, pmdp: int):
    """pmd_clear(): native_pmd_clear."""
    mm.kernel.ptpool.mv[pmdp] = 0


def pud_clear(mm, pudp: int):
    mm.kernel.ptpool.mv[pudp] = 0


def p4d_clear(mm, p4dp: int):
    mm.kernel.ptpool.mv[p4dp] = 0


def pgd_clear(mm, pgdp: int):
    mm.kernel.ptpool.mv[pgdp] = 0


def clone_pgd_range(mm, dst: int, src: int, count: int):
    """clone_pgd_range() (arch/x86/include/asm/pgtable.h): copy count PGD entries."""
    mv = mm.kernel.ptpool.mv
    for i in range(count):
        mv[dst + i] = mv[src + i]


def ptep_test_and_clear_young(vma, addr: int, ptep: int) -> bool:
    mv = vma.vm_mm.kernel.ptpool.mv
    pte = mv[ptep]
    if pte & _PAGE_ACCESSED:
        mv[ptep] = pte & ~_PAGE_ACCESSED
        return True
    return False


def ptep_set_access_flags(vma, addr: int, ptep: int, entry: int, dirty: int) -> bool:
    """ptep_set_access_flags() (arch/x86/mm/pgtable.c): return whether the entry differs,
    storing it only when ``dirty`` (a write fault); a read fault leaves Accessed to the
    CPU's walk."""
    mv = vma.vm_mm.kernel.ptpool.mv
    changed = mv[ptep] != entry
    if changed and dirty:
        mv[ptep] = entry
    return changed


__all__ = [n for n in dir() if not n.startswith("__") and n not in ("np",)]
