"""p.access(addrs, kinds, sizes): a stream of accesses in one call (vmsim.arch.x86.mmu_batch).

The reference is the same accesses one by one through p.read / p.write / p.fetch, whose
behaviour the rest of the suite checks against the kernel; a batch must leave exactly
the state they leave and stop at the same access with the same signal.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

import vmsim
from vmsim import (PROT_READ, PROT_WRITE, PROT_EXEC, PROT_NONE, MAP_PRIVATE, MAP_SHARED,
                   MAP_ANONYMOUS, ACCESS_READ, ACCESS_WRITE, ACCESS_EXEC)
from vmsim.arch.x86 import cpu

ANON = MAP_PRIVATE | MAP_ANONYMOUS
RW = PROT_READ | PROT_WRITE
VSYSCALL = 0xffffffffff600000


def _layout(m):
    """A process with areas of every kind of right, holes between them, and a fork
    so some private pages are COW-shared."""
    p = m.spawn()
    a = p.mmap(0, 12 << 12, RW, ANON)
    p.touch(a, 3 << 12, write=True)
    ro = p.mmap(0, 3 << 12, PROT_READ, ANON)
    p.read(ro, 1)
    none = p.mmap(0, 2 << 12, PROT_NONE, ANON)
    x = p.mmap(0, 2 << 12, PROT_READ | PROT_EXEC, ANON)
    sh = p.mmap(0, 4 << 12, RW, MAP_SHARED | MAP_ANONYMOUS)
    p.munmap(a + (8 << 12), 4096)                   # a hole inside the RW area
    p.fork()
    return p, [a, ro, none, x, sh, p.mm.start_stack & ~0xFFF]


def _one_by_one(p, addrs, kinds, sizes, value):
    for i, (a, kd, n) in enumerate(zip(addrs, kinds, sizes)):
        a &= (1 << 64) - 1
        try:
            if kd == ACCESS_READ:
                p.read(a, n)
            elif kd == ACCESS_WRITE:
                p.write(a, bytes((value,)) * n)
            else:
                p.fetch(a, n)
        except vmsim.SignalDelivered as e:
            return (i, e.signo, e.si_code, e.si_addr, e.offset)
    return None


def _batch(p, addrs, kinds, sizes, value):
    try:
        p.access(np.array(addrs, dtype=np.int64), np.array(kinds, dtype=np.uint8),
                 np.array(sizes, dtype=np.int64), value=value)
    except vmsim.SignalDelivered as e:
        return (e.index, e.signo, e.si_code, e.si_addr, e.offset)
    return None


def _state(m, p):
    k = m.k
    t = p.task
    return (bytes(k.ptpool.arr[:k.ptpool.used * 512].tobytes()),
            bytes(k.mem.np_private.tobytes()), t.min_flt, t.maj_flt,
            m.read_file(f"/proc/{p.pid}/smaps_rollup"), m.read_file("/proc/vmstat"))


def _s64(a):
    a &= (1 << 64) - 1
    return a - (1 << 64) if a >> 63 else a


@st.composite
def _accesses(draw):
    n = draw(st.integers(1, 24))
    out = []
    for _ in range(n):
        area = draw(st.integers(0, 8))
        kind = draw(st.sampled_from([ACCESS_READ, ACCESS_WRITE, ACCESS_EXEC]))
        size = draw(st.sampled_from([0, 1, 2, 4, 8, 16, 64, 4096, 5000]))
        off = draw(st.integers(-4200, 13 << 12))
        out.append((area, off, kind, size))
    return out, draw(st.sampled_from([0, 1, 0x5a]))


def _resolve(bases, area, off):
    if area < len(bases):
        return bases[area] + off
    if area == len(bases):
        return VSYSCALL + (off & 0xFFF)
    if area == len(bases) + 1:
        return (1 << 47) - 8 + (off & 15)            # straddles into non-canonical
    return 0xffff888000000000 + off                  # the kernel's direct map


def _tlb_presets():
    from vmsim.replay.run import model_support
    return [None, "skylake"] if model_support()["tlb"] else [None]


def _check_batch_behaves_as_one_by_one(spec, tlb=None, compiled=None):
    seq, value = spec
    results = []
    for runner in (_one_by_one, _batch):
        m = vmsim.Machine("64M", **({"tlb": tlb} if tlb else {}))
        p, bases = _layout(m)
        addrs = [_s64(_resolve(bases, ar, off)) for ar, off, _, _ in seq]
        kinds = [kd for _, _, kd, _ in seq]
        sizes = [sz for _, _, _, sz in seq]
        if compiled is None or runner is _one_by_one:
            sig = runner(p, addrs, kinds, sizes, value)
        else:
            # The chunk loop as numba's build, or as Python, whatever the work.
            sig = _run_mode(compiled, lambda: runner(p, addrs, kinds, sizes, value))
        results.append((sig, _state(m, p)))
        m.check()
    assert results[0][0] == results[1][0]
    assert results[0][1] == results[1][1]


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=_accesses())
def test_batch_behaves_as_one_by_one(spec):
    # The TLB form compiles the TLB-backed loop (about 40 s on a cold cache): in
    # test_batch_behaves_as_one_by_one_long (pytest -m slow), with the TLB presets.
    _check_batch_behaves_as_one_by_one(spec, None)


@pytest.mark.slow
@pytest.mark.parametrize("tlb", _tlb_presets())
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=_accesses())
def test_batch_behaves_as_one_by_one_long(spec, tlb):
    _check_batch_behaves_as_one_by_one(spec, tlb)


@pytest.mark.parametrize("compiled", [False, True])
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=_accesses())
def test_batch_behaves_as_one_by_one_compiled_and_interpreted(spec, compiled):
    # Straddling stores (sizes 4096, 5000 at any offset) leave either build for
    # cpu._store; short batches otherwise run as Python until numba pays.
    _check_batch_behaves_as_one_by_one(spec, None, compiled)


@pytest.mark.slow
@pytest.mark.parametrize("tlb", _tlb_presets())
@pytest.mark.parametrize("compiled", [False, True])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=_accesses())
def test_batch_behaves_as_one_by_one_compiled_and_interpreted_long(spec, tlb, compiled):
    _check_batch_behaves_as_one_by_one(spec, tlb, compiled)


def _run_mode(compiled, fn):
    cpu._use_compiled(compiled)
    try:
        return fn()
    finally:
        cpu._default()


def test_compiled_and_python_leave_identical_state():
    rng = np.random.default_rng(7)

    def scenario():
        m = vmsim.Machine("64M")
        p, bases = _layout(m)
        a = bases[0]
        addrs = np.concatenate([a + rng.integers(0, 7 << 12, 3000),
                                a + np.arange(0, 7 << 12, 61)])
        kinds = np.where(np.arange(len(addrs)) % 3 == 0, ACCESS_WRITE, ACCESS_READ).astype(np.uint8)
        sizes = rng.choice([1, 2, 8, 100], len(addrs))
        p.access(addrs, kinds, sizes, value=3)
        p.access(addrs[::-1].copy(), kinds, value=0)
        return _state(m, p), p.read(a, 8 << 12)

    state = rng.bit_generator.state
    py = _run_mode(False, scenario)
    rng.bit_generator.state = state
    nb = _run_mode(True, scenario)
    assert py == nb


def test_store_contents_and_straddle():
    m = vmsim.Machine("64M")
    p = m.spawn()
    a = p.mmap(0, 2 << 12, RW, ANON)
    # A 4-byte store straddling the two pages: two translations, two faults.
    p.access([a + 4094], [ACCESS_WRITE], [4], value=0xAB)
    assert p.getrusage().ru_minflt == 2
    assert p.read(a + 4092, 8) == b"\0\0\xab\xab\xab\xab\0\0"
    # Stores at many offsets of one page: contents as with p.write.
    offs = np.arange(0, 4096, 7)
    p.access(a + offs, np.full(len(offs), ACCESS_WRITE, np.uint8), value=9)
    data = p.read(a, 4096)
    assert all(data[o] == 9 for o in offs)
    assert data[1] == 0


def test_default_size_is_one_and_kinds_validated():
    m = vmsim.Machine("64M")
    p = m.spawn()
    a = p.mmap(0, 2 << 12, PROT_READ, ANON)
    p.munmap(a + 4096, 4096)
    p.access(np.array([a + 4095]), np.array([ACCESS_READ], np.uint8))   # 1 byte: no straddle
    with pytest.raises(vmsim.SignalDelivered) as e:
        p.access([a + 4095], [ACCESS_READ], [2])
    assert e.value.index == 0 and e.value.offset == 1 and e.value.si_addr == a + 4096
    with pytest.raises(ValueError):
        p.access([a], [3])
    with pytest.raises(ValueError):
        p.access([a, a], [0])


def test_signal_mid_array_after_earlier_accesses_took_effect():
    m = vmsim.Machine("64M")
    p = m.spawn()
    a = p.mmap(0, 4 << 12, RW, ANON)
    p.mprotect(a + (2 << 12), 4096, PROT_READ)
    addrs = a + np.array([0, 4096, 2 << 12, 3 << 12])
    with pytest.raises(vmsim.SignalDelivered) as e:
        p.access(addrs, np.full(4, ACCESS_WRITE, np.uint8))
    assert e.value.index == 2 and e.value.signo == 11 and e.value.si_addr == a + (2 << 12)
    # SEGV_ACCERR from the VMA check (access_error) before handle_mm_fault: not counted.
    assert e.value.si_code == 2 and p.getrusage().ru_minflt == 2
    assert p.read(a, 1) == b"\1" and p.read(a + (3 << 12), 1) == b"\0"
    # The process stays usable, as after a caught signal.
    p.access(addrs[3:], np.full(1, ACCESS_WRITE, np.uint8))


def test_exec_of_the_vsyscall_page_is_emulated():
    m = vmsim.Machine("64M")
    p = m.spawn()
    p.access(np.array([VSYSCALL], dtype=np.uint64), [ACCESS_EXEC])   # no signal
    with pytest.raises(vmsim.SignalDelivered):
        p.access(np.array([VSYSCALL], dtype=np.uint64), [ACCESS_READ])


def test_faults_show_in_the_trace():
    m = vmsim.Machine("64M")
    p = m.spawn()
    a = p.mmap(0, 2 << 12, RW, ANON)
    with m.trace() as tr:
        p.access(a + np.array([0, 4096]), np.array([ACCESS_WRITE, ACCESS_READ], np.uint8))
    text = tr.text()
    assert text.count("exc_page_fault(") == 2 and "do_anonymous_page" in text


def _regions_layout(m, rng):
    """Areas in ten 1 GiB regions (more than the chunk loop's PMD-table slots, and pairs
    that share a slot), each over two PTE tables, a THP area, an area on a protection key that denies writes, and
    Accessed / Dirty bits cleared at random at every level of every other area (the others
    keep theirs: the inline reads meet them), so the chunk loop's walk state
    (mmu_batch._walk_cached) meets every way a walk can go."""
    from vmsim.uapi import MADV_HUGEPAGE
    p = m.spawn()
    areas = []
    for r in (1, 2, 9, 10, 17, 3, 11, 4, 12, 5):       # 1 and 9, 2 and 10, ...: one slot
        # Across a 2 MiB boundary: two PTE tables under one PMD table.
        a = p.mmap((r << 30) + (2 << 20) - (4 << 12), 8 << 12, RW, ANON | vmsim.MAP_FIXED)
        p.touch(a, 6 << 12, write=True)
        p.touch(a + (6 << 12), 2 << 12)                    # zero page, read-only
        areas.append(a)
    h = p.mmap(6 << 30, 4 << 20, RW, ANON | vmsim.MAP_FIXED)
    p.madvise(h, 4 << 20, MADV_HUGEPAGE)
    p.touch(h, 4 << 20, write=True, stride=1 << 20)
    areas.append(h)
    x = p.mmap(7 << 30, 8 << 12, PROT_READ | PROT_EXEC, ANON | vmsim.MAP_FIXED)
    p.read(x, 1)
    areas.append(x)
    if m.k.pku:
        key = p.pkey_alloc(0, 2)                            # PKEY_DISABLE_WRITE
        k2 = p.mmap(8 << 30, 8 << 12, RW, ANON | vmsim.MAP_FIXED)
        p.touch(k2, 8 << 12, write=True)
        p.pkey_mprotect(k2, 8 << 12, RW, key)
        areas.append(k2)
    k = m.k
    pool, rows = k.ptpool.arr, k.mem.np_private
    used = set()          # the entries walks of every other area's pages use
    pmds = set()
    for a in areas[1::2]:
        for page in range(0, 8 << 12, 4096):
            shift, row = 39, int(rows[p.mm.pgd])
            while True:
                i = row * 512 + (((a + page) >> shift) & 511)
                e = int(pool[i])
                if not e & 1:
                    break
                used.add(i)
                if shift == 21:
                    pmds.add(i)
                if shift == 12 or e & 0x80:
                    break
                row, shift = int(rows[(e & 0x000FFFFFFFFFF000) >> 12]), shift - 9
    used = sorted(used)
    for bit in (0x20, 0x40):                               # Accessed, Dirty
        pool[rng.choice(used, len(used) // 3, replace=False)] &= ~np.int64(bit)
    pool[sorted(pmds)] &= ~np.int64(0x20)                  # every PMD entry's Accessed
    return p, areas


def test_chunk_walk_state_across_regions_matches_one_by_one():
    _check_regions(True, 150)


@pytest.mark.slow
@pytest.mark.parametrize("pku", [False, True])
def test_chunk_walk_state_across_regions_matches_one_by_one_long(pku):
    _check_regions(pku, 600)


def _check_regions(pku, n):
    results = []
    for runner in (_one_by_one, _batch):
        r = np.random.default_rng(3)
        m = vmsim.Machine("64M", pku=pku)
        p, areas = _regions_layout(m, r)
        k = m.k
        # Runs of 8 accesses in one area, every area in turn in a random order.
        which = np.repeat(np.resize(r.permutation(len(areas)), n // 8 + 1), 8)[:n]
        # Mostly inside the areas (a few signals: past their end, exec of NX, the key).
        offs = np.where(r.random(n) < 0.03, 8 << 12, r.integers(0, 8 << 12, n))
        addrs = [_s64(areas[int(i)] + int(o)) for i, o in zip(which, offs)]
        # Reads and stores in turn (a store after a read of its page meets the leaf as
        # the read left it), fetches in the executable area and now and then elsewhere.
        kinds = np.where(which == 11, ACCESS_EXEC, np.arange(n) % 2).astype(int)
        kinds[r.random(n) < 0.01] = ACCESS_EXEC
        kinds = kinds.tolist()
        sizes = r.choice([1, 1, 2, 8], n).tolist()
        signals = []
        i = 0
        # Past each signal, as a program with a handler goes on; the tables compared at
        # each (a later walk from the root would hide a bit the chunk loop missed).
        while i < n:
            sig = runner(p, addrs[i:], kinds[i:], sizes[i:], 7)
            signals.append((sig, k.ptpool.arr[:k.ptpool.used * 512].tobytes()))
            if sig is None:
                break
            i += sig[0] + 1
        results.append((signals, _state(m, p)))
        m.check()
    assert 3 < len(results[0][0]) < n // 6                       # signals met
    assert results[0] == results[1]


# --- repeats (mmu_batch.access_chunk: the same page and kind again skips the walk) -------
RX = PROT_READ | PROT_EXEC


def _repeat_layout(m):
    """A private RW area (some pages COW-shared after a fork, one on a protection key
    when the CPU has PKU), a shared RW area and an executable one; all faulted in."""
    p = m.spawn()
    a = p.mmap(0, 8 << 12, RW, ANON)
    p.touch(a, 8 << 12, write=True)
    sh = p.mmap(0, 4 << 12, RW, MAP_SHARED | MAP_ANONYMOUS)
    p.touch(sh, 4 << 12, write=True)
    x = p.mmap(0, 2 << 12, RX, ANON)
    p.touch(x, 2 << 12)
    p.fork()
    p.touch(a, 2 << 12, write=True)                 # pages 2.. stay COW-shared
    if m.k.pku:
        key = p.pkey_alloc(0, 0)
        p.pkey_mprotect(a + (6 << 12), 2 << 12, RW, key)
    return p, [a, sh, x]


_PAGES = (8, 4, 2)


@st.composite
def _repeat_program(draw, pku):
    """Batches of runs of accesses to one page (random kinds, offsets and sizes: the
    repeats), with what the kernel or the program may do between them: mprotect,
    munmap, madvise (MADV_COLD clears Accessed, MADV_FREE Accessed and Dirty,
    DONTNEED and PAGEOUT drop pages), a new PKRU, pkey_mprotect."""
    steps = []
    for _ in range(draw(st.integers(1, 5))):
        seq = []
        for _ in range(draw(st.integers(1, 6))):
            area = draw(st.integers(0, 2))
            page = draw(st.integers(0, _PAGES[area]))     # one past the end: a signal
            for _ in range(draw(st.integers(1, 6))):
                seq.append((area, page, draw(st.integers(0, 4095)),
                            draw(st.sampled_from([ACCESS_READ, ACCESS_WRITE, ACCESS_EXEC, ACCESS_READ])),
                            draw(st.sampled_from([1, 1, 2, 8, 0]))))
        steps.append(("access", seq))
        op = draw(st.sampled_from(["none", "mprotect", "munmap", "madvise", "pkru", "pkey"]))
        area = draw(st.integers(0, 2))
        page = draw(st.integers(0, _PAGES[area] - 1))
        if op == "mprotect":
            # PROT_EXEC alone: with PKU, an execute-only key (fetches allowed, reads not).
            steps.append((op, area, page, draw(st.sampled_from([PROT_READ, RW, PROT_NONE, RX,
                                                                 PROT_EXEC]))))
        elif op == "munmap":
            steps.append((op, area, page, 0))
        elif op == "madvise":
            from vmsim.uapi import MADV_COLD, MADV_FREE, MADV_DONTNEED, MADV_PAGEOUT
            steps.append((op, area, page, draw(st.sampled_from([MADV_COLD, MADV_FREE, MADV_DONTNEED,
                                                                 MADV_PAGEOUT]))))
        elif op in ("pkru", "pkey") and pku:
            # PKRU: access- and write-disable bits of keys 0..2 at random.
            steps.append((op, area, page, draw(st.integers(0, 63))))
    return steps, draw(st.sampled_from([0, 1, 0x5a]))


def _run_program(m, p, bases, steps, value, runner):
    """Run the program's steps; the signals and the tables after each batch."""
    k = m.k
    seen = []
    key = None
    for step in steps:
        if step[0] == "access":
            seq = step[1]
            addrs = [_s64(bases[ar] + (pg << 12) + off) for ar, pg, off, _, _ in seq]
            kinds = [kd for _, _, _, kd, _ in seq]
            sizes = [sz for _, _, _, _, sz in seq]
            i = 0
            while i < len(addrs):
                sig = runner(p, addrs[i:], kinds[i:], sizes[i:], value)
                seen.append((sig, k.ptpool.arr[:k.ptpool.used * 512].tobytes()))
                if sig is None:
                    break
                i += sig[0] + 1
            continue
        op, area, page, arg = step
        addr = bases[area] + (page << 12)
        try:
            if op == "mprotect":
                p.mprotect(addr, 4096, arg)
            elif op == "munmap":
                p.munmap(addr, 4096)
            elif op == "madvise":
                p.madvise(addr, 4096, arg)
            elif op == "pkru":
                bits = 0
                for j in range(3):                    # keys 0..2: AD, WD from arg
                    bits |= ((arg >> (2 * j)) & 3) << (2 * j)
                p.pkru = (p.pkru & ~0x3F) | bits
            elif op == "pkey":
                if key is None:
                    key = p.pkey_alloc(0, 0)
                p.pkey_mprotect(addr, 4096, RW, key if arg & 1 else 0)
        except OSError as e:
            seen.append(("errno", e.errno))
    return seen


def _check_repeats(spec, tlb=None, pku=False):
    steps, value = spec
    results = []
    # One by one (the reference), the compiled chunk loop, and the same code as plain
    # Python (VMSIM_NUMBA=0); the TLB form leaves the last to the TLB tests.
    runners = [(_one_by_one, None), (_batch, True)]
    if tlb is None:
        runners.append((_batch, False))
    for runner, compiled in runners:
        def go():
            # The checker once at the end (m.check()): after every call it would cost
            # more than the rest of the test.
            m = vmsim.Machine("64M", pku=pku, debug_vm=False, **({"tlb": tlb} if tlb else {}))
            p, bases = _repeat_layout(m)
            seen = _run_program(m, p, bases, steps, value, runner)
            pd = m.k.page_data
            # The frames' contents: the handles (in _state) and the data rows.
            state = _state(m, p), pd.pool[:pd.rows_used].tobytes()
            tstate = None
            if tlb:
                hw = m.k.tlb
                tstate = (hw.ent.tobytes(), hw.clock.tobytes(), hw.stats.tobytes())
            m.check()
            return seen, state, tstate
        results.append(go() if compiled is None else _run_mode(compiled, go))
    for r in results[1:]:
        assert r[0] == results[0][0]
        assert r[1] == results[0][1]
        assert r[2] == results[0][2]


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_repeats_match_one_by_one_across_kernel_changes(data):
    pku = data.draw(st.booleans())
    _check_repeats(data.draw(_repeat_program(pku)), None, pku)


@pytest.mark.slow
@pytest.mark.parametrize("tlb", _tlb_presets())
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_repeats_match_one_by_one_across_kernel_changes_long(data, tlb):
    pku = data.draw(st.booleans())
    _check_repeats(data.draw(_repeat_program(pku)), tlb, pku)


def test_repeat_shortcuts_meet_what_would_break_them():
    """Programs aimed at each shortcut: a fetch then a read of a page the key (or an
    execute-only mprotect) lets be fetched but not read; a read then a store of a
    COW-shared page and of one whose Accessed and Dirty MADV_FREE cleared; stores of
    zeros and non-zeros into zero, inline and full-row frames."""
    from vmsim.uapi import MADV_COLD, MADV_FREE
    E, R, W = ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE

    def run(area, page, kinds, offs=(0, 8, 16, 24, 32, 40)):
        return ("access", [(area, page, offs[j % len(offs)], kd, 1) for j, kd in enumerate(kinds)])
    programs = [
        [("pkru", 0, 0, 1), run(2, 0, [E, R, E, R])],             # key 0: access disabled
        [("mprotect", 2, 1, PROT_EXEC), run(2, 1, [E, E, R])],      # execute-only
        [run(0, 3, [R, R, W, W, R])],                                # COW-shared page
        [("madvise", 0, 1, MADV_FREE), run(0, 1, [R, W, R, W]), ("madvise", 0, 1, MADV_COLD),
         run(0, 1, [R, R, W])],
        [run(0, 4, [W] * 6), run(1, 2, [W, R, W, W], offs=(5, 5, 6, 4000))],
    ]
    for steps in programs[:-1]:
        _check_repeats((steps, 9), None, True)
    for value in (0, 9):                    # zeros change nothing in a zero frame
        _check_repeats((programs[-1], value), None, True)


def test_the_plain_python_loop_runs_untraced_by_vmsim_tracer_only():
    """vmsim's tracer records kernel functions only, and the CPU's access loop is none:
    it runs without the tracer's profile hook (as its compiled build does), which is
    back for the faults; another profiler still sees the loop."""
    import sys
    import vmsim.trace
    cpu._use_compiled(False)
    try:
        m = vmsim.Machine("64M", debug_vm=False)
        p = m.spawn()
        a = p.mmap(0, 8 << 12, RW, ANON)
        addrs = a + np.arange(0, 8 << 12, 512, dtype=np.int64)
        kinds = np.full(len(addrs), ACCESS_WRITE, np.uint8)
        seen = []

        def other(frame, event, arg):
            if event == "call":
                seen.append(frame.f_code.co_name)
        sys.setprofile(other)
        try:
            p.access(addrs[:16], kinds[:16])                      # 2 pages
        finally:
            sys.setprofile(None)
        assert "access_chunk" in seen and "_walk_cached" in seen
        with vmsim.trace.function_graph(m, record=False) as tr:
            hook = sys.getprofile()
            p.access(addrs, kinds)                                # 6 more pages
            assert sys.getprofile() is hook
        assert sys.getprofile() is None
        faults = [f for f in tr.faults if not f.exec]
        assert len(faults) == 6 and all("do_anonymous_page" in f.paths for f in faults)
    finally:
        cpu._default()
