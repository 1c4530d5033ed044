"""The page cache's index of folios, shaped like the kernel's xarray (lib/xarray.c,
include/linux/xarray.h): leaf nodes of XA_CHUNK_SIZE = 64 slots, each slot a folio's
head PFN or empty, with the node's count of used slots (xa_node->count).

vmsim-only (``_XArray``): the kernel's tree of nodes above the leaves is a dict from
``index >> XA_CHUNK_SHIFT`` to the leaf, and a slot holds the PFN a page's index maps
to (a large folio fills one slot per page, as the dict it replaces did; the kernel's
multi-index entry is one canonical slot plus sibling entries). A leaf is a 65-entry
``array('i')``: slots 0..63 (-1 = empty), then the count; a leaf that must hold an
entry past 2**31 - 1 (a PFN of a machine over 8 TiB) is widened to ``array('q')``.
About 5 B per cached page (a dict entry with its int key and value was ~70-100 B, an
int64 leaf ~9); lookups return Python ints. Iteration is in ascending index order, as
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
    __slots__ = ("nodes", "count")

    def __init__(self):
        self.nodes = {}                    # index >> 6 -> leaf (65 int32: 64 slots, count)
        self.count = 0                     # used slots, all leaves

    # --- one index (literal 6, 63, 64: XA_CHUNK_SHIFT, XA_CHUNK_MASK, the count slot;
    # no global lookups on the fault path) ----------------------------------------------
    def get(self, index, default=None):
        """xa_load()."""
        node = self.nodes.get(index >> 6)
        if node is None:
            return default
        v = node[index & 63]
        return default if v < 0 else v

    def __getitem__(self, index):
        node = self.nodes.get(index >> 6)
        if node is not None:
            v = node[index & 63]
            if v >= 0:
                return v
        raise KeyError(index)

    def __contains__(self, index):
        node = self.nodes.get(index >> 6)
        return node is not None and node[index & 63] >= 0

    def __setitem__(self, index, pfn):
        """xa_store() of one index."""
        if pfn < 0:
            raise ValueError(f"xarray: negative entry {pfn}")
        b = index >> 6
        node = self.nodes.get(b)
        if node is None:
            node = self.nodes[b] = array("i", _EMPTY)
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

    def _widen(self, b: int):
        """Leaf ``b`` as int64 slots, for an entry past 2**31 - 1."""
        node = self.nodes[b] = array("q", self.nodes[b])
        return node

    def __delitem__(self, index):
        """xa_erase() of a present index; an emptied leaf is freed (xas_delete_node)."""
        b = index >> 6
        node = self.nodes.get(b)
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
        """xa_store_range(): every index of [first, last] holds ``pfn``."""
        if pfn < 0:
            raise ValueError(f"xarray: negative entry {pfn}")
        nodes = self.nodes
        i = first
        while i <= last:
            b = i >> XA_CHUNK_SHIFT
            s = i & XA_CHUNK_MASK
            e = min(XA_CHUNK_SIZE, s + last - i + 1)
            node = nodes.get(b)
            if node is None:
                node = nodes[b] = array("i", _EMPTY)
                new = e - s
            else:
                new = node[s:e].count(-1)
            if pfn > _WIDE and node.typecode == "i":
                node = self._widen(b)
            node[s:e] = array(node.typecode, [pfn]) * (e - s)
            node[_COUNT] += new
            self.count += new
            i += e - s

    def erase_range(self, first: int, last: int) -> int:
        """Empty every slot of [first, last]; the number that held an entry."""
        nodes = self.nodes
        gone = 0
        i = first
        while i <= last:
            b = i >> XA_CHUNK_SHIFT
            s = i & XA_CHUNK_MASK
            e = min(XA_CHUNK_SIZE, s + last - i + 1)
            node = nodes.get(b)
            if node is not None:
                n = (e - s) - node[s:e].count(-1)
                if n:
                    gone += n
                    if node[_COUNT] == n:
                        del nodes[b]
                    else:
                        node[_COUNT] -= n
                        node[s:e] = array(node.typecode, [-1]) * (e - s)
            i += e - s
        self.count -= gone
        return gone

    def any_in(self, first: int, last: int) -> bool:
        """xa_find(XA_PRESENT) found something in [first, last]."""
        nodes = self.nodes
        if last - first >= XA_CHUNK_SIZE * len(nodes):
            return any(self._span(b, first, last) for b in nodes
                       if first >> XA_CHUNK_SHIFT <= b <= last >> XA_CHUNK_SHIFT)
        for b in range(first >> XA_CHUNK_SHIFT, (last >> XA_CHUNK_SHIFT) + 1):
            if b in nodes and self._span(b, first, last):
                return True
        return False

    def _span(self, b: int, first: int, last: int) -> bool:
        node = self.nodes[b]
        lo = max(first - (b << XA_CHUNK_SHIFT), 0)
        hi = min(last - (b << XA_CHUNK_SHIFT), XA_CHUNK_MASK) + 1
        return node[lo:hi].count(-1) != hi - lo

    def _blocks(self, first: int, last: int):
        nodes = self.nodes
        b0, b1 = first >> XA_CHUNK_SHIFT, last >> XA_CHUNK_SHIFT
        if b1 - b0 >= len(nodes):
            return sorted(b for b in nodes if b0 <= b <= b1)
        return [b for b in range(b0, b1 + 1) if b in nodes]

    def items_in(self, first: int, last: int):
        """(index, pfn) of each present index of [first, last], in index order (a
        generator: the array must not change while it runs)."""
        nodes = self.nodes
        for b in self._blocks(first, last):
            base = b << XA_CHUNK_SHIFT
            lo = max(first - base, 0)
            hi = min(last - base, XA_CHUNK_MASK) + 1
            for s, v in enumerate(nodes[b][lo:hi], lo):
                if v >= 0:
                    yield base + s, v

    def entries_in(self, first: int, last: int):
        """xas_for_each() over [first, last]: (first index, pfn) of each entry, in
        index order, a run of slots naming one PFN (a large folio's multi-index entry)
        once per leaf it spans (a generator: the array must not change while it
        runs)."""
        nodes = self.nodes
        for b in self._blocks(first, last):
            base = b << XA_CHUNK_SHIFT
            lo = max(first - base, 0)
            hi = min(last - base, XA_CHUNK_MASK) + 1
            prev = -1
            for s, v in enumerate(nodes[b][lo:hi], lo):
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
        nodes = self.nodes
        if not nodes:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        blocks = sorted(nodes)
        leaves = [nodes[b] for b in blocks]
        if all(n.typecode == "i" for n in leaves):
            a = np.frombuffer(b"".join(n.tobytes() for n in leaves), np.int32)
        else:
            a = np.concatenate([np.frombuffer(n, np.int32 if n.typecode == "i" else np.int64)
                                for n in leaves])
        a = a.astype(np.int64).reshape(len(blocks), XA_CHUNK_SIZE + 1)[:, :XA_CHUNK_SIZE]
        r, s = np.nonzero(a >= 0)
        return (np.asarray(blocks, np.int64)[r] << XA_CHUNK_SHIFT) + s, a[r, s]

    def _check(self) -> list:
        """The structure's own invariants: each leaf's count is its used slots, none is
        empty, the total is the sum, no slot holds a negative other than -1."""
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
            total += used
        if self.count != total:
            bad.append(f"count {self.count}, {total} slots used")
        return bad

    def __repr__(self):
        return f"_XArray({dict(self.items())!r})"
