"""The generic fault path, page-table allocation and unmapping (mm/memory.c).

Function by function as in Linux 6.18: handle_mm_fault -> __handle_mm_fault (the
PGD/P4D/PUD/PMD walk, allocating missing tables) -> handle_pte_fault ->
do_anonymous_page / do_fault / do_wp_page; and the zap side: unmap_page_range ->
zap_p4d_range -> zap_pud_range -> zap_pmd_range -> zap_pte_range, free_pgtables.
Every function returns the kernel's vm_fault_t bits; pointers to entries are pool
indices (see vmsim.arch.x86.pgtable). Locks are not modelled (one task runs at a
time), so the kernel's "pte changed under us" re-checks always pass.
"""
from vmsim.arch.x86 import pgtable_types as T
from vmsim.arch.x86.pgtable import (
    pgd_offset, p4d_offset, pud_offset, pmd_offset, pte_offset_map,
    pte_mkyoung, pte_mkdirty, pte_mkwrite, pfn_pte, ptep_set_access_flags, ptep_get_and_clear,
    set_pte_at, set_ptes, ptep_get_and_clear_full, clear_full_ptes, get_and_clear_full_ptes,
    wrprotect_ptes, pmd_populate, pud_populate, p4d_populate, pgd_populate, pmd_clear, pud_clear,
    p4d_clear, pgd_clear, clear_not_present_full_ptes, PTRS_PER_TABLE)
from vmsim.arch.x86.mm.pgtable import pte_alloc_one, pmd_alloc_one, pud_alloc_one, p4d_alloc_one, pagetable_free
from vmsim.arch.x86.mm.tlb import flush_tlb_page, flush_tlb_fix_spurious_fault, _note_downgrade
from vmsim.mm import vmstat, _pte_batch
from vmsim.mm.mm_types import (
    VM_SHARED, VM_MAYSHARE, VM_WRITE, VM_HUGETLB, VM_PFNMAP, VM_MIXEDMAP, VM_MAYWRITE,
    VM_UFFD_WP, VM_MAYBE_GUARD, FAULT_FLAG_WRITE,
    FAULT_FLAG_UNSHARE, FAULT_FLAG_TRIED, FAULT_FLAG_INSTRUCTION, FAULT_FLAG_REMOTE,
    FAULT_FLAG_ORIG_PTE_VALID, VM_FAULT_OOM, VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV,
    VM_FAULT_MAJOR, VM_FAULT_RETRY, VM_FAULT_FALLBACK, VM_FAULT_ERROR, VM_FAULT_NOPAGE,
    VM_FAULT_LOCKED, VM_FAULT_DONE_COW, MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES,
    vm_fault, vma_is_accessible)
from vmsim.mm.page_alloc import GFP_HIGHUSER_MOVABLE, __GFP_ZERO, __GFP_COMP
from vmsim.mm.page_flags import (PG_anon, PG_anon_exclusive, PG_lru, PG_swapbacked, PG_dirty, PG_head,
                                 PG_tail, PG_ORDER_MASK, PG_ORDER_SHIFT)
from vmsim.mm.rmap import (folio_add_new_anon_rmap, folio_remove_rmap_pte, folio_add_file_rmap_pte,
                           folio_add_file_rmap_ptes,
                           folio_try_dup_anon_rmap_pte, folio_dup_file_rmap_pte,
                           RMAP_EXCLUSIVE, anon_vma_prepare, folio_move_anon_rmap)
from vmsim.mm.swap import folio_add_lru_vma, folio_put, folio_get, lru_add_drain, folio_mark_accessed
from vmsim.mm.filemap import folio_mark_dirty
from vmsim.mm.mm_types import VM_SEQ_READ, VM_RAND_READ, FAULT_FLAG_VMA_LOCK
from vmsim.mm.huge_memory import (thp_vma_allowable_order, create_huge_pud, wp_huge_pud,
                                  huge_pud_set_accessed, create_huge_pmd, wp_huge_pmd,
                                  huge_pmd_set_accessed, do_huge_pmd_numa_page,
                                  TVA_PAGEFAULT, PUD_ORDER, PMD_ORDER, HPAGE_PMD_ORDER,
                                  HPAGE_PMD_NR)
from vmsim.mm.mmu_gather import (tlb_delay_rmap, tlb_flush_mmu_tlbonly, tlb_flush_rmaps)
from vmsim.mm.mmu_gather import (tlb_remove_tlb_entry, __tlb_remove_folio_pages, tlb_flush_mmu,
                                 pte_free_tlb, pmd_free_tlb, pud_free_tlb, p4d_free_tlb)

_PFN = T.PTE_PFN_MASK
_PG_LARGE = PG_head | PG_tail
_P = T._PAGE_PRESENT
_RW = T._PAGE_RW
_PROTNONE = T._PAGE_PROTNONE
_PSE = T._PAGE_PSE
PMD_SIZE = T.PMD_SIZE
PMD_MASK = T.PMD_MASK
PUD_MASK = T.PUD_MASK
_U64 = (1 << 64) - 1
_MKOLD_NO_UFFD_WP = ~(T._PAGE_ACCESSED | T._PAGE_UFFD_WP)
# Per-fault constants, computed once: pte_mkwrite(pte_mkdirty()) bits, and the gfp of
# vma_alloc_zeroed_movable_folio() (folio_alloc_mpol() adds __GFP_COMP).
_MKWRITE_DIRTY = T._PAGE_DIRTY | T._PAGE_SOFT_DIRTY | _RW
_GFP_ANON_ZEROED = GFP_HIGHUSER_MOVABLE | __GFP_ZERO | __GFP_COMP
_SMALL_ORDERS = (1 << PMD_ORDER) - 1           # the mTHP orders below PMD_ORDER
_GFP_ANON_COPY = GFP_HIGHUSER_MOVABLE | __GFP_COMP   # wp_page_copy(): folio_prealloc()


# --- page-table allocation (include/linux/mm.h, mm/memory.c) -----------------
def pmd_install(mm, pmdp: int, pte_pfn: int):
    """pmd_install(): populate an empty PMD with a new PTE table."""
    pool = mm.kernel.ptpool.mv
    if pool[pmdp] == 0:
        mm.pgtables_bytes += 4096                      # mm_inc_nr_ptes
        pmd_populate(mm, pmdp, pte_pfn)
        return -1
    return pte_pfn


def __pte_alloc(mm, pmdp: int) -> int:
    """__pte_alloc(): allocate a PTE table for an empty PMD; 0 or -ENOMEM."""
    new = pte_alloc_one(mm)
    if new < 0:
        return -12
    left = pmd_install(mm, pmdp, new)
    if left >= 0:
        pagetable_free(mm.kernel, left)
    return 0


def pte_alloc(mm, pmdp: int) -> bool:
    """pte_alloc(): True on failure (as the kernel's macro), allocating if pmd_none."""
    return mm.kernel.ptpool.mv[pmdp] == 0 and __pte_alloc(mm, pmdp) != 0


def __pmd_alloc(mm, pudp: int, address: int) -> int:
    """__pmd_alloc(): a PMD table for an empty PUD; 0 or -ENOMEM."""
    new = pmd_alloc_one(mm)
    if new < 0:
        return -12
    mm.pgtables_bytes += 4096                          # mm_inc_nr_pmds
    pud_populate(mm, pudp, new)
    return 0


def __pud_alloc(mm, p4dp: int, address: int) -> int:
    """__pud_alloc(): a PUD table for an empty P4D (the PGD entry with 4 levels)."""
    new = pud_alloc_one(mm)
    if new < 0:
        return -12
    mm.pgtables_bytes += 4096                          # mm_inc_nr_puds
    p4d_populate(mm, p4dp, new)
    return 0


def __p4d_alloc(mm, pgdp: int, address: int) -> int:
    """__p4d_alloc(): a P4D table (5-level paging only)."""
    new = p4d_alloc_one(mm)
    if new < 0:
        return -12
    pgd_populate(mm, pgdp, new)
    return 0


def p4d_alloc(mm, pgdp: int, address: int) -> int:
    """p4d_alloc(): pointer to the P4D entry, allocating; -1 on OOM. Folded on 4-level."""
    k = mm.kernel
    if not k.la57:
        return pgdp                  # p4d folded into the pgd (pgtable_l5_enabled() false)
    if k.ptpool.mv[pgdp] == 0 and __p4d_alloc(mm, pgdp, address):
        return -1
    return p4d_offset(mm, pgdp, address)


def pud_alloc(mm, p4dp: int, address: int) -> int:
    """pud_alloc(): pointer to the PUD entry, allocating the table; -1 on OOM."""
    if mm.kernel.ptpool.mv[p4dp] == 0 and __pud_alloc(mm, p4dp, address):
        return -1
    return pud_offset(mm, p4dp, address)


def pmd_alloc(mm, pudp: int, address: int) -> int:
    """pmd_alloc(): pointer to the PMD entry, allocating the table; -1 on OOM."""
    if mm.kernel.ptpool.mv[pudp] == 0 and __pmd_alloc(mm, pudp, address):
        return -1
    return pmd_offset(mm, pudp, address)


# --- helpers ---------------------------------------------------------------------
def is_zero_pfn(k, pfn: int) -> bool:
    """is_zero_pfn(): is this the shared zero page (my_zero_pfn)?"""
    return pfn == k.zero_pfn


def vm_normal_page(vma, addr: int, pte: int) -> int:
    """Return the PFN of the "normal" page a PTE maps, or -1 (vm_normal_page()).

    Special PTEs (the zero page, pfnmaps) have no struct page to account.
    """
    if pte & T._PAGE_SPECIAL:
        return -1
    if vma.vm_flags & (VM_PFNMAP | VM_MIXEDMAP):
        return -1
    return (pte & _PFN) >> 12


def maybe_mkwrite(pte: int, vma) -> int:
    """maybe_mkwrite(): writable only if the VMA is."""
    if vma.vm_flags & VM_WRITE:
        pte = pte_mkwrite(pte, vma)
    return pte


def _page_folio(k, pfn: int) -> int:
    """page_folio(): the head of a large folio's page (PG_tail), else the page."""
    if k.mem.flags[pfn] & PG_tail:
        from vmsim.mm.folio import page_folio
        return page_folio(k, pfn)
    return pfn


def mm_counter_file(k, pfn: int) -> int:
    """mm_counter_file(): shmem pages (swapbacked) count as MM_SHMEMPAGES."""
    if k.mem.flags[pfn] & PG_tail:
        from vmsim.mm.folio import page_folio
        pfn = page_folio(k, pfn)
    return MM_SHMEMPAGES if k.mem.flags[pfn] & PG_swapbacked else MM_FILEPAGES


def mm_counter(k, pfn: int) -> int:
    """mm_counter(): MM_ANONPAGES for anon folios, else mm_counter_file()."""
    pfn = _page_folio(k, pfn)
    return MM_ANONPAGES if k.mem.flags[pfn] & PG_anon else mm_counter_file(k, pfn)


def vmf_can_call_fault(vmf) -> int:
    """vmf_can_call_fault(): may ->fault run under the per-VMA lock? Only when the VMA
    has ->map_pages (its ->fault is then known not to need mmap_lock); otherwise drop
    the VMA lock (vma_end_read) and VM_FAULT_RETRY, so the fault is redone under
    mmap_lock."""
    vma = vmf.vma
    if getattr(vma.vm_ops, "map_pages", None) or not vmf.flags & FAULT_FLAG_VMA_LOCK:
        return 0
    return VM_FAULT_RETRY


def vmf_anon_prepare(vmf) -> int:
    """vmf_anon_prepare(): make sure the VMA has an anon_vma before mapping anon pages.

    Under the VMA lock the kernel must mmap_read_trylock() first; single-threaded,
    the trylock always succeeds, so this never returns VM_FAULT_RETRY here.
    """
    vma = vmf.vma
    if vma.anon_vma is not None:
        return 0
    if anon_vma_prepare(vma.vm_mm.kernel, vma):
        return VM_FAULT_OOM
    return 0


def alloc_anon_folio(vmf) -> int:
    """alloc_anon_folio(): the folio for an anon write fault; -1 on OOM.

    mTHP: the highest order enabled for the VMA (hugepages-<size>kB/enabled, orders
    below PMD_ORDER) whose aligned block fits in the VMA and has only none PTEs is
    tried first, then the next lower ones (anon_fault_fallback per failed order);
    order 0 (vma_alloc_zeroed_movable_folio) is the fallback.
    """
    k = vmf.vma.vm_mm.kernel
    if _any_mthp_enabled(k):
        folio = _alloc_anon_mthp(vmf)
        if folio >= 0:
            return folio
    # vma_alloc_zeroed_movable_folio(): GFP_HIGHUSER_MOVABLE | __GFP_ZERO | __GFP_COMP.
    return k.page_alloc.alloc_pages(_GFP_ANON_ZEROED, 0, k.current.cpu)


def _any_mthp_enabled(k) -> bool:
    """Is any order below PMD_ORDER in huge_anon_orders_always / _madvise / _inherit?"""
    st = k.__dict__.get("_thp_state")
    masks = st.huge_anon_orders if st is not None else None
    if masks is None:
        # (An import inside a function costs microseconds a call: only the first time.)
        from vmsim.mm.huge_memory import _huge_anon_orders
        _huge_anon_orders(k, "always")
        masks = k._thp_state.huge_anon_orders
    return bool((masks.get("always", 0) | masks.get("madvise", 0) |
                 masks.get("inherit", 0)) & _SMALL_ORDERS)


def _alloc_anon_mthp(vmf) -> int:
    """The large-order part of alloc_anon_folio(); -1 to fall back to order 0."""
    from vmsim.mm import huge_memory as H
    vma = vmf.vma
    k = vma.vm_mm.kernel
    orders = H.thp_vma_allowable_orders(vma, vma.vm_flags, H.TVA_PAGEFAULT,
                                        (1 << H.PMD_ORDER) - 1)
    orders = sum(1 << o for o in range(H.PMD_ORDER) if orders >> o & 1 and
                 H.thp_vma_suitable_order(vma, vmf.address, o))     # thp_vma_suitable_orders
    if not orders:
        return -1
    pool = k.ptpool.mv
    base = k.mem.private[(pool[vmf.pmd] & _PFN) >> 12] * PTRS_PER_TABLE
    order = orders.bit_length() - 1
    while orders:                   # the highest order whose range is all pte_none
        idx = ((vmf.address >> 12) & 511) & ~((1 << order) - 1)
        if not any(pool[base + idx + i] for i in range(1 << order)):
            break
        orders &= ~(1 << order)
        order = orders.bit_length() - 1
    if not orders:
        return -1
    gfp = H.vma_thp_gfp_mask(vma)
    while orders:
        folio = H._alloc_large_folio(k, gfp, order)
        if folio >= 0:
            H.folio_zero_user(k, folio, 1 << order)
            return folio
        H.count_mthp_stat(k, order, "anon_fault_fallback")
        orders &= ~(1 << order)
        order = orders.bit_length() - 1
    return -1


def _map_anon_mthp(vmf, folio: int) -> int:
    """do_anonymous_page() for a large folio: map all of it with set_ptes() if its
    range is still all none (else release it and return VM_FAULT_NOPAGE-free 0)."""
    from vmsim.mm.folio import folio_nr_pages
    from vmsim.mm import huge_memory as H
    vma = vmf.vma
    mm = vma.vm_mm
    k = mm.kernel
    nr = folio_nr_pages(k, folio)
    addr = vmf.address & ~((nr << 12) - 1)
    entry = (folio << 12) | vma.vm_page_prot
    if vma.vm_flags & VM_WRITE:
        entry |= _MKWRITE_DIRTY
    pool = k.ptpool.mv
    ptep = k.mem.private[(pool[vmf.pmd] & _PFN) >> 12] * PTRS_PER_TABLE + ((addr >> 12) & 511)
    if any(pool[ptep + i] for i in range(nr)):
        folio_put(k, folio)
        return 0
    k.mem.refcount[folio] += nr - 1                              # folio_ref_add()
    mm.rss_stat[MM_ANONPAGES] += nr
    H.count_mthp_stat(k, nr.bit_length() - 1, "anon_fault_alloc")
    H.folio_add_new_anon_rmap_ptes(k, folio, vma, addr)
    folio_add_lru_vma(k, folio, vma, k.current.cpu)
    set_ptes(mm, addr, ptep, entry, nr)
    return 0


# --- handle_mm_fault -----------------------------------------------------------------
def sanitize_fault_flags(vma, flags: int):
    """sanitize_fault_flags(): (ret, flags); FAULT_FLAG_UNSHARE only for COW mappings.

    It only has work for write and unshare faults, so handle_mm_fault skips the call
    for reads."""
    cow = (vma.vm_flags & (VM_SHARED | 0x20)) == 0x20          # is_cow_mapping(): VM_MAYWRITE
    if flags & FAULT_FLAG_UNSHARE:
        if flags & FAULT_FLAG_WRITE:
            return VM_FAULT_SIGSEGV, flags
        # FAULT_FLAG_UNSHARE only applies to COW mappings: otherwise a read fault.
        if not cow:
            flags &= ~FAULT_FLAG_UNSHARE
    elif flags & FAULT_FLAG_WRITE:
        # Write faults on read-only mappings are impossible, FOLL_FORCE only for COW.
        if not vma.vm_flags & 0x20:
            return VM_FAULT_SIGSEGV, flags
        if not vma.vm_flags & VM_WRITE and not cow:
            return VM_FAULT_SIGSEGV, flags
    return 0, flags


def arch_vma_access_permitted(vma, write: bool, execute: bool, foreign: bool) -> bool:
    """arch_vma_access_permitted(): protection keys only; pkeys are not modelled."""
    return True


def mm_account_fault(mm, regs, address: int, flags: int, ret: int):
    """mm_account_fault(): pgfault for every completed fault, min/maj_flt for good ones.

    RETRY is counted on completion; errors count pgfault only; a retried fault
    (FAULT_FLAG_TRIED) or VM_FAULT_MAJOR is major. GUP faults (regs None) count too.
    """
    if ret & VM_FAULT_RETRY:
        return
    k = mm.kernel
    k.vmstat[vmstat.PGFAULT] += 1
    if ret & VM_FAULT_ERROR:
        return
    cur = k.current
    if ret & VM_FAULT_MAJOR or flags & FAULT_FLAG_TRIED:
        cur.maj_flt += 1
    else:
        cur.min_flt += 1


def handle_mm_fault(vma, address: int, flags: int, regs) -> int:
    """handle_mm_fault(): sanitize, permission keys, hugetlb or generic path, account."""
    mm = vma.vm_mm
    ret = 0
    if flags & (FAULT_FLAG_UNSHARE | FAULT_FLAG_WRITE):
        ret, flags = sanitize_fault_flags(vma, flags)
    if not ret:
        if not arch_vma_access_permitted(vma, flags & FAULT_FLAG_WRITE,
                                         flags & FAULT_FLAG_INSTRUCTION,
                                         flags & FAULT_FLAG_REMOTE):
            ret = VM_FAULT_SIGSEGV
        elif vma.vm_flags & VM_HUGETLB:
            from vmsim.mm.hugetlb import hugetlb_fault
            ret = hugetlb_fault(mm, vma, address, flags)
        else:
            ret = __handle_mm_fault(vma, address, flags)
    mm_account_fault(mm, regs, address, flags, ret)
    return ret


def __handle_mm_fault(vma, address: int, flags: int) -> int:
    """__handle_mm_fault(): walk PGD/P4D/PUD/PMD, allocating tables; huge or PTE fault."""
    vmf = vm_fault(vma, address, flags)
    mm = vma.vm_mm
    pool = mm.kernel.ptpool.mv
    vm_flags = vma.vm_flags

    pgd = pgd_offset(mm, address)
    p4d = p4d_alloc(mm, pgd, address)
    if p4d < 0:
        return VM_FAULT_OOM
    pud = vmf.pud = pud_alloc(mm, p4d, address)
    if pud < 0:
        return VM_FAULT_OOM
    orig_pud = pool[pud]
    if orig_pud == 0 and thp_vma_allowable_order(vma, vm_flags, TVA_PAGEFAULT, PUD_ORDER):
        ret = create_huge_pud(vmf)
        if not ret & VM_FAULT_FALLBACK:
            return ret
    elif orig_pud & _PSE and orig_pud & _P:                  # pud_trans_huge
        if flags & FAULT_FLAG_WRITE and not orig_pud & _RW:
            ret = wp_huge_pud(vmf, orig_pud)
            if not ret & VM_FAULT_FALLBACK:
                return ret
        else:
            huge_pud_set_accessed(vmf, orig_pud)
            return 0

    pmd = vmf.pmd = pmd_alloc(mm, pud, address)
    if pmd < 0:
        return VM_FAULT_OOM
    orig_pmd = pool[pmd]
    if orig_pmd == 0 and thp_vma_allowable_order(vma, vm_flags, TVA_PAGEFAULT, PMD_ORDER):
        ret = create_huge_pmd(vmf)
        if not ret & VM_FAULT_FALLBACK:
            return ret
    elif orig_pmd:
        vmf.orig_pmd = orig_pmd
        if not orig_pmd & (_P | _PROTNONE | _PSE):        # is_swap_pmd: not modelled
            return 0
        if orig_pmd & _PSE:                               # pmd_trans_huge
            if (orig_pmd & (_PROTNONE | _P)) == _PROTNONE and vma_is_accessible(vma):
                return do_huge_pmd_numa_page(vmf)
            if flags & (FAULT_FLAG_WRITE | FAULT_FLAG_UNSHARE) and not orig_pmd & _RW:
                ret = wp_huge_pmd(vmf)
                if not ret & VM_FAULT_FALLBACK:
                    return ret
            else:
                huge_pmd_set_accessed(vmf)
                return 0
    return handle_pte_fault(vmf)


def handle_pte_fault(vmf) -> int:
    """handle_pte_fault(): dispatch on the PTE: missing, swap, NUMA, write-protect, A/D."""
    vma = vmf.vma
    k = vma.vm_mm.kernel
    pool = k.ptpool.mv
    pmd = pool[vmf.pmd]
    if pmd == 0:
        vmf.pte = -1
        vmf.flags &= ~FAULT_FLAG_ORIG_PTE_VALID
        return do_pte_missing(vmf)
    # pte_offset_map_rw_nolock() + ptep_get_lockless()
    vmf.pte = k.mem.private[(pmd & _PFN) >> 12] * PTRS_PER_TABLE + ((vmf.address >> 12) & 511)
    entry = vmf.orig_pte = pool[vmf.pte]
    vmf.flags |= FAULT_FLAG_ORIG_PTE_VALID
    if entry == 0:                                                   # pte_none()
        vmf.pte = -1
        return do_pte_missing(vmf)
    if not entry & (_P | _PROTNONE):
        return do_swap_page(vmf)
    if (entry & (_PROTNONE | _P)) == _PROTNONE and vma_is_accessible(vma):
        return do_numa_page(vmf)
    if vmf.flags & (FAULT_FLAG_WRITE | FAULT_FLAG_UNSHARE):
        if not entry & _RW:
            return do_wp_page(vmf)
        elif vmf.flags & FAULT_FLAG_WRITE:
            entry = pte_mkdirty(entry)
    entry = pte_mkyoung(entry)
    if not ptep_set_access_flags(vma, vmf.address, vmf.pte, entry, vmf.flags & FAULT_FLAG_WRITE):
        # Skip spurious TLB flush for retried page fault
        if not vmf.flags & FAULT_FLAG_TRIED and vmf.flags & FAULT_FLAG_WRITE:
            flush_tlb_fix_spurious_fault(vma, vmf.address, vmf.pte)
    return 0


def do_pte_missing(vmf) -> int:
    """do_pte_missing(): anonymous VMAs get do_anonymous_page, the rest do_fault."""
    if vmf.vma.vm_ops is None:
        return do_anonymous_page(vmf)
    return do_fault(vmf)


def do_swap_page(vmf) -> int:
    """do_swap_page(): a non-present, non-none PTE. The only such entries vmsim makes
    are PTE markers (handle_pte_marker); swap itself is not modelled (no swap device)."""
    from vmsim.mm.swapops import is_pte_marker_entry
    if is_pte_marker_entry(vmf.orig_pte):
        return handle_pte_marker(vmf)
    raise NotImplementedError("do_swap_page: swap entries are not modelled")


def handle_pte_marker(vmf) -> int:
    """handle_pte_marker(): hitting a guard page is always a fatal condition."""
    from vmsim.mm.swapops import pte_marker_get, PTE_MARKER_GUARD
    marker = pte_marker_get(vmf.orig_pte)
    # PTE markers should never be empty.
    if not marker:
        return VM_FAULT_SIGBUS
    if marker & PTE_MARKER_GUARD:
        return VM_FAULT_SIGSEGV
    # This is an unknown pte marker (uffd-wp and poison markers are not made here)
    return VM_FAULT_SIGBUS


def do_numa_page(vmf) -> int:
    """do_numa_page(): NUMA hinting faults are not modelled (CONFIG_NUMA_BALANCING off).

    Without NUMA balancing a PROT_NONE PTE only exists in a PROT_NONE VMA, which
    vma_is_accessible() excludes before this is called.
    """
    raise NotImplementedError("do_numa_page: NUMA balancing is not modelled")


def do_anonymous_page(vmf) -> int:
    """do_anonymous_page(): zero page for reads, a new exclusive folio for writes."""
    vma = vmf.vma
    mm = vma.vm_mm
    k = mm.kernel
    if vma.vm_flags & VM_SHARED:
        return VM_FAULT_SIGBUS
    pool = k.ptpool.mv
    if pool[vmf.pmd] == 0 and __pte_alloc(mm, vmf.pmd):            # pte_alloc()
        return VM_FAULT_OOM
    # pte_offset_map(): the PTE table row is found through the PMD entry's PFN.
    ptep = k.mem.private[(pool[vmf.pmd] & _PFN) >> 12] * PTRS_PER_TABLE + ((vmf.address >> 12) & 511)
    vmf.pte = ptep
    # Use the zero-page for reads
    if not vmf.flags & FAULT_FLAG_WRITE:
        # pte_mkspecial(pfn_pte(my_zero_pfn(addr), vma->vm_page_prot))
        set_ptes(mm, vmf.address, ptep, (k.zero_pfn << 12) | vma.vm_page_prot | T._PAGE_SPECIAL, 1)
        return 0
    ret = vmf_anon_prepare(vmf)
    if ret:
        return ret
    folio = alloc_anon_folio(vmf)
    if folio < 0:
        return VM_FAULT_OOM
    if k.mem.flags[folio] & PG_head:                                  # an mTHP
        return _map_anon_mthp(vmf, folio)
    addr = vmf.address
    entry = (folio << 12) | vma.vm_page_prot                         # folio_mk_pte()
    if vma.vm_flags & VM_WRITE:
        entry |= _MKWRITE_DIRTY                                      # pte_mkwrite(pte_mkdirty())
    mm.rss_stat[MM_ANONPAGES] += 1                                   # add_mm_counter()
    folio_add_new_anon_rmap(k, folio, vma, addr, RMAP_EXCLUSIVE)
    folio_add_lru_vma(k, folio, vma, k.current.cpu)
    set_ptes(mm, addr, ptep, entry, 1)
    return 0


# --- write-protect faults ----------------------------------------------------
def wp_page_reuse(vmf, folio: int):
    """wp_page_reuse(): make the existing PTE young, dirty and writable; count pgreuse."""
    vma = vmf.vma
    entry = pte_mkyoung(vmf.orig_pte)
    entry = maybe_mkwrite(pte_mkdirty(entry), vma)
    ptep_set_access_flags(vma, vmf.address, vmf.pte, entry, 1)
    vma.vm_mm.kernel.vmstat[vmstat.PGREUSE] += 1


def wp_can_reuse_anon_folio(k, folio: int, vma) -> bool:
    """wp_can_reuse_anon_folio(): reuse iff ours is the only reference (order 0).

    A folio still in a per-CPU LRU batch holds an extra reference: the kernel drains
    the local CPU's batch (lru_add_drain) when the folio is not on the LRU yet, so a
    folio in another CPU's batch is copied. Another process mapping it (after fork)
    holds a reference too. On reuse the folio moves to this VMA's anon_vma
    (folio_move_anon_rmap), so a child's rmap walk starts from its own anon_vma.
    KSM folios are never reused (KSM merging is not modelled).
    """
    mem = k.mem
    if mem.flags[folio] & PG_head:
        return __wp_can_reuse_large_anon_folio(k, folio, vma)
    if mem.refcount[folio] > 3:
        return False
    if not mem.flags[folio] & PG_lru:
        # We cannot easily detect+handle references from remote LRU caches.
        lru_add_drain(k)
    if mem.refcount[folio] > 1:           # + folio_test_swapcache(): no swap cache here
        return False
    if mem.refcount[folio] != 1:          # re-checked under the folio lock
        return False
    folio_move_anon_rmap(k, folio, vma)
    return True


def __wp_can_reuse_large_anon_folio(k, folio: int, vma) -> bool:
    """__wp_can_reuse_large_anon_folio(): reuse a PTE-mapped large folio only if all
    its references are mappings (large mapcount == refcount) and they are all in this
    mm (the kernel's MM-id tracking; vmsim asks the rmap walk)."""
    from vmsim.mm.rmap import folio_move_anon_rmap, rmap_walk_anon
    from vmsim.mm.folio import folio_nr_pages
    mem = k.mem
    if mem.lru_prev[folio + 1]:                          # also PMD-mapped somewhere
        return False
    if mem.mapping[folio + 1] != mem.refcount[folio]:
        return False
    mm = vma.vm_mm
    if _folio_mapped_by_other_mm(k, folio, mm):
        return False
    folio_move_anon_rmap(k, folio, vma)
    return True


def _folio_mapped_by_other_mm(k, folio: int, mm) -> bool:
    """folio_maybe_mapped_shared() by an rmap walk: does a VMA of another mm chained
    to the folio's anon_vma map one of its pages?"""
    from vmsim.mm.rmap import vma_address, page_vma_mapped_walk
    from vmsim.mm.folio import folio_nr_pages
    mem = k.mem
    av = k.objects[mem.mapping[folio]]
    idx = mem.index[folio]
    for avc in list(getattr(av, "rb_root", ())):
        v = avc.vma
        if v.vm_mm is mm:
            continue
        for p in range(folio, folio + folio_nr_pages(k, folio)):
            if not mem.mapcount[p]:
                continue
            a = vma_address(v, idx + p - folio)
            if a >= 0 and page_vma_mapped_walk(v, p, a) >= 0:
                return True
    return False


def wp_page_copy(vmf) -> int:
    """wp_page_copy(): copy (or zero-fill, for the zero page) into a new exclusive folio."""
    vma = vmf.vma
    mm = vma.vm_mm
    k = mm.kernel
    unshare = vmf.flags & FAULT_FLAG_UNSHARE
    old_folio = _page_folio(k, vmf.page) if vmf.page >= 0 else -1
    ret = vmf_anon_prepare(vmf)
    if ret:
        if old_folio >= 0:
            folio_put(k, old_folio)
        return ret
    pfn_is_zero = ((vmf.orig_pte & _PFN) >> 12) == k.zero_pfn
    # folio_prealloc(need_zero = pfn_is_zero)
    new_folio = k.page_alloc.alloc_pages(
        _GFP_ANON_ZEROED if pfn_is_zero else _GFP_ANON_COPY, 0, k.current.cpu)
    if new_folio < 0:
        if old_folio >= 0:
            folio_put(k, old_folio)
        return VM_FAULT_OOM
    if not pfn_is_zero:
        k.page_data.copy(new_folio, (vmf.orig_pte & _PFN) >> 12)    # __wp_page_copy_user
    k.mmu_notifier_invalidate_range_start(mm, "clear", vmf.address, vmf.address + 4096)
    if old_folio >= 0:
        if not k.mem.flags[old_folio] & PG_anon:
            mm.rss_stat[mm_counter_file(k, old_folio)] -= 1
            mm.rss_stat[MM_ANONPAGES] += 1
    else:
        mm.rss_stat[MM_ANONPAGES] += 1
    entry = pfn_pte(new_folio, vma.vm_page_prot)
    if not unshare:
        entry = maybe_mkwrite(pte_mkdirty(entry), vma)
    ptep_clear_flush(vma, vmf.address, vmf.pte)
    folio_add_new_anon_rmap(k, new_folio, vma, vmf.address, RMAP_EXCLUSIVE)
    folio_add_lru_vma(k, new_folio, vma, k.current.cpu)
    set_pte_at(mm, vmf.address, vmf.pte, entry)
    if old_folio >= 0:
        folio_remove_rmap_pte(k, vmf.page, vma)
    k.mmu_notifier_invalidate_range_end(mm, "clear", vmf.address, vmf.address + 4096)
    # Free the old page: the reference do_wp_page took, then the mapping's.
    if old_folio >= 0:
        folio_put(k, old_folio)
        folio_put(k, old_folio)
    return 0


def ptep_clear_flush(vma, address: int, ptep: int) -> int:
    """ptep_clear_flush(): clear the PTE and flush the TLB entry if it was present."""
    pte = ptep_get_and_clear(vma.vm_mm, address, ptep)
    if pte & _P:
        _note_downgrade(vma.vm_mm, address, address + 4096)
        flush_tlb_page(vma, address)
    return pte


def do_wp_page(vmf) -> int:
    """do_wp_page(): write to a read-only PTE: shared -> make writable; private -> reuse
    an exclusive anon page, else copy (wp_page_copy)."""
    vma = vmf.vma
    k = vma.vm_mm.kernel
    unshare = vmf.flags & FAULT_FLAG_UNSHARE
    page = vm_normal_page(vma, vmf.address, vmf.orig_pte)
    vmf.page = page
    if vma.vm_flags & (VM_SHARED | VM_MAYSHARE):
        if page < 0:
            return wp_pfn_shared(vmf)
        return wp_page_shared(vmf, page)
    folio = _page_folio(k, page) if page >= 0 else -1
    if page >= 0 and k.mem.flags[folio] & PG_anon:
        flags = k.mem.flags[page]
        if flags & PG_anon_exclusive or wp_can_reuse_anon_folio(k, folio, vma):
            if not flags & PG_anon_exclusive:
                k.mem.flags[page] = k.mem.flags[page] | PG_anon_exclusive
            if unshare:
                return 0
            wp_page_reuse(vmf, page)
            return 0
    if page >= 0:
        folio_get(k, folio)
    return wp_page_copy(vmf)


def wp_pfn_shared(vmf) -> int:
    """wp_pfn_shared(): shared pfnmap write: just make it writable (no ->pfn_mkwrite)."""
    wp_page_reuse(vmf, -1)
    return 0


def wp_page_shared(vmf, folio: int) -> int:
    """wp_page_shared(): shared page write fault: ->page_mkwrite if any, then reuse."""
    vma = vmf.vma
    ops = vma.vm_ops
    if ops is not None and getattr(ops, "page_mkwrite", None):
        ret = vmf_can_call_fault(vmf)
        if ret:
            return ret
        ret = ops.page_mkwrite(vmf)
        if ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE):
            return ret
    wp_page_reuse(vmf, folio)
    fault_dirty_shared_page(vmf, folio)
    return 0


def fault_dirty_shared_page(vmf, folio: int) -> int:
    """fault_dirty_shared_page(): mark the page-cache folio dirty."""
    k = vmf.vma.vm_mm.kernel
    from vmsim.mm.filemap import folio_mark_dirty
    folio_mark_dirty(k, folio)
    return 0


# --- do_fault: file and shmem VMAs ----------------------------------------------------
def __do_fault(vmf) -> int:
    """__do_fault(): preallocate a PTE table, then call ->fault()."""
    vma = vmf.vma
    mm = vma.vm_mm
    if mm.kernel.ptpool.mv[vmf.pmd] == 0 and vmf.prealloc_pte < 0:
        vmf.prealloc_pte = pte_alloc_one(mm)
        if vmf.prealloc_pte < 0:
            return VM_FAULT_OOM
    ret = vma.vm_ops.fault(vmf)
    if ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY | VM_FAULT_DONE_COW):
        return ret
    return ret | VM_FAULT_LOCKED


def do_set_pmd(vmf, folio: int, page: int) -> int:
    """do_set_pmd(): map a PMD-sized page-cache folio with one PMD. THP's sysfs modes
    play no part (the folio is already large): only VM_NOHUGEPAGE, the mm's THP-disable
    flags (vma_thp_disabled as for a forced collapse) and the alignment of the VMA
    (thp_vma_suitable_order) refuse it. x86 deposits no table for file PMDs
    (arch_needs_pgtable_deposit() is false). Consumes the caller's folio reference;
    0, or VM_FAULT_FALLBACK to map PTEs."""
    from vmsim.mm.huge_memory import (vma_thp_disabled, thp_vma_suitable_order, folio_mk_pmd,
                                      maybe_pmd_mkwrite, set_pmd_at)
    from vmsim.mm.rmap import folio_add_file_rmap_pmd
    vma = vmf.vma
    mm = vma.vm_mm
    k = mm.kernel
    write = vmf.flags & FAULT_FLAG_WRITE
    haddr = vmf.address & PMD_MASK
    # thp_disabled_by_hw(): this machine's CPU has PSE.
    if vma_thp_disabled(vma, vma.vm_flags, True):
        return VM_FAULT_FALLBACK
    if not thp_vma_suitable_order(vma, haddr, PMD_ORDER):
        return VM_FAULT_FALLBACK
    f = k.mem.flags[folio]
    if not f & PG_head or (f & PG_ORDER_MASK) >> PG_ORDER_SHIFT != HPAGE_PMD_ORDER:
        return VM_FAULT_FALLBACK
    if k.ptpool.mv[vmf.pmd] != 0:                         # !pmd_none() under the lock
        return 0
    entry = folio_mk_pmd(folio, vma.vm_page_prot)
    if write:
        entry = maybe_pmd_mkwrite(entry | T._PAGE_DIRTY | T._PAGE_SOFT_DIRTY, vma)
    mm.rss_stat[mm_counter_file(k, folio)] += HPAGE_PMD_NR
    folio_add_file_rmap_pmd(k, folio, folio, vma)
    set_pmd_at(mm, haddr, vmf.pmd, entry)
    k.vmstat[vmstat.THP_FILE_MAPPED] += 1
    return 0


def set_pte_range(vmf, folio: int, page: int, nr: int, addr: int, ptep: int = -1):
    """set_pte_range(): map nr pages of folio; a COW fault maps a new anon page.
    Prefaulted entries (fault-around, not the faulting address) are made young too:
    x86 does not ask for old prefaulted PTEs (arch_wants_old_prefaulted_pte)."""
    vma = vmf.vma
    mm = vma.vm_mm
    k = mm.kernel
    write = vmf.flags & FAULT_FLAG_WRITE
    entry = pfn_pte(page, vma.vm_page_prot)
    if write:
        entry = maybe_mkwrite(pte_mkdirty(entry), vma)
    elif entry & _RW and k.mem.flags[folio] & PG_dirty:
        entry = pte_mkdirty(entry)
    if write and not vma.vm_flags & VM_SHARED:
        folio_add_new_anon_rmap(k, folio, vma, addr, RMAP_EXCLUSIVE)
        folio_add_lru_vma(k, folio, vma, k.current.cpu)
    elif nr == 1 and folio == page and not k.mem.flags[folio] & _PG_LARGE:
        folio_add_file_rmap_pte(k, page, vma)
    else:
        folio_add_file_rmap_ptes(k, folio, page, nr, vma)
    if ptep < 0:
        ptep = pte_offset_map(mm, vmf.pmd, addr)
    set_ptes(mm, addr, ptep, entry, nr)


def finish_fault(vmf) -> int:
    """finish_fault(): map vmf.page (or vmf.cow_page for a COW fault): a PMD-sized
    folio by one PMD when the PMD is none (do_set_pmd), a large folio whole when it
    lies inside i_size (or is shmem), the VMA and this page table, else one page."""
    vma = vmf.vma
    mm = vma.vm_mm
    k = mm.kernel
    mem = k.mem
    pool = k.ptpool.mv
    is_cow = vmf.flags & FAULT_FLAG_WRITE and not vma.vm_flags & VM_SHARED
    page = vmf.cow_page if is_cow else vmf.page
    folio = page
    if mem.flags[page] & PG_tail:
        from vmsim.mm.folio import page_folio
        folio = page_folio(k, page)
    needs_fallback = False
    large = mem.flags[folio] & PG_head
    if large and vma.vm_file is not None:
        # Do not map with PTEs beyond i_size nor with a PMD across it (SIGBUS
        # semantics); shmem has long mapped PMDs across i_size.
        mapping = vma.vm_file.f_mapping
        file_end = (mapping.host.i_size + 4095) >> 12
        nr = 1 << ((mem.flags[folio] & PG_ORDER_MASK) >> PG_ORDER_SHIFT)
        needs_fallback = not mapping.swapbacked and file_end < mem.index[folio] + nr
    if pool[vmf.pmd] == 0:
        if not needs_fallback and large and \
                (mem.flags[folio] & PG_ORDER_MASK) >> PG_ORDER_SHIFT == HPAGE_PMD_ORDER:
            ret = do_set_pmd(vmf, folio, page)
            if ret != VM_FAULT_FALLBACK:
                return ret
        if vmf.prealloc_pte >= 0:
            vmf.prealloc_pte = pmd_install(mm, vmf.pmd, vmf.prealloc_pte)
        elif pte_alloc(mm, vmf.pmd):
            return VM_FAULT_OOM
    nr_pages = 1
    addr = vmf.address
    if large and not needs_fallback:
        n = 1 << ((mem.flags[folio] & PG_ORDER_MASK) >> PG_ORDER_SHIFT)
        idx = page - folio
        vma_off = vmf.pgoff - vma.vm_pgoff
        pte_off = (vmf.address >> 12) & 511
        if not (vma_off < idx or vma_off + (n - idx) > (vma.vm_end - vma.vm_start) >> 12 or
                pte_off < idx or pte_off + (n - idx) > PTRS_PER_TABLE):
            base = pte_offset_map(mm, vmf.pmd, vmf.address - idx * 4096)
            if not k.ptpool.arr[base:base + n].any():                # pte_range_none()
                nr_pages = n
                addr = vmf.address - idx * 4096
                page = folio
            # else: needs_fallback, and the retry maps one page (the PMD has a table
            # now, so do_set_pmd is not tried again).
    vmf.pte = pte_offset_map(mm, vmf.pmd, addr)
    if nr_pages == 1 and pool[vmf.pte] != 0:                          # vmf_pte_changed()
        return VM_FAULT_NOPAGE
    if nr_pages > 1:
        mem.refcount[folio] += nr_pages - 1                          # folio_ref_add()
    set_pte_range(vmf, folio, page, nr_pages, addr, vmf.pte)
    mm.rss_stat[MM_ANONPAGES if is_cow else mm_counter_file(k, folio)] += nr_pages
    return 0


def should_fault_around(vmf) -> bool:
    """should_fault_around(): ->map_pages exists and fault_around_pages > 1."""
    ops = vmf.vma.vm_ops
    if getattr(ops, "map_pages", None) is None:
        return False
    return vmf.vma.vm_mm.kernel.fault_around_pages > 1


def do_fault_around(vmf) -> int:
    """do_fault_around(): map cached pages of the aligned window around the fault."""
    vma = vmf.vma
    nr_pages = vma.vm_mm.kernel.fault_around_pages
    pte_off = (vmf.address >> 12) & 511
    vma_off = vmf.pgoff - vma.vm_pgoff
    from_pte = max(pte_off & ~(nr_pages - 1), pte_off - min(pte_off, vma_off))
    to_pte = min(from_pte + nr_pages, PTRS_PER_TABLE,
                 pte_off + ((vma.vm_end - vma.vm_start) >> 12) - vma_off) - 1
    mm = vma.vm_mm
    if mm.kernel.ptpool.mv[vmf.pmd] == 0:
        vmf.prealloc_pte = pte_alloc_one(mm)
        if vmf.prealloc_pte < 0:
            return VM_FAULT_OOM
    return vma.vm_ops.map_pages(vmf, vmf.pgoff + from_pte - pte_off,
                                vmf.pgoff + to_pte - pte_off)


def do_read_fault(vmf) -> int:
    """do_read_fault(): fault-around first, then ->fault and finish_fault."""
    k = vmf.vma.vm_mm.kernel
    if should_fault_around(vmf):
        ret = do_fault_around(vmf)
        if ret:
            return ret
    ret = vmf_can_call_fault(vmf)
    if ret:
        return ret
    ret = __do_fault(vmf)
    if ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY):
        return ret
    ret |= finish_fault(vmf)
    if ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY):
        folio_put(k, vmf.page)
    return ret


def do_cow_fault(vmf) -> int:
    """do_cow_fault(): write to a private file mapping: copy the page into a new anon page.

    vmf_can_call_fault() comes first: a VMA whose ->fault needs mmap_lock retries
    before an anon_vma is prepared or a page allocated.
    """
    vma = vmf.vma
    k = vma.vm_mm.kernel
    ret = vmf_can_call_fault(vmf)
    if not ret:
        ret = vmf_anon_prepare(vmf)
    if ret:
        return ret
    vmf.cow_page = k.page_alloc.alloc_pages(GFP_HIGHUSER_MOVABLE | __GFP_COMP, 0,
                                            k.current.cpu)     # folio_prealloc(false)
    if vmf.cow_page < 0:
        return VM_FAULT_OOM
    ret = __do_fault(vmf)
    if ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY):
        folio_put(k, vmf.cow_page)
        return ret
    if ret & VM_FAULT_DONE_COW:
        return ret
    k.page_data.copy(vmf.cow_page, vmf.page)
    ret |= finish_fault(vmf)
    folio_put(k, vmf.page)
    if ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY):
        folio_put(k, vmf.cow_page)
    return ret


def do_shared_fault(vmf) -> int:
    """do_shared_fault(): write to a shared mapping: ->fault, ->page_mkwrite, map, dirty."""
    vma = vmf.vma
    k = vma.vm_mm.kernel
    ret = vmf_can_call_fault(vmf)
    if ret:
        return ret
    ret = __do_fault(vmf)
    if ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY):
        return ret
    folio = vmf.page
    if getattr(vma.vm_ops, "page_mkwrite", None):
        tmp = vma.vm_ops.page_mkwrite(vmf)
        if tmp & (VM_FAULT_ERROR | VM_FAULT_NOPAGE):
            folio_put(k, folio)
            return tmp
    ret |= finish_fault(vmf)
    if ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY):
        folio_put(k, folio)
        return ret
    ret |= fault_dirty_shared_page(vmf, folio)
    return ret


def do_fault(vmf) -> int:
    """do_fault(): no ->fault is SIGBUS; read / COW / shared fault; free an unused prealloc."""
    vma = vmf.vma
    mm = vma.vm_mm
    if getattr(vma.vm_ops, "fault", None) is None:
        vmf.pte = pte_offset_map(mm, vmf.pmd, vmf.address) if mm.kernel.ptpool.mv[vmf.pmd] else -1
        if vmf.pte < 0 or mm.kernel.ptpool.mv[vmf.pte] == 0:
            ret = VM_FAULT_SIGBUS
        else:
            ret = VM_FAULT_NOPAGE
    elif not vmf.flags & FAULT_FLAG_WRITE:
        ret = do_read_fault(vmf)
    elif not vma.vm_flags & VM_SHARED:
        ret = do_cow_fault(vmf)
    else:
        ret = do_shared_fault(vmf)
    if vmf.prealloc_pte >= 0:
        pagetable_free(mm.kernel, vmf.prealloc_pte)           # pte_free()
        vmf.prealloc_pte = -1
    return ret


# --- unmapping: zap_*_range (the seed's zap_page_range, spread over three callers) ----
ZAP_FLAG_DROP_MARKER = 1 << 0
ZAP_FLAG_UNMAP = 1 << 1


class zap_details:
    """struct zap_details: even_cows (zap private COWed anon pages too: unmap_vmas,
    MADV_DONTNEED, truncation; not page-cache invalidation), reclaim_pt (free emptied
    PTE tables: MADV_DONTNEED) and zap_flags (ZAP_FLAG_DROP_MARKER lets it remove PTE
    markers: munmap, exit)."""
    __slots__ = ("even_cows", "reclaim_pt", "zap_flags")

    def __init__(self, reclaim_pt=False, zap_flags=0, even_cows=True):
        self.even_cows = even_cows
        self.reclaim_pt = reclaim_pt
        self.zap_flags = zap_flags


def zap_drop_markers(details) -> bool:
    """zap_drop_markers()."""
    return details is not None and bool(details.zap_flags & ZAP_FLAG_DROP_MARKER)


def zap_nonpresent_ptes(vma, ptep: int, pte: int, details, addr: int) -> bool:
    """zap_nonpresent_ptes() for the entries vmsim makes (PTE markers): ordinary
    zapping (MADV_DONTNEED, the zap before a guard install) keeps guard markers; only
    ZAP_FLAG_DROP_MARKER (munmap, exit) clears them. True if the entry was cleared."""
    from vmsim.mm.swapops import is_guard_swp_entry
    if not is_guard_swp_entry(pte):
        raise NotImplementedError("zap of a swap / migration entry: not modelled")
    if not zap_drop_markers(details):
        return False
    clear_not_present_full_ptes(vma.vm_mm, addr, ptep, 1, 0)    # (full: an atomic op only)
    return True


def should_zap_cows(details) -> bool:
    """should_zap_cows(): by default zap all pages; else COWed ones only on request."""
    if details is None or details.reclaim_pt:
        return True
    return details.even_cows


def should_zap_folio(details, page_flags: int) -> bool:
    """should_zap_folio(): without even_cows only non-anon folios (the file's own
    pages) are zapped; a private mapping's COWed anon copies stay."""
    if should_zap_cows(details):
        return True
    return not page_flags & PG_anon


def zap_pte_range(tlb, vma, pmdp: int, addr: int, end: int, details) -> int:
    """zap_pte_range(): clear the PTEs of [addr, end), gather the pages; return end.

    zap_present_folio_ptes(): a dirty file or shmem PTE delays the folio's rmap
    removal (tlb_delay_rmap) and forces the TLB flush before the page-table lock is
    dropped, then tlb_flush_rmaps() drops those rmaps; the pages are freed after
    (tlb_flush_mmu). With CONFIG_PT_RECLAIM and details.reclaim_pt (MADV_DONTNEED),
    a PTE table whose whole 2 MiB was zapped and is now empty is freed
    (try_to_free_pte), unless a PTE was skipped (should_zap_folio).
    """
    mm = tlb.mm
    k = mm.kernel
    pool = k.ptpool.mv
    mem = k.mem
    mflags = mem.flags
    start = addr
    can_reclaim_pt = details is not None and details.reclaim_pt and end - start >= PMD_SIZE
    ptep = pte_offset_map(mm, pmdp, addr)
    batch = _pte_batch._usable(vma)     # vmsim's compiled runs of order-0 anon / zero PTEs
    zap_anon = should_zap_cows(details)
    while True:                                             # retry:
        force_flush = False
        rss_anon = rss_file = rss_shmem = 0
        # The translations cleared in this pass, recorded as one range for the
        # flush check (every one of them is also in the gather's flush range).
        first = -1
        while addr != end:
            if batch:
                addr, ptep, n, run_first, run_last, status, skipped, done = \
                    _pte_batch._zap_run(tlb, k, ptep, addr, end, zap_anon)
                rss_anon += n
                if run_first >= 0:
                    if first < 0:
                        first = run_first
                    last = run_last
                if skipped:
                    can_reclaim_pt = False                  # any_skipped
                if status == _pte_batch._GATHER_FULL:
                    force_flush = True
                    break
                if addr == end:
                    break
                batch = done > 0        # a run of other entries: the Python code takes it
            pte = pool[ptep]
            if pte and not pte & (_P | _PROTNONE):
                zap_nonpresent_ptes(vma, ptep, pte, details, addr)
            elif pte:
                page = vm_normal_page(vma, addr, pte)
                pf = mflags[page] if page >= 0 else 0
                if pf & PG_tail:                            # a page of a large folio
                    pf = mflags[_page_folio(k, page)]
                if page >= 0 and not should_zap_folio(details, pf):
                    can_reclaim_pt = False                  # any_skipped
                    addr += 4096
                    ptep += 1
                    continue
                if page >= 0 and mflags[page] & _PG_LARGE:
                    from vmsim.mm.folio import page_folio
                    folio = page_folio(k, page)
                    if not mflags[folio] & PG_anon:
                        nr, ff, full = zap_present_folio_ptes(tlb, vma, folio, page, ptep,
                                                                    addr, end)
                        force_flush |= ff
                        if first < 0:
                            first = addr
                        last = addr + (nr - 1) * 4096
                        if mflags[folio] & PG_swapbacked:
                            rss_shmem += nr
                        else:
                            rss_file += nr
                        addr += nr * 4096
                        ptep += nr
                        if full:
                            force_flush = True
                            break
                        continue
                if page < 0:
                    ptep_get_and_clear_full(mm, addr, ptep, tlb.fullmm)
                elif pf & PG_anon:
                    clear_full_ptes(mm, addr, ptep, 1, tlb.fullmm)
                else:
                    get_and_clear_full_ptes(mm, addr, ptep, 1, tlb.fullmm)
                tlb_remove_tlb_entry(tlb, ptep, addr)
                if first < 0:
                    first = addr
                last = addr
                if page >= 0:
                    f = pf                              # the folio's flags (large: the head's)
                    delay_rmap = False
                    if f & PG_anon:
                        rss_anon += 1
                    else:
                        # zap_present_folio_ptes(): the PTE's D and A bits pass to the folio.
                        if pte & T._PAGE_DIRTY:
                            folio_mark_dirty(k, page)
                            # Until the flush, another CPU may still write through its
                            # TLB entry: keep the folio mapped for rmap walkers meanwhile.
                            if tlb_delay_rmap(tlb):
                                delay_rmap = True
                                force_flush = True
                        if pte & T._PAGE_ACCESSED and not vma.vm_flags & (VM_SEQ_READ | VM_RAND_READ):
                            folio_mark_accessed(k, page)        # vma_has_recency()
                        if f & PG_swapbacked:
                            rss_shmem += 1
                        else:
                            rss_file += 1
                    if not delay_rmap:
                        folio_remove_rmap_pte(k, page, vma)
                    if __tlb_remove_folio_pages(tlb, page, 1, delay_rmap):
                        force_flush = True
                        addr += 4096
                        ptep += 1
                        break
            addr += 4096
            ptep += 1
        if first >= 0:
            _note_downgrade(mm, first, last + 4096)
        rss = mm.rss_stat
        rss[MM_ANONPAGES] -= rss_anon                       # add_mm_rss_vec()
        rss[MM_FILEPAGES] -= rss_file
        rss[MM_SHMEMPAGES] -= rss_shmem
        # Do the actual TLB flush before dropping ptl.
        if force_flush:
            tlb_flush_mmu_tlbonly(tlb)
            tlb_flush_rmaps(tlb, vma)
        # pte_unmap_unlock(); then free the batched memory too.
        if force_flush:
            tlb_flush_mmu(tlb)
        if addr == end:
            break
        # The gather was full: flushed, now finish this table (goto retry).
    if can_reclaim_pt:
        try_to_free_pte(mm, pmdp, start, tlb)
    return addr


def zap_present_folio_ptes(tlb, vma, folio: int, page: int, ptep: int, addr: int,
                                end: int):
    """zap_present_ptes() for a large page-cache folio: folio_pte_batch() finds the
    run of PTEs mapping consecutive pages of it, which are cleared together; their
    merged D and A bits pass to the folio (zap_present_folio_ptes). Returns (nr,
    force_flush, gather full)."""
    from vmsim.mm.folio import folio_nr_pages
    from vmsim.mm.rmap import folio_remove_rmap_ptes
    mm = tlb.mm
    k = mm.kernel
    pool = k.ptpool.mv
    max_nr = min((end - addr) >> 12, folio + folio_nr_pages(k, folio) - page)
    nr = 1
    while nr < max_nr:
        e = pool[ptep + nr]
        if not e & _P or (e & _PFN) >> 12 != page + nr:
            break
        nr += 1
    pte = get_and_clear_full_ptes(mm, addr, ptep, nr, tlb.fullmm)
    __tlb_adjust = tlb_remove_tlb_entry
    __tlb_adjust(tlb, ptep, addr)
    if nr > 1:
        __tlb_adjust(tlb, ptep + nr - 1, addr + (nr - 1) * 4096)
    force_flush = False
    delay_rmap = False
    if pte & T._PAGE_DIRTY:
        folio_mark_dirty(k, folio)
        if tlb_delay_rmap(tlb):
            delay_rmap = True
            force_flush = True
    if pte & T._PAGE_ACCESSED and not vma.vm_flags & (VM_SEQ_READ | VM_RAND_READ):
        folio_mark_accessed(k, folio)
    if not delay_rmap:
        folio_remove_rmap_ptes(k, page, nr, vma)
    # __tlb_remove_folio_pages(tlb, page, nr, delay_rmap): one encoded entry (two
    # slots when nr > 1) holding nr references on the folio.
    full = __tlb_remove_folio_pages(tlb, folio, 1, False)
    if nr > 1:
        tlb._gathered.extend((folio,) * (nr - 1))
        tlb.active_nr += 1
    if delay_rmap:
        tlb.delayed.extend(range(page, page + nr))
    return nr, force_flush, full


def try_to_free_pte(mm, pmdp: int, addr: int, tlb):
    """try_to_free_pte() (mm/pt_reclaim.c): free the PTE table if every entry is none."""
    pool = mm.kernel.ptpool.mv
    pmdval = pool[pmdp]
    if not pmdval or pmdval & _PSE:
        return
    base = mm.kernel.mem.private[(pmdval & _PFN) >> 12] * PTRS_PER_TABLE
    # for each entry: if (!pte_none(ptep_get(start_pte + i))) goto out_ptl;
    if mm.kernel.ptpool.arr[base:base + PTRS_PER_TABLE].any():
        return
    pmd_clear(mm, pmdp)                                     # try_get_and_clear_pmd
    pte_free_tlb(tlb, (pmdval & _PFN) >> 12, addr)          # free_pte
    mm.pgtables_bytes -= 4096


def _thp_batch():
    """vmsim.mm._thp_batch, imported on the first huge PMD (not at import vmsim)."""
    from vmsim.mm import _thp_batch as mod
    return mod


def zap_pmd_range(tlb, vma, pudp: int, addr: int, end: int, details) -> int:
    """zap_pmd_range(): per PMD; huge PMDs go to zap_huge_pmd (THP issue)."""
    mm = tlb.mm
    pool = mm.kernel.ptpool.mv
    pmdp = pmd_offset(mm, pudp, addr)
    while True:
        nxt = min((addr + PMD_SIZE) & PMD_MASK, end)
        pmd = pool[pmdp]
        if pmd & _PSE and nxt - addr == PMD_SIZE and _thp_batch()._usable(vma):
            # vmsim's compiled run of this table's whole anonymous THP PMDs.
            done = _thp_batch()._zap_huge_pmds(tlb, vma, pmdp, addr, end)
            if done:
                addr += done * PMD_SIZE
                pmdp += done
                if addr == end:
                    break
                continue
        if pmd & _PSE:
            from vmsim.mm.huge_memory import zap_huge_pmd, __split_huge_pmd
            if nxt - addr == PMD_SIZE:
                zap_huge_pmd(tlb, vma, pmdp, addr)
                addr = nxt
                pmdp += 1
                if addr == end:
                    break
                continue
            __split_huge_pmd(vma, pmdp, addr, False)
            pmd = pool[pmdp]
        if pmd:
            addr = zap_pte_range(tlb, vma, pmdp, addr, nxt, details)
        addr = nxt
        pmdp += 1
        if addr == end:
            break
    return addr


def zap_pud_range(tlb, vma, p4dp: int, addr: int, end: int, details) -> int:
    """zap_pud_range(): per PUD entry; huge PUDs (DAX) are not modelled."""
    mm = tlb.mm
    pool = mm.kernel.ptpool.mv
    pudp = pud_offset(mm, p4dp, addr)
    while True:
        nxt = min((addr + T.PUD_SIZE) & PUD_MASK, end)
        if pool[pudp]:
            zap_pmd_range(tlb, vma, pudp, addr, nxt, details)
        addr = nxt
        pudp += 1
        if addr == end:
            return addr


def zap_p4d_range(tlb, vma, pgdp: int, addr: int, end: int, details) -> int:
    """zap_p4d_range(): per P4D entry (the PGD entry itself with 4-level paging)."""
    mm = tlb.mm
    k = mm.kernel
    pool = k.ptpool.mv
    if not k.la57:
        return zap_pud_range(tlb, vma, pgdp, addr, end, details)
    p4dp = p4d_offset(mm, pgdp, addr)
    while True:
        nxt = min((addr + (1 << 39)) & ~((1 << 39) - 1), end)
        if pool[p4dp]:
            zap_pud_range(tlb, vma, p4dp, addr, nxt, details)
        addr = nxt
        p4dp += 1
        if addr == end:
            return addr


def unmap_page_range(tlb, vma, addr: int, end: int, details=None):
    """unmap_page_range(): walk the PGD entries of [addr, end) and zap below them."""
    mm = tlb.mm
    k = mm.kernel
    pool = k.ptpool.mv
    shift = k.pgdir_shift
    pgdp = pgd_offset(mm, addr)
    while True:
        nxt = min((addr + (1 << shift)) & ~((1 << shift) - 1), end)
        if pool[pgdp]:
            zap_p4d_range(tlb, vma, pgdp, addr, nxt, details)
        addr = nxt
        pgdp += 1
        if addr == end:
            return


def unmap_single_vma(tlb, vma, start_addr: int, end_addr: int, details=None):
    """unmap_single_vma(): clip to the VMA and unmap its part of the range."""
    start = max(vma.vm_start, start_addr)
    end = min(vma.vm_end, end_addr)
    if start >= end:
        return
    if vma.vm_flags & VM_HUGETLB:
        from vmsim.mm.hugetlb import __unmap_hugepage_range
        __unmap_hugepage_range(tlb, vma, start, end, None)
        return
    unmap_page_range(tlb, vma, start, end, details)


def unmap_vmas(tlb, vmas, start_addr: int, end_addr: int):
    """unmap_vmas(): unmap a range over several VMAs, between mmu-notifier calls."""
    mm = tlb.mm
    k = mm.kernel
    k.mmu_notifier_invalidate_range_start(mm, "unmap", start_addr, end_addr)
    for vma in vmas:
        unmap_single_vma(tlb, vma, start_addr, end_addr,
                         zap_details(zap_flags=ZAP_FLAG_DROP_MARKER | ZAP_FLAG_UNMAP))
    k.mmu_notifier_invalidate_range_end(mm, "unmap", start_addr, end_addr)


def zap_page_range_single_batched(tlb, vma, address: int, size: int, details):
    """zap_page_range_single_batched(): zap part of one VMA into a caller's gather."""
    mm = vma.vm_mm
    k = mm.kernel
    end = address + size
    k.mmu_notifier_invalidate_range_start(mm, "clear", address, end)
    if vma.vm_flags & VM_HUGETLB:
        pass       # hugetlb_zap_begin: widens only the notifier range for shared PMDs
    update_hiwater_rss(mm)
    unmap_single_vma(tlb, vma, address, end, details)
    k.mmu_notifier_invalidate_range_end(mm, "clear", address, end)


def zap_page_range_single(vma, address: int, size: int, details=None):
    """zap_page_range_single(): zap part of one VMA with its own gather. The seed's
    zap_page_range (removed in 6.3) began with lru_add_drain(); 6.18's does not."""
    from vmsim.mm.mmu_gather import tlb_gather_mmu, tlb_finish_mmu
    tlb = tlb_gather_mmu(vma.vm_mm)
    zap_page_range_single_batched(tlb, vma, address, size, details)
    tlb_finish_mmu(tlb)


def _vma_interval_tree_foreach(k, mapping, first_index: int, last_index: int):
    """The VMAs of ``mapping`` (shared and private) overlapping file pages
    [first_index, last_index], as vma_interval_tree_foreach() on mapping->i_mmap finds
    them. vmsim keeps no i_mmap tree: the live mms' VMAs are searched."""
    out = []
    seen = set()
    for task in list(k.tasks.values()):
        mm = task.mm
        if mm is None or id(mm) in seen:
            continue
        seen.add(id(mm))
        for vma in mm.mm_mt:
            if vma.vm_file is None or vma.vm_file.f_mapping is not mapping:
                continue
            vba = vma.vm_pgoff
            vea = vba + ((vma.vm_end - vma.vm_start) >> 12) - 1
            if vba <= last_index and vea >= first_index:
                out.append(vma)
    out.sort(key=lambda v: v.vm_pgoff)
    return out


def unmap_mapping_range_vma(vma, start_addr: int, end_addr: int, details):
    zap_page_range_single(vma, start_addr, end_addr - start_addr, details)


def unmap_mapping_range_tree(k, mapping, first_index: int, last_index: int, details):
    """unmap_mapping_range_tree(): zap each VMA's part of the file range."""
    for vma in _vma_interval_tree_foreach(k, mapping, first_index, last_index):
        vba = vma.vm_pgoff
        vea = vba + ((vma.vm_end - vma.vm_start) >> 12) - 1
        zba = max(first_index, vba)
        zea = min(last_index, vea)
        unmap_mapping_range_vma(vma, ((zba - vba) << 12) + vma.vm_start,
                                ((zea - vba + 1) << 12) + vma.vm_start, details)


def unmap_mapping_pages(k, mapping, start: int, nr: int, even_cows: bool):
    """unmap_mapping_pages(): unmap file pages [start, start + nr) (nr 0: to the end)
    from every process; private COWed pages too only with ``even_cows``."""
    details = zap_details(even_cows=bool(even_cows))
    first_index = start
    last_index = (start + nr - 1) & ((1 << 64) - 1)
    if last_index < first_index:
        last_index = (1 << 64) - 1
    unmap_mapping_range_tree(k, mapping, first_index, last_index, details)


def unmap_mapping_range(k, mapping, holebegin: int, holelen: int, even_cows: int):
    """unmap_mapping_range(): unmap the mmaps of file bytes [holebegin, +holelen)
    (rounded out to pages; holelen 0: to the end of the file). even_cows is 1 when
    truncating (private COWed copies go too), 0 when invalidating or punching a hole
    (private data stays)."""
    hba = holebegin >> 12
    hlen = (holelen + 4095) >> 12
    holeend = (holebegin + holelen + 4095) >> 12
    if holeend >> 64:                                  # overflow
        hlen = (1 << 64) - hba
    unmap_mapping_pages(k, mapping, hba, hlen, even_cows)


def update_hiwater_rss(mm):
    """update_hiwater_rss(): remember the peak RSS (VmHWM)."""
    rss = mm.get_mm_rss()
    if mm.hiwater_rss < rss:
        mm.hiwater_rss = rss


# --- freeing page tables (free_pgtables / free_pgd_range) ----------------------------
def free_pte_range(tlb, pmdp: int, addr: int):
    """free_pte_range(): clear the PMD and free its PTE table through the gather."""
    mm = tlb.mm
    pool = mm.kernel.ptpool.mv
    token = (pool[pmdp] & _PFN) >> 12
    pmd_clear(mm, pmdp)
    pte_free_tlb(tlb, token, addr)
    mm.pgtables_bytes -= 4096                          # mm_dec_nr_ptes


def _addr_end(addr: int, end: int, size: int) -> int:
    """p?d_addr_end(): the next table boundary after addr, or end if that comes first."""
    b = (addr + size) & ~(size - 1) & _U64
    return b if ((b - 1) & _U64) < ((end - 1) & _U64) else end


def _past(end: int, ceiling: int) -> bool:
    """``end - 1 > ceiling - 1`` in unsigned long arithmetic."""
    return ((end - 1) & _U64) > ((ceiling - 1) & _U64)


def free_pmd_range(tlb, pudp: int, addr: int, end: int, floor: int, ceiling: int):
    """free_pmd_range(): free the PTE tables below, then the PMD table if it maps only
    [floor, ceiling)."""
    mm = tlb.mm
    pool = mm.kernel.ptpool.mv
    start = addr
    pmdp = pmd_offset(mm, pudp, addr)
    # Each PMD of [addr, end) in turn; the none ones (most, after an unmap) found at
    # once: the PTE tables are at these indexes (pmd_none_or_clear_bad: a huge PMD is
    # not a table).
    import numpy as np
    cnt = ((((end - 1) & _U64) >> 21) - (addr >> 21)) + 1
    ents = mm.kernel.ptpool.arr[pmdp:pmdp + cnt]
    for i in np.flatnonzero((ents != 0) & ((ents & _PSE) == 0)).tolist():
        free_pte_range(tlb, pmdp + i, addr if i == 0 else (addr & PMD_MASK) + (i << 21))
    start &= PUD_MASK
    if start < floor:
        return
    if ceiling:
        ceiling &= PUD_MASK
        if not ceiling:
            return
    if _past(end, ceiling):
        return
    tbl = (pool[pudp] & _PFN) >> 12
    pud_clear(mm, pudp)
    pmd_free_tlb(tlb, tbl, start)
    mm.pgtables_bytes -= 4096                          # mm_dec_nr_pmds


def free_pud_range(tlb, p4dp: int, addr: int, end: int, floor: int, ceiling: int):
    """free_pud_range(): free the PMD tables below, then the PUD table if unused."""
    mm = tlb.mm
    k = mm.kernel
    pool = k.ptpool.mv
    start = addr
    pudp = pud_offset(mm, p4dp, addr)
    while True:
        nxt = _addr_end(addr, end, T.PUD_SIZE)
        if pool[pudp] and not pool[pudp] & _PSE:
            free_pmd_range(tlb, pudp, addr, nxt, floor, ceiling)
        addr = nxt
        pudp += 1
        if addr == end:
            break
    mask = ~((1 << 39) - 1)                            # P4D_MASK (== PGDIR_MASK on 4-level)
    start &= mask
    if start < floor:
        return
    if ceiling:
        ceiling &= mask
        if not ceiling:
            return
    if _past(end, ceiling):
        return
    tbl = (pool[p4dp] & _PFN) >> 12
    p4d_clear(mm, p4dp)
    pud_free_tlb(tlb, tbl, start)
    mm.pgtables_bytes -= 4096                          # mm_dec_nr_puds


def free_p4d_range(tlb, pgdp: int, addr: int, end: int, floor: int, ceiling: int):
    """free_p4d_range(): folded into free_pud_range on 4-level paging."""
    mm = tlb.mm
    k = mm.kernel
    if not k.la57:
        return free_pud_range(tlb, pgdp, addr, end, floor, ceiling)
    pool = k.ptpool.mv
    start = addr
    p4dp = p4d_offset(mm, pgdp, addr)
    while True:
        nxt = _addr_end(addr, end, 1 << 39)
        if pool[p4dp]:
            free_pud_range(tlb, p4dp, addr, nxt, floor, ceiling)
        addr = nxt
        p4dp += 1
        if addr == end:
            break
    mask = ~((1 << 48) - 1)
    start &= mask
    if start < floor:
        return
    if ceiling:
        ceiling &= mask
        if not ceiling:
            return
    if _past(end, ceiling):
        return
    tbl = (pool[pgdp] & _PFN) >> 12
    pgd_clear(mm, pgdp)
    p4d_free_tlb(tlb, tbl, start)


def free_pgd_range(tlb, addr: int, end: int, floor: int, ceiling: int):
    """free_pgd_range(): free the tables that map only [floor, ceiling) within the range."""
    mm = tlb.mm
    k = mm.kernel
    pool = k.ptpool.mv
    addr &= PMD_MASK
    if addr < floor:
        addr += PMD_SIZE
        if not addr:
            return
    if ceiling:
        ceiling &= PMD_MASK
        if not ceiling:
            return
    if _past(end, ceiling):
        end -= PMD_SIZE
    if ((addr) & _U64) > ((end - 1) & _U64):
        return
    shift = k.pgdir_shift
    pgdp = pgd_offset(mm, addr)
    while True:
        nxt = _addr_end(addr, end, 1 << shift)
        if pool[pgdp]:
            free_p4d_range(tlb, pgdp, addr, nxt, floor, ceiling)
        addr = nxt
        pgdp += 1
        if addr == end:
            break


def free_pgtables(tlb, vmas, floor: int, ceiling: int):
    """free_pgtables(): unlink the VMAs' anon_vmas and free their page tables,
    coalescing VMAs closer than PMD_SIZE into one free_pgd_range() call."""
    from vmsim.mm.rmap import unlink_anon_vmas
    k = tlb.mm.kernel
    i = 0
    n = len(vmas)
    while i < n:
        vma = vmas[i]
        addr = vma.vm_start
        unlink_anon_vmas(k, vma)
        while i + 1 < n and vmas[i + 1].vm_start <= vma.vm_end + PMD_SIZE and \
                not vmas[i + 1].vm_flags & VM_HUGETLB:
            i += 1
            vma = vmas[i]
            unlink_anon_vmas(k, vma)
        free_pgd_range(tlb, addr, vma.vm_end, floor,
                       vmas[i + 1].vm_start if i + 1 < n else ceiling)
        i += 1


# --- fork: copying page tables (copy_page_range and below) ---------------------------
def is_cow_mapping(flags: int) -> bool:
    """is_cow_mapping(): private and may be written (VM_MAYWRITE without VM_SHARED)."""
    return (flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE


def vma_needs_copy(dst_vma, src_vma) -> bool:
    """vma_needs_copy(): copy the page tables at fork only where a fault could not
    rebuild them: VM_COPY_ON_FORK (VM_PFNMAP / VM_MIXEDMAP, uffd-wp, VM_MAYBE_GUARD)
    or a VMA with an anon_vma. Untouched anonymous VMAs, shared memory and file
    mappings are faulted in by the child.

    VM_COPY_ON_FORK is not in 6.18.2: upstream ab04b530e7e8 "mm: introduce
    copy-on-fork VMAs and make VM_MAYBE_GUARD one", in the 6.18.y sticky-flags
    backport present in 6.18.44 (see mm_types VM_MAYBE_GUARD)."""
    # VM_COPY_ON_FORK is tested on the destination: uffd-wp may be set only there.
    if dst_vma.vm_flags & (VM_PFNMAP | VM_MIXEDMAP | VM_UFFD_WP | VM_MAYBE_GUARD):
        return True
    if src_vma.anon_vma is not None:
        return True
    return False


def __copy_present_ptes(dst_vma, src_vma, dst_ptep: int, src_ptep: int, pte: int,
                        addr: int, nr: int):
    """__copy_present_ptes(): write-protect a COW mapping's writable PTE in both
    processes, clean shared PTEs in the child, make the child's entry old."""
    src_mm = src_vma.vm_mm
    flags = src_vma.vm_flags
    if is_cow_mapping(flags) and pte & _RW:
        # wrprotect_ptes(); copy_pte_range records the downgrade for its whole range,
        # and dup_mmap flushes the parent.
        wrprotect_ptes(src_mm, addr, src_ptep, nr)
        pte &= ~_RW                                            # pte_wrprotect()
    if flags & VM_SHARED:
        pte &= ~T._PAGE_DIRTY                                  # pte_mkclean()
    pte &= _MKOLD_NO_UFFD_WP                                   # pte_mkold(), !userfaultfd_wp(dst_vma)
    set_ptes(dst_vma.vm_mm, addr, dst_ptep, pte, nr)


def copy_present_ptes(dst_vma, src_vma, dst_ptep: int, src_ptep: int, pte: int,
                      addr: int, max_nr: int, rss) -> int:
    """copy_present_ptes(): share one present page with the child; return pages done.

    Order-0 only (large folios are not built yet, so the batching branch never runs).
    Anon pages: folio_try_dup_anon_rmap_pte clears AnonExclusive and raises the
    mapcount (no pinned pages exist, so copy_present_page is never needed); page-cache
    pages: folio_dup_file_rmap_pte. The zero page and pfnmaps have no struct page to
    account and are copied as they are.
    """
    page = vm_normal_page(src_vma, addr, pte)
    if page >= 0:
        k = src_vma.vm_mm.kernel
        folio = _page_folio(k, page)                   # a page of a PTE-mapped THP
        folio_get(k, folio)
        if k.mem.flags[folio] & PG_anon:
            if folio_try_dup_anon_rmap_pte(k, page, dst_vma, src_vma):
                raise NotImplementedError("copy_present_page: pinned anon pages are not modelled")
            rss[MM_ANONPAGES] += 1
        else:
            folio_dup_file_rmap_pte(k, page, dst_vma)
            rss[mm_counter_file(k, page)] += 1
    __copy_present_ptes(dst_vma, src_vma, dst_ptep, src_ptep, pte, addr, 1)
    return 1


def copy_nonpresent_pte(dst_vma, src_vma, dst_ptep: int, src_ptep: int, pte: int, addr: int):
    """copy_nonpresent_pte() for PTE markers: the child gets the guard (and poison)
    bits of the marker (copy_pte_marker; uffd-wp is not modelled)."""
    from vmsim.mm.swapops import (is_pte_marker_entry, pte_marker_get, make_pte_marker,
                                  PTE_MARKER_POISONED, PTE_MARKER_GUARD)
    if not is_pte_marker_entry(pte):
        raise NotImplementedError("copy_nonpresent_pte: swap entries are not modelled")
    marker = pte_marker_get(pte) & (PTE_MARKER_POISONED | PTE_MARKER_GUARD)
    if marker:
        set_pte_at(dst_vma.vm_mm, addr, dst_ptep, make_pte_marker(marker))


def copy_pte_range(dst_vma, src_vma, dst_pmdp: int, src_pmdp: int, addr: int, end: int) -> int:
    """copy_pte_range(): allocate the child's PTE table and copy each present entry;
    add the child's RSS (add_mm_rss_vec). 0 or -ENOMEM."""
    dst_mm = dst_vma.vm_mm
    src_mm = src_vma.vm_mm
    pool = dst_mm.kernel.ptpool.mv
    if pte_alloc(dst_mm, dst_pmdp):                    # pte_alloc_map_lock()
        return -12
    dst_ptep = pte_offset_map(dst_mm, dst_pmdp, addr)
    src_ptep = pte_offset_map(src_mm, src_pmdp, addr)
    if is_cow_mapping(src_vma.vm_flags):
        # __copy_present_ptes write-protects the parent's writable PTEs of this range:
        # one record for the range (a superset) instead of one per PTE.
        _note_downgrade(src_mm, addr, end)
    rss = [0] * 4
    batch = _pte_batch._usable(src_vma, False)  # vmsim's compiled runs of order-0 anon / zero PTEs
    if batch:
        cow, shared = is_cow_mapping(src_vma.vm_flags), bool(src_vma.vm_flags & VM_SHARED)
        k = dst_mm.kernel
    while addr != end:
        if batch:
            done, status, n = _pte_batch._copy_run(k, dst_ptep, src_ptep, addr, end, cow, shared)
            rss[MM_ANONPAGES] += n
            dst_ptep += done
            src_ptep += done
            addr += done << 12
            if addr == end:
                break
            batch = done > 0        # a run of other entries: the Python code takes it
        ptent = pool[src_ptep]
        if ptent and not ptent & (_P | _PROTNONE):
            copy_nonpresent_pte(dst_vma, src_vma, dst_ptep, src_ptep, ptent, addr)
            dst_ptep += 1
            src_ptep += 1
            addr += 4096
        elif ptent:
            nr = copy_present_ptes(dst_vma, src_vma, dst_ptep, src_ptep, ptent, addr,
                                   (end - addr) >> 12, rss)
            dst_ptep += nr
            src_ptep += nr
            addr += nr << 12
        else:
            dst_ptep += 1
            src_ptep += 1
            addr += 4096
    stat = dst_mm.rss_stat
    for i, n in enumerate(rss):
        stat[i] += n
    return 0


def copy_pmd_range(dst_vma, src_vma, dst_pudp: int, src_pudp: int, addr: int, end: int) -> int:
    """copy_pmd_range(): allocate the child's PMD table; copy each populated PMD."""
    dst_mm = dst_vma.vm_mm
    src_mm = src_vma.vm_mm
    pool = dst_mm.kernel.ptpool.mv
    dst_pmdp = pmd_alloc(dst_mm, dst_pudp, addr)
    if dst_pmdp < 0:
        return -12
    src_pmdp = pmd_offset(src_mm, src_pudp, addr)
    while True:
        nxt = _addr_end(addr, end, PMD_SIZE)
        e = pool[src_pmdp]
        if e & _PSE and _thp_batch()._usable(dst_vma):
            # vmsim's compiled run of this table's anonymous THP PMDs (mm/_thp_batch.py).
            done = _thp_batch()._copy_huge_pmds(dst_vma, src_vma, dst_pmdp, src_pmdp, addr, end)
            if done:
                addr = min((addr & PMD_MASK) + done * PMD_SIZE, end)
                dst_pmdp += done
                src_pmdp += done
                if addr == end:
                    return 0
                continue
        if e & _PSE:
            # A huge PMD: copy_huge_pmd() shares it (-EAGAIN after a split: copy PTEs).
            from vmsim.mm.huge_memory import copy_huge_pmd
            err = copy_huge_pmd(dst_mm, src_mm, dst_pmdp, src_pmdp, addr, dst_vma, src_vma)
            if err == -12:
                return -12
            if not err:
                addr = nxt
                dst_pmdp += 1
                src_pmdp += 1
                if addr == end:
                    return 0
                continue
            e = pool[src_pmdp]
        if e and copy_pte_range(dst_vma, src_vma, dst_pmdp, src_pmdp, addr, nxt):
            return -12
        addr = nxt
        dst_pmdp += 1
        src_pmdp += 1
        if addr == end:
            return 0


def copy_pud_range(dst_vma, src_vma, dst_p4dp: int, src_p4dp: int, addr: int, end: int) -> int:
    """copy_pud_range(): allocate the child's PUD table; copy each populated PUD."""
    dst_mm = dst_vma.vm_mm
    src_mm = src_vma.vm_mm
    pool = dst_mm.kernel.ptpool.mv
    dst_pudp = pud_alloc(dst_mm, dst_p4dp, addr)
    if dst_pudp < 0:
        return -12
    src_pudp = pud_offset(src_mm, src_p4dp, addr)
    while True:
        nxt = _addr_end(addr, end, T.PUD_SIZE)
        e = pool[src_pudp]
        if e & _PSE:
            raise NotImplementedError("fork of a huge PUD mapping (THP) is not modelled")
        if e and copy_pmd_range(dst_vma, src_vma, dst_pudp, src_pudp, addr, nxt):
            return -12
        addr = nxt
        dst_pudp += 1
        src_pudp += 1
        if addr == end:
            return 0


def copy_p4d_range(dst_vma, src_vma, dst_pgdp: int, src_pgdp: int, addr: int, end: int) -> int:
    """copy_p4d_range(): the P4D level (folded into the PGD with 4-level paging)."""
    dst_mm = dst_vma.vm_mm
    src_mm = src_vma.vm_mm
    k = dst_mm.kernel
    if not k.la57:
        return copy_pud_range(dst_vma, src_vma, dst_pgdp, src_pgdp, addr, end)
    pool = k.ptpool.mv
    dst_p4dp = p4d_alloc(dst_mm, dst_pgdp, addr)
    if dst_p4dp < 0:
        return -12
    src_p4dp = p4d_offset(src_mm, src_pgdp, addr)
    while True:
        nxt = _addr_end(addr, end, 1 << 39)
        if pool[src_p4dp] and copy_pud_range(dst_vma, src_vma, dst_p4dp, src_p4dp, addr, nxt):
            return -12
        addr = nxt
        dst_p4dp += 1
        src_p4dp += 1
        if addr == end:
            return 0


def copy_page_range(dst_vma, src_vma) -> int:
    """copy_page_range(): copy the parent's page tables for one VMA at fork.

    Skipped when vma_needs_copy() says the child can fault the range in. For a COW
    mapping the parent's writable PTEs are write-protected between
    mmu_notifier_invalidate_range_start/end(MMU_NOTIFY_PROTECTION_PAGE) on the
    parent's mm (the write_protect_seq bump is for GUP-fast, not modelled); the TLB
    flush for the parent is dup_mmap's flush_tlb_mm(oldmm). 0 or -ENOMEM.
    """
    addr = src_vma.vm_start
    end = src_vma.vm_end
    src_mm = src_vma.vm_mm
    dst_mm = dst_vma.vm_mm
    k = src_mm.kernel
    if not vma_needs_copy(dst_vma, src_vma):
        return 0
    if src_vma.vm_flags & VM_HUGETLB:
        from vmsim.mm.hugetlb import copy_hugetlb_page_range
        return copy_hugetlb_page_range(dst_mm, src_mm, dst_vma, src_vma)
    is_cow = is_cow_mapping(src_vma.vm_flags)
    if is_cow:
        k.mmu_notifier_invalidate_range_start(src_mm, "protection_page", addr, end)
    ret = 0
    pool = k.ptpool.mv
    shift = k.pgdir_shift
    dst_pgdp = pgd_offset(dst_mm, addr)
    src_pgdp = pgd_offset(src_mm, addr)
    while True:
        nxt = _addr_end(addr, end, 1 << shift)
        if pool[src_pgdp] and copy_p4d_range(dst_vma, src_vma, dst_pgdp, src_pgdp, addr, nxt):
            ret = -12
            break
        addr = nxt
        dst_pgdp += 1
        src_pgdp += 1
        if addr == end:
            break
    if is_cow:
        k.mmu_notifier_invalidate_range_end(src_mm, "protection_page", src_vma.vm_start, end)
    return ret
