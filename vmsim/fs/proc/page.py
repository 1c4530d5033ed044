"""/proc/kpageflags and /proc/kpagecount (fs/proc/page.c, include/uapi/linux/kernel-page-flags.h).

stable_page_flags() translates a frame's mem_map flags (vmsim.mm.page_flags) into the
KPF_* bits, taking the folio-wide flags from the folio's head as the kernel does.
PG_anon_exclusive is the kernel's PG_mappedtodisk alias and shows as KPF_OWNER_2
(bit 34, the old KPF_MAPPEDTODISK). Frames vmsim has not initialised yet (deferred
struct-page init) read as the free buddy blocks the kernel's deferred init makes of
them: KPF_BUDDY on each block head.
"""
import errno

import numpy as np

from vmsim.mm.page_flags import (PG_locked, PG_referenced, PG_uptodate, PG_dirty, PG_lru,
                                 PG_head, PG_active, PG_reserved, PG_private, PG_reclaim,
                                 PG_swapbacked, PG_unevictable, PG_mlocked, PG_anon_exclusive,
                                 PG_tail, PG_large_rmappable, PG_anon, PGTY_buddy, PGTY_table,
                                 PGTY_hugetlb)
from vmsim.mm.page_alloc import MAX_PAGE_ORDER

KPF_LOCKED = 0
KPF_ERROR = 1
KPF_REFERENCED = 2
KPF_UPTODATE = 3
KPF_DIRTY = 4
KPF_LRU = 5
KPF_ACTIVE = 6
KPF_SLAB = 7
KPF_WRITEBACK = 8
KPF_RECLAIM = 9
KPF_BUDDY = 10
KPF_MMAP = 11
KPF_ANON = 12
KPF_SWAPCACHE = 13
KPF_SWAPBACKED = 14
KPF_COMPOUND_HEAD = 15
KPF_COMPOUND_TAIL = 16
KPF_HUGE = 17
KPF_UNEVICTABLE = 18
KPF_HWPOISON = 19
KPF_NOPAGE = 20
KPF_KSM = 21
KPF_THP = 22
KPF_OFFLINE = 23
KPF_ZERO_PAGE = 24
KPF_IDLE = 25
KPF_PGTABLE = 26
KPF_RESERVED = 32
KPF_MLOCKED = 33
KPF_OWNER_2 = 34
KPF_PRIVATE = 35
KPF_PRIVATE_2 = 36
KPF_OWNER_PRIVATE = 37
KPF_ARCH = 38
KPF_UNCACHED = 39
KPF_SOFTDIRTY = 40
KPF_ARCH_2 = 41

KPMSIZE = 8

# kpf_copy_bit() pairs: (KPF bit, folio flag).
_COPY = ((KPF_LOCKED, PG_locked), (KPF_DIRTY, PG_dirty), (KPF_UPTODATE, PG_uptodate),
         (KPF_LRU, PG_lru), (KPF_REFERENCED, PG_referenced), (KPF_ACTIVE, PG_active),
         (KPF_RECLAIM, PG_reclaim), (KPF_SWAPBACKED, PG_swapbacked),
         (KPF_UNEVICTABLE, PG_unevictable), (KPF_MLOCKED, PG_mlocked),
         (KPF_RESERVED, PG_reserved), (KPF_OWNER_2, PG_anon_exclusive),
         (KPF_PRIVATE, PG_private))


def _heads(k, lo: int, hi: int, flags: np.ndarray) -> np.ndarray:
    """The folio head PFN of every frame in [lo, hi) (page_folio())."""
    heads = np.arange(lo, hi, dtype=np.int64)
    tail = (flags & PG_tail) != 0
    if not tail.any():
        return heads
    # Each tail takes the nearest non-tail frame below it (one pass: a 1 GiB hugetlb
    # folio has 262143 tails); a run of tails at lo continues a folio that starts below.
    first = lo
    mf = k.mem.flags
    while first > 0 and mf[first] & PG_tail:
        first -= 1
    marks = np.where(tail, np.int64(first), heads)
    return np.maximum.accumulate(marks)


def _deferred_heads(k, lo: int, hi: int):
    """Frames in [lo, hi) that head a never-initialised free block."""
    from vmsim.fs.proc.vmstat import buddy_order_at
    from vmsim.mm.page_alloc import _deferred_free_ranges
    out = []
    big = 1 << MAX_PAGE_ORDER
    for z in k.page_alloc.zones:
        for s, e in _deferred_free_ranges(z):
            pfn = s
            while pfn < e and pfn < hi:
                o = buddy_order_at(pfn, e)
                if o == MAX_PAGE_ORDER and pfn + big <= lo:
                    pfn += max((lo - pfn) // big, 1) * big      # skip whole blocks below lo
                    continue
                if pfn >= lo:
                    out.append(pfn)
                pfn += 1 << o
    return out


def stable_page_flags_range(k, lo: int, hi: int) -> np.ndarray:
    """stable_page_flags() for every PFN in [lo, hi), as uint64."""
    mem = k.mem
    pf = mem.np_flags[lo:hi]
    heads = _heads(k, lo, hi, pf)
    hf = mem.np_flags[heads].astype(np.uint64)
    u = np.zeros(hi - lo, dtype=np.uint64)
    one = np.uint64(1)

    def setbit(mask, bit):
        u[mask] |= one << np.uint64(bit)

    # folio_mapped(): any page of the folio mapped (a large folio's _large_mapcount,
    # PMD mappings included); for order-0 folios, this page.
    mapped = mem.np_mapcount[lo:hi] > 0
    large = (hf & np.uint64(PG_head)) != 0
    if large.any():
        mapped[large] = mem.np_mapping[heads[large] + 1] > 0
    is_table = (pf & (PGTY_table | PGTY_buddy)) != 0
    setbit(mapped & ~is_table, KPF_MMAP)
    anon = (hf & np.uint64(PG_anon)) != 0
    setbit(anon, KPF_ANON)
    tail = (pf & PG_tail) != 0
    setbit(~tail & ((pf & PG_head) != 0), KPF_COMPOUND_HEAD)
    setbit(tail, KPF_COMPOUND_TAIL)
    setbit(large & ((hf & np.uint64(PG_large_rmappable)) != 0), KPF_THP)
    pfns = np.arange(lo, hi)
    setbit(pfns == k.zero_pfn, KPF_ZERO_PAGE)
    hz = getattr(k, "huge_zero_pfn", -1)
    if hz >= 0:
        hzm = (pfns >= hz) & (pfns < hz + 512)
        setbit(hzm, KPF_ZERO_PAGE)
        setbit(hzm, KPF_THP)
    setbit((pf & PGTY_buddy) != 0, KPF_BUDDY)
    setbit((pf & PGTY_table) != 0, KPF_PGTABLE)
    for kbit, pg in _COPY:
        setbit((hf & np.uint64(pg)) != 0, kbit)
    for p in _deferred_heads(k, lo, hi):
        u[p - lo] |= one << np.uint64(KPF_BUDDY)
    # folio_test_hugetlb(): KPF_HUGE; a hugetlb folio is mapped whole (entire mapcount),
    # so folio_mapped() marks every page of it KPF_MMAP.
    hug = (hf & np.uint64(PGTY_hugetlb)) != 0
    if hug.any():
        setbit(hug, KPF_HUGE)
        ent = np.zeros(hi - lo, dtype=np.int64)
        ent[hug] = mem.np_lru_prev[heads[hug] + 1]
        setbit(hug & (ent > 0), KPF_MMAP)
    return u


def _range(k, offset: int, count: int):
    """kpage_read()'s checks: aligned position and count, clipped at max_pfn."""
    max_pfn = k.nr_pages
    if count is None or count < 0:
        count = max(max_pfn * KPMSIZE - offset, 0)      # read to the end of the file
    if offset % KPMSIZE or count % KPMSIZE:
        return -errno.EINVAL
    lo = offset // KPMSIZE
    if lo >= max_pfn:
        return lo, lo
    return lo, min(max_pfn, lo + count // KPMSIZE)


def kpageflags_read(k, offset: int, count: int):
    """kpageflags_read(): bytes of u64 KPF_* words, or -EINVAL."""
    r = _range(k, offset, count)
    if isinstance(r, int):
        return r
    lo, hi = r
    if lo >= hi:
        return b""
    return stable_page_flags_range(k, lo, hi).astype("<u8").tobytes()


def kpagecount_read(k, offset: int, count: int):
    """kpagecount_read(): each frame's precise mapcount (0 for typed pages), or -EINVAL."""
    r = _range(k, offset, count)
    if isinstance(r, int):
        return r
    lo, hi = r
    if lo >= hi:
        return b""
    mem = k.mem
    mc = mem.np_mapcount[lo:hi].astype(np.int64)
    typed = (mem.np_flags[lo:hi] & (PGTY_table | PGTY_buddy)) != 0
    mc[typed | (mc < 0)] = 0
    # folio_precise_page_mapcount(): a hugetlb folio is only mapped whole, so each of
    # its pages counts the entire mapcount (page[1] holds that count: mm/folio.py).
    pf = mem.np_flags[lo:hi]
    if ((pf & (PG_tail | PGTY_hugetlb)) != 0).any():
        heads = _heads(k, lo, hi, pf)
        hug = (mem.np_flags[heads] & PGTY_hugetlb) != 0
        mc[hug] = mem.np_lru_prev[heads[hug] + 1]
    return mc.astype("<u8").tobytes()
