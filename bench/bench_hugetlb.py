"""Benchmark: a 2 MiB hugetlb fault (allocation from the pool and clearing), vmsim
against the real kernel.

Run: python bench/bench_hugetlb.py [--pages 128] [--no-native]

In one run it measures
* the real kernel: first-touch writes of NPAGES private MAP_HUGETLB pages
  (bench/native_hugetlb.c, compiled now; it sizes /proc/sys/vm/nr_hugepages, which
  needs root, and restores it; the median of the rounds after a host-warming one);
* vmsim: the same touches through Process.touch (checker off), each a full
  hugetlb_fault -> hugetlb_no_page -> alloc_hugetlb_folio -> folio_zero_user ->
  hugetlb_wp path (a traced sample checks it), after the pages were written once
  and given back, so that clearing has data to drop as on the kernel;
and prints the ratio. Timing lives here, never in the tests.
"""
import argparse
import os
import pathlib
import statistics
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from bench_fault import run_native  # noqa: E402

PATH = ["exc_page_fault", "handle_mm_fault", "hugetlb_fault", "huge_pte_alloc",
        "hugetlb_no_page", "alloc_hugetlb_folio", "folio_zero_user", "hugetlb_wp"]


def native(npages: int, rounds: int = 5):
    out = run_native("native_hugetlb.c", npages, rounds)
    if out is None or out[0].startswith(("nopool", "mmap")):
        return None
    per = [float(line.split()[1]) for line in out]
    return statistics.median(per[1:]), per


def vmsim_faults(npages: int, rounds: int = 3):
    import vmsim
    m = vmsim.Machine(memory=f"{max(2, (npages >> 9) + 2)}G", debug_vm=False)
    p = m.spawn()
    m.write_file("/proc/sys/vm/nr_hugepages", str(npages))
    size = npages << 21
    flags = vmsim.MAP_PRIVATE | vmsim.MAP_ANONYMOUS | vmsim.MAP_HUGETLB
    per = []
    for r in range(rounds):
        a = p.mmap(0, size, vmsim.PROT_READ | vmsim.PROT_WRITE, flags)
        f0 = p.getrusage().ru_minflt
        t = time.perf_counter()
        p.touch(a, size, write=True, stride=1 << 21)
        dt = time.perf_counter() - t
        n = p.getrusage().ru_minflt - f0
        assert n == npages, (n, npages)
        per.append(dt * 1e9 / n)
        # Leave data in every subpage, as a program would, before giving them back.
        p.touch(a, size, write=True, stride=1 << 16, value=3)
        p.munmap(a, size)
    return statistics.median(per[1:]) if rounds > 1 else per[0], per, m, p


def traced_sample(m, p, n=4):
    import vmsim
    a = p.mmap(0, n << 21, vmsim.PROT_READ | vmsim.PROT_WRITE,
               vmsim.MAP_PRIVATE | vmsim.MAP_ANONYMOUS | vmsim.MAP_HUGETLB)
    calls = {name: 0 for name in PATH}

    def prof(frame, event, arg):
        if event == "call" and frame.f_code.co_name in calls:
            calls[frame.f_code.co_name] += 1
    sys.setprofile(prof)
    try:
        p.touch(a, n << 21, write=True, stride=1 << 21)
    finally:
        sys.setprofile(None)
    p.munmap(a, n << 21)
    return calls


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pages", type=int, default=128)
    ap.add_argument("--no-native", action="store_true")
    args = ap.parse_args(argv)
    print(f"# 2 MiB hugetlb write faults, {args.pages} pages ({args.pages * 2} MiB)")
    nat = None if args.no_native else native(args.pages)
    if nat:
        print(f"real kernel ({os.uname().release}): {nat[0]:.0f} ns/fault "
              f"(rounds: {', '.join(f'{x:.0f}' for x in nat[1])}; first warms the host)")
    elif not args.no_native:
        print("real kernel: not measured (no compiler, or the pool could not be sized: root?)")
    ns, per, m, p = vmsim_faults(args.pages)
    ratio = f", {ns / nat[0]:.2f}x the kernel" if nat else ""
    print(f"vmsim: {ns:.0f} ns/fault (rounds: {', '.join(f'{x:.0f}' for x in per)}){ratio}")
    calls = traced_sample(m, p)
    print("traced sample of 4 faults, calls per function:", calls)
    bad = {k: v for k, v in calls.items() if v != 4}
    assert not bad, f"faults skipped part of the kernel path: {bad}"


if __name__ == "__main__":
    main()
