"""vmsim-only: compiled runs of a PMD table's anonymous THP PMDs for fork
(copy_pmd_range -> copy_huge_pmd) and unmap / exit (zap_pmd_range -> zap_huge_pmd).

The kernel takes these one PMD at a time; one run here walks the PMDs of one table
and takes, PMD by PMD, exactly copy_huge_pmd's / zap_huge_pmd's decisions (as vmsim's
Python versions in mm/huge_memory.py take them) for a PMD-mapped anonymous THP,
skipping none PMDs, and stops at anything else (a PTE table, the huge zero PMD, a
folio the last unmap would queue for deferred split, a full mmu_gather, no
page-table page left on this CPU's per-CPU list) for the Python code. The runs
deposit and withdraw the page-table pages themselves (pgtable_trans_huge_deposit /
withdraw on the PMD table's list in mem_map, mm/pgtable_generic.py) and set the new
tables' pool rows; the Python side then does what stays Python bookkeeping, in the
same order: the table pool's row lists, the allocator's commit and the tables'
free, the RSS and page-table counters, _note_downgrade records, the gather's pages.
tests/test_thp_batch.py compares the state with the Python path's.

With a tracer installed (or the runs switched off) the Python path runs; with
VMSIM_NUMBA=0 these loops run as plain Python over memoryviews.
"""
import numpy as np

from vmsim.arch.x86 import pgtable_types as T
from vmsim.mm.page_flags import PG_anon, PG_head, PG_anon_exclusive, PGTY_table

_P = T._PAGE_PRESENT
_PSE = T._PAGE_PSE
_RW = T._PAGE_RW
_PFN2M = T.PTE_PFN_MASK & ~((1 << 21) - 1)
_DST_MASK = ~(_RW | T._PAGE_UFFD_WP | T._PAGE_ACCESSED)
_NOT_RW = ~_RW
_NOT_EXCL = 0xFFFFFFFF ^ PG_anon_exclusive
HPAGE_PMD_NR = 512
MMU_GATHER_BUNDLE = 8
MAX_GATHER_BATCH = (4096 - 16) // 8
MAX_GATHER_BATCH_COUNT = 10000 // MAX_GATHER_BATCH
_DONE, _HANDBACK, _GATHER_FULL = 0, 1, 2


def _copy_huge_pmd_run(pool, dst_pmdp, src_pmdp, n, mflags, refcount, lru_next, lru_prev,
                       mapping, private, zero_pfn, pcp, tables, rows, dst_ptdesc, wrprot):
    """copy_huge_pmd() for up to n PMDs from src_pmdp: each PMD-mapped anonymous THP
    takes the next page-table page off the per-CPU list from ``pcp`` on (pte_alloc_one:
    __rmqueue_pcplist's list_first_entry, noted in ``tables``; its refcount,
    PGTY_table and pool row, the next of ``rows``), folio_get,
    folio_try_dup_anon_rmap_pmd, pgtable_trans_huge_deposit on the child's PMD table
    ``dst_ptdesc`` (mm/pgtable_generic.py), pmdp_set_wrprotect (``wrprot`` notes which
    PMDs lost RW) and set_pmd_at of the old, write-protected entry. None PMDs are
    skipped. Returns (PMDs done, status, tables used, the list's next PFN)."""
    t = 0
    for j in range(n):
        pmd = pool[src_pmdp + j]
        if pmd == 0:
            continue
        if not pmd & _PSE:
            return j, _HANDBACK, t, pcp
        folio = (pmd & _PFN2M) >> 12
        if (pmd & _P and folio == zero_pfn) or pcp == 0 or t == len(rows):
            return j, _HANDBACK, t, pcp
        f = mflags[folio]
        if not f & PG_anon or not f & PG_head:
            return j, _HANDBACK, t, pcp
        table = pcp                                        # pagetable_alloc()
        pcp = lru_next[table]
        tables[t] = table
        refcount[table] = 1
        mflags[table] = PGTY_table
        private[table] = rows[t]
        t += 1
        refcount[folio] += 1                               # folio_get()
        mflags[folio] = f & _NOT_EXCL                      # folio_try_dup_anon_rmap_pmd()
        lru_prev[folio + 1] += 1
        mapping[folio + 1] += 1
        head = lru_prev[dst_ptdesc]                        # pgtable_trans_huge_deposit()
        if head == 0:
            lru_next[table] = table
            lru_prev[table] = table
        else:
            after = lru_next[head]
            lru_prev[after] = table
            lru_next[table] = after
            lru_prev[table] = head
            lru_next[head] = table
        lru_prev[dst_ptdesc] = table
        wrprot[j] = 0
        if pmd & _RW:                                      # pmdp_set_wrprotect()
            pool[src_pmdp + j] = pmd & _NOT_RW
            wrprot[j] = 1
        pool[dst_pmdp + j] = pmd & _DST_MASK               # pmd_wrprotect, pmd_mkold
    return n, _DONE, t, pcp


def _zap_huge_pmd_run(pool, pmdp, n, mflags, lru_next, lru_prev, mapping, index, zero_pfn,
                      ptdesc, done_idx, pages, tables, active, active_nr, batch_count,
                      delayed_rmap):
    """zap_huge_pmd() for up to n PMDs from pmdp, each wholly in the range: clear it,
    folio_remove_rmap_pmd (the last entire mapping of a fully PMD-mapped folio),
    pgtable_trans_huge_withdraw from the PMD table ``ptdesc`` (into ``tables``, for
    zap_deposited_table's free), gather the folio (__tlb_remove_folio_pages). None
    PMDs are skipped. Returns (PMDs done, status, PMDs zapped (their indexes in
    done_idx, folios in ``pages``), entire mappings that went (NR_ANON_THPS), the
    gather's active, active_nr, batch_count)."""
    z = 0
    unmapped = 0
    for j in range(n):
        pmd = pool[pmdp + j]
        if pmd == 0:
            continue
        if not pmd & _PSE:
            return (j, _HANDBACK, z, unmapped, active, active_nr, batch_count)
        folio = (pmd & _PFN2M) >> 12
        if pmd & _P and folio == zero_pfn:
            return (j, _HANDBACK, z, unmapped, active, active_nr, batch_count)
        em = lru_prev[folio + 1] - 1
        pgtable = lru_prev[ptdesc]
        if (em < 0 or (em == 0 and index[folio + 1] != 0) or not mflags[folio] & PG_anon
                or pgtable == 0):
            # An underflow or nothing deposited (reported by the Python path), or a
            # partly PTE-mapped folio the last unmap queues for deferred split.
            return (j, _HANDBACK, z, unmapped, active, active_nr, batch_count)
        pool[pmdp + j] = 0                                 # pmdp_huge_get_and_clear_full()
        lru_prev[folio + 1] = em                           # folio_remove_rmap_pmd()
        mapping[folio + 1] -= 1
        if em == 0:
            unmapped += 1
        first = lru_next[pgtable]                          # pgtable_trans_huge_withdraw()
        if first == pgtable:
            lru_prev[ptdesc] = 0
        else:
            lru_prev[ptdesc] = first
            before = lru_prev[pgtable]
            lru_next[before] = first
            lru_prev[first] = before
            lru_next[pgtable] = 0
            lru_prev[pgtable] = 0
        tables[z] = pgtable
        done_idx[z] = j
        pages[z] = folio
        z += 1
        active_nr += 1                                     # __tlb_remove_folio_pages()
        batch_max = MMU_GATHER_BUNDLE if active == 0 else MAX_GATHER_BATCH
        if active_nr >= batch_max - 1:
            # tlb_next_batch()
            if delayed_rmap and active != 0:
                return (j + 1, _GATHER_FULL, z, unmapped, active, active_nr, batch_count)
            if active < batch_count:
                active += 1
                active_nr = 0
            elif batch_count == MAX_GATHER_BATCH_COUNT:
                return (j + 1, _GATHER_FULL, z, unmapped, active, active_nr, batch_count)
            else:
                batch_count += 1
                active += 1
                active_nr = 0
    return (n, _DONE, z, unmapped, active, active_nr, batch_count)


_RUNS = {"copy": _copy_huge_pmd_run, "zap": _zap_huge_pmd_run}
_impl = {}


def _get(name: str):
    """The run ``name``: compiled on first use, or the plain Python function."""
    from vmsim.mm import _buddy
    compiled = _buddy._compiled()
    fn = _impl.get((name, compiled))
    if fn is None:
        fn = _RUNS[name]
        if compiled:
            from vmsim._jitcache import _njit
            fn = _njit(fn, nogil=True)
        _impl[name, compiled] = fn
    return fn


def _usable(vma) -> bool:
    """The runs apply: not traced, switched on, an anonymous VMA whose zap needs no
    munlock (VM_LOCKED)."""
    from vmsim.mm import _pte_batch
    from vmsim.mm.mm_types import VM_LOCKED
    if vma.vm_ops is not None or vma.vm_flags & VM_LOCKED:
        return False
    return _pte_batch._state["enabled"] and not _pte_batch._tracing()


# The work of one PMD in the plain-Python runs and their bookkeeping, in accesses of
# the plain-Python walk (vmsim._jitcache's unit): about 5 us against 2.3 us.
_PMD_WORK = 2


def _count(n: int):
    """``n`` PMDs went through the plain-Python runs: their work counts towards
    loading numba (vmsim._jitcache; the next run is compiled once it pays)."""
    from vmsim._jitcache import _worth_compiling
    _worth_compiling(_PMD_WORK * n)


def _arrays(k):
    """The table pool and mem_map arrays the runs take: numpy arrays for the compiled
    runs, memoryviews for the plain-Python ones."""
    from vmsim.mm import _buddy
    mem = k.mem
    if _buddy._compiled():
        return (k.ptpool.arr, mem.np_flags, mem.np_refcount, mem.np_lru_next, mem.np_lru_prev,
                mem.np_mapping, mem.np_index, mem.np_private)
    return (k.ptpool.mv, mem.flags, mem.refcount, mem.lru_next, mem.lru_prev, mem.mapping,
            mem.index, mem.private)


def _take_rows(pool, n: int) -> list:
    """The table-pool rows _alloc_slot() would give the next ``n`` table pages, in
    order (free rows from the end of the list, then new ones), taking none yet."""
    free = pool.free_slots
    m = min(n, len(free))
    rows = free[len(free) - m:][::-1]       # the last free row first, as _alloc_slot() pops
    grow = min(n - m, pool.max_tables - pool.used)
    return rows + list(range(pool.used, pool.used + grow))


def _commit_rows(pool, tables: list, rows: list):
    """_alloc_slot() of ``tables`` (their rows were taken from _take_rows)."""
    free, slot_pfn, share = pool.free_slots, pool.slot_pfn, pool.pt_share_count
    m = min(len(tables), len(free))
    if m:
        del free[len(free) - m:]
        for row, pfn in zip(rows[:m], tables[:m]):
            slot_pfn[row] = pfn
            share[row] = 0
    if len(tables) > m:
        slot_pfn.extend(tables[m:])
        share.extend([0] * (len(tables) - m))
        pool.used += len(tables) - m


def _copy_huge_pmds(dst_vma, src_vma, dst_pmdp: int, src_pmdp: int, addr: int,
                    end: int) -> int:
    """copy_pmd_range()'s huge PMDs from (src_pmdp, addr) on, through the run; return
    how many PMDs it took (0: the next one is for the Python code)."""
    from vmsim.mm import vmstat
    from vmsim.mm.page_alloc import GFP_PGTABLE_USER
    from vmsim.mm.mm_types import MM_ANONPAGES
    dst_mm, src_mm = dst_vma.vm_mm, src_vma.vm_mm
    k = src_mm.kernel
    n = (end - addr) >> 21
    if n <= 0 or addr & ((1 << 21) - 1):
        return 0
    cpu = k._current_cpu()
    pa = k.page_alloc
    first = pa._pcp_first_order0(GFP_PGTABLE_USER, cpu)
    if not first:
        return 0
    ptpool = k.ptpool
    # The pool rows the tables will take; the per-CPU list may hold fewer pages.
    rows = _take_rows(ptpool, n)
    pool, mflags, refcount, lru_next, lru_prev, mapping, _, private = _arrays(k)
    compiled = not isinstance(pool, memoryview)
    if compiled:
        tables = np.empty(len(rows), dtype=np.int64)
        rows_a = np.array(rows, dtype=np.int64)
        wrprot = np.zeros(n, dtype=np.int64)
    else:
        tables, rows_a, wrprot = [0] * len(rows), rows, [0] * n
    done, _status, t, rest = _get("copy")(
        pool, dst_pmdp, src_pmdp, n, mflags, refcount, lru_next, lru_prev, mapping, private,
        getattr(k, "huge_zero_pfn", -1), first, tables, rows_a, ptpool.slot_pfn[dst_pmdp >> 9],
        wrprot)
    if not compiled:
        _count(t)
    if not t:
        return done
    used = tables[:t].tolist() if compiled else tables[:t]
    # The run overwrote the taken pages' links (their deposit lists): the list head
    # moves to the page after them.
    pa._pcp_commit_order0(GFP_PGTABLE_USER, cpu, t, rest=rest)
    _commit_rows(ptpool, used, rows[:t])                  # pagetable_alloc()'s ctor
    k.vmstat[vmstat.NR_PAGE_TABLE_PAGES] += t
    dst_mm.rss_stat[MM_ANONPAGES] += HPAGE_PMD_NR * t
    dst_mm.pgtables_bytes += 4096 * t
    wr = (np.flatnonzero(wrprot[:done]).tolist() if compiled else
          [j for j in range(done) if wrprot[j]])
    k.tlb_pending.extend([(src_mm, addr + (j << 21), addr + (j << 21) + (1 << 21),
                           "pmdp_set_wrprotect") for j in wr])
    return done


def _zap_huge_pmds(tlb, vma, pmdp: int, addr: int, end: int) -> int:
    """zap_pmd_range()'s whole huge PMDs from (pmdp, addr) on, through the run; return
    how many PMDs it took (0: the next one is for the Python code)."""
    from vmsim.mm import vmstat
    from vmsim.mm.mm_types import MM_ANONPAGES
    from vmsim.mm.mmu_gather import tlb_flush_mmu
    mm = tlb.mm
    k = mm.kernel
    n = (end - addr) >> 21
    if n <= 0 or addr & ((1 << 21) - 1):
        return 0
    pool, mflags, _, lru_next, lru_prev, mapping, index, _ = _arrays(k)
    compiled = not isinstance(pool, memoryview)
    if compiled:
        done_idx = np.empty(n, dtype=np.int64)
        pages = np.empty(n, dtype=np.int64)
        tables = np.empty(n, dtype=np.int64)
    else:
        done_idx, pages, tables = [0] * n, [0] * n, [0] * n
    (done, status, z, unmapped, tlb.active, tlb.active_nr, tlb.batch_count) = _get("zap")(
        pool, pmdp, n, mflags, lru_next, lru_prev, mapping, index,
        getattr(k, "huge_zero_pfn", -1), k.ptpool.slot_pfn[pmdp >> 9], done_idx, pages,
        tables, tlb.active, tlb.active_nr, tlb.batch_count, tlb.delayed_rmap)
    if not compiled:
        _count(z)
    if not z:
        return done
    if compiled:
        idx, folios, tables = done_idx[:z].tolist(), pages[:z].tolist(), tables[:z].tolist()
    else:
        idx, folios, tables = done_idx[:z], pages[:z], tables[:z]
    k.tlb_pending.extend([(mm, addr + (j << 21), addr + (j << 21) + (1 << 21), "zap_huge_pmd")
                          for j in idx])
    if not tlb.fullmm:                                     # tlb_remove_pmd_tlb_entry()
        tlb.start = min(tlb.start, addr + (idx[0] << 21))
        tlb.end = max(tlb.end, addr + (idx[-1] << 21) + (1 << 21))
    tlb.cleared_pmds = True
    if unmapped:
        k.vmstat[vmstat.NR_ANON_PAGES] -= HPAGE_PMD_NR * unmapped
        k.vmstat[vmstat.NR_ANON_TRANSPARENT_HUGEPAGES] -= HPAGE_PMD_NR * unmapped
    # zap_deposited_table() of each: pagetable_free() -> free_frozen_pages(), as a batch.
    mem = k.mem
    tarr = np.array(tables, dtype=np.int64)
    # A deposited table is empty (the checker verifies it): its row needs no zeroing.
    k.ptpool._free_slots(mem.np_private[tarr].tolist(), empty=True)
    mem.np_private[tarr] = 0
    mem.np_flags[tarr] = 0
    mem.np_refcount[tarr] = 0
    k.vmstat[vmstat.NR_PAGE_TABLE_PAGES] -= z
    k.page_alloc.free_unref_folios(tables, [0] * z, k._current_cpu())
    mm.pgtables_bytes -= 4096 * z
    mm.rss_stat[MM_ANONPAGES] -= HPAGE_PMD_NR * z
    tlb._gathered.extend(folios)
    if status == _GATHER_FULL:
        tlb_flush_mmu(tlb)
    return done
