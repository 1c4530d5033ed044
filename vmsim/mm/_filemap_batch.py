"""vmsim-only: a compiled fill of a page-cache folio's PTEs for filemap_map_pages.

filemap_map_folio_range() maps a run of a large folio's pages whose PTEs are all
none with one set_pte_range(): folio_add_file_rmap_ptes() (each page's mapcount, the
folio's _large_mapcount and _nr_pages_mapped, NR_FILE_MAPPED) and set_ptes(). On
16- or 512-page runs the numpy slices those take cost more than the rest of the
fault; this one compiled call checks the PTEs, stores them and counts the mapcounts,
and the caller applies the folio-wide counts exactly as folio_add_file_rmap_ptes()
does. The state left is the Python path's (tests/test_file_thp.py compares them on
random page caches and tables).

The Python path runs instead while a tracer or profiler is installed (so traces show
set_pte_range and the rmap call), and with VMSIM_NUMBA=0 (or without numba) the same
loop runs as plain Python over memoryviews.
"""
from vmsim.mm import vmstat
from vmsim.mm import _pte_batch
from vmsim.arch.x86.mmu import translate
from vmsim.mm.mm_types import VM_PFNMAP, VM_MIXEDMAP, MM_FILEPAGES
from vmsim.mm.page_flags import (PG_locked, PG_reclaim, PG_uptodate, PG_head, PG_dirty,
                                 PG_workingset, PG_ORDER_MASK, PG_ORDER_SHIFT)

# Plain ints for the compiled loops (PG_readahead is PG_reclaim's bit).
_SKIP = PG_locked | PG_reclaim
_PG_uptodate, _PG_head, _PG_dirty, _PG_workingset = PG_uptodate, PG_head, PG_dirty, PG_workingset
_PG_ORDER_MASK, _PG_ORDER_SHIFT = PG_ORDER_MASK, PG_ORDER_SHIFT

_impl = {}
_state = {"enabled": True, "run": True}


def _set_enabled(flag: bool):
    """Tests: switch the compiled fill and the read-fault runs off (the kernel-named
    Python path) or on."""
    _state["enabled"] = flag
    _state["run"] = flag


def _set_run_enabled(flag: bool):
    """Tests: switch the read-fault runs alone off or on."""
    _state["run"] = flag


def _fill_file_ptes(pool, mapcount, ptep, pte, page, nr):
    """Store nr PTEs from ``pte`` (consecutive pages from ``page``) at ptep if every
    one is none and raise each page's mapcount; return how many pages were mapped
    for the first time, or -1 (nothing done) when a PTE is not none."""
    for i in range(nr):
        if pool[ptep + i] != 0:
            return -1
    first = 0
    for i in range(nr):
        pool[ptep + i] = pte + (i << 12)
        m = mapcount[page + i] + 1
        mapcount[page + i] = m
        if m == 1:
            first += 1
    return first


def _usable(vma) -> bool:
    """The compiled fill applies: not traced, batches on (the range operations'
    switch), and a VMA whose pages vm_normal_page() takes as they are."""
    if not _state["enabled"] or not _pte_batch._state["enabled"] or \
            vma.vm_flags & (VM_PFNMAP | VM_MIXEDMAP) or _pte_batch._tracing():
        return False
    if not _pte_batch._impl:
        _pte_batch._load()
    return True


def _fill(k, folio: int, page: int, nr: int, ptep: int, entry: int) -> int:
    """Map pages [page, page + nr) of a large page-cache folio with PTEs from
    ``entry`` (set_pte_range's, for ``page``) if all nr PTEs are none; the folio's
    counts as folio_add_file_rmap_ptes(). Returns the pages mapped (nr), or -1."""
    mem = k.mem
    fn = _impl.get("fill")
    if fn is None:
        fn = _fill_file_ptes
        if _pte_batch._impl.get("compiled"):
            from vmsim._jitcache import _njit
            fn = _njit(fn, nogil=True)
        _impl["fill"] = fn
    if _pte_batch._impl.get("compiled"):
        first = fn(k.ptpool.arr, mem.np_mapcount, ptep,
                   entry - (1 << 64) if entry >= 1 << 63 else entry, page, nr)
    else:
        first = fn(k.ptpool.mv, mem.mapcount, ptep, entry, page, nr)
    if first < 0:
        return -1
    # folio_add_file_rmap_ptes() of a large folio: _large_mapcount, _nr_pages_mapped,
    # and NR_FILE_MAPPED unless a PMD maps the folio too (ENTIRELY_MAPPED).
    mem.mapping[folio + 1] += nr
    mem.index[folio + 1] += first
    if not mem.lru_prev[folio + 1]:
        k.vmstat[vmstat.NR_MAPPED] += first
    return nr


# --- compiled runs of cached read faults (do_read_fault -> do_fault_around) ----------
# While a user load loop (Process.touch) runs into not-present PTEs of a file VMA whose
# page cache already holds the folios, the kernel takes each fault alone:
# exc_page_fault -> handle_page_fault -> do_user_addr_fault -> handle_mm_fault ->
# __handle_mm_fault -> handle_pte_fault -> do_pte_missing -> do_fault -> do_read_fault
# -> do_fault_around -> filemap_map_pages, which maps what is cached in the
# fault_around_bytes window (a large folio whole when it lies in the VMA and the page
# table: filemap_map_folio_range); with the PMD none, do_fault_around preallocates a
# PTE table, and filemap_map_pmd either maps a PMD-sized first folio by one PMD
# (do_set_pmd; do_fault then frees the table) or installs the table (pmd_install).
# mm_account_fault counts pgfault and min_flt.
#
# This run is vmsim's own: one call takes a stretch of such faults, each with exactly
# the state changes of that Python path, and the loads between them as the MMU's touch
# loop does. The allocator is not compiled: a fault that installs a PTE table stops
# the run before it changes anything, the caller allocates the table with
# pte_alloc_one() (the fault path's first state change) and runs on, handing it in;
# the tables do_set_pmd leaves unused are allocated and freed by the caller after the
# run, in order, with the kernel-named functions (only the allocator and the table
# pool see them). The run stops -- leaving the access to the kernel-named Python
# path -- at anything else: a fault other than a user read of a not-present page, an
# address outside the run's region (whole PMDs of the VMA whose cached folios the
# caller looked up), a missing or huge level above the PMD, a PTE not none, a fault
# whose own page fault-around would not map (no folio, not uptodate, locked,
# PG_readahead, past EOF: ->fault must run), a first folio crossing EOF under a none
# PMD. The caller checks once per run what cannot change during it (the VMA: ext4's
# vm_ops, not mlocked, hugetlb, pfnmap or userfaultfd; fault-around on; no tracer,
# MMU notifier, TLB model or pending signal).
_P = 1
_RW = 2
_PS = 0x80
_PFN = 0x000FFFFFFFFFF000
# The run's parameters (one int64 array: numba's call costs per argument).
(_CR3, _LA57, _BASE, _STRIDE, _COUNT, _ACCESS, _PKRU, _VM_START, _VM_END, _VM_PGOFF, _FA,
 _R_START, _R_END, _LO, _NHEADS, _MAX_IDX, _PTE_PROT, _DIRTY, _PMD_PROT, _PMD_OK, _RA_ON,
 _RA_MISS, _PREALLOC, _TABLE, _FILL, _NPRM) = range(26)
# What it hands back (out): faults, file RSS, NR_FILE_MAPPED, NR_FILE_PMDMAPPED, PMD
# mappings (each a table to allocate and free), mmap_miss, the stop reason, tables
# installed.
_STOP_PYTHON, _STOP_TABLE = 1, 2


def _pmd_ptr(pt, rows, cr3_pfn, la57, addr):
    """The pool index of addr's PMD entry when every level above is present and none
    is a huge leaf; else -1."""
    shift = 48 if la57 else 39
    row = rows[cr3_pfn]
    while shift > 21:
        e = pt[row * 512 + ((addr >> shift) & 511)]
        if not (e & _P) or (e & _PS):
            return -1
        row = rows[(e & _PFN) >> 12]
        shift -= 9
    return row * 512 + ((addr >> 21) & 511)


def _next_folio(slot, lo, mflags, index, index_, end, max_idx):
    """next_uptodate_folio() over the run's slots: (index, folio) of the next folio
    in [index_, end] that is uptodate, unlocked, not PG_readahead and inside i_size;
    folio -1 when none."""
    while index_ <= end:
        folio = slot[index_ - lo]
        if folio < 0:
            index_ += 1
            continue
        f = mflags[folio]
        if (f & _SKIP) or not (f & _PG_uptodate) or index_ >= max_idx:
            index_ = index[folio] + (1 << ((f & _PG_ORDER_MASK) >> _PG_ORDER_SHIFT)
                                     if f & _PG_head else 1)
            continue
        return index_, folio
    return index_, -1


def _read_fault_run(pt, rows, prm, i, heads, slot, mflags, refcount, mapcount, mapping,
                    index, lru_prev, out):
    """Run loads base + k*stride from k = i as _touch_batch does, taking the cached
    read faults of [r_start, r_end) (inside the VMA). ``heads`` are the folios caching
    the region's indices from ``lo`` (with prm[_FILL] they are entered in ``slot``
    first; -1 where nothing is cached). Returns the k reached; ``out`` as above."""
    cr3_pfn = prm[_CR3]
    la57 = prm[_LA57]
    base = prm[_BASE]
    stride = prm[_STRIDE]
    count = prm[_COUNT]
    access = prm[_ACCESS]
    pkru = prm[_PKRU]
    vm_start = prm[_VM_START]
    vm_end = prm[_VM_END]
    vm_pgoff = prm[_VM_PGOFF]
    fa_pages = prm[_FA]
    r_start = prm[_R_START]
    r_end = prm[_R_END]
    lo = prm[_LO]
    max_idx = prm[_MAX_IDX]
    pte_prot = prm[_PTE_PROT]
    dirty_bits = prm[_DIRTY]
    pmd_prot = prm[_PMD_PROT]
    pmd_ok = prm[_PMD_OK]
    ra_on = prm[_RA_ON]
    ra_miss = prm[_RA_MISS]
    prealloc = prm[_PREALLOC]
    if prm[_FILL]:
        nslot = len(slot)
        for h in range(prm[_NHEADS]):
            folio = heads[h]
            f = mflags[folio]
            fi = index[folio]
            n = 1 << ((f & _PG_ORDER_MASK) >> _PG_ORDER_SHIFT) if f & _PG_head else 1
            for j in range(max(fi, lo), min(fi + n, lo + nslot)):
                slot[j - lo] = folio
    faults = 0
    rss = 0
    nr_mapped = 0
    pmdmapped = 0
    pmds = 0
    installed = 0
    stop = 0
    last_fault = -1
    file_end = max_idx - 1
    vma_pages = (vm_end - vm_start) >> 12
    aligned = ((vm_start >> 12) - vm_pgoff) & 511 == 0
    while i < count:
        addr = base + i * stride
        r = translate(pt, rows, cr3_pfn, la57, addr, access, pkru)
        if r >= 0:
            i += 1
            continue
        stop = _STOP_PYTHON
        if ~r != access or i == last_fault or addr < r_start or addr >= r_end:
            break
        pmdp = _pmd_ptr(pt, rows, cr3_pfn, la57, addr)
        if pmdp < 0:
            break
        pmd = pt[pmdp]
        pgoff = vm_pgoff + ((addr - vm_start) >> 12)
        folio = slot[pgoff - lo]
        if folio < 0 or pgoff >= max_idx:
            break
        f = mflags[folio]
        if (f & _SKIP) or not (f & _PG_uptodate):
            break
        # do_fault_around(): the window of fault_around_pages in this page table.
        pte_off = (addr >> 12) & 511
        vma_off = pgoff - vm_pgoff
        from_pte = max(pte_off & ~(fa_pages - 1), pte_off - min(pte_off, vma_off))
        to_pte = min(from_pte + fa_pages, 512, pte_off + vma_pages - vma_off) - 1
        start = pgoff + from_pte - pte_off
        end = min(pgoff + to_pte - pte_off, file_end)
        idx, folio = _next_folio(slot, lo, mflags, index, start, end, max_idx)
        if pmd == 0:
            # filemap_map_pages() with the PMD none: the first folio must lie inside
            # i_size (else no table is installed and ->fault runs).
            f = mflags[folio]
            fnr = 1 << ((f & _PG_ORDER_MASK) >> _PG_ORDER_SHIFT) if f & _PG_head else 1
            if file_end < index[folio] + fnr:
                break
            haddr = addr & ~0x1FFFFF
            if pmd_ok and aligned and fnr == 512 and haddr >= vm_start and \
                    haddr + 0x200000 <= vm_end:
                # filemap_map_pmd() -> do_set_pmd(): one PMD for the folio.
                if prealloc >= 0:
                    break                          # (never: a table was asked for a PTE fault)
                refcount[folio] += 1               # next_uptodate_folio's reference
                rss += 512
                em = lru_prev[folio + 1] + 1       # folio_add_file_rmap_pmd()
                lru_prev[folio + 1] = em
                mapping[folio + 1] += 1
                if em == 1:
                    nr_mapped += 512 - index[folio + 1]
                    pmdmapped += 512
                pt[pmdp] = (folio << 12) | pmd_prot    # set_pmd_at()
                pmds += 1
                # No PTE mapped: mmap_miss stays.
                faults += 1
                last_fault = i
                stop = 0
                continue
            if prealloc < 0:
                stop = _STOP_TABLE                 # do_fault_around's pte_alloc_one()
                break
            pt[pmdp] = prm[_TABLE] | (prealloc << 12)     # pmd_install()
            installed += 1
            pmd = pt[pmdp]
            prealloc = -1
        elif (pmd & _PS) or not (pmd & _P):
            break
        tbl = rows[(pmd & _PFN) >> 12] * 512
        if pt[tbl + pte_off] != 0:
            break
        base_ptep = tbl + from_pte
        miss = 0
        while folio >= 0:
            f = mflags[folio]
            fnr = 1 << ((f & _PG_ORDER_MASK) >> _PG_ORDER_SHIFT) if f & _PG_head else 1
            findex = index[folio]
            nr_pages = min(findex + fnr - 1, end) - idx + 1
            if not (f & _PG_workingset):
                miss += nr_pages
            entry = pte_prot
            if (pte_prot & _RW) and (f & _PG_dirty):
                entry |= dirty_bits
            if fnr == 1:                           # filemap_map_order0_folio()
                p = base_ptep + (idx - start)
                if pt[p] == 0:
                    pt[p] = entry | (folio << 12)
                    refcount[folio] += 1
                    rss += 1
                    m = mapcount[folio] + 1
                    mapcount[folio] = m
                    if m == 1:
                        nr_mapped += 1
            else:
                # filemap_map_folio_range(): the whole folio when it is inside
                # i_size, the VMA and this page table.
                s = idx - findex
                p0 = base_ptep + (idx - start)
                page = folio + s
                n = nr_pages
                a0 = vm_start + ((findex - vm_pgoff) << 12)
                if file_end >= findex + fnr and findex >= vm_pgoff and \
                        vm_start + ((findex + fnr - vm_pgoff) << 12) <= vm_end and \
                        (a0 >> 21) == ((a0 + fnr * 4096 - 1) >> 21):
                    p0 -= s
                    page = folio
                    n = fnr
                cnt = 0
                first = 0
                for q in range(n):
                    if pt[p0 + q] == 0:
                        pt[p0 + q] = entry | ((page + q) << 12)
                        m = mapcount[page + q] + 1
                        mapcount[page + q] = m
                        if m == 1:
                            first += 1
                        cnt += 1
                refcount[folio] += cnt
                mapping[folio + 1] += cnt          # _large_mapcount
                index[folio + 1] += first          # _nr_pages_mapped
                if lru_prev[folio + 1] == 0:       # not PMD-mapped too
                    nr_mapped += first
                rss += cnt
            idx, folio = _next_folio(slot, lo, mflags, index, findex + fnr, end, max_idx)
        if ra_on:
            ra_miss = 0 if miss >= ra_miss else ra_miss - miss
        faults += 1
        last_fault = i
        stop = 0
    out[0] = faults
    out[1] = rss
    out[2] = nr_mapped
    out[3] = pmdmapped
    out[4] = pmds
    out[5] = ra_miss
    out[6] = stop if i < count else 0
    out[7] = installed
    return i


_PMD_SPAN = 64          # a run's region: at most this many PMDs (128 MiB)
_MIN_RUN = 16           # fewer loads left than this: the kernel-named path
_skip = [None]          # the fault the last run left to the Python path
_fns = {}


def _get_run(compiled: bool):
    fn = _impl.get(("read", compiled))
    if fn is None:
        fn = _read_fault_run
        if compiled:
            import types
            from vmsim._jitcache import _njit
            from vmsim.arch.x86 import mmu
            g = dict(_read_fault_run.__globals__)
            g["translate"] = mmu.compiled()[0]
            g["_pmd_ptr"] = _njit(_pmd_ptr, nogil=True, _nrt=False)
            g["_next_folio"] = _njit(_next_folio, nogil=True, _nrt=False)
            fn = _njit(types.FunctionType(_read_fault_run.__code__, g, "_read_fault_run"),
                       nogil=True, _nrt=False)
        _impl[("read", compiled)] = fn
    return fn


def _kernel_fns():
    """The kernel-named functions the run's set-up and commit call (imported once:
    the model's modules import this one)."""
    if not _fns:
        from vmsim.fs.ext4 import ext4_file_vm_ops
        from vmsim.arch.x86.mm.fault import access_error
        from vmsim.arch.x86.mm.pgtable import pte_alloc_one, pagetable_free
        from vmsim.arch.x86.pgtable import pfn_pte, pte_mkdirty, _mk_table_entry
        from vmsim.arch.x86.pgtable_types import X86_PF_USER
        from vmsim.mm.huge_memory import (thp_vma_allowable_order, vma_thp_disabled,
                                          folio_mk_pmd, TVA_PAGEFAULT, PMD_ORDER)
        from vmsim.mm.mm_types import VM_LOCKED, VM_HUGETLB, VM_UFFD_MISSING, VM_UFFD_WP
        from vmsim.mm.page_alloc import GFP_PGTABLE_USER
        _fns.update(locals())
        _fns["no_run"] = (VM_LOCKED | VM_HUGETLB | VM_PFNMAP | VM_MIXEDMAP | VM_UFFD_MISSING |
                          VM_UFFD_WP)
    return _fns


def _s64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _read_run(k, task, addr, err, base, stride, count, i, compiled, pt, rows):
    """Take the run of cached read faults starting with the fault (error code ``err``)
    of access i at addr, if the Python path's once-per-run conditions hold; return the
    access index reached (the access there is still to do), or -1 when the run did
    nothing and the fault at i is the Python path's."""
    fns = _fns or _kernel_fns()
    if err != fns["X86_PF_USER"] or count - i < _MIN_RUN or not _state["run"] or \
            task is not k.current or task.signals or _pte_batch._tracing():
        return -1
    key = (task, addr, i)
    if _skip[0] == key:
        _skip[0] = None
        return -1
    mm = task.mm
    vma = mm.vma_lookup(addr)
    if vma is None or vma.vm_ops is not fns["ext4_file_vm_ops"] or mm.mmu_notifiers:
        return -1
    vf = vma.vm_flags
    file = vma.vm_file
    mapping = file.f_mapping
    fa = k.fault_around_pages
    if vf & fns["no_run"] or mapping.swapbacked or fa <= 1 or fa & (fa - 1) or \
            fns["access_error"](err, vma):
        return -1
    cache = mapping.i_pages
    pgoff0 = vma.vm_pgoff - (vma.vm_start >> 12)
    if pgoff0 + (addr >> 12) not in cache:
        return -1                                        # ->fault runs (a major fault)
    mem = k.mem
    cpu = task.cpu
    pool = k.ptpool.mv
    cr3 = k.cpus[cpu].cr3
    pa = k.page_alloc
    # A fault that maps a PMD allocates and frees a table, one that installs a table
    # allocates it: only while the allocator's fast path holds (as the anon runs ask).
    alloc_ok = bool(pa._pcp_peek_order0(fns["GFP_PGTABLE_USER"], cpu, 1))
    pmd_ok = alloc_ok and not fns["vma_thp_disabled"](vma, vf, True) and \
        not fns["thp_vma_allowable_order"](vma, vf, fns["TVA_PAGEFAULT"], fns["PMD_ORDER"])
    # The region: whole PMDs from addr's, while the loads go on in the VMA and each
    # next PMD has a PTE table, or is none and gets one or a PMD mapping.
    vm_start, vm_end = vma.vm_start, vma.vm_end
    last = base + (count - 1) * stride
    r0 = max(addr & ~0x1FFFFF, vm_start)
    r1 = min((addr | 0x1FFFFF) + 1, vm_end)
    pmdp = _pmd_ptr(pool, mem.private, cr3, k.la57, addr)
    flags, index = mem.flags, mem.index
    if pmdp >= 0:
        q = pmdp
        # (a next PMD whose first page is not cached would stop the run at once:
        # scanning its holes is not worth it)
        while r1 < vm_end and r1 <= last and (q & 511) < 511 and r1 - r0 < _PMD_SPAN << 21 \
                and pgoff0 + (r1 >> 12) in cache:
            q += 1
            e = pool[q]
            if not (e & _P and not e & _PS) and not (e == 0 and alloc_ok):
                break
            r1 = min(r1 + 0x200000, vm_end)
    lo = pgoff0 + (r0 >> 12)
    hi = pgoff0 + (r1 >> 12)
    # The folios caching [lo, hi): the xarray's multi-index entries, one per folio.
    heads = []
    j = lo
    nodes = cache.nodes                   # the xarray's leaves (vmsim.mm._xarray)
    multi = cache.multi                   # and its entries of order >= 6
    while j < hi:
        node = nodes.get(j >> 6)
        if node is None:
            f = multi.get(j >> 6)
            if f is None or f < 0:
                j = (j | 63) + 1              # an absent leaf (or a chunk of shadows): no folio
                continue
        else:
            f = node[j & 63]
            if f < 0:
                j += 1
                continue
        heads.append(f)
        fl = flags[f]
        j = index[f] + (1 << ((fl & _PG_ORDER_MASK) >> _PG_ORDER_SHIFT) if fl & _PG_head else 1)
    if not heads:
        return -1
    ra = getattr(file, "f_ra", None)
    prm = [0] * _NPRM
    prm[_CR3], prm[_LA57], prm[_BASE], prm[_STRIDE], prm[_COUNT] = cr3, k.la57, base, stride, count
    prm[_ACCESS], prm[_PKRU] = err, task.pkru
    prm[_VM_START], prm[_VM_END], prm[_VM_PGOFF], prm[_FA] = vm_start, vm_end, vma.vm_pgoff, fa
    prm[_R_START], prm[_R_END], prm[_LO], prm[_NHEADS] = r0, r1, lo, len(heads)
    prm[_MAX_IDX] = (mapping.host.i_size + 4095) >> 12
    prm[_PTE_PROT] = _s64(fns["pfn_pte"](0, vma.vm_page_prot))
    prm[_DIRTY] = fns["pte_mkdirty"](0)
    prm[_PMD_PROT] = _s64(fns["folio_mk_pmd"](0, vma.vm_page_prot))
    prm[_PMD_OK] = 1 if pmd_ok else 0
    prm[_RA_ON] = 1 if ra is not None else 0
    prm[_RA_MISS] = ra.mmap_miss if ra is not None else 0
    prm[_PREALLOC] = -1
    prm[_TABLE] = fns["_mk_table_entry"](0)
    prm[_FILL] = 1
    if compiled:
        import numpy as np
        arrays = (mem.np_flags, mem.np_refcount, mem.np_mapcount, mem.np_mapping,
                  mem.np_index, mem.np_lru_prev)
        heads = np.array(heads, dtype=np.int64)
        slot = np.full(hi - lo, -1, dtype=np.int64)
        prm_a = np.array(prm, dtype=np.int64)
        out = np.zeros(8, dtype=np.int64)
    else:
        arrays = (flags, mem.refcount, mem.mapcount, mem.mapping, index, mem.lru_prev)
        slot = [-1] * (hi - lo)
        prm_a = prm
        out = [0] * 8
    run = _get_run(compiled)
    faults = rss = nr_mapped = pmdmapped = pmds = installed = 0
    start = i
    while True:
        j = run(pt, rows, prm_a, i, heads, slot, *arrays, out)
        o = out.tolist() if compiled else out
        faults += o[0]
        rss += o[1]
        nr_mapped += o[2]
        pmdmapped += o[3]
        pmds += o[4]
        prm_a[_RA_MISS] = o[5]
        installed += o[7]
        # The PMD-mapped faults' table allocations and frees come before any later
        # fault's (the allocator hands a freed table to the next pte_alloc_one).
        if o[4]:
            _prealloc_and_free(k, mm, fns, o[4])
        if o[6] == _STOP_TABLE and pa._pcp_peek_order0(fns["GFP_PGTABLE_USER"], cpu, 1):
            # do_fault_around()'s pte_alloc_one(), here where the fault path calls it;
            # the run installs it (pmd_install) and goes on.
            new = fns["pte_alloc_one"](mm)
            if new < 0:
                raise AssertionError("_read_run: the allocator's fast path failed")
            prm_a[_PREALLOC] = new
            prm_a[_FILL] = 0
            i = j
            continue
        if o[6]:
            _skip[0] = (task, base + j * stride, j)
        break
    if not faults:
        return -1 if j == start else j
    stat = k.vmstat
    mm.rss_stat[MM_FILEPAGES] += rss
    mm.pgtables_bytes += installed << 12                 # pmd_install: mm_inc_nr_ptes
    stat[vmstat.NR_MAPPED] += nr_mapped
    stat[vmstat.NR_FILE_PMDMAPPED] += pmdmapped
    stat[vmstat.THP_FILE_MAPPED] += pmds
    stat[vmstat.PGFAULT] += faults                       # mm_account_fault()
    task.min_flt += faults
    if ra is not None:
        ra.mmap_miss = int(prm_a[_RA_MISS])
    return j


def _prealloc_and_free(k, mm, fns, pmds: int):
    """do_fault_around()'s pte_alloc_one() and do_fault()'s pte_free() of each of
    ``pmds`` PMD-mapped faults, in order (only the allocator and the table pool see
    them)."""
    alloc, free = fns["pte_alloc_one"], fns["pagetable_free"]
    for _ in range(pmds):
        pfn = alloc(mm)
        if pfn < 0:
            raise AssertionError("_read_run: the allocator's fast path failed")
        free(k, pfn)
