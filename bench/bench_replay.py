"""Replay speed: vmsim's compiled access path against the same accesses run natively.

    python bench/bench_replay.py [--quick]

Prints, each with the trace it used:
  accesses/s   locality-rich reads (8-byte stride over 32 MiB, 512 per page), random
               reads over 1 GiB of resident pages (a walk each), stores (the locality
               trace as writes, zeros and non-zero bytes), both read traces again
               through the TLB model (golden-cove geometry; its own build, and the
               random trace again through the generic build), all after a warm-up pass so
               faults are out of the timing; and the native C program touching the same
               offsets of a real mapping on this kernel: the slowdown ratio. Each rate is
               the median of SAMPLES samples, each at least MIN_SAMPLE s of CPU (the
               trace run again as often as needed), min and max shown beside it
  start-up     whole processes with warm caches, wall and CPU, median of 3: a fresh
               interpreter importing vmsim, spawning, one p.access of 16,384; `vmsim
               replay` of 1,000 lackey lines (a small trace: a user's start-up), and of
               the built-in sample (167,449 lines)
  host memory  RSS a fresh process gains per simulated frame it writes (a fault each, on a
               16 GiB machine, after a first run of the same kind), with host THP off for
               that process (prctl PR_SET_THP_DISABLE) and as the host sets it (mem_map
               asks for 4 KiB host pages: the two agree), with what each mem_map field and
               the page-table pool gained (/proc/self/pagemap); and RSS of a machine whose
               frames stay untouched
  lackey       lines/s reading a lackey trace (tests/data/traces/ls-usr-bin.lackey.xz,
               decompressed first, so the parser alone is timed)
Rates are per CPU second (process time, vmsim and the C program alike): the machine
is shared, and wall-clock rates would measure its load. Start-up is both.
"""
import argparse
import lzma
import os
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import vmsim  # noqa: E402

C_SRC = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <sys/mman.h>
#include <time.h>
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}
static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
/* argv: offsets file (int64), region bytes, write(0/1), samples, seconds per sample.
   Prints the median of the samples' rates, in M accesses per CPU second. */
int main(int argc, char **argv) {
    FILE *f = fopen(argv[1], "rb");
    size_t region = strtoull(argv[2], 0, 0);
    int wr = atoi(argv[3]), samples = atoi(argv[4]);
    double min_s = atof(argv[5]);
    fseek(f, 0, SEEK_END); long n = ftell(f) / 8; fseek(f, 0, SEEK_SET);
    int64_t *off = malloc(n * 8);
    if (fread(off, 8, n, f) != (size_t)n) return 1;
    volatile unsigned char *m = mmap(0, region, PROT_READ | PROT_WRITE,
                                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned long s = 0;
    double rate[64];
    for (long i = 0; i < n; i++) m[off[i]] = 1;          /* fault everything in first */
    for (int k = 0; k < samples && k < 64; k++) {
        double a = now(), b;
        long done = 0;
        do {
            if (wr) for (long i = 0; i < n; i++) m[off[i]] = (unsigned char)i;
            else for (long i = 0; i < n; i++) s += m[off[i]];
            done += n;
            b = now();
        } while (b - a < min_s);
        rate[k] = done / (b - a) / 1e6;
    }
    qsort(rate, samples, sizeof(double), cmp);
    printf("%.3f %lu\n", rate[samples / 2], s);
    return 0;
}
"""

# Each figure is the median of SAMPLES samples; a sample runs the trace again until it
# took at least MIN_SAMPLE seconds of CPU (the quick form halves it).
SAMPLES = 5
MIN_SAMPLE = 0.2


def native_rate(offsets, region, write, tmp):
    exe = os.path.join(tmp, "touch_native")
    if not os.path.exists(exe):
        src = os.path.join(tmp, "touch_native.c")
        with open(src, "w") as f:
            f.write(C_SRC)
        subprocess.run(["cc", "-O2", "-o", exe, src], check=True)
    path = os.path.join(tmp, "offsets.bin")
    offsets.astype(np.int64).tofile(path)
    out = subprocess.run([exe, path, str(region), str(int(write)), str(SAMPLES), str(MIN_SAMPLE)],
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]) * 1e6


def vmsim_rate(offsets, region, kind, value=0, tlb=None, geometry_build=True):
    """Median of ``samples`` rates (accesses per CPU second) of p.access over the trace,
    each sample the trace run again until it took at least MIN_SAMPLE s: a run of a few
    milliseconds measures the scheduler more than the loop. Faults are taken before.
    With ``tlb``: through the geometry's own build (``geometry_build``, which a replay
    runs once numba's cache has it, mmu_batch._geometry_build) or the generic one."""
    from vmsim.arch.x86 import mmu_batch
    mmu_batch._GEOMETRY_LOAD_AFTER = 0 if geometry_build else 1 << 62
    mmu_batch._GEOMETRY_COMPILE_AFTER = 0.0 if geometry_build else float("inf")
    m = vmsim.Machine("16G", debug_vm=False, tlb=tlb)
    p = m.spawn()
    a = p.mmap(0, region, vmsim.PROT_READ | vmsim.PROT_WRITE, vmsim.MAP_PRIVATE | vmsim.MAP_ANONYMOUS)
    addrs = (a + offsets).astype(np.int64)
    kinds = np.full(len(addrs), kind, np.uint8)
    p.access(addrs, np.full(len(addrs), vmsim.ACCESS_WRITE, np.uint8), value=value)   # fault in
    p.access(addrs, kinds, value=value)                                                # warm
    rates = []
    for _ in range(SAMPLES):
        n = 0
        t = time.process_time()
        while True:
            p.access(addrs, kinds, value=value)
            n += len(addrs)
            dt = time.process_time() - t
            if dt >= MIN_SAMPLE:
                break
        rates.append(n / dt)
    return float(np.median(rates)), min(rates), max(rates)


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _thp_disable():
    """prctl(PR_SET_THP_DISABLE): this process gets no transparent huge pages from now
    on, so its RSS grows by the 4 KiB pages it writes."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(41, 1, 0, 0, 0) != 0:                       # PR_SET_THP_DISABLE
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_THP_DISABLE)")


def _written_pages(addr, nbytes):
    """Pages of [addr, addr + nbytes) this process has written (its RSS there): present
    in /proc/self/pagemap and mapped by it alone (PM_MMAP_EXCLUSIVE, bit 56), which
    leaves out the shared zero page a read of a never-written page maps."""
    if nbytes <= 0:
        return 0
    first, last = addr >> 12, (addr + nbytes - 1) >> 12
    with open("/proc/self/pagemap", "rb", buffering=0) as f:
        f.seek(first * 8)
        e = np.frombuffer(f.read((last - first + 1) * 8), dtype=np.uint64)
    return int(np.count_nonzero((e >> np.uint64(63)) & (e >> np.uint64(56)) & np.uint64(1)))


def _structures(k):
    """{structure: (address, bytes)} of the host memory a machine's frames can cost:
    each mem_map field (vmsim/mm/page_alloc.py MemMap), the page-table pool's rows in
    use and the page-contents pool's rows (frames stored to with non-zero bytes)."""
    def at(a):
        return a.__array_interface__["data"][0]
    out = {f"mem_map.{name}": (at(getattr(k.mem, "np_" + name)),
                               getattr(k.mem, "np_" + name).nbytes)
           for name, _ in k.mem.FIELDS}
    out["page tables (pool rows)"] = (at(k.ptpool.arr), k.ptpool.used * 4096)
    out["page contents (pool rows)"] = (at(k.page_data.pool), k.page_data.rows_used * 4096)
    return out


def host_memory(frames):
    """RSS this process gains per simulated frame written (the first write to each of
    ``frames`` pages of an anonymous area of a 16 GiB machine: a fault each), and what
    each structure gained (pages written, /proc/self/pagemap), in bytes per frame.

    Measured after a first access has loaded numba and the same kind of run over
    another area (32,768 frames) has loaded the compiled code the run uses (the
    write-fault run, mm/_fault_batch.py): ~2 MiB once per process, which the
    measurement once divided among the frames (48.8 B instead of 40.1). That run's RSS,
    its ``warm`` frames included, is returned apart as "once"."""
    import gc
    m = vmsim.Machine("16G", debug_vm=False)
    p = m.spawn()
    rw, priv = vmsim.PROT_READ | vmsim.PROT_WRITE, vmsim.MAP_PRIVATE | vmsim.MAP_ANONYMOUS
    a = p.mmap(0, (frames + 1) * 4096, rw, priv)
    addrs = a + 4096 + np.arange(frames, dtype=np.int64) * 4096
    kinds = np.full(frames, vmsim.ACCESS_WRITE, np.uint8)
    p.access(np.array([a]), np.array([1], np.uint8))                 # loads numba
    # The warm-up run as long as the stretch Process.access scans for a run (32,768
    # accesses, cpu._access_fault_run): the allocator has then seen its temporaries.
    warm = 1 << 15
    w = p.mmap(0, warm * 4096, rw, priv)
    gc.collect()
    once = rss_bytes()
    p.access(w + np.arange(warm, dtype=np.int64) * 4096, kinds[:warm], value=0)
    gc.collect()
    before = rss_bytes()
    once = before - once
    where = _structures(m.k)
    pages = {name: _written_pages(*at) for name, at in where.items()}
    before = rss_bytes()
    p.access(addrs, kinds, value=0)
    total = rss_bytes() - before
    where = _structures(m.k)
    out = {name: (_written_pages(*at) - pages[name]) * 4096 / frames for name, at in where.items()}
    out = {name: x for name, x in out.items() if x}
    out["other (Python objects, allocator)"] = total / frames - sum(out.values())
    return {"total": total / frames, "structures": out, "once": once, "warm": warm}


def host_memory_child(frames, thp, runs=3):
    """host_memory in a fresh interpreter (with host THP as the system sets it, or off),
    so no earlier machine's freed memory is reused: [host_memory() of each run]."""
    import json
    code = textwrap.dedent(f"""
        import json, sys; sys.path.insert(0, {HERE!r})
        import bench_replay as b
        if not {thp!r}:
            b._thp_disable()
        print(json.dumps(b.host_memory({frames})))
    """)
    # numba from the first access on: loading it mid-measurement would count its code.
    env = dict(os.environ, PYTHONPATH=ROOT, VMSIM_JIT_AFTER="0")
    return [json.loads(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                      capture_output=True, text=True).stdout)
            for _ in range(runs)]


def untouched_cost():
    """RSS a machine adds per frame it never touches: a 64 GiB machine against a 1 GiB
    one (both spawn a process), after a first machine has loaded numba and its
    compiled code (which the first measurement once counted as per-frame cost)."""
    import gc
    m = vmsim.Machine("1G", debug_vm=False)
    m.spawn()
    del m
    cost = {}
    for size in ("1G", "64G"):
        gc.collect()
        before = rss_bytes()
        m = vmsim.Machine(size, debug_vm=False)
        m.spawn()
        cost[size] = (rss_bytes() - before, m.k.memory_bytes >> 12)
        del m
    (small, nsmall), (big, nbig) = cost["1G"], cost["64G"]
    return big, nbig, (big - small) / (nbig - nsmall)


def _process_time(argv, env):
    """(wall, CPU) seconds of one process from its start to its exit: the CPU is its
    user + system time (os.wait4), interpreter start-up included."""
    t = time.perf_counter()
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    if p.returncode:
        raise RuntimeError(f"{argv}: exit {p.returncode}: {err.decode()[-500:]}")
    return wall, ru.ru_utime + ru.ru_stime


def startup(tmp, runs=3):
    """Start-up with a warm cache (numba's, and Python's bytecode as the environment
    leaves it), each process run once first and then ``runs`` times, the median:
    {row: (wall, CPU)}. A user's start-up is `vmsim replay TRACE` to its end for a
    small trace; the first row is the library's: import, spawn, one p.access."""
    code = textwrap.dedent("""
        import numpy as np, vmsim
        m = vmsim.Machine("1G", debug_vm=False); p = m.spawn()
        a = p.mmap(0, 1 << 20, 3, 0x22)
        p.access(a + np.arange(0, 1 << 20, 64), np.zeros(1 << 14, np.uint8))
    """)
    cli = [sys.executable, "-c", "import sys; from vmsim.cli import main; sys.exit(main())",
           "replay"]
    sample = os.path.join(ROOT, "vmsim", "replay", "data", "sample.lackey.xz")
    small = os.path.join(tmp, "sample-1000.lackey")
    with lzma.open(sample, "rt") as f, open(small, "w") as g:
        g.writelines(line for _, line in zip(range(1000), f))
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = {}
    for name, argv in (("import vmsim, spawn, p.access of 16,384", [sys.executable, "-c", code]),
                       ("vmsim replay of 1,000 lackey lines", cli + [small]),
                       ("vmsim replay (the built-in sample, 167,449 lines)", cli)):
        _process_time(argv, env)                                         # warm
        t = [_process_time(argv, env) for _ in range(runs)]
        out[name] = (float(np.median([w for w, _ in t])), float(np.median([c for _, c in t])))
    return out


def _stale_bytecode() -> int:
    """vmsim's modules whose cached bytecode is missing or older than the source (with
    PYTHONDONTWRITEBYTECODE set, Python compiles them at every start)."""
    import importlib.util
    pkg = os.path.dirname(vmsim.__file__)
    n = 0
    for d, _, files in os.walk(pkg):
        for f in files:
            if f.endswith(".py"):
                src = os.path.join(d, f)
                pyc = importlib.util.cache_from_source(src)
                if not os.path.exists(pyc) or os.path.getmtime(pyc) < os.path.getmtime(src):
                    n += 1
    return n


def lackey_rate(tmp):
    from vmsim.replay.readers import open_trace
    src = os.path.join(ROOT, "tests", "data", "traces", "ls-usr-bin.lackey.xz")
    dst = os.path.join(tmp, "ls.lackey")
    with lzma.open(src) as f, open(dst, "wb") as g:
        g.write(f.read())
    list(open_trace(dst, chunk=1 << 16))                                # compile, page cache
    t = time.process_time()
    r = open_trace(dst)
    for _ in r:
        pass
    return r.lines / (time.process_time() - t), r.lines


def main():
    global SAMPLES, MIN_SAMPLE
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="shorter samples, one process per "
                    "host-memory figure")
    args = ap.parse_args()
    if args.quick:
        MIN_SAMPLE = 0.1
    n = 1 << 22
    rng = np.random.default_rng(1)
    seq_region = 32 << 20
    seq = (np.arange(n, dtype=np.int64) * 8) % seq_region
    rnd_region = 1 << 30
    rnd = rng.integers(0, rnd_region >> 12, n) * 4096 + rng.integers(0, 4096, n)
    cost, frames, per_frame = untouched_cost()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, off, region, kind, value, *tlb in (
                ("locality reads (8 B stride, 32 MiB)", seq, seq_region, 0, 0),
                ("random reads (1 GiB resident)", rnd, rnd_region, 0, 0),
                ("stores of 0 (8 B stride, 32 MiB)", seq, seq_region, 1, 0),
                ("stores of 1 (8 B stride, 32 MiB)", seq, seq_region, 1, 1),
                ("locality reads, --tlb golden-cove", seq, seq_region, 0, 0, "golden-cove"),
                ("random reads, --tlb golden-cove", rnd, rnd_region, 0, 0, "golden-cove"),
                ("random reads, --tlb, generic build", rnd, rnd_region, 0, 0, "golden-cove", False)):
            own = tlb[1] if len(tlb) > 1 else True
            tlb = tlb[0] if tlb else None
            v = vmsim_rate(off, region, kind, value, tlb=tlb, geometry_build=own)
            nat = native_rate(off, region, kind == 1, tmp)
            rows.append((name, v, nat))
        lines_s, lines = lackey_rate(tmp)
        rows_s = startup(tmp)
    print(f"{'trace':40} {'vmsim M/s':>10} {'(min-max)':>15} {'native M/s':>11} {'slowdown':>9}")
    for name, (v, lo, hi), nat in rows:
        rng_s = f"{lo / 1e6:.1f}-{hi / 1e6:.1f}"
        print(f"{name:40} {v / 1e6:10.2f} {rng_s:>15} {nat / 1e6:11.1f} {nat / v:8.1f}x")
    print(f"(each trace {n:,} accesses, 1 byte each; the locality traces cover their 32 MiB "
          f"once, in order; random: {n:,} uniform pages of the 1 GiB, a uniform byte in each; "
          f"rates per CPU second, the median of {SAMPLES} samples of >= {MIN_SAMPLE} s, "
          "vmsim and native alike; targets: locality >= 100 M/s, random >= 25 M/s, "
          "stores >= 50 M/s; --tlb rows run the geometry's own build, as a replay does once "
          "numba's cache has it, but the generic one's row)")
    stale = _stale_bytecode()
    bc = "off (PYTHONDONTWRITEBYTECODE)" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "on"
    for i, (name, (wall, cpu_s)) in enumerate(rows_s.items()):
        print(f"start-up, {name}: {wall:.2f} s wall, {cpu_s:.2f} s CPU (whole process, warm "
              f"caches, median of 3; " + ("target < 0.5 s)" if i < 2 else "a trace's work too)"))
    print(f"(start-up: Python's bytecode writing {bc}, vmsim's bytecode "
          + ("cached)" if not stale else
             f"missing or older than the source for {stale} modules: compiled at each start; "
             "`python -m compileall vmsim` caches them)"))
    touched = 1 << 18
    runs = 1 if args.quick else 3
    off = host_memory_child(touched, False, runs)
    on = host_memory_child(touched, True, runs)
    tot_off, tot_on = [r["total"] for r in off], [r["total"] for r in on]
    print(f"host memory per touched frame: {np.median(tot_off):.1f} bytes with host THP off "
          f"for vmsim ({', '.join(f'{x:.1f}' for x in tot_off)}); {np.median(tot_on):.1f} with "
          f"THP as the host sets it ({', '.join(f'{x:.1f}' for x in tot_on)}); {touched:,} "
          f"frames written (a fault each, stores of 0) in a fresh process, {runs} run(s) "
          "each; target <= 48")
    print("  by structure (pages written, /proc/self/pagemap; the median run with THP off):")
    mid = sorted(off, key=lambda r: r["total"])[len(off) // 2]
    for name, x in mid["structures"].items():
        print(f"    {name:36} {x:6.2f} B")
    once = np.median([r["once"] - r["warm"] * r["total"] for r in off])
    print(f"  (not counted: {once / 2**20:.1f} MiB once per process, the first write run's "
          f"compiled code and the allocator's first temporaries: the warm-up run of "
          f"{off[0]['warm']:,} frames less their cost at the rate above; mem_map.private is "
          "read, not written, by stores of 0: the host maps its zero page there)")
    sys.path.insert(0, HERE)
    import hostmem_file
    for case, how in (("read-pte", "PTE-mapped"), ("read", "PMD-mapped where it can")):
        fr = hostmem_file.child_runs(case, runs)
        mid = fr[len(fr) // 2]
        each = ", ".join(f"{r['total']:.1f}" for r in fr)
        print(f"host memory per file-backed frame, {how}: {mid['total']:.1f} bytes "
              f"({each}); a sparse 256 MiB ext4 file "
              f"read-touched through MAP_PRIVATE (bench/hostmem_file.py {case}); target <= 48")
        for name, x in mid["phases"]["read"]["structures"].items():
            print(f"    {name:36} {x:6.2f} B")
    print(f"host memory of a 64 GiB machine ({frames:,} frames, untouched): {cost / 1024:.0f} KiB; "
          f"against a 1 GiB one: {per_frame:.3f} bytes per untouched frame")
    print(f"lackey reader: {lines_s / 1e6:.2f} M lines/s ({lines:,} lines of ls /usr/bin; "
          "target >= 5)")


if __name__ == "__main__":
    main()
