"""Placement through the VMA tree's gap tracking (the maple tree's mas_empty_area /
mas_empty_area_rev behind unmapped_area / unmapped_area_topdown, mm/vma.c): the
tree's answers against a plain scan of the gaps, on random layouts."""
import bisect

from hypothesis import given, settings, strategies as st

import vmsim
from vmsim import PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS
from vmsim.mm._gap_tree import _gap_tree, _check_gap_tree

RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS
TOP = 1 << 47


class _V:
    __slots__ = ("vm_start", "vm_end", "_mt_node")

    def __init__(self, s, e):
        self.vm_start, self.vm_end, self._mt_node = s, e, None


class _MM:
    """Just what the gap tree and its checker read."""

    def __init__(self):
        self.mm_mt = []
        self._mt_gap = _gap_tree()


def _scan(vmas, low, high, size, topdown):
    """The gaps (raw, as the maple tree's empty ranges) clamped to [low, high), one by
    one: the highest gap's end or the lowest gap's start that holds size bytes."""
    gaps, prev = [], 0
    for v in vmas:
        gaps.append((prev, v.vm_start))
        prev = v.vm_end
    gaps.append((prev, TOP))
    fits = [(max(s, low), min(e, high)) for s, e in gaps
            if min(e, high) - max(s, low) >= size]
    if not fits:
        return None
    return fits[-1][1] if topdown else fits[0][0]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 63), st.integers(1, 4)), max_size=40),
       st.lists(st.integers(0, 39), max_size=20),
       st.lists(st.tuples(st.integers(0, 80), st.integers(0, 80), st.integers(1, 12)),
                min_size=1, max_size=12))
def test_gap_tree_searches_match_a_scan(adds, removes, queries):
    """Insert and remove VMAs in random order (pages of 4 KiB), then every highest /
    lowest query answers as a scan of all gaps does; the checker agrees the tree holds
    every gap and subtree maximum."""
    mm = _MM()
    taken = set()
    for page, npages in adds:
        pages = set(range(page, page + npages))
        if pages & taken:
            continue
        taken |= pages
        v = _V(page << 12, (page + npages) << 12)
        i = bisect.bisect_left([x.vm_start for x in mm.mm_mt], v.vm_start)
        mm.mm_mt.insert(i, v)
        mm._mt_gap._insert(v, v.vm_start - (mm.mm_mt[i - 1].vm_end if i else 0))
        if i + 1 < len(mm.mm_mt):
            n = mm.mm_mt[i + 1]
            mm._mt_gap._set_gap(n, n.vm_start - v.vm_end)
    for r in removes:
        if r >= len(mm.mm_mt):
            continue
        v = mm.mm_mt.pop(r)
        mm._mt_gap._delete(v)
        if r < len(mm.mm_mt):
            n = mm.mm_mt[r]
            mm._mt_gap._set_gap(n, n.vm_start - (mm.mm_mt[r - 1].vm_end if r else 0))
    errors = []
    _check_gap_tree(mm, errors.append, "mm")
    assert not errors
    last = mm.mm_mt[-1].vm_end if mm.mm_mt else 0
    for lo, hi, size in queries:
        low, high, size = lo << 12, hi << 12, size << 12
        assert mm._mt_gap._area_highest(last, low, high, size) == _scan(mm.mm_mt, low, high, size, True)
        assert mm._mt_gap._area_lowest(last, low, high, size) == _scan(mm.mm_mt, low, high, size, False)


@settings(max_examples=12, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["map", "unmap", "protect"]),
                          st.integers(0, 200), st.integers(1, 8)), max_size=20))
def test_mmap_null_takes_the_highest_gap_below_mmap_base(ops):
    """mmap(NULL) of a small anonymous range lands at the end of the highest gap below
    mmap_base that holds it (unmapped_area_topdown), after random maps, unmaps and
    mprotect splits just below the vDSO."""
    machine = vmsim.Machine(memory="64M")
    p = machine.spawn()
    mm = p.mm
    base = mm.mmap_base
    below = min(v.vm_start for v in mm.mm_mt if v.vm_start > 1 << 40)   # under the vDSO
    for op, page, npages in ops:
        addr, length = below - ((page + npages) << 12), npages << 12
        try:
            if op == "map":
                p.mmap(addr, length, RW, ANON | 0x100000)      # MAP_FIXED_NOREPLACE
            elif op == "unmap":
                p.munmap(addr, length)
            else:
                p.mprotect(addr, length, PROT_READ)
        except OSError:                                         # EEXIST, ENOMEM
            pass
        for n in (1, 3):
            want = _scan(mm.mm_mt, max(4096, machine.k.mmap_min_addr), base, n << 12, True)
            got = p.mmap(0, n << 12, RW | 0x4, ANON)           # PROT_EXEC: no merging
            assert got == want - (n << 12)
            p.munmap(got, n << 12)
    machine.check()


def test_the_largest_gaps_are_kept_out_of_the_maxima():
    """The three largest gaps (at the time they grew) are the tree's big gaps, counted
    in no subtree maximum; searches still find them, and a bigger gap higher up
    beats them."""
    mm = _MM()
    t = mm._mt_gap
    page = 0
    for gap in (1, 5, 2, 8, 3):                 # in address order: only the new gap changes
        page += gap
        v = _V(page << 12, (page + 1) << 12)
        mm.mm_mt.append(v)
        t._insert(v, gap << 12)
        page += 1
    assert sorted(b.gap >> 12 for b in t.big) == [3, 5, 8]
    assert t.root.max == 2 << 12                # the largest gap left in the maxima
    errors = []
    _check_gap_tree(mm, errors.append, "mm")
    assert not errors
    last = mm.mm_mt[-1].vm_end
    for size in range(1, 10):
        for low, high in ((0, 40 << 12), (7 << 12, 30 << 12), (0, 12 << 12)):
            assert t._area_highest(last, low, high, size << 12) == \
                _scan(mm.mm_mt, low, high, size << 12, True)
            assert t._area_lowest(last, low, high, size << 12) == \
                _scan(mm.mm_mt, low, high, size << 12, False)
    # A gap that grows past the smallest big one takes its place: the VMA at pages
    # 10-11 moves to 12-13 (its gap 2 -> 4 pages, the next one's 8 -> 6).
    v, nxt = mm.mm_mt[2], mm.mm_mt[3]
    v.vm_start, v.vm_end = 12 << 12, 13 << 12
    v._mt_node.start, v._mt_node.end = v.vm_start, v.vm_end
    t._set_gap(v, 4 << 12)
    t._set_gap(nxt, 6 << 12)
    assert sorted(b.gap >> 12 for b in t.big) == [4, 5, 6]
    errors = []
    _check_gap_tree(mm, errors.append, "mm")
    assert not errors


def test_checker_catches_gap_tree_corruption():
    """The checker recomputes every maximum (big gaps left out), the bounds copied into
    the nodes and the big slots: each corruption is reported."""
    machine = vmsim.Machine(memory="64M")
    p = machine.spawn()
    a = p.mmap(0, 16 << 12, RW, ANON)
    for j in range(0, 16, 2):
        p.munmap(a + (j << 12), 4096)
    mm = p.mm
    t = mm._mt_gap

    def errors():
        out = []
        _check_gap_tree(mm, out.append, "mm")
        return out

    assert not errors()
    big = next(b for b in t.big if b is not None)
    big.mgap = big.gap                          # a big gap counted in the maxima
    assert any("counts gap" in e and "(big)" in e for e in errors())
    big.mgap = -1
    node = mm.mm_mt[3]._mt_node
    node.start += 4096
    assert any("holds bounds" in e for e in errors())
    node.start -= 4096
    node.max += 1
    assert any("gap tree max" in e for e in errors())
    node.max -= 1
    i = t.big.index(big)
    t.big[i] = None                             # out of the maxima, but no big
    assert any("counts gap" in e for e in errors())
    t.big[i] = big
    assert not errors()
    machine.check()
