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

Simplifications: physical memory is one contiguous range without the PCI hole; zones
are DMA [0, 16M), DMA32 [16M, 4G) and Normal above; a single NUMA node; the per-CPU
``high`` is fixed at high_min (no auto-tuning); no compaction, no reclaim yet (an
allocation that fails returns None, which the fault path turns into VM_FAULT_OOM).
"""
import math

import numpy as np

from vmsim.mm.page_flags import (PGTY_buddy, PG_ORDER_SHIFT, PG_ORDER_MASK, PG_reserved)

MAX_PAGE_ORDER = 10
NR_PAGE_ORDERS = MAX_PAGE_ORDER + 1
pageblock_order = 9
pageblock_nr_pages = 1 << pageblock_order
PAGE_ALLOC_COSTLY_ORDER = 3

MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE = 0, 1, 2
MIGRATE_PCPTYPES = 3
MIGRATETYPE_NAMES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate")

ZONE_DMA, ZONE_DMA32, ZONE_NORMAL = 0, 1, 2
ZONE_NAMES = ("DMA", "DMA32", "Normal")

# gfp (include/linux/gfp_types.h): vmsim keeps only what decides zone and migratetype.
__GFP_DMA = 0x01
__GFP_DMA32 = 0x04
__GFP_MOVABLE = 0x08
__GFP_RECLAIMABLE = 0x10
__GFP_ZERO = 0x100
__GFP_COMP = 0x40000
GFP_KERNEL = 0x400 | 0x800 | 0x40 | 0x80
GFP_HIGHUSER_MOVABLE = GFP_KERNEL | __GFP_MOVABLE | 0x2   # __GFP_HIGHMEM
GFP_PGTABLE_USER = GFP_KERNEL | __GFP_ZERO

_GFP_DMA, _GFP_DMA32 = __GFP_DMA, __GFP_DMA32   # unmangled for use in classes
FIRST_ALLOC_PFN = 256                  # the low 1 MiB is reserved (e820 / BIOS)


def gfp_migratetype(gfp: int) -> int:
    """Return the migratetype of a gfp mask (gfp_migratetype())."""
    if gfp & __GFP_MOVABLE:
        return MIGRATE_MOVABLE
    if gfp & __GFP_RECLAIMABLE:
        return MIGRATE_RECLAIMABLE
    return MIGRATE_UNMOVABLE


class MemMap:
    """The per-PFN arrays (struct page), with cheap memoryview accessors."""

    def __init__(self, nr_pages: int):
        self.nr_pages = nr_pages
        self.np_flags = np.zeros(nr_pages, dtype=np.uint32)
        self.np_refcount = np.zeros(nr_pages, dtype=np.int32)
        self.np_mapcount = np.zeros(nr_pages, dtype=np.int32)
        self.np_mapping = np.zeros(nr_pages, dtype=np.int32)
        self.np_index = np.zeros(nr_pages, dtype=np.int64)
        self.np_private = np.zeros(nr_pages, dtype=np.int32)
        self.np_lru_next = np.zeros(nr_pages, dtype=np.int32)
        self.np_lru_prev = np.zeros(nr_pages, dtype=np.int32)
        self.flags = memoryview(self.np_flags)
        self.refcount = memoryview(self.np_refcount)
        self.mapcount = memoryview(self.np_mapcount)
        self.mapping = memoryview(self.np_mapping)
        self.index = memoryview(self.np_index)
        self.private = memoryview(self.np_private)
        self.lru_next = memoryview(self.np_lru_next)
        self.lru_prev = memoryview(self.np_lru_prev)


class PerCpuPages:
    """struct per_cpu_pages: lists per (order index, migratetype), count, high, batch."""
    __slots__ = ("lists", "count", "high", "high_min", "high_max", "batch")

    def __init__(self, high_min, high_max, batch):
        # pindex = order * MIGRATE_PCPTYPES + migratetype for order <= COSTLY,
        # then one list for pageblock_order (THP), as order_to_pindex() does.
        self.lists = [[] for _ in range(MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1) + 1)]
        self.count = 0
        self.high = high_min
        self.high_min = high_min
        self.high_max = high_max
        self.batch = batch


def order_to_pindex(migratetype: int, order: int) -> int:
    """Return the pcp list index for (migratetype, order) (order_to_pindex())."""
    if order > PAGE_ALLOC_COSTLY_ORDER:
        return MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1)
    return order * MIGRATE_PCPTYPES + migratetype


class Zone:
    """struct zone: span, buddy free_area, watermarks, per-CPU pagesets."""

    def __init__(self, idx, start_pfn, end_pfn, first_free_pfn):
        self.idx = idx
        self.name = ZONE_NAMES[idx]
        self.zone_start_pfn = start_pfn
        self.spanned_pages = end_pfn - start_pfn
        self.zone_end_pfn = end_pfn
        self.present_pages = end_pfn - start_pfn
        # free_area[order][migratetype]: dicts used as ordered sets of head PFNs.
        self.free_area = [[{} for _ in MIGRATETYPE_NAMES] for _ in range(NR_PAGE_ORDERS)]
        self.nr_free = [0] * NR_PAGE_ORDERS
        # Frames [deferred_pfn, zone_end_pfn) are free and never initialised.
        first = max(start_pfn, first_free_pfn)
        # Deferred blocks are handed out MAX_PAGE_ORDER-aligned.
        align = 1 << MAX_PAGE_ORDER
        self.deferred_pfn = (first + align - 1) & ~(align - 1)
        self.managed_pages = end_pfn - first
        self.head_free = self.deferred_pfn - first     # unaligned head, seeded at init
        self.free_pages = self.managed_pages           # NR_FREE_PAGES
        self.pcp = []
        self.watermark = [0, 0, 0]                     # WMARK_MIN, LOW, HIGH
        self.vm_stat = {}


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
        self.zones = []
        for idx, lo, hi in bounds:
            lo, hi = max(lo, 0), min(hi, nr_pages)
            if lo < hi:
                self.zones.append(Zone(idx, lo, hi, FIRST_ALLOC_PFN))
        self.reserved = list(reserved_ranges)
        self._zones_desc = self.zones[::-1]
        # zonelists by highest allowed zone (DMA, DMA32, Normal): fallback order.
        self._zonelists = [[z for z in self._zones_desc if z.idx <= top] for top in range(3)]
        self._init_zones()
        self._init_watermarks()
        self.pgalloc = [0] * 3        # vmstat pgalloc_dma / dma32 / normal
        self.pgfree = 0

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
                self._add_to_free_list(z, pfn, order, MIGRATE_MOVABLE)
                pfn += 1 << order
            if z.deferred_pfn > z.zone_end_pfn:
                z.deferred_pfn = z.zone_end_pfn
            # Reserved ranges above deferred_pfn are skipped when growing.
            z.deferred_reserved = [r for r in self.reserved if r[1] > z.deferred_pfn]

    def _init_watermarks(self):
        """__setup_per_zone_wmarks() and zone_pcp_init() / zone_highsize()."""
        lowmem_kbytes = sum(z.managed_pages for z in self.zones) * 4
        min_free_kbytes = min(max(math.isqrt(lowmem_kbytes * 16), 128), 262144)
        pages_min = min_free_kbytes >> 2
        total = sum(z.managed_pages for z in self.zones)
        for z in self.zones:
            zmin = pages_min * z.managed_pages // total
            tmp = max(zmin >> 2, z.managed_pages * 10 // 10000)   # watermark_scale_factor 10
            z.watermark = [zmin, zmin + tmp, zmin + 2 * tmp]
            batch = zone_batchsize(z.managed_pages)
            high_min = max(z.watermark[1] // self.ncpus, batch << 2) if batch > 1 else 0
            high_max = max(z.managed_pages // 8 // self.ncpus, batch << 2) if batch > 1 else 0
            z.pcp = [PerCpuPages(high_min, high_max, batch) for _ in range(self.ncpus)]

    # --- buddy -----------------------------------------------------------------
    def _add_to_free_list(self, zone, pfn, order, mt):
        self.mem.flags[pfn] = PGTY_buddy | (order << PG_ORDER_SHIFT)
        zone.free_area[order][mt][pfn] = None
        zone.nr_free[order] += 1

    def _del_from_free_list(self, zone, pfn, order, mt):
        del zone.free_area[order][mt][pfn]
        zone.nr_free[order] -= 1
        self.mem.flags[pfn] = 0

    def _grow_zone(self, zone) -> bool:
        """deferred_grow_zone(): initialise the next MAX_PAGE_ORDER block of the zone."""
        while zone.deferred_pfn < zone.zone_end_pfn:
            pfn = zone.deferred_pfn
            end = min(pfn + (1 << MAX_PAGE_ORDER), zone.zone_end_pfn)
            zone.deferred_pfn = end
            hit = [r for r in zone.deferred_reserved if r[0] < end and r[1] > pfn]
            if not hit and end - pfn == 1 << MAX_PAGE_ORDER:
                self._add_to_free_list(zone, pfn, MAX_PAGE_ORDER,
                                       self.pageblock_mt[pfn >> pageblock_order])
                return True
            grew = False
            for p in range(pfn, end):
                if not any(lo <= p < hi for lo, hi in hit):
                    self.__free_one_page(zone, p, 0, self.pageblock_mt[p >> pageblock_order])
                    grew = True
            if grew:
                return True
        return False

    def __rmqueue_smallest(self, zone, order, mt):
        """__rmqueue_smallest(): the smallest free block of ``mt`` at least ``order``."""
        fa = zone.free_area
        for current in range(order, NR_PAGE_ORDERS):
            lst = fa[current][mt]
            if lst:
                pfn = next(iter(lst))
                self._del_from_free_list(zone, pfn, current, mt)
                self._expand(zone, pfn, order, current, mt)
                return pfn
        return -1

    def _expand(self, zone, pfn, low, high, mt):
        """expand(): put the upper halves of a split block back on the free lists."""
        size = 1 << high
        while high > low:
            high -= 1
            size >>= 1
            self._add_to_free_list(zone, pfn + size, high, mt)

    def __rmqueue(self, zone, order, mt):
        """__rmqueue(): own migratetype, then fresh deferred memory, then steal."""
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
        # __rmqueue_fallback(): steal from another migratetype.
        for other in (MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE):
            if other == mt:
                continue
            for current in range(MAX_PAGE_ORDER, order - 1, -1):
                lst = zone.free_area[current][other]
                if lst:
                    pfn = next(iter(lst))
                    self._del_from_free_list(zone, pfn, current, other)
                    if current >= pageblock_order:
                        for pb in range(pfn >> pageblock_order,
                                        (pfn + (1 << current)) >> pageblock_order):
                            self.pageblock_mt[pb] = mt
                    self._add_to_free_list(zone, pfn, current, mt)
                    return self.__rmqueue_smallest(zone, order, mt)
        return -1

    def _claim_movable_block(self, zone, mt):
        lst = zone.free_area[MAX_PAGE_ORDER][MIGRATE_MOVABLE]
        if lst:
            pfn = next(reversed(lst))
            self._del_from_free_list(zone, pfn, MAX_PAGE_ORDER, MIGRATE_MOVABLE)
            for pb in range(pfn >> pageblock_order, (pfn >> pageblock_order) + 2):
                self.pageblock_mt[pb] = mt
            self._add_to_free_list(zone, pfn, MAX_PAGE_ORDER, mt)

    def __free_one_page(self, zone, pfn, order, mt):
        """__free_one_page(): merge with free buddies, then add to the free list."""
        flags = self.mem.flags
        pbmt = self.pageblock_mt_mv
        lo, hi = zone.zone_start_pfn, zone.deferred_pfn
        while order < MAX_PAGE_ORDER:
            buddy = pfn ^ (1 << order)
            if buddy < lo or buddy >= hi:
                break
            bf = flags[buddy]
            if not (bf & PGTY_buddy) or (bf & PG_ORDER_MASK) >> PG_ORDER_SHIFT != order:
                break
            bmt = pbmt[buddy >> pageblock_order]
            if buddy not in zone.free_area[order][bmt]:
                break
            self._del_from_free_list(zone, buddy, order, bmt)
            pfn &= buddy
            order += 1
            mt = pbmt[pfn >> pageblock_order]
        self._add_to_free_list(zone, pfn, order, mt)

    # --- pcp -------------------------------------------------------------------
    def rmqueue_bulk(self, zone, order, count, lst, mt):
        """rmqueue_bulk(): move ``count`` blocks of ``order`` from buddy to a pcp list.

        The kernel calls __rmqueue() once per block. When the smallest free block of
        ``mt`` has order k > ``order``, those calls split it and hand out its pages in
        ascending order; vmsim takes the same pages from the block at once and returns
        the rest as the same aligned buddy blocks. The list is kept reversed (the
        kernel's head is the end of the Python list), so pop() takes the lowest PFN.
        """
        got = []
        while len(got) < count:
            need = count - len(got)
            fa = zone.free_area
            k = -1
            for current in range(order, NR_PAGE_ORDERS):
                if fa[current][mt]:
                    k = current
                    break
            if k <= order:
                pfn = self.__rmqueue(zone, order, mt)
                if pfn < 0:
                    break
                got.append(pfn)
                continue
            pfn = next(iter(fa[k][mt]))
            self._del_from_free_list(zone, pfn, k, mt)
            n = min(need, 1 << (k - order))
            got.extend(range(pfn, pfn + (n << order), 1 << order))
            # Free the tail [pfn + n<<order, pfn + 1<<k) as aligned blocks, larger first.
            start, end = pfn + (n << order), pfn + (1 << k)
            while start < end:
                o = min((start & -start).bit_length() - 1, (end - start).bit_length() - 1)
                self._add_to_free_list(zone, start, o, mt)
                start += 1 << o
        got.reverse()
        lst[:0] = got
        return len(got)

    def free_pcppages_bulk(self, zone, pcp, count):
        """free_pcppages_bulk(): return ``count`` pages, coldest first, to the buddy."""
        nlists = len(pcp.lists)
        pindex = 0
        while count > 0 and pcp.count > 0:
            pindex = (pindex + 1) % nlists
            lst = pcp.lists[pindex]
            if not lst:
                continue
            order = self._pindex_order(pindex)
            n = min(len(lst), max(count >> order, 1))
            batch, lst[:n] = lst[:n], []
            pcp.count -= n << order
            count -= n << order
            pbmt = self.pageblock_mt_mv
            for pfn in batch:
                self.__free_one_page(zone, pfn, order, pbmt[pfn >> pageblock_order])

    @staticmethod
    def _pindex_order(pindex):
        n = len(range(MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1)))
        return pageblock_order if pindex % (n + 1) == n else (pindex % (n + 1)) // MIGRATE_PCPTYPES

    # --- entry points ----------------------------------------------------------
    def zone_of(self, pfn):
        """Return the zone that spans ``pfn`` (page_zone())."""
        for z in self._zones_desc:
            if pfn >= z.zone_start_pfn:
                return z
        raise ValueError(pfn)

    def alloc_pages(self, gfp: int, order: int, cpu: int = 0) -> int:
        """Return the head PFN of 2**order free frames, or -1 (__alloc_pages()).

        get_page_from_freelist() walks the zonelist from the highest zone gfp allows,
        taking order <= PAGE_ALLOC_COSTLY_ORDER and pageblock_order blocks from the
        per-CPU lists (rmqueue_pcplist), larger ones from the buddy (rmqueue_buddy).
        The refcount is set to 1 (set_page_refcounted); __GFP_ZERO needs no work since
        freed frames drop their data. No reclaim or compaction: failure returns -1.
        """
        mt = (MIGRATE_MOVABLE if gfp & 0x08 else
              MIGRATE_RECLAIMABLE if gfp & 0x10 else MIGRATE_UNMOVABLE)   # __GFP_MOVABLE, __GFP_RECLAIMABLE
        zonelist = self._zonelists[2 if not gfp & 5 else (0 if gfp & 1 else 1)]
        pcp_order = order <= PAGE_ALLOC_COSTLY_ORDER or order == pageblock_order
        for z in zonelist:
            if order and z.free_pages - (1 << order) < z.watermark[0]:
                continue
            if pcp_order:
                pcp = z.pcp[cpu]
                lst = pcp.lists[order * 3 + mt if order <= 3 else 12]
                if not lst:
                    pcp.count += self.rmqueue_bulk(
                        z, order, max(pcp.batch >> order, 1), lst, mt) << order
                    if not lst:
                        continue
                pfn = lst.pop()
                pcp.count -= 1 << order
            else:
                pfn = self.__rmqueue(z, order, mt)
                if pfn < 0:
                    continue
            z.free_pages -= 1 << order
            self.pgalloc[z.idx] += 1 << order
            self.mem.refcount[pfn] = 1
            return pfn
        return -1

    def free_frozen_pages(self, pfn: int, order: int, cpu: int = 0):
        """free_frozen_pages() / free_unref_page(): refcount already 0; to pcp or buddy."""
        z = self.zone_of(pfn)
        mem = self.mem
        mem.flags[pfn] = 0
        mem.mapping[pfn] = 0
        mem.index[pfn] = 0
        z.free_pages += 1 << order
        self.pgfree += 1 << order
        mt = self.pageblock_mt[pfn >> pageblock_order]
        if order <= PAGE_ALLOC_COSTLY_ORDER or order == pageblock_order:
            pcp = z.pcp[cpu]
            if mt >= MIGRATE_PCPTYPES:
                mt = MIGRATE_MOVABLE
            pcp.lists[order_to_pindex(mt, order)].append(pfn)
            pcp.count += 1 << order
            if pcp.count >= pcp.high:
                self.free_pcppages_bulk(z, pcp, pcp.batch << 2 if pcp.batch else pcp.count)
        else:
            self.__free_one_page(z, pfn, order, mt)

    def free_unref_folios(self, pfns, orders, cpu: int = 0):
        """free_unref_folios(): free a prepared batch (refcounts 0): each folio as
        free_frozen_pages() would, to this CPU's per-CPU list (free_frozen_page_commit,
        which spills a full list with free_pcppages_bulk) or, for an order the lists
        do not hold, to the buddy (free_one_page)."""
        mem = self.mem
        flags, mapping, index = mem.flags, mem.mapping, mem.index
        pbmt = self.pageblock_mt_mv
        z = None
        freed = 0
        for pfn, order in zip(pfns, orders):
            if z is None or not z.zone_start_pfn <= pfn < z.zone_end_pfn:
                z = self.zone_of(pfn)
                pcp = z.pcp[cpu]
                lists = pcp.lists
            flags[pfn] = 0
            mapping[pfn] = 0
            index[pfn] = 0
            n = 1 << order
            z.free_pages += n
            freed += n
            mt = pbmt[pfn >> pageblock_order]
            if order <= PAGE_ALLOC_COSTLY_ORDER or order == pageblock_order:
                if mt >= MIGRATE_PCPTYPES:
                    mt = MIGRATE_MOVABLE
                lists[order_to_pindex(mt, order) if order else mt].append(pfn)
                pcp.count += n
                if pcp.count >= pcp.high:
                    self.free_pcppages_bulk(z, pcp, pcp.batch << 2 if pcp.batch else pcp.count)
            else:
                self.__free_one_page(z, pfn, order, mt)
        self.pgfree += freed

    def nr_free_pages(self) -> int:
        return sum(z.free_pages for z in self.zones)

    def is_free(self, pfn: int) -> bool:
        """Return whether ``pfn`` is free: in a buddy block, on a pcp list, or never used."""
        z = self.zone_of(pfn)
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
                o = self._pindex_order(i)
                for p in lst:
                    if p <= pfn < p + (1 << o):
                        return True
        return False


def zone_batchsize(managed_pages: int) -> int:
    """Return the pcp batch for a zone (zone_batchsize())."""
    batch = min(managed_pages >> 10, (1024 * 1024) // 4096)
    batch //= 4
    if batch < 1:
        batch = 1
    # rounddown_pow_of_two(batch + batch/2) - 1
    b = batch + batch // 2
    return (1 << (b.bit_length() - 1)) - 1 if b > 1 else 1
