"""The page cache's index of folios, shaped like the kernel's xarray (lib/xarray.c,
include/linux/xarray.h): leaf nodes of XA_CHUNK_SIZE = 64 slots, each slot a folio's
head PFN or empty, with the node's count of used slots (xa_node->count).

vmsim-only (``_XArray``): the kernel's tree of nodes above the leaves is a dict from
``index >> XA_CHUNK_SHIFT`` to the leaf, and a slot holds the PFN a page's index maps
to (a large folio fills one slot per page, as the dict it replaces did; the kernel's
multi-index entry is one canonical slot plus sibling entries). A leaf is a 65-entry
``array('i')``: slots 0..63 (-1 = empty), then the count; a leaf that must hold an
entry past 2**31 - 1 (a PFN of a machine over 8 TiB) is widened to ``array('q')``.
A range store that covers a whole 64-index chunk (a folio of order >= 6) puts
one entry in ``multi``, the slot of the shift-6 node above, as the kernel's
multi-index entry needs no leaf; a store or erase of part of it splits it into a
leaf first (xas_split). About 5 B per cached page in leaves, ~1 B in chunk entries (a
dict entry with its int key and value was ~70-100 B, an int64 leaf ~9); lookups
return Python ints. Iteration is in ascending index order, as
xa_for_each() walks.
"""
from array import array

XA_CHUNK_SHIFT = 6
XA_CHUNK_SIZE = 1 << XA_CHUNK_SHIFT
XA_CHUNK_MASK = XA_CHUNK_SIZE - 1
_COUNT = XA_CHUNK_SIZE                     # the slot holding xa_node->count
_LAST = (1 << 64) - 1                      # ULONG_MAX
_EMPTY = array("i", [-1] * XA_CHUNK_SIZE + [0])
_WIDE = 0x7FFFFFFF                         # the largest entry an array('i') leaf holds


class _XArray:
    """An index -> PFN map with the dict operations the page cache uses, plus range
    operations (xa_store_range, xa_find, xas_for_each over [first, last])."""
    __slots__ = ("nodes", "multi", "count")

    def __init__(self):
        self.nodes = {}                    # index >> 6 -> leaf (65 int32: 64 slots, count)
        # The shift-6 node's slots that hold an entry themselves: a multi-index entry
        # of order >= 6 covers whole 64-index chunks with no leaf below (xas_store of
        # a large folio, lib/xarray.c). index >> 6 -> PFN; never beside a leaf.
        self.multi = {}
        self.count = 0                     # used slots, leaves and chunks

    # --- one index (literal 6, 63, 64: XA_CHUNK_SHIFT, XA_CHUNK_MASK, the count slot;
    # no global lookups on the fault path) ----------------------------------------------
    def get(self, index, default=None):
        """xa_load()."""
        node = self.nodes.get(index >> 6)
        if node is None:
            return self.multi.get(index >> 6, default)
        v = node[index & 63]
        return default if v < 0 else v

    def __getitem__(self, index):
        node = self.nodes.get(index >> 6)
        if node is not None:
            v = node[index & 63]
            if v >= 0:
                return v
        else:
            v = self.multi.get(index >> 6)
            if v is not None:
                return v
        raise KeyError(index)

    def __contains__(self, index):
        node = self.nodes.get(index >> 6)
        if node is None:
            return index >> 6 in self.multi
        return node[index & 63] >= 0

    def __setitem__(self, index, pfn):
        """xa_store() of one index."""
        if pfn < 0:
            raise ValueError(f"xarray: negative entry {pfn}")
        b = index >> 6
        node = self.nodes.get(b)
        if node is None:
            node = self._split(b) if b in self.multi else self._new_leaf(b)
        s = index & 63
        old = node[s]
        try:
            node[s] = pfn
        except OverflowError:
            node = self._widen(b)
            node[s] = pfn
        if old < 0:
            node[64] += 1
            self.count += 1

    def _new_leaf(self, b: int):
        node = self.nodes[b] = array("i", _EMPTY)
        return node

    def _widen(self, b: int):
        """Leaf ``b`` as int64 slots, for an entry past 2**31 - 1."""
        node = self.nodes[b] = array("q", self.nodes[b])
        return node

    def _split(self, b: int):
        """The chunk entry of ``b`` as a leaf of 64 slots naming its PFN (xas_split)."""
        pfn = self.multi.pop(b)
        node = self.nodes[b] = array("q" if pfn > _WIDE else "i",
                                     [pfn] * XA_CHUNK_SIZE + [XA_CHUNK_SIZE])
        return node

    def __delitem__(self, index):
        """xa_erase() of a present index; an emptied leaf is freed (xas_delete_node)."""
        b = index >> 6
        node = self.nodes.get(b)
        if node is None and b in self.multi:
            node = self._split(b)
        s = index & 63
        if node is None or node[s] < 0:
            raise KeyError(index)
        node[s] = -1
        self.count -= 1
        if node[64] == 1:
            del self.nodes[b]
        else:
            node[64] -= 1

    def __len__(self):
        return self.count

    def __bool__(self):
        return self.count != 0

    # --- ranges ----------------------------------------------------------------------
    def store_range(self, first: int, last: int, pfn: int):
        """xa_store_range(): every index of [first, last] holds ``pfn``; a whole
        64-index chunk takes one slot of the shift-6 node."""
        if pfn < 0:
            raise ValueError(f"xarray: negative entry {pfn}")
        pfn = int(pfn)
        nodes, multi = self.nodes, self.multi
        i = first
        while i <= last:
            b = i >> XA_CHUNK_SHIFT
            s = i & XA_CHUNK_MASK
            e = min(XA_CHUNK_SIZE, s + last - i + 1)
            i += e - s
            node = nodes.get(b)
            if e - s == XA_CHUNK_SIZE:
                if node is not None:
                    new = XA_CHUNK_SIZE - node[_COUNT]
                    del nodes[b]
                else:
                    new = 0 if b in multi else XA_CHUNK_SIZE
                multi[b] = pfn
                self.count += new
                continue
            if node is None:
                if b in multi:
                    node = self._split(b)
                    new = 0
                else:
                    node = self._new_leaf(b)
                    new = e - s
            else:
                new = node[s:e].count(-1)
            if pfn > _WIDE and node.typecode == "i":
                node = self._widen(b)
            node[s:e] = array(node.typecode, [pfn]) * (e - s)
            node[_COUNT] += new
            self.count += new

    def erase_range(self, first: int, last: int) -> int:
        """Empty every slot of [first, last]; the number that held an entry."""
        nodes, multi = self.nodes, self.multi
        gone = 0
        for b in self._blocks(first, last):
            base = b << XA_CHUNK_SHIFT
            s = max(first - base, 0)
            e = min(last - base, XA_CHUNK_MASK) + 1
            node = nodes.get(b)
            if node is None:
                if e - s == XA_CHUNK_SIZE:
                    del multi[b]
                    gone += XA_CHUNK_SIZE
                    continue
                node = self._split(b)
            n = (e - s) - node[s:e].count(-1)
            if n:
                gone += n
                if node[_COUNT] == n:
                    del nodes[b]
                else:
                    node[_COUNT] -= n
                    node[s:e] = array(node.typecode, [-1]) * (e - s)
        self.count -= gone
        return gone

    def any_in(self, first: int, last: int) -> bool:
        """xa_find(XA_PRESENT) found something in [first, last]."""
        b0, b1 = first >> XA_CHUNK_SHIFT, last >> XA_CHUNK_SHIFT
        nodes, multi = self.nodes, self.multi
        if b1 - b0 >= len(nodes) + len(multi):
            return any(b0 <= b <= b1 for b in multi) or \
                any(self._span(b, first, last) for b in nodes if b0 <= b <= b1)
        for b in range(b0, b1 + 1):
            if b in multi or (b in nodes and self._span(b, first, last)):
                return True
        return False

    def _span(self, b: int, first: int, last: int) -> bool:
        node = self.nodes[b]
        lo = max(first - (b << XA_CHUNK_SHIFT), 0)
        hi = min(last - (b << XA_CHUNK_SHIFT), XA_CHUNK_MASK) + 1
        return node[lo:hi].count(-1) != hi - lo

    def _blocks(self, first: int, last: int):
        nodes, multi = self.nodes, self.multi
        b0, b1 = first >> XA_CHUNK_SHIFT, last >> XA_CHUNK_SHIFT
        if b1 - b0 >= len(nodes) + len(multi):
            return sorted(b for b in (*nodes, *multi) if b0 <= b <= b1)
        return [b for b in range(b0, b1 + 1) if b in nodes or b in multi]

    def _slots(self, b: int, lo: int, hi: int):
        node = self.nodes.get(b)
        return node[lo:hi] if node is not None else (self.multi[b],) * (hi - lo)

    def items_in(self, first: int, last: int):
        """(index, pfn) of each present index of [first, last], in index order (a
        generator: the array must not change while it runs)."""
        for b in self._blocks(first, last):
            base = b << XA_CHUNK_SHIFT
            lo = max(first - base, 0)
            hi = min(last - base, XA_CHUNK_MASK) + 1
            for s, v in enumerate(self._slots(b, lo, hi), lo):
                if v >= 0:
                    yield base + s, v

    def entries_in(self, first: int, last: int):
        """xas_for_each() over [first, last]: (first index, pfn) of each entry, in
        index order, a run of slots naming one PFN (a large folio's multi-index entry)
        once per 64-index chunk it spans (a generator: the array must not change
        while it runs)."""
        nodes, multi = self.nodes, self.multi
        for b in self._blocks(first, last):
            base = b << XA_CHUNK_SHIFT
            lo = max(first - base, 0)
            node = nodes.get(b)
            if node is None:
                yield base + lo, multi[b]
                continue
            hi = min(last - base, XA_CHUNK_MASK) + 1
            prev = -1
            for s, v in enumerate(node[lo:hi], lo):
                if v != prev:
                    prev = v
                    if v >= 0:
                        yield base + s, v

    # --- whole-array views (ascending index order) -----------------------------------
    def items(self):
        return list(self.items_in(0, _LAST))

    def keys(self):
        return [i for i, _ in self.items_in(0, _LAST)]

    def values(self):
        return [v for _, v in self.items_in(0, _LAST)]

    def __iter__(self):
        return iter(self.keys())

    def _arrays(self):
        """(indices, pfns) as int64 numpy arrays, ascending (for the debug checker)."""
        import numpy as np
        nodes, multi = self.nodes, self.multi
        if not nodes and not multi:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        blocks = sorted((*nodes, *multi))
        rows = [nodes.get(b) for b in blocks]
        if all(n is not None and n.typecode == "i" for n in rows):
            a = np.frombuffer(b"".join(n.tobytes() for n in rows), np.int32)
        else:
            a = np.concatenate([np.full(XA_CHUNK_SIZE + 1, multi[b], np.int64) if n is None
                                else np.frombuffer(n, np.int32 if n.typecode == "i" else np.int64)
                                for b, n in zip(blocks, rows)])
        a = a.astype(np.int64).reshape(len(blocks), XA_CHUNK_SIZE + 1)[:, :XA_CHUNK_SIZE]
        r, s = np.nonzero(a >= 0)
        return (np.asarray(blocks, np.int64)[r] << XA_CHUNK_SHIFT) + s, a[r, s]

    def _check(self) -> list:
        """The structure's own invariants: each leaf's count is its used slots, none is
        empty, no slot holds a negative other than -1, no chunk has both a leaf and a
        chunk entry, chunk entries are PFNs, the total is the sum."""
        bad = []
        total = 0
        for b in sorted(self.nodes):
            node = self.nodes[b]
            if len(node) != XA_CHUNK_SIZE + 1 or node.typecode not in "iq":
                bad.append(f"node {b:#x} has {len(node)} slots of type {node.typecode!r}")
                continue
            slots = node[:XA_CHUNK_SIZE]
            used = XA_CHUNK_SIZE - slots.count(-1)
            if any(v < -1 for v in slots):
                bad.append(f"node {b:#x} holds a negative entry other than -1")
            if node[_COUNT] != used:
                bad.append(f"node {b:#x} count {node[_COUNT]}, {used} slots used")
            if not used:
                bad.append(f"node {b:#x} is empty and not freed")
            if b in self.multi:
                bad.append(f"node {b:#x} sits below a multi-index entry")
            total += used
        for b, v in sorted(self.multi.items()):
            if not isinstance(v, int) or v < 0:
                bad.append(f"multi-index entry {b:#x} holds {v!r}")
        total += XA_CHUNK_SIZE * len(self.multi)
        if self.count != total:
            bad.append(f"count {self.count}, {total} slots used")
        return bad

    def __repr__(self):
        return f"_XArray({dict(self.items())!r})"
