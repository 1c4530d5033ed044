"""VMA merging: ports of the kernel's userspace VMA tests (tools/testing/vma/vma.c)
onto vmsim's vma_merge_new_range / vma_merge_existing_range / vma_expand / vma_shrink /
vma_modify, plus the same decisions seen through the process API (/proc/<pid>/maps).

Each test names the vma.c function it comes from and asserts what that function
asserts (bounds, pgoff, which VMA object survives, anon_vma, map_count, vmg.state).
vma.c's "dummy_anon_vma" is a real anon_vma here, linked with one chain per VMA
(never forked, so vma_is_fork_child() is false), as the kernel test sets up.
The fork-child and brk cases were checked on the 6.18 reference host (noted).
"""
import pytest

from vmsim import PROT_READ, PROT_WRITE, PROT_NONE, MAP_PRIVATE, MAP_ANONYMOUS, MAP_FIXED
from vmsim.mm.mm_types import (mm_struct, vm_area_struct, VM_READ, VM_WRITE, VM_MAYREAD,
                               VM_MAYWRITE, VM_IO, VM_DONTEXPAND, VM_PFNMAP, VM_MIXEDMAP,
                               VM_SPECIAL)
from vmsim.mm.rmap import anon_vma_alloc, anon_vma_chain, anon_vma_chain_link
from vmsim.mm.vma import (vma_merge_struct, VMG_VMA_STATE, vma_merge_new_range,
                          vma_merge_existing_range, vma_expand, vma_shrink, vma_modify,
                          VMA_MERGE_SUCCESS, VMA_MERGE_NOMERGE)

FLAGS = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE
P = 4096


class _CloseOps:
    """vm_operations_struct with only a ->close hook (vma.c's dummy_close)."""
    @staticmethod
    def close(vma):
        pass


CLOSE_OPS = _CloseOps()


@pytest.fixture
def mm(machine):
    yield mm_struct(machine.k)
    # The anon_vmas these tests make belong to an mm no task owns: drop them, so the
    # checker's audit of a machine whose processes all exited finds none left over.
    k = machine.k
    for o in list(k.objects):
        if o is not None and hasattr(o, "num_active_vmas"):
            k._unregister_object(o.id)


def alloc_and_link_vma(mm, start, end, pgoff, flags=FLAGS):
    vma = vm_area_struct(mm, start, end, flags, 0, pgoff)
    mm._vma_store(vma)
    return vma


def new_anon_vma(mm):
    av = anon_vma_alloc(mm.kernel)
    av.num_children += 1                 # the root's self-parent link
    return av


def give_anon_vma(vma, av):
    """Attach ``av`` with a single chain (list_is_singular: not a fork child)."""
    anon_vma_chain_link(vma, anon_vma_chain(vma, av), av)
    vma.anon_vma = av
    av.num_active_vmas += 1


def merge_new(mm, prev, nxt, start, end, pgoff, flags=FLAGS, **kw):
    vmg = vma_merge_struct(mm, prev=prev, next=nxt, start=start, end=end, pgoff=pgoff,
                           vm_flags=flags, **kw)
    return vma_merge_new_range(vmg), vmg


def try_merge_new_vma(mm, start, end, pgoff, flags=FLAGS):
    """vma.c try_merge_new_vma(): merge, else allocate and link a new VMA."""
    nxt, prev = mm.find_vma_prev(start)
    merged, vmg = merge_new(mm, prev, nxt, start, end, pgoff, flags)
    if merged is not None:
        assert vmg.state == VMA_MERGE_SUCCESS
        return merged, True
    assert vmg.state == VMA_MERGE_NOMERGE
    return alloc_and_link_vma(mm, start, end, pgoff, flags), False


def merge_existing(mm, prev, vma, start, end, pgoff, flags=FLAGS):
    vmg = VMG_VMA_STATE(mm, prev, vma, start, end)
    vmg.pgoff, vmg.vm_flags = pgoff, flags
    return vma_merge_existing_range(vmg), vmg


def bounds(mm):
    return [(v.vm_start, v.vm_end, v.vm_pgoff) for v in mm.mm_mt]


# --- direct ports of tools/testing/vma/vma.c -------------------------------------
def test_simple_merge(mm):
    """vma.c test_simple_merge."""
    alloc_and_link_vma(mm, 0, 0x1000, 0)
    right = alloc_and_link_vma(mm, 0x2000, 0x3000, 2)
    vma, vmg = merge_new(mm, mm.mm_mt[0], right, 0x1000, 0x2000, 1)
    assert vma is not None
    assert (vma.vm_start, vma.vm_end, vma.vm_pgoff, vma.vm_flags) == (0, 0x3000, 0, FLAGS)
    assert mm.map_count == 1 and mm.mm_mt == [vma]


def test_simple_modify(mm):
    """vma.c test_simple_modify: vma_modify_flags on the middle of a VMA splits it
    and returns the original VMA object, now [0x1000, 0x2000) pgoff 1."""
    init_vma = alloc_and_link_vma(mm, 0, 0x3000, 0)

    def change(v):
        v.vm_flags = VM_READ | VM_MAYREAD

    vma = vma_modify(mm, init_vma, 0x1000, 0x2000, change, prev=init_vma)
    assert vma is init_vma
    assert (vma.vm_start, vma.vm_end, vma.vm_pgoff) == (0x1000, 0x2000, 1)
    assert bounds(mm) == [(0, 0x1000, 0), (0x1000, 0x2000, 1), (0x2000, 0x3000, 2)]


def test_simple_expand(mm):
    """vma.c test_simple_expand."""
    vma = alloc_and_link_vma(mm, 0, 0x1000, 0)
    vmg = vma_merge_struct(mm, middle=vma, start=0, end=0x3000, pgoff=0, vm_flags=FLAGS)
    vmg.target = vma                      # expand_existing(): target = middle
    assert vma_expand(vmg) == 0
    assert (vma.vm_start, vma.vm_end, vma.vm_pgoff) == (0, 0x3000, 0)
    assert mm.mm_mt == [vma]


def test_simple_shrink(mm):
    """vma.c test_simple_shrink."""
    vma = alloc_and_link_vma(mm, 0, 0x3000, 0)
    assert vma_shrink(mm, vma, 0, 0x1000, 0) == 0
    assert (vma.vm_start, vma.vm_end, vma.vm_pgoff) == (0, 0x1000, 0)
    assert mm.find_vma(0x1000) is None


def test_merge_new(mm):
    """vma.c test_merge_new: every prev/next combination, with ->close on the
    expanded side having no impact and on a would-be-removed next degrading."""
    dummy = new_anon_vma(mm)
    # 0123456789abc
    # AA B       CC
    vma_a = alloc_and_link_vma(mm, 0, 0x2000, 0)
    vma_b = alloc_and_link_vma(mm, 0x3000, 0x4000, 3)
    vma_c = alloc_and_link_vma(mm, 0xb000, 0xc000, 0xb)
    # NO merge: AA B   **  CC
    vma_d, merged = try_merge_new_vma(mm, 0x7000, 0x9000, 7)
    assert not merged and mm.map_count == 4
    # Merge BOTH sides: AA*B   DD  CC (A keeps its ops, B has the anon_vma)
    vma_a.vm_ops = CLOSE_OPS                   # this should have no impact
    give_anon_vma(vma_b, dummy)
    vma, merged = try_merge_new_vma(mm, 0x2000, 0x3000, 2)
    assert merged and vma is vma_a
    assert (vma.vm_start, vma.vm_end, vma.vm_pgoff) == (0, 0x4000, 0)
    assert vma.anon_vma is dummy and mm.map_count == 3 and vma_b.detached
    # Merge to PREVIOUS VMA: AAAA*  DD  CC
    vma, merged = try_merge_new_vma(mm, 0x4000, 0x5000, 4)
    assert merged and vma is vma_a
    assert (vma.vm_start, vma.vm_end, vma.vm_pgoff) == (0, 0x5000, 0)
    assert vma.anon_vma is dummy and mm.map_count == 3
    # Merge to NEXT VMA: AAAAA *DD  CC
    give_anon_vma(vma_d, dummy)
    vma_d.vm_ops = CLOSE_OPS                   # this should have no impact
    vma, merged = try_merge_new_vma(mm, 0x6000, 0x7000, 6)
    assert merged and vma is vma_d
    assert (vma.vm_start, vma.vm_end, vma.vm_pgoff) == (0x6000, 0x9000, 6)
    assert vma.anon_vma is dummy and mm.map_count == 3
    # Merge BOTH sides: AAAAA*DDD  CC
    vma_d.vm_ops = None                        # this would otherwise degrade the merge
    vma, merged = try_merge_new_vma(mm, 0x5000, 0x6000, 5)
    assert merged and vma is vma_a
    assert (vma.vm_start, vma.vm_end, vma.vm_pgoff) == (0, 0x9000, 0)
    assert vma.anon_vma is dummy and mm.map_count == 2
    # Merge to NEXT VMA: AAAAAAAAA *CC
    give_anon_vma(vma_c, dummy)
    vma, merged = try_merge_new_vma(mm, 0xa000, 0xb000, 0xa)
    assert merged and vma is vma_c
    assert (vma.vm_start, vma.vm_end, vma.vm_pgoff) == (0xa000, 0xc000, 0xa)
    assert vma.anon_vma is dummy and mm.map_count == 2
    # Merge BOTH sides: AAAAAAAAA*CCC
    vma, merged = try_merge_new_vma(mm, 0x9000, 0xa000, 0x9)
    assert merged and vma is vma_a
    assert (vma.vm_start, vma.vm_end, vma.vm_pgoff) == (0, 0xc000, 0)
    assert vma.anon_vma is dummy and mm.map_count == 1
    # Final state: one VMA.
    assert bounds(mm) == [(0, 0xc000, 0)] and mm.mm_mt[0].anon_vma is dummy


def test_merge_new_close_on_next(mm):
    """vma.c test_vma_merge_with_close (new-range case): next has ->close, so it
    cannot be removed; the merge is reduced to expanding prev."""
    vma_prev = alloc_and_link_vma(mm, 0, 0x3000, 0)
    vma_next = alloc_and_link_vma(mm, 0x5000, 0x9000, 5)
    vma_next.vm_ops = CLOSE_OPS
    vma, vmg = merge_new(mm, vma_prev, vma_next, 0x3000, 0x5000, 3)
    assert vma is vma_prev and vmg.state == VMA_MERGE_SUCCESS
    assert (vma_prev.vm_start, vma_prev.vm_end, vma_prev.vm_pgoff) == (0, 0x5000, 0)
    assert mm.map_count == 2


def test_vma_merge_special_flags(mm):
    """vma.c test_vma_merge_special_flags: VM_SPECIAL refuses both merge kinds."""
    special_flags = [VM_IO, VM_DONTEXPAND, VM_PFNMAP, VM_MIXEDMAP]
    all_special = 0
    for f in special_flags:
        all_special |= f
    assert all_special == VM_SPECIAL
    vma_left = alloc_and_link_vma(mm, 0, 0x3000, 0)
    # 1. A new VMA with a special flag that would otherwise merge: AAA*
    for f in special_flags:
        vma_left.vm_flags = FLAGS | f
        vma, vmg = merge_new(mm, vma_left, None, 0x3000, 0x4000, 3, FLAGS | f)
        assert vma is None and vmg.state == VMA_MERGE_NOMERGE
    # 2. Modifying a VMA with a special flag that would otherwise merge: AAAB
    vma_b = alloc_and_link_vma(mm, 0x3000, 0x4000, 3)
    for f in special_flags:
        vma_left.vm_flags = FLAGS | f
        vma, vmg = merge_existing(mm, vma_left, vma_b, 0x3000, 0x4000, 3, FLAGS | f)
        assert vma is None and vmg.state == VMA_MERGE_NOMERGE
    assert mm.map_count == 2


def test_merge_existing(mm):
    """vma.c test_merge_existing: partial and full spans merging right, left, both;
    ranges strictly inside a VMA never merge."""
    k_av = new_anon_vma(mm)
    # Merge right case - partial span:  VVVVNNN -> VNNNNNN
    vma = alloc_and_link_vma(mm, 0x2000, 0x6000, 2)
    vma.vm_ops = CLOSE_OPS                 # no impact: vma is only shrunk
    vma_next = alloc_and_link_vma(mm, 0x6000, 0x9000, 6)
    vma_next.vm_ops = CLOSE_OPS            # no impact: next is expanded
    give_anon_vma(vma, k_av)
    got, vmg = merge_existing(mm, vma, vma, 0x3000, 0x6000, 3)
    assert got is vma_next and vmg.state == VMA_MERGE_SUCCESS
    assert (vma_next.vm_start, vma_next.vm_end, vma_next.vm_pgoff) == (0x3000, 0x9000, 3)
    assert vma_next.anon_vma is k_av
    assert (vma.vm_start, vma.vm_end, vma.vm_pgoff) == (0x2000, 0x3000, 2)
    assert mm.map_count == 2


def test_merge_existing_right_full(mm):
    """vma.c test_merge_existing, merge right - full span: VVVVNNN -> NNNNNNN."""
    av = new_anon_vma(mm)
    vma = alloc_and_link_vma(mm, 0x2000, 0x6000, 2)
    vma_next = alloc_and_link_vma(mm, 0x6000, 0x9000, 6)
    vma_next.vm_ops = CLOSE_OPS            # no impact
    give_anon_vma(vma, av)
    got, vmg = merge_existing(mm, None, vma, 0x2000, 0x6000, 2)
    assert got is vma_next and vmg.state == VMA_MERGE_SUCCESS
    assert (vma_next.vm_start, vma_next.vm_end, vma_next.vm_pgoff) == (0x2000, 0x9000, 2)
    assert vma_next.anon_vma is av
    assert mm.map_count == 1 and vma.detached


def test_merge_existing_left_partial(mm):
    """vma.c test_merge_existing, merge left - partial span: PPPVVVV -> PPPPPPV."""
    av = new_anon_vma(mm)
    vma_prev = alloc_and_link_vma(mm, 0, 0x3000, 0)
    vma_prev.vm_ops = CLOSE_OPS            # no impact
    vma = alloc_and_link_vma(mm, 0x3000, 0x7000, 3)
    vma.vm_ops = CLOSE_OPS                 # no impact
    give_anon_vma(vma, av)
    got, vmg = merge_existing(mm, vma_prev, vma, 0x3000, 0x6000, 3)
    assert got is vma_prev and vmg.state == VMA_MERGE_SUCCESS
    assert (vma_prev.vm_start, vma_prev.vm_end, vma_prev.vm_pgoff) == (0, 0x6000, 0)
    assert vma_prev.anon_vma is av
    assert (vma.vm_start, vma.vm_end, vma.vm_pgoff) == (0x6000, 0x7000, 6)
    assert mm.map_count == 2


def test_merge_existing_left_full(mm):
    """vma.c test_merge_existing, merge left - full span: PPPVVVV -> PPPPPPP."""
    av = new_anon_vma(mm)
    vma_prev = alloc_and_link_vma(mm, 0, 0x3000, 0)
    vma_prev.vm_ops = CLOSE_OPS            # no impact
    vma = alloc_and_link_vma(mm, 0x3000, 0x7000, 3)
    give_anon_vma(vma, av)
    got, vmg = merge_existing(mm, vma_prev, vma, 0x3000, 0x7000, 3)
    assert got is vma_prev and vmg.state == VMA_MERGE_SUCCESS
    assert (vma_prev.vm_start, vma_prev.vm_end, vma_prev.vm_pgoff) == (0, 0x7000, 0)
    assert vma_prev.anon_vma is av
    assert mm.map_count == 1 and vma.detached


def test_merge_existing_both(mm):
    """vma.c test_merge_existing, merge both: PPPVVVVNNN -> PPPPPPPPPP."""
    av = new_anon_vma(mm)
    vma_prev = alloc_and_link_vma(mm, 0, 0x3000, 0)
    vma_prev.vm_ops = CLOSE_OPS            # no impact
    vma = alloc_and_link_vma(mm, 0x3000, 0x7000, 3)
    vma_next = alloc_and_link_vma(mm, 0x7000, 0x9000, 7)
    give_anon_vma(vma, av)
    got, vmg = merge_existing(mm, vma_prev, vma, 0x3000, 0x7000, 3)
    assert got is vma_prev and vmg.state == VMA_MERGE_SUCCESS
    assert (vma_prev.vm_start, vma_prev.vm_end, vma_prev.vm_pgoff) == (0, 0x9000, 0)
    assert vma_prev.anon_vma is av
    assert mm.map_count == 1 and vma.detached and vma_next.detached


@pytest.mark.parametrize("start,end", [(0x4000, 0x5000), (0x5000, 0x6000), (0x6000, 0x7000),
                                       (0x4000, 0x7000), (0x4000, 0x6000)])
def test_merge_existing_non_merge_ranges(mm, start, end):
    """vma.c test_merge_existing, non-merge ranges strictly inside V of PPPVVVVVNNN."""
    alloc_and_link_vma(mm, 0, 0x3000, 0)
    vma = alloc_and_link_vma(mm, 0x3000, 0x8000, 3)
    alloc_and_link_vma(mm, 0x8000, 0xa000, 8)
    got, vmg = merge_existing(mm, vma, vma, start, end, start >> 12)
    assert got is None and vmg.state == VMA_MERGE_NOMERGE
    assert mm.map_count == 3


def test_anon_vma_non_mergeable(mm):
    """vma.c test_anon_vma_non_mergeable: prev and next each mergeable with the
    range but with different anon_vmas: only prev merges (existing range case)."""
    vma_prev = alloc_and_link_vma(mm, 0, 0x3000, 0)
    vma = alloc_and_link_vma(mm, 0x3000, 0x7000, 3)
    vma_next = alloc_and_link_vma(mm, 0x7000, 0x9000, 7)
    give_anon_vma(vma_prev, new_anon_vma(mm))
    give_anon_vma(vma_next, new_anon_vma(mm))
    got, vmg = merge_existing(mm, vma_prev, vma, 0x3000, 0x7000, 3)
    assert got is vma_prev and vmg.state == VMA_MERGE_SUCCESS
    assert (vma_prev.vm_start, vma_prev.vm_end, vma_prev.vm_pgoff) == (0, 0x7000, 0)
    assert not vma_next.detached and (vma_next.vm_start, vma_next.vm_end) == (0x7000, 0x9000)
    assert mm.map_count == 2


def test_anon_vma_non_mergeable_new(mm):
    """vma.c test_anon_vma_non_mergeable, new VMA case: PPP****NNN -> PPPPPPPNNN."""
    vma_prev = alloc_and_link_vma(mm, 0, 0x3000, 0)
    vma_next = alloc_and_link_vma(mm, 0x7000, 0x9000, 7)
    give_anon_vma(vma_prev, new_anon_vma(mm))
    give_anon_vma(vma_next, new_anon_vma(mm))
    got, vmg = merge_new(mm, vma_prev, vma_next, 0x3000, 0x7000, 3)
    assert got is vma_prev and vmg.state == VMA_MERGE_SUCCESS
    assert (vma_prev.vm_start, vma_prev.vm_end, vma_prev.vm_pgoff) == (0, 0x7000, 0)
    assert (vma_next.vm_start, vma_next.vm_end) == (0x7000, 0x9000)
    assert mm.map_count == 2


def test_expand_only_mode(mm):
    """vma.c test_expand_only_mode: just_expand (brk) expands prev only, even with
    another VMA before it."""
    alloc_and_link_vma(mm, 0, 0x2000, 0)
    vma_prev = alloc_and_link_vma(mm, 0x3000, 0x5000, 3)
    vma, vmg = merge_new(mm, vma_prev, None, 0x5000, 0x9000, 5, just_expand=True)
    assert vma is vma_prev and vmg.state == VMA_MERGE_SUCCESS
    assert (vma.vm_start, vma.vm_end, vma.vm_pgoff) == (0x3000, 0x9000, 3)
    assert mm.map_count == 2


def test_merge_new_pgoff_mismatch(mm):
    """can_vma_merge_after/before: a pgoff out of step with prev/next refuses."""
    prev = alloc_and_link_vma(mm, 0, 0x1000, 0)
    nxt = alloc_and_link_vma(mm, 0x2000, 0x3000, 2)
    vma, vmg = merge_new(mm, prev, nxt, 0x1000, 0x2000, 5)
    assert vma is None and vmg.state == VMA_MERGE_NOMERGE and mm.map_count == 2


def test_merge_fork_child_rule(mm):
    """is_mergeable_anon_vma case 2: a range without anon_vma does not merge into a
    neighbour whose anon_vma chain is not singular (vma_is_fork_child)."""
    prev = alloc_and_link_vma(mm, 0, 0x1000, 0)
    parent_av, child_av = new_anon_vma(mm), new_anon_vma(mm)
    give_anon_vma(prev, child_av)
    anon_vma_chain_link(prev, anon_vma_chain(prev, parent_av), parent_av)
    vma, vmg = merge_new(mm, prev, None, 0x1000, 0x2000, 1)
    assert vma is None and vmg.state == VMA_MERGE_NOMERGE


# --- the same decisions through the process API ---------------------------------
def maps_lines(proc, lo, hi):
    out = []
    for line in proc.machine.read_file(f"/proc/{proc.pid}/maps").splitlines():
        s, e = (int(x, 16) for x in line.split()[0].split("-"))
        if s < hi and e > lo:
            out.append((s, e))
    return out


def test_mmap_merges_with_both_neighbours(proc):
    """__mmap_region -> vma_merge_new_range: filling the hole between two
    compatible anonymous VMAs leaves one VMA (test_merge_new "merge BOTH sides")."""
    a = proc.mmap(0, 5 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    proc.munmap(a + 2 * P, P)
    assert len(maps_lines(proc, a, a + 5 * P)) == 2
    proc.mmap(a + 2 * P, P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    assert maps_lines(proc, a, a + 5 * P) == [(a, a + 5 * P)]


def test_mprotect_partial_merges_into_neighbour(proc):
    """vma_modify -> vma_merge_existing_range, merge left partial span: PPPVVVV with
    the first part of V given P's protection -> PPPPPPV (two VMAs, not three)."""
    a = proc.mmap(0, 7 * P, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS)
    proc.mprotect(a, 3 * P, PROT_READ)
    assert len(maps_lines(proc, a, a + 7 * P)) == 2
    proc.mprotect(a + 3 * P, 3 * P, PROT_READ)
    assert maps_lines(proc, a, a + 7 * P) == [(a, a + 6 * P), (a + 6 * P, a + 7 * P)]


def test_mprotect_fork_child_does_not_merge(proc):
    """vma_is_fork_child: in a forked child, a faulted VMA whose protection comes back
    to match an unfaulted neighbour stays separate (the parent's does merge).
    On the 6.18 reference host the child shows 2 maps lines here, the parent 1."""
    a = proc.mmap(0, 2 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    proc.mprotect(a + P, P, PROT_READ)
    proc.write(a, b"x")                       # anon_vma on the first VMA only
    child = proc.fork()
    child.mprotect(a + P, P, PROT_READ | PROT_WRITE)
    assert len(maps_lines(child, a, a + 2 * P)) == 2
    proc.mprotect(a + P, P, PROT_READ | PROT_WRITE)
    assert maps_lines(proc, a, a + 2 * P) == [(a, a + 2 * P)]


def test_brk_in_forked_child_adds_a_vma(proc):
    """do_brk_flags -> vma_merge_new_range(just_expand): a forked child's faulted brk
    VMA is a fork child, so growing the break adds a second [heap] VMA. Measured on
    the 6.18 reference host (sbrk after fork: 2 heap lines in the child, 1 in the
    parent after its own sbrk)."""
    base = proc.brk(0)
    proc.brk(base + 2 * P)
    proc.write(base, b"x")
    child = proc.fork()
    child.brk(base + 4 * P)
    assert maps_lines(child, base, base + 4 * P) == [(base, base + 2 * P),
                                                     (base + 2 * P, base + 4 * P)]
    proc.brk(base + 4 * P)
    assert maps_lines(proc, base, base + 4 * P) == [(base, base + 4 * P)]


# --- mremap: copy_vma (_vma_merge_copied_range) and vma_merge_extend ---------------
# Each layout below was measured on the 6.18 reference host with a small C program
# doing the same calls inside a 100-page PROT_NONE reservation (pages noted as
# offsets from it; maps lines of the PROT_NONE remainder are left out).
RW = PROT_READ | PROT_WRITE


def _reserve(proc):
    return proc.mmap(0, 100 * P, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS)


def _map_at(proc, r, pg, n):
    return proc.mmap(r + pg * P, n * P, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)


def _move(proc, r, frm, n, to, extra=0):
    from vmsim import MREMAP_MAYMOVE, MREMAP_FIXED
    return proc.mremap(r + frm * P, n * P, n * P, MREMAP_MAYMOVE | MREMAP_FIXED | extra,
                       r + to * P)


def _rw_maps(proc, r):
    """The RW VMAs inside the reservation, as (first page, end page) offsets."""
    out = []
    for line in proc.machine.read_file(f"/proc/{proc.pid}/maps").splitlines():
        rng, perms = line.split()[:2]
        s, e = (int(x, 16) for x in rng.split("-"))
        if s >= r and e <= r + 100 * P and perms.startswith("rw"):
            out.append(((s - r) // P, (e - r) // P))
    return out


@pytest.mark.parametrize("b_after", [True, False])
@pytest.mark.parametrize("fault,in_child,merged", [
    (False, False, True), (True, False, True),
    (False, True, True),      # unfaulted: no anon_vma, nothing to check against
    (True, True, False),      # copied_from is a fork child (is_mergeable_anon_vma case 1)
])
def test_mremap_move_back_next_to_unfaulted(proc, fault, in_child, merged, b_after):
    """copy_vma -> _vma_merge_copied_range: A is moved away, an unfaulted B is mapped
    next to A's old place, and A is moved back, so its vm_pgoff is linear with B's.
    The moved range merges into B unless A's anon_vma came from a fork."""
    r = _reserve(proc)
    a_pg, b_pg = (1, 3) if b_after else (3, 1)
    _map_at(proc, r, a_pg, 2)
    if fault:
        proc.write(r + a_pg * P, b"x")
    p = proc.fork() if in_child else proc
    _move(p, r, a_pg, 2, 50)
    _map_at(p, r, b_pg, 2)
    _move(p, r, 50, 2, a_pg)
    want = [(1, 5)] if merged else [(1, 3), (3, 5)]
    assert _rw_maps(p, r) == want
    assert p.read(r + a_pg * P, 1) == (b"x" if fault else b"\0")
    if merged and fault:
        # The merged VMA carries A's anon_vma (dup_anon_vma into B): reading B's half
        # after a write there keeps working and the debug checker sees a sane rmap.
        p.write(r + b_pg * P, b"y")
        assert p.read(r + b_pg * P, 1) == b"y"


@pytest.mark.parametrize("fault_a,fault_b,in_child,merged", [
    (False, False, False, True), (False, False, True, True),
    (False, True, False, True), (False, True, True, False),   # next is a fork child
    (True, False, False, True), (True, False, True, True),    # middle is NULL: no check
    (True, True, False, False), (True, True, True, False),    # distinct anon_vmas
])
def test_mremap_expand_in_place_merges_next(proc, fault_a, fault_b, in_child, merged):
    """expand_vma_in_place -> vma_merge_extend -> vma_merge_new_range with prev = the
    VMA and middle = NULL: growing A [1,3) by a page up to B [4,6) merges B when
    anon_vmas allow. A faulted fork child's A still absorbs an unfaulted B (there is
    no middle to be a fork child), while an unfaulted A cannot take a faulted B
    that is a fork child."""
    r = _reserve(proc)
    _map_at(proc, r, 1, 2)
    _map_at(proc, r, 4, 2)
    proc.munmap(r + 3 * P, P)
    if fault_a:
        proc.write(r + P, b"a")
    if fault_b:
        proc.write(r + 4 * P, b"b")
    p = proc.fork() if in_child else proc
    assert p.mremap(r + P, 2 * P, 3 * P) == r + P
    assert _rw_maps(p, r) == ([(1, 6)] if merged else [(1, 4), (4, 6)])
    if fault_b:
        assert p.read(r + 4 * P, 1) == b"b"


def test_mremap_dontunmap_merges_with_source_after(proc):
    """copy_vma, "source vma may have been merged into new_vma": an unfaulted VMA's
    copy gets vm_pgoff = addr >> PAGE_SHIFT, so MREMAP_DONTUNMAP of its last page to
    just past its end expands the source itself; the source keeps its range, so one
    VMA [1,6) remains."""
    from vmsim import MREMAP_DONTUNMAP
    r = _reserve(proc)
    _map_at(proc, r, 1, 4)
    _move(proc, r, 4, 1, 5, MREMAP_DONTUNMAP)
    assert _rw_maps(proc, r) == [(1, 6)]


def test_mremap_dontunmap_merges_with_source_before(proc):
    """The same with the copy placed just before the source: next (the source) is
    expanded downwards and becomes the new VMA; one VMA [1,4) remains."""
    from vmsim import MREMAP_DONTUNMAP
    r = _reserve(proc)
    _map_at(proc, r, 2, 2)
    _move(proc, r, 2, 1, 1, MREMAP_DONTUNMAP)
    assert _rw_maps(proc, r) == [(1, 4)]


def test_mremap_move_tail_next_to_itself(proc):
    """Moving the last page of an unfaulted VMA to just past its end: the copy merges
    into the source, then the source page is unmapped, leaving [1,4) and [5,6)."""
    r = _reserve(proc)
    _map_at(proc, r, 1, 4)
    _move(proc, r, 4, 1, 5)
    assert _rw_maps(proc, r) == [(1, 4), (5, 6)]


# --- sticky VMA flags (VM_MAYBE_GUARD), in 6.18.y by 6.18.44 --------------------------
# Measured on this machine (Linux 6.18.44) with MADV_GUARD_INSTALL in a 100-page
# PROT_NONE reservation (vmsim/conform/probes/guard_sticky_probe.c; pages as offsets,
# "gu" in smaps VmFlags):
#   A [1,5) rw with a guard page at 2, B [5,9) r-- : mprotect(B, rw) -> [1,9) rw gu
#   mprotect([3,5), r) -> [1,3) rw gu, [3,5) r gu, [5,9) rw gu; back to rw -> [1,9) gu
#   C [20,22) rw, D [22,24) r-- with a guard page at 22: mprotect(D, rw) -> [20,24) gu
#   E [40,44) rw with a guard page at 41, a new rw mapping at [44,46) -> [40,46) gu
# vmsim has no guard markers yet, so the tests set VM_MAYBE_GUARD as
# madvise_guard_install() does (vma_flags_set on the whole VMA).

def _set_gu(proc, addr):
    from vmsim.mm.mm_types import VM_MAYBE_GUARD
    proc.mm.vma_lookup(addr).vm_flags |= VM_MAYBE_GUARD


def _gu_maps(proc, r):
    from vmsim.mm.mm_types import VM_MAYBE_GUARD
    return [((v.vm_start - r) // P, (v.vm_end - r) // P, bool(v.vm_flags & VM_MAYBE_GUARD))
            for v in proc.mm.mm_mt if v.vm_start >= r and v.vm_end <= r + 100 * P and
            v.vm_flags & 0x3]


def test_sticky_maybe_guard_merges_existing_ranges(proc):
    r = _reserve(proc)
    _map_at(proc, r, 1, 4)
    proc.mmap(r + 5 * P, 4 * P, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    _set_gu(proc, r + 2 * P)
    proc.mprotect(r + 5 * P, 4 * P, RW)
    assert _gu_maps(proc, r) == [(1, 9, True)]
    proc.mprotect(r + 3 * P, 2 * P, PROT_READ)
    assert _gu_maps(proc, r) == [(1, 3, True), (3, 5, True), (5, 9, True)]
    proc.mprotect(r + 3 * P, 2 * P, RW)
    assert _gu_maps(proc, r) == [(1, 9, True)]
    _map_at(proc, r, 20, 2)
    proc.mmap(r + 22 * P, 2 * P, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    _set_gu(proc, r + 22 * P)
    proc.mprotect(r + 22 * P, 2 * P, RW)
    assert _gu_maps(proc, r)[-1] == (20, 24, True)


def test_sticky_maybe_guard_merges_new_range(proc):
    r = _reserve(proc)
    _map_at(proc, r, 40, 4)
    _set_gu(proc, r + 41 * P)
    _map_at(proc, r, 44, 2)
    assert _gu_maps(proc, r) == [(40, 46, True)]
