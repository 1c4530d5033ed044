"""Benchmark: THP faults and fork of THP memory, vmsim against the real kernel.

Run: python bench/bench_thp.py [--size 1G] [--rounds 4]

In one run it measures
* the real kernel (bench/native_thp.c, compiled now): write faults over SIZE of
  MADV_HUGEPAGE memory, one per 2 MiB (each must be a THP: thp_fault_alloc counts
  them), and fork() + exit + waitpid of a process holding that memory; the median of
  the rounds after a host-warming one;
* vmsim (checker off): the same faults through Process.touch with a 2 MiB stride
  (each one do_huge_pmd_anonymous_page: a 2 MiB folio cleared as one operation) and
  the same fork / exit / wait, with the ratio to the kernel (target: within 3x);
  twice: as a fresh process runs them (this little work never pays for loading
  numba, so mm/_thp_batch.py's runs are plain Python), then with the runs compiled
  (as once a process's work has paid for numba), the row the target is for.

The fork row is timed two ways on both sides, from fork() to the parent's waitpid()
return: wall time, and CPU time. The kernel's CPU time is the parent's own over that
span (CLOCK_PROCESS_CPUTIME_ID: fork copying the page tables, waitpid) plus all of
the child's (getrusage(RUSAGE_CHILDREN): its return from fork, exit_mmap's zap, the
rest of do_exit); vmsim's is the process CPU time (time.process_time) over p.fork(),
c.exit(0), p.wait(). On a loaded machine the wall figures are mostly waiting for a
CPU, so the CPU ratio is the one compared with the target. The previous round's
Machine is garbage by then: it is collected before the timed span (timeit does the
same), so a collection of it is not charged to the fork.
Timing lives here, never in the tests.
"""
import argparse
import gc
import importlib.util
import os
import pathlib
import statistics
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_fault import run_native, no_host_thp  # noqa: E402

H = 2 << 20


def parse_size(s: str) -> int:
    s = s.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:], 1)
    return int(s[:-1] if s[-1:] in "KMG" else s) * mult


def native(size, rounds):
    out = run_native("native_thp.c", size, rounds)
    if out is None:
        return None
    rows = [tuple(float(x) for x in line.split()) for line in out]
    rows = rows[1:] or rows                     # the first round warms the host
    bad = [r for r in rows if r[2] < r[0]]
    return (statistics.median(r[1] for r in rows), statistics.median(r[3] for r in rows),
            int(rows[0][0]), len(bad), statistics.median(r[4] for r in rows))


def simulated(size, rounds, warm=0):
    """vmsim's rows: the median of ``rounds`` rounds after ``warm`` untimed ones."""
    import vmsim
    from vmsim.uapi import MADV_HUGEPAGE
    faults, forks, cpus = [], [], []
    for r in range(warm + rounds):
        m = vmsim.Machine(memory=f"{(size >> 20) * 2 + 512}M", debug_vm=False)
        p = m.spawn()
        a = p.mmap(0, size, 3, 0x22)
        p.madvise(a, size, MADV_HUGEPAGE)
        f0 = p.getrusage().ru_minflt
        t = time.perf_counter()
        p.touch(a, size, stride=H, write=True)
        dt = time.perf_counter() - t
        n = p.getrusage().ru_minflt - f0
        thp = int([x for x in m.read_file("/proc/vmstat").splitlines()
                   if x.startswith("thp_fault_alloc ")][0].split()[1])
        assert n == size // H and thp == n, (n, thp)
        gc.collect()
        t, u = time.perf_counter(), time.process_time()
        c = p.fork()
        c.exit(0)
        p.wait(c.pid)
        if r >= warm:
            cpus.append((time.process_time() - u) * 1e9)
            forks.append((time.perf_counter() - t) * 1e9)
            faults.append(dt / n * 1e9)
    from vmsim.mm import _buddy
    return (statistics.median(faults), statistics.median(forks), statistics.median(cpus),
            _buddy._compiled())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="1G")
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    size = parse_size(args.size)
    no_host_thp()
    nat = native(size, args.rounds + 1)
    if nat is None:
        print("no C compiler: kernel side skipped")
    else:
        print(f"kernel: {nat[0] / 1000:8.1f} us per THP fault ({nat[2]} faults per round"
              f"{', some not THPs' if nat[3] else ''}), fork+exit+wait "
              f"{nat[4] / 1e6:7.2f} ms CPU, {nat[1] / 1e6:7.2f} ms wall")
    # A fresh process first: this much work never pays for loading numba
    # (vmsim/_jitcache.py), so the fork and exit runs are plain Python. Then the
    # compiled runs, as in a process whose work has paid for numba (VMSIM_JIT_AFTER=0:
    # numba now), after an untimed round that compiles or loads them.
    rows = [("plain-Python runs (a fresh process)", simulated(size, args.rounds), False)]
    os.environ["VMSIM_JIT_AFTER"] = "0"
    rows.append(("runs compiled by numba", simulated(size, args.rounds, warm=1), True))
    for label, (sf, sk, sc, compiled), want in rows:
        if compiled != want and (want or importlib.util.find_spec("numba") is not None):
            label += " (NOT as labelled: compiled" if compiled else " (NOT as labelled: Python"
            label += ")"
        print(f"vmsim, {label}: {sf / 1000:8.1f} us per THP fault, fork+exit+wait "
              f"{sc / 1e6:7.2f} ms CPU, {sk / 1e6:7.2f} ms wall")
        if nat is not None:
            print(f"  ratio (vmsim / kernel): THP fault {sf / nat[0]:5.2f}x, fork of THP memory "
                  f"{sc / nat[4]:5.2f}x in CPU time (target: within 3x), {sk / nat[1]:5.2f}x wall")


if __name__ == "__main__":
    main()
