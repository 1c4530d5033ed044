"""Benchmark: accesses per second through the TLB path (hits dominate), vmsim against
this machine's CPU.

Run: python bench/bench_tlb.py [--accesses 10000000] [--tlb golden-cove] [--no-native]
                               [--munmaps 5000]

vmsim: Process.touch loads at a 64-byte stride over 64 prefaulted pages (all TLB
hits after the first pass) on a Machine(tlb=...), with the stale-TLB checker off and
on (every hit then re-walks the tables to compare), and the same on the default
machine (no TLB model: every access walks). The real CPU: the same loop in C
(bench/native_tlb.c, compiled now). Timing lives here, never in the tests.

Then TLB shootdowns: a two-thread munmap loop (thread A on CPU 0 maps, writes and
unmaps one page; thread B on CPU 1 keeps reading the mm, or sleeps) on Linux
(bench/native_shootdown.c under SCHED_FIFO so B really stays on CPU 1, counting the
/proc/interrupts "TLB shootdowns" line) and on vmsim (ipi_received of CPU 1).
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
    t = time.process_time()          # CPU time: a busy host does not inflate it
    for _ in range(calls):
        p.touch(a, PAGES * 4096, stride=STRIDE)
    dt = time.process_time() - t
    st = m.tlb_stats()[0] if tlb else None
    return calls * per / dt, st


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accesses", type=int, default=10_000_000)
    ap.add_argument("--tlb", default="golden-cove")
    ap.add_argument("--no-native", action="store_true")
    ap.add_argument("--munmaps", type=int, default=5000, help="0: skip the shootdown part")
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
    if args.munmaps:
        shootdowns(args.munmaps, args.tlb, not args.no_native)


def shootdowns(n, tlb, native_too):
    """IPIs CPU 1 receives for n munmaps of thread A while thread B is busy / idle."""
    linux = {}
    cc = shutil.which("cc") or shutil.which("gcc")
    if native_too and cc:
        with tempfile.TemporaryDirectory() as d:
            exe = pathlib.Path(d) / "native_shootdown"
            subprocess.run([cc, "-O2", "-pthread", "-o", str(exe), str(HERE / "native_shootdown.c")],
                           check=True)
            for mode in ("busy", "idle"):
                cmd = [str(exe), str(n), mode]
                if shutil.which("chrt"):
                    cmd = ["chrt", "-f", "50"] + cmd
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
                linux[mode] = int(r.stdout.split()[1]) if r.returncode == 0 else None
    for mode in ("busy", "idle"):
        m = vmsim.Machine(memory="256M", cpus=2, tlb=tlb, debug_vm=False)
        p = m.spawn(cpu=0)
        t = p.clone_thread(cpu=1)
        r = p.mmap(0, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        p.touch(r, 16 * 4096, write=True)
        t.touch(r, 16 * 4096)
        if mode == "idle":
            m.schedule(None, cpu=1)
        before = m.tlb_stats()[1]["ipi_received"]
        for _ in range(n):
            a = p.mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
            p.write(a, b"x")
            p.munmap(a, 4096)
        got = m.tlb_stats()[1]["ipi_received"] - before
        real = linux.get(mode)
        print(f"shootdowns to CPU 1, thread B {mode}, {n} munmaps: vmsim {got}, Linux "
              f"{real if real is not None else 'not measured'}")


if __name__ == "__main__":
    main()
