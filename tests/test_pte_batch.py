"""vmsim's compiled runs (mm/_pte_batch.py, behind zap_pte_range, copy_pte_range,
change_pte_range, folios_put and free_unref_folios) leave exactly the state the kernel-named Python per-PTE code leaves:
the same random programs run on two machines, one with the runs switched off, and
every mem_map array, page-table row, counter, LRU and per-CPU/buddy free list,
vmstat and TLB record must agree."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import vmsim
from vmsim import (PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED, MAP_ANONYMOUS,
                   MADV_DONTNEED, SignalDelivered)
from vmsim.mm import _pte_batch, _buddy

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


def _run(program, enabled, pages=PAGES):
    """Run ``program`` on a fresh machine with the compiled runs on or off."""
    _pte_batch._set_enabled(enabled)
    try:
        m = vmsim.Machine(memory="64M", cpus=2)
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
        _pte_batch._set_enabled(True)


def _state(m, procs):
    """Everything the runs may touch, in comparable form."""
    k = m.k
    mem = k.mem
    pa = k.page_alloc
    out = {name: getattr(mem, name).copy() for name in
           ("np_flags", "np_refcount", "np_mapcount", "np_mapping", "np_index", "np_private",
            "np_lru_next", "np_lru_prev")}
    out["pool"] = k.ptpool.arr.copy()
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
    out["mms"] = [(p.pid, list(p.mm.rss_stat), p.mm.hiwater_rss, p.mm.pgtables_bytes,
                   p.getrusage().ru_minflt) for p in procs]
    ids = {id(p.mm): p.pid for p in procs}
    out["tlb"] = ([(ids.get(id(e[0])), *e[1:]) for e in k.tlb_flushes],
                  [(ids.get(id(e[0])), *e[1:]) for e in k.tlb_pending])
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
