"""vmsim-only: compiled runs of PTEs for the range operations (zap_pte_range,
copy_pte_range).

6.18 batches only a large folio's run of PTEs (folio_pte_batch_flags in
zap_present_ptes and copy_present_ptes) and takes order-0 pages one PTE at a time.
This batching is vmsim's own: one compiled call walks a run of a PTE table and takes,
PTE by PTE, exactly the decisions the kernel-named Python code takes for the cases it
handles -- none PTEs, the zero page (special PTEs) and order-0 anonymous folios -- and
stops at the first other entry (a file or large folio, a marker, a mapcount about to
underflow...), which the caller hands to its Python per-PTE code before calling again.
The state left is the Python path's (tests/test_pte_batch.py compares them).

The Python path runs instead while a tracer or profiler is installed (so traces show
every kernel function), and with VMSIM_NUMBA=0 (or without numba) these same loops run
as plain Python over memoryviews.
"""
import importlib.util
import os
import sys

import numpy as np

from vmsim.arch.x86 import pgtable_types as T
from vmsim.mm.page_flags import (PG_anon, PG_anon_exclusive, PG_head, PG_tail, PG_lru,
                                 PG_active, PG_unevictable, PG_swapbacked, PG_ORDER_MASK,
                                 PG_ORDER_SHIFT, PGTY_hugetlb)

_P = T._PAGE_PRESENT
_RW = T._PAGE_RW
_PROTNONE = T._PAGE_PROTNONE
_SPECIAL = T._PAGE_SPECIAL
_DIRTY = T._PAGE_DIRTY
_PFN = T.PTE_PFN_MASK
_MKOLD_NO_UFFD_WP = ~(T._PAGE_ACCESSED | T._PAGE_UFFD_WP)
_NOT_RW = ~_RW
_NOT_DIRTY = ~_DIRTY
_LARGE = PG_head | PG_tail
_NOT_LRU = 0xFFFFFFFF ^ (PG_lru | PG_active | PG_unevictable)
_PY_PUT = PG_tail | PGTY_hugetlb
# folios_put() batches shorter than this stay in Python (the LRU drains of a fault).
_MIN_PUT_RUN = 64
_NOT_EXCL = 0xFFFFFFFF ^ PG_anon_exclusive
MMU_GATHER_BUNDLE = 8
MAX_GATHER_BATCH = (4096 - 16) // 8
MAX_GATHER_BATCH_COUNT = 10000 // MAX_GATHER_BATCH

# The mmu_gather's array for the zap runs: room for every batch (MMU_GATHER_BUNDLE +
# MAX_GATHER_BATCH_COUNT * MAX_GATHER_BATCH entries) and one more table.
_GATHER_ARRAY = 16384

# Run statuses: the run ended at ``end``; stopped at an entry for the Python code;
# the mmu_gather is full (zap: flush, then go on).
_DONE, _HANDBACK, _GATHER_FULL = 0, 1, 2


def _zap_pte_run(pool, ptep, n, addr, mflags, mapcount, zap_anon, pages,
                 active, active_nr, batch_count, delayed_rmap):
    """Zap up to n PTEs from ptep (address addr) as zap_pte_range's loop does for none
    PTEs, special PTEs and order-0 anon folios. Returns (PTEs done, status, anon pages
    unmapped from the RSS, pages whose mapcount reached 0, pages gathered into
    ``pages``, first and last address cleared (-1 if none), whether an anon folio was
    skipped (should_zap_folio), the gather's active, active_nr, batch_count)."""
    rss_anon = 0
    unmapped = 0
    gathered = 0
    first = -1
    last = -1
    skipped = 0
    i = 0
    while i < n:
        pte = pool[ptep + i]
        if pte == 0:
            i += 1
            continue
        if not pte & (_P | _PROTNONE):
            return (i, _HANDBACK, rss_anon, unmapped, gathered, first, last, skipped,
                    active, active_nr, batch_count)
        a = addr + (i << 12)
        if pte & _SPECIAL:                             # vm_normal_page() == NULL
            pool[ptep + i] = 0                         # ptep_get_and_clear_full()
            if first < 0:
                first = a
            last = a
            i += 1
            continue
        page = (pte & _PFN) >> 12
        f = mflags[page]
        if not f & PG_anon or f & _LARGE or mapcount[page] < 1:
            return (i, _HANDBACK, rss_anon, unmapped, gathered, first, last, skipped,
                    active, active_nr, batch_count)
        if not zap_anon:                               # !should_zap_folio()
            skipped = 1
            i += 1
            continue
        pool[ptep + i] = 0                             # clear_full_ptes()
        if first < 0:                                  # tlb_remove_tlb_entry()
            first = a
        last = a
        rss_anon += 1
        m = mapcount[page] - 1                         # folio_remove_rmap_pte()
        mapcount[page] = m
        if m == 0:
            unmapped += 1
            mflags[page] = f & _NOT_EXCL
        pages[gathered] = page                         # __tlb_remove_folio_pages()
        gathered += 1
        active_nr += 1
        batch_max = MMU_GATHER_BUNDLE if active == 0 else MAX_GATHER_BATCH
        i += 1
        if active_nr >= batch_max - 1:
            # tlb_next_batch()
            if delayed_rmap and active != 0:
                return (i, _GATHER_FULL, rss_anon, unmapped, gathered, first, last, skipped,
                        active, active_nr, batch_count)
            if active < batch_count:
                active += 1
                active_nr = 0
            elif batch_count == MAX_GATHER_BATCH_COUNT:
                return (i, _GATHER_FULL, rss_anon, unmapped, gathered, first, last, skipped,
                        active, active_nr, batch_count)
            else:
                batch_count += 1
                active += 1
                active_nr = 0
    return (n, _DONE, rss_anon, unmapped, gathered, first, last, skipped,
            active, active_nr, batch_count)


def _copy_pte_run(pool, dst_ptep, src_ptep, n, mflags, mapcount, refcount, cow, shared):
    """Copy up to n PTEs as copy_pte_range's loop does for none PTEs, special PTEs
    and order-0 anon folios (copy_present_ptes -> __copy_present_ptes). Returns
    (PTEs done, status, anon pages added to the child's RSS)."""
    rss_anon = 0
    for i in range(n):
        pte = pool[src_ptep + i]
        if pte == 0:
            continue
        if not pte & (_P | _PROTNONE):
            return i, _HANDBACK, rss_anon
        if not pte & _SPECIAL:
            page = (pte & _PFN) >> 12
            f = mflags[page]
            if not f & PG_anon or f & _LARGE:
                return i, _HANDBACK, rss_anon
            refcount[page] += 1                        # folio_get()
            mflags[page] = f & _NOT_EXCL               # folio_try_dup_anon_rmap_pte()
            mapcount[page] += 1
            rss_anon += 1
        if cow and pte & _RW:
            pool[src_ptep + i] = pool[src_ptep + i] & _NOT_RW     # wrprotect_ptes()
            pte &= _NOT_RW
        if shared:
            pte &= _NOT_DIRTY                          # pte_mkclean()
        pool[dst_ptep + i] = pte & _MKOLD_NO_UFFD_WP   # pte_mkold(); set_ptes()
    return n, _DONE, rss_anon


def _folios_put_pages(pfns, refcount, mflags, lru_next, lru_prev, head, tail, nr, delta,
                      free):
    """folios_put()'s loop: drop a reference on each folio; one whose last reference
    went leaves its LRU list (__page_cache_release -> lruvec_del_folio) and goes to
    ``free``. ``delta`` collects the pages taken off each LRU list (their vmstat).
    Stops before a refcount underflow (the caller's Python loop reports it) and before
    a page of a large folio or a hugetlb folio (the Python loop finds the folio, or
    frees it to its pool). Returns
    (folios done, folios to free)."""
    nfree = 0
    for i in range(len(pfns)):
        pfn = pfns[i]
        r = refcount[pfn] - 1
        if r < 0 or mflags[pfn] & _PY_PUT:             # page_folio(), hugetlb: the Python loop
            return i, nfree
        refcount[pfn] = r
        if r == 0:
            f = mflags[pfn]
            if f & PG_lru:
                if f & PG_unevictable:                 # folio_lru_list()
                    lru = 4
                else:
                    lru = 0 if f & PG_swapbacked else 2
                    if f & PG_active:
                        lru += 1
                prv = lru_prev[pfn]
                nxt = lru_next[pfn]
                if prv:
                    lru_next[prv] = nxt
                else:
                    head[lru] = nxt
                if nxt:
                    lru_prev[nxt] = prv
                else:
                    tail[lru] = prv
                lru_prev[pfn] = 0
                lru_next[pfn] = 0
                n = 1 << ((f & PG_ORDER_MASK) >> PG_ORDER_SHIFT) if f & PG_head else 1
                nr[lru] -= n
                delta[lru] += n
                mflags[pfn] = f & _NOT_LRU
            free[nfree] = pfn
            nfree += 1
    return len(pfns), nfree


# pte_modify()'s _PAGE_CHG_MASK and pte_needs_flush()'s masks (arch/x86).
_CHG = (T.PTE_PFN_MASK | T._PAGE_ACCESSED | T._PAGE_DIRTY | T._PAGE_SPECIAL |
        T._PAGE_SOFT_DIRTY | T._PAGE_UFFD_WP | 0x18)
_NOT_CHG = ~_CHG
_FLUSH_ON_CLEAR = T._PAGE_DIRTY | T._PAGE_PRESENT | T._PAGE_ACCESSED
_SOFTWARE_FLAGS = ((1 << T._PAGE_BIT_SOFTW1) | (1 << T._PAGE_BIT_SOFTW2) |
                   (1 << T._PAGE_BIT_SOFTW3) | (1 << T._PAGE_BIT_SOFTW4) | T._PAGE_SAVED_DIRTY)
_FLUSH_ON_CHANGE = (T._PAGE_RW | T._PAGE_USER | T._PAGE_PWT | T._PAGE_PCD | T._PAGE_PSE |
                    T._PAGE_GLOBAL | (1 << T._PAGE_BIT_PAT_LARGE) |
                    (0xF << T._PAGE_BIT_PKEY_BIT0) | T._PAGE_NX)
_IGNORED = ~(_SOFTWARE_FLAGS | T._PAGE_ACCESSED)
_FLAGS_MASK = ~T.PTE_PFN_MASK


def _change_pte_run(pool, ptep, n, addr, newprot, try_writable, vm_write, shared, mflags,
                    flushed):
    """change_pte_range()'s loop for none and present PTEs: pte_modify(), with
    MM_CP_TRY_CHANGE_WRITABLE pte_mkwrite() where can_change_pte_writable() allows,
    modify_prot_commit_ptes(); the addresses whose change pte_needs_flush() go to
    ``flushed`` (the caller records and flushes them). Stops at a marker.
    Returns (PTEs done, status, PTEs changed, addresses flushed)."""
    pages = 0
    nf = 0
    for i in range(n):
        oldpte = pool[ptep + i]
        if oldpte == 0:
            continue
        if not oldpte & (_P | _PROTNONE):
            return i, _HANDBACK, pages, nf
        ptent = (oldpte & _CHG) | (newprot & _NOT_CHG)
        if try_writable and not ptent & _RW and vm_write and \
                (ptent & (_PROTNONE | _P)) != _PROTNONE:
            # can_change_pte_writable()
            if shared:
                ok = ptent & _DIRTY
            elif ptent & _SPECIAL:
                ok = 0
            else:
                f = mflags[(ptent & _PFN) >> 12]
                ok = (f & PG_anon) and (f & PG_anon_exclusive)
            if ok:
                ptent |= _RW                           # pte_mkwrite()
        pool[ptep + i] = ptent                         # modify_prot_commit_ptes()
        if oldpte & _P:                                # pte_needs_flush()
            if (oldpte & _PFN) != (ptent & _PFN):
                need = True
            else:
                oldflags = oldpte & _FLAGS_MASK
                diff = (oldflags ^ (ptent & _FLAGS_MASK)) & _IGNORED
                need = (diff & oldflags & _FLUSH_ON_CLEAR) != 0 or \
                    (diff & _FLUSH_ON_CHANGE) != 0
            if need:
                flushed[nf] = addr + (i << 12)
                nf += 1
        pages += 1
    return n, _DONE, pages, nf


_impl = {}
_state = {"enabled": True}


def _set_enabled(flag: bool):
    """Tests: switch the batches off (the Python per-PTE code only) or on."""
    _state["enabled"] = flag


def _tracing() -> bool:
    """A tracer or profiler is installed: run the kernel-named Python code only."""
    if sys.getprofile() is not None:
        return True
    if sys.version_info >= (3, 12):
        return sys.monitoring.get_tool(sys.monitoring.PROFILER_ID) is not None
    return False


_RUNS = {"zap": _zap_pte_run, "copy": _copy_pte_run, "put": _folios_put_pages,
         "change": _change_pte_run}


def _load(every: bool = False, lazy: bool = True):
    """Choose compiled or plain Python runs (VMSIM_NUMBA=0, or no numba). While the
    work done is too little to pay for numba (vmsim._jitcache), the runs are plain
    Python and _pick switches them later; each compiled run is compiled (or loaded
    from the cache) on its first use, or all now with ``every``."""
    from vmsim._jitcache import _worth_compiling
    _impl.clear()
    compiled = False
    if os.environ.get("VMSIM_NUMBA", "1") != "0":
        if lazy and not every and not _worth_compiling(0):
            _impl["lazy"] = importlib.util.find_spec("numba") is not None
        else:
            try:
                import numba  # noqa: F401
                compiled = True
            except ImportError:
                pass
    _impl["compiled"] = compiled
    if every:
        for name in _RUNS:
            _get(name)


def _pick(n: int):
    """Before a run over ``n`` PTEs or folios: the compiled runs from now on once the
    work pays for numba (vmsim._jitcache)."""
    if _impl.get("lazy"):
        from vmsim._jitcache import _worth_compiling
        if _worth_compiling(n):
            _load(lazy=False)


def _get(name: str):
    """The run ``name``, compiled on first use when the runs are compiled."""
    fn = _impl.get(name)
    if fn is None:
        fn = _RUNS[name]
        if _impl["compiled"]:
            from vmsim._jitcache import _njit
            fn = _njit(fn, nogil=True)
        _impl[name] = fn
    return fn


def _arrays(k):
    """The table pool and mem_map arrays the runs take: numpy arrays for the compiled
    loops, memoryviews for the plain Python ones."""
    mem = k.mem
    if _impl["compiled"]:
        return k.ptpool.arr, mem.np_flags, mem.np_mapcount, mem.np_refcount
    return k.ptpool.mv, mem.flags, mem.mapcount, mem.refcount


def _usable(vma, zap: bool = True) -> bool:
    """The runs apply: not traced, and a VMA whose pages need nothing the runs leave
    out (VM_PFNMAP / VM_MIXEDMAP change vm_normal_page; a zap in a VM_LOCKED VMA
    adds munlock)."""
    from vmsim.mm.mm_types import VM_PFNMAP, VM_MIXEDMAP, VM_LOCKED
    if not _state["enabled"] or vma.vm_flags & (VM_PFNMAP | VM_MIXEDMAP |
                                                (VM_LOCKED if zap else 0)):
        return False
    if _tracing():
        return False
    if not _impl:
        _load()
    return True


def _zap_run(tlb, k, ptep: int, addr: int, end: int, zap_anon: bool):
    """Run _zap_pte_run from (ptep, addr) towards end and apply what it returns to the
    gather, vmstat and the caller. Returns (addr, ptep, anon RSS, first, last,
    status, skipped, PTEs done)."""
    from vmsim.mm import vmstat
    n = (end - addr) >> 12
    _pick(n)
    pool, mflags, mapcount, _ = _arrays(k)
    compiled = _impl["compiled"]
    if compiled:
        # Gather into the mmu_gather's array, after what it holds (see mmu_gather).
        buf = tlb._buf
        off = tlb._nbuf
        if buf is None or off + n > len(buf):
            if off:
                tlb._gathered                  # moves the array onto the list
                off = 0
            if buf is None:
                buf = tlb._buf = np.empty(_GATHER_ARRAY, dtype=np.int64)
        pages = buf[off:]
    else:
        pages = [0] * n
    (done, status, rss_anon, unmapped, gathered, first, last, skipped,
     tlb.active, tlb.active_nr, tlb.batch_count) = _get("zap")(
        pool, ptep, n, addr, mflags, mapcount, zap_anon, pages,
        tlb.active, tlb.active_nr, tlb.batch_count, tlb.delayed_rmap)
    if gathered:
        if compiled:
            tlb._nbuf = off + gathered
        else:
            tlb._gathered.extend(pages[:gathered])
    if first >= 0:
        # __tlb_adjust_range() of every cleared PTE: they ascend, so the run's first
        # and last give the same range.
        if not tlb.fullmm:
            tlb.start = min(tlb.start, first)
            tlb.end = max(tlb.end, last + 4096)
        tlb.cleared_ptes = True
    if unmapped:
        k.vmstat[vmstat.NR_ANON_PAGES] -= unmapped
    return (addr + (done << 12), ptep + done, rss_anon, first, last, status, skipped, done)


def _copy_run(k, dst_ptep: int, src_ptep: int, addr: int, end: int, cow: bool, shared: bool):
    """Run _copy_pte_run; returns (PTEs done, status, anon RSS added)."""
    _pick((end - addr) >> 12)
    pool, mflags, mapcount, refcount = _arrays(k)
    return _get("copy")(pool, dst_ptep, src_ptep, (end - addr) >> 12, mflags, mapcount,
                         refcount, cow, shared)


def _put_usable(pfns) -> bool:
    """folios_put() of a batch long enough for a run, not traced."""
    if len(pfns) < _MIN_PUT_RUN or not _state["enabled"] or _tracing():
        return False
    if not _impl:
        _load()
    _pick(len(pfns))
    return True


def _folios_put_run(k, pfns):
    """Run _folios_put_pages over ``pfns`` (a list or an int64 array) and apply the
    LRU heads, tails, counts and vmstat. Returns (folios done, the PFNs to free in
    order: an int64 array when the run is compiled)."""
    from vmsim.mm.swap import _LRU_STAT, _ZONE_LRU_STAT
    mem = k.mem
    lv = k.lruvec
    n = len(pfns)
    if _impl["compiled"]:
        args = (np.asarray(pfns, dtype=np.int64), mem.np_refcount, mem.np_flags,
                mem.np_lru_next, mem.np_lru_prev)
        head, tail, nr = (np.array(x, dtype=np.int64) for x in (lv.head, lv.tail, lv.nr))
        delta = np.zeros(len(nr), dtype=np.int64)
        free = np.empty(n, dtype=np.int64)
    else:
        args = (pfns, mem.refcount, mem.flags, mem.lru_next, mem.lru_prev)
        head, tail, nr = list(lv.head), list(lv.tail), list(lv.nr)
        delta = [0] * len(nr)
        free = [0] * n
    done, nfree = _get("put")(*args, head, tail, nr, delta, free)
    if _impl["compiled"]:
        head, tail, nr, delta = head.tolist(), tail.tolist(), nr.tolist(), delta.tolist()
        free = free[:nfree]
    else:
        free = free[:nfree]
    lv.head[:], lv.tail[:], lv.nr[:] = head, tail, nr
    stat = k.vmstat
    for lru, d in enumerate(delta):
        if d:
            stat[_LRU_STAT[lru]] -= d
            stat[_ZONE_LRU_STAT[lru]] -= d
    return done, free


def _change_run(k, ptep: int, addr: int, end: int, newprot: int, try_writable: bool, vma):
    """Run _change_pte_run; returns (PTEs done, status, PTEs changed, the addresses
    whose change needs a flush, ascending)."""
    from vmsim.mm.mm_types import VM_WRITE, VM_SHARED
    n = (end - addr) >> 12
    _pick(n)
    pool, mflags, _, _ = _arrays(k)
    flushed = np.empty(n, dtype=np.int64) if _impl["compiled"] else [0] * n
    done, status, pages, nf = _get("change")(
        pool, ptep, n, addr, newprot, try_writable, bool(vma.vm_flags & VM_WRITE),
        bool(vma.vm_flags & VM_SHARED), mflags, flushed)
    flushed = flushed[:nf].tolist() if _impl["compiled"] else flushed[:nf]
    return done, status, pages, flushed
