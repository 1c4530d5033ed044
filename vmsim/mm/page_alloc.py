"""Physical memory: mem_map, zones, the buddy allocator and per-CPU page lists.

Mirrors mm/page_alloc.c (and mm/mm_init.c for the deferred struct-page init).

mem_map is a set of numpy arrays indexed by PFN, zero meaning "free, never used": like
CONFIG_DEFERRED_STRUCT_PAGE_INIT, a zone's frames above ``zone.deferred_pfn`` have never
been initialised and are handed to the buddy lists MAX_PAGE_ORDER blocks at a time
(deferred_grow_zone), so a 1 TiB Machine touches no host memory for frames it has not
used. The arrays are calloc'ed (np.zeros), so the host maps a page of them only when it
is written.

Per frame (36 bytes): flags u32, _refcount i32, _mapcount i32 (the kernel stores
mapcount-1; vmsim stores the count itself so zero stays the default), mapping i32 (an
object id), index i64, private i32, lru next/prev i32. ``private`` holds the page's data
handle (see vmsim.mm.page_data) or, for page-table pages, the row in the table pool.

Allocation follows __alloc_pages(): get_page_from_freelist() walks the zonelist
(Normal -> DMA32 -> DMA) checking each zone's watermark plus lowmem_reserve
(zone_watermark_fast), then __alloc_pages_slowpath() retries at the min watermark and,
when nothing is left, calls the OOM killer (mm/oom_kill.c, vmsim.mm.oom_kill) and
retries while it makes progress. The per-CPU lists grow and shrink their batches as
6.18's nr_pcp_alloc / nr_pcp_free / nr_pcp_high do (alloc_factor, free_count, the
ZONE_BELOW_HIGH flag).

Simplifications: physical memory is one contiguous range without the PCI hole; zones
are DMA [0, 16M), DMA32 [16M, 4G) and Normal above; a single NUMA node; no reclaim,
no compaction and no kswapd (direct reclaim finds nothing to free, so the slow path
goes to the OOM killer at once); no highatomic or CMA reserves; the periodic vmstat
work (decay_pcp_high, drain_zone_pages) does not run, vmsim having no clock.
"""
import math

import numpy as np

from vmsim.mm.page_flags import (PGTY_buddy, PG_ORDER_SHIFT, PG_ORDER_MASK, PG_reserved)
from vmsim.mm import _buddy
from vmsim.mm._buddy import (NR_MIGRATETYPES, NR_PCP_LISTS, NR_ZS, NR_PCP_FIELDS, ZS_FREE_PAGES,
                             ZS_PCP_PAGES, ZS_BELOW_HIGH, ZS_DEFERRED_PFN, ZS_START_PFN,
                             ZS_END_PFN, ZS_PGALLOC, ZS_WMARK, ZS_LOWMEM_RESERVE,
                             PCP_ALLOC_FACTOR, PCP_COUNT, PCP_FREE_COUNT, PCP_FLAGS, PCP_HIGH,
                             PCP_HIGH_MIN, PCP_HIGH_MAX, PCP_BATCH, _walk, _list_add,
                             _list_add_tail, _list_del)

MAX_PAGE_ORDER = 10
NR_PAGE_ORDERS = MAX_PAGE_ORDER + 1
pageblock_order = 9
pageblock_nr_pages = 1 << pageblock_order
PAGE_ALLOC_COSTLY_ORDER = 3

MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE = 0, 1, 2
MIGRATE_PCPTYPES = 3
MIGRATETYPE_NAMES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate")

ZONE_DMA, ZONE_DMA32, ZONE_NORMAL, ZONE_MOVABLE = 0, 1, 2, 3
ZONE_NAMES = ("DMA", "DMA32", "Normal")
MAX_NR_ZONES = 5                       # DMA, DMA32, Normal, Movable, Device
# sysctl_lowmem_reserve_ratio[] (mm/page_alloc.c): DMA, DMA32, Normal, Movable, Device.
sysctl_lowmem_reserve_ratio = [256, 256, 32, 0, 0]

# alloc_flags (mm/internal.h)
WMARK_MIN, WMARK_LOW, WMARK_HIGH = 0, 1, 2
ALLOC_WMARK_MIN, ALLOC_WMARK_LOW, ALLOC_WMARK_HIGH = WMARK_MIN, WMARK_LOW, WMARK_HIGH
ALLOC_NO_WATERMARKS = 0x04
ALLOC_WMARK_MASK = ALLOC_NO_WATERMARKS - 1
ALLOC_OOM = 0x08
ALLOC_NON_BLOCK = 0x10
ALLOC_MIN_RESERVE = 0x20
ALLOC_CPUSET = 0x40
ALLOC_HIGHATOMIC = 0x200
ALLOC_KSWAPD = 0x800
ALLOC_RESERVES = ALLOC_NON_BLOCK | ALLOC_MIN_RESERVE | ALLOC_HIGHATOMIC | ALLOC_OOM

CONFIG_PCP_BATCH_SCALE_MAX = 5         # mm/Kconfig default
MIN_PERCPU_PAGELIST_HIGH_FRACTION = 8
PCPF_PREV_FREE_HIGH_ORDER = 0x01
PCPF_FREE_HIGH_BATCH = 0x02
MAX_RECLAIM_RETRIES = 16

# gfp (include/linux/gfp_types.h): vmsim keeps only what decides zone and migratetype.
__GFP_DMA = 0x01
__GFP_HIGHMEM = 0x02
__GFP_DMA32 = 0x04
__GFP_MOVABLE = 0x08
__GFP_RECLAIMABLE = 0x10
__GFP_HIGH = 0x20
__GFP_IO = 0x40
__GFP_FS = 0x80
__GFP_ZERO = 0x100
__GFP_DIRECT_RECLAIM = 0x400
__GFP_KSWAPD_RECLAIM = 0x800
__GFP_WRITE = 0x1000
__GFP_NOWARN = 0x2000
__GFP_RETRY_MAYFAIL = 0x4000
__GFP_NOFAIL = 0x8000
__GFP_NORETRY = 0x10000
__GFP_MEMALLOC = 0x20000
__GFP_COMP = 0x40000
__GFP_NOMEMALLOC = 0x80000
__GFP_HARDWALL = 0x100000
__GFP_THISNODE = 0x200000
__GFP_ACCOUNT = 0x400000
__GFP_RECLAIM = __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM
GFP_KERNEL = __GFP_RECLAIM | __GFP_IO | __GFP_FS
GFP_USER = GFP_KERNEL | __GFP_HARDWALL
GFP_HIGHUSER = GFP_USER | __GFP_HIGHMEM
GFP_HIGHUSER_MOVABLE = GFP_HIGHUSER | __GFP_MOVABLE      # __GFP_SKIP_KASAN is 0 here
GFP_PGTABLE_USER = GFP_KERNEL | __GFP_ZERO | __GFP_ACCOUNT     # asm-generic/pgalloc.h

FIRST_ALLOC_PFN = 256                  # the low 1 MiB is reserved (e820 / BIOS)


def gfp_migratetype(gfp: int) -> int:
    """Return the migratetype of a gfp mask (gfp_migratetype())."""
    if gfp & __GFP_MOVABLE:
        return MIGRATE_MOVABLE
    if gfp & __GFP_RECLAIMABLE:
        return MIGRATE_RECLAIMABLE
    return MIGRATE_UNMOVABLE


def _deferred_free_ranges(zone):
    """The [start, end) ranges of a zone's frames past deferred_pfn that no free list
    holds yet (deferred struct page init: free, never handed out), around the
    reserved ones."""
    if zone is None:
        return []
    ranges = [(zone.deferred_pfn, zone.zone_end_pfn)] if zone.deferred_pfn < zone.zone_end_pfn else []
    for lo, hi in sorted(getattr(zone, "deferred_reserved", [])):
        new = []
        for a, b in ranges:
            if hi <= a or lo >= b:
                new.append((a, b))
                continue
            if a < lo:
                new.append((a, lo))
            if hi < b:
                new.append((hi, b))
        ranges = new
    return ranges


class MemMap:
    """The per-PFN arrays (struct page), with cheap memoryview accessors."""

    # struct page as vmsim keeps it (docs/design.md): (field, dtype), in mapping order.
    FIELDS = (("flags", np.uint32), ("refcount", np.int32), ("mapcount", np.int32),
              ("mapping", np.int32), ("index", np.int64), ("private", np.int32),
              ("lru_next", np.int32), ("lru_prev", np.int32))

    def __init__(self, nr_pages: int):
        import mmap as _mmap
        self.nr_pages = nr_pages
        # Every field on one anonymous MAP_NORESERVE mapping, each from a page boundary:
        # the host backs a page only once it is written (untouched frames cost nothing),
        # and in 4 KiB pages (MADV_NOHUGEPAGE). numpy's own large arrays ask for 2 MiB
        # host pages, which rounded each field's written part up to 2 MiB: 40 B per
        # touched frame became 40-80 B with the host's THP, and the few entries boot
        # writes at a zone's start cost 2 MiB per field (bench/bench_replay.py).
        offsets, size = [], 0
        for _, dt in self.FIELDS:
            offsets.append(size)
            size += (nr_pages * np.dtype(dt).itemsize + 4095) & ~4095
        self._map = _mmap.mmap(-1, max(size, 4096),
                               flags=_mmap.MAP_PRIVATE | _mmap.MAP_ANONYMOUS |
                               getattr(_mmap, "MAP_NORESERVE", 0x4000))
        if hasattr(_mmap, "MADV_NOHUGEPAGE"):
            self._map.madvise(_mmap.MADV_NOHUGEPAGE)
        for (name, dt), off in zip(self.FIELDS, offsets):
            setattr(self, "np_" + name, np.frombuffer(self._map, dtype=dt, count=nr_pages,
                                                      offset=off))
        self.flags = memoryview(self.np_flags)
        self.refcount = memoryview(self.np_refcount)
        self.mapcount = memoryview(self.np_mapcount)
        self.mapping = memoryview(self.np_mapping)
        self.index = memoryview(self.np_index)
        self.private = memoryview(self.np_private)
        self.lru_next = memoryview(self.np_lru_next)
        self.lru_prev = memoryview(self.np_lru_prev)


def _field(row, i, kind=int):
    """A property over ``row``'s memoryview entry ``i`` (counters the compiled runs share)."""
    return property(lambda self: kind(getattr(self, row)[i]),
                    lambda self, x: getattr(self, row).__setitem__(i, int(x)))


class PerCpuPages:
    """struct per_cpu_pages: lists[NR_PCP_LISTS] (order index, migratetype), count, high,
    batch, and the 6.18 auto-tuning state (alloc_factor, free_count, flags).

    The lists are linked through mem_map's lru_next / lru_prev (vmsim.mm._buddy), their
    heads and tails in ``head`` / ``tail``; the counters live in the int64 row ``st``
    (``v`` its memoryview). As per_cpu_pages_init() leaves it, ``high`` starts at 0
    and is clamped into [high_min, high_max] on first use (nr_pcp_alloc /
    nr_pcp_high)."""
    __slots__ = ("st", "v", "head", "tail", "h", "t", "mem")

    def __init__(self, st, head, tail, mem, high_min, high_max, batch):
        self.st, self.head, self.tail, self.mem = st, head, tail, mem
        self.v, self.h, self.t = memoryview(st), memoryview(head), memoryview(tail)
        self.high_min, self.high_max, self.batch = high_min, high_max, batch

    alloc_factor = _field("v", PCP_ALLOC_FACTOR)
    count = _field("v", PCP_COUNT)
    free_count = _field("v", PCP_FREE_COUNT)
    flags = _field("v", PCP_FLAGS)
    high = _field("v", PCP_HIGH)
    high_min = _field("v", PCP_HIGH_MIN)
    high_max = _field("v", PCP_HIGH_MAX)
    batch = _field("v", PCP_BATCH)

    @property
    def lists(self):
        """Each list's PFNs from head to tail (readers: the checker, tests)."""
        return [_walk(self.mem.lru_next, self.h[i], self.mem.nr_pages)
                for i in range(NR_PCP_LISTS)]


NR_LOWORDER_PCP_LISTS = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1)


def order_to_pindex(migratetype: int, order: int) -> int:
    """Return the pcp list index for (migratetype, order) (order_to_pindex())."""
    if order > PAGE_ALLOC_COSTLY_ORDER:
        return NR_LOWORDER_PCP_LISTS
    return order * MIGRATE_PCPTYPES + migratetype


def pindex_to_order(pindex: int) -> int:
    """Return the order a pcp list holds (pindex_to_order())."""
    if pindex == NR_LOWORDER_PCP_LISTS:
        return pageblock_order
    return pindex // MIGRATE_PCPTYPES


class Zone:
    """struct zone: span, buddy free_area, watermarks, per-CPU pagesets.

    free_area[order].free_list[migratetype] is linked through mem_map's lru_next /
    lru_prev (vmsim.mm._buddy), heads and tails in ``fl_head`` / ``fl_tail`` at
    order * NR_MIGRATETYPES + migratetype; nr_free and the counters the compiled runs
    share (free pages, pcp pages, ZONE_BELOW_HIGH, deferred_pfn...) are int64 rows
    (``v`` the memoryview of ``st``)."""

    def __init__(self, idx, start_pfn, end_pfn, first_free_pfn, mem, st, fl_head, fl_tail,
                 nr_free):
        self.idx = idx
        self.mem = mem
        self.name = ZONE_NAMES[idx]
        self.st, self.v = st, memoryview(st)
        self.fl_head, self.fl_tail = fl_head, fl_tail
        self.flh, self.flt = memoryview(fl_head), memoryview(fl_tail)
        self.np_nr_free, self.nr_free = nr_free, memoryview(nr_free)
        self.zone_start_pfn = start_pfn
        self.spanned_pages = end_pfn - start_pfn
        self.zone_end_pfn = end_pfn
        self.present_pages = end_pfn - start_pfn
        self.v[ZS_START_PFN], self.v[ZS_END_PFN] = start_pfn, end_pfn
        # Frames [deferred_pfn, zone_end_pfn) are free and never initialised.
        first = max(start_pfn, first_free_pfn)
        # Deferred blocks are handed out MAX_PAGE_ORDER-aligned.
        align = 1 << MAX_PAGE_ORDER
        self.deferred_pfn = (first + align - 1) & ~(align - 1)
        self.managed_pages = end_pfn - first
        self.head_free = self.deferred_pfn - first     # unaligned head, seeded at init
        self.free_pages = self.managed_pages           # NR_FREE_PAGES
        self.pcp = []
        self.pcp_pages = 0                             # pages on all CPUs' pcp lists
        self._watermark = [0, 0, 0]                    # WMARK_MIN, LOW, HIGH
        self.lowmem_reserve = _MirroredList(self.v, ZS_LOWMEM_RESERVE, MAX_NR_ZONES)
        self.below_high = False                        # ZONE_BELOW_HIGH
        self.vm_stat = {}

    free_pages = _field("v", ZS_FREE_PAGES)
    pcp_pages = _field("v", ZS_PCP_PAGES)
    below_high = _field("v", ZS_BELOW_HIGH, bool)
    deferred_pfn = _field("v", ZS_DEFERRED_PFN)

    @property
    def watermark(self):
        return self._watermark

    @watermark.setter
    def watermark(self, marks):
        """The watermarks, mirrored into the counters row for the compiled runs."""
        self._watermark = list(marks)
        for i, m in enumerate(marks):
            self.v[ZS_WMARK + i] = m

    @property
    def free_area(self):
        """free_area[order][migratetype] as lists of PFNs from head to tail (readers:
        the checker, tests)."""
        nxt, lim = self.mem.lru_next, self.mem.nr_pages
        return [[_walk(nxt, self.flh[o * NR_MIGRATETYPES + mt], lim)
                 for mt in range(NR_MIGRATETYPES)] for o in range(NR_PAGE_ORDERS)]


class _MirroredList(list):
    """zone->lowmem_reserve[]: a list whose stores also go to the counters row."""

    def __init__(self, row, base, n):
        super().__init__([0] * n)
        self._row, self._base = row, base

    def __setitem__(self, i, x):
        super().__setitem__(i, x)
        self._row[self._base + i] = x


class PageAllocator:
    """The node's zones and the allocator entry points (alloc_pages, free_frozen_pages)."""

    def __init__(self, nr_pages: int, ncpus: int, reserved_ranges=()):
        self.nr_pages = nr_pages
        self.mem = MemMap(nr_pages)
        self.ncpus = ncpus
        # pageblock migratetypes: one byte per pageblock (default MOVABLE, as at boot).
        self.pageblock_mt = np.full((nr_pages + pageblock_nr_pages - 1) // pageblock_nr_pages,
                                    MIGRATE_MOVABLE, dtype=np.uint8)
        self.pageblock_mt_mv = memoryview(self.pageblock_mt)    # Python ints, cheaply
        bounds = [(ZONE_DMA, 0, 1 << 12), (ZONE_DMA32, 1 << 12, 1 << 20),
                  (ZONE_NORMAL, 1 << 20, 1 << 62)]
        bounds = [(idx, max(lo, 0), min(hi, nr_pages)) for idx, lo, hi in bounds]
        bounds = [b for b in bounds if b[1] < b[2]]
        nz = len(bounds)
        # The zones' counters, free-list heads and tails and nr_free, and the pcp
        # counters, heads and tails: small int64 arrays the compiled runs take.
        self.zone_st = np.zeros((nz, NR_ZS), dtype=np.int64)
        self.fl_head = np.zeros((nz, NR_PAGE_ORDERS * NR_MIGRATETYPES), dtype=np.int64)
        self.fl_tail = np.zeros_like(self.fl_head)
        self.nr_free = np.zeros((nz, NR_PAGE_ORDERS), dtype=np.int64)
        self.pcp_st = np.zeros((nz, ncpus, NR_PCP_FIELDS), dtype=np.int64)
        self.pcp_head = np.zeros((nz, ncpus, NR_PCP_LISTS), dtype=np.int64)
        self.pcp_tail = np.zeros_like(self.pcp_head)
        self.zones = [Zone(idx, lo, hi, FIRST_ALLOC_PFN, self.mem, self.zone_st[i],
                           self.fl_head[i], self.fl_tail[i], self.nr_free[i])
                      for i, (idx, lo, hi) in enumerate(bounds)]
        for i, z in enumerate(self.zones):
            z.pcp_st, z.pcp_head, z.pcp_tail = self.pcp_st[i], self.pcp_head[i], self.pcp_tail[i]
        self.reserved = list(reserved_ranges)
        self._zones_desc = self.zones[::-1]
        # The node's zonelist walked from the highest allowed zone down
        # (for_next_zone_zonelist_nodemask): Normal -> DMA32 -> DMA.
        self._zonelists = [[z for z in self._zones_desc if z.idx <= top]
                           for top in range(MAX_NR_ZONES)]
        self._init_zones()
        self._init_watermarks()
        self.pgfree = 0
        self.kernel = None            # the Kernel, for the OOM killer (set at boot)
        self._gfp_ac = {}             # gfp -> (highest_zoneidx, migratetype, alloc_flags)

    @property
    def pgalloc(self):
        """vmstat pgalloc_dma / dma32 / normal (each zone counts its own)."""
        out = [0] * 3
        for z in self.zones:
            out[z.idx] = z.v[ZS_PGALLOC]
        return out

    # --- boot ------------------------------------------------------------------
    def _init_zones(self):
        """memblock_free_all(): the low 1 MiB and reserved ranges are PG_reserved."""
        flags = self.mem.flags
        for lo, hi in [(0, FIRST_ALLOC_PFN)] + self.reserved:
            for pfn in range(lo, hi):
                flags[pfn] = PG_reserved
                self.mem.refcount[pfn] = 1
            for z in self.zones:
                olo, ohi = max(lo, z.zone_start_pfn), min(hi, z.zone_end_pfn)
                if olo < ohi and lo >= FIRST_ALLOC_PFN:
                    z.managed_pages -= ohi - olo
                    z.free_pages -= ohi - olo
        for z in self.zones:
            first = max(z.zone_start_pfn, FIRST_ALLOC_PFN)
            reserved = [r for r in self.reserved if r[0] < z.deferred_pfn and r[1] > first]
            # Seed the unaligned head of the zone, below its first deferred block.
            pfn = first
            while pfn < min(z.deferred_pfn, z.zone_end_pfn):
                if any(lo <= pfn < hi for lo, hi in reserved):
                    pfn += 1
                    continue
                order = 0
                while (order < MAX_PAGE_ORDER and pfn % (2 << order) == 0 and
                       pfn + (2 << order) <= min(z.deferred_pfn, z.zone_end_pfn) and
                       not any(lo < pfn + (2 << order) and hi > pfn for lo, hi in reserved)):
                    order += 1
                # memblock_free_all() -> __free_pages_core(): FPI_TO_TAIL
                self.__add_to_free_list(z, pfn, order, MIGRATE_MOVABLE, True)
                pfn += 1 << order
            if z.deferred_pfn > z.zone_end_pfn:
                z.deferred_pfn = z.zone_end_pfn
            # Reserved ranges above deferred_pfn are skipped when growing.
            z.deferred_reserved = [r for r in self.reserved if r[1] > z.deferred_pfn]
        # _totalram_pages (mm/show_mem.c): memblock_free_all() -> totalram_pages_add()
        # of every page handed to the buddy allocator; totalram_pages() reads it.
        self._totalram_pages = sum(z.managed_pages for z in self.zones)

    def _init_watermarks(self):
        """init_per_zone_wmark_min(): min_free_kbytes, the watermarks with the pcp
        high and batch that follow them, and lowmem_reserve."""
        self.calculate_min_free_kbytes()
        self.setup_per_zone_wmarks()
        self.setup_per_zone_lowmem_reserve()

    def calculate_min_free_kbytes(self):
        """calculate_min_free_kbytes(): sqrt(lowmem_kbytes * 16) in [128, 262144]."""
        lowmem_kbytes = self.nr_free_buffer_pages() * 4
        self.min_free_kbytes = min(max(math.isqrt(lowmem_kbytes * 16), 128), 262144)

    def nr_free_buffer_pages(self) -> int:
        """nr_free_buffer_pages(): managed pages above the high watermark in the zones
        GFP_USER may use."""
        return sum(max(z.managed_pages - z.watermark[WMARK_HIGH], 0) for z in self.zones)

    def setup_per_zone_wmarks(self):
        """setup_per_zone_wmarks(): __setup_per_zone_wmarks(), then zone_pcp_update()
        since pcp high follows the low watermark."""
        pages_min = self.min_free_kbytes >> 2
        total = sum(z.managed_pages for z in self.zones)
        for z in self.zones:
            zmin = pages_min * z.managed_pages // total
            tmp = max(zmin >> 2, z.managed_pages * 10 // 10000)   # watermark_scale_factor 10
            z.watermark = [zmin, zmin + tmp, zmin + 2 * tmp]
        for z in self.zones:
            zone_set_pageset_high_and_batch(z, self.ncpus)

    def set_recommended_min_free_kbytes(self, hugepage_pmd_enabled: bool):
        """set_recommended_min_free_kbytes() (mm/khugepaged.c, run when khugepaged
        starts): with PMD THPs enabled, keep 2 + MIGRATE_PCPTYPES^2 pageblocks per
        zone free (at most 5% of lowmem), and recompute the watermarks."""
        if not hugepage_pmd_enabled:
            self.calculate_min_free_kbytes()
        else:
            nr_zones = sum(1 for z in self.zones if z.idx <= ZONE_NORMAL)
            recommended_min = pageblock_nr_pages * nr_zones * 2
            recommended_min += pageblock_nr_pages * nr_zones * MIGRATE_PCPTYPES * MIGRATE_PCPTYPES
            recommended_min = min(recommended_min, self.nr_free_buffer_pages() // 20)
            recommended_min <<= 2
            if recommended_min > self.min_free_kbytes:
                self.min_free_kbytes = recommended_min
        self.setup_per_zone_wmarks()
        self.setup_per_zone_lowmem_reserve()

    def setup_per_zone_lowmem_reserve(self):
        """setup_per_zone_lowmem_reserve(): zone i keeps back, from allocations that
        could have used a higher zone j, the managed pages of zones i+1..j divided by
        sysctl_lowmem_reserve_ratio[i] (empty zones count 0)."""
        managed = [0] * MAX_NR_ZONES
        for z in self.zones:
            managed[z.idx] = z.managed_pages
        for z in self.zones:
            i = z.idx
            ratio = sysctl_lowmem_reserve_ratio[i]
            clear = not ratio or not managed[i]
            upper = 0
            for j in range(i + 1, MAX_NR_ZONES):
                upper += managed[j]
                z.lowmem_reserve[j] = 0 if clear else upper // ratio

    # --- buddy -----------------------------------------------------------------
    def __add_to_free_list(self, zone, pfn, order, mt, tail):
        """__add_to_free_list() with set_buddy_order(): the block goes to the head of
        free_area[order].free_list[mt], or to its tail."""
        mem = self.mem
        mem.flags[pfn] = PGTY_buddy | (order << PG_ORDER_SHIFT)
        (_list_add_tail if tail else _list_add)(mem.lru_next, mem.lru_prev, zone.flh, zone.flt,
                                                order * NR_MIGRATETYPES + mt, pfn)
        zone.nr_free[order] += 1

    def __del_page_from_free_list(self, zone, pfn, order, mt):
        """__del_page_from_free_list(): list_del() and __ClearPageBuddy()."""
        mem = self.mem
        _list_del(mem.lru_next, mem.lru_prev, zone.flh, zone.flt, order * NR_MIGRATETYPES + mt,
                  pfn)
        zone.nr_free[order] -= 1
        mem.flags[pfn] = 0

    # hugetlb's alloc_contig_pages() reaches it under this name.
    _del_from_free_list = __del_page_from_free_list

    def _grow_zone(self, zone) -> bool:
        """deferred_grow_zone(): initialise the next MAX_PAGE_ORDER block of the zone
        (__free_pages_core(): to the tail of the free list, FPI_TO_TAIL)."""
        pbmt = self.pageblock_mt_mv
        while zone.deferred_pfn < zone.zone_end_pfn:
            pfn = zone.deferred_pfn
            end = min(pfn + (1 << MAX_PAGE_ORDER), zone.zone_end_pfn)
            zone.deferred_pfn = end
            hit = [r for r in zone.deferred_reserved if r[0] < end and r[1] > pfn]
            if not hit and end - pfn == 1 << MAX_PAGE_ORDER:
                self.__add_to_free_list(zone, pfn, MAX_PAGE_ORDER, pbmt[pfn >> pageblock_order],
                                        True)
                return True
            # The block's pages outside the reserved ranges, in ascending order, one by
            # one (the gaps between the ranges, not a test of every page: a block wholly
            # reserved frees nothing and costs nothing).
            grew = False
            p = pfn
            for lo, hi in sorted(hit) + [(end, end)]:
                for q in range(p, min(lo, end)):
                    self.__free_one_page(zone, q, 0, pbmt[q >> pageblock_order], True)
                    grew = True
                p = max(p, hi)
            if grew:
                return True
        return False

    def __rmqueue_smallest(self, zone, order, mt):
        """__rmqueue_smallest(): the head of the smallest non-empty free list of ``mt``
        at least ``order``, split by expand()."""
        flh = zone.flh
        for current in range(order, NR_PAGE_ORDERS):
            pfn = flh[current * NR_MIGRATETYPES + mt]
            if pfn:
                self.__del_page_from_free_list(zone, pfn, current, mt)
                self.expand(zone, pfn, order, current, mt)
                return pfn
        return -1

    def expand(self, zone, pfn, low, high, mt):
        """expand(): put the upper halves of a split block at the heads of the free
        lists."""
        size = 1 << high
        while high > low:
            high -= 1
            size >>= 1
            self.__add_to_free_list(zone, pfn + size, high, mt, False)

    def __rmqueue(self, zone, order, mt):
        """__rmqueue(): own migratetype, then fresh deferred memory, then another
        migratetype's block: a block of a pageblock or more is claimed (its pageblocks
        retagged, moved to the tail of ``mt``'s list: try_to_claim_block), a smaller
        one stolen as __rmqueue_steal() does (the rest stays on its own lists).
        vmsim's fallback takes the largest block first for every migratetype."""
        pfn = self.__rmqueue_smallest(zone, order, mt)
        if pfn >= 0:
            return pfn
        while self._grow_zone(zone):
            if mt != MIGRATE_MOVABLE:
                # The fresh block is MOVABLE: claim its pageblocks (try_to_claim_block).
                self._claim_movable_block(zone, mt)
            pfn = self.__rmqueue_smallest(zone, order, mt)
            if pfn >= 0:
                return pfn
        flh = zone.flh
        for other in (MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE):
            if other == mt:
                continue
            for current in range(MAX_PAGE_ORDER, order - 1, -1):
                pfn = flh[current * NR_MIGRATETYPES + other]
                if not pfn:
                    continue
                self.__del_page_from_free_list(zone, pfn, current, other)
                if current >= pageblock_order:
                    for pb in range(pfn >> pageblock_order,
                                    (pfn + (1 << current)) >> pageblock_order):
                        self.pageblock_mt[pb] = mt
                    self.__add_to_free_list(zone, pfn, current, mt, True)
                    return self.__rmqueue_smallest(zone, order, mt)
                self.expand(zone, pfn, order, current, other)
                return pfn
        return -1

    def _claim_movable_block(self, zone, mt):
        i = MAX_PAGE_ORDER * NR_MIGRATETYPES + MIGRATE_MOVABLE
        pfn = zone.flt[i]
        if pfn:
            self.__del_page_from_free_list(zone, pfn, MAX_PAGE_ORDER, MIGRATE_MOVABLE)
            for pb in range(pfn >> pageblock_order,
                            (pfn >> pageblock_order) + (1 << (MAX_PAGE_ORDER - pageblock_order))):
                self.pageblock_mt[pb] = mt
            self.__add_to_free_list(zone, pfn, MAX_PAGE_ORDER, mt, True)

    def __free_one_page(self, zone, pfn, order, mt, to_tail=False):
        """__free_one_page(): merge with free buddies, then add to the free list's
        head, or its tail (FPI_TO_TAIL, or buddy_merge_likely())."""
        mem = self.mem
        _buddy._free_one_page(mem.lru_next, mem.lru_prev, mem.flags, self.pageblock_mt_mv,
                              zone.flh, zone.flt, zone.nr_free, zone.v, pfn, order, mt, to_tail)

    # --- pcp -------------------------------------------------------------------
    def rmqueue_bulk(self, zone, order, count, pcp, pindex, mt):
        """rmqueue_bulk(): move ``count`` blocks of ``order`` from the buddy to the tail
        of pcp list ``pindex``.

        The kernel calls __rmqueue() once per block. When the smallest free block of
        ``mt`` has order k > ``order``, those calls split it and hand out its pages in
        ascending order, each split-off half alone on its (empty) list; vmsim takes the
        same pages from the block at once and returns the rest as the same aligned
        buddy blocks.
        """
        got = []
        flh = zone.flh
        while len(got) < count:
            need = count - len(got)
            k = -1
            for current in range(order, NR_PAGE_ORDERS):
                if flh[current * NR_MIGRATETYPES + mt]:
                    k = current
                    break
            if k <= order:
                pfn = self.__rmqueue(zone, order, mt)
                if pfn < 0:
                    break
                got.append(pfn)
                continue
            pfn = flh[k * NR_MIGRATETYPES + mt]
            self.__del_page_from_free_list(zone, pfn, k, mt)
            n = min(need, 1 << (k - order))
            got.extend(range(pfn, pfn + (n << order), 1 << order))
            # Free the tail [pfn + n<<order, pfn + 1<<k) as aligned blocks, larger first.
            start, end = pfn + (n << order), pfn + (1 << k)
            while start < end:
                o = min((start & -start).bit_length() - 1, (end - start).bit_length() - 1)
                self.__add_to_free_list(zone, start, o, mt, False)
                start += 1 << o
        mem = self.mem
        nxt, prv, h, t = mem.lru_next, mem.lru_prev, pcp.h, pcp.t
        if len(got) < 16:
            for pfn in got:
                _list_add_tail(nxt, prv, h, t, pindex, pfn)
        else:
            # list_add_tail() of each in turn, as one chain linked with numpy stores.
            arr = np.array(got, dtype=np.int64)
            mem.np_lru_next[arr[:-1]] = arr[1:]
            mem.np_lru_prev[arr[1:]] = arr[:-1]
            first, last = got[0], got[-1]
            nxt[last] = 0
            old = t[pindex]
            prv[first] = old
            if old:
                nxt[old] = first
            else:
                h[pindex] = first
            t[pindex] = last
        return len(got)

    def free_pcppages_bulk(self, zone, count, pcp, pindex):
        """free_pcppages_bulk(): return ``count`` pages to the buddy, the list of
        ``pindex`` first, then round-robin; each list from its tail (coldest first)."""
        v, zv = pcp.v, zone.v
        count = min(v[PCP_COUNT], count)
        pindex -= 1
        mem = self.mem
        nxt, prv, h, t = mem.lru_next, mem.lru_prev, pcp.h, pcp.t
        pbmt = self.pageblock_mt_mv
        while count > 0:
            # Remove pages from lists in a round-robin fashion.
            while True:
                pindex += 1
                if pindex > NR_PCP_LISTS - 1:
                    pindex = 0
                if h[pindex]:
                    break
            order = pindex_to_order(pindex)
            nr_pages = 1 << order
            while True:
                pfn = t[pindex]
                mt = pbmt[pfn >> pageblock_order]
                _list_del(nxt, prv, h, t, pindex, pfn)
                count -= nr_pages
                v[PCP_COUNT] -= nr_pages
                zv[ZS_PCP_PAGES] -= nr_pages
                self.__free_one_page(zone, pfn, order, mt)
                if count <= 0 or not h[pindex]:
                    break

    def free_frozen_page_commit(self, zone, pcp, pfn, mt, order):
        """free_frozen_page_commit(): put the page at the head of its pcp list; when
        the list reaches nr_pcp_high(), give nr_pcp_free() pages back to the buddy."""
        v = pcp.v
        v[PCP_ALLOC_FACTOR] >>= 1
        pindex = order_to_pindex(mt, order)
        mem = self.mem
        _list_add(mem.lru_next, mem.lru_prev, pcp.h, pcp.t, pindex, pfn)
        n = 1 << order
        v[PCP_COUNT] += n
        zone.v[ZS_PCP_PAGES] += n
        batch = v[PCP_BATCH]
        free_high = False
        flags = v[PCP_FLAGS]
        # High-order pages other than THP feed fragmentation: limit them when the
        # CPU keeps freeing without allocating.
        if order and order <= PAGE_ALLOC_COSTLY_ORDER:
            free_high = (v[PCP_FREE_COUNT] >= batch + v[PCP_HIGH_MIN] // 2 and
                         bool(flags & PCPF_PREV_FREE_HIGH_ORDER) and
                         (not flags & PCPF_FREE_HIGH_BATCH or v[PCP_COUNT] >= batch))
            v[PCP_FLAGS] = flags | PCPF_PREV_FREE_HIGH_ORDER
        elif flags & PCPF_PREV_FREE_HIGH_ORDER:
            v[PCP_FLAGS] = flags & ~PCPF_PREV_FREE_HIGH_ORDER
        if v[PCP_FREE_COUNT] < (batch << CONFIG_PCP_BATCH_SCALE_MAX):
            v[PCP_FREE_COUNT] += n
        high = nr_pcp_high(pcp, zone, batch, free_high)
        if v[PCP_COUNT] < high:
            return
        self.free_pcppages_bulk(zone, nr_pcp_free(pcp, batch, high, free_high), pcp, pindex)
        if zone.below_high and zone_watermark_ok(zone, 0, zone.watermark[WMARK_HIGH],
                                                 ZONE_MOVABLE, 0):
            zone.below_high = False

    # pindex_to_order(), under the name the debug checker reads.
    _pindex_order = staticmethod(lambda pindex: pindex_to_order(pindex))

    # --- entry points ----------------------------------------------------------
    def _zone_of(self, pfn):
        """Return the zone that spans ``pfn`` (page_zone())."""
        for z in self._zones_desc:
            if pfn >= z.zone_start_pfn:
                return z
        raise ValueError(pfn)

    def rmqueue_pcplist(self, zone, order, mt, cpu):
        """rmqueue_pcplist() / __rmqueue_pcplist(): the head of this CPU's list,
        refilled with nr_pcp_alloc() pages from the buddy when empty; -1 if none."""
        pcp = zone.pcp[cpu]
        v, h = pcp.v, pcp.h
        # On allocation, reduce the number of pages that are batch freed.
        v[PCP_FREE_COUNT] >>= 1
        pindex = order_to_pindex(mt, order)
        if not h[pindex]:
            batch = nr_pcp_alloc(pcp, zone, order)
            alloced = self.rmqueue_bulk(zone, order, batch, pcp, pindex, mt) << order
            v[PCP_COUNT] += alloced
            zone.v[ZS_PCP_PAGES] += alloced
            if not h[pindex]:
                return -1
        pfn = h[pindex]
        mem = self.mem
        _list_del(mem.lru_next, mem.lru_prev, h, pcp.t, pindex, pfn)
        n = 1 << order
        v[PCP_COUNT] -= n
        zone.v[ZS_PCP_PAGES] -= n
        return pfn

    def get_page_from_freelist(self, gfp, order, alloc_flags, hz, mt, cpu):
        """get_page_from_freelist(): the first zone of the zonelist (from
        ``hz`` = ac->highest_zoneidx down) whose watermark, plus its lowmem_reserve
        for ``hz``, allows the allocation; -1 if none does.

        A zone not yet below its high watermark is tried against that first (and
        flagged ZONE_BELOW_HIGH, which shrinks the pcp lists, when it fails); then the
        alloc_flags watermark. rmqueue() and zone_watermark_fast()'s order-0 shortcut
        are inline, as in the kernel."""
        pcp_order = order <= PAGE_ALLOC_COSTLY_ORDER or order == pageblock_order
        for zone in self._zonelists[hz]:
            zv = zone.v
            below_high = zv[ZS_BELOW_HIGH]
            if not below_high:
                mark = zone._watermark[WMARK_HIGH]
                if not (order == 0 and
                        zv[ZS_FREE_PAGES] - zv[ZS_PCP_PAGES] > mark + zone.lowmem_reserve[hz] or
                        zone_watermark_fast(zone, order, mark, hz, alloc_flags)):
                    zv[ZS_BELOW_HIGH] = below_high = 1
            if below_high:
                # check_alloc_wmark:
                mark = zone._watermark[alloc_flags & ALLOC_WMARK_MASK]
                if not zone_watermark_fast(zone, order, mark, hz, alloc_flags):
                    if not alloc_flags & ALLOC_NO_WATERMARKS:
                        continue      # node_reclaim_mode is 0: next zone
            # try_this_zone: rmqueue(): pcp-cached orders from the per-CPU list, the
            # others (or when the list cannot be refilled) from the buddy.
            pfn = self.rmqueue_pcplist(zone, order, mt, cpu) if pcp_order else -1
            if pfn < 0:
                pfn = self.__rmqueue(zone, order, mt)
                if pfn < 0:
                    continue
            # prep_new_page(): NR_FREE_PAGES, PGALLOC_<zone>, set_page_refcounted.
            n = 1 << order
            zv[ZS_FREE_PAGES] -= n
            zv[ZS_PGALLOC] += n
            self.mem.refcount[pfn] = 1
            return pfn
        return -1

    def alloc_pages(self, gfp: int, order: int, cpu: int = 0) -> int:
        """Return the head PFN of 2**order free frames, or -1 (__alloc_pages()).

        The fast path tries the zonelist at the low watermark; the slow path
        (__alloc_pages_slowpath) retries at the min watermark and then calls the
        OOM killer. __GFP_ZERO needs no work since freed frames drop their data.
        """
        ac = self._gfp_ac.get(gfp)
        if ac is None:
            ac = self._prepare_alloc_pages(gfp)
        hz, mt, alloc_flags = ac
        pfn = self.get_page_from_freelist(gfp, order, alloc_flags, hz, mt, cpu)
        if pfn >= 0:
            return pfn
        return _alloc_pages_slowpath(self, gfp, order, hz, mt, cpu)

    def _prepare_alloc_pages(self, gfp):
        """prepare_alloc_pages(), once per gfp mask: (highest_zoneidx, migratetype,
        alloc_flags)."""
        ac = self._gfp_ac[gfp] = (gfp_zone(gfp), gfp_migratetype(gfp),
                                  ALLOC_WMARK_LOW | alloc_flags_nofragment(gfp))
        return ac

    def _pcp_peek_order0(self, gfp, cpu, n):
        """vmsim's compiled fault runs: up to ``n`` PFNs the next order-0 allocations of
        ``gfp`` on ``cpu`` take from the head of the per-CPU list, in order, while the
        fast path holds (the zonelist's first zone not ZONE_BELOW_HIGH and above its
        high watermark: free_pages - pcp_pages does not change as the list is popped);
        [] otherwise."""
        first = self._pcp_first_order0(gfp, cpu)
        return _walk(self.mem.lru_next, first, n) if first else []

    def _pcp_first_order0(self, gfp, cpu) -> int:
        """_pcp_peek_order0() for a run that follows the list itself (lru_next): the
        PFN at its head, or 0 (empty, or the fast path does not hold)."""
        ac = self._gfp_ac.get(gfp) or self._prepare_alloc_pages(gfp)
        hz, mt, _ = ac
        zone = self._zonelists[hz][0]
        zv = zone.v
        if zv[ZS_BELOW_HIGH] or zv[ZS_FREE_PAGES] - zv[ZS_PCP_PAGES] <= \
                zone._watermark[WMARK_HIGH] + zone.lowmem_reserve[hz]:
            return 0
        return zone.pcp[cpu].h[mt]

    def _pcp_commit_order0(self, gfp, cpu, m, peeked=None, rest=None):
        """The allocator state ``m`` order-0 allocations of the PFNs _pcp_peek_order0()
        returned leave: rmqueue_pcplist() (free_count halved each time) and
        prep_new_page()'s counters. The caller has set each page's refcount (its run
        took the references alloc_pages() would have given).

        With ``peeked`` (what peek returned, asked for one more page than the caller
        may take) the caller has already cleared the taken pages' links, which may
        hold LRU links by now: only the list head moves, to ``peeked[m]`` (the list
        is empty when peek returned no more than ``m``). With ``rest`` instead (a run
        that took the first ``m`` from _pcp_first_order0() on: the PFN after them, 0
        for none), the same."""
        if m <= 0:
            return
        hz, mt, _ = self._gfp_ac[gfp]
        zone = self._zonelists[hz][0]
        pcp = zone.pcp[cpu]
        mem = self.mem
        nxt, prv, h, t = mem.lru_next, mem.lru_prev, pcp.h, pcp.t
        if peeked is not None or rest is not None:
            if rest is None:
                if m > len(peeked):
                    raise AssertionError(f"_pcp_commit_order0: {m} pages taken, "
                                         f"{len(peeked)} peeked")
                rest = peeked[m] if m < len(peeked) else 0
            h[mt] = rest
            if rest:
                prv[rest] = 0
            else:
                t[mt] = 0
        elif m < 16:
            for _ in range(m):
                _list_del(nxt, prv, h, t, mt, h[mt])
        else:
            # list_del() of the first m entries at once: the (m+1)-th becomes the head.
            popped = _walk(nxt, h[mt], m + 1)
            rest = popped[m] if len(popped) > m else 0
            idx = np.array(popped[:m], dtype=np.int64)
            mem.np_lru_next[idx] = 0
            mem.np_lru_prev[idx] = 0
            h[mt] = rest
            if rest:
                prv[rest] = 0
            else:
                t[mt] = 0
        v, zv = pcp.v, zone.v
        v[PCP_FREE_COUNT] >>= m
        v[PCP_COUNT] -= m
        zv[ZS_PCP_PAGES] -= m
        zv[ZS_FREE_PAGES] -= m
        zv[ZS_PGALLOC] += m

    def free_frozen_pages(self, pfn: int, order: int, cpu: int = 0):
        """free_frozen_pages() / free_unref_page(): refcount already 0; to pcp or buddy."""
        z = self._zone_of(pfn)
        mem = self.mem
        mem.flags[pfn] = 0
        mem.mapping[pfn] = 0
        mem.index[pfn] = 0
        z.v[ZS_FREE_PAGES] += 1 << order
        self.pgfree += 1 << order
        mt = self.pageblock_mt_mv[pfn >> pageblock_order]
        if order <= PAGE_ALLOC_COSTLY_ORDER or order == pageblock_order:
            if mt >= MIGRATE_PCPTYPES:
                mt = MIGRATE_MOVABLE
            self.free_frozen_page_commit(z, z.pcp[cpu], pfn, mt, order)
        else:
            self.__free_one_page(z, pfn, order, mt)

    def free_unref_folios(self, pfns, orders, cpu: int = 0):
        """free_unref_folios(): free a prepared batch (refcounts 0): each folio as
        free_frozen_pages() would, to this CPU's per-CPU list (free_frozen_page_commit)
        or, for an order the lists do not hold, to the buddy (free_one_page).
        ``orders`` None: all order 0 (vmsim's callers; ``pfns`` may be an int64 array)."""
        from vmsim.mm import _pte_batch
        if orders is None:
            if _pte_batch._put_usable(pfns):
                return self._free_unref_order0_run(pfns, cpu)
            orders = [0] * len(pfns)
        elif _pte_batch._put_usable(pfns) and not any(orders):
            return self._free_unref_order0_run(pfns, cpu)
        if isinstance(pfns, np.ndarray):
            pfns = pfns.tolist()
        mem = self.mem
        flags, mapping, index = mem.flags, mem.mapping, mem.index
        pbmt = self.pageblock_mt_mv
        z = None
        freed = 0
        commit = self.free_frozen_page_commit
        for pfn, order in zip(pfns, orders):
            if z is None or not z.zone_start_pfn <= pfn < z.zone_end_pfn:
                z = self._zone_of(pfn)
                pcp = z.pcp[cpu]
            flags[pfn] = 0
            mapping[pfn] = 0
            index[pfn] = 0
            n = 1 << order
            z.v[ZS_FREE_PAGES] += n
            freed += n
            mt = pbmt[pfn >> pageblock_order]
            if order <= PAGE_ALLOC_COSTLY_ORDER or order == pageblock_order:
                if mt >= MIGRATE_PCPTYPES:
                    mt = MIGRATE_MOVABLE
                commit(z, pcp, pfn, mt, order)
            else:
                self.__free_one_page(z, pfn, order, mt)
        self.pgfree += freed

    def _free_unref_order0_run(self, pfns, cpu: int):
        """free_unref_folios() of order-0 folios through vmsim's run
        (_buddy._free_unref_order0: free_frozen_page_commit() with free_pcppages_bulk()
        where the list reaches high), zone by zone."""
        run = _buddy._get("_free_unref_order0")
        mem = self.mem
        compiled = _buddy._compiled()
        if compiled:
            arr = np.asarray(pfns, dtype=np.int64)
            arrays = (mem.np_lru_next, mem.np_lru_prev, mem.np_flags, mem.np_mapping,
                      mem.np_index, self.pageblock_mt)
        else:
            arr = pfns.tolist() if isinstance(pfns, np.ndarray) else pfns
            arrays = (mem.lru_next, mem.lru_prev, mem.flags, mem.mapping, mem.index,
                      self.pageblock_mt_mv)
        i = 0
        n = len(pfns)
        while i < n:
            z = self._zone_of(pfns[i])
            pcp = z.pcp[cpu]
            rows = ((z.fl_head, z.fl_tail, z.np_nr_free, z.st, pcp.head, pcp.tail, pcp.st)
                    if compiled else (z.flh, z.flt, z.nr_free, z.v, pcp.h, pcp.t, pcp.v))
            start = i
            i = run(arr, i, *arrays, *rows)
            self.pgfree += i - start

    def nr_free_pages(self) -> int:
        return sum(z.free_pages for z in self.zones)

    def is_free(self, pfn: int) -> bool:
        """Return whether ``pfn`` is free: in a buddy block, on a pcp list, or never used."""
        z = self._zone_of(pfn)
        if pfn >= z.deferred_pfn:
            return not any(lo <= pfn < hi for lo, hi in z.deferred_reserved)
        flags = self.mem.flags
        for order in range(NR_PAGE_ORDERS):
            head = pfn & ~((1 << order) - 1)
            f = flags[head]
            if f & PGTY_buddy and (f & PG_ORDER_MASK) >> PG_ORDER_SHIFT == order:
                return True
        for pcp in z.pcp:
            for i, lst in enumerate(pcp.lists):
                o = pindex_to_order(i)
                for p in lst:
                    if p <= pfn < p + (1 << o):
                        return True
        return False

    def _pcp_del(self, zone, pcp, pindex, pfn):
        """Take ``pfn`` off pcp list ``pindex`` (alloc_contig_pages after
        drain_all_pages, vmsim's shortcut of the drain)."""
        mem = self.mem
        _list_del(mem.lru_next, mem.lru_prev, pcp.h, pcp.t, pindex, pfn)
        n = 1 << pindex_to_order(pindex)
        pcp.v[PCP_COUNT] -= n
        zone.v[ZS_PCP_PAGES] -= n


def zone_batchsize(managed_pages: int) -> int:
    """Return the pcp batch for a zone (zone_batchsize())."""
    batch = min(managed_pages >> 10, (1024 * 1024) // 4096)
    batch //= 4
    if batch < 1:
        batch = 1
    # rounddown_pow_of_two(batch + batch/2) - 1
    b = batch + batch // 2
    return (1 << (b.bit_length() - 1)) - 1 if b > 1 else 1


def __alloc_pages_slowpath(pa, gfp, order, hz, mt, cpu):
    """__alloc_pages_slowpath(): min watermark, OOM reserves for an OOM victim,
    direct reclaim (finds nothing in vmsim), then __alloc_pages_may_oom(),
    retrying as long as the OOM killer makes progress; -1 (nopage) otherwise."""
    k = pa.kernel
    costly_order = order > PAGE_ALLOC_COSTLY_ORDER
    can_direct_reclaim = gfp & __GFP_DIRECT_RECLAIM
    alloc_flags = gfp_to_alloc_flags(gfp, order)
    pfn = pa.get_page_from_freelist(gfp, order, alloc_flags, hz, mt, cpu)
    if pfn >= 0:
        return pfn
    # Direct compaction (costly orders): none is modelled, COMPACT_SKIPPED, so a
    # costly __GFP_NORETRY request (a THP fault) gives up here.
    if can_direct_reclaim and costly_order and gfp & __GFP_NORETRY:
        return warn_alloc(pa, gfp, order)
    no_progress_loops = 0
    while True:                                    # retry:
        reserve_flags = __gfp_pfmemalloc_flags(k, gfp)
        if reserve_flags:
            alloc_flags = reserve_flags | (alloc_flags & ALLOC_KSWAPD)
        pfn = pa.get_page_from_freelist(gfp, order, alloc_flags, hz, mt, cpu)
        if pfn >= 0:
            return pfn
        if not can_direct_reclaim:
            break
        # __alloc_pages_direct_reclaim(): __perform_reclaim() frees nothing (no
        # reclaim is modelled), so did_some_progress is 0 and no drain follows.
        did_some_progress = 0
        if gfp & __GFP_NORETRY:
            break
        if costly_order and not gfp & __GFP_RETRY_MAYFAIL:
            break
        no_progress_loops += 1
        if should_reclaim_retry(pa, gfp, order, hz, alloc_flags, no_progress_loops):
            continue
        pfn, did_some_progress = __alloc_pages_may_oom(pa, gfp, order, hz, mt, cpu)
        if pfn >= 0:
            return pfn
        # Avoid allocations with no watermarks from looping endlessly.
        if (k is not None and k.current is not None and tsk_is_oom_victim(k.current) and
                (alloc_flags & ALLOC_OOM or gfp & __GFP_NOMEMALLOC)):
            break
        if did_some_progress:
            no_progress_loops = 0
            continue
        break
    return warn_alloc(pa, gfp, order)


def warn_alloc(pa, gfp, order):
    """warn_alloc() at nopage (rate-limited to one, and never with __GFP_NOWARN);
    dump_stack() and the Mem-Info dump are not modelled. Return -1."""
    k = pa.kernel
    if k is None or gfp & __GFP_NOWARN:
        return -1
    from vmsim.kernel.printk import pr_warn, __ratelimit
    if not __ratelimit(k, "nopage_rs", 1):
        return -1
    comm = k.current.comm if k.current is not None else "swapper/0"
    pr_warn(k, "%s: page allocation failure: order:%d, mode:%#x(%s), nodemask=(null),"
               "cpuset=/,mems_allowed=0" % (comm, order, gfp, format_gfp(gfp)))
    return -1


def should_reclaim_retry(pa, gfp, order, hz, alloc_flags, no_progress_loops):
    """should_reclaim_retry(): retry while some zone would pass its min watermark
    with all its reclaimable pages freed (none: vmsim has no reclaim)."""
    if no_progress_loops > MAX_RECLAIM_RETRIES:
        return False
    for zone in pa._zonelists[hz]:
        available = zone_reclaimable_pages(zone) + zone_page_state_free(zone)
        if __zone_watermark_ok(zone, order, zone.watermark[WMARK_MIN], hz, alloc_flags,
                               available):
            return True
    return False

def __alloc_pages_may_oom(pa, gfp, order, hz, mt, cpu):
    """__alloc_pages_may_oom(): one more try at the high watermark, then
    out_of_memory() unless the OOM killer cannot help; (pfn, did_some_progress)."""
    k = pa.kernel
    pfn = pa.get_page_from_freelist((gfp | __GFP_HARDWALL) & ~__GFP_DIRECT_RECLAIM,
                                      order, ALLOC_WMARK_HIGH | ALLOC_CPUSET, hz, mt, cpu)
    if pfn >= 0:
        return pfn, 0
    # The OOM killer will not help higher order allocs.
    if order > PAGE_ALLOC_COSTLY_ORDER:
        return -1, 0
    if gfp & (__GFP_RETRY_MAYFAIL | __GFP_THISNODE):
        return -1, 0
    # The OOM killer does not needlessly kill tasks for lowmem.
    if hz < ZONE_NORMAL:
        return -1, 0
    if k is None:
        return -1, 0
    from vmsim.mm.oom_kill import oom_control, out_of_memory, _oom_victims_exit
    oc = oom_control(gfp, order)
    progress = 0
    if out_of_memory(k, oc):
        progress = 1
    _oom_victims_exit(k)
    return -1, progress


# PageAllocator's methods reach it under this name (a __name would be mangled there).
_alloc_pages_slowpath = __alloc_pages_slowpath


# --- gfp -> zone, alloc_flags ------------------------------------------------------
def gfp_zone(gfp: int) -> int:
    """Return the highest zone a gfp mask may use (gfp_zone(), GFP_ZONE_TABLE):
    __GFP_DMA -> DMA, __GFP_DMA32 -> DMA32, __GFP_HIGHMEM|__GFP_MOVABLE -> MOVABLE
    (a user page may come from ZONE_MOVABLE), anything else -> NORMAL."""
    if gfp & __GFP_DMA:
        return ZONE_DMA
    if gfp & __GFP_DMA32:
        return ZONE_DMA32
    if gfp & (__GFP_MOVABLE | __GFP_HIGHMEM) == __GFP_MOVABLE | __GFP_HIGHMEM:
        return ZONE_MOVABLE
    return ZONE_NORMAL


def alloc_flags_nofragment(gfp: int) -> int:
    """alloc_flags_nofragment(): ALLOC_KSWAPD from __GFP_KSWAPD_RECLAIM. Its
    ALLOC_NOFRAGMENT (avoid stealing pageblocks of another migratetype while a
    lower zone has free memory) is not modelled."""
    return ALLOC_KSWAPD if gfp & __GFP_KSWAPD_RECLAIM else 0


def gfp_to_alloc_flags(gfp: int, order: int) -> int:
    """gfp_to_alloc_flags(): the slow path's flags: the min watermark, __GFP_HIGH's
    ALLOC_MIN_RESERVE, and ALLOC_NON_BLOCK for a caller that cannot reclaim."""
    alloc_flags = ALLOC_WMARK_MIN | ALLOC_CPUSET
    if gfp & __GFP_HIGH:
        alloc_flags |= ALLOC_MIN_RESERVE
    if gfp & __GFP_KSWAPD_RECLAIM:
        alloc_flags |= ALLOC_KSWAPD
    if not gfp & __GFP_DIRECT_RECLAIM:
        if not gfp & __GFP_NOMEMALLOC:
            alloc_flags |= ALLOC_NON_BLOCK
            if order > 0 and alloc_flags & ALLOC_MIN_RESERVE:
                alloc_flags |= ALLOC_HIGHATOMIC
        if alloc_flags & ALLOC_MIN_RESERVE:
            alloc_flags &= ~ALLOC_CPUSET
    return alloc_flags


def tsk_is_oom_victim(tsk) -> bool:
    """tsk_is_oom_victim() (include/linux/oom.h): signal->oom_mm is set."""
    return tsk.oom_mm is not None


def __gfp_pfmemalloc_flags(k, gfp: int) -> int:
    """__gfp_pfmemalloc_flags(): ALLOC_OOM for an OOM victim (oom_reserves_allowed),
    ALLOC_NO_WATERMARKS for __GFP_MEMALLOC; no PF_MEMALLOC tasks in vmsim."""
    if gfp & __GFP_NOMEMALLOC:
        return 0
    if gfp & __GFP_MEMALLOC:
        return ALLOC_NO_WATERMARKS
    if k is not None and k.current is not None and tsk_is_oom_victim(k.current):
        return ALLOC_OOM
    return 0


# Names of gfp flags as %pGg prints them (__def_gfpflag_names), composites first.
_GFP_NAMES = (
    ("GFP_HIGHUSER_MOVABLE", GFP_HIGHUSER_MOVABLE), ("GFP_HIGHUSER", GFP_HIGHUSER),
    ("GFP_USER", GFP_USER), ("GFP_KERNEL_ACCOUNT", GFP_KERNEL | __GFP_ACCOUNT),
    ("GFP_KERNEL", GFP_KERNEL), ("GFP_NOFS", __GFP_RECLAIM | __GFP_IO),
    ("GFP_ATOMIC", __GFP_HIGH | __GFP_KSWAPD_RECLAIM), ("GFP_NOIO", __GFP_RECLAIM),
    ("GFP_NOWAIT", __GFP_KSWAPD_RECLAIM), ("GFP_DMA", __GFP_DMA),
    ("__GFP_HIGHMEM", __GFP_HIGHMEM), ("GFP_DMA32", __GFP_DMA32),
    ("__GFP_HIGH", __GFP_HIGH), ("__GFP_IO", __GFP_IO), ("__GFP_FS", __GFP_FS),
    ("__GFP_NOWARN", __GFP_NOWARN), ("__GFP_RETRY_MAYFAIL", __GFP_RETRY_MAYFAIL),
    ("__GFP_NOFAIL", __GFP_NOFAIL), ("__GFP_NORETRY", __GFP_NORETRY),
    ("__GFP_COMP", __GFP_COMP), ("__GFP_ZERO", __GFP_ZERO),
    ("__GFP_NOMEMALLOC", __GFP_NOMEMALLOC), ("__GFP_MEMALLOC", __GFP_MEMALLOC),
    ("__GFP_HARDWALL", __GFP_HARDWALL), ("__GFP_THISNODE", __GFP_THISNODE),
    ("__GFP_RECLAIMABLE", __GFP_RECLAIMABLE), ("__GFP_MOVABLE", __GFP_MOVABLE),
    ("__GFP_ACCOUNT", __GFP_ACCOUNT), ("__GFP_WRITE", __GFP_WRITE),
    ("__GFP_RECLAIM", __GFP_RECLAIM), ("__GFP_DIRECT_RECLAIM", __GFP_DIRECT_RECLAIM),
    ("__GFP_KSWAPD_RECLAIM", __GFP_KSWAPD_RECLAIM),
)


def format_gfp(gfp: int) -> str:
    """The %pGg text of a gfp mask (lib/vsprintf.c format_flags)."""
    out = []
    for name, mask in _GFP_NAMES:
        if not gfp:
            break
        if gfp & mask == mask:
            out.append(name)
            gfp &= ~mask
    if gfp:
        out.append("%#x" % gfp)
    return "|".join(out)


# --- watermarks ----------------------------------------------------------------------
def zone_page_state_free(zone) -> int:
    """zone_page_state(zone, NR_FREE_PAGES): free pages in the buddy (pages on the
    per-CPU lists count as allocated)."""
    return zone.free_pages - zone.pcp_pages


def zone_reclaimable_pages(zone) -> int:
    """zone_reclaimable_pages(): what reclaim could free. vmsim has no reclaim (and
    no swap), so nothing: the slow path must not wait for it."""
    return 0


def __zone_watermark_unusable_free(zone, order: int, alloc_flags: int) -> int:
    """__zone_watermark_unusable_free(): the pages an order-``order`` request cannot
    count (no highatomic or CMA reserves in vmsim)."""
    return (1 << order) - 1


def __zone_watermark_ok(zone, order: int, mark: int, highest_zoneidx: int,
                        alloc_flags: int, free_pages: int) -> bool:
    """__zone_watermark_ok(): free pages above mark + lowmem_reserve[highest_zoneidx]
    (reserves lower the mark), and for order > 0 a free block of that order."""
    mn = mark
    free_pages -= __zone_watermark_unusable_free(zone, order, alloc_flags)
    if alloc_flags & ALLOC_RESERVES:
        if alloc_flags & ALLOC_MIN_RESERVE:
            mn -= mn // 2
            if alloc_flags & ALLOC_NON_BLOCK:
                mn -= mn // 4
        if alloc_flags & ALLOC_OOM:
            mn -= mn // 2
    if free_pages <= mn + zone.lowmem_reserve[highest_zoneidx]:
        return False
    if not order:
        return True
    # Frames not yet initialised are free MAX_PAGE_ORDER blocks (deferred init).
    if zone.deferred_pfn + (1 << MAX_PAGE_ORDER) <= zone.zone_end_pfn:
        return True
    flh = zone.flh
    for o in range(order, NR_PAGE_ORDERS):
        if not zone.nr_free[o]:
            continue
        for mt in range(MIGRATE_PCPTYPES):
            if flh[o * NR_MIGRATETYPES + mt]:
                return True
    return False


def zone_watermark_ok(zone, order: int, mark: int, highest_zoneidx: int,
                      alloc_flags: int) -> bool:
    """zone_watermark_ok(): __zone_watermark_ok() with the zone's NR_FREE_PAGES."""
    return __zone_watermark_ok(zone, order, mark, highest_zoneidx, alloc_flags,
                               zone_page_state_free(zone))


def zone_watermark_fast(zone, order: int, mark: int, highest_zoneidx: int,
                        alloc_flags: int) -> bool:
    """zone_watermark_fast(): the order-0 shortcut, then __zone_watermark_ok()."""
    free_pages = zone_page_state_free(zone)
    if not order:
        usable_free = free_pages - min(free_pages, __zone_watermark_unusable_free(
            zone, 0, alloc_flags))
        if usable_free > mark + zone.lowmem_reserve[highest_zoneidx]:
            return True
    # No watermark boosting in vmsim (watermark_boost stays 0).
    return __zone_watermark_ok(zone, order, mark, highest_zoneidx, alloc_flags, free_pages)


# --- per-CPU pagesets ---------------------------------------------------------------
def zone_highsize(zone, batch: int, cpu_online: int, high_fraction: int, ncpus: int) -> int:
    """zone_highsize(): the zone's low watermark (or managed / high_fraction) split
    over the node's CPUs, at least batch * 4. One node holding all ``ncpus`` CPUs,
    called with cpu_online 0 once they are all up."""
    if not high_fraction:
        total_pages = zone.watermark[WMARK_LOW]
    else:
        total_pages = zone.managed_pages // high_fraction
    nr_split_cpus = ncpus + cpu_online
    high = total_pages // nr_split_cpus
    return max(high, batch << 2)


def zone_set_pageset_high_and_batch(zone, ncpus: int):
    """zone_set_pageset_high_and_batch(): batch, high_min (from the low watermark)
    and high_max (an eighth of the zone) for every CPU's pageset (pageset_update)."""
    batch = max(1, zone_batchsize(zone.managed_pages))
    high_min = zone_highsize(zone, batch, 0, 0, ncpus)
    high_max = zone_highsize(zone, batch, 0, MIN_PERCPU_PAGELIST_HIGH_FRACTION, ncpus)
    if not zone.pcp:
        zone.pcp = [PerCpuPages(zone.pcp_st[cpu], zone.pcp_head[cpu], zone.pcp_tail[cpu],
                                zone.mem, high_min, high_max, batch) for cpu in range(ncpus)]
    for pcp in zone.pcp:                                   # pageset_update()
        pcp.batch, pcp.high_min, pcp.high_max = batch, high_min, high_max


def _clamp(v, lo, hi):
    return lo if v < lo else hi if v > hi else v


def nr_pcp_alloc(pcp, zone, order: int) -> int:
    """nr_pcp_alloc(): how many blocks rmqueue_bulk() moves to an empty list: batch,
    doubled (alloc_factor) on each refill without a free between, within high."""
    base_batch = pcp.batch
    high_min, high_max = pcp.high_min, pcp.high_max
    high = pcp.high = _clamp(pcp.high, high_min, high_max)
    if high < base_batch:
        return 1
    batch = base_batch if order else base_batch << pcp.alloc_factor
    # If we had larger pcp->high, we could avoid to allocate from zone.
    if high_min != high_max and not zone.below_high:
        high = pcp.high = min(high + batch, high_max)
    if not order:
        max_nr_alloc = max(high - pcp.count - base_batch, base_batch)
        if batch <= max_nr_alloc and pcp.alloc_factor < CONFIG_PCP_BATCH_SCALE_MAX:
            pcp.alloc_factor += 1
        batch = min(batch, max_nr_alloc)
    if batch > 1:
        batch = max(batch >> order, 2)
    return batch


def nr_pcp_free(pcp, batch: int, high: int, free_high: bool) -> int:
    """nr_pcp_free(): how many pages free_pcppages_bulk() gives back: the run of
    consecutive frees (free_count), leaving at least batch on the list."""
    if free_high:
        return min(pcp.count, batch << CONFIG_PCP_BATCH_SCALE_MAX)
    if high < batch:
        return 1
    return _clamp(pcp.free_count, batch, high - batch)


def nr_pcp_high(pcp, zone, batch: int, free_high: bool) -> int:
    """nr_pcp_high(): the count at which the list is drained; pcp->high shrinks
    while the zone is below its high watermark and grows to hold a run of frees."""
    v = pcp.v
    high_min, high_max = v[PCP_HIGH_MIN], v[PCP_HIGH_MAX]
    high = v[PCP_HIGH]
    high = high_min if high < high_min else high_max if high > high_max else high
    v[PCP_HIGH] = high
    if not high:
        return 0
    if free_high:
        v[PCP_HIGH] = max(high - (batch << CONFIG_PCP_BATCH_SCALE_MAX), high_min)
        return 0
    # ZONE_RECLAIM_ACTIVE is never set: vmsim has no reclaim.
    if high_min == high_max:
        return high
    if zone.v[ZS_BELOW_HIGH]:
        free_count = max(v[PCP_FREE_COUNT], batch)
        v[PCP_HIGH] = max(high - free_count, high_min)
        high = max(v[PCP_COUNT], high_min)
    elif v[PCP_COUNT] >= high:
        need_high = v[PCP_FREE_COUNT] + batch
        if v[PCP_HIGH] < need_high:
            v[PCP_HIGH] = _clamp(need_high, high_min, high_max)
    return high
