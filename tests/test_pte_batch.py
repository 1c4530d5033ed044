"""vmsim's compiled runs (mm/_pte_batch.py, behind zap_pte_range, copy_pte_range,
change_pte_range, folios_put and free_unref_folios; mm/_fault_batch.py, runs of
first-touch anonymous write faults behind Process.touch) leave exactly the state the
kernel-named Python per-PTE and per-fault code leaves:
the same random programs run on two machines, one with the runs switched off, and
every mem_map array, page-table row, counter, LRU and per-CPU/buddy free list,
vmstat and TLB record must agree."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import vmsim
from vmsim import (PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED, MAP_ANONYMOUS,
                   MADV_DONTNEED, SignalDelivered)
from vmsim.mm import _pte_batch, _buddy, _fault_batch

RW = PROT_READ | PROT_WRITE
PAGES = 96                     # the region: 96 pages across a PTE-table boundary

OPS = st.one_of(
    st.tuples(st.just("write"), st.integers(0, PAGES - 1), st.integers(1, 40)),
    st.tuples(st.just("read"), st.integers(0, PAGES - 1), st.integers(1, 40)),
    st.tuples(st.just("fork"), st.integers(0, PAGES - 1), st.integers(1, 40)),
    st.tuples(st.just("dontneed"), st.integers(0, PAGES - 1), st.integers(1, 40)),
    st.tuples(st.just("munmap"), st.integers(0, PAGES - 1), st.integers(1, 8)),
    st.tuples(st.just("protect"), st.integers(0, PAGES - 1), st.integers(1, 40)),
    st.tuples(st.just("shared"), st.integers(0, PAGES - 1), st.integers(1, 8)),
    st.tuples(st.just("mlock"), st.integers(0, PAGES - 1), st.integers(1, 8)),
    st.tuples(st.just("exit"), st.integers(0, 3), st.integers(0, 0)),
)


def _run(program, enabled, pages=PAGES, runs=(_pte_batch,), memory="64M"):
    """Run ``program`` on a fresh machine with the compiled runs of ``runs`` on or off."""
    for r in runs:
        r._set_enabled(enabled)
    try:
        m = vmsim.Machine(memory=memory, cpus=2)
        p = m.spawn()
        base = p.mmap(0x7f0000000000 - (PAGES << 12) // 2, pages << 12, RW,
                      MAP_PRIVATE | MAP_ANONYMOUS | 0x10)                  # MAP_FIXED
        procs = [p]
        for op, page, n in program:
            a, length = base + (page << 12), min(n, pages - page) << 12
            who = procs[-1]
            try:
                if op == "write":
                    who.touch(a, length, write=True, value=page + 1)
                elif op == "stride":                     # several stores per page, or gaps
                    who.touch(a, length, write=True, stride=(n * 1024) % 12288 + 512,
                              value=n % 3)
                elif op == "fill":                       # data rows in every page
                    who.write(a, bytes([page % 251 + 1]) * length)
                elif op == "fill_mid":                   # from mid-page, maybe past the end
                    who.write(a + 2048, bytes([n % 251 + 1]) * length)
                elif op == "access":                     # 8 stores a page, every 40th a load
                    addrs = a + 100 + np.arange(8 * n, dtype=np.int64) * 512
                    kinds = (np.arange(8 * n) % 40 != 39).astype(np.uint8)
                    who.access(addrs, kinds, value=n % 5)
                elif op == "cpu":
                    m.schedule(who, n % 2)               # the other CPU's lists and batch
                elif op == "read":
                    who.touch(a, length)
                elif op == "fork":
                    procs.append(who.fork())
                    procs[-1].touch(a, length, write=True, value=7)
                elif op == "dontneed":
                    who.madvise(a, length, MADV_DONTNEED)
                elif op == "munmap":
                    who.munmap(a, length)
                elif op == "protect":
                    who.mprotect(a, length, PROT_READ)
                    who.mprotect(a, length, RW)
                elif op == "shared":
                    who.mmap(a, length, RW, MAP_SHARED | MAP_ANONYMOUS | 0x10)
                    who.touch(a, length, write=True)
                elif op == "mlock":
                    who.mlock(a, length)
                elif op == "exit" and len(procs) > 1:
                    c = procs.pop(page % (len(procs) - 1) + 1)
                    c.exit(0)
                    procs[0].wait(c.pid)
            except (OSError, SignalDelivered):
                pass
        m.check()
        return m, procs
    finally:
        for r in runs:
            r._set_enabled(True)


def _state(m, procs):
    """Everything the runs may touch, in comparable form."""
    k = m.k
    mem = k.mem
    pa = k.page_alloc
    out = {name: getattr(mem, name).copy() for name in
           ("np_flags", "np_refcount", "np_mapcount", "np_mapping", "np_index", "np_private",
            "np_lru_next", "np_lru_prev")}
    # The table rows ever used (the pool is sized for every frame a table: copying it all
    # took most of these tests' time), and that nothing was written past them.
    pool = k.ptpool
    out["pool_used"] = pool.used
    out["pool"] = pool.arr[:pool.used * 512].copy()
    out["pool_past_used"] = int(np.count_nonzero(pool.arr[pool.used * 512:]))
    out["vmstat"] = list(k.vmstat)
    out["lru"] = (list(k.lruvec.head), list(k.lruvec.tail), list(k.lruvec.nr))
    out["fbatches"] = [[list(getattr(fb, n)) for n in ("lru_add", "activate", "lru_lazyfree",
                                                        "lru_deactivate", "mlock")]
                       for fb in k.cpu_fbatches]
    # The buddy and per-CPU lists (linked through np_lru_next / np_lru_prev, compared
    # above), their heads, tails and counters, and the pageblock migratetypes.
    for name in ("zone_st", "fl_head", "fl_tail", "nr_free", "pcp_st", "pcp_head", "pcp_tail",
                 "pageblock_mt"):
        out[name] = getattr(pa, name).copy()
    out["zones"] = [(z.free_pages, z.pcp_pages, list(z.nr_free), z.free_area,
                     [(pcp.count, pcp.high, pcp.free_count, pcp.alloc_factor, pcp.flags,
                       pcp.lists) for pcp in z.pcp])
                    for z in pa.zones]
    out["pgfree"] = (pa.pgfree, list(pa.pgalloc))
    out["stale_rows"] = list(k.page_data._stale_rows)
    out["data"] = k.page_data.pool[:k.page_data.rows_used].copy()     # the pages' bytes
    out["mms"] = [(p.pid, list(p.mm.rss_stat), p.mm.hiwater_rss, p.mm.pgtables_bytes,
                   p.getrusage().ru_minflt, getattr(p, "_translations", 0)) for p in procs]
    ids = {id(p.mm): p.pid for p in procs}
    out["tlb"] = ([(ids.get(id(e[0])), *e[1:]) for e in k.tlb_flushes],
                  [(ids.get(id(e[0])), *e[1:]) for e in k.tlb_pending],
                  [p.mm.tlb_gen for p in procs],
                  [(ids.get(id(c.tlbstate.loaded_mm)), c.tlbstate.loaded_mm_asid,
                    c.tlbstate.ctxs, c.tlbstate.is_lazy, c.tlbstate.user_pcid_flush_mask,
                    c.tlbstate.events) for c in k.cpus])
    return out


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            diff = np.flatnonzero(a[key] != b[key])
            assert not len(diff), f"{key} differs at {diff[:8].tolist()}"
        else:
            assert a[key] == b[key], key


def _compare(program, pages=PAGES):
    calls = {"zap": 0, "copy": 0, "put": 0, "commit": 0, "drain": 0, "change": 0}
    py = _state(*_run(program, False, pages))
    _pte_batch._load(every=True)
    saved = dict(_pte_batch._impl)
    commit = _buddy._get("_free_unref_order0")

    def counting(name):
        def run(*args):
            calls[name] += 1
            return saved[name](*args)
        return run

    def counting_commit(*args):
        # A drain (free_pcppages_bulk) shows as fewer pages on the pcp lists than
        # before plus the pages committed.
        pfns, i, zst = args[0], args[1], args[11]
        before = int(zst[_buddy.ZS_PCP_PAGES])
        j = commit(*args)
        calls["commit"] += 1
        if int(zst[_buddy.ZS_PCP_PAGES]) < before + (j - i):
            calls["drain"] += 1
        return j
    _pte_batch._impl.update({name: counting(name) for name in ("zap", "copy", "put", "change")})
    _buddy._impl["_free_unref_order0"] = counting_commit
    try:
        batched = _state(*_run(program, True, pages))
    finally:
        _pte_batch._impl.update(saved)
        _buddy._impl["_free_unref_order0"] = commit
    _assert_same(py, batched)
    return calls


@settings(max_examples=6, deadline=None)
@given(st.lists(OPS, min_size=1, max_size=10))
def test_compiled_runs_leave_the_python_state(program):
    """Random programs of writes, reads, forks, MADV_DONTNEED, munmap, mprotect,
    shared mappings, mlock and exits: identical state with and without the runs."""
    _compare(program)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(st.lists(OPS, min_size=1, max_size=25))
def test_compiled_runs_leave_the_python_state_long(program):
    _compare(program)


def test_runs_are_taken_and_cover_the_kinds_of_entries():
    """A fixed program through every kind of entry the runs take or hand back (zero
    page, anon, shared anon, mlocked, COW-shared after fork, mprotect of all of them,
    a full mmu_gather):
    the runs are called, and the state agrees."""
    program = [("write", 0, 40), ("read", 40, 20), ("shared", 60, 8), ("mlock", 70, 4),
               ("write", 74, 22), ("fork", 0, 10), ("protect", 0, 60), ("dontneed", 0, 30),
               ("exit", 0, 0),
               ("write", 0, 96), ("munmap", 10, 8), ("fork", 20, 5), ("munmap", 0, 96)]
    calls = _compare(program)
    assert calls["zap"] > 0 and calls["copy"] > 0 and calls["put"] > 0 and calls["change"] > 0


def test_traced_zap_runs_python():
    """With a profiler installed (the tracer), the runs stay off."""
    import sys
    sys.setprofile(lambda *a: None)
    try:
        m = vmsim.Machine(memory="64M")
        p = m.spawn()
        vma = p.mm.mm_mt[0]
        assert not _pte_batch._usable(vma)
    finally:
        sys.setprofile(None)
    assert _pte_batch._usable(vma) == (not vma.vm_flags & 0x2000)


def test_freeing_drains_the_pcp_lists_as_the_python_path():
    """Frees past pcp->high (free_pcppages_bulk to the buddy, pcp->high tuning) in one
    munmap and in MADV_DONTNEED after a fork: the same lists, buddy and counters."""
    program = [("write", 0, 3000), ("dontneed", 0, 1500), ("write", 0, 1500),
               ("fork", 0, 1), ("exit", 0, 0), ("munmap", 0, 3000)]
    calls = _compare(program, pages=3000)
    assert calls["commit"] > 0 and calls["drain"] > 0


def test_gather_array_keeps_the_order_of_the_python_entries(monkeypatch):
    """The zap runs gather into the mmu_gather's array and the Python per-PTE code onto
    its list, which first takes the array's entries: MADV_DONTNEED and munmap across
    private anon, shared (shmem) and mlocked pages mix both in one gather, a munmap of
    private pages only hands folios_put the array; the state is the Python path's."""
    from vmsim.mm import mmu_gather, swap
    moved, arrays = [0], [0]
    pages = mmu_gather.mmu_gather._gathered

    def moving(tlb):
        moved[0] += tlb._nbuf > 0
        return pages.fget(tlb)
    put = swap.folios_put

    def putting(k, pfns):
        arrays[0] += isinstance(pfns, np.ndarray)
        return put(k, pfns)
    monkeypatch.setattr(mmu_gather.mmu_gather, "_gathered", property(moving))
    monkeypatch.setattr(swap, "folios_put", putting)
    program = [("write", 0, 400), ("shared", 150, 8), ("mlock", 100, 4), ("mlock", 300, 4),
               ("dontneed", 104, 146),
               ("write", 0, 250), ("munmap", 320, 80), ("munmap", 0, 400)]
    calls = _compare(program, pages=400)
    assert calls["zap"] > 0 and moved[0] >= 2 and arrays[0] >= 1


def test_reused_data_rows_read_as_zeros():
    """Freed frames drop their data; a data row freed with them is zeroed when it is
    reused (PageData._alloc_row), so a new page written in part reads zeros elsewhere,
    and a COW copy into a reused row has exactly the source's bytes."""
    m = vmsim.Machine(memory="64M")
    p = m.spawn()
    n = 64
    a = p.mmap(0, n << 12, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    p.write(a, b"\xff" * (n << 12))
    p.munmap(a, n << 12)
    b = p.mmap(0, n << 12, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    for i in range(n):
        p.write(b + (i << 12) + 100, b"abc")
    c = p.fork()
    p.write(b, b"xyz")                                   # COW copy in the parent
    for i in range(n):
        page = p.read(b + (i << 12), 4096)
        assert page[100:103] == b"abc" and page.count(0) == 4093 - (3 if i == 0 else 0)
    assert c.read(b, 3) == b"\0\0\0"
    c.exit(0)
    p.wait(c.pid)


# --- runs of first-touch anonymous write faults (mm/_fault_batch.py) ----------------
FAULT_OPS = st.one_of(OPS, st.tuples(st.just("stride"), st.integers(0, PAGES - 1),
                                     st.integers(1, 40)),
                      st.tuples(st.just("fill"), st.integers(0, PAGES - 1), st.integers(1, 40)),
                      st.tuples(st.just("cpu"), st.integers(0, 0), st.integers(0, 1)))


def _compare_faults(program, pages=PAGES, memory="64M"):
    """Run ``program`` with the fault runs off, then on; the state must agree. Returns
    (run calls, faults the runs took, of them copies, of them reuses)."""
    py = _state(*_run(program, False, pages, (_fault_batch,), memory))
    calls = [0, 0, 0, 0]
    _fault_batch._get(True)
    _fault_batch._get(False)
    saved = dict(_fault_batch._impl)

    def counting(fn):
        def run(*args):
            r = fn(*args)
            calls[0] += 1
            out = args[-1]
            calls[1] += out[2]                           # faults taken,
            calls[2] += out[4]                           # copies (COW, zero page),
            calls[3] += out[7]                           # reuses
            return r
        return run
    _fault_batch._impl.update({c: counting(fn) for c, fn in saved.items()})
    try:
        batched = _state(*_run(program, True, pages, (_fault_batch,), memory))
    finally:
        _fault_batch._impl.clear()
        _fault_batch._impl.update(saved)
    _assert_same(py, batched)
    return calls


@settings(max_examples=8, deadline=None)
@given(st.lists(FAULT_OPS, min_size=1, max_size=10))
def test_fault_runs_leave_the_python_state(program):
    """Random programs of writes (strided too), fills with data rows, reads, forks,
    MADV_DONTNEED, munmap, mprotect, shared mappings, mlock, exits and CPU switches:
    identical state with and without the runs of write faults."""
    _compare_faults(program)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(st.lists(FAULT_OPS, min_size=1, max_size=25))
def test_fault_runs_leave_the_python_state_long(program):
    _compare_faults(program)


def test_fault_runs_are_taken_and_stop_where_the_python_path_must_run():
    """A fixed program: first touches across a PTE-table boundary (the run stops at the
    missing table), writes over zero-page reads (copies), COW copies after forks (from
    data rows and inline bytes) and reuse once the other mapper exited, around
    mlocked and shared pages, on both
    CPUs, over more pages than the per-CPU list holds (refills by the Python path), and
    lru_add drains with folios of another kind in the batch: the runs take most faults
    and the state agrees."""
    program = [("read", 10, 5), ("write", 0, 40), ("mlock", 40, 4), ("write", 30, 30),
               ("shared", 60, 8), ("fork", 0, 20), ("write", 0, 30), ("exit", 0, 0),
               ("dontneed", 0, 96), ("cpu", 0, 1), ("stride", 0, 3), ("write", 0, 2500),
               ("dontneed", 100, 2000), ("cpu", 0, 0), ("write", 0, 3000),
               ("fill", 0, 1000), ("fork", 0, 1), ("write", 0, 1200), ("exit", 0, 0),
               ("write", 0, 1500), ("read", 2000, 900), ("write", 1990, 1000)]
    calls, faults, copies, reuses = _compare_faults(program, pages=3000, memory="1G")
    assert calls > 0 and faults > 5000 and copies > 1000 and reuses > 1000


def test_strided_stores_take_their_data_rows_in_the_run():
    """Several stores a page (Process.touch with a stride under a page): the second
    store into a page needs a data row (PageData.write's _alloc_row, a reused row
    zeroed); the run takes it and goes on, on fresh pages and on COW copies, and the
    state is the Python path's."""
    program = [("fill", 60, 30), ("dontneed", 60, 30), ("stride", 0, 37), ("fork", 0, 1),
               ("stride", 0, 37), ("exit", 0, 0), ("stride", 40, 49)]
    calls, faults, copies, reuses = _compare_faults(program, pages=100)
    assert calls > 0 and faults > 80 and faults >= 5 * calls


def test_process_write_takes_the_fault_runs():
    """Process.write over many pages: the runs take its write faults, storing nothing
    (the bytes are stored page by page after): first touches, COW copies of pages
    whose bytes are inline and of the zero page, reuse after the other mapper exited,
    not a copy of a page with a data row (handed back); a write from mid-page past the
    region's end stores the pages before the SIGSEGV. The state is the Python path's."""
    program = [("write", 0, 100), ("fill", 50, 50), ("fork", 0, 1), ("fill_mid", 0, 100),
               ("exit", 0, 0), ("read", 100, 40), ("write", 140, 60), ("fill", 200, 50),
               ("write", 250, 30), ("fork", 100, 1), ("fill_mid", 100, 200), ("exit", 0, 0),
               ("fill", 0, 200), ("fill_mid", 200, 100)]
    calls, faults, copies, reuses = _compare_faults(program, pages=300)
    assert calls > 0 and faults > 300 and copies > 50 and reuses > 50


def test_process_access_takes_the_fault_runs():
    """Process.access: a stretch of one-byte stores at a constant stride goes through the
    runs (stores included, as Process.touch), up to a load or the end of the stretch;
    first touches, COW copies and reuse, a stretch past the region's end (SIGSEGV):
    the state and the translations counted are the Python path's."""
    program = [("access", 0, 60), ("fill", 60, 20), ("fork", 0, 1), ("access", 0, 120),
               ("exit", 0, 0), ("access", 0, 200), ("read", 200, 30), ("access", 190, 200)]
    calls, faults, copies, reuses = _compare_faults(program, pages=300)
    assert calls > 0 and faults > 200 and copies > 50 and reuses > 50


def test_traced_faults_run_the_python_path():
    """With a profiler installed, every fault takes the kernel-named path."""
    import sys
    m = vmsim.Machine(memory="64M")
    p = m.spawn()
    a = p.mmap(0, 64 << 12, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    seen = []
    sys.setprofile(lambda frame, event, arg: event == "call" and
                   frame.f_code.co_name == "do_anonymous_page" and seen.append(1))
    try:
        p.touch(a, 64 << 12, write=True)
    finally:
        sys.setprofile(None)
    assert len(seen) == 64


@pytest.mark.parametrize("levels", [4, 5])
def test_fault_runs_with_droppable_memory_protection_keys_and_5_level_paging(levels):
    """MAP_DROPPABLE folios (not swap-backed: the file LRU), a VMA whose protection key
    forbids writes (the run must not take its faults: SIGSEGV with SEGV_PKUERR), one
    whose key allows them, in 4- and 5-level paging: the same state as the Python path."""
    def program(enabled):
        _fault_batch._set_enabled(enabled)
        try:
            m = vmsim.Machine(memory="64M", cpus=2, paging_levels=levels, pku=True)
            p = m.spawn()
            d = p.mmap(0, 80 << 12, RW, 0x08 | MAP_ANONYMOUS)           # MAP_DROPPABLE
            p.touch(d, 80 << 12, write=True, value=5)
            key = p.pkey_alloc(0, 0)
            a = p.mmap(0, 40 << 12, RW, MAP_PRIVATE | MAP_ANONYMOUS)
            p.pkey_mprotect(a, 40 << 12, RW, key)
            p.touch(a, 20 << 12, write=True)                             # allowed
            p.pkru = p.pkru | 2 << (2 * key)                             # PKEY_DISABLE_WRITE
            with pytest.raises(SignalDelivered):
                p.touch(a, 40 << 12, write=True)
            c = p.fork()
            c.touch(d, 80 << 12, write=True, value=6)                    # COW of droppable
            m.check()
            return m, [p, c]
        finally:
            _fault_batch._set_enabled(True)
    _assert_same(_state(*program(False)), _state(*program(True)))
