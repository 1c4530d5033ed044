"""Transparent huge pages (mm/huge_memory.c): eligibility, the PMD fault, COW, split, zap.

Function by function as 6.18 has them:

* thp_vma_allowable_orders() / __thp_vma_allowable_orders() (the sysfs ``enabled``
  modes, the per-size hugepages-<size>kB/enabled modes, VM_HUGEPAGE / VM_NOHUGEPAGE,
  prctl(PR_SET_THP_DISABLE)) and thp_vma_suitable_order();
* do_huge_pmd_anonymous_page(): the huge zero folio on a read fault
  (mm_get_huge_zero_folio, set_huge_zero_folio), else vma_alloc_anon_folio_pmd() with
  vma_thp_gfp_mask() (THP_FAULT_FALLBACK when no free 2 MiB block), the deposited PTE
  table (pgtable_trans_huge_deposit), map_anon_folio_pmd(), deferred_split_folio();
* do_huge_pmd_wp_page() (reuse when AnonExclusive or the only reference, else split
  the PMD and let the 4 KiB COW run), do_huge_zero_wp_pmd(), huge_pmd_set_accessed();
* __split_huge_pmd() / __split_huge_pmd_locked() / __split_huge_zero_page_pmd(),
  split_huge_pmd_address(), vma_adjust_trans_huge(); split_folio() (the folio split
  of split_huge_page_to_list_to_order, to order 0) and the deferred split queue with
  its shrinker (deferred_split_scan, shrink_underused);
* zap_huge_pmd(), copy_huge_pmd(), change_huge_pmd(), move_huge_pmd(),
  madvise_free_huge_pmd().

The deposited table of a huge PMD is kept as the kernel keeps it, on the PMD
table's list (pmd_huge_pte in its ptdesc; mm/pgtable_generic.py). Locks are not modelled (one task at a
time), so the pmd_same() re-checks after taking the PMD lock always pass.
Not modelled: huge PUDs for anonymous memory (6.18 has none: create_huge_pud falls
back, wp_huge_pud / huge_pud_set_accessed are DAX-only), PMD migration entries, NUMA
hinting, userfaultfd, memcg charging (THP_FAULT_FALLBACK_CHARGE never counts).
"""

from vmsim.arch.x86 import pgtable_types as T
from vmsim.mm import vmstat
from vmsim.mm.pgtable_generic import (pgtable_trans_huge_deposit,
                                      pgtable_trans_huge_withdraw)
from vmsim.mm.mm_types import (VM_FAULT_FALLBACK, VM_FAULT_OOM, VM_HUGEPAGE, VM_NOHUGEPAGE,
                               VM_HUGETLB, VM_WRITE, VM_SHARED, VM_DROPPABLE, VM_LOCKED,
                               FAULT_FLAG_WRITE, FAULT_FLAG_UNSHARE, MM_ANONPAGES)
from vmsim.mm.page_flags import (PG_anon, PG_anon_exclusive, PG_swapbacked, PG_head, PG_tail,
                                 PG_large_rmappable, PG_partially_mapped, PG_dirty, PG_lru,
                                 PG_referenced, PG_ORDER_MASK, PG_ORDER_SHIFT)

TVA_SMAPS, TVA_PAGEFAULT, TVA_KHUGEPAGED, TVA_FORCED_COLLAPSE = range(4)
PMD_ORDER = 9
PUD_ORDER = 18
HPAGE_PMD_ORDER = PMD_ORDER
HPAGE_PMD_NR = 1 << PMD_ORDER
HPAGE_PMD_SIZE = 1 << 21
HPAGE_PMD_MASK = ~(HPAGE_PMD_SIZE - 1)
# THP_ORDERS_ALL_ANON: orders 2..PMD_ORDER (include/linux/huge_mm.h)
THP_ORDERS_ALL_ANON = ((1 << (PMD_ORDER + 1)) - 1) & ~0b11
# THP_ORDERS_ALL_FILE_DEFAULT: orders 1..PMD_ORDER
THP_ORDERS_ALL_FILE_DEFAULT = ((1 << (PMD_ORDER + 1)) - 1) & ~0b1
MMF_HUGE_ZERO_FOLIO = 18
MMF_DISABLE_THP_EXCEPT_ADVISED = 23
MMF_DISABLE_THP_COMPLETELY = 24
THP = "/sys/kernel/mm/transparent_hugepage/"

_P = T._PAGE_PRESENT
_RW = T._PAGE_RW
_PSE = T._PAGE_PSE
_PROTNONE = T._PAGE_PROTNONE
_PFN2M = T.PMD_PFN_MASK_2M
_PFN = T.PTE_PFN_MASK
_MKWRITE_DIRTY = T._PAGE_DIRTY | T._PAGE_SOFT_DIRTY | _RW


# --- machine-wide THP state -----------------------------------------------------------
class _thp_state:
    """The THP globals of mm/huge_memory.c and mm/khugepaged.c: the huge zero folio and
    its refcount, the deferred split queue (one node, no memcg), the per-order mTHP
    stats, khugepaged's mm_slot list and counters."""

    def __init__(self):
        self.huge_zero_refcount = 0
        self.split_queue = {}                   # folio -> None, in queue order
        self.mthp_stats = {}                    # (order, item) -> count
        self.khugepaged_pages_collapsed = 0
        self.khugepaged_full_scans = 0
        self.mm_slots = []                      # khugepaged_scan: mms registered
        self.scan_mm = None
        self.scan_address = 0
        self.khugepaged_running = False
        self.next_scan_ns = 0
        self.clock_ns = 0
        # huge_anon_orders_always / _madvise / _inherit: the kernel keeps these bitmaps
        # and updates them in thpsize_enabled_store(); vmsim derives them from the
        # hugepages-<size>kB/enabled knobs on first use after each store.
        self.huge_anon_orders = None
        # huge_shmem_orders_*: likewise, from hugepages-<size>kB/shmem_enabled
        # (mm/shmem.c; reset in thpsize_shmem_enabled_store).
        self.huge_shmem_orders = None


def _thp(k) -> _thp_state:
    st = k.__dict__.get("_thp_state")
    if st is None:
        st = k._thp_state = _thp_state()
        if not hasattr(k, "huge_zero_pfn"):
            k.huge_zero_pfn = -1
    return st


def count_mthp_stat(k, order: int, item: str, delta: int = 1):
    """count_mthp_stat() / mod_mthp_stat(): the per-size counters in hugepages-*/stats."""
    st = _thp(k).mthp_stats
    st[(order, item)] = st.get((order, item), 0) + delta


mod_mthp_stat = count_mthp_stat


def sum_mthp_stat(k, order: int, item: str) -> int:
    return _thp(k).mthp_stats.get((order, item), 0)


# --- the sysfs modes ------------------------------------------------------------------
def _hugepage_enabled_mode(k) -> str:
    """Return the selected mode of /sys/kernel/mm/transparent_hugepage/enabled."""
    return k.sysfs[THP + "enabled"]


def _size_mode(k, order: int) -> str:
    """hugepages-<size>kB/enabled; a profile without mTHP (5.4) has only the global
    mode, which the PMD size follows."""
    return k.sysfs.get(f"{THP}hugepages-{(4096 << order) >> 10}kB/enabled",
                       "inherit" if order == PMD_ORDER else "never")


def _huge_anon_orders(k, mode: str) -> int:
    """huge_anon_orders_always / _madvise / _inherit: the orders set to ``mode``."""
    st = _thp(k)
    masks = st.huge_anon_orders
    if masks is None:
        masks = st.huge_anon_orders = {}
        for order in range(2, PMD_ORDER + 1):
            m = _size_mode(k, order)
            masks[m] = masks.get(m, 0) | 1 << order
    return masks.get(mode, 0)


def hugepage_global_enabled(k) -> bool:
    return _hugepage_enabled_mode(k) != "never"


def hugepage_global_always(k) -> bool:
    return _hugepage_enabled_mode(k) == "always"


def transparent_hugepage_use_zero_page(k) -> bool:
    return k.sysfs[THP + "use_zero_page"] == "1"


def vma_is_anonymous(vma) -> bool:
    return vma.vm_ops is None


def vma_thp_disabled(vma, vm_flags: int, forced_collapse: bool) -> bool:
    """vma_thp_disabled(): VM_NOHUGEPAGE, or prctl(PR_SET_THP_DISABLE) on the mm."""
    if vm_flags & VM_NOHUGEPAGE:
        return True
    mf = vma.vm_mm.flags
    if mf & (1 << MMF_DISABLE_THP_COMPLETELY):
        return True
    if vm_flags & VM_HUGEPAGE:
        return False
    if forced_collapse:
        return False
    return bool(mf & (1 << MMF_DISABLE_THP_EXCEPT_ADVISED))


def thp_vma_suitable_order(vma, addr: int, order: int) -> bool:
    """thp_vma_suitable_order(): the aligned block of ``order`` at addr fits in the VMA
    (file VMAs also need vm_pgoff in step with the alignment)."""
    size = 4096 << order
    if not vma_is_anonymous(vma):
        if ((vma.vm_start >> 12) - vma.vm_pgoff) & ((size >> 12) - 1):
            return False
    haddr = addr & ~(size - 1)
    return haddr >= vma.vm_start and haddr + size <= vma.vm_end


def __thp_vma_allowable_orders(vma, vm_flags: int, tva_type: int, orders: int) -> int:
    """__thp_vma_allowable_orders(): anonymous VMAs by the sysfs masks (already applied
    by thp_vma_allowable_orders); shmem VMAs, outside the page fault, by
    shmem_allowable_huge_orders() (the mount's huge=, shmem_enabled and the per-size
    shmem_enabled); other file VMAs get none (no ->huge_fault without DAX, and
    CONFIG_READ_ONLY_THP_FOR_FS is off). A shmem fault allocates its large folio in
    shmem_fault, never through create_huge_pmd."""
    smaps = tva_type == TVA_SMAPS
    in_pf = tva_type == TVA_PAGEFAULT
    forced = tva_type == TVA_FORCED_COLLAPSE
    anon = vma_is_anonymous(vma)
    orders &= THP_ORDERS_ALL_ANON if anon else THP_ORDERS_ALL_FILE_DEFAULT
    if not orders or vma.vm_mm is None:
        return 0
    if vma_thp_disabled(vma, vm_flags, forced):
        return 0
    if not in_pf and not smaps and vm_flags & VM_HUGETLB:      # VM_NO_KHUGEPAGED
        return 0
    if anon and vm_flags & VM_HUGETLB:
        return 0
    if not in_pf:
        order = orders.bit_length() - 1
        while orders:
            if thp_vma_suitable_order(vma, vma.vm_end - (4096 << order), order):
                break
            orders &= ~(1 << order)
            order = orders.bit_length() - 1
        if not orders:
            return 0
    if not anon:
        from vmsim.mm.shmem import shmem_file, shmem_allowable_huge_orders
        if not in_pf and shmem_file(vma.vm_file):
            k = vma.vm_mm.kernel
            return orders & shmem_allowable_huge_orders(k, vma.vm_file.f_inode, vma,
                                                        vma.vm_pgoff, 0, forced)
        return 0
    if vma.anon_vma is None:
        return orders if (smaps or in_pf) else 0
    return orders


def thp_vma_allowable_orders(vma, vm_flags: int, tva_type: int, orders: int) -> int:
    """thp_vma_allowable_orders(): the sysfs masks first (except a forced collapse)."""
    if tva_type != TVA_FORCED_COLLAPSE and vma_is_anonymous(vma):
        k = vma.vm_mm.kernel
        mask = _huge_anon_orders(k, "always")
        if vm_flags & VM_HUGEPAGE:
            mask |= _huge_anon_orders(k, "madvise")
        if hugepage_global_always(k) or (vm_flags & VM_HUGEPAGE and hugepage_global_enabled(k)):
            mask |= _huge_anon_orders(k, "inherit")
        orders &= mask
        if not orders:
            return 0
    return __thp_vma_allowable_orders(vma, vm_flags, tva_type, orders)


def thp_vma_allowable_order(vma, vm_flags: int, tva_type: int, order: int) -> bool:
    """thp_vma_allowable_order(): one order."""
    if vma.vm_mm is None:
        return False
    return bool(thp_vma_allowable_orders(vma, vm_flags, tva_type, 1 << order))


# --- the huge zero folio ----------------------------------------------------------------
def get_huge_zero_folio(k) -> bool:
    """get_huge_zero_folio(): take a reference, allocating the folio on first use
    (THP_ZERO_PAGE_ALLOC; the extra reference is the shrinker's)."""
    from vmsim.mm.page_alloc import __GFP_ZERO, __GFP_MOVABLE
    st = _thp(k)
    if st.huge_zero_refcount:
        st.huge_zero_refcount += 1
        return True
    pfn = k.page_alloc.alloc_pages((GFP_TRANSHUGE | __GFP_ZERO) & ~__GFP_MOVABLE, PMD_ORDER,
                                   k._current_cpu())
    if pfn < 0:
        k.vmstat[vmstat.THP_ZERO_PAGE_ALLOC_FAILED] += 1
        return False
    from vmsim.mm.folio import prep_compound_page
    prep_compound_page(k, pfn, PMD_ORDER)        # not large_rmappable
    k.huge_zero_pfn = pfn
    st.huge_zero_refcount = 2
    k.vmstat[vmstat.THP_ZERO_PAGE_ALLOC] += 1
    return True


def put_huge_zero_folio(k):
    st = _thp(k)
    st.huge_zero_refcount -= 1
    if st.huge_zero_refcount <= 0:
        raise AssertionError("BUG_ON: put_huge_zero_folio dropped the last reference")


def mm_get_huge_zero_folio(mm) -> int:
    """mm_get_huge_zero_folio(): the folio's PFN, one reference per mm
    (MMF_HUGE_ZERO_FOLIO); -1 if it cannot be allocated. This machine's kernel is built
    without CONFIG_PERSISTENT_HUGE_ZERO_FOLIO."""
    k = mm.kernel
    if mm.flags & (1 << MMF_HUGE_ZERO_FOLIO):
        return k.huge_zero_pfn
    if not get_huge_zero_folio(k):
        return -1
    mm.flags |= 1 << MMF_HUGE_ZERO_FOLIO
    return k.huge_zero_pfn


def mm_put_huge_zero_folio(mm):
    """mm_put_huge_zero_folio(): at __mmput, drop the mm's reference."""
    if mm.flags & (1 << MMF_HUGE_ZERO_FOLIO):
        put_huge_zero_folio(mm.kernel)


def shrink_huge_zero_folio_scan(k) -> int:
    """shrink_huge_zero_folio_scan(): free the folio once only the shrinker's
    reference is left."""
    st = _thp(k)
    if st.huge_zero_refcount != 1:
        return 0
    st.huge_zero_refcount = 0
    pfn, k.huge_zero_pfn = k.huge_zero_pfn, -1
    from vmsim.mm.swap import folio_put
    folio_put(k, pfn)
    return HPAGE_PMD_NR


def is_huge_zero_pmd(k, pmd: int) -> bool:
    return bool(pmd & _P) and ((pmd & _PFN2M) >> 12) == getattr(k, "huge_zero_pfn", -1)


# --- gfp ---------------------------------------------------------------------------------
def _gfp():
    from vmsim.mm import page_alloc as A
    light = (A.GFP_HIGHUSER_MOVABLE | A.__GFP_COMP | A.__GFP_NOMEMALLOC | A.__GFP_NOWARN) & \
        ~A.__GFP_RECLAIM
    return light, light | A.__GFP_DIRECT_RECLAIM


GFP_TRANSHUGE_LIGHT, GFP_TRANSHUGE = _gfp()


def vma_thp_gfp_mask(vma, k=None) -> int:
    """vma_thp_gfp_mask(): the defrag mode decides whether the fault may stall (shmem
    asks with no VMA for write(2): ``k`` then names the machine)."""
    from vmsim.mm.page_alloc import __GFP_NORETRY, __GFP_KSWAPD_RECLAIM, __GFP_DIRECT_RECLAIM
    madvised = vma is not None and bool(vma.vm_flags & VM_HUGEPAGE)
    defrag = (vma.vm_mm.kernel if vma is not None else k).sysfs[THP + "defrag"]
    if defrag == "always":
        return GFP_TRANSHUGE | (0 if madvised else __GFP_NORETRY)
    if defrag == "defer":
        return GFP_TRANSHUGE_LIGHT | __GFP_KSWAPD_RECLAIM
    if defrag == "defer+madvise":
        return GFP_TRANSHUGE_LIGHT | (__GFP_DIRECT_RECLAIM if madvised else __GFP_KSWAPD_RECLAIM)
    if defrag == "madvise":
        return GFP_TRANSHUGE_LIGHT | (__GFP_DIRECT_RECLAIM if madvised else 0)
    return GFP_TRANSHUGE_LIGHT


def _alloc_large_folio(k, gfp: int, order: int) -> int:
    """vma_alloc_folio() for a large order: the buddy block, prep_compound_page and
    folio_prep_large_rmappable(); -1 when no block is free."""
    from vmsim.mm.folio import prep_compound_page
    pfn = k.page_alloc.alloc_pages(gfp, order, k._current_cpu())
    if pfn < 0:
        return -1
    prep_compound_page(k, pfn, order)
    k.mem.flags[pfn] = k.mem.flags[pfn] | PG_large_rmappable
    return pfn


def folio_zero_user(k, folio: int, nr: int):
    """folio_zero_user(): clear every page of the folio, as one operation (freed frames
    already read as zeros; dropping any data left is the whole clear)."""
    data = k.page_data
    for p in (k.mem.np_private[folio:folio + nr].nonzero()[0] + folio).tolist():
        data.clear(p)


def vma_alloc_anon_folio_pmd(vma, addr: int) -> int:
    """vma_alloc_anon_folio_pmd(): a zeroed PMD-order folio, or -1 after counting
    THP_FAULT_FALLBACK (no memcg: the charge never fails)."""
    k = vma.vm_mm.kernel
    gfp = vma_thp_gfp_mask(vma)
    folio = _alloc_large_folio(k, gfp, PMD_ORDER)
    if folio < 0:
        k.vmstat[vmstat.THP_FAULT_FALLBACK] += 1
        count_mthp_stat(k, PMD_ORDER, "anon_fault_fallback")
        return -1
    folio_zero_user(k, folio, HPAGE_PMD_NR)
    return folio


# --- deposited page tables ---------------------------------------------------------------
def zap_deposited_table(mm, pmdp: int):
    """zap_deposited_table(): free the withdrawn table, mm_dec_nr_ptes."""
    from vmsim.arch.x86.mm.pgtable import pagetable_free
    pgtable = pgtable_trans_huge_withdraw(mm, pmdp)
    pagetable_free(mm.kernel, pgtable)
    mm.pgtables_bytes -= 4096


# --- the PMD entry ---------------------------------------------------------------------------
def folio_mk_pmd(pfn: int, prot: int) -> int:
    """folio_mk_pmd(): pfn_pmd() + pmd_mkhuge()."""
    return (pfn << 12) | prot | _PSE


def maybe_pmd_mkwrite(pmd: int, vma) -> int:
    if vma.vm_flags & VM_WRITE:
        pmd |= _RW
    return pmd


def set_pmd_at(mm, addr: int, pmdp: int, pmd: int):
    """set_pmd_at(): store a huge PMD."""
    mm.kernel.ptpool.mv[pmdp] = pmd


def pmdp_huge_get_and_clear(mm, addr: int, pmdp: int) -> int:
    """pmdp_huge_get_and_clear() (and its _full variant)."""
    pool = mm.kernel.ptpool.mv
    old = pool[pmdp]
    pool[pmdp] = 0
    return old


def pmdp_huge_clear_flush(vma, haddr: int, pmdp: int) -> int:
    """pmdp_huge_clear_flush(): clear and flush_pmd_tlb_range()."""
    from vmsim.arch.x86.mm.tlb import flush_tlb_range, _note_downgrade
    old = pmdp_huge_get_and_clear(vma.vm_mm, haddr, pmdp)
    if old & _P:
        _note_downgrade(vma.vm_mm, haddr, haddr + HPAGE_PMD_SIZE)
        flush_tlb_range(vma, haddr, haddr + HPAGE_PMD_SIZE)
    return old


def pmdp_invalidate(vma, haddr: int, pmdp: int) -> int:
    """pmdp_invalidate(): mark the PMD not present (pmd_mkinvalid) and flush; the old
    value is returned."""
    from vmsim.arch.x86.mm.tlb import flush_tlb_range, _note_downgrade
    pool = vma.vm_mm.kernel.ptpool.mv
    old = pool[pmdp]
    pool[pmdp] = (old & ~_P) | _PROTNONE if old & _P else old
    _note_downgrade(vma.vm_mm, haddr, haddr + HPAGE_PMD_SIZE)
    flush_tlb_range(vma, haddr, haddr + HPAGE_PMD_SIZE)
    return old


def pmdp_invalidate_ad(vma, haddr: int, pmdp: int) -> int:
    """pmdp_invalidate_ad() (arch/x86/mm/pgtable.c): mark the PMD not present and
    return the old value; no flush, since the CPU cannot set Accessed or Dirty in an
    invalid entry (the caller flushes if the new entry needs it)."""
    pool = vma.vm_mm.kernel.ptpool.mv
    old = pool[pmdp]
    pool[pmdp] = (old & ~_P) | _PROTNONE if old & _P else old
    return old


def pmdp_set_wrprotect(mm, addr: int, pmdp: int):
    from vmsim.arch.x86.mm.tlb import _note_downgrade
    pool = mm.kernel.ptpool.mv
    if pool[pmdp] & _RW:
        pool[pmdp] = pool[pmdp] & ~_RW
        _note_downgrade(mm, addr, addr + HPAGE_PMD_SIZE)


def pmdp_set_access_flags(vma, haddr: int, pmdp: int, entry: int, dirty: int) -> bool:
    """pmdp_set_access_flags(): store only more permissive bits; True if it changed."""
    pool = vma.vm_mm.kernel.ptpool.mv
    if pool[pmdp] == entry:
        return False
    pool[pmdp] = entry
    return True


# --- rmap at PMD level (mm/rmap.c) -----------------------------------------------------------
def _folio_nr(k, folio: int) -> int:
    f = k.mem.flags[folio]
    return 1 << ((f & PG_ORDER_MASK) >> PG_ORDER_SHIFT) if f & PG_head else 1


def folio_add_new_anon_rmap_pmd(k, folio: int, vma, haddr: int, exclusive: bool):
    """folio_add_new_anon_rmap() for a PMD-mapped large folio: entire mapcount 1,
    AnonExclusive on the head page only (a PMD maps the folio as one: only a
    PTE-mapped THP keeps it per page, include/linux/page-flags.h), NR_ANON_MAPPED
    and NR_ANON_THPS."""
    from vmsim.mm.rmap import __folio_set_anon
    mem = k.mem
    nr = _folio_nr(k, folio)
    if not vma.vm_flags & VM_DROPPABLE:
        mem.flags[folio] = mem.flags[folio] | PG_swapbacked
    __folio_set_anon(k, folio, vma, haddr, exclusive)     # SetPageAnonExclusive(&folio->page)
    mem.lru_prev[folio + 1] = 1              # _entire_mapcount
    mem.mapping[folio + 1] = 1               # _large_mapcount
    mem.index[folio + 1] = 0                 # _nr_pages_mapped (PTE-mapped pages)
    k.vmstat[vmstat.NR_ANON_PAGES] += nr
    if nr == HPAGE_PMD_NR:
        k.vmstat[vmstat.NR_ANON_TRANSPARENT_HUGEPAGES] += nr
    mod_mthp_stat(k, PMD_ORDER if nr == HPAGE_PMD_NR else nr.bit_length() - 1, "nr_anon", 1)


def folio_add_new_anon_rmap_ptes(k, folio: int, vma, addr: int):
    """folio_add_new_anon_rmap() for a new large folio mapped by PTEs (an mTHP):
    every page mapped once and AnonExclusive, NR_ANON_MAPPED += nr, nr_anon."""
    from vmsim.mm.rmap import __folio_set_anon
    mem = k.mem
    nr = _folio_nr(k, folio)
    if not vma.vm_flags & VM_DROPPABLE:
        mem.flags[folio] = mem.flags[folio] | PG_swapbacked
    __folio_set_anon(k, folio, vma, addr, True)
    for p in range(folio, folio + nr):
        mem.mapcount[p] = 1
        mem.flags[p] = mem.flags[p] | PG_anon_exclusive
    mem.lru_prev[folio + 1] = 0
    mem.mapping[folio + 1] = nr
    mem.index[folio + 1] = nr
    k.vmstat[vmstat.NR_ANON_PAGES] += nr
    mod_mthp_stat(k, nr.bit_length() - 1, "nr_anon", 1)


def folio_add_anon_rmap_pmd(k, folio: int, vma):
    """__folio_add_rmap(RMAP_LEVEL_PMD) for another mapping (fork shares it)."""
    mem = k.mem
    mem.lru_prev[folio + 1] += 1
    mem.mapping[folio + 1] += 1
    if mem.lru_prev[folio + 1] == 1:
        nr = HPAGE_PMD_NR - mem.index[folio + 1]
        k.vmstat[vmstat.NR_ANON_PAGES] += nr
        k.vmstat[vmstat.NR_ANON_TRANSPARENT_HUGEPAGES] += HPAGE_PMD_NR


def folio_remove_rmap_pmd(k, folio: int, vma):
    """folio_remove_rmap_pmd(): drop one entire mapping; the last one leaves
    NR_ANON_THPS (NR_FILE_PMDMAPPED / NR_SHMEM_PMDMAPPED for a page-cache folio) and
    unmaps the pages no PTE maps (NR_ANON_MAPPED / NR_FILE_MAPPED); an anon folio
    left partially mapped goes on the deferred split queue."""
    mem = k.mem
    em = mem.lru_prev[folio + 1] - 1
    mem.lru_prev[folio + 1] = em
    mem.mapping[folio + 1] -= 1
    if em < 0:
        raise AssertionError(f"VM_BUG_ON: entire mapcount underflow on pfn {folio:#x}")
    if em == 0:
        mapped = mem.index[folio + 1]
        nr = HPAGE_PMD_NR - mapped
        f = mem.flags[folio]
        if f & PG_anon:
            k.vmstat[vmstat.NR_ANON_PAGES] -= nr
            k.vmstat[vmstat.NR_ANON_TRANSPARENT_HUGEPAGES] -= HPAGE_PMD_NR
            if mapped and nr:
                deferred_split_folio(k, folio, True)
        else:
            k.vmstat[vmstat.NR_MAPPED] -= nr
            k.vmstat[vmstat.NR_SHMEM_PMDMAPPED if f & PG_swapbacked
                     else vmstat.NR_FILE_PMDMAPPED] -= HPAGE_PMD_NR
    if vma is not None and vma.vm_flags & VM_LOCKED:
        from vmsim.mm.mlock import munlock_folio
        munlock_folio(k, folio)


def folio_try_dup_anon_rmap_pmd(k, folio: int, dst_vma, src_vma) -> int:
    """folio_try_dup_anon_rmap_pmd() (include/linux/rmap.h __folio_try_dup_anon_rmap,
    RMAP_LEVEL_PMD): fork shares the PMD; the head page is no longer AnonExclusive
    (no pins exist, so this never fails), the entire and large mapcounts rise."""
    mem = k.mem
    mem.flags[folio] = mem.flags[folio] & ~PG_anon_exclusive
    mem.lru_prev[folio + 1] += 1
    mem.mapping[folio + 1] += 1
    return 0


# --- deferred split -------------------------------------------------------------------------
def deferred_split_folio(k, folio: int, partially_mapped: bool):
    """deferred_split_folio(): queue a THP for the shrinker; a partially mapped one
    is flagged (and counted: THP_DEFERRED_SPLIT_PAGE, split_deferred)."""
    mem = k.mem
    order = (mem.flags[folio] & PG_ORDER_MASK) >> PG_ORDER_SHIFT
    if order <= 1:
        return
    st = _thp(k)
    if partially_mapped:
        if not mem.flags[folio] & PG_partially_mapped:
            mem.flags[folio] = mem.flags[folio] | PG_partially_mapped
            if order == PMD_ORDER:
                k.vmstat[vmstat.THP_DEFERRED_SPLIT_PAGE] += 1
            count_mthp_stat(k, order, "split_deferred")
            mod_mthp_stat(k, order, "nr_anon_partially_mapped", 1)
    elif folio in st.split_queue:
        return
    st.split_queue[folio] = None


def _unqueue_deferred_split(k, folio: int):
    """__folio_unqueue_deferred_split(): leave the queue (the folio is freed or split)."""
    st = _thp(k)
    if st.split_queue.pop(folio, 0) is None:
        mem = k.mem
        if mem.flags[folio] & PG_partially_mapped:
            mem.flags[folio] = mem.flags[folio] & ~PG_partially_mapped
            order = (mem.flags[folio] & PG_ORDER_MASK) >> PG_ORDER_SHIFT
            mod_mthp_stat(k, order, "nr_anon_partially_mapped", -1)


def folio_undo_large_rmappable(k, folio: int, order: int):
    """folio_undo_large_rmappable() + free_pages_prepare()'s mTHP accounting: a freed
    large folio leaves the deferred split queue and nr_anon."""
    _unqueue_deferred_split(k, folio)
    if k.mem.flags[folio] & PG_anon:
        mod_mthp_stat(k, order, "nr_anon", -1)


def thp_underused(k, folio: int) -> bool:
    """thp_underused(): more than max_ptes_none of its pages are zero-filled."""
    max_ptes_none = int(k.sysfs[THP + "khugepaged/max_ptes_none"])
    if max_ptes_none == HPAGE_PMD_NR - 1:
        return False
    num_zero = 0
    for p in range(folio, folio + HPAGE_PMD_NR):
        if k.page_data.is_zero(p):
            num_zero += 1
            if num_zero > max_ptes_none:
                return True
        elif HPAGE_PMD_NR - (p - folio) - 1 + num_zero <= max_ptes_none:
            return False
    return False


def deferred_split_scan(k, nr_to_scan: int = 1 << 30) -> int:
    """deferred_split_scan(): the shrinker splits partially mapped folios, and fully
    mapped underused ones (shrink_underused); the rest leave the queue."""
    st = _thp(k)
    split = 0
    for folio in list(st.split_queue)[:nr_to_scan]:
        if folio not in st.split_queue:
            continue
        mem = k.mem
        if mem.flags[folio] & PG_partially_mapped:
            underused = False
        else:
            if k.sysfs[THP + "shrink_underused"] != "1" or not thp_underused(k, folio):
                _unqueue_deferred_split(k, folio)
                continue
            underused = True
        if split_folio(k, folio) == 0:
            split += 1
            if underused:
                k.vmstat[vmstat.THP_UNDERUSED_SPLIT_PAGE] += 1
    return split


# --- splitting the folio (split_huge_page_to_list_to_order, to order 0) ----------------
def split_folio(k, folio: int) -> int:
    """split_folio(): split an anonymous large folio into order-0 folios; 0 or -EAGAIN.

    The kernel unmaps the folio (migration entries), splits it and maps the pages
    again; vmsim splits it in place, which leaves the same state: every page becomes
    its own folio carrying its PTE mapcount and one reference per mapping, PMD
    mappings must be gone (a PMD-mapped folio is split at the PMD first by callers),
    and pages that nobody maps are freed. Extra references (pins, a caller's) make it
    fail as can_split_folio() does. Counts THP_SPLIT_PAGE / _FAILED and the per-size
    split / split_failed.
    """
    from vmsim.mm.swap import lruvec_del_folio, lruvec_add_folio, batch_refs, folio_put
    from vmsim.mm.mmu_gather import gather_refs
    mem = k.mem
    f = mem.flags[folio]
    if not f & PG_head:
        return -16
    if not f & PG_anon:
        return _split_page_cache_folio(k, folio)
    order = (f & PG_ORDER_MASK) >> PG_ORDER_SHIFT
    nr = 1 << order
    # can_split_folio(): only the mappings' references (+ our caller's, none here).
    if mem.lru_prev[folio + 1] or mem.refcount[folio] != mem.mapping[folio + 1] or \
            folio in batch_refs(k) or folio in gather_refs(k):
        if order == PMD_ORDER:
            k.vmstat[vmstat.THP_SPLIT_PAGE_FAILED] += 1
        count_mthp_stat(k, order, "split_failed")
        return -11
    _unqueue_deferred_split(k, folio)
    on_lru = f & PG_lru
    if on_lru:
        lruvec_del_folio(k, folio)
    # The folio-wide bits each new folio inherits (__split_folio_to_order).
    keep = f & (PG_anon | PG_swapbacked | PG_dirty | PG_lru | PG_referenced |
                0x100 | 0x40000 | 0x80000)                  # PG_active, unevictable, mlocked
    keep &= ~(PG_head | PG_large_rmappable | PG_partially_mapped)
    anon_vma_id = mem.mapping[folio]
    index = mem.index[folio]
    nr_anon_mapped = 0
    refs = []
    for i in range(nr):
        p = folio + i
        excl = mem.flags[p] & PG_anon_exclusive
        mem.flags[p] = keep | excl
        mem.mapping[p] = anon_vma_id
        mem.index[p] = index + i
        if i == 1:
            mem.lru_prev[p] = 0
            mem.lru_next[p] = 0
        mc = mem.mapcount[p]
        refs.append(mc)
        if mc:
            nr_anon_mapped += 1
    for i in range(nr):
        p = folio + i
        mem.refcount[p] = refs[i] + 1          # + the split's own reference
        if on_lru:
            mem.lru_prev[p] = mem.lru_next[p] = 0
            lruvec_add_folio(k, p)
    if order == PMD_ORDER:
        k.vmstat[vmstat.THP_SPLIT_PAGE] += 1
    count_mthp_stat(k, order, "split")
    mod_mthp_stat(k, order, "nr_anon", -1)
    # free_folio_and_swap_cache() of every new folio: unmapped pages are freed.
    for i in range(nr):
        folio_put(k, folio + i)
    return 0


def _split_page_cache_folio(k, folio: int) -> int:
    """split_folio() of a page-cache folio (__folio_split to order 0): unmap_folio()
    first (try_to_unmap from every mm; a PMD mapping is zapped), then the split,
    refused with -EBUSY when its buffers cannot go (filemap_release_folio: a dirty
    ext4 buffer) and with -EAGAIN while references other than the cache's remain
    (can_split_folio; THP_SPLIT_PAGE_FAILED); pages past i_size leave the cache (shmem
    uncharges them); the pages are not mapped again (remap_page() skips file folios).
    Counts THP_SPLIT_PAGE and the per-size split stat."""
    from vmsim.mm.swap import batch_refs
    from vmsim.mm.mmu_gather import gather_refs
    from vmsim.mm.truncate import truncate_cleanup_folio, _split_to
    mem = k.mem
    mapping = k.objects[mem.mapping[folio]]
    if mapping is None:
        return -16                                  # truncated meanwhile: -EBUSY
    order = (mem.flags[folio] & PG_ORDER_MASK) >> PG_ORDER_SHIFT
    nr = 1 << order
    if mapping.folio_private and folio in mapping.folio_private and \
            not mapping.a_ops.release_folio(k, mapping, folio):
        # filemap_release_folio() first: ext4's try_to_free_buffers() fails on a dirty
        # buffer (-EBUSY, a failed split).
        if order == PMD_ORDER:
            k.vmstat[vmstat.THP_SPLIT_PAGE_FAILED] += 1
        count_mthp_stat(k, order, "split_failed")
        return -16
    truncate_cleanup_folio(k, mapping, folio)       # unmap_folio()
    if mem.refcount[folio] != nr or folio in batch_refs(k) or folio in gather_refs(k):
        if order == PMD_ORDER:
            k.vmstat[vmstat.THP_SPLIT_PAGE_FAILED] += 1
        count_mthp_stat(k, order, "split_failed")
        return -11
    _split_to(k, mapping, folio, [(i, 0) for i in range(nr)])
    if order == PMD_ORDER:
        k.vmstat[vmstat.THP_SPLIT_PAGE] += 1
    count_mthp_stat(k, order, "split")
    return 0


# --- the fault ---------------------------------------------------------------------------
def map_anon_folio_pmd(k, folio: int, pmdp: int, vma, haddr: int):
    """map_anon_folio_pmd(): dirty (writable if the VMA is) huge PMD, rmap, LRU, RSS."""
    from vmsim.mm.swap import folio_add_lru_vma
    entry = folio_mk_pmd(folio, vma.vm_page_prot) | T._PAGE_DIRTY | T._PAGE_SOFT_DIRTY
    entry = maybe_pmd_mkwrite(entry, vma)
    folio_add_new_anon_rmap_pmd(k, folio, vma, haddr, True)
    folio_add_lru_vma(k, folio, vma, k.current.cpu)
    set_pmd_at(vma.vm_mm, haddr, pmdp, entry)
    vma.vm_mm.rss_stat[MM_ANONPAGES] += HPAGE_PMD_NR
    k.vmstat[vmstat.THP_FAULT_ALLOC] += 1
    count_mthp_stat(k, PMD_ORDER, "anon_fault_alloc")


def __do_huge_pmd_anonymous_page(vmf) -> int:
    """__do_huge_pmd_anonymous_page(): allocate, deposit a table, map the PMD."""
    from vmsim.arch.x86.mm.pgtable import pte_alloc_one, pagetable_free
    from vmsim.mm.swap import folio_put
    vma = vmf.vma
    mm = vma.vm_mm
    k = mm.kernel
    haddr = vmf.address & HPAGE_PMD_MASK
    folio = vma_alloc_anon_folio_pmd(vma, vmf.address)
    if folio < 0:
        return VM_FAULT_FALLBACK
    pgtable = pte_alloc_one(mm)
    if pgtable < 0:
        folio_put(k, folio)
        return VM_FAULT_OOM
    if k.ptpool.mv[vmf.pmd] != 0:                  # !pmd_none(*vmf->pmd): raced
        pagetable_free(k, pgtable)
        folio_put(k, folio)
        return 0
    pgtable_trans_huge_deposit(mm, vmf.pmd, pgtable)
    map_anon_folio_pmd(k, folio, vmf.pmd, vma, haddr)
    mm.pgtables_bytes += 4096                      # mm_inc_nr_ptes
    deferred_split_folio(k, folio, False)
    return 0


def set_huge_zero_folio(pgtable: int, mm, vma, haddr: int, pmdp: int, zero_folio: int):
    """set_huge_zero_folio(): a read-only special PMD on the huge zero folio."""
    entry = folio_mk_pmd(zero_folio, vma.vm_page_prot) | T._PAGE_SPECIAL
    entry &= ~_RW
    pgtable_trans_huge_deposit(mm, pmdp, pgtable)
    set_pmd_at(mm, haddr, pmdp, entry)
    mm.pgtables_bytes += 4096


def do_huge_pmd_anonymous_page(vmf) -> int:
    """do_huge_pmd_anonymous_page(): the huge zero folio for a read, else a new THP."""
    from vmsim.arch.x86.mm.pgtable import pte_alloc_one, pagetable_free
    from vmsim.mm.memory import vmf_anon_prepare
    from vmsim.mm.khugepaged import khugepaged_enter_vma
    vma = vmf.vma
    mm = vma.vm_mm
    k = mm.kernel
    haddr = vmf.address & HPAGE_PMD_MASK
    if not thp_vma_suitable_order(vma, haddr, PMD_ORDER):
        return VM_FAULT_FALLBACK
    ret = vmf_anon_prepare(vmf)
    if ret:
        return ret
    khugepaged_enter_vma(vma, vma.vm_flags)
    if not vmf.flags & FAULT_FLAG_WRITE and transparent_hugepage_use_zero_page(k):
        pgtable = pte_alloc_one(mm)
        if pgtable < 0:
            return VM_FAULT_OOM
        zero_folio = mm_get_huge_zero_folio(mm)
        if zero_folio < 0:
            pagetable_free(k, pgtable)
            k.vmstat[vmstat.THP_FAULT_FALLBACK] += 1
            return VM_FAULT_FALLBACK
        if k.ptpool.mv[vmf.pmd] == 0:
            set_huge_zero_folio(pgtable, mm, vma, haddr, vmf.pmd, zero_folio)
        else:
            pagetable_free(k, pgtable)
        return 0
    return __do_huge_pmd_anonymous_page(vmf)


def create_huge_pmd(vmf) -> int:
    """create_huge_pmd(): anonymous VMAs go to do_huge_pmd_anonymous_page; file VMAs
    have no ->huge_fault here."""
    if vma_is_anonymous(vmf.vma):
        return do_huge_pmd_anonymous_page(vmf)
    return VM_FAULT_FALLBACK


def create_huge_pud(vmf) -> int:
    """create_huge_pud(): anonymous memory has no PUD THP; fall back."""
    return VM_FAULT_FALLBACK


def wp_huge_pud(vmf, orig_pud) -> int:
    """wp_huge_pud(): only DAX / ->huge_fault VMAs have huge PUDs; anon never does."""
    return VM_FAULT_FALLBACK


def huge_pud_set_accessed(vmf, orig_pud):
    """huge_pud_set_accessed(): unreachable for anonymous memory (no huge PUDs)."""
    raise NotImplementedError("huge PUD mappings exist only for DAX (not modelled)")


def touch_pmd(vma, addr: int, pmdp: int, write: bool):
    """touch_pmd(): young (and dirty on a write)."""
    pool = vma.vm_mm.kernel.ptpool.mv
    e = pool[pmdp] | T._PAGE_ACCESSED
    if write:
        e |= T._PAGE_DIRTY | T._PAGE_SOFT_DIRTY
    pmdp_set_access_flags(vma, addr & HPAGE_PMD_MASK, pmdp, e, write)


def huge_pmd_set_accessed(vmf):
    """huge_pmd_set_accessed(): a spurious fault on a present huge PMD."""
    pool = vmf.vma.vm_mm.kernel.ptpool.mv
    if pool[vmf.pmd] != vmf.orig_pmd:
        return
    touch_pmd(vmf.vma, vmf.address, vmf.pmd, bool(vmf.flags & FAULT_FLAG_WRITE))


def do_huge_zero_wp_pmd(vmf) -> int:
    """do_huge_zero_wp_pmd(): a write to the huge zero PMD gets a new THP in its place
    (VM_FAULT_FALLBACK when none can be allocated: the caller splits)."""
    vma = vmf.vma
    mm = vma.vm_mm
    k = mm.kernel
    haddr = vmf.address & HPAGE_PMD_MASK
    folio = vma_alloc_anon_folio_pmd(vma, vmf.address)
    if folio < 0:
        return VM_FAULT_FALLBACK
    k.mmu_notifier_invalidate_range_start(mm, "clear", haddr, haddr + HPAGE_PMD_SIZE)
    pmdp_huge_clear_flush(vma, haddr, vmf.pmd)
    map_anon_folio_pmd(k, folio, vmf.pmd, vma, haddr)
    k.mmu_notifier_invalidate_range_end(mm, "clear", haddr, haddr + HPAGE_PMD_SIZE)
    return 0


def do_huge_pmd_wp_page(vmf) -> int:
    """do_huge_pmd_wp_page(): reuse an exclusive THP, else split the PMD and let the
    PTE fault copy one page (VM_FAULT_FALLBACK). The 5.4 profile copies instead."""
    from vmsim.mm.rmap import folio_move_anon_rmap
    vma = vmf.vma
    mm = vma.vm_mm
    k = mm.kernel
    if k.profile.get("thp", {}).get("cow", "split") == "copy":
        from vmsim.mm.huge_memory_5_4 import do_huge_pmd_wp_page_5_4
        return do_huge_pmd_wp_page_5_4(vmf)
    unshare = vmf.flags & FAULT_FLAG_UNSHARE
    haddr = vmf.address & HPAGE_PMD_MASK
    orig_pmd = vmf.orig_pmd
    if is_huge_zero_pmd(k, orig_pmd):
        ret = do_huge_zero_wp_pmd(vmf)
        if not ret & VM_FAULT_FALLBACK:
            return ret
    else:
        mem = k.mem
        page = (orig_pmd & _PFN2M) >> 12
        folio = page
        reuse = bool(mem.flags[page] & PG_anon_exclusive)
        if not reuse and mem.refcount[folio] == 1:
            # folio_ref_count(folio) == 1: nobody else holds it.
            folio_move_anon_rmap(k, folio, vma)
            mem.flags[page] = mem.flags[page] | PG_anon_exclusive
            reuse = True
        if reuse:
            if unshare:
                return 0
            entry = orig_pmd | T._PAGE_ACCESSED | T._PAGE_DIRTY | T._PAGE_SOFT_DIRTY
            entry = maybe_pmd_mkwrite(entry, vma)
            pmdp_set_access_flags(vma, haddr, vmf.pmd, entry, 1)
            return 0
    __split_huge_pmd(vma, vmf.pmd, vmf.address, False)
    return VM_FAULT_FALLBACK


def wp_huge_pmd(vmf) -> int:
    """wp_huge_pmd() (mm/memory.c): anonymous PMDs go to do_huge_pmd_wp_page."""
    vma = vmf.vma
    if vma_is_anonymous(vma):
        return do_huge_pmd_wp_page(vmf)
    __split_huge_pmd(vma, vmf.pmd, vmf.address, False)
    return VM_FAULT_FALLBACK


def do_huge_pmd_numa_page(vmf) -> int:
    raise NotImplementedError("do_huge_pmd_numa_page: NUMA balancing is not modelled")


# --- splitting the PMD ----------------------------------------------------------------------
def __split_huge_zero_page_pmd(vma, haddr: int, pmdp: int):
    """__split_huge_zero_page_pmd(): 512 PTEs on the 4 KiB zero page."""
    from vmsim.arch.x86.pgtable import pmd_populate, set_pte_at
    mm = vma.vm_mm
    k = mm.kernel
    pmdp_huge_clear_flush(vma, haddr, pmdp)
    pgtable = pgtable_trans_huge_withdraw(mm, pmdp)
    base = k.mem.private[pgtable] * 512
    entry = (k.zero_pfn << 12) | vma.vm_page_prot | T._PAGE_SPECIAL
    for i in range(HPAGE_PMD_NR):
        set_pte_at(mm, haddr + (i << 12), base + i, entry)
    pmd_populate(mm, pmdp, pgtable)


def __split_huge_pmd_locked(vma, pmdp: int, haddr: int, freeze: bool):
    """__split_huge_pmd_locked(): replace the huge PMD by the deposited PTE table,
    512 PTEs carrying its bits, AnonExclusive per page; the folio stays large."""
    from vmsim.arch.x86.pgtable import pmd_populate, set_ptes
    from vmsim.mm.rmap import folio_add_anon_rmap_ptes, RMAP_EXCLUSIVE, RMAP_NONE
    mm = vma.vm_mm
    k = mm.kernel
    pool = k.ptpool.mv
    k.vmstat[vmstat.THP_SPLIT_PMD] += 1
    if not vma_is_anonymous(vma):
        # A file PMD is not split into PTEs: it is zapped, and later faults map the
        # folio again (with PTEs, or a PMD once the range allows).
        from vmsim.mm.memory import mm_counter_file
        from vmsim.mm.swap import folio_put
        old_pmd = pmdp_huge_clear_flush(vma, haddr, pmdp)
        if is_huge_zero_pmd(k, old_pmd):
            return
        folio = (old_pmd & _PFN2M) >> 12
        mem = k.mem
        if not mem.flags[folio] & PG_dirty and old_pmd & T._PAGE_DIRTY:
            from vmsim.mm.filemap import folio_mark_dirty
            folio_mark_dirty(k, folio)
        if not mem.flags[folio] & PG_referenced and old_pmd & T._PAGE_ACCESSED:
            mem.flags[folio] = mem.flags[folio] | PG_referenced
        folio_remove_rmap_pmd(k, folio, vma)
        folio_put(k, folio)
        mm.rss_stat[mm_counter_file(k, folio)] -= HPAGE_PMD_NR
        return
    if is_huge_zero_pmd(k, pool[pmdp]):
        return __split_huge_zero_page_pmd(vma, haddr, pmdp)
    old_pmd = pmdp_invalidate(vma, haddr, pmdp)
    page = (old_pmd & _PFN2M) >> 12
    folio = page
    mem = k.mem
    dirty = bool(old_pmd & T._PAGE_DIRTY)
    if dirty:
        mem.flags[folio] = mem.flags[folio] | PG_dirty
    write = bool(old_pmd & _RW)
    young = bool(old_pmd & T._PAGE_ACCESSED)
    anon_exclusive = bool(mem.flags[page] & PG_anon_exclusive)
    mem.refcount[folio] += HPAGE_PMD_NR - 1                  # folio_ref_add()
    folio_add_anon_rmap_ptes(k, page, HPAGE_PMD_NR, vma, haddr,
                             RMAP_EXCLUSIVE if anon_exclusive else RMAP_NONE)
    pgtable = pgtable_trans_huge_withdraw(mm, pmdp)
    base = k.mem.private[pgtable] * 512
    entry = (page << 12) | vma.vm_page_prot                     # mk_pte()
    if write:
        entry |= _RW
    if not young:
        entry &= ~T._PAGE_ACCESSED
    if dirty:
        entry |= T._PAGE_DIRTY | T._PAGE_SOFT_DIRTY
    set_ptes(mm, haddr, base, entry, HPAGE_PMD_NR)
    folio_remove_rmap_pmd(k, folio, vma)
    pmd_populate(mm, pmdp, pgtable)


def __split_huge_pmd(vma, pmdp: int, address: int, freeze: bool = False):
    """__split_huge_pmd(): under the PMD lock, between mmu-notifier calls."""
    k = vma.vm_mm.kernel
    haddr = address & HPAGE_PMD_MASK
    k.mmu_notifier_invalidate_range_start(vma.vm_mm, "clear", haddr, haddr + HPAGE_PMD_SIZE)
    e = k.ptpool.mv[pmdp]
    if e & _PSE and e & (_P | _PROTNONE):                       # pmd_trans_huge()
        __split_huge_pmd_locked(vma, pmdp, haddr, freeze)
    k.mmu_notifier_invalidate_range_end(vma.vm_mm, "clear", haddr, haddr + HPAGE_PMD_SIZE)


def mm_find_pmd(mm, address: int) -> int:
    """mm_find_pmd(): the PMD entry's pool index, or -1 if an upper level is missing."""
    from vmsim.arch.x86.pgtable import pgd_offset, p4d_offset, pud_offset, pmd_offset
    k = mm.kernel
    pool = k.ptpool.mv
    p = pgd_offset(mm, address)
    if not pool[p] & _P:
        return -1
    if k.la57:
        p = p4d_offset(mm, p, address)
        if not pool[p] & _P:
            return -1
    p = pud_offset(mm, p, address)
    if not pool[p] & _P or pool[p] & _PSE:
        return -1
    return pmd_offset(mm, p, address)


def split_huge_pmd_address(vma, address: int, freeze: bool = False):
    pmdp = mm_find_pmd(vma.vm_mm, address)
    if pmdp < 0:
        return
    __split_huge_pmd(vma, pmdp, address, freeze)


def split_huge_pmd_if_needed(vma, address: int):
    """split_huge_pmd_if_needed(): split a huge PMD that ``address`` cuts in two
    (hugetlb VMAs split only on huge page boundaries: hugetlb_split())."""
    if vma.vm_flags & VM_HUGETLB:
        return
    if address & (HPAGE_PMD_SIZE - 1):
        lo = address & HPAGE_PMD_MASK
        hi = lo + HPAGE_PMD_SIZE
        if vma.vm_start <= lo and hi <= vma.vm_end:
            split_huge_pmd_address(vma, address, False)


def vma_adjust_trans_huge(vma, start: int, end: int, nxt=None):
    """vma_adjust_trans_huge(): before a VMA's bounds move, split huge PMDs across
    the new boundaries (start, end, and next's new start). A VMA under 2 MiB holds no
    huge PMD (range_in_vma() of a PMD-sized range fails), so it skips the calls of
    split_huge_pmd_if_needed (static inline in the kernel): most merges and splits."""
    if vma.vm_end - vma.vm_start >= HPAGE_PMD_SIZE:
        split_huge_pmd_if_needed(vma, start)
        split_huge_pmd_if_needed(vma, end)
    if nxt is not None and nxt.vm_end - nxt.vm_start >= HPAGE_PMD_SIZE:
        split_huge_pmd_if_needed(nxt, end)


# --- zap, fork, mprotect, mremap at PMD level -----------------------------------------------
def zap_huge_pmd(tlb, vma, pmdp: int, addr: int) -> int:
    """zap_huge_pmd(): clear a whole huge PMD, free its deposited table, drop the rmap
    and gather the folio."""
    from vmsim.mm.mmu_gather import tlb_remove_pmd_tlb_entry, __tlb_remove_folio_pages
    from vmsim.arch.x86.mm.tlb import _note_downgrade
    mm = tlb.mm
    k = mm.kernel
    orig = pmdp_huge_get_and_clear(mm, addr, pmdp)
    tlb_remove_pmd_tlb_entry(tlb, pmdp, addr)
    _note_downgrade(mm, addr, addr + HPAGE_PMD_SIZE)
    if is_huge_zero_pmd(k, orig):
        zap_deposited_table(mm, pmdp)
        return 1
    folio = (orig & _PFN2M) >> 12
    folio_remove_rmap_pmd(k, folio, vma)
    if k.mem.flags[folio] & PG_anon:
        zap_deposited_table(mm, pmdp)
        mm.rss_stat[MM_ANONPAGES] -= HPAGE_PMD_NR
    else:
        # A page-cache folio: no deposited table on x86 (arch_needs_pgtable_deposit);
        # a young PMD marks it accessed (vma_has_recency). A dirty PMD does not mark
        # the folio dirty here: shared writes dirtied it at fault time
        # (fault_dirty_shared_page), and shmem folios are dirty from their creation.
        from vmsim.mm.memory import mm_counter_file
        from vmsim.mm.mm_types import VM_SEQ_READ, VM_RAND_READ
        mm.rss_stat[mm_counter_file(k, folio)] -= HPAGE_PMD_NR
        if orig & T._PAGE_ACCESSED and not vma.vm_flags & (VM_SEQ_READ | VM_RAND_READ):
            from vmsim.mm.swap import folio_mark_accessed
            folio_mark_accessed(k, folio)
    if __tlb_remove_folio_pages(tlb, folio, 1, False):
        from vmsim.mm.mmu_gather import tlb_flush_mmu
        tlb_flush_mmu(tlb)
    return 1


def copy_huge_pmd(dst_mm, src_mm, dst_pmdp: int, src_pmdp: int, addr: int,
                  dst_vma, src_vma) -> int:
    """copy_huge_pmd(): share the THP with the child, write-protected in both (the
    huge zero PMD just takes a zero-folio reference). 0 or -ENOMEM."""
    from vmsim.arch.x86.mm.pgtable import pte_alloc_one
    k = src_mm.kernel
    pool = k.ptpool.mv
    if not vma_is_anonymous(dst_vma):
        return 0
    pgtable = pte_alloc_one(dst_mm)
    if pgtable < 0:
        return -12
    pmd = pool[src_pmdp]
    if is_huge_zero_pmd(k, pmd):
        mm_get_huge_zero_folio(dst_mm)
    else:
        folio = (pmd & _PFN2M) >> 12
        k.mem.refcount[folio] += 1                          # folio_get()
        folio_try_dup_anon_rmap_pmd(k, folio, dst_vma, src_vma)
        dst_mm.rss_stat[MM_ANONPAGES] += HPAGE_PMD_NR
    dst_mm.pgtables_bytes += 4096
    pgtable_trans_huge_deposit(dst_mm, dst_pmdp, pgtable)
    pmdp_set_wrprotect(src_mm, addr, src_pmdp)
    pmd = pmd & ~_RW & ~T._PAGE_UFFD_WP
    pmd &= ~T._PAGE_ACCESSED                                # pmd_mkold()
    set_pmd_at(dst_mm, addr, dst_pmdp, pmd)
    return 0


def can_change_pmd_writable(vma, addr: int, pmd: int) -> bool:
    """can_change_pmd_writable(): private: an AnonExclusive THP (not the huge zero
    folio); shared: a dirty PMD."""
    if not vma.vm_flags & VM_WRITE:
        return False
    if (pmd & (_PROTNONE | _P)) == _PROTNONE:
        return False
    if not vma.vm_flags & VM_SHARED:
        k = vma.vm_mm.kernel
        if is_huge_zero_pmd(k, pmd):
            return False
        page = (pmd & _PFN2M) >> 12
        return bool(k.mem.flags[page] & PG_anon) and bool(k.mem.flags[page] & PG_anon_exclusive)
    return bool(pmd & T._PAGE_DIRTY)


def change_huge_pmd(tlb, vma, pmdp: int, addr: int, newprot: int, cp_flags: int) -> int:
    """change_huge_pmd(): pmd_modify() a whole huge PMD (MM_CP_TRY_CHANGE_WRITABLE
    maps an exclusive THP writable at once); flush it; HPAGE_PMD_NR."""
    from vmsim.arch.x86.pgtable import pte_modify
    from vmsim.mm.mprotect import MM_CP_TRY_CHANGE_WRITABLE, huge_pmd_needs_flush
    from vmsim.mm.mmu_gather import tlb_flush_pmd_range
    from vmsim.arch.x86.mm.tlb import _note_downgrade
    mm = vma.vm_mm
    old = pmdp_invalidate_ad(vma, addr, pmdp)
    entry = pte_modify(old, newprot) | _PSE
    if cp_flags & MM_CP_TRY_CHANGE_WRITABLE and not entry & _RW and \
            can_change_pmd_writable(vma, addr, entry):
        entry |= _RW
    set_pmd_at(mm, addr, pmdp, entry)
    if (old & _RW and not entry & _RW) or (old & _P and not entry & _P):
        _note_downgrade(mm, addr, addr + HPAGE_PMD_SIZE)
    if huge_pmd_needs_flush(old, entry):
        tlb_flush_pmd_range(tlb, addr, HPAGE_PMD_SIZE)
    return HPAGE_PMD_NR


def move_huge_pmd(vma, old_addr: int, new_addr: int, old_pmdp: int, new_pmdp: int) -> bool:
    """move_huge_pmd(): move a whole huge PMD (and its deposited table) to an empty
    PMD of the new range."""
    from vmsim.arch.x86.mm.tlb import _note_downgrade, flush_tlb_range
    mm = vma.vm_mm
    pool = mm.kernel.ptpool.mv
    if pool[new_pmdp]:
        return False
    pmd = pmdp_huge_get_and_clear(mm, old_addr, old_pmdp)
    if old_pmdp >> 9 != new_pmdp >> 9 and vma_is_anonymous(vma):
        # pmd_move_must_withdraw(): another PMD table has another PMD lock and its own
        # list of deposits (split PMD ptlocks); file PMDs have none on x86.
        pgtable = pgtable_trans_huge_withdraw(mm, old_pmdp)
        pgtable_trans_huge_deposit(mm, new_pmdp, pgtable)
    set_pmd_at(mm, new_addr, new_pmdp, pmd)
    _note_downgrade(mm, old_addr, old_addr + HPAGE_PMD_SIZE)
    flush_tlb_range(vma, old_addr, old_addr + HPAGE_PMD_SIZE)
    return True


def madvise_free_huge_pmd(tlb, vma, pmdp: int, addr: int, nxt: int) -> bool:
    """madvise_free_huge_pmd(): a whole PMD is marked lazyfree (clean, old); a partial
    range splits the folio's PMD (returns False: the caller walks the PTEs)."""
    from vmsim.mm.swap import folio_mark_lazyfree
    mm = tlb.mm
    k = mm.kernel
    pool = k.ptpool.mv
    orig = pool[pmdp]
    if is_huge_zero_pmd(k, orig):
        return True
    folio = (orig & _PFN2M) >> 12
    if k.mem.lru_prev[folio + 1] + k.mem.index[folio + 1] != 1:    # folio_maybe_mapped_shared
        return True
    if nxt - addr != HPAGE_PMD_SIZE:
        __split_huge_pmd(vma, pmdp, addr, False)
        return False
    mem = k.mem
    if mem.flags[folio] & PG_dirty:
        mem.flags[folio] = mem.flags[folio] & ~PG_dirty
    if orig & (T._PAGE_ACCESSED | T._PAGE_DIRTY):
        from vmsim.mm.mmu_gather import tlb_remove_pmd_tlb_entry
        pmdp_invalidate(vma, addr, pmdp)
        set_pmd_at(mm, addr, pmdp, orig & ~(T._PAGE_ACCESSED | T._PAGE_DIRTY))
        tlb_remove_pmd_tlb_entry(tlb, pmdp, addr)
    folio_mark_lazyfree(k, folio, k._current_cpu())
    return True


def madvise_cold_huge_pmd(tlb, vma, pmdp: int, addr: int, nxt: int, pageout: bool) -> bool:
    """madvise_cold_or_pageout_pte_range() on a huge PMD: a whole PMD is aged (young
    cleared, folio deactivated); a partial one splits the folio (PMD and folio; a
    page-cache folio into order-0 pages left unmapped) and returns False so the PTEs
    are handled."""
    from vmsim.mm.swap import lruvec_del_folio, lruvec_add_folio
    from vmsim.mm.page_flags import PG_active, PG_workingset, PG_unevictable
    mm = tlb.mm
    k = mm.kernel
    pool = k.ptpool.mv
    mem = k.mem
    orig = pool[pmdp]
    if is_huge_zero_pmd(k, orig):
        return True
    folio = (orig & _PFN2M) >> 12
    if mem.lru_prev[folio + 1] + mem.index[folio + 1] != 1:       # folio_maybe_mapped_shared
        return True
    if nxt - addr != HPAGE_PMD_SIZE:
        # split_folio() (a page-cache folio is unmapped from every mm by it and its
        # pages are left unmapped; the PTE walk then finds no table and does nothing).
        __split_huge_pmd(vma, pmdp, addr, False)
        split_folio(k, folio)
        return False
    if not pageout and orig & T._PAGE_ACCESSED:
        from vmsim.mm.mmu_gather import tlb_remove_pmd_tlb_entry
        pmdp_invalidate(vma, addr, pmdp)
        set_pmd_at(mm, addr, pmdp, orig & ~T._PAGE_ACCESSED)
        tlb_remove_pmd_tlb_entry(tlb, pmdp, addr)
    f = mem.flags[folio] & ~PG_referenced
    if f & PG_active:
        f |= PG_workingset
    mem.flags[folio] = f
    if not pageout and f & PG_active and not f & PG_unevictable and f & PG_lru:
        lruvec_del_folio(k, folio)
        mem.flags[folio] = mem.flags[folio] & ~(PG_active | PG_referenced)
        lruvec_add_folio(k, folio)
        k.vmstat[vmstat.PGDEACTIVATE] += HPAGE_PMD_NR
    return True


def _page_cache_folio_mapped_by_other_mm(k, folio: int, mm) -> bool:
    """folio_maybe_mapped_shared() of a page-cache folio: does a VMA of another mm map
    one of its pages (by a PTE or a PMD)?"""
    from vmsim.mm.memory import _vma_interval_tree_foreach
    from vmsim.mm.rmap import vma_address, page_vma_mapped_walk
    mem = k.mem
    mapping = k.objects[mem.mapping[folio]]
    if mapping is None:
        return False
    idx = mem.index[folio]
    nr = _folio_nr(k, folio)
    for v in _vma_interval_tree_foreach(k, mapping, idx, idx + nr - 1):
        if v.vm_mm is mm:
            continue
        for p in range(folio, folio + nr):
            a = vma_address(v, idx + p - folio)
            if a >= 0 and page_vma_mapped_walk(v, p, a, pmd=True) >= 0:
                return True
    return False


def _split_large_folios_in(vma, pmdp: int, addr: int, end: int):
    """madvise_free_pte_range() / madvise_cold_or_pageout_pte_range(): a large folio
    met through PTEs is split (split_folio) before its pages are handled, unless other
    mms map it (folio_maybe_mapped_shared: left alone). A page-cache folio (COLD /
    PAGEOUT of a file VMA) is split only when the range does not map it whole from
    its first page (madvise_folio_pte_batch() < folio_nr_pages()): its pages are left
    unmapped, as split_folio leaves them. The kernel keeps an anonymous large folio
    that the range covers completely too; vmsim splits that one."""
    from vmsim.mm.memory import _folio_mapped_by_other_mm
    mm = vma.vm_mm
    k = mm.kernel
    pool = k.ptpool.mv
    mem = k.mem
    if not pool[pmdp] & _P or pool[pmdp] & _PSE:
        return
    base = mem.private[(pool[pmdp] & _PFN) >> 12] * 512
    seen = set()
    for i in range((addr >> 12) & 511, (((end - 1) >> 12) & 511) + 1):
        e = pool[base + i]
        if not e & (_P | _PROTNONE) or e & T._PAGE_SPECIAL:
            continue
        p = (e & _PFN) >> 12
        if not mem.flags[p] & (PG_head | PG_tail):
            continue
        from vmsim.mm.folio import page_folio
        head = page_folio(k, p)
        if head in seen:
            continue
        seen.add(head)
        if mem.flags[head] & PG_anon:
            if not _folio_mapped_by_other_mm(k, head, mm):
                split_folio(k, head)
            continue
        if _page_cache_folio_mapped_by_other_mm(k, head, mm):
            continue
        nr = 1 << ((mem.flags[head] & PG_ORDER_MASK) >> PG_ORDER_SHIFT)
        run = 0                                     # madvise_folio_pte_batch()
        last = ((end - 1) >> 12) & 511
        while i + run <= last and p + run < head + nr and \
                (pool[base + i + run] & _PFN) >> 12 == p + run and \
                pool[base + i + run] & (_P | _PROTNONE):
            run += 1
        if p != head or run < nr:
            split_folio(k, head)


# --- placement (already in 6.18's get_unmapped_area) ----------------------------------------
def thp_get_unmapped_area_vmflags(mm, filp, addr: int, length: int, pgoff: int,
                                  flags: int, vm_flags: int) -> int:
    """thp_get_unmapped_area_vmflags(): try a PMD-aligned placement, else the plain one."""
    from vmsim.mm.mmap import mm_get_unmapped_area_vmflags
    ret = __thp_get_unmapped_area(mm, filp, addr, length, pgoff << 12, flags,
                                  HPAGE_PMD_SIZE, vm_flags)
    if ret:
        return ret
    return mm_get_unmapped_area_vmflags(mm, filp, addr, length, pgoff, flags, vm_flags)


def __thp_get_unmapped_area(mm, filp, addr, length, off, flags, size, vm_flags) -> int:
    """__thp_get_unmapped_area(): search len + size, then align the result."""
    from vmsim.mm.mmap import mm_get_unmapped_area_vmflags
    off_end = off + length
    off_align = (off + size - 1) & ~(size - 1)
    if off_end <= off_align or off_end - off_align < size:
        return 0
    len_pad = length + size
    ret = mm_get_unmapped_area_vmflags(mm, filp, addr, len_pad, off >> 12, flags, vm_flags)
    if ret < 0:
        return 0
    if ret == addr:
        return addr
    off_sub = (off - ret) & (size - 1)
    if not off_sub:          # MMF_TOPDOWN: the x86-64 default layout
        return ret + size
    return ret + off_sub
