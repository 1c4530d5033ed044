"""get_user_pages and populate (mm/gup.c).

MAP_POPULATE, mlock and MADV_POPULATE_* fault pages in through __get_user_pages():
a software walk (follow_page_mask) and, where it finds no usable page, faultin_page()
-> handle_mm_fault() with regs == NULL, which mm_account_fault() still counts in the
task's min_flt (6.18 counts before its regs check).
"""
import errno

from vmsim.arch.x86 import pgtable_types as T
from vmsim.mm.mm_types import (VM_WRITE, VM_SHARED, VM_READ, VM_EXEC, VM_IO, VM_PFNMAP,
                               VM_LOCKONFAULT, VM_MAYWRITE, VM_HUGETLB, FAULT_FLAG_WRITE,
                               FAULT_FLAG_REMOTE, FAULT_FLAG_UNSHARE, FAULT_FLAG_ALLOW_RETRY,
                               FAULT_FLAG_KILLABLE, VM_FAULT_ERROR, VM_FAULT_OOM,
                               VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV, VM_FAULT_HWPOISON)

FOLL_WRITE = 0x01
FOLL_GET = 0x02
FOLL_DUMP = 0x04
FOLL_FORCE = 0x08
FOLL_NOWAIT = 0x20
FOLL_NOFAULT = 0x80
FOLL_HWPOISON = 0x100
FOLL_ANON = 0x200
FOLL_LONGTERM = 0x400
FOLL_SPLIT_PMD = 0x800
FOLL_PCI_P2PDMA = 0x1000
FOLL_INTERRUPTIBLE = 0x2000
FOLL_HONOR_NUMA_FAULT = 0x4000
FOLL_TOUCH = 1 << 16
FOLL_TRIED = 1 << 17
FOLL_REMOTE = 1 << 18
FOLL_PIN = 1 << 19
FOLL_FAST_ONLY = 1 << 20
FOLL_UNLOCKABLE = 1 << 21
FOLL_MADV_POPULATE = 1 << 22

_PFN = T.PTE_PFN_MASK


def follow_page_pte(vma, address: int, flags: int) -> int:
    """follow_page_mask() -> follow_page_pte(): the PFN mapped for this access, or -1
    when a fault is needed (no PTE, or a write through a read-only PTE)."""
    mm = vma.vm_mm
    k = mm.kernel
    pool = k.ptpool.mv
    rows = k.mem.private
    shift = k.pgdir_shift
    p = mm.pgd_ptr + ((address >> shift) & 511)
    while True:
        e = pool[p]
        if not e & T._PAGE_PRESENT:
            return -1
        if shift == 12 or e & T._PAGE_PSE:
            break
        shift -= 9
        p = rows[(e & _PFN) >> 12] * 512 + ((address >> shift) & 511)
    if shift != 12:
        if vma.vm_flags & VM_HUGETLB:
            return _follow_huge_hugetlb(vma, p, e, shift, address, flags)
        if shift == 21:
            return follow_huge_pmd(vma, address, p, e, flags)
        return -1                 # huge PUDs: DAX only (not modelled)
    pte = e
    if flags & FOLL_WRITE and not pte & T._PAGE_RW:
        return -1                 # can_follow_write_pte(): FOLL_FORCE unshare not modelled
    pfn = (pte & _PFN) >> 12
    if flags & FOLL_TOUCH and not pte & T._PAGE_SPECIAL:
        # The PTE is left alone: the folio is marked instead (folio_mark_dirty,
        # folio_mark_accessed), as 6.18 does to avoid racing with the CPU's D bit.
        from vmsim.mm.swap import folio_mark_accessed
        from vmsim.mm.filemap import folio_mark_dirty
        from vmsim.mm.page_flags import PG_dirty
        if flags & FOLL_WRITE and not pte & T._PAGE_DIRTY and not k.mem.flags[pfn] & PG_dirty:
            folio_mark_dirty(k, pfn)
        folio_mark_accessed(k, pfn)       # (not for the zero page: vmsim skips it)
    return pfn


def follow_huge_pmd(vma, address: int, pmdp: int, pmd: int, flags: int) -> int:
    """follow_huge_pmd(): the subpage of a huge PMD; a write needs a writable PMD
    (can_follow_write_pmd); FOLL_TOUCH makes the PMD young (and dirty on a write)."""
    from vmsim.mm.huge_memory import touch_pmd, HPAGE_PMD_MASK
    if flags & FOLL_WRITE and not pmd & T._PAGE_RW:
        return -1
    if (pmd & (T._PAGE_PROTNONE | T._PAGE_PRESENT)) == T._PAGE_PROTNONE:
        return -1
    if flags & FOLL_TOUCH:
        touch_pmd(vma, address, pmdp, bool(flags & FOLL_WRITE))
    return ((pmd & T.PMD_PFN_MASK_2M) >> 12) + ((address & ~HPAGE_PMD_MASK & 0x1FFFFF) >> 12)


def _page_mask(vma, address: int) -> int:
    """ctx.page_mask of the last lookup: HPAGE_PMD_NR - 1 for a huge PMD, else 0."""
    from vmsim.mm.huge_memory import mm_find_pmd
    pmdp = mm_find_pmd(vma.vm_mm, address)
    if pmdp >= 0 and vma.vm_mm.kernel.ptpool.mv[pmdp] & T._PAGE_PSE:
        return 511
    return 0


def faultin_page(vma, address: int, flags: int, unshare: bool = False) -> int:
    """faultin_page(): handle_mm_fault() for GUP; 0 or -errno (EFAULT, ENOMEM, EBUSY)."""
    from vmsim.mm.memory import handle_mm_fault
    fault_flags = 0
    if flags & FOLL_WRITE:
        fault_flags |= FAULT_FLAG_WRITE
    if flags & FOLL_REMOTE:
        fault_flags |= FAULT_FLAG_REMOTE
    if flags & FOLL_UNLOCKABLE:
        fault_flags |= FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE
    if unshare:
        fault_flags |= FAULT_FLAG_UNSHARE
    ret = handle_mm_fault(vma, address, fault_flags, None)
    if ret & VM_FAULT_ERROR:
        if ret & VM_FAULT_OOM:
            return -errno.ENOMEM
        if ret & (VM_FAULT_HWPOISON | VM_FAULT_SIGBUS):
            return -errno.EFAULT
        if ret & VM_FAULT_SIGSEGV:
            return -errno.EFAULT
        return -errno.EFAULT
    return 0


def _follow_huge_hugetlb(vma, p: int, e: int, shift: int, address: int, flags: int) -> int:
    """follow_huge_pud() / follow_huge_pmd() for a hugetlb leaf: a write needs a
    writable entry (else the fault path runs: hugetlb_wp); FOLL_TOUCH marks it
    young (and dirty for a write) as touch_pmd() / touch_pud() do."""
    if flags & FOLL_WRITE and not e & T._PAGE_RW:
        return -1
    if flags & FOLL_TOUCH:
        pool = vma.vm_mm.kernel.ptpool.mv
        e |= T._PAGE_ACCESSED
        if flags & FOLL_WRITE:
            e |= T._PAGE_DIRTY
        pool[p] = e
    return ((e & _PFN) >> 12) + ((address & ((1 << shift) - 1)) >> 12)


def check_vma_flags(vma, gup_flags: int) -> int:
    """check_vma_flags(): may GUP touch this VMA this way? 0 or -EFAULT."""
    vm_flags = vma.vm_flags
    write = gup_flags & FOLL_WRITE
    if vm_flags & (VM_IO | VM_PFNMAP):
        return -errno.EFAULT
    if write:
        if not vm_flags & VM_WRITE:
            if not gup_flags & FOLL_FORCE:
                return -errno.EFAULT
            if vm_flags & VM_HUGETLB:
                return -errno.EFAULT
            if not (vm_flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE:   # is_cow_mapping
                return -errno.EFAULT
    elif not vm_flags & VM_READ:
        if not gup_flags & FOLL_FORCE:
            return -errno.EFAULT
        if not vm_flags & 0x10:          # VM_MAYREAD
            return -errno.EFAULT
    # GUP accesses are data accesses, never instruction fetches: the VMA's protection
    # key must allow them (vmsim's GUP users all work on current's mm).
    from vmsim.arch.x86.mm.pkeys import arch_vma_access_permitted
    if not arch_vma_access_permitted(vma.vm_mm.kernel, vma, bool(write), False, False):
        return -errno.EFAULT
    return 0


def __get_user_pages(mm, start: int, nr_pages: int, gup_flags: int):
    """__get_user_pages(): fault in nr_pages from start; return pages done or -errno."""
    i = 0
    vma = None
    while nr_pages:
        if vma is None or start >= vma.vm_end:
            vma = mm.vma_lookup(start)
            if gup_flags & FOLL_MADV_POPULATE:
                # MADV_POPULATE_(READ|WRITE) reports lookup and permission errors itself.
                if vma is None:
                    return i if i else -errno.ENOMEM
                if check_vma_flags(vma, gup_flags):
                    return i if i else -errno.EINVAL
            else:
                if vma is None:
                    return i if i else -errno.EFAULT
                ret = check_vma_flags(vma, gup_flags)
                if ret:
                    return i if i else ret
        tries = 0
        while True:
            pfn = follow_page_pte(vma, start, gup_flags)
            if pfn >= 0:
                break
            if tries == 2:
                # 6.18 follows a read-only PTE after a FOLL_FORCE COW (can_follow_write_pte)
                # and PROT_NONE PTEs under FOLL_FORCE; vmsim does not model either yet.
                raise NotImplementedError("GUP: FOLL_FORCE on this mapping is not modelled")
            ret = faultin_page(vma, start, gup_flags)
            if ret:
                return i if i else ret
            tries += 1
        # page_increm: a huge PMD is taken whole (ctx.page_mask).
        page_increm = 1 + (~(start >> 12) & _page_mask(vma, start))
        if page_increm > nr_pages:
            page_increm = nr_pages
        i += page_increm
        start += page_increm << 12
        nr_pages -= page_increm
    return i


def populate_vma_page_range(vma, start: int, end: int) -> int:
    """populate_vma_page_range(): GUP over part of one VMA with populate semantics."""
    gup_flags = FOLL_TOUCH
    if vma.vm_flags & VM_LOCKONFAULT:
        return (end - start) >> 12
    # We want to touch writable mappings with a write fault in order to break COW.
    if (vma.vm_flags & (VM_WRITE | VM_SHARED)) == VM_WRITE:
        gup_flags |= FOLL_WRITE
    # We want mlock to succeed for regions that have any permissions other than PROT_NONE.
    if vma.vm_flags & (VM_READ | VM_WRITE | VM_EXEC):
        gup_flags |= FOLL_FORCE
    # __mm_populate passes &locked: the fault may drop mmap_lock (a file read); a
    # VM_FAULT_RETRY is then faulted again, without FOLL_TRIED (so minor).
    gup_flags |= FOLL_UNLOCKABLE
    ret = __get_user_pages(vma.vm_mm, start, (end - start) >> 12, gup_flags)
    from vmsim.mm.swap import lru_add_drain
    lru_add_drain(vma.vm_mm.kernel)
    return ret


def __mm_populate(mm, start: int, length: int, ignore_errors: bool) -> int:
    """__mm_populate(): populate every VMA in the range (MAP_POPULATE, mlock)."""
    end = start + length
    nstart = start
    while nstart < end:
        vma = mm.find_vma(nstart)
        if vma is None or vma.vm_start >= end:
            break
        nend = min(end, vma.vm_end)
        if vma.vm_flags & (VM_IO | VM_PFNMAP):
            nstart = nend
            continue
        nstart = max(nstart, vma.vm_start)
        ret = populate_vma_page_range(vma, nstart, nend)
        if ret < 0:
            if ignore_errors:
                nstart = nend
                continue
            return ret
        nstart += ret * 4096
    return 0


def mm_populate(mm, start: int, length: int):
    """mm_populate(): __mm_populate with errors ignored."""
    __mm_populate(mm, start, length, True)


def faultin_page_range(mm, start: int, end: int, write: bool) -> int:
    """faultin_page_range(): MADV_POPULATE_(READ|WRITE): pages done, or -errno."""
    gup_flags = FOLL_TOUCH | FOLL_MADV_POPULATE | FOLL_UNLOCKABLE
    if write:
        gup_flags |= FOLL_WRITE
    ret = __get_user_pages(mm, start, (end - start) >> 12, gup_flags)
    from vmsim.mm.swap import lru_add_drain
    lru_add_drain(mm.kernel)
    return ret
