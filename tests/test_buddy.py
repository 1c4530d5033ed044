"""The buddy free lists and per-CPU lists as lists linked through mem_map
(vmsim/mm/_buddy.py): 6.18's head / tail placement (mm/page_alloc.c __free_one_page,
buddy_merge_likely, expand, rmqueue_bulk, free_frozen_page_commit,
free_pcppages_bulk), and the runs (compiled, and as plain Python) leave exactly the
state the kernel-named Python path leaves."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from vmsim.mm import _buddy, _pte_batch
from vmsim.mm.page_alloc import (PageAllocator, GFP_HIGHUSER_MOVABLE, GFP_KERNEL,
                                 MIGRATE_MOVABLE, PGTY_buddy, PG_ORDER_MASK, PG_ORDER_SHIFT,
                                 MAX_PAGE_ORDER)

MOVABLE = GFP_HIGHUSER_MOVABLE


def _block_of(pa, pfn):
    """(head, order) of the free buddy block holding ``pfn``."""
    flags = pa.mem.flags
    for order in range(MAX_PAGE_ORDER + 1):
        head = pfn & ~((1 << order) - 1)
        f = flags[head]
        if f & PGTY_buddy and (f & PG_ORDER_MASK) >> PG_ORDER_SHIFT == order:
            return head, order
    raise AssertionError(f"pfn {pfn:#x} is in no free block")


def _is_free_block(pa, zone, pfn, order):
    f = pa.mem.flags[pfn]
    return (zone.zone_start_pfn <= pfn < zone.deferred_pfn and bool(f & PGTY_buddy) and
            (f & PG_ORDER_MASK) >> PG_ORDER_SHIFT == order)


def test_frees_go_to_the_head_and_allocations_take_it():
    """Order-4 blocks bypass the per-CPU lists. Split one block into X, Y, W, U (in
    address order, as expand() leaves the halves at the list heads), free Y then U
    (neither can merge, and no higher buddy is free): the order-4 list is [U, Y] from
    its head, and the next two order-4 allocations return U, then Y."""
    pa = PageAllocator(1 << 16, 1)
    x = pa.alloc_pages(MOVABLE, 4)
    y, w, u = (pa.alloc_pages(MOVABLE, 4) for _ in range(3))
    assert (y, w, u) == (x + 16, x + 32, x + 48)
    z = pa._zone_of(x)
    pa.free_frozen_pages(y, 4)
    pa.free_frozen_pages(u, 4)
    assert z.free_area[4][MIGRATE_MOVABLE][:2] == [u, y]
    assert pa.alloc_pages(MOVABLE, 4) == u
    assert pa.alloc_pages(MOVABLE, 4) == y


def test_a_free_whose_higher_buddy_is_free_goes_to_the_tail():
    """buddy_merge_likely(): split P (order >= 7) into order-4 blocks P, P+16, P+32,
    P+48, P+64, P+80 (expand leaves P+96 free at order 5). Free P+48 (its buddy P+32
    in use, P not free at order 5): to the head. Free P+80 (buddy P+64 in use, but
    the order-5 buddy P+96 of P+64 is free): to the tail, so the list is
    [P+48, P+80] and allocations take P+48 first."""
    pa = PageAllocator(1 << 16, 1)
    blocks = [pa.alloc_pages(MOVABLE, 4) for _ in range(6)]
    p = blocks[0]
    assert blocks == [p + 16 * i for i in range(6)]
    z = pa._zone_of(p)
    assert _block_of(pa, p + 96) == (p + 96, 5)
    pa.free_frozen_pages(p + 48, 4)
    pa.free_frozen_pages(p + 80, 4)
    assert z.free_area[4][MIGRATE_MOVABLE] == [p + 48, p + 80]
    assert pa.alloc_pages(MOVABLE, 4) == p + 48
    assert pa.alloc_pages(MOVABLE, 4) == p + 80


_ORDERS = (0, 0, 0, 0, 1, 3, 4, 9)


def _run(ops, mode):
    """Apply ``ops`` to a fresh allocator; ``mode``: "python" (the kernel-named path),
    "run" (vmsim's runs as plain Python), "compiled"."""
    _pte_batch._set_enabled(mode != "python")
    saved = dict(_buddy._impl)
    if mode == "run":
        _buddy._impl.clear()
        _buddy._impl["compiled"] = False
    try:
        pa = PageAllocator(1 << 15, 2)
        held = []
        for op, a, b in ops:
            if op == "alloc":
                gfp = GFP_KERNEL if a % 5 == 4 else MOVABLE
                for _ in range(b):
                    pfn = pa.alloc_pages(gfp, _ORDERS[a % 8], a % 2)
                    if pfn >= 0:
                        held.append((pfn, _ORDERS[a % 8]))
            elif op == "free" and held:
                # free b folios from position a: order-0 ones in one batch.
                i = a % len(held)
                batch, held[i:i + b] = held[i:i + b], []
                pfns = [p for p, o in batch]
                for pfn in pfns:
                    pa.mem.refcount[pfn] = 0
                pa.free_unref_folios(pfns, [o for p, o in batch], b % 2)
        return pa
    finally:
        _pte_batch._set_enabled(True)
        _buddy._impl.clear()
        _buddy._impl.update(saved)


def _state(pa):
    mem = pa.mem
    out = {n: getattr(mem, n).copy() for n in ("np_flags", "np_refcount", "np_lru_next",
                                                  "np_lru_prev", "np_mapping", "np_index")}
    for n in ("zone_st", "fl_head", "fl_tail", "nr_free", "pcp_st", "pcp_head", "pcp_tail",
              "pageblock_mt"):
        out[n] = getattr(pa, n).copy()
    out["pgfree"] = np.array([pa.pgfree])
    return out


def _check_lists(pa):
    """Every list well linked, every PGTY_buddy frame on one, counts as recorded, no
    free buddy pair left unmerged (the debug checker's buddy part, on its own)."""
    nxt, prv = pa.mem.lru_next, pa.mem.lru_prev
    seen = set()
    for z in pa.zones:
        for order in range(MAX_PAGE_ORDER + 1):
            n = 0
            for mt in range(_buddy.NR_MIGRATETYPES):
                i = order * _buddy.NR_MIGRATETYPES + mt
                p, before = z.flh[i], 0
                while p:
                    assert prv[p] == before and p not in seen
                    assert _is_free_block(pa, z, p, order)
                    assert order == MAX_PAGE_ORDER or not _is_free_block(pa, z, p ^ (1 << order),
                                                                         order)
                    seen.add(p)
                    n += 1
                    before, p = p, nxt[p]
                assert z.flt[i] == before
            assert z.nr_free[order] == n
        for pcp in z.pcp:
            assert sum(len(lst) << pa._pindex_order(i) for i, lst in enumerate(pcp.lists)) == \
                pcp.count
    assert int(np.count_nonzero(pa.mem.np_flags & PGTY_buddy)) == len(seen)


OPS = st.lists(st.tuples(st.sampled_from(["alloc", "free"]), st.integers(0, 59),
                         st.integers(1, 160)), min_size=1, max_size=14)


def _compare(ops):
    py = _run(ops, "python")
    _check_lists(py)
    ref = _state(py)
    for mode in ("run", "compiled"):
        got = _state(_run(ops, mode))
        for key in ref:
            diff = np.flatnonzero(ref[key].ravel() != got[key].ravel())
            assert not len(diff), f"{mode}: {key} differs at {diff[:8].tolist()}"


@settings(max_examples=15, deadline=None)
@given(OPS)
def test_runs_leave_the_python_state(ops):
    """Random allocations (orders 0, 1, 3, 4, 9; movable and unmovable; two CPUs) and
    batched frees (free_unref_folios; 64 or more order-0 folios take the runs, which
    drain through free_pcppages_bulk): every mem_map array, list head, tail and
    counter equal on the three paths."""
    _compare(ops)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(OPS)
def test_runs_leave_the_python_state_long(ops):
    _compare(ops)


def test_batched_frees_drain_as_the_python_path():
    """Frees of 64 and more order-0 pages (the runs) past pcp->high, on both CPUs,
    with other orders held: the runs drain through free_pcppages_bulk (the pcp count
    drops) and leave the Python path's state."""
    ops = [("alloc", 0, 1500), ("alloc", 5, 8), ("alloc", 1, 1500), ("free", 0, 1400),
           ("alloc", 7, 2), ("free", 0, 1000), ("free", 10, 100), ("alloc", 4, 120),
           ("free", 0, 400), ("free", 0, 600)]
    _compare(ops)
    run = _buddy._get("_free_unref_order0")
    drains = []

    def counting(*args):
        zst, i = args[11], args[1]
        before = int(zst[_buddy.ZS_PCP_PAGES])
        j = run(*args)
        drains.append(int(zst[_buddy.ZS_PCP_PAGES]) < before + (j - i))
        return j
    _buddy._impl["_free_unref_order0"] = counting
    try:
        _run(ops, "compiled")
    finally:
        _buddy._impl["_free_unref_order0"] = run
    assert len(drains) >= 3 and any(drains)


@pytest.mark.parametrize("pages", [1 << 15, 1 << 18])
def test_pcp_peek_and_commit_are_the_next_allocations(pages):
    """_pcp_peek_order0 / _pcp_commit_order0 (the compiled fault runs' entry) leave
    what as many alloc_pages() calls leave, and return their PFNs in order (short
    lists pop one by one, long ones at once)."""
    a, b = PageAllocator(pages, 1), PageAllocator(pages, 1)
    for pa in (a, b):
        pa.alloc_pages(MOVABLE, 0)                     # fill the pcp list
    peek = b._pcp_peek_order0(MOVABLE, 0, 100)
    assert 1 < len(peek) == a.zones[-1].pcp[0].count < 100       # the whole list
    assert (len(peek) < 16) == (pages == 1 << 15)
    # rmqueue_bulk() split one block: its pages, ascending, from the list's head.
    assert peek == list(range(peek[0], peek[0] + len(peek)))
    _check_lists(a)
    got = [a.alloc_pages(MOVABLE, 0) for _ in peek]
    for pfn in peek:
        b.mem.refcount[pfn] = 1                        # the caller's run takes the reference
    b._pcp_commit_order0(MOVABLE, 0, len(peek))
    assert peek == got
    # The fault runs' form: peek one more than taken, clear the taken pages' links
    # themselves, commit with what peek returned.
    c = PageAllocator(pages, 1)
    c.alloc_pages(MOVABLE, 0)
    m = len(peek) - 1
    peek2 = c._pcp_peek_order0(MOVABLE, 0, m + 1)
    assert peek2 == peek
    for pfn in peek2[:m]:
        c.mem.refcount[pfn] = 1
        c.mem.lru_next[pfn] = c.mem.lru_prev[pfn] = 0
    c._pcp_commit_order0(MOVABLE, 0, m, peek2)
    assert c.alloc_pages(MOVABLE, 0) == peek[m]
    sb, sc = _state(b), _state(c)
    for key in sb:
        assert (sb[key] == sc[key]).all(), key
    sa, sb = _state(a), _state(b)
    for key in sa:
        assert (sa[key] == sb[key]).all(), key
