"""vmsim-only: the buddy free lists and per-CPU page lists as arrays, and the compiled
runs of mm/page_alloc.c's batched paths over them.

The kernel links a free struct page into its list through page->buddy_list or
page->pcp_list, which share page->lru; vmsim links the PFNs through mem_map's
lru_next / lru_prev (0 ends a list: PFN 0 is reserved), with each list's head and tail
in a small int64 array: a zone's free_area[order].free_list[migratetype] at
order * NR_MIGRATETYPES + migratetype, a pcp's lists[NR_PCP_LISTS] at their pindex.
The counters the runs share are int64 rows (vmsim's layout, see page_alloc.ZS_* and
PCP_*).

The kernel-named Python code in vmsim.mm.page_alloc (__free_one_page,
free_pcppages_bulk, rmqueue_bulk, free_frozen_page_commit...) runs while a tracer is
installed; the runs here take exactly its decisions (tests/test_buddy.py and
tests/test_pte_batch.py compare the two). With VMSIM_NUMBA=0 (or without numba) they
run as plain Python over memoryviews.
"""
from vmsim.mm.page_flags import PGTY_buddy, PG_ORDER_MASK, PG_ORDER_SHIFT

MAX_PAGE_ORDER = 10
NR_MIGRATETYPES = 6
pageblock_order = 9
PAGE_ALLOC_COSTLY_ORDER = 3
MIGRATE_PCPTYPES = 3
NR_LOWORDER_PCP_LISTS = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1)
NR_PCP_LISTS = NR_LOWORDER_PCP_LISTS + 1
CONFIG_PCP_BATCH_SCALE_MAX = 5
PCPF_PREV_FREE_HIGH_ORDER = 0x01

# struct zone's counters (one int64 row per zone).
ZS_FREE_PAGES, ZS_PCP_PAGES, ZS_BELOW_HIGH, ZS_DEFERRED_PFN, ZS_START_PFN, ZS_END_PFN = range(6)
ZS_PGALLOC = 6
ZS_WMARK = 7                    # WMARK_MIN, LOW, HIGH
ZS_LOWMEM_RESERVE = 10          # MAX_NR_ZONES entries
NR_ZS = 15
ZONE_MOVABLE = 3
# struct per_cpu_pages (one int64 row per zone and CPU).
(PCP_ALLOC_FACTOR, PCP_COUNT, PCP_FREE_COUNT, PCP_FLAGS, PCP_HIGH, PCP_HIGH_MIN, PCP_HIGH_MAX,
 PCP_BATCH) = range(8)
NR_PCP_FIELDS = 8


# --- list_head over lru_next / lru_prev ---------------------------------------------------
def _list_add(nxt, prv, head, tail, i, pfn):
    """list_add(): ``pfn`` becomes the head of list ``i``."""
    first = head[i]
    prv[pfn] = 0
    nxt[pfn] = first
    if first:
        prv[first] = pfn
    else:
        tail[i] = pfn
    head[i] = pfn


def _list_add_tail(nxt, prv, head, tail, i, pfn):
    """list_add_tail(): ``pfn`` becomes the tail of list ``i``."""
    last = tail[i]
    nxt[pfn] = 0
    prv[pfn] = last
    if last:
        nxt[last] = pfn
    else:
        head[i] = pfn
    tail[i] = pfn


def _list_del(nxt, prv, head, tail, i, pfn):
    """list_del(): unlink ``pfn`` from list ``i``; its links go back to 0."""
    p = prv[pfn]
    n = nxt[pfn]
    if p:
        nxt[p] = n
    else:
        head[i] = n
    if n:
        prv[n] = p
    else:
        tail[i] = p
    prv[pfn] = 0
    nxt[pfn] = 0


def _walk(nxt, first, limit):
    """The PFNs of a list from ``first`` on (at most ``limit``: a broken list ends)."""
    out = []
    p = first
    while p and len(out) < limit:
        out.append(p)
        p = nxt[p]
    return out


# --- the buddy ------------------------------------------------------------------------------
def _page_is_buddy(flags, pfn, order, lo, hi):
    """page_is_buddy() of frame ``pfn`` in the zone's initialised span [lo, hi)."""
    if pfn < lo or pfn >= hi:
        return False
    f = flags[pfn]
    return (f & PGTY_buddy) != 0 and (f & PG_ORDER_MASK) >> PG_ORDER_SHIFT == order


def _free_one_page(nxt, prv, flags, pbmt, flh, flt, nr_free, zst, pfn, order, mt, to_tail):
    """__free_one_page(): merge with free buddies (a buddy pageblock of another
    migratetype takes ``mt``), then add to the head of the free list, or to its tail
    for FPI_TO_TAIL or when buddy_merge_likely()."""
    lo = zst[ZS_START_PFN]
    hi = zst[ZS_DEFERRED_PFN]
    buddy = 0
    while order < MAX_PAGE_ORDER:
        buddy = pfn ^ (1 << order)
        if not _page_is_buddy(flags, buddy, order, lo, hi):
            break
        buddy_mt = mt
        if order >= pageblock_order:
            buddy_mt = pbmt[buddy >> pageblock_order]
        _list_del(nxt, prv, flh, flt, order * NR_MIGRATETYPES + buddy_mt, buddy)
        flags[buddy] = 0
        nr_free[order] -= 1
        if buddy_mt != mt:
            pbmt[buddy >> pageblock_order] = mt        # set_pageblock_migratetype()
        pfn &= buddy
        order += 1
    flags[pfn] = PGTY_buddy | (order << PG_ORDER_SHIFT)           # set_buddy_order()
    if not to_tail and order < MAX_PAGE_ORDER - 1:
        # buddy_merge_likely(): the buddy of the next-higher order is free.
        higher = buddy & pfn
        to_tail = _page_is_buddy(flags, higher ^ (1 << (order + 1)), order + 1, lo, hi)
    i = order * NR_MIGRATETYPES + mt
    if to_tail:
        _list_add_tail(nxt, prv, flh, flt, i, pfn)
    else:
        _list_add(nxt, prv, flh, flt, i, pfn)
    nr_free[order] += 1


def _free_pcppages_bulk(nxt, prv, flags, pbmt, flh, flt, nr_free, zst, ph, pt, pst, count,
                        pindex):
    """free_pcppages_bulk(): ``count`` pages back to the buddy, the list of ``pindex``
    first, then round-robin, each list from its tail."""
    if pst[PCP_COUNT] < count:
        count = pst[PCP_COUNT]
    pindex -= 1
    while count > 0:
        while True:
            pindex += 1
            if pindex > NR_PCP_LISTS - 1:
                pindex = 0
            if ph[pindex]:
                break
        order = pageblock_order if pindex == NR_LOWORDER_PCP_LISTS else pindex // MIGRATE_PCPTYPES
        nr_pages = 1 << order
        while True:
            pfn = pt[pindex]
            mt = pbmt[pfn >> pageblock_order]
            _list_del(nxt, prv, ph, pt, pindex, pfn)
            count -= nr_pages
            pst[PCP_COUNT] -= nr_pages
            zst[ZS_PCP_PAGES] -= nr_pages
            _free_one_page(nxt, prv, flags, pbmt, flh, flt, nr_free, zst, pfn, order, mt, False)
            if count <= 0 or not ph[pindex]:
                break


def _commit_order0_pages(pfns, i, nxt, prv, flags, mapping, index, pbmt, zst, ph, pt, pst):
    """free_unref_folios() for order-0 folios from pfns[i]: what free_frozen_pages()
    does to each (flags, mapping, index, NR_FREE_PAGES) and free_frozen_page_commit()
    with nr_pcp_high() inline (the page goes to the head of its pcp list). Stops after
    a page that brings the count to high (the caller runs free_pcppages_bulk) or
    before a page of another zone. Returns (next index, high: -1 unless the list must
    be drained, pindex of the last page)."""
    n = len(pfns)
    hmin = pst[PCP_HIGH_MIN]
    hmax = pst[PCP_HIGH_MAX]
    batch = pst[PCP_BATCH]
    below_high = zst[ZS_BELOW_HIGH]
    zone_start = zst[ZS_START_PFN]
    zone_end = zst[ZS_END_PFN]
    mt = 0
    while i < n:
        pfn = pfns[i]
        if pfn < zone_start or pfn >= zone_end:
            return i, -1, mt
        flags[pfn] = 0
        mapping[pfn] = 0
        index[pfn] = 0
        zst[ZS_FREE_PAGES] += 1
        mt = pbmt[pfn >> pageblock_order]              # get_pfnblock_migratetype()
        if mt >= MIGRATE_PCPTYPES:
            mt = 1
        # free_frozen_page_commit(), order 0
        pst[PCP_ALLOC_FACTOR] >>= 1
        _list_add(nxt, prv, ph, pt, mt, pfn)
        pst[PCP_COUNT] += 1
        zst[ZS_PCP_PAGES] += 1
        if pst[PCP_FLAGS] & PCPF_PREV_FREE_HIGH_ORDER:
            pst[PCP_FLAGS] &= ~PCPF_PREV_FREE_HIGH_ORDER
        if pst[PCP_FREE_COUNT] < (batch << CONFIG_PCP_BATCH_SCALE_MAX):
            pst[PCP_FREE_COUNT] += 1
        # nr_pcp_high(pcp, zone, batch, false)
        high = pst[PCP_HIGH]
        high = hmin if high < hmin else hmax if high > hmax else high
        pst[PCP_HIGH] = high
        if high == 0:
            h = 0
        elif hmin == hmax:
            h = high
        elif below_high:
            fc = pst[PCP_FREE_COUNT] if pst[PCP_FREE_COUNT] > batch else batch
            pst[PCP_HIGH] = high - fc if high - fc > hmin else hmin
            h = pst[PCP_COUNT] if pst[PCP_COUNT] > hmin else hmin
        else:
            if pst[PCP_COUNT] >= high:
                need = pst[PCP_FREE_COUNT] + batch
                if pst[PCP_HIGH] < need:
                    pst[PCP_HIGH] = hmin if need < hmin else hmax if need > hmax else need
            h = high
        i += 1
        if pst[PCP_COUNT] >= h:
            return i, h, mt
    return i, -1, mt


def _free_unref_order0(pfns, i, nxt, prv, flags, mapping, index, pbmt, flh, flt, nr_free, zst,
                       ph, pt, pst):
    """free_unref_folios() of order-0 folios of one zone from pfns[i]:
    _commit_order0_pages, and where a list reaches high the rest of
    free_frozen_page_commit(): free_pcppages_bulk(nr_pcp_free()) and the
    ZONE_BELOW_HIGH clear once the zone is above its high watermark again. Returns
    the index of the first page of another zone (or len(pfns))."""
    n = len(pfns)
    while i < n:
        i, high, pindex = _commit_order0_pages(pfns, i, nxt, prv, flags, mapping, index, pbmt,
                                               zst, ph, pt, pst)
        if high < 0:
            return i
        batch = pst[PCP_BATCH]
        # nr_pcp_free(pcp, batch, high, false)
        if high < batch:
            count = 1
        else:
            fc = pst[PCP_FREE_COUNT]
            count = batch if fc < batch else high - batch if fc > high - batch else fc
        _free_pcppages_bulk(nxt, prv, flags, pbmt, flh, flt, nr_free, zst, ph, pt, pst, count,
                            pindex)
        # zone_watermark_ok(zone, 0, high_wmark_pages(zone), ZONE_MOVABLE, 0)
        if zst[ZS_BELOW_HIGH] and zst[ZS_FREE_PAGES] - zst[ZS_PCP_PAGES] > \
                zst[ZS_WMARK + 2] + zst[ZS_LOWMEM_RESERVE + ZONE_MOVABLE]:
            zst[ZS_BELOW_HIGH] = 0
    return i


_FUNCS = ("_list_add", "_list_add_tail", "_list_del", "_page_is_buddy", "_free_one_page",
          "_free_pcppages_bulk", "_commit_order0_pages", "_free_unref_order0")
_INLINE = ("_list_add", "_list_add_tail", "_list_del", "_page_is_buddy")
_impl = {}


_installed = []


def _numba_installed() -> bool:
    """numba can be imported (asked once: find_spec walks sys.path, ~0.2 ms a time)."""
    if not _installed:
        import importlib.util
        _installed.append(importlib.util.find_spec("numba") is not None)
    return _installed[0]


def _compiled() -> bool:
    """The runs are compiled (numba present and VMSIM_NUMBA is not 0) once the work
    done pays for numba (vmsim._jitcache, the walk's count); plain Python until then."""
    c = _impl.get("compiled")
    if c is None or _impl.get("lazy"):
        import os
        from vmsim._jitcache import _worth_compiling
        lazy = c = False
        if os.environ.get("VMSIM_NUMBA", "1") != "0":
            if not _worth_compiling(0):
                lazy = _numba_installed()
            else:
                try:
                    import numba  # noqa: F401
                    c = True
                except ImportError:
                    pass
        if c:
            _impl.clear()                # the plain-Python runs taken so far
        _impl["compiled"] = c
        _impl["lazy"] = lazy
    return c


def _get(name: str):
    """The run ``name``: compiled on first use (every run it calls compiled with it),
    or the plain Python function."""
    compiled = _compiled()               # first: a switch drops the Python runs
    fn = _impl.get(name)
    if fn is None:
        if not compiled:
            fn = globals()[name]
        else:
            import types
            from vmsim._jitcache import _njit
            g = _impl.setdefault("globals", dict(globals()))
            for f in _FUNCS:
                if f not in _impl:
                    opts = {"inline": "always"} if f in _INLINE else {}
                    g[f] = _impl[f] = _njit(types.FunctionType(globals()[f].__code__, g, f),
                                            nogil=True, **opts)
            fn = _impl[name]
        _impl[name] = fn
    return fn
