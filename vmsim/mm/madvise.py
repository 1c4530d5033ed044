"""madvise(2) (mm/madvise.c).

do_madvise -> is_valid_madvise -> madvise_do_behavior: MADV_POPULATE_* go through
madvise_populate (GUP), everything else through madvise_walk_vmas, which applies the
advice to each VMA piece and returns -ENOMEM at the end if the range had holes.
As in 6.18, MADV_DONTNEED[_LOCKED] and MADV_FREE share one mmu_gather across the
VMAs (madvise_init_tlb / madvise_finish_tlb).

Not modelled (documented results):
* MADV_COLD deactivates at once instead of through the lru_deactivate batch.
* MADV_PAGEOUT: there is no swap device, so anon and shmem folios cannot be written
  out; vmsim only ages them (clears young/referenced) and frees nothing. 6.18 would
  also discard clean lazyfree folios and re-activate the anon folios it failed to swap.
* MADV_COLLAPSE: vmsim.mm.khugepaged.madvise_collapse (collapse_huge_page now, the
  6.18 errno per failure: -EINVAL for an empty range, -EBUSY, -EAGAIN, -ENOMEM).
* MADV_GUARD_INSTALL / MADV_GUARD_REMOVE as 6.18: PTE_MARKER_GUARD entries
  (vmsim.mm.swapops); racing faults do not exist here, so the install loop ends after
  at most one zap.
* MADV_WILLNEED: no swap and no readahead yet, so it only drains the LRU batches.
* MADV_MERGEABLE / UNMERGEABLE: valid only when the profile enables CONFIG_KSM (only
  the VM_MERGEABLE flag then; no ksmd). MADV_HWPOISON / SOFT_OFFLINE:
  CONFIG_MEMORY_FAILURE is off on the reference kernel, so they are invalid.
"""
import errno

from vmsim.arch.x86 import pgtable_types as T
from vmsim.arch.x86.pgtable import pte_offset_map
from vmsim.arch.x86.pgtable import clear_young_dirty_ptes, CYDP_CLEAR_YOUNG, CYDP_CLEAR_DIRTY
from vmsim.arch.x86.pgtable import set_pte_at, pte_clear_not_present_full
from vmsim.arch.x86.mm.tlb import _note_downgrade
from vmsim.mm import vmstat
from vmsim.mm.mm_types import (VM_LOCKED, VM_PFNMAP, VM_HUGETLB, VM_IO, VM_SHARED, VM_MAYSHARE,
                               VM_MAYWRITE, VM_RAND_READ, VM_SEQ_READ, VM_DONTCOPY, VM_WIPEONFORK,
                               VM_DONTDUMP, VM_SPECIAL, VM_HUGEPAGE, VM_NOHUGEPAGE, VM_MERGEABLE,
                               VM_DONTEXPAND, VM_MIXEDMAP, VM_DROPPABLE, vma_is_anonymous)
from vmsim.mm.mmu_gather import tlb_gather_mmu, tlb_finish_mmu, tlb_remove_tlb_entry
from vmsim.mm.page_flags import (PG_dirty, PG_lru, PG_referenced, PG_active, PG_unevictable,
                                 PG_workingset, PG_tail, PG_head)
from vmsim.mm.pagewalk import walk_page_range
from vmsim.mm.swapops import is_pte_marker_entry
from vmsim.uapi import (MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_DONTNEED,
                        MADV_FREE, MADV_REMOVE, MADV_DONTFORK, MADV_DOFORK, MADV_HWPOISON,
                        MADV_SOFT_OFFLINE, MADV_MERGEABLE, MADV_UNMERGEABLE, MADV_HUGEPAGE,
                        MADV_NOHUGEPAGE, MADV_DONTDUMP, MADV_DODUMP, MADV_WIPEONFORK,
                        MADV_KEEPONFORK, MADV_COLD, MADV_PAGEOUT, MADV_POPULATE_READ,
                        MADV_POPULATE_WRITE, MADV_DONTNEED_LOCKED, MADV_COLLAPSE,
                        MADV_GUARD_INSTALL, MADV_GUARD_REMOVE)

_U64 = (1 << 64) - 1
EHWPOISON = 133                 # include/uapi/asm-generic/errno.h (Python's errno lacks it)
_P = T._PAGE_PRESENT
_PROTNONE = T._PAGE_PROTNONE
_PSE = T._PAGE_PSE


def _config(k, name: str) -> bool:
    return bool(k.profile["config"].get(name, False))


def madvise_behavior_valid(k, behavior: int) -> bool:
    """madvise_behavior_valid(): the advice values this kernel configuration accepts."""
    if behavior in (MADV_DOFORK, MADV_DONTFORK, MADV_NORMAL, MADV_SEQUENTIAL, MADV_RANDOM,
                    MADV_REMOVE, MADV_WILLNEED, MADV_DONTNEED, MADV_DONTNEED_LOCKED, MADV_FREE,
                    MADV_COLD, MADV_PAGEOUT, MADV_POPULATE_READ, MADV_POPULATE_WRITE,
                    MADV_DONTDUMP, MADV_DODUMP, MADV_WIPEONFORK, MADV_KEEPONFORK,
                    MADV_GUARD_INSTALL, MADV_GUARD_REMOVE):
        return True
    if behavior in (MADV_MERGEABLE, MADV_UNMERGEABLE):
        return _config(k, "CONFIG_KSM")
    if behavior in (MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_COLLAPSE):
        return _config(k, "CONFIG_TRANSPARENT_HUGEPAGE")
    if behavior in (MADV_HWPOISON, MADV_SOFT_OFFLINE):
        return _config(k, "CONFIG_MEMORY_FAILURE")
    return False


def is_valid_madvise(k, start: int, len_in: int, behavior: int) -> bool:
    """is_valid_madvise(): valid advice, page-aligned start, no wrap."""
    if not madvise_behavior_valid(k, behavior):
        return False
    if start & 0xFFF:
        return False
    length = ((len_in + 0xFFF) & ~0xFFF) & _U64
    # Check to see whether len was rounded up from small -ve to zero
    if len_in and not length:
        return False
    if start + length > _U64:
        return False
    return True


def madvise_batch_tlb_flush(behavior: int) -> bool:
    """madvise_batch_tlb_flush(): the behaviours sharing one mmu_gather."""
    return behavior in (MADV_DONTNEED, MADV_DONTNEED_LOCKED, MADV_FREE)


def do_madvise(mm, start: int, len_in: int, behavior: int) -> int:
    """do_madvise(): madvise(2); 0 or -errno."""
    k = mm.kernel
    if not is_valid_madvise(k, start, len_in, behavior):
        return -errno.EINVAL
    length = ((len_in + 0xFFF) & ~0xFFF) & _U64
    end = start + length
    if end == start:
        return 0
    tlb = tlb_gather_mmu(mm) if madvise_batch_tlb_flush(behavior) else None  # madvise_init_tlb
    if behavior in (MADV_POPULATE_READ, MADV_POPULATE_WRITE):
        error = madvise_populate(mm, start, end, behavior)
    else:
        error = madvise_walk_vmas(mm, start, end, behavior, tlb)
    if tlb is not None:
        tlb_finish_mmu(tlb)                                                     # madvise_finish_tlb
    return error


def madvise_walk_vmas(mm, start: int, end: int, behavior: int, tlb) -> int:
    """madvise_walk_vmas(): visit each VMA piece of [start, end); holes give -ENOMEM
    at the end, after the mapped parts got the advice."""
    unmapped_error = 0
    vma, prev = mm.find_vma_prev(start)
    if vma is not None and start > vma.vm_start:
        prev = vma
    while True:
        if vma is None:
            return -errno.ENOMEM
        if start < vma.vm_start:
            unmapped_error = -errno.ENOMEM
            start = vma.vm_start
            if start >= end:
                break
        tmp = min(vma.vm_end, end)
        error, prev = madvise_vma_behavior(vma, prev, start, tmp, behavior, tlb)
        if error:
            return error
        start = tmp
        if prev is not None and start < prev.vm_end:
            start = prev.vm_end
        if start >= end:
            break
        vma = mm.find_vma(prev.vm_end if prev is not None else start)
    return unmapped_error


def madvise_vma_behavior(vma, prev, start: int, end: int, behavior: int, tlb):
    """madvise_vma_behavior(): apply one advice to [start, end) of vma; (error, prev)."""
    new_flags = vma.vm_flags
    if behavior == MADV_REMOVE:
        return madvise_remove(vma, start, end), None
    if behavior == MADV_WILLNEED:
        # A file's readahead drops mmap_lock (*prev = NULL); anon and shmem keep it.
        keeps = vma.vm_file is None or getattr(vma.vm_file.f_mapping, "swapbacked", False)
        return madvise_willneed(vma, start, end), vma if keeps else None
    if behavior == MADV_COLD:
        return madvise_cold(vma, start, end, False), vma
    if behavior == MADV_PAGEOUT:
        return madvise_cold(vma, start, end, True), vma
    if behavior in (MADV_FREE, MADV_DONTNEED, MADV_DONTNEED_LOCKED):
        return madvise_dontneed_free(vma, start, end, behavior, tlb), vma
    if behavior == MADV_COLLAPSE:
        return madvise_collapse(vma, start, end), vma
    if behavior == MADV_GUARD_INSTALL:
        return madvise_guard_install(vma, start, end), vma
    if behavior == MADV_GUARD_REMOVE:
        return madvise_guard_remove(vma, start, end), vma
    if behavior == MADV_NORMAL:
        new_flags &= ~(VM_RAND_READ | VM_SEQ_READ)
    elif behavior == MADV_SEQUENTIAL:
        new_flags = (new_flags & ~VM_RAND_READ) | VM_SEQ_READ
    elif behavior == MADV_RANDOM:
        new_flags = (new_flags & ~VM_SEQ_READ) | VM_RAND_READ
    elif behavior == MADV_DONTFORK:
        new_flags |= VM_DONTCOPY
    elif behavior == MADV_DOFORK:
        if vma.vm_flags & VM_IO:
            return -errno.EINVAL, prev
        new_flags &= ~VM_DONTCOPY
    elif behavior == MADV_WIPEONFORK:
        # MADV_WIPEONFORK is only supported on anonymous memory.
        if vma.vm_file is not None or vma.vm_flags & VM_SHARED:
            return -errno.EINVAL, prev
        new_flags |= VM_WIPEONFORK
    elif behavior == MADV_KEEPONFORK:
        if vma.vm_flags & VM_DROPPABLE:
            return -errno.EINVAL, prev
        new_flags &= ~VM_WIPEONFORK
    elif behavior == MADV_DONTDUMP:
        new_flags |= VM_DONTDUMP
    elif behavior == MADV_DODUMP:
        if (not vma.vm_flags & VM_HUGETLB and new_flags & VM_SPECIAL) or vma.vm_flags & VM_DROPPABLE:
            return -errno.EINVAL, prev
        new_flags &= ~VM_DONTDUMP
    elif behavior in (MADV_MERGEABLE, MADV_UNMERGEABLE):
        new_flags = ksm_madvise(vma, behavior, new_flags)
    elif behavior in (MADV_HUGEPAGE, MADV_NOHUGEPAGE):
        new_flags = hugepage_madvise(vma, new_flags, behavior)
    error, prev = madvise_update_vma(vma, prev, start, end, new_flags)
    # madvise() returns EAGAIN if kernel resources, such as slab, are temporarily unavailable.
    if error == -errno.ENOMEM:
        error = -errno.EAGAIN
    return error, prev


def madvise_update_vma(vma, prev, start: int, end: int, new_flags: int):
    """madvise_update_vma(): set new_flags on [start, end), splitting/merging (vma_modify)."""
    from vmsim.mm.vma import vma_modify
    if new_flags == vma.vm_flags:
        return 0, vma

    def _change(v):
        v.vm_flags = new_flags

    new = vma_modify(vma.vm_mm, vma, start, end, _change)
    if isinstance(new, int):
        return new, prev
    return 0, new


def hugepage_madvise(vma, vm_flags: int, advice: int) -> int:
    """hugepage_madvise() (mm/khugepaged.c): VM_HUGEPAGE / VM_NOHUGEPAGE; MADV_HUGEPAGE
    registers the mm with khugepaged (khugepaged_enter_vma)."""
    if advice == MADV_HUGEPAGE:
        # khugepaged_enter_vma(vma, *vm_flags): register the mm for khugepaged now.
        from vmsim.mm.khugepaged import khugepaged_enter_vma
        flags = (vm_flags & ~VM_NOHUGEPAGE) | VM_HUGEPAGE
        khugepaged_enter_vma(vma, flags)
        return flags
    return (vm_flags & ~VM_HUGEPAGE) | VM_NOHUGEPAGE


def ksm_madvise(vma, advice: int, vm_flags: int) -> int:
    """ksm_madvise() (mm/ksm.c): the VM_MERGEABLE flag; ksmd itself is not modelled."""
    if advice == MADV_MERGEABLE:
        if vm_flags & (VM_MERGEABLE | VM_SHARED | VM_MAYSHARE | VM_PFNMAP | VM_IO |
                       VM_DONTEXPAND | VM_HUGETLB | VM_MIXEDMAP | VM_DROPPABLE):
            return vm_flags
        return vm_flags | VM_MERGEABLE
    return vm_flags & ~VM_MERGEABLE


# --- MADV_GUARD_INSTALL / MADV_GUARD_REMOVE ------------------------------------------
MAX_MADVISE_GUARD_RETRIES = 3


def is_valid_guard_vma(vma, allow_locked: bool) -> bool:
    """is_valid_guard_vma(): not special nor hugetlb; not mlocked for an install (the
    zap would have to unmap locked pages)."""
    disallowed = VM_SPECIAL | VM_HUGETLB
    if not allow_locked:
        disallowed |= VM_LOCKED
    return not vma.vm_flags & disallowed


def _guard_install_walk(vma, start: int, end: int) -> int:
    """walk_page_range_mm() with guard_install_walk_ops: missing tables are allocated
    (->install_pte), a none PTE gets the guard marker (guard_install_set_pte), an
    existing marker is left (guard_install_pte_entry); 1 at the first populated PTE
    (a zap is needed), -ENOMEM if a table cannot be allocated, else 0."""
    from vmsim.arch.x86.pgtable import pgd_offset
    from vmsim.mm.memory import p4d_alloc, pud_alloc, pmd_alloc, pte_alloc
    from vmsim.mm.swapops import GUARD_PTE, is_guard_pte_marker
    mm = vma.vm_mm
    pool = mm.kernel.ptpool.mv
    addr = start
    while addr < end:
        nxt = min((addr + T.PMD_SIZE) & ~(T.PMD_SIZE - 1), end)
        p4dp = p4d_alloc(mm, pgd_offset(mm, addr), addr)
        pudp = pud_alloc(mm, p4dp, addr) if p4dp >= 0 else -1
        if pudp >= 0 and pool[pudp] & _PSE:
            return 1                                # guard_install_pud_entry: huge
        pmdp = pmd_alloc(mm, pudp, addr) if pudp >= 0 else -1
        if pmdp < 0:
            return -errno.ENOMEM
        if pool[pmdp] & _PSE:
            return 1                                # guard_install_pmd_entry: huge
        if pte_alloc(mm, pmdp):
            return -errno.ENOMEM
        ptep = pte_offset_map(mm, pmdp, addr)
        while addr < nxt:
            pte = pool[ptep]
            if pte == 0:
                # Simply install a PTE marker, this causes segfault on access.
                set_pte_at(mm, addr, ptep, GUARD_PTE)     # walk_pte_range_inner: ->install_pte
            elif not is_guard_pte_marker(pte):
                return 1                            # populated: abort and zap
            addr += 4096
            ptep += 1
    return 0


def madvise_guard_install(vma, start: int, end: int) -> int:
    """madvise_guard_install(): make every page of [start, end) a guard page: install
    PTE markers, zapping populated pages first (existing markers stay)."""
    from vmsim.mm.rmap import anon_vma_prepare
    from vmsim.mm.memory import zap_page_range_single
    if not is_valid_guard_vma(vma, False):
        return -errno.EINVAL
    # If we install guard markers, then the range is no longer empty from a page
    # table perspective and therefore it's appropriate to have an anon_vma. This
    # ensures that on fork, we copy page tables correctly.
    err = anon_vma_prepare(vma.vm_mm.kernel, vma)
    if err:
        return err
    for _ in range(MAX_MADVISE_GUARD_RETRIES):
        err = _guard_install_walk(vma, start, end)
        if err <= 0:
            return err
        # OK some of the range have non-guard pages mapped, zap them. This leaves
        # existing guard pages in place.
        zap_page_range_single(vma, start, end - start, None)
    return -errno.EINTR                             # restart_syscall(): not reached here


def madvise_guard_remove(vma, start: int, end: int) -> int:
    """madvise_guard_remove(): clear the guard markers of [start, end) (allowed on
    mlocked VMAs: nothing is lost); other entries are left alone."""
    from vmsim.mm.swapops import is_guard_pte_marker
    if not is_valid_guard_vma(vma, True):
        return -errno.EINVAL
    mm = vma.vm_mm
    pool = mm.kernel.ptpool.mv

    def guard_remove_pte_range(pmdp, addr, nxt):
        if pool[pmdp] & _PSE:
            return 0                                # huge: cannot hold guard markers
        ptep = pte_offset_map(mm, pmdp, addr)
        while addr < nxt:
            if is_guard_pte_marker(pool[ptep]):
                pte_clear_not_present_full(mm, addr, ptep, 0)
            addr += 4096
            ptep += 1
        return 0

    return walk_page_range(mm, start, end, pmd_entry=guard_remove_pte_range)


# --- MADV_DONTNEED / MADV_FREE ---------------------------------------------------------
def madvise_dontneed_free_valid_vma(vma, behavior: int) -> bool:
    """madvise_dontneed_free_valid_vma(): no pfnmaps; no mlocked VMAs unless _LOCKED.

    hugetlb VMAs take MADV_DONTNEED(_LOCKED) only (their range: madvise_dontneed_free).
    """
    if not vma.vm_flags & VM_HUGETLB:
        forbidden = VM_PFNMAP
        if behavior != MADV_DONTNEED_LOCKED:
            forbidden |= VM_LOCKED
        return not vma.vm_flags & forbidden
    return behavior in (MADV_DONTNEED, MADV_DONTNEED_LOCKED)


def madvise_dontneed_free(vma, start: int, end: int, behavior: int, tlb) -> int:
    """madvise_dontneed_free(): check the VMA, then zap (DONTNEED) or lazyfree (FREE)."""
    if not madvise_dontneed_free_valid_vma(vma, behavior):
        return -errno.EINVAL
    if vma.vm_flags & VM_HUGETLB:
        # hugetlb: whole huge pages from an aligned start, the end rounded down.
        from vmsim.mm.hugetlb import hugetlb_madvise_dontneed_range
        ok, end = hugetlb_madvise_dontneed_range(vma, start, end)
        if not ok:
            return -errno.EINVAL
        if end <= start:
            return 0
    if start == end:
        return 0
    if behavior in (MADV_DONTNEED, MADV_DONTNEED_LOCKED):
        return madvise_dontneed_single_vma(tlb, vma, start, end)
    return madvise_free_single_vma(tlb, vma, start, end)


def madvise_dontneed_single_vma(tlb, vma, start: int, end: int) -> int:
    """madvise_dontneed_single_vma(): zap with reclaim_pt so CONFIG_PT_RECLAIM frees
    PTE tables left empty over a whole PMD."""
    from vmsim.mm.memory import zap_page_range_single_batched, zap_details
    zap_page_range_single_batched(tlb, vma, start, end - start, zap_details(reclaim_pt=True))
    return 0


def madvise_free_single_vma(tlb, vma, start_addr: int, end_addr: int) -> int:
    """madvise_free_single_vma(): private anon only; clean the PTEs and queue the
    folios for the lazyfree LRU move (the per-CPU lru_lazyfree batch)."""
    from vmsim.mm.memory import update_hiwater_rss
    from vmsim.mm.swap import lru_add_drain
    mm = vma.vm_mm
    k = mm.kernel
    # MADV_FREE works for only anon vma at the moment
    if not vma_is_anonymous(vma):
        return -errno.EINVAL
    start = max(vma.vm_start, start_addr)
    if start >= vma.vm_end:
        return -errno.EINVAL
    end = min(vma.vm_end, end_addr)
    if end <= vma.vm_start:
        return -errno.EINVAL
    lru_add_drain(k)
    update_hiwater_rss(mm)
    k.mmu_notifier_invalidate_range_start(mm, "clear", start, end)
    walk_page_range(mm, start, end,
                    pmd_entry=lambda pmdp, a, n: madvise_free_pte_range(tlb, vma, pmdp, a, n))
    k.mmu_notifier_invalidate_range_end(mm, "clear", start, end)
    return 0


def madvise_free_pte_range(tlb, vma, pmdp: int, addr: int, end: int) -> int:
    """madvise_free_pte_range(): clear young/dirty of each mapped anon page, clear a
    dirty folio's PG_dirty (exclusive ones only), and folio_mark_lazyfree() it."""
    from vmsim.mm.memory import vm_normal_page
    from vmsim.mm.swap import folio_mark_lazyfree
    mm = vma.vm_mm
    k = mm.kernel
    pool = k.ptpool.mv
    mem = k.mem
    if pool[pmdp] & _PSE:
        from vmsim.mm.huge_memory import madvise_free_huge_pmd
        if madvise_free_huge_pmd(tlb, vma, pmdp, addr, end):
            return 0
    from vmsim.mm.huge_memory import _split_large_folios_in
    _split_large_folios_in(vma, pmdp, addr, end)
    ptep = pte_offset_map(mm, pmdp, addr)
    cpu = k._current_cpu()
    while addr != end:
        ptent = pool[ptep]
        if ptent and ptent & (_P | _PROTNONE):
            folio = vm_normal_page(vma, addr, ptent)
            if folio >= 0:
                ok = True
                if mem.flags[folio] & PG_dirty:               # (|| folio_test_swapcache)
                    if mem.mapcount[folio] != 1:
                        ok = False
                    else:
                        mem.flags[folio] = mem.flags[folio] & ~PG_dirty   # folio_clear_dirty
                if ok:
                    if ptent & (T._PAGE_ACCESSED | T._PAGE_DIRTY):
                        clear_young_dirty_ptes(vma, addr, ptep, 1,
                                               CYDP_CLEAR_YOUNG | CYDP_CLEAR_DIRTY)
                        _note_downgrade(mm, addr, addr + 4096)
                        tlb_remove_tlb_entry(tlb, ptep, addr)
                    folio_mark_lazyfree(k, folio, cpu)
        elif ptent and not is_pte_marker_entry(ptent):
            raise NotImplementedError("swap entries are not modelled")
        addr += 4096
        ptep += 1
    return 0


# --- MADV_POPULATE_(READ|WRITE) -------------------------------------------------------
def madvise_populate(mm, start: int, end: int, behavior: int) -> int:
    """madvise_populate(): fault the range in through GUP; errno as 6.18 maps it."""
    from vmsim.mm.gup import faultin_page_range
    write = behavior == MADV_POPULATE_WRITE
    while start < end:
        pages = faultin_page_range(mm, start, end, write)
        if pages < 0:
            if pages in (-errno.EINTR, -errno.EINVAL, -EHWPOISON, -errno.EFAULT):
                return pages
            return -errno.ENOMEM
        start += pages * 4096
    return 0


# --- MADV_COLD / MADV_PAGEOUT ----------------------------------------------------------
def can_madv_lru_vma(vma) -> bool:
    return not vma.vm_flags & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB)


def madvise_cold(vma, start: int, end: int, pageout: bool) -> int:
    """madvise_cold() / madvise_pageout() -> madvise_cold_or_pageout_pte_range().

    Both age the exclusive folios on the LRU (clear PTE young and PG_referenced);
    MADV_COLD deactivates them (lru_deactivate, applied at once). MADV_PAGEOUT would
    reclaim them, which needs swap for anon/shmem: nothing is freed (see module doc).
    """
    from vmsim.mm.swap import lru_add_drain
    mm = vma.vm_mm
    if not can_madv_lru_vma(vma):
        return -errno.EINVAL
    lru_add_drain(mm.kernel)
    tlb = tlb_gather_mmu(mm)
    walk_page_range(mm, start, end,
                    pmd_entry=lambda pmdp, a, n: _madvise_cold_pte_range(tlb, vma, pmdp, a, n, pageout))
    tlb_finish_mmu(tlb)
    if pageout and vma.vm_file is not None and hasattr(vma.vm_file, "f_ra"):
        reclaim_pages(vma, start, end)
    return 0


def reclaim_pages(vma, start: int, end: int):
    """reclaim_pages() for the page-cache folios of a file VMA (can_do_file_pageout:
    root may): shrink_folio_list() unmaps a clean folio mapped only here
    (try_to_unmap) and drops it from the cache (__remove_mapping, which leaves a
    shadow entry: mm/workingset.c). Dirty file folios
    are not written from this path: they stay (activated for the flusher)."""
    from vmsim.mm.memory import vm_normal_page, zap_page_range_single
    from vmsim.mm.folio import page_folio, folio_nr_pages, folio_mapcount
    from vmsim.mm.vmscan import __remove_mapping
    from vmsim.mm.folio import folio_mapped
    from vmsim.mm.filemap import PG_writeback
    from vmsim.mm.page_flags import PG_dirty, PG_swapbacked, PG_locked
    mm = vma.vm_mm
    k = mm.kernel
    mem = k.mem
    mapping = vma.vm_file.f_mapping
    if mapping.swapbacked:
        return
    first = vma.vm_pgoff + ((start - vma.vm_start) >> 12)
    last = vma.vm_pgoff + ((end - vma.vm_start) >> 12)
    done = set()
    for index in range(first, last):
        folio = mapping.i_pages.get(index)
        if folio is None or folio in done:
            continue
        done.add(folio)
        f = mem.flags[folio]
        nr = folio_nr_pages(k, folio)
        fstart = vma.vm_start + ((mem.index[folio] - vma.vm_pgoff) << 12)
        if f & (PG_dirty | PG_swapbacked) or fstart < vma.vm_start or \
                fstart + nr * 4096 > vma.vm_end:
            continue
        # Mapped only by this VMA's PTEs (one mapping per page)?
        if any(mem.mapcount[p] > 1 for p in range(folio, folio + nr)):
            continue
        zap_page_range_single(vma, fstart, nr * 4096, None)
        if mem.flags[folio] & PG_dirty:                  # a dirty PTE dirtied it
            continue
        # shrink_folio_list(): an unmapped, unlocked clean folio is reclaimed;
        # __remove_mapping(reclaimed=true) leaves its shadow entry.
        if not folio_mapped(k, folio) and not mem.flags[folio] & (PG_writeback | PG_locked):
            __remove_mapping(k, mapping, folio, True)


def _madvise_cold_pte_range(tlb, vma, pmdp: int, addr: int, end: int, pageout: bool) -> int:
    from vmsim.mm.memory import vm_normal_page
    from vmsim.mm.swap import lruvec_del_folio, lruvec_add_folio
    mm = vma.vm_mm
    k = mm.kernel
    pool = k.ptpool.mv
    mem = k.mem
    if pool[pmdp] & _PSE:
        from vmsim.mm.huge_memory import madvise_cold_huge_pmd
        if madvise_cold_huge_pmd(tlb, vma, pmdp, addr, end, pageout):
            return 0
        if not pool[pmdp]:
            return 0                    # a file PMD was zapped: no PTE table to walk
    from vmsim.mm.huge_memory import _split_large_folios_in
    _split_large_folios_in(vma, pmdp, addr, end)
    ptep = pte_offset_map(mm, pmdp, addr)
    while addr != end:
        ptent = pool[ptep]
        if ptent & (_P | _PROTNONE):
            folio = vm_normal_page(vma, addr, ptent)
            shared = folio >= 0 and mem.mapcount[folio] != 1
            if folio >= 0 and mem.flags[folio] & PG_tail:
                # A page of a large (page-cache) folio: the folio's LRU state; it is
                # left alone when another process maps it (folio_maybe_mapped_shared).
                from vmsim.mm.folio import page_folio, folio_nr_pages
                page = folio
                folio = page_folio(k, page)
                shared = mem.mapcount[page] != 1 or \
                    mem.mapping[folio + 1] > folio_nr_pages(k, folio)
            elif folio >= 0 and mem.flags[folio] & PG_head:
                from vmsim.mm.folio import folio_nr_pages
                shared = mem.mapcount[folio] != 1 or \
                    mem.mapping[folio + 1] > folio_nr_pages(k, folio)
            # Do not interfere with other mappings of this folio and non-LRU folio.
            if folio >= 0 and mem.flags[folio] & PG_lru and not shared:
                if not pageout and ptent & T._PAGE_ACCESSED:
                    clear_young_dirty_ptes(vma, addr, ptep, 1, CYDP_CLEAR_YOUNG)
                    tlb_remove_tlb_entry(tlb, ptep, addr)
                f = mem.flags[folio] & ~PG_referenced
                if f & PG_active:
                    f |= PG_workingset
                mem.flags[folio] = f
                if not pageout and f & PG_active and not f & PG_unevictable:   # lru_deactivate
                    lruvec_del_folio(k, folio)
                    mem.flags[folio] = mem.flags[folio] & ~(PG_active | PG_referenced)
                    lruvec_add_folio(k, folio)
                    k.vmstat[vmstat.PGDEACTIVATE] += 1
        addr += 4096
        ptep += 1
    return 0


# --- MADV_WILLNEED / MADV_REMOVE / MADV_COLLAPSE ------------------------------------------
def madvise_willneed(vma, start: int, end: int) -> int:
    """madvise_willneed(): with CONFIG_SWAP, anon and shmem swap-in (nothing is swapped
    here) then lru_add_drain(); files would get vfs_fadvise(WILLNEED) (the file issue)."""
    from vmsim.mm.swap import lru_add_drain
    if vma.vm_file is None or getattr(vma.vm_file.f_mapping, "swapbacked", False):
        lru_add_drain(vma.vm_mm.kernel)
        return 0
    f = vma.vm_file
    if not hasattr(f, "f_ra"):
        return 0
    # vfs_fadvise(POSIX_FADV_WILLNEED) over the file range: force_page_cache_ra().
    from vmsim.mm.readahead import readahead_control, force_page_cache_ra
    offset = (start - vma.vm_start) + (vma.vm_pgoff << 12)
    force_page_cache_ra(readahead_control(f, f.f_ra, f.f_mapping, offset >> 12),
                        ((end - start) + 4095) >> 12)
    return 0


def madvise_remove(vma, start: int, end: int) -> int:
    """madvise_remove(): punch a hole in the shmem file behind a shared mapping.

    vfs_fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) -> shmem_fallocate:
    unmap_mapping_range() over the whole pages, then shmem_truncate_range(); for
    hugetlbfs, hugetlbfs_punch_hole(); ext4_punch_hole() for the disk files.
    """
    if vma.vm_flags & VM_LOCKED:
        return -errno.EINVAL
    f = vma.vm_file
    if f is None or getattr(f, "f_mapping", None) is None:
        return -errno.EINVAL
    if (vma.vm_flags & (VM_SHARED | VM_MAYWRITE)) != (VM_SHARED | VM_MAYWRITE):  # vma_is_shared_maywrite
        return -errno.EACCES
    offset = (start - vma.vm_start) + (vma.vm_pgoff << 12)
    from vmsim.fs.hugetlbfs import is_file_hugepages, hugetlbfs_fallocate
    if is_file_hugepages(f):
        # vfs_fallocate(PUNCH_HOLE | KEEP_SIZE) -> hugetlbfs_fallocate -> hugetlbfs_punch_hole
        return hugetlbfs_fallocate(vma.vm_mm.kernel, f, 3, offset, end - start)
    if not getattr(f.f_mapping, "swapbacked", False):
        if not hasattr(f, "f_ra"):
            return -errno.EOPNOTSUPP
        # ext4_punch_hole(): the page cache of the hole goes, then its blocks.
        from vmsim.mm.truncate import truncate_pagecache_range
        k = vma.vm_mm.kernel
        ino = f.f_inode
        hole_end = min(offset + (end - start), ino.i_size)
        if hole_end > offset:
            truncate_pagecache_range(k, ino, offset, hole_end - 1)
            from vmsim.fs.ext4 import _ext4_free_blocks
            _ext4_free_blocks(ino, offset >> 12, (hole_end >> 12) - 1)
        return 0
    return shmem_punch_hole(vma.vm_mm.kernel, f, offset, end - start)


def shmem_punch_hole(k, file, offset: int, length: int) -> int:
    """shmem_fallocate(FALLOC_FL_PUNCH_HOLE): unmap (even_cows 0: private COWed copies
    stay, the file's pages go from private mappings too), then shmem_truncate_range() drops
    the cached folios of the whole pages in the hole. Partial pages would be zeroed
    (not needed: madvise passes page-aligned ranges)."""
    from vmsim.mm.filemap import filemap_remove_folio
    from vmsim.mm.memory import unmap_mapping_range
    mapping = file.f_mapping
    unmap_start = (offset + 0xFFF) & ~0xFFF
    unmap_end = ((offset + length) & ~0xFFF) - 1
    if unmap_end > unmap_start:
        unmap_mapping_range(k, mapping, unmap_start, 1 + unmap_end - unmap_start, 0)
    for index in range(unmap_start >> 12, (unmap_end + 1) >> 12):
        if index in mapping.i_pages:
            filemap_remove_folio(k, mapping, index)
    return 0


def madvise_collapse(vma, start: int, end: int) -> int:
    """madvise_collapse() (mm/khugepaged.c): collapse the range's PMDs synchronously."""
    from vmsim.mm.khugepaged import madvise_collapse as _collapse
    return _collapse(vma, start, end)