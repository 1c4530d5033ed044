"""vmsim.mm._xarray._XArray, the page cache's i_pages: the same answers as a plain dict
{index: pfn} on random operation sequences, leaves freed when emptied, and the debug
checker catching a corrupted one."""
import re

import pytest
from hypothesis import given, settings, strategies as st

from vmsim.mm._xarray import _XArray, XA_CHUNK_SIZE

# Indices cluster in a few leaves (and cross leaf boundaries) so stores, erases and
# ranges overlap; a few far ones make sparse trees.
IDX = st.one_of(st.integers(0, 300), st.integers(0, 1 << 40))
PFN = st.integers(0, (1 << 40) - 1)
OPS = st.lists(st.one_of(
    st.tuples(st.just("set"), IDX, PFN),
    st.tuples(st.just("del"), IDX, st.just(0)),
    st.tuples(st.just("store_range"), IDX, st.integers(0, 200), PFN),
    st.tuples(st.just("erase_range"), IDX, st.integers(0, 200)),
    st.tuples(st.just("query"), IDX, st.integers(0, 200)),
), max_size=60)


def _agree(xa, d):
    assert len(xa) == len(d) and bool(xa) == bool(d)
    assert xa.items() == sorted(d.items())
    assert xa.keys() == sorted(d) and list(xa) == sorted(d)
    assert xa.values() == [v for _, v in sorted(d.items())]
    idx, pf = xa._arrays()
    assert idx.tolist() == sorted(d) and pf.tolist() == [v for _, v in sorted(d.items())]
    assert xa._check() == []
    # A leaf exists only while it holds something (xas_delete_node), a chunk entry
    # never above a leaf.
    assert set(xa.nodes) | set(xa.multi) == {i // XA_CHUNK_SIZE for i in d}
    assert not set(xa.nodes) & set(xa.multi)


@settings(max_examples=80, deadline=None)
@given(OPS)
def test_xarray_behaves_as_a_dict(ops):
    xa, d = _XArray(), {}
    for op in ops:
        kind, i = op[0], op[1]
        if kind == "set":
            xa[i] = op[2]
            d[i] = op[2]
        elif kind == "del":
            if i in d:
                del xa[i]
                del d[i]
            else:
                with pytest.raises(KeyError):
                    del xa[i]
        elif kind == "store_range":
            xa.store_range(i, i + op[2], op[3])
            d.update(dict.fromkeys(range(i, i + op[2] + 1), op[3]))
        elif kind == "erase_range":
            gone = [j for j in range(i, i + op[2] + 1) if j in d]
            assert xa.erase_range(i, i + op[2]) == len(gone)
            for j in gone:
                del d[j]
        else:
            last = i + op[2]
            assert xa.any_in(i, last) == any(i <= j <= last for j in d)
            want = sorted((j, v) for j, v in d.items() if i <= j <= last)
            assert list(xa.items_in(i, last)) == want
            # One per run of equal entries inside a leaf (a multi-index entry's slots).
            assert list(xa.entries_in(i, last)) == \
                [(j, v) for j, v in want if j == i or j % XA_CHUNK_SIZE == 0 or d.get(j - 1) != v]
            for j in (i, last):
                assert xa.get(j) == d.get(j) and xa.get(j, -1) == d.get(j, -1)
                assert (j in xa) == (j in d)
                if j in d:
                    assert xa[j] == d[j] and type(xa[j]) is int
                else:
                    with pytest.raises(KeyError):
                        xa[j]
        _agree(xa, d)


def test_xarray_ranges_span_leaves_and_free_them():
    xa = _XArray()
    xa.store_range(60, 60 + 511, 7)              # 512 pages from the middle of a leaf
    # Whole chunks are entries of the shift-6 node, the ends leaves.
    assert len(xa) == 512 and sorted(xa.nodes) == [0, 8] and sorted(xa.multi) == list(range(1, 8))
    assert xa.any_in(0, 60) and not xa.any_in(0, 59) and not xa.any_in(572, 1 << 30)
    assert list(xa.entries_in(0, 1 << 20)) == [(60, 7)] + [(64 * b, 7) for b in range(1, 9)]
    assert list(xa.entries_in(100, 1 << 20))[:2] == [(100, 7), (128, 7)]
    xa[130] = 8                                  # splits chunk 2 into a leaf (xas_split)
    assert 2 in xa.nodes and 2 not in xa.multi and xa[129] == 7 and xa[130] == 8
    assert len(xa) == 512 and xa._check() == []
    del xa[131]
    assert len(xa) == 511 and 131 not in xa and xa.erase_range(128, 191) == 63
    assert xa.erase_range(0, 1 << 20) == 512 - 64
    assert not xa and xa.nodes == {} and xa.multi == {}


def test_xarray_check_catches_corruption():
    xa = _XArray()
    xa.store_range(0, 99, 5)                     # a chunk entry for 0-63, a leaf for 64-99
    assert xa._check() == [] and list(xa.multi) == [0] and list(xa.nodes) == [1]
    xa.nodes[1][XA_CHUNK_SIZE] += 1              # the leaf's count
    assert xa._check() == ["node 0x1 count 37, 36 slots used"]
    xa.nodes[1][XA_CHUNK_SIZE] -= 1
    xa.count -= 1
    assert xa._check() == ["count 99, 100 slots used"]
    xa.count += 1
    xa.nodes[1][:XA_CHUNK_SIZE] = type(xa.nodes[1])(xa.nodes[1].typecode, [-1] * XA_CHUNK_SIZE)
    xa.nodes[1][XA_CHUNK_SIZE] = 0
    xa.count = 64
    assert xa._check() == ["node 0x1 is empty and not freed"]
    xa.nodes[1][3] = -3                          # a sibling of slot 0, which is empty
    assert xa._check() == ["node 0x1 slot 0x3 holds a sibling -3 outside any entry",
                           "node 0x1 count 0, 1 slots used", "node 0x1 nr_values 0, 1 value slots",
                           "count 64, 65 slots used", "nr_values 0, 1 value slots"]
    xa = _XArray()
    xa.store_range(0, 99, 5)
    xa.multi[1] = 5                              # a chunk entry above a leaf
    xa.count += 64
    assert xa._check() == ["node 0x1 sits below a multi-index entry"]
    del xa.multi[1]
    xa.multi[0] = -1
    xa.count -= 64
    assert xa._check() == ["multi-index entry 0x0 holds -1"]
    xa.multi[0] = 5
    xa.nodes[1] = type(xa.nodes[1])("b", [0] * (XA_CHUNK_SIZE + 2))
    assert xa._check()[0] == "node 0x1 has 66 slots of type 'b'"


def test_xarray_leaves_are_int32_until_an_entry_needs_more():
    """A leaf holds 32-bit slots (~5 B a cached page); a PFN past 2**31 - 1 (a machine
    over 8 TiB) widens only its leaf, keeping what the leaf held."""
    xa = _XArray()
    xa.store_range(0, 127, 5)
    assert [n.typecode for n in xa.nodes.values()] == [] and xa.multi == {0: 5, 1: 5}
    xa[2] = 5
    xa[70] = (1 << 31) - 1
    assert xa.nodes[1].typecode == "i"
    xa[71] = 1 << 31
    assert xa.nodes[0].typecode == "i" and xa.nodes[1].typecode == "q"
    xa.store_range(3, 4, 1 << 40)
    assert xa.nodes[0].typecode == "q"
    assert xa[70] == (1 << 31) - 1 and xa[71] == 1 << 31 and xa[4] == 1 << 40 and xa[5] == 5
    assert len(xa) == 128 and xa._check() == []
    idx, pf = xa._arrays()
    assert pf.tolist() == [5] * 3 + [1 << 40] * 2 + [5] * 65 + [(1 << 31) - 1, 1 << 31] + [5] * 56
    xa.store_range(192, 255, 1 << 40)            # a chunk entry past int32
    xa[200] = 1                                  # its split leaf is int64
    assert xa.nodes[3].typecode == "q" and xa[199] == 1 << 40 and xa[200] == 1
    assert len(xa) == 192 and xa._check() == []


def test_debug_vm_catches_a_corrupted_i_pages(machine):
    p = machine.spawn()
    machine.check()
    am = machine.k.vfs.exe_inode.i_mapping
    assert am.nrpages
    node = next(iter(am.i_pages.nodes.values()))
    node[XA_CHUNK_SIZE] += 1
    with pytest.raises(AssertionError, match=r"page cache: mapping \d+ i_pages: node 0x[0-9a-f]+ "
                       r"count \d+, \d+ slots used"):
        machine.check()
    node[XA_CHUNK_SIZE] -= 1
    am.i_pages.count += 1
    with pytest.raises(AssertionError, match=r"i_pages: count \d+, \d+ slots used"):
        machine.check()
    am.i_pages.count -= 1
    machine.check()
    am.i_pages.multi[1 << 30] = -1               # a chunk entry that is no PFN
    am.i_pages.count += XA_CHUNK_SIZE
    with pytest.raises(AssertionError, match=r"i_pages: multi-index entry 0x40000000 holds -1"):
        machine.check()
    del am.i_pages.multi[1 << 30]
    am.i_pages.count -= XA_CHUNK_SIZE
    machine.check()
    p.exit()


def test_file_fault_traces_show_no_xarray_methods(machine):
    """The tracer leaves the vmsim-only structure out: a file fault's tree is kernel
    functions (filemap_fault, filemap_map_pages, ...) without get() or any_in()."""
    from vmsim import PROT_READ, MAP_PRIVATE
    from vmsim.trace import function_graph
    p = machine.spawn()
    fd = p.open("/tmp/xa", 0o102, 0o644)                  # O_RDWR | O_CREAT
    p.pwrite(fd, b"x" * (64 << 12), 0)
    p.fsync(fd)
    machine.write_file("/proc/sys/vm/drop_caches", "3")
    a = p.mmap(0, 64 << 12, PROT_READ, MAP_PRIVATE, fd, 0)
    with function_graph(machine) as tr:
        p.read(a, 1)
        p.read(a + (40 << 12), 1)
    names = set().union(*(f.paths for f in tr.faults))
    assert {"filemap_fault", "filemap_map_pages"} <= names
    methods = {n for n in vars(_XArray) if not n.startswith("__")}
    assert not names & methods and not re.search(r"\b(get|store_range|any_in)\(", tr.text())
    p.exit()


# --- value entries (shadows) beside folios --------------------------------------------
VIDX = st.integers(0, 1100)
ORDER = st.integers(0, 9)
VALUE = st.integers(0, (1 << 62) - 1)
VOPS = st.lists(st.one_of(
    st.tuples(st.just("folio"), VIDX, ORDER, st.integers(0, (1 << 33) - 1)),
    st.tuples(st.just("value"), VIDX, ORDER, VALUE),
    st.tuples(st.just("split"), VIDX, ORDER),
    st.tuples(st.just("erase"), VIDX, st.integers(0, 300)),
    st.tuples(st.just("query"), VIDX, st.integers(0, 300)),
), max_size=40)


class _Model:
    """A plain reference: folios by index, value entries by first index (order, entry)."""

    def __init__(self):
        self.fol, self.val = {}, {}

    def entry_at(self, i):
        for first, (o, e) in self.val.items():
            if first <= i < first + (1 << o):
                return first, o, e
        return None

    def cuts(self, first, last):
        """A value entry that [first, last] covers only in part."""
        return any(f < first <= f + (1 << o) - 1 or f <= last < f + (1 << o) - 1
                   for f, (o, _) in self.val.items())

    def clear(self, first, last):
        for i in range(first, last + 1):
            self.fol.pop(i, None)
        for f in [f for f in self.val if first <= f <= last]:
            del self.val[f]


def _vagree(xa, m):
    from vmsim.mm._xarray import xa_is_value
    assert xa._check() == []
    assert xa.items() == sorted(m.fol.items()) and len(xa) == len(m.fol)
    nv = sum(1 << o for o, _ in m.val.values())
    assert xa.nr_values == nv and xa.count == len(m.fol) + nv
    assert xa.values_in(0, (1 << 64) - 1) == [(f, o, e) for f, (o, e) in sorted(m.val.items())]
    for f, (o, e) in m.val.items():
        assert xa_is_value(e)
        for i in {f, f + (1 << o) - 1, f + (1 << o) // 2}:
            assert xa.load(i) == e and xa.get_order(i) == o and xa.get(i) is None and i not in xa
    idx, pf = xa._arrays()
    assert idx.tolist() == sorted(m.fol)
    # A leaf is int64 when an entry needs it.
    for b, node in xa.nodes.items():
        if any(not -(1 << 31) <= v < 1 << 31 for v in node[:XA_CHUNK_SIZE]):
            assert node.typecode == "q", b


@settings(max_examples=120, deadline=None)
@given(VOPS)
def test_xarray_value_entries_match_a_model(ops):
    """Folios and multi-index value entries (canonical slot plus siblings, in leaves and
    in the shift-6 node's chunk slots) stored, split, erased and loaded in any order
    agree with a plain model; a store or erase that would cut a value entry in part
    is refused (the page cache splits it first) and changes nothing."""
    from vmsim.mm._xarray import xa_mk_value
    xa, m = _XArray(), _Model()
    for op in ops:
        kind, i = op[0], op[1]
        if kind in ("folio", "value"):
            o = op[2]
            first, last = i & ~((1 << o) - 1), (i | ((1 << o) - 1))
            before = (xa.items(), xa.values_in(0, 1 << 20))
            if m.cuts(first, last):
                with pytest.raises(ValueError, match="cuts the order"):
                    if kind == "value":
                        xa.store_value(first, o, xa_mk_value(op[3]))
                    elif o:
                        xa.store_range(first, last, op[3])
                    else:
                        xa[first] = op[3]
                assert (xa.items(), xa.values_in(0, 1 << 20)) == before
                continue
            m.clear(first, last)
            if kind == "value":
                xa.store_value(first, o, xa_mk_value(op[3]))
                m.val[first] = (o, xa_mk_value(op[3]))
            else:
                if o:
                    xa.store_range(first, last, op[3])
                else:
                    xa[first] = op[3]
                m.fol.update(dict.fromkeys(range(first, last + 1), op[3]))
        elif kind == "split":
            hit = m.entry_at(i)
            if hit is None or hit[1] == 0:
                continue
            f, o, e = hit
            new = min(op[2], o - 1)
            xa.split_value(i, o, new)
            del m.val[f]
            for p in range(f, f + (1 << o), 1 << new):
                m.val[p] = (new, e)
        elif kind == "erase":
            last = i + op[2]
            if m.cuts(i, last):
                with pytest.raises(ValueError, match="cuts the order"):
                    xa.erase_range(i, last)
                continue
            n = sum(1 for j in m.fol if i <= j <= last) + \
                sum(1 << o for f, (o, _) in m.val.items() if i <= f <= last)
            assert xa.erase_range(i, last) == n
            m.clear(i, last)
        else:
            last = i + op[2]
            assert xa.any_in(i, last) == any(i <= j <= last for j in m.fol)
            want = [(f, o, e) for f, (o, e) in sorted(m.val.items())
                    if f <= last and f + (1 << o) - 1 >= i]
            assert xa.values_in(i, last) == want
            assert list(xa.items_in(i, last)) == sorted((j, v) for j, v in m.fol.items()
                                                        if i <= j <= last)
        _vagree(xa, m)


def test_value_entry_encoding_keeps_the_kernels_bits():
    """A value entry is the complement of the kernel's (v << 1) | 1 and a sibling the
    complement of (offset << 2) | 2: negative, so a PFN (>= 0) is never one, with the
    kernel's low tag bits inverted; -1 (empty) is the complement of NULL."""
    from vmsim.mm._xarray import (xa_mk_value, xa_to_value, xa_is_value, xa_mk_sibling,
                                  xa_to_sibling, xas_try_split_min_order)
    for v in (0, 1, 12345 << 27 | 1, (1 << 62) - 1):
        e = xa_mk_value(v)
        assert e == ~((v << 1) | 1) and e < -1 and xa_to_value(e) == v and xa_is_value(e)
        assert -(1 << 63) <= e
    for off in (0, 1, 63):
        s = xa_mk_sibling(off)
        assert s == ~((off << 2) | 2) and s < -1 and xa_to_sibling(s) == off
        assert not xa_is_value(s)
    assert not any(xa_is_value(x) for x in (None, -1, 0, 1, 2, 3, 1 << 40))
    # lib/xarray.c: one tree level a step (6 -> 5 makes a leaf; 9 -> 6 stays in the node).
    assert [xas_try_split_min_order(o) for o in range(13)] == [0, 0, 0, 0, 0, 0, 5, 6, 6, 6, 6, 6, 11]
    xa = _XArray()
    with pytest.raises(ValueError):
        xa.store_value(0, 0, 5)                  # a PFN is no value entry
    with pytest.raises(ValueError):
        xa.store_value(0, 0, xa_mk_sibling(0))
    xa.store_value(0, 0, xa_mk_value(3))          # small values fit an int32 leaf
    assert xa.nodes[0].typecode == "i"
    xa.store_value(1, 0, xa_mk_value(1 << 40))
    assert xa.nodes[0].typecode == "q"
    xa[2] = 7
    xa.erase_range(1, 1)
    assert xa.nodes[0].typecode == "q"           # narrowed when no value entry is left
    xa.erase_range(0, 0)
    assert xa.nodes[0].typecode == "i" and xa[2] == 7 and xa._check() == []


def test_an_empty_range_meets_nothing():
    """[first, last] with first > last (a truncation of bytes inside one page asks for
    pages [start, end - 1] with end <= start) holds no entry, inside a chunk entry or a
    leaf alike."""
    from vmsim.mm._xarray import xa_mk_value
    xa = _XArray()
    xa.store_range(0, 63, 7)                      # a folio's chunk entry
    xa.store_value(64, 6, xa_mk_value(5))         # an order-6 value entry
    xa[130] = 9                                   # a leaf
    for first, last in ((10, 9), (66, 65), (131, 130), (200, 100)):
        assert xa.values_in(first, last) == [], (first, last)
        assert list(xa.entries_in(first, last)) == [] and list(xa.items_in(first, last)) == []
        assert not xa.any_in(first, last)
        assert xa.erase_range(first, last) == 0
    assert xa._check() == [] and xa.count == 129 and xa.nr_values == 64
