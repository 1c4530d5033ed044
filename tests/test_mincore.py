"""mincore(2) against Linux 6.18 (mm/mincore.c); errno and shmem cases measured."""
import errno


from vmsim import (PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED, MAP_ANONYMOUS,
                   MADV_DONTNEED, MADV_REMOVE)
from vmtest import errno_of  # noqa: F401

P = 4096
RW = PROT_READ | PROT_WRITE


def test_anon_residency(proc):
    """Measured: write page 0, read page 2 (zero page), len 3P+1 -> [1, 0, 1, 0]."""
    u = proc.mmap(0, 4 * P, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    proc.write(u, b"\1")
    proc.read(u + 2 * P, 1)
    assert proc.mincore(u, 3 * P + 1) == bytes([1, 0, 1, 0])
    proc.madvise(u, 4 * P, MADV_DONTNEED)
    assert proc.mincore(u, 4 * P) == bytes(4)


def test_errnos(proc):
    f = proc.mmap(0, 4 * P, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    proc.munmap(f + P, P)
    assert proc.mincore(f, 0) == b""
    assert errno_of(proc.mincore, f, 4 * P) == errno.ENOMEM
    assert errno_of(proc.mincore, f + 1, P) == errno.EINVAL
    assert errno_of(proc.mincore, 0x10000, P) == errno.ENOMEM
    assert errno_of(proc.mincore, f, 1 << 63) == errno.ENOMEM      # access_ok


def test_shmem_page_cache(proc):
    """Measured: after MADV_DONTNEED the shmem pages are still cached (1 1 1 1); after
    MADV_REMOVE of page 0 -> 0 1 1 1."""
    h = proc.mmap(0, 4 * P, RW, MAP_SHARED | MAP_ANONYMOUS)
    assert proc.mincore(h, 4 * P) == bytes(4)
    proc.write(h, b"y" * 4 * P)
    proc.madvise(h, 4 * P, MADV_DONTNEED)
    assert proc.mincore(h, 4 * P) == bytes([1, 1, 1, 1])
    proc.madvise(h, P, MADV_REMOVE)
    assert proc.mincore(h, 4 * P) == bytes([0, 1, 1, 1])


def test_spans_vmas_and_large_ranges(proc):
    a = proc.mmap(0, 6000 * P, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    proc.touch(a + 4095 * P, 2 * P, write=True)
    proc.mprotect(a + 3000 * P, P, PROT_READ)
    v = proc.mincore(a, 6000 * P)
    assert len(v) == 6000 and sum(v) == 2 and v[4095] == 1 and v[4096] == 1
