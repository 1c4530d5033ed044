"""ext4 fallocate beyond hole punch and zero range (fs/ext4/extents.c 6.18:
ext4_do_fallocate / ext4_alloc_file_blocks, ext4_collapse_range, ext4_insert_range,
fs/open.c vfs_fallocate's mode switch).

Linux figures: Python probes (os.pwrite / fsync / posix_fadvise, fallocate and mmap +
mincore through ctypes, /proc/vmstat after /proc/sys/vm/stat_refresh, filefrag -v) run
as root on the reference machine (6.18.44, ext4 / with 4 KiB blocks, /tmp on it, pinned
to CPU 0), each 2-5 runs, all alike.
"""
import errno

import pytest

from vmsim import O_RDWR, O_RDONLY, O_CREAT, O_TRUNC, POSIX_FADV_DONTNEED

from vmtest import file_mincore

P = 4096
KEEP, PUNCH, COLLAPSE, ZERO, INSERT, UNSHARE, WRITE_ZEROES = 1, 2, 8, 0x10, 0x20, 0x40, 0x80
S_MAXBYTES = (16 << 40) - 4096            # ext4, 4 KiB blocks


def vmstat(m):
    return {l.split()[0]: int(l.split()[1]) for l in m.read_file("/proc/vmstat").splitlines()}


def _delta(m, before, *keys):
    now = vmstat(m)
    return tuple(now[k] - before[k] for k in keys)


def _file(p, path, nbytes, drop=False, chunk=None, sync=True, value=None):
    """A file of ``nbytes`` bytes (1s, or page i holding i + 1 with ``value``
    'index'), written ``chunk`` bytes a pwrite, fsynced and dropped if asked."""
    fd = p.open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
    chunk = chunk or max(nbytes, 1)
    for off in range(0, nbytes, chunk):
        n = min(chunk, nbytes - off)
        if value == "index":
            p.pwrite(fd, b"".join(bytes([(off + i) // P + 1]) * P for i in range(0, n, P)), off)
        else:
            p.pwrite(fd, b"\1" * n, off)
    if sync:
        p.fsync(fd)
    if drop:
        p.posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    return fd


def _st(p, fd):
    st = p.fstat(fd)
    return st.st_size, st.st_blocks


K3 = ("pgpgin", "nr_file_pages", "nr_dirty")


@pytest.mark.parametrize("mode", [KEEP, ZERO | KEEP])
def test_keep_size_preallocates_past_eof(machine, proc, mode):
    """A 4-page file, fallocate(mode, 4 pages + 100, 2 pages): blocks 4-6 allocated
    unwritten past EOF (filefrag: 4..6 'last,unwritten,eof'), st_blocks 32 -> 56, size
    16384. ftruncate to the same size frees them (ext4_setattr -> ext4_truncate even
    when the size does not change): 32."""
    p = proc
    fd = _file(p, "/tmp/prealloc", 4 * P)
    assert _st(p, fd) == (4 * P, 32)
    p.fallocate(fd, mode, 4 * P + 100, 2 * P)
    assert _st(p, fd) == (4 * P, 56)
    p.fsync(fd)
    assert _st(p, fd) == (4 * P, 56)
    p.ftruncate(fd, 4 * P)
    assert _st(p, fd) == (4 * P, 32)
    machine.check()
    p.close(fd)


def test_preallocated_blocks_stay_when_the_file_grows_over_them(machine, proc):
    """Linux: KEEP_SIZE preallocation past EOF as above (56), ftruncate to 8 pages
    (growing: no ext4_truncate): 56; ftruncate to 8 pages again: 56; the grown part
    reads as zeros."""
    p = proc
    fd = _file(p, "/tmp/prealloc-grow", 4 * P)
    p.fallocate(fd, KEEP, 4 * P + 100, 2 * P)
    p.ftruncate(fd, 8 * P)
    assert _st(p, fd) == (8 * P, 56)
    p.ftruncate(fd, 8 * P)
    assert _st(p, fd) == (8 * P, 56)
    assert p.pread(fd, 8 * P, 0) == b"\1" * 4 * P + bytes(4 * P)
    machine.check()
    p.close(fd)


@pytest.mark.parametrize("off,length,want,cached", [
    (4 * P + 100, 2 * P, (24676, 56), 1),        # new EOF block 6 partial: its folio
    (4 * P, 2 * P + 100, (24676, 56), 1),
    (4 * P + 100, 2 * P - 100, (24576, 48), 0),  # ends on a block boundary: nothing
    (4 * P, 2 * P, (24576, 48), 0),
    (8 * P + 100, 2 * P, (41060, 56), 1),        # blocks 4-7 stay holes
])
def test_allocation_past_eof_grows_the_file(machine, proc, off, length, want, cached):
    """A 4-page file, fsynced and dropped, fallocate(0, off, length): the blocks of the
    range are allocated, i_size grows to its end, and [old size, new size) is zeroed
    through the page cache (ext4_alloc_file_blocks -> ext4_zero_partial_blocks): the
    new EOF block, unwritten, only gets a folio. Linux: pgpgin +0, nr_dirty +0,
    nr_file_pages +``cached``, mincore nothing resident."""
    p = proc
    fd = _file(p, "/tmp/alloc-eof", 4 * P, drop=True)
    v = vmstat(machine)
    p.fallocate(fd, 0, off, length)
    assert _st(p, fd) == want
    assert _delta(machine, v, *K3) == (0, cached, 0)
    n = (want[0] + P - 1) // P
    assert file_mincore(p, fd, n) == "." * n
    assert p.pread(fd, want[0], 0) == b"\1" * 4 * P + bytes(want[0] - 4 * P)
    machine.check()
    p.close(fd)


def test_growing_allocation_zeroes_the_old_eof_block_tail(machine, proc):
    """Linux: a 100-byte file, fsynced and dropped, fallocate(0, 0, 10000): (10000, 24);
    block 0 is read and its tail zeroed and dirtied, block 2 (unwritten) gets a folio:
    pgpgin +4, nr_file_pages +2, nr_dirty +1, mincore '...'."""
    p = proc
    fd = _file(p, "/tmp/alloc-tail", 100, drop=True)
    v = vmstat(machine)
    p.fallocate(fd, 0, 0, 10000)
    assert _st(p, fd) == (10000, 24)
    assert _delta(machine, v, *K3) == (4, 2, 1)
    assert file_mincore(p, fd, 3) == "..."
    assert p.pread(fd, 200, 0) == b"\1" * 100 + bytes(100)
    machine.check()
    p.close(fd)


@pytest.mark.parametrize("mode", [0, ZERO])
def test_growing_aligned_allocation_zeroes_an_unaligned_old_eof(machine, proc, mode):
    """Linux: a 4-page + 100-byte file, fsynced and dropped, fallocate(mode, 8 pages,
    2 pages): (40960, 56) (blocks 0-4 and 8-9), pgpgin +4, nr_file_pages +1, nr_dirty
    +1 (block 4's tail zeroed), nothing resident."""
    p = proc
    fd = _file(p, "/tmp/alloc-old-eof", 4 * P + 100, drop=True)
    v = vmstat(machine)
    p.fallocate(fd, mode, 8 * P, 2 * P)
    assert _st(p, fd) == (40960, 56)
    assert _delta(machine, v, *K3) == (4, 1, 1)
    assert file_mincore(p, fd, 10) == "." * 10
    assert p.pread(fd, 10 * P, 0) == b"\1" * (4 * P + 100) + bytes(6 * P - 100)
    machine.check()
    p.close(fd)


def test_allocation_reads_as_zeros_without_io(machine, proc):
    """Linux: an empty file, fallocate(0, 0, 16 pages): (65536, 128), nothing read or
    cached; reading it: zeros, pgpgin +0, nr_file_pages +16, all resident."""
    p = proc
    fd = p.open("/tmp/alloc-empty", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    v = vmstat(machine)
    p.fallocate(fd, 0, 0, 16 * P)
    assert _st(p, fd) == (16 * P, 128)
    assert _delta(machine, v, *K3) == (0, 0, 0)
    assert p.pread(fd, 16 * P, 0) == bytes(16 * P)
    assert _delta(machine, v, "pgpgin", "nr_file_pages") == (0, 16)
    assert file_mincore(p, fd, 16) == "R" * 16
    machine.check()
    p.close(fd)


def test_allocation_keeps_data_and_counts_partial_blocks(machine, proc):
    """Linux: a 4-page file, dropped, fallocate(0, 2 pages, 4 pages): (24576, 48), the
    data kept. An empty file, fallocate(KEEP_SIZE, 100, 100): (0, 8); then
    (KEEP_SIZE, 4095, 2): (0, 16); a 10-byte pwrite at 0 then: (10, 16) (filefrag:
    block 1 'unwritten')."""
    p = proc
    fd = _file(p, "/tmp/alloc-data", 4 * P, drop=True)
    p.fallocate(fd, 0, 2 * P, 4 * P)
    assert _st(p, fd) == (6 * P, 48)
    assert p.pread(fd, 6 * P, 0) == b"\1" * 4 * P + bytes(2 * P)
    p.close(fd)
    fd = p.open("/tmp/alloc-small", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    p.fallocate(fd, KEEP, 100, 100)
    assert _st(p, fd) == (0, 8)
    p.fallocate(fd, KEEP, 4095, 2)
    assert _st(p, fd) == (0, 16)
    p.pwrite(fd, b"x" * 10, 0)
    p.fsync(fd)
    assert _st(p, fd) == (10, 16)
    assert p.pread(fd, 20, 0) == b"x" * 10
    machine.check()
    p.close(fd)


# fallocate(mode, offset, len) on a 16-page file written and fsynced: Linux's errno
# (0: done) and (size, st_blocks) after.
MODES = [
    ("collapse", COLLAPSE, 4 * P, 2 * P, 0, (57344, 112)),
    ("collapse|keep", COLLAPSE | KEEP, 4 * P, 2 * P, errno.EOPNOTSUPP, None),
    ("insert", INSERT, 4 * P, 2 * P, 0, (73728, 128)),
    ("insert|keep", INSERT | KEEP, 4 * P, 2 * P, errno.EOPNOTSUPP, None),
    ("unshare", UNSHARE, 0, P, errno.EOPNOTSUPP, None),
    ("unshare|keep", UNSHARE | KEEP, 0, P, errno.EOPNOTSUPP, None),
    ("write_zeroes", WRITE_ZEROES, 4 * P, 2 * P, errno.EOPNOTSUPP, None),
    ("write_zeroes|keep", WRITE_ZEROES | KEEP, 4 * P, 2 * P, errno.EOPNOTSUPP, None),
    ("write_zeroes unaligned", WRITE_ZEROES, 4 * P + 100, 2 * P, errno.EOPNOTSUPP, None),
    ("collapse|punch", COLLAPSE | PUNCH, 4 * P, P, errno.EOPNOTSUPP, None),
    ("collapse|zero", COLLAPSE | ZERO, 4 * P, P, errno.EOPNOTSUPP, None),
    ("collapse|insert", COLLAPSE | INSERT, 4 * P, P, errno.EOPNOTSUPP, None),
    ("0x100", 0x100, 0, P, errno.EOPNOTSUPP, None),
    ("no_hide_stale", 4, 0, P, errno.EOPNOTSUPP, None),
    ("collapse misaligned offset", COLLAPSE, 4 * P + 1, P, errno.EINVAL, None),
    ("collapse misaligned len", COLLAPSE, 4 * P, P + 1, errno.EINVAL, None),
    ("collapse to EOF", COLLAPSE, 14 * P, 2 * P, errno.EINVAL, None),
    ("collapse past EOF", COLLAPSE, 14 * P, 4 * P, errno.EINVAL, None),
    ("collapse at EOF", COLLAPSE, 16 * P, P, errno.EINVAL, None),
    ("collapse before EOF", COLLAPSE, 14 * P, P, 0, (61440, 120)),
    ("collapse misaligned past EOF", COLLAPSE, 20 * P + 1, P, errno.EINVAL, None),
    ("collapse len 0", COLLAPSE, 0, 0, errno.EINVAL, None),
    ("collapse negative", COLLAPSE, -P, P, errno.EINVAL, None),
    ("collapse overflow", COLLAPSE, 4 * P, (1 << 63) - 4 * P, errno.EFBIG, None),
    ("insert misaligned offset", INSERT, 4 * P + 1, P, errno.EINVAL, None),
    ("insert misaligned len", INSERT, 4 * P, P + 1, errno.EINVAL, None),
    ("insert at EOF", INSERT, 16 * P, P, errno.EINVAL, None),
    ("insert past EOF", INSERT, 17 * P, P, errno.EINVAL, None),
    ("insert misaligned past EOF", INSERT, 20 * P + 1, P, errno.EINVAL, None),
    ("insert at 0", INSERT, 0, P, 0, (69632, 128)),
    ("insert past s_maxbytes", INSERT, 0, (16 << 40) - 8 * P, errno.EFBIG, None),
    ("insert to s_maxbytes", INSERT, 0, (16 << 40) - 16 * P - P, 0, (S_MAXBYTES, 128)),
    ("insert at EOF past s_maxbytes", INSERT, 16 * P, (16 << 40) - 8 * P, errno.EFBIG, None),
    ("insert misaligned past s_maxbytes", INSERT, 4 * P + 1, (16 << 40) - 8 * P,
     errno.EINVAL, None),
]


@pytest.mark.parametrize("name,mode,off,length,err,after", MODES, ids=[m[0] for m in MODES])
def test_fallocate_modes_and_errors(machine, proc, name, mode, off, length, err, after):
    """Linux 6.18.44 on ext4 (vda: queue/write_zeroes_unmap_max_bytes 0, so no
    WRITE_ZEROES); the table above."""
    p = proc
    fd = _file(p, "/tmp/modes", 16 * P, chunk=P, value="index")
    if err:
        with pytest.raises(OSError) as e:
            p.fallocate(fd, mode, off, length)
        assert e.value.errno == err
        assert _st(p, fd) == (16 * P, 128)
    else:
        p.fallocate(fd, mode, off, length)
        assert _st(p, fd) == after
    machine.check()
    p.close(fd)


def test_collapse_and_insert_errors_elsewhere(machine, proc):
    """Linux: tmpfs has neither (shmem_fallocate: EOPNOTSUPP); a read-only descriptor
    is EBADF before the alignment check."""
    p = proc
    shm = p.open("/dev/shm/modes", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    p.ftruncate(shm, 16 * P)
    fd = _file(p, "/tmp/modes-ro", 16 * P)
    p.close(fd)
    ro = p.open("/tmp/modes-ro", O_RDONLY, 0)
    for f, mode, off, err in ((shm, COLLAPSE, 4 * P, errno.EOPNOTSUPP),
                              (shm, INSERT, 4 * P, errno.EOPNOTSUPP),
                              (ro, COLLAPSE, 4 * P, errno.EBADF),
                              (ro, COLLAPSE, 4 * P + 1, errno.EBADF)):
        with pytest.raises(OSError) as e:
            p.fallocate(f, mode, off, P)
        assert e.value.errno == err, (f, mode, off)
    p.close(shm)
    p.close(ro)


# (mode, chunk pages per pwrite, fsynced): Linux deltas (pgpgin, pgpgout KiB,
# nr_file_pages, nr_dirty) over the fallocate(mode, 4 pages, 2 pages), the page values
# after, and pgpgin of reading the whole file back.
SHIFTS = [
    (COLLAPSE, 16, True, (0, 0, -12, 0), [1] * 14, 40),
    (COLLAPSE, 16, False, (0, 64, -12, -16), [1] * 14, 40),
    (COLLAPSE, 1, True, (0, 0, -12, 0), [1, 2, 3, 4] + list(range(7, 17)), 40),
    (COLLAPSE, 1, False, (0, 44, -12, -12), [1, 2, 3, 4] + list(range(7, 17)), 40),
    (INSERT, 16, True, (0, 0, -12, 0), [1] * 4 + [0, 0] + [1] * 12, 48),
    (INSERT, 16, False, (0, 64, -12, -16), [1] * 4 + [0, 0] + [1] * 12, 48),
    (INSERT, 1, True, (0, 0, -12, 0), [1, 2, 3, 4, 0, 0] + list(range(5, 17)), 48),
    (INSERT, 1, False, (0, 48, -12, -12), [1, 2, 3, 4, 0, 0] + list(range(5, 17)), 48),
]


@pytest.mark.parametrize("mode,chunk,synced,delta,pages,reread", SHIFTS)
def test_collapse_and_insert_write_back_and_truncate_the_cache(machine, proc, mode, chunk,
                                                              synced, delta, pages, reread):
    """A 16-page file written ``chunk`` pages a pwrite (page i holds i + 1 when chunk
    is 1, all 1s otherwise: one 16-page folio), cached, fsynced or not, then
    fallocate(COLLAPSE_RANGE or INSERT_RANGE, 4 pages, 2 pages). The cache is written
    back from offset on (collapse: [offset, offset] and from the range's end; a large
    folio straddling offset goes whole) and truncated from offset: pages 0-3 stay
    (mincore RRRR then nothing), dirty if they were. Linux: the table above."""
    p = proc
    fd = _file(p, "/tmp/shift", 16 * P, chunk=chunk * P, sync=synced,
               value="index" if chunk == 1 else None)
    v = vmstat(machine)
    p.fallocate(fd, mode, 4 * P, 2 * P)
    assert _delta(machine, v, "pgpgin", "pgpgout", "nr_file_pages", "nr_dirty") == delta
    n = len(pages)
    assert _st(p, fd)[0] == n * P
    assert file_mincore(p, fd, n) == "RRRR" + "." * (n - 4)
    v = vmstat(machine)
    data = p.pread(fd, n * P, 0)
    assert [data[i * P] for i in range(n)] == pages
    assert _delta(machine, v, "pgpgin") == (reread,)
    machine.check()
    p.fsync(fd)
    machine.write_file("/proc/sys/vm/drop_caches", "3")
    assert p.pread(fd, n * P, 0) == data
    p.close(fd)
