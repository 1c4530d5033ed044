"""How fast could the TLB model's random-miss path be? A bound, not a figure of vmsim.

    python bench/bench_tlb_bound.py [--region MiB]

Runs random 1-byte reads over a resident region (1 GiB by default, 4 Mi accesses, the
bench_replay random trace) through vmsim's --tlb golden-cove geometry build, and through
``_straight``: a numba kernel that does the same steps for this case only, written
straight through (first-level and second-level probes, the paging-structure caches, the
walk, the fills with each set's LRU word, the statistics, the prefetch 16 accesses
ahead), with the structure constants of golden-cove. It first checks that the kernel
leaves the TLB entries, clock and statistics vmsim's build leaves (else the bound means
nothing), then prints both rates (accesses per CPU second). Bails out (returns the
index) on anything outside the case: an instruction fetch, a huge page, a fault.
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402
from numba.cpython.unsafe.numbers import trailing_zeros as cttz  # noqa: E402

import vmsim  # noqa: E402
from vmsim.arch.x86 import mmu_batch, tlb as T  # noqa: E402
from vmsim.arch.x86._prefetch import _prefetch  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--region", type=int, default=1024, help="MiB of resident pages (default 1024)")
region = ap.parse_args().region << 20
mmu_batch._GEOMETRY_LOAD_AFTER = 0
mmu_batch._GEOMETRY_COMPILE_AFTER = 0.0
n = 1 << 22
rng = np.random.default_rng(1)
off = rng.integers(0, region >> 12, n) * 4096 + rng.integers(0, 4096, n)
m = vmsim.Machine("16G", debug_vm=False, tlb="golden-cove")
p = m.spawn()
a = p.mmap(0, region, vmsim.PROT_READ | vmsim.PROT_WRITE, vmsim.MAP_PRIVATE | vmsim.MAP_ANONYMOUS)
addrs = (a + off).astype(np.int64)
kinds = np.zeros(n, np.uint8)
p.access(addrs, np.full(n, 1, np.uint8))
p.access(addrs, kinds)
k = m.k; hw = k.tlb
geo = hw.geo
B1 = int(geo[T.S_L1D_4K, 0]); B2 = int(geo[T.S_L2, 0]); BPDE = int(geo[T.S_PDE, 0]); BPDP = int(geo[T.S_PDPTE, 0]); BPML4 = int(geo[T.S_PML4E, 0])
NIB = 0x1111111111111111
TOPS = -0x7777777777777778
VALID = 1 << 15
HIT_L1 = T.ST_HIT + 3 * T.S_L1D_4K
HIT_L2 = T.ST_HIT + 3 * T.S_L2
ST_L1_MISS, ST_MISS, ST_WALK, ST_WALK_READS, ST_PSC_HIT, ST_WALK_DONE = T.ST_L1_MISS, T.ST_MISS, T.ST_WALK, T.ST_WALK_READS, T.ST_PSC_HIT, T.ST_WALK_DONE
HELD_MASK_OTHER = (6 << (3 * T.S_L1D_4K)) | (7 << (3 * T.S_L1D_2M)) | (7 << (3 * T.S_L1D_1G)) | (6 << (3 * T.S_L2)) | (7 << (3 * T.S_L2_1G))
_PFN = T._PFN
BIT_L1 = 1 << (3 * T.S_L1D_4K); BIT_L2 = 1 << (3 * T.S_L2); BIT_PDE = 1 << (3 * T.S_PDE)

@njit(inline="always")
def _use(ent, cpu, first, way):
    o = ent[cpu, 3, first]
    x = o ^ (way * NIB)
    p4 = cttz((x - NIB) & ~x & TOPS) & ~3
    ent[cpu, 3, first] = (o & ~((2 << (p4 + 3)) - 1)) | ((o & ((1 << p4) - 1)) << 4) | way

@njit(inline="always")
def _fill(ent, cpu, first, ways, tag, ctx, val):
    mask = ent[cpu, 3, first + 1]
    if mask != (1 << ways) - 1:
        way = cttz(~mask)
    else:
        way = (ent[cpu, 3, first] >> (4 * (ways - 1))) & 15
    ent[cpu, 3, first + 1] = mask | (1 << way)
    ent[cpu, 0, first + way] = tag
    ent[cpu, 1, first + way] = ctx
    ent[cpu, 2, first + way] = val
    _use(ent, cpu, first, way)

@njit(inline="always")
def _probe(ent, cpu, first, ways, tag, pcid):
    for way in range(ways):
        if ent[cpu, 0, first + way] == tag:
            c = ent[cpu, 1, first + way]
            if c & VALID and (c >> 13) & 3 == 0 and ((c & 0xFFF) == pcid or c & 0x1000):
                return way
    return -1

@njit(nogil=True)
def _straight(pt, rows, cr3, addrs, ent, clock, st, cpu, pcid, w):
    n = len(addrs)
    rootrow = rows[cr3]
    for i in range(n):
        if i + 16 < n:
            ad = addrs[i + 16]
            hi = ad >> 30
            s = (hi & 7) * 4
            if hi != w[s]:
                row = rootrow
                sh = 39
                ok = True
                while sh > 21:
                    e = pt[row * 512 + ((ad >> sh) & 511)]
                    if (e & 0x81) != 1:
                        ok = False
                        break
                    row = rows[(e & _PFN) >> 12]
                    sh -= 9
                if ok:
                    w[s] = hi
                    w[s + 1] = row
            if hi == w[s]:
                e = pt[w[s + 1] * 512 + ((ad >> 21) & 511)]
                if (e & 0x81) == 1:
                    _prefetch(pt, rows[(e & _PFN) >> 12] * 512 + ((ad >> 12) & 511))
            f2 = B2 + ((ad >> 12) & 127) * 16
            _prefetch(ent, (cpu, 0, f2)); _prefetch(ent, (cpu, 0, f2 + 15))
            _prefetch(ent, (cpu, 1, f2)); _prefetch(ent, (cpu, 1, f2 + 15))
        addr = addrs[i]
        tag = addr >> 12
        held = clock[cpu, 1]
        if held & HELD_MASK_OTHER:
            return i
        f1 = B1 + (tag & 15) * 6
        way = -1
        if held & BIT_L1:
            way = _probe(ent, cpu, f1, 6, tag, pcid)
        if way >= 0:
            v = ent[cpu, 2, f1 + way]
            if not v & 4:
                return i
            _use(ent, cpu, f1, way)
            st[cpu, HIT_L1] += 1
            continue
        f2 = B2 + (tag & 127) * 16
        way = -1
        if held & BIT_L2:
            way = _probe(ent, cpu, f2, 16, tag, pcid)
        st[cpu, ST_L1_MISS] += 1
        if way >= 0:
            _use(ent, cpu, f2, way)
            st[cpu, HIT_L2] += 1
            c = ent[cpu, 1, f2 + way]
            v = ent[cpu, 2, f2 + way]
            _fill(ent, cpu, f1, 6, tag, (c & 0xFFF) | VALID | (c & 0x1000), v)
            clock[cpu, 1] |= BIT_L1
            if not v & 4:
                return i
            continue
        st[cpu, ST_MISS] += 1
        st[cpu, ST_WALK] += 1
        # The PDE cache, else the PDPTE cache (a miss of both is outside the case).
        fp = BPDE + ((addr >> 21) & 7) * 4
        first, sh, level = fp, 12, 2
        wy = _probe(ent, cpu, fp, 4, addr >> 21, pcid)
        if wy < 0:
            first, sh, level = BPDP, 21, 1
            wy = _probe(ent, cpu, BPDP, 4, addr >> 30, pcid)
            if wy < 0:
                return i
        _use(ent, cpu, first, wy)
        v = ent[cpu, 2, first + wy]
        row = rows[(v & _PFN) >> 12]
        us = (v >> 2) & 1
        rw = (v >> 1) & 1
        nx = 1 if v < 0 else 0
        st[cpu, ST_PSC_HIT + level] += 1
        while True:
            pp = row * 512 + ((addr >> sh) & 511)
            e = pt[pp]
            st[cpu, ST_WALK_READS] += 1
            if not e & 1:
                return i
            if not e & 4:
                us = 0
            if not e & 2:
                rw = 0
            if e < 0:
                nx = 1
            if sh == 12:
                val = (e & ~6 & 0x7FFFFFFFFFFFFFFF) | (rw << 1) | (us << 2)
                if nx:
                    val |= -0x8000000000000000
                if not us:
                    return i
                if not e & 0x20:
                    pt[pp] = e | 0x20
                    val |= 0x20
                st[cpu, ST_WALK_DONE] += 1
                ctx = pcid | VALID
                if e & 0x100:
                    return i
                _fill(ent, cpu, f2, 16, tag, ctx, val)
                _fill(ent, cpu, f1, 6, tag, ctx, val)
                clock[cpu, 1] |= BIT_L1 | BIT_L2
                break
            if e & 0x80:
                return i
            if not e & 0x20:
                pt[pp] = e | 0x20
            if sh == 21:
                pv = (e & _PFN) | (rw << 1) | (us << 2)
                if nx:
                    pv |= -0x8000000000000000
                _fill(ent, cpu, fp, 4, addr >> 21, pcid | VALID, pv)
                clock[cpu, 1] |= BIT_PDE
            else:
                return i
            row = rows[(e & _PFN) >> 12]
            sh -= 9
    return n

pt, rows = k.ptpool.arr, k.mem.np_private
cpu = p.task.cpu if hasattr(p, "task") else 0
cr3 = k.cpus[cpu].cr3
pcid = hw.cur_pcid[cpu]
# The same state from both, from the same start (the tables are not compared: after the
# warm-up every entry has Accessed set, so neither writes them).
snap = [x.copy() for x in (hw.ent, hw.clock, hw.stats)]
p.access(addrs, kinds)
real = [x.copy() for x in (hw.ent, hw.clock, hw.stats)]
for x, s in zip((hw.ent, hw.clock, hw.stats), snap):
    x[...] = s
w = np.full(40, 1 << 62, np.int64)
r = _straight(pt, rows, cr3, addrs, hw.ent, hw.clock, hw.stats, cpu, pcid, w)
print(f"straight kernel ran {r:,} of {n:,} accesses")
for name, x, y in zip(("ent", "clock", "stats"), (hw.ent, hw.clock, hw.stats), real):
    d = np.argwhere(x != y)
    print(name, "equal" if len(d) == 0 else "DIFF %d %s" % (len(d), d[:5].tolist()))
for rep in range(2):
    rates = []
    for _ in range(5):
        t = time.process_time(); _straight(pt, rows, cr3, addrs, hw.ent, hw.clock, hw.stats, cpu, pcid, w); dt = time.process_time() - t
        rates.append(n / dt / 1e6)
    print("straight kernel M/s", " ".join("%.1f" % r for r in rates))
    rates = []
    for _ in range(3):
        t = time.process_time(); p.access(addrs, kinds); dt = time.process_time() - t
        rates.append(n / dt / 1e6)
    print("vmsim build M/s  ", " ".join("%.1f" % r for r in rates))
