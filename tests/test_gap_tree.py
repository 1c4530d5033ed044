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
