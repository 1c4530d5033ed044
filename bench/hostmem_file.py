"""Host memory per file-backed frame.

    python bench/hostmem_file.py [--runs N]          # every case, a fresh process each
    python bench/hostmem_file.py --child CASE        # one case, JSON on stdout

A 16G machine; an ext4 file of 256 MiB (65,536 pages) in one of these ways, each
phase's RSS delta per page:
  read       ftruncate (a sparse file: holes), then read-touched through a MAP_PRIVATE
             mapping: readahead fills the page cache, the PMD-aligned mapping maps
             folios by PMD where it can
  read-pte   the same with MADV_NOHUGEPAGE on the mapping: PTE mappings
  read-4k    the same with MADV_RANDOM too: no readahead, one order-0 folio a fault
             (the page cache's costliest shape: a leaf slot per page)
  pwrite     pwrite of zeros (2 MiB each: the page cache filled, dirty), fsync (ext4's
             simulated blocks: inode.i_blocks), then read-touched MAP_PRIVATE (PTEs)
  shared     ftruncate, then written through a MAP_SHARED mapping (one store of 1 per
             page, PTEs: dirty pages), then fsync (i_blocks)
  pageout    read-4k, then MADV_PAGEOUT of the mapping: reclaim evicts every folio and
             leaves a workingset shadow (a value entry in i_pages) per page; the
             "pageout" phase is the host memory the shadows keep per evicted page
             (the frames' own bytes stay written: a freed frame's mem_map is not given back)
  pageout-large  read-pte (readahead's large folios), then MADV_PAGEOUT: one
             multi-index shadow per evicted folio
Fresh process, host THP off (prctl PR_SET_THP_DISABLE), numba loaded from the first
access (VMSIM_JIT_AFTER=0); a 32 MiB file done the same way first loads the compiled
paths and warms the allocator. Each phase also shows what each structure gained: the
mem_map fields, the page-table rows and page contents by the host pages written
(/proc/self/pagemap, as bench_replay's host-memory rows), and the Python objects of
the file's page cache index (i_pages: xarray nodes), block map (i_blocks) and the
device's list of block contents (block_device.disk) by sys.getsizeof; "other" is the rest of the RSS delta (the allocator, the objects the
sizes do not see)."""
import argparse
import gc
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CASES = ("read", "read-pte", "read-4k", "pwrite", "shared", "pageout", "pageout-large")
MiB = 1 << 20


def _host_bytes(obj) -> int:
    """sys.getsizeof of a container and what it holds (each distinct object once;
    numpy arrays by the bytes they own, views by none)."""
    seen = set()

    def size(o):
        if id(o) in seen or o is None or isinstance(o, bool):
            return 0
        seen.add(id(o))
        n = sys.getsizeof(o)
        if isinstance(o, dict):
            n += sum(size(x) + size(v) for x, v in o.items())
        elif isinstance(o, (list, tuple, set)):
            n += sum(size(x) for x in o)
        elif hasattr(o, "__slots__") and not isinstance(o, type):
            n += sum(size(getattr(o, a, None)) for a in o.__slots__)
        elif hasattr(o, "__dict__") and not isinstance(o, type):
            n += size(o.__dict__)
        return n
    return size(obj)


def _objects_size(k, inode) -> dict:
    """Bytes of the Python objects behind the file's page cache index and block map."""
    out = {"xarray (i_pages nodes)": _host_bytes(inode.i_mapping.i_pages),
           "i_blocks (block map)": _host_bytes(inode.i_blocks)}
    # Workingset state beside i_pages: the shadow_nodes set (and, before shadows moved
    # into i_pages, the dicts that held them).
    am = inode.i_mapping
    out["shadow_nodes (and shadow dicts)"] = sum(
        _host_bytes(getattr(am, a)) for a in ("shadows", "shadow_order", "shadow_nodes")
        if hasattr(am, a))
    bdev = inode.i_sb.s_bdev
    if hasattr(bdev, "disk"):
        out["device blocks (bdev.disk list)"] = _host_bytes(bdev.disk)
    return out


def case(name: str, size: int = 256 * MiB, warm: int = 32 * MiB) -> dict:
    sys.path.insert(0, HERE)
    import bench_replay as b
    b._thp_disable()
    import vmsim
    from vmsim import PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED
    O_RDWR, O_CREAT = 2, 0o100
    MADV_RANDOM, MADV_NOHUGEPAGE, MADV_PAGEOUT = 1, 15, 21
    m = vmsim.Machine("16G", debug_vm=False)
    p = m.spawn()
    k = m.k

    def rss():
        gc.collect()
        return b.rss_bytes()

    def snapshot(inode):
        where = b._structures(k)
        out = {n: b._written_pages(*at) * 4096 for n, at in where.items()}
        out.update(_objects_size(k, inode))
        return rss(), out

    def run(path, size):
        fd = p.open(path, O_RDWR | O_CREAT, 0o644)
        inode = p._file(fd).f_inode
        snaps = [("start", snapshot(inode))]
        if name == "pwrite":
            z = bytes(2 * MiB)
            for off in range(0, size, 2 * MiB):
                p.pwrite(fd, z, off)
            snaps.append(("pwrite", snapshot(inode)))
            p.fsync(fd)
            snaps.append(("fsync", snapshot(inode)))
        else:
            p.ftruncate(fd, size)           # holes: a read fills the cache (readahead)
        if name == "shared":
            a = p.mmap(0, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
            p.madvise(a, size, MADV_NOHUGEPAGE)
            p.touch(a, size, write=True, value=1)
            snaps.append(("store", snapshot(inode)))
            p.fsync(fd)
            snaps.append(("fsync", snapshot(inode)))
        else:
            a = p.mmap(0, size, PROT_READ, MAP_PRIVATE, fd, 0)
            if name != "read":
                p.madvise(a, size, MADV_NOHUGEPAGE)   # PTE mappings
            if name in ("read-4k", "pageout"):
                p.madvise(a, size, MADV_RANDOM)       # order-0 folios, no readahead
            p.touch(a, size)
            snaps.append(("read", snapshot(inode)))
            if name.startswith("pageout"):
                p.madvise(a, size, MADV_PAGEOUT)      # every folio evicted: shadows
                snaps.append(("pageout", snapshot(inode)))
        n = size >> 12
        phases = {}
        for (_, (r0, s0)), (ph, (r1, s1)) in zip(snaps, snaps[1:]):
            st = {s: (s1[s] - s0[s]) / n for s in s1 if s1[s] != s0[s]}
            st["other"] = (r1 - r0) / n - sum(st.values())
            phases[ph] = {"total": (r1 - r0) / n, "structures": st}
        return {"case": name, "pages": n, "total": (snaps[-1][1][0] - snaps[0][1][0]) / n,
                "phases": phases, "nrpages": inode.i_mapping.nrpages,
                "workingset_nodes": int(k.vmstat[__import__("vmsim.mm.vmstat", fromlist=["x"]).WORKINGSET_NODES]),
                "i_blocks": len(inode.i_blocks), "majflt": p.getrusage().ru_majflt}

    run("/tmp/warm", warm)
    return run("/tmp/big", size)


def child_runs(name: str, runs: int) -> list:
    """case(name) in ``runs`` fresh processes, sorted by the total."""
    env = dict(os.environ, PYTHONPATH=ROOT, VMSIM_JIT_AFTER="0")
    out = [json.loads(subprocess.run([sys.executable, os.path.abspath(__file__), "--child", name],
                                     env=env, check=True, capture_output=True, text=True).stdout)
           for _ in range(runs)]
    return sorted(out, key=lambda r: r["total"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", choices=CASES)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("cases", nargs="*", default=list(CASES))
    args = ap.parse_args()
    if args.child:
        print(json.dumps(case(args.child)))
        return
    for c in args.cases:
        runs = child_runs(c, args.runs)
        mid = runs[len(runs) // 2]
        each = ", ".join(f"{r['total']:.1f}" for r in runs)
        print(f"{c}: {mid['total']:.1f} B per page (runs {each}); "
              f"{mid['pages']:,} pages, nrpages {mid['nrpages']:,}, i_blocks {mid['i_blocks']:,}, "
              f"majflt {mid['majflt']}, workingset_nodes {mid['workingset_nodes']}")
        for ph, d in mid["phases"].items():
            print(f"  {ph:7} {d['total']:7.2f} B/page")
            for s, x in d["structures"].items():
                if abs(x) >= 0.005:
                    print(f"      {s:34} {x:7.2f}")


if __name__ == "__main__":
    main()
