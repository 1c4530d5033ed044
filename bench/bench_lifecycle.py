"""Benchmark: fork, copy-on-write faults and munmap of populated memory, vmsim against
the real kernel.

Run: python bench/bench_lifecycle.py [--size 1G] [--vmsim-size SIZE] [--no-native]
                                     [--profile {fork,cow,reuse,dontneed,munmap}]

In one run it measures, over private anonymous memory with 4 KiB pages whose every
page was filled with non-zero bytes first (so a COW copy moves a full 4 KiB on both
sides: vmsim keeps page contents sparsely and would otherwise copy a handle):
* fork: the time of fork() in the parent (dup_mmap -> copy_page_range: every PTE
  write-protected in the parent and copied into the child, refcounts and mapcounts
  raised);
* cow: the child writes one byte per page (do_wp_page -> wp_page_copy), ns per fault;
* reuse: after the child exited, the parent writes one byte per page (do_wp_page ->
  wp_can_reuse_anon_folio -> wp_page_reuse), ns per fault;
* dontneed: MADV_DONTNEED over the populated region (zap_page_range_single: the same
  zap_pte_range and freeing as munmap, the VMA stays), ns per page; then filled again;
* munmap: of the populated region (zap_pte_range, the mmu_gather, folios_put and the
  per-CPU lists / buddy allocator), ns per page;
on the real kernel (bench/native_lifecycle.c, compiled now with the system's C
compiler; the median of the rounds after a host-warming one) and on vmsim
(Machine(memory=<this host's MemTotal, whole GiB>, debug_vm=False), MMU walk compiled
as by default: the per-CPU lists' high mark scales with the zone, and at 8G half of a
1 GiB munmap went on to the buddy allocator where the host's lists took it all), with the
ratio vmsim / kernel; and that a traced sample of 64 pages took, page by page, the
full kernel path of each step (vmsim's compiled runs are off under a tracer).
``--profile STEP`` runs cProfile over that vmsim step and prints
the top functions (an installed profiler switches vmsim's compiled PTE runs off, as a
tracer does, so the profile is the Python path's). Timing lives here, never in the tests.
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

from bench_fault import no_host_thp, run_native   # noqa: E402

STEPS = ("fork", "cow", "reuse", "dontneed", "munmap")


def native(size: int, rounds: int = 5):
    """Return ({step: median over rounds 2..n}, [per-round rows]) or None without cc."""
    out = run_native("native_lifecycle.c", size, rounds)
    if out is None:
        return None
    rows = []
    for line in out:
        pages, fork_ns, cow, cow_f, reuse, reuse_f, unmap, dontneed = line.split()
        rows.append({"pages": int(pages), "fork": float(fork_ns), "cow": float(cow),
                     "cow_faults": int(cow_f), "reuse": float(reuse),
                     "reuse_faults": int(reuse_f), "munmap": float(unmap),
                     "dontneed": float(dontneed)})
    med = {s: statistics.median(r[s] for r in rows[1:]) for s in STEPS}
    return med, rows


def _timed(step, profile, fn):
    """Run fn(); under cProfile when ``step`` is the one to profile."""
    if profile != step:
        t = time.thread_time()
        fn()
        return time.thread_time() - t
    import cProfile
    import pstats
    pr = cProfile.Profile()
    t = time.thread_time()
    pr.enable()
    fn()
    pr.disable()
    dt = time.thread_time() - t
    print(f"--- cProfile of vmsim {step} (profiled: {dt:.2f} s) ---")
    pstats.Stats(pr).sort_stats("tottime").print_stats(25)
    return dt


def _host_memory() -> str:
    """This host's MemTotal in whole GiB (at least 2G), the size of vmsim's machine: a
    zone's per-CPU list high mark (zone_highsize) and watermarks scale with it, and
    they decide how much of a large munmap reaches the buddy allocator."""
    with open("/proc/meminfo") as f:
        kb = int(f.readline().split()[1])
    return f"{max(kb >> 20, 2)}G"


def vmsim_lifecycle(size: int, rounds: int = 2, profile=None):
    """Return [{step: value} per round] for vmsim: fork in ns, the others per fault /
    page. Rounds run in one Machine: the first warms the host (its page-content rows
    are reused by later rounds, as the kernel's later rounds reuse guest-free memory)."""
    import vmsim
    m = vmsim.Machine(memory=_host_memory(), debug_vm=False)
    p = m.spawn()
    # Warm the compiled walk and every path once on a small region.
    _round(m, p, 1 << 20, None)
    return [_round(m, p, size, profile if r == rounds - 1 else None) for r in range(rounds)]


def _round(m, p, size, profile):
    import vmsim
    from vmsim.mm import vmstat
    from vmsim.mm.mm_types import MM_ANONPAGES
    a = p.mmap(0, size, vmsim.PROT_READ | vmsim.PROT_WRITE, vmsim.MAP_PRIVATE | vmsim.MAP_ANONYMOUS)
    p.madvise(a, size, vmsim.MADV_NOHUGEPAGE)
    t = time.thread_time()
    chunk = b"\x5a" * (1 << 20)
    for off in range(0, size, 1 << 20):
        p.write(a + off, chunk[:min(1 << 20, size - off)])
    pages = size >> 12
    res = {"pages": pages, "fill_s": time.thread_time() - t}

    holder = {}
    res["fork"] = _timed("fork", profile, lambda: holder.setdefault("c", p.fork())) * 1e9
    c = holder["c"]
    assert c.mm.rss_stat[MM_ANONPAGES] >= pages, "fork did not copy every PTE"

    f0 = c.getrusage().ru_minflt
    dt = _timed("cow", profile, lambda: c.touch(a, size, write=True, value=2))
    res["cow_faults"] = c.getrusage().ru_minflt - f0
    res["cow"] = dt * 1e9 / res["cow_faults"]
    assert c.read(a + 4096, 2) == b"\x02\x5a" and p.read(a + 4096, 2) == b"\x5a\x5a"
    reused = m.k.vmstat[vmstat.PGREUSE]
    c.exit(0)
    p.wait(c.pid)

    f0 = p.getrusage().ru_minflt
    dt = _timed("reuse", profile, lambda: p.touch(a, size, write=True, value=3))
    res["reuse_faults"] = p.getrusage().ru_minflt - f0
    res["reuse"] = dt * 1e9 / res["reuse_faults"]
    assert m.k.vmstat[vmstat.PGREUSE] - reused == res["reuse_faults"], "COW-reuse copied"

    res["dontneed"] = _timed("dontneed", profile,
                             lambda: p.madvise(a, size, vmsim.MADV_DONTNEED)) * 1e9 / pages
    assert p.mm.rss_stat[MM_ANONPAGES] < pages, "MADV_DONTNEED left the pages mapped"
    p.touch(a, size, write=True, value=4)                 # populated again for munmap
    res["munmap"] = _timed("munmap", profile, lambda: p.munmap(a, size)) * 1e9 / pages
    return res


_FAULT = ["exc_page_fault", "handle_page_fault", "do_user_addr_fault", "handle_mm_fault",
          "__handle_mm_fault", "handle_pte_fault", "do_wp_page"]
# step: the kernel functions each of the n pages must pass (no bulk shortcut).
TRACED = {"fork": ["copy_present_ptes", "__copy_present_ptes"], "cow": _FAULT + ["wp_page_copy"], "reuse": _FAULT + ["wp_page_reuse"],
          "dontneed": ["clear_full_ptes", "folio_remove_rmap_pte", "__tlb_remove_folio_pages"],
          "munmap": ["clear_full_ptes", "folio_remove_rmap_pte", "__tlb_remove_folio_pages"]}


def traced_sample(n=64):
    """Run fork / COW / reuse / MADV_DONTNEED / munmap of n filled pages under a
    tracer (sys.setprofile, as vmsim.trace installs one): return {step: {function:
    calls}} for the functions each page must pass on the kernel path."""
    import vmsim
    m = vmsim.Machine(memory="64M", debug_vm=False)
    p = m.spawn()
    size = n << 12
    a = p.mmap(0, size, vmsim.PROT_READ | vmsim.PROT_WRITE, vmsim.MAP_PRIVATE | vmsim.MAP_ANONYMOUS)
    p.write(a, b"\x5a" * size)
    out = {}

    def traced(step, fn):
        calls = out[step] = {name: 0 for name in TRACED[step]}

        def prof(frame, event, arg):
            if event == "call" and frame.f_code.co_name in calls:
                # fork copies the process's other pages too: count the region's.
                if step != "fork" or a <= frame.f_locals["addr"] < a + size:
                    calls[frame.f_code.co_name] += 1
        sys.setprofile(prof)
        try:
            fn()
        finally:
            sys.setprofile(None)
    holder = []
    traced("fork", lambda: holder.append(p.fork()))
    c = holder[0]
    traced("cow", lambda: c.touch(a, size, write=True, value=2))
    c.exit(0)
    p.wait(c.pid)
    traced("reuse", lambda: p.touch(a, size, write=True, value=3))
    traced("dontneed", lambda: p.madvise(a, size, vmsim.MADV_DONTNEED))
    p.touch(a, size, write=True, value=4)
    traced("munmap", lambda: p.munmap(a, size))
    bad = {s: {f: v for f, v in calls.items() if v != n} for s, calls in out.items()}
    bad = {s: v for s, v in bad.items() if v}
    assert not bad, f"traced pages skipped part of the kernel path: {bad}"
    return out


def _fmt(step, v):
    return f"{v / 1e6:.1f} ms" if step == "fork" else f"{v:.0f} ns/{'page' if step in ('munmap', 'dontneed') else 'fault'}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="1G")
    ap.add_argument("--vmsim-size", default=None, help="region size on vmsim (default: --size)")
    ap.add_argument("--rounds", type=int, default=5, help="kernel rounds (the first warms)")
    ap.add_argument("--vmsim-rounds", type=int, default=2, help="vmsim rounds (the first warms)")
    ap.add_argument("--no-native", action="store_true")
    ap.add_argument("--profile", choices=STEPS)
    args = ap.parse_args(argv)
    from vmsim.api import parse_size
    size = parse_size(args.size)
    vsize = parse_size(args.vmsim_size) if args.vmsim_size else size
    no_host_thp()
    print(f"# fork / COW / munmap of {size >> 20} MiB populated private anonymous memory "
          f"(4 KiB pages; vmsim over {vsize >> 20} MiB)")
    nat = None if args.no_native else native(size, args.rounds)
    if nat:
        med, rows = nat
        print(f"real kernel ({os.uname().release}), median of rounds 2..{len(rows)} "
              f"(the first warms the host):")
        for s in STEPS:
            print(f"  {s:7s} {_fmt(s, med[s]):>16s}   rounds: "
                  + ", ".join(_fmt(s, r[s]).split()[0] for r in rows))
    sample = traced_sample()
    print("traced sample of 64 pages per step, each page through the kernel path: "
          + "; ".join(f"{s}: {', '.join(sorted(set(calls)))}" for s, calls in sample.items()
                      if s in ("fork", "cow", "reuse", "munmap")))
    vr = vmsim_lifecycle(vsize, args.vmsim_rounds, args.profile)
    v = {s: statistics.median(r[s] for r in vr[1:] or vr) for s in STEPS}
    v.update({k: vr[-1][k] for k in ("pages", "fill_s", "cow_faults", "reuse_faults")})
    print(f"vmsim (MMU walk compiled, Machine {_host_memory()}), {v['pages']} pages, median of rounds 2..{len(vr)} "
          f"(fill by Process.write: {v['fill_s']:.1f} s)"
          f"{'; ' + args.profile + ' of the last round under cProfile' if args.profile else ''}:")
    for s in STEPS:
        line = f"  {s:7s} {_fmt(s, v[s]):>16s}"
        if s in ("cow", "reuse"):
            line += f" over {v[s + '_faults']} faults"
        if nat:
            # fork is a total: compare per page so sizes may differ between the sides.
            kv = med[s] / rows[0]["pages"] if s == "fork" else med[s]
            vv = v[s] / v["pages"] if s == "fork" else v[s]
            line += f"   {vv / kv:6.1f}x the kernel"
        line += "   rounds: " + ", ".join(_fmt(s, r[s]).split()[0] for r in vr)
        print(line)


if __name__ == "__main__":
    main()
