"""khugepaged and MADV_COLLAPSE (mm/khugepaged.c), on vmsim's virtual clock.

khugepaged is a kernel thread that sleeps scan_sleep_millisecs between passes; vmsim
runs it when virtual time passes (``Machine.sleep(seconds)``): every pass that is due
runs khugepaged_do_scan(), which scans up to pages_to_scan pages of the registered
mms (khugepaged_scan_mm_slot -> hpage_collapse_scan_pmd) and collapses each eligible
PMD range (collapse_huge_page: allocate a THP, copy the small pages, replace the PTE
table by a huge PMD, free the old pages). MADV_COLLAPSE does the same synchronously
(madvise_collapse).
"""
from vmsim.mm import vmstat

THP = "/sys/kernel/mm/transparent_hugepage/"
KH = THP + "khugepaged/"
HPAGE_PMD_NR = 512
HPAGE_PMD_SIZE = 1 << 21
SCAN_SUCCEED = 1


def _st(k):
    from vmsim.mm.huge_memory import _thp
    return _thp(k)


def hugepage_pmd_enabled(k) -> bool:
    """hugepage_pmd_enabled(): the PMD size is on (always / madvise, or inherit with a
    global mode other than never), or anonymous shmem may get PMD folios
    (shmem_hpage_pmd_enabled; CONFIG_READ_ONLY_THP_FOR_FS is off)."""
    from vmsim.mm.huge_memory import _size_mode, hugepage_global_enabled, PMD_ORDER
    m = _size_mode(k, PMD_ORDER)
    if m in ("always", "madvise") or (m == "inherit" and hugepage_global_enabled(k)):
        return True
    from vmsim.mm.shmem import shmem_hpage_pmd_enabled
    return shmem_hpage_pmd_enabled(k)


def start_stop_khugepaged(k):
    """start_stop_khugepaged(): run the thread while PMD THPs are enabled; set the
    recommended min_free_kbytes when it starts."""
    st = _st(k)
    on = hugepage_pmd_enabled(k)
    if on and not st.khugepaged_running:
        st.khugepaged_running = True
        st.next_scan_ns = st.clock_ns + int(k.sysfs[KH + "scan_sleep_millisecs"]) * 1000000
    elif not on:
        st.khugepaged_running = False
    if on:
        k.page_alloc.set_recommended_min_free_kbytes(True)


def khugepaged_sleep_changed(k):
    """Writing a sleep knob: khugepaged_sleep_expire = 0 and wake the thread, which
    then sleeps the new interval."""
    st = _st(k)
    st.next_scan_ns = st.clock_ns + int(k.sysfs[KH + "scan_sleep_millisecs"]) * 1000000


def __khugepaged_enter(mm):
    """__khugepaged_enter(): register the mm for scanning (MMF_VM_HUGEPAGE)."""
    st = _st(mm.kernel)
    if not any(m is mm for m in st.mm_slots):
        st.mm_slots.append(mm)


def khugepaged_enter_vma(vma, vm_flags: int):
    """khugepaged_enter_vma(): register the mm if the VMA may get a PMD THP and
    khugepaged runs."""
    from vmsim.mm.huge_memory import thp_vma_allowable_order, TVA_KHUGEPAGED, PMD_ORDER
    k = vma.vm_mm.kernel
    if hugepage_pmd_enabled(k) and \
            thp_vma_allowable_order(vma, vm_flags, TVA_KHUGEPAGED, PMD_ORDER):
        __khugepaged_enter(vma.vm_mm)


def khugepaged_exit(mm):
    """__khugepaged_exit(): forget the mm at exit."""
    st = _st(mm.kernel)
    st.mm_slots = [m for m in st.mm_slots if m is not mm]
    if st.scan_mm is mm:
        st.scan_mm = None


# --- scan results (enum scan_result) -----------------------------------------------------
(SCAN_FAIL, SCAN_SUCCEED, SCAN_PMD_NULL, SCAN_PMD_NONE, SCAN_PMD_MAPPED, SCAN_EXCEED_NONE_PTE,
 SCAN_EXCEED_SWAP_PTE, SCAN_EXCEED_SHARED_PTE, SCAN_PTE_NON_PRESENT, SCAN_PTE_UFFD_WP,
 SCAN_PTE_MAPPED_HUGEPAGE, SCAN_LACK_REFERENCED_PAGE, SCAN_PAGE_NULL, SCAN_SCAN_ABORT,
 SCAN_PAGE_COUNT, SCAN_PAGE_LRU, SCAN_PAGE_LOCK, SCAN_PAGE_ANON, SCAN_PAGE_COMPOUND,
 SCAN_ANY_PROCESS, SCAN_VMA_NULL, SCAN_VMA_CHECK, SCAN_ADDRESS_RANGE, SCAN_DEL_PAGE_LRU,
 SCAN_ALLOC_HUGE_PAGE_FAIL, SCAN_CGROUP_CHARGE_FAIL, SCAN_TRUNCATED, SCAN_PAGE_HAS_PRIVATE,
 SCAN_STORE_FAILED, SCAN_COPY_MC, SCAN_PAGE_FILLED) = range(31)


class collapse_control:
    """struct collapse_control: is_khugepaged (the knobs apply) or MADV_COLLAPSE."""

    def __init__(self, is_khugepaged: bool):
        self.is_khugepaged = is_khugepaged


def _knob(k, name: str) -> int:
    return int(k.sysfs[KH + name])


def check_pmd_state(k, pmdp: int) -> int:
    """check_pmd_state(): none, huge (already a THP), or a PTE table to scan."""
    from vmsim.arch.x86 import pgtable_types as T
    e = k.ptpool.mv[pmdp]
    if e == 0:
        return SCAN_PMD_NONE
    if not e & (T._PAGE_PRESENT | T._PAGE_PROTNONE):
        return SCAN_PMD_NULL
    if e & T._PAGE_PSE:
        return SCAN_PMD_MAPPED
    return SCAN_SUCCEED


def find_pmd_or_thp_or_none(mm, address: int):
    from vmsim.mm.huge_memory import mm_find_pmd
    pmdp = mm_find_pmd(mm, address)
    if pmdp < 0:
        return SCAN_PMD_NULL, -1
    return check_pmd_state(mm.kernel, pmdp), pmdp


def _scan_ptes(mm, vma, pmdp: int, start_addr: int, cc, isolate: bool):
    """The PTE checks hpage_collapse_scan_pmd() and __collapse_huge_page_isolate()
    share; returns (result, referenced)."""
    from vmsim.arch.x86 import pgtable_types as T
    from vmsim.mm.memory import vm_normal_page, _page_folio, _folio_mapped_by_other_mm
    from vmsim.mm.page_flags import PG_anon, PG_lru, PG_referenced, PG_head
    k = mm.kernel
    pool = k.ptpool.mv
    mem = k.mem
    base = mem.private[(pool[pmdp] & T.PTE_PFN_MASK) >> 12] * 512
    none_or_zero = shared = referenced = 0
    max_none = _knob(k, "max_ptes_none")
    max_shared = _knob(k, "max_ptes_shared")
    for i in range(HPAGE_PMD_NR):
        addr = start_addr + (i << 12)
        pte = pool[base + i]
        if pte and not pte & (T._PAGE_PRESENT | T._PAGE_PROTNONE):
            # A PTE marker (guard): not a swap entry; is_swap_pte() is true for it.
            return (SCAN_PTE_NON_PRESENT if isolate else SCAN_EXCEED_SWAP_PTE), referenced
        if pte == 0 or (pte & T.PTE_PFN_MASK) >> 12 == k.zero_pfn:
            none_or_zero += 1
            if not cc.is_khugepaged or none_or_zero <= max_none:
                continue
            k.vmstat[vmstat.THP_SCAN_EXCEED_NONE_PTE] += 1
            return SCAN_EXCEED_NONE_PTE, referenced
        page = vm_normal_page(vma, addr, pte)
        if page < 0:
            return SCAN_PAGE_NULL, referenced
        folio = _page_folio(k, page)
        if not mem.flags[folio] & PG_anon:
            return SCAN_PAGE_ANON, referenced
        if mem.flags[folio] & PG_head and _folio_mapped_by_other_mm(k, folio, mm) or \
                not mem.flags[folio] & PG_head and mem.mapcount[folio] > 1:
            shared += 1
            if cc.is_khugepaged and shared > max_shared:
                k.vmstat[vmstat.THP_SCAN_EXCEED_SHARED_PTE] += 1
                return SCAN_EXCEED_SHARED_PTE, referenced
        if not mem.flags[folio] & PG_lru:
            return SCAN_PAGE_LRU, referenced
        # folio_expected_ref_count() != folio_ref_count(): a pin or a batch reference.
        expect = mem.mapping[folio + 1] if mem.flags[folio] & PG_head else mem.mapcount[folio]
        if mem.refcount[folio] != expect:
            return SCAN_PAGE_COUNT, referenced
        if cc.is_khugepaged and (pte & T._PAGE_ACCESSED or mem.flags[folio] & PG_referenced):
            referenced += 1
    if cc.is_khugepaged and not referenced:
        return SCAN_LACK_REFERENCED_PAGE, referenced
    return SCAN_SUCCEED, referenced


def hpage_collapse_scan_pmd(mm, vma, start_addr: int, cc) -> int:
    """hpage_collapse_scan_pmd(): may this PMD range be collapsed? then collapse it."""
    result, pmdp = find_pmd_or_thp_or_none(mm, start_addr)
    if result != SCAN_SUCCEED:
        return result
    result, referenced = _scan_ptes(mm, vma, pmdp, start_addr, cc, False)
    if result == SCAN_SUCCEED:
        result = collapse_huge_page(mm, vma, start_addr, cc)
    return result


def collapse_huge_page(mm, vma, address: int, cc) -> int:
    """collapse_huge_page(): allocate a THP (alloc_charge_folio), isolate and copy
    the small pages, free them, make the old PTE table the deposited one and map the
    THP with one PMD."""
    from vmsim.arch.x86 import pgtable_types as T
    from vmsim.mm import huge_memory as H
    from vmsim.mm.memory import vm_normal_page, _page_folio
    from vmsim.mm.rmap import folio_remove_rmap_pte
    from vmsim.mm.swap import folio_put, folio_add_lru_vma
    from vmsim.mm.mm_types import MM_ANONPAGES
    from vmsim.arch.x86.mm.tlb import flush_tlb_range, _note_downgrade
    from vmsim.arch.x86.pgtable import pmd_clear
    k = mm.kernel
    gfp = H.GFP_TRANSHUGE if (cc.is_khugepaged and k.sysfs[KH + "defrag"] == "1") or \
        not cc.is_khugepaged else H.GFP_TRANSHUGE_LIGHT
    folio = H._alloc_large_folio(k, gfp, H.PMD_ORDER)          # alloc_charge_folio()
    if folio < 0:
        k.vmstat[vmstat.THP_COLLAPSE_ALLOC_FAILED] += 1
        return SCAN_ALLOC_HUGE_PAGE_FAIL
    k.vmstat[vmstat.THP_COLLAPSE_ALLOC] += 1
    # hugepage_vma_revalidate() + find_pmd_or_thp_or_none() again: nothing changed.
    result, pmdp = find_pmd_or_thp_or_none(mm, address)
    if result == SCAN_SUCCEED:
        result, _ = _scan_ptes(mm, vma, pmdp, address, collapse_control(False), True)
    if result != SCAN_SUCCEED:
        folio_put(k, folio)
        return result
    pool = k.ptpool.mv
    mem = k.mem
    k.mmu_notifier_invalidate_range_start(mm, "clear", address, address + HPAGE_PMD_SIZE)
    pmd = pool[pmdp]
    pmd_clear(mm, pmdp)                                          # pmdp_collapse_flush()
    _note_downgrade(mm, address, address + HPAGE_PMD_SIZE)
    flush_tlb_range(vma, address, address + HPAGE_PMD_SIZE)
    k.mmu_notifier_invalidate_range_end(mm, "clear", address, address + HPAGE_PMD_SIZE)
    pgtable = (pmd & T.PTE_PFN_MASK) >> 12
    base = mem.private[pgtable] * 512
    H.folio_zero_user(k, folio, HPAGE_PMD_NR)
    # __collapse_huge_page_copy() then _succeeded(): copy each page, release the old.
    for i in range(HPAGE_PMD_NR):
        addr = address + (i << 12)
        pte = pool[base + i]
        pool[base + i] = 0
        if pte == 0 or (pte & T.PTE_PFN_MASK) >> 12 == k.zero_pfn:
            mm.rss_stat[MM_ANONPAGES] += 1
            continue
        page = vm_normal_page(vma, addr, pte)
        k.page_data.copy(folio + i, page)
        folio_remove_rmap_pte(k, page, vma)
        folio_put(k, _page_folio(k, page))
    # The emptied table becomes the THP's deposited table.
    H.pgtable_trans_huge_deposit(mm, pmdp, pgtable)
    entry = H.folio_mk_pmd(folio, vma.vm_page_prot) | T._PAGE_DIRTY | T._PAGE_SOFT_DIRTY
    entry = H.maybe_pmd_mkwrite(entry, vma)
    H.folio_add_new_anon_rmap_pmd(k, folio, vma, address, True)
    folio_add_lru_vma(k, folio, vma, k._current_cpu())
    H.set_pmd_at(mm, address, pmdp, entry)
    H.deferred_split_folio(k, folio, False)
    return SCAN_SUCCEED


def madvise_collapse_errno(r: int) -> int:
    """madvise_collapse_errno(): MADV_COLLAPSE's own errno per failure."""
    import errno
    if r == SCAN_ALLOC_HUGE_PAGE_FAIL:
        return -errno.ENOMEM
    if r in (SCAN_CGROUP_CHARGE_FAIL, SCAN_EXCEED_NONE_PTE):
        return -errno.EBUSY
    if r in (SCAN_PAGE_COUNT, SCAN_PAGE_LOCK, SCAN_PAGE_LRU, SCAN_DEL_PAGE_LRU, SCAN_PAGE_FILLED):
        return -errno.EAGAIN
    return -errno.EINVAL


def madvise_collapse(vma, start: int, end: int) -> int:
    """madvise_collapse(): collapse every PMD range of [start, end) now; 0 when each
    is a THP afterwards, else the errno of the last failure."""
    import errno
    from vmsim.mm.huge_memory import thp_vma_allowable_order, TVA_FORCED_COLLAPSE, PMD_ORDER
    from vmsim.mm.swap import lru_add_drain_all
    mm = vma.vm_mm
    if not thp_vma_allowable_order(vma, vma.vm_flags, TVA_FORCED_COLLAPSE, PMD_ORDER):
        return -errno.EINVAL
    if vma.vm_ops is not None:
        # A shmem VMA would go to collapse_file(), which vmsim does not model.
        return -errno.EINVAL
    cc = collapse_control(False)
    lru_add_drain_all(mm.kernel)
    hstart = (start + HPAGE_PMD_SIZE - 1) & ~(HPAGE_PMD_SIZE - 1)
    hend = end & ~(HPAGE_PMD_SIZE - 1)
    thps = 0
    last_fail = SCAN_FAIL
    addr = hstart
    while addr < hend:
        result = hpage_collapse_scan_pmd(mm, vma, addr, cc)
        if result in (SCAN_SUCCEED, SCAN_PMD_MAPPED):
            thps += 1
        elif result in (SCAN_PMD_NULL, SCAN_PTE_NON_PRESENT, SCAN_PTE_UFFD_WP,
                        SCAN_LACK_REFERENCED_PAGE, SCAN_PAGE_NULL, SCAN_PAGE_COUNT,
                        SCAN_PAGE_LOCK, SCAN_PAGE_COMPOUND, SCAN_PAGE_LRU, SCAN_DEL_PAGE_LRU):
            last_fail = result
        else:
            last_fail = result
            break
        addr += HPAGE_PMD_SIZE
    return 0 if thps == ((hend - hstart) >> 21) else madvise_collapse_errno(last_fail)


# --- the thread ---------------------------------------------------------------------------
def hpage_collapse_test_exit_or_disable(mm) -> bool:
    """hpage_collapse_test_exit_or_disable(): the mm is exiting, or
    prctl(PR_SET_THP_DISABLE) disabled THP for it completely."""
    from vmsim.mm.huge_memory import MMF_DISABLE_THP_COMPLETELY
    return mm.mm_users == 0 or bool(mm.flags >> MMF_DISABLE_THP_COMPLETELY & 1)


def khugepaged_scan_mm_slot(k, pages: int, cc) -> int:
    """khugepaged_scan_mm_slot(): scan the current mm from khugepaged_scan.address
    for up to ``pages`` pages; move on (and count a full scan) when it is done."""
    from vmsim.mm.huge_memory import thp_vma_allowable_order, TVA_KHUGEPAGED, PMD_ORDER
    st = _st(k)
    if st.scan_mm is None or not any(m is st.scan_mm for m in st.mm_slots):
        st.scan_mm = st.mm_slots[0]
        st.scan_address = 0
    mm = st.scan_mm
    progress = 0
    done_all = True
    vmas = list(mm.mm_mt)
    if hpage_collapse_test_exit_or_disable(mm):
        # progress++ and breakouterloop with no VMA: the slot moves on (collect_mm_slot
        # keeps a live mm registered).
        progress = 1
        vmas = []
    for vma in vmas:
        if progress >= pages:
            done_all = False
            break
        if not thp_vma_allowable_order(vma, vma.vm_flags, TVA_KHUGEPAGED, PMD_ORDER):
            progress += 1
            continue
        hstart = (vma.vm_start + HPAGE_PMD_SIZE - 1) & ~(HPAGE_PMD_SIZE - 1)
        hend = vma.vm_end & ~(HPAGE_PMD_SIZE - 1)
        if st.scan_address > hstart:
            hstart = st.scan_address
        if hstart >= hend:
            continue
        st.scan_address = hstart
        while st.scan_address < hend:
            if progress >= pages:
                done_all = False
                break
            # A shmem VMA goes to hpage_collapse_scan_file(), not modelled: the range
            # is passed over as scanned.
            if vma.vm_ops is None and \
                    hpage_collapse_scan_pmd(mm, vma, st.scan_address, cc) == SCAN_SUCCEED:
                st.khugepaged_pages_collapsed += 1
            st.scan_address += HPAGE_PMD_SIZE
            progress += HPAGE_PMD_NR
        if not done_all:
            break
    if done_all:
        i = next(i for i, m in enumerate(st.mm_slots) if m is mm)
        if i + 1 < len(st.mm_slots):
            st.scan_mm = st.mm_slots[i + 1]
        else:
            st.scan_mm = None
            st.khugepaged_full_scans += 1
        st.scan_address = 0
    return progress


def khugepaged_do_scan(k):
    """khugepaged_do_scan(): up to pages_to_scan pages over the registered mms."""
    cc = collapse_control(True)
    st = _st(k)
    pages = _knob(k, "pages_to_scan")
    progress = 0
    from vmsim.mm.swap import lru_add_drain_all
    lru_add_drain_all(k)
    while progress < pages and st.mm_slots:
        before = st.khugepaged_full_scans
        progress += khugepaged_scan_mm_slot(k, pages - progress, cc)
        if st.khugepaged_full_scans != before and st.scan_mm is None:
            # One full pass over every mm: wait for the next wake-up.
            break


def khugepaged_run_until(k, now_ns: int):
    """Advance the virtual clock to ``now_ns``: khugepaged runs each pass that falls
    due (a pass, then scan_sleep_millisecs of sleep)."""
    st = _st(k)
    if not st.khugepaged_running and hugepage_pmd_enabled(k):
        start_stop_khugepaged(k)
    while st.khugepaged_running and st.next_scan_ns <= now_ns:
        st.clock_ns = st.next_scan_ns
        from vmsim.mm.huge_memory import deferred_split_scan  # noqa: F401  (reclaim only)
        khugepaged_do_scan(k)
        st.next_scan_ns = st.clock_ns + _knob(k, "scan_sleep_millisecs") * 1000000
    st.clock_ns = now_ns
