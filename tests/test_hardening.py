"""Defects of issue 8 in mlock, mremap, MAP_FIXED and the access path, each against the
real kernel (scenarios recorded on this machine's 6.18.44) or the 6.18 source."""
import errno

import pytest

import vmsim
from vmsim import PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS, MAP_FIXED
from vmsim.api import SignalDelivered
from vmsim.mm import vmstat
from vmsim.mm.mm_types import VM_ACCOUNT
from vmtest import vmas

P = 4096
ANON = MAP_PRIVATE | MAP_ANONYMOUS
RW = PROT_READ | PROT_WRITE
MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP = 1, 2, 4


def test_mlock_fresh_pages_counts_culled(proc):
    """Linux (scenario mlock_culled): mlock of 64 fresh pages moves
    unevictable_pgs_mlocked and unevictable_pgs_culled by 64 each (vmsim had culled +0:
    its folio_add_lru_vma did mlock_new_folio *and* folio_add_lru)."""
    k = proc.machine.k
    a = proc.mmap(0, 64 * P, RW, ANON)
    ml, cu = k.vmstat[vmstat.UNEVICTABLE_PGS_MLOCKED], k.vmstat[vmstat.UNEVICTABLE_PGS_CULLED]
    proc.mlock(a, 64 * P)
    assert k.vmstat[vmstat.UNEVICTABLE_PGS_MLOCKED] - ml == 64
    assert k.vmstat[vmstat.UNEVICTABLE_PGS_CULLED] - cu == 64
    # Each new folio went through the mlock batch only, never the lru_add batch.
    assert not any(fb.lru_add for fb in k.cpu_fbatches)


def test_mremap_ignores_new_addr_without_fixed(proc):
    """Linux (scenario mremap_new_addr_ignored): MREMAP_MAYMOVE growth with new_addr
    0xfffffffffffff000 moves the mapping; with MREMAP_FIXED it is EINVAL."""
    a = proc.mmap(0, 4 * P, RW, ANON)
    proc.mmap(a + 4 * P, 4 * P, RW, ANON | MAP_FIXED)
    proc.write(a, b"z" * 4 * P)
    with pytest.raises(OSError) as e:
        proc.mremap(a, 4 * P, 8 * P, MREMAP_MAYMOVE | MREMAP_FIXED, 0xfffffffffffff000)
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        proc.mremap(a, 4 * P, 8 * P, 0, 0xfffffffffffff000)
    assert e.value.errno == errno.ENOMEM
    b = proc.mremap(a, 4 * P, 8 * P, MREMAP_MAYMOVE, 0xfffffffffffff000)
    assert b != a and proc.read(b, 4 * P) == b"z" * 4 * P


def test_failed_fixed_overcommit_keeps_mapping_and_data(proc):
    """The issue's repro: a 64 KiB mapping at 0x200000000000, written, then MAP_FIXED of
    64 TiB over it fails the heuristic overcommit check (ENOMEM) and the first mapping
    is still there with its data (Linux: scenario mmap_fixed_overcommit)."""
    k = proc.machine.k
    a = proc.mmap(0x200000000000, 0x10000, RW, ANON | MAP_FIXED)
    proc.write(a, b"d" * 0x10000)
    committed = k.committed_as
    with pytest.raises(OSError) as e:
        proc.mmap(0x200000000000, 0x400000000000, RW, ANON | MAP_FIXED)
    assert e.value.errno == errno.ENOMEM
    assert proc.read(a, 0x10000) == b"d" * 0x10000
    assert vmas(proc, a, a + 0x10000) == [(a, a + 0x10000)]
    assert k.committed_as == committed


def test_failed_fixed_overcommit_leaves_split(proc):
    """Linux (scenario mmap_fixed_overcommit): a failing MAP_FIXED over half a VMA leaves
    it split in two (the gather split it; the abort reattaches both pieces)."""
    a = proc.mmap(0, 16 * P, RW, ANON)
    proc.write(a, b"s" * 16 * P)
    with pytest.raises(OSError):
        proc.mmap(a + 8 * P - (64 << 40), 64 << 40, RW, ANON | MAP_FIXED)
    assert vmas(proc, a, a + 16 * P) == [(a, a + 8 * P), (a + 8 * P, a + 16 * P)]
    assert proc.read(a, 16 * P) == b"s" * 16 * P


def test_fixed_replace_keeps_commit_balanced(proc):
    """A successful MAP_FIXED over an accounted mapping charges pglen - nr_accounted:
    Committed_AS ends where a plain mapping of the new size would put it."""
    k = proc.machine.k
    base = k.committed_as
    a = proc.mmap(0, 16 * P, RW, ANON)
    proc.mmap(a + 4 * P, 8 * P, RW, ANON | MAP_FIXED)
    assert k.committed_as - base == 16
    proc.munmap(a, 16 * P)
    assert k.committed_as == base


def test_dontunmap_keeps_source_accounted_and_exit_returns_charge():
    """The issue's repro: mmap 64 MiB RW, mremap(MAYMOVE|DONTUNMAP), exit: Linux's
    Committed_AS is back where it was (vmsim was +131072 kB: the source lost VM_ACCOUNT
    but the copy's charge of new_len stayed). 6.18 dontunmap_complete() clears only
    VM_LOCKED_MASK."""
    m = vmsim.Machine(memory="256M")
    k = m.k
    base = k.committed_as
    c = m.spawn()
    before = k.committed_as
    a = c.mmap(0, 64 << 20, RW, ANON)
    c.write(a, b"x")
    d = c.mremap(a, 64 << 20, 64 << 20, MREMAP_MAYMOVE | MREMAP_DONTUNMAP)
    assert c.mm.vma_lookup(a).vm_flags & VM_ACCOUNT
    assert k.committed_as - before == 2 * (64 << 20) // P
    assert c.read(d, 1) == b"x"
    c.exit(0)
    assert k.committed_as == base


@pytest.mark.parametrize("levels", [4, 5])
def test_touch_across_1_47(levels):
    """p.touch(0x7ffffffff000, 8192) was a RecursionError on 5-level paging. The stack
    ends at DEFAULT_MAP_WINDOW (0x7ffffffff000) in both modes, so the first access is
    SIGSEGV SEGV_MAPERR there."""
    m = vmsim.Machine(memory="256M", paging_levels=levels)
    p = m.spawn()
    with pytest.raises(SignalDelivered) as e:
        p.touch(0x7ffffffff000, 8192)
    assert (e.value.signo, e.value.si_code, e.value.si_addr, e.value.offset) == \
        (11, 1, 0x7ffffffff000, 0)


def test_touch_across_1_47_la57_mapped():
    """With LA57 TASK_SIZE is (1 << 56) - 4096, so MAP_FIXED may map across 1 << 47 and
    a touch runs through both pages; 4-level's TASK_SIZE refuses the same mmap."""
    m = vmsim.Machine(memory="256M", paging_levels=5)
    p = m.spawn()
    a = p.mmap(0x7ffffffff000, 2 * P, RW, ANON | MAP_FIXED)
    p.touch(a, 2 * P, write=True, value=7)
    assert p.read(a, 1) == p.read(a + P, 1) == b"\7"
    with pytest.raises(SignalDelivered) as e:
        p.touch(a, 3 * P, write=True)
    assert e.value.si_addr == a + 2 * P and e.value.offset == 2 * P
    m4 = vmsim.Machine(memory="256M")
    with pytest.raises(OSError) as e:
        m4.spawn().mmap(0x7ffffffff000, 2 * P, RW, ANON | MAP_FIXED)
    assert e.value.errno == errno.ENOMEM


def test_touch_into_noncanonical_is_gp():
    """4-level: a run from the user half into the non-canonical hole takes #GP at the
    first non-canonical access (SIGSEGV SI_KERNEL, address 0)."""
    m = vmsim.Machine(memory="256M")
    p = m.spawn()
    top = p.mm.vma_lookup(0x7ffffffff000 - P)
    with pytest.raises(SignalDelivered) as e:
        p.touch(top.vm_end - P, 1 << 47, stride=1 << 46)
    assert e.value.si_code == 0x80 and e.value.offset == 1 << 46


def test_la57_hint_rules():
    """arch_get_unmapped_area_topdown on LA57 (6.18 source): no hint stays below
    DEFAULT_MAP_WINDOW (1 << 47); a valid hint above it is used as is; an invalid one
    above it searches the full space, high_limit = mmap_base + TASK_SIZE_MAX -
    DEFAULT_MAP_WINDOW; accesses above 1 << 47 work."""
    m = vmsim.Machine(memory="256M", paging_levels=5)
    p = m.spawn()
    window = (1 << 47) - P
    assert p.mmap(1 << 48, P, RW, ANON) == 1 << 48
    assert p.mmap(0, P, RW, ANON) < window
    top = p.mmap((1 << 56) - P, P, RW, ANON)        # hint + len > TASK_SIZE: invalid
    assert top == p.mm.mmap_base + ((1 << 56) - P - window) - P
    p.touch(1 << 48, P, write=True)
    assert p.read(1 << 48, 1) == b"\1"


def test_mlock_onfault_folios_wait_in_mlock_batch(proc):
    """6.18 mlock_new_folio(): a folio faulted into a VM_LOCKED VMA waits in the CPU's
    mlock_fbatch (PG_mlocked, counted mlocked, not yet on an LRU); the batch's
    __mlock_new_folio puts it on the unevictable list and counts it culled."""
    from vmsim.mm.page_flags import PG_lru, PG_unevictable, PG_mlocked
    from vmsim.mm.swap import lru_add_drain
    from vmsim.uapi import MLOCK_ONFAULT
    from vmtest import pfn_at
    k = proc.machine.k
    a = proc.mmap(0, 3 * P, RW, ANON)
    proc.mlock(a, 3 * P, MLOCK_ONFAULT)
    ml, cu = k.vmstat[vmstat.UNEVICTABLE_PGS_MLOCKED], k.vmstat[vmstat.UNEVICTABLE_PGS_CULLED]
    proc.touch(a, 3 * P, write=True)
    pfn = pfn_at(proc, a)
    assert k.vmstat[vmstat.UNEVICTABLE_PGS_MLOCKED] - ml == 3
    assert k.vmstat[vmstat.UNEVICTABLE_PGS_CULLED] - cu == 0
    assert k.mem.flags[pfn] & PG_mlocked and not k.mem.flags[pfn] & PG_lru
    lru_add_drain(k, proc.task.cpu)
    assert k.vmstat[vmstat.UNEVICTABLE_PGS_CULLED] - cu == 3
    assert k.mem.flags[pfn] & (PG_lru | PG_unevictable) == PG_lru | PG_unevictable
    proc.machine.check()
