"""ext4's ->readahead fills a fresh, fully mapped large folio in one pass
(PageData._write_full_pages); the frames, their rows and their bytes must be what the
page-by-page PageData.write() leaves."""
import numpy as np
import pytest

from vmsim import (Machine, O_RDWR, O_CREAT, PROT_READ, MAP_PRIVATE, POSIX_FADV_DONTNEED,
                   MADV_HUGEPAGE)
from vmsim.mm.page_data import PageData

P = 4096


def _run(monkeypatch, per_page):
    if per_page:
        def write_each(self, pfns, blocks):
            for p, b in zip(pfns, blocks):
                self.write(p, 0, b)
        monkeypatch.setattr(PageData, "_write_full_pages", write_each)
    m = Machine(memory="256M", cpus=2, pku=False)
    p = m.spawn()
    fd = p.open("/tmp/f", O_RDWR | O_CREAT, 0o644)
    rng = np.random.default_rng(7)
    size = 4 << 20
    data = bytearray(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    for z in (3, 17, 100, 600, 601):                 # all-zero blocks: no data row
        data[z * P:(z + 1) * P] = bytes(P)
    for off in range(0, size, 256 << 10):
        p.pwrite(fd, bytes(data[off:off + (256 << 10)]), off)
    p.fsync(fd)
    p.posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    # The first 2 MiB through a MADV_HUGEPAGE mapping (read-around of two PMD-sized
    # folios: do_sync_mmap_readahead's VM_HUGEPAGE branch), the rest by read(2)
    # (order-0 folios first, then larger).
    a = p.mmap(0, size, PROT_READ, MAP_PRIVATE, fd, 0)
    p.madvise(a, 2 << 20, MADV_HUGEPAGE)
    p.touch(a, P)
    p.pread(fd, size, 0)
    p.touch(a, size)
    got = p.read(a, size)
    k = m.k
    from vmsim.mm.page_flags import PG_head, PG_ORDER_MASK, PG_ORDER_SHIFT
    heads = np.flatnonzero(k.mem.np_flags & PG_head)
    orders = set(((k.mem.np_flags[heads] & PG_ORDER_MASK) >> PG_ORDER_SHIFT).tolist())
    assert 9 in orders                                # the one-pass fill ran
    priv = k.mem.np_private.copy()
    rows = np.flatnonzero(priv < 0)
    contents = {int(f): k.page_data.pool[~priv[f]].tobytes() for f in rows}
    m.check()
    return bytes(data), got, priv, contents


def test_folio_fill_leaves_the_per_page_state(monkeypatch):
    data, got, priv, contents = _run(monkeypatch, False)
    assert got == data
    with monkeypatch.context() as mp:
        data2, got2, priv2, contents2 = _run(mp, True)
    assert got2 == data2 == data
    assert np.array_equal(priv, priv2)
    assert contents == contents2
