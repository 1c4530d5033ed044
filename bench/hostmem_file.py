"""(sparse: ftruncate instead of the writes, so the read-touch fills the cache.)
Host RSS per file frame: 16G machine; an ext4 file of 256 MiB written (zeros, 2 MiB
pwrites: the page cache filled), fsynced (ext4's simulated blocks: inode.i_blocks),
then read-touched through a MAP_PRIVATE mapping (MADV_NOHUGEPAGE with 'nohuge': PTEs
instead of PMDs). RSS delta per frame of each phase. Fresh process, host THP off
(prctl PR_SET_THP_DISABLE); a 32 MiB file done the same way first loads the compiled
paths and warms the allocator."""
import gc, json, sys
sys.path.insert(0, sys.argv[1] + "/bench")
import bench_replay as b
b._thp_disable()
import vmsim
from vmsim import PROT_READ, MAP_PRIVATE
O_RDWR, O_CREAT = 2, 0o100
nohuge = 'nohuge' in sys.argv[2:]
sparse = 'sparse' in sys.argv[2:]
m = vmsim.Machine("16G", debug_vm=False)
p = m.spawn()
def rss():
    gc.collect()
    return b.rss_bytes()
def run(path, size):
    r = [rss()]
    fd = p.open(path, O_RDWR | O_CREAT, 0o644)
    z = bytes(2 << 20)
    if sparse:
        p.ftruncate(fd, size)            # holes: the read fills the cache (readahead)
    else:
        for off in range(0, size, 2 << 20):
            p.pwrite(fd, z, off)
    r.append(rss())
    p.fsync(fd)
    r.append(rss())
    a = p.mmap(0, size, PROT_READ, MAP_PRIVATE, fd, 0)
    if nohuge:
        p.madvise(a, size, 15)           # MADV_NOHUGEPAGE: PTE mappings
    p.touch(a, size)
    r.append(rss())
    n = size >> 12
    return {"write": (r[1] - r[0]) / n, "fsync": (r[2] - r[1]) / n, "touch": (r[3] - r[2]) / n,
            "total": (r[3] - r[0]) / n, "nrpages": p._file(fd).f_inode.i_mapping.nrpages,
            "majflt": p.getrusage().ru_majflt}
run("/tmp/warm", 32 << 20)
print(json.dumps(run("/tmp/big", 256 << 20)))
