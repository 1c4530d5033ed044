"""Benchmark: accesses per second through the TLB path (hits dominate), vmsim against
this machine's CPU.

Run: python bench/bench_tlb.py [--accesses 10000000] [--tlb golden-cove] [--no-native]

vmsim: Process.touch loads at a 64-byte stride over 64 prefaulted pages (all TLB
hits after the first pass) on a Machine(tlb=...), with the stale-TLB checker off and
on (every hit then re-walks the tables to compare), and the same on the default
machine (no TLB model: every access walks). The real CPU: the same loop in C
(bench/native_tlb.c, compiled now). Timing lives here, never in the tests.
"""
import argparse
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import vmsim  # noqa: E402
from vmsim import PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS  # noqa: E402

PAGES = 64
STRIDE = 64


def native(n):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        exe = pathlib.Path(d) / "native_tlb"
        subprocess.run([cc, "-O2", "-o", str(exe), str(HERE / "native_tlb.c")], check=True)
        runs = [float(subprocess.run([str(exe), str(n), str(PAGES * 4096), str(STRIDE)],
                                     check=True, capture_output=True, text=True).stdout.split()[0])
                for _ in range(3)]
    return sorted(runs)[1]


def vmsim_rate(n, tlb, check):
    m = vmsim.Machine(memory="256M", cpus=1, tlb=tlb, debug_vm=False)
    m.k.tlb_check = check
    p = m.spawn()
    a = p.mmap(0, PAGES * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    p.touch(a, PAGES * 4096, write=True)
    p.touch(a, PAGES * 4096, stride=STRIDE)            # compile + warm
    per = PAGES * 4096 // STRIDE
    calls = max(1, n // per)
    t = time.perf_counter()
    for _ in range(calls):
        p.touch(a, PAGES * 4096, stride=STRIDE)
    dt = time.perf_counter() - t
    st = m.tlb_stats()[0] if tlb else None
    return calls * per / dt, st


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accesses", type=int, default=10_000_000)
    ap.add_argument("--tlb", default="golden-cove")
    ap.add_argument("--no-native", action="store_true")
    args = ap.parse_args()
    n = args.accesses
    ns = None if args.no_native else native(n)
    if ns:
        print(f"real CPU (native_tlb.c): {ns:.3f} ns per load = {1e3 / ns:.0f} M accesses/s")
    for label, tlb, check in ((f"vmsim tlb={args.tlb}, checker off", args.tlb, False),
                              (f"vmsim tlb={args.tlb}, checker on", args.tlb, True),
                              ("vmsim no TLB model (walk every access)", None, False)):
        rate, st = vmsim_rate(n, tlb, check)
        extra = ""
        if st:
            hits = sum(st["hits"].values())
            extra = f"; hits {hits}, misses {st['misses']}"
        ratio = f", {1e9 / ns / rate:.0f}x slower than the CPU" if ns else ""
        print(f"{label}: {rate / 1e6:.1f} M accesses/s{ratio}{extra}")


if __name__ == "__main__":
    main()
