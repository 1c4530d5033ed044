"""Benchmark: file-backed page faults, vmsim against the real kernel in the same run.

Run: python bench/bench_file.py [--size 1G] [--rounds 3] [--no-native] [--kinds ...]

Two files of SIZE bytes on the disk filesystem (/tmp): A written with 2 MiB pwrites
(ext4 caches it in 2 MiB folios), B with 64 KiB pwrites (16-page folios); both
fsynced. Every mapping but cached_pmd's is MADV_NOHUGEPAGE so the PTE path is
measured (a 2 MiB folio would otherwise be mapped by one PMD). Measured, per 4 KiB page touched and per
fault (ru_minflt + ru_majflt), the median of the rounds after the first (which warms
the host and, in vmsim, the compiled paths):

  cached_pmd  read-touch of a MAP_PRIVATE mapping of cached A without MADV_NOHUGEPAGE
              (one PMD per 2 MiB folio: filemap_map_pmd -> do_set_pmd)
  cached      read-touch of a MAP_PRIVATE mapping of cached A (fault-around on: the
              kernel maps a whole 2 MiB folio per fault, filemap_map_folio_range)
  cached_64k  the same on B (fault-around windows of 16 pages)
  cold        read-touch of A after POSIX_FADV_DONTNEED (major faults and readahead;
              vmsim's simulated disk costs zero: Machine(disk_latency_ns=0))
  shwrite     write-touch of a fresh MAP_SHARED mapping of A (do_shared_fault)
  shwp        write-touch of B after a read-touch (wp_page_shared, one fault a page)

The kernel side is bench/native_file.c, compiled now with the system's C compiler.
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

from bench_fault import no_host_thp, run_native  # noqa: E402

KINDS = ("cached_pmd", "cached", "cached_64k", "cold", "shwrite", "shwp")
CHUNK_A, CHUNK_B = 2 << 20, 64 << 10


def native(size: int, rounds: int):
    """{kind: [(minflt, majflt, ns, pages), ...]} from native_file.c, or None."""
    out = run_native("native_file.c", size, "/tmp", rounds)
    if out is None:
        return None
    res = {}
    for line in out:
        k, mi, ma, ns, pages = line.split()
        res.setdefault(k, []).append((int(mi), int(ma), float(ns), int(pages)))
    return res


def _summary(rows):
    """(ns per page, ns per fault, faults, majflt) over the rounds after the first."""
    use = rows[1:] if len(rows) > 1 else rows
    per_page = statistics.median(ns / pages for _, _, ns, pages in use)
    faults = use[-1][0] + use[-1][1]
    per_fault = statistics.median(ns / max(mi + ma, 1) for mi, ma, ns, _ in use)
    return per_page, per_fault, faults, use[-1][1]


def vmsim_run(size: int, rounds: int, kinds):
    """The same sequence through the file API; {kind: [(minflt, majflt, ns, pages)]}."""
    import vmsim
    from vmsim import (PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED, MADV_NOHUGEPAGE,
                       O_RDWR, O_CREAT, O_EXCL)
    m = vmsim.Machine(memory=max(4 << 30, 3 * size), debug_vm=False, disk_latency_ns=0)
    p = m.spawn()
    fds = []
    t0 = time.perf_counter()
    for k, chunk in enumerate((CHUNK_A, CHUNK_B)):
        fd = p.open(f"/tmp/bench-{k}", O_RDWR | O_CREAT | O_EXCL, 0o600)
        data = b"\x5a" * chunk
        for off in range(0, size, chunk):
            p.pwrite(fd, data[:min(chunk, size - off)], off)
        p.fsync(fd)
        fds.append(fd)
    setup = time.perf_counter() - t0
    res = {}

    def round_(kind, fd, prot, flags, pre_read, write, nohuge=True):
        a = p.mmap(0, size, prot, flags, fd, 0)
        if nohuge:
            p.madvise(a, size, MADV_NOHUGEPAGE)
        if pre_read:
            p.touch(a, size)
        r0 = p.getrusage()
        t = time.perf_counter()
        p.touch(a, size, write=write)
        dt = time.perf_counter() - t
        r1 = p.getrusage()
        res.setdefault(kind, []).append((r1.ru_minflt - r0.ru_minflt, r1.ru_majflt - r0.ru_majflt,
                                         dt * 1e9, size // 4096))
        p.munmap(a, size)
        if write:
            p.fsync(fd)

    # the kernel side's order: all rounds of one kind, then the next kind (a cold
    # round leaves A cached in readahead-sized folios, no longer 2 MiB ones)
    plan = {
        "cached_pmd": lambda: round_("cached_pmd", fds[0], PROT_READ, MAP_PRIVATE, False, False,
                                     nohuge=False),
        "cached": lambda: round_("cached", fds[0], PROT_READ, MAP_PRIVATE, False, False),
        "cold": lambda: (p.posix_fadvise(fds[0], 0, 0, vmsim.POSIX_FADV_DONTNEED),
                         round_("cold", fds[0], PROT_READ, MAP_PRIVATE, False, False)),
        "shwrite": lambda: round_("shwrite", fds[0], PROT_READ | PROT_WRITE, MAP_SHARED, False, True),
        "cached_64k": lambda: round_("cached_64k", fds[1], PROT_READ, MAP_PRIVATE, False, False),
        "shwp": lambda: round_("shwp", fds[1], PROT_READ | PROT_WRITE, MAP_SHARED, True, True),
    }
    for kind in ("cached_pmd", "cached", "cold", "shwrite", "cached_64k", "shwp"):
        if kind in kinds:
            for _ in range(rounds):
                plan[kind]()
    return res, setup


PATHS = {
    # what one fault of each kind must pass through (no bulk shortcut)
    "cached_pmd": ["handle_mm_fault", "do_read_fault", "filemap_map_pages", "filemap_map_pmd",
                   "do_set_pmd"],
    "cached": ["handle_mm_fault", "do_fault", "do_read_fault", "do_fault_around", "filemap_map_pages"],
    # filemap_fault starts the read and returns VM_FAULT_RETRY; the retried fault finds
    # the folios cached and fault-around maps them
    "cold": ["handle_mm_fault", "do_read_fault", "filemap_fault", "do_fault_around", "filemap_map_pages"],
    "shwrite": ["handle_mm_fault", "do_fault", "do_shared_fault", "__do_fault", "finish_fault"],
    "shwp": ["handle_mm_fault", "do_wp_page", "wp_page_shared"],
}


def traced_faults():
    """One fault of each kind, traced: {kind: {function: calls}} (every count must be >= 1)."""
    import vmsim
    from vmsim import (PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED, MADV_NOHUGEPAGE,
                       O_RDWR, O_CREAT)
    m = vmsim.Machine(memory="256M", debug_vm=False)
    p = m.spawn()
    fd = p.open("/tmp/traced", O_RDWR | O_CREAT, 0o600)
    p.pwrite(fd, b"\x5a" * (4 << 20), 0)
    p.fsync(fd)
    out = {}

    def traced(kind, fn):
        calls = {name: 0 for name in PATHS[kind]}

        def prof(frame, event, arg):
            if event == "call" and frame.f_code.co_name in calls:
                calls[frame.f_code.co_name] += 1
        sys.setprofile(prof)
        try:
            fn()
        finally:
            sys.setprofile(None)
        out[kind] = calls

    a = p.mmap(0, 4 << 20, PROT_READ, MAP_PRIVATE, fd, 0)
    traced("cached_pmd", lambda: p.read(a, 1))
    p.munmap(a, 4 << 20)
    a = p.mmap(0, 4 << 20, PROT_READ, MAP_PRIVATE, fd, 0)
    p.madvise(a, 4 << 20, MADV_NOHUGEPAGE)
    traced("cached", lambda: p.read(a, 1))
    p.munmap(a, 4 << 20)
    p.posix_fadvise(fd, 0, 0, vmsim.POSIX_FADV_DONTNEED)
    a = p.mmap(0, 4 << 20, PROT_READ, MAP_PRIVATE, fd, 0)
    p.madvise(a, 4 << 20, MADV_NOHUGEPAGE)
    traced("cold", lambda: p.read(a, 1))
    s = p.mmap(0, 4 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
    p.madvise(s, 4 << 20, MADV_NOHUGEPAGE)
    traced("shwrite", lambda: p.write(s, b"x"))
    p.fsync(fd)
    traced("shwp", lambda: p.write(s, b"y"))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="1G")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--vmsim-rounds", type=int, default=2)
    ap.add_argument("--no-native", action="store_true")
    ap.add_argument("--kinds", default=",".join(KINDS))
    args = ap.parse_args(argv)
    from vmsim.api import parse_size
    size = parse_size(args.size)
    kinds = [k for k in args.kinds.split(",") if k]
    no_host_thp()
    print(f"# file-backed faults, {size >> 20} MiB files on /tmp, 4 KiB pages (MADV_NOHUGEPAGE)")
    nat = None if args.no_native else native(size, args.rounds)
    if nat:
        print(f"real kernel ({os.uname().release}), median of rounds 2..{args.rounds}:")
        for k in kinds:
            pp, pf, faults, maj = _summary(nat[k])
            print(f"  {k:<11} {pp:8.1f} ns/page {pf:10.0f} ns/fault  ({faults} faults, {maj} major)")
    paths = traced_faults()
    print("traced faults, calls per function:", paths)
    bad = {k: v for k, c in paths.items() for f, v in c.items() if v < 1}
    assert not bad, f"faults skipped part of the kernel path: {bad}"
    res, setup = vmsim_run(size, args.vmsim_rounds, kinds)
    print(f"vmsim (writing the two files: {setup:.1f} s), last round:")
    for k in kinds:
        pp, pf, faults, maj = _summary(res[k])
        ratio = ""
        if nat:
            npp = _summary(nat[k])[0]
            ratio = f"  {pp / npp:6.1f}x the kernel per page"
        print(f"  {k:<11} {pp:8.1f} ns/page {pf:10.0f} ns/fault  ({faults} faults, {maj} major){ratio}")


if __name__ == "__main__":
    main()
