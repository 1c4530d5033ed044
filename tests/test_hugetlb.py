"""hugetlbfs: pools, MAP_HUGETLB, hugetlb_fault / hugetlb_no_page / hugetlb_wp, fork,
unmap, reservations. Expected values come from Linux 6.18.44 on the reference machine
(a C probe: mmap/fork/munmap with /proc/meminfo, smaps, status and pagemap read at
each step) or from mm/hugetlb.c."""
import errno
import signal

import pytest

import vmsim
from vmsim import (PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED, MAP_ANONYMOUS, MAP_HUGETLB,
                   MAP_HUGE_1GB, MAP_HUGE_2MB, MAP_NORESERVE, MAP_FIXED, SignalDelivered)
from vmtest import errno_of, pte_at
from vmsim.arch.x86 import pgtable_types as T

RW = PROT_READ | PROT_WRITE
MB = 1 << 20
HP = MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB
HS = MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB


def meminfo(m):
    out = {}
    for line in m.read_file("/proc/meminfo").splitlines():
        k, v = line.split(":")
        out[k] = int(v.split()[0])
    return out


def vmstat(m):
    return {ln.split()[0]: int(ln.split()[1]) for ln in m.read_file("/proc/vmstat").splitlines()}


def pool(m):
    i = meminfo(m)
    return (i["HugePages_Total"], i["HugePages_Free"], i["HugePages_Rsvd"], i["HugePages_Surp"])


def smaps_of(m, p, addr):
    text = m.read_file(f"/proc/{p.pid}/smaps")
    block, on = {}, False
    for line in text.splitlines():
        if "-" in line.split()[0] and ":" not in line.split()[0]:
            on = int(line.split("-")[0], 16) == addr
            continue
        if on and ":" in line and not line.startswith("VmFlags"):
            k, v = line.split(":")
            block[k] = int(v.split()[0])
    return block


# --- pools ---------------------------------------------------------------------------
def test_pool_files_and_meminfo(machine):
    m = machine
    assert m.read_file("/proc/sys/vm/nr_hugepages") == "0\n"
    assert m.read_file("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages") == "0\n"
    assert m.read_file("/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages") == "0\n"
    m.write_file("/proc/sys/vm/nr_hugepages", "4")
    i = meminfo(m)
    # As the reference machine after `echo 4 > nr_hugepages`.
    assert (i["HugePages_Total"], i["HugePages_Free"], i["Hugepagesize"], i["Hugetlb"]) == \
        (4, 4, 2048, 8192)
    assert m.read_file("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages") == "4\n"
    v = vmstat(m)
    assert v["htlb_buddy_alloc_success"] == 4 and v["nr_hugetlb"] == 0
    m.write_file("/proc/sys/vm/nr_hugepages", "1")
    assert pool(m) == (1, 1, 0, 0)
    with pytest.raises(OSError) as e:
        m.write_file("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "3")
    assert e.value.errno == errno.EACCES
    with pytest.raises(OSError) as e:
        m.write_file("/proc/sys/vm/nr_hugepages", "-1")
    assert e.value.errno == errno.EINVAL
    # nr_overcommit_hugepages_store(): gigantic sizes refuse overcommit.
    with pytest.raises(OSError) as e:
        m.write_file("/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_overcommit_hugepages", "1")
    assert e.value.errno == errno.EINVAL


def test_gigantic_pool_from_contiguous_free_memory():
    m = vmsim.Machine(memory="3G")
    m.write_file("/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages", "1")
    assert m.read_file("/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages") == "1\n"
    i = meminfo(m)
    # The reference machine: HugePages_* count only the default size; Hugetlb all.
    assert i["HugePages_Total"] == 0 and i["Hugetlb"] == 1048576
    assert vmstat(m)["htlb_buddy_alloc_success"] == 0
    # A second one needs another aligned free GiB: the low one has the kernel image.
    m.write_file("/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages", "3")
    assert m.read_file("/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages") == "2\n"
    m.write_file("/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages", "0")
    assert meminfo(m)["Hugetlb"] == 0
    m.check()


def test_gigantic_fails_when_fragmented():
    from vmsim.mm.hugetlb import alloc_contig_pages
    from vmsim.mm.page_alloc import GFP_HIGHUSER_MOVABLE
    m = vmsim.Machine(memory="2G", debug_vm=False)
    k = m.k
    # The only candidate is [1 GiB, 2 GiB) (the kernel image sits in the first): one
    # block in use there is enough, since vmsim migrates nothing.
    held = []
    while not held or held[-1] < 1 << 18:
        held.append(k.page_alloc.alloc_pages(GFP_HIGHUSER_MOVABLE, 10))
    assert alloc_contig_pages(k, 1 << 18, GFP_HIGHUSER_MOVABLE) == -1
    m.write_file("/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages", "1")
    assert m.read_file("/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages") == "0\n"
    for p in held:
        k.mem.refcount[p] = 0
        k.page_alloc.free_frozen_pages(p, 10)
    m.write_file("/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages", "1")
    assert m.read_file("/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages") == "1\n"
    m.check()


# --- mmap ----------------------------------------------------------------------------
def test_no_pool_enomem_and_noreserve_sigbus(proc):
    m = proc.machine
    # Reference machine: ENOMEM; with MAP_NORESERVE the mmap works and the touch SIGBUSes.
    assert errno_of(proc.mmap, 0, 2 * MB, RW, HP) == errno.ENOMEM
    a = proc.mmap(0, 2 * MB, RW, HP | MAP_NORESERVE)
    with pytest.raises(SignalDelivered) as e:
        proc.write(a, b"x")
    assert e.value.signo == signal.SIGBUS
    proc.munmap(a, 2 * MB)
    assert pool(m) == (0, 0, 0, 0)


def test_mmap_rounds_reserves_and_faults(proc):
    m = proc.machine
    m.write_file("/proc/sys/vm/nr_hugepages", "4")
    a = proc.mmap(0, 3 * MB, RW, HP)
    assert a % (2 * MB) == 0
    maps = [ln for ln in m.read_file(f"/proc/{proc.pid}/maps").splitlines() if "anon_huge" in ln]
    assert len(maps) == 1
    start, end = (int(x, 16) for x in maps[0].split()[0].split("-"))
    assert end - start == 4 * MB
    assert maps[0].split()[3] == "00:11" and maps[0].endswith("/anon_hugepage (deleted)")
    assert pool(m) == (4, 4, 2, 0)
    proc.write(a, b"\x01" * 10)
    assert pool(m) == (4, 3, 1, 0)
    assert meminfo(m)["Hugetlb"] == 8192
    s = smaps_of(m, proc, a)
    assert (s["Size"], s["KernelPageSize"], s["MMUPageSize"], s["Rss"], s["Private_Hugetlb"],
            s["Shared_Hugetlb"], s["Locked"]) == (4096, 2048, 2048, 0, 2048, 0, 0)
    status = m.read_file(f"/proc/{proc.pid}/status")
    assert "HugetlbPages:\t    2048 kB" in status
    # The huge PTE is a PSE PMD; pagemap: present | exclusive, the subpage's PFN.
    pmd = pte_at(proc, a, 21)
    assert pmd & T._PAGE_PSE and pmd & T._PAGE_RW and pmd & T._PAGE_DIRTY
    pm = m.read_file(f"/proc/{proc.pid}/pagemap", (a >> 12) * 8, 8 * 513)
    e0 = int.from_bytes(pm[:8], "little")
    e1 = int.from_bytes(pm[8:16], "little")
    assert e0 >> 56 == 0x81 and e1 == e0 + 1 and pm[8 * 512:] == bytes(8)
    assert vmstat(m)["nr_hugetlb"] == 512
    assert proc.read(a, 10) == b"\x01" * 10 and proc.read(a + 2 * MB, 4) == bytes(4)


def test_alignment_errors(proc):
    m = proc.machine
    m.write_file("/proc/sys/vm/nr_hugepages", "4")
    a = proc.mmap(0, 4 * MB, RW, HP)
    # Reference machine: all EINVAL (a split of the VMA off a huge page boundary).
    assert errno_of(proc.munmap, a, 4096) == errno.EINVAL
    assert errno_of(proc.munmap, a + 4096, 2 * MB) == errno.EINVAL
    assert errno_of(proc.mprotect, a, 4096, PROT_READ) == errno.EINVAL
    assert errno_of(proc.mmap, a + 4096, 2 * MB, RW, HP | MAP_FIXED) == errno.EINVAL
    assert errno_of(proc.mmap, 0, 2 * MB, RW, HP | (14 << 26)) == errno.EINVAL   # 16 KiB
    assert errno_of(proc.mmap, 0, 2 * MB, RW, HP | MAP_HUGE_1GB) == errno.ENOMEM
    # madvise(MADV_DONTNEED) of 4 KiB rounds down to nothing: success, page kept.
    proc.write(a, b"z")
    proc.madvise(a, 4096, 4)
    assert proc.read(a, 1) == b"z" and pool(m) == (4, 3, 1, 0)
    proc.munmap(a + 2 * MB, 2 * MB)
    assert pool(m) == (4, 3, 0, 0)
    proc.munmap(a, 2 * MB)
    assert pool(m) == (4, 4, 0, 0)


def test_shared_reservation_counts(proc):
    m = proc.machine
    m.write_file("/proc/sys/vm/nr_hugepages", "4")
    a = proc.mmap(0, 4 * MB, RW, HP)
    proc.write(a, b"x")
    # Reference machine: 8 MiB shared with 3 free / 1 reserved is ENOMEM, 4 MiB fits.
    assert errno_of(proc.mmap, 0, 8 * MB, RW, HS) == errno.ENOMEM
    f = proc.mmap(0, 4 * MB, RW, HS)
    assert pool(m) == (4, 3, 3, 0)
    proc.munmap(a, 4 * MB)
    proc.munmap(f, 4 * MB)
    assert pool(m) == (4, 4, 0, 0)


def test_shared_mapping_seen_by_child(proc):
    m = proc.machine
    m.write_file("/proc/sys/vm/nr_hugepages", "2")
    f = proc.mmap(0, 2 * MB, RW, HS)
    proc.write(f + 100, b"shared")
    c = proc.fork()
    assert c.read(f + 100, 6) == b"shared"          # faulted from the page cache
    c.write(f, b"C")
    assert proc.read(f, 1) == b"C"
    assert pool(m) == (2, 1, 0, 0)
    s = smaps_of(m, proc, f)
    assert s["Shared_Hugetlb"] == 2048 and s["Private_Hugetlb"] == 0
    c.exit()
    proc.munmap(f, 2 * MB)
    assert pool(m) == (2, 2, 0, 0)


# --- fork and COW ---------------------------------------------------------------------
def test_fork_cow_copies_into_a_new_huge_page(proc):
    m = proc.machine
    m.write_file("/proc/sys/vm/nr_hugepages", "4")
    a = proc.mmap(0, 2 * MB, RW, HP)
    proc.write(a, b"hello")
    c = proc.fork()
    assert not pte_at(proc, a, 21) & T._PAGE_RW and not pte_at(c, a, 21) & T._PAGE_RW
    assert smaps_of(m, proc, a)["Shared_Hugetlb"] == 2048
    c.write(a + 10, b"x")
    assert proc.read(a, 12) == b"hello" + bytes(7)
    assert c.read(a, 12) == b"hello" + bytes(5) + b"x" + bytes(1)
    assert pool(m) == (4, 2, 0, 0)
    proc.write(a, b"H")                  # now exclusive again: reused, no copy
    assert pool(m) == (4, 2, 0, 0)
    c.exit()
    assert pool(m) == (4, 3, 0, 0)


def test_cow_pool_exhausted_sigbus_and_unmap_ref_private(proc):
    m = proc.machine
    m.write_file("/proc/sys/vm/nr_hugepages", "1")
    a = proc.mmap(0, 2 * MB, RW, HP)
    proc.write(a, b"\x05")
    c1 = proc.fork()
    # Reference machine: the child (no reservation) gets SIGBUS on its COW write.
    with pytest.raises(SignalDelivered) as e:
        c1.write(a + 1, b"\x06")
    assert e.value.signo == signal.SIGBUS
    c1.exit()
    c2 = proc.fork()
    # The owner's COW cannot allocate either: the page is taken from the child
    # (unmap_ref_private), whose next access is a SIGBUS; the parent keeps writing.
    proc.write(a + 2, b"\x07")
    assert proc.read(a, 3) == b"\x05\x00\x07"
    with pytest.raises(SignalDelivered) as e:
        c2.read(a, 1)
    assert e.value.signo == signal.SIGBUS
    assert "killed due to inadequate hugepage pool" in m.dmesg()
    c2.exit()
    proc.munmap(a, 2 * MB)
    assert pool(m) == (1, 1, 0, 0)


def test_surplus_pages_from_overcommit(proc):
    m = proc.machine
    m.write_file("/proc/sys/vm/nr_overcommit_hugepages", "2")
    a = proc.mmap(0, 4 * MB, RW, HP)
    assert pool(m) == (2, 2, 2, 2)
    proc.write(a, b"1")
    assert pool(m) == (2, 1, 1, 2)
    proc.munmap(a, 4 * MB)
    assert pool(m) == (0, 0, 0, 0)


def test_exit_refills_pool(proc):
    m = proc.machine
    m.write_file("/proc/sys/vm/nr_hugepages", "3")
    a = proc.mmap(0, 6 * MB, RW, HP)
    proc.touch(a, 6 * MB, write=True, stride=2 * MB)
    assert pool(m) == (3, 0, 0, 0)
    proc.exit()
    assert pool(m) == (3, 3, 0, 0)


def test_pmd_sharing_across_fork():
    m = vmsim.Machine(memory="2G")
    p = m.spawn()
    m.write_file("/proc/sys/vm/nr_hugepages", "4")
    # A shared mapping covering an aligned GiB: the child's fault shares the PMD table.
    g = p.mmap(0, 2 << 30, RW, HS | MAP_HUGE_2MB | MAP_NORESERVE)
    base = (g + (1 << 30) - 1) & ~((1 << 30) - 1)
    p.write(base, b"p")
    c = p.fork()
    assert c.read(base, 1) == b"p"
    assert pte_at(c, base, 30) == pte_at(p, base, 30)       # the same PMD table
    k = m.k
    row = k.mem.private[(pte_at(p, base, 30) & T.PTE_PFN_MASK) >> 12]
    assert k.ptpool.pt_share_count[row] == 1
    m.check()
    c.exit()
    assert k.ptpool.pt_share_count[row] == 0
    p.munmap(g, 2 << 30)
    assert pool(m) == (4, 4, 0, 0)
    m.check()


def test_gigantic_mapping_faults_a_pud():
    m = vmsim.Machine(memory="2G")
    p = m.spawn()
    m.write_file("/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages", "1")
    a = p.mmap(0, 4096, RW, HP | MAP_HUGE_1GB)
    assert a % (1 << 30) == 0
    p.write(a + (1 << 29) + 3, b"g")
    pud = pte_at(p, a, 30)
    assert pud & T._PAGE_PSE and pud & T._PAGE_RW
    assert p.read(a + (1 << 29) + 3, 1) == b"g"
    assert smaps_of(m, p, a)["KernelPageSize"] == 1048576
    c = p.fork()
    with pytest.raises(SignalDelivered) as e:
        c.write(a, b"c")                  # no 1 GiB page left for the child's copy
    assert e.value.signo == signal.SIGBUS
    m.check()


# --- the MMU walk over huge leaves ----------------------------------------------------
@pytest.mark.parametrize("levels", [4, pytest.param(5, marks=pytest.mark.slow)])
def test_mmu_walk_of_huge_leaves_compiled_matches_python(levels):
    """PSE PMDs (2 MiB, writable and write-protected after fork) and a 1 GiB PUD: the
    compiled and the Python walk give the same physical address (the offset inside the
    huge page kept) or error code, and the same Accessed/Dirty updates."""
    from vmsim.arch.x86 import mmu
    from vmsim.arch.x86.cpu import _s64 as s64
    m = vmsim.Machine(memory="2G", paging_levels=levels)
    p = m.spawn()
    m.write_file("/proc/sys/vm/nr_hugepages", "2")
    m.write_file("/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages", "1")
    a = p.mmap(0, 4 * MB, RW, HP)
    p.write(a, b"a")
    p.write(a + 2 * MB, b"b")
    g = p.mmap(0, 1 << 30, PROT_READ, HP | MAP_HUGE_1GB)
    p.read(g + 12345, 1)
    c = p.fork()                         # the parent's PMDs are write-protected now
    k = m.k
    tr, _ = mmu.compiled()
    live = k.ptpool.arr[:k.ptpool.used * 512]
    accesses = (T.X86_PF_USER, T.X86_PF_USER | T.X86_PF_WRITE, T.X86_PF_USER | T.X86_PF_INSTR)
    addrs = [a, a + 0x1234, a + 2 * MB - 8, a + 2 * MB + 0x10, a + 4 * MB, g, g + (1 << 29) + 5,
             g + (1 << 30) - 8, g + (1 << 30)]
    seen_ok = 0
    for addr in addrs:
        for acc in accesses:
            got = []
            for fn in (mmu.translate, tr):
                pt = live.copy()
                r = int(fn(pt, k.mem.np_private.copy(), p.mm.pgd, k.la57, s64(addr), acc))
                got.append((r, pt))
            assert got[0][0] == got[1][0] and (got[0][1] == got[1][1]).all(), (hex(addr), acc)
            r = got[0][0]
            if r >= 0:
                seen_ok += 1
                gig = g <= addr < g + (1 << 30)
                leaf = pte_at(p, addr, 30 if gig else 21)
                size = 1 << 30 if gig else 2 * MB
                assert r == ((leaf & T.PTE_PFN_MASK) & ~(size - 1)) + (addr & (size - 1))
    assert seen_ok >= 6
    c.exit()


def test_populate_mremap_mlock_and_pool_shrink(proc):
    """The reference machine's answers, step by step (C probe on 6.18.44)."""
    from vmsim.mm.mremap import MREMAP_MAYMOVE, MREMAP_FIXED
    m = proc.machine
    m.write_file("/proc/sys/vm/nr_hugepages", "4")
    f0 = proc.getrusage().ru_minflt
    a = proc.mmap(0, 4 * MB, RW, HP | vmsim.MAP_POPULATE)
    assert proc.getrusage().ru_minflt - f0 == 2
    assert pool(m)[1:3] == (2, 0)
    proc.write(a, b"x")
    proc.write(a + 2 * MB, b"y")
    assert errno_of(proc.mremap, a, 4 * MB, 6 * MB, 0) == errno.EINVAL
    assert proc.mremap(a, 4 * MB, 2 * MB, 0) == a
    assert pool(m)[1:3] == (3, 0)
    dst = proc.mmap(0, 8 * MB, vmsim.PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)
    d = (dst + 2 * MB - 1) & ~(2 * MB - 1)
    assert errno_of(proc.mremap, a, 2 * MB, 2 * MB, MREMAP_MAYMOVE | MREMAP_FIXED,
                    d + 4096) == errno.EINVAL
    r = proc.mremap(a, 2 * MB, 2 * MB, MREMAP_MAYMOVE | MREMAP_FIXED, d)
    assert r == d and proc.read(r, 1) == b"x"
    assert pool(m)[1:3] == (3, 0)
    f0 = proc.getrusage().ru_minflt
    proc.write(r + 1, b"z")
    assert proc.getrusage().ru_minflt == f0
    proc.mlock(r, 2 * MB)
    status = m.read_file(f"/proc/{proc.pid}/status")
    assert "VmLck:\t       0 kB" in status and "HugetlbPages:\t    2048 kB" in status
    m.write_file("/proc/sys/vm/nr_hugepages", "0")
    assert pool(m) == (1, 0, 0, 1)              # the page in use becomes surplus
    proc.munmap(r, 2 * MB)
    assert pool(m) == (0, 0, 0, 0)
    m.write_file("/proc/sys/vm/nr_overcommit_hugepages", "2")
    s = proc.mmap(0, 4 * MB, RW, HS)
    assert pool(m) == (2, 2, 2, 2)
    proc.write(s, b"\x01")
    assert pool(m) == (2, 1, 1, 2)
    m.write_file("/proc/sys/vm/nr_hugepages", "1")
    assert pool(m) == (2, 1, 1, 1)
    proc.munmap(s, 4 * MB)
    assert pool(m) == (1, 1, 0, 0)


def test_mincore_of_hugetlb(proc):
    """As the reference machine: huge PTE present or not, per 4 KiB page; the child's
    shared mapping shows 0 (its PMD table exists: fork copied the private mapping
    next to it, so mincore_hugetlb sees an empty entry)."""
    m = proc.machine
    m.write_file("/proc/sys/vm/nr_hugepages", "4")
    a = proc.mmap(0, 4 * MB, RW, HP)
    v = proc.mincore(a, 4 * MB)
    assert (v[0], v[1], v[512], v[513]) == (0, 0, 0, 0)
    proc.write(a, b"\x01")
    v = proc.mincore(a, 4 * MB)
    assert (v[0], v[1], v[512], v[513]) == (1, 1, 0, 0)
    s = proc.mmap(0, 4 * MB, RW, HS)
    proc.write(s, b"\x01")
    proc.write(s + 2 * MB, b"\x01")
    v = proc.mincore(s, 4 * MB)
    assert (v[0], v[1], v[512], v[513]) == (1, 1, 1, 1)
    c = proc.fork()
    v = c.mincore(s, 4 * MB)
    assert (v[0], v[1], v[512], v[513]) == (0, 0, 0, 0)
    c.write(s, b"\x02")
    v = c.mincore(s, 4 * MB)
    assert (v[0], v[1], v[512], v[513]) == (1, 1, 0, 0)


def test_kpageflags_and_kpagecount_of_hugetlb(proc):
    """The reference machine (pagemap -> kpageflags / kpagecount of the first two
    frames): private 0x400029808 / 0x400031808, shared 0x28818 / 0x30818 (KPF_HUGE,
    KPF_MMAP on every page, head/tail, anon + exclusive or dirty + swapbacked... as
    stable_page_flags() reports them), count 1 for both pages."""
    m = proc.machine
    m.write_file("/proc/sys/vm/nr_hugepages", "2")
    a = proc.mmap(0, 2 * MB, RW, HP)
    proc.write(a, b"\x01")
    s = proc.mmap(0, 2 * MB, RW, HS)
    proc.write(s, b"\x01")
    for addr, want in ((a, (0x400029808, 0x400031808)), (s, (0x28818, 0x30818))):
        pfn = (pte_at(proc, addr, 21) & T.PTE_PFN_MASK) >> 12
        kpf = m.read_file("/proc/kpageflags", pfn * 8, 16)
        assert (int.from_bytes(kpf[:8], "little"), int.from_bytes(kpf[8:], "little")) == want
        kpc = m.read_file("/proc/kpagecount", pfn * 8, 16)
        assert (int.from_bytes(kpc[:8], "little"), int.from_bytes(kpc[8:], "little")) == (1, 1)


@pytest.mark.parametrize("data,sysfs,sysctl", [
    # (written, sysfs nr_hugepages result, /proc/sys/vm/nr_hugepages result), as the
    # reference machine answered: errno name or the value read back.
    ("2", 2, 2), ("2\n", 2, 2), (" 2", "EINVAL", 2), ("2 ", "EINVAL", 2),
    ("+2", 2, "EINVAL"), ("2x", "EINVAL", "EINVAL"), ("", 0, 0), ("-1", "EINVAL", "EINVAL"),
    ("0x2", "EINVAL", 2), ("18446744073709551616", "ERANGE", "EINVAL"),
])
def test_nr_hugepages_write_parsing(machine, data, sysfs, sysctl):
    m = machine
    for path, want in (("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", sysfs),
                       ("/proc/sys/vm/nr_hugepages", sysctl)):
        if isinstance(want, str):
            with pytest.raises(OSError) as e:
                m.write_file(path, data)
            assert errno.errorcode[e.value.errno] == want
            assert m.read_file(path) == "0\n"
        else:
            assert m.write_file(path, data) == len(data)
            assert m.read_file(path) == f"{want}\n"
        m.write_file(path, "0")


def test_split_ends_pmd_sharing():
    """hugetlb_split(): madvise(MADV_DONTFORK) of half of a shared GiB only splits the
    child's VMA (no page-table walk), and the split unshares its PMD table there; its
    pages fault in again (page cache)."""
    m = vmsim.Machine(memory="2G")
    p = m.spawn()
    m.write_file("/proc/sys/vm/nr_hugepages", "2")
    g = p.mmap(0, 2 << 30, RW, HS | MAP_NORESERVE)
    base = (g + (1 << 30) - 1) & ~((1 << 30) - 1)
    p.write(base, b"p")
    c = p.fork()
    assert c.read(base, 1) == b"p"
    k = m.k
    row = k.mem.private[(pte_at(p, base, 30) & T.PTE_PFN_MASK) >> 12]
    assert k.ptpool.pt_share_count[row] == 1
    c.madvise(base + (512 << 20), 512 << 20, 10)         # MADV_DONTFORK
    assert k.ptpool.pt_share_count[row] == 0
    assert pte_at(c, base, 21) == 0                  # gone from the child's tables
    assert c.read(base, 1) == b"p"                   # faulted in from the page cache
    assert pte_at(c, base, 30) != pte_at(p, base, 30)
    m.check()
