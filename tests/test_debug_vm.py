"""The debug checker can fail: each test corrupts one piece of state on purpose and
expects check_all (CONFIG_DEBUG_VM / page_table_check) to report it."""
import pytest

import vmsim
from vmsim import PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED, MAP_ANONYMOUS
from vmsim.arch.x86 import pgtable_types as T
from vmsim.arch.x86.pgtable import pgd_offset, p4d_offset, pud_offset, pmd_offset, pte_offset_map
from vmsim.mm import vmstat
from vmsim.mm.debug_vm import check_all, check_mm, VMChecker
from vmsim.mm.mm_types import MM_ANONPAGES
from vmsim.mm.page_flags import PG_lru
from vmtest import pte_at, pfn_at  # noqa: F401

RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS

pytestmark = pytest.mark.no_final_check     # the tests corrupt their machines on purpose


def ptep(mm, addr):
    """Pool index of the PTE for addr (tables must exist)."""
    p = pmd_offset(mm, pud_offset(mm, p4d_offset(mm, pgd_offset(mm, addr), addr), addr), addr)
    return pte_offset_map(mm, p, addr)


@pytest.fixture
def written(proc):
    """A process with 4 written private anon pages; returns (proc, addr)."""
    a = proc.mmap(0, 4 << 12, RW, ANON)
    proc.touch(a, 4 << 12, write=True)
    proc.machine.check()
    return proc, a


def expect(machine, pattern):
    with pytest.raises(AssertionError, match=pattern):
        machine.check()


def test_clean_state_passes(written):
    proc, a = written
    proc.machine.check()
    check_mm(proc.machine.k, proc.mm)


def test_refcount_bump_is_caught(written):
    proc, a = written
    pfn = pfn_at(proc, a)
    proc.machine.k.mem.refcount[pfn] += 1
    expect(proc.machine, rf"frame pfn {pfn:#x}: refcount \d+, expected")


def test_mapcount_bump_is_caught(written):
    proc, a = written
    pfn = pfn_at(proc, a + 4096)
    proc.machine.k.mem.mapcount[pfn] += 1
    expect(proc.machine, rf"frame pfn {pfn:#x}: mapcount 2, expected 1")


def test_pte_cleared_without_rmap_is_caught(written):
    proc, a = written
    k = proc.machine.k
    pfn = pfn_at(proc, a)
    n = proc.mm.rss_stat[MM_ANONPAGES]
    k.ptpool.mv[ptep(proc.mm, a)] = 0
    # The RSS counter, the mapcount and the reference no longer match the tables.
    expect(proc.machine, rf"rss_stat\[MM_ANONPAGES\] = {n}, page tables map {n - 1}")
    expect(proc.machine, rf"frame pfn {pfn:#x}: mapcount 1, expected 0")
    expect(proc.machine, r"nr_anon_pages")


def test_pending_tlb_flush_is_caught(written):
    proc, a = written
    from vmsim.arch.x86.mm.tlb import _note_downgrade
    _note_downgrade(proc.mm, a, a + 4096)
    expect(proc.machine, rf"TLB: .* \[{a:#x}, {a + 4096:#x}\) with no flush")


def test_freeing_a_mapped_frame_is_caught(written):
    proc, a = written
    k = proc.machine.k
    pfn = pfn_at(proc, a + 8192)
    k.mem.refcount[pfn] = 0
    k.page_alloc.free_frozen_pages(pfn, 0, 0)
    expect(proc.machine, rf"PTE at {a + 8192:#x} maps pfn {pfn:#x}, which is free")


def test_free_frame_with_data_is_caught(proc):
    k = proc.machine.k
    pfn = k.page_alloc.alloc_pages(0, 0, 0)
    k.mem.refcount[pfn] = 0
    k.page_alloc.free_frozen_pages(pfn, 0, 0)
    proc.machine.check()
    k.page_data.write(pfn, 0, b"stale")
    expect(proc.machine, rf"frame pfn {pfn:#x} is free .* private -?0x")


def test_leaked_frame_is_caught(proc):
    k = proc.machine.k
    pfn = k.page_alloc.alloc_pages(0, 0, 0)
    expect(proc.machine, rf"frame pfn {pfn:#x}: refcount 1, expected 0")
    k.mem.refcount[pfn] = 0          # now held by nobody and not free: lost
    expect(proc.machine, rf"lost or leaked frames: pfns {pfn:#x}")


def test_leaked_table_page_is_caught(proc):
    from vmsim.arch.x86.mm.pgtable import pagetable_alloc
    pfn = pagetable_alloc(proc.machine.k)
    expect(proc.machine, rf"table page pfn {pfn:#x} \(PGTY_table\) is reachable from no live mm")


def test_rss_and_vmstat_and_pgtables_corruption_is_caught(written):
    proc, a = written
    k = proc.machine.k
    proc.mm.rss_stat[MM_ANONPAGES] += 1
    expect(proc.machine, r"rss_stat\[MM_ANONPAGES\] = \d+, page tables map")
    proc.mm.rss_stat[MM_ANONPAGES] -= 1
    k.vmstat[vmstat.NR_PAGE_TABLE_PAGES] += 1
    expect(proc.machine, r"vmstat nr_page_table_pages")
    k.vmstat[vmstat.NR_PAGE_TABLE_PAGES] -= 1
    proc.mm.pgtables_bytes += 4096
    expect(proc.machine, r"pgtables_bytes = \d+, tables found")


def test_totalram_and_sysctl_int_corruption_is_caught(written):
    """_totalram_pages and the int sysctls (sysctl_max_map_count, ...) are copies the
    hot paths read; the checker recomputes them from the zones and k.sysctl."""
    proc, a = written
    m, k = proc.machine, proc.machine.k
    k.page_alloc._totalram_pages += 1
    expect(m, r"_totalram_pages = \d+, the zones manage \d+ pages")
    k.page_alloc._totalram_pages -= 1
    m.check()
    for var in ("sysctl_max_map_count", "sysctl_overcommit_memory", "sysctl_overcommit_ratio"):
        setattr(k, var, getattr(k, var) + 1)
        expect(m, rf"{var} = \d+, /proc/sys/vm/\w+ reads")
        setattr(k, var, getattr(k, var) - 1)
    m.check()
    # A write through /proc updates both.
    m.write_file("/proc/sys/vm/max_map_count", "1000\n")
    assert k.sysctl_max_map_count == 1000
    m.write_file("/proc/sys/vm/overcommit_memory", "2")
    assert k.sysctl_overcommit_memory == 2
    m.check()


def test_writable_pte_in_readonly_vma_is_caught(proc):
    a = proc.mmap(0, 4096, PROT_READ, ANON)
    assert proc.read(a, 4) == bytes(4)        # the zero page, read-only
    k = proc.machine.k
    k.ptpool.mv[ptep(proc.mm, a)] |= T._PAGE_RW
    expect(proc.machine, r"writable \(RW\) in a VMA without VM_WRITE")
    expect(proc.machine, r"maps the zero page writable")


def test_pte_outside_any_vma_is_caught(written):
    proc, a = written
    k = proc.machine.k
    proc.munmap(a + 3 * 4096, 4096)           # the PTE table stays (the VMA below is live)
    pfn = pfn_at(proc, a)
    k.ptpool.mv[ptep(proc.mm, a + 3 * 4096)] = k.ptpool.mv[ptep(proc.mm, a)]
    expect(proc.machine, rf"PTE at {a + 3 * 4096:#x} .*pfn {pfn:#x}\) lies outside any VMA")


def test_anon_page_writable_in_two_mms_is_caught(machine):
    p = machine.spawn()
    q = machine.spawn()
    a = p.mmap(0, 4096, RW, ANON)
    p.write(a, b"x")
    b = q.mmap(0, 4096, RW, ANON)
    q.write(b, b"y")
    k = machine.k
    pfn = pfn_at(p, a)
    old = pfn_at(q, b)
    # Point q's PTE at p's page with consistent counters: only the rule can fail.
    e = k.ptpool.mv[ptep(q.mm, b)]
    k.ptpool.mv[ptep(q.mm, b)] = (e & ~T.PTE_PFN_MASK) | (pfn << 12)
    k.mem.refcount[pfn] += 1
    k.mem.mapcount[pfn] += 1
    k.mem.refcount[old] -= 1
    k.mem.mapcount[old] -= 1
    k.vmstat[vmstat.NR_ANON_PAGES] -= 1
    expect(machine, rf"page_table_check: anon pfn {pfn:#x} is mapped writable by .* has 2 mappings")
    expect(machine, r"anon_vma id \d+ is not")


def test_anon_index_mismatch_is_caught(written):
    proc, a = written
    pfn = pfn_at(proc, a)
    proc.machine.k.mem.index[pfn] += 7
    expect(proc.machine, rf"maps pfn {pfn:#x} with index .* expected linear_page_index")


def test_lru_corruption_is_caught(written):
    proc, a = written
    k = proc.machine.k
    from vmsim.mm.swap import lru_add_drain_all
    lru_add_drain_all(k)
    proc.machine.check()
    pfn = pfn_at(proc, a)
    k.mem.flags[pfn] = k.mem.flags[pfn] & ~PG_lru
    expect(proc.machine, r"LRU")
    k.mem.flags[pfn] = k.mem.flags[pfn] | PG_lru
    proc.machine.check()
    k.lruvec.nr[0] += 1
    expect(proc.machine, r"LRU inactive_anon: lruvec.nr = \d+, PG_lru frames")
    k.lruvec.nr[0] -= 1
    k.mem.lru_next[pfn], saved = 0, k.mem.lru_next[pfn]
    expect(proc.machine, r"LRU")
    k.mem.lru_next[pfn] = saved
    proc.machine.check()


def test_shmem_cache_refcount_is_checked(proc):
    a = proc.mmap(0, 2 << 12, RW, MAP_SHARED | MAP_ANONYMOUS)
    proc.write(a, b"s")
    pfn = pfn_at(proc, a)
    proc.machine.k.mem.refcount[pfn] -= 1
    expect(proc.machine, rf"frame pfn {pfn:#x}: refcount \d+, expected \d+ \(1 PTE mappings \+ 1 page cache")


def test_everything_returned_after_exit(machine):
    p = machine.spawn()
    a = p.mmap(0, 8 << 12, RW, ANON)
    p.touch(a, 8 << 12, write=True)
    p.exit()
    machine.check()
    k = machine.k
    # 6.18's exit_mmap does not drain the per-CPU LRU batches: the folios still in
    # them are freed when the batches drain.
    # The program image's page cache stays (nr_file_pages), as any file's does.
    from vmsim.mm.swap import batch_refs, lru_add_drain_all
    from vmsim.mm import vmstat
    cached = k.vmstat[vmstat.NR_FILE_PAGES]
    cache_pfns = set(k.vfs.exe_inode.i_mapping.i_pages.values())
    held = len(set(batch_refs(k)) - cache_pfns)
    total = sum(z.managed_pages for z in k.page_alloc.zones)
    assert k.page_alloc.nr_free_pages() == total - held - cached
    lru_add_drain_all(k)
    assert k.page_alloc.nr_free_pages() == total - cached
    # An anon_vma left registered after the last process is a leak.
    from vmsim.mm.rmap import anon_vma
    av = anon_vma(0)
    av.id = k._register_object(av)
    expect(machine, r"all processes exited: 1 anon_vma\(s\) remain")
    k._unregister_object(av.id)
    pfn = k.page_alloc.alloc_pages(0, 0, 0)
    expect(machine, r"all processes exited: nr_free_pages")
    k.mem.refcount[pfn] = 0
    k.page_alloc.free_frozen_pages(pfn, 0, 0)
    machine.check()


def test_check_mm_reports_one_mm(written):
    proc, a = written
    proc.mm.rss_stat[MM_ANONPAGES] += 2
    with pytest.raises(AssertionError, match=r"rss_stat\[MM_ANONPAGES\]"):
        check_mm(proc.machine.k, proc.mm)


def test_vmchecker_every_n_syscalls():
    m = vmsim.Machine(memory="256M", cpus=1, debug_vm=False)
    ch = VMChecker(every=3).install(m)
    p = m.spawn()
    ch.calls = ch.runs = 0
    a = p.mmap(0, 4096, RW, ANON)              # call 1
    p.write(a, b"z")                           # call 2
    p.read(a, 1)                               # call 3: checked
    assert (ch.calls, ch.runs) == (3, 1)
    m.k.mem.refcount[pfn_at(p, a)] += 1
    p.read(a, 1)                               # call 4: not checked
    with pytest.raises(AssertionError, match="refcount"):
        p.read(a, 1)                           # call 5
        p.read(a, 1)                           # call 6: checked
    ch.uninstall()
    with pytest.raises(AssertionError):
        check_all(m.k)


# --- the incremental pass ------------------------------------------------------------
@pytest.fixture
def tree():
    """Three processes (parent, two children) sharing 4 written COW pages, with a checker
    that never runs a full pass by itself."""
    m = vmsim.Machine(memory="256M", cpus=2, debug_vm=True)
    ch = VMChecker(full_every=10**9).install(m)
    p = m.spawn()
    a = p.mmap(0, 4 << 12, RW, ANON)
    p.touch(a, 4 << 12, write=True)
    q, r = p.fork(), p.fork()
    m.check()
    return m, ch, p, q, r, a


def test_incremental_pass_walks_only_the_touched_mms(tree):
    m, ch, p, q, r, a = tree
    full = ch.full_runs
    q.write(a, b"q")                           # COW in q: only q's mm changed
    assert ch.last_touched == [q.mm]
    p.mmap(0, 4096, RW, ANON)                  # a VMA, no PTE: the caller's mm
    assert ch.last_touched == [p.mm]
    c = r.fork()                               # parent (write-protected PTEs) and child
    assert {id(x) for x in ch.last_touched} == {id(r.mm), id(c.mm)}
    assert ch.full_runs == full


def test_incremental_pass_catches_a_pte_corruption_in_the_caller(tree):
    m, ch, p, q, r, a = tree
    k = m.k
    full = ch.full_runs
    k.ptpool.mv[ptep(q.mm, a + 4096)] = 0      # cleared without rmap or RSS update
    with pytest.raises(AssertionError, match=rf"mm\(pid {q.pid}\): rss_stat\[MM_ANONPAGES\] = \d+, page tables map"):
        q.read(a, 1)
    assert ch.full_runs == full and ch.last_touched == [q.mm]


def test_incremental_pass_catches_a_pte_corruption_in_another_mm(tree):
    m, ch, p, q, r, a = tree
    k = m.k
    full = ch.full_runs
    e = k.ptpool.mv[ptep(r.mm, a)]
    k.ptpool.mv[ptep(r.mm, a)] = e | T._PAGE_RW    # a shared COW page made writable in r
    with pytest.raises(AssertionError, match=r"writable but the page is not PG_anon_exclusive"):
        p.read(a, 1)                               # the call is p's; the changed table is r's
    assert ch.full_runs == full
    assert any(x is r.mm for x in ch.last_touched)


def test_incremental_pass_catches_frame_corruption(tree):
    m, ch, p, q, r, a = tree
    full = ch.full_runs
    pfn = pfn_at(p, a + 8192)
    m.k.mem.mapcount[pfn] += 1                 # a frame only p, q and r map
    with pytest.raises(AssertionError, match=rf"frame pfn {pfn:#x}: mapcount 4, expected 3"):
        p.mmap(0, 4096, RW, ANON)
    assert ch.full_runs == full


def test_incremental_pass_catches_counter_corruption_in_an_idle_mm(tree):
    m, ch, p, q, r, a = tree
    r.mm.total_vm += 1                         # r makes no call: its counters changed
    with pytest.raises(AssertionError, match=r"total_vm = \d+, VMAs span"):
        p.read(a, 1)


def test_periodic_full_pass_catches_what_the_incremental_one_cannot(machine):
    ch = VMChecker(full_every=4).install(machine)
    p, q = machine.spawn(), machine.spawn()
    machine.check()
    a = p.mmap(0, 4096, RW, ANON)
    ch.since_full = 0
    next(iter(q.mm.mm_mt)).detached = True     # not in any count or table of q
    p.read(a, 1)                               # passes 1-3: incremental, q untouched
    p.read(a, 1)
    p.read(a, 1)
    assert ch.full_runs == 1 or ch.since_full == 3
    with pytest.raises(AssertionError, match=r"in the tree is marked detached"):
        p.read(a, 1)                           # pass 4: full


def test_machine_check_is_a_full_pass(tree):
    m, ch, p, q, r, a = tree
    next(iter(r.mm.mm_mt)).detached = True
    p.read(a, 1)                               # incremental: r untouched
    with pytest.raises(AssertionError, match=r"marked detached"):
        m.check()


def test_sort_based_unique_gives_numpys_values():
    """The checker's np.unique by sorting (numpy's hash-table path is ~50x slower on
    arrays of PFNs) gives np.unique's values, dtype included, on edge cases and random
    arrays with and without repeats."""
    import numpy as np
    from vmsim.mm.debug_vm import _unique
    rng = np.random.default_rng()
    cases = [np.zeros(0, np.int64), np.array([7]), np.array([3, 3, 1, 3]), np.arange(10)[::-1],
             np.array([[2, 1], [1, 5]])]
    for n, hi in ((1000, 1 << 40), (5000, 300), (20000, 20000)):
        cases.append(rng.integers(0, hi, n))
    for a in cases:
        got, want = _unique(a), np.unique(a)
        assert got.dtype == want.dtype and got.tolist() == want.tolist()


def _free_lists_both_ways(k, known=None):
    """The free-list checks (_FreeSet) by the list-by-list pass and by the all-at-once
    one: (messages of the list-by-list pass, its intervals, _clean's verdict and
    intervals)."""
    from vmsim.mm import debug_vm
    rep = debug_vm._Report()
    slow = object.__new__(debug_vm._FreeSet)
    orig = debug_vm._FreeSet._clean
    try:
        debug_vm._FreeSet._clean = lambda self, k, known: False
        slow.__init__(k, rep)
    finally:
        debug_vm._FreeSet._clean = orig
    fast = object.__new__(debug_vm._FreeSet)
    ok = fast._clean(k, {} if known is None else known)
    return rep.msgs, slow, ok, fast


def _random_free_lists(seed):
    """A machine whose buddy and pcp lists hold blocks of many orders (random mmap,
    touch, partial munmap and exit of a few processes)."""
    import random
    rnd = random.Random(seed)
    m = vmsim.Machine(memory="256M", cpus=2, pku=False, debug_vm=False)
    procs = [m.spawn() for _ in range(3)]
    for _ in range(12):
        p = rnd.choice(procs)
        n = rnd.choice((1, 3, 16, 100, 600))
        a = p.mmap(0, n << 12, RW, ANON)
        p.touch(a, n << 12, write=True)
        if rnd.random() < 0.6:
            off = rnd.randrange(n)
            p.munmap(a + (off << 12), (rnd.randrange(n - off) + 1) << 12)
    procs[0].exit()
    return m


@pytest.mark.parametrize("seed", range(3))
def test_free_lists_checked_all_at_once_agree_with_list_by_list(seed):
    """_FreeSet._clean (the checks over a zone's lists at once) finds clean exactly the
    states the list-by-list pass reports nothing on, with the same free intervals; each
    corruption of the free lists it must see (flags, order, pageblock, unmerged
    buddies, counts, links, a stray PGTY_buddy) makes it defer to the
    list-by-list pass, which reports."""
    import random
    import numpy as np
    from vmsim.mm.page_flags import PGTY_buddy, PG_ORDER_SHIFT
    from vmsim.mm import _buddy
    rnd = random.Random(seed)
    m = _random_free_lists(seed)
    k = m.k
    msgs, slow, ok, fast = _free_lists_both_ways(k)
    assert msgs == [] and ok
    for a in ("starts", "ends", "lab", "labels"):
        assert np.array_equal(np.asarray(getattr(slow, a)), np.asarray(getattr(fast, a)))
    z = max(k.page_alloc.zones, key=lambda z: z.free_pages)
    pcp = next(p for p in z.pcp if p.count)
    heads = [i for i in range(len(z.fl_head)) if z.fl_head[i]]
    li = rnd.choice(heads)
    blk = int(z.fl_head[li])
    order, mt = divmod(li, _buddy.NR_MIGRATETYPES)
    pl = next(i for i in range(len(pcp.head)) if pcp.head[i])
    pblk = int(pcp.head[pl])
    mem, pa = k.mem, k.page_alloc
    used = next(p for p in range(z.zone_start_pfn, z.deferred_pfn)
                if mem.refcount[p] > 0 and not mem.flags[p] & PGTY_buddy)

    def flip(arr, i, v):
        old = arr[i]
        arr[i] = v
        return lambda: arr.__setitem__(i, old)

    corruptions = [
        lambda: flip(mem.flags, blk, mem.flags[blk] & (0xFFFFFFFF ^ PGTY_buddy)),
        lambda: flip(mem.flags, blk, mem.flags[blk] ^ (1 << PG_ORDER_SHIFT)),
        lambda: flip(pa.pageblock_mt, blk >> _buddy.pageblock_order, (mt + 1) % _buddy.NR_MIGRATETYPES),
        lambda: flip(z.nr_free, order, z.nr_free[order] + 1),
        lambda: flip(mem.lru_prev, blk, blk),
        lambda: flip(mem.flags, used, mem.flags[used] | PGTY_buddy),
        lambda: flip(mem.flags, pblk, 1),
        lambda: flip(z.fl_tail, li, 0),
        lambda: flip(pcp.t, pl, 0),
    ]
    if order < _buddy.MAX_PAGE_ORDER:
        bud = blk ^ (1 << order)
        if z.zone_start_pfn <= bud < z.deferred_pfn:
            corruptions.append(lambda: flip(mem.flags, bud, PGTY_buddy | (order << PG_ORDER_SHIFT)))
    for make in corruptions:
        undo = make()
        try:
            msgs, slow, ok, fast = _free_lists_both_ways(k)
            assert msgs and not ok
        finally:
            undo()
    # Counters kept as properties: a zone's free pages, a pcp's count.
    for obj in (z, pcp):
        attr = "free_pages" if obj is z else "count"
        setattr(obj, attr, getattr(obj, attr) + 1)
        try:
            msgs, _s, ok, _f = _free_lists_both_ways(k)
            assert msgs and not ok
        finally:
            setattr(obj, attr, getattr(obj, attr) - 1)
    msgs, _s, ok, _f = _free_lists_both_ways(k)
    assert not msgs and ok                      # every corruption undone


@pytest.mark.parametrize("seed", range(3))
def test_free_lists_walked_from_the_last_pass_agree_with_a_fresh_walk(seed):
    """_clean with the lists the last clean pass found (the checker's _IncrState keeps
    them) agrees with a fresh walk and the list-by-list pass as the allocator changes
    the lists, and defers to the list-by-list pass on each corruption of the links."""
    import random
    import numpy as np
    rnd = random.Random(seed)
    m = _random_free_lists(seed)
    k = m.k
    known = {}
    procs = [p for p in m.processes.values() if p.task.mm is not None]
    for step in range(8):
        msgs, slow, ok, fast = _free_lists_both_ways(k, known)
        assert msgs == [] and ok
        for a in ("starts", "ends", "lab", "labels"):
            assert np.array_equal(np.asarray(getattr(slow, a)), np.asarray(getattr(fast, a)))
        assert any(len(b) >= 32 for b in known.values())      # the reuse was taken
        p = rnd.choice(procs)
        n = rnd.choice((1, 7, 40, 300))
        a = p.mmap(0, n << 12, RW, ANON)
        p.touch(a, n << 12, write=True)
        if rnd.random() < 0.7:
            off = rnd.randrange(n)
            p.munmap(a + (off << 12), (rnd.randrange(n - off) + 1) << 12)
    mem = k.mem
    cur = {}                                    # the lists now (known also holds emptied ones)
    _free_lists_both_ways(k, cur)
    _free_lists_both_ways(k, known)
    for lst in [b for b in cur.values() if len(b) >= 32][:4]:
        i = rnd.randrange(1, len(lst) - 1)
        a, b = int(lst[i]), int(lst[i + 1])
        for arr, at, v in ((mem.lru_prev, b, a + 1), (mem.lru_next, a, 0), (mem.lru_next, a, int(lst[1])),
                           (mem.lru_prev, int(lst[0]), int(lst[-1])), (mem.lru_next, int(lst[-1]), a)):
            old = arr[at]
            arr[at] = v
            try:
                msgs, _s, ok, _f = _free_lists_both_ways(k, dict(known))
                assert msgs and not ok
            finally:
                arr[at] = old
    msgs, _s, ok, _f = _free_lists_both_ways(k, known)
    assert not msgs and ok


@pytest.mark.parametrize("seed", range(2))
def test_list_walk_from_a_known_list_agrees_with_check_list(seed):
    """_walk_known (a list walk reusing the intact part of an earlier walk's nodes)
    returns _check_list's nodes where it reports nothing and None where it reports,
    whatever the earlier nodes: lists grown or shrunk at either end or in the middle,
    broken links, cycles, a wrong tail, stale or made-up hints."""
    import random
    import numpy as np
    from vmsim.mm.debug_vm import _check_list, _walk_known
    rnd = random.Random(seed)
    N = 4096
    nxt_np, prv_np = np.zeros(N, np.int32), np.zeros(N, np.int32)
    head_np, tail_np = np.zeros(1, np.int64), np.zeros(1, np.int64)
    nxt, prv, head, tail = (memoryview(x) for x in (nxt_np, prv_np, head_np, tail_np))

    def link(nodes):
        nxt_np[:] = 0
        prv_np[:] = 0
        for a, b in zip(nodes, nodes[1:]):
            nxt[a], prv[b] = b, a
        head[0] = nodes[0] if nodes else 0
        tail[0] = nodes[-1] if nodes else 0

    def both(hint, limit=N):
        failed = []
        want = _check_list(nxt, prv, head, tail, 0, limit, failed.append, "")
        got = _walk_known(nxt, prv, nxt_np, prv_np, head, tail, 0, limit, np.array(hint, np.int64))
        if failed:
            assert got is None, (failed, hint)
        else:
            assert got is not None and got.dtype == np.int64 and got.tolist() == want
        return not failed

    clean = 0
    for _ in range(300):
        pool = rnd.sample(range(1, N), 400)
        old = pool[:rnd.randrange(0, 300)]
        c, d = rnd.randrange(len(old) + 1), rnd.randrange(len(old) + 1)
        c, d = min(c, d), max(c, d)
        new = rnd.choice([
            old,
            old[c:],                                   # taken from the head
            old[:d],                                   # taken from the tail
            pool[300:300 + rnd.randrange(60)] + old,   # added at the head
            old + pool[300:300 + rnd.randrange(60)],   # added at the tail
            old[:c] + old[d:],                         # taken from the middle
            old[:c] + pool[300:330] + old[c:],         # added in the middle
            pool[300:400],                             # another list
            [],
        ])
        link(new)
        hint = rnd.choice([old, old, new, old[rnd.randrange(len(old) + 1):],
                           rnd.sample(range(1, N), rnd.randrange(100))])
        clean += both(hint)
        both(hint, limit=max(len(new) - 2, 0))        # one node more than the limit allows
        if len(new) > 2:
            i = rnd.randrange(len(new) - 1)
            brk = rnd.choice([(prv, new[i + 1], rnd.randrange(N)), (nxt, new[i], new[rnd.randrange(i + 1)]),
                              (nxt, new[-1], new[rnd.randrange(len(new))]), (tail, 0, new[i]),
                              (head, 0, new[i + 1]), (prv, new[0], new[-1])])
            arr, at, v = brk
            arr[at] = v
            both(hint)
            both(hint, limit=len(new) - 2)
    assert clean > 150


def _repoint(proc, a, pfn):
    """Make the PTE at a map pfn, keeping its flags."""
    k = proc.machine.k
    i = ptep(proc.mm, a)
    e = k.ptpool.mv[i]
    k.ptpool.mv[i] = (e & ~T.PTE_PFN_MASK) | (pfn << 12)


def test_pte_of_another_files_page_is_caught(proc):
    """A PTE in one shmem mapping that maps the page-cache page (same index) of another."""
    a = proc.mmap(0, 2 << 12, RW, MAP_SHARED | MAP_ANONYMOUS)
    b = proc.mmap(0, 2 << 12, RW, MAP_SHARED | MAP_ANONYMOUS)
    proc.write(a + 4096, b"a")
    proc.write(b + 4096, b"b")
    proc.machine.check()
    pb = pfn_at(proc, b + 4096)
    _repoint(proc, a + 4096, pb)
    expect(proc.machine, rf"PTE at {a + 4096:#x} maps pfn {pb:#x} \(mapping \d+, index 0x1\), "
                         r"not the page cache page of")


def test_page_cache_page_in_an_anon_vma_is_caught(written):
    proc, a = written
    s = proc.mmap(0, 4096, RW, MAP_SHARED | MAP_ANONYMOUS)
    proc.write(s, b"s")
    ps = pfn_at(proc, s)
    _repoint(proc, a + 3 * 4096, ps)
    expect(proc.machine, rf"PTE at {a + 3 * 4096:#x} maps non-anon pfn {ps:#x} in .*which has no file")


def test_folio_heads_match_the_order_by_order_search():
    """_folio_heads (tail pages looked up alone) gives what the order-by-order search
    over every PFN gives, on random flags (heads of random orders, stray tails)."""
    import numpy as np
    from types import SimpleNamespace
    from vmsim.mm.debug_vm import _folio_heads
    from vmsim.mm.page_flags import PG_tail, PG_head, PG_ORDER_SHIFT
    rng = np.random.default_rng()

    def reference(mem, pfns):
        fl = mem.np_flags[pfns]
        out = pfns.copy()
        todo = (fl & PG_tail) != 0
        for order in range(1, 19):
            cand = pfns & ~((1 << order) - 1)
            cf = mem.np_flags[cand]
            ok = todo & ((cf & PG_head) != 0) & (((cf >> PG_ORDER_SHIFT) & 0x3F) >= order)
            out[ok] = cand[ok]
            todo &= ~ok
        return out

    for _ in range(20):
        n = 1 << 14
        flags = np.zeros(n, np.uint32)
        for h in rng.integers(0, n, 40).tolist():
            order = int(rng.integers(1, 12))
            h &= ~((1 << order) - 1)
            flags[h] = PG_head | (order << PG_ORDER_SHIFT)
            flags[h + 1:min(n, h + (1 << order))] = PG_tail
        flags[rng.integers(0, n, 50)] ^= PG_tail           # stray / missing tails
        mem = SimpleNamespace(np_flags=flags)
        pfns = rng.integers(0, n, 3000).astype(np.int64)
        assert _folio_heads(mem, pfns).tolist() == reference(mem, pfns).tolist()


def test_sort_based_sum_refs_and_unique_pairs_give_numpys_values():
    """_sum_refs and _unique_pairs (sorting instead of np.unique's inverse / row paths)
    give what np.unique gives, on empty, small and random inputs with repeats."""
    import numpy as np
    from vmsim.mm.debug_vm import _sum_refs, _unique_pairs
    rng = np.random.default_rng()
    for n, hi in ((0, 5), (1, 5), (7, 3), (1000, 50), (5000, 1 << 40)):
        pairs = [(rng.integers(0, hi, n), rng.integers(-3, 9, n)) for _ in range(3)]
        pf = np.concatenate([p for p, _ in pairs]).astype(np.int64)
        ct = np.concatenate([c for _, c in pairs]).astype(np.int64)
        u, c = _sum_refs(pairs)
        if n:
            wu, inv = np.unique(pf, return_inverse=True)
            wc = np.bincount(inv, weights=ct, minlength=len(wu)).astype(np.int64)
        else:
            wu = wc = np.zeros(0, np.int64)
        assert u.tolist() == wu.tolist() and c.tolist() == wc.tolist()
        a, b = rng.integers(0, 4, n), rng.integers(-2, hi, n).astype(np.int32)
        want = np.unique(np.stack([a, b], axis=1), axis=0).tolist() if n else []
        assert [list(x) for x in _unique_pairs(a, b)] == want
