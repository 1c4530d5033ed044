"""MADV_DONTNEED and MADV_FREE, seen through /proc/PID/smaps.

    vmsim run examples/madvise_free.py

MADV_DONTNEED (mm/madvise.c madvise_dontneed_single_vma -> zap_page_range_single)
unmaps private anonymous pages at once: Rss drops to 0 and the next access faults in
a fresh zero-filled page.

MADV_FREE (madvise_free_single_vma -> madvise_free_pte_range) keeps the pages mapped
but marks them clean and lazily freeable: reclaim may drop them later without
swapping. Until then the data stays readable and writing costs no fault. smaps shows
them as Private_Clean and, once they reached the inactive file LRU, as LazyFree. The
move goes through a per-CPU batch of 31 folios (folio_batch), so of 64 pages 62 show
as LazyFree right after the call and all 64 after the batch drains.

Expected values: Linux 6.18 (scenarios/recorded/madv_dontneed.json, madv_free_64.json).
"""
import vmsim
from vmsim import PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS, MADV_DONTNEED, MADV_FREE
from _util import smaps

PAGE = 4096
N = 64
RW, PRIV_ANON = PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS


def show(what, s):
    print(f"{what:<28} Rss {s['Rss']:>4} kB  Private_Dirty {s['Private_Dirty']:>4} kB  "
          f"Private_Clean {s['Private_Clean']:>4} kB  LazyFree {s['LazyFree']:>4} kB")


def main(machine):
    p = machine.spawn()

    # --- MADV_DONTNEED: gone at once ------------------------------------------------
    a = p.mmap(0, N * PAGE, RW, PRIV_ANON)
    p.touch(a, N * PAGE, write=True, value=0xAB)
    show("written", smaps(machine, p.pid, a))
    p.madvise(a, N * PAGE, MADV_DONTNEED)
    s = smaps(machine, p.pid, a)
    show("after MADV_DONTNEED", s)
    assert s["Rss"] == 0
    before = p.getrusage().ru_minflt
    assert p.read(a, 1) == b"\0"                       # a fresh zero page
    assert p.getrusage().ru_minflt - before == 1       # ... which took a fault

    # --- MADV_FREE: still there, clean, lazily freeable -----------------------------
    b = p.mmap(0, N * PAGE, RW, PRIV_ANON)
    p.touch(b, N * PAGE, write=True, value=0xCD)
    p.madvise(b, N * PAGE, MADV_FREE)
    s = smaps(machine, p.pid, b)
    show("after MADV_FREE", s)
    assert s["Rss"] == N * 4 and s["Private_Clean"] == N * 4 and s["Private_Dirty"] == 0
    assert s["LazyFree"] == 62 * 4                     # two full batches of 31 moved
    before = p.getrusage().ru_minflt
    assert p.read(b, 1) == b"\xcd"                     # not reclaimed: the data is intact
    assert p.getrusage().ru_minflt == before           # and still mapped: no fault

    print(machine.read_file(f"/proc/{p.pid}/smaps_rollup"))


if __name__ == "__main__":
    main(vmsim.Machine(memory="1G"))
