"""Benchmark: mmap with a placement search among 100 and 10,000 VMAs, vmsim against the
real kernel.

Run: python bench/bench_mmap.py [--counts 100,10000] [--calls 300] [--no-native]
                                [--profile N]

For each VMA count N, 2N pages are mapped and every other page unmapped, leaving N
one-page VMAs separated by one-page holes (none merges, no hole fits two pages); then
mmap(NULL, 2 pages) is timed (top-down placement: arch_get_unmapped_area_topdown ->
unmapped_area_topdown must find the first gap of two pages below the N VMAs) and its
result unmapped untimed. The real kernel runs bench/native_mmap.c (compiled now; the
median of batches of 100 calls); vmsim runs the same through Process.mmap
(Machine(memory="1G", debug_vm=False)), median per call. Times are CPU times of the
thread. The issue's target: the time at 10,000 VMAs is at most 1.5x the time at 100,
and under 40 us. ``--profile N`` prints a cProfile of the vmsim calls at N VMAs.
Timing lives here, never in the tests.
"""
import argparse
import os
import pathlib
import statistics
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_fault import run_native   # noqa: E402


def native(counts):
    out = run_native("native_mmap.c", *counts)
    if out is None:
        return None
    return {int(n): float(ns) for n, ns in (line.split() for line in out)}


def vmsim_mmap(n: int, calls: int, profile: bool = False) -> float:
    """Median ns per Process.mmap(NULL, 2 pages) with n one-page VMAs below mmap_base."""
    import vmsim
    m = vmsim.Machine(memory="1G", debug_vm=False)
    p = m.spawn()
    rw, priv = vmsim.PROT_READ | vmsim.PROT_WRITE, vmsim.MAP_PRIVATE | vmsim.MAP_ANONYMOUS
    a = p.mmap(0, n * 2 * 4096, rw, priv)
    for j in range(n):
        p.munmap(a + (2 * j + 1) * 4096, 4096)
    assert p.mm.map_count >= n
    per = []
    pr = None
    if profile:
        import cProfile
        pr = cProfile.Profile()
    for _ in range(calls):
        if pr:
            pr.enable()
        t = time.thread_time()
        q = p.mmap(0, 2 * 4096, rw, priv)
        per.append(time.thread_time() - t)
        if pr:
            pr.disable()
        assert q < a, "the 2-page mapping did not go below the VMAs"
        p.munmap(q, 2 * 4096)
    if pr:
        import pstats
        print(f"--- cProfile of vmsim mmap at {n} VMAs ---")
        pstats.Stats(pr).sort_stats("tottime").print_stats(20)
    return statistics.median(per) * 1e9


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--counts", default="100,10000")
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--no-native", action="store_true")
    ap.add_argument("--profile", type=int, default=None, metavar="N")
    args = ap.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]
    print("# mmap(NULL, 8 KiB) with a top-down placement search below N one-page VMAs")
    nat = None if args.no_native else native(counts)
    if nat:
        print(f"real kernel ({os.uname().release}): "
              + ", ".join(f"{nat[n] / 1e3:.2f} us at {n} VMAs" for n in counts))
    v = {}
    for n in counts:
        v[n] = vmsim_mmap(n, args.calls, args.profile == n)
        line = f"vmsim, {n} VMAs: {v[n] / 1e3:.1f} us per mmap"
        if nat:
            line += f"   {v[n] / nat[n]:6.1f}x the kernel"
        print(line)
    if len(counts) > 1:
        lo, hi = min(counts), max(counts)
        print(f"vmsim at {hi} VMAs / at {lo} VMAs: {v[hi] / v[lo]:.2f}x (target <= 1.5x, "
              f"and < 40 us: {v[hi] / 1e3:.1f} us)")


if __name__ == "__main__":
    main()
