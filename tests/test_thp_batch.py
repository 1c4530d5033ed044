"""vmsim's compiled runs of a PMD table's anonymous THP PMDs (mm/_thp_batch.py, behind
copy_pmd_range -> copy_huge_pmd and zap_pmd_range -> zap_huge_pmd) leave exactly the
state the Python per-PMD code leaves: random programs over MADV_HUGEPAGE memory run
on two machines, one with the runs switched off, and every mem_map array, table row,
table-pool slot, deposited table, counter, list and TLB record must agree."""
import pytest
from hypothesis import given, settings, strategies as st

import vmsim
from vmsim import (PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS, MADV_DONTNEED,
                   SignalDelivered)
from vmsim.uapi import MADV_HUGEPAGE, MADV_COLLAPSE, MREMAP_MAYMOVE, MREMAP_FIXED
from vmsim.mm import _pte_batch, _thp_batch
from vmsim.mm.huge_memory import _thp

from test_pte_batch import _state as _pte_state, _assert_same

RW = PROT_READ | PROT_WRITE
H = 2 << 20
NH = 10                                    # the region: 10 PMDs, 2 MiB aligned

OPS = st.one_of(
    st.tuples(st.just("write"), st.integers(0, NH - 1), st.integers(1, NH)),
    st.tuples(st.just("read"), st.integers(0, NH - 1), st.integers(1, NH)),
    st.tuples(st.just("fork"), st.integers(0, NH - 1), st.integers(0, 1)),
    st.tuples(st.just("cow"), st.integers(0, NH - 1), st.integers(1, 3)),
    st.tuples(st.just("dontneed"), st.integers(0, NH - 1), st.integers(1, NH)),
    st.tuples(st.just("munmap"), st.integers(0, NH - 1), st.integers(1, 3)),
    st.tuples(st.just("split"), st.integers(0, NH - 1), st.integers(1, 511)),
    st.tuples(st.just("mlock"), st.integers(0, NH - 1), st.integers(1, 2)),
    st.tuples(st.just("exit"), st.integers(0, 3), st.integers(0, 0)),
    # mremap of whole PMDs to the same PMD table (the deposits stay) or the next one
    # (pmd_move_must_withdraw: withdrawn and deposited there).
    st.tuples(st.just("mremap"), st.integers(0, NH - 1), st.integers(0, 1)),
    st.tuples(st.just("collapse"), st.integers(0, NH - 1), st.integers(1, 1)),
)


def _run(program, enabled):
    _pte_batch._set_enabled(enabled)
    try:
        m = vmsim.Machine(memory="128M", cpus=2)
        m.write_file("/sys/kernel/mm/transparent_hugepage/enabled", "madvise")
        p = m.spawn()
        base = p.mmap(0x7e0000000000, NH * H, RW, MAP_PRIVATE | MAP_ANONYMOUS | 0x10)
        p.madvise(base, NH * H, MADV_HUGEPAGE)
        procs = [p]
        for op, i, n in program:
            a = base + i * H
            length = min(n, NH - i) * H
            who = procs[-1]
            try:
                if op == "write":
                    who.touch(a, length, stride=H, write=True)
                elif op == "read":
                    who.touch(a, length, stride=H)
                elif op == "fork":
                    procs.append(who.fork())
                    if n:
                        procs[-1].touch(a, H, stride=H, write=True)
                elif op == "cow":
                    who.touch(a + (n << 12), 4096, write=True)
                elif op == "dontneed":
                    who.madvise(a, length, MADV_DONTNEED)
                elif op == "munmap":
                    who.munmap(a, length)
                elif op == "split":
                    who.munmap(a + (n << 12), 4096)
                elif op == "mlock":
                    who.mlock(a, length)
                elif op == "mremap":
                    # base is 1 GiB aligned: +512 MiB is in its PMD table, +1 GiB not.
                    to = base + ((1 << 29) if n == 0 else (1 << 30)) + i * H
                    who.mremap(a, H, H, MREMAP_MAYMOVE | MREMAP_FIXED, to)
                elif op == "collapse":
                    who.madvise(a, H, MADV_COLLAPSE)
                elif op == "exit" and len(procs) > 1:
                    c = procs.pop(i % (len(procs) - 1) + 1)
                    c.exit(0)
                    procs[0].wait(c.pid)
            except (OSError, SignalDelivered):
                pass
        m.check()
        return m, procs
    finally:
        _pte_batch._set_enabled(True)


def _state(m, procs):
    out = _pte_state(m, procs)
    k = m.k
    pool = k.ptpool
    # Deposited tables: on their PMD table's list, in np_lru_next / np_lru_prev
    # (compared with every mem_map array).
    out["ptpool"] = (list(pool.slot_pfn), list(pool.free_slots), pool.used,
                     list(pool.pt_share_count))
    out["split_queue"] = list(_thp(k).split_queue)
    return out


def _compare(program):
    calls = {"copy": 0, "zap": 0}
    py = _state(*_run(program, False))
    get = _thp_batch._get

    def counting(name):
        fn = get(name)

        def run(*args):
            r = fn(*args)
            calls[name] += r[2] > 0
            return r
        return run
    _thp_batch._get = counting
    try:
        batched = _state(*_run(program, True))
    finally:
        _thp_batch._get = get
    _assert_same(py, batched)
    return calls


@settings(max_examples=4, deadline=None)
@given(st.lists(OPS, min_size=1, max_size=10))
def test_thp_runs_leave_the_python_state(program):
    """Random programs of THP writes, huge-zero reads, forks, COW splits, DONTNEED,
    munmap (whole and splitting), mlock and exits: identical state with and without
    the runs."""
    _compare(program)


@pytest.mark.slow
@settings(max_examples=80, deadline=None)
@given(st.lists(OPS, min_size=1, max_size=20))
def test_thp_runs_leave_the_python_state_long(program):
    _compare(program)


def test_thp_fork_takes_every_free_table_row():
    """A fork whose PTE tables take every free row of the table pool (the exit before
    it freed them): hypothesis found _take_rows giving none of them then."""
    _compare([("write", 0, 1), ("fork", 0, 0), ("exit", 0, 0), ("fork", 0, 0)])


def test_thp_runs_are_taken_and_hand_back():
    """A fixed program: fork and exit of THP memory take both runs; a huge zero PMD,
    a split PMD (a PTE table) and a partly mapped folio in the same tables go back to
    the Python code; the state agrees."""
    program = [("write", 0, 4), ("read", 4, 1), ("write", 5, 5), ("split", 6, 7),
               ("fork", 0, 0), ("cow", 1, 2), ("exit", 0, 0), ("fork", 0, 1),
               ("munmap", 0, 3), ("exit", 0, 0), ("munmap", 0, NH)]
    calls = _compare(program)
    assert calls["copy"] > 0 and calls["zap"] > 0


def test_traced_fork_takes_the_python_path():
    """With a profiler installed (the tracer), fork of THP memory goes through
    copy_huge_pmd, not the run."""
    import sys
    m = vmsim.Machine(memory="64M")
    p = m.spawn()
    a = p.mmap(0x7e0000000000, 2 * H, RW, MAP_PRIVATE | MAP_ANONYMOUS | 0x10)
    p.madvise(a, 2 * H, MADV_HUGEPAGE)
    p.touch(a, 2 * H, stride=H, write=True)
    seen = []
    sys.setprofile(lambda frame, event, arg: seen.append(frame.f_code.co_name)
                   if event == "call" else None)
    try:
        c = p.fork()
    finally:
        sys.setprofile(None)
    assert "copy_huge_pmd" in seen and "_copy_huge_pmds" not in seen
    c.exit(0)
    p.wait(c.pid)
