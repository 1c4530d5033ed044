"""Page reclaim's removal of a page-cache folio (mm/vmscan.c).

Only what MADV_PAGEOUT's reclaim_pages() reaches is modelled (vmsim has no kswapd,
no direct reclaim and no swap): __remove_mapping() takes a clean page-cache folio
out of its mapping, leaving a shadow entry when reclaim evicted it, and
remove_mapping() (invalidation: drop_caches, POSIX_FADV_DONTNEED) leaves none.
"""
from vmsim.mm.page_flags import PG_dirty, PG_swapbacked, PG_head, PG_ORDER_MASK, PG_ORDER_SHIFT


def _nr(k, folio: int) -> int:
    f = k.mem.flags[folio]
    return 1 << ((f & PG_ORDER_MASK) >> PG_ORDER_SHIFT) if f & PG_head else 1


def __remove_mapping(k, mapping, folio: int, reclaimed: bool) -> int:
    """__remove_mapping(): 1 when the folio left the page cache, 0 when it is busy
    (a reference beyond the cache's: vmsim's callers hold no isolation reference, so
    the cache's nr pages are all it may have) or dirty. Reclaim of a file-LRU folio
    of a mapping that is not exiting stores workingset_eviction()'s shadow in its
    slots (not for DAX, not modelled)."""
    from vmsim.mm.filemap import __filemap_remove_folio, mapping_exiting
    mem = k.mem
    nr = _nr(k, folio)
    if mem.refcount[folio] != nr:                        # folio_ref_freeze(folio, 1 + nr)
        return 0
    if mem.flags[folio] & PG_dirty:
        return 0
    shadow = None
    if reclaimed and not mem.flags[folio] & PG_swapbacked and not mapping_exiting(mapping):
        from vmsim.mm.workingset import workingset_eviction
        shadow = workingset_eviction(k, folio)
    __filemap_remove_folio(k, mapping, folio, shadow)
    return 1


def remove_mapping(k, mapping, folio: int) -> int:
    """remove_mapping(): __remove_mapping() without a shadow; the pages removed."""
    nr = _nr(k, folio)
    return nr if __remove_mapping(k, mapping, folio, False) else 0
