"""hugetlbfs files, memfd_create and MADV_REMOVE on hugetlb (issue 10).

The expected values are what the probe vmsim/conform/probes/hugetlbfs_probe.c printed
on this machine's kernel (6.18.44; hugetlbfs-6.18.txt): the same calls run here and
must print the same lines. The probe mounts hugetlbfs on a directory of its own (the
machine has no /dev/hugepages); vmsim uses its /dev/hugepages mount.
"""
import errno
import os

import pytest

import vmsim
from vmsim import (MAP_SHARED, MAP_PRIVATE, PROT_READ, PROT_WRITE, O_RDWR, O_CREAT, O_RDONLY,
                   SignalDelivered)
from vmsim.uapi import (MADV_REMOVE, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, MFD_HUGETLB,
                        MFD_CLOEXEC, MFD_EXEC, MFD_NOEXEC_SEAL, MFD_HUGE_1GB, MFD_HUGE_2MB,
                        MFD_ALLOW_SEALING)
from vmsim import MAP_ANONYMOUS
from vmtest import errno_of

H = 2 << 20
RW = PROT_READ | PROT_WRITE
PROBE = os.path.join(os.path.dirname(vmsim.__file__), "conform", "probes", "hugetlbfs-6.18.txt")


class _Probe:
    """The probe's helpers over a vmsim process."""

    def __init__(self, p):
        self.p = p
        self.m = p.machine
        self.out = []

    def pool(self, tag):
        mi = {}
        for line in self.m.read_file("/proc/meminfo").splitlines():
            k, _, v = line.partition(":")
            mi[k] = v.split()[0] if v.split() else ""
        self.out.append(f"{tag} pool total={mi['HugePages_Total']} free={mi['HugePages_Free']} "
                        f"rsvd={mi['HugePages_Rsvd']}")

    def R(self, tag, fn, *args, ret=None):
        try:
            r = fn(*args)
            r = ret if ret is not None else (0 if r is None else (len(r) if isinstance(r, bytes) else r))
            self.out.append(f"{tag} ret={r} errno=0")
            return r
        except OSError as e:
            self.out.append(f"{tag} ret=-1 errno={e.errno}")
            return -1

    def st(self, tag, fd):
        s = self.p.fstat(fd)
        self.out.append(f"{tag} size={s.st_size} blocks={s.st_blocks} nlink={s.st_nlink} "
                        f"mode={s.st_mode:o}")

    def rd(self, a):
        try:
            return self.p.read(a, 1)[0]
        except SignalDelivered as e:
            assert e.signo == 7
            return -1

    def wr(self, a, v):
        try:
            self.p.write(a, bytes([v]))
            return 0
        except SignalDelivered:
            return -1

    def minflt(self):
        return self.p.getrusage().ru_minflt


def test_hugetlbfs_probe_matches_linux():
    """Every line of hugetlbfs-6.18.txt, produced by the same calls in vmsim."""
    m = vmsim.Machine(memory="256M")
    m.write_file("/proc/sys/vm/nr_hugepages", "8")
    p = m.spawn()
    t = _Probe(p)
    out = t.out
    path = "/dev/hugepages/f"
    t.pool("start")
    fd = p.open(path, O_RDWR | O_CREAT, 0o644)
    t.st("open", fd)
    t.R("ftruncate_4k", p.ftruncate, fd, 4096)
    t.R("ftruncate_4m", p.ftruncate, fd, 2 * H)
    t.st("truncated", fd)
    t.R("pwrite", p.pwrite, fd, b"x", 0)
    t.R("write_empty", p.write_fd, fd, b"")
    rfd = p.open(path, O_RDONLY)
    t.R("pwrite_rdonly", p.pwrite, rfd, b"x", 0)
    t.R("mmap_shared_rdonly_fd", p.mmap, 0, H, RW, MAP_SHARED, rfd, 0)
    p.close(rfd)
    t.R("mmap_misaligned_off", p.mmap, 0, H, PROT_READ, MAP_SHARED, fd, 4096)
    t.R("mmap_too_big", p.mmap, 0, 20 * H, RW, MAP_SHARED, fd, 0)
    t.pool("after_enomem")
    a = p.mmap(0, 2 * H, RW, MAP_SHARED, fd, 0)
    out.append("mmap_ok 1")
    t.pool("mapped")
    f0 = t.minflt()
    p.write(a, b"h")
    p.write(a + H, b"w")
    p.write(a + H + 4096, b"v")
    out.append(f"write_faults {t.minflt() - f0}")
    t.pool("written")
    t.st("written", fd)
    d = p.pread(fd, 1, 0)
    out.append(f"pread0 ret={len(d)} errno=0")
    out.append(f"pread0 data={d[0]}")
    d = p.pread(fd, 2, H + 4095)
    out.append(f"pread_h ret={len(d)} errno=0")
    out.append(f"pread_h data={d[0]},{d[1]}")
    t.R("pread_eof", p.pread, fd, 8, 2 * H - 4)
    t.R("pread_past", p.pread, fd, 8, 2 * H)
    t.R("fsync", p.fsync, fd)
    t.R("fadvise_dontneed", p.posix_fadvise, fd, 0, 0, 4)
    bad = errno_of(p.posix_fadvise, fd, 0, 0, 77) == errno.EINVAL
    out.append(f"fadvise_bad ret={-1 if bad else 0} errno=0")
    t.R("lseek_end", p.lseek, fd, 0, 2)
    t.R("punch_nokeep", p.fallocate, fd, FALLOC_FL_PUNCH_HOLE, 0, H)
    t.R("falloc_collapse", p.fallocate, fd, 0x08, 0, H)
    t.R("punch_partial", p.fallocate, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, H + 4095, 4098)
    out.append(f"partial data={t.rd(a + H)},{t.rd(a + H + 4096)},{t.rd(a + H + 8192)}")
    t.pool("partial")
    t.R("punch_page0", p.fallocate, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, H)
    t.pool("punched")
    f0 = t.minflt()
    v = t.rd(a)
    out.append(f"after_punch data={v} faults={t.minflt() - f0}")
    t.pool("refault")
    t.R("madv_remove", p.madvise, a + H, H, MADV_REMOVE)
    t.pool("removed")
    out.append(f"after_remove data={t.rd(a + H)}")
    t.pool("reread")
    t.R("falloc_grow", p.fallocate, fd, 0, 4 * H, H)
    t.st("grown", fd)
    t.pool("grown")
    t.R("falloc_keep", p.fallocate, fd, FALLOC_FL_KEEP_SIZE, 8 * H, H)
    t.st("kept", fd)
    t.pool("kept")
    t.R("falloc_exhaust", p.fallocate, fd, 0, 10 * H, 8 * H)
    t.st("exhaust", fd)
    t.pool("exhaust")
    t.R("ftruncate_back", p.ftruncate, fd, 2 * H)
    t.pool("truncated_back")
    q = p.mmap(0, 2 * H, RW, MAP_PRIVATE, fd, 0)
    t.pool("private_mapped")
    out.append(f"private_read data={t.rd(q)},{t.rd(q + H)}")
    t.R("madv_remove_private", p.madvise, q, H, MADV_REMOVE)
    t.wr(q, ord("p"))
    t.pool("private_cow")
    out.append(f"cow data shared={t.rd(a)} private={t.rd(q)}")
    t.R("ftruncate_shrink", p.ftruncate, fd, H)
    out.append(f"after_shrink shared={t.rd(a)},{t.rd(a + H)} private={t.rd(q)},{t.rd(q + H)}")
    t.pool("shrunk")
    t.R("unlink", p.unlink, path)
    out.append(f"unlinked data={t.rd(a)}")
    t.pool("unlinked")
    p.munmap(q, 2 * H)
    t.pool("private_unmapped")
    p.munmap(a, 2 * H)
    t.pool("shared_unmapped")
    p.close(fd)
    t.pool("closed")
    # memfd_create
    t.R("memfd_badflag", p.memfd_create, "m", 0x100)
    t.R("memfd_hugesize_nohugetlb", p.memfd_create, "m", MFD_HUGE_2MB)
    t.R("memfd_exec_noexec", p.memfd_create, "m", MFD_EXEC | MFD_NOEXEC_SEAL)
    t.R("memfd_name250", p.memfd_create, "n" * 250, 0)
    fd2 = p.memfd_create("n" * 249, 0)
    out.append(f"memfd_name249 ok={int(fd2 >= 0)}")
    p.close(fd2)
    t.R("memfd_huge_1mb", p.memfd_create, "m", MFD_HUGETLB | (20 << 26))
    g = p.memfd_create("g", MFD_HUGETLB | MFD_HUGE_1GB)
    out.append(f"memfd_1gb ok={int(g >= 0)}")
    p.close(g)
    mfd = p.memfd_create("hm", MFD_HUGETLB | MFD_CLOEXEC)
    t.st("memfd_huge", mfd)
    t.R("memfd_huge_ftruncate", p.ftruncate, mfd, 2 * H)
    t.R("memfd_huge_pwrite", p.pwrite, mfd, b"x", 0)
    b = p.mmap(0, 2 * H, RW, MAP_SHARED, mfd, 0)
    t.pool("memfd_mapped")
    p.write(b, b"\x01")
    t.pool("memfd_written")
    t.st("memfd_written", mfd)
    t.R("memfd_remove", p.madvise, b, H, MADV_REMOVE)
    t.pool("memfd_removed")
    s = p.memfd_create("plain", 0)
    t.st("memfd_plain", s)
    t.R("memfd_plain_write", p.write_fd, s, b"abc")
    t.R("memfd_plain_pread", p.pread, s, 3, 0)
    s2 = p.memfd_create("plain2", MFD_CLOEXEC)
    for tag, f in (("nocloexec", s), ("cloexec", s2)):
        c = p.fork()
        c.execve()
        try:
            c.fstat(f)
            out.append(f"exec {tag} fstat ret=0 errno=0")
        except OSError as e:
            out.append(f"exec {tag} fstat ret=-1 errno={e.errno}")
        c.exit(0)
        p.wait(c.pid)
    p.close(mfd)
    t.pool("memfd_closed")
    p.munmap(b, 2 * H)
    t.pool("memfd_unmapped")
    with open(PROBE) as f:
        expected = f.read().splitlines()
    assert out == expected
    m.check()


def test_memfd_and_hugetlbfs_names_in_maps(machine):
    """/proc/PID/maps: "/memfd:NAME (deleted)" on 00:11 (hugetlb) or 00:01 (shmem), as
    the kernel's readlink of /proc/self/fd/N and fstat showed (st_dev 17 and 1);
    MAP_HUGETLB's file is "/anon_hugepage (deleted)"."""
    m = machine
    m.write_file("/proc/sys/vm/nr_hugepages", "2")
    p = m.spawn()
    h = p.memfd_create("x", MFD_HUGETLB)
    s = p.memfd_create("y", MFD_ALLOW_SEALING)
    assert p.fstat(h).st_dev == 17 and p.fstat(s).st_dev == 1
    assert p.fstat(h).st_nlink == 0 and p.fstat(h).st_mode == 0o100777
    p.ftruncate(h, H)
    p.ftruncate(s, 4096)
    a = p.mmap(0, H, RW, MAP_SHARED, h, 0)
    b = p.mmap(0, 4096, RW, MAP_SHARED, s, 0)
    c = p.mmap(0, H, RW, MAP_PRIVATE | MAP_ANONYMOUS | 0x40000)
    maps = {int(l.split("-")[0], 16): l for l in m.read_file(f"/proc/{p.pid}/maps").splitlines()}
    assert maps[a].split()[3] == "00:11" and maps[a].endswith("/memfd:x (deleted)")
    assert maps[b].split()[3] == "00:01" and maps[b].endswith("/memfd:y (deleted)")
    assert maps[c].endswith("/anon_hugepage (deleted)")


def test_plain_memfd_is_a_tmpfs_file(machine):
    """A plain memfd is shmem: write(2) works, pages are Shmem in meminfo, mmap shares
    them, and they go when the last reference does."""
    m = machine
    p = m.spawn()

    def shmem_kb():
        for line in m.read_file("/proc/meminfo").splitlines():
            if line.startswith("Shmem:"):
                return int(line.split()[1])
    base = shmem_kb()
    fd = p.memfd_create("buf", 0)
    assert p.pwrite(fd, b"z" * 8192, 0) == 8192
    assert shmem_kb() - base == 8
    a = p.mmap(0, 8192, RW, MAP_SHARED, fd, 0)
    assert p.read(a + 4096, 2) == b"zz"
    p.write(a, b"Q")
    assert p.pread(fd, 1, 0) == b"Q"
    p.close(fd)
    assert p.read(a, 1) == b"Q"                       # the mapping keeps the file
    p.munmap(a, 8192)
    assert shmem_kb() == base


def test_hugetlb_file_survives_fork_and_exit_refills_the_pool(machine):
    """A shared hugetlbfs mapping seen by a fork child: one page-cache folio, both map
    it; the pool gets it back only when the file goes (unlink + last unmap)."""
    m = machine
    m.write_file("/proc/sys/vm/nr_hugepages", "4")
    p = m.spawn()
    fd = p.open("/dev/hugepages/shared", O_RDWR | O_CREAT)
    p.ftruncate(fd, H)
    a = p.mmap(0, H, RW, MAP_SHARED, fd, 0)
    p.write(a, b"parent")
    c = p.fork()
    assert c.read(a, 6) == b"parent"
    c.write(a, b"child!")
    assert p.read(a, 6) == b"child!"
    c.exit(0)
    p.wait(c.pid)
    p.close(fd)
    p.munmap(a, H)
    assert "HugePages_Free:        3" in m.read_file("/proc/meminfo")     # still cached
    p.unlink("/dev/hugepages/shared")
    assert "HugePages_Free:        4" in m.read_file("/proc/meminfo")


def test_hugetlbfs_fallocate_pool_exhausted_is_enospc(machine):
    m = machine
    m.write_file("/proc/sys/vm/nr_hugepages", "1")
    p = m.spawn()
    fd = p.open("/dev/hugepages/big", O_RDWR | O_CREAT)
    assert errno_of(p.fallocate, fd, 0, 0, 2 * H) == errno.ENOSPC
    assert p.fstat(fd).st_blocks == H >> 9            # the first page stays allocated
    assert p.fstat(fd).st_size == 0


# --- selftest ports (tools/testing/selftests/mm) ------------------------------------------
def test_selftest_hugepage_mmap_file(machine):
    """hugepage-mmap.c: memfd_create("hugepage-mmap", MFD_HUGETLB) (no ftruncate: the
    writable shared mmap extends i_size), mmap shared RW, write (char)i into every byte,
    read the same back. 32 MiB here instead of 256 (the bytes are sampled at 1 MiB)."""
    m = machine
    length = 32 << 20
    m.write_file("/proc/sys/vm/nr_hugepages", str(length // H))
    p = m.spawn()
    fd = p.memfd_create("hugepage-mmap", MFD_HUGETLB)
    addr = p.mmap(0, length, RW, MAP_SHARED, fd, 0)
    assert p.fstat(fd).st_size == length
    pat = bytes(i & 0xFF for i in range(256))
    for off in range(0, length, 1 << 20):
        p.write(addr + off, pat)
    for off in range(0, length, 1 << 20):
        assert p.read(addr + off, 256) == pat
    p.munmap(addr, length)
    p.close(fd)
    assert _free_huge(m) == length // H


def _free_huge(m):
    for line in m.read_file("/proc/meminfo").splitlines():
        if line.startswith("HugePages_Free:"):
            return int(line.split()[1])


def test_selftest_hugetlb_madvise_file_cases(machine):
    """hugetlb-madvise.c, the parts on a hugetlb memfd (NR_HUGE_PAGES 10, a pool of
    MIN_FREE_PAGES 20), each validate_free_pages() as the selftest asserts it:
    MADV_DONTNEED on a private mapping of the file frees only private pages; hole punch
    frees the file's pages and the private COW pages too ("not the 'correct' behavior,
    but is expected"); MADV_DONTNEED on a shared mapping frees nothing, MADV_REMOVE
    frees the file's pages, and with a private mapping alongside, its pages as well."""
    from vmsim.uapi import MADV_DONTNEED
    NR = 10
    m = machine
    m.write_file("/proc/sys/vm/nr_hugepages", "20")
    p = m.spawn()
    free = _free_huge(m)
    fd = p.memfd_create("hugetlb-madvise", MFD_HUGETLB)
    size = NR * H

    def write_fault_pages(a):
        for i in range(NR):
            p.write(a + i * H, b"\x01")

    def read_fault_pages(a):
        for i in range(NR):
            p.read(a + i * H, 1)
    # MADV_DONTNEED on private mapping of hugetlb file
    p.fallocate(fd, 0, 0, size)
    assert _free_huge(m) == free - NR
    addr = p.mmap(0, size, RW, MAP_PRIVATE, fd, 0)
    read_fault_pages(addr)
    assert _free_huge(m) == free - NR
    p.madvise(addr, size, MADV_DONTNEED)
    assert _free_huge(m) == free - NR
    write_fault_pages(addr)
    assert _free_huge(m) == free - 2 * NR
    p.madvise(addr, size, MADV_DONTNEED)
    assert _free_huge(m) == free - NR
    write_fault_pages(addr)
    assert _free_huge(m) == free - 2 * NR
    p.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, size)
    assert _free_huge(m) == free
    p.munmap(addr, size)
    # MADV_DONTNEED on shared mapping of hugetlb file
    p.fallocate(fd, 0, 0, size)
    assert _free_huge(m) == free - NR
    addr = p.mmap(0, size, RW, MAP_SHARED, fd, 0)
    write_fault_pages(addr)
    assert _free_huge(m) == free - NR
    p.madvise(addr, size, MADV_DONTNEED)
    assert _free_huge(m) == free - NR
    # MADV_REMOVE on shared mapping of hugetlb file: the same as a hole punch
    p.madvise(addr, size, MADV_REMOVE)
    assert _free_huge(m) == free
    p.munmap(addr, size)
    # MADV_REMOVE on shared and private mapping of hugetlb file
    p.fallocate(fd, 0, 0, size)
    assert _free_huge(m) == free - NR
    addr = p.mmap(0, size, RW, MAP_SHARED, fd, 0)
    write_fault_pages(addr)
    assert _free_huge(m) == free - NR
    addr2 = p.mmap(0, size, RW, MAP_PRIVATE, fd, 0)
    read_fault_pages(addr2)
    assert _free_huge(m) == free - NR
    write_fault_pages(addr2)
    assert _free_huge(m) == free - 2 * NR
    p.madvise(addr, size, MADV_DONTNEED)
    assert _free_huge(m) == free - 2 * NR
    p.madvise(addr2, size, MADV_DONTNEED)
    assert _free_huge(m) == free - NR
    write_fault_pages(addr2)
    assert _free_huge(m) == free - 2 * NR
    p.madvise(addr, size, MADV_REMOVE)
    assert _free_huge(m) == free
    p.munmap(addr, size)
    p.munmap(addr2, size)
    p.close(fd)


def test_selftest_hugetlb_fault_after_madv_file(machine):
    """hugetlb_fault_after_madv.c with a shared memfd: MADV_DONTNEED then touching the
    page faults it back in from the page cache with the same data, over many rounds."""
    from vmsim.uapi import MADV_DONTNEED
    m = machine
    m.write_file("/proc/sys/vm/nr_hugepages", "1")
    p = m.spawn()
    fd = p.memfd_create("fault_after_madv", MFD_HUGETLB)
    p.ftruncate(fd, H)
    a = p.mmap(0, H, RW, MAP_SHARED, fd, 0)
    for i in range(50):
        p.write(a, bytes([i]))
        p.madvise(a, H, MADV_DONTNEED)
        assert p.read(a, 1) == bytes([i])
    assert _free_huge(m) == 0


def test_cow_memfd_hugetlb_private(machine):
    """cow.c's run_with_memfd_hugetlb + test_cow: a private mapping of a hugetlb memfd
    shared across fork; the child's write does not show in the parent (and the reverse),
    and the file keeps its data."""
    m = machine
    m.write_file("/proc/sys/vm/nr_hugepages", "4")
    p = m.spawn()
    fd = p.memfd_create("cow", MFD_HUGETLB | MFD_HUGE_2MB)
    p.fallocate(fd, 0, 0, H)
    shared = p.mmap(0, H, RW, MAP_SHARED, fd, 0)
    p.write(shared, b"file")
    priv = p.mmap(0, H, RW, MAP_PRIVATE, fd, 0)
    assert p.read(priv, 4) == b"file"
    p.write(priv, b"mine")
    c = p.fork()
    c.write(priv, b"kid!")
    assert p.read(priv, 4) == b"mine"
    assert c.read(priv, 4) == b"kid!"
    assert p.read(shared, 4) == b"file"
    c.exit(0)
    p.wait(c.pid)


def test_hugetlbfs_open_trunc_and_unlink_while_open(machine):
    """O_TRUNC goes through hugetlbfs_setattr (size 0 frees the pages); an unlinked
    file lives while open."""
    m = machine
    m.write_file("/proc/sys/vm/nr_hugepages", "2")
    p = m.spawn()
    fd = p.open("/dev/hugepages/t", O_RDWR | O_CREAT)
    p.fallocate(fd, 0, 0, 2 * H)
    assert _free_huge(m) == 0
    fd2 = p.open("/dev/hugepages/t", O_RDWR | 0o1000)     # O_TRUNC
    assert _free_huge(m) == 2 and p.fstat(fd2).st_size == 0
    p.fallocate(fd, 0, 0, H)
    p.unlink("/dev/hugepages/t")
    assert _free_huge(m) == 1
    p.close(fd)
    assert _free_huge(m) == 1
    p.close(fd2)
    assert _free_huge(m) == 2
