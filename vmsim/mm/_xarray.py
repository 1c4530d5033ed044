"""The page cache's index of folios and shadow entries, shaped like the kernel's xarray
(lib/xarray.c, include/linux/xarray.h): leaf nodes of XA_CHUNK_SIZE = 64 slots, each
slot a folio's head PFN, a value entry or empty, with the node's count of used slots
(xa_node->count) and of value slots (xa_node->nr_values).

vmsim-only (``_XArray``): the kernel's tree of nodes above the leaves is a dict from
``index >> XA_CHUNK_SHIFT`` to the leaf, and a slot holds the PFN a page's index maps
to (a large folio fills one slot per page, as the dict it replaces did; the kernel's
multi-index entry is one canonical slot plus sibling entries). A leaf is a 66-entry
``array('i')``: slots 0..63, then count and nr_values; a leaf that must hold an entry
outside int32 (a PFN of a machine over 8 TiB, most value entries) is widened to
``array('q')``, and narrowed again when its last value entry goes.
A range store that covers a whole 64-index chunk (a folio of order >= 6) puts
one entry in ``multi``, the slot of the shift-6 node above, as the kernel's
multi-index entry needs no leaf; a store or erase of part of it splits it into a
leaf first (xas_split). About 5 B per cached page in leaves, ~1 B in chunk entries (a
dict entry with its int key and value was ~70-100 B, an int64 leaf ~9); lookups
return Python ints. Iteration is in ascending index order, as
xa_for_each() walks.

Entries (a slot is a signed int; the kernel's low bits say what an entry is, here
the sign does): a folio is its head PFN (>= 0, where the kernel has an aligned
pointer, low bits 00); every other slot holds the bitwise complement of the kernel's
word: NULL (0) is -1, a value entry xa_mk_value(v) = (v << 1) | 1 is
~((v << 1) | 1), even and <= -2, and a sibling xa_mk_sibling(offset) =
(offset << 2) | 2 is ~((offset << 2) | 2), odd and <= -3. One sign test then
separates folios from everything else on the lookup path (``get`` is unchanged for
folios), the kernel's tag bits survive inverted (xa_is_value: the complement's low
bit), a value keeps the kernel's bits exactly (workingset.c's packing is unchanged),
and -1 stays "empty" so an emptied slot costs nothing to recognise. Value entries
have the kernel's shape: a multi-index value (a large folio's shadow) is a canonical
slot and siblings naming its offset, so xas_get_order() reads its order as the
kernel does; a folio's pages repeat its PFN (its order is the folio's). A value
needs v < 2**62 to fit an int64 slot (workingset's shadows: an eviction counter
below 2**35); the few below 2**30 fit an int32 leaf, the rest widen theirs (8 B an
evicted page, a leaf of only shadows 528 B for 64 pages: packing shadows into 32
bits would need the xarray to know workingset's layout).
"""
from array import array

XA_CHUNK_SHIFT = 6
XA_CHUNK_SIZE = 1 << XA_CHUNK_SHIFT
XA_CHUNK_MASK = XA_CHUNK_SIZE - 1
_COUNT = XA_CHUNK_SIZE                     # the slot holding xa_node->count
_VALUES = XA_CHUNK_SIZE + 1                # and xa_node->nr_values
_LAST = (1 << 64) - 1                      # ULONG_MAX
_EMPTY = array("i", [-1] * XA_CHUNK_SIZE + [0, 0])
_WIDE = 0x7FFFFFFF                         # the largest entry an array('i') leaf holds
_NARROW = -0x80000000                      # and the smallest


def xa_mk_value(v: int) -> int:
    """xa_mk_value(): the value entry for ``v`` (the complement of the kernel's
    ``(v << 1) | 1``: even, <= -2)."""
    return ~((v << 1) | 1)


def xa_to_value(entry: int) -> int:
    """xa_to_value()."""
    return ~entry >> 1


def xa_is_value(entry) -> bool:
    """xa_is_value(): the kernel's low tag bit, read through the complement."""
    return entry is not None and entry < -1 and not entry & 1


def xa_mk_sibling(offset: int) -> int:
    """xa_mk_sibling(): a sibling of the entry in slot ``offset`` (odd, <= -3)."""
    return ~((offset << 2) | 2)


def xa_to_sibling(entry: int) -> int:
    """xa_to_sibling(): the canonical slot's offset."""
    return ~entry >> 2


def _is_sibling(v) -> bool:
    return v is not None and v < -1 and v & 1 == 1


def xas_try_split_min_order(order: int) -> int:
    """xas_try_split_min_order(): the order a multi-index entry of ``order`` can be
    split to in one step (one level of the tree, with one new node)."""
    if order % XA_CHUNK_SHIFT == 0:
        return 0 if order == 0 else order - 1
    return order - order % XA_CHUNK_SHIFT


class _XArray:
    """An index -> entry map with the dict operations the page cache uses on its folios
    (``get``, ``in``, ``len``, iteration: folio entries only, as the kernel's callers
    that skip xa_is_value()), range operations (xa_store_range, xa_find, xas_for_each
    over [first, last]) and the value-entry operations of the page cache's shadows
    (``load``: xa_load; ``store_value``, ``get_order``, ``split_value``, ``values_in``)."""
    __slots__ = ("nodes", "multi", "count", "nr_values")

    def __init__(self):
        self.nodes = {}                    # index >> 6 -> leaf (66 ints: 64 slots, count, nr_values)
        # The shift-6 node's slots that hold an entry themselves: a multi-index entry
        # of order >= 6 covers whole 64-index chunks with no leaf below (xas_store of
        # a large folio, lib/xarray.c). index >> 6 -> PFN, or a value entry in the
        # first chunk and siblings in the others; never beside a leaf.
        self.multi = {}
        self.count = 0                     # used slots, leaves and chunks (64 a chunk)
        self.nr_values = 0                 # of which value entries and their siblings

    # --- one index (literal 6, 63, 64: XA_CHUNK_SHIFT, XA_CHUNK_MASK, the count slot;
    # no global lookups on the fault path) ----------------------------------------------
    def get(self, index, default=None):
        """The folio at ``index`` (xa_load() that is no value entry), else ``default``."""
        node = self.nodes.get(index >> 6)
        if node is None:
            v = self.multi.get(index >> 6)
            return default if v is None or v < 0 else v
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
            if v is not None and v >= 0:
                return v
        raise KeyError(index)

    def __contains__(self, index):
        node = self.nodes.get(index >> 6)
        if node is None:
            v = self.multi.get(index >> 6)
            return v is not None and v >= 0
        return node[index & 63] >= 0

    def load(self, index):
        """xa_load(): the folio's PFN, the value entry (a sibling read as its canonical
        entry) or None."""
        b = index >> 6
        node = self.nodes.get(b)
        if node is None:
            v = self.multi.get(b)
            if v is not None and v < -1 and v & 1:
                v = self.multi[(b & ~63) | xa_to_sibling(v)]
            return v
        v = node[index & 63]
        if v < 0:
            if v == -1:
                return None
            if v & 1:
                v = node[xa_to_sibling(v)]
        return v

    def __setitem__(self, index, pfn):
        """xa_store() of a folio at one index (a value entry there has order 0)."""
        if pfn < 0:
            raise ValueError(f"xarray: negative entry {pfn}")
        b = index >> 6
        node = self.nodes.get(b)
        if node is None:
            if b in self.multi:
                if self.multi[b] < 0:
                    self._whole(index, index)
                node = self._split(b)
            else:
                node = self._new_leaf(b)
        s = index & 63
        old = node[s]
        if old < -1:
            self._whole(index, index)
        try:
            node[s] = pfn
        except OverflowError:
            node = self._widen(b)
            node[s] = pfn
        if old < 0:
            if old == -1:
                node[64] += 1
                self.count += 1
            else:
                self._values_gone(b, node, 1)

    def _new_leaf(self, b: int):
        node = self.nodes[b] = array("i", _EMPTY)
        return node

    def _widen(self, b: int):
        """Leaf ``b`` as int64 slots, for an entry outside int32."""
        node = self.nodes[b] = array("q", self.nodes[b])
        return node

    def _values_gone(self, b: int, node, n: int):
        """``n`` value slots of leaf ``b`` were overwritten or emptied; its last one
        going narrows an int64 leaf whose entries all fit int32 again."""
        node[65] -= n
        self.nr_values -= n
        if not node[65] and node.typecode == "q" and b in self.nodes:
            slots = node[:XA_CHUNK_SIZE]
            if min(slots) >= _NARROW and max(slots) <= _WIDE:
                self.nodes[b] = array("i", node)

    def _split(self, b: int):
        """The chunk entry of ``b`` as a leaf of 64 slots (xas_split): a folio's PFN in
        each, an order-6 value entry as its canonical slot and 63 siblings."""
        v = self.multi[b]
        if v < 0:
            if v & 1 or _is_sibling(self.multi.get(b + 1)) and (b + 1) & 63:
                raise ValueError(f"xarray: chunk {b:#x} is part of a larger value entry")
            slots = [v] + [xa_mk_sibling(0)] * (XA_CHUNK_SIZE - 1) + [XA_CHUNK_SIZE] * 2
        else:
            slots = [v] * XA_CHUNK_SIZE + [XA_CHUNK_SIZE, 0]
        del self.multi[b]
        node = self.nodes[b] = array("q" if v > _WIDE or v < _NARROW else "i", slots)
        return node

    def __delitem__(self, index):
        """xa_erase() of a present folio index; an emptied leaf is freed (xas_delete_node)."""
        b = index >> 6
        node = self.nodes.get(b)
        if node is None and index in self:
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
        """The folio slots (the pages the cache holds: nrpages)."""
        return self.count - self.nr_values

    def __bool__(self):
        return self.count != self.nr_values

    # --- ranges ----------------------------------------------------------------------
    def _whole(self, first: int, last: int):
        """A store or erase of [first, last] must cover each value entry there whole
        (the page cache splits one first: xas_try_split); an empty range cuts none."""
        if first > last:
            return
        for i in (first, last):
            v = self.load(i)
            if v is not None and v < 0:
                o = self.get_order(i)
                c = i & ~((1 << o) - 1)
                if c < first or c + (1 << o) - 1 > last:
                    raise ValueError(f"xarray: [{first:#x}, {last:#x}] cuts the order-{o} "
                                     f"value entry at {c:#x}")

    def store_range(self, first: int, last: int, pfn: int):
        """xa_store_range() of a folio: every index of [first, last] holds ``pfn``; a
        whole 64-index chunk takes one slot of the shift-6 node."""
        if pfn < 0:
            raise ValueError(f"xarray: negative entry {pfn}")
        pfn = int(pfn)
        if self.nr_values:
            self._whole(first, last)
        nodes, multi = self.nodes, self.multi
        i = first
        while i <= last:
            b = i >> XA_CHUNK_SHIFT
            s = i & XA_CHUNK_MASK
            e = min(XA_CHUNK_SIZE, s + last - i + 1)
            i += e - s
            node = nodes.get(b)
            if e - s == XA_CHUNK_SIZE:
                vals = 0
                if node is not None:
                    new = XA_CHUNK_SIZE - node[_COUNT]
                    vals = node[_VALUES]
                    del nodes[b]
                elif b in multi:
                    new = 0
                    vals = XA_CHUNK_SIZE if multi[b] < 0 else 0
                else:
                    new = XA_CHUNK_SIZE
                multi[b] = pfn
                self.count += new
                self.nr_values -= vals
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
            vals = 0
            if node[_VALUES]:
                vals = sum(1 for v in node[s:e] if v < -1)
            if pfn > _WIDE and node.typecode == "i":
                node = self._widen(b)
            node[s:e] = array(node.typecode, [pfn]) * (e - s)
            node[_COUNT] += new
            self.count += new
            if vals:
                self._values_gone(b, node, vals)

    def erase_range(self, first: int, last: int) -> int:
        """Empty every slot of [first, last] (xas_store(NULL) of the entries there,
        whole); the number that held an entry."""
        if self.nr_values:
            self._whole(first, last)
        nodes, multi = self.nodes, self.multi
        gone = 0
        for b in self._blocks(first, last):
            base = b << XA_CHUNK_SHIFT
            s = max(first - base, 0)
            e = min(last - base, XA_CHUNK_MASK) + 1
            node = nodes.get(b)
            if node is None:
                if e - s == XA_CHUNK_SIZE:
                    if multi.pop(b) < 0:
                        self.nr_values -= XA_CHUNK_SIZE
                    gone += XA_CHUNK_SIZE
                    continue
                node = self._split(b)
            n = (e - s) - node[s:e].count(-1)
            if n:
                gone += n
                vals = sum(1 for v in node[s:e] if v < -1) if node[_VALUES] else 0
                if node[_COUNT] == n:
                    del nodes[b]
                    self.nr_values -= vals
                else:
                    node[_COUNT] -= n
                    node[s:e] = array(node.typecode, [-1]) * (e - s)
                    if vals:
                        self._values_gone(b, node, vals)
        self.count -= gone
        return gone

    def any_in(self, first: int, last: int) -> bool:
        """xa_find() met a folio in [first, last] (what makes a folio's insertion
        there -EEXIST; value entries do not)."""
        if first > last:
            return False
        b0, b1 = first >> XA_CHUNK_SHIFT, last >> XA_CHUNK_SHIFT
        nodes, multi = self.nodes, self.multi
        if b1 - b0 >= len(nodes) + len(multi):
            return any(b0 <= b <= b1 and v >= 0 for b, v in multi.items()) or \
                any(self._span(b, first, last) for b in nodes if b0 <= b <= b1)
        for b in range(b0, b1 + 1):
            v = multi.get(b)
            if v is not None and v >= 0 or (b in nodes and self._span(b, first, last)):
                return True
        return False

    def _span(self, b: int, first: int, last: int) -> bool:
        node = self.nodes[b]
        lo = max(first - (b << XA_CHUNK_SHIFT), 0)
        hi = min(last - (b << XA_CHUNK_SHIFT), XA_CHUNK_MASK) + 1
        return max(node[lo:hi]) >= 0

    def _blocks(self, first: int, last: int):
        """The chunks (leaves and chunk entries) with a slot in [first, last], ascending
        (none when first > last: a chunk entry would otherwise be met whole)."""
        if first > last:
            return []
        nodes, multi = self.nodes, self.multi
        b0, b1 = first >> XA_CHUNK_SHIFT, last >> XA_CHUNK_SHIFT
        if b1 - b0 >= len(nodes) + len(multi):
            return sorted(b for b in (*nodes, *multi) if b0 <= b <= b1)
        return [b for b in range(b0, b1 + 1) if b in nodes or b in multi]

    def _slots(self, b: int, lo: int, hi: int):
        node = self.nodes.get(b)
        return node[lo:hi] if node is not None else (self.multi[b],) * (hi - lo)

    def items_in(self, first: int, last: int):
        """(index, pfn) of each folio index of [first, last], in index order (a
        generator: the array must not change while it runs)."""
        for b in self._blocks(first, last):
            base = b << XA_CHUNK_SHIFT
            lo = max(first - base, 0)
            hi = min(last - base, XA_CHUNK_MASK) + 1
            for s, v in enumerate(self._slots(b, lo, hi), lo):
                if v >= 0:
                    yield base + s, v

    def entries_in(self, first: int, last: int):
        """xas_for_each() over [first, last] for the folios: (first index, pfn) of
        each folio entry, in index order, a run of slots naming one PFN (a large
        folio's multi-index entry) once per 64-index chunk it spans (a generator: the
        array must not change while it runs)."""
        nodes, multi = self.nodes, self.multi
        for b in self._blocks(first, last):
            base = b << XA_CHUNK_SHIFT
            lo = max(first - base, 0)
            node = nodes.get(b)
            if node is None:
                if multi[b] >= 0:
                    yield base + lo, multi[b]
                continue
            hi = min(last - base, XA_CHUNK_MASK) + 1
            prev = -1
            for s, v in enumerate(node[lo:hi], lo):
                if v != prev:
                    prev = v
                    if v >= 0:
                        yield base + s, v

    # --- value entries ---------------------------------------------------------------
    def get_order(self, index: int) -> int:
        """xas_get_order() of the value entry covering ``index``: its canonical slot
        followed by siblings at +1, +2, +4, ... (the shift-6 node's slots add 6)."""
        b = index >> 6
        node = self.nodes.get(b)
        if node is None:
            multi = self.multi
            off = b & 63
            if _is_sibling(multi.get(b)):
                off = xa_to_sibling(multi[b])
            base = b & ~63
            order = 0
            while off + (1 << order) < XA_CHUNK_SIZE and \
                    _is_sibling(multi.get(base | (off + (1 << order)))):
                order += 1
            return order + XA_CHUNK_SHIFT
        s = index & 63
        if _is_sibling(node[s]):
            s = xa_to_sibling(node[s])
        order = 0
        while s + (1 << order) < XA_CHUNK_SIZE and _is_sibling(node[s + (1 << order)]):
            order += 1
        return order

    def _erase_chunk(self, b: int):
        node = self.nodes.pop(b, None)
        if node is not None:
            self.count -= node[_COUNT]
            self.nr_values -= node[_VALUES]
        elif b in self.multi:
            self.count -= XA_CHUNK_SIZE
            if self.multi.pop(b) < 0:
                self.nr_values -= XA_CHUNK_SIZE

    def _write(self, b: int, s: int, vals: list):
        """Slots s.. of leaf ``b`` (made if absent) take ``vals``; the counts follow, an
        emptied leaf is freed."""
        node = self.nodes.get(b)
        if node is None:
            node = self._split(b) if b in self.multi else self._new_leaf(b)
        e = s + len(vals)
        old = node[s:e]
        used = (e - s) - old.count(-1)
        oldv = sum(1 for v in old if v < -1)
        newused = len(vals) - vals.count(-1)
        newv = sum(1 for v in vals if v < -1)
        try:
            node[s:e] = array(node.typecode, vals)
        except OverflowError:
            node = self._widen(b)
            node[s:e] = array("q", vals)
        node[_COUNT] += newused - used
        self.count += newused - used
        node[_VALUES] += newv
        self.nr_values += newv
        if not node[_COUNT]:
            del self.nodes[b]
            self.nr_values -= oldv
        elif oldv:
            self._values_gone(b, node, oldv)

    def _put_entries(self, first: int, order: int, entry: int, piece: int):
        """Slots [first, first + 2**order) hold ``entry`` as entries of order ``piece``
        (canonical slot, then siblings), replacing what was there."""
        nr = 1 << order
        if piece >= XA_CHUNK_SHIFT:
            for p in range(first >> 6, (first + nr) >> 6, 1 << (piece - 6)):
                for j in range(1 << (piece - 6)):
                    self._erase_chunk(p + j)
                    self.multi[p + j] = entry if j == 0 else xa_mk_sibling(p & 63)
            self.count += nr
            self.nr_values += nr
            return
        n = 1 << piece
        row = []
        for p in range(0, min(nr, XA_CHUNK_SIZE), n):
            row += [entry] + [xa_mk_sibling((first & 63) + p)] * (n - 1)
        for b in range(first >> 6, ((first + nr - 1) >> 6) + 1):
            if nr >= XA_CHUNK_SIZE and b in self.multi:
                self._erase_chunk(b)           # (part of a chunk entry: _write splits it)
            self._write(b, first & 63, row)

    def store_value(self, first: int, order: int, entry: int):
        """xas_store() of value entry ``entry`` with order ``order`` at ``first``
        (page_cache_delete() over an evicted folio's slots)."""
        if not xa_is_value(entry) or entry < -(1 << 63):
            raise ValueError(f"xarray: {entry} is no storable value entry")
        if self.nr_values:
            self._whole(first, first + (1 << order) - 1)
        self._put_entries(first, order, entry, order)

    def split_value(self, index: int, order: int, new_order: int):
        """xas_try_split() (and xas_split()): the value entry of ``order`` covering
        ``index`` becomes 2**(order - new_order) entries of ``new_order``, each
        holding its value."""
        first = index & ~((1 << order) - 1)
        self._put_entries(first, order, self.load(first), new_order)

    def values_in(self, first: int, last: int) -> list:
        """[(index, order, entry)] of each value entry with a slot in [first, last],
        in index order; ``index`` is its first (canonical) index, which may lie
        before ``first`` (xas_for_each() from a fresh state loads the entry covering
        its start)."""
        out = []
        done = -1                          # the end of the last entry listed
        nodes, multi = self.nodes, self.multi
        for b in self._blocks(first, last):
            base = b << XA_CHUNK_SHIFT
            node = nodes.get(b)
            if node is None:
                v = multi[b]
                if v >= 0 or base < done:
                    continue
                c = ((b & ~63) | xa_to_sibling(v)) << 6 if v & 1 else base
                o = self.get_order(base)
                out.append((c, o, self.multi[c >> 6]))
                done = c + (1 << o)
                continue
            if not node[_VALUES]:
                continue
            lo = max(first - base, 0)
            hi = min(last - base, XA_CHUNK_MASK) + 1
            for s in range(lo, hi):
                v = node[s]
                if v >= -1 or base + s < done:
                    continue
                c = xa_to_sibling(v) if v & 1 else s
                o = self.get_order(base + c)
                out.append((base + c, o, node[c]))
                done = base + c + (1 << o)
        return out

    # --- whole-array views (ascending index order; folio entries) --------------------
    def items(self):
        return list(self.items_in(0, _LAST))

    def keys(self):
        return [i for i, _ in self.items_in(0, _LAST)]

    def values(self):
        return [v for _, v in self.items_in(0, _LAST)]

    def __iter__(self):
        return iter(self.keys())

    def _arrays(self):
        """(indices, pfns) of the folio slots as int64 numpy arrays, ascending (for
        the debug checker)."""
        import numpy as np
        nodes, multi = self.nodes, self.multi
        if not nodes and not multi:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        blocks = sorted((*nodes, *multi))
        rows = [nodes.get(b) for b in blocks]
        width = XA_CHUNK_SIZE + 2
        if all(n is not None and n.typecode == "i" for n in rows):
            a = np.frombuffer(b"".join(n.tobytes() for n in rows), np.int32)
        else:
            a = np.concatenate([np.full(width, multi[b], np.int64) if n is None
                                else np.frombuffer(n, np.int32 if n.typecode == "i" else np.int64)
                                for b, n in zip(blocks, rows)])
        a = a.astype(np.int64).reshape(len(blocks), width)[:, :XA_CHUNK_SIZE]
        r, s = np.nonzero(a >= 0)
        return (np.asarray(blocks, np.int64)[r] << XA_CHUNK_SHIFT) + s, a[r, s]

    def _check(self) -> list:
        """The structure's own invariants: each leaf's count is its used slots and
        nr_values its value slots, none is empty, each value entry is a canonical slot
        at an offset aligned to its order followed by its siblings (no sibling
        elsewhere), no chunk has both a leaf and a chunk entry, chunk entries are PFNs
        or value entries of order >= 6 with their sibling chunks, the totals are the
        sums."""
        bad = []
        total = values = 0
        for b in sorted(self.nodes):
            node = self.nodes[b]
            if len(node) != XA_CHUNK_SIZE + 2 or node.typecode not in "iq":
                bad.append(f"node {b:#x} has {len(node)} slots of type {node.typecode!r}")
                continue
            slots = node[:XA_CHUNK_SIZE]
            used = XA_CHUNK_SIZE - slots.count(-1)
            nv = 0
            if min(slots) < -1:            # value entries (the common leaf has none)
                nv = sum(1 for v in slots if v < -1)
                bad += [f"node {b:#x} slot {t:#x} {m}" for t, m in _entries_bad(list(slots), 0)]
            if node[_COUNT] != used:
                bad.append(f"node {b:#x} count {node[_COUNT]}, {used} slots used")
            if node[_VALUES] != nv:
                bad.append(f"node {b:#x} nr_values {node[_VALUES]}, {nv} value slots")
            if not used:
                bad.append(f"node {b:#x} is empty and not freed")
            if b in self.multi:
                bad.append(f"node {b:#x} sits below a multi-index entry")
            total += used
            values += nv
        for b, v in sorted(self.multi.items()):
            if not isinstance(v, int) or v == -1:
                bad.append(f"multi-index entry {b:#x} holds {v!r}")
        for top in sorted({b >> 6 for b in self.multi}):
            row = [self.multi.get((top << 6) | j, -1) for j in range(XA_CHUNK_SIZE)]
            bad += [f"multi-index entry {(top << 6) | t:#x} {m}" for t, m in _entries_bad(row, 6)]
        total += XA_CHUNK_SIZE * len(self.multi)
        values += XA_CHUNK_SIZE * sum(1 for v in self.multi.values() if isinstance(v, int) and v < -1)
        if self.count != total:
            bad.append(f"count {self.count}, {total} slots used")
        if self.nr_values != values:
            bad.append(f"nr_values {self.nr_values}, {values} value slots")
        return bad

    def __repr__(self):
        return f"_XArray({dict(self.items())!r}, values={self.values_in(0, _LAST)!r})"


def _entries_bad(row: list, shift: int) -> list:
    """[(slot, what is wrong)] with the value entries of one node's 64 slots: a
    sibling outside an entry, an entry not aligned to its order, a sibling naming
    another slot."""
    bad = []
    s = 0
    while s < XA_CHUNK_SIZE:
        v = row[s]
        if v >= -1:
            s += 1
            continue
        if v & 1:
            bad.append((s, f"holds a sibling {v} outside any entry"))
            s += 1
            continue
        order = 0
        while s + (1 << order) < XA_CHUNK_SIZE and _is_sibling(row[s + (1 << order)]):
            order += 1
        if s & ((1 << order) - 1):
            bad.append((s, f"holds a value entry of order {order + shift} not aligned to it"))
        for t in range(s + 1, s + (1 << order)):
            if row[t] != xa_mk_sibling(s):
                bad.append((t, f"holds {row[t]}, not a sibling of slot {s:#x}"))
                break
        s += 1 << order
    return bad
