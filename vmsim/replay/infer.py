"""VMAs for a text trace, which records accesses but no mmap/brk calls.

The touched pages are grouped into regions (pages closer than ``gap`` bytes belong to
one region); a region is cut into areas by what its pages were used for: fetched
(r-x), written (rw-), only read (r--), an area running from its first page to the
next area's. Each area is then named as a user reading /proc/PID/maps would:
  stack   the highest region, when written (it is mapped growsdown with its top page
          only, so the model's expand_stack grows it as the program's stack grew);
  text    fetched areas (the lowest fetched region is the program, others libraries);
  data    written or read-only areas in a region that has text (an ELF's segments);
  heap    the brk area (see _brk_heap): a written region right above the program's,
          or what follows the last segment of the program or of the interpreter
          Valgrind loads above it; the replay grows it with brk() as the trace
          reaches higher heap addresses, as the program's malloc did;
  mmap    everything else (anonymous mappings, libraries' areas seen apart).
Kernel-half and non-canonical addresses get no area (their accesses fault as on Linux).
"""
from typing import NamedTuple

import numpy as np

PAGE = 4096
USER_TOP = 1 << 47
GAP = 256 << 10
# arch_randomize_brk(): start_brk lies up to 32 MiB above the program's bss.
BRK_RANGE = 0x02000000


class Area(NamedTuple):
    start: int
    end: int
    prot: str          # "r--", "rw-", "r-x", "rwx"
    name: str          # text data heap stack mmap
    pages: int         # pages touched


# np.unique would do, but its first use imports numpy.ma (~25 ms of a replay's start).
def _firsts(a):
    """Indices of the first element of each run of equal elements of ``a``."""
    return np.flatnonzero(np.concatenate(([True], a[1:] != a[:-1]))) if len(a) else \
        np.zeros(0, np.int64)


def _unique(a):
    """The distinct elements of the sorted array ``a``."""
    return a[_firsts(a)]


class PageSet:
    """The pages a trace touches, with how (bit 0 read, 1 write, 2 fetch), collected
    chunk by chunk."""

    def __init__(self):
        self._pages = []
        self._bits = []
        self.first_page = {}

    def add(self, addr, kind, size):
        if not len(addr):
            return
        pg = addr >> 12
        b = (np.uint8(1) << kind).astype(np.uint8)
        if size is not None and len(size):
            last = (addr + np.maximum(size, 1) - 1) >> 12
            cross = last != pg
            if cross.any():
                pg = np.concatenate([pg, last[cross]])
                b = np.concatenate([b, b[cross]])
        self._merge(pg, b)

    def _merge(self, pg, b):
        # Page and use in one key; runs of the same key (a trace's locality) go first,
        # so the sort sees a few distinct keys per page instead of every access.
        key = (pg << 3) | b.astype(np.int64)
        if len(key) > 1:
            key = key[np.concatenate(([True], key[1:] != key[:-1]))]
        key = _unique(np.sort(key))
        pg, b = key >> 3, (key & 7).astype(np.uint8)
        idx = _firsts(pg)
        u = pg[idx]
        ub = np.bitwise_or.reduceat(b, idx) if len(idx) else b[:0]
        self._pages.append(u)
        self._bits.append(ub)
        if len(self._pages) > 8:
            self._compact()

    def _compact(self):
        if len(self._pages) <= 1:
            return
        pg = np.concatenate(self._pages)
        b = np.concatenate(self._bits)
        self._pages, self._bits = [], []
        self._merge(pg, b)

    def result(self):
        self._compact()
        if not self._pages:
            return np.zeros(0, np.int64), np.zeros(0, np.uint8)
        return self._pages[0], self._bits[0]


def _prot(bits):
    w = "w" if bits & 2 else "-"
    x = "x" if bits & 4 else "-"
    return "r" + w + x


def infer_areas(pages, bits, gap=GAP):
    """The areas (sorted by address) covering every touched user page."""
    user = (pages >= 0) & (pages < USER_TOP >> 12)
    pages, bits = pages[user], bits[user]
    if not len(pages):
        return []
    gp = max(gap // PAGE, 1)
    cut = np.nonzero(np.diff(pages) > gp)[0] + 1
    regions = np.split(np.arange(len(pages)), cut)
    raw = []          # (start, end, bits, region index, pages)
    for ri, idx in enumerate(regions):
        rp, rb = pages[idx], bits[idx]
        # An ELF's segments differ in rights (fetched / written / read); an anonymous
        # region (no fetch: heap, stack, mmap) is one area with the union of its rights.
        cls = (rb & 6) if (rb & 4).any() else np.zeros(len(rb), np.uint8)
        edges = np.nonzero(np.diff(cls))[0] + 1
        starts = np.concatenate([[0], edges])
        ends = np.concatenate([edges, [len(rp)]])
        for s, e in zip(starts, ends):
            end_page = rp[e] if e < len(rp) else rp[-1] + 1
            raw.append([int(rp[s]) * PAGE, int(end_page) * PAGE, int(np.bitwise_or.reduce(rb[s:e])),
                        ri, int(e - s)])
    nreg = len(regions)
    has_text = [False] * nreg
    written = [False] * nreg
    for a in raw:
        has_text[a[3]] |= bool(a[2] & 4)
        written[a[3]] |= bool(a[2] & 2)
    text_regions = [i for i in range(nreg) if has_text[i]]
    prog = text_regions[0] if text_regions else -1
    stack = nreg - 1 if written[nreg - 1] and not has_text[nreg - 1] else -1
    heap = _brk_heap(raw, has_text, written, prog, stack)
    out = []
    for i, (start, end, b, ri, n) in enumerate(raw):
        if i in heap:
            if i == heap[0]:             # one brk VMA, rw- (do_brk_flags: VM_DATA_DEFAULT_FLAGS)
                last = raw[heap[-1]]
                out.append(Area(start, last[1], "rw-", "heap", sum(raw[j][4] for j in heap)))
            continue
        if ri == stack:
            name = "stack"
        elif b & 4:
            name = "text"
        elif has_text[ri]:
            name = "data"
        else:
            name = "mmap"
        out.append(Area(start, end, _prot(b), name, n))
    return out


def _brk_heap(raw, has_text, written, prog, stack):
    """The raw areas (indices, ascending) of the brk heap, or []: the lowest of
      - the region right above the program's, when written and without text, starting
        within BRK_RANGE of it (load_elf_binary puts start_brk after the bss,
        arch_randomize_brk up to 32 MiB higher);
      - the written tail of the program's region, or of the first ELF region above it
        (where Valgrind loads the interpreter, the brk following it), past the rw-
        area that follows that region's last text area (an ELF's last segment)."""
    if prog < 0:
        return []
    by_region = {}
    for i, a in enumerate(raw):
        by_region.setdefault(a[3], []).append(i)
    regions = sorted(by_region)
    above = [ri for ri in regions if ri > prog and ri != stack]
    cands = []
    prog_end = raw[by_region[prog][-1]][1]
    if above and not has_text[above[0]] and written[above[0]] and \
            raw[by_region[above[0]][0]][0] - prog_end <= BRK_RANGE:
        cands.append(by_region[above[0]])
    interp = [ri for ri in above if has_text[ri]][:1]
    for ri in [prog] + interp:
        ids = by_region[ri]
        last_text = max(j for j, i in enumerate(ids) if raw[i][2] & 4)
        rw = [j for j in range(last_text + 1, len(ids)) if raw[ids[j]][2] & 2]
        tail = ids[rw[0] + 1:] if rw else []
        if any(raw[i][2] & 2 for i in tail):
            cands.append(tail)
    return min(cands, key=lambda c: raw[c[0]][0]) if cands else []


def format_areas(areas) -> str:
    """The inferred areas, one per line, as /proc/PID/maps prints a VMA."""
    lines = []
    for a in areas:
        perm = a.prot + "p"
        lines.append(f"{a.start:08x}-{a.end:08x} {perm} {a.name:<6} "
                     f"{(a.end - a.start) >> 10:>8} kB, {a.pages} pages touched")
    return "\n".join(lines)
