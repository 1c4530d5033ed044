"""fork / exec / exit / wait, copy-on-write, rmap and MMU notifiers.

Expected values come from the 6.18 source (mm/memory.c copy_page_range,
vma_needs_copy, do_wp_page, wp_can_reuse_anon_folio; mm/mmap.c dup_mmap; mm/rmap.c
anon_vma_fork) and from C programs run on the 6.18 reference host (fault counts
from getrusage, the pgreuse delta from /proc/vmstat), noted per test. cow.c cases:
tools/testing/selftests/mm/cow.c "Basic COW after fork()" and its "with mprotect()
optimization" variant on a base page; madvise10: LTP testcases/kernel/syscalls/madvise.
"""
import errno

import pytest

from vmsim import (PROT_NONE, PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED, MAP_ANONYMOUS,
                   SignalDelivered, SIGSEGV, MADV_DONTFORK, MADV_DOFORK, MADV_WIPEONFORK,
                   MADV_KEEPONFORK, MADV_NOHUGEPAGE, MADV_DONTNEED)
from vmsim.arch.x86 import pgtable_types as T
from vmsim.arch.x86.pgtable import pgd_offset, p4d_offset, pud_offset, pmd_offset, pte_offset_map
from vmsim.mm import vmstat
from vmsim.mm.mm_types import VM_WIPEONFORK, VM_DONTCOPY, MM_ANONPAGES
from vmsim.mm.page_flags import PG_anon_exclusive
from vmsim.mm.rmap import folio_mapped_by
from vmtest import pte_at, pfn_at  # noqa: F401

P = 4096
N = 16
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS


def ptep(mm, addr):
    p = pmd_offset(mm, pud_offset(mm, p4d_offset(mm, pgd_offset(mm, addr), addr), addr), addr)
    return pte_offset_map(mm, p, addr)


def pte(proc, addr):
    return proc.machine.k.ptpool.mv[ptep(proc.mm, addr)]


def isolated(p, npages=N, flags=ANON):
    """npages of RW memory between PROT_NONE guards (no VMA merge with neighbours), as
    the C programs on the reference host map them."""
    g = p.mmap(0, (npages + 2) * P, PROT_NONE, flags)
    p.mprotect(g + P, npages * P, RW)
    return g + P


def minflt(p):
    return p.getrusage().ru_minflt


def pgreuse(m):
    return m.k.vmstat[vmstat.PGREUSE]


def wr(p, a, lo, hi, v):
    for i in range(lo, hi):
        p.write(a + i * P, bytes([v]))


def rd(p, a, lo, hi):
    return sum(p.read(a + i * P, 1)[0] for i in range(lo, hi))


# --- the issue's example and the structure of fork ---------------------------------
def test_issue_example(machine):
    m = machine
    p = m.spawn()
    a = p.mmap(0, 16 << 20, RW, ANON)
    p.touch(a, 16 << 20, write=True)
    c = p.fork()
    assert c.pid != p.pid and c.task.parent is p.task
    c.write(a, b"child")
    assert p.read(a, 5) != b"child"
    assert c.read(a, 5) == b"child"
    c.execve()
    assert c.mm.vma_lookup(a) is None
    c.exit(0)
    assert p.wait(c.pid) == 0
    p.exit(0)
    m.check()
    k = m.k
    assert k.vmstat[vmstat.NR_PAGE_TABLE_PAGES] == 0
    assert k.vmstat[vmstat.NR_ANON_PAGES] == 0


def test_fork_shares_and_write_protects(machine):
    """copy_present_pte: parent and child map the same frame read-only, mapcount 2,
    refcount raised, AnonExclusive cleared; the child's RSS counts it; kernel half of
    the PGD shared; the child is a new task with the parent's rlimits, min_flt 0."""
    p = machine.spawn()
    a = isolated(p, 4)
    wr(p, a, 0, 4, 7)
    k = machine.k
    pfn = pfn_at(p, a)
    assert pte(p, a) & T._PAGE_RW and k.mem.flags[pfn] & PG_anon_exclusive
    ref0 = k.mem.refcount[pfn]
    p.task.rlim["RLIMIT_STACK"] = 1 << 20
    c = p.fork()
    assert c.task.rlim["RLIMIT_STACK"] == 1 << 20
    assert c.getrusage().ru_minflt == 0 and c.task.cpu != p.task.cpu
    assert pfn_at(c, a) == pfn
    assert not pte(p, a) & T._PAGE_RW and not pte(c, a) & T._PAGE_RW
    assert not pte(c, a) & T._PAGE_ACCESSED                  # pte_mkold in the child
    assert k.mem.mapcount[pfn] == 2 and k.mem.refcount[pfn] == ref0 + 1
    assert not k.mem.flags[pfn] & PG_anon_exclusive
    assert c.mm.rss_stat[MM_ANONPAGES] == p.mm.rss_stat[MM_ANONPAGES]
    assert c.mm.mm_mt[-1].vm_start == p.mm.mm_mt[-1].vm_start
    kb = k.init_mm.pgd_ptr
    assert [k.ptpool.mv[c.mm.pgd_ptr + i] for i in range(256, 512)] == \
        [k.ptpool.mv[kb + i] for i in range(256, 512)]
    assert c.mm.pgd != p.mm.pgd
    # The parent's downgrade was flushed (dup_mmap: flush_tlb_mm(oldmm)).
    assert k.tlb_pending == []
    assert any(mm is p.mm and e == -1 for mm, s, e, _ in k.tlb_flushes)


def test_child_pid_and_wait_errors(machine):
    p = machine.spawn()
    q = machine.spawn()
    c = p.fork()
    with pytest.raises(OSError) as e:
        q.wait(c.pid)                        # not q's child
    assert e.value.errno == errno.ECHILD
    assert p.wait(c.pid, nohang=True) is None
    c.exit(3)
    assert c.task.state == "Z" and c.pid in machine.k.tasks
    assert p.wait(c.pid) == 3
    with pytest.raises(OSError) as e:
        p.wait(c.pid)                        # already reaped
    assert e.value.errno == errno.ECHILD
    with pytest.raises(ProcessLookupError):
        c.read(0x400000, 1)


# --- copy-on-write fault counts, measured on the 6.18 host -------------------------
def test_child_writes_half_then_parent_reuses_after_exit(machine):
    """Host: child writing 8 of 16 pages takes 8 faults; after it exits, the parent's
    16 writes take 16 faults, all reused (pgreuse +16)."""
    p = machine.spawn()
    a = isolated(p)
    wr(p, a, 0, N, 1)
    c = p.fork()
    f = minflt(c)
    wr(c, a, 0, N // 2, 2)
    assert minflt(c) - f == N // 2
    c.exit(0)
    p.wait(c.pid)
    f, r = minflt(p), pgreuse(machine)
    wr(p, a, 0, N, 3)
    assert minflt(p) - f == N
    assert pgreuse(machine) - r == N
    assert rd(p, a, 0, N) == 3 * N


def test_parent_writes_while_child_lives_copies(machine):
    """Host: 16 faults and the child still reads the old bytes; do_wp_page copies as
    the child's mapping holds a reference (wp_can_reuse_anon_folio refcount > 1)."""
    p = machine.spawn()
    a = isolated(p)
    wr(p, a, 0, N, 1)
    c = p.fork()
    f, r = minflt(p), pgreuse(machine)
    wr(p, a, 0, N, 3)
    assert minflt(p) - f == N and pgreuse(machine) == r
    assert rd(c, a, 0, N) == N and rd(p, a, 0, N) == 3 * N
    # Now the child's pages are its own: exclusive reuse needs no refcount check.
    k = machine.k
    assert all(k.mem.mapcount[pfn_at(c, a + i * P)] == 1 for i in range(N))
    f, r = minflt(c), pgreuse(machine)
    wr(c, a, 0, N, 9)
    assert minflt(c) - f == N and pgreuse(machine) - r == N


def test_child_reads_without_faults(machine):
    """Host: the child reads 16 written pages with 0 faults (PTEs copied at fork)."""
    p = machine.spawn()
    a = isolated(p)
    wr(p, a, 0, N, 1)
    c = p.fork()
    f = minflt(c)
    assert rd(c, a, 0, N) == N
    assert minflt(c) == f


def test_zero_page_only_vma_is_not_copied(machine):
    """Host: a VMA only read (zero page, no anon_vma) is not copied: the child takes 16
    read faults, then 16 write faults; vma_needs_copy() is false."""
    p = machine.spawn()
    a = isolated(p)
    rd(p, a, 0, N)
    assert p.mm.vma_lookup(a).anon_vma is None
    c = p.fork()
    f = minflt(c)
    assert rd(c, a, 0, N) == 0
    assert minflt(c) - f == N
    f = minflt(c)
    wr(c, a, 0, N, 1)
    assert minflt(c) - f == N
    f = minflt(p)
    wr(p, a, 0, N, 1)
    assert minflt(p) - f == N


def test_fork_chain(machine):
    """Host: grandchild 16 faults writing, the child after the grandchild exits 16, the
    parent after both exit 16, each seeing its own bytes."""
    p = machine.spawn()
    a = isolated(p)
    wr(p, a, 0, N, 1)
    c = p.fork()
    g = c.fork()
    f = minflt(g)
    wr(g, a, 0, N, 5)
    assert minflt(g) - f == N
    g.exit(0)
    c.wait(g.pid)
    f = minflt(c)
    wr(c, a, 0, N, 6)
    assert minflt(c) - f == N and rd(c, a, 0, N) == 6 * N
    c.exit(0)
    p.wait(c.pid)
    f = minflt(p)
    assert rd(p, a, 0, N) == N
    wr(p, a, 0, N, 3)
    assert minflt(p) - f == N


@pytest.mark.parametrize("order", ["parent_first", "child_first", "middle_first"])
def test_fork_chain_exit_orders(machine, order):
    p = machine.spawn()
    a = isolated(p, 4)
    wr(p, a, 0, 4, 1)
    c = p.fork()
    wr(c, a, 0, 2, 2)
    g = c.fork()
    wr(g, a, 1, 3, 3)
    procs = {"parent_first": [p, c, g], "child_first": [g, c, p], "middle_first": [c, g, p]}[order]
    expect = {p.pid: bytes([1, 1, 1, 1]), c.pid: bytes([2, 2, 1, 1]), g.pid: bytes([2, 3, 3, 1])}
    for q in procs:
        assert bytes(q.read(a + i * P, 1)[0] for i in range(4)) == expect[q.pid]
        q.exit(0)
        machine.check()
    k = machine.k
    assert k.vmstat[vmstat.NR_ANON_PAGES] == 0 and k.vmstat[vmstat.NR_PAGE_TABLE_PAGES] == 0


def test_lru_batch_on_other_cpu_prevents_reuse(machine):
    """wp_can_reuse_anon_folio drains only the local CPU's lru_add batch: a folio still
    in another CPU's batch has an extra reference and is copied; on its own CPU the
    drain lets it be reused. (The host's batches are drained by unrelated activity,
    so this rule is checked against the source, not measured.)"""
    p = machine.spawn(cpu=0)
    a = isolated(p, 4)
    wr(p, a, 0, 4, 1)                 # 4 folios in cpu 0's lru_add batch
    c = p.fork(cpu=1)
    c.exit(0)                         # exit_mmap drains cpu 1 only
    p.wait(c.pid)
    p.task.cpu = 1                    # migrate the parent
    r = pgreuse(machine)
    wr(p, a, 0, 2, 3)
    assert pgreuse(machine) == r      # copied
    p.task.cpu = 0
    wr(p, a, 2, 4, 3)
    assert pgreuse(machine) - r == 2  # reused after the local drain


def test_mprotect_after_fork_then_write_reuses(machine):
    """Host: write 16, mprotect(PROT_READ), fork, child exits, mprotect(RW), write: 16
    faults, 16 reuses (mprotect cannot map them writable: not AnonExclusive)."""
    p = machine.spawn()
    a = isolated(p)
    wr(p, a, 0, N, 1)
    p.mprotect(a, N * P, PROT_READ)
    c = p.fork()
    c.exit(0)
    p.wait(c.pid)
    p.mprotect(a, N * P, RW)
    f, r = minflt(p), pgreuse(machine)
    wr(p, a, 0, N, 3)
    assert minflt(p) - f == N and pgreuse(machine) - r == N


# --- cow.c: Basic COW after fork() (base page) -------------------------------------
@pytest.mark.parametrize("do_mprotect", [False, True], ids=["basic", "mprotect_optimization"])
def test_cow_c_basic_cow_after_fork(machine, do_mprotect):
    """cow.c do_test_cow_in_parent on a base page: the child backs up the page, the
    parent (optionally mprotect RO then RW) memsets it to 0xff, the child must still
    read the old contents ("No leak from parent into child")."""
    p = machine.spawn()
    mem = p.mmap(0, P, RW, ANON)
    p.madvise(mem, P, MADV_NOHUGEPAGE)
    p.write(mem, b"\x01" * P)                              # populate a base page
    c = p.fork()
    old = c.read(mem, P)                                   # child_memcmp_fn backup
    if do_mprotect:
        p.mprotect(mem, P, PROT_READ)
        p.mprotect(mem, P, RW)
    p.write(mem, b"\xff" * P)
    assert c.read(mem, P) == old
    c.exit(0)
    assert p.wait(c.pid) == 0
    assert p.read(mem, P) == b"\xff" * P


@pytest.mark.parametrize("do_mprotect", [False, True], ids=["basic", "mprotect_optimization"])
def test_cow_c_basic_cow_after_fork_in_child(machine, do_mprotect):
    """cow.c test_cow_in_child logic: the child modifies, the parent keeps its data."""
    p = machine.spawn()
    mem = p.mmap(0, P, RW, ANON)
    p.write(mem, b"\x01" * P)
    c = p.fork()
    if do_mprotect:
        c.mprotect(mem, P, PROT_READ)
        c.mprotect(mem, P, RW)
    c.write(mem, b"\xff" * P)
    assert p.read(mem, P) == b"\x01" * P
    assert c.read(mem, P) == b"\xff" * P


# --- MADV_WIPEONFORK (LTP madvise10), DONTFORK / DOFORK ------------------------------
def test_wipeonfork_zeroes_child(machine):
    """madvise10: the child reads zeros, the parent keeps its data. Host: 16 read faults
    in the child (no pages, no anon_vma)."""
    p = machine.spawn()
    a = isolated(p)
    wr(p, a, 0, N, 1)
    p.madvise(a, N * P, MADV_WIPEONFORK)
    c = p.fork()
    v = c.mm.vma_lookup(a)
    assert v.vm_flags & VM_WIPEONFORK and v.anon_vma is None
    f = minflt(c)
    assert rd(c, a, 0, N) == 0
    assert minflt(c) - f == N
    assert rd(p, a, 0, N) == N


def test_wipeonfork_is_inherited_and_keeponfork_undoes(machine):
    """madvise10: the flag is inherited by the child (its own child gets zeros too);
    MADV_KEEPONFORK restores normal fork semantics."""
    p = machine.spawn()
    a = isolated(p, 2)
    p.write(a, b"parent")
    p.madvise(a, 2 * P, MADV_WIPEONFORK)
    c = p.fork()
    c.write(a, b"child!")
    assert "wf" in machine.read_file(f"/proc/{c.pid}/smaps")
    g = c.fork()
    assert g.read(a, 6) == b"\0" * 6
    assert c.read(a, 6) == b"child!"
    p.madvise(a, 2 * P, MADV_KEEPONFORK)
    d = p.fork()
    assert d.read(a, 6) == b"parent"


def test_wipeonfork_shared_is_einval(machine):
    p = machine.spawn()
    s = p.mmap(0, 2 * P, RW, MAP_SHARED | MAP_ANONYMOUS)
    with pytest.raises(OSError) as e:
        p.madvise(s, 2 * P, MADV_WIPEONFORK)
    assert e.value.errno == errno.EINVAL


def test_dontfork_and_dofork(machine):
    """Host: the DONTFORK half is absent in the child (SIGSEGV), the other half reads the
    parent's data with 0 faults; total_vm leaves the missing VMA out; DOFORK restores."""
    p = machine.spawn()
    a = isolated(p)
    wr(p, a, 0, N, 1)
    p.madvise(a + 8 * P, 8 * P, MADV_DONTFORK)
    assert p.mm.vma_lookup(a + 8 * P).vm_flags & VM_DONTCOPY
    c = p.fork()
    f = minflt(c)
    assert rd(c, a, 0, 8) == 8 and minflt(c) == f
    with pytest.raises(SignalDelivered) as e:
        c.read(a + 8 * P, 1)
    assert e.value.signo == SIGSEGV
    assert c.mm.total_vm == p.mm.total_vm - 8
    p.madvise(a + 8 * P, 8 * P, MADV_DOFORK)
    d = p.fork()
    assert rd(d, a, 8, N) == 8


def test_shared_anon_stays_shared(machine):
    """Host: the child's first read takes 1 fault (fault-around maps all 16 shmem pages),
    its writes none (shared PTEs are writable); the parent sees them without faults."""
    p = machine.spawn()
    s = p.mmap(0, N * P, RW, MAP_SHARED | MAP_ANONYMOUS)
    wr(p, s, 0, N, 1)
    c = p.fork()
    f = minflt(c)
    assert rd(c, s, 0, N) == N
    assert minflt(c) - f == 1
    f = minflt(c)
    wr(c, s, 0, N, 7)
    assert minflt(c) == f
    f = minflt(p)
    assert rd(p, s, 0, N) == 7 * N and minflt(p) == f
    c.exit(0)
    p.wait(c.pid)
    assert rd(p, s, 0, N) == 7 * N


def test_child_dontneed_and_mremap_of_cow_region(machine):
    p = machine.spawn()
    a = isolated(p, 4)
    wr(p, a, 0, 4, 1)
    c = p.fork()
    c.madvise(a, 2 * P, MADV_DONTNEED)
    assert rd(c, a, 0, 2) == 0 and rd(p, a, 0, 4) == 4
    from vmsim import MREMAP_MAYMOVE
    b = c.mremap(a, 4 * P, 8 * P, MREMAP_MAYMOVE)
    assert rd(c, b, 0, 4) == 2
    c.write(b + 3 * P, b"\x05")
    assert rd(p, a, 0, 4) == 4
    p.write(a + 3 * P, b"\x06")
    assert c.read(b + 3 * P, 1) == b"\x05"


def test_exec_in_child_while_parent_writes(machine):
    p = machine.spawn()
    a = isolated(p, 4)
    wr(p, a, 0, 4, 1)
    c = p.fork()
    wr(p, a, 0, 2, 2)                                   # copies: the child maps them
    c.execve()
    r = pgreuse(machine)
    wr(p, a, 2, 4, 3)                                   # the child's mm is gone: reuse
    assert pgreuse(machine) - r == 2
    assert bytes(p.read(a + i * P, 1)[0] for i in range(4)) == bytes([2, 2, 3, 3])
    assert c.mm.vma_lookup(a) is None and c.read(c.mm.arg_start, 4) == b"/usr"


def test_mlock_not_inherited(machine):
    p = machine.spawn()
    a = isolated(p, 4)
    p.mlock(a, 4 * P)
    c = p.fork()
    from vmsim.mm.mm_types import VM_LOCKED
    assert p.mm.vma_lookup(a).vm_flags & VM_LOCKED
    assert not c.mm.vma_lookup(a).vm_flags & VM_LOCKED and c.mm.locked_vm == 0
    assert rd(c, a, 0, 4) == 0


# --- reverse mapping -----------------------------------------------------------------
def test_rmap_walk_finds_every_mapping(machine):
    p = machine.spawn()
    a = isolated(p, 2)
    wr(p, a, 0, 2, 1)
    k = machine.k
    pfn = pfn_at(p, a)
    c = p.fork()
    g = c.fork()
    found = folio_mapped_by(k, pfn)
    assert sorted((mm.owner.pid, addr) for mm, addr in found) == \
        sorted([(p.pid, a), (c.pid, a), (g.pid, a)])
    # The child COWs: the old folio is mapped by two, the new one by the child only.
    c.write(a, b"x")
    assert sorted(mm.owner.pid for mm, _ in folio_mapped_by(k, pfn)) == sorted([p.pid, g.pid])
    assert [(mm.owner.pid, addr) for mm, addr in folio_mapped_by(k, pfn_at(c, a))] == [(c.pid, a)]
    # An mremap in the grandchild moves its mapping: rmap finds the new address.
    from vmsim import MREMAP_MAYMOVE, MREMAP_FIXED
    dst = g.mmap(0, 4 * P, PROT_NONE, ANON)
    g.mremap(a, 2 * P, 2 * P, MREMAP_MAYMOVE | MREMAP_FIXED, dst + P)
    assert sorted((mm.owner.pid, addr) for mm, addr in folio_mapped_by(k, pfn)) == \
        sorted([(p.pid, a), (g.pid, dst + P)])


def test_anon_vma_tree_after_fork(machine):
    """anon_vma_fork: the child's VMA is chained to the parent's anon_vma and its own,
    whose parent and root are the parent's; exiting frees them all."""
    p = machine.spawn()
    a = isolated(p, 2)
    wr(p, a, 0, 2, 1)
    pv = p.mm.vma_lookup(a)
    c = p.fork()
    cv = c.mm.vma_lookup(a)
    assert cv.anon_vma is not pv.anon_vma
    assert cv.anon_vma.parent is pv.anon_vma and cv.anon_vma.root is pv.anon_vma.root
    assert [x.anon_vma for x in cv.anon_vma_chain] == [cv.anon_vma, pv.anon_vma]
    assert pv.anon_vma.num_children == 2          # self-parent link + the child's
    # A forked VMA does not merge with an adjacent new anon VMA (vma_had_uncowed_parents).
    c.mprotect(a + 2 * P, P, RW)
    assert c.mm.vma_lookup(a + 2 * P) is not cv
    p.exit(0)
    c.exit(0)
    machine.check()
    assert not [o for o in machine.k.objects if o is not None and hasattr(o, "num_active_vmas")]


# --- MMU notifiers ---------------------------------------------------------------------
def test_mmu_notifier_events(machine):
    p = machine.spawn()
    ev, ends = [], []
    machine.register_mmu_notifier(p, lambda *e: ev.append(e), on_end=lambda *e: ends.append(e))
    a = isolated(p, 4)
    wr(p, a, 0, 4, 1)
    ev.clear()
    p.madvise(a, P, MADV_DONTNEED)
    assert ev == [("MMU_NOTIFY_CLEAR", a, a + P)]
    ev.clear()
    p.mprotect(a, 4 * P, PROT_READ)
    assert ev == [("MMU_NOTIFY_PROTECTION_VMA", a, a + 4 * P)]
    p.mprotect(a, 4 * P, RW)
    ev.clear()
    c = p.fork()
    assert ("MMU_NOTIFY_PROTECTION_PAGE", a, a + 4 * P) in ev
    ev.clear()
    p.write(a + P, b"x")                                # wp_page_copy
    assert ev == [("MMU_NOTIFY_CLEAR", a + P, a + 2 * P)]
    ev.clear()
    p.munmap(a + 2 * P, P)
    assert ev == [("MMU_NOTIFY_UNMAP", a + 2 * P, a + 3 * P)]
    assert ends[-1] == ("MMU_NOTIFY_UNMAP", a + 2 * P, a + 3 * P)
    ev.clear()
    c.write(a + 3 * P, b"y")                            # the child's mm: not ours
    assert ev == []
    p.exit(0)
    assert ev == [("MMU_NOTIFY_RELEASE", 0, (1 << 64) - 1)]


def test_mmu_notifier_release_at_exec(machine):
    p = machine.spawn()
    ev = []
    machine.register_mmu_notifier(p, lambda *e: ev.append(e))
    p.execve()
    assert ev == [("MMU_NOTIFY_RELEASE", 0, (1 << 64) - 1)]
    p.mmap(0, P, RW, ANON)
    p.exit(0)
    assert len(ev) == 1


# --- the debug checker with fork ----------------------------------------------------------
def test_checker_catches_private_page_writable_in_two_processes(machine):
    p = machine.spawn()
    a = isolated(p, 1)
    p.write(a, b"x")
    c = p.fork()
    k = machine.k
    k.ptpool.mv[ptep(c.mm, a)] |= T._PAGE_RW
    with pytest.raises(AssertionError, match="page_table_check"):
        machine.check()
    k.ptpool.mv[ptep(c.mm, a)] &= ~T._PAGE_RW
    machine.check()


def test_checker_catches_mapcount_across_processes(machine):
    p = machine.spawn()
    a = isolated(p, 1)
    p.write(a, b"x")
    p.fork()
    k = machine.k
    pfn = pfn_at(p, a)
    k.mem.mapcount[pfn] -= 1
    with pytest.raises(AssertionError, match="mapcount"):
        machine.check()
    k.mem.mapcount[pfn] += 1
    machine.check()


def test_everything_returned_after_all_exit(machine):
    k = machine.k
    p = machine.spawn()
    a = p.mmap(0, 64 * P, RW, ANON)
    p.touch(a, 64 * P, write=True)
    s = p.mmap(0, 8 * P, RW, MAP_SHARED | MAP_ANONYMOUS)
    p.touch(s, 8 * P, write=True)
    kids = [p.fork() for _ in range(3)]
    for i, c in enumerate(kids):
        c.touch(a, (i + 1) * 8 * P, write=True)
    kids[1].execve()
    p.exit(0)
    for c in kids:
        c.exit(0)
    machine.check()                 # "all processes exited" checks run here
    assert k.vmstat[vmstat.NR_PAGE_TABLE_PAGES] == 0
    assert not any(t.mm for t in k.tasks.values())


def test_cow_copies_the_whole_page(machine):
    """wp_page_copy copies the page (__wp_page_copy_user) before the write lands: the
    bytes the writer did not touch are the old ones, in both processes."""
    p = machine.spawn()
    a = isolated(p, 2)
    pat = bytes(range(256)) * 16
    p.write(a, pat)
    p.write(a + P, pat[::-1])
    c = p.fork()
    c.write(a + 100, b"C")
    p.write(a + P + 7, b"P")
    assert c.read(a, P) == pat[:100] + b"C" + pat[101:]
    assert p.read(a, P) == pat
    assert p.read(a + P, P) == pat[::-1][:7] + b"P" + pat[::-1][8:]
    assert c.read(a + P, P) == pat[::-1]
