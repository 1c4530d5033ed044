"""mlock(2), mlock2(2), munlock(2) and the unevictable LRU (mm/mlock.c).

do_mlock -> apply_vma_lock_flags -> mlock_fixup (vma_modify, mm->locked_vm) ->
mlock_vma_pages_range (mlock_pte_range: mlock_folio / munlock_folio for pages
already mapped), then __mm_populate() faults the rest in (one ru_minflt per page;
MLOCK_ONFAULT VMAs are not populated). A folio faulted into a VM_LOCKED VMA gets
mlock_new_folio() from folio_add_lru_vma().

Simplified:
* The per-CPU mlock_fbatch holds munlocks and new folios: munlock_folio() queues the folio
  (with a reference) and __munlock_folio() runs when the batch fills or is drained
  (lru_add_drain -> mlock_drain_local), so a zap of an mlocked page shows its
  unevictable_pgs_munlocked only after a drain, as on 6.18. mlock_folio() applies
  __mlock_folio at once: mlock_vma_pages_range() ends with lru_add_drain(), which
  drains the batch, so the syscall's result is the same.
  mlock_new_folio() queues a new folio in the same batch, tagged NEW_FOLIO (6.18
  tags the pointer; vmsim keeps the tags in a list beside it), and
  __mlock_new_folio() puts it on the unevictable list (unevictable_pgs_culled).
* folio->mlock_count is not kept: a folio is taken to be mlocked by one VMA, so
  munlock makes it evictable again (exact until fork shares mlocked folios).
* RLIMIT_MEMLOCK is not checked: processes run as root (CAP_IPC_LOCK).
"""
import errno

from vmsim.arch.x86 import pgtable_types as T
from vmsim.arch.x86.pgtable import pte_offset_map
from vmsim.mm import vmstat
from vmsim.mm.mm_types import (VM_LOCKED, VM_LOCKONFAULT, VM_LOCKED_MASK, VM_SPECIAL, VM_HUGETLB,
                               VM_DROPPABLE)
from vmsim.mm.page_flags import PG_lru, PG_mlocked, PG_unevictable, PG_active
from vmsim.mm.pagewalk import walk_page_range
from vmsim.uapi import MLOCK_ONFAULT

_U64 = (1 << 64) - 1
NEW_FOLIO = 2                  # mm/mlock.c: the mlock_fbatch pointer tag of mlock_new()
_P = T._PAGE_PRESENT
_PROTNONE = T._PAGE_PROTNONE


def can_do_mlock(mm) -> bool:
    """can_do_mlock(): RLIMIT_MEMLOCK != 0 or CAP_IPC_LOCK (root: always)."""
    return True


def folio_evictable(k, pfn: int) -> bool:
    """folio_evictable(): not mlocked (unevictable mappings, e.g. SHM_LOCK, not modelled)."""
    return not k.mem.flags[pfn] & PG_mlocked


def _nr_pages(k, pfn: int) -> int:
    from vmsim.mm.swap import folio_nr_pages
    return folio_nr_pages(k, pfn)


def __mlock_folio(k, pfn: int):
    """__mlock_folio(): move a folio that is on the LRU to the unevictable list."""
    from vmsim.mm.swap import lruvec_del_folio, lruvec_add_folio
    flags = k.mem.flags
    # There is nothing more we can do while it's off LRU: lru_add() will see PG_mlocked.
    if not flags[pfn] & PG_lru:
        return
    n = _nr_pages(k, pfn)
    if folio_evictable(k, pfn):
        if flags[pfn] & PG_unevictable:
            lruvec_del_folio(k, pfn)
            flags[pfn] = flags[pfn] & ~PG_unevictable
            lruvec_add_folio(k, pfn)
            k.vmstat[vmstat.UNEVICTABLE_PGS_RESCUED] += n
        return
    if flags[pfn] & PG_unevictable:
        return                                      # folio->mlock_count++
    lruvec_del_folio(k, pfn)
    flags[pfn] = (flags[pfn] & ~PG_active) | PG_unevictable
    lruvec_add_folio(k, pfn)
    k.vmstat[vmstat.UNEVICTABLE_PGS_CULLED] += n


def __munlock_folio(k, pfn: int):
    """__munlock_folio(): clear PG_mlocked; an LRU folio goes back to an evictable list."""
    from vmsim.mm.swap import lruvec_del_folio, lruvec_add_folio
    flags = k.mem.flags
    n = _nr_pages(k, pfn)
    isolated = bool(flags[pfn] & PG_lru)
    if flags[pfn] & PG_mlocked:
        flags[pfn] = flags[pfn] & ~PG_mlocked
        k.vmstat[vmstat.NR_MLOCK] -= n
        if isolated or not flags[pfn] & PG_unevictable:
            k.vmstat[vmstat.UNEVICTABLE_PGS_MUNLOCKED] += n
        else:
            k.vmstat[vmstat.UNEVICTABLE_PGS_STRANDED] += n
    # folio_evictable() has to be checked *after* clearing Mlocked
    if isolated and flags[pfn] & PG_unevictable and folio_evictable(k, pfn):
        lruvec_del_folio(k, pfn)
        flags[pfn] = flags[pfn] & ~PG_unevictable
        lruvec_add_folio(k, pfn)
        k.vmstat[vmstat.UNEVICTABLE_PGS_RESCUED] += n


def mlock_folio(k, pfn: int):
    """mlock_folio(): mlock a folio already mapped (on, or on its way to, the LRU)."""
    flags = k.mem.flags
    if not flags[pfn] & PG_mlocked:
        flags[pfn] = flags[pfn] | PG_mlocked
        n = _nr_pages(k, pfn)
        k.vmstat[vmstat.NR_MLOCK] += n
        k.vmstat[vmstat.UNEVICTABLE_PGS_MLOCKED] += n
    __mlock_folio(k, pfn)


def __mlock_new_folio(k, pfn: int):
    """__mlock_new_folio(): put a new mlocked folio on the unevictable list."""
    from vmsim.mm.swap import lruvec_add_folio
    flags = k.mem.flags
    if folio_evictable(k, pfn):                 # munlocked while in the batch
        flags[pfn] = flags[pfn] | PG_lru
        lruvec_add_folio(k, pfn)
        return
    flags[pfn] = flags[pfn] | PG_unevictable
    k.vmstat[vmstat.UNEVICTABLE_PGS_CULLED] += _nr_pages(k, pfn)
    lruvec_add_folio(k, pfn)
    flags[pfn] = flags[pfn] | PG_lru


def mlock_new_folio(k, pfn: int, cpu: int):
    """mlock_new_folio(): a new folio faulted into a VM_LOCKED VMA, not yet on the LRU:
    mark it mlocked and queue it (with a reference) in this CPU's mlock_fbatch."""
    from vmsim.mm.swap import PAGEVEC_SIZE
    from vmsim.mm.page_flags import PG_head
    flags = k.mem.flags
    n = _nr_pages(k, pfn)
    flags[pfn] = flags[pfn] | PG_mlocked
    k.vmstat[vmstat.NR_MLOCK] += n
    k.vmstat[vmstat.UNEVICTABLE_PGS_MLOCKED] += n
    k.mem.refcount[pfn] += 1
    fb = k.cpu_fbatches[cpu]
    fb.mlock.append(pfn)
    fb.mlock_how.append(NEW_FOLIO)
    # !folio_may_be_lru_cached(): a large folio is not left in the batch.
    if len(fb.mlock) >= PAGEVEC_SIZE or flags[pfn] & PG_head:
        mlock_folio_batch(k, fb)


def munlock_folio(k, pfn: int):
    """munlock_folio(): queue the folio in this CPU's mlock_fbatch (taking a reference);
    a full batch, or one holding a large folio, is processed at once."""
    from vmsim.mm.swap import PAGEVEC_SIZE
    from vmsim.mm.page_flags import PG_head
    k.mem.refcount[pfn] += 1
    fb = k.cpu_fbatches[k._current_cpu()]
    fb.mlock.append(pfn)
    fb.mlock_how.append(0)
    if len(fb.mlock) >= PAGEVEC_SIZE or k.mem.flags[pfn] & PG_head:
        mlock_folio_batch(k, fb)


def mlock_folio_batch(k, fb):
    """mlock_folio_batch(): run the queued new-folio mlocks and munlocks in order, then
    drop the batch's references."""
    from vmsim.mm.swap import folios_put
    batch, how = fb.mlock[:], fb.mlock_how[:]
    fb.mlock.clear()
    fb.mlock_how.clear()
    for pfn, tag in zip(batch, how):
        if tag == NEW_FOLIO:
            __mlock_new_folio(k, pfn)
        else:
            __munlock_folio(k, pfn)
    folios_put(k, batch)


def mlock_drain_local(k, cpu: int):
    """mlock_drain_local(): process this CPU's mlock_fbatch."""
    fb = k.cpu_fbatches[cpu]
    if fb.mlock:
        mlock_folio_batch(k, fb)


from vmsim.mm.page_flags import PG_head as T_PG_HEAD, PG_tail as T_PG_TAIL  # noqa: E402


def mlock_pte_range(vma, pmdp: int, addr: int, end: int) -> int:
    """mlock_pte_range(): (m)unlock every normal small folio mapped in [addr, end)."""
    from vmsim.mm.memory import vm_normal_page
    mm = vma.vm_mm
    k = mm.kernel
    pool = k.ptpool.mv
    locked = vma.vm_flags & VM_LOCKED
    if pool[pmdp] & T._PAGE_PSE:
        # A huge PMD: (m)lock the whole THP; the huge zero folio is left alone.
        from vmsim.mm.huge_memory import is_huge_zero_pmd
        e = pool[pmdp]
        if e & (_P | _PROTNONE) and not is_huge_zero_pmd(k, e):
            folio = (e & T.PMD_PFN_MASK_2M) >> 12
            if locked:
                mlock_folio(k, folio)
            else:
                munlock_folio(k, folio)
        return 0
    ptep = pte_offset_map(mm, pmdp, addr)
    start = addr
    done = -1
    while addr != end:
        pte = pool[ptep]
        if pte & (_P | _PROTNONE):
            folio = vm_normal_page(vma, addr, pte)
            if folio >= 0 and k.mem.flags[folio] & (T_PG_HEAD | T_PG_TAIL):
                # A page of a PTE-mapped large folio: the folio once, and mlock only
                # when all of it lies in the range (allow_mlock_munlock).
                from vmsim.mm.folio import page_folio, folio_nr_pages
                head = page_folio(k, folio)
                if head != done:
                    done = head
                    fstart = addr - ((folio - head) << 12)
                    fend = fstart + (folio_nr_pages(k, head) << 12)
                    if not locked:
                        munlock_folio(k, head)
                    elif fstart >= max(start, vma.vm_start) and fend <= min(end, vma.vm_end):
                        mlock_folio(k, head)
                folio = -1
            if folio >= 0:
                if locked:
                    mlock_folio(k, folio)
                else:
                    munlock_folio(k, folio)
        addr += 4096
        ptep += 1
    return 0


def mlock_vma_pages_range(vma, start: int, end: int, newflags: int):
    """mlock_vma_pages_range(): set the flags, then (m)unlock the pages already mapped."""
    from vmsim.mm.swap import lru_add_drain
    k = vma.vm_mm.kernel
    vma.vm_flags = newflags
    lru_add_drain(k)
    walk_page_range(vma.vm_mm, start, end,
                    pmd_entry=lambda pmdp, a, n: mlock_pte_range(vma, pmdp, a, n))
    lru_add_drain(k)


def mlock_fixup(vma, start: int, end: int, newflags: int):
    """mlock_fixup(): (0 or -errno, the VMA now covering [start, end)).

    Special, hugetlb and droppable VMAs never get VM_LOCKED and are not counted.
    """
    from vmsim.mm.vma import vma_modify
    mm = vma.vm_mm
    oldflags = vma.vm_flags
    if newflags == oldflags or oldflags & (VM_SPECIAL | VM_HUGETLB | VM_DROPPABLE):
        return 0, vma

    def _change(v):
        v.vm_flags = newflags

    new = vma_modify(mm, vma, start, end, _change)
    if isinstance(new, int):
        return new, vma
    vma = new
    # Keep track of amount of locked VM.
    nr_pages = (end - start) >> 12
    if not newflags & VM_LOCKED:
        nr_pages = -nr_pages
    elif oldflags & VM_LOCKED:
        nr_pages = 0
    mm.locked_vm += nr_pages
    if newflags & VM_LOCKED and oldflags & VM_LOCKED:
        vma.vm_flags = newflags          # No work to do, and mlocking twice would be wrong
    else:
        mlock_vma_pages_range(vma, start, end, newflags)
    return 0, vma


def apply_vma_lock_flags(mm, start: int, length: int, flags: int) -> int:
    """apply_vma_lock_flags(): set VM_LOCKED* on every VMA of the range; holes -> -ENOMEM
    (VMAs before the hole keep the change)."""
    end = (start + length) & _U64
    if end < start:
        return -errno.EINVAL
    if end == start:
        return 0
    vma = mm.vma_lookup(start)                       # vma_iter_load()
    if vma is None:
        return -errno.ENOMEM
    nstart = start
    tmp = vma.vm_start
    error = 0
    last_end = vma.vm_end
    while vma is not None and vma.vm_start < end:
        if vma.vm_start != tmp:
            return -errno.ENOMEM
        newflags = (vma.vm_flags & ~VM_LOCKED_MASK) | flags
        tmp = min(vma.vm_end, end)
        error, vma = mlock_fixup(vma, nstart, tmp, newflags)
        last_end = vma.vm_end
        if error:
            break
        # Continue after the VMA fixup left (it may have merged with the next one).
        tmp = vma.vm_end                             # vma_iter_end(&vmi)
        nstart = tmp
        vma = mm.find_vma(tmp)
    if last_end < end:                               # vma_iter_end(&vmi) < end
        return -errno.ENOMEM
    return error


def __mlock_posix_error_return(retval: int) -> int:
    """__mlock_posix_error_return(): GUP's EFAULT is ENOMEM, ENOMEM is EAGAIN."""
    if retval == -errno.EFAULT:
        return -errno.ENOMEM
    if retval == -errno.ENOMEM:
        return -errno.EAGAIN
    return retval


def do_mlock(mm, start: int, length: int, flags: int = 0) -> int:
    """sys_mlock2() -> do_mlock(): flags are mlock2's (MLOCK_ONFAULT); 0 or -errno."""
    from vmsim.mm.gup import __mm_populate
    if flags & ~MLOCK_ONFAULT:
        return -errno.EINVAL
    vm_flags = VM_LOCKED | (VM_LOCKONFAULT if flags & MLOCK_ONFAULT else 0)
    if not can_do_mlock(mm):
        return -errno.EPERM
    length = ((length + (start & 0xFFF) + 0xFFF) & ~0xFFF) & _U64
    start &= ~0xFFF
    # RLIMIT_MEMLOCK: capable(CAP_IPC_LOCK) for root, so apply unconditionally.
    error = apply_vma_lock_flags(mm, start, length, vm_flags)
    if error:
        return error
    error = __mm_populate(mm, start, length, False)
    if error:
        return __mlock_posix_error_return(error)
    return 0


def _do_munlock(mm, start: int, length: int) -> int:
    """sys_munlock(): clear VM_LOCKED / VM_LOCKONFAULT over the range; 0 or -errno."""
    length = ((length + (start & 0xFFF) + 0xFFF) & ~0xFFF) & _U64
    start &= ~0xFFF
    return apply_vma_lock_flags(mm, start, length, 0)
