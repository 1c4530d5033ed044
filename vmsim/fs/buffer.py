"""Buffer heads: the per-block state of a page-cache folio (fs/buffer.c,
include/linux/buffer_head.h), as much of it as ext4's partial-block zeroing needs.

The kernel hangs a folio's buffer_heads (one per block) off folio->private. vmsim
keeps them per mapping, in ``mapping.folio_private``: folio head PFN -> one state word
per block, i.e. per page (ext4 here has 4 KiB blocks, the page size), of enum
bh_state_bits. Folios get them when written (->write_begin / ->write_end:
__block_write_begin_int maps the written blocks' buffers, delayed allocation reserving
a hole's block, and block_commit_write dirties them only; ext4_page_mkwrite ->
block_page_mkwrite all of them, past EOF too, by folio_mark_dirty) and when
ext4_block_zero_page_range() meets them; readahead attaches none. What they change:
a folio whose one block was read and zeroed stays !uptodate (mincore: not resident)
with an uptodate, dirty buffer, and reading it later (block_read_full_folio) finds the
data already there; writeback writes (and allocates) only the dirty buffers' blocks; a
partial truncation discards the buffers it covers (block_invalidate_folio), and a
large folio splits only when none left is dirty (try_to_free_buffers, which then
cancels the folio's dirtiness). vmsim keeps no folio reference for the buffers
(folio_attach_private's), so the refcount checks need no term for it.
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
    __folio_mark_dirty; not ->dirty_folio, which would dirty every buffer)."""
    from vmsim.mm.filemap import __folio_mark_dirty
    if not bh[i] & BH_Dirty:
        bh[i] |= BH_Dirty
        __folio_mark_dirty(k, folio)


def block_dirty_folio(k, mapping, folio: int, bh: list):
    """block_dirty_folio() (ext4_dirty_folio): every buffer dirty, then the folio."""
    from vmsim.mm.filemap import __folio_mark_dirty
    for i, state in enumerate(bh):
        bh[i] = state | BH_Dirty
    __folio_mark_dirty(k, folio)


def __block_write_begin_int(k, mapping, folio: int, from_: int, to: int, get_block):
    """__block_write_begin_int() (block_write_begin, block_page_mkwrite) of bytes
    [from_, to) of the folio (offsets in it): buffers made if it has none
    (create_empty_buffers), and each unmapped one in the range mapped by
    ``get_block`` (ext4_da_get_block_prep: delayed allocation). vmsim reads a
    partly overwritten folio whole beforehand (->read_folio)."""
    bh = mapping.folio_private.get(folio)
    if bh is None:
        bh = create_empty_buffers(k, mapping, folio)
    first = k.mem.index[folio]
    for i in range(from_ >> 12, ((to - 1) >> 12) + 1):
        if not bh[i] & BH_Mapped:
            get_block(k, mapping.host, first + i)
            bh[i] |= BH_Mapped


def block_commit_write(k, mapping, folio: int, from_: int, to: int):
    """block_commit_write() of bytes [from_, to) of the folio once the data is in:
    the written blocks' buffers uptodate and dirty (mark_buffer_dirty), the others
    left as they were."""
    bh = mapping.folio_private[folio]
    for i in range(from_ >> 12, ((to - 1) >> 12) + 1):
        bh[i] |= BH_Uptodate
        mark_buffer_dirty(k, folio, bh, i)


def block_page_mkwrite(k, mapping, folio: int, end: int, get_block):
    """block_page_mkwrite() once the folio is known to lie inside EOF, ``end`` bytes
    of it: its buffers there mapped by ``get_block`` (__block_write_begin_int) and
    dirtied (block_commit_write), then folio_mark_dirty() (ext4_dirty_folio ->
    block_dirty_folio: every buffer dirty, those past EOF too)."""
    from vmsim.mm.filemap import folio_mark_dirty
    __block_write_begin_int(k, mapping, folio, 0, end, get_block)
    block_commit_write(k, mapping, folio, 0, end)
    folio_mark_dirty(k, folio)


def block_invalidate_folio(k, mapping, folio: int, offset: int, length: int):
    """block_invalidate_folio(): discard the buffers wholly inside [offset, offset +
    length) of the folio (discard_buffer: not dirty, not mapped; still uptodate)."""
    bh = mapping.folio_private.get(folio) if mapping.folio_private else None
    if bh is None:
        return
    stop = offset + length
    for i in range((offset + 4095) >> 12, min(stop >> 12, len(bh))):
        bh[i] &= ~(BH_Dirty | BH_Mapped)


def try_to_free_buffers(k, mapping, folio: int) -> bool:
    """try_to_free_buffers(): fails while a buffer is dirty (buffer_busy); else the
    buffers go and a dirty folio is cleaned (folio_cancel_dirty: its buffers were
    the dirt)."""
    from vmsim.mm.filemap import _nr, folio_account_cleaned
    bh = mapping.folio_private.get(folio) if mapping.folio_private else None
    if bh is None:
        # No buffers: a dirty folio's dirt is not vmsim's buffers' to drop.
        return not k.mem.flags[folio] & PG_dirty
    if any(state & BH_Dirty for state in bh):
        return False
    f = k.mem.flags[folio]
    if f & PG_dirty:
        k.mem.flags[folio] = f & ~PG_dirty
        folio_account_cleaned(k, folio, _nr(k, folio))
    del mapping.folio_private[folio]
    return True


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
