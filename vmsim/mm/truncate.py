"""Truncation and invalidation of the page cache (mm/truncate.c).

truncate_inode_pages_range() removes every folio of a range whatever its state
(unmapping it first, cancelling its dirtiness); a folio straddling the boundary has
the bytes past it zeroed and stays (vmsim does not split large folios here: as when
split_folio fails). invalidate_mapping_pages() (drop_caches, POSIX_FADV_DONTNEED)
removes only what may go: clean, not under writeback, unmapped, and referenced only
by the cache.
"""
from vmsim.mm.filemap import filemap_remove_folio, _nr, PG_writeback
from vmsim.mm.page_flags import PG_dirty, PG_locked
from vmsim.mm import vmstat


def _folios(k, mapping, start: int, end: int):
    """The (index, head) of each folio with a page in [start, end], in index order."""
    mem = k.mem
    out = []
    seen = set()
    cache = mapping.i_pages
    if end - start > len(cache):
        idxs = sorted(i for i in cache if start <= i <= end)
    else:
        idxs = [i for i in range(start, end + 1) if i in cache]
    for i in idxs:
        f = cache[i]
        if f not in seen:
            seen.add(f)
            out.append((mem.index[f], f))
    return out


def truncate_cleanup_folio(k, mapping, folio: int):
    """truncate_cleanup_folio(): unmap a mapped folio, cancel its dirtiness."""
    from vmsim.mm.folio import folio_mapped
    from vmsim.mm.memory import unmap_mapping_pages
    mem = k.mem
    if folio_mapped(k, folio) or any(mem.mapcount[p] for p in range(folio, folio + _nr(k, folio))):
        unmap_mapping_pages(k, mapping, mem.index[folio], _nr(k, folio), False)


def truncate_inode_pages_range(k, mapping, lstart: int, lend: int = -1):
    """truncate_inode_pages_range(): drop the cached folios of bytes [lstart, lend]
    (lend -1: to the end); zero the partial folio at lstart."""
    start = (lstart + 4095) >> 12
    end = (1 << 62) if lend == -1 else (lend + 1) >> 12      # exclusive
    mem = k.mem
    partial = lstart & 4095
    if partial:
        head = mapping.i_pages.get(lstart >> 12)
        if head is not None:
            page = head + ((lstart >> 12) - mem.index[head])
            # truncate_inode_partial_folio(): zero the rest of the page.
            k.page_data.write(page, partial, bytes(4096 - partial))
    for index, folio in _folios(k, mapping, start, end - 1):
        nr = _nr(k, folio)
        if index < start or index + nr > end:
            # truncate_inode_partial_folio(): split the large folio (unmapping it:
            # split_folio unmaps a file folio and does not remap it), then drop the
            # order-0 folios inside the range.
            truncate_cleanup_folio(k, mapping, folio)
            split_folio(k, mapping, folio)
            for i in range(max(index, start), min(index + nr, end)):
                filemap_remove_folio(k, mapping, i)
            continue
        truncate_cleanup_folio(k, mapping, folio)
        filemap_remove_folio(k, mapping, index)


def split_folio(k, mapping, folio: int):
    """__split_huge_page() for an unmapped page-cache folio: order-0 folios that keep
    the head's state (uptodate, dirty, LRU list, referenced/active) and one cache
    reference each."""
    from vmsim.mm.page_flags import (PG_head, PG_ORDER_MASK, PG_uptodate, PG_lru, PG_active,
                                     PG_referenced, PG_workingset, PG_unevictable, PG_dirty)
    from vmsim.mm.swap import lruvec_del_folio, lruvec_add_folio, lru_add_drain_all
    from vmsim.mm import vmstat
    mem = k.mem
    nr = _nr(k, folio)
    if nr == 1:
        return
    lru_add_drain_all(k)
    f = mem.flags[folio]
    on_lru = f & PG_lru
    if on_lru:
        lruvec_del_folio(k, folio)
    keep = f & (PG_uptodate | PG_lru | PG_active | PG_referenced | PG_workingset |
                PG_unevictable | PG_dirty)
    index = mem.index[folio]
    extra = mem.refcount[folio] - nr          # references beyond the cache's
    if nr >= 512:
        k.vmstat[vmstat.NR_FILE_HUGEPAGES] -= nr
    mem.mapping[folio + 1] = 0
    mem.index[folio + 1] = 0
    for i in range(nr):
        p = folio + i
        mem.flags[p] = keep
        mem.mapping[p] = mapping.id
        mem.index[p] = index + i
        mem.refcount[p] = 1
        mapping.i_pages[index + i] = p
        if on_lru:
            lruvec_add_folio(k, p)
    mem.refcount[folio] += extra
    mem.flags[folio] = mem.flags[folio] & ~(PG_head | PG_ORDER_MASK)


def truncate_inode_pages_final(k, mapping):
    """truncate_inode_pages_final(): the inode goes; nothing may stay cached."""
    truncate_inode_pages_range(k, mapping, 0, -1)


def truncate_pagecache(k, inode, newsize: int):
    """truncate_pagecache(): unmap beyond the new size (private COWed copies too),
    drop the cache there, unmap again."""
    from vmsim.mm.memory import unmap_mapping_range
    mapping = inode.i_mapping
    holebegin = (newsize + 4095) & ~4095
    unmap_mapping_range(k, mapping, holebegin, 0, 1)
    truncate_inode_pages_range(k, mapping, newsize, -1)
    unmap_mapping_range(k, mapping, holebegin, 0, 1)


def truncate_setsize(k, inode, newsize: int):
    """truncate_setsize(): i_size, then truncate_pagecache() when shrinking."""
    oldsize = inode.i_size
    inode.i_size = newsize
    if newsize < oldsize:
        truncate_pagecache(k, inode, newsize)


def mapping_evict_folio(k, mapping, folio: int) -> bool:
    """mapping_evict_folio(): remove a clean, unmapped folio nobody else holds."""
    from vmsim.mm.folio import folio_mapped
    mem = k.mem
    f = mem.flags[folio]
    if f & (PG_dirty | PG_writeback | PG_locked):
        return False
    nr = _nr(k, folio)
    if mem.refcount[folio] > nr or folio_mapped(k, folio):
        return False
    if any(mem.mapcount[p] for p in range(folio, folio + nr)):
        return False
    filemap_remove_folio(k, mapping, mem.index[folio])
    return True


def mapping_try_invalidate(k, mapping, start: int, end: int) -> int:
    """mapping_try_invalidate(): evict what may go in pages [start, end]; the rest
    that failed only because it is mapped or held is deactivated. Returns pages
    evicted."""
    count = 0
    for index, folio in _folios(k, mapping, start, end):
        nr = _nr(k, folio)
        if index < start or index + nr - 1 > end:
            continue
        if mapping_evict_folio(k, mapping, folio):
            count += nr
    return count


def invalidate_mapping_pages(k, mapping, start: int, end: int) -> int:
    return mapping_try_invalidate(k, mapping, start, end)


def truncate_pagecache_range(k, inode, lstart: int, lend: int):
    """truncate_pagecache_range() (hole punch): unmap the whole pages of the range
    from shared mappings (private COWed copies stay), drop the cache there."""
    from vmsim.mm.memory import unmap_mapping_range
    unmap_start = (lstart + 4095) & ~4095
    unmap_end = ((1 + lend) & ~4095) - 1
    if unmap_end > unmap_start:
        unmap_mapping_range(k, inode.i_mapping, unmap_start, 1 + unmap_end - unmap_start, 0)
    truncate_inode_pages_range(k, inode.i_mapping, lstart, lend)


def _drop_pagecache(k):
    """drop_caches "1": lru_add_drain_all(), then every inode's
    invalidate_mapping_pages(); counts _drop_pagecache."""
    from vmsim.mm.swap import lru_add_drain_all
    lru_add_drain_all(k)
    for obj in list(k.objects):
        # tmpfs folios are the only copy of their data: drop_caches leaves them.
        if obj is not None and hasattr(obj, "i_pages") and obj.i_pages and \
                not obj.swapbacked and getattr(obj.host, "i_sb", None) is not None:
            invalidate_mapping_pages(k, obj, 0, (1 << 62))
    k.vmstat[vmstat.DROP_PAGECACHE] += 1
