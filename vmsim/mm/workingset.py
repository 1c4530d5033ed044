"""Workingset detection (mm/workingset.c), for page-cache folios.

When reclaim removes a file folio from the page cache (__remove_mapping with
reclaimed = true: MADV_PAGEOUT's reclaim_pages -> shrink_folio_list), the slot keeps
a shadow entry: an xarray value packing the memcg id, the node, the lruvec's
nonresident_age at eviction and the folio's PG_workingset bit. When the page is read
in again (filemap_add_folio finds the shadow in its slot, and the caller is not a
write: __GFP_WRITE), workingset_refault() counts workingset_refault_file; if the
refault distance (the nonresident_age since eviction) is no more than the workingset
(Active(file); anon also counts with swap, which vmsim has none of) the folio is
activated (workingset_activate_file) and, if it was active before eviction,
PG_workingset is restored (workingset_restore_file). nonresident_age moves with
evictions, refault activations and folio_mark_accessed activations
(workingset_activation).

Shadows live in the mapping's xarray in the kernel; here ``address_space.shadows``
holds the value entries by index beside ``i_pages`` (the folio entries), each index
in at most one of the two, and ``shadow_order`` the order of each multi-index value
entry by its first index. workingset_update_node() keeps the shadow_nodes list: an
xarray node whose every used slot is a shadow counts in workingset_nodes. The node
layout (64 slots a node; an entry of order >= 6 sits in a shift-6 node; a lone entry
at index 0 needs no node) is derived from the entries, which is the layout the
xarray has after the stores the page cache makes.

The LRU-gen variant (CONFIG_LRU_GEN) is not built on the recording kernel (nor
modelled); vmsim has no memcg (mem_cgroup_disabled()), one node, and no swap, so anon
refaults (workingset_*_anon) never happen.
"""
from vmsim.mm import vmstat
from vmsim.mm.page_flags import (PG_workingset, PG_active, PG_swapbacked, PG_head,
                                 PG_ORDER_MASK, PG_ORDER_SHIFT)

BITS_PER_LONG = 64
BITS_PER_XA_VALUE = BITS_PER_LONG - 1
WORKINGSET_SHIFT = 1
NODES_SHIFT = 10                 # CONFIG_NODES_SHIFT of the recording kernel
MEM_CGROUP_ID_SHIFT = 16
EVICTION_SHIFT = (BITS_PER_LONG - BITS_PER_XA_VALUE) + WORKINGSET_SHIFT + NODES_SHIFT + \
    MEM_CGROUP_ID_SHIFT
EVICTION_MASK = ((1 << BITS_PER_LONG) - 1) >> EVICTION_SHIFT
XA_CHUNK_SHIFT = 6
XA_CHUNK_SIZE = 1 << XA_CHUNK_SHIFT


def xa_mk_value(v: int) -> int:
    return (v << 1) | 1


def xa_to_value(entry: int) -> int:
    return entry >> 1


def xa_is_value(entry) -> bool:
    return entry is not None and entry & 1 == 1


def workingset_init(k):
    """workingset_init(): group evictions into buckets when the timestamp bits left
    cannot cover all of memory (bucket_order, 0 below 2**36 pages)."""
    timestamp_bits = BITS_PER_LONG - EVICTION_SHIFT
    max_order = (k.nr_pages - 1).bit_length()
    k.workingset_bucket_order = max_order - timestamp_bits if max_order > timestamp_bits else 0


def pack_shadow(memcgid: int, nid: int, eviction: int, workingset: bool) -> int:
    eviction &= EVICTION_MASK
    eviction = (eviction << MEM_CGROUP_ID_SHIFT) | memcgid
    eviction = (eviction << NODES_SHIFT) | nid
    eviction = (eviction << WORKINGSET_SHIFT) | int(bool(workingset))
    return xa_mk_value(eviction)


def unpack_shadow(shadow: int):
    """unpack_shadow(): (memcgid, nid, eviction, workingset)."""
    entry = xa_to_value(shadow)
    workingset = bool(entry & ((1 << WORKINGSET_SHIFT) - 1))
    entry >>= WORKINGSET_SHIFT
    nid = entry & ((1 << NODES_SHIFT) - 1)
    entry >>= NODES_SHIFT
    memcgid = entry & ((1 << MEM_CGROUP_ID_SHIFT) - 1)
    entry >>= MEM_CGROUP_ID_SHIFT
    return memcgid, nid, entry, workingset


def _nr(k, folio: int) -> int:
    f = k.mem.flags[folio]
    return 1 << ((f & PG_ORDER_MASK) >> PG_ORDER_SHIFT) if f & PG_head else 1


def workingset_age_nonresident(k, nr_pages: int):
    """workingset_age_nonresident(): the lruvec's non-resident clock moves (one
    lruvec: no memcg hierarchy to walk up)."""
    k.lruvec.nonresident_age += nr_pages


def workingset_eviction(k, folio: int) -> int:
    """workingset_eviction(): the shadow entry for an evicted folio; the clock
    advances by the folio's pages."""
    eviction = k.lruvec.nonresident_age >> k.workingset_bucket_order
    workingset_age_nonresident(k, _nr(k, folio))
    # mem_cgroup_id() is 0 with memcg disabled; node 0.
    return pack_shadow(0, 0, eviction, k.mem.flags[folio] & PG_workingset)


def workingset_test_recent(k, shadow: int, file: bool):
    """workingset_test_recent(): (recent, workingset): was the folio evicted within
    the workingset's size of the clock? Active(file), plus Inactive(file) for anon;
    anon would count too with free swap (none here)."""
    _memcgid, _nid, eviction, workingset = unpack_shadow(shadow)
    eviction <<= k.workingset_bucket_order
    refault = k.lruvec.nonresident_age
    refault_distance = (refault - eviction) & EVICTION_MASK
    workingset_size = k.vmstat[vmstat.NR_ACTIVE_FILE]
    if not file:
        workingset_size += k.vmstat[vmstat.NR_INACTIVE_FILE]
    return refault_distance <= workingset_size, workingset


def workingset_refault(k, folio: int, shadow: int):
    """workingset_refault(): count the refault; a recent one is activated (before
    folio_add_lru puts it on a list) and ages the clock; one that was in the
    workingset gets PG_workingset back (restore)."""
    mem = k.mem
    file = not mem.flags[folio] & PG_swapbacked           # folio_is_file_lru()
    nr = _nr(k, folio)
    v = k.vmstat
    v[vmstat.WORKINGSET_REFAULT_FILE if file else vmstat.WORKINGSET_REFAULT_ANON] += nr
    recent, workingset = workingset_test_recent(k, shadow, file)
    if not recent:
        return
    mem.flags[folio] = mem.flags[folio] | PG_active
    workingset_age_nonresident(k, nr)
    v[vmstat.WORKINGSET_ACTIVATE_FILE if file else vmstat.WORKINGSET_ACTIVATE_ANON] += nr
    if workingset:
        mem.flags[folio] = mem.flags[folio] | PG_workingset
        v[vmstat.WORKINGSET_RESTORE_FILE if file else vmstat.WORKINGSET_RESTORE_ANON] += nr


def workingset_activation(k, folio: int):
    """workingset_activation(): an activation ages the non-resident clock."""
    workingset_age_nonresident(k, _nr(k, folio))


# --- shadow entries in the mapping's xarray -----------------------------------------
def _order(k, folio: int) -> int:
    f = k.mem.flags[folio]
    return (f & PG_ORDER_MASK) >> PG_ORDER_SHIFT if f & PG_head else 0


def _big_entry(k, mapping, lo: int):
    """What covers the 64 slots from ``lo`` as one entry of order >= 6 (which a
    shift-6 node holds): "folio", "value" or None."""
    f = mapping.i_pages.get(lo)
    if f is not None:
        return "folio" if _order(k, f) >= XA_CHUNK_SHIFT else None
    if lo in mapping.shadows:
        return "value" if _shadow_entry_at(mapping, lo)[1] >= XA_CHUNK_SHIFT else None
    return None


def _leaf_is_shadow_node(k, mapping, block: int) -> bool:
    """Is the leaf node of indices [block * 64, block * 64 + 63] (if it exists) on
    the shadow_nodes list: count == nr_values > 0? A lone order-0 entry at index 0
    lives in xa_head, with no node."""
    lo = block << XA_CHUNK_SHIFT
    if _big_entry(k, mapping, lo) is not None:
        return False                      # the slots are a shift-6 node's, no leaf
    cache, shadows = mapping.i_pages, mapping.shadows
    r = range(lo, lo + XA_CHUNK_SIZE)
    if cache.any_in(lo, lo + XA_CHUNK_SIZE - 1) or not any(i in shadows for i in r):
        return False
    return not (block == 0 and len(cache) + len(shadows) == 1)


def _mid_is_shadow_node(k, mapping, block: int) -> bool:
    """The same for the shift-6 node of indices [block * 4096, ...): every used slot
    a value entry of order >= 6 (a leaf child node is a used, non-value slot)."""
    values = 0
    cache, shadows = mapping.i_pages, mapping.shadows
    for sub in range(block << XA_CHUNK_SHIFT, (block + 1) << XA_CHUNK_SHIFT):
        lo = sub << XA_CHUNK_SHIFT
        big = _big_entry(k, mapping, lo)
        if big == "folio":
            return False
        if big == "value":
            values += 1
        elif any(i in cache or i in shadows for i in range(lo, lo + XA_CHUNK_SIZE)):
            return False                  # a leaf node below
    return values > 0


def workingset_update_node(k, mapping, first: int, last: int):
    """workingset_update_node(): after the page cache's stores to indices [first,
    last] of ``mapping``, each xarray node there whose used slots all hold shadows
    is on the shadow_nodes list (workingset_nodes counts it), any other is off it.
    The kernel calls it per xa_node through xas_set_update(); vmsim, which keeps no
    xa_nodes, once for the range a store touched, recomputing its nodes (vmsim-only
    (shift, block) keys: 64-slot leaves and the 4096-index nodes above them)."""
    if not mapping.shadows and not mapping.shadow_nodes:
        return
    nodes = [(0, b) for b in range(first >> 6, (last >> 6) + 1)] + \
        [(6, b) for b in range(first >> 12, (last >> 12) + 1)]
    if len(mapping.i_pages) + len(mapping.shadows) <= 1:
        nodes += [(0, 0), (6, 0)]                     # the tree may have shrunk to xa_head
    now = mapping.shadow_nodes
    v = k.vmstat
    for node in nodes:
        shift, block = node
        on = _leaf_is_shadow_node(k, mapping, block) if shift == 0 else \
            _mid_is_shadow_node(k, mapping, block)
        if on and node not in now:
            now.add(node)
            v[vmstat.WORKINGSET_NODES] += 1
        elif not on and node in now:
            now.discard(node)
            v[vmstat.WORKINGSET_NODES] -= 1


def _xa_shadow_nodes(k, mapping) -> set:
    """The shadow nodes of ``mapping`` recomputed from all its entries (for the
    debug checker)."""
    idx = set(mapping.i_pages) | set(mapping.shadows)
    out = set()
    for b in {i >> 6 for i in idx}:
        if _leaf_is_shadow_node(k, mapping, b):
            out.add((0, b))
    for b in {i >> 12 for i in idx}:
        if _mid_is_shadow_node(k, mapping, b):
            out.add((6, b))
    return out


def _shadow_store(mapping, index: int, order: int, shadow: int):
    """page_cache_delete()'s xas_store of the shadow over the folio's slots."""
    for i in range(index, index + (1 << order)):
        mapping.shadows[i] = shadow
    mapping.shadow_order[index] = order


def _shadow_erase(mapping, first: int, order: int):
    for i in range(first, first + (1 << order)):
        del mapping.shadows[i]
    del mapping.shadow_order[first]


def _shadow_entry_at(mapping, index: int):
    """The first index and order of the value entry covering ``index``."""
    for o in range(0, 10):
        first = index & ~((1 << o) - 1)
        order = mapping.shadow_order.get(first)
        if order is not None and first + (1 << order) > index:
            return first, order
    raise AssertionError(f"shadow at {index:#x} has no entry")


def _shadow_take(mapping, index: int, nr: int):
    """__filemap_add_folio()'s conflict walk over [index, index + nr): the value
    entries there go (a larger one is split, its other pieces keep the shadow, as
    xas_try_split leaves them); returns the last one met, or None."""
    old = None
    shadows = mapping.shadows
    i = index
    while i < index + nr:
        if i not in shadows:
            i += 1
            continue
        first, order = _shadow_entry_at(mapping, i)
        old = shadows[i]
        _shadow_erase(mapping, first, order)
        end = first + (1 << order)
        # Pieces of the old entry outside the new folio keep its value, in aligned
        # power-of-two runs.
        for lo, hi in ((first, index), (index + nr, end)):
            p = max(lo, first)
            while p < min(hi, end):
                o = 0
                while not p & ((1 << (o + 1)) - 1) and p + (1 << (o + 1)) <= min(hi, end):
                    o += 1
                _shadow_store(mapping, p, o, old)
                p += 1 << o
        i = max(i + 1, min(end, index + nr))
    return old


def _clear_shadows(k, mapping, start: int, end: int) -> int:
    """Remove the value entries lying wholly in [start, end] (find_lock_entries omits
    those beginning before start or running past end); returns how many went."""
    if not mapping.shadow_order:
        return 0
    gone = [(i, o) for i, o in mapping.shadow_order.items()
            if i >= start and i + (1 << o) - 1 <= end]
    for i, o in gone:
        _shadow_erase(mapping, i, o)
    if gone:
        workingset_update_node(k, mapping, min(i for i, o in gone),
                               max(i + (1 << o) - 1 for i, o in gone))
    return len(gone)
