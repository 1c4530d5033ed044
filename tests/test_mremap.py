"""mremap(2) against Linux 6.18 (mm/mremap.c), vmsim/conform/probes/anon-probe-6.18.jsonl and
tools/testing/selftests/mm/mremap_test.c / mremap_dontunmap.c."""
import errno
import functools

import numpy as np
import pytest

from vmsim import (PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED, MAP_ANONYMOUS,
                   MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP)
from vmsim.arch.x86 import pgtable_types as T
from vmsim.mm.mm_types import VM_ACCOUNT, VM_LOCKED
from vmtest import pte_at, pfn_at  # noqa: F401
from vmtest import flt, errno_of  # noqa: F401
from vmtest import vmas as layout  # noqa: F401

P = 4096
MB = 1 << 20
ANON = MAP_PRIVATE | MAP_ANONYMOUS
RW = PROT_READ | PROT_WRITE
MAP_FIXED_NOREPLACE = 0x100000


@functools.lru_cache(maxsize=8)
def pattern(n, seed=7):
    """Byte i is ((i * 131 + seed) >> 3) & 0xFF (numpy: the 4 MiB patterns were a
    per-byte Python loop, ~0.5 s each)."""
    return (((np.arange(n, dtype=np.int64) * 131 + seed) >> 3) & 0xFF).astype(np.uint8).tobytes()


def test_conform_mremap_move_fixed(proc):
    a = proc.mmap(0, 16 * P, RW, ANON)
    proc.write(a, pattern(16 * P))
    pfns = [pfn_at(proc, a + i * P) for i in range(16)]
    dst = a - 16 * P
    f = flt(proc)
    assert proc.mremap(a, 16 * P, 16 * P, MREMAP_MAYMOVE | MREMAP_FIXED, dst) == dst
    assert layout(proc, a, a + 16 * P) == []
    assert [pfn_at(proc, dst + i * P) for i in range(16)] == pfns
    assert proc.read(dst, 16 * P) == pattern(16 * P)
    assert flt(proc) == f
    assert proc.machine.k.tlb_pending == []


def test_conform_mremap_grow_moves_below(proc):
    """mremap_grow: 16 -> 32 pages with [vvar] right after: moved top-down just below."""
    a = proc.mmap(0, 16 * P, RW, ANON)
    assert proc.mm.vma_lookup(a + 16 * P) is not None          # the next VMA blocks growth
    proc.touch(a, 16 * P, write=True, value=7)
    pfns = [pfn_at(proc, a + i * P) for i in range(16)]
    new = proc.mremap(a, 16 * P, 32 * P, MREMAP_MAYMOVE)
    assert new == a - 32 * P
    assert [pfn_at(proc, new + i * P) for i in range(16)] == pfns
    assert all(pte_at(proc, new + i * P) == 0 for i in range(16, 32))
    f = flt(proc)
    proc.touch(new + 16 * P, 16 * P, write=True)
    assert flt(proc) - f == 16
    assert sum(proc.read(new, 16 * P)) == 7 * 16


def test_conform_mremap_grow_in_place(proc):
    a = proc.mmap(0, 32 * P, RW, ANON)
    proc.munmap(a + 16 * P, 16 * P)
    proc.touch(a, 16 * P, write=True)
    assert proc.mremap(a, 16 * P, 32 * P, MREMAP_MAYMOVE) == a
    assert layout(proc, a, a + 32 * P) == [(a, a + 32 * P)]


def test_expand_merge(proc):
    """mremap_test.c mremap_expand_merge: munmap the middle page, expand the first
    page by one: one VMA covering the 3 pages."""
    a = proc.mmap(0, 3 * P, RW, ANON)
    proc.munmap(a + P, P)
    assert proc.mremap(a, P, 2 * P, 0) == a
    assert layout(proc, a, a + 3 * P) == [(a, a + 3 * P)]


def test_expand_merge_offset(proc):
    """mremap_test.c mremap_expand_merge_offset: munmap the last page, expand the
    middle page: one VMA of 3 pages."""
    a = proc.mmap(0, 3 * P, RW, ANON)
    proc.touch(a, 3 * P, write=True)
    proc.munmap(a + 2 * P, P)
    assert proc.mremap(a + P, P, 2 * P, 0) == a + P
    assert layout(proc, a, a + 3 * P) == [(a, a + 3 * P)]


def test_errnos(proc):
    a = proc.mmap(0, 16 * P, RW, ANON)
    mr = proc.mremap
    assert errno_of(mr, a, P, 2 * P, 8) == errno.EINVAL                       # bad flag
    assert errno_of(mr, a + 1, P, 2 * P, 0) == errno.EINVAL                   # unaligned
    assert errno_of(mr, a, P, 0, 0) == errno.EINVAL                           # new_len 0
    assert errno_of(mr, a, P, P, MREMAP_FIXED, a + 8 * P) == errno.EINVAL     # FIXED w/o MAYMOVE
    assert errno_of(mr, a, 2 * P, 2 * P, MREMAP_FIXED | MREMAP_MAYMOVE, a + P) == errno.EINVAL
    assert errno_of(mr, a, 2 * P, 3 * P, MREMAP_DONTUNMAP | MREMAP_MAYMOVE, 0) == errno.EINVAL
    assert errno_of(mr, a, 2 * P, 2 * P, MREMAP_DONTUNMAP, 0) == errno.EINVAL
    assert errno_of(mr, a, 0, 3 * P, MREMAP_MAYMOVE, 0) == errno.EINVAL       # private dup
    assert errno_of(mr, a, P, P, MREMAP_FIXED | MREMAP_MAYMOVE, a + 8 * P + 1) == errno.EINVAL
    assert errno_of(mr, 0x10000, P, 2 * P, MREMAP_MAYMOVE) == errno.EFAULT
    assert errno_of(mr, a + 14 * P, 4 * P, 5 * P, MREMAP_MAYMOVE) == errno.EFAULT   # crosses end
    # No resize: returns addr without looking further (measured on 6.18).
    assert mr(a + 14 * P, 4 * P, 4 * P, MREMAP_MAYMOVE) == a + 14 * P
    blocked = proc.mmap(0, 2 * P, RW, ANON)
    proc.mmap(blocked + 2 * P, P, RW, ANON | 0x10)
    assert errno_of(mr, blocked, 2 * P, 4 * P, 0) == errno.ENOMEM            # can't move


def test_shrink_unmaps_tail(proc):
    a = proc.mmap(0, 16 * P, RW, ANON)
    proc.touch(a, 16 * P, write=True)
    k = proc.machine.k
    before = k.committed_as
    assert proc.mremap(a + 14 * P, 2 * P, P, 0) == a + 14 * P
    assert layout(proc, a, a + 16 * P) == [(a, a + 15 * P)]
    assert pte_at(proc, a + 15 * P) == 0
    assert k.committed_as == before - 1


def test_accounting_move_keeps_charge(proc):
    """unmap_source_vma(): a moved VM_ACCOUNT mapping keeps its commit charge; the
    pieces left of a partial move keep VM_ACCOUNT."""
    k = proc.machine.k
    a = proc.mmap(0, 8 * P, RW, ANON)
    before = k.committed_as
    total = proc.mm.total_vm
    dst = proc.mmap(0, 2 * P, RW, ANON)
    proc.munmap(dst, 2 * P)
    proc.mremap(a + 3 * P, 2 * P, 2 * P, MREMAP_MAYMOVE | MREMAP_FIXED, dst)
    assert k.committed_as == before
    assert proc.mm.total_vm == total
    for addr in (a, a + 5 * P, dst):
        assert proc.mm.vma_lookup(addr).vm_flags & VM_ACCOUNT


def test_mlocked_grow_populates(proc):
    """do_mremap(): growing an mlocked mapping faults the new part in (measured: 4
    faults for 4 new pages); locked_vm follows."""
    a = proc.mmap(0, 4 * P, RW, ANON | 0x2000)
    locked = proc.mm.locked_vm
    f = flt(proc)
    new = proc.mremap(a, 4 * P, 8 * P, MREMAP_MAYMOVE)
    assert flt(proc) - f == 4
    assert proc.mm.locked_vm == locked + 4
    assert proc.mm.vma_lookup(new).vm_flags & VM_LOCKED


def test_dontunmap_simple(proc):
    """mremap_dontunmap.c simple: dest has the data, the source stays mapped and
    refaults zero (measured: 5 faults, zero page)."""
    src = proc.mmap(0, 5 * P, RW, ANON)
    proc.write(src, b"a" * 5 * P)
    dst = proc.mremap(src, 5 * P, 5 * P, MREMAP_DONTUNMAP | MREMAP_MAYMOVE, 0)
    assert dst != src
    assert layout(proc, src, src + 5 * P) == [(src, src + 5 * P)]
    # dontunmap_complete() clears VM_LOCKED* only: the source stays accounted.
    assert proc.mm.vma_lookup(src).vm_flags & (VM_ACCOUNT | VM_LOCKED) == VM_ACCOUNT
    assert proc.read(dst, 5 * P) == b"a" * 5 * P
    f = flt(proc)
    assert proc.read(src, 5 * P) == bytes(5 * P)
    assert flt(proc) - f == 5
    assert pfn_at(proc, src) == proc.machine.k.zero_pfn


def test_dontunmap_shmem_keeps_source_data(proc):
    src = proc.mmap(0, 5 * P, RW, MAP_SHARED | MAP_ANONYMOUS)
    proc.write(src, b"a" * 5 * P)
    dst = proc.mremap(src, 5 * P, 5 * P, MREMAP_DONTUNMAP | MREMAP_MAYMOVE, 0)
    assert proc.read(dst, 5 * P) == b"a" * 5 * P
    assert proc.read(src, 5 * P) == b"a" * 5 * P


def test_dontunmap_fixed_and_partial(proc):
    """mremap_dontunmap.c: fixed dest replaced; partial source 'aaaaa00000'; partial
    overwrite of a 10-page 'X' dest gives 'aaaaaXXXXX'."""
    src = proc.mmap(0, 10 * P, RW, ANON)
    proc.write(src, b"a" * 10 * P)
    dst = proc.mmap(0, 10 * P, RW, ANON)
    proc.write(dst, b"X" * 10 * P)
    r = proc.mremap(src + 5 * P, 5 * P, 5 * P, MREMAP_DONTUNMAP | MREMAP_MAYMOVE | MREMAP_FIXED, dst)
    assert r == dst
    assert proc.read(src, 10 * P) == b"a" * 5 * P + bytes(5 * P)
    assert proc.read(dst, 10 * P) == b"a" * 5 * P + b"X" * 5 * P


def _aligned_map(proc, size, align):
    """mremap_test.c get_source_mapping(): an address aligned to exactly ``align``."""
    big = proc.mmap(0, size + 4 * align, RW, ANON)
    addr = (big + 2 * align - 1) & ~(2 * align - 1)
    addr += align
    proc.munmap(big, size + 4 * align)
    return proc.mmap(addr, size, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE)


@pytest.mark.parametrize("size,src_al,dst_al", [
    (8 * 1024, P, P), (2 * MB, MB, P), (2 * MB, MB, MB), (4 * MB, 2 * MB, P),
    (4 * MB, 2 * MB, MB), (4 * MB, 2 * MB, 2 * MB), (5 * MB, MB, MB)])
def test_mremap_test_data_moves(proc, size, src_al, dst_al):
    """mremap_test.c: shared anon source, pattern, MAYMOVE|FIXED to an aligned dest."""
    src = _aligned_map(proc, size, src_al)
    dst = _aligned_map(proc, size, dst_al)
    proc.munmap(dst, size)
    data = pattern(min(size, 4 * MB))
    proc.write(src, data)
    assert proc.mremap(src, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, dst) == dst
    assert proc.read(dst, len(data)) == data
    assert proc.machine.k.tlb_pending == []


def test_pmd_aligned_move_moves_the_pte_table(proc):
    """move_normal_pmd(): a PMD-aligned 2 MiB extent hands over the PTE table itself."""
    src = _aligned_map(proc, 2 * MB, 2 * MB)
    proc.touch(src, 2 * MB, write=True, stride=256 * P)
    dst = _aligned_map(proc, 2 * MB, 2 * MB)
    proc.munmap(dst, 2 * MB)
    table = pte_at(proc, src, level=21) & T.PTE_PFN_MASK
    proc.mremap(src, 2 * MB, 2 * MB, MREMAP_MAYMOVE | MREMAP_FIXED, dst)
    assert pte_at(proc, dst, level=21) & T.PTE_PFN_MASK == table
    assert pte_at(proc, src, level=21) == 0
    assert proc.read(dst + 256 * P, 1) == b"\x01"


def test_move_1mb_from_start(proc):
    """mremap_test.c mremap_move_1mb_from_start: the first 1 MiB of src survives."""
    size, al = 6 * MB, MB + 256 * 1024
    src = proc.mmap(0, size + 2 * al, RW, ANON)
    src = ((src + al - 1) // al) * al
    dst = proc.mmap(0, size + 2 * al, RW, ANON)
    dst = ((dst + al - 1) // al) * al
    proc.write(src, pattern(2 * MB))
    proc.munmap(dst, MB)
    assert proc.mremap(src + MB, MB, MB, MREMAP_MAYMOVE | MREMAP_FIXED, dst + MB) == dst + MB
    assert proc.read(src, MB) == pattern(2 * MB)[:MB]
    assert proc.read(dst + MB, MB) == pattern(2 * MB)[MB:]


def test_move_multiple_vmas(proc):
    """6.17+ remap_move: MREMAP_FIXED without resize moves every VMA in the range
    (measured on 6.18: succeeds across an mprotect split)."""
    a = proc.mmap(0, 3 * P, RW, ANON)
    proc.write(a, b"x" * 3 * P)
    proc.mprotect(a + P, P, PROT_READ)
    dst = proc.mmap(0, 8 * P, 0, ANON)
    assert proc.mremap(a, 3 * P, 3 * P, MREMAP_MAYMOVE | MREMAP_FIXED, dst) == dst
    assert layout(proc, dst, dst + 3 * P) == [(dst, dst + P), (dst + P, dst + 2 * P), (dst + 2 * P, dst + 3 * P)]
    assert proc.read(dst, 3 * P) == b"x" * 3 * P
    assert layout(proc, a, a + 3 * P) == []


def test_dontunmap_move_next_to_its_own_vma_matches_linux():
    """mremap(X, 3p, 3p, MAYMOVE|FIXED|DONTUNMAP, X + 3p) of a VMA's last three pages, to
    the pages right after it: the new VMA can merge into the source one (no anon_vma
    yet), and remap_move must not visit that VMA again (it returned EFAULT). Linux 6.18.44
    moves in every case: vmsim/conform/probes/mremap_dontunmap_adjacent-6.18.txt (found
    by tools/longrun.py --seed 5)."""
    import errno as E
    import os
    import vmsim
    from vmsim import MAP_PRIVATE, MAP_ANONYMOUS, MAP_FIXED, PROT_NONE
    path = os.path.join(os.path.dirname(__file__), "..", "vmsim", "conform", "probes",
                        "mremap_dontunmap_adjacent-6.18.txt")
    want = [l.strip() for l in open(path) if not l.startswith("#")]
    P = 4096
    m = vmsim.Machine(memory="1G")
    p = m.spawn()
    got = []
    for prot in range(4):
        for touch in range(2):
            arena = p.mmap(0, 32 * P, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS)
            p.munmap(arena, 32 * P)
            v = arena + 8 * P
            p.mmap(v, 7 * P, 3, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
            if touch:
                p.write(v, b"\1" * 7 * P)
            p.mprotect(v, 7 * P, prot)
            x = v + 4 * P
            try:
                r = p.mremap(x, 3 * P, 3 * P, 7, x + 3 * P)
                res = "moved" if r == x + 3 * P else "other"
            except OSError as e:
                res = os.strerror(e.errno) if e.errno != E.EFAULT else "Bad address"
            got.append(f"prot {prot} touch {touch}: {res}")
            if touch and prot & 1 and res == "moved":
                assert p.read(x + 3 * P, 3 * P) == b"\1" * 3 * P     # the pages moved
            p.munmap(arena, 32 * P)
    assert got == want
