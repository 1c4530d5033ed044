"""Ports of the file cases of tools/testing/selftests/mm (Linux 6.18.2), through the
file API contract (docs: notes/file_api.md): they assert what the selftests assert.

cow.c non_anon_test_cases "Basic COW" (test_cow) run by run_with_memfd and
run_with_tmpfile: a one-page file (fallocate), mapped MAP_PRIVATE read-write and
MAP_SHARED read-only, both read; writing the private mapping must not change what the
shared one reads. memfd_create is not in the contract: a memfd is a shmem inode on the
kernel's internal tmpfs mount, so the memfd case uses a file on /dev/shm (tmpfs, the
same shmem_file_operations / shmem_vm_ops); tmpfile() is glibc's O_TMPFILE on /tmp,
here open(O_CREAT|O_EXCL) then unlink (its fallback), which leaves the same unlinked
inode. The R/O longterm GUP pin cases of the same table need the gup_test device
(pin_user_pages): the API has no pinning, so they are not ported.

mremap_dontunmap.c mremap_dontunmap_simple_shmem: MREMAP_DONTUNMAP of a MAP_SHARED
memfd mapping (its descriptor already closed) moves the pages, and the source, backed
by the same shmem object, still reads the same bytes.

map_populate.c: MAP_PRIVATE | MAP_POPULATE of a tmpfile must COW: after a parent's
write through its MAP_SHARED mapping and msync(MS_SYNC), the child's populated private
page still reads the old value ("MAP_POPULATE COW private page", "The mapping state").
"""
import struct

import pytest

import vmsim
from vmsim import (PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED, MAP_POPULATE, O_RDWR, O_CREAT,
                   O_EXCL, MREMAP_DONTUNMAP, MREMAP_MAYMOVE)

P = 4096
RW = PROT_READ | PROT_WRITE


@pytest.fixture
def proc():
    m = vmsim.Machine(memory="64M")
    return m.spawn()


def _memfd(p):
    """cow.c run_with_memfd: memfd_create("test", 0); fallocate(fd, 0, 0, pagesize)."""
    fd = p.open("/dev/shm/test", O_RDWR | O_CREAT | O_EXCL, 0o600)
    p.unlink("/dev/shm/test")
    return fd


def _tmpfile(p):
    """cow.c run_with_tmpfile / map_populate.c: tmpfile() (an unlinked file in /tmp)."""
    fd = p.open("/tmp/tmpfile", O_RDWR | O_CREAT | O_EXCL, 0o600)
    p.unlink("/tmp/tmpfile")
    return fd


@pytest.mark.parametrize("make", [_memfd, _tmpfile], ids=["with_memfd", "with_tmpfile"])
def test_cow_basic_non_anon(proc, make):
    """cow.c: "Basic COW" ... with memfd / with tmpfile (test_cow)."""
    p = proc
    fd = make(p)
    # File consists of a single page filled with zeroes.
    p.fallocate(fd, 0, 0, P)
    # Create a private mapping of the memfd.
    mem = p.mmap(0, P, RW, MAP_PRIVATE, fd, 0)
    smem = p.mmap(0, P, PROT_READ, MAP_SHARED, fd, 0)
    # Fault the page in.
    p.read(mem, 1)
    p.read(smem, 1)
    # test_cow: back up the original content, modify the page, and see if we still
    # read the old values via the other mapping.
    old = p.read(smem, P)
    p.write(mem, b"\xff" * P)
    assert p.read(smem, P) == old, "Other mapping modified"
    p.munmap(mem, P)
    p.munmap(smem, P)
    p.close(fd)


def test_map_populate_cows_private_page(proc):
    """map_populate.c: MAP_PRIVATE | MAP_POPULATE should COW VMA pages."""
    parent = proc
    fd = _tmpfile(parent)
    parent.ftruncate(fd, P)
    smap = parent.mmap(0, P, RW, MAP_SHARED, fd, 0)
    parent.write(smap, struct.pack("<Q", 0xdeadbabe))
    # Probably unnecessary, but let it be.
    parent.msync(smap, P, vmsim.MS_SYNC)

    child = parent.fork()
    # child_f: the child's own private populated mapping of the same file
    cmap = child.mmap(0, P, RW, MAP_PRIVATE | MAP_POPULATE, fd, 0)
    assert struct.unpack("<Q", child.read(cmap, 8))[0] == 0xdeadbabe, \
        "MAP_PRIVATE | MAP_POPULATE changed file"

    # parent_f: write through the shared mapping and sync it
    parent.write(smap, struct.pack("<Q", 0x22222BAD))
    parent.msync(smap, P, vmsim.MS_SYNC)

    val = struct.unpack("<Q", child.read(cmap, 8))[0]
    assert val != 0x22222BAD, "MAP_POPULATE COW private page"
    assert val == 0xdeadbabe, "The mapping state"
    child.exit(0)
    assert parent.wait(child.pid) == 0


def test_mremap_dontunmap_simple_shmem(proc):
    """mremap_dontunmap.c: MREMAP_DONTUNMAP on a shared mapping works as expected."""
    p = proc
    n = 5
    mem_fd = _memfd(p)                     # memfd_create("memfd", MFD_CLOEXEC)
    p.ftruncate(mem_fd, n * P)
    source = p.mmap(0, n * P, RW, MAP_SHARED, mem_fd, 0)
    p.close(mem_fd)
    p.write(source, b"a" * (n * P))
    # Try to just move the whole mapping anywhere (not fixed).
    dest = p.mremap(source, n * P, n * P, MREMAP_DONTUNMAP | MREMAP_MAYMOVE)
    # the pages have been moved: the destination contains a's
    assert p.read(dest, n * P) == b"a" * (n * P), "pages did not migrate"
    # backed by shmem: the same memory is still seen at the source location
    assert p.read(source, n * P) == b"a" * (n * P), "source should have no ptes"
    p.munmap(dest, n * P)
    p.munmap(source, n * P)
