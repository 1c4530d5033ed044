"""The /proc and /sys views: formats from the kernel's format strings, values from the
kernel's accounting rules and from the real 6.18 runs (vmsim/conform/probes/anon-probe-6.18.jsonl)."""
import errno
import json
import os
import re
import struct

import pytest

import vmsim
from vmsim import PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED, MAP_ANONYMOUS

PAGE = 4096
PM_PRESENT, PM_SWAP, PM_FILE, PM_EXCL, PM_SOFTDIRTY = 1 << 63, 1 << 62, 1 << 61, 1 << 56, 1 << 55
PFN_MASK = (1 << 55) - 1
RESULTS = os.path.join(os.path.dirname(__file__), "..", "vmsim", "conform", "probes", "anon-probe-6.18.jsonl")

# show_smap() / __show_smap() order in 6.18 (fs/proc/task_mmu.c), as the reference
# machine prints them.
SMAPS_FIELDS = ["Size", "KernelPageSize", "MMUPageSize", "Rss", "Pss", "Pss_Dirty",
                "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty", "Referenced",
                "Anonymous", "KSM", "LazyFree", "AnonHugePages", "ShmemPmdMapped",
                "FilePmdMapped", "Shared_Hugetlb", "Private_Hugetlb", "Swap", "SwapPss", "Locked",
                "THPeligible", "VmFlags"]
ROLLUP_FIELDS = ["Rss", "Pss", "Pss_Dirty", "Pss_Anon", "Pss_File", "Pss_Shmem", "Shared_Clean",
                 "Shared_Dirty", "Private_Clean", "Private_Dirty", "Referenced", "Anonymous",
                 "KSM", "LazyFree", "AnonHugePages", "ShmemPmdMapped", "FilePmdMapped",
                 "Shared_Hugetlb", "Private_Hugetlb", "Swap", "SwapPss", "Locked"]
# /proc/meminfo of the reference machine (6.18.44, x86-64), in order.
MEMINFO_FIELDS = ["MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapCached",
                  "Active", "Inactive", "Active(anon)", "Inactive(anon)", "Active(file)",
                  "Inactive(file)", "Unevictable", "Mlocked", "SwapTotal", "SwapFree", "Zswap",
                  "Zswapped", "Dirty", "Writeback", "AnonPages", "Mapped", "Shmem",
                  "KReclaimable", "Slab", "SReclaimable", "SUnreclaim", "KernelStack",
                  "PageTables", "SecPageTables", "NFS_Unstable", "Bounce", "WritebackTmp",
                  "CommitLimit", "Committed_AS", "VmallocTotal", "VmallocUsed", "VmallocChunk",
                  "Percpu", "AnonHugePages", "ShmemHugePages", "ShmemPmdMapped",
                  "FileHugePages", "FilePmdMapped", "Balloon", "HugePages_Total",
                  "HugePages_Free", "HugePages_Rsvd", "HugePages_Surp", "Hugepagesize",
                  "Hugetlb", "DirectMap4k", "DirectMap2M", "DirectMap1G"]
# "%08lx-%08lx %c%c%c%c %08llx %02x:%02x %lu " (show_vma_header_prefix)
MAPS_RE = re.compile(r"^([0-9a-f]{8,})-([0-9a-f]{8,}) ([r-][w-][x-][sp]) ([0-9a-f]{8,}) "
                     r"([0-9a-f]{2}):([0-9a-f]{2}) (\d+) (.*)$")


def real_steps():
    with open(RESULTS) as f:
        lines = [json.loads(x) for x in f]
    return {(d.get("scenario"), d.get("step")): d for d in lines if "scenario" in d}


def smaps_blocks(text):
    """{start address: {field: kB or str}} from /proc/pid/smaps text."""
    out = {}
    cur = None
    for line in text.splitlines():
        m = MAPS_RE.match(line)
        if m:
            cur = out.setdefault(int(m.group(1), 16), {"_order": []})
            continue
        key, val = line.split(":", 1)
        cur["_order"].append(key)
        val = val.strip()
        cur[key] = int(val.split()[0]) if key != "VmFlags" else val + " "
    return out


def pagemap(machine, pid, addr, npages):
    data = machine.read_file(f"/proc/{pid}/pagemap", (addr >> 12) * 8, npages * 8)
    return list(struct.unpack(f"<{len(data) // 8}Q", data))


def token(e, zero_pfn):
    """The anon probe's token: present, file/shared-anon, exclusive, zero page."""
    if not e & (PM_PRESENT | PM_SWAP):
        return "-..."
    return ("P" if e & PM_PRESENT else "S") + ("f" if e & PM_FILE else ".") + \
           ("x" if e & PM_EXCL else ".") + ("Z" if e & PFN_MASK == zero_pfn else "?")


def anon(proc, npages, shared=False):
    flags = (MAP_SHARED if shared else MAP_PRIVATE) | MAP_ANONYMOUS
    return proc.mmap(0, npages * PAGE, PROT_READ | PROT_WRITE, flags)


# --- maps ------------------------------------------------------------------------------
@pytest.mark.parametrize("levels", [4, 5])
def test_maps_format_and_spawn_layout(levels):
    m = vmsim.Machine(memory="256M", paging_levels=levels)
    p = m.spawn()
    text = m.read_file(f"/proc/{p.pid}/maps")
    lines = text.splitlines()
    assert text.endswith("\n")
    for line in lines:
        mm = MAPS_RE.match(line)
        assert mm, line
        if mm.group(8):
            # seq_setwidth(25 + 6 * 8 - 1) + seq_pad(' '): the name starts at column 73.
            assert len(line) - len(mm.group(8).lstrip()) == 73, line
    # Addresses, permissions and names from docs/linux-layout.md (the real kernel).
    real = [("00400000-00401000", "r--p", "/"), ("00401000-00479000", "r-xp", "/"),
            ("00479000-004a0000", "r--p", "/"), ("004a0000-004a4000", "r--p", "/"),
            ("004a4000-004a7000", "rw-p", "/"), ("004a7000-004ac000", "rw-p", ""),
            ("7ffff7ff7000-7ffff7ffb000", "r--p", "[vvar]"),
            ("7ffff7ffb000-7ffff7ffd000", "r--p", "[vvar_vclock]"),
            ("7ffff7ffd000-7ffff7fff000", "r-xp", "[vdso]"),
            ("7ffffffde000-7ffffffff000", "rw-p", "[stack]"),
            ("ffffffffff600000-ffffffffff601000", "--xp", "[vsyscall]")]
    assert len(lines) == len(real)
    for line, (rng, perms, name) in zip(lines, real):
        fields = line.split()
        assert fields[0] == rng and fields[1] == perms
        if name == "":
            assert line.endswith(" 0 ") and len(fields) == 5     # no name, no padding
        elif name == "/":
            assert fields[5].startswith("/") and fields[3] == "fe:00"
        else:
            assert fields[5] == name
    assert lines[-1] == ("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0"
                         + " " * 18 + "[vsyscall]")
    assert lines[1].split()[2] == "00001000"               # vm_pgoff << PAGE_SHIFT


def test_maps_heap_and_shmem_names(proc, machine):
    start = proc.brk(0)
    proc.brk(start + 0x22000)
    a = anon(proc, 4, shared=True)
    text = machine.read_file("/proc/self/maps")
    heap = [l for l in text.splitlines() if l.endswith("[heap]")]
    assert len(heap) == 1 and int(heap[0].split("-")[1].split()[0], 16) == start + 0x22000
    shm = [l for l in text.splitlines() if l.startswith("%08x-" % a)][0]
    assert shm.endswith(" /dev/zero (deleted)") and shm.split()[1] == "rw-s"


# --- smaps ------------------------------------------------------------------------------
def test_smaps_protection_key_line_on_a_pku_cpu():
    """With protection keys, smaps prints ProtectionKey before VmFlags (show_smap's
    arch_pkeys_enabled branch); PROT_EXEC-only memory gets the execute-only key, 1 on
    Linux 6.18.44 with pku/ospke (a ctypes probe of /proc/self/smaps)."""
    import vmsim
    m = vmsim.Machine(memory="1G", cpus=2, pku=True)
    p = m.spawn()
    a = p.mmap(0, 8 * PAGE, vmsim.PROT_EXEC, vmsim.MAP_PRIVATE | vmsim.MAP_ANONYMOUS)
    b = anon(p, 4)
    blocks = smaps_blocks(m.read_file(f"/proc/{p.pid}/smaps"))
    assert blocks[a]["_order"] == SMAPS_FIELDS[:-1] + ["ProtectionKey", "VmFlags"]
    assert blocks[a]["ProtectionKey"] == 1 and blocks[b]["ProtectionKey"] == 0


def test_smaps_fields_and_real_values(machine):
    """write / read / shared-anon steps give the real kernel's smaps and pagemap."""
    real = real_steps()
    zero = machine.k.zero_pfn
    cases = ((False, True, ("write_touch", "write")), (False, False, ("read_touch", "read")),
             (True, False, ("shared_anon", "A_read")))
    for shared, write, (scen, step) in cases:
        proc = machine.spawn()                       # a fresh process per scenario, as run.sh
        addr = anon(proc, 16, shared=shared)
        assert addr == 0x7ffff7fe7000 == int(real[(scen, step)]["addr"], 16)
        proc.touch(addr, 16 * PAGE, write=write)
        b = smaps_blocks(machine.read_file(f"/proc/{proc.pid}/smaps"))[addr]
        assert b["_order"] == SMAPS_FIELDS
        want = real[(scen, step)]["smaps"]
        for key, val in want.items():
            if key != "vma":
                assert b[key] == val, (scen, key)
        toks = " ".join(token(e, zero) for e in pagemap(machine, proc.pid, addr, 16))
        assert toks.replace("?", "n") == real[(scen, step)]["pm"]["pages"]
        if shared:
            proc.touch(addr, 16 * PAGE, write=True)
            b = smaps_blocks(machine.read_file(f"/proc/{proc.pid}/smaps"))[addr]
            want = real[("shared_anon", "A_write_after_read")]["smaps"]
            assert all(b[k] == v for k, v in want.items() if k != "vma")


def test_smaps_rss_is_the_sum_of_mapped_pages(proc, machine):
    a = anon(proc, 64)
    proc.touch(a, 64 * PAGE, write=True, stride=3 * PAGE)      # 22 pages
    proc.touch(a + PAGE, PAGE)                                 # the zero page: not Rss
    entries = pagemap(machine, proc.pid, a, 64)
    present_normal = sum(1 for e in entries if e & PM_PRESENT and
                         e & PFN_MASK != machine.k.zero_pfn)
    b = smaps_blocks(machine.read_file("/proc/self/smaps"))[a]
    assert present_normal == 22
    assert b["Rss"] == b["Pss"] == b["Private_Dirty"] == b["Anonymous"] == 22 * 4
    assert b["Size"] == 256 and b["VmFlags"] == "rd wr mr mw me ac "


def test_pss_divides_by_mapcount_in_fixed_point(proc, machine):
    """smaps_account(): refcount > 1 and mapcount 3 -> (PAGE_SIZE << 12) / 3 per page."""
    from vmsim.fs.proc import task_mmu
    s = anon(proc, 16, shared=True)
    proc.touch(s, 16 * PAGE)
    k = machine.k
    pfns = [e & PFN_MASK for e in pagemap(machine, proc.pid, s, 16)]
    vma = proc.mm.vma_lookup(s)
    saved = [k.mem.mapcount[p] for p in pfns]
    try:
        for p in pfns:
            k.mem.mapcount[p] = 3
        mss = task_mmu.mem_size_stats()
        task_mmu.smap_gather_stats(vma, mss)
    finally:
        for p, c in zip(pfns, saved):
            k.mem.mapcount[p] = c
    assert mss.pss == 16 * ((4096 << 12) // 3)
    assert (mss.pss >> 12) >> 10 == 21                      # 21.33 kB truncated
    assert mss.shared_clean == 16 * PAGE and mss.private_clean == 0
    assert mss.pss_shmem == mss.pss and mss.pss_anon == 0


def test_smaps_rollup_sums_smaps(proc, machine):
    a = anon(proc, 8)
    proc.touch(a, 8 * PAGE, write=True)
    s = anon(proc, 4, shared=True)
    proc.touch(s, 4 * PAGE)
    blocks = smaps_blocks(machine.read_file("/proc/self/smaps"))
    text = machine.read_file("/proc/self/smaps_rollup")
    head, *rest = text.splitlines()
    vmas = proc.mm.mm_mt
    assert head == ("%08x-%08x ---p 00000000 00:00 0" % (vmas[0].vm_start, vmas[-1].vm_end)
                    ).ljust(72) + " [rollup]"
    roll = {l.split(":")[0]: int(l.split()[1]) for l in rest}
    assert list(roll) == ROLLUP_FIELDS
    for key in ("Rss", "Private_Dirty", "Private_Clean", "Anonymous", "Referenced"):
        assert roll[key] == sum(b[key] for b in blocks.values())
    assert roll["Pss_Anon"] + roll["Pss_File"] + roll["Pss_Shmem"] in (roll["Pss"], roll["Pss"] - 1,
                                                                        roll["Pss"] - 2)
    assert roll["Pss_Shmem"] == 16 and roll["Pss_Anon"] >= 32


# --- pagemap ----------------------------------------------------------------------------
def test_pagemap_offsets_and_holes(proc, machine):
    a = anon(proc, 4)
    proc.touch(a, PAGE, write=True)
    path = f"/proc/{proc.pid}/pagemap"
    for off, n in ((4, 8), (8, 12)):
        with pytest.raises(OSError) as e:
            machine.read_file(path, (a >> 12) * 8 + off, n)
        assert e.value.errno == errno.EINVAL
    e = pagemap(machine, proc.pid, a - PAGE, 6)                # hole, 4 pages, hole
    assert e[0] == 0 and e[5] == 0 and e[2:5] == [0, 0, 0]
    assert e[1] & (PM_PRESENT | PM_EXCL) == PM_PRESENT | PM_EXCL and not e[1] & PM_FILE
    assert e[1] & PM_SOFTDIRTY == 0                            # CONFIG_MEM_SOFT_DIRTY off
    assert machine.read_file(path, (proc.mm.task_size >> 12) * 8, 8) == b""
    assert machine.read_file(path, 0, 0) == b""


# --- status, stat, statm ----------------------------------------------------------------
def test_status_stat_statm(proc, machine):
    a = anon(proc, 16)
    proc.touch(a, 16 * PAGE, write=True)
    st = machine.read_file(f"/proc/{proc.pid}/status")
    keys = [l.split(":")[0] for l in st.splitlines()]
    vm = ["VmPeak", "VmSize", "VmLck", "VmPin", "VmHWM", "VmRSS", "RssAnon", "RssFile",
          "RssShmem", "VmData", "VmStk", "VmExe", "VmLib", "VmPTE", "VmSwap", "HugetlbPages"]
    i = keys.index("VmPeak")
    assert keys[i:i + len(vm)] == vm and keys[0] == "Name"
    assert re.search(r"^VmRSS:\t +\d+ kB$", st, re.M)
    assert all(len(l.split("\t")[1]) == 11 for l in st.splitlines() if l.split(":")[0] in vm)
    val = {l.split(":")[0]: int(l.split()[1]) for l in st.splitlines() if l.split(":")[0] in vm}
    assert val["VmRSS"] == val["RssAnon"] + val["RssFile"] + val["RssShmem"]
    maps = machine.read_file("/proc/self/maps").splitlines()[:-1]      # without the gate
    size = sum(int(l.split()[0].split("-")[1], 16) - int(l.split()[0].split("-")[0], 16)
               for l in maps)
    assert val["VmSize"] == size >> 10
    assert val["RssAnon"] >= 64
    stat = machine.read_file(f"/proc/{proc.pid}/stat").split()
    assert len(stat) == 52 and stat[1] == "(vmsim)" and stat[2] == "R"
    assert int(stat[22]) == size and int(stat[23]) * 4 == val["VmRSS"]
    assert int(stat[27]) == proc.mm.start_stack and int(stat[9]) == proc.task.min_flt
    statm = [int(x) for x in machine.read_file(f"/proc/{proc.pid}/statm").split()]
    assert statm[0] * 4 == val["VmSize"] and statm[1] * 4 == val["VmRSS"]
    assert statm[2] * 4 == val["RssFile"] + val["RssShmem"] and statm[4] == statm[6] == 0


# --- meminfo, vmstat, zoneinfo, buddyinfo ---------------------------------------------------
def parse_kv(text):
    return {l.split(":")[0]: int(l.split()[1]) for l in text.splitlines()}


def test_meminfo_lines_and_accounting(proc, machine):
    text = machine.read_file("/proc/meminfo")
    assert [l.split(":")[0] for l in text.splitlines()] == MEMINFO_FIELDS
    for line in text.splitlines():
        if line.startswith("HugePages_"):
            assert re.fullmatch(r"[A-Za-z_]+: {3,}\d+", line) and len(line) == 24
        else:
            assert re.fullmatch(r".{16}[ \d]{7}\d+ kB", line), line     # "%-16s%8lu kB"
    before = parse_kv(text)
    k = machine.k
    assert before["MemTotal"] == 4 * sum(z.managed_pages for z in k.page_alloc.zones)
    assert before["CommitLimit"] == 4 * (sum(z.managed_pages for z in k.page_alloc.zones) * 50 // 100)
    assert before["VmallocTotal"] == 34359738367 and before["Hugepagesize"] == 2048
    assert before["DirectMap4k"] + before["DirectMap2M"] + before["DirectMap1G"] >= before["MemTotal"]
    a = anon(proc, 16)
    proc.touch(a, 16 * PAGE, write=True)
    s = anon(proc, 8, shared=True)
    proc.touch(s, 8 * PAGE)
    after = parse_kv(machine.read_file("/proc/meminfo"))
    assert after["AnonPages"] - before["AnonPages"] == 64
    assert after["Shmem"] - before["Shmem"] == 32 and after["Mapped"] - before["Mapped"] == 32
    assert after["Cached"] - before["Cached"] == 32                  # Cached includes shmem
    assert after["Committed_AS"] - before["Committed_AS"] >= 64       # the private mapping
    assert after["PageTables"] == 4 * k.vmstat[vmsim.mm.vmstat.NR_PAGE_TABLE_PAGES]


def test_committed_as_counts_shared_anon(proc, machine):
    """Real 6.18: mmap(MAP_SHARED|MAP_ANONYMOUS, 64 MiB) raises Committed_AS by 65536 kB."""
    before = parse_kv(machine.read_file("/proc/meminfo"))["Committed_AS"]
    anon(proc, 16, shared=True)
    assert parse_kv(machine.read_file("/proc/meminfo"))["Committed_AS"] - before == 64


def test_vmstat_zoneinfo_buddyinfo_agree(proc, machine):
    from vmsim.mm.vmstat import VMSTAT_NAMES
    a = anon(proc, 32)
    proc.touch(a, 32 * PAGE, write=True)
    vm = machine.read_file("/proc/vmstat")
    names = [l.split()[0] for l in vm.splitlines()]
    assert names == VMSTAT_NAMES
    v = {l.split()[0]: int(l.split()[1]) for l in vm.splitlines()}
    mem = parse_kv(machine.read_file("/proc/meminfo"))
    assert v["nr_free_pages"] * 4 == mem["MemFree"]
    assert v["nr_anon_pages"] * 4 == mem["AnonPages"]
    pa = machine.k.page_alloc
    assert v["pgalloc_dma"] + v["pgalloc_dma32"] + v["pgalloc_normal"] == sum(pa.pgalloc) > 0
    zi = machine.read_file("/proc/zoneinfo")
    zones = re.findall(r"^Node 0, zone +(\w+)$", zi, re.M)
    assert zones == ["DMA", "DMA32", "Normal", "Movable", "Device"]
    free = [int(x) for x in re.findall(r"^  pages free +(\d+)$", zi, re.M)]
    assert sum(free) == v["nr_free_pages"]
    managed = [int(x) for x in re.findall(r"^        managed +(\d+)$", zi, re.M)]
    prot = [[int(y) for y in x.split(", ")] for x in re.findall(r"protection: \(([^)]*)\)", zi)]
    # setup_per_zone_lowmem_reserve(): ratios 256 (DMA), 256 (DMA32), 32 (Normal).
    assert prot[0] == [0] + [sum(managed[1:j + 1]) // 256 for j in range(1, 5)]
    buddy = machine.read_file("/proc/buddyinfo").splitlines()
    assert len(buddy) == sum(1 for z in pa.zones if z.present_pages)
    for line, f in zip(buddy, free):
        assert re.fullmatch(r"Node 0, zone +\w+ ( +\d+ ){11}", line)
        counts = [int(x) for x in line.split()[4:]]
        assert sum(c << o for o, c in enumerate(counts)) == f
    # calculate_normal_threshold(): 2 * fls(ncpus) * (1 + fls(managed >> 15)), max 125.
    thr = [int(x) for x in re.findall(r"vm stats threshold: (\d+)", zi)]
    assert thr[0] == min(125, 2 * 2 * (1 + (managed[0] >> 15).bit_length()))


# --- kpageflags, kpagecount ----------------------------------------------------------------
def test_kpageflags_and_kpagecount(proc, machine):
    from vmsim.fs.proc import page as P
    a = anon(proc, 1)
    proc.touch(a, PAGE, write=True)
    pfn = pagemap(machine, proc.pid, a, 1)[0] & PFN_MASK
    word = lambda f, n: struct.unpack("<Q", machine.read_file(f, n * 8, 8))[0]
    f = word("/proc/kpageflags", pfn)
    for bit in (P.KPF_ANON, P.KPF_MMAP, P.KPF_SWAPBACKED):
        assert f >> bit & 1
    assert not f >> P.KPF_BUDDY & 1 and word("/proc/kpagecount", pfn) == 1
    z = word("/proc/kpageflags", machine.k.zero_pfn)
    assert z >> P.KPF_ZERO_PAGE & 1 and not z >> P.KPF_ANON & 1
    assert word("/proc/kpageflags", proc.mm.pgd) >> P.KPF_PGTABLE & 1
    assert word("/proc/kpagecount", proc.mm.pgd) == 0
    with pytest.raises(OSError) as e:
        machine.read_file("/proc/kpageflags", 4, 8)
    assert e.value.errno == errno.EINVAL
    assert len(machine.read_file("/proc/kpagecount")) == machine.k.nr_pages * 8


# --- knobs -------------------------------------------------------------------------------
def test_thp_knobs_read_and_write(machine):
    hdr = json.loads(open(RESULTS).readline())
    thp = "/sys/kernel/mm/transparent_hugepage/"
    assert machine.read_file(thp + "enabled") == hdr["thp_enabled"] + "\n"
    assert machine.read_file(thp + "defrag") == hdr["thp_defrag"] + "\n"
    assert machine.read_file(thp + "shmem_enabled") == hdr["thp_shmem_enabled"] + "\n"
    assert machine.read_file(thp + "hpage_pmd_size") == "2097152\n"
    machine.write_file(thp + "enabled", "always\n")
    assert machine.read_file(thp + "enabled") == "[always] madvise never\n"
    assert machine.k.sysfs[thp + "enabled"] == "always"
    for path, bad, err in ((thp + "enabled", "bogus", errno.EINVAL),
                           (thp + "enabled", " never", errno.EINVAL),
                           (thp + "use_zero_page", "2", errno.EINVAL),
                           (thp + "hpage_pmd_size", "4096", errno.EACCES),
                           ("/proc/meminfo", "1", errno.EIO)):
        with pytest.raises(OSError) as e:
            machine.write_file(path, bad)
        assert e.value.errno == err, path
    assert machine.read_file(thp + "enabled") == "[always] madvise never\n"


def test_sysctls_validate_like_proc_dointvec_minmax(machine):
    om = "/proc/sys/vm/overcommit_memory"
    for bad in ("3", "1x", "-1"):
        with pytest.raises(OSError) as e:
            machine.write_file(om, bad)
        assert e.value.errno == errno.EINVAL
    machine.write_file(om, " 1 \n")
    assert machine.read_file(om) == "1\n" and machine.k.sysctl[om] == "1"
    with pytest.raises(OSError):
        machine.write_file("/proc/sys/vm/max_map_count", "-1")
    assert machine.read_file("/proc/sys/vm/max_map_count") == "65530\n"
    with pytest.raises(FileNotFoundError):
        machine.read_file("/proc/sys/vm/no_such_knob")
    with pytest.raises(FileNotFoundError):
        machine.read_file("/proc/4242/maps")


def _meminfo_kb(m, field):
    return int(m.read_file("/proc/meminfo").split(f"\n{field}:")[1].split()[0])


def test_reserve_kbytes_are_a_32nd_of_boot_free_memory():
    """init_user_reserve / init_admin_reserve (mm/mmap.c): min(free / 32, 128 MiB) and
    min(free / 32, 8 MiB), from NR_FREE_PAGES when they run; unsigned long sysctls
    (proc_doulongvec_minmax: C number syntax, no sign)."""
    for size in ("512M", "8G"):
        m = vmsim.Machine(size)
        free = _meminfo_kb(m, "MemFree")
        user = int(m.read_file("/proc/sys/vm/user_reserve_kbytes"))
        admin = int(m.read_file("/proc/sys/vm/admin_reserve_kbytes"))
        assert (user, admin) == (min(free // 32, 131072), min(free // 32, 8192))
    m.write_file("/proc/sys/vm/user_reserve_kbytes", "0x10\n")
    assert m.read_file("/proc/sys/vm/user_reserve_kbytes") == "16\n"
    with pytest.raises(OSError) as e:
        m.write_file("/proc/sys/vm/admin_reserve_kbytes", "-1")
    assert e.value.errno == errno.EINVAL


def test_overcommit_never_holds_back_the_user_reserve():
    """OVERCOMMIT_NEVER (__vm_enough_memory, mm/util.c): a mapping fits while
    Committed_AS after charging it stays below CommitLimit less min(total_vm / 32,
    user_reserve_kbytes / 4) pages; root (cap_sys_admin) keeps the admin reserve."""
    m = vmsim.Machine("512M")
    p = m.spawn()
    m.write_file("/proc/sys/vm/overcommit_memory", "2")
    m.write_file("/proc/sys/vm/overcommit_ratio", "80")
    big = p.mmap(0, 4096 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | vmsim.MAP_NORESERVE)
    total_vm = sum(int(l.split()[1]) for l in m.read_file(f"/proc/{p.pid}/status").splitlines()
                   if l.startswith("VmSize:")) // 4
    for reserve_kb in (131072, 64):          # total_vm / 32 smaller, then the reserve
        m.write_file("/proc/sys/vm/user_reserve_kbytes", str(reserve_kb))
        limit = _meminfo_kb(m, "CommitLimit") // 4
        committed = _meminfo_kb(m, "Committed_AS") // 4
        allowed = limit - min(total_vm // 32, reserve_kb // 4)
        fits = allowed - committed - 1
        with pytest.raises(OSError) as e:
            p.mmap(0, (fits + 1) * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        assert e.value.errno == errno.ENOMEM
        assert _meminfo_kb(m, "Committed_AS") // 4 == committed
        a = p.mmap(0, fits * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        p.munmap(a, fits * PAGE)
    p.munmap(big, 4096 * PAGE)


def test_mmap_min_addr_knob_moves_the_hint_floor(machine):
    """round_hint_to_min(): a hint below mmap_min_addr becomes PAGE_ALIGN(mmap_min_addr)."""
    p = machine.spawn()
    assert machine.read_file("/proc/sys/vm/mmap_min_addr") == "4096\n"
    assert p.mmap(0x1000, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS) == 0x1000
    machine.write_file("/proc/sys/vm/mmap_min_addr", "65536")
    assert machine.k.mmap_min_addr == 65536
    assert p.mmap(0x2000, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS) == 0x10000


def test_fault_around_bytes_knob(machine):
    fab = "/sys/kernel/debug/fault_around_bytes"
    assert machine.read_file(fab) == "65536\n"
    for val, want in (("12288", 8192), ("0", 4096), (str(512 * 4096 + 4095), 2 << 20),
                      ("0x10000", 65536)):
        machine.write_file(fab, val)
        assert machine.read_file(fab) == f"{want}\n"
        assert machine.k.fault_around_pages == want >> 12
    with pytest.raises(OSError) as e:
        machine.write_file(fab, str(513 * 4096))
    assert e.value.errno == errno.EINVAL


def _cached_reread_faults(machine, proc, npages):
    """Write a shared-anon area, drop its PTEs (zap, as MADV_DONTNEED), reread: faults."""
    from vmsim.mm.memory import zap_page_range_single
    s = anon(proc, npages, shared=True)
    proc.touch(s, npages * PAGE, write=True)
    proc._enter()
    zap_page_range_single(proc.mm.vma_lookup(s), s, npages * PAGE)
    proc._done()
    before = proc.getrusage().ru_minflt
    proc.touch(s, npages * PAGE)
    return s, proc.getrusage().ru_minflt - before


def test_fault_around_4096_faults_every_page(machine):
    """Real 6.18: 64 cached shmem pages reread = 5 faults (64 KiB windows, unaligned
    mapping); fault_around_bytes=4096 turns fault-around off (should_fault_around)."""
    p = machine.spawn()
    s, n = _cached_reread_faults(machine, p, 64)
    assert s & 0xFFFF and n == 5
    machine.write_file("/sys/kernel/debug/fault_around_bytes", "4096")
    q = machine.spawn()
    _, n = _cached_reread_faults(machine, q, 64)
    assert n == 64
