"""Truncation and invalidation of the page cache (mm/truncate.c).

truncate_inode_pages_range() removes every folio of a range whatever its state
(unmapping it first, cancelling its dirtiness); a folio straddling the boundary has
the bytes past it zeroed, and a large one is split (folio_split) so that the
pieces inside the range can go. invalidate_mapping_pages() (drop_caches, POSIX_FADV_DONTNEED)
removes only what may go: clean, not under writeback, unmapped, and referenced only
by the cache.
"""
from vmsim.mm.filemap import filemap_remove_folio, __filemap_remove_folio, shmem_mapping, _nr, PG_writeback
from vmsim.mm.page_flags import PG_dirty, PG_locked, PG_ORDER_MASK, PG_ORDER_SHIFT
from vmsim.mm import vmstat


def _folios(k, mapping, start: int, end: int):
    """The (index, head) of each folio with a page in [start, end], in index order."""
    mem = k.mem
    out = []
    seen = set()
    for _, f in mapping.i_pages.entries_in(start, end):
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


def truncate_inode_folio(k, mapping, folio: int):
    """truncate_inode_folio(): unmap the folio and delete it from the page cache."""
    truncate_cleanup_folio(k, mapping, folio)
    filemap_remove_folio(k, mapping, k.mem.index[folio])


def truncate_inode_partial_folio(k, mapping, folio: int, lstart: int, lend: int) -> bool:
    """truncate_inode_partial_folio(): zero the truncated bytes of a folio that
    [lstart, lend] (lend -1: to EOF) cuts; a large one is split at the first truncated
    page (folio_split: that page becomes order 0, the rest buddy-sized folios, so the
    caller drops those inside the range), and at the page after the range when that
    falls inside the folio too. The split unmaps the folio first (a file folio is not
    mapped again). True when the folio may go."""
    mem = k.mem
    nr = _nr(k, folio)
    pos = mem.index[folio] << 12
    size = nr << 12
    offset = lstart - pos if pos < lstart else 0
    if lend == -1 or pos + size <= lend:
        length = size - offset
    else:
        length = lend + 1 - pos - offset
    if length == size:
        truncate_inode_folio(k, mapping, folio)
        return True
    # folio_zero_range(): the pages past the first are dropped below (or were punched),
    # so zeroing the partial page is what shows.
    # The first page unless the range covers it whole (a range that starts on a page
    # boundary and ends inside that page is zeroed too).
    if offset & 4095 or (offset + length) >> 12 == offset >> 12:
        page = folio + (offset >> 12)
        k.page_data.write(page, offset & 4095, bytes(min(4096 - (offset & 4095), length)))
    tail = (offset + length) & 4095
    if tail and (offset + length) >> 12 != offset >> 12:
        k.page_data.write(folio + ((offset + length) >> 12), 0, bytes(tail))
    if mapping.folio_private and folio in mapping.folio_private:
        # folio_needs_release(): folio_invalidate() -> ->invalidate_folio
        # (block_invalidate_folio: the buffers the range covers are discarded).
        mapping.a_ops.invalidate_folio(k, mapping, folio, offset, length)
    if nr == 1:
        return True
    truncate_cleanup_folio(k, mapping, folio)                # unmap_folio()
    release = getattr(mapping.a_ops, "release_folio", None)
    if release is not None and not release(k, mapping, folio):
        # try_folio_split_or_unmap(): __folio_split's filemap_release_folio() failed
        # (a written ext4 folio's dirty buffers), so the folio stays whole and
        # unmapped, the range zeroed in it (folio_zero_range).
        _zero_folio_range(k, folio, offset, length)
        return True
    folio_split(k, mapping, folio, offset >> 12)
    if offset + length != size:
        at = mem.index[folio] + ((offset + length) >> 12)
        folio2 = mapping.i_pages.get(at)
        if folio2 is not None and _nr(k, folio2) > 1:
            folio_split(k, mapping, folio2, at - mem.index[folio2])
    return True


def _zero_folio_range(k, folio: int, offset: int, length: int):
    """folio_zero_range() of a whole folio's [offset, offset + length)."""
    data = k.page_data
    end = offset + length
    while offset < end:
        page, lo = folio + (offset >> 12), offset & 4095
        hi = min(4096, lo + end - offset)
        if lo == 0 and hi == 4096:
            data.clear(page)
        else:
            data.write(page, lo, bytes(hi - lo))
        offset += hi - lo


def truncate_inode_pages_range(k, mapping, lstart: int, lend: int = -1):
    """truncate_inode_pages_range(): drop the cached folios of bytes [lstart, lend]
    (lend -1: to the end): the folios wholly inside first, then the partial folios at
    either end (truncate_inode_partial_folio), then what their splits left inside."""
    start = (lstart + 4095) >> 12
    end = (1 << 62) if lend == -1 else (lend + 1) >> 12      # exclusive

    def _whole():
        truncate_folio_batch_exceptionals(k, mapping, start, end - 1)
        for index, folio in _folios(k, mapping, start, end - 1):
            if index >= start and index + _nr(k, folio) <= end:
                truncate_inode_folio(k, mapping, folio)

    _whole()
    same_folio = (lstart >> 12) == (lend >> 12) if lend != -1 else True
    folio = mapping.i_pages.get(lstart >> 12)
    if folio is not None:
        # lend -1 is below every position (a signed loff_t).
        same_folio = lend < (k.mem.index[folio] + _nr(k, folio)) << 12
        truncate_inode_partial_folio(k, mapping, folio, lstart, lend)
    if not same_folio:
        folio = mapping.i_pages.get(lend >> 12)
        if folio is not None:
            truncate_inode_partial_folio(k, mapping, folio, lstart, lend)
    _whole()


def folio_split(k, mapping, folio: int, split_at: int):
    """folio_split() (mm/huge_memory.c, the non-uniform split 6.18 uses for page-cache
    folios) of an unmapped folio: page ``split_at`` (an offset in the folio) becomes
    an order-0 folio and the rest buddy-sized folios (halving towards it), each
    keeping the head's state and one cache reference per page; counts
    thp_split_page (PMD size) and the size's "split" mTHP stat (__folio_split)."""
    from vmsim.mm.huge_memory import count_mthp_stat
    order = (k.mem.flags[folio] & PG_ORDER_MASK) >> PG_ORDER_SHIFT
    if order == 9:
        k.vmstat[vmstat.THP_SPLIT_PAGE] += 1
    count_mthp_stat(k, order, "split")
    pieces = []
    base = 0
    while order:
        order -= 1
        half = 1 << order
        if split_at < base + half:
            pieces.append((base + half, order))
        else:
            pieces.append((base, order))
            base += half
    pieces.append((base, 0))
    _split_to(k, mapping, folio, sorted(pieces))


def _split_to(k, mapping, folio: int, pieces):
    """Split an unmapped page-cache folio into [(offset, order)] pieces
    (__split_folio_to_order): heads get the folio-wide state; large pieces are
    compound and large_rmappable again. As __folio_split() does, the pieces after the
    first that lie past EOF (i_size; shmem: shmem_fallocend) leave the cache, cleaned
    (shmem uncharges them)."""
    from vmsim.mm.page_flags import (PG_head, PG_tail, PG_uptodate, PG_lru, PG_active,
                                     PG_referenced, PG_workingset, PG_unevictable, PG_dirty,
                                     PG_large_rmappable, PG_swapbacked)
    from vmsim.mm.folio import prep_compound_page
    from vmsim.mm.swap import lruvec_del_folio, lruvec_add_folio, lru_add_drain_all
    mem = k.mem
    nr = _nr(k, folio)
    if nr == 1:
        return
    lru_add_drain_all(k)
    if mapping.folio_private:
        # __folio_split(): filemap_release_folio() frees the buffers first.
        from vmsim.fs.buffer import _free_buffers
        _free_buffers(mapping, folio)
    f = mem.flags[folio]
    on_lru = f & PG_lru
    if on_lru:
        lruvec_del_folio(k, folio)
    # __split_folio_to_order(): shmem pieces stay swapbacked.
    keep = f & (PG_uptodate | PG_lru | PG_active | PG_referenced | PG_workingset |
                PG_unevictable | PG_dirty | PG_swapbacked)
    index = mem.index[folio]
    extra = mem.refcount[folio] - nr          # references beyond the cache's
    if nr >= 512:
        k.vmstat[vmstat.NR_SHMEM_HUGEPAGES if mapping.swapbacked else vmstat.NR_FILE_HUGEPAGES] -= nr
    mem.mapping[folio + 1] = 0
    mem.index[folio + 1] = 0
    mem.lru_prev[folio + 1] = 0
    mem.lru_next[folio + 1] = 0
    for off, order in pieces:
        p = folio + off
        n = 1 << order
        mem.flags[p] = keep
        if order:
            prep_compound_page(k, p, order)
            mem.flags[p] = mem.flags[p] | PG_large_rmappable
        mem.mapping[p] = mapping.id
        mem.index[p] = index + off
        mem.refcount[p] = n
        mapping.i_pages.store_range(index + off, index + off + n - 1, p)
        if on_lru:
            lruvec_add_folio(k, p)
    mem.refcount[folio] += extra
    end = (mapping.host.i_size + 4095) >> 12
    if mapping.swapbacked:
        end = max(end, getattr(mapping.host, "fallocend", 0))     # shmem_fallocend()
    dropped = 0
    for off, order in pieces:
        if off and index + off >= end:
            # "Drop folio beyond EOF": __filemap_remove_folio() cleans a dirty one.
            __filemap_remove_folio(k, mapping, folio + off, None)
            dropped += 1 << order
    if dropped and mapping.swapbacked:
        from vmsim.mm.shmem import shmem_inode_unacct_blocks
        shmem_inode_unacct_blocks(k, mapping.host, dropped)   # shmem_uncharge()


def truncate_inode_pages_final(k, mapping):
    """truncate_inode_pages_final(): the inode goes (mapping_set_exiting: reclaim
    plants no more shadows); nothing may stay cached, shadows included."""
    mapping.exiting = True
    truncate_inode_pages_range(k, mapping, 0, -1)


def clear_shadow_entries(k, mapping, start: int, max: int):
    """clear_shadow_entries(): xas_for_each() over [start, max] stores NULL over each
    value entry met (a multi-index one whole, even one that began before start),
    workingset_update_node() following (shmem keeps swap entries there and handles
    them itself)."""
    from vmsim.mm.workingset import workingset_update_node
    if shmem_mapping(mapping):
        return
    cache = mapping.i_pages
    if not cache.nr_values:
        return
    gone = cache.values_in(start, max)
    for index, order, _entry in gone:
        cache.erase_range(index, index + (1 << order) - 1)
    if gone:
        last, order, _ = gone[-1]
        workingset_update_node(k, mapping, gone[0][0], last + (1 << order) - 1)


def _find_lock_values(mapping, start: int, end: int) -> list:
    """The value entries find_lock_entries() returns from [start, end]: a multi-index
    one that begins before start or runs past end is omitted."""
    return [(i, o) for i, o, _ in mapping.i_pages.values_in(start, end)
            if i >= start and i + (1 << o) - 1 <= end]


def truncate_folio_batch_exceptionals(k, mapping, start: int, end: int):
    """truncate_folio_batch_exceptionals(): truncation removes the value entries
    its batches of [start, end] met (not shmem's). Its second pass
    (find_get_entries) meets those that only overlap the range too, and
    clear_shadow_entries' walk removes them whole."""
    clear_shadow_entries(k, mapping, start, end)


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
    from vmsim.mm.vmscan import remove_mapping
    return remove_mapping(k, mapping, folio) > 0


def mapping_try_invalidate(k, mapping, start: int, end: int, nr_failed: list = None) -> int:
    """mapping_try_invalidate(): evict what may go of the folios wholly in pages
    [start, end] that are neither locked nor under writeback (find_lock_entries,
    mapping_evict_folio); each that may not is deactivated
    (deactivate_file_folio) and counted in ``nr_failed`` (the kernel's unsigned long
    *nr_failed: a one-item list here, or None); shadow entries met are cleared
    (clear_shadow_entries). Returns the pages evicted plus the value entries met."""
    from vmsim.mm.swap import deactivate_file_folio
    values = _find_lock_values(mapping, start, end) if mapping.i_pages.nr_values else []
    count = len(values)
    if values:
        clear_shadow_entries(k, mapping, values[0][0], values[-1][0])
    flags = k.mem.flags
    for index, folio in _folios(k, mapping, start, end):
        nr = _nr(k, folio)
        if index < start or index + nr - 1 > end:
            continue
        if flags[folio] & (PG_locked | PG_writeback):
            # find_lock_entries() skips it (trylock, folio_test_writeback): neither
            # deactivated nor counted as failed.
            continue
        if mapping_evict_folio(k, mapping, folio):
            count += nr
            continue
        # Invalidation is a hint that the folio is no longer of interest.
        deactivate_file_folio(k, folio)
        if nr_failed is not None:
            nr_failed[0] += 1                    # likely in the LRU cache of a remote CPU
    return count


def invalidate_mapping_pages(k, mapping, start: int, end: int) -> int:
    """invalidate_mapping_pages(): mapping_try_invalidate() without the failures."""
    return mapping_try_invalidate(k, mapping, start, end, None)


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
    """drop_caches "1": lru_add_drain_all(), then invalidate_mapping_pages() of every
    inode whose mapping is not empty (shadow entries count: they are cleared too);
    counts drop_pagecache."""
    from vmsim.mm.swap import lru_add_drain_all
    lru_add_drain_all(k)
    for obj in list(k.objects):
        # tmpfs folios are the only copy of their data: drop_caches leaves them.
        if obj is not None and hasattr(obj, "i_pages") and obj.i_pages.count and \
                not obj.swapbacked and getattr(obj.host, "i_sb", None) is not None:
            invalidate_mapping_pages(k, obj, 0, (1 << 62))
    k.vmstat[vmstat.DROP_PAGECACHE] += 1
