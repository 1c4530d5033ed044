"""PMD-mapped page-cache folios (issue 9 / issue 10's file THP): do_set_pmd from
filemap_map_pages (filemap_map_pmd) and finish_fault, and the file branches of the
PMD code (zap_huge_pmd, __split_huge_pmd_locked, copy_huge_pmd, change_huge_pmd,
move_huge_pmd, folio_mkclean, truncation).

The shape each test asserts is the one 6.18's source gives (mm/memory.c do_set_pmd,
mm/huge_memory.c); the read-fault counts and FilePmdMapped of the first tests were
measured on this machine's kernel (scenarios/file_pmd_map*.toml).
"""
import pytest

from vmsim import (Machine, SignalDelivered, O_RDWR, O_CREAT, PROT_READ, PROT_WRITE,
                   PROT_NONE, MAP_SHARED, MAP_PRIVATE, MADV_DONTNEED, MADV_NOHUGEPAGE,
                   MREMAP_MAYMOVE, MREMAP_FIXED, SIGBUS)

MiB = 1 << 20


def vmstat(m):
    return {l.split()[0]: int(l.split()[1]) for l in m.read_file("/proc/vmstat").splitlines()}


def meminfo(m):
    return {l.split(":")[0]: int(l.split()[1]) for l in m.read_file("/proc/meminfo").splitlines()}


def smaps(m, p, addr):
    """The smaps fields of the VMA starting at addr."""
    out, cur = {}, None
    for line in m.read_file(f"/proc/{p.pid}/smaps").splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            cur = int(head.split("-")[0], 16) == addr
        elif cur and line.split(":")[0] in ("Rss", "FilePmdMapped", "ShmemPmdMapped",
                                              "AnonHugePages", "Private_Clean", "Shared_Clean",
                                              "Private_Dirty", "Shared_Dirty"):
            out[line.split(":")[0]] = int(line.split()[1])
    return out


def _huge_file(p, path="/tmp/h", folios=4):
    """A disk file cached in PMD-sized folios: one 2 MiB pwrite per folio
    (fgf_set_order), byte = folio number + 1."""
    fd = p.open(path, O_RDWR | O_CREAT, 0o644)
    for i in range(folios):
        p.pwrite(fd, bytes([i + 1]) * (2 * MiB), i * 2 * MiB)
    p.fsync(fd)
    return fd


def _faults(p, fn):
    r0 = p.getrusage()
    fn()
    r1 = p.getrusage()
    return r1.ru_minflt - r0.ru_minflt + r1.ru_majflt - r0.ru_majflt


def _pmd(p, addr):
    """The huge PMD entry at addr, or 0 when the PMD is none or a table."""
    from vmsim.mm.huge_memory import mm_find_pmd
    from vmsim.arch.x86 import pgtable_types as T
    pmdp = mm_find_pmd(p.mm, addr)
    e = int(p.mm.kernel.ptpool.mv[pmdp]) if pmdp >= 0 else 0
    return e if e & T._PAGE_PSE else 0


@pytest.mark.parametrize("enabled", ["always", "madvise", "never"])
def test_read_fault_maps_a_pmd_sized_folio_with_one_pmd_whatever_enabled_says(machine, enabled):
    m = machine
    m.write_file("/sys/kernel/mm/transparent_hugepage/enabled", enabled)
    p = m.spawn()
    fd = _huge_file(p)
    a = p.mmap(0, 8 * MiB, PROT_READ, MAP_PRIVATE, fd, 0)
    assert a % (2 * MiB) == 0                   # thp_get_unmapped_area placement
    v0 = vmstat(m)
    assert _faults(p, lambda: p.touch(a, 8 * MiB)) == 4
    v1 = vmstat(m)
    assert v1["thp_file_mapped"] - v0["thp_file_mapped"] == 4
    assert v1["nr_file_pmdmapped"] - v0["nr_file_pmdmapped"] == 4      # in huge pages
    assert v1["nr_mapped"] - v0["nr_mapped"] == 2048
    assert meminfo(m)["FilePmdMapped"] == 8192
    s = smaps(m, p, a)
    assert s["Rss"] == 8192 and s["FilePmdMapped"] == 8192 and s["AnonHugePages"] == 0
    assert all(_pmd(p, a + i * 2 * MiB) for i in range(4))
    assert p.read(a + 5 * MiB, 2) == b"\x03\x03"
    m.check()


def test_nohugepage_and_the_mm_thp_disable_flag_map_ptes(machine):
    from vmsim.mm.huge_memory import MMF_DISABLE_THP_COMPLETELY
    m = machine
    p = m.spawn()
    fd = _huge_file(p, folios=2)
    a = p.mmap(0, 4 * MiB, PROT_READ, MAP_PRIVATE, fd, 0)
    p.madvise(a, 2 * MiB, MADV_NOHUGEPAGE)
    v0 = vmstat(m)
    # VM_NOHUGEPAGE: the folio is mapped whole by 512 PTEs in one fault.
    assert _faults(p, lambda: p.touch(a, 2 * MiB)) == 1
    assert not _pmd(p, a) and smaps(m, p, a)["FilePmdMapped"] == 0
    assert vmstat(m)["thp_file_mapped"] == v0["thp_file_mapped"]
    # prctl(PR_SET_THP_DISABLE)'s flag on the mm (set directly: the syscall is another
    # helper's) stops the PMD as well.
    q = m.spawn()
    q.mm.flags |= 1 << MMF_DISABLE_THP_COMPLETELY
    fq = q.open("/tmp/h", O_RDWR, 0)
    b = q.mmap(0, 4 * MiB, PROT_READ, MAP_PRIVATE, fq, 0)
    assert _faults(q, lambda: q.touch(b, 4 * MiB)) == 2
    assert not _pmd(q, b) and not _pmd(q, b + 2 * MiB)
    m.check()


def test_misaligned_file_offset_maps_ptes(machine):
    # thp_vma_suitable_order(): (vm_start >> PAGE_SHIFT) - vm_pgoff must be PMD-aligned.
    m = machine
    p = m.spawn()
    fd = _huge_file(p, folios=3)
    # thp_get_unmapped_area() keeps the address in step with the offset:
    a = p.mmap(0, 4 * MiB, PROT_READ, MAP_PRIVATE, fd, 4096)
    assert (a - 4096) % (2 * MiB) == 0
    p.touch(a, 4 * MiB)
    assert meminfo(m)["FilePmdMapped"] == 2048
    # ... MAP_FIXED at a PMD-aligned address does not: PTEs only.
    r = p.mmap(0, 8 * MiB, PROT_NONE, MAP_PRIVATE | 0x20, -1, 0)
    r = (r + 2 * MiB - 1) & ~(2 * MiB - 1)
    b = p.mmap(r, 4 * MiB, PROT_READ, MAP_PRIVATE | 0x10, fd, 4096)
    assert b == r
    p.touch(b, 4 * MiB)
    assert smaps(m, p, b)["FilePmdMapped"] == 0 and smaps(m, p, b)["Rss"] == 4096
    assert p.read(b + 2 * MiB - 4096, 1) == b"\x02"
    m.check()


def test_munmap_and_exit_zap_file_pmds_without_deposits(machine):
    from vmsim.mm.huge_memory import mm_find_pmd
    from vmsim.mm.pgtable_generic import pmd_ptdesc, _deposited
    m = machine
    p = m.spawn()
    fd = _huge_file(p)
    a = p.mmap(0, 8 * MiB, PROT_READ, MAP_PRIVATE, fd, 0)
    mapped0 = meminfo(m)["Mapped"]
    p.touch(a, 8 * MiB)
    assert _pmd(p, a)
    # arch_needs_pgtable_deposit() is false: the PMD table's list stays empty.
    assert _deposited(m.k, pmd_ptdesc(m.k, mm_find_pmd(p.mm, a))) == []
    folio = _pmd(p, a) >> 12 & ((1 << 40) - 1)
    assert m.k.mem.refcount[folio] == 512 + 1       # the cache's and the PMD's
    p.munmap(a, 4 * MiB)
    assert m.k.mem.refcount[folio] == 512
    assert meminfo(m)["FilePmdMapped"] == 4096
    p.exit(0)
    mi = meminfo(m)
    assert mi["FilePmdMapped"] == 0 and mi["Mapped"] <= mapped0
    assert mi["FileHugePages"] == 8192              # still cached
    m.check()


@pytest.mark.parametrize("op", ["munmap", "mprotect", "dontneed"])
def test_partial_operations_zap_the_file_pmd_and_the_rest_refaults(machine, op):
    # __split_huge_pmd_locked() on a file VMA zaps the whole PMD (THP_SPLIT_PMD); the
    # remaining pages come back by faults, with PTEs (the PMD has a table now).
    m = machine
    p = m.spawn()
    fd = _huge_file(p, folios=2)
    a = p.mmap(0, 4 * MiB, PROT_READ, MAP_PRIVATE, fd, 0)
    p.touch(a, 4 * MiB)
    v0 = vmstat(m)
    if op == "munmap":
        p.munmap(a + 2 * MiB, 4096)
    elif op == "mprotect":
        p.mprotect(a + 2 * MiB, 4096, PROT_NONE)
    else:
        p.madvise(a + 2 * MiB, 4096, MADV_DONTNEED)
    v1 = vmstat(m)
    assert v1["thp_split_pmd"] - v0["thp_split_pmd"] == 1
    assert v1["nr_file_pmdmapped"] - v0["nr_file_pmdmapped"] == -1
    assert _pmd(p, a) and not _pmd(p, a + 2 * MiB)
    assert smaps(m, p, a)["FilePmdMapped"] == 2048
    # The rest of the folio comes back in one fault: munmap and mprotect split the VMA,
    # so the PMD range no longer fits one VMA (thp_vma_suitable_order) and fault-around
    # maps the folio's pages that fit by PTEs; after MADV_DONTNEED the VMA is whole and
    # the PMD none, so do_set_pmd maps it again.
    n = _faults(p, lambda: p.touch(a + 2 * MiB + 8192, 4096))
    assert n == 1
    assert p.read(a + 2 * MiB + 8192, 1) == b"\x02"
    assert bool(_pmd(p, a + 2 * MiB)) == (op == "dontneed")
    m.check()


def test_fork_leaves_file_pmds_to_be_refaulted(machine):
    # copy_huge_pmd(): "Skip if can be re-fill on fault" for non-anonymous VMAs; the
    # VMA is copied at all only with an anon_vma (here: after a COW write).
    m = machine
    p = m.spawn()
    fd = _huge_file(p, folios=2)
    a = p.mmap(0, 4 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0)
    p.touch(a, 4 * MiB)
    p.write(a + 2 * MiB + 5, b"P")                  # COW: anon_vma, the PMD zapped
    c = p.fork()
    assert not _pmd(c, a)
    assert _faults(c, lambda: c.touch(a, 2 * MiB)) == 1
    assert _pmd(c, a)
    assert c.read(a + 2 * MiB + 4, 3) == b"\x02P\x02"
    assert smaps(m, c, a)["FilePmdMapped"] == 2048
    m.check()


def test_private_write_after_read_zaps_the_pmd_and_copies_one_page(machine):
    m = machine
    p = m.spawn()
    fd = _huge_file(p, folios=1)
    a = p.mmap(0, 2 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0)
    p.touch(a, 2 * MiB)
    assert _pmd(p, a) and not _pmd(p, a) & 2        # read-only PMD in a private VMA
    v0 = vmstat(m)
    assert _faults(p, lambda: p.write(a + 4096, b"W")) == 1
    v1 = vmstat(m)
    assert v1["thp_split_pmd"] - v0["thp_split_pmd"] == 1    # wp_huge_pmd -> split
    assert not _pmd(p, a)
    assert p.pread(fd, 1, 4096) == b"\x01"          # never reaches the file
    assert p.read(a + 4096, 1) == b"W"
    s = smaps(m, p, a)
    assert s["Private_Dirty"] == 4 and s["FilePmdMapped"] == 0
    m.check()


def test_shared_write_maps_a_writable_pmd_and_fsync_write_protects_it(machine):
    m = machine
    p = m.spawn()
    fd = _huge_file(p, folios=2)
    a = p.mmap(0, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
    p.touch(a, 2 * MiB)
    assert not _pmd(p, a) & 2                       # write-notify: read-only
    # wp_huge_pmd splits (zaps), do_shared_fault maps the PMD again, dirty, writable.
    assert _faults(p, lambda: p.write(a + 7, b"zz")) == 1
    assert _pmd(p, a) & 2 and _pmd(p, a) & 0x40
    assert _faults(p, lambda: p.write(a + 2 * MiB, b"y")) == 1   # first write: do_shared_fault
    assert _pmd(p, a + 2 * MiB) & 2
    assert meminfo(m)["Dirty"] == 4096
    p.fsync(fd)
    assert meminfo(m)["Dirty"] == 0
    assert not _pmd(p, a) & 2 and not _pmd(p, a + 2 * MiB) & 2    # folio_mkclean
    assert _faults(p, lambda: p.write(a + 9, b"x")) == 1
    assert meminfo(m)["Dirty"] == 2048
    assert p.pread(fd, 4, 6) == b"\x01zzx"
    m.check()


def test_truncate_unmaps_the_file_pmd_and_later_access_sigbus(machine):
    m = machine
    p = m.spawn()
    fd = _huge_file(p, folios=2)
    a = p.mmap(0, 4 * MiB, PROT_READ, MAP_SHARED, fd, 0)
    p.touch(a, 4 * MiB)
    p.ftruncate(fd, 3 * MiB)
    assert _pmd(p, a) and not _pmd(p, a + 2 * MiB)
    mi = meminfo(m)
    assert mi["FilePmdMapped"] == 2048 and mi["FileHugePages"] == 2048
    assert p.read(a + 3 * MiB - 1, 1) == b"\x02"
    with pytest.raises(SignalDelivered) as e:
        p.read(a + 3 * MiB, 1)
    assert e.value.signo == SIGBUS
    m.check()


def test_mremap_moves_a_file_pmd_whole_and_zaps_a_partial_one(machine):
    m = machine
    p = m.spawn()
    fd = _huge_file(p, folios=2)
    a = p.mmap(0, 4 * MiB, PROT_READ, MAP_PRIVATE, fd, 0)
    p.touch(a, 4 * MiB)
    dst = p.mmap(0, 8 * MiB, PROT_NONE, MAP_PRIVATE | 0x20, -1, 0)
    dst = (dst + 2 * MiB - 1) & ~(2 * MiB - 1)
    b = p.mremap(a, 4 * MiB, 4 * MiB, MREMAP_MAYMOVE | MREMAP_FIXED, dst)
    assert b == dst and _pmd(p, b) and _pmd(p, b + 2 * MiB)        # move_huge_pmd
    assert p.read(b + 2 * MiB, 1) == b"\x02"
    c = p.mremap(b, 2 * MiB, 2 * MiB, MREMAP_MAYMOVE | MREMAP_FIXED, dst + 4 * MiB + 4096)
    assert not _pmd(p, c)                           # misaligned: zapped, refaulted by PTEs
    assert p.read(c + 4096, 1) == b"\x01"
    assert meminfo(m)["FilePmdMapped"] == 2048
    m.check()


def test_finish_fault_maps_the_folio_at_eof_with_a_pmd(machine):
    # The file's last folio ends at EOF: filemap_map_pages() does not PMD-map it (its
    # file_end is the last index) and installs no table; ->fault and finish_fault
    # (which compares i_size rounded up) map it with do_set_pmd.
    m = machine
    p = m.spawn()
    fd = _huge_file(p, folios=2)
    a = p.mmap(0, 4 * MiB, PROT_READ, MAP_PRIVATE, fd, 0)
    assert _faults(p, lambda: p.touch(a + 2 * MiB + 4096, 4096)) == 1
    assert _pmd(p, a + 2 * MiB)
    assert smaps(m, p, a)["FilePmdMapped"] == 2048
    m.check()


def _pmd_mapped_folio(m):
    """A page-cache folio of 2 MiB read through a private mapping (a PMD maps it):
    the folio's PFN, the checker passing."""
    p = m.spawn()
    fd = _huge_file(p, folios=1)
    a = p.mmap(0, 2 * MiB, PROT_READ, MAP_PRIVATE, fd, 0)
    p.touch(a, 4096)
    m.check()
    return _pmd(p, a) >> 12 & ((1 << 40) - 1)


def test_checker_catches_a_lost_pmdmapped_counter(machine):
    from vmsim.mm import vmstat as V
    m = machine
    h = _pmd_mapped_folio(m)
    m.k.vmstat[V.NR_FILE_PMDMAPPED] -= 512
    with pytest.raises(AssertionError, match="nr_file_pmdmapped"):
        m.check()
    m.k.vmstat[V.NR_FILE_PMDMAPPED] += 512
    m.k.mem.lru_prev[h + 1] += 1
    with pytest.raises(AssertionError, match="_entire_mapcount|entire mapcount"):
        m.check()
    m.k.mem.lru_prev[h + 1] -= 1
    m.check()


# --- the compiled PTE fill of filemap_map_folio_range (vmsim/mm/_filemap_batch.py) ----
from hypothesis import example, given, settings, strategies as st  # noqa: E402
from test_pte_batch import _state, _assert_same  # noqa: E402

FILE_PAGES = 1024
FOPS = st.one_of(
    st.tuples(st.just("read"), st.integers(0, FILE_PAGES - 1), st.integers(1, 700)),
    st.tuples(st.just("write"), st.integers(0, FILE_PAGES - 1), st.integers(1, 4)),
    st.tuples(st.just("dontneed"), st.integers(0, FILE_PAGES - 1), st.integers(1, 600)),
    st.tuples(st.just("munmap"), st.integers(0, FILE_PAGES - 1), st.integers(1, 40)),
    st.tuples(st.just("fork"), st.integers(0, FILE_PAGES - 1), st.integers(1, 300)),
    st.tuples(st.just("nohuge"), st.integers(0, FILE_PAGES - 1), st.integers(1, 600)),
    st.tuples(st.just("pwrite"), st.integers(0, FILE_PAGES - 1), st.integers(1, 6)),
)


def _file_run(chunks, program, enabled, runs=True):
    """A 4 MiB file written in ``chunks`` (pages per pwrite: the page-cache folio
    sizes), mapped shared and private; ``program`` runs with the fill (and, unless
    ``runs`` is false, the read-fault runs) on or off."""
    from vmsim.mm import _filemap_batch
    from vmsim import MADV_NOHUGEPAGE
    _filemap_batch._set_enabled(enabled)
    _filemap_batch._set_run_enabled(enabled and runs)
    try:
        m = Machine(memory="64M", cpus=2)
        p = m.spawn()
        fd = p.open("/tmp/eq", O_RDWR | O_CREAT, 0o644)
        off = 0
        for c in chunks:
            if off >= FILE_PAGES:
                break
            n = min(c, FILE_PAGES - off)
            p.pwrite(fd, bytes([off & 0xFF]) * (n << 12), off << 12)
            off += n
        p.ftruncate(fd, FILE_PAGES << 12)
        maps = [p.mmap(0, FILE_PAGES << 12, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0),
                p.mmap(0, FILE_PAGES << 12, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)]
        procs = [p]
        for i, (op, page, n) in enumerate(program):
            who = procs[-1]
            a = maps[i & 1] + (page << 12)
            length = min(n, FILE_PAGES - page) << 12
            try:
                if op == "read":
                    who.touch(a, length)
                elif op == "write":
                    who.touch(a, length, write=True, value=i)
                elif op == "dontneed":
                    who.madvise(a, length, MADV_DONTNEED)
                elif op == "munmap":
                    who.munmap(a, length)
                elif op == "nohuge":
                    who.madvise(a, length, MADV_NOHUGEPAGE)
                elif op == "pwrite":
                    who.pwrite(fd, b"w" * (n << 12), page << 12)
                elif op == "fork" and len(procs) < 3:
                    procs.append(who.fork())
                    procs[-1].touch(a, length)
            except (OSError, SignalDelivered):
                pass
        m.check()
        return m, procs
    finally:
        _filemap_batch._set_enabled(True)


def _file_compare(chunks, program, runs=True):
    from vmsim.mm import _filemap_batch
    calls = [0]
    py = _state(*_file_run(chunks, program, False))
    real = _filemap_batch._fill

    def counting(*args):
        r = real(*args)
        calls[0] += r > 0
        return r
    _filemap_batch._fill = counting
    try:
        filled = _state(*_file_run(chunks, program, True, runs))
    finally:
        _filemap_batch._fill = real
    _assert_same(py, filled)
    return calls[0]


@settings(max_examples=6, deadline=None)
@given(st.lists(st.sampled_from([1, 4, 16, 32, 128, 512]), min_size=1, max_size=12),
       st.lists(FOPS, min_size=1, max_size=8))
# A PMD-mapped fault's preallocated table is allocated and freed before the next
# fault's table (the run once did those pairs after it: another frame, pool row).
@example([512, 1], [("read", 0, 613)])
@example([512, 1], [("fork", 0, 1), ("read", 0, 611)])
def test_compiled_fill_leaves_the_python_state(chunks, program):
    """Random page caches (folio sizes from the pwrite sizes), private and shared
    mappings, reads, writes, MADV_DONTNEED / NOHUGEPAGE, munmap, forks and pwrites:
    identical state with the compiled fill and with set_pte_range in Python."""
    _file_compare(chunks, program)


def test_compiled_fill_is_taken_and_matches():
    # 16-page and 512-page folios, read through fault-around with the PMD off (the
    # read-fault runs off: they map without the fill).
    n = _file_compare([16, 16, 512, 16, 512], [("nohuge", 0, 1024), ("read", 0, 1024),
                                               ("read", 0, 1024), ("dontneed", 40, 600),
                                               ("read", 0, 1024)], runs=False)
    assert n >= 4


@pytest.mark.slow
@settings(max_examples=80, deadline=None)
@given(st.lists(st.sampled_from([1, 4, 16, 32, 128, 512]), min_size=1, max_size=12),
       st.lists(FOPS, min_size=1, max_size=16))
def test_compiled_fill_leaves_the_python_state_long(chunks, program):
    _file_compare(chunks, program)


def test_traced_fault_runs_set_pte_range():
    # With a profiler installed the compiled fill is not used: set_pte_range shows.
    import sys
    m = Machine(memory="64M")
    p = m.spawn()
    fd = _huge_file(p, folios=2)
    a = p.mmap(0, 4 * MiB, PROT_READ, MAP_PRIVATE, fd, 0)
    p.madvise(a, 4 * MiB, MADV_NOHUGEPAGE)
    seen = set()

    def prof(frame, event, arg):
        if event == "call":
            seen.add(frame.f_code.co_name)
    sys.setprofile(prof)
    try:
        p.read(a, 1)
    finally:
        sys.setprofile(None)
    assert {"filemap_map_folio_range", "set_pte_range", "folio_add_file_rmap_ptes",
            "set_ptes"} <= seen
    assert "_fill_file_ptes" not in seen


def test_kpageflags_mark_large_page_cache_folios_thp(machine):
    # stable_page_flags(): KPF_THP for any large rmappable folio (page cache ones are:
    # filemap_alloc_folio -> page_rmappable_folio), KPF_MMAP while mapped, not KPF_ANON.
    import struct
    m = machine
    p = m.spawn()
    fd = _huge_file(p, folios=1)
    a = p.mmap(0, 2 * MiB, PROT_READ, MAP_PRIVATE, fd, 0)
    p.touch(a, 4096)
    head = (_pmd(p, a) & ((1 << 52) - 1)) >> 21 << 9

    def kpf(pfn):
        return struct.unpack("<Q", m.read_file("/proc/kpageflags", pfn * 8, 8))[0]
    KPF_MMAP, KPF_ANON, KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL, KPF_THP = 11, 12, 15, 16, 22
    f0, f9 = kpf(head), kpf(head + 9)
    assert f0 >> KPF_THP & 1 and f9 >> KPF_THP & 1
    assert f0 >> KPF_COMPOUND_HEAD & 1 and f9 >> KPF_COMPOUND_TAIL & 1
    assert f9 >> KPF_MMAP & 1 and not f9 >> KPF_ANON & 1
    # A small page-cache folio is no THP.
    fs = p.open("/tmp/small", O_RDWR | O_CREAT, 0o644)
    p.pwrite(fs, b"s" * 4096, 0)
    b = p.mmap(0, 4096, PROT_READ, MAP_PRIVATE, fs, 0)
    p.touch(b, 4096)
    from vmsim.mm.huge_memory import mm_find_pmd
    pmdp = mm_find_pmd(p.mm, b)
    mv = m.k.ptpool.mv
    pte = mv[m.k.mem.private[(mv[pmdp] & ((1 << 52) - 4096)) >> 12] * 512 + ((b >> 12) & 511)]
    assert not kpf((pte & ((1 << 52) - 4096)) >> 12) >> KPF_THP & 1


def test_madv_cold_on_a_file_pmd(machine):
    # madvise_cold_or_pageout_pte_range() on a huge PMD: the whole PMD is aged (young
    # cleared, the folio deactivated); part of it splits: the file PMD is zapped (vmsim
    # leaves the page-cache folio large where split_folio would split it).
    from vmsim import MADV_COLD
    from vmsim.mm.page_flags import PG_active
    m = machine
    p = m.spawn()
    fd = _huge_file(p, folios=2)
    a = p.mmap(0, 4 * MiB, PROT_READ, MAP_PRIVATE, fd, 0)
    p.touch(a, 4 * MiB)
    folio = (_pmd(p, a) & ((1 << 52) - 1)) >> 12
    p.madvise(a, 2 * MiB, MADV_COLD)
    assert _pmd(p, a) and not _pmd(p, a) & 0x20           # still mapped, not young
    assert not m.k.mem.flags[folio] & PG_active
    v0 = vmstat(m)
    p.madvise(a + 2 * MiB, 4096, MADV_COLD)
    assert not _pmd(p, a + 2 * MiB)
    assert vmstat(m)["thp_split_pmd"] - v0["thp_split_pmd"] == 1
    assert p.read(a + 2 * MiB + 4096, 1) == b"\x02"
    m.check()


@pytest.mark.parametrize("field,shown", [("mapping", "_large_mapcount 2,"),
                                         ("index", "_nr_pages_mapped 1,"),
                                         ("lru_prev", "_entire_mapcount 2;")])
def test_checker_catches_a_wrong_large_folio_mapcount(machine, field, shown):
    """debug_vm._check_file_state: a PMD-mapped page-cache folio's _large_mapcount,
    _nr_pages_mapped and _entire_mapcount (the second page's mapping, index, lru_prev)
    against the PTE and PMD mappings."""
    m = machine
    h = _pmd_mapped_folio(m)
    getattr(m.k.mem, field)[h + 1] += 1
    with pytest.raises(AssertionError, match=f"page cache: large folio pfn {h:#x}: .*{shown}"):
        m.check()
    getattr(m.k.mem, field)[h + 1] -= 1
    m.check()
