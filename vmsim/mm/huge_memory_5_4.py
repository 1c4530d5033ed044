"""The THP copy-on-write of Linux 5.4 (mm/huge_memory.c before 5.8), for the 5.4 profile.

Until "thp: change CoW semantics for anon-THP" (Kirill A. Shutemov, merged for 5.8)
a write fault on a write-protected anonymous huge PMD kept the 2 MiB whole:

* do_huge_pmd_wp_page(): reuse the THP when reuse_swap_page() says this is its only
  mapping (a mapcount rule: compound mapcount plus every subpage's, not
  PageAnonExclusive and the refcount); otherwise allocate a new THP
  (alloc_hugepage_vma with alloc_hugepage_direct_gfpmask) and copy all 512 pages
  into it (copy_user_huge_page); a write to the huge zero PMD jumps straight to that
  allocation (``goto alloc``) and clears the new THP (clear_huge_page);
* when no THP can be allocated: the huge zero PMD is split (split_huge_pmd, then the
  4 KiB fault), any other THP is copied into 512 small pages by
  do_huge_pmd_wp_page_fallback(), splitting only if those cannot be allocated
  either; THP_FAULT_FALLBACK counts both.

The source lines are the ones the 5.8 patch removes (its diff shows the 5.7 text,
which 5.4 shares for these functions). Everything else (fault, split, zap, fork,
khugepaged) runs the 6.18 code: the profile changes only what the model implements
differently (see vmsim/profiles/linux-5.4.toml).
"""
from vmsim.arch.x86 import pgtable_types as T
from vmsim.mm import vmstat
from vmsim.mm.mm_types import VM_FAULT_FALLBACK, VM_FAULT_OOM, MM_ANONPAGES

VM_FAULT_WRITE = 0x0008
HPAGE_PMD_NR = 512
HPAGE_PMD_SIZE = 1 << 21


def reuse_swap_page(k, page: int) -> bool:
    """reuse_swap_page(page, NULL) for a THP without swap: the total mapcount
    (page_trans_huge_map_swapcount: compound mapcount + the subpages') is 1."""
    mem = k.mem
    return mem.mapping[page + 1] == 1


def do_huge_pmd_wp_page_fallback(vmf, orig_pmd: int, page: int) -> int:
    """do_huge_pmd_wp_page_fallback(): copy the THP into 512 new small pages, map them
    with a PTE table (the deposited one), and drop the PMD mapping of the THP."""
    from vmsim.mm.page_alloc import GFP_HIGHUSER_MOVABLE
    from vmsim.mm.rmap import folio_add_new_anon_rmap, RMAP_EXCLUSIVE
    from vmsim.mm.swap import folio_add_lru_vma, folio_put
    from vmsim.mm import huge_memory as H
    from vmsim.arch.x86.pgtable import pmd_populate, set_pte_at
    vma = vmf.vma
    mm = vma.vm_mm
    k = mm.kernel
    haddr = vmf.address & H.HPAGE_PMD_MASK
    pages = []
    for i in range(HPAGE_PMD_NR):
        p = k.page_alloc.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, k._current_cpu())
        if p < 0:
            for q in pages:
                folio_put(k, q)
            return VM_FAULT_OOM
        pages.append(p)
    for i, p in enumerate(pages):
        k.page_data.copy(p, page + i)                       # copy_user_highpage()
    k.mmu_notifier_invalidate_range_start(mm, "clear", haddr, haddr + HPAGE_PMD_SIZE)
    H.pmdp_huge_clear_flush(vma, haddr, vmf.pmd)
    pgtable = H.pgtable_trans_huge_withdraw(mm, vmf.pmd)
    base = k.mem.private[pgtable] * 512
    for i, p in enumerate(pages):
        entry = (p << 12) | vma.vm_page_prot | T._PAGE_DIRTY | T._PAGE_SOFT_DIRTY
        if vma.vm_flags & 0x2:                              # maybe_mkwrite(): VM_WRITE
            entry |= T._PAGE_RW
        folio_add_new_anon_rmap(k, p, vma, haddr + (i << 12), RMAP_EXCLUSIVE)
        folio_add_lru_vma(k, p, vma, k._current_cpu())
        set_pte_at(mm, haddr + (i << 12), base + i, entry)
    pmd_populate(mm, vmf.pmd, pgtable)
    H.folio_remove_rmap_pmd(k, page, vma)                   # page_remove_rmap(page, true)
    k.mmu_notifier_invalidate_range_end(mm, "clear", haddr, haddr + HPAGE_PMD_SIZE)
    folio_put(k, page)
    return VM_FAULT_WRITE


def do_huge_pmd_wp_page_5_4(vmf) -> int:
    """do_huge_pmd_wp_page() as 5.4 has it: reuse, else a new THP (copy or clear),
    else the 512-page fallback (a THP) or a split (the huge zero PMD)."""
    from vmsim.mm import huge_memory as H
    from vmsim.mm.swap import folio_add_lru_vma, folio_put
    vma = vmf.vma
    mm = vma.vm_mm
    k = mm.kernel
    haddr = vmf.address & H.HPAGE_PMD_MASK
    orig_pmd = vmf.orig_pmd
    page = -1
    if not H.is_huge_zero_pmd(k, orig_pmd):
        page = (orig_pmd & T.PMD_PFN_MASK_2M) >> 12
        if reuse_swap_page(k, page):
            entry = orig_pmd | T._PAGE_ACCESSED | T._PAGE_DIRTY | T._PAGE_SOFT_DIRTY
            entry = H.maybe_pmd_mkwrite(entry, vma)
            H.pmdp_set_access_flags(vma, haddr, vmf.pmd, entry, 1)
            return VM_FAULT_WRITE
        k.mem.refcount[page] += 1                           # get_page()
    # alloc: __transparent_hugepage_enabled(vma) && !transparent_hugepage_debug_cow()
    new_page = -1
    if H.thp_vma_allowable_order(vma, vma.vm_flags, H.TVA_PAGEFAULT, H.PMD_ORDER):
        new_page = H._alloc_large_folio(k, H.vma_thp_gfp_mask(vma), H.PMD_ORDER)
    if new_page < 0:
        if page < 0:
            H.__split_huge_pmd(vma, vmf.pmd, vmf.address, False)
            ret = VM_FAULT_FALLBACK
        else:
            ret = do_huge_pmd_wp_page_fallback(vmf, orig_pmd, page)
            if ret & VM_FAULT_OOM:
                H.__split_huge_pmd(vma, vmf.pmd, vmf.address, False)
                ret |= VM_FAULT_FALLBACK
            folio_put(k, page)
        k.vmstat[vmstat.THP_FAULT_FALLBACK] += 1
        return ret
    k.vmstat[vmstat.THP_FAULT_ALLOC] += 1
    if page < 0:
        H.folio_zero_user(k, new_page, HPAGE_PMD_NR)         # clear_huge_page()
    else:
        for i in range(HPAGE_PMD_NR):                       # copy_user_huge_page()
            k.page_data.copy(new_page + i, page + i)
    k.mmu_notifier_invalidate_range_start(mm, "clear", haddr, haddr + HPAGE_PMD_SIZE)
    if page >= 0:
        folio_put(k, page)
    entry = H.folio_mk_pmd(new_page, vma.vm_page_prot) | T._PAGE_DIRTY | T._PAGE_SOFT_DIRTY
    entry = H.maybe_pmd_mkwrite(entry, vma)
    H.pmdp_huge_clear_flush(vma, haddr, vmf.pmd)
    H.folio_add_new_anon_rmap_pmd(k, new_page, vma, haddr, True)
    folio_add_lru_vma(k, new_page, vma, k._current_cpu())
    H.set_pmd_at(mm, haddr, vmf.pmd, entry)
    if page < 0:
        mm.rss_stat[MM_ANONPAGES] += HPAGE_PMD_NR
    else:
        H.folio_remove_rmap_pmd(k, page, vma)                # page_remove_rmap(page, true)
        folio_put(k, page)
    H.deferred_split_folio(k, new_page, False)              # prep_transhuge_page's list
    k.mmu_notifier_invalidate_range_end(mm, "clear", haddr, haddr + HPAGE_PMD_SIZE)
    return VM_FAULT_WRITE
