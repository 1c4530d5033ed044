"""vmsim-only: compiled runs of first-touch anonymous write faults.

While a user store loop (Process.touch) runs into not-present PTEs of a private
anonymous VMA one after another, the kernel takes each fault alone:
exc_page_fault -> handle_page_fault -> do_user_addr_fault -> handle_mm_fault ->
__handle_mm_fault -> handle_pte_fault -> do_pte_missing -> do_anonymous_page, which
allocates an order-0 folio from the per-CPU list (alloc_anon_folio), adds the RSS,
folio_add_new_anon_rmap, folio_add_lru (draining the lru_add batch of PAGEVEC_SIZE
= 31 folios), set_ptes, and mm_account_fault counts pgfault and min_flt; the CPU
then retries the store, setting Accessed and Dirty.

This run is vmsim's own: one call takes a stretch of such faults, each with exactly
the state changes of that Python path, and the stores between them as the MMU's
touch loop does (with PageData.write's new data row where the store needs one). It
stops -- leaving the access to the kernel-named Python path -- at anything else:
another fault kind, the end of the VMA, a missing or huge table level, a PTE not
none, the end of the per-CPU list (a refill), an lru_add drain that would free, cull
or rescue a folio, or the end of the data rows it was handed.
The caller (arch/x86/cpu.py's touch) checks once per run what the Python path would
check once per fault and cannot change during the run: the VMA (anonymous, private,
writable, with an anon_vma, not mlocked, not hugetlb or pfnmap, its protection key
allowing the write), no mTHP order enabled, no tracer or profiler installed
(so traces show every kernel function), no TLB model (Machine(tlb=...) takes the
Python path), no pending signal.

tests/test_pte_batch.py::test_fault_runs_leave_the_python_state compares the state it
leaves with the Python path's on random programs. With VMSIM_NUMBA=0 the same loop
runs as plain Python.
"""
import numpy as np

from vmsim.arch.x86 import mmu, pgtable_types as T
from vmsim.arch.x86.mmu import translate
from vmsim.arch.x86.mm.fault import access_error
from vmsim.arch.x86.mm.tlb import _flush_tlb_pages
from vmsim.arch.x86.pgtable_types import X86_PF_USER, X86_PF_WRITE, X86_PF_PROT
from vmsim.mm import vmstat
from vmsim.mm._pte_batch import _tracing
from vmsim.mm.page_data import _store
from vmsim.mm.memory import _any_mthp_enabled, _GFP_ANON_ZEROED, _GFP_ANON_COPY
from vmsim.mm.mm_types import (VM_SHARED, VM_MAYSHARE, VM_WRITE, VM_MAYWRITE, VM_HUGETLB,
                               VM_LOCKED, VM_PFNMAP, VM_MIXEDMAP, VM_DROPPABLE, MM_ANONPAGES)
from vmsim.mm.swap import _LRU_STAT, _ZONE_LRU_STAT
from vmsim.mm.page_flags import (PG_anon, PG_anon_exclusive, PG_swapbacked, PG_lru,
                                 PG_active, PG_head, PG_tail, PG_mlocked, PG_unevictable,
                                 PGTY_hugetlb)

PAGEVEC_SIZE = 31
_ERR_PROT = 1
_ERR_WRITE = 2
_P = 1
_RW = 2
_A = 0x20
_PS = 0x80
_SPECIAL = T._PAGE_SPECIAL
_PFN = 0x000FFFFFFFFFF000
_MKWRITE_DIRTY = T._PAGE_DIRTY | T._PAGE_SOFT_DIRTY | _RW   # pte_mkwrite(pte_mkdirty())
_LARGE = PG_head | PG_tail
_NOT_EXCL = 0xFFFFFFFF ^ PG_anon_exclusive
# A folio an lru_add drain here may take: order 0, no LRU flag yet, not mlocked or
# unevictable (lru_add() would cull or rescue it), not hugetlb.
_NO_DRAIN = PG_head | PG_tail | PG_lru | PG_mlocked | PG_unevictable | PGTY_hugetlb
LRU_INACTIVE_ANON, LRU_INACTIVE_FILE = 0, 2


def _copy_row(data, d, s):
    """copy_highpage() of one data row (vmsim-only): a slice copy here; the compiled run
    takes _copy_row_loop, whose loop numba builds without a slice assignment's
    shape-mismatch error path (its message formatting alone was ~40% of the run's build)."""
    data[d:d + 4096] = data[s:s + 4096]


def _copy_row_loop(data, d, s):
    for j in range(4096):
        data[d + j] = data[s + j]


def _pte_ptr(pt, rows, cr3_pfn, la57, addr):
    """The pool index of addr's PTE when every upper level is present and none is a
    huge leaf (__handle_mm_fault then goes straight to handle_pte_fault); else -1."""
    shift = 48 if la57 else 39
    row = rows[cr3_pfn]
    while shift > 12:
        e = pt[row * 512 + ((addr >> shift) & 511)]
        if not (e & _P) or (e & _PS):
            return -1
        row = rows[(e & _PFN) >> 12]
        shift -= 9
    return row * 512 + ((addr >> 12) & 511)


def _write_fault_run(pt, rows, cr3_pfn, la57, base, stride, count, i, access, value, store,
                     pkru,
                     vm_start, vm_end, pgoff, prot, anon_flags, av_id, cand, ncand,
                     mflags, refcount, mapcount, mapping, index, lru_next, lru_prev,
                     fb, nb, head, tail, nr, lru_delta, data, drows, nlisted, new_row,
                     ndrows, zero_lo, zero_hi, zero_pfn,
                     can_copy, flushed, out):
    """Run accesses base + k*stride from k = i as _touch_batch does (a store into a
    frame with a data row included; none unless ``store``: Process.write stores its
    bytes after), taking the write faults of [vm_start, vm_end):
    a none PTE as do_anonymous_page, a read-only PTE as do_wp_page (reuse, or
    wp_page_copy from an order-0 anon folio or the zero page) would. New folios are
    cand[0..], data rows (for copies and stores) drows[0..nlisted) then new_row on, ndrows
    in all; the addresses whose PTE
    ptep_clear_flush cleared go to ``flushed`` (the caller flushes them in order).
    Returns the k reached; out = folios used, data rows used, faults, lru_add batch
    length, copies flushed, anon RSS added, NR_ANON_MAPPED change, reuses."""
    used = 0
    rows_used = 0
    faults = 0
    nflush = 0
    rss = 0
    nr_anon = 0
    reuse = 0
    last_fault = -1
    while i < count:
        addr = base + i * stride
        r = translate(pt, rows, cr3_pfn, la57, addr, access, pkru)
        if r >= 0:
            # _touch_batch's store of ``value`` (page_data._store), or PageData.write's
            # new row: _alloc_row() (a reused row zeroed) takes the inline bytes.
            if store and not _store(rows, data, r, 1, value):
                if rows_used == ndrows:
                    break
                row = drows[rows_used] if rows_used < nlisted else new_row + rows_used - nlisted
                b = row * 4096
                if zero_lo <= rows_used < zero_hi:
                    for j in range(4096):
                        data[b + j] = 0
                rows_used += 1
                pfn = r >> 12
                h = rows[pfn]                  # inline (_store takes the rest)
                ioff = h & 0xFFF
                for j in range((h >> 12) & 7):
                    data[b + ioff + j] = (h >> (15 + 8 * j)) & 0xFF
                rows[pfn] = ~row
                data[b + (r & 0xFFF)] = value
            i += 1
            continue
        # A write fault in this VMA (none or read-only PTE), once per access.
        err = ~r
        if (err != access and err != access | _ERR_PROT) or i == last_fault or \
                addr < vm_start or addr >= vm_end:
            break
        ptep = _pte_ptr(pt, rows, cr3_pfn, la57, addr)
        if ptep < 0:
            break
        pte = pt[ptep]
        old = -1
        if pte != 0:
            # do_wp_page(): present, read-only; vm_normal_page() of an order-0 anon
            # folio, or the zero page (a special PTE: no page).
            if err == access or not (pte & _P) or (pte & _RW):
                break
            page = (pte & _PFN) >> 12
            if pte & _SPECIAL:
                if page != zero_pfn:
                    break
            else:
                f = mflags[page]
                if not (f & PG_anon) or (f & _LARGE):
                    break
                if not (f & PG_anon_exclusive):
                    rc = refcount[page]
                    if rc <= 3 and not (f & PG_lru):
                        break                  # wp_can_reuse_anon_folio drains (Python)
                    if rc == 1:
                        mapping[page] = av_id  # folio_move_anon_rmap()
                        f |= PG_anon_exclusive
                        mflags[page] = f
                if f & PG_anon_exclusive:
                    # wp_page_reuse(): young, dirty, writable (ptep_set_access_flags).
                    pt[ptep] = pte | _A | _MKWRITE_DIRTY
                    reuse += 1
                    faults += 1
                    last_fault = i
                    continue
                old = page
            # wp_page_copy() needs a new folio (and a data row for a row copy).
            if not can_copy or used == ncand or rows[cand[used]] != 0:
                break
            if old >= 0 and rows[old] < 0 and rows_used == ndrows:
                break
        elif err != access or used == ncand:
            break
        if nb == PAGEVEC_SIZE - 1:
            # This folio fills the batch: the drain must only link and put.
            ok = True
            for j in range(nb):
                if mflags[fb[j]] & _NO_DRAIN or refcount[fb[j]] < 2:
                    ok = False
            if not ok:
                break
        folio = cand[used]                     # the per-CPU list: list_del()
        used += 1
        lru_next[folio] = 0
        lru_prev[folio] = 0
        refcount[folio] = 1                    # prep_new_page()
        if pte != 0:
            if old >= 0:
                refcount[old] += 1             # folio_get() in do_wp_page()
                h = rows[old]
                if h < 0:                      # __wp_page_copy_user(): copy_highpage()
                    row = drows[rows_used] if rows_used < nlisted else \
                        new_row + rows_used - nlisted
                    rows_used += 1
                    d = row * 4096
                    s = (~h) * 4096
                    _copy_row(data, d, s)
                    rows[folio] = ~row
                else:
                    rows[folio] = h
            else:
                rss += 1                       # the zero page: a new anon page
            pt[ptep] = 0                       # ptep_clear_flush()
            flushed[nflush] = addr & ~0xFFF    # vmf->address
            nflush += 1
        else:
            rss += 1                           # do_anonymous_page()
        mflags[folio] = mflags[folio] | anon_flags   # folio_add_new_anon_rmap()
        mapping[folio] = av_id
        index[folio] = ((addr - vm_start) >> 12) + pgoff
        mapcount[folio] = 1
        nr_anon += 1
        refcount[folio] += 1                   # folio_add_lru()
        fb[nb] = folio
        nb += 1
        if nb == PAGEVEC_SIZE:                 # folio_batch_move_lru(lru_add)
            for j in range(nb):
                p = fb[j]
                f = mflags[p] | PG_lru
                mflags[p] = f
                lru = LRU_INACTIVE_ANON if f & PG_swapbacked else LRU_INACTIVE_FILE
                if f & PG_active:
                    lru += 1
                first = head[lru]              # lruvec_add_folio()
                lru_prev[p] = 0
                lru_next[p] = first
                if first:
                    lru_prev[first] = p
                else:
                    tail[lru] = p
                head[lru] = p
                nr[lru] += 1
                lru_delta[lru] += 1
            for j in range(nb):                # folios_put(): none reaches 0
                refcount[fb[j]] -= 1
            nb = 0
        pt[ptep] = (folio << 12) | prot        # set_ptes() / set_pte_at()
        if old >= 0:
            m = mapcount[old] - 1              # folio_remove_rmap_pte()
            mapcount[old] = m
            if m == 0:
                nr_anon -= 1
                mflags[old] = mflags[old] & _NOT_EXCL
            refcount[old] -= 2                 # folio_put() twice: never the last
        faults += 1
        last_fault = i
    out[0] = used
    out[1] = rows_used
    out[2] = faults
    out[3] = nb
    out[4] = nflush
    out[5] = rss
    out[6] = nr_anon
    out[7] = reuse
    return i


_impl = {}
_state = {"enabled": True}
# Fewer accesses left than this: the kernel-named path (a short touch pays neither the
# run's set-up nor, on its first use, loading the compiled run).
_MIN_RUN = 16


def _set_enabled(flag: bool):
    """Tests: switch the runs off (the kernel-named Python path only) or on."""
    _state["enabled"] = flag


def _get(compiled: bool):
    fn = _impl.get(compiled)
    if fn is None:
        fn = _write_fault_run
        if compiled:
            import types
            from vmsim._jitcache import _njit
            g = dict(_write_fault_run.__globals__)
            g["translate"] = mmu.compiled()[0]
            g["_pte_ptr"] = _njit(_pte_ptr, nogil=True)
            g["_store"] = _njit(_store, nogil=True, inline="always")
            g["_copy_row"] = _njit(_copy_row_loop, nogil=True, inline="always")
            fn = _njit(types.FunctionType(_write_fault_run.__code__, g, "_write_fault_run"),
                       nogil=True)
        _impl[compiled] = fn
    return fn


def _run(k, task, addr, err, base, stride, count, i, value, compiled, pt, rows, store=True):
    """Take the run of write faults starting with the fault (error code ``err``) of
    access i at addr, if the Python path's once-per-run conditions hold; return the
    access index reached (the access there is still to do, its fault taken or not),
    or -1 when the run did nothing.

    Without ``store`` (Process.write: one access per page, its bytes stored after the
    run) the run stores nothing and copies no data row (a COW copy of a page with one
    ends it): the stores then take the data rows they would have taken between the
    faults. With it, a store that needs a new data row takes one as PageData.write."""
    if count - i < _MIN_RUN or not _state["enabled"] or task is not k.current or \
            task.signals or _tracing():
        return -1
    mm = task.mm
    vma = mm.vma_lookup(addr)
    if vma is None or vma.vm_ops is not None or vma.anon_vma is None or mm.mmu_notifiers:
        return -1
    vf = vma.vm_flags
    if vf & (VM_SHARED | VM_MAYSHARE | VM_HUGETLB | VM_LOCKED | VM_PFNMAP | VM_MIXEDMAP) or \
            (vf & (VM_WRITE | VM_MAYWRITE)) != VM_WRITE | VM_MAYWRITE:
        return -1
    access = X86_PF_USER | X86_PF_WRITE
    if access_error(err, vma) or _any_mthp_enabled(k):
        return -1
    cpu = task.cpu
    pa = k.page_alloc
    n = min(count - i, 512, (vma.vm_end - addr + 4095) >> 12)
    # One more than the run may take: the list's head after it (the allocator's commit).
    peeked = pa._pcp_peek_order0(_GFP_ANON_ZEROED, cpu, n + 1)
    cand = peeked[:n]
    if not cand:
        return -1
    ac = pa._gfp_ac
    can_copy = ac.get(_GFP_ANON_COPY, (None,))[:2] == ac[_GFP_ANON_ZEROED][:2]
    pd = k.page_data
    # Data rows for copies and for stores that need one (2 a page at most), in the
    # order _alloc_row() hands them out: free rows, reused rows (zeroed for a store),
    # new rows.
    # (_rows_peek's order, without listing the new rows: they follow rows_used.)
    m = 2 * n if store else 0
    drows = pd.free_rows[:-m - 1:-1] if m else []
    zero_lo = len(drows)
    if len(drows) < m:
        drows += pd._stale_rows[:-(m - len(drows)) - 1:-1]
    zero_hi = len(drows)
    ndrows = zero_hi + max(0, min(m - zero_hi, len(pd.pool) - pd.rows_used))
    lru_add = k.cpu_fbatches[cpu].lru_add
    lv = k.lruvec
    mem = k.mem
    if compiled:
        arrays = (mem.np_flags, mem.np_refcount, mem.np_mapcount, mem.np_mapping,
                  mem.np_index, mem.np_lru_next, mem.np_lru_prev)
        fb = np.zeros(PAGEVEC_SIZE, dtype=np.int64)
        fb[:len(lru_add)] = lru_add
        lists = [np.array(x, dtype=np.int64) for x in (lv.head, lv.tail, lv.nr)]
        delta = np.zeros(len(lv.nr), dtype=np.int64)
        cand_a = np.array(cand, dtype=np.int64)
        drows_a = np.array(drows, dtype=np.int64)
        data = pd.pool.reshape(-1)
        flushed = np.empty(n, dtype=np.int64)
        out = np.zeros(8, dtype=np.int64)
    else:
        arrays = (mem.flags, mem.refcount, mem.mapcount, mem.mapping, mem.index,
                  mem.lru_next, mem.lru_prev)
        fb = lru_add + [0] * (PAGEVEC_SIZE - len(lru_add))
        lists = [list(lv.head), list(lv.tail), list(lv.nr)]
        delta = [0] * len(lv.nr)
        cand_a, drows_a, data = cand, drows, pd._mv
        flushed = [0] * n
        out = [0] * 8
    prot = vma.vm_page_prot | _MKWRITE_DIRTY              # pte_mkwrite(pte_mkdirty())
    anon_flags = PG_anon | PG_anon_exclusive | (0 if vf & VM_DROPPABLE else PG_swapbacked)
    j = _get(compiled)(
        pt, rows, k.cpus[cpu].cr3, k.la57, base, stride, count, i,
        access, value, store, task.pkru, vma.vm_start, vma.vm_end, vma.vm_pgoff, prot, anon_flags,
        vma.anon_vma.id, cand_a, len(cand), *arrays, fb, len(lru_add), *lists, delta,
        data, drows_a, len(drows), pd.rows_used, ndrows, zero_lo, zero_hi, k.zero_pfn,
        can_copy, flushed, out)
    used, rows_used, faults, nb, nflush, rss, nr_anon, reuse = \
        out.tolist() if compiled else out
    if not faults:
        return -1 if j == i else j
    pa._pcp_commit_order0(_GFP_ANON_ZEROED, cpu, used, peeked)
    pd._rows_commit(rows_used)
    lru_add[:] = fb[:nb].tolist() if compiled else fb[:nb]
    if compiled:
        lists = [x.tolist() for x in lists]
        delta = delta.tolist()
    lv.head[:], lv.tail[:], lv.nr[:] = lists
    stat = k.vmstat
    for lru, d in enumerate(delta):
        if d:
            stat[_LRU_STAT[lru]] += d
            stat[_ZONE_LRU_STAT[lru]] += d
    mm.rss_stat[MM_ANONPAGES] += rss
    stat[vmstat.NR_ANON_PAGES] += nr_anon
    stat[vmstat.PGREUSE] += reuse                         # wp_page_reuse()
    stat[vmstat.PGFAULT] += faults                        # mm_account_fault()
    task.min_flt += faults
    # ptep_clear_flush() of each copy: the TLB flush records and the mm's flush
    # generation, in order (no page state depends on them).
    if nflush:
        _flush_tlb_pages(vma, flushed[:nflush].tolist() if compiled else flushed[:nflush])
    return j
