"""/proc/vmstat, /proc/zoneinfo and /proc/buddyinfo (mm/vmstat.c).

The counters come from ``k.vmstat`` (indexed by vmsim.mm.vmstat), except what the
allocator keeps itself: nr_free_pages (buddy pages only: pages on the per-CPU lists
are allocated as far as NR_FREE_PAGES is concerned), nr_free_pages_blocks,
pgalloc_*, pgfree, and the dirty thresholds computed at read time
(global_dirty_limits). The THP items (nr_anon_transparent_hugepages, ...) are kept in
pages, as the kernel keeps them, and printed in huge pages.

The node has the kernel's five zones (DMA, DMA32, Normal, Movable, Device); zones the
machine's memory does not reach are printed unpopulated, as on a small machine. Frames
a zone has not initialised yet (vmsim's deferred struct-page init) are reported as the
free MAX_PAGE_ORDER blocks the kernel's deferred init turns them into. Per-zone LRU
and mlock counts are counted from mem_map. numa_hit / numa_local count allocated
pages (the kernel counts allocation calls; the same for order-0 pages).
"""
from vmsim.mm import vmstat as V
from vmsim.mm.page_alloc import MAX_PAGE_ORDER, NR_PAGE_ORDERS, pageblock_order, _deferred_free_ranges
from vmsim.mm.page_flags import (PG_lru, PG_active, PG_swapbacked, PG_unevictable, PG_mlocked,
                                 PG_dirty, PG_anon, PG_head, PG_ORDER_MASK, PG_ORDER_SHIFT)

ZONE_NAMES_ALL = ("DMA", "DMA32", "Normal", "Movable", "Device")
MAX_NR_ZONES = len(ZONE_NAMES_ALL)
ZONE_MOVABLE = 3
HPAGE_PMD_NR = 512
SWAP_CLUSTER_MAX = 32
PAGES_PER_SECTION = 1 << 15            # SECTION_SIZE_BITS 27
STRUCT_PAGE_SIZE = 64

ZONE_STAT_NAMES = V.VMSTAT_NAMES[V.NR_FREE_PAGES:V.NR_FREE_CMA + 1]
NUMA_STAT_NAMES = V.VMSTAT_NAMES[V.NUMA_HIT:V.NUMA_OTHER + 1]
NODE_STAT_NAMES = V.VMSTAT_NAMES[V.NR_INACTIVE_ANON:V.NR_KERNEL_FILE_PAGES + 1]
_THP_ITEMS = {V.NR_ANON_TRANSPARENT_HUGEPAGES, V.NR_SHMEM_HUGEPAGES, V.NR_SHMEM_PMDMAPPED,
              V.NR_FILE_HUGEPAGES, V.NR_FILE_PMDMAPPED}


class zone_view:
    """What /proc prints of one of the node's zones (struct zone, possibly empty)."""

    def __init__(self, idx, zone=None):
        self.idx = idx
        self.name = ZONE_NAMES_ALL[idx]
        self.zone = zone
        self.managed = zone.managed_pages if zone else 0
        self.spanned = zone.spanned_pages if zone else 0
        self.present = zone.present_pages if zone else 0
        self.start_pfn = zone.zone_start_pfn if zone else 0
        self.lowmem_reserve = [0] * MAX_NR_ZONES

    @property
    def populated(self):
        return self.present > 0


def node_zones(k):
    """All MAX_NR_ZONES zones of node 0 with watermarks and lowmem_reserve filled in."""
    by_idx = {z.idx: z for z in k.page_alloc.zones}
    zones = [zone_view(i, by_idx.get(i)) for i in range(MAX_NR_ZONES)]
    for zv in zones:
        if zv.zone is not None:
            mn, low, high = zv.zone.watermark
            zv.watermark = [mn, low, high, high + (high - low)]
        elif zv.idx == ZONE_MOVABLE:
            # __setup_per_zone_wmarks(): movable zones get a clamped SWAP_CLUSTER_MAX floor.
            m = min(max(zv.managed // 1024, SWAP_CLUSTER_MAX), 128)
            zv.watermark = [m, m, m, m]
        else:
            zv.watermark = [0, 0, 0, 0]
    # lowmem_reserve as setup_per_zone_lowmem_reserve() set it (zero for empty zones)
    for zv in zones:
        if zv.zone is not None:
            zv.lowmem_reserve = list(zv.zone.lowmem_reserve)
    return zones


def totalreserve_pages(zones) -> int:
    """calculate_totalreserve_pages(): max lowmem_reserve + high watermark, per zone."""
    total = 0
    for i, zv in enumerate(zones):
        mx = max([0] + zv.lowmem_reserve[i:]) + zv.watermark[2]
        total += min(mx, zv.managed)
    return total


def buddy_order_at(pfn: int, end: int) -> int:
    """The order of the free block starting at pfn when [pfn, end) is freed whole."""
    align = (pfn & -pfn).bit_length() - 1 if pfn else MAX_PAGE_ORDER
    return min(align, (end - pfn).bit_length() - 1, MAX_PAGE_ORDER)


def _deferred_free_blocks(zone):
    """Per order, the free blocks a zone's not-yet-initialised frames form."""
    counts = [0] * NR_PAGE_ORDERS
    ranges = _deferred_free_ranges(zone)
    big = 1 << MAX_PAGE_ORDER
    for start, end in ranges:
        # Aligned MAX_PAGE_ORDER blocks in the middle are counted arithmetically.
        a = (start + big - 1) & ~(big - 1)
        b = end & ~(big - 1)
        pieces = []
        if a < b:
            counts[MAX_PAGE_ORDER] += (b - a) >> MAX_PAGE_ORDER
            pieces = [(start, a), (b, end)]
        else:
            pieces = [(start, end)]
        for s, e in pieces:
            while s < e:
                o = buddy_order_at(s, e)
                counts[o] += 1
                s += 1 << o
    return counts


def _zone_free_area(zone):
    """nr_free per order as the kernel's free_area[] would hold it."""
    d = _deferred_free_blocks(zone)
    return [zone.nr_free[o] + d[o] for o in range(NR_PAGE_ORDERS)]


def _zone_nr_free_pages(zone) -> int:
    """zone_page_state(zone, NR_FREE_PAGES): buddy pages (pcp lists excluded)."""
    if zone is None:
        return 0
    return zone.free_pages - sum(p.count for p in zone.pcp)


def _zone_nr_free_pages_blocks(zone) -> int:
    """NR_FREE_PAGES_BLOCKS: free pages in blocks of at least pageblock_order."""
    if zone is None:
        return 0
    fa = _zone_free_area(zone)
    return sum(fa[o] << o for o in range(pageblock_order, NR_PAGE_ORDERS))


def zone_lru_stats(k, zone):
    """Per-zone nr_zone_* LRU counts, nr_zone_write_pending and nr_mlock from mem_map."""
    res = dict.fromkeys(("nr_zone_inactive_anon", "nr_zone_active_anon", "nr_zone_inactive_file",
                         "nr_zone_active_file", "nr_zone_unevictable", "nr_zone_write_pending",
                         "nr_mlock"), 0)
    if zone is None:
        return res
    import numpy as np
    hi = max(zone.deferred_pfn, zone.zone_start_pfn)
    f = k.mem.np_flags[zone.zone_start_pfn:hi]
    if not len(f):
        return res
    nr = np.where(f & PG_head, 1 << ((f & PG_ORDER_MASK) >> PG_ORDER_SHIFT), 1).astype(np.int64)
    lru = (f & PG_lru) != 0
    unev = lru & ((f & PG_unevictable) != 0)
    ev = lru & ~unev
    anon = (f & PG_swapbacked) != 0
    act = (f & PG_active) != 0
    res["nr_zone_inactive_anon"] = int(nr[ev & anon & ~act].sum())
    res["nr_zone_active_anon"] = int(nr[ev & anon & act].sum())
    res["nr_zone_inactive_file"] = int(nr[ev & ~anon & ~act].sum())
    res["nr_zone_active_file"] = int(nr[ev & ~anon & act].sum())
    res["nr_zone_unevictable"] = int(nr[unev].sum())
    mapped = k.mem.np_mapping[zone.zone_start_pfn:hi] != 0
    wp = ((f & PG_dirty) != 0) & ((f & (PG_swapbacked | PG_anon)) == 0) & mapped
    res["nr_zone_write_pending"] = int(nr[wp].sum())
    res["nr_mlock"] = int(nr[(f & PG_mlocked) != 0].sum())
    return res


def calculate_normal_threshold(k, managed: int) -> int:
    """calculate_normal_threshold(): the per-CPU vmstat drift threshold."""
    mem = managed >> (27 - 12)
    threshold = 2 * k.ncpus.bit_length() * (1 + mem.bit_length())
    return min(125, threshold)


def global_dirty_limits(k, zones):
    """global_dirty_limits(): (background, dirty) thresholds in pages (ratios 10 and 20)."""
    free = sum(_zone_nr_free_pages(zv.zone) for zv in zones)
    x = free - min(free, totalreserve_pages(zones))
    x += k.vmstat[V.NR_INACTIVE_FILE] + k.vmstat[V.NR_ACTIVE_FILE]
    available = x + 1
    ratio = 20 * 4096 // 100
    bg_ratio = 10 * 4096 // 100
    thresh = ratio * available // 4096
    bg_thresh = bg_ratio * available // 4096
    if bg_thresh >= thresh:
        bg_thresh = thresh // 2
    return bg_thresh, thresh


def nr_memmap_boot_pages(k) -> int:
    """NR_MEMMAP_BOOT_PAGES: the vmemmap of every present memory section."""
    sections = (k.nr_pages + PAGES_PER_SECTION - 1) // PAGES_PER_SECTION
    return sections * PAGES_PER_SECTION * STRUCT_PAGE_SIZE // 4096


def _all_vmstat_values(k):
    """vmstat_start(): every item of VMSTAT_NAMES, in order (node THP items in pages)."""
    v = list(k.vmstat)
    pa = k.page_alloc
    zones = node_zones(k)
    v[V.NR_FREE_PAGES] = sum(_zone_nr_free_pages(zv.zone) for zv in zones)
    v[V.NR_FREE_PAGES_BLOCKS] = sum(_zone_nr_free_pages_blocks(zv.zone) for zv in zones)
    for i, name in enumerate(("pgalloc_dma", "pgalloc_dma32", "pgalloc_normal")):
        v[V.VMSTAT_NAMES.index(name)] = pa.pgalloc[i]
    v[V.PGFREE] = pa.pgfree
    v[V.NUMA_HIT] = v[V.NUMA_LOCAL] = sum(pa.pgalloc)
    bg, th = global_dirty_limits(k, zones)
    v[V.NR_DIRTY_THRESHOLD] = th
    v[V.NR_DIRTY_BACKGROUND_THRESHOLD] = bg
    v[V.NR_MEMMAP_BOOT_PAGES] = nr_memmap_boot_pages(k)
    return v


def vmstat_show(k) -> str:
    """/proc/vmstat: "name value" per item; THP node items in huge pages."""
    v = _all_vmstat_values(k)
    out = []
    for i, name in enumerate(V.VMSTAT_NAMES):
        val = v[i]
        if i in _THP_ITEMS:
            val //= HPAGE_PMD_NR
        out.append(f"{name} {val}\n")
    return "".join(out)


def zoneinfo_show(k) -> str:
    """/proc/zoneinfo: zoneinfo_show_print() for every zone of node 0."""
    zones = node_zones(k)
    v = _all_vmstat_values(k)
    first_populated = next((zv for zv in zones if zv.populated), None)
    pa = k.page_alloc
    out = []
    for zv in zones:
        z = zv.zone
        out.append("Node 0, zone %8s" % zv.name)
        if zv is first_populated:
            out.append("\n  per-node stats")
            base = V.NR_INACTIVE_ANON
            for j, name in enumerate(NODE_STAT_NAMES):
                val = v[base + j]
                if base + j in _THP_ITEMS:
                    val //= HPAGE_PMD_NR
                out.append("\n      %-12s %d" % (name, val))
        wm = zv.watermark
        out.append("\n  pages free     %d" % _zone_nr_free_pages(z))
        out.append("\n        boost    0")
        out.append("\n        min      %d\n        low      %d\n        high     %d"
                   "\n        promo    %d" % tuple(wm))
        out.append("\n        spanned  %d\n        present  %d\n        managed  %d"
                   "\n        cma      0" % (zv.spanned, zv.present, zv.managed))
        out.append("\n        protection: (" + ", ".join(str(x) for x in zv.lowmem_reserve) + ")")
        if not zv.populated:
            out.append("\n")
            continue
        stats = zone_lru_stats(k, z)
        stats["nr_free_pages"] = _zone_nr_free_pages(z)
        stats["nr_free_pages_blocks"] = _zone_nr_free_pages_blocks(z)
        for name in ZONE_STAT_NAMES:
            out.append("\n      %-12s %d" % (name, stats.get(name, 0)))
        alloc = pa.pgalloc[z.idx] if z.idx < len(pa.pgalloc) else 0
        for name in NUMA_STAT_NAMES:
            out.append("\n      %-12s %d" % (name, alloc if name in ("numa_hit", "numa_local") else 0))
        out.append("\n  pagesets")
        thr = calculate_normal_threshold(k, zv.managed)
        for cpu, pcp in enumerate(z.pcp):
            out.append("\n    cpu: %d\n              count:    %d\n              high:     %d"
                       "\n              batch:    %d\n              high_min: %d"
                       "\n              high_max: %d" % (cpu, pcp.count, pcp.high, pcp.batch,
                                                          pcp.high_min, pcp.high_max))
            out.append("\n  vm stats threshold: %d" % thr)
        out.append("\n  node_unreclaimable:  0\n  start_pfn:           %d\n" % zv.start_pfn)
    return "".join(out)


def buddyinfo_show(k) -> str:
    """/proc/buddyinfo: frag_show_print() for each populated zone."""
    out = []
    for zv in node_zones(k):
        if not zv.populated:
            continue
        out.append("Node 0, zone %8s " % zv.name +
                   "".join("%6d " % n for n in _zone_free_area(zv.zone)) + "\n")
    return "".join(out)
