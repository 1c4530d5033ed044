"""Huge shmem / tmpfs (issue 9): tmpfs huge= mounts, transparent_hugepage/shmem_enabled
and the per-size shmem_enabled files, shmem_get_folio_gfp's large folios, do_set_pmd
mapping them, the counters, splits on truncate / hole punch, and mount(2) / umount(2).

Ground truth: vmsim/conform/probes/shmem_thp-6.18.txt (shmem_thp_probe.c, run as root
on this machine's 6.18.44: mounts, remounts, write(2) folio sizes, mmap placement of a
tmpfs file, the sysfs write rules), re-enacted line by line here; the shmem_thp_*
conformance scenarios (scenarios/) cover shared anonymous memory, memfd, SysV shm and a
/dev/shm file. The rest asserts what 6.18's source gives (mm/shmem.c, mm/memory.c).
"""
import errno
import os

import pytest

from vmsim import (Machine, SignalDelivered, O_RDWR, O_CREAT, PROT_READ, PROT_WRITE,
                   MAP_SHARED, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MADV_HUGEPAGE,
                   MADV_NOHUGEPAGE, MADV_DONTNEED, MS_REMOUNT, FALLOC_FL_PUNCH_HOLE,
                   FALLOC_FL_KEEP_SIZE, SIGBUS)

MiB = 1 << 20
T = "/sys/kernel/mm/transparent_hugepage/"
KBS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048)
PROBE = os.path.join(os.path.dirname(__file__), "..", "vmsim", "conform", "probes",
                     "shmem_thp-6.18.txt")


def vmstat(m):
    return {l.split()[0]: int(l.split()[1]) for l in m.read_file("/proc/vmstat").splitlines()}


def meminfo(m):
    return {l.split(":")[0]: int(l.split()[1]) for l in m.read_file("/proc/meminfo").splitlines()}


def smaps_at(m, p, addr):
    """The smaps fields of the VMA containing addr."""
    out, cur = {}, False
    for line in m.read_file(f"/proc/{p.pid}/smaps").splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            lo, hi = (int(x, 16) for x in head.split("-"))
            cur = lo <= addr < hi
        elif cur and line.endswith("kB"):
            out[line.split(":")[0]] = int(line.split()[1])
        elif cur and line.startswith("THPeligible"):
            out["THPeligible"] = int(line.split()[1])
    return out


def shmem_alloc(m):
    return {kb: int(m.read_file(f"{T}hugepages-{kb}kB/stats/shmem_alloc")) for kb in KBS}


# --- the probe, re-enacted --------------------------------------------------------------
def _probe_lines():
    """shmem_thp_probe.c's steps on vmsim, printing what it prints."""
    m = Machine(memory="2G")
    p = m.spawn()
    out = []
    base = [shmem_alloc(m)]

    def allocs(what):
        now = shmem_alloc(m)
        d = [f" {kb}kB={now[kb] - base[0][kb]}" for kb in KBS if now[kb] != base[0][kb]]
        out.append(f"{what}: shmem_alloc{''.join(d) if d else ' none'}")
        base[0] = now

    def map_and_touch(tag, fd, advise, write, natural):
        if natural:
            a = p.mmap(0, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
            where = "unaligned" if a & (2 * MiB - 1) else "2M-aligned"
        else:
            r = p.mmap(0, 6 * MiB, 0, MAP_PRIVATE | MAP_ANONYMOUS)
            al = (r + 2 * MiB - 1) & ~(2 * MiB - 1)
            a = p.mmap(al, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0)
            if al > r:
                p.munmap(r, al - r)
            p.munmap(al + 4 * MiB, r + 6 * MiB - (al + 4 * MiB))
            where = "placed"
        if advise:
            p.madvise(a, 4 * MiB, MADV_HUGEPAGE)
        f0 = p.getrusage().ru_minflt
        p.touch(a, 4 * MiB, write=write)
        f1 = p.getrusage().ru_minflt
        s = smaps_at(m, p, a)
        out.append(f"{tag}: mmap {where} faults={f1 - f0} ShmemPmdMapped={s['ShmemPmdMapped']} "
                   f"FilePmdMapped={s['FilePmdMapped']}")
        p.munmap(a, 4 * MiB)

    def en(fn, *args):
        try:
            fn(*args)
            return "ok"
        except OSError as e:
            return errno.errorcode[e.errno]

    d = "/tmp/shmem_thp_probe"
    path = d + "/f"
    p.mkdir(d, 0o700)
    buf = bytes([7]) * (4 * MiB)
    for h, huge in enumerate(("never", "always", "within_size", "advise")):
        p.mount("tmpfs", d, "tmpfs", 0, f"huge={huge},size=64m")
        fd = p.open(path, O_RDWR | O_CREAT, 0o644)
        p.pwrite(fd, buf[:3 * MiB], 0)
        allocs(f"huge={huge} pwrite 3M at 0")
        p.pwrite(fd, buf[:4096], 8 * MiB)
        allocs(f"huge={huge} pwrite 4K at 8M")
        map_and_touch(f"huge={huge} read-touch", fd, False, False, h != 0)
        allocs(f"huge={huge} read-touch")
        p.close(fd)
        p.unlink(path)
        fd = p.open(path, O_RDWR | O_CREAT, 0o644)
        p.ftruncate(fd, 4 * MiB)
        map_and_touch(f"huge={huge} madvise write-touch", fd, True, True, h != 0)
        allocs(f"huge={huge} madvise write-touch")
        p.close(fd)
        p.unlink(path)
        p.umount(d)
    for opt in ("huge=deny", "huge=force", "huge=Always", "huge", "bogus=1", "huge=never"):
        out.append(f"mount {opt}: {en(p.mount, 'tmpfs', d, 'tmpfs', 0, opt)}")
    fd = p.open(path, O_RDWR | O_CREAT, 0o644)
    p.pwrite(fd, buf[:2 * MiB], 0)
    allocs("never pwrite 2M")
    out.append(f"remount huge=always: {en(p.mount, 'none', d, None, MS_REMOUNT, 'huge=always')}")
    p.pwrite(fd, buf[:2 * MiB], 2 * MiB)
    allocs("remounted pwrite 2M at 2M")
    out.append("remount size=1g (the default size, half of RAM, was set): "
               f"{en(p.mount, 'none', d, None, MS_REMOUNT, 'size=1g')}")
    out.append(f"umount while open: {en(p.umount, d)}")
    p.close(fd)
    out.append(f"umount: {en(p.umount, d)}")
    w = m.write_file
    for label, path_, val in (
            ("shmem_enabled=Always", "shmem_enabled", "Always"),
            ("shmem_enabled='advise '", "shmem_enabled", "advise "),
            ("shmem_enabled=advise\\n", "shmem_enabled", "advise\n"),
            ("64kB shmem_enabled=inherit", "hugepages-64kB/shmem_enabled", "inherit"),
            ("shmem_enabled=force with 64kB inherit", "shmem_enabled", "force"),
            ("64kB shmem_enabled=never", "hugepages-64kB/shmem_enabled", "never"),
            ("shmem_enabled=force", "shmem_enabled", "force"),
            ("64kB shmem_enabled=inherit under force", "hugepages-64kB/shmem_enabled", "inherit"),
            ("2048kB shmem_enabled=inherit under force", "hugepages-2048kB/shmem_enabled",
             "inherit"),
            ("64kB shmem_enabled=within_size under force", "hugepages-64kB/shmem_enabled",
             "within_size")):
        out.append(f"{label}: {en(w, T + path_, val)}")
    w(T + "hugepages-64kB/shmem_enabled", "never")
    out.append(f"shmem_enabled=never: {en(w, T + 'shmem_enabled', 'never')}")
    m.check()
    return out


def test_probe_of_huge_tmpfs_mounts_and_knobs_matches_the_kernel():
    """Every line of shmem_thp_probe.c's output on 6.18.44: huge= never / always /
    within_size / advise for write(2) (PMD folios for always; 2 MiB + 1 MiB for a 3 MiB
    within_size write), the mmap placement of a tmpfs file (2 MiB aligned unless
    huge=never), read and MADV_HUGEPAGE write faults, ShmemPmdMapped, mount option
    errors, MS_REMOUNT, EBUSY, and the shmem_enabled write rules."""
    with open(PROBE) as f:
        want = [l.rstrip("\n") for l in f if not l.startswith("#")]
    got = _probe_lines()
    for i, (w, g) in enumerate(zip(want, got)):
        assert g == w, f"line {i + 1}: kernel {w!r}, vmsim {g!r}"
    assert len(got) == len(want)


# --- sysfs knobs ------------------------------------------------------------------------
def test_shmem_enabled_files_read_as_on_this_machine(machine):
    """The defaults this machine shows: shmem_enabled never, hugepages-2048kB inherit and
    every other size never (shmem_init: huge_shmem_orders_inherit = BIT(PMD_ORDER))."""
    m = machine
    assert m.read_file(T + "shmem_enabled") == "always within_size advise [never] deny force\n"
    assert m.read_file(T + "hugepages-2048kB/shmem_enabled") == \
        "always [inherit] within_size advise never\n"
    for kb in KBS[:-1]:
        assert m.read_file(f"{T}hugepages-{kb}kB/shmem_enabled") == \
            "always inherit within_size advise [never]\n"
    for item in ("shmem_alloc", "shmem_fallback", "shmem_fallback_charge"):
        assert m.read_file(f"{T}hugepages-8kB/stats/{item}") == "0\n"


def test_shmem_enabled_deny_and_force_keep_the_internal_mounts_huge(machine):
    """shmem_enabled_store(): deny and force leave shm_mnt's huge= as it was (the store
    only sets it for never..advise), so after deny -> advise... the mount follows the
    last of those; deny overrides it, force forces PMD folios everywhere."""
    m = machine
    p = m.spawn()
    m.write_file(T + "shmem_enabled", "advise")
    m.write_file(T + "shmem_enabled", "deny")
    a = p.mmap(0, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS)
    p.madvise(a, 2 * MiB, MADV_HUGEPAGE)
    p.touch(a, 2 * MiB, write=True)
    assert smaps_at(m, p, a)["ShmemPmdMapped"] == 0          # deny
    m.write_file(T + "shmem_enabled", "force")
    b = p.mmap(0, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS)
    p.touch(b, 2 * MiB)
    assert smaps_at(m, p, b)["ShmemPmdMapped"] == 2048       # force, no MADV_HUGEPAGE
    m.write_file(T + "shmem_enabled", "never")
    c = p.mmap(0, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS)
    p.madvise(c, 2 * MiB, MADV_HUGEPAGE)
    p.touch(c, 2 * MiB)
    assert smaps_at(m, p, c)["ShmemPmdMapped"] == 0          # internal mount now never
    m.write_file(T + "shmem_enabled", "deny")
    m.write_file(T + "shmem_enabled", "advise")
    d = p.mmap(0, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS)
    p.madvise(d, 2 * MiB, MADV_HUGEPAGE)
    p.touch(d, 2 * MiB)
    assert smaps_at(m, p, d)["ShmemPmdMapped"] == 2048


def test_thpeligible_of_shmem_vmas_follows_shmem_allowable_huge_orders(machine):
    """smaps THPeligible: __thp_vma_allowable_orders(TVA_SMAPS) asks
    shmem_allowable_huge_orders() for a shmem VMA (a /dev/shm file: the mount's
    huge=; shared anonymous memory: also the per-size bitmaps)."""
    m = machine
    p = m.spawn()
    u = p.mmap(0, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS)
    m.write_file(T + "shmem_enabled", "advise")
    p.madvise(u, 4 * MiB, MADV_HUGEPAGE)
    # Mapped while shmem_enabled was never: no 2 MiB alignment, and the smaps check
    # wants an aligned PMD range at the VMA's end (thp_vma_suitable_order).
    assert u & (2 * MiB - 1) and smaps_at(m, p, u)["THPeligible"] == 0
    a = p.mmap(0, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS)
    assert a & (2 * MiB - 1) == 0
    assert smaps_at(m, p, a)["THPeligible"] == 0
    p.madvise(a, 4 * MiB, MADV_HUGEPAGE)
    assert smaps_at(m, p, a)["THPeligible"] == 1
    m.write_file(T + "shmem_enabled", "never")
    m.write_file(T + "hugepages-64kB/shmem_enabled", "always")
    assert smaps_at(m, p, a)["THPeligible"] == 1               # 64 KiB for anon shmem
    fd = p.open("/dev/shm/e", O_RDWR | O_CREAT)
    p.ftruncate(fd, 4 * MiB)
    f = p.mmap(0, 4 * MiB, PROT_READ, MAP_SHARED, fd, 0)
    assert smaps_at(m, p, f)["THPeligible"] == 0               # tmpfs: huge=never
    p.mount("none", "/dev/shm", None, MS_REMOUNT, "huge=always")
    assert smaps_at(m, p, f)["THPeligible"] == 1


# --- faults, counters, splits -----------------------------------------------------------
def test_pmd_fault_counters_and_release(machine):
    """A PMD-sized shmem folio: thp_file_alloc and the 2048kB shmem_alloc stat at
    allocation, thp_file_mapped at do_set_pmd, nr_shmem_hugepages / ShmemHugePages
    while cached, nr_shmem_pmdmapped / ShmemPmdMapped while PMD-mapped (FilePmdMapped and
    nr_file_hugepages stay 0: __folio_add_rmap and shmem_update_stats count swapbacked
    folios apart); all back to 0 when the last mapping goes."""
    m = machine
    p = m.spawn()
    m.write_file(T + "shmem_enabled", "within_size")
    v0, s0 = vmstat(m), shmem_alloc(m)
    a = p.mmap(0, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS)
    assert a & (2 * MiB - 1) == 0                 # shmem_get_unmapped_area aligned it
    p.touch(a, 4 * MiB, write=True)
    v, mi = vmstat(m), meminfo(m)
    assert p.getrusage().ru_minflt >= 2
    assert v["thp_file_alloc"] - v0["thp_file_alloc"] == 2
    assert v["thp_file_mapped"] - v0["thp_file_mapped"] == 2
    assert shmem_alloc(m)[2048] - s0[2048] == 2
    # /proc/vmstat shows these two in THPs (vmstat_item_print_in_thp).
    assert v["nr_shmem_hugepages"] == v["nr_shmem_pmdmapped"] == 2
    assert mi["ShmemHugePages"] == mi["ShmemPmdMapped"] == 4096
    assert mi["FilePmdMapped"] == mi["FileHugePages"] == 0
    s = smaps_at(m, p, a)
    assert s["ShmemPmdMapped"] == 4096 and s["FilePmdMapped"] == 0 and s["Rss"] == 4096
    assert p.read(a + 3 * MiB, 1) == b"\x01"
    m.check()
    p.munmap(a, 4 * MiB)
    mi = meminfo(m)
    assert mi["ShmemHugePages"] == mi["ShmemPmdMapped"] == mi["Shmem"] == 0
    m.check()


def test_failed_pmd_allocation_falls_back_counting_thp_file_fallback(fragment):
    """shmem_alloc_and_add_folio(): no free 2 MiB block -> thp_file_fallback and the
    2048kB shmem_fallback stat, then the next suitable order (none here: only the PMD
    size is enabled) and order 0 from shmem_get_folio_gfp."""
    m = Machine(memory="96M")
    p = m.spawn()
    m.write_file(T + "shmem_enabled", "always")
    a = p.mmap(0, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS)
    assert a & (2 * MiB - 1) == 0
    fragment(m)
    v0 = vmstat(m)
    p.write(a, b"x")
    v = vmstat(m)
    assert v["thp_file_fallback"] - v0["thp_file_fallback"] == 1
    assert v["thp_file_alloc"] == v0["thp_file_alloc"]
    assert m.read_file(T + "hugepages-2048kB/stats/shmem_fallback") == "1\n"
    assert m.read_file(T + "hugepages-2048kB/stats/shmem_alloc") == "0\n"
    assert smaps_at(m, p, a)["Rss"] == 4 and smaps_at(m, p, a)["ShmemPmdMapped"] == 0
    m.check()


def test_shared_write_after_read_keeps_the_pmd_and_private_write_copies_4k(machine):
    """A read fault maps the PMD with vm_page_prot (writable, clean, for a shared
    shmem VMA: no write-notify) so the write that follows does not fault; in a
    MAP_PRIVATE mapping of the same file the read PMD is read-only and the write
    splits it (wp_huge_pmd: file PMDs are zapped) and COWs one 4 KiB page."""
    m = machine
    p = m.spawn()
    m.write_file(T + "shmem_enabled", "force")
    fd = p.open("/dev/shm/rw", O_RDWR | O_CREAT)
    p.ftruncate(fd, 2 * MiB)
    s = p.mmap(0, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
    p.read(s, 1)
    f0 = p.getrusage().ru_minflt
    p.write(s + 8192, b"w")
    assert p.getrusage().ru_minflt == f0
    assert smaps_at(m, p, s)["ShmemPmdMapped"] == 2048
    q = p.mmap(0, 2 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0)
    p.read(q, 1)
    assert smaps_at(m, p, q)["ShmemPmdMapped"] == 2048
    p.write(q + 4096, b"c")
    sq = smaps_at(m, p, q)
    assert sq["ShmemPmdMapped"] == 0 and sq["Anonymous"] == 4
    assert p.pread(fd, 1, 4096) == b"\x00" and p.read(q + 8192, 1) == b"w"
    m.check()


@pytest.mark.parametrize("how", ["punch", "truncate"])
def test_partial_truncate_and_punch_split_the_folio(machine, how):
    """truncate_inode_partial_folio() on a PMD-sized tmpfs folio: unmapped, split by
    6.18's non-uniform folio_split (thp_split_page, the 2048kB "split" stat), the
    range's pages freed (ShmemHugePages 0), the rest kept as large folios whose
    data stays; later accesses refault them (a punched page reads zeros; past a
    truncation SIGBUS)."""
    m = machine
    p = m.spawn()
    m.write_file(T + "shmem_enabled", "force")
    fd = p.open("/dev/shm/cut", O_RDWR | O_CREAT)
    p.pwrite(fd, bytes(range(256)) * (8192), 0)
    a = p.mmap(0, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
    p.touch(a, 2 * MiB)
    assert meminfo(m)["ShmemPmdMapped"] == 2048
    v0 = vmstat(m)
    if how == "punch":
        p.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100 * 4096, 8 * 4096)
    else:
        p.ftruncate(fd, 100 * 4096 + 10)
    v, mi = vmstat(m), meminfo(m)
    assert v["thp_split_page"] - v0["thp_split_page"] == 1
    assert int(m.read_file(T + "hugepages-2048kB/stats/split")) == 1
    assert mi["ShmemHugePages"] == mi["ShmemPmdMapped"] == 0
    assert mi["Shmem"] == (2048 - 32 if how == "punch" else 101 * 4)
    assert p.read(a + 99 * 4096 + 7, 1) == bytes([7])
    if how == "punch":
        assert p.read(a + 100 * 4096, 4096) == bytes(4096)
        assert p.read(a + 108 * 4096 + 3, 1) == bytes([3])
    else:
        assert p.read(a + 100 * 4096, 10) == bytes(range(10))
        assert p.read(a + 100 * 4096 + 10, 1) == b"\x00"
        with pytest.raises(SignalDelivered) as e:
            p.read(a + 101 * 4096, 1)
        assert e.value.signo == SIGBUS
    m.check()


def test_partial_munmap_and_dontneed_zap_the_pmd_and_keep_the_folio(machine):
    """__split_huge_pmd on a shmem PMD only zaps it (file PMDs are not remapped by
    PTEs): the folio stays whole in the page cache (ShmemHugePages 2 MiB, no
    thp_split_page), the rest of the range refaults its pages with PTEs."""
    m = machine
    p = m.spawn()
    m.write_file(T + "shmem_enabled", "always")
    a = p.mmap(0, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS)
    p.touch(a, 4 * MiB, write=True)
    v0 = vmstat(m)
    p.munmap(a + 4096, 4096)
    p.madvise(a + 2 * MiB, 8192, MADV_DONTNEED)
    v, mi = vmstat(m), meminfo(m)
    assert v["thp_split_pmd"] - v0["thp_split_pmd"] == 2
    assert v["thp_split_page"] == v0["thp_split_page"]
    assert mi["ShmemHugePages"] == 4096 and mi["ShmemPmdMapped"] == 0
    # MADV_DONTNEED keeps shmem data; the read refaults the whole folio by a PMD again
    # (filemap_map_pmd: the PMD is none and the VMA covers the aligned range).
    assert p.read(a + 2 * MiB, 1) == b"\x01"
    assert meminfo(m)["ShmemPmdMapped"] == 2048
    p.touch(a + 8192, 2 * MiB - 8192)
    s = smaps_at(m, p, a + 8192)
    assert s["Rss"] == 2048 - 8 + 2048 and s["ShmemPmdMapped"] == 2048
    m.check()


def test_nohugepage_and_prctl_stop_huge_shmem(machine):
    """vma_thp_disabled(): MADV_NOHUGEPAGE or PR_SET_THP_DISABLE make
    shmem_allowable_huge_orders() return 0 even under force."""
    from vmsim import PR_SET_THP_DISABLE
    m = machine
    p = m.spawn()
    m.write_file(T + "shmem_enabled", "force")
    a = p.mmap(0, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS)
    p.madvise(a, 2 * MiB, MADV_NOHUGEPAGE)
    p.touch(a, 2 * MiB)
    assert meminfo(m)["ShmemHugePages"] == 0
    p.prctl(PR_SET_THP_DISABLE, 1)
    b = p.mmap(0, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS)
    p.touch(b, 2 * MiB)
    assert meminfo(m)["ShmemHugePages"] == 0
    m.check()


def test_fork_and_exit_with_shmem_pmds(machine):
    """fork leaves shared PMDs to refault (copy_huge_pmd returns 0 for file VMAs); the
    child maps the same folio with its own PMD; both exits free it."""
    m = machine
    p = m.spawn()
    m.write_file(T + "shmem_enabled", "advise")
    a = p.mmap(0, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS)
    p.madvise(a, 2 * MiB, MADV_HUGEPAGE)
    p.write(a, b"parent")
    c = p.fork()
    assert smaps_at(m, c, a)["Rss"] == 0
    assert c.read(a, 6) == b"parent"
    assert smaps_at(m, c, a)["ShmemPmdMapped"] == 2048
    assert vmstat(m)["nr_shmem_pmdmapped"] == 1         # one folio, counted once
    c.write(a + 4096, b"child")
    assert p.read(a + 4096, 5) == b"child"
    c.exit()
    p.wait(c.pid)
    m.check()
    p.exit()
    assert meminfo(m)["Shmem"] == 0
    m.check()


def test_mount_api_errors(machine):
    """mount(2) / umount(2) / mkdir(2) errno: ENOENT for a missing target, ENOTDIR for
    a file, ENODEV for an unknown filesystem type, EINVAL to remount or unmount a
    directory that is not a mount's root, EEXIST for mkdir of an existing name."""
    m = machine
    p = m.spawn()
    with pytest.raises(OSError) as e:
        p.mount("tmpfs", "/tmp/nope", "tmpfs", 0, "")
    assert e.value.errno == errno.ENOENT
    fd = p.open("/tmp/file", O_RDWR | O_CREAT)
    p.close(fd)
    with pytest.raises(OSError) as e:
        p.mount("tmpfs", "/tmp/file", "tmpfs", 0, None)
    assert e.value.errno == errno.ENOTDIR
    with pytest.raises(OSError) as e:
        p.mount("x", "/tmp", "vmsimfs", 0, None)
    assert e.value.errno == errno.ENODEV
    with pytest.raises(OSError) as e:
        p.mount("none", "/tmp", None, MS_REMOUNT, "huge=always")
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        p.umount("/tmp")
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        p.mkdir("/tmp", 0o755)
    assert e.value.errno == errno.EEXIST
    with pytest.raises(NotImplementedError):
        p.mount("none", "/mnt", "hugetlbfs", 0, None) if False else \
            p.mount("none", "/tmp", "hugetlbfs", 0, None)
    p.mkdir("/tmp/m", 0o755)
    fd = p.open("/tmp/m/under", O_RDWR | O_CREAT)       # the covered directory's file
    p.close(fd)
    p.mount("tmpfs", "/tmp/m", "tmpfs", 0, "huge=advise,mode=700")
    with pytest.raises(OSError) as e:
        p.open("/tmp/m/under", O_RDWR)
    assert e.value.errno == errno.ENOENT
    p.umount("/tmp/m")
    p.close(p.open("/tmp/m/under", O_RDWR))
    m.check()


def test_selftest_split_file_backed_thp_setup(machine):
    """split_huge_page_test.c split_file_backed_thp(): a tmpfs mounted
    "huge=always,size=4m", a PMD-sized write(2) gets a file-backed THP
    (ShmemHugePages 2 MiB), the data reads back unchanged, unlink and umount succeed.
    (The split itself goes through debugfs split_huge_pages, which vmsim does not
    model; truncate/punch splits are tested above.)"""
    m = machine
    p = m.spawn()
    p.mkdir("/tmp/thp_split_x", 0o700)
    p.mount("tmpfs", "/tmp/thp_split_x", "tmpfs", 0, "huge=always,size=4m")
    fd = p.open("/tmp/thp_split_x/thp_file", O_CREAT | O_RDWR, 0o664)
    buf1 = bytes(range(256)) * (2 * MiB // 256)      # byte i is i & 0xff
    assert p.write_fd(fd, buf1) == 2 * MiB
    assert meminfo(m)["ShmemHugePages"] == 2048
    p.lseek(fd, 0, 0)
    assert p.read_fd(fd, 2 * MiB) == buf1
    p.close(fd)
    p.unlink("/tmp/thp_split_x/thp_file")
    p.umount("/tmp/thp_split_x")
    assert meminfo(m)["ShmemHugePages"] == 0
    m.check()


def test_checker_catches_broken_huge_shmem_state(machine):
    """The debug checker's huge-shmem checks fire: a shmem folio without PG_swapbacked
    (as a split that dropped it would leave), a wrong nr_shmem_hugepages, a stale
    huge_shmem_orders bitmap."""
    from vmsim.mm import vmstat as V
    from vmsim.mm.huge_memory import _thp
    from vmsim.mm.page_flags import PG_swapbacked
    m = machine
    p = m.spawn()
    m.write_file(T + "shmem_enabled", "always")
    a = p.mmap(0, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS)
    p.touch(a, 2 * MiB)
    m.check()
    k = m.k
    inode = next(v.vm_file.f_inode for v in p.mm.mm_mt if v.vm_start == a)
    folio = inode.i_mapping.i_pages[0]
    k.mem.flags[folio] = k.mem.flags[folio] & ~PG_swapbacked
    with pytest.raises(AssertionError, match="PG_swapbacked"):
        m.check()
    k.mem.flags[folio] = k.mem.flags[folio] | PG_swapbacked
    k.vmstat[V.NR_SHMEM_HUGEPAGES] += 512
    with pytest.raises(AssertionError, match="nr_shmem_hugepages"):
        m.check()
    k.vmstat[V.NR_SHMEM_HUGEPAGES] -= 512
    _thp(k).huge_shmem_orders = {"inherit": 1 << 4}
    with pytest.raises(AssertionError, match="huge_shmem_orders_inherit"):
        m.check()
    _thp(k).huge_shmem_orders = None
    m.check()


@pytest.mark.parametrize("advice", ["cold", "pageout"])
def test_madv_cold_or_pageout_on_part_of_a_pmd_mapped_page_cache_folio_splits_it(machine, advice):
    """madvise_cold_or_pageout_pte_range() on part of a PMD-mapped page-cache folio:
    split_folio() unmaps it and splits it into 512 order-0 page-cache folios
    (thp_split_page), whose pages stay cached, unmapped, data intact; the whole-PMD
    case only ages it; a folio another mm maps is left alone
    (folio_maybe_mapped_shared). Measured: scenarios/shmem_thp_madv_cold_partial.toml."""
    from vmsim import MADV_COLD, MADV_PAGEOUT
    adv = MADV_COLD if advice == "cold" else MADV_PAGEOUT
    m = machine
    p = m.spawn()
    m.write_file(T + "shmem_enabled", "force")
    fd = p.open("/dev/shm/c", O_RDWR | O_CREAT)
    p.pwrite(fd, bytes(range(256)) * (3 * 8192), 0)
    a = p.mmap(0, 6 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
    p.touch(a, 6 * MiB)
    c = p.fork()
    c.read(a + 4 * MiB, 1)                    # the third folio is mapped by two mms
    v0 = vmstat(m)
    p.madvise(a + 4096, 4096, adv)
    p.madvise(a + 2 * MiB, 2 * MiB, adv)
    p.madvise(a + 4 * MiB, 4096, adv)
    v, mi = vmstat(m), meminfo(m)
    assert v["thp_split_page"] - v0["thp_split_page"] == 1
    assert mi["ShmemHugePages"] == 4096 and mi["Shmem"] == 6144
    s = smaps_at(m, p, a)
    assert s["Rss"] == 4096 and s["ShmemPmdMapped"] == 4096
    f0 = p.getrusage().ru_minflt
    assert p.read(a + 5, 1) == b"\x05" and p.read(a + 2 * MiB - 1, 1) == b"\xff"
    assert p.getrusage().ru_minflt - f0 == 2     # order-0 pages: fault-around windows
    c.exit()
    p.wait(c.pid)
    m.check()


def test_fallocate_allocates_not_uptodate_folios_and_enforces_the_mount_size(machine):
    """shmem_fallocate(): folios for the whole range (PMD-sized under huge=always),
    counted in Shmem / ShmemHugePages at once but not uptodate, so read(2) sees a
    hole and fault-around leaves them to shmem_fault (measured:
    scenarios/shmem_thp_fallocate.toml); a range larger than the mount's size= is
    -ENOSPC before anything is allocated."""
    m = machine
    p = m.spawn()
    p.mkdir("/tmp/f", 0o755)
    p.mount("tmpfs", "/tmp/f", "tmpfs", 0, "huge=always,size=4m")
    fd = p.open("/tmp/f/x", O_RDWR | O_CREAT)
    with pytest.raises(OSError) as e:
        p.fallocate(fd, 0, 0, 8 * MiB)
    assert e.value.errno == errno.ENOSPC and meminfo(m)["Shmem"] == 0
    p.fallocate(fd, 0, 0, 4 * MiB)
    mi = meminfo(m)
    assert mi["Shmem"] == mi["ShmemHugePages"] == 4096 and p.fstat(fd)[4] == 4 * MiB
    assert p.pread(fd, 3, 4096) == bytes(3)
    a = p.mmap(0, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
    f0 = p.getrusage().ru_minflt
    p.touch(a, 4 * MiB)
    assert p.getrusage().ru_minflt - f0 == 2 and meminfo(m)["ShmemPmdMapped"] == 4096
    p.munmap(a, 4 * MiB)
    p.close(fd)
    p.umount("/tmp/f")
    assert meminfo(m)["Shmem"] == 0
    m.check()


def test_fault_past_i_size_is_sigbus_even_with_a_huge_folio_cached(machine):
    """shmem_get_folio_gfp() checks i_size before looking the folio up: a PMD-sized
    folio reaching past EOF is mapped whole when a fault inside i_size maps it
    (do_set_pmd; shmem keeps PMDs across i_size), but a first fault past EOF is
    SIGBUS (fault-around maps nothing from an index past EOF). Measured the same on
    6.18.44 by vmsim/conform/probes/shmem_eof_probe.c."""
    m = machine
    p = m.spawn()
    m.write_file(T + "shmem_enabled", "always")
    fd = p.memfd_create("eof")
    p.ftruncate(fd, 3 * MiB)
    a = p.mmap(0, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
    p.pwrite(fd, b"z", 2 * MiB)                  # caches the 2-4 MiB PMD folio
    with pytest.raises(SignalDelivered) as e:
        p.read(a + 3 * MiB + 4096, 1)
    assert e.value.signo == SIGBUS
    assert p.read(a + 2 * MiB, 1) == b"z"        # maps the whole folio by a PMD
    assert p.read(a + 3 * MiB + 4096, 1) == b"\x00"
    assert smaps_at(m, p, a)["ShmemPmdMapped"] == 2048
    m.check()


def test_madv_cold_splits_a_partly_covered_pte_mapped_page_cache_folio_only(machine):
    """madvise_cold_or_pageout_pte_range() on PTE-mapped large page-cache folios: one
    the range does not map whole from its first page is split (its pages left cached
    and unmapped, data intact); one it covers exactly stays whole and mapped; one
    another mm maps is left alone. Measured: scenarios/file_madv_cold_large_folio.toml."""
    from vmsim import MADV_COLD
    m = machine
    p = m.spawn()
    m.write_file(T + "shmem_enabled", "within_size")
    fd = p.memfd_create("l")                     # shm_mnt: huge=within_size
    p.ftruncate(fd, 3 * MiB)
    p.pwrite(fd, bytes(range(256)) * 4096, 2 * MiB)      # a 1 MiB folio at 2 MiB (within_size)
    p.pwrite(fd, b"a" * (64 << 10), 0)
    a = p.mmap(0, 3 * MiB, PROT_READ, MAP_SHARED, fd, 0)
    p.touch(a + 2 * MiB, MiB)
    assert smaps_at(m, p, a)["Rss"] == 1024
    c = p.fork()
    c.read(a + 2 * MiB, 1)
    p.madvise(a + 2 * MiB + 4096, 4096, MADV_COLD)          # shared with the child: kept
    assert smaps_at(m, p, a)["Rss"] == 1024
    c.exit()
    p.wait(c.pid)
    p.madvise(a + 2 * MiB, MiB, MADV_COLD)                  # exactly the folio: kept
    assert smaps_at(m, p, a)["Rss"] == 1024
    p.madvise(a + 2 * MiB + 4096, 4096, MADV_COLD)          # part of it: split, unmapped
    assert smaps_at(m, p, a)["Rss"] == 0
    assert int(m.read_file(T + "hugepages-1024kB/stats/split")) == 1
    assert p.read(a + 2 * MiB + 4096 + 7, 1) == b"\x07"
    m.check()
