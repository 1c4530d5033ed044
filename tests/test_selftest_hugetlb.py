"""Ports of tools/testing/selftests/mm hugetlb tests (Linux 6.18), asserting what they
assert: the anonymous parts. The parts on hugetlbfs files (memfd_create(MFD_HUGETLB),
fallocate, MADV_REMOVE) are in tests/test_hugetlbfs.py. Pool counts in between come
from a C probe of the same steps on the reference machine (6.18.44)."""
import errno
import signal

import pytest

from vmsim import (PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED, MAP_ANONYMOUS, MAP_HUGETLB,
                   MAP_HUGE_2MB, SignalDelivered)
from vmsim.uapi import MADV_DONTNEED

RW = PROT_READ | PROT_WRITE
HPS = 2 << 20
PG = 4096


def free_hugepages(m):
    return int(m.read_file("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"))


def counts(m):
    out = []
    for line in m.read_file("/proc/meminfo").splitlines():
        if line.startswith(("HugePages_Total", "HugePages_Free", "HugePages_Rsvd", "HugePages_Surp")):
            out.append(int(line.split()[1]))
    return tuple(out)


def write_fault_pages(p, addr, n):
    for i in range(n):
        p.write(addr + i * HPS, b"\x01")


def test_hugetlb_madvise_anonymous_parts(proc):
    """hugetlb-madvise.c: MADV_DONTNEED argument validity and alignment on private
    MAP_HUGETLB mappings, and that it frees the pages (NR_HUGE_PAGES 10, 20 free)."""
    m = proc.machine
    NR = 10
    m.write_file("/proc/sys/vm/nr_hugepages", "20")
    free0 = free_hugepages(m)
    addr = proc.mmap(0, (NR + 2) * HPS, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB)
    proc.munmap(addr, HPS)
    proc.munmap(addr + (NR + 1) * HPS, HPS)
    addr += HPS
    write_fault_pages(proc, addr, NR)
    assert free_hugepages(m) == free0 - NR
    # addr before mapping should fail; addr + length after mapping should fail.
    with pytest.raises(OSError):
        proc.madvise(addr - PG, NR * HPS, MADV_DONTNEED)
    with pytest.raises(OSError):
        proc.madvise(addr, NR * HPS + PG, MADV_DONTNEED)
    proc.munmap(addr, NR * HPS)
    # Alignment of MADV_DONTNEED addr and length.
    addr = proc.mmap(0, NR * HPS, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB)
    write_fault_pages(proc, addr, NR)
    assert free_hugepages(m) == free0 - NR
    with pytest.raises(OSError) as e:
        proc.madvise(addr + PG, NR * HPS - PG, MADV_DONTNEED)
    assert e.value.errno == errno.EINVAL
    proc.madvise(addr, (NR - 1) * HPS + PG, MADV_DONTNEED)      # aligned down
    assert free_hugepages(m) == free0 - 1
    proc.munmap(addr, NR * HPS)
    assert free_hugepages(m) == free0
    # MADV_DONTNEED on anonymous private mapping frees all pages.
    addr = proc.mmap(0, NR * HPS, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB)
    write_fault_pages(proc, addr, NR)
    assert free_hugepages(m) == free0 - NR
    proc.madvise(addr, NR * HPS, MADV_DONTNEED)
    assert free_hugepages(m) == free0
    proc.munmap(addr, NR * HPS)


def test_hugetlb_madvise_failed_calls_still_zap(proc):
    """The reference machine: madvise(DONTNEED) over a hole returns ENOMEM but the
    mapped part is zapped (end rounded down per VMA); a private owner's zapped pages
    get their reservations back."""
    m = proc.machine
    m.write_file("/proc/sys/vm/nr_hugepages", "12")
    a = proc.mmap(0, 6 * HPS, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB)
    proc.munmap(a, HPS)
    proc.munmap(a + 5 * HPS, HPS)
    a += HPS
    assert counts(m) == (12, 12, 4, 0)
    write_fault_pages(proc, a, 4)
    assert counts(m) == (12, 8, 0, 0)
    for args in ((a - PG, 4 * HPS), (a, 4 * HPS + PG)):
        with pytest.raises(OSError) as e:
            proc.madvise(*args, MADV_DONTNEED)
        assert e.value.errno == errno.ENOMEM
    with pytest.raises(OSError) as e:
        proc.madvise(a + PG, 4 * HPS - PG, MADV_DONTNEED)
    assert e.value.errno == errno.EINVAL
    proc.madvise(a, 3 * HPS + PG, MADV_DONTNEED)
    assert counts(m) == (12, 12, 4, 0)
    proc.munmap(a, 4 * HPS)
    assert counts(m) == (12, 12, 0, 0)


def test_hugetlb_fault_after_madv(proc):
    """hugetlb_fault_after_madv.c, without its two racing threads (vmsim runs one task
    at a time): with one and only one free huge page, touching after MADV_DONTNEED never
    SIGBUSes, because the zap gives the owner's reservation back (counts as measured)."""
    m = proc.machine
    m.write_file("/proc/sys/vm/nr_hugepages", "1")
    assert free_hugepages(m) == 1
    for _ in range(5):
        ptr = proc.mmap(0, HPS, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB)
        assert counts(m) == (1, 1, 1, 0)
        proc.write(ptr, b".")
        assert counts(m) == (1, 0, 0, 0)
        proc.madvise(ptr, HPS, MADV_DONTNEED)
        assert counts(m) == (1, 1, 1, 0)
        proc.write(ptr, b".")
        proc.munmap(ptr, HPS)
        assert counts(m) == (1, 1, 0, 0)


def test_map_hugetlb(proc):
    """map_hugetlb.c: 256 MiB of MAP_HUGETLB (MAP_HUGE_2MB: the shift option), a
    pattern written and read back, munmap."""
    m = proc.machine
    length = 256 << 20
    m.write_file("/proc/sys/vm/nr_hugepages", str(length // HPS))
    addr = proc.mmap(0, length, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB)
    # write_bytes / read_bytes, one store per 64 KiB standing for the byte pattern.
    proc.touch(addr, length, write=True, stride=1 << 16, value=0x5A)
    for i in range(0, length, 32 * HPS):
        assert proc.read(addr + i, 1) == b"\x5a" and proc.read(addr + i + 1, 1) == b"\x00"
    assert free_hugepages(m) == 0
    proc.munmap(addr, length)
    assert free_hugepages(m) == length // HPS


def test_cow_hugetlb_private_child_sees_the_original(proc):
    """cow.c, the hugetlb variants of "basic COW": after fork, the child's writes go to
    its own copy and the parent's data is unchanged (and the other way round)."""
    m = proc.machine
    m.write_file("/proc/sys/vm/nr_hugepages", "4")
    a = proc.mmap(0, HPS, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB)
    proc.write(a, b"\x00" * 64)
    c = proc.fork()
    c.write(a, b"\xff" * 64)
    assert proc.read(a, 64) == b"\x00" * 64
    proc.write(a + 64, b"\x11")
    assert c.read(a + 64, 1) == b"\x00"
    c.exit()


def test_hugepage_mmap_anonymous_shared(proc):
    """hugepage-mmap.c, on an anonymous shared mapping instead of a hugetlbfs file:
    256 MiB written and checked through a second process that shares it."""
    m = proc.machine
    length = 16 * HPS
    m.write_file("/proc/sys/vm/nr_hugepages", "16")
    a = proc.mmap(0, length, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB)
    for i in range(0, length, HPS):
        proc.write(a + i, bytes([i >> 21]))
    c = proc.fork()
    for i in range(0, length, HPS):
        assert c.read(a + i, 1) == bytes([i >> 21])
    c.exit()
    proc.munmap(a, length)
    assert free_hugepages(m) == 16
