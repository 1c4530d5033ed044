"""Buffer heads: the per-block state of a page-cache folio (fs/buffer.c,
include/linux/buffer_head.h), as much of it as ext4's partial-block zeroing needs.

The kernel hangs a folio's buffer_heads (one per block) off folio->private. vmsim
keeps them per mapping, in ``mapping.folio_private``: folio head PFN -> one state word
per block, i.e. per page (ext4 here has 4 KiB blocks, the page size), of enum
bh_state_bits. Only folios that ext4_block_zero_page_range() met carry them (written
folios get buffers in ->write_begin too; vmsim does not model those, their folios are
uptodate). What they change: a folio whose one block was read and zeroed stays !uptodate
(mincore: not resident) with an uptodate, dirty buffer, and reading it later
(block_read_full_folio) finds the data already there. vmsim keeps no folio reference
for the buffers (folio_attach_private's), so the refcount checks need no term for it.
"""
from vmsim.fs.blockdev import submit_bio
from vmsim.mm.page_flags import PG_uptodate, PG_dirty, PG_locked

# enum bh_state_bits
BH_Uptodate = 1 << 0
BH_Dirty = 1 << 1
BH_Mapped = 1 << 4
_BH_MASK = BH_Uptodate | BH_Dirty | BH_Mapped


def folio_buffers(k, mapping, folio: int):
    """folio_buffers(): the folio's buffer states (a list, one per block) or None."""
    return mapping.folio_private.get(folio)


def create_empty_buffers(k, mapping, folio: int, b_state: int = 0):
    """create_empty_buffers(): one buffer per block, with ``b_state``, uptodate and
    dirty as the folio is (folio_attach_private)."""
    from vmsim.mm.filemap import _nr
    f = k.mem.flags[folio]
    state = b_state
    if f & PG_uptodate:
        state |= BH_Uptodate
    if f & PG_dirty:
        state |= BH_Dirty
    bh = [state] * _nr(k, folio)
    mapping.folio_private[folio] = bh
    return bh


def mark_buffer_dirty(k, folio: int, bh: list, i: int):
    """mark_buffer_dirty(): the buffer, then its folio (folio_test_set_dirty ->
    __folio_mark_dirty)."""
    from vmsim.mm.filemap import folio_mark_dirty
    if not bh[i] & BH_Dirty:
        bh[i] |= BH_Dirty
        folio_mark_dirty(k, folio)


def block_read_full_folio(k, mapping, folio: int, get_block):
    """block_read_full_folio(): per buffer, uptodate ones are kept, unmapped ones
    (holes, after get_block) zeroed, the rest read (one bio each); the folio is
    uptodate once all its buffers are."""
    mem = k.mem
    bh = mapping.folio_private[folio]
    index = mem.index[folio]
    data = k.page_data
    bdev = mapping.host.i_sb.s_bdev
    for i, state in enumerate(bh):
        if state & BH_Uptodate:
            continue
        blk = get_block(mapping.host, index + i)
        if blk is None:                               # a hole: folio_zero_range()
            data.clear(folio + i)
            bh[i] = state | BH_Uptodate
            continue
        data.write(folio + i, 0, blk)
        submit_bio(bdev, False, 1)
        bh[i] = state | BH_Mapped | BH_Uptodate
    mem.flags[folio] = (mem.flags[folio] | PG_uptodate) & ~PG_locked


def _folio_clean_buffers(mapping, folio: int):
    """The folio's buffers were written back (ext4_bio_write_folio: clear_buffer_dirty)."""
    bh = mapping.folio_private.get(folio) if mapping.folio_private else None
    if bh is not None:
        for i, state in enumerate(bh):
            bh[i] = state & ~BH_Dirty


def _free_buffers(mapping, folio: int):
    """The folio leaves the page cache without its buffers: truncation
    (block_invalidate_folio), invalidation and reclaim (filemap_release_folio ->
    try_to_free_buffers) and a split (__folio_split) release them first."""
    if mapping.folio_private:
        mapping.folio_private.pop(folio, None)
