"""The debug checker: CONFIG_DEBUG_VM, CONFIG_PAGE_TABLE_CHECK and friends (mm/debug.c,
mm/page_table_check.c, the VM_BUG_ON*s scattered through mm/).

Linux checks its invariants piecemeal as it changes state (page_table_check counts
anon/file mappings per page at every set_pte_at/ptep_clear; VM_BUG_ON_FOLIO guards
refcounts and the LRU; check_mm() at mm teardown compares the RSS counters and
pgtables_bytes with zero). vmsim instead recomputes everything from the raw state
after every syscall and access (VMSIM_DEBUG_VM=1): it walks the mms' tables from the
PGD, collects each leaf entry, and derives from them alone what the counters,
refcounts, mapcounts, RSS and vmstat must be, then compares. A violation raises
AssertionError naming the mm, address, PFN and the expected vs found values.

Like the kernel's checks, the pass after a call looks at what the call changed: it
walks again only the mms it touched (the caller's, new ones, those whose VMAs or
counters changed, the owners of every page-table row that changed, found by comparing
the table pool with a copy kept by the checker, so the model itself pays nothing) and
reuses the last walks of the others; the frame, free-list, LRU and page-cache checks
cover the whole initialised mem_map every time (vectorized, their cost does not grow
with the number of processes). A full pass (every mm walked) runs every
``VMChecker.full_every`` passes and on every ``check_all`` / ``Machine.check()``.

Sources of page references the checker knows: PTEs (one reference and one mapcount
each; the zero page and special PFN mappings none), page-cache slots (one each,
every registered address_space), per-CPU LRU batches (swap.batch_refs), live
mmu_gathers (mmu_gather.gather_refs), plus any function appended to
``EXTRA_REF_SOURCES`` (k -> {pfn: refs}) by later code (GUP pins, mlock batches).
Huge PMD/PUD leaves are walked and checked for permissions and frame state; their
mapcount convention belongs to the THP issue (``PMD_MAPCOUNT`` below).
"""
import numpy as np

from vmsim.mm._gap_tree import _check_gap_tree
from vmsim.fs.sysfs import SYSCTL_VARS

from vmsim.arch.x86 import pgtable_types as T
from vmsim.mm import vmstat, _buddy
from vmsim.mm.page_alloc import _deferred_free_ranges
from vmsim.mm.mm_types import (VM_READ, VM_WRITE, VM_HUGETLB, VM_MAYSHARE, VM_EXEC, VM_SHARED, VM_PFNMAP, VM_MIXEDMAP,
                               MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES)
from vmsim.mm.page_flags import (PG_anon, PG_anon_exclusive, PG_lru, PG_reserved, PG_tail,
                                 PG_head, PG_swapbacked, PG_active, PG_unevictable, PGTY_table,
                                 PGTY_buddy, PG_ORDER_MASK, PG_ORDER_SHIFT, PG_dirty, PGTY_hugetlb,
                                 PG_large_rmappable, PG_partially_mapped, PG_uptodate)

__all__ = ["check_all", "check_mm", "VMChecker", "after_syscall", "EXTRA_REF_SOURCES",
           "MAX_REPORTED", "FULL_EVERY"]

EXTRA_REF_SOURCES = []      # callables k -> {pfn: references} for later reference holders
MAX_REPORTED = 20            # violations listed in one AssertionError
PMD_MAPCOUNT = None          # THP issue: how a PMD leaf counts in mem.mapcount

_P = T._PAGE_PRESENT
_PROTNONE = T._PAGE_PROTNONE
_RW = T._PAGE_RW
_USER = T._PAGE_USER
_PSE = T._PAGE_PSE
_SPECIAL = T._PAGE_SPECIAL
_PFN = T.PTE_PFN_MASK
_TABLE_BITS = T._PAGE_PRESENT | T._PAGE_RW | T._PAGE_USER
_LEVEL_SIZE = {"pud": 1 << 30, "pmd": 1 << 21}


class _Report:
    """Collects violations and raises them together."""

    def __init__(self):
        self.msgs = []
        self.total = 0

    def __call__(self, msg):
        self.total += 1
        if len(self.msgs) < MAX_REPORTED:
            self.msgs.append(msg)

    def raise_if_any(self):
        if self.msgs:
            more = f"\n  ... and {self.total - len(self.msgs)} more" if self.total > len(self.msgs) else ""
            raise AssertionError(f"debug_vm: {self.total} violation(s):\n  " +
                                 "\n  ".join(self.msgs) + more)


def _mmname(mm):
    owner = getattr(mm, "owner", None)
    pid = getattr(owner, "pid", None)
    return f"mm(pid {pid})" if pid is not None else f"mm@{id(mm):#x}"


# --- the free frames -----------------------------------------------------------------
def _check_list(nxt, prv, head, tail, i, limit, rep, what):
    """Walk list ``i`` (heads and tails in ``head`` / ``tail``, links in lru_next /
    lru_prev) as CONFIG_DEBUG_LIST's __list_add_valid / __list_del_entry_valid would
    find it: each node's prev is the node before it, the tail is the last node, no
    cycle. Returns the PFNs from the head."""
    out = []
    p, before = head[i], 0
    while p:
        if len(out) > limit:
            rep(f"{what}: a cycle (more than {limit} entries)")
            return out
        if prv[p] != before:
            rep(f"{what}: pfn {p:#x} has prev {prv[p]:#x}, expected {before:#x}")
            return out
        out.append(p)
        before, p = p, nxt[p]
    if tail[i] != before:
        rep(f"{what}: tail = {tail[i]:#x}, the last entry is {before:#x}")
    return out


def _walk_known(nxt, prv, np_nxt, np_prv, head, tail, i, limit, known):
    """_check_list's walk of list ``i`` when it is clean, reusing ``known`` (the PFNs
    of an earlier clean walk of this list, vmsim-only): the nodes from the head are
    followed one by one until the first node of the part of ``known`` whose links are
    all as they were (lru_next to the next node, lru_prev to the one before, the last
    node's lru_next 0 and the list's tail); from there the walk would read exactly
    those links, so it is taken at once. Returns the PFNs (int64 array), or None
    where _check_list would report (the caller runs it then)."""
    n = len(known)
    if n < 32:                           # short: the plain walk is cheaper
        failed = []
        out = _check_list(nxt, prv, head, tail, i, limit, failed.append, "")
        return None if failed else np.array(out, np.int64)
    # j: the first index of known's intact suffix (n if even its end changed)
    if tail[i] != known[-1] or np_nxt[known[-1]] != 0:
        j = n
    else:
        bad = (np_nxt[known[:-1]] != known[1:]) | (np_prv[known[1:]] != known[:-1])
        nb = np.flatnonzero(bad)
        j = int(nb[-1]) + 1 if len(nb) else 0
    target = int(known[j]) if j < n else -1
    out = []
    p, before = head[i], 0
    while p:
        if p == target and prv[p] == before:
            if len(out) + n - j - 1 > limit:
                return None
            return np.concatenate((np.array(out, np.int64), known[j:]))
        if len(out) > limit or prv[p] != before:
            return None
        out.append(p)
        before, p = p, nxt[p]
    if tail[i] != before:
        return None
    return np.array(out, np.int64)


class _FreeSet:
    """Free frames as sorted disjoint intervals [start, end) (buddy, pcp, never used)."""

    def __init__(self, k, rep, known=None):
        if self._clean(k, {} if known is None else known):
            return
        pa = k.page_alloc
        flags = k.mem.np_flags
        S, E, L = [], [], []        # starts, ends, label indexes (arrays per list)
        labels = ["buddy", "deferred"]

        def add(starts, size, label):
            S.append(starts)
            E.append(starts + size)
            L.append(np.full(len(starts), label, np.int64))

        nxt, prv = k.mem.lru_next, k.mem.lru_prev
        nbuddy = 0
        for z in pa.zones:
            zfree = 0
            # Lists with a head or a tail (an empty list, head = tail = 0, checks nothing).
            used = set(np.flatnonzero((z.fl_head != 0) | (z.fl_tail != 0)).tolist())
            for order in range(len(z.nr_free)):
                n = 0
                for mt in range(_buddy.NR_MIGRATETYPES):
                    i = order * _buddy.NR_MIGRATETYPES + mt
                    if i not in used:
                        continue
                    blocks = _check_list(nxt, prv, z.flh, z.flt, i, k.nr_pages, rep,
                                         f"free_area[{order}][{mt}] of zone {z.name}")
                    if not blocks:
                        continue
                    b = np.array(blocks, np.int64)
                    f = flags[b].astype(np.int64)
                    for j in np.flatnonzero(((f & PGTY_buddy) == 0) |
                                            (((f & PG_ORDER_MASK) >> PG_ORDER_SHIFT) != order))[:5].tolist():
                        rep(f"buddy: pfn {int(b[j]):#x} on free_area[{order}][{mt}] of zone {z.name} "
                            f"has flags {int(f[j]):#x} (expected PGTY_buddy with order {order})")
                    # A free block sits on its pageblock's migratetype list.
                    bmt = pa.pageblock_mt[b >> _buddy.pageblock_order]
                    for j in np.flatnonzero(bmt != mt)[:3].tolist():
                        rep(f"buddy: pfn {int(b[j]):#x} on free_area[{order}][{mt}] of zone {z.name} "
                            f"but its pageblock is {int(bmt[j])}")
                    # __free_one_page() leaves no free buddy of the same order unmerged.
                    if order < _buddy.MAX_PAGE_ORDER:
                        bud = b ^ (1 << order)
                        inz = (bud >= z.zone_start_pfn) & (bud < z.deferred_pfn)
                        bf = flags[np.where(inz, bud, 0)].astype(np.int64)
                        mrg = inz & ((bf & PGTY_buddy) != 0) & \
                            (((bf & PG_ORDER_MASK) >> PG_ORDER_SHIFT) == order)
                        for j in np.flatnonzero(mrg)[:3].tolist():
                            rep(f"buddy: free order-{order} blocks {int(b[j]):#x} and "
                                f"{int(bud[j]):#x} of zone {z.name} are buddies left unmerged")
                    add(b, 1 << order, 0)
                    n += len(b)
                zfree += n << order
                nbuddy += n
                if z.nr_free[order] != n:
                    rep(f"buddy: zone {z.name} nr_free[{order}] = {z.nr_free[order]}, lists hold {n}")
            for cpu, pcp in enumerate(z.pcp):
                cnt = 0
                labels.append(f"pcp[{cpu}]")
                used = np.flatnonzero((pcp.head != 0) | (pcp.tail != 0)).tolist()
                for pindex in used:
                    lst = _check_list(nxt, prv, pcp.h, pcp.t, pindex, k.nr_pages, rep,
                                      f"pcp list {pindex} of zone {z.name} cpu {cpu}")
                    if not lst:
                        continue
                    order = pa._pindex_order(pindex)
                    b = np.array(lst, np.int64)
                    for j in np.flatnonzero(flags[b] != 0)[:3].tolist():
                        rep(f"pcp: pfn {int(b[j]):#x} on pcp list {pindex} of zone {z.name} "
                            f"cpu {cpu} has flags {int(flags[b[j]]):#x}")
                    add(b, 1 << order, len(labels) - 1)
                    cnt += len(lst) << order
                if cnt != pcp.count:
                    rep(f"pcp: zone {z.name} cpu {cpu} count = {pcp.count}, lists hold {cnt} pages")
                zfree += cnt
            for lo, hi in _deferred_free_ranges(z):
                add(np.array([lo], np.int64), hi - lo, 1)
                zfree += hi - lo
            if zfree != z.free_pages:
                rep(f"zone {z.name}: free_pages = {z.free_pages}, free lists + pcp + never-used "
                    f"hold {zfree}")
        marked = sum(int(np.count_nonzero(flags[z.zone_start_pfn:z.deferred_pfn] & PGTY_buddy))
                     for z in pa.zones)
        if marked != nbuddy:
            rep(f"buddy: {marked} frames have PGTY_buddy, the free lists hold {nbuddy} blocks")
        if S:
            starts, ends, lab = np.concatenate(S), np.concatenate(E), np.concatenate(L)
            o = np.argsort(starts, kind="stable")
            starts, ends, lab = starts[o], ends[o], lab[o]
        else:
            starts = ends = lab = np.zeros(0, np.int64)
        for i in np.flatnonzero(starts[1:] < ends[:-1])[:5].tolist():
            rep(f"double free: [{int(starts[i]):#x}, {int(ends[i]):#x}) ({labels[lab[i]]}) overlaps "
                f"[{int(starts[i + 1]):#x}, {int(ends[i + 1]):#x}) ({labels[lab[i + 1]]})")
        self.labels = labels
        self.lab = lab
        self.starts = starts
        self.ends = ends

    def _clean(self, k, known):
        """The same checks as __init__'s, over all lists of a zone at once; True (and the
        intervals set) if none fails. On any failure __init__'s list-by-list pass runs
        and reports, so the messages and their order are its own. ``known``: the lists
        as the last clean pass found them (_walk_known), updated here."""
        pa = k.page_alloc
        flags = k.mem.np_flags
        nxt, prv = k.mem.lru_next, k.mem.lru_prev
        np_nxt, np_prv = k.mem.np_lru_next, k.mem.np_lru_prev
        nmt = _buddy.NR_MIGRATETYPES
        empty = np.zeros(0, np.int64)
        S, E, L = [], [], []
        labels = ["buddy", "deferred"]
        nbuddy = 0
        for zi, z in enumerate(pa.zones):
            norders = len(z.nr_free)
            used = np.flatnonzero((z.fl_head[:norders * nmt] != 0) | (z.fl_tail[:norders * nmt] != 0))
            blocks, lens = [], []
            for i in used.tolist():
                b = _walk_known(nxt, prv, np_nxt, np_prv, z.flh, z.flt, i, k.nr_pages,
                                known.get((zi, -1, i), empty))
                if b is None:
                    return False
                known[(zi, -1, i)] = b
                blocks.append(b)
                lens.append(len(b))
            zfree = 0
            if not sum(lens):
                if np.asarray(z.np_nr_free[:norders]).any():
                    return False
            else:
                b = np.concatenate(blocks)
                li = np.repeat(used, lens)
                order, mt = li // nmt, li % nmt
                f = flags[b].astype(np.int64)
                bud = b ^ (1 << order)
                inz = (order < _buddy.MAX_PAGE_ORDER) & (bud >= z.zone_start_pfn) & (bud < z.deferred_pfn)
                bf = flags[np.where(inz, bud, 0)].astype(np.int64)
                if (((f & PGTY_buddy) == 0) | (((f & PG_ORDER_MASK) >> PG_ORDER_SHIFT) != order) |
                        (pa.pageblock_mt[b >> _buddy.pageblock_order] != mt) |
                        (inz & ((bf & PGTY_buddy) != 0) &
                         (((bf & PG_ORDER_MASK) >> PG_ORDER_SHIFT) == order))).any():
                    return False
                per_order = np.bincount(order, minlength=norders)
                if (per_order[:norders] != np.asarray(z.np_nr_free[:norders])).any():
                    return False
                S.append(b)
                E.append(b + (np.int64(1) << order))
                L.append(np.zeros(len(b), np.int64))
                zfree = int((per_order << np.arange(len(per_order))).sum())
                nbuddy += len(b)
            for cpu, pcp in enumerate(z.pcp):
                labels.append(f"pcp[{cpu}]")
                cnt = 0
                for pindex in np.flatnonzero((pcp.head != 0) | (pcp.tail != 0)).tolist():
                    b = _walk_known(nxt, prv, np_nxt, np_prv, pcp.h, pcp.t, pindex, k.nr_pages,
                                    known.get((zi, cpu, pindex), empty))
                    if b is None:
                        return False
                    known[(zi, cpu, pindex)] = b
                    if not len(b):
                        continue
                    lst = b
                    if (flags[b] != 0).any():
                        return False
                    size = 1 << pa._pindex_order(pindex)
                    S.append(b)
                    E.append(b + size)
                    L.append(np.full(len(b), len(labels) - 1, np.int64))
                    cnt += len(lst) * size
                if cnt != pcp.count:
                    return False
                zfree += cnt
            for lo, hi in _deferred_free_ranges(z):
                S.append(np.array([lo], np.int64))
                E.append(np.array([hi], np.int64))
                L.append(np.ones(1, np.int64))
                zfree += hi - lo
            if zfree != z.free_pages:
                return False
        marked = sum(int(np.count_nonzero(flags[z.zone_start_pfn:z.deferred_pfn] & PGTY_buddy))
                     for z in pa.zones)
        if marked != nbuddy:
            return False
        if not S:
            return False
        starts, ends, lab = np.concatenate(S), np.concatenate(E), np.concatenate(L)
        o = np.argsort(starts, kind="stable")
        starts, ends, lab = starts[o], ends[o], lab[o]
        if (starts[1:] < ends[:-1]).any():
            return False
        self.labels = labels
        self.lab = lab
        self.starts = starts
        self.ends = ends
        return True

    def mask(self, pfns):
        """Return a bool array: which of ``pfns`` are free."""
        pfns = np.asarray(pfns, dtype=np.int64)
        if not len(self.starts) or not len(pfns):
            return np.zeros(len(pfns), dtype=bool)
        i = np.searchsorted(self.starts, pfns, side="right") - 1
        ok = i >= 0
        ic = np.where(ok, i, 0)
        return ok & (pfns < self.ends[ic])

    def overlaps(self, lo, hi):
        i = int(np.searchsorted(self.starts, hi)) - 1
        return i >= 0 and self.ends[i] > lo

    def where(self, pfn):
        i = int(np.searchsorted(self.starts, pfn, side="right")) - 1
        return self.labels[self.lab[i]] if i >= 0 and pfn < self.ends[i] else None


def _scan_ranges(k):
    """Frame ranges that may hold non-zero mem_map state: initialised zone parts and
    reserved ranges (frames above zone.deferred_pfn were never touched)."""
    pa = k.page_alloc
    rs = [(0, min(256, k.nr_pages))] + [(lo, hi) for lo, hi in pa.reserved]
    rs += [(z.zone_start_pfn, z.deferred_pfn) for z in pa.zones]
    rs.sort()
    out = []
    for lo, hi in rs:
        if lo >= hi:
            continue
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _nonzero_frames(k, ranges):
    """Non-reserved PFNs in ``ranges`` with any of refcount, mapcount, private, mapping,
    PG_lru, PGTY_table, PG_tail, PGTY_hugetlb set."""
    m = k.mem
    parts = []
    for lo, hi in ranges:
        f = m.np_flags[lo:hi]
        sel = ((m.np_refcount[lo:hi] != 0) | (m.np_mapcount[lo:hi] != 0) |
               (m.np_private[lo:hi] != 0) | (m.np_mapping[lo:hi] != 0) |
               ((f & (PG_lru | PGTY_table | PG_tail | PGTY_hugetlb)) != 0)) & ((f & PG_reserved) == 0)
        parts.append(np.flatnonzero(sel) + lo)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


# --- walking one mm --------------------------------------------------------------------
class _MMWalk:
    """What the tables of one mm hold: leaves, tables, counts."""

    def __init__(self, mm):
        self.mm = mm
        self.addrs = np.zeros(0, dtype=np.int64)
        self.ptes = np.zeros(0, dtype=np.int64)
        self.tables = []            # (pfn, level, va)
        self.nr_accounted = 0       # PTE + PMD + PUD tables (mm_pgtables_bytes)
        self.huge = []              # (level, va, entry)
        self.normal_pfns = np.zeros(0, dtype=np.int64)
        self.normal_writable = np.zeros(0, dtype=bool)
        self.normal_addrs = np.zeros(0, dtype=np.int64)
        self.normal_heads = np.zeros(0, dtype=np.int64)
        self.pmd_folios = []
        self.huge_ptr = []          # pool index of each huge entry
        self.nr_deposited = 0       # tables on its PMD tables' deposit lists


def _levels(k):
    if k.la57:
        return (("pgd", 48), ("p4d", 39), ("pud", 30), ("pmd", 21), ("pte", 12))
    return (("pgd", 39), ("pud", 30), ("pmd", 21), ("pte", 12))


def _is_hugetlb_va(mm, va) -> bool:
    """Is va in a hugetlb VMA (whose huge entries are not THPs)?"""
    v = mm.vma_lookup(va)
    return v is not None and bool(v.vm_flags & VM_HUGETLB)


def _heads(k, pfns):
    """page_folio() of each PFN (tail pages of large folios: their head)."""
    return _folio_heads(k.mem, pfns)


def _walk_tables(k, mm, rep, table_owner):
    """Walk the user half of mm's tables; return an _MMWalk."""
    w = _MMWalk(mm)
    arr = k.ptpool.arr
    rows = k.mem.np_private
    flags = k.mem.np_flags
    refc = k.mem.np_refcount
    slot_pfn = k.ptpool.slot_pfn
    levels = _levels(k)
    name = _mmname(mm)
    addr_parts, pte_parts = [], []

    def table(pfn, level, va, parent_entry_desc):
        if not 0 <= pfn < k.nr_pages:
            rep(f"{name}: {parent_entry_desc} points at pfn {pfn:#x} beyond RAM")
            return -1
        f = int(flags[pfn])
        if not f & PGTY_table:
            rep(f"{name}: {level} table for va {va:#x} at pfn {pfn:#x} is not PGTY_table "
                f"(flags {f:#x})")
            return -1
        if f & PG_reserved:
            rep(f"{name}: {level} table for va {va:#x} at pfn {pfn:#x} is a boot (reserved) table")
        prev = table_owner.get(pfn)
        if prev is not None and level == "pmd" and k.ptpool.pt_share_count[int(rows[pfn])] > 0:
            prev = None                  # a hugetlb PMD table shared by huge_pmd_share()
        if prev is not None:
            rep(f"{name}: {level} table pfn {pfn:#x} for va {va:#x} is also the table of "
                f"{_mmname(prev[0])} at va {prev[1]:#x}")
        table_owner[pfn] = (mm, va)
        if refc[pfn] != 1:
            rep(f"{name}: {level} table pfn {pfn:#x} (va {va:#x}) refcount expected 1, found {refc[pfn]}")
        row = int(rows[pfn])
        if not 0 <= row < len(slot_pfn) or slot_pfn[row] != pfn:
            rep(f"{name}: {level} table pfn {pfn:#x} has row {row} owned by pfn "
                f"{slot_pfn[row] if 0 <= row < len(slot_pfn) else None}")
            return -1
        w.tables.append((pfn, level, va))
        if level in ("pte", "pmd", "pud"):
            w.nr_accounted += 1
        return row * 512

    def descend(base, li, va0, lo_idx, hi_idx):
        lname, shift = levels[li]
        ents = arr[base + lo_idx:base + hi_idx]
        nz = np.flatnonzero(ents)
        if lname == "pte":
            if len(nz):
                addr_parts.append(va0 + ((nz + lo_idx).astype(np.int64) << 12))
                pte_parts.append(ents[nz].copy())
            return
        for i in nz.tolist():
            e = int(ents[i])
            va = va0 + ((i + lo_idx) << shift)
            desc = f"{lname} entry for va {va:#x} ({e & 0xFFFFFFFFFFFFFFFF:#x})"
            if e & _PSE and lname in ("pud", "pmd"):
                w.huge.append((lname, va, e))
                w.huge_ptr.append(base + lo_idx + i)
                continue
            if e & _PSE:
                rep(f"{name}: {desc} has PS set at {lname} level (reserved bit)")
                continue
            if (e & _TABLE_BITS) != _TABLE_BITS:
                rep(f"{name}: {desc} is not a user table entry (expected P|RW|USER)")
                continue
            nb = table((e & _PFN) >> 12, levels[li + 1][0], va, desc)
            if nb >= 0:
                descend(nb, li + 1, va, 0, 512)

    if mm.pgd < 0:
        return w
    pgd_base = table(mm.pgd, "pgd", 0, "cr3")
    if pgd_base < 0:
        return w
    if pgd_base != mm.pgd_ptr:
        rep(f"{name}: pgd_ptr {mm.pgd_ptr} does not match the PGD pfn {mm.pgd:#x}'s row")
    kern = k.init_mm.pgd_ptr
    if k.init_mm is not mm and not np.array_equal(arr[pgd_base + 256:pgd_base + 512],
                                                  arr[kern + 256:kern + 512]):
        i = int(np.flatnonzero(arr[pgd_base + 256:pgd_base + 512] != arr[kern + 256:kern + 512])[0])
        rep(f"{name}: kernel-half PGD entry {256 + i} differs from init_mm's")
    descend(pgd_base, 0, 0, 0, 256)
    # Deposited PTE tables of huge PMDs (pgtable_trans_huge_deposit): one per anon huge
    # PMD, on its PMD table's list (pmd_huge_pte: the table's lru_prev, the tables
    # linked through their lru; mm/pgtable_generic.py), accounted in pgtables_bytes,
    # owned by this mm, empty. A page-cache folio's PMD has none (x86:
    # arch_needs_pgtable_deposit() is false), nor has a hugetlb PMD.
    want = {}
    for ptr, (lv, va, _e) in zip(w.huge_ptr, w.huge):
        if lv == "pmd" and not _is_hugetlb_va(mm, va) and not _is_file_pmd(k, _e):
            want.setdefault(ptr >> 9, []).append(va)
    nxt, prv = k.mem.np_lru_next, k.mem.np_lru_prev
    for pfn, lv, va in [t for t in w.tables if t[1] == "pmd"]:
        vas = want.get(int(rows[pfn]), [])
        head = int(prv[pfn])
        got = []
        t = head
        while t and len(got) <= 512:
            if not 0 < t < k.nr_pages or int(prv[int(nxt[t])]) != t:
                rep(f"{name}: PMD table pfn {pfn:#x} (va {va:#x}): its list of deposited "
                    f"tables is broken at pfn {t:#x}")
                break
            got.append(t)
            t = int(nxt[t])
            if t == head:
                break
        if len(got) != len(vas):
            rep(f"{name}: PMD table pfn {pfn:#x} (va {va:#x}) has {len(got)} deposited PTE "
                f"tables for {len(vas)} anonymous huge PMDs")
        for t in got:
            at = vas[0] if vas else va
            table(t, "pte", at, f"deposited table of the huge PMDs at {at:#x}")
            r = int(rows[t]) * 512
            if arr[r:r + 512].any():
                rep(f"{name}: deposited PTE table pfn {t:#x} (PMD table {pfn:#x}) is not empty")
        w.nr_deposited += len(got)
    if addr_parts:
        w.addrs = np.concatenate(addr_parts)
        w.ptes = np.concatenate(pte_parts)
    return w


def _is_file_pmd(k, e: int) -> bool:
    """Does this huge PMD map a page-cache folio (do_set_pmd), not an anon THP or the
    huge zero folio?"""
    p = (e & _PFN) >> 12
    if p == getattr(k, "huge_zero_pfn", -1) or p >= k.nr_pages:
        return False
    return not k.mem.flags[p] & PG_anon


def _vma_arrays(mm):
    vmas = list(mm.mm_mt)
    starts = np.array([v.vm_start for v in vmas], dtype=np.int64)
    ends = np.array([v.vm_end for v in vmas], dtype=np.int64)
    vflags = np.array([v.vm_flags for v in vmas], dtype=np.int64)
    return vmas, starts, ends, vflags


def _check_vma_tree(k, mm, rep):
    name = _mmname(mm)
    vmas = mm.mm_mt
    if len(vmas) != len(mm.mm_mt_ends):
        rep(f"{name}: VMA tree has {len(vmas)} VMAs and {len(mm.mm_mt_ends)} keys")
    if mm.map_count != len(vmas):
        rep(f"{name}: map_count = {mm.map_count}, tree holds {len(vmas)} VMAs")
    total = 0
    prev_end = -1
    for i, v in enumerate(vmas):
        if v.vm_start & 0xFFF or v.vm_end & 0xFFF or v.vm_start >= v.vm_end:
            rep(f"{name}: bad VMA bounds {v!r}")
        if v.vm_start < prev_end:
            rep(f"{name}: VMA {v!r} overlaps or is out of order with the previous one")
        if i < len(mm.mm_mt_ends) and mm.mm_mt_ends[i] != v.vm_end:
            rep(f"{name}: tree key {mm.mm_mt_ends[i]:#x} != vm_end of {v!r}")
        if v.vm_mm is not mm:
            rep(f"{name}: VMA {v!r} belongs to {_mmname(v.vm_mm)}")
        if v.detached:
            rep(f"{name}: VMA {v!r} in the tree is marked detached")
        av = v.anon_vma
        if av is not None:
            if k.objects[av.id] is not av:
                rep(f"{name}: VMA {v!r} has anon_vma id {av.id} that is not registered")
            if not any(c.anon_vma is av for c in v.anon_vma_chain):
                rep(f"{name}: VMA {v!r} has no anon_vma_chain link to its anon_vma {av.id}")
        elif v.anon_vma_chain and not v.vm_flags & VM_SHARED:
            # unlink_anon_vmas clears both; anon_vma_fork/clone set both.
            rep(f"{name}: VMA {v!r} has anon_vma_chain links but no anon_vma")
        for c in v.anon_vma_chain:
            if c.vma is not v or all(c is not x for x in c.anon_vma.rb_root):
                rep(f"{name}: VMA {v!r}: anon_vma_chain link to anon_vma {c.anon_vma.id} is not "
                    f"in that anon_vma's tree")
            elif k.objects[c.anon_vma.id] is not c.anon_vma:
                rep(f"{name}: VMA {v!r} is chained to a freed anon_vma")
        prev_end = v.vm_end
        total += (v.vm_end - v.vm_start) >> 12
    if mm.total_vm != total:
        rep(f"{name}: total_vm = {mm.total_vm}, VMAs span {total} pages")
    _check_gap_tree(mm, rep, name)


def _first(mask):
    return int(np.flatnonzero(mask)[0])


def _check_leaves(k, w, rep, free):
    """Check one mm's leaf entries against its VMAs, frames and RSS counters."""
    mm = w.mm
    name = _mmname(mm)
    mem = k.mem
    addrs, ptes = w.addrs, w.ptes
    vmas, starts, ends, vflags_v = _vma_arrays(mm)
    n = len(vmas)
    if len(addrs):
        idx = np.searchsorted(ends, addrs, side="right") if n else np.zeros(len(addrs), np.int64)
        idxc = np.minimum(idx, max(n - 1, 0))
        inside = (idx < n) & (starts[idxc] <= addrs) if n else np.zeros(len(addrs), bool)
    else:
        idx = idxc = np.zeros(0, dtype=np.int64)
        inside = np.zeros(0, dtype=bool)
    for i in np.flatnonzero(~inside)[:5].tolist():
        e = int(ptes[i])
        rep(f"{name}: PTE at {int(addrs[i]):#x} ({e & 0xFFFFFFFFFFFFFFFF:#x}, pfn {(e & _PFN) >> 12:#x}) "
            f"lies outside any VMA")
    # Only entries inside VMAs are checked further (the rest is already reported).
    addrs, ptes, idxc = addrs[inside], ptes[inside], idxc[inside]
    vfl = vflags_v[idxc] if n else np.zeros(0, dtype=np.int64)
    present = (ptes & (_P | _PROTNONE)) != 0
    hw = (ptes & _P) != 0
    pfns = (ptes & _PFN) >> 12

    def bad(mask, what):
        for i in np.flatnonzero(mask)[:3].tolist():
            e = int(ptes[i])
            rep(f"{name}: PTE at {int(addrs[i]):#x} (pfn {int(pfns[i]):#x}, "
                f"{T.decode_flags(e)}) in {vmas[idxc[i]]!r}: {what}")

    bad(present & ((ptes & _RW) != 0) & ((vfl & VM_WRITE) == 0),
        "writable (RW) in a VMA without VM_WRITE")
    bad(hw & ((vfl & (VM_READ | VM_WRITE | VM_EXEC)) == 0),
        "present in a PROT_NONE VMA")
    bad(hw & (ptes >= 0) & ((vfl & VM_EXEC) == 0),
        "executable (NX clear) in a VMA without VM_EXEC")
    bad(hw & ((ptes & _USER) == 0), "user PTE without _PAGE_USER")
    zero = present & (pfns == k.zero_pfn)
    bad(zero & ((ptes & _SPECIAL) == 0), "maps the zero page without _PAGE_SPECIAL")
    bad(zero & ((ptes & _RW) != 0), "maps the zero page writable")
    special = ((ptes & _SPECIAL) != 0) | ((vfl & (VM_PFNMAP | VM_MIXEDMAP)) != 0)
    sp = present & special & ~zero & (pfns < k.nr_pages)
    if sp.any():
        bad(sp & free.mask(pfns), "special PFN mapping of a free frame")
    normal = present & ~special
    bad(normal & (pfns >= k.nr_pages), "maps a PFN beyond RAM")
    normal &= pfns < k.nr_pages
    npfn = pfns[normal]
    naddr = addrs[normal]
    nptes = ptes[normal]
    nidx = idxc[normal]
    fl = mem.np_flags[npfn]
    if len(npfn):
        isfree = free.mask(npfn)
        for i in np.flatnonzero(isfree)[:5].tolist():
            p = int(npfn[i])
            rep(f"{name}: PTE at {int(naddr[i]):#x} maps pfn {p:#x}, which is free ({free.where(p)})")
        for i in np.flatnonzero((fl & (PG_reserved | PGTY_table | PGTY_buddy)) != 0)[:5].tolist():
            rep(f"{name}: PTE at {int(naddr[i]):#x} maps pfn {int(npfn[i]):#x} with flags "
                f"{int(fl[i]):#x} (reserved, table or buddy page) as a normal page")
    # Pages of large folios: the folio's flags, mapping and index (page_folio()).
    heads = _heads(k, npfn)
    hfl = mem.np_flags[heads]
    w.normal_heads = heads
    anon = (hfl & PG_anon) != 0
    swapb = (hfl & PG_swapbacked) != 0
    nanon = int(anon.sum())
    # Huge PMDs: anon THPs count HPAGE_PMD_NR each (the huge zero folio none).
    hz = getattr(k, "huge_zero_pfn", -1)
    w.pmd_folios = [((e & _PFN) >> 12) for lv, _va, e in w.huge
                    if lv == "pmd" and e & (_P | _PROTNONE) and (e & _PFN) >> 12 != hz and
                    not _is_hugetlb_va(mm, _va)]
    npmd_file = npmd_shmem = 0
    for (lv, va, e) in w.huge:
        f = (e & _PFN) >> 12
        if lv != "pmd" or not e & (_P | _PROTNONE) or f == hz or _is_hugetlb_va(mm, va):
            continue
        ff = mem.flags[f]
        if not ff & PG_head or (ff & PG_ORDER_MASK) >> PG_ORDER_SHIFT != 9:
            rep(f"{name}: huge PMD at {va:#x} maps pfn {f:#x}, which is no PMD-sized folio head "
                f"(flags {ff:#x})")
            continue
        if ff & PG_anon:
            nanon += 512
            continue
        # A page-cache folio mapped by do_set_pmd: the VMA's file at the linear index,
        # never writable in a private VMA.
        if ff & PG_swapbacked:
            npmd_shmem += 512
        else:
            npmd_file += 512
        v = mm.vma_lookup(va)
        fobj = getattr(v, "vm_file", None)
        am = getattr(fobj, "f_mapping", None)
        idx = ((va - v.vm_start) >> 12) + v.vm_pgoff if v is not None else -1
        if am is None or mem.mapping[f] != am.id or am.i_pages.get(idx) != f or \
                mem.index[f] != idx:
            rep(f"{name}: huge PMD at {va:#x} maps page-cache pfn {f:#x} (mapping "
                f"{mem.mapping[f]}, index {mem.index[f]:#x}), not the folio of {v!r}'s file "
                f"at index {idx:#x}")
        elif e & _RW and not v.vm_flags & VM_SHARED:
            rep(f"{name}: huge PMD at {va:#x} maps page-cache pfn {f:#x} writable in a private "
                f"VMA {v!r} (COW broken)")
    nshmem = int((~anon & swapb).sum()) + npmd_shmem
    nfile = int((~anon & ~swapb).sum()) + npmd_file
    for ctr, cname, got in ((MM_ANONPAGES, "MM_ANONPAGES", nanon), (MM_FILEPAGES, "MM_FILEPAGES", nfile),
                            (MM_SHMEMPAGES, "MM_SHMEMPAGES", nshmem)):
        if mm.rss_stat[ctr] != got:
            rep(f"{name}: rss_stat[{cname}] = {mm.rss_stat[ctr]}, page tables map {got}")
    # Anon pages: the VMA's anon_vma, the linear index, never in a shared VMA.
    if len(npfn):
        # Pages of large folios: the folio's mapping, its index plus the page's offset.
        nhead = heads
        mapping = mem.np_mapping[heads]
        index = mem.np_index[heads] + (npfn - heads)
        pgoff_v = np.array([v.vm_pgoff for v in vmas], dtype=np.int64)
        lin = ((naddr - starts[nidx]) >> 12) + pgoff_v[nidx]
        for i in np.flatnonzero(index != lin)[:5].tolist():
            rep(f"{name}: PTE at {int(naddr[i]):#x} maps pfn {int(npfn[i]):#x} with index "
                f"{int(index[i]):#x}, expected linear_page_index {int(lin[i]):#x} in {vmas[nidx[i]]!r}")
        nvfl = vflags_v[nidx]
        for i in np.flatnonzero(anon & ((nvfl & VM_SHARED) != 0))[:3].tolist():
            rep(f"{name}: PTE at {int(naddr[i]):#x} maps anon pfn {int(npfn[i]):#x} in a shared VMA "
                f"{vmas[nidx[i]]!r}")
        wr = (nptes & _RW) != 0
        for i in np.flatnonzero(~anon & wr & ((nvfl & VM_SHARED) == 0))[:3].tolist():
            rep(f"{name}: PTE at {int(naddr[i]):#x} maps page-cache pfn {int(npfn[i]):#x} writable "
                f"in a private VMA {vmas[nidx[i]]!r} (COW broken)")
        for i in np.flatnonzero(anon & wr & ((fl & PG_anon_exclusive) == 0))[:3].tolist():
            rep(f"{name}: PTE at {int(naddr[i]):#x} maps anon pfn {int(npfn[i]):#x} writable but "
                f"the page is not PG_anon_exclusive")
        # anon_vma: the page's anon_vma must share the VMA's root.
        ai = np.flatnonzero(anon)
        if len(ai):
            for vi, mid in _unique_pairs(nidx[ai], mapping[ai]):
                v = vmas[vi]
                obj = k.objects[mid] if 0 < mid < len(k.objects) else None
                av = v.anon_vma
                ok = (obj is not None and av is not None and hasattr(obj, "root") and
                      (obj is av or obj.root is av.root))
                chain = getattr(v, "anon_vma_chain", None)
                if ok and chain is not None:
                    ok = obj is av or any(getattr(c, "anon_vma", c) is obj for c in chain)
                if not ok:
                    j = ai[(nidx[ai] == vi) & (mapping[ai] == mid)][0]
                    rep(f"{name}: PTE at {int(naddr[j]):#x} maps anon pfn {int(npfn[j]):#x} whose "
                        f"anon_vma id {mid} is not {v!r}'s anon_vma "
                        f"(id {av.id if av is not None else None})")
        # Page-cache pages: the VMA's file, the cache slot.
        fi = np.flatnonzero(~anon)
        for i in _bad_file_ptes(vmas, nidx, fi, mapping, index, nhead):
            v = vmas[nidx[i]]
            p = int(npfn[i])
            f = v.vm_file
            if f is None:
                rep(f"{name}: PTE at {int(naddr[i]):#x} maps non-anon pfn {p:#x} in {v!r}, "
                    f"which has no file")
                continue
            am = f.f_mapping
            if int(mapping[i]) != am.id or am.i_pages.get(int(index[i])) != int(nhead[i]):
                rep(f"{name}: PTE at {int(naddr[i]):#x} maps pfn {p:#x} (mapping {int(mapping[i])}, "
                    f"index {int(index[i]):#x}), not the page cache page of {v!r}'s file "
                    f"(mapping {am.id}, slot {am.i_pages.get(int(index[i]))})")
    w.normal_pfns = npfn
    w.normal_addrs = naddr
    w.normal_writable = ((nptes & _RW) != 0) & anon
    w.normal_anon = anon
    # Huge leaves: permissions and frames (mapcount convention: THP issue).
    for level, va, e in w.huge:
        v = mm.vma_lookup(va)
        size = _LEVEL_SIZE[level]
        if v is None or v.vm_end < va + size:
            rep(f"{name}: huge {level} at {va:#x} is not inside one VMA")
            continue
        if e & _RW and not v.vm_flags & VM_WRITE:
            rep(f"{name}: huge {level} at {va:#x} is writable in {v!r} without VM_WRITE")
        p = (e & _PFN) >> 12
        if e & _P and not e & _SPECIAL and p < k.nr_pages and free.mask([p])[0]:
            rep(f"{name}: huge {level} at {va:#x} maps pfn {p:#x}, which is free")
    # pgtables_bytes
    if mm.pgtables_bytes != 4096 * w.nr_accounted:
        rep(f"{name}: pgtables_bytes = {mm.pgtables_bytes}, tables found: {w.nr_accounted} "
            f"PTE/PMD/PUD pages = {4096 * w.nr_accounted} bytes")


def _bad_file_ptes(vmas, nidx, fi, mapping, index, nhead):
    """The entries ``fi`` (in order) of page-cache PTEs that are not the page-cache page
    of their VMA's file (or lie in a VMA with no file): one dict lookup per PTE, grouped
    by VMA, instead of a Python pass with the report's formatting over every PTE."""
    if not len(fi):
        return []
    fv = nidx[fi]
    o = np.argsort(fv, kind="stable")
    sfv = fv[o]
    cuts = np.flatnonzero(sfv[1:] != sfv[:-1]) + 1
    bad = np.zeros(len(fi), dtype=bool)
    for g in np.split(o, cuts):
        v = vmas[int(fv[g[0]])]
        f = v.vm_file
        if f is None:
            bad[g] = True
            continue
        am = f.f_mapping
        sel = fi[g]
        slots = np.fromiter(map(am.i_pages.get, index[sel].tolist(), [-1] * len(sel)),
                            np.int64, len(sel))
        bad[g] = (mapping[sel] != am.id) | (slots != nhead[sel])
    return fi[bad].tolist()


def _check_tlb(k, rep, mm=None):
    for ent in k.tlb_pending:
        pm, start, end = ent[0], ent[1], ent[2]
        if mm is None or pm is mm:
            rep(f"TLB: {_mmname(pm)} lost a translation or permission on [{start:#x}, {end:#x}) "
                f"with no flush before the syscall returned")
    hw = getattr(k, "tlb", None)
    if mm is None and hw is not None and not hw._held_ok():
        rep("TLB: a CPU's held-sizes word (clock[cpu, 1]) lacks a page size one of its "
            "structures holds: lookups would skip that entry")
    if mm is None and hw is not None and not hw._order_ok():
        rep("TLB: a set's LRU word or valid-ways mask (tlb: ordered sets) disagrees with "
            "its entries")


def check_mm(k, mm, _free=None, _table_owner=None, _rep=None):
    """Check one mm: VMA tree, table pages, leaf entries vs VMAs and frames, RSS,
    pgtables_bytes, pending TLB flushes. Returns the walk; raises AssertionError."""
    rep = _rep or _Report()
    free = _free or _FreeSet(k, rep)
    _check_vma_tree(k, mm, rep)
    w = _walk_tables(k, mm, rep, {} if _table_owner is None else _table_owner)
    _check_leaves(k, w, rep, free)
    w.file_mappings = _file_mappings(mm)
    if _rep is None:
        _check_tlb(k, rep, mm)
        rep.raise_if_any()
    return w


def _file_mappings(mm):
    """The address_spaces behind mm's file and shmem VMAs."""
    seen = {}
    for v in mm.mm_mt:
        if v.vm_flags & VM_HUGETLB:
            continue                     # hugetlbfs page caches: _check_hugetlb
        if v.vm_file is not None and getattr(v.vm_file, "f_mapping", None) is not None:
            seen[id(v.vm_file.f_mapping)] = v.vm_file.f_mapping
    return seen


def _address_spaces(k, walks):
    seen = {}
    for obj in k.objects:
        if obj is not None and hasattr(obj, "i_pages") and hasattr(obj, "swapbacked"):
            seen[id(obj)] = obj
    for f in k.shmem_files:
        seen[id(f.f_mapping)] = f.f_mapping
    for w in walks:
        seen.update(w.file_mappings)
    return list(seen.values())


def _sum_refs(pairs):
    """[(pfns array, counts array)] -> (unique pfns, summed counts)."""
    pf = [np.asarray(p, dtype=np.int64) for p, _ in pairs if len(p)]
    if not pf:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    ct = [np.asarray(c, dtype=np.int64) for p, c in pairs if len(p)]
    pf, ct = np.concatenate(pf), np.concatenate(ct)
    o = np.argsort(pf, kind="stable")       # np.unique(return_inverse=True), by sorting
    pf, ct = pf[o], ct[o]
    first = np.empty(len(pf), dtype=bool)
    first[:1] = True
    np.not_equal(pf[1:], pf[:-1], out=first[1:])
    u = pf[first]
    return u, np.bincount(np.cumsum(first) - 1, weights=ct, minlength=len(u)).astype(np.int64)


def _unique_pairs(a, b):
    """The distinct (a[i], b[i]) pairs in lexicographic order, as Python ints:
    np.unique(np.stack([a, b], axis=1), axis=0).tolist() without numpy's slow
    row-unique path."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    o = np.lexsort((b, a))
    a, b = a[o], b[o]
    keep = np.empty(len(a), dtype=bool)
    keep[:1] = True
    keep[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return list(zip(a[keep].tolist(), b[keep].tolist()))


def _lookup(u, c, pfns):
    """Counts for ``pfns`` in the (u, c) table, 0 where absent."""
    if not len(u):
        return np.zeros(len(pfns), dtype=np.int64)
    i = np.searchsorted(u, pfns)
    ic = np.minimum(i, len(u) - 1)
    return np.where(u[ic] == pfns, c[ic], 0)


def _check_lru(k, rep, ranges):
    """The LRU lists, checked vectorized: links, list membership, counts, vmstat.

    Every PG_lru frame must be reachable from its list's head: prev pointers are
    followed by pointer doubling, so a detached ring or a broken chain shows up as a
    node whose chain does not end at a head.
    """
    from vmsim.mm.swap import _LRU_STAT, _ZONE_LRU_STAT, NR_LRU_LISTS
    mem = k.mem
    lv = k.lruvec
    names = ("inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable")
    parts = [np.flatnonzero(mem.np_flags[lo:hi] & PG_lru) + lo for lo, hi in ranges]
    S = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    n = len(S)
    for lru in range(NR_LRU_LISTS):
        for end, what in ((lv.head[lru], "head"), (lv.tail[lru], "tail")):
            if end and not mem.flags[end] & PG_lru:
                rep(f"LRU {names[lru]}: {what} pfn {end:#x} has no PG_lru (flags {mem.flags[end]:#x})")
    f = mem.np_flags[S].astype(np.int64)
    lst = np.where(f & PG_unevictable, 4, np.where(f & PG_swapbacked, 0, 2) + ((f & PG_active) != 0))
    npages = np.where(f & PG_head, 1 << ((f & PG_ORDER_MASK) >> PG_ORDER_SHIFT), 1)
    nxt = mem.np_lru_next[S].astype(np.int64)
    prv = mem.np_lru_prev[S].astype(np.int64)

    def index_of(pfns):
        i = np.searchsorted(S, pfns) if n else np.zeros(len(pfns), np.int64)
        ic = np.minimum(i, max(n - 1, 0))
        ok = (pfns != 0) & (S[ic] == pfns) if n else np.zeros(len(pfns), bool)
        return np.where(ok, ic, -1), ok

    ni, nok = index_of(nxt)
    pi, pok = index_of(prv)
    for i in np.flatnonzero((nxt != 0) & ~nok)[:3].tolist():
        rep(f"LRU: pfn {int(S[i]):#x} lru_next = {int(nxt[i]):#x}, a frame not on the LRU")
    for i in np.flatnonzero((prv != 0) & ~pok)[:3].tolist():
        rep(f"LRU: pfn {int(S[i]):#x} lru_prev = {int(prv[i]):#x}, a frame not on the LRU")
    back = np.flatnonzero(nok)
    for i in back[prv[ni[back]] != S[back]][:3].tolist():
        rep(f"LRU: pfn {int(S[i]):#x} -> next {int(nxt[i]):#x} whose lru_prev is "
            f"{int(prv[ni[i]]):#x}")
    fwd = np.flatnonzero(pok)
    for i in fwd[lst[pi[fwd]] != lst[fwd]][:3].tolist():
        rep(f"LRU: pfn {int(S[i]):#x} ({names[lst[i]]}) is linked after pfn {int(prv[i]):#x} "
            f"({names[lst[pi[i]]]})")
    # Follow prev to the head: root[i] converges on a node with prev 0 unless a ring.
    root = np.where(pok, pi, np.arange(n))
    for _ in range(max(1, int(n).bit_length() + 1)):
        root = root[root]
    orphan = pok[root] if n else np.zeros(0, bool)
    for i in np.flatnonzero(orphan)[:3].tolist():
        rep(f"LRU: pfn {int(S[i]):#x} ({names[lst[i]]}) is on a cycle or chain not reached "
            f"from any list head")
    for lru in range(NR_LRU_LISTS):
        sel = lst == lru
        heads = S[sel & (prv == 0)]
        tails = S[sel & (nxt == 0)]
        if len(heads) > 1 or (len(heads) == 1 and heads[0] != lv.head[lru]) or \
                (len(heads) == 0 and lv.head[lru] and not orphan.any()):
            rep(f"LRU {names[lru]}: head = {lv.head[lru]:#x}, frames with no lru_prev: "
                f"{[hex(x) for x in heads[:4].tolist()]}")
        if len(tails) > 1 or (len(tails) == 1 and tails[0] != lv.tail[lru]) or \
                (len(tails) == 0 and lv.tail[lru] and not orphan.any()):
            rep(f"LRU {names[lru]}: tail = {lv.tail[lru]:#x}, frames with no lru_next: "
                f"{[hex(x) for x in tails[:4].tolist()]}")
        total = int(npages[sel].sum())
        if lv.nr[lru] != total:
            rep(f"LRU {names[lru]}: lruvec.nr = {lv.nr[lru]}, PG_lru frames of this list hold "
                f"{total} pages")
        for item, what in ((_LRU_STAT[lru], "nr_"), (_ZONE_LRU_STAT[lru], "nr_zone_")):
            if k.vmstat[item] != total:
                rep(f"vmstat {what}{names[lru]} = {k.vmstat[item]}, LRU lists hold {total} pages")
    rc = mem.np_refcount[S]
    for i in np.flatnonzero(rc <= 0)[:3].tolist():
        rep(f"LRU: pfn {int(S[i]):#x} is on the LRU with refcount {int(rc[i])}")


def check_all(k):
    """Recompute the VM invariants from the raw state; raise AssertionError on a violation.

    The full pass: every live mm is walked again (the machine's checker, if any, takes
    the walks as the base of its next incremental passes)."""
    ch = k.checker if isinstance(getattr(k, "checker", None), VMChecker) else None
    _check_all(k, ch._state if ch is not None else None, full=True)
    if ch is not None:
        ch.full_runs += 1
        ch.since_full = 0


def _owners(k):
    """The live mms (tasks' mm) and every mm whose tables are in use (active_mm, CR3)."""
    live, seen = [], set()
    for t in k.tasks.values():
        if t.mm is not None and id(t.mm) not in seen:
            seen.add(id(t.mm))
            live.append(t.mm)
    owners = list(live)
    for m in [getattr(t, "active_mm", None) for t in k.tasks.values()] + [c.loaded_mm for c in k.cpus]:
        if m is not None and m is not k.init_mm and m.pgd >= 0 and id(m) not in seen:
            seen.add(id(m))
            owners.append(m)
    return live, owners


def _mm_signature(mm):
    """What a syscall changes in an mm besides its tables: VMAs and counters."""
    return (mm.pgd, mm.map_count, mm.total_vm, mm.pgtables_bytes, tuple(mm.rss_stat),
            tuple((v.vm_start, v.vm_end, v.vm_flags, v.vm_pgoff, id(v.anon_vma),
                   len(v.anon_vma_chain), id(v.vm_file)) for v in mm.mm_mt))


class _IncrState:
    """What the last pass saw: per mm its walk and signature, the table rows' owners and
    a copy of the table pool, so the next pass finds what changed (page_table_check
    notes each set_pte_at; vmsim compares the pool instead, at no cost to the model)."""

    def __init__(self):
        self.walks = {}         # id(mm) -> (mm, walk, signature)
        self.row_owner = {}     # pool row -> mm
        self.pool = np.zeros(0, dtype=np.int64)
        self.valid = False      # a pass completed without a violation
        self.sigs = {}          # id(mm) -> signature, as touched() computed it
        self.diff_rows = None   # table rows touched() found changed
        self.last_touched = []  # mms re-walked by the last pass (tests look)
        self.free_lists = {}    # (zone, cpu or -1, list) -> its PFNs at the last clean walk

    def touched(self, k, owners):
        """The mms an incremental pass must walk again: new ones, the current task's,
        those whose VMAs or counters changed, and the owners of every table row that
        changed since the last pass (PTEs changed by rmap, fork or reclaim included)."""
        pool = k.ptpool
        n = len(pool.slot_pfn) * 512
        arr = pool.arr
        m = min(n, len(self.pool))
        rows = set()
        self.diff_rows = None
        if m:
            diff = np.flatnonzero((arr[:m] != self.pool[:m]).reshape(-1, 512).any(axis=1))
            rows.update(diff.tolist())
            if m == n == len(self.pool):
                self.diff_rows = diff
        out = set()
        cur = getattr(k.current, "mm", None)
        if cur is not None:
            out.add(id(cur))
        for r in rows:
            mm = self.row_owner.get(r)
            if mm is not None:
                out.add(id(mm))
        self.sigs = {}
        for mm in owners:
            ent = self.walks.get(id(mm))
            sig = _mm_signature(mm)
            self.sigs[id(mm)] = sig
            if ent is None or ent[0] is not mm or ent[2] != sig:
                out.add(id(mm))
        return out

    def save(self, k, owners, walks, touched):
        """Keep this pass's walks; the row owners are rebuilt only if a table changed."""
        sigs = self.sigs if touched is not owners else {}
        old, self.walks = self.walks, {}
        retable = touched is owners
        for mm, w in zip(owners, walks):
            sig = sigs.get(id(mm))
            self.walks[id(mm)] = (mm, w, sig if sig is not None else _mm_signature(mm))
            prev = old.get(id(mm))
            if prev is None or prev[1].tables != w.tables:
                retable = True
        if retable or len(old) != len(self.walks):
            rows = k.mem.np_private
            self.row_owner = {}
            for mm, w in zip(owners, walks):
                for pfn, _level, _va in w.tables:
                    self.row_owner[int(rows[pfn])] = mm
        n = len(k.ptpool.slot_pfn) * 512
        d = self.diff_rows if touched is not owners else None
        if d is not None and len(self.pool) == n:
            for r in d.tolist():
                self.pool[r * 512:(r + 1) * 512] = k.ptpool.arr[r * 512:(r + 1) * 512]
        else:
            self.pool = k.ptpool.arr[:n].copy()
        self.diff_rows = None
        self.valid = True


def _check_all(k, st=None, full=True):
    """The checker's pass: full (walk every mm) or incremental (walk the mms ``st`` finds
    touched, reuse its walks of the others); the frame, LRU, page-cache and counter
    checks run over the whole mem_map either way (vectorized: their cost does not grow
    with the number of processes)."""
    from vmsim.mm.swap import batch_refs
    from vmsim.mm.mmu_gather import gather_refs
    rep = _Report()
    mem = k.mem
    free = _FreeSet(k, rep, st.free_lists if st is not None else None)
    live, owners = _owners(k)
    if st is not None:
        valid, st.valid = st.valid, False
        full = full or not valid
    table_owner = {}
    if full or st is None:
        walks = [check_mm(k, mm, free, table_owner, rep) for mm in owners]
        touched = owners
    else:
        tids = st.touched(k, owners)
        walks = [None] * len(owners)
        for i, mm in enumerate(owners):
            if id(mm) not in tids:
                w = st.walks[id(mm)][1]
                walks[i] = w
                for pfn, _level, va in w.tables:
                    table_owner[pfn] = (mm, va)
        touched = []
        for i, mm in enumerate(owners):
            if walks[i] is None:
                walks[i] = check_mm(k, mm, free, table_owner, rep)
                touched.append(mm)
        # The frames an untouched mm maps must still not be free.
        tids = {id(m) for m in touched}
        rest = [w for w in walks if id(w.mm) not in tids and len(w.normal_pfns)]
        if rest:
            isfree = free.mask(np.concatenate([w.normal_pfns for w in rest]))
            if isfree.any():
                who = [(w, i) for w in rest for i in range(len(w.normal_pfns))]
                for j in np.flatnonzero(isfree)[:5].tolist():
                    w, i = who[j]
                    p = int(w.normal_pfns[i])
                    rep(f"{_mmname(w.mm)}: PTE at {int(w.normal_addrs[i]):#x} maps pfn {p:#x}, "
                        f"which is free ({free.where(p)})")
    _check_tlb(k, rep)
    if st is not None:
        st.last_touched = list(touched)

    # References and mapcounts, from every source.
    map_u, map_c = _sum_refs([(w.normal_pfns, np.ones(len(w.normal_pfns), np.int64)) for w in walks])
    live_ids = {id(m) for m in live}
    aspaces = _address_spaces(k, [w for w in walks if id(w.mm) in live_ids])
    cache_p, cache_swapb = [], 0
    nr_cached = 0
    huge_pages = {False: 0, True: 0}
    cache_ids = []
    _check_shadow_entries(k, aspaces, rep)
    _check_ext4_blocks(k, aspaces, rep)
    _check_buffer_heads(k, aspaces, rep)
    from vmsim.fs.ext4 import ext4_aops
    for am in aspaces:
        for msg in am.i_pages._check()[:3]:
            rep(f"page cache: mapping {am.id} i_pages: {msg}")
        if am.nrpages != len(am.i_pages):
            rep(f"page cache: mapping {am.id} nrpages = {am.nrpages}, holds {len(am.i_pages)}")
        if k.objects[am.id] is not am:
            rep(f"page cache: mapping id {am.id} is not registered to its address_space")
        n = len(am.i_pages)
        if not n:
            continue
        idx, pf = am.i_pages._arrays()
        n = len(idx)
        # A large folio fills one slot per page, all naming its head.
        hf = mem.np_flags[pf]
        fnr = np.where(hf & PG_head, 1 << ((hf & PG_ORDER_MASK) >> PG_ORDER_SHIFT), 1)
        off = idx - mem.np_index[pf]
        for i in np.flatnonzero((mem.np_mapping[pf] != am.id) | (off < 0) | (off >= fnr))[:5].tolist():
            p, index = int(pf[i]), int(idx[i])
            rep(f"page cache: pfn {p:#x} at mapping {am.id} index {index:#x} has mapping "
                f"{mem.mapping[p]}, index {mem.index[p]:#x}")
        for i in np.flatnonzero(mem.np_flags[pf] & PG_anon)[:5].tolist():
            rep(f"page cache: pfn {int(pf[i]):#x} at mapping {am.id} index {int(idx[i]):#x} is PG_anon")
        cache_p.append(pf)
        cache_ids.append((am.id, idx, pf))
        nr_cached += n
        if am.swapbacked:
            cache_swapb += n
        # Folios: naturally aligned in the file (xarray multi-index entries), shmem's
        # swapbacked and no other's (split pieces included), at most PMD order.
        fh = _unique(pf)
        hfl = mem.np_flags[fh]
        hnr = np.where(hfl & PG_head, 1 << ((hfl & PG_ORDER_MASK) >> PG_ORDER_SHIFT), 1)
        for i in np.flatnonzero((mem.np_index[fh] & (hnr - 1)) != 0)[:3].tolist():
            rep(f"page cache: folio {int(fh[i]):#x} of {int(hnr[i])} pages at mapping {am.id} "
                f"index {int(mem.np_index[fh[i]]):#x} is not aligned to its size")
        for i in np.flatnonzero(((hfl & PG_swapbacked) != 0) != am.swapbacked)[:3].tolist():
            rep(f"page cache: folio {int(fh[i]):#x} at mapping {am.id} has PG_swapbacked "
                f"{bool(hfl[i] & PG_swapbacked)}, its mapping is "
                f"{'shmem' if am.swapbacked else 'not shmem'}")
        for i in np.flatnonzero(hnr > 512)[:3].tolist():
            rep(f"page cache: folio {int(fh[i]):#x} at mapping {am.id} has {int(hnr[i])} pages "
                f"(more than MAX_PAGECACHE_ORDER)")
        if am.a_ops is ext4_aops:
            # Reads complete within the call: a disk file's folio that is not uptodate
            # is one ext4's partial-block zeroing made, and has buffers.
            for i in np.flatnonzero((hfl & PG_uptodate) == 0)[:8].tolist():
                if int(fh[i]) not in am.folio_private:
                    rep(f"page cache: folio {int(fh[i]):#x} at mapping {am.id} is not "
                        f"uptodate and has no buffers")
                    break
        huge_pages[am.swapbacked] += int(hnr[hnr == 512].sum())
    cache_p = np.concatenate(cache_p) if cache_p else np.zeros(0, np.int64)
    cache_u, cache_n = np.unique(cache_p, return_counts=True)
    cfl = mem.np_flags[cache_u]
    cache_nr = np.where(cfl & PG_head, 1 << ((cfl & PG_ORDER_MASK) >> PG_ORDER_SHIFT), 1)
    for p in cache_u[cache_n != cache_nr][:5].tolist():
        who = [(mid, int(ix[j])) for mid, ix, pfs in cache_ids for j in np.flatnonzero(pfs == p)]
        rep(f"page cache: pfn {p:#x} is cached by more than one slot: {who}")
    if k.vmstat[vmstat.NR_FILE_PAGES] != nr_cached:
        rep(f"vmstat nr_file_pages = {k.vmstat[vmstat.NR_FILE_PAGES]}, page cache holds {nr_cached}")
    if k.vmstat[vmstat.NR_SHMEM] != cache_swapb:
        rep(f"vmstat nr_shmem = {k.vmstat[vmstat.NR_SHMEM]}, shmem page cache holds {cache_swapb}")
    for item, nm, want in ((vmstat.NR_SHMEM_HUGEPAGES, "nr_shmem_hugepages", huge_pages[True]),
                           (vmstat.NR_FILE_HUGEPAGES, "nr_file_hugepages", huge_pages[False])):
        if k.vmstat[item] != want:
            rep(f"vmstat {nm} = {k.vmstat[item]} pages, the page cache holds {want} pages of "
                f"PMD-sized folios")
    _check_shmem_huge(k, rep)
    br = batch_refs(k)
    gr = gather_refs(k)
    # References: one per PTE on the page's folio, one per huge PMD on the folio,
    # the huge zero folio's own (the shrinker's) reference.
    pmd_heads = np.array([f for w in walks for f in w.pmd_folios], dtype=np.int64)
    hz = getattr(k, "huge_zero_pfn", -1)
    hz_ref = ([np.array([hz], np.int64)], [np.ones(1, np.int64)]) if hz >= 0 else ([], [])
    ref_heads = np.concatenate([w.normal_heads for w in walks] + [pmd_heads] + hz_ref[0])
    head_u, head_c = np.unique(ref_heads, return_counts=True)
    srcs = [(head_u, head_c), (cache_p, np.ones(len(cache_p), np.int64)),
            (np.fromiter(br.keys(), np.int64, len(br)), np.fromiter(br.values(), np.int64, len(br))),
            (np.fromiter(gr.keys(), np.int64, len(gr)), np.fromiter(gr.values(), np.int64, len(gr)))]
    for fn in EXTRA_REF_SOURCES:
        d = fn(k)
        srcs.append((np.fromiter(d.keys(), np.int64, len(d)), np.fromiter(d.values(), np.int64, len(d))))
    # PTE mappings of pages of large folios hold their reference on the head.
    ref_u, ref_c = _sum_refs(srcs)
    _check_file_state(k, rep, aspaces, mem, pmd_heads)

    ranges = _scan_ranges(k)
    inuse = _nonzero_frames(k, ranges)
    # Sort-based union: numpy's hash unique is slow on the long sorted runs of tail
    # pages a gigantic folio brings (262143 of them).
    cand = np.sort(np.concatenate([inuse, ref_u, map_u]).astype(np.int64), kind="stable")
    if len(cand):
        cand = cand[np.concatenate(([True], cand[1:] != cand[:-1]))]
    # Tail pages of cached large folios (nothing of theirs but PG_tail may be set).
    big = cache_u[cache_nr > 1]
    if len(big):
        tails = np.concatenate([np.arange(h + 1, h + n, dtype=np.int64)
                                for h, n in zip(big.tolist(), cache_nr[cache_nr > 1].tolist())])
        cand = _unique(np.concatenate((cand, tails)))
    fl = mem.np_flags[cand]
    reserved = (fl & PG_reserved) != 0
    table = (fl & PGTY_table) != 0
    tail = (fl & PG_tail) != 0
    hugetlb = (fl & PGTY_hugetlb) != 0
    # Frames in use must not be free.
    isfree = free.mask(cand)
    for i in np.flatnonzero(isfree)[:5].tolist():
        p = int(cand[i])
        rep(f"frame pfn {p:#x} is free ({free.where(p)}) but has refcount {mem.refcount[p]}, "
            f"mapcount {mem.mapcount[p]}, private {mem.private[p]:#x}, mapping {mem.mapping[p]}, "
            f"flags {mem.flags[p]:#x}, {int(_lookup(ref_u, ref_c, np.array([p]))[0])} known references")
    # Refcounts and mapcounts of ordinary frames.
    ordinary = ~reserved & ~table & ~tail & ~hugetlb
    op = cand[ordinary]
    exp_ref = _lookup(ref_u, ref_c, op)
    got_ref = mem.np_refcount[op]
    for i in np.flatnonzero(exp_ref != got_ref)[:8].tolist():
        p = int(op[i])
        nm = int(_lookup(map_u, map_c, np.array([p]))[0])
        rep(f"frame pfn {p:#x}: refcount {int(got_ref[i])}, expected {int(exp_ref[i])} "
            f"({nm} PTE mappings + {int(_lookup(cache_u, cache_n, np.array([p]))[0])} page cache + {br.get(p, 0)} LRU batch"
            f"{' + ' + str(gr.get(p, 0)) + ' gather' if p in gr else ''} + extra)")
    opm = cand[~reserved & ~table]                  # PTE mapcounts: every page, tails too
    tl = opm[(mem.np_flags[opm] & PG_tail) != 0]
    if len(tl):                                     # but hugetlb folios keep their own
        htl = tl[(mem.np_flags[_folio_heads(mem, tl)] & PGTY_hugetlb) != 0]
        if len(htl):
            opm = _unique(opm)
            opm = opm[~np.isin(opm, htl)]
    exp_map = _lookup(map_u, map_c, opm)
    got_map = mem.np_mapcount[opm]
    op = opm
    for i in np.flatnonzero(exp_map != got_map)[:8].tolist():
        rep(f"frame pfn {int(op[i]):#x}: mapcount {int(got_map[i])}, expected {int(exp_map[i])} "
            f"(PTEs mapping it over all mms)")
    # Node counters from what is mapped.
    map_heads = _heads(k, map_u)
    mflags = mem.np_flags[map_heads]
    anon_u = map_u[(mflags & PG_anon) != 0]
    nr_mapped = len(map_u) - len(anon_u)
    pmd_all = _unique(pmd_heads)
    pmd_anon = (mem.np_flags[pmd_all] & PG_anon) != 0 if len(pmd_all) else np.zeros(0, bool)
    pmd_u = pmd_all[pmd_anon]
    pmd_f = pmd_all[~pmd_anon]
    if len(pmd_u):
        anon_u = _unique(np.concatenate((anon_u, (pmd_u[:, None] + np.arange(512)).ravel())))
    nr_anon = len(anon_u)
    if len(pmd_f):
        # A PMD-mapped page-cache folio counts all its pages in nr_mapped once.
        file_u = map_u[(mflags & PG_anon) == 0]
        nr_mapped = len(_unique(np.concatenate((file_u, (pmd_f[:, None] + np.arange(512)).ravel()))))
    if k.vmstat[vmstat.NR_ANON_TRANSPARENT_HUGEPAGES] != 512 * len(pmd_u):
        rep(f"vmstat nr_anon_transparent_hugepages = "
            f"{k.vmstat[vmstat.NR_ANON_TRANSPARENT_HUGEPAGES]} pages, page tables PMD-map "
            f"{len(pmd_u)} THPs")
    fsb = (mem.np_flags[pmd_f] & PG_swapbacked) != 0 if len(pmd_f) else np.zeros(0, bool)
    for item, nm, want in ((vmstat.NR_FILE_PMDMAPPED, "nr_file_pmdmapped", int((~fsb).sum())),
                           (vmstat.NR_SHMEM_PMDMAPPED, "nr_shmem_pmdmapped", int(fsb.sum()))):
        if k.vmstat[item] != 512 * want:
            rep(f"vmstat {nm} = {k.vmstat[item]} pages, page tables PMD-map {want} such folios")
    _check_large_folios(k, rep, cand, map_u, map_c, pmd_heads)
    ndep = sum(w.nr_deposited for w in walks)
    nhuge = sum(1 for w in walks for lv, _va, _e in w.huge
                if lv == "pmd" and not _is_hugetlb_va(w.mm, _va) and not _is_file_pmd(k, _e))
    if ndep != nhuge:
        rep(f"{ndep} deposited PTE tables for {nhuge} huge PMDs (leaked deposits)")
    if k.vmstat[vmstat.NR_ANON_PAGES] != nr_anon:
        rep(f"vmstat nr_anon_pages = {k.vmstat[vmstat.NR_ANON_PAGES]}, page tables map {nr_anon} anon pages")
    if k.vmstat[vmstat.NR_MAPPED] != nr_mapped:
        rep(f"vmstat nr_mapped = {k.vmstat[vmstat.NR_MAPPED]}, page tables map {nr_mapped} file pages")
    # page_table_check: an anon page mapped writable is mapped exactly once.
    wp = [w.normal_pfns[w.normal_writable] for w in walks]
    if any(len(x) for x in wp):
        cnt = _lookup(map_u, map_c, np.concatenate(wp))
        bad_i = np.flatnonzero(cnt != 1)[:3].tolist()
        if bad_i:
            who = [(w, i) for w in walks for i in np.flatnonzero(w.normal_writable).tolist()]
            for j in bad_i:
                w, i = who[j]
                rep(f"page_table_check: anon pfn {int(w.normal_pfns[i]):#x} is mapped writable by "
                    f"{_mmname(w.mm)} at {int(w.normal_addrs[i]):#x} and has {int(cnt[j])} mappings")
    # Table pages: every user table belongs to a live mm, and is accounted.
    tp = cand[table & ~reserved]
    for p in tp.tolist():
        if p not in table_owner:
            rep(f"table page pfn {p:#x} (PGTY_table) is reachable from no live mm (leaked)")
    if k.vmstat[vmstat.NR_PAGE_TABLE_PAGES] != len(tp):
        rep(f"vmstat nr_page_table_pages = {k.vmstat[vmstat.NR_PAGE_TABLE_PAGES]}, "
            f"{len(tp)} user table pages exist ({len(table_owner)} reachable)")
    nboot = 0
    for lo, hi in [(0, min(256, k.nr_pages))] + list(k.page_alloc.reserved):
        nboot += int(((mem.np_flags[lo:hi] & (PGTY_table | PG_reserved)) ==
                      (PGTY_table | PG_reserved)).sum())
        if free.overlaps(lo, hi):
            rep(f"reserved range [{lo:#x}, {hi:#x}) overlaps free frames")
    if k.ptpool._nr_tables() != nboot + len(tp):
        rep(f"table pool: {k.ptpool._nr_tables()} rows in use, {nboot} boot + {len(tp)} user table pages")
    # Lost frames: allocated (not free) but held by nobody.
    managed = sum(z.managed_pages for z in k.page_alloc.zones)
    if k.page_alloc._totalram_pages != managed:
        rep(f"_totalram_pages = {k.page_alloc._totalram_pages}, the zones manage {managed} pages")
    for path, var in SYSCTL_VARS.items():
        if getattr(k, var) != int(k.sysctl[path]):
            rep(f"{var} = {getattr(k, var)}, {path} reads {k.sysctl[path]}")
    nfree = k.page_alloc.nr_free_pages()
    held = int((~reserved & ((mem.np_refcount[cand] > 0) | tail | hugetlb)).sum())
    if managed - nfree != held:
        rep(f"frames: {managed} managed - {nfree} free = {managed - nfree} allocated, but "
            f"{held} non-reserved frames have a reference (lost or leaked frames: "
            f"{_lost_frames(k, ranges, free)})")
    # Per-CPU batches hold live folios.
    for cpu, fb in enumerate(k.cpu_fbatches):
        for p in fb.lru_add:
            if mem.flags[p] & PG_lru:
                rep(f"LRU batch: pfn {p:#x} in cpu {cpu}'s lru_add batch already has PG_lru")
        _check_lru_batches(k, cpu, fb, rep)
    _check_lru(k, rep, ranges)
    _check_hugetlb(k, rep, live)
    # Nothing alive: everything is returned.
    if not live:
        shm = nr_cached            # shmem objects and files: the page cache lives on
        batch_only = len(set(br) - set(cache_u.tolist()))
        # The huge zero folio outlives its users until the shrinker frees it.
        if getattr(k, "huge_zero_pfn", -1) >= 0:
            nfree += 512
        shm += sum(h.nr_huge_pages << h.order for h in k.hstates)      # hugetlb pools
        if nfree + shm + batch_only != managed:
            rep(f"all processes exited: nr_free_pages {nfree} + page-cache pages {shm} + "
                f"LRU-batch-held pages {batch_only} = {nfree + shm + batch_only}, managed pages {managed}")
        if len(tp):
            rep(f"all processes exited: {len(tp)} user table pages remain")
        avs = [o for o in k.objects if o is not None and hasattr(o, "num_active_vmas")]
        if avs:
            rep(f"all processes exited: {len(avs)} anon_vma(s) remain (ids {[a.id for a in avs][:5]})")
    rep.raise_if_any()
    if st is not None:
        st.save(k, owners, walks, touched)


def _check_shmem_huge(k, rep):
    """Huge shmem state: the huge_shmem_orders_* bitmaps as the per-size
    shmem_enabled files say (one bitmap per order), shm_mnt's huge= a mount value."""
    from vmsim.mm.huge_memory import _thp
    from vmsim.mm import shmem
    st = _thp(k)
    masks = st.huge_shmem_orders
    if masks is not None:
        st.huge_shmem_orders = None
        want = {m: shmem._huge_shmem_orders(k, m) for m in ("always", "inherit", "within_size",
                                                            "advise", "never")}
        st.huge_shmem_orders = masks
        for m, v in want.items():
            if masks.get(m, 0) != v:
                rep(f"huge_shmem_orders_{m} = {masks.get(m, 0):#x}, the hugepages-*/shmem_enabled "
                    f"files say {v:#x}")
    sb = k.__dict__.get("shm_mnt")
    if sb is not None and sb.huge not in (shmem.SHMEM_HUGE_NEVER, shmem.SHMEM_HUGE_ALWAYS,
                                          shmem.SHMEM_HUGE_WITHIN_SIZE, shmem.SHMEM_HUGE_ADVISE):
        rep(f"shm_mnt huge = {sb.huge}: deny and force are never a mount's value")


def _check_large_folios(k, rep, cand, map_u, map_c, pmd_heads):
    """Large anon folios: entire mapcount = PMD mappings, _large_mapcount = all
    mappings, _nr_pages_mapped = pages with PTE mappings; the deferred split queue
    holds live large anon folios, every PG_partially_mapped one among them."""
    from vmsim.mm.huge_memory import _thp
    mem = k.mem
    fl = mem.np_flags[cand]
    heads = cand[((fl & PG_head) != 0) & ((fl & PG_large_rmappable) != 0)]
    pu, pc = np.unique(pmd_heads, return_counts=True)
    for h in heads.tolist():
        order = (int(mem.flags[h]) & PG_ORDER_MASK) >> PG_ORDER_SHIFT
        pages = np.arange(h, h + (1 << order), dtype=np.int64)
        ptec = _lookup(map_u, map_c, pages)
        npmd = int(_lookup(pu, pc, np.array([h]))[0])
        ent, lrg, nrm = int(mem.lru_prev[h + 1]), int(mem.mapping[h + 1]), int(mem.index[h + 1])
        if ent != npmd or lrg != npmd + int(ptec.sum()) or nrm != int((ptec > 0).sum()):
            rep(f"large folio pfn {h:#x} (order {order}): entire mapcount {ent}, large mapcount "
                f"{lrg}, nr_pages_mapped {nrm}; page tables: {npmd} PMD, {int(ptec.sum())} PTE "
                f"mappings of {int((ptec > 0).sum())} pages")
    q = _thp(k).split_queue
    for f in list(q):
        fl1 = int(mem.flags[f])
        if not fl1 & PG_head or not fl1 & PG_anon or not fl1 & PG_large_rmappable:
            rep(f"deferred split queue holds pfn {f:#x}, which is no large anon folio "
                f"(flags {fl1:#x})")
    pm = cand[(fl & PG_partially_mapped) != 0]
    for f in pm.tolist():
        if f not in q:
            rep(f"large folio pfn {f:#x} is PG_partially_mapped but not on the deferred split queue")


def _check_hugetlb(k, rep, live):
    """hugetlb pools and mappings: each pool balanced (nr = free list + in use, free
    and surplus within nr, reservations covered by free pages), every folio's head
    state, each huge PTE of a live mm counted once (a shared PMD table's entries
    belong to all its users), refcount = mappings + page cache (nr_pages each),
    entire mapcount = mappings, HugetlbPages per mm, nr_hugetlb, and each shared PMD
    table's pt_share_count = its users - 1."""
    from vmsim.mm import hugetlb as H
    mem = k.mem
    folio_h = {}
    active = 0
    for h in k.hstates:
        fl, al = h.hugepage_freelists, h.hugepage_activelist
        if h.nr_huge_pages != len(fl) + len(al):
            rep(f"hugetlb {h.name}: nr_huge_pages {h.nr_huge_pages} != {len(fl)} free + {len(al)} in use")
        if h.free_huge_pages != len(fl):
            rep(f"hugetlb {h.name}: free_huge_pages {h.free_huge_pages}, free list holds {len(fl)}")
        if not 0 <= h.surplus_huge_pages <= h.nr_huge_pages:
            rep(f"hugetlb {h.name}: surplus_huge_pages {h.surplus_huge_pages} outside [0, {h.nr_huge_pages}]")
        if not 0 <= h.resv_huge_pages <= h.free_huge_pages:
            rep(f"hugetlb {h.name}: resv_huge_pages {h.resv_huge_pages} not covered by "
                f"{h.free_huge_pages} free pages")
        order_bits = (h.order << PG_ORDER_SHIFT) | PG_head | PGTY_hugetlb
        for p, free in [(p, True) for p in fl] + [(p, False) for p in al]:
            if p in folio_h:
                rep(f"hugetlb {h.name}: folio {p:#x} is on two lists")
            folio_h[p] = h
            f = mem.flags[p]
            if f & (PG_ORDER_MASK | PG_head | PGTY_hugetlb) != order_bits:
                rep(f"hugetlb {h.name}: folio {p:#x} head flags {f:#x}")
            if free and (mem.refcount[p] or mem.lru_prev[p + 1] or
                         not H._hpg(k, p) & H.HPG_freed):
                rep(f"hugetlb {h.name}: free folio {p:#x} refcount {mem.refcount[p]}, "
                    f"entire mapcount {mem.lru_prev[p + 1]}, flags {H._hpg(k, p):#x}")
            if not free:
                active += 1 << h.order
    if k.vmstat[vmstat.NR_HUGETLB] != active:
        rep(f"vmstat nr_hugetlb = {k.vmstat[vmstat.NR_HUGETLB]}, {active} pages of hugetlb folios in use")
    maps = {}
    cache = {}
    users = {}
    seen = set()
    for mm in live:
        usage = in_shared = 0
        for v in mm.mm_mt:
            if not v.vm_flags & VM_HUGETLB:
                continue
            h = H.hstate_vma(v)
            sz = h.huge_page_size()
            inode = v.vm_file.f_inode
            if id(inode) not in cache:
                cache[id(inode)] = inode
            if v.vm_start & (sz - 1) or v.vm_end & (sz - 1):
                rep(f"{_mmname(mm)}: hugetlb {v!r} is not {sz >> 10} kB aligned")
                continue
            for a in range(v.vm_start, v.vm_end, sz):
                ptep = H.huge_pte_offset(mm, a, sz)
                if ptep < 0:
                    continue
                if sz == T.PMD_SIZE:
                    row = ptep // 512
                    if k.ptpool.pt_share_count[row]:
                        users.setdefault(row, set()).add(id(mm))
                e = k.ptpool.mv[ptep]
                if not e & (_P | T._PAGE_PROTNONE):
                    continue
                usage += 1 << h.order
                if sz == T.PMD_SIZE and k.ptpool.pt_share_count[ptep // 512]:
                    in_shared += 1 << h.order
                if not e & _PSE:
                    rep(f"{_mmname(mm)}: hugetlb entry at {a:#x} lacks _PAGE_PSE ({e:#x})")
                p = (e & _PFN) >> 12
                if folio_h.get(p) is not h:
                    rep(f"{_mmname(mm)}: hugetlb entry at {a:#x} maps {p:#x}, not an in-use "
                        f"{h.name} folio")
                if ptep not in seen:
                    seen.add(ptep)
                    maps[p] = maps.get(p, 0) + 1
                if e & _RW and not v.vm_flags & VM_MAYSHARE and mem.mapping[p + 1] != 1:
                    rep(f"{_mmname(mm)}: private hugetlb folio {p:#x} writable at {a:#x} "
                        f"with {mem.mapping[p + 1]} mappings")
        # Pages reached through a shared PMD table count only for the mm that
        # faulted them in (huge_pmd_share() does not hugetlb_count_add()).
        if not usage - in_shared <= getattr(mm, "hugetlb_usage", 0) <= usage:
            rep(f"{_mmname(mm)}: hugetlb_usage {getattr(mm, 'hugetlb_usage', 0)}, "
                f"page tables map {usage} pages ({in_shared} through shared PMD tables)")
    # Every hugetlbfs inode alive (the superblocks' s_inodes), mapped or not: its page
    # cache holds hugetlb folios of its hstate at distinct indices below i_size or past
    # it only by fallocate(KEEP_SIZE), i_blocks counts them, and the pool's reservations
    # are what the reservation maps promise (below).
    for sb in getattr(k, "hugetlbfs_sbs", ()):
        for inode in sb.s_inodes.values():
            if inode.i_mapping is not None:
                cache[id(inode)] = inode
    incache = {}
    for inode in cache.values():
        h = inode.hstate
        for idx, p in inode.pages.items():
            incache[p] = incache.get(p, 0) + (1 << inode.hstate.order)
            if folio_h.get(p) is not h or p in h.hugepage_freelists:
                rep(f"hugetlbfs inode {inode.i_ino}: page cache index {idx} holds {p:#x}, "
                    f"not an in-use {h.name} folio")
        if inode.i_blocks != len(inode.pages) * (h.huge_page_size() >> 9):
            rep(f"hugetlbfs inode {inode.i_ino}: i_blocks {inode.i_blocks} for "
                f"{len(inode.pages)} cached {h.name} folios")
        if len(set(inode.pages.values())) != len(inode.pages):
            rep(f"hugetlbfs inode {inode.i_ino}: one folio cached at two indices")
    _check_hugetlb_reservations(k, rep, cache, live)
    _check_shm(k, rep, live)
    for h in k.hstates:
        for p in h.hugepage_activelist:
            exp = maps.get(p, 0) + incache.get(p, 0)
            if mem.refcount[p] != exp or mem.lru_prev[p + 1] != maps.get(p, 0):
                rep(f"hugetlb folio {p:#x}: refcount {mem.refcount[p]} (expected {exp}), "
                    f"entire mapcount {mem.lru_prev[p + 1]} (expected {maps.get(p, 0)})")
    for row, who in users.items():
        if k.ptpool.pt_share_count[row] != len(who) - 1:
            rep(f"hugetlb: shared PMD table pfn {k.ptpool.slot_pfn[row]:#x} has "
                f"pt_share_count {k.ptpool.pt_share_count[row]}, used by {len(who)} mms")


def _check_shm(k, rep, live):
    """SysV shm: each segment's shm_nattch = the VMAs attaching it in live mms, and a
    segment marked SHM_DEST still has attaches."""
    ns = getattr(k, "shm_ns", None)
    if ns is None:
        return
    from vmsim.ipc.shm import shm_vm_ops, SHM_DEST
    att = {}
    for mm in live:
        for v in mm.mm_mt:
            if v.vm_ops is shm_vm_ops:
                sid = v.vm_file.private_data.id
                att[sid] = att.get(sid, 0) + 1
    for shp in ns.ipcs.values():
        if shp.shm_nattch != att.get(shp.id, 0):
            rep(f"shm {shp.id}: shm_nattch {shp.shm_nattch}, {att.get(shp.id, 0)} VMAs attach it")
        if shp.mode & SHM_DEST and not shp.shm_nattch:
            rep(f"shm {shp.id}: SHM_DEST with no attach left, not destroyed")


def _check_hugetlb_reservations(k, rep, inodes, live):
    """resv_huge_pages of each hstate = what the reservation maps still promise: the
    shared maps' reserved indices with no page in the cache (an inode's resv_map),
    plus each private owner VMA's pages not instantiated yet (the region count its
    ->close would give back), less the in-use folios flagged HPG_restore_reserve
    (allocated from a reservation that goes back to the pool when they are freed)."""
    from vmsim.mm import hugetlb as H
    want = {h: 0 for h in k.hstates}
    for inode in inodes.values():
        want[inode.hstate] += len(inode.resv_map.regions - set(inode.pages))
    for mm in live:
        for v in mm.mm_mt:
            if not v.vm_flags & VM_HUGETLB or v.vm_flags & VM_MAYSHARE:
                continue
            if not H.is_vma_resv_set(v, H.HPAGE_RESV_OWNER) or H.vma_resv_map(v) is None:
                continue
            h = H.hstate_vma(v)
            start = H.vma_hugecache_offset(h, v, v.vm_start)
            end = H.vma_hugecache_offset(h, v, v.vm_end)
            want[h] += (end - start) - H.region_count(H.vma_resv_map(v), start, end)
    for h in k.hstates:
        pending = sum(1 for p in h.hugepage_activelist if H._hpg(k, p) & H.HPG_restore_reserve)
        if h.resv_huge_pages + pending != want[h]:
            rep(f"hugetlb {h.name}: resv_huge_pages {h.resv_huge_pages} (+{pending} folios to "
                f"restore), the reservation maps promise {want[h]}")


def _lost_frames(k, ranges, free):
    mem = k.mem
    out = []
    for lo, hi in ranges:
        pf = np.arange(lo, hi, dtype=np.int64)
        f = mem.np_flags[lo:hi]
        sel = (mem.np_refcount[lo:hi] == 0) & ((f & (PG_reserved | PG_tail)) == 0) & ~free.mask(pf)
        out.extend(pf[sel][:8].tolist())
    return "pfns " + ", ".join(f"{p:#x}" for p in out[:8]) if out else "none located"


FULL_EVERY = 64             # default: a full pass every this many checks


class VMChecker:
    """The machine's debug checker: after every ``every`` syscalls or accesses an
    incremental pass (the mms the call touched, the whole mem_map), and every
    ``full_every``-th pass a full one (every mm walked again); ``machine.check()`` and
    ``check_all`` always run a full pass. ``full_every`` defaults to $VMSIM_DEBUG_VM_FULL
    or FULL_EVERY; 1 makes every pass full (the checker before it was incremental).

    ``VMChecker(every=10).install(machine)`` replaces the machine's per-syscall hook.
    """

    def __init__(self, every: int = 1, full_every: int = None):
        import os
        self.every = max(1, int(every))
        if full_every is None:
            full_every = int(os.environ.get("VMSIM_DEBUG_VM_FULL", "") or FULL_EVERY)
        self.full_every = max(1, int(full_every))
        self.calls = 0
        self.runs = 0
        self.full_runs = 0
        self.since_full = 0
        self.machine = None
        self._state = _IncrState()

    def install(self, machine):
        self.machine = machine
        machine.k.checker = self
        machine._after_syscall = self.after_syscall     # instance attribute shadows the method
        return self

    def uninstall(self):
        if self.machine is not None:
            self.machine.__dict__.pop("_after_syscall", None)
            self.machine.k.checker = None
            self.machine = None

    def after_syscall(self):
        self.calls += 1
        if self.calls % self.every == 0:
            self.step()

    def step(self):
        """One pass: incremental, or full every ``full_every`` passes."""
        self.runs += 1
        self.since_full += 1
        if self.since_full >= self.full_every or not self._state.valid:
            check_all(self.machine.k)
        else:
            _check_all(self.machine.k, self._state, full=False)

    def check(self):
        """A full pass now."""
        self.runs += 1
        check_all(self.machine.k)

    @property
    def last_touched(self):
        """The mms the last pass walked."""
        return self._state.last_touched

    __call__ = check


def after_syscall(machine):
    """The hook Machine._after_syscall calls with VMSIM_DEBUG_VM on: the machine's
    checker (made at first use) takes its step."""
    ch = machine.k.checker
    if not isinstance(ch, VMChecker):
        ch = VMChecker()
        ch.machine = machine
        machine.k.checker = ch
    ch.step()


def _unique(a):
    """np.unique(a) by sorting (vmsim-only): numpy >= 2.3 finds a plain np.unique's
    values with a hash table, some 50x slower than sorting on the checker's arrays of
    PFNs (the 262,144 of a 1 GiB page: 0.86 s against 0.017 s on numpy 2.4)."""
    a = np.sort(np.asarray(a).ravel())
    if len(a) > 1:
        a = a[np.concatenate(([True], a[1:] != a[:-1]))]
    return a


def _folio_heads(mem, pfns):
    """page_folio() of each PFN (vectorized): tail pages map to their head."""
    pfns = np.asarray(pfns, dtype=np.int64)
    out = pfns.copy()
    # Only the tail pages are looked up, each order over those still unresolved.
    todo = np.flatnonzero(mem.np_flags[pfns] & PG_tail)
    tp = pfns[todo]
    for order in range(1, 19):
        if not len(todo):
            break
        cand = tp & ~((1 << order) - 1)
        cf = mem.np_flags[cand]
        ok = ((cf & PG_head) != 0) & (((cf & PG_ORDER_MASK) >> PG_ORDER_SHIFT) >= order)
        out[todo[ok]] = cand[ok]
        todo, tp = todo[~ok], tp[~ok]
    return out


def _check_file_state(k, rep, aspaces, mem, pmd_heads=()):
    """File folios: nr_dirty counts the dirty pages of disk-file folios, nothing is
    under writeback between syscalls, an evicted (unlinked, closed, unmapped) inode
    left nothing in the page cache, and mapcounts of large folios add up (entire
    mapcount = PMD mappings, _large_mapcount = PMD + PTE mappings)."""
    from vmsim.mm.filemap import PG_writeback
    npmd = {}
    for h in np.asarray(pmd_heads).tolist():
        npmd[h] = npmd.get(h, 0) + 1
    dirty = 0
    for am in aspaces:
        host = am.host
        d = _file_state_clean(mem, am, host, npmd, PG_writeback)
        if d is not None:
            dirty += d
            continue
        heads = set(am.i_pages.values())
        if getattr(host, "i_sb", None) is not None and host.i_mapping is not am and heads:
            rep(f"page cache: mapping {am.id} of an evicted inode still holds {len(heads)} folios")
        for h in heads:
            f = mem.flags[h]
            nr = 1 << ((f & PG_ORDER_MASK) >> PG_ORDER_SHIFT) if f & PG_head else 1
            if f & PG_writeback:
                rep(f"page cache: pfn {h:#x} still under writeback after the syscall")
            if f & PG_dirty and not am.swapbacked:
                dirty += nr
            if f & PG_head:
                msg = _large_folio_mapcounts(mem, h, nr, npmd)
                if msg:
                    rep(msg)
    if k.vmstat[vmstat.NR_DIRTY] != dirty:
        rep(f"vmstat nr_dirty = {k.vmstat[vmstat.NR_DIRTY]}, dirty disk-file page-cache pages {dirty}")
    if k.vmstat[vmstat.NR_WRITEBACK]:
        rep(f"vmstat nr_writeback = {k.vmstat[vmstat.NR_WRITEBACK]} after the syscall")


def _check_ext4_blocks(k, aspaces, rep):
    """ext4's block maps (inode.i_blocks: page index -> block number) and the device's
    blocks (block_device.disk, free_blocks): each map a sound xarray, unwritten
    (preallocated) past i_size;
    each block of the device mapped by one inode's index or free, never both; a
    mapped block holds 4 KiB, a free one nothing."""
    bdev = getattr(k.vfs, "bdev", None)
    if bdev is None:
        return
    disk = bdev.disk
    used = []
    for am in aspaces:
        ino = am.host
        blocks = getattr(ino, "i_blocks", None)
        if not hasattr(blocks, "_check"):
            continue                                   # hugetlbfs counts, no map
        for msg in blocks._check()[:3]:
            rep(f"ext4: inode {ino.i_ino} i_blocks: {msg}")
        if getattr(ino, "_es_delayed", None):
            _check_ext4_delayed(k, am, ino, rep)
        if not blocks:
            continue
        if ino.i_sb.s_bdev is not bdev:
            rep(f"ext4: inode {ino.i_ino} maps blocks without a block device")
            continue
        idx, blk = blocks._arrays()
        if int(idx[-1]) >= (ino.i_size + 4095) >> 12:
            # Past i_size only preallocated (unwritten) blocks: writeback stops at
            # i_size, truncation frees what lies past it (ext4_truncate).
            from vmsim.fs.ext4 import _UNWRITTEN
            past = idx >= (ino.i_size + 4095) >> 12
            for i, b in zip(idx[past][:64].tolist(), blk[past][:64].tolist()):
                if 0 <= b < len(disk) and disk[b] is not _UNWRITTEN:
                    rep(f"ext4: inode {ino.i_ino} maps a written block at index {i:#x}, past "
                        f"i_size {ino.i_size}")
                    break
        used.append(blk)
    used = np.concatenate(used) if used else np.zeros(0, np.int64)
    free = np.asarray(bdev.free_blocks, np.int64)
    both = np.concatenate([used, free])
    if len(both) and (both.min() < 0 or both.max() >= len(disk)):
        rep(f"ext4: block numbers outside the device's {len(disk)} blocks")
        return
    n = np.bincount(both, minlength=len(disk))
    for b in np.flatnonzero(n != 1)[:3].tolist():
        rep(f"ext4: block {b} is mapped or free {int(n[b])} times")
    # Lists, not generators: a Ctrl-C that lands in a generator the tracer's profile hook
    # is finalizing is lost ("Exception ignored in: <generator ...>"), and `vmsim run`
    # went on looping (seen once in CI, in test_ctrl_c_exits_130_without_traceback).
    empty = np.array([d is None for d in disk], dtype=bool)
    for b in used[empty[used]][:3].tolist():
        rep(f"ext4: mapped block {b} holds nothing")
    for b in free[~empty[free]][:3].tolist():
        rep(f"ext4: free block {b} holds data")
    if any([not isinstance(disk[b], bytes) or len(disk[b]) != 4096
            for b in set(np.flatnonzero(~empty).tolist())]):
        rep("ext4: a block holds other than 4 KiB of bytes")


def _check_ext4_delayed(k, am, ino, rep):
    """ext4's delayed blocks (the reservations i_reserved_data_blocks counts): each a
    hole of the block map inside i_size whose cached folio has a dirty buffer there
    (written, not yet written back: writeback allocates it, truncation and hole
    punching release it)."""
    from vmsim.fs.buffer import BH_Dirty
    mem = k.mem
    last = (ino.i_size + 4095) >> 12
    for i in sorted(ino._es_delayed)[:4096]:
        folio = am.i_pages.get(i)
        bh = am.folio_private.get(folio) if folio is not None and am.folio_private else None
        if ino.i_blocks.get(i) is not None:
            rep(f"ext4: inode {ino.i_ino} has block {i:#x} both mapped and delayed")
        elif i >= last:
            rep(f"ext4: inode {ino.i_ino} has a delayed block at {i:#x}, past i_size "
                f"{ino.i_size}")
        elif bh is None or not bh[i - int(mem.index[folio])] & BH_Dirty:
            rep(f"ext4: inode {ino.i_ino} has a delayed block at {i:#x} without a dirty "
                f"buffer")
        else:
            continue
        break


def _check_lru_batches(k, cpu, fb, rep):
    """A per-CPU LRU batch (mm/swap.c __folio_batch_add_and_move) moves when it fills
    (PAGEVEC_SIZE) and never holds a large folio (folio_may_be_lru_cached()) or a tail
    page; each entry holds a reference (counted through swap.batch_refs)."""
    from vmsim.mm.swap import PAGEVEC_SIZE
    flags = k.mem.flags
    for name in ("lru_add", "lru_move_tail", "lru_deactivate_file", "lru_deactivate",
                 "lru_lazyfree", "activate"):
        lst = getattr(fb, name)
        if len(lst) >= PAGEVEC_SIZE:
            rep(f"LRU batch: cpu {cpu}'s {name} batch holds {len(lst)} folios, "
                f"PAGEVEC_SIZE is {PAGEVEC_SIZE}")
        for p in lst:
            if flags[p] & (PG_head | PG_tail):
                rep(f"LRU batch: pfn {p:#x} in cpu {cpu}'s {name} batch is "
                    f"{'a large folio' if flags[p] & PG_head else 'a tail page'}")


def _check_buffer_heads(k, aspaces, rep):
    """Buffer heads (vmsim.fs.buffer, folio->private): only a disk file's page-cache
    folio heads have them, one state word per page, of the modelled bh_state_bits;
    a dirty buffer is uptodate, mapped too inside EOF (block_dirty_folio dirties a
    buffer past EOF that truncation discarded), and its folio dirty
    (mark_buffer_dirty dirties both; writeback cleans both)."""
    from vmsim.fs.buffer import BH_Dirty, BH_Mapped, BH_Uptodate, _BH_MASK
    from vmsim.mm.filemap import _nr
    mem = k.mem
    for am in aspaces:
        fp = getattr(am, "folio_private", None)
        if not fp:
            continue
        if am.swapbacked:
            rep(f"buffers: shmem mapping {am.id} has buffer heads")
        for folio, bh in list(fp.items())[:4096]:
            index = int(mem.index[folio])
            if mem.mapping[folio] != am.id or am.i_pages.get(index) != folio or \
                    mem.flags[folio] & PG_tail:
                rep(f"buffers: pfn {folio:#x} has buffers of mapping {am.id} but is not "
                    f"its page-cache folio at index {index:#x}")
                continue
            if not isinstance(bh, list) or len(bh) != _nr(k, folio):
                rep(f"buffers: pfn {folio:#x}: {len(bh)} buffers for {_nr(k, folio)} pages")
                continue
            host = getattr(am, "host", None)
            eof = ((host.i_size + 4095) >> 12) - index if host is not None else len(bh)
            for i, state in enumerate(bh):
                want = BH_Mapped | BH_Uptodate if i < eof else BH_Uptodate
                if state & ~_BH_MASK:
                    rep(f"buffers: pfn {folio:#x}: state {state:#x} has unknown bits")
                elif state & BH_Dirty and (state & want) != want:
                    rep(f"buffers: pfn {folio:#x}: a dirty buffer not "
                        f"{'mapped and ' if i < eof else ''}uptodate")
                elif state & BH_Dirty and not mem.flags[folio] & PG_dirty:
                    rep(f"buffers: pfn {folio:#x}: a dirty buffer on a clean folio")


def _file_state_clean(mem, am, host, npmd, PG_writeback):
    """_check_file_state's checks of one address_space, vectorized: its dirty pages
    if none fails, else None (the caller's loop then reports, in its own order)."""
    try:
        pf = am.i_pages._arrays()[1]
    except Exception:                    # a malformed leaf: the caller's loop reports
        return None
    if not len(pf):
        return 0
    if getattr(host, "i_sb", None) is not None and host.i_mapping is not am:
        return None
    heads = _unique(pf)
    f = mem.np_flags[heads].astype(np.int64)
    if (f & PG_writeback).any():
        return None
    nr = np.where(f & PG_head, np.int64(1) << ((f & PG_ORDER_MASK) >> PG_ORDER_SHIFT), 1)
    dirty = 0 if am.swapbacked else int(nr[(f & PG_dirty) != 0].sum())
    for h, n in zip(heads[(f & PG_head) != 0].tolist(), nr[(f & PG_head) != 0].tolist()):
        if _large_folio_mapcounts(mem, h, n, npmd):
            return None
    return dirty


def _large_folio_mapcounts(mem, h: int, nr: int, npmd) -> str:
    """What is wrong with the mapcounts of the page-cache large folio at ``h`` of ``nr``
    pages (entire mapcount = PMD mappings, _large_mapcount = PMD + PTE mappings,
    _nr_pages_mapped = pages mapped by PTEs), or "" when they add up."""
    mc = mem.np_mapcount[h:h + nr]
    total = int(mc.sum(dtype=np.int64))
    mapped = int(np.count_nonzero(mc))
    pm = npmd.get(h, 0)
    if mem.mapping[h + 1] == total + pm and mem.index[h + 1] == mapped and mem.lru_prev[h + 1] == pm:
        return ""
    return (f"page cache: large folio pfn {h:#x}: _large_mapcount {mem.mapping[h + 1]}, "
            f"_nr_pages_mapped {mem.index[h + 1]}, _entire_mapcount "
            f"{mem.lru_prev[h + 1]}; PTEs map {total} times {mapped} pages, {pm} PMDs")


def _check_shadow_entries(k, aspaces, rep):
    """Shadow entries (mm/workingset.c): value entries in i_pages (the xarray's own
    check: each a canonical slot at an offset aligned to its order and its siblings,
    never beside a folio in a slot; nrpages counts folios only: the caller). Each is
    a shadow workingset_eviction() packed (memcg 0, node 0, an eviction no later
    than the clock); none in shmem (its values would be swap entries), in an exiting
    mapping, in an unlinked inode nobody holds, or past the page holding i_size
    (truncation clears them); the shadow_nodes list is what the nodes' count and
    nr_values make it, and workingset_nodes counts it."""
    from vmsim.mm import workingset as ws
    from vmsim.mm import vmstat as vs
    from vmsim.mm._xarray import xa_is_value
    nodes = 0
    clock = k.lruvec.nonresident_age
    for am in aspaces:
        cache = am.i_pages
        nodes += len(am.shadow_nodes)
        if not cache.nr_values:
            if am.shadow_nodes:
                rep(f"workingset: mapping {am.id} has shadow nodes {sorted(am.shadow_nodes)[:3]} "
                    "and no shadow entries")
            continue
        if am.swapbacked:
            rep(f"workingset: shmem mapping {am.id} holds shadow entries")
        if am.exiting:
            rep(f"workingset: exiting mapping {am.id} holds shadow entries")
        host = am.host
        if getattr(host, "i_nlink", 1) == 0 and getattr(host, "i_count", 1) == 0:
            rep(f"workingset: unlinked, unused inode of mapping {am.id} holds shadow entries")
        size = getattr(host, "i_size", None)
        eof = (size + 4095) >> 12 if size is not None else 1 << 62
        for first, order, v in cache.values_in(0, (1 << 64) - 1):
            memcgid, nid, eviction, _w = ws.unpack_shadow(v)
            if not xa_is_value(v) or memcgid or nid or eviction > clock:
                rep(f"workingset: mapping {am.id} index {first:#x} holds {v:#x}, not a shadow "
                    f"packed by workingset_eviction (clock {clock})")
            if first + (1 << order) > eof:
                rep(f"workingset: mapping {am.id} shadow at {first:#x} (order {order}) lies "
                    f"past i_size {size:#x}: truncation should have cleared it")
        want = ws._xa_shadow_nodes(am)
        if want != am.shadow_nodes:
            rep(f"workingset: mapping {am.id} shadow_nodes {sorted(am.shadow_nodes)[:4]}, "
                f"its entries make {sorted(want)[:4]}")
    if nodes != k.vmstat[vs.WORKINGSET_NODES]:
        rep(f"workingset: workingset_nodes = {k.vmstat[vs.WORKINGSET_NODES]}, "
            f"{nodes} nodes on the shadow_nodes list")
