"""The LRU and its per-CPU folio batches (mm/swap.c, include/linux/mm_inline.h).

A new folio is not put on an LRU list at once: folio_add_lru() takes a reference and
queues it in the CPU's ``cpu_fbatches.lru_add`` batch (PAGEVEC_SIZE = 31 in 6.18; the
seed's 15-entry pagevec is its 5.x ancestor); folio_batch_move_lru() moves a full batch
to the lists and drops the batch's references. lru_add_drain() empties the local CPU's
batch. The lists themselves are doubly linked through mem_map.lru_next/lru_prev, as
folio->lru links them; PFN 0 (reserved, never on an LRU) is the null link.
"""
import numpy as np

from vmsim.mm.page_flags import (PG_lru, PG_active, PG_swapbacked, PG_unevictable,
                                 PG_mlocked, PG_ORDER_MASK, PG_ORDER_SHIFT, PG_head, PG_tail,
                                 PGTY_hugetlb, PG_large_rmappable)
from vmsim.mm import vmstat, _pte_batch
from vmsim.mm.folio import folio_nr_pages
from vmsim.mm.mm_types import VM_LOCKED, VM_SPECIAL

PAGEVEC_SIZE = 31
LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE, LRU_UNEVICTABLE = range(5)
NR_LRU_LISTS = 5
_LRU_STAT = (vmstat.NR_INACTIVE_ANON, vmstat.NR_ACTIVE_ANON, vmstat.NR_INACTIVE_FILE,
             vmstat.NR_ACTIVE_FILE, vmstat.NR_UNEVICTABLE)
_ZONE_LRU_STAT = (vmstat.NR_ZONE_INACTIVE_ANON, vmstat.NR_ZONE_ACTIVE_ANON,
                  vmstat.NR_ZONE_INACTIVE_FILE, vmstat.NR_ZONE_ACTIVE_FILE,
                  vmstat.NR_ZONE_UNEVICTABLE)


class lruvec:
    """struct lruvec: list heads (first PFN) and tails per LRU list."""

    def __init__(self):
        self.head = [0] * NR_LRU_LISTS
        self.tail = [0] * NR_LRU_LISTS
        self.nr = [0] * NR_LRU_LISTS
        self.nonresident_age = 0          # mm/workingset.c's clock of evictions/activations


class cpu_fbatches:
    """Per-CPU folio batches (struct cpu_fbatches)."""

    def __init__(self):
        self.lru_add = []
        self.lru_move_tail = []
        self.lru_deactivate_file = []
        self.lru_deactivate = []
        self.lru_lazyfree = []
        self.activate = []
        self.mlock = []          # mm/mlock.c's per-CPU mlock_fbatch (folios in flight)
        self.mlock_how = []      # its pointer tags, in step: NEW_FOLIO or 0 (munlock)




def folio_lru_list(k, pfn: int) -> int:
    """Return the LRU list a folio belongs on (folio_lru_list())."""
    f = k.mem.flags[pfn]
    if f & PG_unevictable:
        return LRU_UNEVICTABLE
    lru = LRU_INACTIVE_ANON if f & PG_swapbacked else LRU_INACTIVE_FILE
    if f & PG_active:
        lru += 1
    return lru


def update_lru_size(k, lru: int, nr_pages: int):
    """update_lru_size() (include/linux/mm_inline.h): the list's size and its node and
    zone counters."""
    k.lruvec.nr[lru] += nr_pages
    stat = k.vmstat
    stat[_LRU_STAT[lru]] += nr_pages
    stat[_ZONE_LRU_STAT[lru]] += nr_pages


def lruvec_add_folio(k, pfn: int):
    """lruvec_add_folio(): link at the head of its list and count it."""
    lv = k.lruvec
    lru = folio_lru_list(k, pfn)
    mem = k.mem
    head = lv.head
    first = head[lru]
    mem.lru_prev[pfn] = 0
    mem.lru_next[pfn] = first
    if first:
        mem.lru_prev[first] = pfn
    else:
        lv.tail[lru] = pfn
    head[lru] = pfn
    update_lru_size(k, lru, folio_nr_pages(k, pfn))


def lruvec_add_folio_tail(k, pfn: int):
    """lruvec_add_folio_tail(): link at the tail of its list and count it."""
    lv = k.lruvec
    lru = folio_lru_list(k, pfn)
    mem = k.mem
    last = lv.tail[lru]
    mem.lru_next[pfn] = 0
    mem.lru_prev[pfn] = last
    if last:
        mem.lru_next[last] = pfn
    else:
        lv.head[lru] = pfn
    lv.tail[lru] = pfn
    update_lru_size(k, lru, folio_nr_pages(k, pfn))


def lruvec_del_folio(k, pfn: int):
    """lruvec_del_folio(): unlink from its list."""
    lv = k.lruvec
    lru = folio_lru_list(k, pfn)
    mem = k.mem
    lru_prev, lru_next = mem.lru_prev, mem.lru_next
    prv, nxt = lru_prev[pfn], lru_next[pfn]
    if prv:
        lru_next[prv] = nxt
    else:
        lv.head[lru] = nxt
    if nxt:
        lru_prev[nxt] = prv
    else:
        lv.tail[lru] = prv
    lru_prev[pfn] = lru_next[pfn] = 0
    update_lru_size(k, lru, -folio_nr_pages(k, pfn))


def lru_add(k, pfn: int):
    """lru_add(): an evictable folio leaves the unevictable state (rescued), an mlocked
    one is culled to the unevictable list; then link and set PG_lru."""
    flags = k.mem.flags
    f = flags[pfn]
    was_unevictable = f & PG_unevictable                 # folio_test_clear_unevictable()
    f &= ~PG_unevictable
    # nr_pages (folio_nr_pages()) is only needed to count a rescue or a cull.
    if not f & PG_mlocked:                               # folio_evictable()
        if was_unevictable:
            k.vmstat[vmstat.UNEVICTABLE_PGS_RESCUED] += folio_nr_pages(k, pfn)
    else:
        f = (f & ~PG_active) | PG_unevictable
        if not was_unevictable:
            k.vmstat[vmstat.UNEVICTABLE_PGS_CULLED] += folio_nr_pages(k, pfn)
    flags[pfn] = f | PG_lru
    lruvec_add_folio(k, pfn)


def folio_batch_move_lru(k, fbatch: list, move_fn):
    """folio_batch_move_lru(): apply move_fn to each folio, then drop the batch refs."""
    for pfn in fbatch:
        move_fn(k, pfn)
    batch = fbatch[:]
    fbatch.clear()
    folios_put(k, batch)


def __folio_batch_add_and_move(k, fbatch: list, pfn: int, move_fn):
    """__folio_batch_add_and_move(): take a reference and queue the folio; the batch
    moves when full or at once for a large folio (folio_may_be_lru_cached())."""
    k.mem.refcount[pfn] += 1
    fbatch.append(pfn)
    if len(fbatch) >= PAGEVEC_SIZE or k.mem.flags[pfn] & PG_head:
        folio_batch_move_lru(k, fbatch, move_fn)


def folio_add_lru(k, pfn: int, cpu: int):
    """folio_add_lru(): take a reference and queue the folio in this CPU's lru_add batch."""
    mem = k.mem
    mem.refcount[pfn] += 1
    fb = k.cpu_fbatches[cpu].lru_add
    fb.append(pfn)
    if len(fb) >= PAGEVEC_SIZE or mem.flags[pfn] & PG_head:
        folio_batch_move_lru(k, fb, lru_add)


def folio_add_lru_vma(k, pfn: int, vma, cpu: int):
    """folio_add_lru_vma(): a folio of an mlocked VMA goes through the mlock batch
    (mlock_new_folio), any other through the lru_add batch (mm/swap.c)."""
    if (vma.vm_flags & (VM_LOCKED | VM_SPECIAL)) == VM_LOCKED:
        from vmsim.mm.mlock import mlock_new_folio
        mlock_new_folio(k, pfn, cpu)
    else:
        folio_add_lru(k, pfn, cpu)


def lru_add_drain_cpu(k, cpu: int):
    """lru_add_drain_cpu(): flush every batch of ``cpu`` to the lists."""
    fb = k.cpu_fbatches[cpu]
    if fb.lru_add:
        folio_batch_move_lru(k, fb.lru_add, lru_add)
    if fb.lru_move_tail:
        folio_batch_move_lru(k, fb.lru_move_tail, lru_move_tail)
    if fb.lru_deactivate_file:
        folio_batch_move_lru(k, fb.lru_deactivate_file, lru_deactivate_file)
    if fb.lru_lazyfree:
        folio_batch_move_lru(k, fb.lru_lazyfree, lru_lazyfree)
    if fb.activate:
        folio_batch_move_lru(k, fb.activate, folio_activate_fn)


def lru_add_drain(k, cpu: int = None):
    """lru_add_drain(): drain the local CPU's batches, then its mlock_fbatch."""
    from vmsim.mm.mlock import mlock_drain_local
    cpu = k._current_cpu() if cpu is None else cpu
    lru_add_drain_cpu(k, cpu)
    mlock_drain_local(k, cpu)


def lru_add_drain_all(k):
    """lru_add_drain_all(): lru_add_drain() on every CPU."""
    for cpu in range(k.ncpus):
        lru_add_drain(k, cpu)


def lru_lazyfree(k, pfn: int):
    """lru_lazyfree(): move a clean anon folio to the inactive file list, !swapbacked."""
    flags = k.mem.flags
    f = flags[pfn]
    if f & PG_lru and f & PG_swapbacked and not f & PG_unevictable:
        lruvec_del_folio(k, pfn)
        flags[pfn] = flags[pfn] & ~(PG_active | PG_swapbacked)
        from vmsim.mm.page_flags import PG_referenced
        flags[pfn] = flags[pfn] & ~PG_referenced
        lruvec_add_folio(k, pfn)
        n = folio_nr_pages(k, pfn)
        k.vmstat[vmstat.PGLAZYFREE] += n


def folio_mark_lazyfree(k, pfn: int, cpu: int):
    """folio_mark_lazyfree(): queue an anon folio for the lazyfree move."""
    f = k.mem.flags[pfn]
    if f & PG_lru and f & PG_swapbacked and not f & PG_unevictable:
        __folio_batch_add_and_move(k, k.cpu_fbatches[cpu].lru_lazyfree, pfn, lru_lazyfree)


def lru_move_tail(k, pfn: int):
    """lru_move_tail(): to the tail of the inactive list (pgrotated)."""
    flags = k.mem.flags
    f = flags[pfn]
    if f & PG_unevictable or not f & PG_lru:
        return
    lruvec_del_folio(k, pfn)
    flags[pfn] = flags[pfn] & ~PG_active
    lruvec_add_folio_tail(k, pfn)
    k.vmstat[vmstat.PGROTATED] += folio_nr_pages(k, pfn)


def folio_rotate_reclaimable(k, pfn: int, cpu: int = None):
    """folio_rotate_reclaimable(): writeback ended on a folio marked for immediate
    reclaim: queue it for the inactive list's tail (the lru_move_tail batch) if it
    is still reclaimable."""
    from vmsim.mm.page_flags import PG_locked, PG_dirty
    f = k.mem.flags[pfn]
    if f & (PG_locked | PG_dirty | PG_unevictable) or not f & PG_lru:
        return
    cpu = k._current_cpu() if cpu is None else cpu
    __folio_batch_add_and_move(k, k.cpu_fbatches[cpu].lru_move_tail, pfn, lru_move_tail)


def lru_deactivate_file(k, pfn: int):
    """lru_deactivate_file(): an unmapped file folio goes inactive and unreferenced:
    to the head of the list with PG_reclaim while dirty or under writeback, else to
    the tail (pgrotated); pgdeactivate when it was active."""
    from vmsim.mm.page_flags import PG_referenced, PG_dirty, PG_reclaim
    from vmsim.mm.folio import folio_mapped
    flags = k.mem.flags
    f = flags[pfn]
    active = f & PG_active
    if f & PG_unevictable or not f & PG_lru:
        return
    if folio_mapped(k, pfn):                     # some processes are using the folio
        return
    nr = folio_nr_pages(k, pfn)
    lruvec_del_folio(k, pfn)
    flags[pfn] = flags[pfn] & ~(PG_active | PG_referenced)
    from vmsim.mm.filemap import PG_writeback
    if f & (PG_writeback | PG_dirty):
        lruvec_add_folio(k, pfn)
        flags[pfn] = flags[pfn] | PG_reclaim
    else:
        lruvec_add_folio_tail(k, pfn)
        k.vmstat[vmstat.PGROTATED] += nr
    if active:
        k.vmstat[vmstat.PGDEACTIVATE] += nr


def deactivate_file_folio(k, pfn: int, cpu: int = None):
    """deactivate_file_folio(): queue a file folio on this CPU's lru_deactivate_file
    batch (not an unevictable or off-LRU one; MGLRU is off, lru_gen_enabled() false)."""
    f = k.mem.flags[pfn]
    if f & PG_unevictable or not f & PG_lru:
        return
    cpu = k._current_cpu() if cpu is None else cpu
    __folio_batch_add_and_move(k, k.cpu_fbatches[cpu].lru_deactivate_file, pfn,
                               lru_deactivate_file)


def folio_activate_fn(k, pfn: int):
    flags = k.mem.flags
    f = flags[pfn]
    if f & PG_lru and not f & (PG_active | PG_unevictable):
        lruvec_del_folio(k, pfn)
        flags[pfn] = flags[pfn] | PG_active
        lruvec_add_folio(k, pfn)
        k.vmstat[vmstat.PGACTIVATE] += folio_nr_pages(k, pfn)


def batch_refs(k) -> dict:
    """Return {pfn: references held by per-CPU batches} (for the debug checker)."""
    refs = {}
    for fb in k.cpu_fbatches:
        for lst in (fb.lru_add, fb.lru_lazyfree, fb.activate, fb.lru_deactivate,
                    fb.lru_deactivate_file, fb.lru_move_tail, fb.mlock):
            for pfn in lst:
                refs[pfn] = refs.get(pfn, 0) + 1
    return refs


def folio_get(k, pfn: int):
    """folio_get() / get_page(): take a reference (on the folio of a tail page)."""
    if k.mem.flags[pfn] & PG_tail:
        pfn = _head(k, pfn)
    k.mem.refcount[pfn] += 1


def _head(k, pfn: int) -> int:
    from vmsim.mm.folio import page_folio
    return page_folio(k, pfn)


def page_cache_release(k, pfn: int):
    """page_cache_release(): take a dying folio off its LRU list."""
    flags = k.mem.flags
    if flags[pfn] & PG_lru:
        lruvec_del_folio(k, pfn)
        flags[pfn] = flags[pfn] & ~(PG_lru | PG_active | PG_unevictable)


def __folio_put(k, pfn: int):
    """__folio_put(): the last reference is gone: off the LRU, back to the allocator
    (a hugetlb folio back to its pool: free_huge_folio)."""
    if k.mem.flags[pfn] & PGTY_hugetlb:
        from vmsim.mm.hugetlb import free_huge_folio
        free_huge_folio(k, pfn)
        return
    page_cache_release(k, pfn)
    free_folio(k, pfn)


def _free_pages_prepare(k, pfn: int) -> int:
    """The part of free_pages_prepare() vmsim models: drop the folio's data, its tail
    pages' state and its mlock count; return its order."""
    mem = k.mem
    f = mem.flags[pfn]
    order = (f & PG_ORDER_MASK) >> PG_ORDER_SHIFT if f & PG_head else 0
    if f & PG_mlocked:
        k.vmstat[vmstat.NR_MLOCK] -= 1 << order
    data = k.page_data
    if order:
        # The tail pages' state, cleared a slice at a time (a 2 MiB THP has 511).
        lo, hi = pfn + 1, pfn + (1 << order)
        for p in (mem.np_private[pfn:hi].nonzero()[0] + pfn).tolist():
            data.clear(p)
        mem.np_flags[lo:hi] = 0
        mem.np_mapcount[lo:hi] = 0
        mem.np_refcount[lo:hi] = 0
        mem.np_mapping[lo:hi] = 0
        mem.np_index[lo:hi] = 0
    elif mem.private[pfn]:
        data.clear(pfn)
    if order:
        mem.lru_prev[pfn + 1] = mem.lru_next[pfn + 1] = 0    # _entire_mapcount, _pincount
        if f & PG_large_rmappable:
            from vmsim.mm.huge_memory import folio_undo_large_rmappable
            folio_undo_large_rmappable(k, pfn, order)
    mem.mapcount[pfn] = 0
    return order


def free_folio(k, pfn: int):
    """free_frozen_pages() for a folio: drop its data and flags, return its frames."""
    order = _free_pages_prepare(k, pfn)
    k.page_alloc.free_frozen_pages(pfn, order, k._current_cpu())


def free_unref_folios(k, pfns):
    """free_unref_folios() (mm/page_alloc.c): prepare each folio for freeing, then
    commit the batch to this CPU's per-CPU lists (PageAllocator.free_unref_folios)."""
    mem = k.mem
    flags = mem.flags
    private = mem.private
    mapcount = mem.mapcount
    data = k.page_data
    if _pte_batch._put_usable(pfns):
        # vmsim's batch of the loop below when every folio is order 0, not mlocked.
        arr = np.asarray(pfns, dtype=np.int64)
        if not (mem.np_flags[arr] & (PG_head | PG_mlocked)).any():
            # clear_page() of each: a private data row becomes stale (in order), any
            # handle goes.
            h = mem.np_private[arr]
            data._stale_rows.extend((~h[h < 0]).tolist())
            mem.np_private[arr] = 0
            mem.np_mapcount[arr] = 0
            k.page_alloc.free_unref_folios(arr, None, k._current_cpu())
            return
    if isinstance(pfns, np.ndarray):
        pfns = pfns.tolist()
    orders = []
    for pfn in pfns:
        if flags[pfn] & (PG_head | PG_mlocked):
            orders.append(_free_pages_prepare(k, pfn))
            continue
        if private[pfn]:                        # _free_pages_prepare() for order 0
            data.clear(pfn)
        mapcount[pfn] = 0
        orders.append(0)
    k.page_alloc.free_unref_folios(pfns, orders, k._current_cpu())


def folio_put(k, pfn: int):
    """folio_put() / put_page(): drop a reference; free the folio when it was the last."""
    if k.mem.flags[pfn] & PG_tail:
        pfn = _head(k, pfn)
    rc = k.mem.refcount
    r = rc[pfn] - 1
    rc[pfn] = r
    if r == 0:
        __folio_put(k, pfn)
    elif r < 0:
        raise AssertionError(f"VM_BUG_ON_FOLIO: refcount underflow on pfn {pfn:#x}")


def folios_put(k, pfns):
    """folios_put() -> folios_put_refs(): drop one reference on each folio; those whose
    last reference went leave their LRU list (__page_cache_release) and are then freed
    together (free_unref_folios). The kernel works through a folio_batch of
    PAGEVEC_SIZE at a time; LRU removal and the per-CPU lists do not interact, so one
    batch per call ends in the same state."""
    rc = k.mem.refcount
    flags = k.mem.flags
    free = []
    if _pte_batch._put_usable(pfns):
        # vmsim's compiled run of this loop; it stops before an underflow or a page
        # of a large folio.
        done, free = _pte_batch._folios_put_run(k, pfns)
        pfns = pfns[done:]
        if len(pfns) and isinstance(pfns, np.ndarray):   # the Python loop takes the rest
            pfns = pfns.tolist()
            free = free.tolist()
    for pfn in pfns:
        if flags[pfn] & PG_tail:                # a page of a large folio
            pfn = _head(k, pfn)
        r = rc[pfn] - 1
        rc[pfn] = r
        if r == 0:
            if flags[pfn] & PGTY_hugetlb:
                from vmsim.mm.hugetlb import free_huge_folio
                free_huge_folio(k, pfn)
                continue
            page_cache_release(k, pfn)
            free.append(pfn)
        elif r < 0:
            raise AssertionError(f"VM_BUG_ON_FOLIO: refcount underflow on pfn {pfn:#x}")
    if len(free):
        free_unref_folios(k, free)


def folio_put_refs(k, pfn: int, refs: int):
    """folio_put_refs(): drop ``refs`` references at once."""
    rc = k.mem.refcount
    r = rc[pfn] - refs
    rc[pfn] = r
    if r == 0:
        __folio_put(k, pfn)
    elif r < 0:
        raise AssertionError(f"VM_BUG_ON_FOLIO: refcount underflow on pfn {pfn:#x}")


def folios_put_refs(k, pfns, refs):
    for pfn, n in zip(pfns, refs):
        for _ in range(n):
            folio_put(k, pfn)


def folio_activate(k, pfn: int, cpu: int):
    """folio_activate(): queue an inactive LRU folio for activation (cpu_fbatches.activate)."""
    f = k.mem.flags[pfn]
    if f & PG_lru and not f & (PG_active | PG_unevictable):
        __folio_batch_add_and_move(k, k.cpu_fbatches[cpu].activate, pfn, folio_activate_fn)


def __lru_cache_activate_folio(k, pfn: int, cpu: int):
    """__lru_cache_activate_folio(): a folio still in this CPU's lru_add batch is
    marked active so the drain puts it on the active list."""
    if pfn in k.cpu_fbatches[cpu].lru_add:
        k.mem.flags[pfn] = k.mem.flags[pfn] | PG_active


def folio_mark_accessed(k, pfn: int):
    """folio_mark_accessed(): first access sets referenced; a second activates."""
    from vmsim.mm.page_flags import PG_referenced
    mem = k.mem
    f = mem.flags[pfn]
    if f & PG_tail:
        pfn = _head(k, pfn)
        f = mem.flags[pfn]
    if not f & PG_referenced:
        mem.flags[pfn] = f | PG_referenced
    elif f & PG_unevictable:
        pass
    elif not f & PG_active:
        cpu = k._current_cpu()
        if f & PG_lru:
            folio_activate(k, pfn, cpu)
        else:
            __lru_cache_activate_folio(k, pfn, cpu)
        mem.flags[pfn] = mem.flags[pfn] & ~PG_referenced
        from vmsim.mm.workingset import workingset_activation
        workingset_activation(k, pfn)
