"""Benchmark: the debug checker's cost per operation (VMSIM_DEBUG_VM=1), full pass after
every operation against the incremental pass (full pass every N), with 1 and with 31
processes (a fork tree sharing 64 COW pages and 16 shared pages).

Run: python bench/bench_checker.py [--ops 300] [--procs 1,31] [--full-every 64]

Each operation is one syscall or access of a round-robin process: a write (a COW
fault on the first write of each page), and every 10th an mmap + munmap. The time
per operation (CPU time of this process, so a busy host does not inflate it) includes
the operation itself; "checker off" is the same loop without it. With --old the
"full every op" column runs check_all directly (as the checker did before it was
incremental), so the script also runs on a tree without VMChecker(full_every).
"""
import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import vmsim  # noqa: E402
from vmsim import PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS, MAP_SHARED  # noqa: E402

RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS


def machine(nproc):
    m = vmsim.Machine(memory="1G", cpus=2, debug_vm=False)
    root = m.spawn()
    a = root.mmap(0, 64 << 12, RW, ANON)
    root.touch(a, 64 << 12, write=True)
    s = root.mmap(0, 16 << 12, RW, MAP_SHARED | MAP_ANONYMOUS)
    root.touch(s, 16 << 12, write=True)
    procs = [root]
    while len(procs) < nproc:
        procs.append(procs[len(procs) // 2].fork())
    return m, procs, a


def run(procs, a, ops):
    n = i = 0
    t = time.process_time()
    while n < ops:
        p = procs[i % len(procs)]
        p.write(a + (i % 64) * 4096, b"x")
        n += 1
        if i % 10 == 0:
            b = p.mmap(0, 4096, RW, ANON)
            p.munmap(b, 4096)
            n += 2
        i += 1
    return (time.process_time() - t) / n * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ops", type=int, default=300)
    ap.add_argument("--procs", default="1,31")
    ap.add_argument("--full-every", type=int, default=None,
                    help="incremental mode's full-pass period (default: the checker's)")
    args = ap.parse_args()
    from vmsim.mm.debug_vm import VMChecker
    for nproc in [int(x) for x in args.procs.split(",")]:
        row = [f"{nproc:3d} processes:"]
        for label, full_every in (("off", None), ("full every op", 1),
                                  ("incremental", args.full_every)):
            m, procs, a = machine(nproc)
            if label != "off":
                VMChecker(full_every=full_every).install(m)
                m.check()
            row.append(f"{label} {run(procs, a, args.ops):7.3f} ms/op")
        print("  ".join(row), flush=True)


if __name__ == "__main__":
    main()
