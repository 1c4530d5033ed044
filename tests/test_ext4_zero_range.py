"""ext4's partial-block zeroing goes through the page cache (fs/ext4/inode.c
ext4_zero_partial_blocks / ext4_block_truncate_page -> __ext4_block_zero_page_range):
the block's folio is found or created, the block read into it unless uptodate, zeroed
and dirtied; a folio that was not uptodate stays so (only its buffer is uptodate).

Linux figures: Python probes (os.pwrite / fsync / posix_fadvise, fallocate and mmap +
mincore through ctypes, /proc/self/pagemap + /proc/kpageflags, /proc/vmstat after
/proc/sys/vm/stat_refresh) run as root on the reference machine (6.18.44, ext4 /tmp,
pinned to CPU 0). A 16-page file written in one pwrite, fsynced and dropped with
POSIX_FADV_DONTNEED, then fallocate(PUNCH_HOLE | KEEP_SIZE, 4096 + 100, 8192): mincore
all 16 pages not resident, pgpgin +8 kB (two blocks read); reading page 1 then costs
no I/O (pgpgin +0), one minor fault through a mapping and no major one, and only that
page becomes resident; kpageflags of pages 1 and 3 then show dirty and uptodate.
"""
import errno

import pytest

from vmsim import (O_RDWR, O_CREAT, O_TRUNC, PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED,
                   MAP_FIXED, MADV_PAGEOUT, POSIX_FADV_DONTNEED)
from vmsim.mm.page_flags import PG_uptodate, PG_dirty, PG_referenced

from vmtest import file_mincore

P = 4096
PUNCH = 3                     # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE


def vmstat(m):
    return {l.split()[0]: int(l.split()[1]) for l in m.read_file("/proc/vmstat").splitlines()}


def _delta(m, before, *keys):
    now = vmstat(m)
    return tuple(now[k] - before[k] for k in keys)


def _uncached(p, path, pages, chunk=None):
    """A file of ``pages`` pages of 1s, written ``chunk`` pages a pwrite, fsynced and
    dropped from the cache with POSIX_FADV_DONTNEED (no shadows)."""
    chunk = chunk or pages
    fd = p.open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
    for i in range(0, pages, chunk):
        p.pwrite(fd, b"\1" * (chunk * P), i * P)
    p.fsync(fd)
    p.posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    return fd


def _folio(p, fd, index):
    ino = p._file(fd).f_inode
    return ino.i_mapping.i_pages.get(index)


def test_punch_over_an_uncached_file_reads_the_partial_blocks_into_the_cache(machine, proc):
    p, k = proc, machine.k
    fd = _uncached(p, "/tmp/punch", 16)
    assert file_mincore(p, fd, 16) == "." * 16
    v = vmstat(machine)
    p.fallocate(fd, PUNCH, P + 100, 2 * P)
    # Linux: 16 x ".", pgpgin +8.
    assert file_mincore(p, fd, 16) == "." * 16
    assert _delta(machine, v, "pgpgin", "nr_dirty") == (8, 2)
    for index in (1, 3):
        folio = _folio(p, fd, index)
        f = k.mem.flags[folio]
        assert folio is not None and not f & PG_uptodate and f & PG_dirty and f & PG_referenced
    assert _folio(p, fd, 2) is None and 2 not in p._file(fd).f_inode.i_blocks
    v = vmstat(machine)
    assert p.pread(fd, P, P) == b"\1" * 100 + bytes(P - 100)
    assert p.pread(fd, P, 3 * P) == bytes(100) + b"\1" * (P - 100)
    assert p.pread(fd, P, 2 * P) == bytes(P)
    # Pages 1 and 3 were read without I/O (their buffers are uptodate); the hole's page
    # 2 is zero-filled without I/O too.
    assert _delta(machine, v, "pgpgin") == (0,)
    assert file_mincore(p, fd, 16) == ".RRR" + "." * 12
    p.fsync(fd)
    machine.write_file("/proc/sys/vm/drop_caches", "3")
    assert p.pread(fd, 4 * P, 0) == b"\1" * (P + 100) + bytes(2 * P) + b"\1" * (P - 100)
    p.close(fd)


def test_a_punched_page_faults_minor_and_alone(machine, proc):
    """Linux: touching page 1 through a mapping after the punch: minflt 1, majflt 0,
    mincore '.R' then 14 x '.' (no read-around: the folio was cached)."""
    p = proc
    fd = _uncached(p, "/tmp/punch-fault", 16)
    p.fallocate(fd, PUNCH, P + 100, 2 * P)
    a = p.mmap(0, 16 * P, PROT_READ, MAP_SHARED, fd, 0)
    r0 = p.getrusage()
    p.read(a + P, 1)
    r1 = p.getrusage()
    assert (r1.ru_minflt - r0.ru_minflt, r1.ru_majflt - r0.ru_majflt) == (1, 0)
    assert "".join("R" if b & 1 else "." for b in p.mincore(a, 16 * P)) == ".R" + "." * 14
    p.close(fd)


def test_punch_over_a_sparse_file_leaves_new_folios_unread(machine, proc):
    """Linux: a 16-page file made by ftruncate (no blocks), punched (4096 + 100, 8192):
    nothing resident; a pread of page 1 then makes page 1 alone resident."""
    p = proc
    fd = p.open("/tmp/sparse", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    p.ftruncate(fd, 16 * P)
    v = vmstat(machine)
    p.fallocate(fd, PUNCH, P + 100, 2 * P)
    assert file_mincore(p, fd, 16) == "." * 16
    assert _delta(machine, v, "pgpgin", "nr_dirty") == (0, 0)
    assert p.pread(fd, 10, P) == bytes(10)
    assert file_mincore(p, fd, 16) == ".R" + "." * 14
    p.close(fd)


def test_punch_on_a_cached_file_dirties_the_partial_folios(machine, proc):
    """Linux (kpageflags): after the punch of a cached, clean 16-page folio, pages 1 and
    3 (split off, order 0) are dirty and uptodate, page 4 (a large piece) stays clean."""
    p, k = proc, machine.k
    fd = p.open("/tmp/cached", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    p.pwrite(fd, b"\1" * (16 * P), 0)
    p.fsync(fd)
    v = vmstat(machine)
    p.fallocate(fd, PUNCH, P + 100, 2 * P)
    assert file_mincore(p, fd, 16) == "RR.RRRRRRRRRRRRR"
    assert _delta(machine, v, "pgpgin", "nr_dirty") == (0, 2)
    for index, dirty in ((1, True), (3, True), (4, False)):
        f = k.mem.flags[_folio(p, fd, index)]
        assert f & PG_uptodate and bool(f & PG_dirty) == dirty, index
    p.close(fd)


@pytest.mark.parametrize("chunk,off,length,refaults", [(1, 17 * P + 100, 2 * P, 2),
                                                       (16, 17 * P + 100, 200, 1)])
def test_punch_over_shadows_refaults_the_partial_blocks(machine, proc, chunk, off, length,
                                                        refaults):
    """Linux: 64 pages written ``chunk`` pages a pwrite, mapped, read and paged out
    (MADV_PAGEOUT: shadows), then punched: workingset_refault_file and _activate_file
    +2 / +1 (the hole's whole page 18 lost its shadow to truncation first; with 16-page
    folios a hole inside one block truncates nothing), workingset_nodes -1, pgpgin
    +8 / +4, nothing resident; a pread there then costs no I/O."""
    p = proc
    act = p.open("/tmp/active", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    p.pwrite(act, b"\5" * (1024 * P), 0)         # a workingset for the refault distance
    p.pread(act, 1024 * P, 0)
    p.pread(act, 1024 * P, 0)
    fd = p.open("/tmp/shadowed", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    for i in range(0, 64, chunk):
        p.pwrite(fd, b"\1" * (chunk * P), i * P)
    p.fsync(fd)
    a = p.mmap(0, 64 * P + (2 << 20), PROT_READ, MAP_PRIVATE, fd, 0)
    b = (a + (2 << 20) - 1) & ~((2 << 20) - 1)
    p.munmap(a, 64 * P + (2 << 20))
    a = p.mmap(b, 64 * P, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0)
    for i in range(64):
        p.read(a + i * P, 1)
    p.madvise(a, 64 * P, MADV_PAGEOUT)
    p.munmap(a, 64 * P)
    assert file_mincore(p, fd, 64) == "." * 64
    v = vmstat(machine)
    p.fallocate(fd, PUNCH, off, length)
    keys = ("workingset_refault_file", "workingset_activate_file", "workingset_nodes", "pgpgin")
    assert _delta(machine, v, *keys) == (refaults, refaults, -1, 4 * refaults)
    assert file_mincore(p, fd, 64) == "." * 64
    v = vmstat(machine)
    p.pread(fd, 10, off)
    assert _delta(machine, v, *keys) == (0, 0, 0, 0)
    assert file_mincore(p, fd, 64) == "." * 17 + "R" + "." * 46
    p.close(fd)


def test_truncate_to_a_partial_block_reads_it_into_the_cache(machine, proc):
    """Linux: ftruncate of an uncached 16-page file to 10 pages + 100 bytes: pgpgin +4,
    nothing resident, refaults 0; page 10 (read through a mapping) is dirty."""
    p, k = proc, machine.k
    fd = _uncached(p, "/tmp/trunc", 16)
    v = vmstat(machine)
    p.ftruncate(fd, 10 * P + 100)
    assert _delta(machine, v, "pgpgin", "nr_dirty", "workingset_refault_file") == (4, 1, 0)
    assert file_mincore(p, fd, 11) == "." * 11
    f = k.mem.flags[_folio(p, fd, 10)]
    assert f & PG_dirty and not f & PG_uptodate
    assert p.pread(fd, P, 10 * P) == b"\1" * 100
    p.fsync(fd)
    ino = p._file(fd).f_inode
    assert sorted(ino.i_blocks.keys()) == list(range(11))
    from vmsim.fs.ext4 import _ext4_get_block
    assert _ext4_get_block(ino, 10) == b"\1" * 100 + bytes(P - 100)
    p.close(fd)


def test_growing_truncate_zeroes_the_old_eof_block_tail(machine, proc):
    """Linux: a 100-byte file, bytes 100..299 of its page written through a MAP_SHARED
    mapping (past EOF), then ftruncate to 1000: bytes 100.. read as zeros
    (ext4_setattr -> ext4_block_truncate_page(oldsize))."""
    p = proc
    fd = p.open("/tmp/grow", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    p.pwrite(fd, b"a" * 100, 0)
    a = p.mmap(0, P, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
    p.write(a + 100, b"z" * 200)
    p.munmap(a, P)
    p.ftruncate(fd, 1000)
    assert p.pread(fd, 1000, 0) == b"a" * 100 + bytes(900)
    p.close(fd)


def test_growing_truncate_zeroes_an_eof_block_that_already_has_buffers(machine, proc):
    """The EOF folio got its (unmapped) buffer when a shrinking truncate zeroed a hole
    there; pwrite and a store through a MAP_SHARED mapping past EOF then dirty it
    (->write_begin, ext4_page_mkwrite map its buffer: delayed allocation), so growing
    the file zeroes the old EOF block's tail. Linux (probe as in the test above,
    ftruncate 8192 then 100 first): byte 200 reads 0."""
    p = proc
    fd = p.open("/tmp/grow2", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    p.ftruncate(fd, 8192)
    p.ftruncate(fd, 100)
    assert p._file(fd).f_inode.i_mapping.folio_private
    p.pwrite(fd, b"a" * 50, 0)
    a = p.mmap(0, P, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
    p.write(a + 200, b"z")
    p.munmap(a, P)
    p.ftruncate(fd, 8192)
    assert p.pread(fd, 300, 0) == b"a" * 50 + bytes(250)
    p.close(fd)


def test_punch_past_eof_frees_the_eof_block(machine, proc):
    """ext4_punch_hole() ends a hole past i_size at i_size's page end. Linux: a 1-byte
    file (st_blocks 8) punched over [0, 2): st_blocks 0; a 5000-byte file (16) punched
    over [4096, 9096): 8."""
    p = proc
    fd = p.open("/tmp/eof", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    p.pwrite(fd, b"\0", 0)
    p.fsync(fd)
    assert p.fstat(fd).st_blocks == 8
    p.fallocate(fd, PUNCH, 0, 2)
    p.fsync(fd)
    assert (p.fstat(fd).st_blocks, p.fstat(fd).st_size) == (0, 1)
    p.pwrite(fd, b"a" * 5000, 0)
    p.fsync(fd)
    assert p.fstat(fd).st_blocks == 16
    p.fallocate(fd, PUNCH, P, 5000)
    p.fsync(fd)
    assert (p.fstat(fd).st_blocks, p.fstat(fd).st_size) == (8, 5000)
    assert p.pread(fd, 5000, 0) == b"a" * P + bytes(5000 - P)
    p.close(fd)


def test_zeroing_traces_the_kernel_functions(machine, proc):
    """The punch's trace (faults_only=False) shows the kernel's path, in its order,
    and no vmsim-only helper of the zeroing."""
    import re
    from vmsim.trace import function_graph
    p = proc
    fd = _uncached(p, "/tmp/traced-punch", 16)
    with function_graph(machine, faults_only=False, max_events=100000) as tr:
        p.fallocate(fd, PUNCH, P + 100, 2 * P)
    called = re.findall(r"\|\s+(\w+)\(\)", tr.text())
    names = ["ext4_punch_hole", "truncate_pagecache_range", "ext4_zero_partial_blocks",
             "ext4_block_zero_page_range", "__ext4_block_zero_page_range",
             "__filemap_get_folio", "create_empty_buffers", "mark_buffer_dirty"]
    at = [called.index(n) for n in names]
    assert at == sorted(at), list(zip(names, at))
    assert not [n for n in called if n.startswith("_ext4") or n == "_free_buffers"]
    p.close(fd)


def test_checker_catches_broken_buffer_heads(machine, proc):
    p = proc
    fd = _uncached(p, "/tmp/bh", 16)
    p.fallocate(fd, PUNCH, P + 100, 2 * P)
    machine.check()
    mapping = p._file(fd).f_inode.i_mapping
    folio = _folio(p, fd, 1)
    bh = mapping.folio_private[folio]

    def caught(pattern):
        with pytest.raises(AssertionError, match=pattern):
            machine.check()

    saved = bh[0]
    bh[0] = saved | (1 << 9)
    caught(r"buffers: pfn 0x[0-9a-f]+: state 0x[0-9a-f]+ has unknown bits")
    bh[0] = saved & ~1                            # dirty but not uptodate
    caught(r"a dirty buffer not mapped and uptodate")
    bh[0] = saved
    bh.append(saved)
    caught(r"2 buffers for 1 pages")
    bh.pop()
    mapping.folio_private[folio + 100] = [0]
    caught(r"has buffers of mapping \d+ but is not its page-cache folio")
    del mapping.folio_private[folio + 100]
    assert not machine.k.mem.flags[folio] & PG_uptodate
    del mapping.folio_private[folio]
    caught(r"page cache: folio 0x[0-9a-f]+ at mapping \d+ is not uptodate and has no buffers")
    mapping.folio_private[folio] = bh
    machine.check()
    p.close(fd)


ZERO_RANGE = 0x10             # FALLOC_FL_ZERO_RANGE


@pytest.mark.parametrize("cached", [False, True])
def test_zero_range_zeroes_partial_blocks_through_the_cache(machine, proc, cached):
    """ext4_zero_range(): Linux, 16-page file, fallocate(ZERO_RANGE, 4096 + 100, 8192):
    uncached: mincore 16 x '.', pgpgin +8, nr_dirty +2; cached: 'RR.' + 13 x 'R',
    pgpgin +0, nr_dirty +2; both: st_blocks 128 before and after (block 2 stays,
    unwritten), the bytes zeroed."""
    p = proc
    if cached:
        fd = p.open("/tmp/zr", O_RDWR | O_CREAT | O_TRUNC, 0o644)
        p.pwrite(fd, b"\1" * (16 * P), 0)
        p.fsync(fd)
    else:
        fd = _uncached(p, "/tmp/zr", 16)
    v = vmstat(machine)
    p.fallocate(fd, ZERO_RANGE, P + 100, 2 * P)
    assert file_mincore(p, fd, 16) == ("RR.RRRRRRRRRRRRR" if cached else "." * 16)
    assert _delta(machine, v, "pgpgin", "nr_dirty") == ((0, 2) if cached else (8, 2))
    assert p.fstat(fd).st_blocks == 128
    got = p.pread(fd, 3 * P, P)
    assert got == b"\1" * 100 + bytes(2 * P) + b"\1" * (P - 100)
    p.fsync(fd)
    assert p.fstat(fd).st_blocks == 128
    machine.write_file("/proc/sys/vm/drop_caches", "3")
    assert p.pread(fd, 3 * P, P) == got
    p.close(fd)


def test_zero_range_past_eof_grows_the_file(machine, proc):
    """Linux: a 16-page file, fallocate(ZERO_RANGE, 15 pages + 100, 3 pages): size
    73828, st_blocks 152 (19 blocks: the edges are allocated too), nothing resident."""
    p = proc
    fd = _uncached(p, "/tmp/zr-eof", 16)
    p.fallocate(fd, ZERO_RANGE, 15 * P + 100, 3 * P)
    st = p.fstat(fd)
    assert (st.st_size, st.st_blocks) == (73828, 152)
    assert file_mincore(p, fd, 19) == "." * 19
    assert p.pread(fd, 4 * P, 15 * P) == b"\1" * 100 + bytes(73828 - 15 * P - 100)
    p.close(fd)


def test_zero_range_errors(machine, proc):
    """Linux: ZERO_RANGE | PUNCH_HOLE (| KEEP_SIZE) is EOPNOTSUPP; tmpfs has no
    ZERO_RANGE (EOPNOTSUPP)."""
    p = proc
    fd = p.open("/tmp/zr-err", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    p.pwrite(fd, b"\1" * P, 0)
    shm = p.open("/dev/shm/zr-err", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    p.ftruncate(shm, 4 * P)
    for f, mode in ((fd, ZERO_RANGE | PUNCH), (fd, ZERO_RANGE | 2), (shm, ZERO_RANGE)):
        with pytest.raises(OSError) as e:
            p.fallocate(f, mode, 0, P)
        assert e.value.errno == errno.EOPNOTSUPP, (f, mode)
    p.close(fd)
    p.close(shm)


def test_truncate_to_the_same_unaligned_size_zeroes_the_eof_block_tail(machine, proc):
    """ext4_setattr() runs ext4_truncate() when the size does not grow, the same size
    included: Linux, a 10-page + 100-byte file, uncached, ftruncate to its own size:
    pgpgin +4, nr_dirty +1, nothing resident (2 runs)."""
    p = proc
    fd = p.open("/tmp/same", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    p.pwrite(fd, b"\1" * (10 * P + 100), 0)
    p.fsync(fd)
    p.posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    v = vmstat(machine)
    p.ftruncate(fd, 10 * P + 100)
    assert _delta(machine, v, "pgpgin", "nr_dirty") == (4, 1)
    assert file_mincore(p, fd, 11) == "." * 11
    p.close(fd)


@pytest.mark.parametrize("mode", [ZERO_RANGE, PUNCH])
def test_zeroing_over_holes_reads_and_dirties_nothing(machine, proc, mode):
    """A sparse 16-page file, fallocate(mode, 4096 + 100, 8192): the edge blocks are
    holes (PUNCH) or unwritten (ZERO_RANGE preallocates them; ext4_get_block() does
    not map an unwritten block), so each edge only gets a folio: nothing read, none
    dirty. The three blocks then read back as zeros without I/O. Linux (probe on the
    reference machine, 9 runs, modal): pgpgin +0, nr_file_pages +2, nr_dirty +0;
    ZERO_RANGE: st_blocks 24, reading pages 1-3 pgpgin +0."""
    p = proc
    fd = p.open("/tmp/zr-holes", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    p.ftruncate(fd, 16 * P)
    v = vmstat(machine)
    p.fallocate(fd, mode, P + 100, 2 * P)
    assert _delta(machine, v, "pgpgin", "nr_file_pages", "nr_dirty") == (0, 2, 0)
    assert p.fstat(fd).st_blocks == (24 if mode == ZERO_RANGE else 0)
    v = vmstat(machine)
    assert p.pread(fd, 3 * P, P) == bytes(3 * P)
    assert _delta(machine, v, "pgpgin") == (0,)
    p.close(fd)


def test_zero_range_keep_size_past_eof_makes_the_edge_folios(machine, proc):
    """A 4-page file written and fsynced, fallocate(ZERO_RANGE | KEEP_SIZE,
    4 * 4096 + 100, 8192): both edges lie past EOF; each gets a folio, nothing is read
    or dirtied, the size stays. Linux: pgpgin +0, nr_file_pages +2, nr_dirty +0, size
    16384, st_blocks 56 (the 3 blocks past EOF preallocated, unwritten)."""
    p = proc
    fd = p.open("/tmp/zr-eof", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    p.pwrite(fd, b"\1" * 4 * P, 0)
    p.fsync(fd)
    v = vmstat(machine)
    p.fallocate(fd, ZERO_RANGE | 1, 4 * P + 100, 2 * P)
    assert _delta(machine, v, "pgpgin", "nr_file_pages", "nr_dirty") == (0, 2, 0)
    assert (p.fstat(fd).st_size, p.fstat(fd).st_blocks) == (4 * P, 56)
    p.close(fd)


@pytest.mark.parametrize("synced", [False, True])
@pytest.mark.parametrize("how", ["truncate", "punch"])
def test_a_dirty_large_folio_is_not_split(machine, proc, how, synced):
    """A 16-page file written in one pwrite (one 16-page folio), mapped MAP_SHARED,
    then ftruncate(4096 + 100) or fallocate(PUNCH | KEEP_SIZE, 4096 + 100, 3 pages).
    Unsynced, the folio's buffers are dirty: __folio_split's filemap_release_folio()
    (ext4_release_folio -> try_to_free_buffers) fails, so it stays whole and is zeroed
    over the range. Linux 6.18.44 probes, mincore over the mapping: unsynced
    truncate 16 resident (nr_file_pages +0), punch 16 resident; fsynced first:
    RR.............. (nr_file_pages -14) and RR..RRRRRRRRRRRR."""
    p = proc
    fd = p.open("/tmp/nosplit", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    p.pwrite(fd, b"\1" * 16 * P, 0)
    if synced:
        p.fsync(fd)
    a = p.mmap(0, 16 * P, PROT_READ, MAP_SHARED, fd, 0)
    v = vmstat(machine)
    if how == "truncate":
        p.ftruncate(fd, P + 100)
        want = "RR" + "." * 14 if synced else "R" * 16
        assert _delta(machine, v, "nr_file_pages") == ((-14,) if synced else (0,))
    else:
        p.fallocate(fd, PUNCH, P + 100, 3 * P)
        want = "RR..RRRRRRRRRRRR" if synced else "R" * 16
    assert "".join("R" if b & 1 else "." for b in p.mincore(a, 16 * P)) == want
    if how == "truncate":
        assert p.pread(fd, 2 * P, 0) == b"\1" * (P + 100)
    else:
        assert p.pread(fd, 5 * P, 0) == b"\1" * (P + 100) + bytes(3 * P) + b"\1" * (P - 100)
    p.munmap(a, 16 * P)
    p.close(fd)


def test_a_dirty_large_folio_truncated_on_a_page_boundary_stays_whole(machine, proc):
    """As test_file.py's truncate of a mapped 16-page folio to 4 pages, unsynced: the
    folio stays whole (its first 4 buffers are dirty), so a read of page 8 after
    growing the file back is no major fault. Linux 6.18.44 probe: mincore 16
    resident, nr_file_pages +0, majflt +0 (fsynced first: RRRR............, -12, +1)."""
    p = proc
    fd = p.open("/tmp/nosplit4", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    p.pwrite(fd, b"x" * 16 * P, 0)
    a = p.mmap(0, 16 * P, PROT_READ, MAP_SHARED, fd, 0)
    p.touch(a, 16 * P)
    v = vmstat(machine)
    p.ftruncate(fd, 4 * P)
    assert _delta(machine, v, "nr_file_pages") == (0,)
    assert "".join("R" if b & 1 else "." for b in p.mincore(a, 16 * P)) == "R" * 16
    p.ftruncate(fd, 16 * P)
    r0 = p.getrusage()
    assert p.read(a + 8 * P, 1) == b"\0"
    assert p.getrusage().ru_majflt == r0.ru_majflt
    p.munmap(a, 16 * P)
    p.close(fd)


@pytest.mark.parametrize("written,how,want,delta", [
    (10, "truncate4", "RRRR" + "." * 12, (-12, -16)),
    (2, "truncate4", "R" * 16, (0, 0)),
    (10, "truncate_partial", "RR" + "." * 14, (-14, -15)),
    (9, "punch", "R" * 8 + "...." + "R" * 4, (-4, -16)),
    (13, "punch", "R" * 16, (0, 0)),
    ("store", "truncate4", "R" * 16, (0, 0)),
])
def test_a_written_folio_splits_when_no_dirty_buffer_is_left(machine, proc, written, how,
                                                             want, delta):
    """A 16-page file written in one pwrite (one 16-page folio) and fsynced, mapped
    MAP_SHARED and read, then 100 bytes pwritten into page ``written`` (its buffer
    alone dirty: block_commit_write) or a byte stored at page 10 through a writable
    mapping (ext4_page_mkwrite -> block_page_mkwrite: every buffer dirty), then
    ftruncate(4 pages), ftruncate(1 page + 100) or fallocate(PUNCH | KEEP_SIZE,
    8 pages, 4 pages). The truncation discards the buffers it covers
    (block_invalidate_folio); when no dirty one is left, try_to_free_buffers succeeds,
    cancels the folio's dirtiness and the folio splits. Linux 6.18.44 probes, mincore
    and (nr_file_pages, nr_dirty) over the truncation: the table (the partial
    truncation's -15: page 1 is dirtied again by ext4_block_truncate_page after the
    split); pgpgout +0 in every case."""
    from vmsim import PROT_WRITE
    p = proc
    fd = p.open("/tmp/bhsplit", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    p.pwrite(fd, b"\1" * 16 * P, 0)
    p.fsync(fd)
    a = p.mmap(0, 16 * P, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
    for i in range(16):
        p.read(a + i * P, 1)
    if written == "store":
        p.write(a + 10 * P + 5, b"\7")
    else:
        p.pwrite(fd, b"\2" * 100, written * P + 10)
    v = vmstat(machine)
    if how == "truncate4":
        p.ftruncate(fd, 4 * P)
    elif how == "truncate_partial":
        p.ftruncate(fd, P + 100)
    else:
        p.fallocate(fd, PUNCH, 8 * P, 4 * P)
    assert _delta(machine, v, "nr_file_pages", "nr_dirty", "pgpgout") == delta + (0,)
    assert "".join("R" if b & 1 else "." for b in p.mincore(a, 16 * P)) == want
    size = p.fstat(fd).st_size
    got = p.pread(fd, size, 0)
    expect = bytearray(b"\1" * 16 * P)
    if written != "store":
        expect[written * P + 10:written * P + 110] = b"\2" * 100
    else:
        expect[10 * P + 5] = 7
    if how == "punch":
        expect[8 * P:12 * P] = bytes(4 * P)
    assert got == bytes(expect[:size])
    machine.check()
    p.fsync(fd)
    machine.write_file("/proc/sys/vm/drop_caches", "3")
    assert p.pread(fd, size, 0) == got
    p.munmap(a, 16 * P)
    p.close(fd)


@pytest.mark.parametrize("how,delta,want", [
    ("store", (0, 0), "R" * 10),
    ("pwrite", (-16, -16), "." * 10),
    ("none", (-16, 0), "." * 10),
])
def test_a_folio_straddling_eof_keeps_the_dirty_buffers_page_mkwrite_made(machine, proc, how,
                                                                         delta, want):
    """A 16-page file written in one pwrite (one 16-page folio), ftruncated to 10 pages
    unsynced (its dirty buffers 0-9 keep it whole: it now straddles EOF), fsynced,
    mapped MAP_SHARED over the 10 pages and read; then a byte stored at page 0 through
    the mapping (block_page_mkwrite: block_commit_write over [0, EOF), then
    folio_mark_dirty -> block_dirty_folio dirties the buffers past EOF too), or 100
    bytes pwritten at 10 (block 0's buffer alone), or nothing; then
    fallocate(PUNCH | KEEP_SIZE, 0, 10 pages). The punch discards buffers 0-9; only
    after the store are dirty buffers left (10-15), so the folio stays whole and dirty,
    else it is cleaned and split and the pieces past EOF go with it. Linux 6.18.44,
    (nr_file_pages, nr_dirty) over the punch, pgpgout +0, and mincore of the 10 pages:
    the table."""
    p = proc
    fd = p.open("/tmp/straddle", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    p.pwrite(fd, b"\1" * 16 * P, 0)
    p.ftruncate(fd, 10 * P)
    p.fsync(fd)
    a = p.mmap(0, 10 * P, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
    for i in range(10):
        p.read(a + i * P, 1)
    if how == "store":
        p.write(a + 5, b"\7")
    elif how == "pwrite":
        p.pwrite(fd, b"\2" * 100, 10)
    v = vmstat(machine)
    p.fallocate(fd, PUNCH, 0, 10 * P)
    assert _delta(machine, v, "nr_file_pages", "nr_dirty", "pgpgout") == delta + (0,)
    assert "".join("R" if b & 1 else "." for b in p.mincore(a, 10 * P)) == want
    assert p.pread(fd, 10 * P, 0) == bytes(10 * P)
    machine.check()
    p.fsync(fd)
    machine.write_file("/proc/sys/vm/drop_caches", "3")
    assert p.pread(fd, 10 * P, 0) == bytes(10 * P)
    p.munmap(a, 10 * P)
    p.close(fd)


@pytest.mark.parametrize("off,kb,blocks", [(4 * P, 48, 96), (4 * P + 100, 52, 104)])
def test_writeback_leaves_the_blocks_a_punch_discarded_holes(machine, proc, off, kb, blocks):
    """A 16-page file written in one pwrite (one 16-page folio, every buffer dirty),
    unsynced, fallocate(PUNCH | KEEP_SIZE, ``off``, 4 pages): the punch discards the
    buffers of the whole blocks it covers (block_invalidate_folio), the folio stays
    whole (dirty buffers left). Writeback then writes the dirty buffers' blocks only
    (ext4_bio_write_folio): POSIX_FADV_DONTNEED's writeback pgpgout +``kb`` KiB, and
    after fsync st_blocks ``blocks`` (the punched blocks stay holes). Linux 6.18.44:
    (4 pages, 48, 96), (4 pages + 100, 52, 104)."""
    p = proc
    fd = p.open("/tmp/punch-wb", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    p.pwrite(fd, b"\1" * 16 * P, 0)
    p.fallocate(fd, PUNCH, off, 4 * P)
    v = vmstat(machine)
    p.posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    assert _delta(machine, v, "pgpgout") == (kb,)
    p.fsync(fd)
    assert p.fstat(fd).st_blocks == blocks
    want = bytearray(b"\1" * 16 * P)
    want[off:off + 4 * P] = bytes(4 * P)
    machine.write_file("/proc/sys/vm/drop_caches", "3")
    assert p.pread(fd, 16 * P, 0) == bytes(want)
    machine.check()
    p.close(fd)


@pytest.mark.parametrize("synced", [False, True])
@pytest.mark.parametrize("pages", [16, 512])
def test_pageout_does_not_split_a_folio_with_dirty_buffers(machine, proc, pages, synced):
    """A file of ``pages`` pages written in one pwrite (one folio), fsynced or not,
    mapped MAP_PRIVATE read-only and read, then MADV_PAGEOUT of its first page: the
    partly covered folio is split first (madvise_cold_or_pageout_pte_range ->
    split_folio), and __folio_split's filemap_release_folio() fails on the unsynced
    folio's dirty buffers (try_to_free_buffers: -EBUSY). Linux 6.18.44: the size's
    mTHP split / split_failed +0 / +1 unsynced, +1 / +0 synced; vmstat
    thp_split_page_failed / thp_split_page likewise for 512 pages."""
    p = proc
    fd = p.open("/tmp/po-split", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    p.pwrite(fd, b"\1" * pages * P, 0)
    if synced:
        p.fsync(fd)
    a = p.mmap(0, pages * P, PROT_READ, MAP_PRIVATE, fd, 0)
    for i in range(pages):
        p.read(a + i * P, 1)
    stats = f"/sys/kernel/mm/transparent_hugepage/hugepages-{pages * 4}kB/stats/"

    def mthp():
        return tuple(int(machine.read_file(stats + n)) for n in ("split", "split_failed"))

    v, s = vmstat(machine), mthp()
    p.madvise(a, P, MADV_PAGEOUT)
    t = mthp()
    assert (t[0] - s[0], t[1] - s[1]) == ((1, 0) if synced else (0, 1))
    want = ((1, 0) if synced else (0, 1)) if pages == 512 else (0, 0)
    assert _delta(machine, v, "thp_split_page", "thp_split_page_failed") == want
    machine.check()
    p.munmap(a, pages * P)
    p.close(fd)


@pytest.mark.parametrize("off,delta,blocks", [
    (10000, (4, 2, 2), 16),      # block 0's tail and block 2's head; block 1 a hole
    (4096 + 50, (4, 2, 2), 16),
    (200, (4, 1, 1), 8),         # the same block: read by ->write_begin anyway
])
def test_a_write_past_eof_zeroes_the_old_eof_block_tail(machine, proc, off, delta, blocks):
    """A 100-byte file fsynced and dropped, then 1 byte pwritten at ``off``: the
    write's folio is made (a hole past EOF: zeros), and ext4_da_do_write_end zeroes
    [100, off) through the page cache (ext4_zero_partial_blocks), reading block 0 and
    dirtying it. Linux 6.18.44, (pgpgin, nr_file_pages, nr_dirty) over the pwrite and
    st_blocks after: the table."""
    p = proc
    fd = p.open("/tmp/eof-write", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    p.pwrite(fd, b"\1" * 100, 0)
    p.fsync(fd)
    p.posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    v = vmstat(machine)
    p.pwrite(fd, b"\2", off)
    assert _delta(machine, v, "pgpgin", "nr_file_pages", "nr_dirty") == delta
    assert p.fstat(fd).st_blocks == blocks
    assert p.pread(fd, off + 1, 0) == b"\1" * 100 + bytes(off - 100) + b"\2"
    machine.check()
    p.close(fd)
