"""The disk filesystem at / and /tmp: ext4 as 6.18 behaves for the page cache
(fs/ext4/file.c, inode.c, readpage.c, extents.c).

Files get large folios (mapping_set_large_folios: ext4_should_enable_large_folio in
6.18 for regular, non-journalled-data files); mmap uses ext4_file_vm_ops
(filemap_fault, filemap_map_pages, ext4_page_mkwrite) and thp_get_unmapped_area
places mappings of 2 MiB or more on a PMD boundary. ->readahead
(ext4_mpage_readpages) reads the blocks a file has and zero-fills holes without I/O;
->writepages writes the dirty folios' pages back. Block allocation, the journal and
extents are not modelled: a file's blocks are its written-back and fallocated pages, by
index, in the inode's block map (inode.i_blocks: page index -> block number) with the
contents on the device (block_device.disk; _UNWRITTEN for an unwritten extent's block,
which may lie past i_size after a KEEP_SIZE fallocate). COLLAPSE_RANGE and
INSERT_RANGE shift the map's entries.

Hole punch and truncation zero the partial blocks at their edges through the page cache
(ext4_zero_partial_blocks, ext4_block_truncate_page -> __ext4_block_zero_page_range):
the block's folio is looked up or created (a shadow there refaults), the block read into
it unless uptodate, zeroed and dirtied; the folio itself stays !uptodate when it was not
(only its buffer is: vmsim.fs.buffer). A hole's block, or a zero range's unwritten one,
is left alone, its new folio too.
"""
import errno

from vmsim.fs.blockdev import submit_bio
from vmsim.fs.buffer import (folio_buffers, create_empty_buffers, mark_buffer_dirty,
                             block_read_full_folio, block_invalidate_folio, try_to_free_buffers,
                             _folio_clean_buffers, BH_Mapped, BH_Uptodate, BH_Dirty)
from vmsim.mm.page_flags import PG_uptodate, PG_locked, PG_dirty
from vmsim.mm.filemap import filemap_map_pages
from vmsim.uapi import (FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_COLLAPSE_RANGE,
                        FALLOC_FL_ZERO_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_WRITE_ZEROES)


_BLOCKS = {}            # identical block contents share one bytes object


def _intern(b: bytes) -> bytes:
    return _BLOCKS.setdefault(b, b) if len(_BLOCKS) < 4096 else b


# The contents of a block of an unwritten extent (ext4_zero_range): allocated, but a
# lookup does not map it (_ext4_get_block -> ext4_update_bh_state keeps only
# EXT4_MAP_UNWRITTEN of BH_Mapped's bits), so reads zero-fill it without I/O and
# partial-block zeroing leaves it as a hole's. Told apart by identity: never interned.
_UNWRITTEN = bytes(bytearray(4096))


def _ext4_get_block(inode, index: int):
    """The contents of the block mapped at page ``index``, or None for a hole or an
    unwritten block (ext4_get_block(), create 0)."""
    blk = inode.i_blocks.get(index)
    if blk is None:
        return None
    data = inode.i_sb.s_bdev.disk[blk]
    return None if data is _UNWRITTEN else data


def _ext4_set_block(inode, index: int, data: bytes):
    """Write ``data`` to the block at page ``index``, allocating one for a hole
    (ext4_map_blocks(EXT4_GET_BLOCKS_CREATE); a freed block is reused first)."""
    _ext4_set_blocks(inode, index, (data,))


def _ext4_set_blocks(inode, first: int, datas):
    """_ext4_set_block() of each of ``datas`` at pages first, first + 1, ...; a
    delayed block allocated so gives back its reservation (ext4_es_insert_extent ->
    ext4_da_update_reserve_space)."""
    bdev = inode.i_sb.s_bdev
    blocks, disk, free = inode.i_blocks, bdev.disk, bdev.free_blocks
    delayed = inode._es_delayed
    for index, data in enumerate(datas, first):
        if delayed:
            delayed.discard(index)
        blk = blocks.get(index)
        if blk is not None:
            disk[blk] = data
            continue
        if free:
            blk = free.pop()
            disk[blk] = data
        else:
            blk = len(disk)
            disk.append(data)
        blocks[index] = blk


def _ext4_free_blocks(inode, first: int, last: int):
    """Unmap and free the blocks at page indices [first, last] (ext4_ext_remove_space
    -> ext4_free_blocks), the delayed ones' reservations too (ext4_es_remove_extent ->
    ext4_da_release_space), as every caller removes both."""
    delayed = inode._es_delayed
    if delayed:
        inode._es_delayed = {i for i in delayed if not first <= i <= last}
    blocks = inode.i_blocks
    if not blocks:
        return
    freed = [blk for _, blk in blocks.items_in(first, last)]
    if freed:
        blocks.erase_range(first, last)
        bdev = inode.i_sb.s_bdev
        disk = bdev.disk
        for blk in freed:
            disk[blk] = None
        bdev.free_blocks += freed


def ext4_da_get_block_prep(k, inode, iblock: int) -> int:
    """ext4_da_get_block_prep() -> ext4_da_map_blocks(): a block the file has
    (written or unwritten) or one already delayed just maps the buffer; a hole
    becomes a delayed block (ext4_insert_delayed_block -> ext4_da_reserve_space:
    i_reserved_data_blocks + 1), allocated at writeback."""
    if inode.i_blocks.get(iblock) is None:
        inode._es_delayed.add(iblock)
    return 0


def ext4_da_write_begin(k, mapping, folio: int, pos: int, len_: int):
    """ext4_da_write_begin() -> block_write_begin(): the buffers of the blocks written
    mapped, a hole's block delayed (ext4_da_get_block_prep)."""
    from vmsim.fs.buffer import __block_write_begin_int
    fpos = k.mem.index[folio] << 12
    __block_write_begin_int(k, mapping, folio, pos - fpos, pos + len_ - fpos,
                            ext4_da_get_block_prep)


def ext4_da_write_end(k, mapping, folio: int, pos: int, copied: int):
    """ext4_da_write_end() -> ext4_da_do_write_end(): block_write_end (the written
    blocks' buffers uptodate and dirty), i_size grows to the write's end; the folio
    put, a write that starts past the old EOF zeroes [old size, pos) through the page
    cache (ext4_zero_partial_blocks): 6.18.44, 1 byte pwritten at 10000 into a
    100-byte file fsynced and dropped reads and dirties block 0 (pgpgin +4,
    nr_file_pages +2, nr_dirty +2)."""
    from vmsim.fs.buffer import block_commit_write
    from vmsim.mm.swap import folio_put
    inode = mapping.host
    old_size = inode.i_size
    fpos = k.mem.index[folio] << 12
    block_commit_write(k, mapping, folio, pos - fpos, pos + copied - fpos)
    if pos + copied > inode.i_size:
        inode.i_size = pos + copied                   # i_size_write()
    folio_put(k, folio)
    if pos > old_size:
        # pagecache_isize_extended(): nothing with 4 KiB blocks.
        ext4_zero_partial_blocks(k, inode, old_size, pos - old_size)


def ext4_file_getattr(inode) -> int:
    """ext4_file_getattr() -> ext4_getattr(): st_blocks, the blocks the file has
    (generic_fillattr: inode->i_blocks) plus those reserved for its delayed
    allocation (EXT4_I(inode)->i_reserved_data_blocks): 6.18.44, a new file's 10000
    bytes written show st_blocks 24 before fsync as after it."""
    return (len(inode.i_blocks) + len(inode._es_delayed)) * 8


def _folio_pages(k, folio):
    from vmsim.mm.filemap import _nr
    return range(folio, folio + _nr(k, folio))


def _dirty_runs(bh, n: int):
    """The [start, end) runs of dirty buffers among a folio's first ``n``."""
    runs = []
    start = None
    for i in range(n):
        if bh[i] & BH_Dirty:
            if start is None:
                start = i
        elif start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, n))
    return runs


class _Ext4Aops:
    """ext4_aops."""

    @staticmethod
    def write_begin(k, mapping, folio, pos, len_):
        """ext4_da_write_begin() once the folio is found (and read if partly
        overwritten)."""
        ext4_da_write_begin(k, mapping, folio, pos, len_)

    @staticmethod
    def write_end(k, mapping, folio, pos, len_):
        """ext4_da_write_end(), the data copied; drops the caller's reference."""
        ext4_da_write_end(k, mapping, folio, pos, len_)

    @staticmethod
    def release_folio(k, mapping, folio) -> bool:
        """ext4_release_folio() -> try_to_free_buffers(): fails while a buffer is
        dirty."""
        return try_to_free_buffers(k, mapping, folio)

    @staticmethod
    def invalidate_folio(k, mapping, folio, offset, length):
        """ext4_invalidate_folio() -> block_invalidate_folio()."""
        block_invalidate_folio(k, mapping, folio, offset, length)

    @staticmethod
    def readahead(k, mapping, folios):
        """ext4_mpage_readpages(): one bio per run of contiguous mapped blocks."""
        inode = mapping.host
        bdev = inode.i_sb.s_bdev
        mem = k.mem
        data = k.page_data
        blocks = inode.i_blocks
        disk = bdev.disk
        private = mem.private
        run = 0
        for folio in folios:
            if mapping.folio_private and folio_buffers(k, mapping, folio) is not None:
                # The "confused" path: a folio with buffers is read block by block.
                submit_bio(bdev, False, run)
                run = 0
                block_read_full_folio(k, mapping, folio, _ext4_get_block)
                continue
            index = mem.index[folio]
            pages = _folio_pages(k, folio)
            nr = len(pages)
            blks = [None if b is None or disk[b] is _UNWRITTEN else disk[b]
                    for b in map(blocks.get, range(index, index + nr))]
            if nr > 1 and None not in blks and not mem.np_private[folio:folio + nr].any():
                # Every block mapped, a fresh folio: the folio's data in one copy.
                data._write_full_pages(pages, blks)
                run += len(blks)
            else:
                for page, blk in zip(pages, blks):
                    if blk is None:                  # a hole: zeroed, no I/O
                        submit_bio(bdev, False, run)
                        run = 0
                        if private[page]:
                            data.clear(page)
                        continue
                    data.write(page, 0, blk)
                    run += 1
            mem.flags[folio] = (mem.flags[folio] | PG_uptodate) & ~PG_locked
        submit_bio(bdev, False, run)

    @staticmethod
    def read_folio(k, mapping, folio):
        _Ext4Aops.readahead(k, mapping, [folio])

    @staticmethod
    def writepages(k, mapping, folios):
        """ext4_writepages(): write each folio's pages inside i_size to their blocks,
        allocating a hole's. A folio with buffers has only its dirty ones written
        (mpage_prepare_extent_to_map maps the dirty delayed or unwritten buffers,
        ext4_bio_write_folio skips clean ones): a block whose buffer a punch or a
        truncation discarded stays a hole."""
        inode = mapping.host
        bdev = inode.i_sb.s_bdev
        mem = k.mem
        data = k.page_data
        last = (inode.i_size + 4095) >> 12
        run = 0
        prev = None
        for folio in folios:
            index = mem.index[folio]
            bh = mapping.folio_private.get(folio) if mapping.folio_private else None
            pages = _folio_pages(k, folio)[:max(last - index, 0)]
            if not pages:
                continue
            if bh is None:
                runs = [(0, len(pages))]
            else:
                runs = _dirty_runs(bh, len(pages))
                _folio_clean_buffers(mapping, folio)
            for start, end in runs:
                _ext4_set_blocks(inode, index + start,
                                 [_intern(data.read(page, 0, 4096)) for page in pages[start:end]])
                if prev is not None and index + start != prev + 1:
                    submit_bio(bdev, True, run)
                    run = 0
                run += end - start
                prev = index + end - 1
        submit_bio(bdev, True, run)


ext4_aops = _Ext4Aops()


# --- partial blocks, hole punch, truncation (fs/ext4/inode.c, extents.c) ---------------
def __ext4_block_zero_page_range(k, mapping, from_: int, length: int) -> int:
    """__ext4_block_zero_page_range(): zero ``length`` bytes at ``from_`` (inside one
    block) in the page cache: the folio is found or created (FGP_LOCK | FGP_ACCESSED |
    FGP_CREAT: a new one refaults a shadow), gets buffers; a hole's block is left alone;
    a mapped block is read unless uptodate, zeroed and marked dirty."""
    from vmsim.mm.filemap import __filemap_get_folio, FGP_LOCK, FGP_ACCESSED, FGP_CREAT
    from vmsim.mm.swap import folio_put
    mem = k.mem
    folio = __filemap_get_folio(k, mapping, from_ >> 12, FGP_LOCK | FGP_ACCESSED | FGP_CREAT)
    if folio < 0:
        return folio
    inode = mapping.host
    # A dirty folio was written (->write_begin, ext4_page_mkwrite): its buffers are
    # mapped (delayed allocation, BH_Delay). A dirty folio without buffers (dirtied
    # without a write through the fs: none in vmsim's paths) is taken as mapped too.
    dirty = mem.flags[folio] & PG_dirty
    bh = folio_buffers(k, mapping, folio)
    if bh is None:
        bh = create_empty_buffers(k, mapping, folio, BH_Mapped if dirty else 0)
    iblock = from_ >> 12
    i = iblock - mem.index[folio]                 # the buffer holding from_
    page = folio + i
    if dirty:
        bh[i] |= BH_Mapped
    if not bh[i] & BH_Mapped:
        blk = _ext4_get_block(inode, iblock)      # ext4_get_block(..., create 0)
        if blk is None:                           # a hole: nothing to do
            folio_put(k, folio)
            return 0
        bh[i] |= BH_Mapped
    if mem.flags[folio] & PG_uptodate:
        bh[i] |= BH_Uptodate
    if not bh[i] & BH_Uptodate:
        # ext4_read_bh_lock(): read the block, synchronously.
        k.page_data.write(page, 0, _ext4_get_block(inode, iblock))
        submit_bio(inode.i_sb.s_bdev, False, 1)
        bh[i] |= BH_Uptodate
    k.page_data.write(page, from_ & 4095, bytes(length))      # folio_zero_range()
    mark_buffer_dirty(k, folio, bh, i)
    folio_put(k, folio)
    return 0


def ext4_block_zero_page_range(k, mapping, from_: int, length: int) -> int:
    """ext4_block_zero_page_range(): zero [from_, from_ + length) cut at the end of
    from_'s block."""
    max_ = 4096 - (from_ & 4095)
    if length > max_ or length < 0:
        length = max_
    return __ext4_block_zero_page_range(k, mapping, from_, length)


def ext4_block_truncate_page(k, mapping, from_: int) -> int:
    """ext4_block_truncate_page(): zero from ``from_`` to the end of its block."""
    return ext4_block_zero_page_range(k, mapping, from_, 4096 - (from_ & 4095))


def ext4_zero_partial_blocks(k, inode, lstart: int, length: int) -> int:
    """ext4_zero_partial_blocks(): zero the range's parts of its first and last
    blocks (one call when it starts and ends in the same block)."""
    mapping = inode.i_mapping
    byte_end = lstart + length - 1
    partial_start = lstart & 4095
    partial_end = byte_end & 4095
    start = lstart >> 12
    end = byte_end >> 12
    if start == end and (partial_start or partial_end != 4095):
        return ext4_block_zero_page_range(k, mapping, lstart, length)
    if partial_start:
        err = ext4_block_zero_page_range(k, mapping, lstart, 4096)
        if err:
            return err
    if partial_end != 4095:
        return ext4_block_zero_page_range(k, mapping, byte_end - partial_end, partial_end + 1)
    return 0


def ext4_punch_hole(k, file, offset: int, length: int) -> int:
    """ext4_punch_hole(): a hole past i_size ends at i_size's page; the page cache goes
    first (ext4_truncate_page_cache_block_range: 4 KiB blocks, truncate_pagecache_range),
    then the partial blocks are zeroed in it and the whole blocks freed
    (ext4_ext_remove_space)."""
    from vmsim.mm.truncate import truncate_pagecache_range
    inode = file.f_inode
    end = offset + length               # within s_maxbytes: vfs_fallocate checked
    if offset >= inode.i_size:
        return 0
    if end > inode.i_size:
        end = (inode.i_size + 4095) & ~4095
    length = end - offset
    truncate_pagecache_range(k, inode, offset, end - 1)
    ret = ext4_zero_partial_blocks(k, inode, offset, length)
    if ret:
        return ret
    start_lblk = (offset + 4095) >> 12
    end_lblk = end >> 12
    if end_lblk > start_lblk:
        _ext4_free_blocks(inode, start_lblk, end_lblk - 1)
    return 0


# ext4_map_blocks() flags (fs/ext4/ext4.h, not in the reference tree) that
# ext4_alloc_file_blocks() passes. KEEP_SIZE is no flag (EXT4_GET_BLOCKS_KEEP_SIZE was
# removed): new_size 0 keeps the size.
EXT4_GET_BLOCKS_CREATE_UNWRIT_EXT = 0x0003          # UNWRIT_EXT | CREATE
EXT4_GET_BLOCKS_CONVERT_UNWRITTEN = 0x0100
LLONG_MAX = (1 << 63) - 1


def ext4_alloc_file_blocks(k, file, offset: int, len_: int, new_size: int, flags: int) -> int:
    """ext4_alloc_file_blocks() (fs/ext4/extents.c): map blocks [offset, offset + len_)
    with ``flags``: CREATE_UNWRIT_EXT gives each hole an unwritten block (a mapped one
    keeps its data), CONVERT_UNWRITTEN makes them all unwritten (reads zero-fill them).
    With KEEP_SIZE (new_size 0) the blocks may lie past i_size (preallocation: 6.18.44,
    a 4-page file fallocated KEEP_SIZE over [4 pages + 100, + 2 pages) has st_blocks
    56). Else i_size grows to the end of what was mapped, at most new_size
    (ext4_update_inode_size), and the bytes between the old size and the new are
    zeroed through the page cache (ext4_zero_partial_blocks): 6.18.44, a 100-byte file
    fallocated to 10000 bytes reads and dirties block 0 (pgpgin +4, nr_dirty +1) and
    caches a folio for unwritten block 2 (nr_file_pages +2)."""
    inode = file.f_inode
    blocks = inode.i_blocks
    if flags & EXT4_GET_BLOCKS_CONVERT_UNWRITTEN:
        _ext4_set_blocks(inode, offset, [_UNWRITTEN] * len_)
    else:
        for i in range(offset, offset + len_):
            if blocks.get(i) is None:
                _ext4_set_block(inode, i, _UNWRITTEN)
    if new_size:
        epos = min((offset + len_) << 12, new_size)
        old_size = inode.i_size
        if epos > old_size:
            inode.i_size = epos                   # ext4_update_inode_size()
            # pagecache_isize_extended(): nothing with 4 KiB blocks.
            return ext4_zero_partial_blocks(k, inode, old_size, epos - old_size)
    return 0


def ext4_zero_range(k, file, offset: int, length: int, mode: int) -> int:
    """ext4_zero_range() (fs/ext4/extents.c): the blocks of the range, its partial
    edges included, are allocated (ext4_alloc_file_blocks: unwritten extents, read as
    zeros without I/O; an edge block that exists keeps its data; past i_size too with
    KEEP_SIZE), the range's page cache goes (ext4_truncate_page_cache_block_range),
    its whole blocks become unwritten, and the partial blocks are zeroed through the
    page cache (ext4_zero_partial_blocks: an unwritten one only gets its folio)."""
    from vmsim.mm.truncate import truncate_pagecache_range
    inode = file.f_inode
    end = offset + length
    new_size = end if not mode & FALLOC_FL_KEEP_SIZE and end > inode.i_size else 0
    flags = EXT4_GET_BLOCKS_CREATE_UNWRIT_EXT
    if (offset | end) & 4095:
        # Preallocate the range including the unaligned edges.
        alloc_lblk = offset >> 12
        ret = ext4_alloc_file_blocks(k, file, alloc_lblk, ((end + 4095) >> 12) - alloc_lblk,
                                     new_size, flags)
        if ret:
            return ret
    truncate_pagecache_range(k, inode, offset, end - 1)
    start_lblk = (offset + 4095) >> 12
    end_lblk = end >> 12
    if end_lblk > start_lblk:
        ret = ext4_alloc_file_blocks(k, file, start_lblk, end_lblk - start_lblk, new_size,
                                     flags | EXT4_GET_BLOCKS_CONVERT_UNWRITTEN)
        if ret:
            return ret
    if not (offset | end) & 4095:
        return 0
    return ext4_zero_partial_blocks(k, inode, offset, length)


def ext4_do_fallocate(k, file, offset: int, length: int, mode: int) -> int:
    """ext4_do_fallocate(): unwritten blocks over the range's holes, partial blocks
    included (ext4_alloc_file_blocks); i_size grows unless KEEP_SIZE."""
    inode = file.f_inode
    end = offset + length
    start_lblk = offset >> 12
    new_size = end if not mode & FALLOC_FL_KEEP_SIZE and end > inode.i_size else 0
    return ext4_alloc_file_blocks(k, file, start_lblk, ((end + 4095) >> 12) - start_lblk,
                                  new_size, EXT4_GET_BLOCKS_CREATE_UNWRIT_EXT)


def ext4_ext_shift_extents(inode, start: int, shift: int, left: bool):
    """ext4_ext_shift_extents(): move the blocks at logical blocks >= ``start`` by
    ``shift`` (SHIFT_LEFT or SHIFT_RIGHT); their contents stay put on the device."""
    blocks = inode.i_blocks
    moved = list(blocks.items_in(start, (1 << 64) - 1))
    if not moved:
        return
    blocks.erase_range(start, (1 << 64) - 1)
    delta = -shift if left else shift
    for index, blk in moved:
        blocks[index + delta] = blk


def ext4_collapse_range(k, file, offset: int, length: int) -> int:
    """ext4_collapse_range() (fs/ext4/extents.c): remove [offset, offset + len) and
    shift what follows down. Block-aligned and ending before i_size, else -EINVAL.
    The page cache is written back over [offset, offset] and from the range's end on,
    then truncated from offset (truncate_pagecache: the folios before it stay, dirty
    ones too); the range's blocks are freed (ext4_ext_remove_space), the later ones
    shifted (SHIFT_LEFT), i_size shrinks by len. 6.18.44: a 16-page file of 1-page
    dirty folios, collapse(4 pages, 2): pgpgout +44 KiB, nr_dirty -12."""
    from vmsim.mm.page_writeback import filemap_write_and_wait_range
    from vmsim.mm.truncate import truncate_pagecache
    inode = file.f_inode
    mapping = inode.i_mapping
    end = offset + length
    if (offset | length) & 4095:              # !IS_ALIGNED(offset | len, cluster size)
        return -errno.EINVAL
    if end >= inode.i_size:
        return -errno.EINVAL
    start = offset                            # round_down(offset, PAGE_SIZE)
    ret = filemap_write_and_wait_range(k, mapping, start, offset)
    if not ret:
        ret = filemap_write_and_wait_range(k, mapping, end, LLONG_MAX)
    if ret:
        return ret
    truncate_pagecache(k, inode, start)
    start_lblk, end_lblk = offset >> 12, end >> 12
    _ext4_free_blocks(inode, start_lblk, end_lblk - 1)      # ext4_ext_remove_space()
    ext4_ext_shift_extents(inode, end_lblk, end_lblk - start_lblk, True)
    inode.i_size -= length
    return 0


def ext4_insert_range(k, file, offset: int, length: int) -> int:
    """ext4_insert_range() (fs/ext4/extents.c): insert a hole of len at offset,
    shifting what follows up. Block-aligned and starting inside i_size, else -EINVAL;
    -EFBIG past s_maxbytes. The page cache from offset on is written back and
    truncated, i_size grows by len, the blocks from offset on shift (SHIFT_RIGHT).
    6.18.44: a 16-page file of 1-page dirty folios, insert(4 pages, 2): pgpgout
    +48 KiB, nr_dirty -12, pages 0-3 stay cached."""
    from vmsim.fs.open import _s_maxbytes
    from vmsim.mm.page_writeback import filemap_write_and_wait_range
    from vmsim.mm.truncate import truncate_pagecache
    inode = file.f_inode
    if (offset | length) & 4095:
        return -errno.EINVAL
    if offset >= inode.i_size:
        return -errno.EINVAL
    # Which of the two fails first does not show: an offset at or past i_size that
    # would also pass s_maxbytes here fails vfs_fallocate()'s offset + len check.
    if length > _s_maxbytes(inode) - inode.i_size:
        return -errno.EFBIG
    start = offset                            # round_down(offset, PAGE_SIZE)
    ret = filemap_write_and_wait_range(k, inode.i_mapping, start, LLONG_MAX)
    if ret:
        return ret
    truncate_pagecache(k, inode, start)
    inode.i_size += length
    ext4_ext_shift_extents(inode, offset >> 12, length >> 12, False)
    return 0


def ext4_fallocate(k, file, mode: int, offset: int, length: int) -> int:
    """ext4_fallocate(): PUNCH_HOLE, COLLAPSE_RANGE, INSERT_RANGE, ZERO_RANGE, or
    allocation (ext4_do_fallocate). WRITE_ZEROES needs a device that unmaps on write
    zeroes (bdev_write_zeroes_unmap_sectors); the reference machine's vda has none
    (queue/write_zeroes_unmap_max_bytes 0), nor has vmsim's: -EOPNOTSUPP."""
    if mode & FALLOC_FL_WRITE_ZEROES and not file.f_inode.i_sb.s_bdev.write_zeroes_unmap:
        return -errno.EOPNOTSUPP
    if mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_COLLAPSE_RANGE |
                FALLOC_FL_ZERO_RANGE | FALLOC_FL_INSERT_RANGE | FALLOC_FL_WRITE_ZEROES):
        return -errno.EOPNOTSUPP
    if mode & FALLOC_FL_PUNCH_HOLE:
        return ext4_punch_hole(k, file, offset, length)
    if mode & FALLOC_FL_COLLAPSE_RANGE:
        return ext4_collapse_range(k, file, offset, length)
    if mode & FALLOC_FL_INSERT_RANGE:
        return ext4_insert_range(k, file, offset, length)
    if mode & (FALLOC_FL_ZERO_RANGE | FALLOC_FL_WRITE_ZEROES):
        # (WRITE_ZEROES would have the whole blocks written with zeros,
        # EXT4_GET_BLOCKS_CREATE_ZERO; no vmsim device lets it get here.)
        return ext4_zero_range(k, file, offset, length, mode)
    return ext4_do_fallocate(k, file, offset, length, mode)


def ext4_truncate(k, inode) -> int:
    """ext4_truncate(): zero the tail of i_size's block (ext4_block_truncate_page),
    free the blocks past it (ext4_ext_truncate)."""
    if inode.i_size & 4095:
        ext4_block_truncate_page(k, inode.i_mapping, inode.i_size)
    _ext4_free_blocks(inode, (inode.i_size + 4095) >> 12, (1 << 64) - 1)
    return 0


def ext4_setattr(k, inode, size: int) -> int:
    """ext4_setattr() of ATTR_SIZE: growing zeroes the tail of the old EOF block
    (ext4_block_truncate_page); then i_size, truncate_pagecache() and, unless it
    grew, ext4_truncate()."""
    from vmsim.mm.truncate import truncate_pagecache
    oldsize = inode.i_size
    shrink = size < oldsize
    if size != oldsize:
        if not shrink and oldsize & 4095:
            ext4_block_truncate_page(k, inode.i_mapping, oldsize)
        inode.i_size = size
        # pagecache_isize_extended(): nothing with 4 KiB blocks.
    truncate_pagecache(k, inode, inode.i_size)
    if size <= oldsize:
        return ext4_truncate(k, inode)
    return 0


class _Ext4FileVmOps:
    """ext4_file_vm_ops."""
    name = "ext4_file_vm_ops"

    @staticmethod
    def fault(vmf):
        from vmsim.mm.filemap import filemap_fault
        return filemap_fault(vmf)

    @staticmethod
    def map_pages(vmf, start_pgoff, end_pgoff):
        return filemap_map_pages(vmf, start_pgoff, end_pgoff)

    @staticmethod
    def page_mkwrite(vmf):
        """ext4_page_mkwrite(): past EOF is SIGBUS; else block_page_mkwrite() with
        ext4_da_get_block_prep (a hole's block delayed, reserved); VM_FAULT_LOCKED."""
        from vmsim.fs.buffer import block_page_mkwrite
        from vmsim.mm.filemap import _nr
        from vmsim.mm.folio import page_folio
        from vmsim.mm.mm_types import VM_FAULT_SIGBUS, VM_FAULT_NOPAGE, VM_FAULT_LOCKED
        inode = vmf.vma.vm_file.f_inode
        if vmf.pgoff >= (inode.i_size + 4095) >> 12:
            return VM_FAULT_SIGBUS
        k = vmf.vma.vm_mm.kernel
        mapping = vmf.vma.vm_file.f_mapping
        folio = page_folio(k, vmf.page)
        if k.mem.mapping[folio] != mapping.id:
            return VM_FAULT_NOPAGE                     # truncated meanwhile
        pos = k.mem.index[folio] << 12
        end = min(_nr(k, folio) << 12, inode.i_size - pos)
        block_page_mkwrite(k, mapping, folio, end, ext4_da_get_block_prep)
        return VM_FAULT_LOCKED


ext4_file_vm_ops = _Ext4FileVmOps()


class _Ext4FileOps:
    """ext4_file_operations (the parts memory management sees)."""

    @staticmethod
    def mmap(file, vma) -> int:
        """ext4_file_mmap_prepare(): ext4_file_vm_ops (DAX: not modelled)."""
        vma.vm_ops = ext4_file_vm_ops
        return 0

    @staticmethod
    def get_unmapped_area(mm, file, addr, length, pgoff, flags):
        """thp_get_unmapped_area()."""
        from vmsim.mm.huge_memory import thp_get_unmapped_area_vmflags
        return thp_get_unmapped_area_vmflags(mm, file, addr, length, pgoff, flags, 0)

    @staticmethod
    def fallocate(k, file, mode, offset, length) -> int:
        return ext4_fallocate(k, file, mode, offset, length)


class ext4_sops:
    a_ops = ext4_aops
    f_op = _Ext4FileOps()

    @staticmethod
    def setattr(k, inode, size) -> int:
        return ext4_setattr(k, inode, size)
