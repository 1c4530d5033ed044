"""The MMU walk (vmsim.arch.x86.mmu): hardware rules, and identical results compiled or not."""
import pytest

import vmsim
from vmsim import PROT_READ, PROT_WRITE, PROT_EXEC, MAP_PRIVATE, MAP_ANONYMOUS
from vmsim.arch.x86 import mmu, cpu
from vmsim.arch.x86.cpu import s64
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


def _walk_all(fn, k, p, addrs):
    out = []
    for addr in addrs:
        for access in (X86_PF_USER, X86_PF_USER | X86_PF_WRITE, X86_PF_USER | X86_PF_INSTR):
            pt = k.ptpool.arr.copy()
            rows = k.mem.np_private.copy()
            r = fn(pt, rows, p.mm.pgd, k.la57, s64(addr), access)
            out.append((addr, access, int(r), pt.tobytes() == k.ptpool.arr.tobytes()))
    return out


@pytest.mark.parametrize("levels", [4, 5])
def test_compiled_walk_matches_python(levels):
    m, p, a, ro, x = _scenario(levels)
    k = m.k
    addrs = [a, a + 4096 * 3 + 17, a + (4 << 12), a + (7 << 12), ro, x, 0x1000,
             k.page_offset, 0xFFFFFFFF81000000]
    tr, _ = mmu.compiled()
    assert _walk_all(mmu.translate, k, p, addrs) == _walk_all(tr, k, p, addrs)


def test_compiled_touch_batch_matches_python():
    results = []
    for compiled in (False, True):
        cpu.use_compiled(compiled)
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
