"""Transparent huge pages (mm/huge_memory.c): the eligibility checks and placement.

Built now: thp_vma_allowable_order() (the sysfs ``enabled`` modes and the VMA's
MADV_HUGEPAGE / MADV_NOHUGEPAGE flags) and thp_get_unmapped_area_vmflags() (6.18
places anonymous mappings whose length is a multiple of PMD_SIZE on a PMD boundary).

Not modelled yet (the THP issue): the huge fault itself. create_huge_pmd() and
create_huge_pud() return VM_FAULT_FALLBACK, so an eligible fault takes the 4 KiB
path; vmsim never creates a huge PMD yet, so the huge-PMD handlers are unreachable
and raise if reached.
"""
from vmsim.mm.mm_types import (VM_FAULT_FALLBACK, VM_HUGEPAGE, VM_NOHUGEPAGE, VM_HUGETLB)

TVA_SMAPS, TVA_PAGEFAULT, TVA_KHUGEPAGED, TVA_FORCED_COLLAPSE = range(4)
PMD_ORDER = 9
PUD_ORDER = 18
HPAGE_PMD_SIZE = 1 << 21


def hugepage_enabled_mode(k) -> str:
    """Return the selected mode of /sys/kernel/mm/transparent_hugepage/enabled."""
    return k.sysfs["/sys/kernel/mm/transparent_hugepage/enabled"]


def thp_vma_allowable_order(vma, vm_flags: int, tva_type: int, order: int) -> bool:
    """thp_vma_allowable_order(): may this VMA get a THP of ``order`` here?

    Anonymous VMAs only (shmem_enabled=never in this profile; file THP is a later
    issue); PUD order is never allowed for anonymous memory.
    """
    if order != PMD_ORDER:
        return False
    if vm_flags & (VM_NOHUGEPAGE | VM_HUGETLB) or vma.vm_ops is not None:
        return False
    mode = hugepage_enabled_mode(vma.vm_mm.kernel)
    if mode == "always":
        pass
    elif mode == "madvise":
        if not vm_flags & VM_HUGEPAGE:
            return False
    else:
        return False
    haddr = vma.vm_start + ((-vma.vm_start) & (HPAGE_PMD_SIZE - 1))
    return haddr + HPAGE_PMD_SIZE <= vma.vm_end


def create_huge_pmd(vmf) -> int:
    """create_huge_pmd() -> do_huge_pmd_anonymous_page(): not modelled yet; fall back."""
    return VM_FAULT_FALLBACK


def create_huge_pud(vmf) -> int:
    """create_huge_pud(): anonymous memory has no PUD THP; fall back."""
    return VM_FAULT_FALLBACK


def _unreachable(*a, **kw):
    raise NotImplementedError("huge PMD/PUD mappings (THP) are not modelled")


wp_huge_pud = huge_pud_set_accessed = wp_huge_pmd = huge_pmd_set_accessed = _unreachable
do_huge_pmd_numa_page = zap_huge_pmd = __split_huge_pmd = _unreachable


def thp_get_unmapped_area_vmflags(mm, filp, addr: int, length: int, pgoff: int,
                                  flags: int, vm_flags: int) -> int:
    """thp_get_unmapped_area_vmflags(): try a PMD-aligned placement, else the plain one."""
    from vmsim.mm.mmap import mm_get_unmapped_area_vmflags
    ret = __thp_get_unmapped_area(mm, filp, addr, length, pgoff << 12, flags,
                                  HPAGE_PMD_SIZE, vm_flags)
    if ret:
        return ret
    return mm_get_unmapped_area_vmflags(mm, filp, addr, length, pgoff, flags, vm_flags)


def __thp_get_unmapped_area(mm, filp, addr, length, off, flags, size, vm_flags) -> int:
    """__thp_get_unmapped_area(): search len + size, then align the result."""
    from vmsim.mm.mmap import mm_get_unmapped_area_vmflags
    off_end = off + length
    off_align = (off + size - 1) & ~(size - 1)
    if off_end <= off_align or off_end - off_align < size:
        return 0
    len_pad = length + size
    ret = mm_get_unmapped_area_vmflags(mm, filp, addr, len_pad, off >> 12, flags, vm_flags)
    if ret < 0:
        return 0
    if ret == addr:
        return addr
    off_sub = (off - ret) & (size - 1)
    if not off_sub:          # MMF_TOPDOWN: the x86-64 default layout
        return ret + size
    return ret + off_sub
