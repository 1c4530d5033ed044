"""Readahead (mm/readahead.c, 6.18).

The ra window of a struct file (file_ra_state: start, size, async_size, order, the
PG_readahead marker at start + size - async_size), page_cache_sync_ra() on a miss,
page_cache_async_ra() when a marked folio is reached, and page_cache_ra_order(),
which allocates folios of ra->order pages, capped by the mapping's maximum and by
ilog2(ra->size), smaller where the index is not aligned or EOF is near. Each async
window raises the order by 2, so a sequential read of a file with large-folio
support (ext4 in 6.18) climbs 0, 2, 4, 6, 8, 9. read_pages() hands the batch to the
filesystem's ->readahead (vmsim's I/O completes synchronously, so the folios are
uptodate and unlocked when it returns).
"""
from vmsim.mm.page_flags import PG_locked

from vmsim.mm.filemap import (filemap_alloc_folio, filemap_add_folio, PG_readahead,
                              i_size_read, mapping_large_folio_support, PG_writeback)


class file_ra_state:
    """struct file_ra_state; ra_pages from the backing device (bdi->ra_pages)."""
    __slots__ = ("start", "size", "async_size", "ra_pages", "order", "mmap_miss", "prev_pos")

    def __init__(self, ra_pages: int):
        self.start = self.size = self.async_size = 0
        self.ra_pages = ra_pages
        self.order = 0
        self.mmap_miss = 0
        self.prev_pos = -1


class readahead_control:
    """struct readahead_control: the batch being read (_index, _nr_pages)."""
    __slots__ = ("file", "ra", "mapping", "index", "nr_pages", "batch")

    def __init__(self, file, ra, mapping, index: int):
        self.file = file
        self.ra = ra
        self.mapping = mapping
        self.index = index
        self.nr_pages = 0
        self.batch = []


def _k(ractl):
    return ractl.mapping.host.i_sb.kernel


def read_pages(ractl):
    """read_pages(): ->readahead for the batch; then the batch starts after it."""
    if not ractl.nr_pages:
        return
    from vmsim.mm.swap import folio_put
    k = _k(ractl)
    ractl.mapping.a_ops.readahead(k, ractl.mapping, ractl.batch)
    for folio in ractl.batch:                 # readahead_folio() drops the ractl's ref
        folio_put(k, folio)
    ractl.index += ractl.nr_pages
    ractl.nr_pages = 0
    ractl.batch = []


def _ra_add(ractl, k, index: int, order: int, mark: bool) -> int:
    from vmsim.mm.page_alloc import GFP_HIGHUSER_MOVABLE
    from vmsim.mm.swap import folio_add_lru
    pfn = filemap_alloc_folio(k, GFP_HIGHUSER_MOVABLE, order)
    if pfn < 0:
        return -12
    mem = k.mem
    mem.flags[pfn] = mem.flags[pfn] | PG_locked | (PG_readahead if mark else 0)
    filemap_add_folio(k, ractl.mapping, pfn, index)
    folio_add_lru(k, pfn, k._current_cpu())
    ractl.nr_pages += 1 << order
    ractl.batch.append(pfn)
    return 0


def page_cache_ra_unbounded(ractl, nr_to_read: int, lookahead_size: int):
    """page_cache_ra_unbounded(): order-0 folios for the missing pages of
    [index, index + nr_to_read), PG_readahead on the one lookahead_size from the end;
    a page already cached cuts the batch."""
    k = _k(ractl)
    mapping = ractl.mapping
    index = ractl.index
    mark = nr_to_read - lookahead_size if lookahead_size <= nr_to_read else -1
    i = 0
    while i < nr_to_read:
        if index + i in mapping.i_pages:
            read_pages(ractl)
            ractl.index += 1
            i = ractl.index + ractl.nr_pages - index
            continue
        if _ra_add(ractl, k, index + i, 0, i == mark):
            break
        i += 1
    read_pages(ractl)


def do_page_cache_ra(ractl, nr_to_read: int, lookahead_size: int):
    """do_page_cache_ra(): clamp to EOF, then page_cache_ra_unbounded()."""
    isize = i_size_read(ractl.mapping)
    if isize == 0:
        return
    end_index = (isize - 1) >> 12
    if ractl.index > end_index:
        return
    if nr_to_read > end_index - ractl.index:
        nr_to_read = end_index - ractl.index + 1
    page_cache_ra_unbounded(ractl, nr_to_read, lookahead_size)


def force_page_cache_ra(ractl, nr_to_read: int):
    """force_page_cache_ra(): read in 2 MiB chunks, no readahead state (fadvise
    WILLNEED, FMODE_RANDOM)."""
    ra = ractl.ra
    nr_to_read = min(nr_to_read, max(ra.ra_pages, ractl.mapping.host.i_sb.io_pages))
    while nr_to_read:
        this_chunk = min(512, nr_to_read)
        do_page_cache_ra(ractl, this_chunk, 0)
        nr_to_read -= this_chunk


def get_init_ra_size(size: int, max_pages: int) -> int:
    """get_init_ra_size(): x4 for small, x2 for medium, else max."""
    newsize = 1 << (size - 1).bit_length() if size > 1 else 1
    if newsize <= max_pages // 32:
        return newsize * 4
    if newsize <= max_pages // 4:
        return newsize * 2
    return max_pages


def get_next_ra_size(ra, max_pages: int) -> int:
    """get_next_ra_size(): ramp up the window."""
    cur = ra.size
    if cur < max_pages // 16:
        return 4 * cur
    if cur <= max_pages // 2:
        return 2 * cur
    return max_pages


def page_cache_ra_order(ractl, ra):
    """page_cache_ra_order(): read ra->size pages from ractl.index in folios of
    ra->order (capped by the mapping's maximum order and ilog2(ra->size)), marking the
    folio holding start + size - async_size PG_readahead."""
    mapping = ractl.mapping
    k = _k(ractl)
    start = index = ractl.index
    limit = (i_size_read(mapping) - 1) >> 12
    mark = index + ra.size - ra.async_size
    err = 0
    if not mapping_large_folio_support(mapping):
        ra.order = 0
    else:
        limit = min(limit, index + ra.size - 1)
        new_order = min(mapping.max_folio_order, ra.order)
        new_order = min(new_order, ra.size.bit_length() - 1)
        ra.order = new_order
        while index <= limit:
            order = new_order
            if index & ((1 << order) - 1):
                order = (index & -index).bit_length() - 1
            while order > 0 and index + (1 << order) - 1 > limit:
                order -= 1
            if mapping.i_pages.any_in(index, index + (1 << order) - 1):
                err = -17                          # -EEXIST from filemap_add_folio
                break
            err = _ra_add(ractl, k, index, order, index == (mark & ~((1 << order) - 1)))
            if err:
                break
            index += 1 << order
        read_pages(ractl)
        if not err:
            return
    # fallback:
    if ra.size > index - start:
        ractl.index = index
        do_page_cache_ra(ractl, ra.size - (index - start), ra.async_size)


def ractl_max_pages(ractl, req_size: int) -> int:
    """ractl_max_pages(): ra_pages, or up to the device's io_pages for a larger request."""
    max_pages = ractl.ra.ra_pages
    io_pages = ractl.mapping.host.i_sb.io_pages
    if req_size > max_pages and io_pages > max_pages:
        max_pages = min(req_size, io_pages)
    return max_pages


def page_cache_prev_miss(mapping, index: int, max_scan: int) -> int:
    """page_cache_prev_miss(): the first index at or below ``index`` not cached
    (ULONG_MAX when the scan ran below 0)."""
    while max_scan:
        if index < 0:
            return (1 << 64) - 1
        if index not in mapping.i_pages:
            return index
        index -= 1
        max_scan -= 1
    return index


def page_cache_next_miss(mapping, index: int, max_scan: int) -> int:
    while max_scan:
        if index not in mapping.i_pages:
            return index
        index += 1
        max_scan -= 1
    return index


def page_cache_sync_ra(ractl, req_count: int):
    """page_cache_sync_ra(): a miss. Start of file, an oversized read or a
    sequential miss sets up a new window; otherwise look back for a stream."""
    ra = ractl.ra
    index = ractl.index
    file = ractl.file
    do_forced_ra = file is not None and file.f_mode & FMODE_RANDOM
    if not ra.ra_pages:
        if file is None:
            return
        req_count = 1
        do_forced_ra = True
    if do_forced_ra:
        force_page_cache_ra(ractl, req_count)
        return
    max_pages = ractl_max_pages(ractl, req_count)
    prev_index = (ra.prev_pos & ((1 << 64) - 1)) >> 12
    if not index or req_count > max_pages or (index - prev_index) & ((1 << 64) - 1) <= 1:
        ra.start = index
        ra.size = get_init_ra_size(req_count, max_pages)
        ra.async_size = ra.size - req_count if ra.size > req_count else ra.size >> 1
    else:
        miss = page_cache_prev_miss(ractl.mapping, index - 1, max_pages)
        contig_count = index - miss - 1
        if contig_count <= req_count:
            do_page_cache_ra(ractl, req_count, 0)
            return
        if miss == (1 << 64) - 1:
            contig_count *= 2
        ra.start = index
        ra.size = min(contig_count + req_count, max_pages)
        ra.async_size = 1
    ra.order = 0
    ractl.index = ra.start
    page_cache_ra_order(ractl, ra)


def page_cache_async_ra(ractl, folio: int, req_count: int):
    """page_cache_async_ra(): a PG_readahead folio was reached: clear the mark, push
    the window forward (ramping it up), raise the order by 2, read it."""
    ra = ractl.ra
    if not ra.ra_pages:
        return
    k = _k(ractl)
    mem = k.mem
    if mem.flags[folio] & PG_writeback:
        return
    mem.flags[folio] = mem.flags[folio] & ~PG_readahead
    max_pages = ractl_max_pages(ractl, req_count)
    index = ractl.index
    nr = 1 << (((mem.flags[folio] >> 27) & 0xF)) if mem.flags[folio] & (1 << 6) else 1
    expected = (ra.start + ra.size - ra.async_size) & ~(nr - 1)
    if index == expected:
        ra.start += ra.size
        ra.size = max(ra.size, get_next_ra_size(ra, max_pages))
    else:
        start = page_cache_next_miss(ractl.mapping, index + 1, max_pages)
        if not start or start - index > max_pages:
            return
        ra.start = start
        ra.size = start - index
        ra.size += req_count
        ra.size = get_next_ra_size(ra, max_pages)
    ra.order += 2
    align = 1 << min(ra.order, (max_pages & -max_pages).bit_length() - 1)
    end = ra.start + ra.size
    aligned_end = end & ~(align - 1)
    if aligned_end > ra.start:
        ra.size -= end - aligned_end
    ra.async_size = ra.size
    ractl.index = ra.start
    page_cache_ra_order(ractl, ra)


FMODE_RANDOM = 1 << 12
