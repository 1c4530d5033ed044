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

Shadows live in the mapping's xarray ``i_pages`` as value entries (vmsim.mm._xarray:
xa_mk_value, the evicted folio's order as a multi-index entry), where the folio was.
workingset_update_node() keeps the shadow_nodes list: an xarray node whose every
used slot is a value entry (xa_node count == nr_values) counts in workingset_nodes.
The node layout (64-slot leaves, each with its count and nr_values; an entry of
order >= 6 sits in a shift-6 node; a lone order-0 entry at index 0 lives in xa_head,
with no node) is the xarray's; the list is ``address_space.shadow_nodes``, keyed by
(shift, index >> (shift + 6)) (the kernel's shadow_nodes list_lru links the nodes).

The LRU-gen variant (CONFIG_LRU_GEN) is not built on the recording kernel (nor
modelled); vmsim has no memcg (mem_cgroup_disabled()), one node, and no swap, so anon
refaults (workingset_*_anon) never happen.
"""
from vmsim.mm import vmstat
from vmsim.mm._xarray import xa_mk_value, xa_to_value, XA_CHUNK_SHIFT, XA_CHUNK_SIZE
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


# --- the nodes of shadow entries (mm/workingset.c: workingset_update_node) ---------
def _leaf_is_shadow_node(cache, b: int) -> bool:
    """Is the leaf node of indices [b * 64, b * 64 + 63] on the shadow_nodes list:
    count == nr_values > 0? A tree of one order-0 entry at index 0 keeps it in
    xa_head, with no node."""
    node = cache.nodes.get(b)
    if node is None or node[XA_CHUNK_SIZE] != node[XA_CHUNK_SIZE + 1]:
        return False
    return not (b == 0 and cache.count == 1 and node[0] != -1)


def _mid_is_shadow_node(cache, block: int) -> bool:
    """The same for the shift-6 node of indices [block * 4096, ...): every used slot a
    value entry of order >= 6 or its sibling (a leaf below is a used, non-value slot)."""
    nodes, multi = cache.nodes, cache.multi
    if not multi:
        return False
    values = 0
    for b in range(block << XA_CHUNK_SHIFT, (block + 1) << XA_CHUNK_SHIFT):
        if b in nodes:
            return False
        v = multi.get(b)
        if v is not None:
            if v >= 0:
                return False
            values += 1
    return values > 0


def workingset_update_node(k, mapping, first: int, last: int):
    """workingset_update_node(): after the page cache's stores to indices [first,
    last] of ``mapping``, each xarray node there whose used slots all hold shadows
    is on the shadow_nodes list (workingset_nodes counts it), any other is off it.
    The kernel calls it per xa_node through xas_set_update(); vmsim, which keeps no
    xa_nodes above the leaves, once for the range a store touched, reading each
    node's count and nr_values (and the first leaf, which xa_head's growth into a
    node or shrink back changes)."""
    cache = mapping.i_pages
    now = mapping.shadow_nodes
    if not cache.nr_values and not now:
        return
    nodes = [(0, b) for b in range(first >> 6, (last >> 6) + 1)] + \
        [(6, b) for b in range(first >> 12, (last >> 12) + 1)] + [(0, 0), (6, 0)]
    v = k.vmstat
    for node in nodes:
        shift, block = node
        on = _leaf_is_shadow_node(cache, block) if shift == 0 else \
            _mid_is_shadow_node(cache, block)
        if on and node not in now:
            now.add(node)
            v[vmstat.WORKINGSET_NODES] += 1
        elif not on and node in now:
            now.discard(node)
            v[vmstat.WORKINGSET_NODES] -= 1


def _xa_shadow_nodes(mapping) -> set:
    """The shadow nodes of ``mapping`` recomputed from its whole xarray (for the
    debug checker)."""
    cache = mapping.i_pages
    out = {(0, b) for b in cache.nodes if _leaf_is_shadow_node(cache, b)}
    out |= {(6, top) for top in {b >> 6 for b in cache.multi} if _mid_is_shadow_node(cache, top)}
    return out
