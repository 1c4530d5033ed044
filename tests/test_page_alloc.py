"""The page allocator (mm/page_alloc.c, 6.18): watermarks with lowmem_reserve, the
zonelist fallback and the per-CPU lists' nr_pcp_alloc / nr_pcp_high / nr_pcp_free.

Numbers marked "this machine" are what the reference machine's 6.18.44 kernel shows
in /proc/zoneinfo (2 CPUs, THP enabled=madvise, min_free_kbytes 67584); the rest are
worked out from the source.
"""
import re

from vmsim import Machine
from vmsim.mm.page_alloc import PageAllocator, GFP_HIGHUSER_MOVABLE

# include/linux/gfp_types.h, include/linux/mmzone.h
GFP_DIRECT_RECLAIM, GFP_NOWARN = 0x400, 0x2000
ZONE_MOVABLE, WMARK_MIN, WMARK_LOW = 3, 0, 1
# GFP_HIGHUSER_MOVABLE without direct reclaim: the slow path stops at the min
# watermark and never calls the OOM killer.
GFP_USER_NOWAIT = GFP_HIGHUSER_MOVABLE & ~GFP_DIRECT_RECLAIM | GFP_NOWARN


def zone_page_state_free(z):
    """NR_FREE_PAGES: free pages in the buddy (not on the per-CPU lists)."""
    return z.free_pages - sum(p.count for p in z.pcp)

# /proc/zoneinfo of this machine: managed, min, low, high, protection, batch,
# high_min, high_max per zone.
THIS_MACHINE = {
    "DMA": (3840, 39, 48, 57, [0, 3018, 6346, 6346, 6346], 1, 24, 240),
    "DMA32": (772798, 8017, 10021, 12025, [0, 0, 3328, 3328, 3328], 63, 5010, 48299),
    "Normal": (851968, 8838, 11047, 13256, [0, 0, 0, 0, 0], 63, 5523, 53248),
}


def test_watermarks_lowmem_reserve_and_pcp_limits_as_this_machine():
    """Given this machine's zone sizes, boot's calculations give its numbers."""
    pa = PageAllocator(1 << 21, 2)                   # DMA, DMA32 and Normal
    for z in pa.zones:
        z.managed_pages = THIS_MACHINE[z.name][0]
    pa._init_watermarks()
    pa.set_recommended_min_free_kbytes(True)         # THP enabled: khugepaged starts
    assert pa.min_free_kbytes == 67584
    for z in pa.zones:
        _, mn, low, high, prot, batch, high_min, high_max = THIS_MACHINE[z.name]
        assert z.watermark == [mn, low, high]
        assert z.lowmem_reserve == prot
        for pcp in z.pcp:
            assert (pcp.batch, pcp.high_min, pcp.high_max, pcp.high) == (
                batch, high_min, high_max, 0)


def zoneinfo(m):
    """{zone: {key: value}} of the populated zones' min/low/high/protection and cpu 0's
    pcp count/high/batch."""
    out = {}
    for block in m.read_file("/proc/zoneinfo").split("Node 0, zone")[1:]:
        name = block.split()[0]
        d = {}
        for key in ("min", "low", "high", "managed"):
            d[key] = int(re.search(r"\n\s+%s\s+(\d+)" % key, block).group(1))
        d["protection"] = [int(x) for x in
                           re.search(r"protection: \((.*)\)", block).group(1).split(", ")]
        pcp = re.search(r"cpu: 0\n\s+count:\s+(\d+)\n\s+high:\s+(\d+)\n\s+batch:\s+(\d+)", block)
        if pcp:
            d["count"], d["pcp_high"], d["batch"] = map(int, pcp.groups())
        out[name] = d
    return out


def test_zoneinfo_dma_zone_as_this_machine():
    # Total managed pages as on this machine (1628606): the DMA zone, the same size
    # on both, then gets the same watermarks and pageset.
    m = Machine(memory=(1628606 + 256 + 0x2000) * 4096, cpus=2)
    dma = zoneinfo(m)["DMA"]
    assert (dma["min"], dma["low"], dma["high"], dma["managed"]) == (39, 48, 57, 3840)
    assert (dma["count"], dma["pcp_high"], dma["batch"]) == (0, 0, 1)
    assert "high_min: 24\n              high_max: 240" in m.read_file("/proc/zoneinfo")


def test_user_pages_fall_back_normal_dma32_dma_at_the_watermarks():
    """Order-0 user allocations check each zone's watermark plus lowmem_reserve
    (zone_watermark_fast): Normal is left at its low watermark before DMA32 is used
    (test_exhaustion_... checks what every zone keeps at the end)."""
    m = Machine("4160M")                                   # a 64 MiB Normal zone
    pa = m.k.page_alloc
    normal = {z.name: z for z in pa.zones}["Normal"]
    got = []
    while pa.pgalloc[1] == 0:
        got.append(pa.alloc_pages(GFP_USER_NOWAIT, 0))
    # The first DMA32 page: Normal failed its low watermark check. A pcp refill
    # (at most batch << CONFIG_PCP_BATCH_SCALE_MAX pages) may go below it.
    assert pa.pgalloc[0] == 0
    free = zone_page_state_free(normal)
    assert max(0, normal.watermark[WMARK_LOW] - (normal.pcp[0].batch << 5)) < free
    assert free <= normal.watermark[WMARK_LOW]
    for pfn in got:
        pa.mem.refcount[pfn] = 0
        pa.free_frozen_pages(pfn, 0)


def test_exhaustion_keeps_min_watermark_and_lowmem_reserve():
    m = Machine("64M")
    pa = m.k.page_alloc
    n = 0
    while pa.alloc_pages(GFP_USER_NOWAIT, 0) >= 0:
        n += 1
    for z in pa.zones:
        keep = z.watermark[WMARK_MIN] + z.lowmem_reserve[ZONE_MOVABLE]
        free = zone_page_state_free(z)
        assert free <= keep, z.name
        assert free > keep - (max(z.pcp[0].batch, 1) << 5), z.name
    # The DMA zone is protected by DMA32's size / 256 (sysctl_lowmem_reserve_ratio).
    dma, dma32 = pa.zones[0], pa.zones[1]
    assert dma.lowmem_reserve[ZONE_MOVABLE] == dma32.managed_pages // 256
    assert "page allocation failure" not in m.dmesg()       # __GFP_NOWARN


def test_pcp_refill_grows_with_alloc_factor():
    """nr_pcp_alloc(): each refill without a free between doubles the batch
    (alloc_factor) and raises pcp->high by it, within high_max."""
    m = Machine("1G")
    pa = m.k.page_alloc
    z = pa.zones[-1]
    pcp = z.pcp[0]
    batch, high_min = pcp.batch, pcp.high_min
    assert pcp.high == 0 and pcp.count == 0
    # An empty list: high is clamped up to high_min, then raised by the batch.
    pa.alloc_pages(GFP_USER_NOWAIT, 0)
    assert pcp.count == batch - 1 and pcp.alloc_factor == 1
    assert pcp.high == high_min + batch
    zi = zoneinfo(m)[z.name]
    assert (zi["count"], zi["pcp_high"], zi["batch"]) == (batch - 1, high_min + batch, batch)
    # pages on the pcp lists are not free for the watermarks (NR_FREE_PAGES)
    assert z.pcp_pages == sum(p.count for p in z.pcp) == batch - 1
    for _ in range(batch - 1):
        pa.alloc_pages(GFP_USER_NOWAIT, 0)
    assert pcp.count == 0
    # Second refill: batch << 1.
    pa.alloc_pages(GFP_USER_NOWAIT, 0)
    assert pcp.count == 2 * batch - 1 and pcp.alloc_factor == 2
    assert pcp.high == high_min + 3 * batch


def test_pcp_free_drains_at_high_with_free_count():
    """free_frozen_page_commit() on a fresh pageset: pcp->high is clamped up to
    high_min (nr_pcp_high); free_count counts the frees up to batch <<
    CONFIG_PCP_BATCH_SCALE_MAX; when count reaches high the list gives back
    nr_pcp_free() = clamp(free_count, batch, high - batch) pages, coldest first."""
    m = Machine("1G", cpus=2)
    pa = m.k.page_alloc
    z = pa.zones[-1]
    pcp = z.pcp[0]
    high_min, batch = pcp.high_min, pcp.batch
    # The pages come from CPU 1, so CPU 0's pageset is untouched.
    pfns = [pa.alloc_pages(GFP_USER_NOWAIT, 0, cpu=1) for _ in range(high_min + 2100)]
    assert pcp.count == 0 and pcp.high == 0
    counts = []
    for pfn in pfns:
        pa.mem.refcount[pfn] = 0
        pa.free_frozen_pages(pfn, 0, cpu=0)
        counts.append(pcp.count)
    nr_free = min(max(min(high_min, batch << 5), batch), high_min - batch)
    # The high_min-th free reaches high and drains at once.
    assert counts[:high_min - 1] == list(range(1, high_min))
    assert counts[high_min - 1] == high_min - nr_free
    # free_count stays at batch << 5: the next drain comes nr_free frees later.
    assert counts[high_min - 1 + nr_free] == high_min - nr_free
    assert pcp.high == high_min and pcp.alloc_factor == 0


def _smaps_vmflags(addr):
    """The VmFlags of the host mapping holding ``addr`` (/proc/self/smaps)."""
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= addr < hi
            elif inside and head == "VmFlags:":
                return line.split()[1:]
    raise AssertionError(f"{addr:#x} is in no mapping")


def _written_pages(addr, nbytes):
    """Host pages of [addr, addr + nbytes) this process wrote: present in
    /proc/self/pagemap and mapped by it alone (a read maps the shared zero page)."""
    import numpy as np
    first, last = addr >> 12, (addr + nbytes - 1) >> 12
    with open("/proc/self/pagemap", "rb", buffering=0) as f:
        f.seek(first * 8)
        e = np.frombuffer(f.read((last - first + 1) * 8), dtype=np.uint64)
    return int(np.count_nonzero((e >> np.uint64(63)) & (e >> np.uint64(56)) & np.uint64(1)))


def test_mem_map_host_pages_only_where_written():
    """mem_map's fields sit page-aligned on a mapping the host backs in 4 KiB pages
    (MADV_NOHUGEPAGE: numpy's 2 MiB pages made a 64 GiB machine's boot cost ~20 MiB,
    the few entries written at each zone's start rounded up to 2 MiB per field); a
    8 GiB machine's boot writes a few pages of them, the same as a 1 GiB machine's
    plus those at the Normal zone's start, and writing frames costs the pages their
    entries fill."""
    import numpy as np
    pages = {}
    for size in ("1G", "8G"):
        m = Machine(size)
        mem = m.k.mem
        p = m.spawn()
        arrays = [getattr(mem, "np_" + name) for name, _ in mem.FIELDS]
        for a in arrays:
            assert a.__array_interface__["data"][0] % 4096 == 0 and a.flags.writeable
            assert len(a) == m.k.memory_bytes >> 12
        assert "nh" in _smaps_vmflags(arrays[0].__array_interface__["data"][0])
        pages[size] = [_written_pages(a.__array_interface__["data"][0], a.nbytes)
                       for a in arrays]
        if size == "8G":
            n = 8192
            a = p.mmap(0, n * 4096, 3, 0x22)
            p.access(a + np.arange(n, dtype=np.int64) * 4096, np.ones(n, np.uint8), value=1)
            grown = [_written_pages(x.__array_interface__["data"][0], x.nbytes) - b
                     for x, b in zip(arrays, pages[size])]
            # n frames' entries, dense from where the allocator starts (plus a page
            # where a field's run crosses a page boundary, plus the page tables' PFNs).
            for x, g in zip(arrays, grown):
                assert n * x.itemsize // 4096 <= g <= n * x.itemsize // 4096 + 2, grown
        del m, p
    assert sum(pages["1G"]) <= 64, pages
    assert sum(pages["8G"]) <= sum(pages["1G"]) + 2 * len(pages["1G"]), pages
