"""A CPU running user code: loads, stores and fetches through the MMU, with exceptions.

Each access is checked for canonical form (a non-canonical address raises #GP, not
#PF), translated by the MMU walk (vmsim.arch.x86.mmu), and on a fault enters the
kernel through the IDT (exc_page_fault with CR2 and the error code) and is retried,
as the CPU re-executes the faulting instruction. When the kernel queued a signal,
the access stops there and the caller delivers it.
"""
import numpy as np

from vmsim._jitcache import _worth_compiling
from vmsim.arch.x86 import mmu
from vmsim.arch.x86 import tlb as _hwtlb
from vmsim.arch.x86.mm.tlb import _prepare_user_access, _kernel_entry
from vmsim.arch.x86.traps import exc_page_fault, exc_general_protection
from vmsim.arch.x86.mm.fault import pt_regs, is_vsyscall_vaddr
from vmsim.arch.x86.pgtable_types import X86_PF_USER, X86_PF_WRITE, X86_PF_INSTR, X86_PF_PROT
from vmsim.mm import _fault_batch, _filemap_batch

ACCESS_READ = X86_PF_USER
ACCESS_WRITE = X86_PF_USER | X86_PF_WRITE
ACCESS_FETCH = X86_PF_USER | X86_PF_INSTR

_impl = {"translate": mmu.translate, "_touch_batch": mmu._touch_batch, "compiled": False,
         "tlb_translate": _hwtlb.tlb_translate, "tlb_touch_batch": _hwtlb.tlb_touch_batch,
         "tlb_compiled": False}
# [walk, TLB model]: True while that part runs as plain Python only until its work pays
# for numba (vmsim._jitcache); False once compiled, or plain Python for good.
_lazy = [False, False]
# A TLB-model access in plain Python costs about three plain walks.
_TLB_WEIGHT = 3


def _use_compiled(flag: bool):
    """Switch the MMU walk and the TLB model's loops between plain Python and their
    numba builds, for good."""
    _lazy[:] = [False, False]
    _use(flag, flag)


def _use(walk: bool, tlb: bool):
    if walk:
        tr, tb = mmu.compiled()
        _impl.update(translate=tr, _touch_batch=tb, compiled=True)
    else:
        _impl.update(translate=mmu.translate, _touch_batch=mmu._touch_batch, compiled=False)
    if tlb:
        _impl.update(tlb_translate=_compile_tlb_on_first_use("tlb_translate"),
                     tlb_touch_batch=_compile_tlb_on_first_use("tlb_touch_batch"),
                     tlb_compiled=True)
    else:
        _impl.update(tlb_translate=_hwtlb.tlb_translate, tlb_touch_batch=_hwtlb.tlb_touch_batch,
                     tlb_compiled=False)


def _jit_for(k, n: int) -> bool:
    """Before a batch of ``n`` accesses on ``k``: load the numba build of the walk (or,
    on a machine with a TLB model, of the TLB loops) once the work pays for it
    (vmsim._jitcache); return whether that build runs."""
    tlb = k.tlb is not None
    if _lazy[tlb] and _worth_compiling(n * _TLB_WEIGHT if tlb else n, "tlb" if tlb else "walk"):
        _lazy[tlb] = False
        try:
            _use(_impl["compiled"] or not tlb, _impl["tlb_compiled"] or tlb)
        except ImportError:              # numba present but unusable: plain Python
            _use_compiled(False)
    return _impl["tlb_compiled" if tlb else "compiled"]


def _compile_tlb_on_first_use(name):
    def _first_call(*args):
        try:
            ns = _hwtlb.compiled()
            _impl.update(tlb_translate=ns.tlb_translate, tlb_touch_batch=ns.tlb_touch_batch)
        except ImportError:              # numba present but unusable: plain Python
            _use_compiled(False)
        return _impl[name](*args)
    return _first_call


def _s64(addr: int) -> int:
    """Return a 64-bit address as the int64 the MMU walk takes (kernel half negative)."""
    return addr - (1 << 64) if addr >> 63 else addr


def _is_canonical(k, addr: int) -> bool:
    bits = 57 if k.la57 else 48
    top = addr >> (bits - 1)
    return top == 0 or top == (1 << (65 - bits)) - 1


def _arrays(k, compiled: bool):
    """The table pool and mem_map.private as the walk takes them: numpy arrays for
    the compiled build, memoryviews (over the same memory) for plain Python."""
    if compiled:
        return k.ptpool.arr, k.mem.np_private
    return k.ptpool.mv, k.mem.private


def _data_pool(k, compiled: bool):
    """The page-data rows as the access loops store into them (page_data._store)."""
    if compiled:
        return k.page_data.pool.reshape(-1)
    return k.page_data._mv


EMULATED = -2


def _translate(k, task, addr: int, access: int, regs=None, pages: int = 0, tried=None,
               faults=None):
    """Return the physical address for one access, taking faults; None if a signal
    was queued (the task's signals say which); EMULATED when the kernel emulated the
    access instead (a vsyscall fetch).

    ``pages``: a store is the first of one per page over that many pages
    (Process.write): its write fault may start vmsim's run of the faults of the pages
    after it too (mm/_fault_batch.py, storing nothing: the caller stores each page's
    bytes once it is translated); ``tried[0]`` is set False when a run took nothing
    (the caller's next pages need not try again). ``faults[0]`` (a list) counts the
    times the kernel ran (a fault handled, or vmsim's run of them)."""
    if not _is_canonical(k, addr):
        exc_general_protection(k, regs or pt_regs(0), 0)
        return None
    if _lazy[k.tlb is not None]:
        _jit_for(k, 1)
    if k.tlb is not None:
        return _translate_tlb(k, task, addr, access, regs or pt_regs(addr if access & X86_PF_INSTR else 0),
                              faults)
    cr3 = k.cpus[task.cpu].cr3
    regs = regs or pt_regs(addr if access & X86_PF_INSTR else 0)
    last = None
    while True:
        pt, rows = _arrays(k, _impl["compiled"])
        r = _impl["translate"](pt, rows, cr3, k.la57, _s64(addr), access, task.pkru)
        if r >= 0:
            return r
        if pages and (~r == ACCESS_WRITE or ~r == ACCESS_WRITE | X86_PF_PROT):
            last_addr = addr + (pages - 1) * 4096
            if last_addr >> 63 == addr >> 63 and _is_canonical(k, last_addr):
                if _lazy[0]:
                    _jit_for(k, pages)       # the run walks up to ``pages`` accesses
                    pt, rows = _arrays(k, _impl["compiled"])
                if _fault_batch._run(k, task, addr, ~r, _s64(addr), 4096, pages, 0, 0,
                                     _impl["compiled"], pt, rows, False) >= 0:
                    if faults is not None:
                        faults[0] += 1
                    pages = 0        # the access's own fault was taken: translate again
                    continue
            pages = 0
            if tried is not None:
                tried[0] = False
        if faults is not None:
            faults[0] += 1
        exc_page_fault(k, regs, ~r, addr)
        if task.signals:
            return None
        if access & X86_PF_INSTR and is_vsyscall_vaddr(addr):
            return EMULATED
        if ~r == last:
            # The CPU would retry forever: a fault the kernel claims to have fixed
            # keeps happening. That is a model bug, not a user error.
            raise AssertionError(f"fault loop at {addr:#x} error code {~r:#x}")
        last = ~r


def _store(k, task, addr: int, data, counter=None) -> bool:
    """vmsim: one store instruction of ``data`` at ``addr`` (Process.write): every page
    it covers is translated, faults taken, before any byte is written: on x86 a fault
    restores the state from before the faulting instruction (Intel SDM vol. 3, 6.5), so
    a store straddling into a page that signals writes nothing (seen on this machine).
    Returns False, nothing written, when a signal was queued. ``counter[0]`` (a list)
    gets the translations made (one per page, one more per fault), as
    mmu_batch.run_accesses counts them: it runs such a store of a trace here.

    The CPU re-executes the instruction after each fault, translating its pages from
    the first again. vmsim translates on and re-translates all once at the end when a
    fault came after the first page (the kernel may have changed an earlier page's
    entry: reclaim); while no fault runs the tables do not change, so the pass that
    met none gives the frames written. The tables end as the CPU's retries leave them;
    only the count of TLB lookups of the earlier pages differs."""
    size = len(data)
    if not size:
        return True
    # The pages from this one on (a write fault may take theirs in a run; after a
    # run that took nothing, not for the next 16 pages).
    pages = ((addr + size - 1) >> 12) - (addr >> 12) + 1
    regs = pt_regs(0)                    # a data access: the instruction is elsewhere
    while True:
        phys = []
        faults = [0]
        runs = [True]
        resume = 0
        again = False
        done = 0
        while done < size:
            a = (addr + done) & 0xFFFFFFFFFFFFFFFF        # the address wraps as the CPU's
            n = min(size - done, 4096 - (a & 0xFFF))
            page = (done + (addr & 0xFFF)) >> 12
            before = faults[0]
            r = _translate(k, task, a, ACCESS_WRITE, regs, pages - page if page >= resume else 0,
                           runs, faults)
            if counter is not None:
                counter[0] += 1 + faults[0] - before
            if not runs[0]:
                resume = page + 16
                runs[0] = True
            if r is None:
                return False
            if done and faults[0] != before:
                again = True
            phys.append((r, done, n))
            done += n
        if not again:
            break
    for r, done, n in phys:
        k.page_data.write(r >> 12, r & 0xFFF, data[done:done + n])
    return True


def _touch(k, task, base: int, stride: int, count: int, write: bool, value: int) -> int:
    """Run ``count`` accesses at base + i*stride; return the index reached (count if all
    completed, else the index of the access that got a signal)."""
    access = ACCESS_WRITE if write else ACCESS_READ
    if _lazy[k.tlb is not None]:
        _jit_for(k, count)
    last = base + (count - 1) * stride
    # The batch runs over signed int64 addresses: the whole run must be canonical and
    # stay in one half (bit 63). Otherwise run the part that is, then #GP at the first
    # non-canonical access, or go on in the kernel half (wrapping at 2**64 as the CPU).
    if not (_is_canonical(k, base) and last < 1 << 64 and _is_canonical(k, last)
            and base >> 63 == last >> 63):
        # n: how many accesses from base stay canonical in base's half (addresses
        # only grow: the user half ends at 1 << (bits - 1), the kernel half at 2**64).
        bits = 57 if k.la57 else 48
        if not _is_canonical(k, base):
            n = 0
        else:
            limit = 1 << 64 if base >> 63 else 1 << (bits - 1)
            n = min(count, (limit - base + stride - 1) // stride)
        i = _touch(k, task, base, stride, n, write, value) if n else 0
        if i < n:
            return i
        a = (base + n * stride) & 0xFFFFFFFFFFFFFFFF
        if not _is_canonical(k, a):
            exc_general_protection(k, pt_regs(a), 0)
            return n
        return n + _touch(k, task, a, stride, count - n, write, value)
    if k.tlb is not None:
        return _touch_tlb(k, task, base, stride, count, write, value)
    compiled = _impl["compiled"]
    out = np.zeros(2, dtype=np.int64) if compiled else [0, 0]
    cr3 = k.cpus[task.cpu].cr3
    la57 = k.la57
    pkru = task.pkru             # CR4.PKE clear: task.pkru stays 0
    batch = _impl["_touch_batch"]
    regs = pt_regs(0)            # data accesses: the instruction pointer is elsewhere
    sbase = _s64(base)
    last_i = last_err = -1
    i = 0
    # The pool and mem_map never move, so their views are fetched once.
    pt, rows = _arrays(k, compiled)
    pool = _data_pool(k, compiled)
    while i < count:
        i = batch(pt, rows, pool, cr3, la57, sbase, stride, count, i, access, value, out, pkru)
        if i >= count:
            break
        err, where = out.tolist() if compiled else out
        if err == -1:
            k.page_data.write(where >> 12, where & 0xFFF, bytes((value,)))
            i += 1
            continue
        if err == ACCESS_WRITE or err == ACCESS_WRITE | X86_PF_PROT:
            # vmsim's compiled run of anonymous write faults (first touch, COW, reuse;
            # the kernel-named path, fault by fault, when it does not apply).
            j = _fault_batch._run(k, task, where & 0xFFFFFFFFFFFFFFFF, err, sbase, stride,
                                  count, i, value, compiled, pt, rows)
            if j >= 0:
                i = j
                continue
        elif err == ACCESS_READ:
            # vmsim's compiled run of cached file read faults (fault-around).
            j = _filemap_batch._read_run(k, task, where & 0xFFFFFFFFFFFFFFFF, err, sbase,
                                         stride, count, i, compiled, pt, rows)
            if j >= 0:
                i = j
                continue
        exc_page_fault(k, regs, err, where & 0xFFFFFFFFFFFFFFFF)
        if task.signals:
            return i
        if i == last_i and err == last_err:
            raise AssertionError(f"fault loop at {base + i * stride:#x} error code {err:#x}")
        last_i, last_err = i, err
    return count


def _access_fault_run(k, task, addrs, kinds, sizes, i, err, value, compiled, counter):
    """vmsim: Process.access met the write fault ``err`` at access i. When the accesses
    from i on are one-byte stores at a constant stride (at least _fault_batch._MIN_RUN
    of them, without a TLB model), run them as Process.touch does: vmsim's run of their
    write faults and stores (mm/_fault_batch.py). Returns the index of the access still
    to do after the run, or -1 when it did nothing. ``counter[0]`` gets the
    translations the chunk loop would have made (one per access, one more per fault,
    the trapped access's first one already counted)."""
    n = len(addrs)
    m = _fault_batch._MIN_RUN
    if k.tlb is not None or n - i < m or \
            (err != ACCESS_WRITE and err != ACCESS_WRITE | X86_PF_PROT):
        return -1
    base = int(addrs[i])
    stride = int(addrs[i + 1]) - base
    if stride <= 0 or int(addrs[i + 2]) - int(addrs[i + 1]) != stride or kinds[i + 1] != 1:
        return -1                      # the cheap test before the arrays'
    end = min(n, i + 32768)
    a = np.asarray(addrs[i:end], dtype=np.int64)
    same = (np.diff(a) == stride) & (np.asarray(kinds[i + 1:end]) == 1)
    if len(sizes):
        same &= np.asarray(sizes[i + 1:end]) == 1
    count = 1 + (len(same) if same.all() else int(np.argmin(same)))
    last = base + (count - 1) * stride
    if count < m or (len(sizes) and sizes[i] != 1) or base >> 63 != last >> 63 or \
            not _is_canonical(k, base & 0xFFFFFFFFFFFFFFFF) or \
            not _is_canonical(k, last & 0xFFFFFFFFFFFFFFFF):
        return -1
    pt, rows = _arrays(k, compiled)
    flt = task.min_flt
    j = _fault_batch._run(k, task, base & 0xFFFFFFFFFFFFFFFF, err, base, stride, count, 0,
                          value, compiled, pt, rows)
    if j < 0:
        return -1
    if counter is not None:
        counter[0] += j + task.min_flt - flt - 1
    return i + j


# --- the access path through the CPU's TLB (Machine(tlb=...)) ---------------------------
def _translate_tlb(k, task, addr, access, regs, faults=None):
    """_translate() through the CPU's TLB (vmsim.arch.x86.tlb.tlb_translate)."""
    cpu = task.cpu
    hw = k.tlb
    last = None
    check = 1 if k.tlb_check else 0
    while True:
        _prepare_user_access(k, cpu)
        pt, rows = _arrays(k, _impl["tlb_compiled"])
        r = _impl["tlb_translate"](pt, rows, k.cpus[cpu].cr3, k.la57, _s64(addr), access, task.pkru,
                                   hw.ent, hw.geo, hw.clock, hw.stats, cpu, hw.cur_pcid[cpu],
                                   check, hw.bad)
        if check and hw.bad[0]:
            _stale_tlb_report(k)
        if r >= 0:
            return r
        if faults is not None:
            faults[0] += 1
        _kernel_entry(k, cpu)
        exc_page_fault(k, regs, ~r, addr)
        if task.signals:
            return None
        if access & X86_PF_INSTR and is_vsyscall_vaddr(addr):
            return EMULATED
        if ~r == last:
            raise AssertionError(f"fault loop at {addr:#x} error code {~r:#x}")
        last = ~r


def _touch_tlb(k, task, base, stride, count, write, value):
    """The batch loop of _touch() through the CPU's TLB."""
    access = ACCESS_WRITE if write else ACCESS_READ
    compiled = _impl["tlb_compiled"]
    out = np.zeros(2, dtype=np.int64) if compiled else [0, 0]
    cpu = task.cpu
    hw = k.tlb
    check = 1 if k.tlb_check else 0
    regs = pt_regs(0)
    sbase = _s64(base)
    last_i = last_err = -1
    i = 0
    pt, rows = _arrays(k, compiled)
    pool = _data_pool(k, compiled)
    while i < count:
        _prepare_user_access(k, cpu)
        i = _impl["tlb_touch_batch"](pt, rows, pool, k.cpus[cpu].cr3, k.la57, sbase, stride, count, i,
                                     access, value, out, task.pkru, hw.ent, hw.geo, hw.clock,
                                     hw.stats, cpu, hw.cur_pcid[cpu], check, hw.bad)
        if i >= count:
            break
        err, where = out.tolist() if compiled else out
        if err == -2:
            _stale_tlb_report(k)
        if err == -1:
            k.page_data.write(where >> 12, where & 0xFFF, bytes((value,)))
            i += 1
            continue
        _kernel_entry(k, cpu)
        exc_page_fault(k, regs, err, where & 0xFFFFFFFFFFFFFFFF)
        if task.signals:
            return i
        if i == last_i and err == last_err:
            raise AssertionError(f"fault loop at {base + i * stride:#x} error code {err:#x}")
        last_i, last_err = i, err
    return count


_STALE_WHAT = {1: "the address is not mapped any more", 2: "the tables map another frame",
               3: "the tables no longer allow writes", 4: "the tables no longer allow user access",
               5: "the tables no longer allow execution", 6: "the protection key changed",
               7: "a paging-structure cache points to a table no longer in use"}


def _stale_tlb_report(k):
    """The stale-TLB checker found a hit (or a paging-structure-cache use) the tables no
    longer back: raise AssertionError naming the CPU, the entry, the operation that
    changed the tables (from the debug record) and the flush that did not reach it."""
    bad = k.tlb.bad
    n, cpu, addr, val, walked, code, pcid = (int(x) for x in bad[:7])
    bad[:] = 0
    addr &= (1 << 64) - 1
    pfn = (val & 0x000FFFFFFFFFF000) >> 12
    frame = ""
    if code != 7 and pfn < k.nr_pages:
        frame = f" (pfn {pfn:#x} is {'free' if k.page_alloc.is_free(pfn) else 'in use'})"
    mm = k.cpus[cpu].tlbstate.loaded_mm
    ops = [p for p in k.tlb_pending if p[0] is mm and p[1] <= addr < p[2]]
    if ops:
        p = ops[-1]
        why = (f"{p[3] if len(p) > 3 else 'an operation'} changed [{p[1]:#x}, {p[2]:#x}) "
               f"and no flush_tlb_mm_range covered it")
    else:
        flushes = [f for f in k.tlb_flushes if f[0] is mm and (f[2] == -1 or f[1] <= addr < f[2])]
        why = ("a flush of it was issued but did not reach this CPU's TLB" if flushes else
               "no flush of it was issued")
    raise AssertionError(
        f"stale TLB entry on CPU {cpu} (PCID {pcid}): {addr:#x} -> pfn {pfn:#x}{frame}, entry "
        f"{val & 0xFFFFFFFFFFFFFFFF:#x}, tables now {walked & 0xFFFFFFFFFFFFFFFF:#x}: "
        f"{_STALE_WHAT.get(code, code)}; {why}")


def _default():
    """Use the numba build of the walk unless VMSIM_NUMBA=0 or numba is missing.

    numba is imported and the walk compiled (or loaded from the cache) once the work
    pays for it (_jit_for), not at import and not for a first few accesses, so
    ``import vmsim`` and a first fault stay cheap. Until then the same walk runs as
    plain Python over the same arrays, with identical results.
    """
    import os
    import importlib.util
    if os.environ.get("VMSIM_NUMBA", "1") == "0" or importlib.util.find_spec("numba") is None:
        _use_compiled(False)
        return
    _use_compiled(False)
    _lazy[:] = [True, True]


_default()
