"""Transparent huge pages (issue 10): knobs, the PMD fault, COW, split, zap, fork,
khugepaged / MADV_COLLAPSE, mTHP, the 5.4 profile, and the debug checker's view.

Expected values come from this machine's kernel (6.18.44: the sysfs listing and the
write errors were read from /sys/kernel/mm/transparent_hugepage, the fault results
are in the recorded thp_* scenarios) or from the 6.18 / 5.4 source named per test.
"""
import errno
import struct

import pytest

import vmsim
from vmsim import MAP_PRIVATE, MAP_ANONYMOUS, PROT_READ, PROT_WRITE
from vmsim.uapi import MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_COLLAPSE, MADV_DONTNEED
from vmtest import errno_of

THP = "/sys/kernel/mm/transparent_hugepage/"
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS
P = 4096
H = 2 << 20
KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL, KPF_THP, KPF_ZERO_PAGE = 15, 16, 22, 24


def vmstat(m, name):
    for line in m.read_file("/proc/vmstat").splitlines():
        k, v = line.split()
        if k == name:
            return int(v)
    raise KeyError(name)


def smaps_kb(p, addr, field):
    out = p.machine.read_file(f"/proc/{p.pid}/smaps")
    cur = None
    for line in out.splitlines():
        if "-" in line.split()[0] and ":" not in line.split()[0]:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            cur = lo <= addr < hi
        elif cur and line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def pfn_at(p, addr):
    """The PFN /proc/pid/pagemap reports for addr (PTE or huge PMD), -1 if none."""
    e = struct.unpack("<Q", p.machine.read_file(f"/proc/{p.pid}/pagemap", addr // P * 8, 8))[0]
    return e & ((1 << 55) - 1) if e >> 63 else -1


def kpageflags(m, pfn):
    return struct.unpack("<Q", m.read_file("/proc/kpageflags", pfn * 8, 8))[0]


def huge_region(p, length=H):
    a = p.mmap(0, length, RW, ANON)
    assert a % H == 0                           # 6.18 aligns PMD-multiple anon mmaps
    p.madvise(a, length, MADV_HUGEPAGE)
    return a


# --- sysfs ----------------------------------------------------------------------------
def test_thp_sysfs_files_and_defaults(machine):
    """The files and defaults this machine shows (ls / cat of its transparent_hugepage)."""
    m = machine
    assert m.read_file(THP + "enabled") == "always [madvise] never\n"
    assert m.read_file(THP + "defrag") == "always defer defer+madvise [madvise] never\n"
    assert m.read_file(THP + "shrink_underused") == "1\n"
    assert m.read_file(THP + "hugepages-2048kB/enabled") == "always [inherit] madvise never\n"
    assert m.read_file(THP + "hugepages-64kB/enabled") == "always inherit madvise [never]\n"
    assert m.read_file(THP + "hugepages-2048kB/shmem_enabled") == \
        "always [inherit] within_size advise never\n"
    assert m.read_file(THP + "hugepages-8kB/shmem_enabled") == \
        "always inherit within_size advise [never]\n"
    with pytest.raises(FileNotFoundError):          # order 1: no anon "enabled"
        m.read_file(THP + "hugepages-8kB/enabled")
    with pytest.raises(FileNotFoundError):
        m.read_file(THP + "hugepages-4096kB/enabled")
    for f, v in (("defrag", "1"), ("pages_to_scan", "4096"), ("scan_sleep_millisecs", "10000"),
                 ("alloc_sleep_millisecs", "60000"), ("max_ptes_none", "511"),
                 ("max_ptes_swap", "64"), ("max_ptes_shared", "256"), ("pages_collapsed", "0"),
                 ("full_scans", "0")):
        assert m.read_file(THP + "khugepaged/" + f) == v + "\n"
    for s in ("anon_fault_alloc", "anon_fault_fallback", "anon_fault_fallback_charge", "nr_anon",
              "nr_anon_partially_mapped", "split", "split_deferred", "split_failed", "swpout",
              "shmem_alloc", "zswpout"):
        assert m.read_file(THP + "hugepages-64kB/stats/" + s) == "0\n"
    with pytest.raises(FileNotFoundError):          # 8kB/stats has no anon stats
        m.read_file(THP + "hugepages-8kB/stats/anon_fault_alloc")


@pytest.mark.parametrize("path,value,err", [
    ("hugepages-64kB/enabled", "bogus", errno.EINVAL),       # measured
    ("use_zero_page", "2", errno.EINVAL),                    # measured
    ("shrink_underused", "5", errno.EINVAL),                 # measured (kstrtobool)
    ("khugepaged/pages_to_scan", "0", errno.EINVAL),         # pages_to_scan_store: !pages
    ("khugepaged/max_ptes_none", "512", errno.EINVAL),       # > HPAGE_PMD_NR - 1
    ("khugepaged/max_ptes_shared", "-1", errno.EINVAL),
    ("khugepaged/pages_collapsed", "1", errno.EACCES),       # 0444
    ("hugepages-64kB/stats/nr_anon", "1", errno.EACCES),
])
def test_thp_sysfs_write_errors(machine, path, value, err):
    with pytest.raises(OSError) as e:
        machine.write_file(THP + path, value)
    assert e.value.errno == err


def test_thp_sysfs_writes(machine):
    m = machine
    m.write_file(THP + "hugepages-64kB/enabled", "always\n")
    assert m.read_file(THP + "hugepages-64kB/enabled") == "[always] inherit madvise never\n"
    m.write_file(THP + "shrink_underused", "off")
    assert m.read_file(THP + "shrink_underused") == "0\n"
    m.write_file(THP + "khugepaged/max_ptes_none", "0")
    assert m.read_file(THP + "khugepaged/max_ptes_none") == "0\n"
    m.write_file(THP + "shmem_enabled", "force")
    with pytest.raises(OSError) as e:                   # thpsize_shmem_enabled_store()
        m.write_file(THP + "hugepages-64kB/shmem_enabled", "inherit")
    assert e.value.errno == errno.EINVAL
    m.write_file(THP + "hugepages-2048kB/shmem_enabled", "inherit")


# --- the PMD fault --------------------------------------------------------------------------
def test_write_fault_maps_a_pmd_thp(proc):
    m = proc.machine
    fa = vmstat(m, "thp_fault_alloc")
    a = huge_region(proc)
    proc.touch(a, H, write=True)
    assert proc.getrusage().ru_minflt == 1
    assert smaps_kb(proc, a, "AnonHugePages") == 2048
    assert smaps_kb(proc, a, "Rss") == 2048
    assert vmstat(m, "thp_fault_alloc") == fa + 1
    assert vmstat(m, "nr_anon_transparent_hugepages") == 1
    assert "AnonHugePages:      2048 kB" in m.read_file("/proc/meminfo")
    head = pfn_at(proc, a)
    assert head % 512 == 0 and pfn_at(proc, a + 5 * P) == head + 5
    f0, f5 = kpageflags(m, head), kpageflags(m, head + 5)
    assert f0 >> KPF_THP & 1 and f0 >> KPF_COMPOUND_HEAD & 1
    assert f5 >> KPF_THP & 1 and f5 >> KPF_COMPOUND_TAIL & 1
    assert m.read_file(THP + "hugepages-2048kB/stats/anon_fault_alloc") == "1\n"
    assert m.read_file(THP + "hugepages-2048kB/stats/nr_anon") == "1\n"


def test_no_thp_without_madvise_or_when_too_small(proc):
    m = proc.machine
    a = proc.mmap(0, H, RW, ANON)
    proc.touch(a, P, write=True)                          # enabled=madvise
    assert smaps_kb(proc, a, "AnonHugePages") == 0
    b = proc.mmap(0, H // 2, RW, ANON)
    proc.madvise(b, H // 2, MADV_HUGEPAGE)
    proc.touch(b, H // 2, write=True)                     # < 2 MiB
    assert smaps_kb(proc, b, "AnonHugePages") == 0
    c = huge_region(proc)
    proc.madvise(c, H, MADV_NOHUGEPAGE)
    proc.touch(c, P, write=True)
    assert smaps_kb(proc, c, "AnonHugePages") == 0
    assert vmstat(m, "thp_fault_alloc") == 0


def test_read_fault_maps_the_huge_zero_folio(proc):
    """do_huge_pmd_anonymous_page(): a read maps the huge zero folio (no RSS); without
    CONFIG_PERSISTENT_HUGE_ZERO_FOLIO the first user allocates it (THP_ZERO_PAGE_ALLOC)."""
    m = proc.machine
    a = huge_region(proc)
    assert proc.read(a + 123, 1) == b"\0"
    assert smaps_kb(proc, a, "Rss") == 0 and smaps_kb(proc, a, "AnonHugePages") == 0
    assert vmstat(m, "thp_zero_page_alloc") == 1
    hz = pfn_at(proc, a)
    f = kpageflags(m, hz)
    assert f >> KPF_ZERO_PAGE & 1 and f >> KPF_THP & 1
    b = huge_region(proc)
    proc.read(b, 1)
    assert pfn_at(proc, b) == hz and vmstat(m, "thp_zero_page_alloc") == 1
    # A write: do_huge_zero_wp_pmd() maps a new THP in place (no split).
    proc.write(a + 5, b"w")
    assert smaps_kb(proc, a, "AnonHugePages") == 2048
    assert vmstat(m, "thp_split_pmd") == 0 and vmstat(m, "thp_fault_alloc") == 1
    m.write_file(THP + "use_zero_page", "0")
    c = huge_region(proc)
    proc.read(c, 1)                                       # now a THP even for a read
    assert vmstat(m, "nr_anon_transparent_hugepages") == 2


def test_fault_falls_back_without_a_free_pmd_block(fragment):
    """vma_alloc_anon_folio_pmd() fails: THP_FAULT_FALLBACK and the 4 KiB fault."""
    m = vmsim.Machine(memory="96M")
    p = m.spawn()
    fragment(m)
    a = huge_region(p)
    p.write(a, b"x")
    assert vmstat(m, "thp_fault_fallback") == 1
    assert m.read_file(THP + "hugepages-2048kB/stats/anon_fault_fallback") == "1\n"
    assert smaps_kb(p, a, "Rss") == 4 and smaps_kb(p, a, "AnonHugePages") == 0
    m.check()


# --- COW, split, fork ---------------------------------------------------------------------
def test_fork_child_write_splits_the_pmd(proc):
    """6.18 do_huge_pmd_wp_page: a shared THP is not copied whole; the PMD is split
    and the 4 KiB COW copies one page (the thp_fork_child_write recording agrees)."""
    m = proc.machine
    a = huge_region(proc)
    proc.touch(a, H, write=True, value=1)
    c = proc.fork()
    assert smaps_kb(c, a, "AnonHugePages") == 2048        # copy_huge_pmd shares the PMD
    c.write(a, b"\x02")
    assert vmstat(m, "thp_split_pmd") == 1 and vmstat(m, "thp_fault_alloc") == 1
    assert smaps_kb(c, a, "AnonHugePages") == 0 and smaps_kb(c, a, "Rss") == 2048
    assert proc.read(a, 1) == b"\x01" and c.read(a, 1) == b"\x02"
    assert pfn_at(c, a + P) == pfn_at(proc, a + P)        # the rest still shared
    proc.write(a + 9 * P, b"\x03")                        # parent: refcount > 1, split
    assert vmstat(m, "thp_split_pmd") == 2
    assert c.read(a + 9 * P, 1) == b"\x01"
    c.exit(0)
    proc.wait(c.pid)


def test_exclusive_thp_is_reused_after_the_child_exits(proc):
    m = proc.machine
    a = huge_region(proc)
    proc.touch(a, H, write=True)
    c = proc.fork()
    c.exit(0)
    proc.wait(c.pid)
    proc.write(a, b"z")                                   # folio_ref_count() == 1: reuse
    assert vmstat(m, "thp_split_pmd") == 0
    assert smaps_kb(proc, a, "AnonHugePages") == 2048


def test_partial_munmap_splits_and_defers_the_folio_split(proc):
    """munmap of one page: PMD split at the VMA boundary, folio partially mapped
    (thp_deferred_split_page); the shrinker (deferred_split_scan) splits it and frees
    the unmapped page (thp_split_page)."""
    from vmsim.mm.huge_memory import deferred_split_scan
    m = proc.machine
    a = huge_region(proc)
    proc.touch(a, H, write=True, value=4)
    proc.munmap(a + 100 * P, P)
    assert vmstat(m, "thp_split_pmd") == 1 and vmstat(m, "thp_deferred_split_page") == 1
    assert smaps_kb(proc, a, "Rss") == 400
    assert m.read_file(THP + "hugepages-2048kB/stats/nr_anon_partially_mapped") == "1\n"
    free = m.k.page_alloc.nr_free_pages()
    assert deferred_split_scan(m.k) == 1
    assert vmstat(m, "thp_split_page") == 1
    assert m.k.page_alloc.nr_free_pages() == free + 1
    assert kpageflags(m, pfn_at(proc, a)) >> KPF_THP & 1 == 0
    assert proc.read(a + 99 * P, 1) == b"\x04" and proc.read(a + 101 * P, 1) == b"\x04"


def test_mprotect_mremap_dontneed_of_huge_pmds(proc):
    m = proc.machine
    a = huge_region(proc, 2 * H)
    proc.touch(a, 2 * H, write=True, value=6)
    proc.mprotect(a + H, H, PROT_READ)                    # whole PMD: change_huge_pmd
    assert vmstat(m, "thp_split_pmd") == 0
    proc.mprotect(a + 8 * P, 8 * P, PROT_READ)           # part: split
    assert vmstat(m, "thp_split_pmd") == 1
    d = proc.mmap(0, 4 * H, 0, ANON)
    dest = (d + H - 1) & ~(H - 1)
    b = proc.mremap(a + H, H, H, 3, dest)                 # MREMAP_MAYMOVE | MREMAP_FIXED
    assert b == dest and smaps_kb(proc, b, "AnonHugePages") == 2048
    assert vmstat(m, "thp_split_pmd") == 1
    proc.madvise(b, H, MADV_DONTNEED)                      # whole PMD: zap_huge_pmd
    assert vmstat(m, "thp_split_pmd") == 1 and smaps_kb(proc, b, "Rss") == 0


# --- khugepaged and MADV_COLLAPSE ----------------------------------------------------------
def test_madv_collapse_keeps_data(proc):
    m = proc.machine
    a = proc.mmap(0, H, RW, ANON)
    for i in range(0, 300):
        proc.write(a + i * P + 7, bytes([i & 255]))
    proc.madvise(a, H, MADV_COLLAPSE)
    assert smaps_kb(proc, a, "AnonHugePages") == 2048
    assert vmstat(m, "thp_collapse_alloc") == 1
    assert all(proc.read(a + i * P + 7, 1) == bytes([i & 255]) for i in range(0, 300, 37))
    assert proc.read(a + 400 * P, 1) == b"\0"
    # khugepaged counts only its own collapses.
    assert m.read_file(THP + "khugepaged/pages_collapsed") == "0\n"


def test_khugepaged_runs_on_the_virtual_clock(proc):
    """khugepaged wakes every scan_sleep_millisecs (10 s): nothing before, a collapse
    of the MADV_HUGEPAGE range written with small pages after."""
    m = proc.machine
    a = proc.mmap(0, H, RW, ANON)
    proc.madvise(a, H, MADV_NOHUGEPAGE)
    proc.touch(a, H, write=True)                          # 512 small pages
    proc.madvise(a, H, MADV_HUGEPAGE)                     # khugepaged_enter_vma()
    m.sleep(9.9)
    assert smaps_kb(proc, a, "AnonHugePages") == 0
    m.sleep(0.2)
    assert smaps_kb(proc, a, "AnonHugePages") == 2048
    assert m.read_file(THP + "khugepaged/pages_collapsed") == "1\n"
    assert int(m.read_file(THP + "khugepaged/full_scans")) >= 1


def test_khugepaged_max_ptes_none(proc):
    """selftests/mm/khugepaged.c collapse_max_ptes_none: more none PTEs than
    max_ptes_none: no collapse (thp_scan_exceed_none_pte); MADV_COLLAPSE ignores it."""
    m = proc.machine
    m.write_file(THP + "khugepaged/max_ptes_none", "8")
    a = huge_region(proc)
    proc.madvise(a, H, MADV_NOHUGEPAGE)
    proc.touch(a, (512 - 9) * P, write=True)
    proc.madvise(a, H, MADV_HUGEPAGE)
    m.sleep(10)
    assert smaps_kb(proc, a, "AnonHugePages") == 0
    assert vmstat(m, "thp_scan_exceed_none_pte") >= 1
    proc.touch(a + (512 - 9) * P, P, write=True)          # 8 none now
    m.sleep(10)
    assert smaps_kb(proc, a, "AnonHugePages") == 2048


# --- mTHP ------------------------------------------------------------------------------------
def test_mthp_fault_maps_the_highest_enabled_order(proc):
    m = proc.machine
    m.write_file(THP + "hugepages-64kB/enabled", "always")
    m.write_file(THP + "hugepages-32kB/enabled", "always")
    a = proc.mmap(0, 1 << 20, RW, ANON)
    x = (a + (64 << 10) - 1) & ~((64 << 10) - 1)
    proc.write(x + 3 * P, b"m")
    assert smaps_kb(proc, x, "Rss") >= 64 and smaps_kb(proc, x, "AnonHugePages") == 0
    assert m.read_file(THP + "hugepages-64kB/stats/anon_fault_alloc") == "1\n"
    head = pfn_at(proc, x)
    assert pfn_at(proc, x + 15 * P) == head + 15 and head % 16 == 0
    assert kpageflags(m, head) >> KPF_THP & 1
    assert vmstat(m, "thp_fault_alloc") == 0               # PMD-size events only
    # Pages still mapped around the hole: no enabled order's block is all none, so
    # the refault is order 0.
    y = x + (64 << 10)
    proc.write(y + 9 * P, b"a")
    proc.madvise(y + 8 * P, 2 * P, MADV_DONTNEED)
    proc.write(y + 9 * P, b"b")
    assert m.read_file(THP + "hugepages-64kB/stats/anon_fault_alloc") == "2\n"
    assert m.read_file(THP + "hugepages-32kB/stats/anon_fault_alloc") == "0\n"
    assert smaps_kb(proc, y, "Rss") >= 64


# --- the 5.4 profile -----------------------------------------------------------------------
def _cow_after_fork(kernel):
    m = vmsim.Machine(memory="256M", kernel=kernel)
    p = m.spawn()
    a = huge_region(p)
    p.touch(a, H, write=True, value=1)
    c = p.fork()
    c.write(a + 5 * P, b"\x02")
    out = (vmstat(m, "thp_fault_alloc"), vmstat(m, "thp_split_pmd"),
           smaps_kb(c, a, "AnonHugePages"), smaps_kb(p, a, "AnonHugePages"),
           c.read(a + 5 * P, 1), p.read(a + 5 * P, 1), c.read(a + 6 * P, 1))
    m.check()
    return out


def test_cow_of_a_shared_thp_6_18_splits_5_4_copies():
    """6.18: __split_huge_pmd + a 4 KiB copy. 5.4 do_huge_pmd_wp_page: a new THP and
    copy_user_huge_page (thp_fault_alloc), the child keeps a huge PMD."""
    assert _cow_after_fork("6.18") == (1, 1, 0, 2048, b"\x02", b"\x01", b"\x01")
    assert _cow_after_fork("5.4") == (2, 0, 2048, 2048, b"\x02", b"\x01", b"\x01")


def test_5_4_fallback_copies_512_small_pages(fragment):
    """5.4 do_huge_pmd_wp_page_fallback(): no THP for the COW: 512 small pages, no
    split of the PMD (thp_split_pmd 0), THP_FAULT_FALLBACK."""
    m = vmsim.Machine(memory="96M", kernel="5.4")
    p = m.spawn()
    a = huge_region(p)
    p.touch(a, H, write=True, value=1)
    c = p.fork()
    fragment(m)
    c.write(a, b"\x02")
    assert vmstat(m, "thp_fault_fallback") == 1 and vmstat(m, "thp_split_pmd") == 0
    assert smaps_kb(c, a, "AnonHugePages") == 0 and smaps_kb(c, a, "Rss") == 2048
    assert pfn_at(c, a + P) != pfn_at(p, a + P)           # every page copied
    assert c.read(a + P, 1) == b"\x01"
    m.check()


def test_5_4_profile_has_no_mthp_files():
    m = vmsim.Machine(memory="128M", kernel="5.4")
    with pytest.raises(FileNotFoundError):
        m.read_file(THP + "hugepages-64kB/enabled")
    with pytest.raises(FileNotFoundError):
        m.read_file(THP + "shrink_underused")
    assert m.read_file(THP + "enabled") == "always [madvise] never\n"


# --- the debug checker ---------------------------------------------------------------------
@pytest.mark.no_final_check
def test_checker_catches_a_wrong_entire_mapcount(proc):
    m = proc.machine
    a = huge_region(proc)
    proc.touch(a, H, write=True)
    head = pfn_at(proc, a)
    m.k.mem.lru_prev[head + 1] = 2
    with pytest.raises(AssertionError, match="entire mapcount"):
        m.check()


def _pmd_table_pfn(p, addr):
    from vmsim.arch.x86.pgtable import pgd_offset, p4d_offset, pud_offset, pmd_offset
    mm = p.mm
    pmdp = pmd_offset(mm, pud_offset(mm, p4d_offset(mm, pgd_offset(mm, addr), addr), addr), addr)
    return mm.kernel.ptpool.slot_pfn[pmdp >> 9]


@pytest.mark.no_final_check
def test_checker_catches_a_lost_deposited_table(proc):
    m = proc.machine
    a = huge_region(proc)
    proc.touch(a, H, write=True)
    m.k.mem.lru_prev[_pmd_table_pfn(proc, a)] = 0          # pmd_huge_pte = NULL
    with pytest.raises(AssertionError, match="0 deposited PTE tables for 1 anonymous huge"):
        m.check()


@pytest.mark.no_final_check
def test_checker_catches_a_broken_deposit_list(proc):
    m = proc.machine
    a = huge_region(proc, 2 * H)
    proc.touch(a, 2 * H, stride=H, write=True)
    head = m.k.mem.lru_prev[_pmd_table_pfn(proc, a)]
    m.k.mem.lru_prev[m.k.mem.lru_next[head]] = 0            # the second's lru.prev lost
    with pytest.raises(AssertionError, match="list of deposited tables is broken"):
        m.check()


def test_deposits_withdraw_in_the_kernel_list_order(proc):
    """pgtable_trans_huge_deposit / withdraw (mm/pgtable-generic.c) on one PMD table:
    deposits A, B, C come back as C (pmd_huge_pte), A (its list's first), B."""
    from vmsim.mm.pgtable_generic import (pgtable_trans_huge_deposit,
                                          pgtable_trans_huge_withdraw, _deposited)
    mm = proc.mm
    a = huge_region(proc, 3 * H)
    proc.touch(a, 3 * H, stride=H, write=True)
    from vmsim.arch.x86.pgtable import pgd_offset, p4d_offset, pud_offset, pmd_offset
    pmdp = pmd_offset(mm, pud_offset(mm, p4d_offset(mm, pgd_offset(mm, a), a), a), a)
    ptd = mm.kernel.ptpool.slot_pfn[pmdp >> 9]
    deposited = _deposited(mm.kernel, ptd)
    assert len(deposited) == 3 and len(set(deposited)) == 3
    got = [pgtable_trans_huge_withdraw(mm, pmdp + i) for i in range(3)]
    assert mm.kernel.mem.lru_prev[ptd] == 0 and _deposited(mm.kernel, ptd) == []
    a_, b_, c_ = got
    for t in (a_, b_, c_):
        pgtable_trans_huge_deposit(mm, pmdp, t)
    assert [pgtable_trans_huge_withdraw(mm, pmdp) for _ in range(3)] == [c_, a_, b_]
    for i, t in enumerate(got):                         # put them back as they were
        pgtable_trans_huge_deposit(mm, pmdp + i, t)
    m = proc.machine
    m.check()
