"""vmsim-only: the gap tracking of the maple tree (lib/maple_tree.c) for placement.

The kernel's maple tree records, in every node, the largest empty range below each
slot (ma_gaps / mas_max_gap), so mas_empty_area() and mas_empty_area_rev() -- behind
vma_iter_area_lowest / vma_iter_area_highest in unmapped_area() and
unmapped_area_topdown() -- skip every subtree without a gap big enough and find a
gap in O(log n). vmsim keeps the VMAs in sorted lists (mm_struct.mm_mt) for lookups
and this augmented balanced tree beside them for the gaps: a treap keyed by VMA
order whose every node holds the gap below its VMA (vm_start - the previous VMA's
vm_end, as the maple tree's empty ranges: no stack guard gap) and the largest gap in
its subtree. The gap above the last VMA is the open range to the end of the address
space and is handled by the searches. Priorities come from a fixed xorshift sequence,
so the shape (never the answers) depends only on the order of operations.

Three nodes, ``big``, are kept out of the maxima (their ``mgap`` is -1): a node whose
gap grows past the smallest of theirs takes its place. In a usual layout they hold the
free range between the heap and the mmap area, which every top-down mmap there shrinks
(by a merge) or hands to the new VMA below, the stack's guard range above mmap_base and
the range below the executable: changes to their gaps update no maxima, where they
would have refreshed every node up to the root. A search tries the big gaps first;
when no other gap is as large as the request (the root's maximum), the best of them
is the answer, else a better gap can only lie between it and the search's limit, in
the subtrees hanging off its path to the root.
"""


class _gap_node:
    __slots__ = ("vma", "gap", "mgap", "max", "prio", "left", "right", "parent", "start",
                 "end")

    def __init__(self, vma, gap, prio):
        self.vma = vma
        self.gap = gap
        self.mgap = self.max = gap          # the gap as the maxima count it (-1: big)
        self.prio = prio
        self.left = self.right = _NIL
        self.parent = None
        # The VMA's bounds, copied here for the searches (one attribute load fewer per
        # node visited); _vma_update keeps them in step, the checker compares them.
        if vma is not None:
            self.start = vma.vm_start
            self.end = vma.vm_end


# The empty subtree: a sentinel whose max (-1) is below every gap, so the walks read
# a child's max without testing for None. Never written: rotations and the walks
# test for it before touching a child.
_NIL = _gap_node.__new__(_gap_node)
_NIL.vma, _NIL.gap, _NIL.mgap, _NIL.max, _NIL.prio, _NIL.parent = None, -1, -1, -1, -1, None
_NIL.left = _NIL.right = _NIL
_NIL.start = _NIL.end = 0


def _pull(n):
    """Recompute n.max from n.mgap and its children."""
    m = n.mgap
    c = n.left.max
    if c > m:
        m = c
    c = n.right.max
    if c > m:
        m = c
    n.max = m


def _propagate(n):
    """Refresh the maxima from n up to the root, stopping where nothing changes
    (_pull inline: this runs on every VMA insert and removal)."""
    while n is not None:
        m = n.mgap
        c = n.left.max
        if c > m:
            m = c
        c = n.right.max
        if c > m:
            m = c
        if n.max == m:
            return
        n.max = m
        n = n.parent


def _raise(n, g: int):
    """A gap of g now counts below n: raise the maxima up to where they already hold it."""
    while n is not None and n.max < g:
        n.max = g
        n = n.parent


class _gap_tree:
    __slots__ = ("root", "_seed", "found", "big")   # big: the nodes out of the maxima

    def __init__(self):
        self.root = _NIL
        self._seed = 0x2545F4914F6CDD1D
        # Where the last search stopped, as the maple state does after
        # mas_empty_area(_rev): the node of the VMA just above the free range (its
        # vma_next()), or None for the open range above the last VMA.
        self.found = None
        self.big = [None, None, None]

    def _prio(self) -> int:
        x = self._seed
        x ^= (x << 13) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 7
        x ^= (x << 17) & 0xFFFFFFFFFFFFFFFF
        self._seed = x
        return x

    def _rotate_up(self, x):
        p = x.parent
        g = p.parent
        if p.left is x:
            b = x.right
            p.left = b
            x.right = p
        else:
            b = x.left
            p.right = b
            x.left = p
        if b is not _NIL:
            b.parent = p
        p.parent = x
        x.parent = g
        if g is None:
            self.root = x
        elif g.left is p:
            g.left = x
        else:
            g.right = x
        _pull(p)
        _pull(x)

    def _big_slot(self, gap: int) -> int:
        """The slot of big a node with this gap takes (an empty one, else the one with
        the smallest gap if it is below ``gap``), or -1."""
        b0, b1, b2 = self.big
        if b0 is None:
            return 0
        if b1 is None:
            return 1
        if b2 is None:
            return 2
        i, g = 0, b0.gap
        if b1.gap < g:
            i, g = 1, b1.gap
        if b2.gap < g:
            i, g = 2, b2.gap
        return i if gap > g else -1

    def _take_big(self, node, i: int):
        """node (in the tree, not big) takes slot i of big; the node it replaces counts
        in the maxima again."""
        old = node.mgap
        node.mgap = -1
        if node.max == old:
            _propagate(node)
        b = self.big[i]
        self.big[i] = node
        if b is not None:
            b.mgap = b.gap
            _raise(b, b.gap)

    def _insert(self, vma, gap: int):
        """Link ``vma`` (not overlapping any VMA in the tree) with the gap below it."""
        node = _gap_node(vma, gap, self._prio())
        vma._mt_node = node
        i = self._big_slot(gap)
        if i >= 0:
            node.mgap = node.max = -1               # a new big: counted in no maxima
            b = self.big[i]
            self.big[i] = node
            if b is not None:
                b.mgap = b.gap
                _raise(b, b.gap)
        cur = self.root
        if cur is _NIL:
            self.root = node
            return
        s = vma.vm_start
        while True:
            if s < cur.start:
                nxt = cur.left
                if nxt is _NIL:
                    cur.left = node
                    break
            else:
                nxt = cur.right
                if nxt is _NIL:
                    cur.right = node
                    break
            cur = nxt
        node.parent = cur
        while node.parent is not None and node.parent.prio < node.prio:
            self._rotate_up(node)
        _propagate(node.parent)

    def _delete(self, vma):
        """Unlink ``vma``'s node."""
        node = vma._mt_node
        vma._mt_node = None
        if node.mgap < 0:                # a big: the next gap that changes or is linked
            self.big[self.big.index(node)] = None                # takes its slot
        while True:
            lc, rc = node.left, node.right
            if lc is _NIL and rc is _NIL:
                break
            self._rotate_up(lc if rc is _NIL or (lc is not _NIL and lc.prio > rc.prio) else rc)
        p = node.parent
        if p is None:
            self.root = _NIL
        elif p.left is node:
            p.left = _NIL
        else:
            p.right = _NIL
        node.parent = None
        _propagate(p)

    def _set_gap(self, vma, gap: int):
        """The gap below ``vma`` changed (its start or its predecessor's end moved)."""
        self._node_gap(vma._mt_node, gap)

    def _node_gap(self, node, gap: int):
        """node's gap is now ``gap``: a big gap's changes touch no maxima; a gap growing
        past the smallest big one takes its slot; else a grown gap raises the maxima
        above it, and a shrunk one matters only where it was the maximum."""
        old = node.gap
        if old == gap:
            return
        node.gap = gap
        if node.mgap < 0:                # a big
            return
        i = self._big_slot(gap)
        if i >= 0:
            self._take_big(node, i)
            return
        node.mgap = gap
        if gap > old:
            _raise(node, gap)
        elif node.max == old:
            _propagate(node)

    # --- searches (mas_empty_area_rev / mas_empty_area) ---------------------------
    def _area_highest(self, last_end: int, low: int, high: int, size: int):
        """End of the highest free range whose part inside [low, high) holds ``size``
        bytes, clamped to high; None when there is none. ``last_end`` is the end of
        the last VMA (0 with none): the open range above it is free."""
        e = high
        s = last_end if last_end > low else low
        if e - s >= size:
            self.found = None
            return e
        n = self.found = _highest_gap(self, low, high, size)
        if n is None:
            return None
        e = n.start
        return e if e < high else high

    def _area_lowest(self, last_end: int, low: int, high: int, size: int):
        """Start of the lowest free range whose part inside [low, high) holds ``size``
        bytes, clamped to low; None when there is none."""
        n = self.found = _lowest_gap(self, low, high, size)
        if n is not None:
            s = n.start - n.gap
            return s if s > low else low
        s = last_end if last_end > low else low
        if high - s >= size:
            return s
        return None


def _fits(n, low: int, high: int, size: int) -> bool:
    """n's gap, clamped to [low, high), holds size bytes."""
    gap = n.gap
    if gap < size:
        return False
    ge = n.start
    gs = ge - gap
    return (ge if ge < high else high) - (gs if gs > low else low) >= size


def _highest_gap(t, low, high, size):
    """The node of the highest gap that fits (None if none). The highest big gap that
    fits, unless a gap above it does: when one is as large as the request at all (the
    root's maximum), it lies in the right subtree of the big gap's node or of an
    ancestor reached from the left, or is such an ancestor's own gap (a big gap there
    does not fit); those are tried from the top, the highest first."""
    best = None
    for b in t.big:
        # _fits(b, low, high, size), inline; the highest that fits.
        if b is not None and b.gap >= size and (best is None or b.start > best.start):
            ge = b.start
            gs = ge - b.gap
            if (ge if ge < high else high) - (gs if gs > low else low) >= size:
                best = b
    if best is None:
        return _highest(t.root, low, high, size)
    if t.root.max < size:
        return best
    ups = []
    n = best
    p = n.parent
    while p is not None:
        if p.left is n:
            ups.append(p)
        n = p
        p = n.parent
    ups.reverse()
    ups.append(None)
    for x in ups:
        r = best.right if x is None else x.right
        if r.max >= size and (best if x is None else x).end < high:
            f = _highest(r, low, high, size)
            if f is not None:
                return f
        if x is not None and x.gap >= size and _fits(x, low, high, size):
            return x
    return best


def _lowest_gap(t, low, high, size):
    """The node of the lowest gap that fits (None if none): as _highest_gap, mirrored
    (the lowest big gap that fits, unless one below it does)."""
    best = None
    for b in t.big:
        # _fits(b, low, high, size), inline; the lowest that fits.
        if b is not None and b.gap >= size and (best is None or b.start < best.start):
            ge = b.start
            gs = ge - b.gap
            if (ge if ge < high else high) - (gs if gs > low else low) >= size:
                best = b
    if best is None:
        return _lowest(t.root, low, high, size)
    if t.root.max < size:
        return best
    ups = []
    n = best
    p = n.parent
    while p is not None:
        if p.right is n:
            ups.append(p)
        n = p
        p = n.parent
    ups.reverse()
    ups.append(None)
    for x in ups:
        y = best if x is None else x
        c = y.left
        if c.max >= size and y.start - y.gap > low:
            f = _lowest(c, low, high, size)
            if f is not None:
                return f
        if x is not None and x.gap >= size and _fits(x, low, high, size):
            return x
    return best


def _highest(n, low, high, size):
    """The node below whose VMA lies the highest gap that fits, as
    mas_empty_area_rev() finds it (None if none): from the top down, skipping
    every subtree whose largest gap is below ``size``. Iterative: a Python call per
    node visited cost more than the whole search.

    ``cand`` is the last node passed on the way down to a right subtree whose own gap
    or left subtree holds a gap of ``size``: if nothing to its right fits (the right
    subtree's big gap lies above ``high``), the range is there. One node is enough:
    below ``high`` a gap of ``size`` fails only by starting below ``low``, and then
    every gap further down fails too."""
    if n.max < size:
        return None
    cand = None
    while True:
        # n.max >= size here.
        r = n.right
        # Every gap in the right subtree starts at or above this VMA's end.
        if r.max >= size and n.end < high:
            if n.gap >= size or n.left.max >= size:
                cand = n
            n = r
            continue
        # Nothing to the right: n's own gap, then its left subtree.
        gap = n.gap
        while True:
            if gap >= size:
                ge = n.start
                gs = ge - gap
                if gs < high and ge > low:
                    e = ge if ge < high else high
                    s = gs if gs > low else low
                    if e - s >= size:
                        return n
                # Every gap in the left subtree ends at or below this gap's start.
                n = n.left if gs > low else _NIL
            else:
                n = n.left
            if n.max >= size:
                break
            if cand is None:
                return None
            n = cand
            cand = None
            gap = n.gap


def _lowest(n, low, high, size):
    """The node below whose VMA lies the lowest gap that fits, as mas_empty_area()
    finds it (None if none): from the bottom up, skipping every subtree whose
    largest gap is below ``size`` (iterative, as _highest; a gap of ``size`` above
    ``low`` fails only by ending above ``high``, and then so does every gap above)."""
    cand = None
    while True:
        if n.max >= size:
            c = n.left
            gap = n.gap
            # Every gap in the left subtree ends at or below this gap's start.
            if c.max >= size and n.start - gap > low:
                if gap >= size or n.right.max >= size:
                    cand = n
                n = c
                continue
            if gap < size:
                # Not here: the right subtree (its gaps lie above, if any fits).
                n = n.right
                continue
        elif cand is not None:
            n = cand
            cand = None
            gap = n.gap
        else:
            return None
        # Everything below n is done: n's own gap, then its right subtree.
        ge = n.start
        gs = ge - gap
        if gap >= size and gs < high and ge > low:
            e = ge if ge < high else high
            s = gs if gs > low else low
            if e - s >= size:
                return n
        # Every gap in the right subtree starts at or above this VMA's end.
        n = n.right if n.end < high else _NIL


def _check_gap_tree(mm, rep, name):
    """Debug checker: the tree holds exactly mm.mm_mt in order, every gap and maximum is
    right, parent links and the heap order hold."""
    t = getattr(mm, "_mt_gap", None)
    if t is None:
        rep(f"{name}: no gap tree")
        return
    order = []
    stack = []
    n = t.root
    if n is not _NIL and n.parent is not None:
        rep(f"{name}: gap tree root has a parent")
    if (_NIL.left, _NIL.right, _NIL.parent, _NIL.max, _NIL.vma) != (_NIL, _NIL, None, -1, None):
        rep(f"{name}: gap tree sentinel was written")
    while stack or n is not _NIL:
        while n is not _NIL:
            stack.append(n)
            n = n.left
        n = stack.pop()
        order.append(n)
        for c in (n.left, n.right):
            if c is not _NIL:
                if c.parent is not n:
                    rep(f"{name}: gap tree parent link broken at {n.vma!r}")
                if c.prio > n.prio:
                    rep(f"{name}: gap tree heap order broken at {n.vma!r}")
        isbig = any(n is b for b in t.big)
        if n.mgap != (-1 if isbig else n.gap):
            rep(f"{name}: gap tree node of {n.vma!r} counts gap {n.mgap:#x} in the maxima"
                f"{' (big)' if isbig else ''}, its gap is {n.gap:#x}")
        m = -1 if isbig else n.gap
        for c in (n.left, n.right):
            if c.max > m:
                m = c.max
        if m != n.max:
            rep(f"{name}: gap tree max {n.max:#x} != {m:#x} at {n.vma!r}")
        n = n.right
    for b in t.big:
        if b is not None and all(nd is not b for nd in order):
            rep(f"{name}: gap tree's big node {b.vma!r} is not in the tree")
    held = [b for b in t.big if b is not None]
    if len({id(b) for b in held}) != len(held):
        rep(f"{name}: gap tree's big slots hold a node twice")
    vmas = mm.mm_mt
    if len(order) != len(vmas) or any(a.vma is not b for a, b in zip(order, vmas)):
        rep(f"{name}: gap tree holds {len(order)} VMAs, not the {len(vmas)} of the VMA tree "
            f"in order")
        return
    prev_end = 0
    for nd in order:
        v = nd.vma
        if v._mt_node is not nd:
            rep(f"{name}: {v!r} does not point at its gap tree node")
        if (nd.start, nd.end) != (v.vm_start, v.vm_end):
            rep(f"{name}: gap tree node of {v!r} holds bounds {nd.start:#x}-{nd.end:#x}")
        if nd.gap != v.vm_start - prev_end:
            rep(f"{name}: gap below {v!r} recorded as {nd.gap:#x}, is "
                f"{v.vm_start - prev_end:#x}")
        prev_end = v.vm_end
