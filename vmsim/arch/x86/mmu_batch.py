"""The processor running a stream of user accesses: one call per chunk, not per access.

A trace is an array of (address, kind, size) accesses. The CPU executes them in order:
each access is checked for canonical form (a non-canonical one raises #GP), split at
page boundaries (a load or store that straddles two pages is two translations, as the
hardware splits it), translated by the MMU walk (vmsim.arch.x86.mmu.translate, which
sets Accessed and Dirty in the entries it uses) and, for a store, written into the
frame's contents. Everything in :func:`access_chunk` is arrays and ints, so numba
compiles it over the very arrays the model keeps (the page-table pool, mem_map's
private words, the page-data pool); it returns to Python only for what the kernel must
handle: a #PF, a #GP, or a store the compiled code cannot place (a frame whose data
needs a new full-page row). The Python side (:func:`run_accesses`) then enters the
kernel through the IDT as :mod:`vmsim.arch.x86.cpu` does, and resumes the chunk at the
access that trapped, as the CPU re-executes the faulting instruction.

With Machine(tlb=...) the translation is the CPU's TLB lookup in front of the walk
(vmsim.arch.x86.tlb.tlb_translate, inlined the same way); without it every translation
is a walk.
"""
import numpy as np

from vmsim.arch.x86 import cpu as _cpu
from vmsim.arch.x86 import mmu as _mmu
from vmsim.arch.x86.mm.fault import pt_regs, is_vsyscall_vaddr
from vmsim.arch.x86.traps import exc_page_fault, exc_general_protection
from vmsim.arch.x86.mmu import translate

# Access kinds, as a trace records them (vmsim.ACCESS_READ / _WRITE / _EXEC).
ACCESS_READ = 0
ACCESS_WRITE = 1
ACCESS_EXEC = 2

# The #PF error code bits of a user access of each kind (X86_PF_USER, _WRITE, _INSTR).
_PF_USER = 4
_PF_WRITE = 2
_PF_INSTR = 16

# Why access_chunk returned early (out[0]).
_EXIT_FAULT = 1       # out[1] error code, out[2] address (CR2)
_EXIT_STORE = 2       # out[1] bytes, out[2] physical address: Python stores them
_EXIT_GP = 3          # out[2] the non-canonical address
_EXIT_STALE = 4       # the stale-TLB checker found a hit the tables do not back
_U64 = (1 << 64) - 1


def _store(rows, pool, phys, n, value):
    """Store ``n`` bytes ``value`` at ``phys`` if the frame's data encoding allows it
    without a new pool row (vmsim.mm.page_data); return False if Python must do it.

    Mirrors PageData.write: a full-page row takes the bytes; a zero frame takes a run of
    up to two bytes inline; an inline run at the same offset is replaced by one at least
    as long; zeros that change no byte change nothing."""
    pfn = phys >> 12
    off = phys & 0xFFF
    h = rows[pfn]
    if h < 0:
        b = (~h) * 4096 + off
        for j in range(n):
            pool[b + j] = value
        return True
    rep = value
    if n == 2:
        rep = value | (value << 8)
    if h == 0:
        if value == 0:
            return True
        if n <= 2:
            rows[pfn] = off | (n << 12) | (rep << 15)
            return True
        return False
    ioff = h & 0xFFF
    ilen = (h >> 12) & 7
    if ioff == off and n <= 2 and n >= ilen:
        rows[pfn] = off | (n << 12) | (rep << 15)
        return True
    if value == 0 and (off + n <= ioff or off >= ioff + ilen):
        return True
    return False


def _walk(pt, rows, cr3_pfn, la57, addr, access, pkru, ent, geo, clock, tstats, cpu, pcid,
          check, bad):
    """The translation without a TLB model: the MMU walk every time (the TLB arguments
    are unused; with Machine(tlb=...) the CPU's TLB lookup takes this place)."""
    return translate(pt, rows, cr3_pfn, la57, addr, access, pkru)


def access_chunk(pt, rows, pool, cr3_pfn, la57, addrs, kinds, sizes, i, done, n, value,
                 pkru, out, stats, ent, geo, clock, tstats, cpu, pcid, check, bad):
    """Run accesses i..n-1 (the first ``done`` bytes of access i already done); return
    the index of the access that stopped (out[] says why, out[3] its bytes done), or n.

    ``sizes`` empty means every access is one byte. stats[0] counts translations.
    ``ent`` .. ``bad``: the CPU's TLB state (vmsim.arch.x86.tlb), used when the
    translation is the TLB's (``_translate``); ``check``: the stale-TLB checker."""
    top_shift = 47
    if la57:
        top_shift = 56
    has_sizes = len(sizes) > 0
    while i < n:
        a = addrs[i]
        kind = kinds[i]
        size = 1
        if has_sizes:
            size = sizes[i]
        access = _PF_USER
        if kind == 1:
            access = _PF_USER | _PF_WRITE
        elif kind == 2:
            access = _PF_USER | _PF_INSTR
        while done < size:
            ca = a + done
            top = ca >> top_shift
            if top != 0 and top != -1:
                out[0] = _EXIT_GP
                out[2] = ca
                out[3] = done
                return i
            off = ca & 0xFFF
            c = size - done
            if c > 4096 - off:
                c = 4096 - off
            r = _translate(pt, rows, cr3_pfn, la57, ca, access, pkru, ent, geo, clock, tstats,
                           cpu, pcid, check, bad)
            stats[0] += 1
            if check and bad[0]:
                out[0] = _EXIT_STALE
                out[3] = done
                return i
            if r < 0:
                out[0] = _EXIT_FAULT
                out[1] = ~r
                out[2] = ca
                out[3] = done
                return i
            if kind == 1 and not _store(rows, pool, r, c, value):
                out[0] = _EXIT_STORE
                out[1] = c
                out[2] = r
                out[3] = done
                return i
            done += c
        done = 0
        i += 1
    return n


_builds = {}


def _build(use_tlb, compiled):
    """access_chunk over globals in which ``_translate`` is the TLB lookup (use_tlb) or
    the plain walk, and (compiled) everything is the numba build, so numba inlines it."""
    key = (use_tlb, compiled)
    if key not in _builds:
        import types
        g = dict(access_chunk.__globals__)
        if use_tlb:
            from vmsim.arch.x86 import tlb as _hwtlb
            g["_translate"] = _inlined_tlb(_hwtlb) if compiled else _hwtlb.tlb_translate
        if compiled:
            from vmsim._jitcache import _njit
            if not use_tlb:
                # Inlined at numba's IR level: twice the speed of a call per access.
                gw = dict(g)
                gw["translate"] = _njit(translate, nogil=True, inline="always")
                g["_translate"] = _njit(types.FunctionType(_walk.__code__, gw, "_walk"), nogil=True,
                                        inline="always")
            g["_store"] = _njit(_store, nogil=True, inline="always")
            # numba's cache keys a function by its qualified name and line, not by its
            # globals: the TLB build gets a name of its own.
            name = "access_chunk_tlb" if use_tlb else "access_chunk"
            code = access_chunk.__code__.replace(co_name=name, co_qualname=name)
            fn = _njit(types.FunctionType(code, g, name), nogil=True)
        else:
            if not use_tlb:
                g["_translate"] = _walk
            fn = types.FunctionType(access_chunk.__code__, g, "access_chunk")
        _builds[key] = fn
    return _builds[key]


def _inlined_tlb(hw):
    """tlb_translate and the functions it calls, built as tlb.compiled() builds them but
    inlined into the chunk loop (numba inline='always')."""
    import types
    from vmsim._jitcache import _njit
    g = dict(vars(hw))
    for name in hw._FUNCS:
        fn = getattr(hw, name)
        g[name] = _njit(types.FunctionType(fn.__code__, g, name), nogil=True, inline="always")
    return g["_tlb_translate"]


def compiled():
    """access_chunk compiled by numba (no TLB model), cached per user."""
    return _build(False, True)


def _impl(use_tlb):
    """The chunk loop, compiled when the MMU walk (or the TLB model's loops) is
    (cpu._impl), else Python."""
    if _cpu._impl["tlb_compiled" if use_tlb else "compiled"]:
        try:
            return _build(use_tlb, True), True
        except ImportError:
            _cpu._use_compiled(False)
    return _build(use_tlb, False), False


def run_accesses(k, task, addrs, kinds, sizes, value, counter=None):
    """Run the accesses of the arrays in order on ``task``'s CPU, taking faults.

    Returns (n, 0) when all completed, else (i, done): access i got a signal (the task's
    signals say which) after ``done`` of its bytes; the accesses before it took effect.
    ``counter[0]`` (a list) gets the translations made (re-walks after faults included).
    """
    hw = getattr(k, "tlb", None)
    if _cpu._lazy[hw is not None]:
        _cpu._jit_for(k, len(addrs))   # numba once the work pays for it
    fn, compiled_ = _impl(hw is not None)
    if compiled_:
        pt, rows = k.ptpool.arr, k.mem.np_private
        pool = k.page_data.pool.reshape(-1)
        out = np.zeros(4, dtype=np.int64)
        stats = np.zeros(1, dtype=np.int64)
    else:
        pt, rows = k.ptpool.mv, k.mem.private
        pool = k.page_data._mv
        out = [0, 0, 0, 0]
        # Python ints, as the compiled code's int64 arithmetic sees them.
        addrs, kinds, sizes = addrs.tolist(), kinds.tolist(), sizes.tolist()
        stats = [0]
    n = len(addrs)
    cpu = task.cpu
    la57 = k.la57
    pkru = task.pkru
    if hw is not None:
        from vmsim.arch.x86.mm.tlb import _prepare_user_access, _kernel_entry
        tlb_args = [hw.ent, hw.geo, hw.clock, hw.stats, cpu, 0, 1 if k.tlb_check else 0, hw.bad]
    else:
        tlb_args = [_NO_ENT, _NO_2D, _NO_1D, _NO_2D, cpu, 0, 0, _NO_1D]
    i = done = 0
    last = None
    while True:
        if hw is not None:
            _prepare_user_access(k, cpu)          # PTI's deferred user-PCID flush
            tlb_args[5] = hw.cur_pcid[cpu]
        i = fn(pt, rows, pool, k.cpus[cpu].cr3, la57, addrs, kinds, sizes, i, done, n, value,
               pkru, out, stats, *tlb_args)
        if counter is not None:
            counter[0] += int(stats[0])
        stats[0] = 0
        if i >= n:
            return n, 0
        why, arg, where, done = out.tolist() if compiled_ else out
        if why == _EXIT_STALE:
            from vmsim.arch.x86.cpu import _stale_tlb_report
            _stale_tlb_report(k)                  # raises
        if why == _EXIT_STORE:
            k.page_data.write(where >> 12, where & 0xFFF, bytes((value,)) * arg)
            done += arg
            continue
        where &= _U64
        if why == _EXIT_GP:
            exc_general_protection(k, pt_regs(where), 0)
            return i, done
        fetch = kinds[i] == ACCESS_EXEC
        if hw is not None:
            _kernel_entry(k, cpu)
        exc_page_fault(k, pt_regs(where if fetch else 0), arg, where)
        if task.signals:
            return i, done
        if fetch and is_vsyscall_vaddr(where):
            # The kernel emulated the vsyscall: the call ran, no bytes were fetched.
            i += 1
            done = 0
            continue
        if last == (i, done, arg):
            raise AssertionError(f"fault loop at {where:#x} error code {arg:#x}")
        last = (i, done, arg)


# Stand-ins for the TLB arrays when the machine has no TLB model (never read then).
_NO_ENT = np.zeros((1, 1, 4), dtype=np.int64)
_NO_2D = np.zeros((1, 1), dtype=np.int64)
_NO_1D = np.zeros(8, dtype=np.int64)
