"""Benchmark: the cost of a 4 KiB anonymous write fault, vmsim against the real kernel.

Run: python bench/bench_fault.py [--size 1G] [--no-native]

In one run it measures
* the real kernel: first-touch writes over 1 GiB (bench/native_fault.c, compiled now
  with the system's C compiler; the median of the rounds after a host-warming one);
* vmsim: the same touch through Process.touch (checker off), with the MMU walk and
  the runs of write faults (mm/_fault_batch.py) compiled (numba) and in plain Python,
  and the ratio to the kernel; and, over at most 256 MiB, with the runs switched off:
  every fault through the kernel-named Python path, as under a tracer;
* that the simulated faults took the full kernel path: a sample of faults is traced
  and each must pass exc_page_fault -> ... -> handle_mm_fault -> __handle_mm_fault ->
  handle_pte_fault -> do_anonymous_page (no bulk shortcut);
* host memory per touched simulated frame (RSS growth / frames, including what touch
  wrote) and per untouched frame, and the time and RSS to create a 64 GiB Machine.
Timing lives here, never in the tests.
"""
import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def no_host_thp():
    """numpy madvises large arrays MADV_HUGEPAGE; host THPs would hide per-frame growth."""
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:                     # numpy < 2
        from numpy.core.multiarray import _set_madvise_hugepage
    _set_madvise_hugepage(False)


def host_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_native(source: str, *args) -> list:
    """Compile bench/SOURCE with the system's C compiler and run it; return its output
    lines, or None when there is no compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        exe = os.path.join(d, "native")
        subprocess.run([cc, "-O2", "-o", exe, str(HERE / source)], check=True)
        out = subprocess.run([exe, *map(str, args)], check=True, capture_output=True,
                             text=True).stdout
    return [line for line in out.split("\n") if line.strip()]


def native(size: int, rounds: int = 5):
    out = run_native("native_fault.c", size, rounds)
    if out is None:
        return None
    per = [float(line.split()[1]) for line in out]
    return statistics.median(per[1:]), per


def vmsim_touch(size: int, compiled: bool, runs: bool = True):
    import vmsim
    from vmsim.arch.x86 import cpu
    from vmsim.mm import _fault_batch
    cpu._use_compiled(compiled)
    _fault_batch._set_enabled(runs)
    m = vmsim.Machine(memory="8G", debug_vm=False)
    p = m.spawn()
    a = p.mmap(0, size, vmsim.PROT_READ | vmsim.PROT_WRITE, vmsim.MAP_PRIVATE | vmsim.MAP_ANONYMOUS)
    warm = p.mmap(0, 1 << 20, vmsim.PROT_READ | vmsim.PROT_WRITE, vmsim.MAP_PRIVATE | vmsim.MAP_ANONYMOUS)
    p.touch(warm, 1 << 20, write=True)          # compile / warm the path
    f0 = p.getrusage().ru_minflt
    r0 = host_rss()
    t = time.thread_time()
    p.touch(a, size, write=True)
    dt = time.thread_time() - t
    faults = p.getrusage().ru_minflt - f0
    grown = host_rss() - r0
    return dt * 1e9 / faults, faults, grown, m, p, a


def traced_sample(m, p, n=64):
    """Trace n fresh faults and check each took the full kernel path."""
    import vmsim
    a = p.mmap(0, n << 12, vmsim.PROT_READ | vmsim.PROT_WRITE, vmsim.MAP_PRIVATE | vmsim.MAP_ANONYMOUS)
    path = ["exc_page_fault", "handle_page_fault", "do_user_addr_fault", "handle_mm_fault",
            "__handle_mm_fault", "handle_pte_fault", "do_pte_missing", "do_anonymous_page"]
    calls = {name: 0 for name in path}

    def prof(frame, event, arg):
        if event == "call" and frame.f_code.co_name in calls:
            calls[frame.f_code.co_name] += 1
    sys.setprofile(prof)
    try:
        p.touch(a, n << 12, write=True)
    finally:
        sys.setprofile(None)
    return calls


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="1G")
    ap.add_argument("--no-native", action="store_true")
    args = ap.parse_args(argv)
    from vmsim.api import parse_size
    size = parse_size(args.size)
    no_host_thp()
    print(f"# 4 KiB anonymous write faults, {size >> 20} MiB first touch")
    nat = None if args.no_native else native(size)
    if nat:
        print(f"real kernel ({os.uname().release}): {nat[0]:.0f} ns/fault "
              f"(rounds: {', '.join(f'{x:.0f}' for x in nat[1])}; first warms the host)")
    for compiled, runs in ((True, True), (False, True), (True, False)):
        ns, faults, grown, m, p, a = vmsim_touch(size if runs else min(size, 256 << 20),
                                                 compiled, runs)
        label = ("vmsim (MMU walk and fault runs compiled by numba)" if compiled and runs else
                 "vmsim (plain Python)" if runs else
                 "vmsim (fault runs off: every fault on the kernel-named Python path)")
        ratio = f", {ns / nat[0]:.2f}x the kernel" if nat else ""
        print(f"{label}: {ns:.0f} ns/fault over {faults} faults{ratio}")
        if compiled and runs:
            calls = traced_sample(m, p)
            bad = {k: v for k, v in calls.items() if v != 64}
            print("traced sample of 64 faults, calls per function:", calls)
            assert not bad, f"faults skipped part of the kernel path: {bad}"
            print(f"host memory per touched frame: {grown / faults:.1f} bytes "
                  f"(RSS growth {grown >> 10} KiB for {faults} frames, incl. data written)")
    import vmsim
    r0 = host_rss()
    t = time.thread_time()
    m64 = vmsim.Machine(memory="64G", debug_vm=False)
    dt = time.thread_time() - t
    grown = host_rss() - r0
    print(f"Machine(memory='64G'): {dt * 1e3:.1f} ms, host RSS +{grown >> 10} KiB "
          f"({grown / m64.k.nr_pages:.4f} bytes per untouched frame)")


if __name__ == "__main__":
    main()
