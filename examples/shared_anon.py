"""Shared anonymous memory between a parent and its child.

    vmsim run examples/shared_anon.py

MAP_SHARED|MAP_ANONYMOUS is backed by a shmem file (mm/shmem.c shmem_zero_setup):
parent and child map the same page-cache folios, so each sees the other's stores and
nothing is ever copied on write. fork copies no PTEs of a shared VMA (copy_page_range
skips VMAs without anon_vma), so the child's first access faults; shmem's fault-around
(filemap_map_pages, 16 pages = 64 KiB by default) maps the neighbouring cached pages
in the same fault, writable because a shared anonymous mapping needs no write-notify.

Expected values: Linux 6.18 (scenarios/recorded/fork_shared_anon.json): 32 pages,
the child's read of all of them costs 3 faults (the 128 KiB mapping is not 64 KiB
aligned, so the fault-around windows split it 3 ways), its writes cost none; smaps
shows the pages as Shared_Dirty in both processes, Pss half of Rss.
"""
import vmsim
from vmsim import PROT_READ, PROT_WRITE, MAP_SHARED, MAP_ANONYMOUS
from _util import smaps

PAGE = 4096
N = 32


def main(machine):
    parent = machine.spawn()
    s = parent.mmap(0, N * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS)
    parent.write(s, bytes(range(256)) * (N * PAGE // 256))   # 32 shmem faults
    assert parent.getrusage().ru_minflt == N

    child = parent.fork()
    assert smaps(machine, child.pid, s)["Rss"] == 0           # no PTEs copied
    assert child.read(s, N * PAGE) == bytes(range(256)) * (N * PAGE // 256)
    assert child.getrusage().ru_minflt == 3                   # fault-around: 3 faults
    child.write(s + PAGE, b"hello from the child")
    assert child.getrusage().ru_minflt == 3                   # mapped writable already

    # The parent sees the child's store: one page, two mappings.
    assert parent.read(s + PAGE, 20) == b"hello from the child"
    sp, sc = smaps(machine, parent.pid, s), smaps(machine, child.pid, s)
    print(f"parent: Rss {sp['Rss']} kB Pss {sp['Pss']} kB Shared_Dirty {sp['Shared_Dirty']} kB")
    print(f"child:  Rss {sc['Rss']} kB Pss {sc['Pss']} kB Shared_Dirty {sc['Shared_Dirty']} kB")
    assert sp["Shared_Dirty"] == sc["Shared_Dirty"] == N * 4
    assert sp["Pss"] == N * 4 // 2 and sp["Anonymous"] == 0   # shmem: not "Anonymous"

    child.exit(0)
    assert parent.wait(child.pid) == 0
    # Mapped once again: the parent's pages are Private_Dirty now, Pss == Rss.
    sp = smaps(machine, parent.pid, s)
    assert sp["Private_Dirty"] == sp["Pss"] == N * 4


if __name__ == "__main__":
    main(vmsim.Machine(memory="1G"))
