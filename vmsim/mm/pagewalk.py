"""Generic page-table walk (mm/pagewalk.c walk_page_range), reduced to what
madvise, mlock and mincore use: a ->pmd_entry callback for every populated PMD
entry and a ->pte_hole callback for ranges without a table.

The kernel's mm_walk_ops carry many more hooks (pte_entry, hugetlb_entry,
test_walk ...); callers here pass plain functions. Huge PMDs are handed to
->pmd_entry like any other entry (vmsim does not create them yet).
"""
from vmsim.arch.x86 import pgtable_types as T
from vmsim.arch.x86.pgtable import pgd_offset, p4d_offset, pud_offset, pmd_offset

_U64 = (1 << 64) - 1


def _addr_end(addr: int, end: int, size: int) -> int:
    b = ((addr + size) & ~(size - 1)) & _U64
    return b if ((b - 1) & _U64) < ((end - 1) & _U64) else end


def walk_page_range(mm, start: int, end: int, pmd_entry=None, pte_hole=None) -> int:
    """walk_page_range(): call pmd_entry(pmdp, addr, next) for each PMD entry that is
    not none, pte_hole(addr, next) for every hole; stop at a non-zero return."""
    k = mm.kernel
    pool = k.ptpool.mv
    addr = start
    shift = k.pgdir_shift
    pgdp = pgd_offset(mm, addr)
    while addr < end:
        nxt = _addr_end(addr, end, 1 << shift)
        if not pool[pgdp]:
            err = pte_hole(addr, nxt) if pte_hole else 0
        else:
            err = _walk_p4d(mm, pgdp, addr, nxt, pmd_entry, pte_hole)
        if err:
            return err
        addr = nxt
        pgdp += 1
    return 0


def _walk_p4d(mm, pgdp, addr, end, pmd_entry, pte_hole):
    k = mm.kernel
    if not k.la57:
        return _walk_pud(mm, pgdp, addr, end, pmd_entry, pte_hole)
    pool = k.ptpool.mv
    p4dp = p4d_offset(mm, pgdp, addr)
    while addr < end:
        nxt = _addr_end(addr, end, 1 << 39)
        if not pool[p4dp]:
            err = pte_hole(addr, nxt) if pte_hole else 0
        else:
            err = _walk_pud(mm, p4dp, addr, nxt, pmd_entry, pte_hole)
        if err:
            return err
        addr = nxt
        p4dp += 1
    return 0


def _walk_pud(mm, p4dp, addr, end, pmd_entry, pte_hole):
    pool = mm.kernel.ptpool.mv
    pudp = pud_offset(mm, p4dp, addr)
    while addr < end:
        nxt = _addr_end(addr, end, T.PUD_SIZE)
        if not pool[pudp]:
            err = pte_hole(addr, nxt) if pte_hole else 0
        else:
            err = _walk_pmd(mm, pudp, addr, nxt, pmd_entry, pte_hole)
        if err:
            return err
        addr = nxt
        pudp += 1
    return 0


def _walk_pmd(mm, pudp, addr, end, pmd_entry, pte_hole):
    pool = mm.kernel.ptpool.mv
    pmdp = pmd_offset(mm, pudp, addr)
    while addr < end:
        nxt = _addr_end(addr, end, T.PMD_SIZE)
        if not pool[pmdp]:
            err = pte_hole(addr, nxt) if pte_hole else 0
        else:
            err = pmd_entry(pmdp, addr, nxt) if pmd_entry else 0
        if err:
            return err
        addr = nxt
        pmdp += 1
    return 0
