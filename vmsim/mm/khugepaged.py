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
    global mode other than never)."""
    from vmsim.mm.huge_memory import _size_mode, hugepage_global_enabled, PMD_ORDER
    m = _size_mode(k, PMD_ORDER)
    return m in ("always", "madvise") or (m == "inherit" and hugepage_global_enabled(k))


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
