"""The hardware TLBs: per-CPU translation lookaside buffers and paging-structure caches.

This is the processor (Intel SDM vol. 3A, 4.10 "Caching translation information";
AMD APM vol. 2, 5.5 "Translation-lookaside buffer"), not the kernel: the kernel side
(which CPU flushes what, when) is vmsim.arch.x86.mm.tlb.

Each CPU has split first-level instruction / data TLBs per page size, a second-level
TLB (unified on Intel, split on AMD) and paging-structure caches (PML4E, PDPTE and
PDE caches, SDM 4.10.3) that let a walk start below the root. All are set-associative
with LRU replacement. Entries are tagged with the PCID (0 when CR4.PCIDE is clear);
an entry made from a leaf with G set matches every PCID and survives CR3 writes
(SDM 4.10.2.4). Paging-structure-cache entries are never global (SDM 4.10.3.1).

A TLB entry caches what a walk found (SDM 4.10.2.2): the frame, the page size and the
rights combined over all levels (R/W and U/S ANDed, XD ORed), the leaf's Dirty bit and
protection key. A hit reads no table: a later change of the tables is not seen until
the entry is invalidated. A store through an entry whose D is clear, or an access the
cached rights refuse, drops the entry and walks again (SDM 4.8 and 4.10.4.1: a fault
invalidates the entries for the faulting address), so the fault, if any, is the one
the current tables give.

State is plain int64 numpy arrays so the same functions run as Python or, built by
:func:`compiled`, as numba code inlined into an access loop:

- ``ent[cpu, E_TAG / E_CTX / E_VAL / E_LRU, slot]``: each field of a CPU's slots is
  contiguous (a set's tags are one or two cache lines, compared first, as a probe
  compares them); tag = address >> page shift (>> 39, 30, 21 for the PML4E, PDPTE,
  PDE caches); ctx = PCID | G << 12 | size code << 13
  (0: 4 KiB, 1: 2 MiB, 2: 1 GiB) | VALID; val = the leaf with effective R/W, U/S, XD
  (a PSC entry: the next table's address with the effective rights of the levels above);
  lru: the replacement state. A set of 2 to 16 ways (every preset's but AMD's large
  ones) keeps it in its first two ways' lru words: the ways' LRU order, 4 bits each
  from the most recently used up (unused nibbles 15), and the mask of its valid ways;
  a fill takes its victim from them without reading the set, a use moves one nibble
  (vmsim's: hardware keeps a few pseudo-LRU bits per set). A larger set keeps in each
  way the CPU's access clock when last used.
- ``geo[s] = (base slot, sets, ways, page sizes held (bit 0 4K, 1 2M, 2 1G), users
  (1 instruction, 2 data), level (1 L1, 2 L2, 3 PSC))`` for the structures S_*; rows
  G_LOOKUP and G_FILL after them: what the lookup probes and where a fill goes, per kind
  of access, computed once from the geometry.
- ``clock[cpu] = (access clock, held)``: held has bit 3 * s + size code set when structure
  s may hold a valid entry of that page size (set by every fill, recomputed when a
  flush drops entries in bulk, left set by INVLPG): a lookup skips the probes that
  could find nothing (vmsim's, not the CPU's, which probes its sizes in parallel).
- ``stats[cpu, ST_*]``: hit / miss / walk counters.
- ``bad``: the stale-TLB checker's first report (bad[0] != 0 means one was found).

Not modelled: the 5-level PML5E cache, 4 MiB pages, AMD's coalesced 16 KiB entries,
speculative fills, the store-only DTLB of Golden Cove, and INVLPGB broadcast flushes
(AMD Zen 3+ have it; 6.18 uses it with global ASIDs; vmsim sends IPIs instead).
"""
import numpy as np

from vmsim.mm.page_data import _store

_P = 1
_RW = 2
_US = 4
_A = 0x20
_D = 0x40
_PS = 0x80
_G = 0x100
_PFN = 0x000FFFFFFFFFF000
_ERR_PROT = 1
_ERR_WRITE = 2
_ERR_USER = 4
_ERR_INSTR = 16
_ERR_PK = 32
_NX = -0x8000000000000000          # bit 63 of an int64 entry

CTX_PCID = 0xFFF
CTX_GLOBAL = 1 << 12
CTX_SIZE_SHIFT = 13
CTX_VALID = 1 << 15

# Structures, in the order a lookup probes them.
S_L1I_4K, S_L1I_2M, S_L1D_4K, S_L1D_2M, S_L1D_1G, S_L2, S_L2_1G, S_L2I, S_PML4E, S_PDPTE, S_PDE = range(11)
NSTRUCT = 11
STRUCT_NAMES = ("L1 iTLB", "L1 iTLB 2M", "L1 dTLB", "L1 dTLB 2M", "L1 dTLB 1G",
                "L2 TLB", "L2 TLB 1G", "L2 iTLB", "PML4E cache", "PDPTE cache", "PDE cache")
G_BASE, G_SETS, G_WAYS, G_SIZES, G_USERS, G_LEVEL = range(6)
E_TAG, E_CTX, E_VAL, E_LRU = range(4)      # ent[cpu, E_*, slot]
# Rows of geo after the structures' (vmsim's, from the geometry alone): per users (1
# instruction, 2 data) the structures a lookup probes, in order; per level and users
# the structure and size each page size code is filled at (_fill_choice).
G_LOOKUP = NSTRUCT
G_FILL = NSTRUCT + 2
G_ROWS = NSTRUCT + 6

# stats[cpu, i]: hits per structure and page size (ST_HIT + 3 * s + size code), walks
# that missed everything, PSC hits per level, table entries read by walks, re-walks.
ST_HIT = 0                            # 3 * NSTRUCT slots
ST_MISS = 3 * NSTRUCT                 # lookups that missed every TLB level
ST_WALK = ST_MISS + 1                 # page walks (misses + re-walks)
ST_WALK_READS = ST_MISS + 2           # paging-structure entries read by walks
ST_PSC_HIT = ST_MISS + 3              # 3 slots: PML4E, PDPTE, PDE cache hits
ST_DIRTY_REWALK = ST_MISS + 6         # stores through an entry with D clear
ST_PERM_REWALK = ST_MISS + 7          # accesses the cached rights refused
ST_FAULT = ST_MISS + 8                # walks that ended in #PF
ST_L1_MISS = ST_MISS + 9              # lookups that missed L1 (any size)
# 3 slots: walks that ended in a translation, per page size code found (Intel's
# DTLB_LOAD_MISSES.WALK_COMPLETED_4K / _2M_4M / _1G): a lookup's misses of the last TLB
# level per page size.
ST_WALK_DONE = ST_MISS + 10
NSTAT = ST_MISS + 13

SIZE_NAMES = ("4K", "2M", "1G")


# --- lookups and fills (numba-compilable: arrays and ints only) -------------------------
def _set_first(geo, s, tag):
    """The first slot of the set of structure ``s`` that ``tag`` indexes (tag modulo the
    number of sets; a mask when that is a power of two, as in every preset: a 64-bit
    division costs tens of cycles, and a miss makes several)."""
    sets = geo[s, G_SETS]
    if sets & (sets - 1) == 0:
        return geo[s, G_BASE] + (tag & (sets - 1)) * geo[s, G_WAYS]
    return geo[s, G_BASE] + ((tag & 0x7FFFFFFFFFFFFFFF) % sets) * geo[s, G_WAYS]


# An ordered set's LRU word (the module docstring): nibble i the way used i-th most recently.
_ORDER_WAYS = 16
_NIBBLES = 0x1111111111111111
_NIBBLE_TOPS = -0x7777777777777778           # 0x8888888888888888 as an int64


def _ordered(geo, s):
    """Does structure ``s`` keep each set's LRU order in a word (2 to 16 ways)?"""
    ways = geo[s, G_WAYS]
    return ways >= 2 and ways <= _ORDER_WAYS


def _order_start(ways):
    """An ordered set's first LRU word: way i in nibble i, unused nibbles 15."""
    w = 0
    for i in range(16):
        w |= (i if i < ways else 15) << (4 * i)
    return _w64(w)


def _w64(x):
    """``x`` as the signed 64-bit word the compiled build computes (it wraps)."""
    x &= 0xFFFFFFFFFFFFFFFF
    return x - (1 << 64) if x >> 63 else x


def _cttz(x):
    """The trailing zero bits of a nonzero ``x`` (LLVM's cttz in the compiled build)."""
    x = int(x)
    return (x & -x).bit_length() - 1


def _set_use(ent, geo, clock, cpu, s, first, slot):
    """Make ``slot`` the most recently used way of its set (which starts at ``first``):
    its nibble moves to the front of the set's LRU word, or it takes the next clock."""
    if _ordered(geo, s):
        o = int(ent[cpu, E_LRU, first])
        way = int(slot - first)
        # The nibble equal to ``way``: the lowest zero nibble of o ^ way * 0x11..1.
        x = o ^ (way * _NIBBLES)
        p4 = _cttz((x - _NIBBLES) & ~x & _NIBBLE_TOPS) & ~3
        ent[cpu, E_LRU, first] = _w64((o & ~((2 << (p4 + 3)) - 1)) | ((o & ((1 << p4) - 1)) << 4) | way)
    else:
        c = clock[cpu, 0] + 1
        clock[cpu, 0] = c
        ent[cpu, E_LRU, slot] = c


def _set_drop(ent, geo, cpu, s, first, slot):
    """Invalidate ``slot`` (of the set starting at ``first``)."""
    ent[cpu, E_CTX, slot] = 0
    if _ordered(geo, s):
        ent[cpu, E_LRU, first + 1] &= ~(1 << (slot - first))


def _probe_struct(ent, geo, clock, cpu, s, addr, pcid, sc0):
    """Return the slot of a valid entry of structure ``s`` translating ``addr`` (at any
    page size it holds, from size code ``sc0`` up) for ``pcid`` (or global), touching
    its LRU state; -1 if none."""
    ways = geo[s, G_WAYS]
    if ways == 0:
        return -1
    # Only the sizes it may hold entries of (clock[cpu, 1]): a probe that finds nothing
    # changes nothing, and these find nothing.
    sizes = geo[s, G_SIZES] & (clock[cpu, 1] >> (3 * s))
    for sc in range(sc0, 3):
        if (sizes >> sc) & 1:
            slot = _probe_tag(ent, geo, clock, cpu, s, addr >> (12 + 9 * sc), sc, pcid)
            if slot >= 0:
                return slot
    return -1


def _probe_tag(ent, geo, clock, cpu, s, tag, sc, pcid):
    """The slot of a valid entry of structure ``s`` with ``tag`` and size code ``sc`` for
    ``pcid`` (or global), its set's LRU state moved; -1 if none."""
    ways = geo[s, G_WAYS]
    if ways == 0:
        return -1
    first = _set_first(geo, s, tag)
    for slot in range(first, first + ways):
        if ent[cpu, E_TAG, slot] != tag:            # the tag first: most ways differ in it
            continue
        ctx = ent[cpu, E_CTX, slot]
        if (ctx & CTX_VALID and (ctx >> CTX_SIZE_SHIFT) & 3 == sc
                and ((ctx & CTX_PCID) == pcid or ctx & CTX_GLOBAL)):
            _set_use(ent, geo, clock, cpu, s, first, slot)
            return slot
    return -1


def _fill_struct(ent, geo, clock, cpu, s, tag, ctx, val):
    """Insert an entry into its set of structure ``s``: an invalid way, else the least
    recently used one (an entry for the same tag and PCID is replaced in place)."""
    ways = geo[s, G_WAYS]
    if ways == 0:
        return
    first = _set_first(geo, s, tag)
    if _ordered(geo, s):
        victim = _order_victim(ent, cpu, first, ways, tag, ctx)
    else:
        victim = first
        oldest = ent[cpu, E_LRU, first]
        for slot in range(first, first + ways):
            c = ent[cpu, E_CTX, slot]
            if not c & CTX_VALID:
                victim = slot
                break
            if ent[cpu, E_TAG, slot] == tag and (c & ~CTX_GLOBAL) == (ctx & ~CTX_GLOBAL):
                victim = slot
                break
            if ent[cpu, E_LRU, slot] < oldest:
                oldest = ent[cpu, E_LRU, slot]
                victim = slot
    clock[cpu, 1] |= 1 << (3 * s + ((ctx >> CTX_SIZE_SHIFT) & 3))
    ent[cpu, E_TAG, victim] = tag
    ent[cpu, E_CTX, victim] = ctx
    ent[cpu, E_VAL, victim] = val
    _set_use(ent, geo, clock, cpu, s, first, victim)


def _order_victim(ent, cpu, first, ways, tag, ctx):
    """_fill_struct's choice in an ordered set, marked valid: the first invalid way, else
    the least recently used. Only a global entry can find one of its tag and context
    (PCID, size) in place: the lookup or walk probe that missed before any other fill
    would have hit that entry (a global entry copied from L2 keeps the PCID it was
    made with, which the probe did not ask for)."""
    mask = ent[cpu, E_LRU, first + 1]
    victim = -1
    if ctx & CTX_GLOBAL:
        for slot in range(first, first + ways):
            c = ent[cpu, E_CTX, slot]
            if not c & CTX_VALID:
                break                           # the first invalid way comes first
            if ent[cpu, E_TAG, slot] == tag and (c & ~CTX_GLOBAL) == (ctx & ~CTX_GLOBAL):
                victim = slot
                break
    if victim < 0:
        if mask != (1 << ways) - 1:
            victim = first + _cttz(~mask)
        else:
            victim = first + ((ent[cpu, E_LRU, first] >> (4 * (ways - 1))) & 15)
    ent[cpu, E_LRU, first + 1] = mask | (1 << (victim - first))
    return victim


def _fill_choice(geo, level, users, sc):
    """The structure of ``level`` used by ``users`` that a translation of page size code
    ``sc`` goes to, and the size it is held at: (-1, -1) if none (geometry only; kept in
    geo's G_FILL rows)."""
    best = -1
    best_sc = -1
    for s in range(NSTRUCT):
        if geo[s, G_LEVEL] != level or not geo[s, G_USERS] & users or geo[s, G_WAYS] == 0:
            continue
        sizes = geo[s, G_SIZES]
        for c in range(sc, -1, -1):
            if (sizes >> c) & 1:
                if c > best_sc:
                    best = s
                    best_sc = c
                break
    return best, best_sc


def _fill_level(ent, geo, clock, cpu, level, users, addr, sc, pcid, glob, val):
    """Fill the structure(s) of one level used by ``users`` (1 instruction, 2 data) with
    a translation of page size code ``sc``; a structure without that size holds the
    largest smaller size it has (the page is fractured, as Intel's iTLB does for 1G)."""
    row = G_FILL + 2 * (level - 1) + users - 1        # _fill_choice's answers
    best = geo[row, sc]
    best_sc = geo[row, 3 + sc]
    if best < 0:
        return
    if best_sc != sc:
        # A fractured entry: the frame of the part of the page addr falls in.
        off = addr & ((1 << (12 + 9 * sc)) - 1) & ~((1 << (12 + 9 * best_sc)) - 1)
        val = val + off
    ctx = pcid | CTX_VALID | (best_sc << CTX_SIZE_SHIFT)
    if glob:
        ctx |= CTX_GLOBAL
    _fill_struct(ent, geo, clock, cpu, best, addr >> (12 + 9 * best_sc), ctx, val)


def _tlb_lookup(ent, geo, clock, stats, cpu, pcid, addr, users, skip):
    """Look ``addr`` up for ``users`` (1 fetch, 2 data): the slot of the entry that hit
    (an L2 hit is also copied into L1), or -1. ``skip``: a first-level structure whose
    4K entries are known not to hold ``addr`` (a probe that finds nothing changes
    nothing), or -1."""
    # The structures of level 1, then 2, that ``users`` use, in index order (geo's
    # G_LOOKUP row for them, -1 after the last).
    row = G_LOOKUP + users - 1
    for j in range(6):
        s = geo[row, j]
        if s < 0:
            break
        slot = _probe_struct(ent, geo, clock, cpu, s, addr, pcid, 1 if s == skip else 0)
        if slot >= 0:
            ctx = ent[cpu, E_CTX, slot]
            sc = (ctx >> CTX_SIZE_SHIFT) & 3
            stats[cpu, ST_HIT + 3 * s + sc] += 1
            if geo[s, G_LEVEL] == 2:
                stats[cpu, ST_L1_MISS] += 1
                val = ent[cpu, E_VAL, slot]
                _fill_level(ent, geo, clock, cpu, 1, users, addr, sc, ctx & CTX_PCID,
                            ctx & CTX_GLOBAL, val)
            return slot
    stats[cpu, ST_L1_MISS] += 1
    stats[cpu, ST_MISS] += 1
    return -1


def _tlb_invalidate_addr(ent, geo, cpu, pcid, addr, psc):
    """Drop every TLB entry translating ``addr`` for ``pcid`` or global (INVLPG's TLB part,
    and what a #PF does); with ``psc``, also every paging-structure-cache entry of
    ``pcid`` (INVLPG invalidates them all, whatever their address: SDM "INVLPG")."""
    for s in range(S_PML4E):
        ways = geo[s, G_WAYS]
        if ways == 0:
            continue
        sizes = geo[s, G_SIZES]
        for sc in range(3):
            if not (sizes >> sc) & 1:
                continue
            tag = addr >> (12 + 9 * sc)
            first = _set_first(geo, s, tag)
            for slot in range(first, first + ways):
                ctx = ent[cpu, E_CTX, slot]
                if (ctx & CTX_VALID and ent[cpu, E_TAG, slot] == tag and (ctx >> CTX_SIZE_SHIFT) & 3 == sc
                        and ((ctx & CTX_PCID) == pcid or ctx & CTX_GLOBAL)):
                    _set_drop(ent, geo, cpu, s, first, slot)
    if psc:
        for s in range(S_PML4E, NSTRUCT):
            ways = geo[s, G_WAYS]
            if ways == 0:
                continue
            for first in range(geo[s, G_BASE], geo[s, G_BASE] + geo[s, G_SETS] * ways, ways):
                for slot in range(first, first + ways):
                    ctx = ent[cpu, E_CTX, slot]
                    if ctx & CTX_VALID and (ctx & CTX_PCID) == pcid:
                        _set_drop(ent, geo, cpu, s, first, slot)


def _rights(val, access, pkru):
    """The #PF error code the cached rights give ``access`` (``access`` if allowed)."""
    err = access
    if (access & _ERR_USER) and not (val & _US):
        return access | _ERR_PROT
    if (access & _ERR_WRITE) and not (val & _RW):
        err |= _ERR_PROT
    if (access & _ERR_INSTR) and val < 0:
        err |= _ERR_PROT
    if pkru and (val & _US) and not (access & _ERR_INSTR):
        sh = ((val >> 59) & 15) * 2
        if (pkru >> sh) & 1 or ((access & _ERR_WRITE) and (pkru >> (sh + 1)) & 1):
            err |= _ERR_PROT | _ERR_PK
    return err


def _tlb_probe_walk(pt, rows, cr3_pfn, la57, addr):
    """A walk that changes nothing and uses no cache: (effective leaf, size code), or
    (0, -1) when not present. The stale-TLB checker compares a hit with it."""
    shift = 48 if la57 else 39
    row = rows[cr3_pfn]
    rw = _RW
    us = _US
    nx = 0
    while True:
        e = pt[row * 512 + ((addr >> shift) & 511)]
        if not (e & _P):
            return 0, -1
        rw &= e
        us &= e
        if e < 0:
            nx = 1
        if shift == 12 or (e & _PS and (shift == 21 or shift == 30)):
            v = (e & ~(_RW | _US) & 0x7FFFFFFFFFFFFFFF) | rw | us
            if nx:
                v |= _NX
            return v, (shift - 12) // 9
        row = rows[(e & _PFN) >> 12]
        shift -= 9


def _report(bad, code, cpu, addr, val, walked, pcid):
    if bad[0] == 0:
        bad[1] = cpu
        bad[2] = addr
        bad[3] = val
        bad[4] = walked
        bad[5] = code
        bad[6] = pcid
    bad[0] += 1


def _tlb_check_hit(pt, rows, cr3_pfn, la57, addr, val, sc, cpu, pcid, bad):
    """The stale-TLB checker: does a hit with ``val`` (size code ``sc``) agree with the
    tables now? Codes in ``bad[5]``: 1 not present any more, 2 another frame or page
    size, 3 write, 4 user, 5 execute, 6 protection key granted that the tables no longer
    grant, 7 a paging-structure cache that points elsewhere."""
    w, wsc = _tlb_probe_walk(pt, rows, cr3_pfn, la57, addr)
    if wsc < 0:
        _report(bad, 1, cpu, addr, val, w, pcid)
        return
    mask = (1 << (12 + 9 * sc)) - 1
    wmask = (1 << (12 + 9 * wsc)) - 1
    if ((val & _PFN) & ~mask) | (addr & mask) != ((w & _PFN) & ~wmask) | (addr & wmask):
        _report(bad, 2, cpu, addr, val, w, pcid)
    elif val & _RW and not w & _RW:
        _report(bad, 3, cpu, addr, val, w, pcid)
    elif val & _US and not w & _US:
        _report(bad, 4, cpu, addr, val, w, pcid)
    elif val >= 0 and w < 0:
        _report(bad, 5, cpu, addr, val, w, pcid)
    elif (val >> 59) & 15 != (w >> 59) & 15:
        _report(bad, 6, cpu, addr, val, w, pcid)


def _tlb_walk(pt, rows, cr3_pfn, la57, addr, access, pkru, ent, geo, clock, stats, cpu, pcid,
             check, bad):
    """The page walk of mmu.translate, starting from the deepest paging-structure-cache
    hit, filling those caches on the way down and the TLBs at the end (a successful
    access only). Returns the physical address or ~err as mmu.translate."""
    stats[cpu, ST_WALK] += 1
    top = 48 if la57 else 39
    shift = top
    row = rows[cr3_pfn]
    user_ok = 1
    write_ok = 1
    nx = 0
    used_psc = 0
    # SDM 4.10.3.2: the PDE cache first, then PDPTE, then PML4E.
    for lv in range(3):
        s = S_PDE - lv
        key_shift = 21 + 9 * lv
        slot = _probe_tag(ent, geo, clock, cpu, s, addr >> key_shift, 0, pcid)
        if slot >= 0:
            v = ent[cpu, E_VAL, slot]
            row = rows[(v & _PFN) >> 12]
            user_ok = (v >> 2) & 1
            write_ok = (v >> 1) & 1
            nx = 1 if v < 0 else 0
            shift = key_shift - 9
            used_psc = 1
            stats[cpu, ST_PSC_HIT + 2 - lv] += 1
            break
    while True:
        p = row * 512 + ((addr >> shift) & 511)
        e = pt[p]
        stats[cpu, ST_WALK_READS] += 1
        if not (e & _P):
            stats[cpu, ST_FAULT] += 1
            if check and used_psc:
                w, wsc = _tlb_probe_walk(pt, rows, cr3_pfn, la57, addr)
                if wsc >= 0:
                    _report(bad, 7, cpu, addr, 0, w, pcid)
            return ~access
        if not (e & _US):
            user_ok = 0
        if not (e & _RW):
            write_ok = 0
        if e < 0:
            nx = 1
        if shift == 12 or (e & _PS and (shift == 21 or shift == 30)):
            sc = (shift - 12) // 9
            val = (e & ~(_RW | _US) & 0x7FFFFFFFFFFFFFFF) | (write_ok << 1) | (user_ok << 2)
            if nx:
                val |= _NX
            err = _rights(val, access, pkru)
            if check and used_psc:
                w, wsc = _tlb_probe_walk(pt, rows, cr3_pfn, la57, addr)
                if wsc != sc or (w & _PFN) != (val & _PFN) or (w & (_RW | _US)) != (val & (_RW | _US)):
                    _report(bad, 7, cpu, addr, val, w, pcid)
            if err != access:
                stats[cpu, ST_FAULT] += 1
                return ~err
            if access & _ERR_WRITE:
                if (e & (_A | _D)) != (_A | _D):
                    pt[p] = e | _A | _D
                val |= _A | _D
            elif not (e & _A):
                pt[p] = e | _A
                val |= _A
            stats[cpu, ST_WALK_DONE + sc] += 1
            mask = (1 << shift) - 1
            if shift > 12:
                val &= ~(mask & ~0xFFF)        # the PAT bit and below: not frame bits
            users = 1 if access & _ERR_INSTR else 2
            glob = e & _G
            _fill_level(ent, geo, clock, cpu, 2, users, addr, sc, pcid, glob, val)
            _fill_level(ent, geo, clock, cpu, 1, users, addr, sc, pcid, glob, val)
            return ((e & _PFN) & ~mask) | (addr & mask)
        if not (e & _A):
            pt[p] = e | _A
        if shift == 39 or shift == 30 or shift == 21:
            # A paging-structure-cache entry for this level (PML4E at 39, PDPTE at 30,
            # PDE at 21); with 5-level paging the PML5E level is not cached.
            s = S_PML4E + (39 - shift) // 9
            pv = (e & _PFN) | (write_ok << 1) | (user_ok << 2)
            if nx:
                pv |= _NX
            _fill_struct(ent, geo, clock, cpu, s, addr >> shift, pcid | CTX_VALID, pv)
        row = rows[(e & _PFN) >> 12]
        shift -= 9


def _tlb_translate(pt, rows, cr3_pfn, la57, addr, access, pkru, ent, geo, clock, stats, cpu,
                  pcid, check, bad):
    """mmu.translate with the CPU's TLB in front: the physical address or ~err.

    A hit whose cached rights allow the access needs no walk (with ``check``, it is
    compared with the tables: the stale-TLB checker). A store through an entry with D
    clear, or an access the cached rights refuse, drops the entries for the address
    and walks (the fault, if any, is the walk's)."""
    # The common case first: a 4K entry in the first-level TLB of this kind of access.
    s = S_L1I_4K if access & _ERR_INSTR else S_L1D_4K
    skip = -1
    if not check and geo[s, G_SIZES] & 1:
        slot = _l1_hit(ent, geo, clock, stats, cpu, pcid, s, addr, access, pkru)
        if slot >= 0:
            return (ent[cpu, E_VAL, slot] & _PFN) | (addr & 0xFFF)
        if slot == -1:
            skip = s
    return _tlb_miss(pt, rows, cr3_pfn, la57, addr, access, pkru, ent, geo, clock, stats, cpu,
                     pcid, check, bad, skip)


def _tlb_miss(pt, rows, cr3_pfn, la57, addr, access, pkru, ent, geo, clock, stats, cpu, pcid,
              check, bad, skip):
    """_tlb_translate past its first probe (which, without ``check``, _l1_hit made and
    missed, changing nothing): the lookups, the rights, the walk. ``skip``: the
    first-level structure that probe found no 4K entry for ``addr`` in, or -1."""
    users = 1 if access & _ERR_INSTR else 2
    s = S_L1I_4K if users == 1 else S_L1D_4K
    slot = -1
    if check and geo[s, G_SIZES] & 1:
        slot = _probe_tag(ent, geo, clock, cpu, s, addr >> 12, 0, pcid)
        if slot >= 0:
            stats[cpu, ST_HIT + 3 * s] += 1
    if slot < 0:
        # Without the checker, _l1_hit found no usable 4K entry in ``s``: one it found
        # but refused (-2) is found again here first (the same probe), and refused again.
        slot = _tlb_lookup(ent, geo, clock, stats, cpu, pcid, addr, users, skip)
    if slot >= 0:
        val = ent[cpu, E_VAL, slot]
        ctx = ent[cpu, E_CTX, slot]
        sc = (ctx >> CTX_SIZE_SHIFT) & 3
        if _rights(val, access, pkru) == access:
            if not (access & _ERR_WRITE) or val & _D:
                if check:
                    _tlb_check_hit(pt, rows, cr3_pfn, la57, addr, val, sc, cpu, pcid, bad)
                mask = (1 << (12 + 9 * sc)) - 1
                return ((val & _PFN) & ~mask) | (addr & mask)
            stats[cpu, ST_DIRTY_REWALK] += 1
        else:
            stats[cpu, ST_PERM_REWALK] += 1
        _tlb_invalidate_addr(ent, geo, cpu, pcid, addr, 1)
    return _tlb_walk(pt, rows, cr3_pfn, la57, addr, access, pkru, ent, geo, clock, stats, cpu,
                    pcid, check, bad)


def _l1_hit(ent, geo, clock, stats, cpu, pcid, s, addr, access, pkru):
    """The first probe of _tlb_translate written out for its common case (no stale-TLB
    checker): the slot of the 4K entry of L1 structure ``s`` that translates ``addr``
    for ``pcid`` when its cached rights allow ``access`` without a walk (D set for a
    store), its LRU state and hit counted as _tlb_translate counts them; else -1 (no
    such entry) or -2 (one the access needs a walk for), with nothing changed
    (_tlb_miss then probes and decides as before)."""
    ways = geo[s, G_WAYS]
    tag = addr >> 12
    first = _set_first(geo, s, tag)
    need = 0
    if access & _ERR_USER:
        need = _US
    if access & _ERR_WRITE:
        need |= _RW | _D
    for slot in range(first, first + ways):
        if ent[cpu, E_TAG, slot] != tag:
            continue
        ctx = ent[cpu, E_CTX, slot]
        if not (ctx & CTX_VALID) or (ctx >> CTX_SIZE_SHIFT) & 3 != 0:
            continue
        if (ctx & CTX_PCID) != pcid and not (ctx & CTX_GLOBAL):
            continue
        val = ent[cpu, E_VAL, slot]
        if (val & need) != need or ((access & _ERR_INSTR) and val < 0):
            return -2
        if pkru and (val & _US) and not (access & _ERR_INSTR) and \
                (pkru >> (((val >> 59) & 15) * 2)) & (((access & _ERR_WRITE) >> 1) | 1):
            return -2                   # the protection key refuses it (_rights)
        _set_use(ent, geo, clock, cpu, s, first, slot)
        stats[cpu, ST_HIT + 3 * s] += 1
        return slot
    return -1


def _tlb_touch_batch(pt, rows, pool, cr3_pfn, la57, base, stride, count, i, access, value, out,
                    pkru, ent, geo, clock, stats, cpu, pcid, check, bad):
    """mmu._touch_batch through the TLB (same contract; also stops when the checker
    found a stale hit: out[0] = -2)."""
    while i < count:
        addr = base + i * stride
        r = _tlb_translate(pt, rows, cr3_pfn, la57, addr, access, pkru, ent, geo, clock, stats,
                           cpu, pcid, check, bad)
        if check and bad[0]:
            out[0] = -2
            out[1] = addr
            return i
        if r < 0:
            out[0] = ~r
            out[1] = addr
            return i
        if access & _ERR_WRITE and not _store(rows, pool, r, 1, value):
            out[0] = -1
            out[1] = r
            return i
        i += 1
    return count


_FUNCS = ("_set_first", "_ordered", "_set_use", "_set_drop", "_order_victim", "_l1_hit", "_probe_tag", "_probe_struct", "_fill_struct", "_fill_level", "_tlb_lookup", "_tlb_invalidate_addr",
          "_rights", "_tlb_probe_walk", "_report", "_tlb_check_hit", "_tlb_walk", "_tlb_miss",
          "_tlb_translate", "_tlb_touch_batch")
# The names the access loops (cpu.py, replay's mmu_batch) call them by.
tlb_lookup, tlb_translate, tlb_touch_batch = _tlb_lookup, _tlb_translate, _tlb_touch_batch
l1_hit, tlb_miss = _l1_hit, _tlb_miss
# Inlined into the loops (numba IR inlining); the miss path, _tlb_miss, too in a
# geometry's own build (compiled(geo)): a call passes every array argument as its ~10
# words of shape, strides and pointers (a miss's call of _tlb_miss pushed ~70 words).
# Inlined there, misses took 0.53-0.65 of the time of the generic build's, repeats of
# first-level hits 1.05; in the generic build it gained nothing, cost repeats 14% and
# made compiling the loop take 40 s instead of 5.5.
_INLINE = ("_set_first", "_ordered", "_set_use", "_set_drop", "_order_victim", "_l1_hit", "_probe_tag", "_probe_struct", "_rights", "_tlb_lookup", "_tlb_translate",
           "_fill_struct", "_fill_level", "_tlb_walk")
_compiled = {}


def compiled(geo=None):
    """Return a namespace of numba builds of the functions above (each calls the
    compiled others, so numba inlines them), cached like mmu.compiled().

    With ``geo`` (a TLBState's geometry rows), a build for that geometry alone: each
    function reads ``geo`` as a constant (_with_geometry), so numba folds the sets,
    ways and lookup order into the code (loops of known length, no loads of them, no
    division): a random trace's misses run ~1.5x as fast, for a build per geometry."""
    key = None if geo is None else _geometry_key(geo)
    if key not in _compiled:
        import types
        from vmsim._jitcache import _njit
        g = dict(globals())
        g["_store"] = _njit(_store, nogil=True, inline="always", _nrt=False)
        g.update(_bit_ops(_njit))
        if key is not None:
            g["_GEO"] = _geometry_rows(geo)
        ns = types.SimpleNamespace()
        for name in _FUNCS:
            fn = globals()[name]
            # The hit path's helpers are inlined (numba IR inlining): a call between
            # compiled functions costs reference counting of every array argument.
            opts = {"inline": "always"} if name in _INLINE or key and name == "_tlb_miss" else {}
            py = (types.FunctionType(fn.__code__, g, name) if key is None
                  else _with_geometry(fn, g, key))
            f = _njit(py, nogil=True, _nrt=False, **opts)
            g[name] = f
            setattr(ns, name, f)
            setattr(ns, name.lstrip("_"), f)
        # _set_use as a call (mmu_batch._again_tlb's rare case).
        ns.set_use_call = _njit(types.FunctionType(_set_use.__code__, g, "_set_use") if key is None
                                else _with_geometry(_set_use, g, key), nogil=True, _nrt=False)
        _compiled[key] = ns
    return _compiled[key]


def _bit_ops(njit):
    """The compiled build's _cttz and _w64: LLVM's cttz, and int64 arithmetic that wraps
    by itself."""
    from numba.cpython.unsafe.numbers import trailing_zeros
    return {"_cttz": trailing_zeros, "_w64": njit(_same, inline="always", _nrt=False)}


def _same(x):
    return x


def _geometry_key(geo) -> str:
    """A name for the build of one geometry (numba caches a function by its name and
    line, not by the constants it reads)."""
    import hashlib
    return hashlib.sha1(np.ascontiguousarray(geo, dtype=np.int64).tobytes()).hexdigest()[:12]


def _geometry_rows(geo):
    """``geo`` as the tuple of tuples of ints a geometry's build reads (g["_GEO"])."""
    return tuple(tuple(int(x) for x in row) for row in geo)


def _with_geometry(fn, g, key):
    """``fn``, from its source, over globals ``g`` with every ``geo[s, f]`` read as
    ``_GEO[s][f]`` (g's _geometry_rows: a tuple constant, which numba indexes with a
    switch that folds away once s and f are constants; the ``geo`` argument is then
    unused), named after ``key``. (A NumPy array global did not fold.)"""
    import ast
    import inspect
    import textwrap

    class _Rows(ast.NodeTransformer):
        def visit_Subscript(self, node):
            self.generic_visit(node)
            if (isinstance(node.value, ast.Name) and node.value.id == "geo"
                    and isinstance(node.slice, ast.Tuple) and len(node.slice.elts) == 2):
                row = ast.Subscript(ast.Name("_GEO", ast.Load()), node.slice.elts[0], ast.Load())
                return ast.copy_location(ast.Subscript(row, node.slice.elts[1], node.ctx), node)
            return node
    tree = _Rows().visit(ast.parse(textwrap.dedent(inspect.getsource(fn))))
    fdef = tree.body[0]
    fdef.name = f"{fn.__name__}__{key}"
    ast.fix_missing_locations(tree)
    ast.increment_lineno(tree, fn.__code__.co_firstlineno - 1)
    out = {}
    exec(compile(tree, fn.__code__.co_filename, "exec"), g, out)
    return out[fdef.name]


# --- geometry ---------------------------------------------------------------------------
class Geometry:
    """A CPU's TLB geometry: {structure index: (entries, ways, page sizes mask)}."""

    def __init__(self, name, source, structs, has_invlpgb=False):
        self.name = name
        self.source = source
        self.structs = dict(structs)
        self.has_invlpgb = has_invlpgb

    def describe(self) -> dict:
        """The geometry as plain data (printed by `vmsim run`, and in its JSON)."""
        out = {"name": self.name, "source": self.source}
        split = self.structs.get(S_L2I, (0,))[0]
        for s, (n, ways, sizes) in sorted(self.structs.items()):
            if n:
                out["L2 dTLB" if s == S_L2 and split else STRUCT_NAMES[s]] = {"entries": n, "ways": ways or "full",
                                        "page_sizes": [SIZE_NAMES[c] for c in range(3) if sizes >> c & 1]}
        return out

    def text(self) -> str:
        d = self.describe()
        parts = [f"{k} {v['entries']} " + (f"{v['ways']}-way" if v["ways"] != "full" else "fully assoc.")
                 + ("" if k.endswith("cache") else " (" + "/".join(v["page_sizes"]) + ")")
                 for k, v in d.items() if isinstance(v, dict)]
        return f"TLB {self.name}: " + ", ".join(parts)


_4K, _2M, _1G = 1, 2, 4
FULL = 0                               # ways = entries: fully associative

# Paging-structure caches: Intel does not publish their sizes; these are the sizes
# reverse engineering reports for recent Intel cores (van Schaik et al., "Malicious
# Management Unit", EuroSec 2017 / RevAnC: PML4E 2-4, PDPTE 4, PDE 24-32 entries).
_INTEL_PSC = {S_PML4E: (2, FULL, _4K), S_PDPTE: (4, FULL, _4K), S_PDE: (32, 4, _4K)}
# AMD's page walk cache (PWC) keeps upper-level entries; the Family 17h/19h software
# optimization guides describe it without sizes: the same assumption as Intel's.
_AMD_PSC = {S_PML4E: (4, FULL, _4K), S_PDPTE: (8, FULL, _4K), S_PDE: (64, 4, _4K)}

PRESETS = {
    # Intel 64 and IA-32 Architectures Optimization Reference Manual (248966), "Golden
    # Cove microarchitecture" TLB table: ITLB 4K 256 8-way, 2M/4M 32 8-way; load DTLB 4K
    # 96 6-way, 2M/4M 32 4-way, 1G 8 fully; STLB 2048 16-way shared 4K/2M, 1G 1024 8-way.
    # Alder Lake / Raptor Lake P-cores, Sapphire and Emerald Rapids.
    "golden-cove": Geometry("golden-cove", "Intel 248966, Golden Cove TLB parameters", {
        S_L1I_4K: (256, 8, _4K), S_L1I_2M: (32, 8, _2M),
        S_L1D_4K: (96, 6, _4K), S_L1D_2M: (32, 4, _2M), S_L1D_1G: (8, FULL, _1G),
        S_L2: (2048, 16, _4K | _2M), S_L2_1G: (1024, 8, _1G), **_INTEL_PSC}),
    # Intel 248966, "Skylake Server microarchitecture" TLB table (Skylake-SP, Cascade and
    # Cooper Lake): ITLB 4K 128 8-way, 2M 8 fully; DTLB 4K 64 4-way, 2M 32 4-way, 1G 4
    # fully; STLB 1536 12-way shared 4K/2M, 1G 16 4-way.
    "skylake": Geometry("skylake", "Intel 248966, Skylake TLB parameters", {
        S_L1I_4K: (128, 8, _4K), S_L1I_2M: (8, FULL, _2M),
        S_L1D_4K: (64, 4, _4K), S_L1D_2M: (32, 4, _2M), S_L1D_1G: (4, FULL, _1G),
        S_L2: (1536, 12, _4K | _2M), S_L2_1G: (16, 4, _1G), **_INTEL_PSC}),
    # AMD Software Optimization Guide for Family 19h (56665), "Translation-Lookaside
    # Buffer": L1 ITLB 64 fully (all sizes), L2 ITLB 512 8-way (4K, 2M); L1 DTLB 64 fully
    # (all sizes), L2 DTLB 2048 16-way (4K, 2M; 1G pages are held as 2M entries).
    "zen3": Geometry("zen3", "AMD 56665, Zen 3 TLB", {
        S_L1I_4K: (64, FULL, _4K | _2M | _1G), S_L1D_4K: (64, FULL, _4K | _2M | _1G),
        S_L2: (2048, 16, _4K | _2M), S_L2I: (512, 8, _4K | _2M), **_AMD_PSC},
        has_invlpgb=True),
    # AMD Software Optimization Guide for Family 19h Models 10h+ (57647), Zen 4: L1 ITLB
    # 64 fully, L2 ITLB 512 8-way; L1 DTLB 72 fully, L2 DTLB 3072 24-way (4K, 2M).
    "zen4": Geometry("zen4", "AMD 57647, Zen 4 TLB", {
        S_L1I_4K: (64, FULL, _4K | _2M | _1G), S_L1D_4K: (72, FULL, _4K | _2M | _1G),
        S_L2: (3072, 24, _4K | _2M), S_L2I: (512, 8, _4K | _2M), **_AMD_PSC},
        has_invlpgb=True),
}
_USERS = {S_L1I_4K: 1, S_L1I_2M: 1, S_L1D_4K: 2, S_L1D_2M: 2, S_L1D_1G: 2, S_L2: 3, S_L2_1G: 3,
          S_L2I: 1, S_PML4E: 0, S_PDPTE: 0, S_PDE: 0}
_LEVEL = {S_L1I_4K: 1, S_L1I_2M: 1, S_L1D_4K: 1, S_L1D_2M: 1, S_L1D_1G: 1, S_L2: 2, S_L2_1G: 2,
          S_L2I: 2, S_PML4E: 3, S_PDPTE: 3, S_PDE: 3}
# A Golden Cove-class core is what this machine's CPUID family/model says it has when
# the hypervisor hides leaf 0x18 (see host_geometry).
FALLBACK = "golden-cove"


def custom_geometry(spec: dict) -> Geometry:
    """A geometry given explicitly: {"L1 dTLB 4K": (entries, ways), ...} by STRUCT_NAMES;
    page sizes default to the structure's own."""
    default_sizes = {S_L1I_4K: _4K, S_L1I_2M: _2M, S_L1D_4K: _4K, S_L1D_2M: _2M, S_L1D_1G: _1G,
                     S_L2: _4K | _2M, S_L2_1G: _1G, S_L2I: _4K | _2M,
                     S_PML4E: _4K, S_PDPTE: _4K, S_PDE: _4K}
    structs = {}
    for name, v in spec.items():
        if name not in STRUCT_NAMES:
            raise ValueError(f"unknown TLB structure {name!r}: one of {', '.join(STRUCT_NAMES)}")
        s = STRUCT_NAMES.index(name)
        v = tuple(v)
        sizes = v[2] if len(v) > 2 else default_sizes[s]
        structs[s] = (int(v[0]), int(v[1]), int(sizes))
    return Geometry("custom", "given explicitly", structs)


class TLBState:
    """All CPUs' TLB arrays (see the module docstring) and the CR3/CR4 bits they depend on."""

    def __init__(self, ncpus: int, geometry: Geometry, pcide: bool):
        self.geometry = geometry
        self.pcide = pcide
        geo = np.zeros((G_ROWS, 6), dtype=np.int64)
        base = 0
        for s in range(NSTRUCT):
            n, ways, sizes = geometry.structs.get(s, (0, 0, 0))
            if ways == FULL:
                ways = n
            if n and n % ways:
                raise ValueError(f"{STRUCT_NAMES[s]}: {n} entries is not a multiple of {ways} ways")
            users = _USERS[s]
            if s == S_L2 and geometry.structs.get(S_L2I, (0,))[0]:
                users = 2                  # AMD: the L2 TLB is the data side's
            geo[s] = (base, n // ways if n else 1, ways if n else 0, sizes, users, _LEVEL[s])
            base += n
        for users in (1, 2):
            order = [s for level in (1, 2) for s in range(S_PML4E)
                     if geo[s, G_LEVEL] == level and geo[s, G_USERS] & users and geo[s, G_WAYS]]
            geo[G_LOOKUP + users - 1] = order + [-1] * (6 - len(order))
            for level in (1, 2):
                fill = [_fill_choice(geo, level, users, sc) for sc in range(3)]
                geo[G_FILL + 2 * (level - 1) + users - 1] = [f[0] for f in fill] + [f[1] for f in fill]
        self.geo = geo
        self.nslots = base
        self.ent = np.zeros((ncpus, 4, base), dtype=np.int64)
        # The ordered structures' sets (_ordered): (first slot, sets, ways).
        self._ordered_sets = [(int(geo[s, G_BASE]), int(geo[s, G_SETS]), int(geo[s, G_WAYS]))
                              for s in range(NSTRUCT) if _ordered(geo, s)]
        for b, ns, ways in self._ordered_sets:
            self.ent[:, E_LRU, b:b + ns * ways:ways] = _order_start(ways)
        self.clock = np.zeros((ncpus, 2), dtype=np.int64)
        # The structure of each slot (_held).
        self._slot_struct = np.repeat(np.arange(NSTRUCT), [geo[s, G_SETS] * geo[s, G_WAYS]
                                                          for s in range(NSTRUCT)])
        self.stats = np.zeros((ncpus, NSTAT), dtype=np.int64)
        self.bad = np.zeros(8, dtype=np.int64)
        self.cur_pcid = [0] * ncpus

    # --- the instructions that invalidate (SDM 4.10.4.1) -------------------------------
    def _tlb_slots(self):
        return self.geo[S_PML4E, G_BASE]

    def _write_cr3(self, cpu: int, pcid: int, noflush: bool):
        """MOV to CR3: with CR4.PCIDE clear, every non-global entry goes; with it set and
        bit 63 clear, those of the new PCID; with bit 63 (NOFLUSH) set, none."""
        self.cur_pcid[cpu] = pcid
        if noflush and self.pcide:
            return
        ctx = self.ent[cpu, E_CTX]
        drop = (ctx & CTX_GLOBAL) == 0
        if self.pcide:
            drop &= (ctx & CTX_PCID) == pcid
        ctx[drop] = 0
        self._held(cpu)

    def _invpcid_single(self, cpu: int, pcid: int):
        """INVPCID type 1 (single context): the non-global entries of ``pcid``."""
        ctx = self.ent[cpu, E_CTX]
        ctx[((ctx & CTX_GLOBAL) == 0) & ((ctx & CTX_PCID) == pcid)] = 0
        self._held(cpu)

    def _flush_all(self, cpu: int, include_global: bool = True):
        """INVPCID type 2 (everything) / type 3 (all but global), or CR4.PGE toggled."""
        ctx = self.ent[cpu, E_CTX]
        if include_global:
            ctx[:] = 0
        else:
            ctx[(ctx & CTX_GLOBAL) == 0] = 0
        self._held(cpu)

    def _held(self, cpu: int):
        """Recompute what the entries left after a bulk invalidation imply: clock[cpu, 1]
        and the ordered sets' valid masks."""
        self.clock[cpu, 1] = self._held_exact(cpu)
        for b, ns, ways, masks in self._valid_masks(cpu):
            self.ent[cpu, E_LRU, b + 1:b + ns * ways:ways] = masks

    def _valid_masks(self, cpu: int):
        """Per ordered structure of ``cpu``: (first slot, sets, ways, each set's mask of
        valid ways from its entries)."""
        valid = (self.ent[cpu, E_CTX] & CTX_VALID) != 0
        for b, ns, ways in self._ordered_sets:
            v = valid[b:b + ns * ways].reshape(ns, ways).astype(np.int64)
            yield b, ns, ways, (v << np.arange(ways, dtype=np.int64)).sum(axis=1)

    def _order_ok(self) -> bool:
        """Do the ordered sets' words agree with their entries (the debug checker's test):
        each valid mask that of the valid ways, each LRU word a permutation of the ways
        with 15 in the unused nibbles?"""
        for cpu in range(self.ent.shape[0]):
            for b, ns, ways, masks in self._valid_masks(cpu):
                if not np.array_equal(self.ent[cpu, E_LRU, b + 1:b + ns * ways:ways], masks):
                    return False
                words = self.ent[cpu, E_LRU, b:b + ns * ways:ways].view(np.uint64)
                nib = (words[:, None] >> (4 * np.arange(16, dtype=np.uint64))) & np.uint64(15)
                if not (np.sort(nib[:, :ways], axis=1) == np.arange(ways)).all() or \
                        not (nib[:, ways:] == 15).all():
                    return False
        return True

    def _held_exact(self, cpu: int) -> int:
        """The bits of clock[cpu, 1] the valid entries of ``cpu`` need."""
        ctx = self.ent[cpu, E_CTX]
        valid = (ctx & CTX_VALID) != 0
        bits = 3 * self._slot_struct[valid] + ((ctx[valid] >> CTX_SIZE_SHIFT) & 3)
        return int(np.bitwise_or.reduce(np.left_shift(1, bits), initial=0))

    def _held_ok(self) -> bool:
        """Has every CPU's clock[cpu, 1] the bit of each of its valid entries (the debug
        checker's test: a missing bit would make a lookup skip an entry)?"""
        return all(self._held_exact(cpu) & ~int(self.clock[cpu, 1]) == 0
                   for cpu in range(self.ent.shape[0]))

    def _invlpg(self, cpu: int, pcid: int, addr: int):
        """INVLPG (current PCID) / INVPCID type 0: the entries for ``addr`` and the
        paging-structure caches of ``pcid``."""
        _tlb_invalidate_addr(self.ent, self.geo, cpu, pcid, addr, 1)

    def entries(self, cpu: int):
        """The valid entries of one CPU: [(structure name, vaddr, size code, pcid, global, val)]."""
        out = []
        for s in range(NSTRUCT):
            b, ns, w = self.geo[s, G_BASE], self.geo[s, G_SETS], self.geo[s, G_WAYS]
            for slot in range(b, b + ns * w):
                tag, ctx, val, _ = (int(x) for x in self.ent[cpu, :, slot])
                if ctx & CTX_VALID:
                    sc = (ctx >> CTX_SIZE_SHIFT) & 3
                    shift = 12 + 9 * sc if s < S_PML4E else 39 - 9 * (s - S_PML4E)
                    out.append((STRUCT_NAMES[s], (tag << shift) & ((1 << 64) - 1), sc,
                                ctx & CTX_PCID, bool(ctx & CTX_GLOBAL), val))
        return out


# --- this machine's CPU -----------------------------------------------------------------
# CPUID leaf 2 one-byte TLB descriptors (Intel SDM vol. 2A, Table 3-12): (structure,
# entries, ways). 0xFE means "see leaf 0x18".
_LEAF2 = {
    0x01: (S_L1I_4K, 32, 4), 0x02: (S_L1I_2M, 2, FULL), 0x03: (S_L1D_4K, 64, 4),
    0x04: (S_L1D_2M, 8, 4), 0x05: (S_L1D_2M, 32, 4), 0x0B: (S_L1I_2M, 4, 4),
    0x4F: (S_L1I_4K, 32, FULL), 0x50: (S_L1I_4K, 64, FULL), 0x55: (S_L1I_2M, 7, FULL),
    0x56: (S_L1D_2M, 16, 4), 0x57: (S_L1D_4K, 16, 4), 0x59: (S_L1D_4K, 16, FULL),
    0x5A: (S_L1D_2M, 32, 4), 0x5B: (S_L1D_4K, 64, FULL), 0x5C: (S_L1D_4K, 128, FULL),
    0x5D: (S_L1D_4K, 256, FULL), 0x61: (S_L1I_4K, 48, FULL), 0x63: (S_L1D_1G, 4, 4),
    0x64: (S_L1D_4K, 512, 4), 0x6A: (S_L1D_4K, 64, 8), 0x6B: (S_L1D_4K, 256, 8),
    0x6C: (S_L2, 128, 8), 0x76: (S_L1I_2M, 8, FULL), 0xA0: (S_L1D_4K, 32, FULL),
    0xB0: (S_L1I_4K, 128, 4), 0xB1: (S_L1I_2M, 8, 4), 0xB2: (S_L1I_4K, 64, 4),
    0xB3: (S_L1D_4K, 128, 4), 0xB4: (S_L1D_4K, 256, 4), 0xB5: (S_L1I_4K, 64, 8),
    0xB6: (S_L1I_4K, 128, 8), 0xBA: (S_L1D_4K, 64, 4), 0xC0: (S_L1D_4K, 8, 4),
    0xC1: (S_L2, 1024, 8), 0xC2: (S_L1D_2M, 16, 4), 0xC3: (S_L2, 1536, 6),
    0xC4: (S_L1D_2M, 32, 4), 0xCA: (S_L2, 512, 4),
}

_CPUID_C = r"""
#include <cpuid.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        unsigned a, b, c, d;
        __cpuid_count(strtoul(argv[i], 0, 0), strtoul(argv[i + 1], 0, 0), a, b, c, d);
        printf("%u %u %u %u\n", a, b, c, d);
    }
    return 0;
}
"""


def _cpuid_reader():
    """Return cpuid(leaf, subleaf) -> (eax, ebx, ecx, edx): through /dev/cpu/0/cpuid
    (the cpuid driver) when readable, else a small C helper compiled now; None if neither."""
    import os
    import struct
    try:
        fd = os.open("/dev/cpu/0/cpuid", os.O_RDONLY)

        def via_dev(leaf, sub=0):
            return struct.unpack("<4I", os.pread(fd, 16, (sub << 32) | leaf))
        via_dev(0)
        return via_dev
    except OSError:
        pass
    import shutil
    import subprocess
    import tempfile
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    d = tempfile.mkdtemp(prefix="vmsim-cpuid-")
    src, exe = os.path.join(d, "cpuid.c"), os.path.join(d, "cpuid")
    with open(src, "w") as f:
        f.write(_CPUID_C)
    try:
        subprocess.run([cc, "-O1", "-o", exe, src], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None

    def via_exe(leaf, sub=0):
        r = subprocess.run([exe, str(leaf), str(sub)], capture_output=True, text=True, check=True)
        return tuple(int(x) for x in r.stdout.split())
    return via_exe


def _leaf18(cpuid) -> dict:
    """Intel leaf 0x18 (deterministic address translation parameters): one subleaf per
    structure; EDX[4:0] type (1 data, 2 instruction, 3 unified, 4 load-only, 5 store-only),
    EDX[7:5] level, EDX[8] fully associative, EBX[3:0] page sizes (4K, 2M, 4M, 1G),
    EBX[31:16] ways, ECX sets."""
    structs = {}
    maxsub = cpuid(0x18, 0)[0]
    for sub in range(maxsub + 1):
        a, b, c, d = cpuid(0x18, sub)
        typ, level = d & 31, (d >> 5) & 7
        if typ == 0 or typ == 5:
            continue
        ways, sets = b >> 16, c
        n = ways * sets
        if (d >> 8) & 1:
            ways = FULL
        sizes = (b & 1) | ((b >> 1 | b >> 2) & 1) << 1 | ((b >> 3) & 1) << 2
        if level >= 2:
            s = S_L2_1G if sizes == _1G else S_L2
        elif typ == 2:
            s = S_L1I_4K if sizes & _4K else S_L1I_2M
        elif sizes & _4K:
            s = S_L1D_4K
        else:
            s = S_L1D_2M if sizes & _2M else S_L1D_1G
        structs.setdefault(s, (n, ways, sizes))
    return structs


def host_geometry():
    """This machine's geometry from CPUID, and the name of what it is based on.

    Intel: leaf 0x18 when it lists structures, else leaf 2's descriptors; AMD: leaves
    0x80000005 (L1) and 0x80000006 (L2) for 4K and 2M pages, 0x80000019 for 1G. When
    CPUID gives nothing usable (a hypervisor may hide the leaves, as this machine's
    Firecracker does for 0x18), the preset named by FALLBACK, said in the name."""
    cpuid = _cpuid_reader()
    if cpuid is None:
        g = PRESETS[FALLBACK]
        return Geometry(f"host ({g.name}: CPUID not readable)", g.source, g.structs, g.has_invlpgb)
    a, b, c, d = cpuid(0, 0)
    import struct as _s
    vendor = _s.pack("<3I", b, d, c).decode(errors="replace")
    fam_model = cpuid(1, 0)[0]
    family = ((fam_model >> 8) & 15) + ((fam_model >> 20) & 0xFF if (fam_model >> 8) & 15 == 15 else 0)
    model = ((fam_model >> 4) & 15) | (((fam_model >> 16) & 15) << 4)
    structs = {}
    src = ""
    if vendor == "GenuineIntel":
        if a >= 0x18:
            structs = _leaf18(cpuid)
            src = "CPUID leaf 0x18"
        if not structs and a >= 2:
            regs = cpuid(2, 0)
            for i, r in enumerate(regs):
                if r >> 31:
                    continue
                for byte in range(4):
                    if i == 0 and byte == 0:
                        continue
                    desc = (r >> (8 * byte)) & 0xFF
                    if desc in _LEAF2:
                        s, n, w = _LEAF2[desc]
                        structs[s] = (n, w, {S_L2: _4K | _2M, S_L1D_1G: _1G}.get(
                            s, _2M if s in (S_L1I_2M, S_L1D_2M) else _4K))
            src = "CPUID leaf 2" if structs else ""
    elif vendor in ("AuthenticAMD", "HygonGenuine"):
        ext = cpuid(0x80000000, 0)[0]

        def assoc6(x):                    # 0x80000006 associativity encoding
            return {0: 0, 1: 1, 2: 2, 4: 4, 6: 8, 8: 16, 0xA: 32, 0xB: 48, 0xC: 64, 0xD: 96,
                    0xE: 128, 0xF: FULL}.get(x, FULL)
        if ext >= 0x80000006:
            a5, b5, _, _ = cpuid(0x80000005, 0)
            a6, b6, _, _ = cpuid(0x80000006, 0)
            if b5 & 0xFF:
                w = (b5 >> 24) & 0xFF
                structs[S_L1D_4K] = ((b5 >> 16) & 0xFF, FULL if w == 0xFF else w, _4K | _2M | _1G)
            if b5 & 0xFF:
                w = (b5 >> 8) & 0xFF
                structs[S_L1I_4K] = (b5 & 0xFF, FULL if w == 0xFF else w, _4K | _2M | _1G)
            if b6 & 0xFFF:
                structs[S_L2] = ((b6 >> 16) & 0xFFF, assoc6(b6 >> 28), _4K | _2M)
                structs[S_L2I] = (b6 & 0xFFF, assoc6((b6 >> 12) & 15), _4K | _2M)
            src = "CPUID 0x80000005/0x80000006"
        if ext >= 0x80000019 and structs:
            src += "/0x80000019"
    if not structs:
        g = PRESETS[FALLBACK]
        why = f"{vendor} family {family:#x} model {model:#x}: CPUID lists no TLBs"
        return Geometry(f"host ({g.name}; {why})", g.source, g.structs, g.has_invlpgb)
    psc = _AMD_PSC if vendor != "GenuineIntel" else _INTEL_PSC
    for s, v in psc.items():
        structs.setdefault(s, v)
    return Geometry("host", src, structs)


def geometry(tlb) -> Geometry:
    """A Geometry from Machine(tlb=...): a preset name, "host", a dict, or a Geometry."""
    if isinstance(tlb, Geometry):
        return tlb
    if isinstance(tlb, dict):
        return custom_geometry(tlb)
    if tlb == "host":
        return host_geometry()
    if tlb in PRESETS:
        return PRESETS[tlb]
    raise ValueError(f"unknown TLB preset {tlb!r}: one of host, {', '.join(PRESETS)}, or a dict")
