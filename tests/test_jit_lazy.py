"""numba only when the work pays for it: a first fault runs the plain-Python walk, a
later batch switches to the compiled one mid-run, and the state is the same either way."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import vmsim
from vmsim import PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS, ACCESS_READ, ACCESS_WRITE
from vmsim import _jitcache
from vmsim.arch.x86 import cpu

RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _program(modes, tlb=None):
    """Touches, single accesses, p.access arrays, a fork and COW writes; ``modes``
    gets whether the compiled walk (or TLB loops) was in use after each step."""
    m = vmsim.Machine("256M", tlb=tlb, cpus=1)
    p = m.spawn()
    flag = "tlb_compiled" if tlb else "compiled"
    modes.append(cpu._impl[flag])
    a = p.mmap(0, 64 << 12, RW, ANON)
    p.touch(a, 64 << 12, write=True, stride=4096 * 3, value=7)      # 22 accesses
    modes.append(cpu._impl[flag])
    p.touch(a, 64 << 12, stride=4096 * 5)                            # 13
    p.write(a + 9, b"xy")
    modes.append(cpu._impl[flag])
    c = p.fork()
    p.touch(a, 64 << 12, write=True, stride=4096, value=9)           # 64: COW faults
    modes.append(cpu._impl[flag])
    rng = np.random.default_rng(3)
    addrs = a + rng.integers(0, 96 << 12, 300, dtype=np.int64)      # some beyond the VMA
    kinds = rng.choice([ACCESS_READ, ACCESS_WRITE], 300).astype(np.uint8)
    try:
        c.access(addrs, kinds)
    except vmsim.SignalDelivered as e:
        signal = (e.signo, e.index)
    else:
        signal = None
    modes.append(cpu._impl[flag])
    k = m.k
    hw = (k.tlb.ent.tobytes(), k.tlb.stats.tobytes(), k.tlb.clock.tobytes()) if tlb else None
    return (hw, p.read(a, 64 << 12), c.read(a, 64 << 12), p.getrusage().ru_minflt,
            c.getrusage().ru_minflt, signal,
            bytes(k.ptpool.arr[:k.ptpool.used * 512].tobytes()), k.mem.np_private.tobytes(),
            m.read_file("/proc/vmstat"))


def _run(mode, monkeypatch, tlb=None):
    """Run the program with the walk in Python, compiled, or lazy switching after 60
    accesses; return its results and the mode after each step."""
    saved = dict(_jitcache._work)
    modes = []
    try:
        if mode == "lazy":
            cpu._default()
            if not cpu._lazy[0]:
                pytest.skip("no numba, or VMSIM_NUMBA=0: nothing to switch to")
            _jitcache._work.update(walk=0, tlb=0)
            # a TLB-model access counts as _TLB_WEIGHT plain walks
            monkeypatch.setenv("VMSIM_JIT_AFTER", str(60 * (cpu._TLB_WEIGHT if tlb else 1)))
        else:
            cpu._use_compiled(mode == "compiled")
        return _program(modes, tlb), modes
    finally:
        monkeypatch.delenv("VMSIM_JIT_AFTER", raising=False)
        _jitcache._work.update(saved)
        cpu._default()


def test_switch_to_the_compiled_walk_mid_run_leaves_the_same_state(monkeypatch):
    pytest.importorskip("numba")
    lazy, modes = _run("lazy", monkeypatch)
    # spawn (execve's argv writes) and 22 accesses in Python; the switch on the next
    # steps (count 22 + 13 + 2 + 64 > 60), then compiled to the end, p.access included
    assert modes[:2] == [False, False] and modes[-1] is True, modes
    python, _ = _run("python", monkeypatch)
    compiled, _ = _run("compiled", monkeypatch)
    names = ("TLB", "parent data", "child data", "parent minflt", "child minflt", "signal",
             "tables", "mem_map private", "vmstat")
    for name, x, y, z in zip(names, python, compiled, lazy):
        assert x == y == z, name
    assert python[5] is not None           # the program did reach a SIGSEGV


def test_a_tlb_model_stays_python_until_its_own_work_pays(monkeypatch):
    """The TLB model's loops have their own count: a machine with a TLB model counts
    there (and never loads the plain walk), the plain walk's count leaves them
    Python. (Nothing is compiled here: the switch is asked for, not run.)"""
    saved = dict(_jitcache._work)
    try:
        cpu._default()
        if not cpu._lazy[0]:
            pytest.skip("no numba, or VMSIM_NUMBA=0: nothing to switch to")
        _jitcache._work.update(walk=0, tlb=0)
        monkeypatch.setenv("VMSIM_JIT_AFTER", "2000")
        m = vmsim.Machine("256M", tlb="skylake", cpus=1)
        p = m.spawn()
        a = p.mmap(0, 64 << 12, RW, ANON)
        p.touch(a, 64 << 12, write=True)
        p.touch(a, 64 << 12, stride=512)                  # 512 reads, 1536 units
        assert _jitcache._work["walk"] == 0
        assert _jitcache._work["tlb"] >= 3 * (512 + 64)
        assert cpu._lazy == [True, True] and not cpu._impl["tlb_compiled"]
        assert cpu._jit_for(m.k, 100)                     # 300 more: the TLB's turn
        assert cpu._lazy == [True, False]
        assert cpu._impl["tlb_compiled"] and not cpu._impl["compiled"]
        cpu._default()
        _jitcache._work.update(walk=0, tlb=0)
        m2 = vmsim.Machine("256M")                        # the plain walk counts alone
        p2 = m2.spawn()
        b = p2.mmap(0, 64 << 12, RW, ANON)
        p2.touch(b, 64 << 12, stride=512)
        assert _jitcache._work["tlb"] == 0 < _jitcache._work["walk"] < 2000
        assert cpu._jit_for(m2.k, 2000)
        assert cpu._impl["compiled"] and not cpu._impl["tlb_compiled"]
        assert cpu._lazy == [False, True]
    finally:
        monkeypatch.delenv("VMSIM_JIT_AFTER", raising=False)
        _jitcache._work.update(saved)
        cpu._default()


@pytest.mark.slow
def test_switch_of_the_tlb_loops_mid_run_leaves_the_same_state(monkeypatch):
    """As test_switch_to_the_compiled_walk_..., on a machine with a TLB model (its
    loops compile for tens of seconds on a cold cache, hence -m slow)."""
    pytest.importorskip("numba")
    lazy, modes = _run("lazy", monkeypatch, "skylake")
    assert modes[:2] == [False, False] and modes[-1] is True, modes
    python, _ = _run("python", monkeypatch, "skylake")
    compiled, _ = _run("compiled", monkeypatch, "skylake")
    for i, (x, y, z) in enumerate(zip(python, compiled, lazy)):
        assert x == y == z, i


def test_first_fault_runs_without_numba():
    """In a fresh interpreter, import, spawn (execve writes argv) and a first fault run
    the plain-Python walk and leave numba unimported (the start-up figure of
    bench/bench_startup.py); test_switch_to_the_compiled_walk_... covers the switch."""
    code = """
import json, sys, vmsim
m = vmsim.Machine("256M")
p = m.spawn()
a = p.mmap(0, 1 << 20, vmsim.PROT_READ | vmsim.PROT_WRITE,
           vmsim.MAP_PRIVATE | vmsim.MAP_ANONYMOUS)
p.touch(a, 1 << 20, write=True)
print(json.dumps(["numba" in sys.modules, p.getrusage().ru_minflt]))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("VMSIM_NUMBA", "VMSIM_JIT_AFTER")}
    env["PYTHONPATH"] = ROOT
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True, cwd=ROOT).stdout
    numba_imported, minflt = json.loads(out.splitlines()[-1])
    assert numba_imported is False
    assert minflt == 256


def test_pte_runs_switch_to_compiled_mid_run_and_leave_the_same_state(monkeypatch):
    """The compiled PTE runs (mm/_pte_batch.py) and free-list runs (mm/_buddy.py)
    start as plain Python too and switch once the work pays; the program's state
    matches all-Python and all-compiled."""
    pytest.importorskip("numba")
    from vmsim.mm import _pte_batch, _buddy
    from test_pte_batch import _run as run_program, _state, _assert_same
    # 96-page frees go through the free-list runs (mm/_buddy.py) before the switch
    # (at 400 units of work) and after it
    program = [("write", 0, 96), ("dontneed", 0, 96), ("write", 0, 96), ("fork", 0, 40),
               ("dontneed", 10, 30), ("protect", 0, 40), ("fork", 20, 40), ("munmap", 50, 8),
               ("exit", 1, 0), ("dontneed", 0, 96), ("write", 0, 96), ("dontneed", 0, 96),
               ("exit", 0, 0)]
    seen = []
    get = _pte_batch._get

    def recording_get(name):
        seen.append(_pte_batch._impl["compiled"])
        return get(name)
    saved = dict(_jitcache._work)
    states = {}
    try:
        for mode in ("python", "compiled", "lazy"):
            _pte_batch._impl.clear()
            _buddy._impl.clear()
            cpu._use_compiled(mode == "compiled")
            if mode == "python":
                _pte_batch._impl["compiled"] = False
                _buddy._impl["compiled"] = False
            elif mode == "compiled":
                _pte_batch._load(every=True)
                _buddy._impl["compiled"] = True
            else:
                cpu._default()
                _jitcache._work.update(walk=0, tlb=0)
                monkeypatch.setenv("VMSIM_JIT_AFTER", "400")
                monkeypatch.setattr(_pte_batch, "_get", recording_get)
            states[mode] = _state(*run_program(program, True))
    finally:
        monkeypatch.undo()
        _jitcache._work.update(saved)
        _pte_batch._impl.clear()
        _buddy._impl.clear()
        cpu._default()
    assert seen[0] is False and seen[-1] is True, seen      # switched mid-run
    _assert_same(states["python"], states["compiled"])
    _assert_same(states["python"], states["lazy"])


def test_free_list_runs_switch_before_a_run_is_fetched(monkeypatch):
    """A run fetched after the switch is the compiled one, never a plain-Python run
    cached before it (that one given numpy arrays overflowed a uint8 row)."""
    pytest.importorskip("numba")
    from vmsim.mm import _buddy
    saved = dict(_jitcache._work)
    try:
        _buddy._impl.clear()
        _jitcache._work.update(walk=0)
        monkeypatch.setenv("VMSIM_JIT_AFTER", "1000")
        assert _buddy._compiled() is False and _buddy._impl["lazy"]
        py = _buddy._get("_free_unref_order0")
        assert py is _buddy._free_unref_order0
        _jitcache._worth_compiling(1000)          # the walk's work reached the mark
        fn = _buddy._get("_free_unref_order0")    # (a dispatcher: nothing compiled yet)
        assert _buddy._compiled() is True and fn is not py
    finally:
        monkeypatch.delenv("VMSIM_JIT_AFTER", raising=False)
        _jitcache._work.update(saved)
        _buddy._impl.clear()
