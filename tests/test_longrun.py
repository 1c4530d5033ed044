"""The long random run (tools/longrun.py), short: 600 random operations (1200 under
-m slow) over a process tree with the checker on, every byte read compared with the
reference model, every predictable errno and signal compared. The long one is
``python tools/longrun.py --ops 100000 --seed 1``."""
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tools"))

import longrun  # noqa: E402


# Every kind of operation runs in 600 (seed 8); the slow run's form does twice as many.
@pytest.mark.parametrize("ops", [600, pytest.param(1200, marks=pytest.mark.slow)])
def test_short_random_run_finds_no_problem(ops):
    lr = longrun.run(ops, seed=8)
    print(lr.stats)
    assert lr.problems == []
    assert lr.ops == ops
    assert lr.bytes > 80 * ops and lr.errno_checks > ops // 2
    # Every kind of operation ran.
    assert all(lr.stats[kind] for kind, _ in longrun.LongRun.OPS)


def test_reference_model_catches_a_wrong_byte():
    """The comparison can fail: a byte changed behind the model's back is reported."""
    lr = longrun.LongRun(seed=1, nprocs=4, known=longrun.KNOWN)
    p = next(iter(lr.procs.values()))
    a = p.mmap(0, 4096, 3, longrun.MAP_PRIVATE | longrun.MAP_ANONYMOUS)
    lr.map_pages(p.pid, a, 1, 3, False)
    p.write(a + 10, b"\x07")                  # not told to the reference
    lr.check_read(p, a, 8)                    # bytes 0-7 agree
    try:
        lr.check_read(p, a, 16)
    except longrun.Problem:
        pass
    assert len(lr.problems) == 1 and "byte 10 is 0x7, expected 0x0" in lr.problems[0]


def test_reference_model_predicts_guard_markers():
    """Guard regions are generated, and the reference's marker is checked: a marker the
    model does not have (one removed behind the reference's back) is reported."""
    lr = longrun.LongRun(seed=1, nprocs=4, known=longrun.KNOWN)
    p = next(iter(lr.procs.values()))
    a = p.mmap(0, 2 * 4096, 3, longrun.MAP_PRIVATE | longrun.MAP_ANONYMOUS)
    lr.map_pages(p.pid, a, 2, 3, False)
    p.madvise(a, 2 * 4096, longrun.V.MADV_GUARD_INSTALL)
    for x in lr.ref[p.pid].values():
        x.guard = True
    lr.check_read(p, a, 8)                    # SIGSEGV SEGV_MAPERR, as predicted
    p.madvise(a + 4096, 4096, longrun.V.MADV_GUARD_REMOVE)    # not told to the reference
    try:
        lr.check_read(p, a + 4096, 8)
    except longrun.Problem:
        pass
    assert len(lr.problems) == 1 and "no signal, expected" in lr.problems[0]
    assert "guard_regions" not in longrun.KNOWN
