"""Ports of the file-backed cases of tools/testing/selftests/mm/guard-regions.c (Linux
6.18.2) through the file API contract: the tests that guard-regions.c runs only for its
`shmem` (memfd) and `file` (mkstemp in the current directory) fixture variants, i.e.
map_private, readonly_file (file only), fault_around, truncation and hole_punch. They
assert what the selftest asserts.

FIXTURE_SETUP opens the backing (a memfd: here a tmpfs file on /dev/shm, the same
shmem inode; the local file: a file in /tmp) and ftruncate()s it to 100 pages;
mmap_() maps it MAP_SHARED. try_read_buf / try_read_write_buf are accesses that
report whether they completed without a fatal signal.
"""
import pytest

import vmsim
from vmsim import (PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED, O_RDWR, O_RDONLY, O_CREAT,
                   O_EXCL, MADV_GUARD_INSTALL, MADV_GUARD_REMOVE, MADV_PAGEOUT, MADV_REMOVE,
                   SignalDelivered)

P = 4096
RW = PROT_READ | PROT_WRITE


class Fixture:
    def __init__(self, backing):
        self.m = vmsim.Machine(memory="64M")
        self.p = self.m.spawn()
        self.backing = backing
        self.path = ("/dev/shm/guard_regions_test_memfd" if backing == "shmem"
                     else "/tmp/guard_regions_test_file_XXXXXX")
        self.fd = self.p.open(self.path, O_RDWR | O_CREAT | O_EXCL, 0o600)
        if backing == "shmem":              # memfd_create: no name in the filesystem
            self.p.unlink(self.path)
        # We truncate file to at least 100 pages, tests can modify as needed.
        self.p.ftruncate(self.fd, 100 * P)

    def mmap_(self, length, prot, extra_flags=0, offset=0):
        return self.p.mmap(0, length, prot, extra_flags | MAP_SHARED, self.fd, offset)

    def try_read_buf(self, addr):
        try:
            self.p.read(addr, 1)
            return True
        except SignalDelivered:
            return False

    def try_read_write_buf(self, addr):
        try:
            v = self.p.read(addr, 1)
            self.p.write(addr, v)
            return True
        except SignalDelivered:
            return False

    def set_pattern(self, ptr, num_pages):
        for i in range(num_pages):
            self.p.write(ptr + i * P, bytes([ord("a") + i % 26]) * P)

    def check_pattern_offset(self, ptr, num_pages, pgoff):
        want = b"".join(bytes([ord("a") + (pgoff + i) % 26]) * P for i in range(num_pages))
        return self.p.read(ptr + pgoff * P, num_pages * P) == want

    def check_pattern(self, ptr, num_pages):
        return self.check_pattern_offset(ptr, num_pages, 0)


@pytest.fixture(params=["shmem", "file"])
def f(request):
    return Fixture(request.param)


@pytest.mark.slow
def test_map_private(f):
    """guard-regions.c TEST_F(guard_regions, map_private)."""
    p = f.p
    shared = f.mmap_(10 * P, RW)
    # Manually mmap(), do not use mmap_() wrapper so we can force MAP_PRIVATE.
    private = p.mmap(0, 10 * P, RW, MAP_PRIVATE, f.fd, 0)
    f.set_pattern(shared, 10)
    for i in range(0, 10, 2):
        p.madvise(shared + i * P, P, MADV_GUARD_INSTALL)
    for i in range(10):
        assert f.try_read_buf(shared + i * P) == (i % 2 != 0)
        assert f.try_read_buf(private + i * P)
    for i in range(0, 10, 2):
        p.madvise(private + i * P, P, MADV_GUARD_INSTALL)
    for i in range(10):
        assert f.try_read_buf(shared + i * P) == (i % 2 != 0)
        assert f.try_read_buf(private + i * P) == (i % 2 != 0)
    p.madvise(shared, 10 * P, MADV_GUARD_REMOVE)
    for i in range(10):
        assert f.try_read_buf(shared + i * P)
        assert f.try_read_buf(private + i * P) == (i % 2 != 0)
    p.madvise(private, 10 * P, MADV_GUARD_REMOVE)
    for i in range(10):
        assert f.try_read_buf(shared + i * P)
        assert f.try_read_buf(private + i * P)
    assert f.check_pattern(shared, 10)
    assert f.check_pattern(private, 10)
    # Now write out every other page to MAP_PRIVATE.
    for i in range(0, 10, 2):
        p.write(private + i * P, bytes([ord("a") + i]) * P)
    p.madvise(private, 5 * P, MADV_GUARD_INSTALL)
    for i in range(10):
        assert f.try_read_buf(private + i * P) == (i >= 5)
        assert f.try_read_buf(shared + i * P)
    p.madvise(private, 10 * P, MADV_GUARD_REMOVE)
    for i in range(10):
        if i < 5 or i % 2 == 0:
            assert p.read(private + i * P, P) == p.read(shared + i * P, P)
            continue
        assert p.read(private + i * P, P) == bytes([ord("a") + i]) * P
    p.munmap(shared, 10 * P)
    p.munmap(private, 10 * P)


def test_readonly_file(f):
    """guard-regions.c TEST_F(guard_regions, readonly_file) (file-backed only)."""
    if f.backing != "file":
        pytest.skip("Read-only test specific to file-backed")
    p = f.p
    ptr = f.mmap_(10 * P, RW)
    f.set_pattern(ptr, 10)
    p.munmap(ptr, 10 * P)
    p.close(f.fd)
    f.fd = p.open(f.path, O_RDONLY)
    ptr = f.mmap_(10 * P, PROT_READ)
    for i in range(0, 10, 2):
        p.madvise(ptr + i * P, P, MADV_GUARD_INSTALL)
    for i in range(10):
        assert f.try_read_buf(ptr + i * P) == (i % 2 != 0)
    p.madvise(ptr, 10 * P, MADV_GUARD_REMOVE)
    assert f.check_pattern(ptr, 10)
    p.munmap(ptr, 10 * P)


def test_fault_around(f):
    """guard-regions.c TEST_F(guard_regions, fault_around)."""
    p = f.p
    ptr = f.mmap_(10 * P, RW)
    f.set_pattern(ptr, 10)
    # Now drop it from the page cache so we get major faults when next we map it.
    p.madvise(ptr, 10 * P, MADV_PAGEOUT)
    p.munmap(ptr, 10 * P)
    ptr = f.mmap_(10 * P, RW)
    for i in range(0, 10, 2):
        p.madvise(ptr + i * P, P, MADV_GUARD_INSTALL)
    # Now fault in every odd page. This should trigger fault-around.
    for i in range(1, 10, 2):
        assert f.try_read_buf(ptr + i * P)
    # Finally, ensure that guard regions are intact as expected.
    for i in range(10):
        assert f.try_read_buf(ptr + i * P) == (i % 2 != 0)
    p.munmap(ptr, 10 * P)


@pytest.mark.slow
def test_truncation(f):
    """guard-regions.c TEST_F(guard_regions, truncation)."""
    p = f.p
    ptr = f.mmap_(10 * P, RW)
    f.set_pattern(ptr, 10)
    for i in range(0, 10, 2):
        p.madvise(ptr + i * P, P, MADV_GUARD_INSTALL)
    for i in range(10):
        assert f.try_read_write_buf(ptr + i * P) == (i % 2 != 0)
    # Now truncate to actually used size (initialised to 100).
    p.ftruncate(f.fd, 10 * P)
    # Here the guard regions will remain intact.
    for i in range(10):
        assert f.try_read_write_buf(ptr + i * P) == (i % 2 != 0)
    # Now truncate to half the size, then truncate again to the full size.
    p.ftruncate(f.fd, 5 * P)
    p.ftruncate(f.fd, 10 * P)
    # Again, guard pages will remain intact.
    for i in range(10):
        assert f.try_read_write_buf(ptr + i * P) == (i % 2 != 0)
    p.munmap(ptr, 10 * P)


def test_hole_punch(f):
    """guard-regions.c TEST_F(guard_regions, hole_punch)."""
    p = f.p
    ptr = f.mmap_(10 * P, RW)
    f.set_pattern(ptr, 10)
    # Install a guard region in the middle of the mapping: ***xxxx***
    p.madvise(ptr + 3 * P, 4 * P, MADV_GUARD_INSTALL)
    for i in range(10):
        assert f.try_read_buf(ptr + i * P) == (i < 3 or i >= 7)
    # Now hole punch the guarded region.
    p.madvise(ptr + 3 * P, 4 * P, MADV_REMOVE)
    # Ensure guard regions remain.
    for i in range(10):
        assert f.try_read_buf(ptr + i * P) == (i < 3 or i >= 7)
    # Now remove guard region throughout.
    p.madvise(ptr, 10 * P, MADV_GUARD_REMOVE)
    assert f.check_pattern(ptr, 3)
    assert p.read(ptr + 3 * P, 4 * P) == bytes(4 * P)
    assert f.check_pattern_offset(ptr, 3, 7)
    p.munmap(ptr, 10 * P)
