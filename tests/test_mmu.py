"""The MMU walk (vmsim.arch.x86.mmu): hardware rules, and identical results compiled or not."""
import os

import pytest

import vmsim
from vmsim import PROT_READ, PROT_WRITE, PROT_EXEC, MAP_PRIVATE, MAP_ANONYMOUS
from vmsim.arch.x86 import mmu, cpu
from vmsim.arch.x86.cpu import _s64 as s64
from vmsim.arch.x86.pgtable_types import (X86_PF_PROT, X86_PF_WRITE, X86_PF_USER, X86_PF_INSTR,
                                          _PAGE_ACCESSED, _PAGE_DIRTY, PTE_PFN_MASK)

RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS


def _pte_ptr(k, mm, addr):
    pool, rows = k.ptpool.mv, k.mem.private
    shift = k.pgdir_shift
    p = mm.pgd_ptr + ((addr >> shift) & 511)
    while shift > 12:
        e = pool[p]
        assert e & 1
        shift -= 9
        p = rows[(e & PTE_PFN_MASK) >> 12] * 512 + ((addr >> shift) & 511)
    return p


def _scenario(levels):
    m = vmsim.Machine("256M", paging_levels=levels)
    p = m.spawn()
    a = p.mmap(0, 8 << 12, RW, ANON)
    p.touch(a, 4 << 12, write=True)                 # pages 0-3 present, writable, dirty
    p.read(a + (4 << 12), 1)                        # page 4: zero page, read-only
    ro = p.mmap(0, 4096, PROT_READ, ANON)
    p.read(ro, 1)
    x = p.mmap(0, 4096, PROT_READ | PROT_EXEC, ANON)
    p.read(x, 1)
    return m, p, a, ro, x


ACCESSES = (X86_PF_USER, X86_PF_USER | X86_PF_WRITE, X86_PF_USER | X86_PF_INSTR,
            0, X86_PF_WRITE)                         # user read/write/fetch, kernel read/write


def _table_addresses(k, mm):
    """The first and last byte of the range that each entry of each table reachable from
    ``mm->pgd`` maps: every path a walk of this mm can take, present or not."""
    pool, rows = k.ptpool.arr, k.mem.np_private
    top = 57 if k.la57 else 48
    out = []

    def visit(pfn, shift, base):
        row = int(rows[pfn])
        for i in range(512):
            a = base | (i << shift)
            if a >> (top - 1):
                a |= ((1 << 64) - 1) ^ ((1 << top) - 1)       # sign-extend: canonical
            e = int(pool[row * 512 + i])
            if e & 1 and shift > 12 and not (e & 0x80 and shift in (21, 30)):
                visit((e & PTE_PFN_MASK) >> 12, shift - 9, a)
            else:
                out.extend((a, a + (1 << shift) - 8))
    visit(mm.pgd, k.pgdir_shift, 0)
    return out


def _walk_inputs(m, p):
    """(address, access) pairs covering every way a walk can go in the scenario: both ends
    of every entry of every table, every page of every VMA and the page past it, with
    every access kind."""
    k = m.k
    addrs = set(_table_addresses(k, p.mm))
    for vma in p.mm._vmas_in(0, 1 << 64):
        for a in range(vma.vm_start, vma.vm_end + 4096, 4096):
            addrs.add(a + 0x7F8)
    return sorted((a, acc) for a in addrs for acc in ACCESSES)


def _compare(levels, pairs_of):
    """Walk each (address, access) pair with the Python and the compiled MMU, each on a
    fresh copy of the live tables; both must give the same result and leave the same
    tables (Accessed/Dirty updates). Return (pairs walked, how many faulted)."""
    m, p, a, ro, x = _scenario(levels)
    k = m.k
    pairs = pairs_of(_walk_inputs(m, p), m, p)
    tr, _ = mmu.compiled()
    live = k.ptpool.arr[:k.ptpool.used * 512]
    bad, faults = [], 0
    for addr, access in pairs:
        got = []
        for fn in (mmu.translate, tr):
            pt = live.copy()
            r = int(fn(pt, k.mem.np_private.copy(), p.mm.pgd, k.la57, s64(addr), access))
            got.append((r, pt))
        (r1, pt1), (r2, pt2) = got
        if r1 != r2 or not (pt1 == pt2).all():
            bad.append((hex(addr), access, r1, r2))
        faults += r1 < 0
    assert not bad, f"compiled walk differs from Python at {bad[:5]}"
    return len(pairs), faults


SAMPLE = 200


def _stratified(m, p, pairs, rnd):
    """Half the sample from pairs that translate, half from pairs that fault (classified
    by the Python walk on one scratch copy: Accessed/Dirty updates never change which),
    so no draw can miss either kind."""
    k = m.k
    pt = k.ptpool.arr[:k.ptpool.used * 512].copy()
    rows = k.mem.np_private.copy()
    ok, fault = [], []
    for addr, access in pairs:
        r = mmu.translate(pt, rows, p.mm.pgd, k.la57, s64(addr), access)
        (fault if r < 0 else ok).append((addr, access))
    half = SAMPLE // 2
    return rnd.sample(ok, half) + rnd.sample(fault, SAMPLE - half)


@pytest.mark.parametrize("levels", [4, 5])
def test_compiled_walk_matches_python(levels):
    # A random sample of the exhaustive set below (a fixed one under CI, where a red run
    # must mean a change broke something); the seed is in the message to replay it.
    import random
    seed = 0 if os.environ.get("CI") else random.randrange(1 << 32)
    rnd = random.Random(seed)
    n, faults = _compare(levels, lambda pairs, m, p: _stratified(m, p, pairs, rnd))
    assert n == SAMPLE, f"seed {seed}"
    assert 0 < faults < n, f"seed {seed}: the sample should hold both translations and faults"


@pytest.mark.exhaustive
@pytest.mark.parametrize("levels", [4, 5])
def test_compiled_walk_matches_python_exhaustive(levels):
    n, faults = _compare(levels, lambda pairs, m, p: pairs)
    assert n > 20000 and 0 < faults < n


def test_compiled_touch_batch_matches_python():
    results = []
    for compiled in (False, True):
        cpu._use_compiled(compiled)
        try:
            m = vmsim.Machine("256M")
            p = m.spawn()
            a = p.mmap(0, 64 << 12, RW, ANON)
            p.touch(a, 64 << 12, write=True, stride=4096 * 3, value=7)
            p.touch(a, 64 << 12, stride=4096 * 5)
            p.write(a + 9, b"xy")
            p.touch(a, 64 << 12, write=True, stride=4096, value=9)
            results.append((p.read(a, 64 << 12), p.getrusage().ru_minflt,
                            bytes(m.k.ptpool.arr[:m.k.ptpool.used * 512].tobytes())))
        finally:
            cpu._default()
    assert results[0][:2] == results[1][:2]
    assert results[0][2] == results[1][2]


def test_error_codes_follow_the_sdm():
    m, p, a, ro, x = _scenario(4)
    k = m.k
    pt, rows = k.ptpool.mv, k.mem.private
    cr3 = p.mm.pgd
    # Not present: P clear, W/U/I as the access.
    assert ~mmu.translate(pt, rows, cr3, 0, a + (6 << 12), X86_PF_USER | X86_PF_WRITE) == \
        X86_PF_USER | X86_PF_WRITE
    # Write to a present read-only page: P set.
    assert ~mmu.translate(pt, rows, cr3, 0, ro, X86_PF_USER | X86_PF_WRITE) == \
        X86_PF_PROT | X86_PF_USER | X86_PF_WRITE
    # Fetch from a present NX page: P|I.
    assert ~mmu.translate(pt, rows, cr3, 0, a, X86_PF_USER | X86_PF_INSTR) == \
        X86_PF_PROT | X86_PF_USER | X86_PF_INSTR
    # Fetch from an executable page works.
    assert mmu.translate(pt, rows, cr3, 0, x, X86_PF_USER | X86_PF_INSTR) >= 0
    # User access to the kernel direct map: present but supervisor-only -> P|U.
    assert ~mmu.translate(pt, rows, cr3, 0, s64(k.page_offset), X86_PF_USER) == X86_PF_PROT | X86_PF_USER


def test_accessed_and_dirty_bits_set_like_the_cpu():
    m = vmsim.Machine("256M")
    p = m.spawn()
    k = m.k
    a = p.mmap(0, 4096, RW, ANON)
    p.write(a, b"1")
    ptr = _pte_ptr(k, p.mm, a)
    k.ptpool.mv[ptr] = k.ptpool.mv[ptr] & ~(_PAGE_ACCESSED | _PAGE_DIRTY)
    mmu.translate(k.ptpool.mv, k.mem.private, p.mm.pgd, 0, a, X86_PF_USER)
    assert k.ptpool.mv[ptr] & _PAGE_ACCESSED and not k.ptpool.mv[ptr] & _PAGE_DIRTY
    mmu.translate(k.ptpool.mv, k.mem.private, p.mm.pgd, 0, a, X86_PF_USER | X86_PF_WRITE)
    assert k.ptpool.mv[ptr] & _PAGE_DIRTY
