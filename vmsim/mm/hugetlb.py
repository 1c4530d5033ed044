"""hugetlbfs (mm/hugetlb.c, fs/hugetlbfs/inode.c, mm/hugetlb_vmemmap.c not modelled).

Two page sizes, as on x86-64 with X86_FEATURE_GBPAGES: 2 MiB (order 9, from the
buddy allocator, the default hstate) and 1 GiB (order 18, gigantic: more than the
buddy's MAX_PAGE_ORDER, so allocated with alloc_contig_pages() from a free, aligned,
contiguous range of one zone). Each size has its hstate with the pool counters the
kernel keeps (nr_huge_pages, free_huge_pages, resv_huge_pages, surplus_huge_pages,
nr_overcommit_huge_pages) and a free list; /proc/sys/vm/nr_hugepages,
nr_overcommit_hugepages and /sys/kernel/mm/hugepages/hugepages-<size>kB/* read and
resize them (set_max_huge_pages), /proc/meminfo shows them
(hugetlb_report_meminfo).

mmap(MAP_ANONYMOUS | MAP_HUGETLB [| MAP_HUGE_2MB / MAP_HUGE_1GB]) goes, as in
ksys_mmap_pgoff(), through an unlinked file of the internal hugetlbfs mount
(hugetlb_file_setup, "/anon_hugepage (deleted)" in maps): hugetlbfs_file_mmap()
reserves the pages (hugetlb_reserve_pages: ENOMEM when the pool cannot cover the
mapping, none with MAP_NORESERVE), hugetlb_get_unmapped_area() places it on a
huge-page boundary. Faults go to hugetlb_fault() (the seed's section 2): the huge
PTE is a PMD (2 MiB) or a PUD (1 GiB) entry with _PAGE_PSE, found by huge_pte_alloc()
(huge_pmd_share() for shared mappings spanning an aligned PUD range), filled by
hugetlb_no_page() and copied on write by hugetlb_wp() (the seed's hugetlb_cow).

Folio state: the head page carries PG_head, the order and PGTY_hugetlb; the
hugetlb-specific folio flags the kernel keeps in folio->private (HPG_*) live in
page[2].mapping, since the head's private word holds the page data handle here.
Hugetlb pages are counted in mm->hugetlb_usage (HugetlbPages in status), never in
RSS, and mapped as whole folios (entire mapcount).

hugetlbfs files (the /dev/hugepages mount, memfd_create(MFD_HUGETLB)) and the
internal mounts are vmsim/fs/hugetlbfs.py; the anonymous MAP_HUGETLB file is one of
them; SysV SHM_HUGETLB segments (vmsim/ipc/shm.py) too. Not modelled: subpools (the internal mount has no size
limits, so hugepage_subpool_get_pages() returns its argument), cgroups, NUMA nodes
(one node 0), vmemmap optimisation (off by default on this kernel), demotion,
migration and memory failure, userfaultfd.
"""
import errno

import numpy as np

from vmsim.arch.x86 import pgtable_types as T
from vmsim.mm.mm_types import (VM_MAYSHARE, VM_SHARED, VM_WRITE, VM_NORESERVE, VM_HUGETLB,
                               VM_DONTEXPAND, VM_LOCKED_MASK, FAULT_FLAG_WRITE,
                               FAULT_FLAG_UNSHARE, VM_FAULT_OOM, VM_FAULT_SIGBUS)
from vmsim.mm.page_alloc import (GFP_HIGHUSER, GFP_HIGHUSER_MOVABLE, __GFP_COMP, __GFP_NOWARN,
                                 __GFP_RETRY_MAYFAIL, __GFP_THISNODE, MAX_PAGE_ORDER)
from vmsim.mm.page_flags import (PG_head, PG_tail, PG_ORDER_MASK, PG_ORDER_SHIFT, PG_anon,
                                 PG_anon_exclusive, PG_dirty, PG_uptodate, PGTY_hugetlb)
from vmsim.mm import vmstat
from vmsim.fs.hugetlbfs import (HUGETLBFS_DEV, hugetlb_file_setup, is_file_hugepages,  # noqa: F401
                                remove_inode_hugepages, hugetlbfs_file_mmap,
                                hugetlb_get_unmapped_area)

HPAGE_RESV_OWNER = 1 << 0
HPAGE_RESV_UNMAPPED = 1 << 1
# enum hugetlb_page_flags (folio->private bits), kept in page[2].mapping.
HPG_restore_reserve = 1 << 0
HPG_migratable = 1 << 1
HPG_temporary = 1 << 2
HPG_freed = 1 << 3
MAP_HUGE_SHIFT = 26
MAP_HUGE_MASK = 0x3F
PUD_SIZE = T.PUD_SIZE
PMD_SIZE = T.PMD_SIZE
_PFN = T.PTE_PFN_MASK


class hstate:
    """struct hstate: one huge page size and its pool (single node)."""

    def __init__(self, k, order: int):
        self.k = k
        self.order = order
        self.name = "hugepages-%dkB" % (4 << order)
        self.nr_huge_pages = 0
        self.free_huge_pages = 0
        self.resv_huge_pages = 0
        self.surplus_huge_pages = 0
        self.nr_overcommit_huge_pages = 0
        self.max_huge_pages = 0
        self.hugepage_freelists = []        # free folios (head PFNs), list_move order
        self.hugepage_activelist = []       # folios in use

    def huge_page_size(self) -> int:
        return 4096 << self.order

    def huge_page_mask(self) -> int:
        return ~(self.huge_page_size() - 1)

    def pages_per_huge_page(self) -> int:
        return 1 << self.order

    def hstate_is_gigantic(self) -> bool:
        return self.order > MAX_PAGE_ORDER

    def __repr__(self):
        return (f"<hstate {self.name} nr={self.nr_huge_pages} free={self.free_huge_pages} "
                f"resv={self.resv_huge_pages} surp={self.surplus_huge_pages}>")


def hugetlb_init(k):
    """hugetlb_init() / hugetlb_add_hstate(): the 2 MiB (default) and 1 GiB hstates."""
    k.hstates = [hstate(k, 9), hstate(k, 18)]
    k.hstate = k.hstates[0]                   # default_hstate (default_hugepagesz)


def size_to_hstate(k, size: int):
    """size_to_hstate(): the hstate of ``size`` bytes, or None."""
    for h in k.hstates:
        if h.huge_page_size() == size:
            return h
    return None


def hstate_sizelog(k, page_size_log: int):
    """hstate_sizelog(): 0 means the default size; else 1 << log bytes, or None."""
    if not page_size_log:
        return k.hstate
    if page_size_log >= 64:
        return None
    return size_to_hstate(k, 1 << page_size_log)


def hstate_vma(vma):
    """hstate_vma() -> hstate_file(): the hstate of the VMA's hugetlbfs inode."""
    return vma.vm_file.f_inode.hstate


def hugetlb_total_pages(k) -> int:
    """hugetlb_total_pages(): base pages in all pools (CommitLimit leaves them out)."""
    return sum(h.nr_huge_pages << h.order for h in getattr(k, "hstates", ()))


def persistent_huge_pages(h) -> int:
    return h.nr_huge_pages - h.surplus_huge_pages


def available_huge_pages(h) -> int:
    return h.free_huge_pages - h.resv_huge_pages


def htlb_alloc_mask(h) -> int:
    """htlb_alloc_mask(): movable unless gigantic (hugepage_movable_supported)."""
    gfp = __GFP_COMP | __GFP_NOWARN
    return gfp | (GFP_HIGHUSER if h.hstate_is_gigantic() else GFP_HIGHUSER_MOVABLE)


# --- hugetlb folio flags -------------------------------------------------------------
def _hpg(k, folio: int) -> int:
    return k.mem.mapping[folio + 2]


def _hpg_set(k, folio: int, bit: int):
    k.mem.mapping[folio + 2] = k.mem.mapping[folio + 2] | bit


def _hpg_clear(k, folio: int, bit: int):
    k.mem.mapping[folio + 2] = k.mem.mapping[folio + 2] & ~bit


def folio_test_hugetlb(k, pfn: int) -> bool:
    return bool(k.mem.flags[pfn] & PGTY_hugetlb)


def folio_hstate(k, folio: int):
    """folio_hstate(): the hstate of a hugetlb folio, by its order."""
    order = (k.mem.flags[folio] & PG_ORDER_MASK) >> PG_ORDER_SHIFT
    for h in k.hstates:
        if h.order == order:
            return h
    raise AssertionError(f"hugetlb folio {folio:#x} of unknown order {order}")


# --- gigantic pages: alloc_contig_pages (mm/page_alloc.c) --------------------------------
def alloc_contig_pages(k, nr_pages: int, gfp: int) -> int:
    """alloc_contig_pages(): the first nr_pages-aligned range of one zone whose frames
    are all free, taken out of the buddy and per-CPU lists; its first PFN, or -1.

    The kernel's alloc_contig_range() also migrates movable pages out of the way;
    vmsim models no migration or compaction, so a range with any page in use fails
    (pfn_range_valid_contig() already refuses reserved and hugetlb pages)."""
    from vmsim.mm.page_alloc import gfp_zone
    pa = k.page_alloc
    for zone in pa._zonelists[gfp_zone(gfp)]:
        pfn = (zone.zone_start_pfn + nr_pages - 1) & ~(nr_pages - 1)
        while pfn + nr_pages - 1 < zone.zone_end_pfn:             # zone_spans_last_pfn
            if _contig_range_free(pa, zone, pfn, nr_pages):
                _isolate_freepages_range(pa, zone, pfn, nr_pages)
                return pfn
            pfn += nr_pages
    return -1


def _pcp_blocks(pa, zone):
    """{head pfn: (pcp, pindex, order)} of the zone's per-CPU lists."""
    from vmsim.mm.page_alloc import pindex_to_order
    out = {}
    for pcp in zone.pcp:
        for i, lst in enumerate(pcp.lists):
            o = pindex_to_order(i)
            for p in lst:
                out[p] = (pcp, i, o)
    return out


def _contig_range_free(pa, zone, start: int, n: int) -> bool:
    """Whether every frame of [start, start + n) is free (buddy, pcp or never used)."""
    from vmsim.mm.page_flags import PGTY_buddy
    flags = pa.mem.flags
    end = start + n
    if any(lo < end and hi > start for lo, hi in pa.reserved) or start < 256:
        return False
    pcp = None
    pfn = start
    while pfn < end:
        if pfn >= zone.deferred_pfn:
            return not any(lo < end and hi > pfn for lo, hi in zone.deferred_reserved)
        f = flags[pfn]
        if f & PGTY_buddy:
            pfn += 1 << ((f & PG_ORDER_MASK) >> PG_ORDER_SHIFT)
            continue
        if pcp is None:
            pcp = _pcp_blocks(pa, zone)
        blk = pcp.get(pfn)
        if blk is None:
            return False
        pfn += 1 << blk[2]
    return True


def _isolate_freepages_range(pa, zone, start: int, n: int):
    """isolate_freepages_range() after drain_all_pages(): take the free blocks of
    [start, start + n) off their lists; the range becomes one allocated run."""
    from vmsim.mm.page_flags import PGTY_buddy
    end = start + n
    while zone.deferred_pfn < end and pa._grow_zone(zone):
        pass
    flags = pa.mem.flags
    pcp = _pcp_blocks(pa, zone)
    pfn = start
    while pfn < end:
        f = flags[pfn]
        if f & PGTY_buddy:
            order = (f & PG_ORDER_MASK) >> PG_ORDER_SHIFT
            pa._del_from_free_list(zone, pfn, order, pa.pageblock_mt_mv[pfn >> 9])
        else:
            p, pindex, order = pcp[pfn]
            pa._pcp_del(zone, p, pindex, pfn)
        pfn += 1 << order
    zone.free_pages -= n
    pa.mem.refcount[start] = 1


def free_contig_range(k, pfn: int, nr_pages: int):
    """free_contig_range() of a gigantic folio: its frames go back to the buddy, in
    MAX_PAGE_ORDER blocks (as __free_pages_core() hands memory to it)."""
    pa = k.page_alloc
    zone = pa._zone_of(pfn)
    mem = pa.mem
    mem.np_flags[pfn:pfn + nr_pages] = 0
    mem.np_refcount[pfn:pfn + nr_pages] = 0
    blk = 1 << MAX_PAGE_ORDER
    for p in range(pfn, pfn + nr_pages, blk):
        pa._PageAllocator__free_one_page(zone, p, MAX_PAGE_ORDER, pa.pageblock_mt_mv[p >> 9])
    zone.free_pages += nr_pages
    pa.pgfree += nr_pages


# --- pool allocation ---------------------------------------------------------------------
def _prep_compound(k, pfn: int, order: int):
    """prep_compound_page() for a hugetlb folio (numpy over the tails)."""
    mem = k.mem
    n = 1 << order
    mem.np_flags[pfn + 1:pfn + n] = PG_tail
    mem.np_mapcount[pfn:pfn + n] = 0
    mem.lru_prev[pfn + 1] = 0                        # _entire_mapcount
    mem.np_refcount[pfn + 1:pfn + n] = 0
    mem.np_mapping[pfn:pfn + n] = 0
    mem.np_index[pfn + 1:pfn + n] = 0
    mem.flags[pfn] = PG_head | (order << PG_ORDER_SHIFT)


def alloc_gigantic_folio(h, gfp: int) -> int:
    """alloc_gigantic_folio() -> folio_alloc_gigantic(): a contiguous range, frozen."""
    k = h.k
    pfn = alloc_contig_pages(k, 1 << h.order, gfp)
    if pfn < 0:
        return -1
    _prep_compound(k, pfn, h.order)
    k.mem.refcount[pfn] = 0                          # folio_ref_freeze(folio, 1)
    return pfn


def alloc_buddy_hugetlb_folio(h, gfp: int) -> int:
    """alloc_buddy_hugetlb_folio(): an order-9 buddy block (frozen), counting
    htlb_buddy_alloc_success / htlb_buddy_alloc_fail."""
    k = h.k
    pfn = k.page_alloc.alloc_pages(gfp | __GFP_RETRY_MAYFAIL, h.order, k._current_cpu())
    if pfn < 0:
        k.vmstat[vmstat.HTLB_BUDDY_ALLOC_FAIL] += 1
        return -1
    k.vmstat[vmstat.HTLB_BUDDY_ALLOC_SUCCESS] += 1
    _prep_compound(k, pfn, h.order)
    k.mem.refcount[pfn] = 0                          # __alloc_frozen_pages()
    return pfn


def only_alloc_fresh_hugetlb_folio(h, gfp: int) -> int:
    """only_alloc_fresh_hugetlb_folio(): gigantic or buddy, then init_new_hugetlb_folio."""
    if h.hstate_is_gigantic():
        pfn = alloc_gigantic_folio(h, gfp)
    else:
        pfn = alloc_buddy_hugetlb_folio(h, gfp)
    if pfn >= 0:
        init_new_hugetlb_folio(h.k, pfn)
    return pfn


alloc_fresh_hugetlb_folio = only_alloc_fresh_hugetlb_folio


def init_new_hugetlb_folio(k, pfn: int):
    """init_new_hugetlb_folio(): __folio_set_hugetlb, no subpool, no flags."""
    k.mem.flags[pfn] = k.mem.flags[pfn] | PGTY_hugetlb
    k.mem.mapping[pfn + 2] = 0


def account_new_hugetlb_folio(h, pfn: int):
    h.nr_huge_pages += 1


def enqueue_hugetlb_folio(h, pfn: int):
    """enqueue_hugetlb_folio(): onto the head of the free list (list_move; refcount
    0), so the folio freed last is the first dequeued (the reference machine's
    hugetlb_memfd_shared scenario refaults a punched page into the same frame)."""
    k = h.k
    assert k.mem.refcount[pfn] == 0, f"VM_BUG_ON_FOLIO: enqueue of a used folio {pfn:#x}"
    if pfn in h.hugepage_activelist:
        h.hugepage_activelist.remove(pfn)
    h.hugepage_freelists.insert(0, pfn)
    h.free_huge_pages += 1
    _hpg_set(k, pfn, HPG_freed)


def dequeue_hugetlb_folio_node_exact(h) -> int:
    """dequeue_hugetlb_folio_node_exact(): the first free folio, now in use (ref 1)."""
    if not h.hugepage_freelists:
        return -1
    k = h.k
    pfn = h.hugepage_freelists.pop(0)
    h.hugepage_activelist.append(pfn)
    k.mem.refcount[pfn] = 1                          # folio_ref_unfreeze(folio, 1)
    _hpg_clear(k, pfn, HPG_freed)
    h.free_huge_pages -= 1
    return pfn


def dequeue_hugetlb_folio_vma(h, vma, address: int, gbl_chg: int) -> int:
    """dequeue_hugetlb_folio_vma(): a page not reserved before needs one not reserved
    for anybody else (available_huge_pages)."""
    if gbl_chg and not available_huge_pages(h):
        return -1
    return dequeue_hugetlb_folio_node_exact(h)


def remove_hugetlb_folio(h, pfn: int, adjust_surplus: bool):
    """remove_hugetlb_folio(): off the pool's lists and counts."""
    k = h.k
    if pfn in h.hugepage_freelists:
        h.hugepage_freelists.remove(pfn)
    elif pfn in h.hugepage_activelist:
        h.hugepage_activelist.remove(pfn)
    if _hpg(k, pfn) & HPG_freed:
        _hpg_clear(k, pfn, HPG_freed)
        h.free_huge_pages -= 1
    if adjust_surplus:
        h.surplus_huge_pages -= 1
    k.mem.flags[pfn] = k.mem.flags[pfn] & ~PGTY_hugetlb           # __folio_clear_hugetlb
    h.nr_huge_pages -= 1


def update_and_free_hugetlb_folio(h, pfn: int):
    """update_and_free_hugetlb_folio() -> hugetlb_free_folio(): back to the buddy
    (free_contig_range for gigantic folios). The data goes with the frames."""
    k = h.k
    _folio_clear_data(k, pfn, 1 << h.order)
    mem = k.mem
    n = 1 << h.order
    mem.np_mapping[pfn:pfn + n] = 0
    mem.np_mapcount[pfn:pfn + n] = 0
    mem.lru_prev[pfn + 1] = 0
    if h.hstate_is_gigantic():
        free_contig_range(k, pfn, n)
        return
    mem.np_flags[pfn + 1:pfn + n] = 0
    mem.flags[pfn] = 0
    mem.index[pfn] = 0
    mem.refcount[pfn] = 0
    k.page_alloc.free_frozen_pages(pfn, h.order, k._current_cpu())


def free_huge_folio(k, pfn: int):
    """free_huge_folio(): the last reference is gone: restore the reservation if the
    allocation consumed one, then free the page to the pool, or to the buddy when it
    was surplus or temporary."""
    h = folio_hstate(k, pfn)
    mem = k.mem
    assert mem.refcount[pfn] == 0 and mem.lru_prev[pfn + 1] == 0, \
        f"VM_BUG_ON_FOLIO: free_huge_folio of a used folio {pfn:#x}"
    mem.flags[pfn] = mem.flags[pfn] & ~(PG_anon | PG_anon_exclusive | PG_dirty | PG_uptodate)
    mem.mapping[pfn] = 0
    mem.index[pfn] = 0
    restore_reserve = bool(_hpg(k, pfn) & HPG_restore_reserve)
    _hpg_clear(k, pfn, HPG_restore_reserve | HPG_migratable)
    # hugepage_subpool_put_pages() of the unlimited internal subpool returns 1.
    k.vmstat[vmstat.NR_HUGETLB] -= 1 << h.order
    if restore_reserve:
        h.resv_huge_pages += 1
    if _hpg(k, pfn) & HPG_temporary:
        remove_hugetlb_folio(h, pfn, False)
        update_and_free_hugetlb_folio(h, pfn)
    elif h.surplus_huge_pages:
        remove_hugetlb_folio(h, pfn, True)
        update_and_free_hugetlb_folio(h, pfn)
    else:
        enqueue_hugetlb_folio(h, pfn)


def alloc_pool_huge_folio(h) -> int:
    """alloc_pool_huge_folio(): a fresh folio for the pool (__GFP_THISNODE)."""
    return only_alloc_fresh_hugetlb_folio(h, htlb_alloc_mask(h) | __GFP_THISNODE)


def prep_and_add_allocated_folios(h, folios):
    for pfn in folios:
        account_new_hugetlb_folio(h, pfn)
        enqueue_hugetlb_folio(h, pfn)


def remove_pool_hugetlb_folio(h, acct_surplus: bool) -> int:
    """remove_pool_hugetlb_folio(): take a free folio out of the pool (the caller
    frees it); -1 if none."""
    if (not acct_surplus or h.surplus_huge_pages) and h.hugepage_freelists:
        pfn = h.hugepage_freelists[0]
        remove_hugetlb_folio(h, pfn, acct_surplus)
        return pfn
    return -1


def alloc_surplus_hugetlb_folio(h, gfp: int) -> int:
    """alloc_surplus_hugetlb_folio(): a buddy folio beyond the pool, within
    nr_overcommit_hugepages (never gigantic); in use (ref 1) or -1."""
    if h.hstate_is_gigantic():
        return -1
    if h.surplus_huge_pages >= h.nr_overcommit_huge_pages:
        return -1
    pfn = alloc_fresh_hugetlb_folio(h, gfp)
    if pfn < 0:
        return -1
    account_new_hugetlb_folio(h, pfn)
    h.surplus_huge_pages += 1
    h.k.mem.refcount[pfn] = 1                   # alloc_fresh: ref 1 once accounted
    h.hugepage_activelist.append(pfn)
    return pfn


def alloc_buddy_hugetlb_folio_with_mpol(h, vma, address: int) -> int:
    return alloc_surplus_hugetlb_folio(h, htlb_alloc_mask(h))


def gather_surplus_pages(h, delta: int) -> int:
    """gather_surplus_pages(): make free pages cover resv + delta, allocating surplus
    pages as overcommit allows; 0 or -ENOMEM."""
    needed = (h.resv_huge_pages + delta) - h.free_huge_pages
    if needed <= 0:
        h.resv_huge_pages += delta
        return 0
    allocated = 0
    surplus_list = []
    ret = -errno.ENOMEM
    while True:
        alloc_ok = True
        for _ in range(needed):
            pfn = alloc_surplus_hugetlb_folio(h, htlb_alloc_mask(h))
            if pfn < 0:
                alloc_ok = False
                break
            surplus_list.append(pfn)
        allocated = len(surplus_list)
        needed = (h.resv_huge_pages + delta) - (h.free_huge_pages + allocated)
        if needed > 0:
            if alloc_ok:
                continue
            break
        needed += allocated
        h.resv_huge_pages += delta
        ret = 0
        kept = []
        for pfn in surplus_list:
            needed -= 1
            if needed < 0:
                break
            h.k.mem.refcount[pfn] = 0               # folio_ref_freeze
            enqueue_hugetlb_folio(h, pfn)
            kept.append(pfn)
        surplus_list = [p for p in surplus_list if p not in kept]
        break
    for pfn in surplus_list:                         # free: the unused ones
        h.k.mem.refcount[pfn] = 0
        free_huge_folio(h.k, pfn)
    return ret


def return_unused_surplus_pages(h, unused_resv_pages: int):
    """return_unused_surplus_pages(): drop the reservation and free surplus pages."""
    h.resv_huge_pages -= unused_resv_pages
    nr_pages = min(unused_resv_pages, h.surplus_huge_pages)
    freed = []
    while nr_pages:
        nr_pages -= 1
        pfn = remove_pool_hugetlb_folio(h, True)
        if pfn < 0:
            break
        freed.append(pfn)
    for pfn in freed:
        update_and_free_hugetlb_folio(h, pfn)


def allowed_mems_nr(h) -> int:
    """allowed_mems_nr(): free huge pages on the allowed nodes (the one node)."""
    return h.free_huge_pages


def hugetlb_acct_memory(h, delta: int) -> int:
    """hugetlb_acct_memory(): reserve (delta > 0) or release pool pages; 0 / -ENOMEM."""
    if not delta:
        return 0
    if delta > 0:
        if gather_surplus_pages(h, delta) < 0:
            return -errno.ENOMEM
        if delta > allowed_mems_nr(h):
            return_unused_surplus_pages(h, delta)
            return -errno.ENOMEM
    if delta < 0:
        return_unused_surplus_pages(h, -delta)
    return 0


def adjust_pool_surplus(h, delta: int) -> int:
    """adjust_pool_surplus(): count one page more or less as surplus."""
    if delta < 0:
        if not h.surplus_huge_pages:
            return 0
    elif h.surplus_huge_pages >= h.nr_huge_pages:
        return 0
    h.surplus_huge_pages += delta
    return 1


def set_max_huge_pages(h, count: int) -> int:
    """set_max_huge_pages(): grow the persistent pool (turning surplus pages into
    persistent ones first), or shrink it down to what is reserved or in use, the rest
    becoming surplus. Allocation failures stop the growth quietly, as the kernel's."""
    while h.surplus_huge_pages and count > persistent_huge_pages(h):
        if not adjust_pool_surplus(h, -1):
            break
    allocated = []
    while count > persistent_huge_pages(h) + len(allocated):
        pfn = alloc_pool_huge_folio(h)
        if pfn < 0:
            break
        allocated.append(pfn)
    prep_and_add_allocated_folios(h, allocated)
    if not allocated or count <= persistent_huge_pages(h):
        persistent_free_count = h.free_huge_pages
        if h.free_huge_pages > persistent_huge_pages(h):
            if h.free_huge_pages > h.surplus_huge_pages:
                persistent_free_count -= h.surplus_huge_pages
            else:
                persistent_free_count = 0
        min_count = h.resv_huge_pages + persistent_huge_pages(h) - persistent_free_count
        min_count = max(count, min_count)
        freed = []
        while min_count < persistent_huge_pages(h):
            pfn = remove_pool_hugetlb_folio(h, False)
            if pfn < 0:
                break
            freed.append(pfn)
        for pfn in freed:
            update_and_free_hugetlb_folio(h, pfn)
        while count < persistent_huge_pages(h):
            if not adjust_pool_surplus(h, 1):
                break
    h.max_huge_pages = persistent_huge_pages(h)
    return 0


# --- /proc/sys/vm and /sys/kernel/mm/hugepages -------------------------------------------
SYSCTL_NR_HUGEPAGES = "/proc/sys/vm/nr_hugepages"
SYSCTL_NR_HUGEPAGES_MEMPOLICY = "/proc/sys/vm/nr_hugepages_mempolicy"
SYSCTL_NR_OVERCOMMIT = "/proc/sys/vm/nr_overcommit_hugepages"
HUGEPAGES_DIR = "/sys/kernel/mm/hugepages/"
_SYSFS_FILES = ("nr_hugepages", "nr_hugepages_mempolicy", "nr_overcommit_hugepages",
                "free_hugepages", "resv_hugepages", "surplus_hugepages")
_READ_ONLY = ("free_hugepages", "resv_hugepages", "surplus_hugepages")


def _knob(k, path: str):
    """(hstate, attribute) for a hugetlb sysctl / sysfs path, else None."""
    if path in (SYSCTL_NR_HUGEPAGES, SYSCTL_NR_HUGEPAGES_MEMPOLICY):
        return k.hstate, "nr_hugepages"
    if path == SYSCTL_NR_OVERCOMMIT:
        return k.hstate, "sysctl_overcommit"
    if path.startswith(HUGEPAGES_DIR):
        parts = path[len(HUGEPAGES_DIR):].split("/")
        if len(parts) == 2 and parts[1] in _SYSFS_FILES:
            for h in k.hstates:
                if h.name == parts[0]:
                    return h, parts[1]
    return None


def _is_knob(k, path: str) -> bool:
    return _knob(k, path) is not None


def knob_read(k, path: str) -> str:
    """nr_hugepages_show() and friends; the sysctls show the default hstate."""
    h, attr = _knob(k, path)
    val = {"nr_hugepages": h.nr_huge_pages, "nr_hugepages_mempolicy": h.nr_huge_pages,
           "nr_overcommit_hugepages": h.nr_overcommit_huge_pages,
           "sysctl_overcommit": h.nr_overcommit_huge_pages,
           "free_hugepages": h.free_huge_pages, "resv_hugepages": h.resv_huge_pages,
           "surplus_hugepages": h.surplus_huge_pages}[attr]
    return "%d\n" % val


def _kstrtoul(buf: str):
    """kstrtoul(buf, 10): (0, value), or (-EINVAL / -ERANGE, 0)."""
    import re
    s = buf[:-1] if buf.endswith("\n") else buf
    if not re.fullmatch(r"\+?[0-9]+", s):
        return -errno.EINVAL, 0
    v = int(s)
    if v >= 1 << 64:
        return -errno.ERANGE, 0
    return 0, v


def _proc_doulongvec(buf: str):
    """proc_doulongvec_minmax() for one value: blanks, an unsigned number in C syntax
    (strtoul base 0: 0x hex, 0 octal; no sign), blanks; (0, v) or (-EINVAL, 0); a
    write of only blanks stores nothing (1, 0)."""
    import re
    if not buf.strip():
        return 1, 0
    m = re.fullmatch(r"\s*(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\s*", buf)
    if not m:
        return -errno.EINVAL, 0
    t = m.group(1)
    v = int(t, 16) if t[:2].lower() == "0x" else int(t, 8) if t.startswith("0") else int(t)
    if v >= 1 << 64:
        return -errno.EINVAL, 0
    return 0, v


def knob_write(k, path: str, data: str) -> int:
    """The store handlers: hugetlb_sysctl_handler / hugetlb_overcommit_handler (the
    default hstate), nr_hugepages_store_common / nr_overcommit_hugepages_store (one
    size); read-only attributes (0444) refuse the open with EACCES."""
    h, attr = _knob(k, path)
    n = len(data)
    if path.startswith("/proc/sys/"):
        if attr == "sysctl_overcommit" and h.hstate_is_gigantic():
            return -errno.EINVAL
        err, val = _proc_doulongvec(data)
        if err < 0:
            return err
        if err == 1:
            return n
        if attr == "sysctl_overcommit":
            h.nr_overcommit_huge_pages = val
            return n
        return __nr_hugepages_store_common(h, val, n)
    if attr in _READ_ONLY:
        return -errno.EACCES
    if not n:
        return 0                          # kernfs calls no ->store for an empty write
    if attr == "nr_overcommit_hugepages":
        if h.hstate_is_gigantic():
            return -errno.EINVAL
        err, val = _kstrtoul(data)
        if err:
            return err
        h.nr_overcommit_huge_pages = val
        return n
    err, val = _kstrtoul(data)
    if err:
        return err
    return __nr_hugepages_store_common(h, val, n)


def __nr_hugepages_store_common(h, count: int, length: int) -> int:
    err = set_max_huge_pages(h, count)
    return err if err else length


def hugetlb_report_meminfo(k) -> str:
    """hugetlb_report_meminfo(): the default size's counters, and Hugetlb for all."""
    total = 0
    out = ""
    for h in k.hstates:
        total += h.huge_page_size() * h.nr_huge_pages
        if h is k.hstate:
            out = ("HugePages_Total:   %5d\nHugePages_Free:    %5d\nHugePages_Rsvd:    %5d\n"
                   "HugePages_Surp:    %5d\nHugepagesize:   %8d kB\n" % (
                       h.nr_huge_pages, h.free_huge_pages, h.resv_huge_pages,
                       h.surplus_huge_pages, h.huge_page_size() >> 10))
    return out + "Hugetlb:        %8d kB\n" % (total >> 10)


# --- reservation maps (struct resv_map) ------------------------------------------------
class resv_map:
    """struct resv_map: the huge-page indices with a reservation (shared: the inode's
    reserved pages; private: the pages the owner has instantiated). The kernel keeps
    coalesced file_region intervals; a set of indices holds the same information."""

    def __init__(self):
        self.regions = set()
        self.refs = 1

    def __repr__(self):
        return f"<resv_map {sorted(self.regions)}>"


def region_chg(resv, f: int, t: int) -> int:
    """region_chg(): how many of [f, t) have no entry yet."""
    return sum(1 for i in range(f, t) if i not in resv.regions)


def region_add(resv, f: int, t: int) -> int:
    """region_add(): add [f, t); return how many were new."""
    add = 0
    for i in range(f, t):
        if i not in resv.regions:
            resv.regions.add(i)
            add += 1
    return add


def region_del(resv, f: int, t: int) -> int:
    """region_del(): remove [f, t); return how many were there."""
    if t - f > len(resv.regions):
        gone = {i for i in resv.regions if f <= i < t}
    else:
        gone = {i for i in range(f, t) if i in resv.regions}
    resv.regions -= gone
    return len(gone)


def region_count(resv, f: int, t: int) -> int:
    return sum(1 for i in resv.regions if f <= i < t)


class _hugetlb_vma_lock:
    """struct hugetlb_vma_lock of a shared VMA (vm_private_data; PMD sharing needs it)."""
    __slots__ = ("vma",)

    def __init__(self, vma):
        self.vma = vma


class _vma_private:
    """vm_private_data of a private hugetlb VMA: the resv_map pointer and HPAGE_RESV_* bits."""
    __slots__ = ("resv", "flags")

    def __init__(self, resv, flags):
        self.resv = resv
        self.flags = flags


def vma_resv_map(vma):
    """vma_resv_map(): the inode's map (shared) or the owner's (private)."""
    if vma.vm_flags & VM_MAYSHARE:
        return vma.vm_file.f_inode.resv_map
    p = vma.vm_private_data
    return p.resv if isinstance(p, _vma_private) else None


def is_vma_resv_set(vma, flag: int) -> bool:
    p = vma.vm_private_data
    return isinstance(p, _vma_private) and bool(p.flags & flag)


def set_vma_resv_flags(vma, flags: int):
    p = vma.vm_private_data
    if isinstance(p, _vma_private):
        p.flags |= flags
    else:
        vma.vm_private_data = _vma_private(None, flags)


def __vma_private_lock(vma) -> bool:
    return not vma.vm_flags & VM_MAYSHARE and vma_resv_map(vma) is not None and \
        is_vma_resv_set(vma, HPAGE_RESV_OWNER)


def hugetlb_dup_vma_private(vma):
    """hugetlb_dup_vma_private(): a forked VMA owns no reservation (private) and no
    VMA lock of its own yet (shared)."""
    p = vma.vm_private_data
    if vma.vm_flags & VM_MAYSHARE:
        if isinstance(p, _hugetlb_vma_lock) and p.vma is not vma:
            vma.vm_private_data = None
    else:
        vma.vm_private_data = None


def vma_hugecache_offset(h, vma, address: int) -> int:
    return ((address - vma.vm_start) >> (12 + h.order)) + (vma.vm_pgoff >> h.order)


VMA_NEEDS_RESV, VMA_COMMIT_RESV, VMA_END_RESV, VMA_ADD_RESV, VMA_DEL_RESV = range(5)


def __vma_reservation_common(h, vma, addr: int, mode: int) -> int:
    """__vma_reservation_common(): shared maps count reserved pages, private maps
    instantiated ones, so the private result is inverted."""
    resv = vma_resv_map(vma)
    if resv is None:
        return 1
    idx = vma_hugecache_offset(h, vma, addr)
    if mode == VMA_NEEDS_RESV:
        ret = region_chg(resv, idx, idx + 1)
    elif mode == VMA_COMMIT_RESV:
        ret = region_add(resv, idx, idx + 1)
    elif mode == VMA_END_RESV:
        ret = 0
    elif mode == VMA_ADD_RESV:
        if vma.vm_flags & VM_MAYSHARE:
            ret = region_add(resv, idx, idx + 1)
        else:
            ret = region_del(resv, idx, idx + 1)
    else:
        if vma.vm_flags & VM_MAYSHARE:
            ret = region_del(resv, idx, idx + 1)
        else:
            ret = region_add(resv, idx, idx + 1)
    if vma.vm_flags & VM_MAYSHARE or mode == VMA_DEL_RESV:
        return ret
    if ret > 0:
        return 0
    if ret == 0:
        return 1
    return ret


def vma_needs_reservation(h, vma, addr):
    return __vma_reservation_common(h, vma, addr, VMA_NEEDS_RESV)


def vma_commit_reservation(h, vma, addr):
    return __vma_reservation_common(h, vma, addr, VMA_COMMIT_RESV)


def vma_end_reservation(h, vma, addr):
    __vma_reservation_common(h, vma, addr, VMA_END_RESV)


def vma_add_reservation(h, vma, addr):
    return __vma_reservation_common(h, vma, addr, VMA_ADD_RESV)


def restore_reserve_on_error(h, vma, address: int, folio: int):
    """restore_reserve_on_error(): undo the reservation bookkeeping of a folio that
    is freed before being mapped."""
    k = h.k
    rc = vma_needs_reservation(h, vma, address)
    if _hpg(k, folio) & HPG_restore_reserve:
        if rc < 0:
            _hpg_clear(k, folio, HPG_restore_reserve)
        elif rc:
            if vma_add_reservation(h, vma, address) < 0:
                _hpg_clear(k, folio, HPG_restore_reserve)
        else:
            vma_end_reservation(h, vma, address)
    else:
        if rc < 0:
            pass
        elif rc:
            vma_end_reservation(h, vma, address)
        else:
            rc = __vma_reservation_common(h, vma, address, VMA_DEL_RESV)
            if rc < 0:
                vma_end_reservation(h, vma, address)


def hugetlb_reserve_pages(inode, frm: int, to: int, vma, vm_flags: int) -> int:
    """hugetlb_reserve_pages(): reserve huge pages [frm, to) of the file at mmap time;
    the count reserved, or -ENOMEM when the pool cannot cover them."""
    h = inode.hstate
    if frm > to:
        return -errno.EINVAL
    hugetlb_vma_lock_alloc(vma)
    if vm_flags & VM_NORESERVE:
        return 0
    if vma is None or vma.vm_flags & VM_MAYSHARE:
        resv = inode.resv_map
        chg = region_chg(resv, frm, to)
    else:
        resv = resv_map()
        chg = to - frm
        vma.vm_private_data = _vma_private(resv, HPAGE_RESV_OWNER)   # set_vma_resv_map/flags
    gbl_reserve = chg                       # hugepage_subpool_get_pages(NULL-limits spool)
    if hugetlb_acct_memory(h, gbl_reserve) < 0:
        if vma is not None and is_vma_resv_set(vma, HPAGE_RESV_OWNER):
            vma.vm_private_data = None
        if vma is not None and vma.vm_flags & VM_MAYSHARE:
            vma.vm_private_data = None     # hugetlb_vma_lock_free
        return -errno.ENOMEM
    if vma is None or vma.vm_flags & VM_MAYSHARE:
        add = region_add(resv, frm, to)
        if chg > add:
            hugetlb_acct_memory(h, -(chg - add))
    return chg


def hugetlb_unreserve_pages(inode, start: int, end: int, freed: int):
    """hugetlb_unreserve_pages(): the inode's reservations beyond what was freed go,
    and i_blocks loses the freed pages."""
    h = inode.hstate
    chg = region_del(inode.resv_map, start, end)
    inode.i_blocks -= (h.huge_page_size() >> 9) * freed
    hugetlb_acct_memory(h, -(chg - freed))


def hugetlb_vma_lock_alloc(vma):
    """hugetlb_vma_lock_alloc(): only shared VMAs get one."""
    if vma is None or not vma.vm_flags & VM_MAYSHARE or vma.vm_private_data is not None:
        return
    vma.vm_private_data = _hugetlb_vma_lock(vma)


# --- hugetlbfs files (vmsim/fs/hugetlbfs.py), vm_ops ---------------------------------------
def huge_page_mask_align(file) -> int:
    """huge_page_mask_align(): the align_mask vm_unmapped_area() uses for the file."""
    return ~0xFFF & (file.f_inode.hstate.huge_page_size() - 1)


class _HugetlbVmOps:
    """hugetlb_vm_ops: open / close / may_split / pagesize; ->fault is never called."""
    name = "hugetlb_vm_ops"

    @staticmethod
    def open(vma):
        hugetlb_vm_op_open(vma)

    @staticmethod
    def close(vma):
        hugetlb_vm_op_close(vma)

    @staticmethod
    def may_split(vma, addr):
        return hugetlb_vm_op_split(vma, addr)

    @staticmethod
    def pagesize(vma):
        return hstate_vma(vma).huge_page_size()


hugetlb_vm_ops = _HugetlbVmOps()


def hugetlb_vm_op_open(vma):
    """hugetlb_vm_op_open(): a split private owner shares the resv_map (kref_get);
    a shared VMA gets its own VMA lock."""
    if vma.vm_flags & VM_MAYSHARE:
        p = vma.vm_private_data
        if not isinstance(p, _hugetlb_vma_lock) or p.vma is not vma:
            vma.vm_private_data = _hugetlb_vma_lock(vma)
        return
    p = vma.vm_private_data
    if isinstance(p, _vma_private):
        # The copy gets its own private-data word pointing at the same map.
        vma.vm_private_data = _vma_private(p.resv, p.flags)
        if p.resv is not None and p.flags & HPAGE_RESV_OWNER:
            p.resv.refs += 1


def hugetlb_vm_op_close(vma):
    """hugetlb_vm_op_close(): an owner gives back the reservations of the pages it
    never instantiated."""
    h = hstate_vma(vma)
    if vma.vm_flags & VM_MAYSHARE:
        vma.vm_private_data = None                  # hugetlb_vma_lock_free
        return
    resv = vma_resv_map(vma)
    if resv is None or not is_vma_resv_set(vma, HPAGE_RESV_OWNER):
        return
    start = vma_hugecache_offset(h, vma, vma.vm_start)
    end = vma_hugecache_offset(h, vma, vma.vm_end)
    reserve = (end - start) - region_count(resv, start, end)
    if reserve:
        hugetlb_acct_memory(h, -reserve)
    resv.refs -= 1


def hugetlb_vm_op_split(vma, addr: int) -> int:
    """hugetlb_vm_op_split(): VMAs split only on huge page boundaries (EINVAL)."""
    if addr & ~hstate_vma(vma).huge_page_mask():
        return -errno.EINVAL
    return 0


def vma_kernel_pagesize(vma) -> int:
    """vma_kernel_pagesize(): the huge page size of a hugetlb VMA, else PAGE_SIZE."""
    if vma.vm_flags & VM_HUGETLB and vma.vm_file is not None:
        return hstate_vma(vma).huge_page_size()
    return 4096


# --- page tables: huge_pte_alloc, huge_pte_offset, PMD sharing ---------------------------
def _hugetlb_vmas_of(k, inode):
    """vma_interval_tree_foreach() over the inode's i_mmap: every VMA of the file."""
    out = []
    seen = set()
    for task in list(k.tasks.values()):
        mm = task.mm
        if mm is None or id(mm) in seen:
            continue
        seen.add(id(mm))
        for vma in mm.mm_mt:
            if vma.vm_file is not None and vma.vm_file.f_inode is inode:
                out.append(vma)
    return out


def _ptdesc_slot(k, ptep: int) -> int:
    """virt_to_ptdesc(): the pool row (ptdesc) holding the entry ptep."""
    return ptep // 512


def ptdesc_pmd_is_shared(k, ptep: int) -> bool:
    return k.ptpool.pt_share_count[_ptdesc_slot(k, ptep)] > 0


def page_table_shareable(svma, vma, addr: int, idx: int) -> int:
    """page_table_shareable(): the address in svma whose PMD table vma could share."""
    saddr = ((idx - svma.vm_pgoff) << 12) + svma.vm_start
    sbase = saddr & T.PUD_MASK
    s_end = sbase + PUD_SIZE
    if ((addr >> 21) & 511) != ((saddr >> 21) & 511) or \
            (vma.vm_flags & ~VM_LOCKED_MASK) != (svma.vm_flags & ~VM_LOCKED_MASK) or \
            not (svma.vm_start <= sbase and s_end <= svma.vm_end) or \
            svma.vm_private_data is None:
        return 0
    return saddr


def want_pmd_share(vma, addr: int) -> bool:
    """want_pmd_share(): shared, with a VMA lock, covering the whole aligned PUD range."""
    start = addr & T.PUD_MASK
    end = start + PUD_SIZE
    if not vma.vm_flags & VM_MAYSHARE or vma.vm_private_data is None:
        return False
    return vma.vm_start <= start and end <= vma.vm_end


def huge_pmd_share(mm, vma, addr: int, pudp: int) -> int:
    """huge_pmd_share(): point the empty PUD at another mapping's PMD table for the
    same file range (pt_share_count + 1), or allocate one as pmd_alloc does."""
    from vmsim.arch.x86.pgtable import pud_populate
    from vmsim.mm.memory import pmd_alloc
    k = mm.kernel
    pool = k.ptpool.mv
    idx = ((addr - vma.vm_start) >> 12) + vma.vm_pgoff
    spte = -1
    for svma in _hugetlb_vmas_of(k, vma.vm_file.f_inode):
        if svma is vma:
            continue
        if not svma.vm_pgoff <= idx < svma.vm_pgoff + ((svma.vm_end - svma.vm_start) >> 12):
            continue
        saddr = page_table_shareable(svma, vma, addr, idx)
        if saddr:
            spte = hugetlb_walk(svma, saddr, vma_kernel_pagesize(svma))
            if spte >= 0:
                k.ptpool.pt_share_count[_ptdesc_slot(k, spte)] += 1   # ptdesc_pmd_pts_inc
                break
    if spte >= 0:
        if pool[pudp] == 0:
            pud_populate(mm, pudp, k.ptpool.slot_pfn[_ptdesc_slot(k, spte)])
            mm.pgtables_bytes += 4096                                # mm_inc_nr_pmds
        else:
            k.ptpool.pt_share_count[_ptdesc_slot(k, spte)] -= 1
    return pmd_alloc(mm, pudp, addr)


def huge_pmd_unshare(mm, vma, addr: int, ptep: int) -> int:
    """huge_pmd_unshare(): drop this mm's use of a shared PMD table (clear its PUD);
    1 if it was shared."""
    from vmsim.arch.x86.pgtable import pgd_offset, p4d_offset, pud_offset, pud_clear
    k = mm.kernel
    if hstate_vma(vma).huge_page_size() != PMD_SIZE:
        return 0
    if not ptdesc_pmd_is_shared(k, ptep):
        return 0
    pudp = pud_offset(mm, p4d_offset(mm, pgd_offset(mm, addr), addr), addr)
    pud_clear(mm, pudp)
    k.ptpool.pt_share_count[_ptdesc_slot(k, ptep)] -= 1
    mm.pgtables_bytes -= 4096                                         # mm_dec_nr_pmds
    return 1


def huge_pte_alloc(mm, vma, addr: int, sz: int) -> int:
    """huge_pte_alloc(): the seed's 2.4: pgd_offset, p4d_alloc, pud_alloc, then the PUD
    itself (1 GiB) or huge_pmd_share / pmd_alloc (2 MiB); -1 on OOM."""
    from vmsim.arch.x86.pgtable import pgd_offset
    from vmsim.mm.memory import p4d_alloc, pud_alloc, pmd_alloc
    pgd = pgd_offset(mm, addr)
    p4d = p4d_alloc(mm, pgd, addr)
    if p4d < 0:
        return -1
    pud = pud_alloc(mm, p4d, addr)
    if pud < 0:
        return -1
    if sz == PUD_SIZE:
        return pud
    if want_pmd_share(vma, addr) and mm.kernel.ptpool.mv[pud] == 0:
        return huge_pmd_share(mm, vma, addr, pud)
    return pmd_alloc(mm, pud, addr)


def huge_pte_offset(mm, addr: int, sz: int) -> int:
    """huge_pte_offset(): the entry for a huge page of size sz, without allocating."""
    from vmsim.arch.x86.pgtable import pgd_offset, p4d_offset, pud_offset, pmd_offset
    pool = mm.kernel.ptpool.mv
    pgd = pgd_offset(mm, addr)
    if not pool[pgd] & T._PAGE_PRESENT:
        return -1
    p4d = p4d_offset(mm, pgd, addr)
    if not pool[p4d] & T._PAGE_PRESENT:
        return -1
    pud = pud_offset(mm, p4d, addr)
    if sz == PUD_SIZE:
        return pud
    if not pool[pud] & T._PAGE_PRESENT:
        return -1
    return pmd_offset(mm, pud, addr)


def hugetlb_walk(vma, addr: int, sz: int) -> int:
    """hugetlb_walk(): huge_pte_offset() under the VMA lock."""
    return huge_pte_offset(vma.vm_mm, addr & ~(sz - 1), sz)


def hugetlb_mask_last_page(h) -> int:
    """hugetlb_mask_last_page(): skip to the end of an absent table."""
    if h.huge_page_size() == PUD_SIZE:
        return (1 << 39) - PUD_SIZE
    return PUD_SIZE - PMD_SIZE


# --- huge PTEs ----------------------------------------------------------------------
def make_huge_pte(vma, folio: int, try_mkwrite: bool) -> int:
    """make_huge_pte(): folio_mk_pte, writable+dirty only when asked and VM_WRITE,
    young, and _PAGE_PSE (arch_make_huge_pte)."""
    entry = (folio << 12) | vma.vm_page_prot
    if try_mkwrite and vma.vm_flags & VM_WRITE:
        entry |= T._PAGE_DIRTY | T._PAGE_SOFT_DIRTY | T._PAGE_RW
    else:
        entry &= ~T._PAGE_RW
    entry |= T._PAGE_ACCESSED
    if entry & T._PAGE_PRESENT or entry & T._PAGE_PROTNONE:
        entry |= T._PAGE_PSE
    return entry


def set_huge_pte_at(mm, addr: int, ptep: int, pte: int, sz: int):
    mm.kernel.ptpool.mv[ptep] = pte


def huge_ptep_get(mm, addr: int, ptep: int) -> int:
    return mm.kernel.ptpool.mv[ptep]


def huge_ptep_clear_flush(vma, addr: int, ptep: int) -> int:
    """huge_ptep_clear_flush(): clear and flush the whole huge page's TLB entries."""
    from vmsim.arch.x86.mm.tlb import flush_tlb_mm_range, _note_downgrade
    mm = vma.vm_mm
    pte = mm.kernel.ptpool.mv[ptep]
    mm.kernel.ptpool.mv[ptep] = 0
    sz = hstate_vma(vma).huge_page_size()
    _note_downgrade(mm, addr, addr + sz)
    flush_tlb_mm_range(mm, addr, addr + sz, 12 + hstate_vma(vma).order, False)
    return pte


def huge_ptep_set_access_flags(vma, addr: int, ptep: int, pte: int, dirty: int) -> bool:
    """huge_ptep_set_access_flags() -> ptep_set_access_flags(): store if changed; a
    write permission upgrade needs no flush on x86."""
    pool = vma.vm_mm.kernel.ptpool.mv
    changed = pool[ptep] != pte
    if changed:
        pool[ptep] = pte
    return changed


def set_huge_ptep_writable(vma, address: int, ptep: int):
    pool = vma.vm_mm.kernel.ptpool.mv
    entry = pool[ptep] | T._PAGE_RW | T._PAGE_DIRTY | T._PAGE_SOFT_DIRTY
    huge_ptep_set_access_flags(vma, address, ptep, entry, 1)


def set_huge_ptep_maybe_writable(vma, address: int, ptep: int):
    if vma.vm_flags & VM_WRITE:
        set_huge_ptep_writable(vma, address, ptep)


def hugetlb_count_add(n: int, mm):
    mm.hugetlb_usage = getattr(mm, "hugetlb_usage", 0) + n


def hugetlb_count_sub(n: int, mm):
    mm.hugetlb_usage = getattr(mm, "hugetlb_usage", 0) - n


# --- rmap (include/linux/rmap.h hugetlb_*) ------------------------------------------------
def hugetlb_add_new_anon_rmap(k, folio: int, vma, address: int):
    """hugetlb_add_new_anon_rmap(): entire mapcount 1, no restore_reserve any more
    (the mapping consumed it), anon, AnonExclusive."""
    mem = k.mem
    mem.lru_prev[folio + 1] = 1                 # _entire_mapcount (page[1], mm/folio.py)
    mem.mapping[folio + 1] = 1                  # _large_mapcount
    _hpg_clear(k, folio, HPG_restore_reserve)
    mem.mapping[folio] = vma.anon_vma.id
    mem.index[folio] = ((address - vma.vm_start) >> 12) + vma.vm_pgoff
    mem.flags[folio] = mem.flags[folio] | PG_anon | PG_anon_exclusive


def hugetlb_add_file_rmap(k, folio: int):
    k.mem.lru_prev[folio + 1] += 1
    k.mem.mapping[folio + 1] += 1


def hugetlb_remove_rmap(k, folio: int):
    k.mem.lru_prev[folio + 1] -= 1
    k.mem.mapping[folio + 1] -= 1


def hugetlb_try_dup_anon_rmap(k, folio: int, vma) -> int:
    """hugetlb_try_dup_anon_rmap(): share the anon folio with the child (pinned folios
    would be copied; vmsim has no long-term pins on hugetlb pages)."""
    mem = k.mem
    mem.flags[folio] = mem.flags[folio] & ~PG_anon_exclusive
    mem.lru_prev[folio + 1] += 1
    mem.mapping[folio + 1] += 1
    return 0


def folio_mapcount(k, folio: int) -> int:
    return k.mem.mapping[folio + 1]


# --- page contents -------------------------------------------------------------------
def _folio_clear_data(k, folio: int, n: int):
    """Drop the contents of n frames: rows back to the pool, handles to 0."""
    data = k.page_data
    h = k.mem.np_private[folio:folio + n]
    for off in np.flatnonzero(h < 0).tolist():
        data.clear(folio + off)
    h[:] = 0


def folio_zero_user(k, folio: int, n: int):
    """folio_zero_user(): clear every subpage (one numpy pass over the handles)."""
    _folio_clear_data(k, folio, n)


def copy_user_large_folio(k, dst: int, src: int, n: int) -> int:
    """copy_user_large_folio(): copy every subpage that holds data."""
    _folio_clear_data(k, dst, n)
    data = k.page_data
    hs = k.mem.np_private[src:src + n]
    for off in np.flatnonzero(hs).tolist():
        data.copy(dst + off, src + off)
    return 0


# --- alloc_hugetlb_folio ------------------------------------------------------------
MAP_CHG_REUSE, MAP_CHG_NEEDED, MAP_CHG_ENFORCED = 0, 1, 2


def alloc_hugetlb_folio(vma, addr: int, cow_from_owner: bool) -> int:
    """alloc_hugetlb_folio(): a page for the VMA: a reserved one if the mapping holds
    a reservation for addr, else an unreserved free one or a surplus page; the folio
    (ref 1) or -ENOSPC (a SIGBUS for the fault path)."""
    h = hstate_vma(vma)
    k = h.k
    if cow_from_owner:
        map_chg = MAP_CHG_ENFORCED
    else:
        retval = vma_needs_reservation(h, vma, addr)
        if retval < 0:
            return -errno.ENOMEM
        map_chg = MAP_CHG_NEEDED if retval else MAP_CHG_REUSE
    gbl_chg = 1 if map_chg else 0               # hugepage_subpool_get_pages(spool, 1)
    folio = dequeue_hugetlb_folio_vma(h, vma, addr, gbl_chg)
    if folio < 0:
        folio = alloc_buddy_hugetlb_folio_with_mpol(h, vma, addr)
        if folio < 0:
            if map_chg != MAP_CHG_ENFORCED:
                vma_end_reservation(h, vma, addr)
            return -errno.ENOSPC
    if not gbl_chg:
        _hpg_set(k, folio, HPG_restore_reserve)
        h.resv_huge_pages -= 1
    if map_chg != MAP_CHG_ENFORCED:
        retval = vma_commit_reservation(h, vma, addr)
        if map_chg == MAP_CHG_NEEDED and retval == 0:
            hugetlb_acct_memory(h, -1)
    k.vmstat[vmstat.NR_HUGETLB] += 1 << h.order    # lruvec_stat_mod_folio(NR_HUGETLB)
    return folio


# --- the fault (the seed's section 2) ------------------------------------------------
class _hvm_fault:
    """struct vm_fault as hugetlb_fault() builds it."""
    __slots__ = ("vma", "address", "real_address", "flags", "pgoff", "pte", "orig_pte")

    def __init__(self, vma, address, real_address, flags, pgoff):
        self.vma = vma
        self.address = address
        self.real_address = real_address
        self.flags = flags
        self.pgoff = pgoff
        self.pte = -1
        self.orig_pte = 0


def hugetlb_fault(mm, vma, address: int, flags: int) -> int:
    """hugetlb_fault(): the seed's 2.1-2.6 in 6.18's form: huge_pte_alloc (2.4), then
    hugetlb_no_page for an empty entry (2.5) or hugetlb_wp for a write to a read-only
    one (2.6), else just young/dirty."""
    h = hstate_vma(vma)
    haddr = address & h.huge_page_mask()                                  # 2.1
    vmf = _hvm_fault(vma, haddr, address, flags, vma_hugecache_offset(h, vma, haddr))
    mapping = vma.vm_file.f_mapping
    vmf.pte = huge_pte_alloc(mm, vma, vmf.address, h.huge_page_size())   # 2.4
    if vmf.pte < 0:
        return VM_FAULT_OOM
    vmf.orig_pte = huge_ptep_get(mm, vmf.address, vmf.pte)                # 2.3
    if vmf.orig_pte == 0:                                                  # huge_pte_none_mostly
        return hugetlb_no_page(mapping, vmf)                               # 2.5
    ret = 0
    if not vmf.orig_pte & T._PAGE_PRESENT and not vmf.orig_pte & T._PAGE_PROTNONE:
        return 0                     # migration / hwpoison entries: not modelled
    if flags & (FAULT_FLAG_WRITE | FAULT_FLAG_UNSHARE) and not vma.vm_flags & VM_MAYSHARE \
            and not vmf.orig_pte & T._PAGE_RW:
        if vma_needs_reservation(h, vma, vmf.address) < 0:
            return VM_FAULT_OOM
        vma_end_reservation(h, vma, vmf.address)
    if flags & (FAULT_FLAG_WRITE | FAULT_FLAG_UNSHARE):
        if not vmf.orig_pte & T._PAGE_RW:
            from vmsim.mm.swap import folio_get, folio_put
            folio = (vmf.orig_pte & T.PTE_PFN_MASK) >> 12
            folio_get(mm.kernel, folio)
            ret = hugetlb_wp(vmf)                                          # 2.6
            folio_put(mm.kernel, folio)
            return ret
        elif flags & FAULT_FLAG_WRITE:
            vmf.orig_pte |= T._PAGE_DIRTY | T._PAGE_SOFT_DIRTY
    vmf.orig_pte |= T._PAGE_ACCESSED
    huge_ptep_set_access_flags(vma, vmf.address, vmf.pte, vmf.orig_pte, flags & FAULT_FLAG_WRITE)
    return ret


def filemap_lock_hugetlb_folio(h, mapping, idx: int) -> int:
    """filemap_lock_hugetlb_folio(): the page-cache folio at idx with a reference, or -1."""
    folio = mapping.pages.get(idx, -1)
    if folio >= 0:
        h.k.mem.refcount[folio] += 1
    return folio


def hugetlb_add_to_page_cache(k, folio: int, mapping, idx: int) -> int:
    """hugetlb_add_to_page_cache(): insert (the cache holds nr_pages references), no
    restore_reserve any more (the inode's map keeps the reservation), dirty."""
    h = mapping.hstate
    mapping.pages[idx] = folio
    k.mem.refcount[folio] += 1 << h.order
    k.mem.index[folio] = idx << h.order
    k.mem.mapping[folio] = -1                    # folio->mapping: the inode (not anon)
    _hpg_clear(k, folio, HPG_restore_reserve)
    k.mem.flags[folio] = k.mem.flags[folio] | PG_dirty
    mapping.i_blocks += (4096 << h.order) >> 9
    return 0


def hugetlb_no_page(mapping, vmf) -> int:
    """hugetlb_no_page(): the seed's 2.5: find the folio in the page cache (2.5.1) or
    allocate and clear one (added to the cache only for VM_MAYSHARE), make_huge_pte
    (2.5.3), set_huge_pte_at (2.5.4); a private write goes on to hugetlb_wp."""
    from vmsim.mm.memory import vmf_anon_prepare
    from vmsim.mm.swap import folio_put
    vma = vmf.vma
    mm = vma.vm_mm
    k = mm.kernel
    h = hstate_vma(vma)
    new_anon_folio = False
    if is_vma_resv_set(vma, HPAGE_RESV_UNMAPPED):
        from vmsim.kernel.printk import pr_warn, __ratelimit
        if __ratelimit(k, "hugetlb_no_page", 10):
            pr_warn(k, "PID %d killed due to inadequate hugepage pool" % k.current.pid)
        return VM_FAULT_SIGBUS
    folio = filemap_lock_hugetlb_folio(h, mapping, vmf.pgoff)              # 2.5.1
    if folio < 0:
        size = mapping.i_size >> (12 + h.order)
        if vmf.pgoff >= size:
            return VM_FAULT_SIGBUS
        if not vma.vm_flags & VM_MAYSHARE:
            ret = vmf_anon_prepare(vmf)
            if ret:
                return ret
        folio = alloc_hugetlb_folio(vma, vmf.address, False)
        if folio < 0:
            if huge_ptep_get(mm, vmf.address, vmf.pte) == vmf.orig_pte:
                return VM_FAULT_OOM if folio == -errno.ENOMEM else VM_FAULT_SIGBUS
            return 0
        folio_zero_user(k, folio, 1 << h.order)
        k.mem.flags[folio] = k.mem.flags[folio] | PG_uptodate
        if vma.vm_flags & VM_MAYSHARE:
            hugetlb_add_to_page_cache(k, folio, mapping, vmf.pgoff)
        else:
            new_anon_folio = True
    if vmf.flags & FAULT_FLAG_WRITE and not vma.vm_flags & VM_SHARED:
        if vma_needs_reservation(h, vma, vmf.address) < 0:
            if new_anon_folio:
                restore_reserve_on_error(h, vma, vmf.address, folio)
            folio_put(k, folio)
            return VM_FAULT_OOM
        vma_end_reservation(h, vma, vmf.address)
    # 2.5.2: huge_pte_lock(); the entry cannot have changed (one task runs at a time).
    if new_anon_folio:
        hugetlb_add_new_anon_rmap(k, folio, vma, vmf.address)
    else:
        hugetlb_add_file_rmap(k, folio)
    new_pte = make_huge_pte(vma, folio, bool(vma.vm_flags & VM_SHARED))    # 2.5.3
    set_huge_pte_at(mm, vmf.address, vmf.pte, new_pte, h.huge_page_size())  # 2.5.4
    hugetlb_count_add(1 << h.order, mm)
    ret = 0
    if vmf.flags & FAULT_FLAG_WRITE and not vma.vm_flags & VM_SHARED:
        vmf.orig_pte = new_pte
        ret = hugetlb_wp(vmf)           # Optimization, do the COW without a second fault
    _hpg_set(k, folio, HPG_migratable)
    return ret


def unmap_ref_private(mm, vma, folio: int, address: int):
    """unmap_ref_private(): the owner of the reservation could not get a page to
    copy into, so the page is unmapped from every other private mapping of it (their
    next fault is a SIGBUS: HPAGE_RESV_UNMAPPED)."""
    h = hstate_vma(vma)
    address &= h.huge_page_mask()
    pgoff = ((address - vma.vm_start) >> 12) + vma.vm_pgoff
    for iter_vma in _hugetlb_vmas_of(mm.kernel, vma.vm_file.f_inode):
        if iter_vma is vma or iter_vma.vm_flags & VM_MAYSHARE:
            continue
        if not iter_vma.vm_pgoff <= pgoff < iter_vma.vm_pgoff + \
                ((iter_vma.vm_end - iter_vma.vm_start) >> 12):
            continue
        if not is_vma_resv_set(iter_vma, HPAGE_RESV_OWNER):
            iaddr = iter_vma.vm_start + ((pgoff - iter_vma.vm_pgoff) << 12)
            unmap_hugepage_range(iter_vma, iaddr, iaddr + h.huge_page_size(), folio, 0)


def hugetlb_wp(vmf) -> int:
    """hugetlb_wp() (the seed's hugetlb_cow, 2.6): shared -> make writable; an
    exclusive anon folio -> reuse; else copy into a new folio (2.6.3-2.6.7). When
    the reservation owner finds the pool empty, the other mappings lose the page
    (unmap_ref_private) and the owner reuses it."""
    from vmsim.mm.rmap import folio_move_anon_rmap
    from vmsim.mm.memory import vmf_anon_prepare
    from vmsim.mm.swap import folio_get, folio_put
    vma = vmf.vma
    mm = vma.vm_mm
    k = mm.kernel
    unshare = vmf.flags & FAULT_FLAG_UNSHARE
    pte = huge_ptep_get(mm, vmf.address, vmf.pte)                          # 2.6.1
    h = hstate_vma(vma)
    if vma.vm_flags & VM_MAYSHARE:
        set_huge_ptep_writable(vma, vmf.address, vmf.pte)
        return 0
    old_folio = (pte & T.PTE_PFN_MASK) >> 12                               # 2.6.2
    while True:                                                            # retry_avoidcopy:
        if folio_mapcount(k, old_folio) == 1 and k.mem.flags[old_folio] & PG_anon:
            if not k.mem.flags[old_folio] & PG_anon_exclusive:
                folio_move_anon_rmap(k, old_folio, vma)
                k.mem.flags[old_folio] = k.mem.flags[old_folio] | PG_anon_exclusive
            if not unshare:
                set_huge_ptep_maybe_writable(vma, vmf.address, vmf.pte)
            return 0
        cow_from_owner = is_vma_resv_set(vma, HPAGE_RESV_OWNER) and \
            bool(k.mem.flags[old_folio] & PG_anon)
        folio_get(k, old_folio)
        new_folio = alloc_hugetlb_folio(vma, vmf.address, cow_from_owner)  # 2.6.3
        if new_folio < 0:
            if cow_from_owner:
                folio_put(k, old_folio)
                unmap_ref_private(mm, vma, old_folio, vmf.address)
                vmf.pte = hugetlb_walk(vma, vmf.address, h.huge_page_size())
                if vmf.pte >= 0 and huge_ptep_get(mm, vmf.address, vmf.pte) == pte:
                    continue                                               # goto retry_avoidcopy
                return 0
            folio_put(k, old_folio)
            return VM_FAULT_OOM if new_folio == -errno.ENOMEM else VM_FAULT_SIGBUS
        break
    ret = vmf_anon_prepare(vmf)
    if ret:
        restore_reserve_on_error(h, vma, vmf.address, new_folio)
        folio_put(k, new_folio)
        folio_put(k, old_folio)
        return ret
    copy_user_large_folio(k, new_folio, old_folio, 1 << h.order)          # 2.6.4
    k.mem.flags[new_folio] = k.mem.flags[new_folio] | PG_uptodate
    k.mmu_notifier_invalidate_range_start(mm, "clear", vmf.address,
                                          vmf.address + h.huge_page_size())
    vmf.pte = hugetlb_walk(vma, vmf.address, h.huge_page_size())
    if vmf.pte >= 0 and huge_ptep_get(mm, vmf.address, vmf.pte) == pte:
        newpte = make_huge_pte(vma, new_folio, not unshare)
        huge_ptep_clear_flush(vma, vmf.address, vmf.pte)
        hugetlb_remove_rmap(k, old_folio)                                 # 2.6.6
        hugetlb_add_new_anon_rmap(k, new_folio, vma, vmf.address)         # 2.6.7
        set_huge_pte_at(mm, vmf.address, vmf.pte, newpte, h.huge_page_size())  # 2.6.5
        _hpg_set(k, new_folio, HPG_migratable)
        new_folio = old_folio           # the mapping's reference of the old one goes below
    k.mmu_notifier_invalidate_range_end(mm, "clear", vmf.address,
                                        vmf.address + h.huge_page_size())
    if new_folio != old_folio:
        restore_reserve_on_error(h, vma, vmf.address, new_folio)
    folio_put(k, new_folio)
    folio_put(k, old_folio)
    return 0


# --- fork ----------------------------------------------------------------------------
def copy_hugetlb_page_range(dst, src, dst_vma, src_vma) -> int:
    """copy_hugetlb_page_range(): share every huge page with the child, write-protected
    in both for a private (COW) mapping; shared PMD tables are left for the child to
    share again at fault time. 0 or -ENOMEM."""
    from vmsim.mm.memory import is_cow_mapping
    from vmsim.mm.swap import folio_get
    k = src.kernel
    cow = is_cow_mapping(src_vma.vm_flags)
    h = hstate_vma(src_vma)
    sz = h.huge_page_size()
    npages = 1 << h.order
    pool = k.ptpool.mv
    if cow:
        k.mmu_notifier_invalidate_range_start(src, "clear", src_vma.vm_start, src_vma.vm_end)
    last_addr_mask = hugetlb_mask_last_page(h)
    ret = 0
    addr = src_vma.vm_start
    while addr < src_vma.vm_end:
        src_pte = hugetlb_walk(src_vma, addr, sz)
        if src_pte < 0:
            addr = (addr | last_addr_mask) + sz
            continue
        dst_pte = huge_pte_alloc(dst, dst_vma, addr, sz)
        if dst_pte < 0:
            ret = -errno.ENOMEM
            break
        if ptdesc_pmd_is_shared(k, dst_pte):
            addr = (addr | last_addr_mask) + sz
            continue
        entry = pool[src_pte]
        if entry and entry & (T._PAGE_PRESENT | T._PAGE_PROTNONE):
            folio = (entry & _PFN) >> 12
            folio_get(k, folio)
            if not k.mem.flags[folio] & PG_anon:
                hugetlb_add_file_rmap(k, folio)
            else:
                hugetlb_try_dup_anon_rmap(k, folio, src_vma)
            if cow:
                pool[src_pte] = entry & ~T._PAGE_RW        # huge_ptep_set_wrprotect
                entry &= ~T._PAGE_RW
            set_huge_pte_at(dst, addr, dst_pte, entry & ~T._PAGE_UFFD_WP, sz)
            hugetlb_count_add(npages, dst)
        addr += sz
    if cow:
        k.mmu_notifier_invalidate_range_end(src, "clear", src_vma.vm_start, src_vma.vm_end)
    return ret


# --- unmap ---------------------------------------------------------------------------
def __unmap_hugepage_range(tlb, vma, start: int, end: int, folio, zap_flags: int = 0):
    """__unmap_hugepage_range(): clear each huge PTE (unsharing shared PMD tables),
    drop the rmap and HugetlbPages, restore the reservation of a private owner's anon
    page when there is no surplus, and free the folios after the TLB flush. With a
    folio given, only that folio is unmapped and the VMA marked HPAGE_RESV_UNMAPPED."""
    from vmsim.mm.mmu_gather import (__tlb_remove_folio_pages, tlb_flush_mmu_tlbonly, tlb_flush_mmu,
                                     tlb_flush_pmd_range)
    mm = vma.vm_mm
    k = mm.kernel
    h = hstate_vma(vma)
    sz = h.huge_page_size()
    folio_provided = folio is not None
    last_addr_mask = hugetlb_mask_last_page(h)
    force_flush = False
    address = start
    pool = k.ptpool.mv
    while address < end:
        ptep = hugetlb_walk(vma, address, sz)
        if ptep < 0:
            address = (address | last_addr_mask) + sz
            continue
        if huge_pmd_unshare(mm, vma, address, ptep):
            tlb_flush_pmd_range(tlb, address & T.PUD_MASK, PUD_SIZE)
            force_flush = True
            address = (address | last_addr_mask) + sz
            continue
        pte = pool[ptep]
        if pte == 0:
            address += sz
            continue
        if not pte & (T._PAGE_PRESENT | T._PAGE_PROTNONE):
            pool[ptep] = 0                       # huge_pte_clear
            address += sz
            continue
        f = (pte & _PFN) >> 12
        if folio_provided:
            if f != folio:
                address += sz
                continue
            set_vma_resv_flags(vma, HPAGE_RESV_UNMAPPED)
        pool[ptep] = 0                           # huge_ptep_get_and_clear
        tlb_remove_huge_tlb_entry(h, tlb, ptep, address)
        if pte & T._PAGE_DIRTY:
            k.mem.flags[f] = k.mem.flags[f] | PG_dirty
        hugetlb_count_sub(1 << h.order, mm)
        hugetlb_remove_rmap(k, f)
        if not h.surplus_huge_pages and __vma_private_lock(vma) and k.mem.flags[f] & PG_anon:
            _hpg_set(k, f, HPG_restore_reserve)
            rc = vma_needs_reservation(h, vma, address)
            if rc < 0:
                _hpg_clear(k, f, HPG_restore_reserve)
            elif rc:
                vma_add_reservation(h, vma, address)
        if __tlb_remove_folio_pages(tlb, f, 1):   # tlb_remove_page_size(): batch full
            tlb_flush_mmu(tlb)
        address += sz
        if folio_provided:
            break
    if force_flush:
        tlb_flush_mmu_tlbonly(tlb)


def tlb_remove_huge_tlb_entry(h, tlb, ptep: int, address: int):
    """tlb_remove_huge_tlb_entry(): widen the gather's range over the huge page and
    note the level cleared (PMD for 2 MiB, PUD for 1 GiB)."""
    from vmsim.mm.mmu_gather import __tlb_adjust_range
    sz = h.huge_page_size()
    if sz == PMD_SIZE:
        tlb.cleared_pmds = True
    else:
        tlb.cleared_puds = True
    __tlb_adjust_range(tlb, address, sz)




def unmap_hugepage_range(vma, start: int, end: int, folio, zap_flags: int):
    """unmap_hugepage_range(): one VMA's range with its own gather."""
    from vmsim.mm.mmu_gather import tlb_gather_mmu, tlb_finish_mmu
    mm = vma.vm_mm
    k = mm.kernel
    k.mmu_notifier_invalidate_range_start(mm, "clear", start, end)
    tlb = tlb_gather_mmu(mm)
    __unmap_hugepage_range(tlb, vma, start, end, folio, zap_flags)
    k.mmu_notifier_invalidate_range_end(mm, "clear", start, end)
    tlb_finish_mmu(tlb)


# --- mprotect, madvise ------------------------------------------------------------------
def hugetlb_change_protection(vma, address: int, end: int, newprot: int, cp_flags: int) -> int:
    """hugetlb_change_protection(): apply newprot to each huge PTE (unsharing shared
    PMD tables, which then fault again), flush the range; base pages changed."""
    from vmsim.arch.x86.pgtable import pte_modify
    from vmsim.arch.x86.mm.tlb import flush_tlb_mm_range, _note_downgrade
    mm = vma.vm_mm
    k = mm.kernel
    h = hstate_vma(vma)
    psize = h.huge_page_size()
    start = address
    pages = 0
    pool = k.ptpool.mv
    last_addr_mask = hugetlb_mask_last_page(h)
    k.mmu_notifier_invalidate_range_start(mm, "protection_vma", start, end)
    while address < end:
        ptep = hugetlb_walk(vma, address, psize)
        if ptep < 0:
            address = (address | last_addr_mask) + psize
            continue
        if huge_pmd_unshare(mm, vma, address, ptep):
            pages += 1
            address = (address | last_addr_mask) + psize
            continue
        pte = pool[ptep]
        if pte and pte & (T._PAGE_PRESENT | T._PAGE_PROTNONE):
            new = pte_modify(pte, newprot) | T._PAGE_PSE          # arch_make_huge_pte
            if not new & (T._PAGE_PRESENT | T._PAGE_PROTNONE):
                new &= ~T._PAGE_PSE
            pool[ptep] = new
            pages += 1
        address += psize
    _note_downgrade(mm, start, end)
    flush_tlb_mm_range(mm, start, end, 12 + h.order, False)     # flush_hugetlb_tlb_range
    k.mmu_notifier_invalidate_range_end(mm, "protection_vma", start, end)
    return pages << h.order if pages > 0 else pages


def hugetlb_madvise_dontneed_range(vma, start: int, end: int):
    """The hugetlb part of madvise_dontneed_free_valid_vma(): DONTNEED only, the start
    on a huge page boundary, the end rounded down to one: (ok, new end)."""
    h = hstate_vma(vma)
    if start & ~h.huge_page_mask():
        return False, end
    return True, end & h.huge_page_mask()


# --- mremap -------------------------------------------------------------------------
def move_hugetlb_page_tables(vma, new_vma, old_addr: int, new_addr: int, length: int) -> int:
    """move_hugetlb_page_tables(): move each huge PTE (a shared PMD table is unshared
    instead: its pages fault in again); the bytes handled."""
    from vmsim.arch.x86.mm.tlb import flush_tlb_mm_range, _note_downgrade
    h = hstate_vma(vma)
    sz = h.huge_page_size()
    mm = vma.vm_mm
    k = mm.kernel
    pool = k.ptpool.mv
    old_end = old_addr + length
    last_addr_mask = hugetlb_mask_last_page(h)
    k.mmu_notifier_invalidate_range_start(mm, "clear", old_addr, old_end)
    while old_addr < old_end:
        src_pte = hugetlb_walk(vma, old_addr, sz)
        if src_pte < 0:
            old_addr = (old_addr | last_addr_mask) + sz
            new_addr = (new_addr | last_addr_mask) + sz
            continue
        if pool[src_pte] == 0:
            old_addr += sz
            new_addr += sz
            continue
        if huge_pmd_unshare(mm, vma, old_addr, src_pte):
            old_addr = (old_addr | last_addr_mask) + sz
            new_addr = (new_addr | last_addr_mask) + sz
            continue
        dst_pte = huge_pte_alloc(mm, new_vma, new_addr, sz)
        if dst_pte < 0:
            break
        pte = pool[src_pte]                                  # move_huge_pte
        pool[src_pte] = 0
        set_huge_pte_at(mm, new_addr, dst_pte, pte, sz)
        old_addr += sz
        new_addr += sz
    start = old_end - length
    _note_downgrade(mm, start, old_end)
    flush_tlb_mm_range(mm, start, old_end, 12 + h.order, False)   # flush_hugetlb_tlb_range
    k.mmu_notifier_invalidate_range_end(mm, "clear", start, old_end)
    return length + old_addr - old_end


def clear_vma_resv_huge_pages(vma):
    """clear_vma_resv_huge_pages(): the moved-from VMA gives up its reservation map
    (the new VMA took a reference in ->open)."""
    resv = vma_resv_map(vma)
    if resv is not None and is_vma_resv_set(vma, HPAGE_RESV_OWNER):
        resv.refs -= 1
    hugetlb_dup_vma_private(vma)


def fixup_hugetlb_reservations(vma):
    if vma.vm_flags & VM_HUGETLB:
        clear_vma_resv_huge_pages(vma)


# --- mincore ------------------------------------------------------------------------
def mincore_hugetlb_range(vma, addr: int, end: int, vec, base: int):
    """walk_hugetlb_range() with mincore's ops: where the table holding the huge PTE
    exists, mincore_hugetlb() reports whether the entry is set; where it does not,
    mincore_unmapped_range() asks the page cache (a shared mapping's page)."""
    h = hstate_vma(vma)
    sz = h.huge_page_size()
    mm = vma.vm_mm
    pool = mm.kernel.ptpool.mv
    inode = vma.vm_file.f_inode
    a = addr
    while a < end:
        nxt = min((a | (sz - 1)) + 1, end)
        ptep = hugetlb_walk(vma, a, sz)
        if ptep >= 0:
            present = 1 if pool[ptep] else 0
        else:
            present = 1 if vma_hugecache_offset(h, vma, a) in inode.pages else 0
        for i in range((a - base) >> 12, (nxt - base) >> 12):
            vec[i] = present
        a = nxt


# --- VMA split ------------------------------------------------------------------------
def hugetlb_split(vma, addr: int):
    """hugetlb_split(): a split inside a PUD range the VMA covers whole ends the PMD
    sharing of that range (the halves no longer qualify: want_pmd_share)."""
    if addr & ~T.PUD_MASK:
        floor = addr & T.PUD_MASK
        ceil = floor + PUD_SIZE
        if floor >= vma.vm_start and ceil <= vma.vm_end:
            hugetlb_unshare_pmds(vma, floor, ceil)


def hugetlb_unshare_pmds(vma, start: int, end: int):
    """hugetlb_unshare_pmds(): drop this mm's use of shared PMD tables in [start, end)."""
    from vmsim.arch.x86.mm.tlb import flush_tlb_mm_range, _note_downgrade
    if not vma.vm_flags & VM_MAYSHARE or start >= end:
        return
    h = hstate_vma(vma)
    sz = h.huge_page_size()
    mm = vma.vm_mm
    k = mm.kernel
    k.mmu_notifier_invalidate_range_start(mm, "clear", start, end)
    for address in range(start, end, PUD_SIZE):
        ptep = hugetlb_walk(vma, address, sz)
        if ptep < 0:
            continue
        huge_pmd_unshare(mm, vma, address, ptep)
    _note_downgrade(mm, start, end)
    flush_tlb_mm_range(mm, start, end, 12 + h.order, False)      # flush_hugetlb_tlb_range
    k.mmu_notifier_invalidate_range_end(mm, "clear", start, end)
