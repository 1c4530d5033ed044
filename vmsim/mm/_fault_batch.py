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
touch loop does. It stops -- leaving the access to the kernel-named Python path --
at anything else: another fault kind, the end of the VMA, a missing or huge table
level, a PTE not none, the end of the per-CPU list (a refill), an lru_add drain that
would free, cull or rescue a folio, or a store the inline data encoding cannot hold.
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

from vmsim.arch.x86 import mmu
from vmsim.arch.x86.mmu import translate
from vmsim.mm.page_flags import (PG_anon, PG_anon_exclusive, PG_swapbacked, PG_lru,
                                 PG_active, PG_head, PG_tail, PG_mlocked, PG_unevictable,
                                 PGTY_hugetlb)

PAGEVEC_SIZE = 31
_ERR_WRITE = 2
_P = 1
_PS = 0x80
_PFN = 0x000FFFFFFFFFF000
# A folio an lru_add drain here may take: order 0, no LRU flag yet, not mlocked or
# unevictable (lru_add() would cull or rescue it), not hugetlb.
_NO_DRAIN = PG_head | PG_tail | PG_lru | PG_mlocked | PG_unevictable | PGTY_hugetlb
LRU_INACTIVE_ANON, LRU_INACTIVE_FILE = 0, 2


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


def _anon_fault_run(pt, rows, cr3_pfn, la57, base, stride, count, i, access, value, pkru,
                    vm_start, vm_end, pgoff, prot, anon_flags, av_id, cand, ncand,
                    mflags, refcount, mapcount, mapping, index, lru_next, lru_prev,
                    fb, nb, head, tail, nr, lru_delta):
    """Run accesses base + k*stride from k = i as touch_batch does, taking each
    not-present write fault inside [vm_start, vm_end) as do_anonymous_page would with
    the order-0 folio cand[used]. Returns (k reached, folios used, faults, lru_add
    batch length)."""
    used = 0
    faults = 0
    last_fault = -1
    while i < count:
        addr = base + i * stride
        r = translate(pt, rows, cr3_pfn, la57, addr, access, pkru)
        if r >= 0:
            if access & _ERR_WRITE:            # touch_batch's store of ``value``
                pfn = r >> 12
                off = r & 0xFFF
                h = rows[pfn]
                if h == 0:
                    if value != 0:
                        rows[pfn] = off | (1 << 12) | (value << 15)
                elif h > 0 and (h & 0xFFF) == off and ((h >> 12) & 7) == 1:
                    if value != 0:
                        rows[pfn] = off | (1 << 12) | (value << 15)
                    else:
                        rows[pfn] = 0
                else:
                    break
            i += 1
            continue
        # A not-present write fault (error code == access) in this VMA, once per access.
        if ~r != access or i == last_fault or addr < vm_start or addr >= vm_end:
            break
        ptep = _pte_ptr(pt, rows, cr3_pfn, la57, addr)
        if ptep < 0 or pt[ptep] != 0 or used == ncand:
            break
        if nb == PAGEVEC_SIZE - 1:
            # This folio fills the batch: the drain must only link and put.
            ok = True
            for j in range(nb):
                if mflags[fb[j]] & _NO_DRAIN or refcount[fb[j]] < 2:
                    ok = False
            if not ok:
                break
        folio = cand[used]                     # alloc_anon_folio(): the per-CPU list
        used += 1
        refcount[folio] = 1                    # prep_new_page()
        mflags[folio] = mflags[folio] | anon_flags   # folio_add_new_anon_rmap()
        mapping[folio] = av_id
        index[folio] = ((addr - vm_start) >> 12) + pgoff
        mapcount[folio] = 1
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
        pt[ptep] = (folio << 12) | prot        # set_ptes()
        faults += 1
        last_fault = i
    return i, used, faults, nb


_impl = {}
_state = {"enabled": True}


def _set_enabled(flag: bool):
    """Tests: switch the runs off (the kernel-named Python path only) or on."""
    _state["enabled"] = flag


def _get(compiled: bool):
    fn = _impl.get(compiled)
    if fn is None:
        fn = _anon_fault_run
        if compiled:
            import types
            from vmsim._jitcache import _njit
            g = dict(_anon_fault_run.__globals__)
            g["translate"] = mmu.compiled()[0]
            g["_pte_ptr"] = _njit(_pte_ptr, nogil=True)
            fn = _njit(types.FunctionType(_anon_fault_run.__code__, g, "_anon_fault_run"),
                       nogil=True)
        _impl[compiled] = fn
    return fn


def _run(k, task, addr, base, stride, count, i, value, compiled, pt, rows):
    """Take the run of write faults starting with the not-present fault of access i at
    addr, if the Python path's once-per-run conditions hold; return the access index
    reached (i when the run did nothing)."""
    from vmsim.mm._pte_batch import _tracing
    from vmsim.mm.mm_types import (VM_SHARED, VM_WRITE, VM_MAYWRITE, VM_HUGETLB, VM_LOCKED,
                                   VM_PFNMAP, VM_MIXEDMAP, VM_DROPPABLE, MM_ANONPAGES)
    from vmsim.mm import vmstat
    from vmsim.mm.memory import _any_mthp_enabled, _GFP_ANON_ZEROED, _MKWRITE_DIRTY
    from vmsim.mm.swap import _LRU_STAT, _ZONE_LRU_STAT
    from vmsim.arch.x86.mm.fault import access_error
    from vmsim.arch.x86.pgtable_types import X86_PF_USER, X86_PF_WRITE
    if not _state["enabled"] or task is not k.current or task.signals or _tracing():
        return i
    mm = task.mm
    vma = mm.vma_lookup(addr)
    if vma is None or vma.vm_ops is not None or vma.anon_vma is None:
        return i
    vf = vma.vm_flags
    if vf & (VM_SHARED | VM_HUGETLB | VM_LOCKED | VM_PFNMAP | VM_MIXEDMAP) or \
            (vf & (VM_WRITE | VM_MAYWRITE)) != VM_WRITE | VM_MAYWRITE:
        return i
    access = X86_PF_USER | X86_PF_WRITE
    if access_error(access, vma) or _any_mthp_enabled(k):
        return i
    cpu = task.cpu
    pa = k.page_alloc
    n = min(count - i, 512, (vma.vm_end - addr + 4095) >> 12)
    cand = pa._pcp_peek_order0(_GFP_ANON_ZEROED, cpu, n)
    if not cand:
        return i
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
    else:
        arrays = (mem.flags, mem.refcount, mem.mapcount, mem.mapping, mem.index,
                  mem.lru_next, mem.lru_prev)
        fb = lru_add + [0] * (PAGEVEC_SIZE - len(lru_add))
        lists = [list(lv.head), list(lv.tail), list(lv.nr)]
        delta = [0] * len(lv.nr)
        cand_a = cand
    prot = vma.vm_page_prot | _MKWRITE_DIRTY              # pte_mkwrite(pte_mkdirty())
    anon_flags = PG_anon | PG_anon_exclusive | (0 if vf & VM_DROPPABLE else PG_swapbacked)
    j, used, faults, nb = _get(compiled)(
        pt, rows, k.cpus[cpu].cr3, k.la57, base, stride, count, i,
        access, value, task.pkru, vma.vm_start, vma.vm_end, vma.vm_pgoff, prot, anon_flags,
        vma.anon_vma.id, cand_a, len(cand), *arrays, fb, len(lru_add), *lists, delta)
    if not faults and j == i:
        return i
    pa._pcp_commit_order0(_GFP_ANON_ZEROED, cpu, used)
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
    mm.rss_stat[MM_ANONPAGES] += faults                   # do_anonymous_page()
    stat[vmstat.NR_ANON_PAGES] += faults                  # folio_add_new_anon_rmap()
    stat[vmstat.PGFAULT] += faults                        # mm_account_fault()
    task.min_flt += faults
    return j
