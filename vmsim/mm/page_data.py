"""The bytes held in physical frames: RAM contents, kept sparsely.

Not a kernel file: this is the memory the hardware holds. A frame's ``private`` word
in mem_map is its data handle:

* 0: all zeros (every frame the allocator hands out reads as zeros, as __GFP_ZERO /
  clear_user_highpage leave it);
* > 0: one small run written inline in the 32-bit word: bits 0..11 offset, 12..14
  length (1..2), 15..30 up to two bytes (a ``touch`` store costs no extra host memory);
* < 0: the frame's 4 KiB live in row ``~handle`` of a pool of full pages.

The inline encoding is arrays-and-ints only, so the compiled access path can store a
touch byte without returning to Python. Frames that are freed drop their data.
"""
import numpy as np

PAGE_SIZE = 4096
_ZERO_PAGE = bytes(PAGE_SIZE)
INLINE_MAX = 2


def _inline_encode(off: int, data: bytes) -> int:
    """Return the inline handle of ``data`` at ``off`` (len(data) <= INLINE_MAX)."""
    return off | (len(data) << 12) | (int.from_bytes(data, "little") << 15)


def _inline_decode(handle: int):
    """Return (offset, bytes) of an inline handle."""
    off = handle & 0xFFF
    n = (handle >> 12) & 7
    return off, ((handle >> 15) & ((1 << (8 * n)) - 1)).to_bytes(n, "little")


def _store(rows, pool, phys, n, value):
    """Store ``n`` bytes ``value`` at physical address ``phys`` as PageData.write does,
    if the frame's handle (``rows``, mem_map private) allows it without a new pool row:
    a full-page row takes the bytes; a zero frame takes a run of up to two bytes inline;
    an inline run at the same offset is replaced by one at least as long; zeros that
    change no byte change nothing. Returns False, having changed nothing, when Python
    must do it (PageData.write). Arrays and ints only: the compiled access loops
    (mmu._touch_batch, tlb._tlb_touch_batch, mmu_batch.access_chunk) inline it."""
    pfn = phys >> 12
    off = phys & 0xFFF
    h = rows[pfn]
    if h < 0:
        b = (~h) * 4096 + off
        for j in range(n):
            pool[b + j] = value
        return True
    rep = value
    if n == 2:
        rep = value | (value << 8)
    if h == 0:
        if value == 0:
            return True
        if n <= 2:
            rows[pfn] = off | (n << 12) | (rep << 15)
            return True
        return False
    ioff = h & 0xFFF
    ilen = (h >> 12) & 7
    if ioff == off and n <= 2 and n >= ilen:
        rows[pfn] = off | (n << 12) | (rep << 15)
        return True
    if value == 0 and (off + n <= ioff or off >= ioff + ilen):
        return True
    return False


class PageData:
    """Frame contents: the per-frame handle (mem_map private) plus the full-page pool."""

    def __init__(self, private_mv):
        import mmap as _mmap
        self.private = private_mv
        # One row per frame at most, on an anonymous MAP_NORESERVE mapping: the host
        # backs a row only once it is written, and rows never move (growing a numpy
        # pool copied every row written so far, which dominated COW copies).
        rows = max(len(private_mv), 1)
        self._map = _mmap.mmap(-1, rows * PAGE_SIZE,
                               flags=_mmap.MAP_PRIVATE | _mmap.MAP_ANONYMOUS |
                               getattr(_mmap, "MAP_NORESERVE", 0x4000))
        self.pool = np.frombuffer(self._map, dtype=np.uint8).reshape(rows, PAGE_SIZE)
        self._mv = memoryview(self._map)          # byte slices: cheaper than numpy views
        self.free_rows = []
        self._stale_rows = []                     # freed rows not zeroed yet
        self.rows_used = 0

    def _alloc_row(self, zero: bool = True) -> int:
        """A row for a frame's data, reading as zeros unless ``zero`` is false (the
        caller overwrites all of it). A freed row is zeroed here, when it is reused,
        as the kernel clears a page when it allocates it, not when it frees it."""
        if self.free_rows:
            return self.free_rows.pop()
        if self._stale_rows:
            row = self._stale_rows.pop()
            if zero:
                b = row * PAGE_SIZE
                self._mv[b:b + PAGE_SIZE] = _ZERO_PAGE
            return row
        self.rows_used += 1
        return self.rows_used - 1

    def _rows_peek(self, n: int) -> list:
        """The rows the next n _alloc_row(False) calls return, in order (for the
        compiled fault runs, mm/_fault_batch.py)."""
        out = self.free_rows[:-n - 1:-1]
        if len(out) < n:
            out += self._stale_rows[:-(n - len(out)) - 1:-1]
        if len(out) < n:
            out += range(self.rows_used, min(self.rows_used + n - len(out), len(self.pool)))
        return out

    def _rows_commit(self, m: int):
        """Take the first m rows _rows_peek() listed, as m _alloc_row(False) calls."""
        for lst in (self.free_rows, self._stale_rows):
            t = min(m, len(lst))
            if t:
                del lst[-t:]
                m -= t
        self.rows_used += m

    def read(self, pfn: int, off: int, n: int) -> bytes:
        """Return n bytes at ``off`` of frame ``pfn`` (off + n <= 4096)."""
        h = self.private[pfn]
        if h == 0:
            return bytes(n)
        if h < 0:
            b = ~h * PAGE_SIZE + off
            return self._mv[b:b + n].tobytes()
        ioff, data = _inline_decode(h)
        lo, hi = max(off, ioff), min(off + n, ioff + len(data))
        if lo >= hi:
            return bytes(n)
        buf = bytearray(n)
        buf[lo - off:hi - off] = data[lo - ioff:hi - ioff]
        return bytes(buf)

    def write(self, pfn: int, off: int, data: bytes):
        """Store ``data`` at ``off`` of frame ``pfn`` (off + len <= 4096)."""
        h = self.private[pfn]
        n = len(data)
        if h >= 0:
            if h == 0 and not any(data):
                return                    # zeros into a zero frame change nothing
            if h > 0 and not any(data):
                ioff, old = _inline_decode(h)
                if off + n <= ioff or off >= ioff + len(old):
                    return                # zeros beside the inline run change nothing
            if h == 0 and n <= INLINE_MAX:
                if any(data):
                    self.private[pfn] = _inline_encode(off, data)
                return
            if h > 0:
                ioff, old = _inline_decode(h)
                if ioff == off and n <= INLINE_MAX and n >= len(old):
                    self.private[pfn] = _inline_encode(off, data)
                    return
            row = self._alloc_row()
            if h > 0:
                b = row * PAGE_SIZE + ioff
                self._mv[b:b + len(old)] = old
            self.private[pfn] = ~row
            h = ~row
        b = ~h * PAGE_SIZE + off
        self._mv[b:b + n] = data

    def _write_full_pages(self, pfns, blocks):
        """write(pfn, 0, block) of whole 4 KiB blocks into frames that hold no data
        (a folio fresh from the allocator), in one pass: an all-zero block leaves its
        frame without a row, as write() does; the others take rows in the order
        _alloc_row() calls would (a stale row is overwritten whole, so it needs no
        zeroing first)."""
        private = self.private
        take = [(p, b) for p, b in zip(pfns, blocks) if b != _ZERO_PAGE]
        if not take:
            return
        rows = self._rows_peek(len(take))
        self._rows_commit(len(take))
        mv = self._mv
        for (p, blk), row in zip(take, rows):
            private[p] = ~row
            o = row * PAGE_SIZE
            mv[o:o + PAGE_SIZE] = blk

    def copy(self, dst: int, src: int):
        """copy_highpage(): frame ``dst`` gets the contents of frame ``src``."""
        self.clear(dst)
        h = self.private[src]
        if h < 0:
            row = self._alloc_row(False)
            self._map.move(row * PAGE_SIZE, ~h * PAGE_SIZE, PAGE_SIZE)
            self.private[dst] = ~row
        else:
            self.private[dst] = h

    def clear(self, pfn: int):
        """clear_page(): drop the frame's data (it reads as zeros)."""
        h = self.private[pfn]
        if h < 0:
            self._stale_rows.append(~h)           # zeroed when reused (_alloc_row)
        self.private[pfn] = 0

    def is_zero(self, pfn: int) -> bool:
        h = self.private[pfn]
        if h == 0:
            return True
        if h > 0:
            return not any(_inline_decode(h)[1])
        return not self.pool[~h].any()
