"""VMAs for a text trace, which records accesses but no mmap/brk calls.

The touched pages are grouped into regions (pages closer than ``gap`` bytes belong to
one region); a region is cut into areas by what its pages were used for: fetched
(r-x), written (rw-), only read (r--), an area running from its first page to the
next area's. Each area is then named as a user reading /proc/PID/maps would:
  stack   the highest region, when written and within the default stack limit (8 MiB,
          _STK_LIM: the stack of a program run with it could grow no further); it is
          mapped growsdown with its top page only, so the model's expand_stack grows it
          as the program's stack grew;
  text    fetched areas of an ELF object (see _elf_objects: the lowest is the program,
          the others the interpreter and libraries);
  data    its other segments: headers and read-only data (r--), data and bss (rw-);
          text and data are mapped MAP_PRIVATE from a file of the object (Area.file);
  heap    the brk area (see _brk_heap): a written region right above the program's
          object, or what follows the interpreter's data, where Valgrind puts the brk
          (found by which code touched each page first: _loader_heap), or the last
          segment of the program or of the interpreter; the replay grows it with
          brk() as the trace reaches higher heap addresses, as the program's malloc did;
  mmap    everything else (anonymous mappings, files the program mapped).
Kernel-half and non-canonical addresses get no area (their accesses fault as on Linux).
"""
from typing import NamedTuple

import numpy as np

PAGE = 4096
USER_TOP = 1 << 47
GAP = 256 << 10
# _STK_LIM (include/uapi/linux/resource.h): the default RLIMIT_STACK, which
# acct_stack_growth() holds a growing stack to.
STK_LIM = 8 << 20
# arch_randomize_brk(): start_brk lies up to 32 MiB above the program's bss.
BRK_RANGE = 0x02000000


# An ELF's segments lie within one span of addresses: the untouched pages between two
# regions of one file are at most its alignment of segments apart (max-page-size: 2 MiB
# for x86-64 binaries linked before binutils 2.31's -z separate-code, 4 KiB after).
ELF_GAP = 2 << 20


class Area(NamedTuple):
    start: int
    end: int
    prot: str          # "r--", "rw-", "r-x", "rwx"
    name: str          # text data heap stack mmap
    pages: int         # pages touched
    file: str = ""     # text and data: the ELF file (elf-<first address>), mapped private
    offset: int = 0    # the area's offset in it


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
    chunk by chunk; per page, the instruction whose load or store touched it first (the
    last fetch before that access: lackey writes an instruction's ``I`` line before its
    data lines; unknown before any fetch, or in a trace without fetches); and the
    trace's first fetch (its entry point)."""

    def __init__(self):
        self._pages = []
        self._bits = []
        self._first = []          # (pages, access index, instruction) per chunk
        self._seen = 0
        self._ip = -1
        self.entry = -1

    def add(self, addr, kind, size):
        n = len(addr)
        if not n:
            return
        pg = addr >> 12
        b = (np.uint8(1) << kind).astype(np.uint8)
        seq = np.arange(self._seen, self._seen + n, dtype=np.int64)
        self._seen += n
        fetch = np.flatnonzero(kind == 2)
        if len(fetch):
            at = np.full(n, -1, np.int64)
            at[fetch] = fetch
            np.maximum.accumulate(at, out=at)
            ip = np.where(at >= 0, addr[np.maximum(at, 0)], self._ip)
            if self.entry < 0:
                self.entry = int(addr[fetch[0]])
            self._ip = int(addr[fetch[-1]])
        else:
            ip = np.full(n, self._ip, np.int64)
        if size is not None and len(size):
            last = (addr + np.maximum(size, 1) - 1) >> 12
            cross = last != pg
            if cross.any():
                pg = np.concatenate([pg, last[cross]])
                b = np.concatenate([b, b[cross]])
                seq = np.concatenate([seq, seq[cross]])
                ip = np.concatenate([ip, ip[cross]])
        self._merge(pg, b)
        data = b != 4              # the pages data accesses touched first (not fetches)
        self._merge_first(pg[data], seq[data], ip[data])

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

    def _merge_first(self, pg, seq, ip):
        if len(pg) > 1:
            keep = np.concatenate(([True], pg[1:] != pg[:-1]))
            pg, seq, ip = pg[keep], seq[keep], ip[keep]
        order = np.lexsort((seq, pg))
        pg, seq, ip = pg[order], seq[order], ip[order]
        idx = _firsts(pg)
        self._first.append((pg[idx], seq[idx], ip[idx]))
        if len(self._first) > 8:
            self._compact_first()

    def _compact_first(self):
        if len(self._first) <= 1:
            return
        parts = self._first
        self._first = []
        self._merge_first(*(np.concatenate([f[i] for f in parts]) for i in range(3)))

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

    def first_touch(self):
        """Per page of :meth:`result`, the instruction whose load or store touched it
        first (-1: not known, or only fetched)."""
        self._compact_first()
        pages, _ = self.result()
        out = np.full(len(pages), -1, np.int64)
        if self._first:
            fp, _, fip = self._first[0]
            out[np.searchsorted(pages, fp)] = fip
        return out


def _prot(bits):
    w = "w" if bits & 2 else "-"
    x = "x" if bits & 4 else "-"
    return "r" + w + x


def _raw_areas(pages, bits, gap, toucher=None, entry=-1):
    """The regions' areas before naming: [start, end, bits, region, pages touched], and
    the index in it of the first area of the interpreter's heap (see _loader_heap), or -1."""
    gp = max(gap // PAGE, 1)
    cut = np.nonzero(np.diff(pages) > gp)[0] + 1
    regions = np.split(np.arange(len(pages)), cut)
    fetched = [bool((bits[idx] & 4).any()) for idx in regions]
    prog = fetched.index(True) if any(fetched) else -1
    loader = -1
    if entry >= 0 and toucher is not None:
        at = int(np.searchsorted(pages, entry >> 12))
        if at < len(pages) and pages[at] == entry >> 12:
            loader = int(np.searchsorted(cut, at, side="right"))
        if loader == prog or loader >= 0 and not fetched[loader]:
            loader = -1
    raw = []
    heap_at = -1
    for ri, idx in enumerate(regions):
        rp, rb = pages[idx], bits[idx]
        # An ELF's segments differ in rights (fetched / written / read); an anonymous
        # region (no fetch: heap, stack, mmap) is one area with the union of its rights.
        cls = (rb & 6) if fetched[ri] else np.zeros(len(rb), np.uint8)
        edges = np.nonzero(np.diff(cls))[0] + 1
        h = _loader_heap(rp, rb, toucher[idx]) if ri == loader else -1
        if h > 0:
            edges = np.union1d(edges, [h])
        starts = np.concatenate([[0], edges]).astype(np.int64)
        ends = np.concatenate([edges, [len(rp)]]).astype(np.int64)
        for s, e in zip(starts, ends):
            if s == h:
                heap_at = len(raw)
            end_page = rp[e] if e < len(rp) else rp[-1] + 1
            raw.append([int(rp[s]) * PAGE, int(end_page) * PAGE, int(np.bitwise_or.reduce(rb[s:e])),
                        ri, int(e - s)])
    return raw, heap_at


def _loader_heap(rp, rb, toucher):
    """Where the brk heap starts in the region of the trace's entry point, an
    interpreter Valgrind loaded above the program (the brk follows it): the index of
    the first page past its last fetched page that an instruction outside the region
    touched first, or -1. The interpreter does not use brk (elf/dl-minimal-malloc.c
    takes the rest of its last bss page, then mmaps): what it touched first past its
    text is its own data; the heap's pages are first touched by the program's malloc."""
    last_text = int(np.flatnonzero(rb & 4)[-1])
    lo, hi = int(rp[0]) * PAGE, (int(rp[-1]) + 1) * PAGE
    t = toucher[last_text + 1:]
    out = np.flatnonzero((t >= 0) & ((t < lo) | (t >= hi)))
    return last_text + 1 + int(out[0]) if len(out) else -1


def infer_areas(pages, bits, gap=GAP, toucher=None, entry=-1):
    """The areas (sorted by address) covering every touched user page; ``toucher``
    (per page, the instruction that first touched it, -1 unknown) and ``entry`` (the
    trace's first fetch) come from :class:`PageSet` and find the heap Valgrind puts
    after the interpreter."""
    user = (pages >= 0) & (pages < USER_TOP >> 12)
    pages, bits = pages[user], bits[user]
    if toucher is not None:
        toucher = toucher[user]
    if not len(pages):
        return []
    raw, heap_at = _raw_areas(pages, bits, gap, toucher, entry)
    nreg = raw[-1][3] + 1
    has_text = [False] * nreg
    written = [False] * nreg
    for a in raw:
        has_text[a[3]] |= bool(a[2] & 4)
        written[a[3]] |= bool(a[2] & 2)
    text_regions = [i for i in range(nreg) if has_text[i]]
    prog = text_regions[0] if text_regions else -1
    top = [a for a in raw if a[3] == nreg - 1]
    stack = nreg - 1 if written[nreg - 1] and not has_text[nreg - 1] and \
        top[-1][1] - top[0][0] <= STK_LIM else -1
    elf = _elf_objects(raw, stack, heap_at)
    heap = _brk_heap(raw, has_text, written, prog, stack, heap_at, elf)
    out = []
    for i, (start, end, b, ri, n) in enumerate(raw):
        if i in heap:
            if i == heap[0]:             # one brk VMA, rw- (do_brk_flags: VM_DATA_DEFAULT_FLAGS)
                last = raw[heap[-1]]
                out.append(Area(start, last[1], "rw-", "heap", sum(raw[j][4] for j in heap)))
            continue
        if ri == stack:
            out.append(Area(start, end, _prot(b), "stack", n))
        elif elf[i] >= 0:
            out.append(Area(start, end, _prot(b), "text" if b & 4 else "data", n,
                            f"elf-{elf[i]:08x}", start - elf[i]))
        else:
            out.append(Area(start, end, _prot(b), "mmap", n))
    return out


def _elf_objects(raw, stack, heap_at):
    """Per raw area, the first address of the ELF object it is a segment of (-1: none).
    ld.so maps an object's PT_LOAD segments in order: headers and read-only data (r--),
    text (r-x), read-only data (r--), data and bss (rw-), the next object right after;
    so an object is an optional r-- area, one or more fetched areas, any r-- areas, an
    optional rw- area, each within ELF_GAP of the one before (pages in between not
    touched: python3.11's .data lies 1.2 MiB past its last touched text page). Other
    areas (an rw- area after an object's data, r-- areas not followed by text) are
    not an object's: anonymous or file mappings the program made."""
    elf = [-1] * len(raw)
    state, base, pending = "none", -1, -1
    prev_end = None
    for i, (start, end, b, ri, n) in enumerate(raw):
        if ri == stack or (heap_at >= 0 and i >= heap_at and ri == raw[heap_at][3]):
            state, pending, prev_end = "none", -1, None
            continue
        if prev_end is not None and start - prev_end > ELF_GAP:
            state, pending = "none", -1
        prev_end = end
        if b & 4:
            if state != "text":
                # A new object: at its header area when that came right before.
                base = raw[pending][0] if pending >= 0 else start
                if pending >= 0:
                    elf[pending] = base
                pending = -1
            elf[i] = base
            state = "text"
        elif b & 2:
            if state in ("text", "rodata"):
                elf[i] = base
            state, pending = "none", -1
        else:
            if state in ("text", "rodata"):
                elf[i] = base
                state = "rodata"
            else:
                pending = i
                state = "header"
    return elf


def _brk_heap(raw, has_text, written, prog, stack, heap_at=-1, elf=None):
    """The raw areas (indices, ascending) of the brk heap, or []: the lowest of
      - the region right above the program's ELF object (``elf``), when written
        and without text, starting within BRK_RANGE of it (load_elf_binary puts
        start_brk after the bss, arch_randomize_brk up to 32 MiB higher);
      - the tail of the interpreter's region from ``heap_at`` (_loader_heap), when written;
      - the written tail of the program's region, or of the first ELF region above it
        (where Valgrind loads the interpreter, the brk following it), past the rw-
        area that follows that region's last text area (an ELF's last segment)."""
    if prog < 0:
        return []
    by_region = {}
    for i, a in enumerate(raw):
        by_region.setdefault(a[3], []).append(i)
    regions = sorted(by_region)
    # The program's object may reach into regions above its first (untouched pages
    # between its segments).
    base = elf[by_region[prog][0]] if elf is not None else -1
    mine = [ri for ri in regions if ri == prog or base >= 0 and elf[by_region[ri][0]] == base]
    above = [ri for ri in regions if ri > mine[-1] and ri != stack]
    cands = []
    prog_end = raw[by_region[mine[-1]][-1]][1]
    if above and not has_text[above[0]] and written[above[0]] and \
            raw[by_region[above[0]][0]][0] - prog_end <= BRK_RANGE:
        cands.append(by_region[above[0]])
    if heap_at >= 0:
        tail = by_region[raw[heap_at][3]]
        tail = tail[tail.index(heap_at):]
        if any(raw[i][2] & 2 for i in tail):
            cands.append(tail)
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
        f = f", file-backed ({a.file} +{a.offset:#x})" if a.file else ""
        lines.append(f"{a.start:08x}-{a.end:08x} {perm} {a.name:<6} "
                     f"{(a.end - a.start) >> 10:>8} kB, {a.pages} pages touched{f}")
    return "\n".join(lines)
