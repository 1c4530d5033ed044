"""mincore(2) (mm/mincore.c).

sys_mincore -> do_mincore per VMA (at most PAGE_SIZE vector bytes per round) ->
walk_page_range with mincore_pte_range / mincore_unmapped_range: a page is resident
(1) when its PTE is present; a page without a PTE counts as resident in a file or
shmem VMA when the page cache holds it (mincore_page), and not in an anon VMA.
No swap entries exist here (no swap device). The kernel copies each round to the
user vector before failing with -ENOMEM at an unmapped page; vmsim returns only the
errno then.
"""
import errno

from vmsim.arch.x86 import pgtable_types as T
from vmsim.arch.x86.pgtable import pte_offset_map
from vmsim.mm.mm_types import VM_HUGETLB, vma_is_anonymous, linear_page_index
from vmsim.mm.swapops import pte_none_mostly
from vmsim.mm.page_flags import PG_uptodate
from vmsim.mm.pagewalk import walk_page_range
from vmsim.mm.filemap import filemap_get_entry
from vmsim.mm._xarray import xa_is_value

_P = T._PAGE_PRESENT
_PROTNONE = T._PAGE_PROTNONE


def mincore_page(k, mapping, index: int) -> int:
    """mincore_page(): 1 if the page cache holds an uptodate folio at index; a shadow
    entry is not resident (shmem's would be a swap entry: mincore_swap; no swap here)."""
    folio = filemap_get_entry(mapping, index)
    if folio is None:
        return 0
    if xa_is_value(folio):
        return 0
    return 1 if k.mem.flags[folio] & PG_uptodate else 0


def __mincore_unmapped_range(vma, addr: int, end: int, vec: bytearray, off: int):
    """__mincore_unmapped_range(): page-cache residency for file VMAs, 0 for anon."""
    nr = (end - addr) >> 12
    if vma.vm_file is not None:
        k = vma.vm_mm.kernel
        mapping = vma.vm_file.f_mapping
        pgoff = linear_page_index(vma, addr)
        for i in range(nr):
            vec[off + i] = mincore_page(k, mapping, pgoff + i)
    else:
        for i in range(nr):
            vec[off + i] = 0


def mincore_pte_range(vma, pmdp: int, addr: int, end: int, vec: bytearray, base: int) -> int:
    """mincore_pte_range(): 1 for present PTEs, the page cache for none PTEs."""
    mm = vma.vm_mm
    pool = mm.kernel.ptpool.mv
    if pool[pmdp] & T._PAGE_PSE:
        for i in range((end - addr) >> 12):        # a huge PMD maps every page
            vec[((addr - base) >> 12) + i] = 1
        return 0
    ptep = pte_offset_map(mm, pmdp, addr)
    while addr != end:
        pte = pool[ptep]
        off = (addr - base) >> 12
        if pte_none_mostly(pte):
            # We need to do cache lookup too for pte markers.
            __mincore_unmapped_range(vma, addr, addr + 4096, vec, off)
        elif pte & (_P | _PROTNONE):
            vec[off] = 1
        else:
            raise NotImplementedError("swap entries are not modelled")
        addr += 4096
        ptep += 1
    return 0


def can_do_mincore(vma) -> bool:
    """can_do_mincore(): anon, or a file the caller could open for writing (root: yes)."""
    if vma_is_anonymous(vma):
        return True
    return vma.vm_file is not None


def do_mincore(mm, addr: int, pages: int, vec: bytearray):
    """do_mincore(): fill vec for the part of [addr, addr + pages) in one VMA; returns
    the number of pages done, or -ENOMEM when addr is not mapped."""
    vma = mm.vma_lookup(addr)
    if vma is None:
        return -errno.ENOMEM
    end = min(vma.vm_end, addr + (pages << 12))
    n = (end - addr + 0xFFF) >> 12
    if not can_do_mincore(vma):
        for i in range(n):
            vec[i] = 1
        return n
    if vma.vm_flags & VM_HUGETLB:
        from vmsim.mm.hugetlb import mincore_hugetlb_range
        mincore_hugetlb_range(vma, addr, end, vec, addr)
        return (end - addr) >> 12
    walk_page_range(mm, addr, end,
                    pmd_entry=lambda pmdp, a, e: mincore_pte_range(vma, pmdp, a, e, vec, addr),
                    pte_hole=lambda a, e: __mincore_unmapped_range(vma, a, e, vec, (a - addr) >> 12))
    return (end - addr) >> 12


def _do_mincore_syscall(mm, start: int, length: int):
    """sys_mincore(): bytes (one per page, bit 0 = resident) or -errno."""
    if start & 0xFFF:
        return -errno.EINVAL
    # access_ok(start, len): the range must lie below TASK_SIZE_MAX.
    if length > mm.kernel.task_size_max or start > mm.kernel.task_size_max - length:
        return -errno.ENOMEM
    pages = (length >> 12) + (1 if length & 0xFFF else 0)
    out = bytearray()
    while pages:
        tmp = bytearray(min(pages, 4096))
        ret = do_mincore(mm, start, min(pages, 4096), tmp)
        if ret <= 0:
            return ret
        out += tmp[:ret]
        pages -= ret
        start += ret << 12
    return bytes(out)
