"""The processor running a stream of user accesses: one call per chunk, not per access.

A trace is an array of (address, kind, size) accesses. The CPU executes them in order:
each access is checked for canonical form (a non-canonical one raises #GP), split at
page boundaries (a load that straddles two pages is two translations, as the hardware
splits it), translated by the MMU walk (vmsim.arch.x86.mmu.translate, which sets
Accessed and Dirty in the entries it uses) and, for a store, written into the frame's
contents. Everything in :func:`access_chunk` is arrays and ints, so numba compiles it
over the very arrays the model keeps (the page-table pool, mem_map's private words, the
page-data pool); it returns to Python only for what the kernel must handle: a #PF, a
#GP, a store the compiled code cannot place (a frame whose data needs a new full-page
row), or a store over more than one page, which cpu._store runs whole (every page
translated before any byte is written: a store that faults writes nothing). The Python
side (:func:`run_accesses`) then enters the kernel through the IDT as
:mod:`vmsim.arch.x86.cpu` does, and resumes the chunk at the access that trapped, as
the CPU re-executes the faulting instruction.

With Machine(tlb=...) the translation is the CPU's TLB lookup in front of the walk
(vmsim.arch.x86.tlb's first-level probe inlined, its miss path a call, inlined too in
a geometry's own build); without it every translation is a walk. A long run through one TLB geometry switches to a build for that geometry
alone (tlb.compiled(geo): its sets and ways are constants there; _geometry_build),
which leaves the same state. Either way a repeat of a translation (the same page and kind
again) is not looked up again when that is state-equivalent (access_chunk).
"""
import time

import numpy as np

from vmsim._jitcache import _untraced, _cached
from vmsim.arch.x86 import cpu as _cpu
from vmsim.arch.x86 import tlb as _hwtlb
from vmsim.arch.x86.mm.fault import pt_regs, is_vsyscall_vaddr
from vmsim.arch.x86.traps import exc_page_fault, exc_general_protection
from vmsim.arch.x86.mmu import _walk, _P, _RW, _US, _A, _D, _PS, _XD, _PFN
from vmsim.arch.x86.tlb import (l1_hit, tlb_miss, _tlb_check_hit, _ordered, _set_first, _set_use,
                                S_L1I_4K, S_L1D_4K, G_SIZES, G_WAYS, G_FILL, ST_HIT, E_TAG, E_CTX,
                                E_VAL, E_LRU)
from vmsim.mm.page_data import _store

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
_EXIT_SPLIT = 5       # out[2] a store over more than one page: Python runs it (cpu._store)
_U64 = (1 << 64) - 1
# p.access accesses per unit of the plain walk's work (vmsim._jitcache; run_accesses).
_ACCESSES_PER_UNIT = 3
# A TLB geometry's own build (_build with geo) takes random-page misses ~1.5x as fast
# as the generic one (bench_replay: 6.0 against 3.8 M/s), but compiling it takes ~35 s,
# loading it from numba's cache well under 1 s.
# So it runs once the geometry's accesses reach _GEOMETRY_LOAD_AFTER if numba's cache
# has it, else once the generic loop has spent _GEOMETRY_COMPILE_AFTER seconds on the
# geometry (ski rental: at most about twice the time of the better choice made ahead).
_GEOMETRY_LOAD_AFTER = 1 << 20
_GEOMETRY_COMPILE_AFTER = 20.0
_geometry_work = {}                     # key: [accesses, seconds in the generic loop]


# The walk state access_chunk keeps across its accesses, ``w``, an int64 array: the PMD
# tables walked through before, by 1 GiB key (_W_PMD slots of 4: key, pool row, rights
# above, unused), then the root table's row and its level's shift.
_W_PMD = 8
_W_ROOT = 4 * _W_PMD
_W_SHIFT = _W_ROOT + 1
_W_LEN = _W_SHIFT + 1
_NO_KEY = 1 << 62                       # no address >> 30 (or >> 12) equals it


def _walk_start(w, rows, cr3_pfn, la57):
    """The walk state at the start of a chunk (the tables may have changed since the
    last): nothing known below the root."""
    for s in range(_W_PMD):
        w[4 * s] = _NO_KEY
    w[_W_ROOT] = rows[cr3_pfn]
    w[_W_SHIFT] = 48 if la57 else 39


def _walk_cached(pt, rows, cr3_pfn, la57, addr, access, pkru, w, ent, geo, clock, tstats,
                 cpu, pcid, check, bad):
    """The translation without a TLB model: mmu.translate's walk from the root, every
    time; returns (its result, 0: a repeat of a successful one needs nothing, see
    access_chunk).

    Within one chunk nothing but the walk itself writes the tables (a fault, the only way
    the kernel runs, ends the chunk), and the walk writes only Accessed and Dirty bits.
    So once a walk has gone through a PMD table (``w``), the entries above it are known:
    read with Accessed set, their rights kept. A walk in the same 1 GiB reads them again
    unchanged; it starts at that PMD table with those rights, which reads and writes
    what the walk from the root would. The PMD and PTE entries are read for every
    access: a present table pointer, or a leaf already allowing the access, with
    Accessed (and Dirty for a store) set needs no write, and is read inline; anything
    else is mmu._walk's. The TLB arguments are unused (with Machine(tlb=...) the TLB
    lookup takes this place)."""
    hi = addr >> 30
    s = (hi & (_W_PMD - 1)) * 4
    if hi != w[s]:
        r, pmd, pmd_rights, pte, pte_rights = _walk(pt, rows, w[_W_ROOT], w[_W_SHIFT], addr,
                                                    access, pkru, _RW | _US)
        if pmd >= 0:
            w[s] = hi
            w[s + 1] = pmd
            w[s + 2] = pmd_rights
        return r, 0
    row = w[s + 1]
    rights = w[s + 2]
    e = pt[row * 512 + ((addr >> 21) & 511)]
    if (e & (_P | _A | _PS)) != (_P | _A):
        return _walk(pt, rows, row, 21, addr, access, pkru, rights)[0], 0
    # The PMD entry points to a PTE table and has Accessed set: only read.
    rights = (rights & (e | ~(_RW | _US))) | (e & _XD)
    row = rows[(e & _PFN) >> 12]
    e = pt[row * 512 + ((addr >> 12) & 511)]
    need = _P | _A
    if access & _PF_USER:
        need |= _US
    if access & _PF_WRITE:
        need |= _RW | _D
    if ((e & (rights | ~(_RW | _US))) & need) == need:
        if access & _PF_INSTR:
            if (e | rights) >= 0:
                return (e & _PFN) | (addr & 0xFFF), 0
        elif pkru == 0 or not (e & rights & _US) or \
                not (pkru >> ((e >> 58) & 30)) & ((access & _PF_WRITE) | 1):
            # The protection key (bits 59..62; ``>> 58 & 30`` is twice it) allows it:
            # _walk's PKRU check of the key's AD bit, and WD for a store.
            return (e & _PFN) | (addr & 0xFFF), 0
    return _walk(pt, rows, row, 12, addr, access, pkru, rights)[0], 0


def _walk_hit(pt, rows, w, addr, access, pkru):
    """_walk_cached's translation when it only reads: the walk state knows the PMD table
    of ``addr``, the PMD entry points to a PTE table with Accessed set, and the PTE allows
    ``access`` with Accessed (and Dirty for a store) set. The physical address then, else
    -1 (and nothing read changes anything: _walk_cached decides then)."""
    hi = addr >> 30
    s = (hi & (_W_PMD - 1)) * 4
    if hi != w[s]:
        return -1
    e = pt[w[s + 1] * 512 + ((addr >> 21) & 511)]
    if (e & (_P | _A | _PS)) != (_P | _A):
        return -1
    rights = (w[s + 2] & (e | ~(_RW | _US))) | (e & _XD)
    e = pt[rows[(e & _PFN) >> 12] * 512 + ((addr >> 12) & 511)]
    need = _P | _A | _US
    if access & _PF_WRITE:
        need |= _RW | _D
    if ((e & (rights | ~(_RW | _US))) & need) != need:
        return -1
    if access & _PF_INSTR:
        if (e | rights) < 0:
            return -1
    elif pkru != 0 and (pkru >> ((e >> 58) & 30)) & ((access & _PF_WRITE) | 1):
        return -1
    return (e & _PFN) | (addr & 0xFFF)


# How many accesses ahead the compiled loops prefetch a PTE (_prefetch_pte,
# _prefetch_tlb_walk); the plain-Python build does not (_PREFETCH and _PREFETCH_TLB are
# each build's constants). 16: on random pages a walk that only reads takes ~20 ns, the
# PTE's cache miss several times that (8 and 32 measured no better).
_AHEAD = 16
_PREFETCH = False
_PREFETCH_TLB = False
# The build without a TLB model takes a walk that only reads (_walk_hit) before the full
# path, a read's in the repeats loop (access_chunk).
_WALK_HIT = False


def _prefetch_pte(pt, rows, w, addr):
    """Start loading the PTE a walk of ``addr`` will read, if the walk state knows its
    PMD table and that entry points to a PTE table: reads only (a prefetch changes no
    state), so a later access's cache miss overlaps this one's walk."""
    hi = addr >> 30
    s = (hi & (_W_PMD - 1)) * 4
    if hi == w[s]:
        e = pt[w[s + 1] * 512 + ((addr >> 21) & 511)]
        if (e & (_P | _PS)) == _P:
            _prefetch(pt, rows[(e & _PFN) >> 12] * 512 + ((addr >> 12) & 511))


def _prefetch_tlb_walk(pt, rows, cr3_pfn, la57, addr, w, ent, geo, cpu):
    """The TLB build's _prefetch_pte: start loading the PTE a walk of ``addr`` will read
    and the second-level TLB set its lookup will probe (its tags and contexts). Reads
    only. The TLB build keeps ``w`` for this alone: the PMD table of each 1 GiB walked
    to from the root (as _walk_cached does)."""
    hi = addr >> 30
    s = (hi & (_W_PMD - 1)) * 4
    if hi != w[s]:
        shift = 48 if la57 else 39
        row = rows[cr3_pfn]
        while shift > 21:
            e = pt[row * 512 + ((addr >> shift) & 511)]
            if (e & (_P | _PS)) != _P:
                return
            row = rows[(e & _PFN) >> 12]
            shift -= 9
        w[s] = hi
        w[s + 1] = row
    e = pt[w[s + 1] * 512 + ((addr >> 21) & 511)]
    if (e & (_P | _PS)) == _P:
        _prefetch(pt, rows[(e & _PFN) >> 12] * 512 + ((addr >> 12) & 511))
    l2 = geo[G_FILL + 3, 0]                 # where a data 4K translation is kept at level 2
    if l2 >= 0:
        first = _set_first(geo, l2, addr >> 12)
        last = first + geo[l2, G_WAYS] - 1
        _prefetch(ent, (cpu, E_TAG, first))
        _prefetch(ent, (cpu, E_TAG, last))
        _prefetch(ent, (cpu, E_CTX, first))
        _prefetch(ent, (cpu, E_CTX, last))


def _prefetch_none(arr, i):
    return


_prefetch = _prefetch_none


def _tlb(pt, rows, cr3_pfn, la57, addr, access, pkru, w, ent, geo, clock, tstats, cpu, pcid,
         check, bad):
    """The translation with Machine(tlb=...): the CPU's TLB lookup in front of the walk.
    The second value says which first-level 4K entry hit (tlb.l1_hit: a repeat hits it
    again, see access_chunk): its slot times 64 plus its way in its set; -1 for anything
    else.

    With the stale-TLB checker (``check``), a first-level hit is compared with the
    tables as tlb_miss compares every hit (tlb._tlb_check_hit); its repeats are not
    compared again: within a chunk the tables change only by Accessed and Dirty bits,
    which the comparison ignores, so a repeat of a hit that agreed with them agrees
    too (and one that did not ends the chunk)."""
    s = S_L1I_4K if access & _PF_INSTR else S_L1D_4K
    skip = -1
    if geo[s, G_SIZES] & 1:
        slot = l1_hit(ent, geo, clock, tstats, cpu, pcid, s, addr, access, pkru)
        if slot >= 0:
            val = ent[cpu, E_VAL, slot]
            if check:
                _tlb_check_hit(pt, rows, cr3_pfn, la57, addr, val, 0, cpu, pcid, bad)
            return (val & _PFN) | (addr & 0xFFF), slot * 64 + ((slot - _set_first(geo, s, addr >> 12)) & 63)
        if slot == -1:
            skip = s
    return tlb_miss(pt, rows, cr3_pfn, la57, addr, access, pkru, ent, geo, clock, tstats, cpu,
                    pcid, check, bad, skip), -1


def _again_walk(ent, geo, clock, tstats, cpu, slot, kind):
    """A repeat of a walk: it reads entries the first one left with Accessed (and
    Dirty) set, and writes nothing."""
    return


# _again_tlb's rare case, called, not inlined, in the compiled build: inlined there it
# made the repeats loop 1.15-1.45x as slow (its registers went to the stack).
_set_use_call = _set_use


def _again_tlb(ent, geo, clock, tstats, cpu, hit, kind):
    """A repeat of a first-level hit (tlb.l1_hit; ``hit`` as _tlb returns it): the same
    entry hits; its LRU state and the hit count move as l1_hit moves them (in a set
    that keeps an LRU word, mostly not at all: the entry is its most recent already)."""
    # One call per structure, so that in a geometry's build each folds to its kind of set.
    if kind == 2:
        _again_hit(ent, geo, clock, tstats, cpu, hit, S_L1I_4K)
    else:
        _again_hit(ent, geo, clock, tstats, cpu, hit, S_L1D_4K)


def _again_hit(ent, geo, clock, tstats, cpu, hit, s):
    """_again_tlb for first-level structure ``s``."""
    slot = hit >> 6
    if _ordered(geo, s):
        way = hit & 63
        if ent[cpu, E_LRU, slot - way] & 15 != way:
            _set_use_call(ent, geo, clock, cpu, s, slot - way, slot)
    else:
        c = clock[cpu, 0] + 1
        clock[cpu, 0] = c
        ent[cpu, E_LRU, slot] = c
    tstats[cpu, ST_HIT + 3 * s] += 1


def _store_mode(rows, frame, value):
    """What a store of ``value`` into ``frame`` (an address) does for the rest of a
    chunk, once page_data._store has taken one: the frame's data row offset in the pool
    (a full-page row stays one), -1 when nothing (zeros into a zero frame stay that), or
    -2 when _store must decide each time (an inline run)."""
    h = rows[frame >> 12]
    if h < 0:
        return (~h) * 4096
    if h == 0 and value == 0:
        return -1
    return -2


def access_chunk(pt, rows, pool, cr3_pfn, la57, addrs, kinds, sizes, i, done, n, value,
                 pkru, out, stats, w, ent, geo, clock, tstats, cpu, pcid, check, bad):
    """Run accesses i..n-1 (the first ``done`` bytes of access i already done); return
    the index of the access that stopped (out[] says why, out[3] its bytes done), or n.

    ``sizes`` empty means every access is one byte. stats[0] counts translations.
    ``w`` the walk state (_walk_start); ``ent`` .. ``bad``: the CPU's TLB state
    (vmsim.arch.x86.tlb), used when the translation is the TLB's (``_translate``);
    ``check``: the stale-TLB checker.

    Repeats: within a chunk the tables change only by Accessed and Dirty bits being
    set (a fault, the only way the kernel runs, ends it), and the TLB (if any) only by
    what translations do. So a translation of a 4 KiB page that succeeded (``slot`` >=
    0 from ``_translate``) is repeated for the next accesses of the same kind to the
    same page by ``_again``, without the lookup or walk, as long as every translation
    in between also returned a slot (a walk always does; a TLB lookup when it was a
    first-level hit, which changes nothing but LRU state and counts). A store that
    succeeded leaves a read of its page the same: it needed every right a read needs
    (protection key included) and set Accessed.

    Without a TLB model a new page's translation whose walk only reads (_walk_hit: the
    walk state knows the PMD table, the entries have Accessed, and Dirty for a store,
    set and allow the access) is taken before the full path, a read's in the repeats
    loop itself: it reads and sets what the full path's _walk_cached would; the full
    path is left the rest (a fault, an entry to update, a straddling access, a store
    _store cannot place). Random traces are mostly such walks. (Stores and fetches
    taken in the repeats loop too slowed its repeats by half: its values went to the
    stack.)"""
    _walk_start(w, rows, cr3_pfn, la57)
    top_shift = 47
    if la57:
        top_shift = 56
    has_sizes = len(sizes) > 0
    translations = 0
    why = 0
    # The last page (address >> 12) translated per kind, its slot (for _again), and
    # for stores the frame and what a store into it does (_store_mode).
    p0 = p1 = p2 = _NO_KEY
    s0 = s1 = s2 = 0
    f1 = 0
    sb = -2
    while i < n:
        if done == 0:
            # The repeats: accesses that stay in a page the last translation of their
            # kind found.
            while i < n:
                a = addrs[i]
                kind = kinds[i]
                size = 1
                if has_sizes:
                    size = sizes[i]
                    if size <= 0:
                        i += 1                   # nothing to access, nothing to translate
                        continue
                    if (a & 0xFFF) + size > 4096:
                        break
                pg = a >> 12
                if kind == 0:
                    if pg != p0:
                        # A new page: the walk of a read, when it only reads (below).
                        if not _WALK_HIT or _walk_hit(pt, rows, w, a, _PF_USER, pkru) < 0:
                            break
                        if _PREFETCH and i + _AHEAD < n:
                            _prefetch_pte(pt, rows, w, addrs[i + _AHEAD])
                        p0 = pg
                        s0 = 0
                    slot = s0
                elif kind == 1:
                    if pg != p1:
                        break
                    if sb >= 0:
                        b = sb + (a & 0xFFF)
                        for j in range(size):
                            pool[b + j] = value
                    elif sb == -2:
                        if not _store(rows, pool, f1 | (a & 0xFFF), size, value):
                            break                # the full path translates and exits
                        sb = _store_mode(rows, f1, value)
                    slot = s1
                else:
                    if pg != p2:
                        break
                    slot = s2
                _again(ent, geo, clock, tstats, cpu, slot, kind)
                translations += 1
                i += 1
            if i >= n:
                break
            if _WALK_HIT:
                # Without a TLB model: a store or fetch into a new page whose walk
                # only reads (_walk_hit) needs nothing the full path below would add
                # (a read's was tried in the loop).
                a = addrs[i]
                kind = kinds[i]
                size = 1
                if has_sizes:
                    size = sizes[i]
                if kind != 0 and (a & 0xFFF) + size <= 4096:
                    if _PREFETCH and i + _AHEAD < n:
                        _prefetch_pte(pt, rows, w, addrs[i + _AHEAD])
                    access = _PF_USER | _PF_WRITE
                    if kind == 2:
                        access = _PF_USER | _PF_INSTR
                    r = _walk_hit(pt, rows, w, a, access, pkru)
                    # (a store _store cannot place changes nothing: the full path's)
                    if r >= 0 and (kind != 1 or _store(rows, pool, r, size, value)):
                        if kind == 1:
                            p0 = p1 = a >> 12
                            s0 = s1 = 0
                            f1 = r & ~0xFFF
                            sb = _store_mode(rows, r, value)
                        else:
                            p2 = a >> 12
                            s2 = 0
                        translations += 1
                        i += 1
                        continue
        if _PREFETCH and i + _AHEAD < n:
            _prefetch_pte(pt, rows, w, addrs[i + _AHEAD])
        a = addrs[i]
        kind = kinds[i]
        size = 1
        if has_sizes:
            size = sizes[i]
        access = _PF_USER
        if kind == 1:
            access = _PF_USER | _PF_WRITE
            if (a & 0xFFF) + size > 4096:
                # A store is one instruction: when a page of it faults, x86 writes none
                # of its bytes (a fault restores the state from before the instruction,
                # Intel SDM vol. 3, 6.5). Python runs one over more than one page
                # (cpu._store: all its pages translated, then its bytes written).
                why = _EXIT_SPLIT
                out[2] = a
                break
        elif kind == 2:
            access = _PF_USER | _PF_INSTR
        while done < size:
            ca = a + done
            top = ca >> top_shift
            if top != 0 and top != -1:
                why = _EXIT_GP
                out[2] = ca
                break
            c = size - done
            if c > 4096 - (ca & 0xFFF):
                c = 4096 - (ca & 0xFFF)
            r, slot = _translate(pt, rows, cr3_pfn, la57, ca, access, pkru, w, ent, geo, clock,
                                 tstats, cpu, pcid, check, bad)
            translations += 1
            if check and bad[0]:
                why = _EXIT_STALE
                break
            if r < 0:
                why = _EXIT_FAULT
                out[1] = ~r
                out[2] = ca
                break
            if slot < 0:
                p0 = p1 = p2 = _NO_KEY
                # Not a first-level hit: in a trace where such lookups are common they
                # mostly walk, so the walk of the access _AHEAD on starts loading.
                if _PREFETCH_TLB and i + _AHEAD < n:
                    _prefetch_tlb_walk(pt, rows, cr3_pfn, la57, addrs[i + _AHEAD], w, ent, geo, cpu)
            elif kind == 0:
                p0 = ca >> 12
                s0 = slot
            elif kind == 1:
                p0 = p1 = ca >> 12
                s0 = s1 = slot
                f1 = r & ~0xFFF
            else:
                p2 = ca >> 12
                s2 = slot
            if kind == 1:
                if not _store(rows, pool, r, c, value):
                    why = _EXIT_STORE
                    out[1] = c
                    out[2] = r
                    break
                sb = _store_mode(rows, r, value)
            done += c
        if why:
            break
        done = 0
        i += 1
    stats[0] += translations
    out[0] = why
    out[3] = done
    return i


_builds = {}


def _build(use_tlb, compiled, geo=None):
    """access_chunk over globals in which ``_translate`` is the TLB lookup (use_tlb) or
    the walk, and (compiled) everything is the numba build, so numba inlines it; with
    ``geo``, the TLB build for that geometry alone (tlb.compiled(geo))."""
    key = (use_tlb, compiled, None if geo is None else _hwtlb._geometry_key(geo))
    if key not in _builds:
        import types
        g = dict(access_chunk.__globals__)
        g["_translate"] = _tlb if use_tlb else _walk_cached
        g["_again"] = _again_tlb if use_tlb else _again_walk
        g["_WALK_HIT"] = not use_tlb
        if compiled:
            from vmsim._jitcache import _njit

            def inline(fn, gl=g):
                f = (types.FunctionType(fn.__code__, gl, fn.__name__) if key[2] is None
                     else _hwtlb._with_geometry(fn, gl, key[2]))
                return _njit(f, nogil=True, inline="always", _nrt=False)
            g["_walk"] = _njit(_walk, nogil=True, _nrt=False)
            g["_store"] = _njit(_store, nogil=True, inline="always", _nrt=False)
            if key[2] is not None:
                g["_GEO"] = _hwtlb._geometry_rows(geo)
            g["_walk_start"] = inline(_walk_start)
            g["_store_mode"] = inline(_store_mode)
            g["_walk_hit"] = inline(_walk_hit)
            if not use_tlb:
                from vmsim.arch.x86._prefetch import _prefetch as prefetch
                g["_prefetch"] = prefetch
                g["_prefetch_pte"] = inline(_prefetch_pte)
                g["_PREFETCH"] = True
            if use_tlb:
                from vmsim.arch.x86._prefetch import _prefetch as prefetch
                g["_prefetch"] = prefetch
                g["_prefetch_tlb_walk"] = inline(_prefetch_tlb_walk)
                g["_PREFETCH_TLB"] = True
                # tlb.compiled(geo)'s: the lookup inlines; the miss path too with geo.
                ns = _hwtlb.compiled(geo)
                g["l1_hit"] = ns.l1_hit
                g["tlb_miss"] = ns.tlb_miss
                g["_tlb_check_hit"] = ns._tlb_check_hit
                g["_ordered"] = ns._ordered
                g["_set_first"] = ns._set_first
                g["_set_use"] = ns._set_use
                g["_set_use_call"] = ns.set_use_call
            g["_translate"] = inline(_tlb if use_tlb else _walk_cached)
            if use_tlb:
                g["_again_hit"] = inline(_again_hit)
            g["_again"] = inline(_again_tlb if use_tlb else _again_walk)
            # numba's cache keys a function by its qualified name and line, not by its
            # globals: the TLB build gets a name of its own (and one per geometry). (A
            # change of a file whose code is inlined here gets a fresh cache folder:
            # _jitcache._source_digest.)
            name = "access_chunk_tlb" if use_tlb else "access_chunk"
            if key[2] is None:
                code = access_chunk.__code__.replace(co_name=name, co_qualname=name)
                py = types.FunctionType(code, g, name)
            else:
                py = _hwtlb._with_geometry(access_chunk, g, key[2])
            fn = _njit(py, nogil=True, _nrt=False)
        else:
            fn = types.FunctionType(access_chunk.__code__, g, "access_chunk")
        _builds[key] = fn
    return _builds[key]


def compiled():
    """access_chunk compiled by numba (no TLB model), cached per user."""
    return _build(False, True)


def _impl(use_tlb, geo=None, n=0):
    """The chunk loop, compiled when the MMU walk (or the TLB model's loops) is
    (cpu._impl), else Python; for ``n`` accesses through the TLB geometry ``geo``, its
    own build when _geometry_build says so. Returns (loop, compiled, work): ``work``
    the geometry's [accesses, seconds] while the generic compiled loop runs it."""
    if _cpu._impl["tlb_compiled" if use_tlb else "compiled"]:
        try:
            if geo is not None:
                work = _geometry_work.setdefault(_hwtlb._geometry_key(geo), [0, 0.0])
                work[0] += n
                fn = _geometry_build(geo, work)
                if fn is not None:
                    return fn, True, None
                return _build(use_tlb, True), True, work
            return _build(use_tlb, True), True, None
        except ImportError:
            _cpu._use_compiled(False)
    return _build(use_tlb, False), False, None


def _geometry_build(geo, work):
    """The build for TLB geometry ``geo`` if it should run now (_GEOMETRY_LOAD_AFTER,
    _GEOMETRY_COMPILE_AFTER), else None."""
    if work[0] < _GEOMETRY_LOAD_AFTER:
        return None
    fn = _build(True, True, geo)                 # numba compiles at the first call
    if work[1] >= _GEOMETRY_COMPILE_AFTER or _cached(fn):
        return fn
    return None


def run_accesses(k, task, addrs, kinds, sizes, value, counter=None):
    """Run the accesses of the arrays in order on ``task``'s CPU, taking faults.

    Returns (n, 0) when all completed, else (i, done): access i got a signal (the task's
    signals say which) after ``done`` of its bytes; the accesses before it took effect.
    ``counter[0]`` (a list) gets the translations made (re-walks after faults included).
    """
    hw = getattr(k, "tlb", None)
    if _cpu._lazy[hw is not None]:
        # numba once the work pays for it (vmsim._jitcache); without a TLB model an
        # access here counts a third of the walk's unit: the plain-Python loop skips the
        # walk of a repeat (per access: 0.4 us on an 8-byte stride, 1.5 us on the
        # built-in sample trace, 3.8 us on random pages, measured on Python 3.11).
        _cpu._jit_for(k, len(addrs) if hw is not None else len(addrs) // _ACCESSES_PER_UNIT)
    fn, compiled_, work = _impl(hw is not None, None if hw is None else hw.geo, len(addrs))
    if compiled_:
        pt, rows = k.ptpool.arr, k.mem.np_private
        pool = k.page_data.pool.reshape(-1)
        out = np.zeros(4, dtype=np.int64)
        stats = np.zeros(1, dtype=np.int64)
        w = np.zeros(_W_LEN, dtype=np.int64)
    else:
        pt, rows = k.ptpool.mv, k.mem.private
        pool = k.page_data._mv
        out = [0, 0, 0, 0]
        # Python ints, as the compiled code's int64 arithmetic sees them.
        addrs, kinds, sizes = addrs.tolist(), kinds.tolist(), sizes.tolist()
        stats = [0]
        w = [0] * _W_LEN
    n = len(addrs)
    cpu = task.cpu
    la57 = k.la57
    pkru = task.pkru
    if hw is not None:
        from vmsim.arch.x86.mm.tlb import _prepare_user_access, _kernel_entry
        tlb_args = [hw.ent, hw.geo, hw.clock, hw.stats, cpu, 0, 1 if k.tlb_check else 0, hw.bad]
    else:
        tlb_args = [_NO_ENT, _NO_2D, _NO_2D, _NO_2D, cpu, 0, 0, _NO_1D]
    i = done = 0
    last = None
    # vmsim's function-graph tracer sees kernel functions only, and the CPU's loop is
    # none: it runs untraced in either build (on 3.11 the tracer's profile hook would
    # be called for every call of the plain-Python loop, most of a short replay's
    # time, and for every call of numba loading the compiled one).
    untraced = _untraced()
    while True:
        if hw is not None:
            _prepare_user_access(k, cpu)          # PTI's deferred user-PCID flush
            tlb_args[5] = hw.cur_pcid[cpu]
        t0 = time.process_time() if work is not None else 0.0
        with untraced:
            i = fn(pt, rows, pool, k.cpus[cpu].cr3, la57, addrs, kinds, sizes, i, done, n, value,
                   pkru, out, stats, w, *tlb_args)
        if work is not None:
            work[1] += time.process_time() - t0
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
        if why == _EXIT_SPLIT:
            if not _cpu._store(k, task, where, bytes((value,)) * int(sizes[i]), counter):
                return i, 0
            i += 1
            done = 0
            last = None
            continue
        fetch = kinds[i] == ACCESS_EXEC
        if hw is not None:
            _kernel_entry(k, cpu)
        elif not done and kinds[i] == ACCESS_WRITE:
            # vmsim's run of write faults over a constant-stride stretch of stores.
            j = _cpu._access_fault_run(k, task, addrs, kinds, sizes, i, arg, value,
                                       compiled_, counter)
            if j >= 0:
                i = j
                last = None
                continue
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
_NO_ENT = np.zeros((1, 4, 1), dtype=np.int64)
_NO_2D = np.zeros((1, 1), dtype=np.int64)
_NO_1D = np.zeros(8, dtype=np.int64)
