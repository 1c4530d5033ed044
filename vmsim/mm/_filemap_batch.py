"""vmsim-only: a compiled fill of a page-cache folio's PTEs for filemap_map_pages.

filemap_map_folio_range() maps a run of a large folio's pages whose PTEs are all
none with one set_pte_range(): folio_add_file_rmap_ptes() (each page's mapcount, the
folio's _large_mapcount and _nr_pages_mapped, NR_FILE_MAPPED) and set_ptes(). On
16- or 512-page runs the numpy slices those take cost more than the rest of the
fault; this one compiled call checks the PTEs, stores them and counts the mapcounts,
and the caller applies the folio-wide counts exactly as folio_add_file_rmap_ptes()
does. The state left is the Python path's (tests/test_file_thp.py compares them on
random page caches and tables).

The Python path runs instead while a tracer or profiler is installed (so traces show
set_pte_range and the rmap call), and with VMSIM_NUMBA=0 (or without numba) the same
loop runs as plain Python over memoryviews.
"""
from vmsim.mm import vmstat
from vmsim.mm import _pte_batch
from vmsim.mm.mm_types import VM_PFNMAP, VM_MIXEDMAP

_impl = {}
_state = {"enabled": True}


def _set_enabled(flag: bool):
    """Tests: switch the compiled fill off (the kernel-named Python path) or on."""
    _state["enabled"] = flag


def _fill_file_ptes(pool, mapcount, ptep, pte, page, nr):
    """Store nr PTEs from ``pte`` (consecutive pages from ``page``) at ptep if every
    one is none and raise each page's mapcount; return how many pages were mapped
    for the first time, or -1 (nothing done) when a PTE is not none."""
    for i in range(nr):
        if pool[ptep + i] != 0:
            return -1
    first = 0
    for i in range(nr):
        pool[ptep + i] = pte + (i << 12)
        m = mapcount[page + i] + 1
        mapcount[page + i] = m
        if m == 1:
            first += 1
    return first


def _usable(vma) -> bool:
    """The compiled fill applies: not traced, batches on (the range operations'
    switch), and a VMA whose pages vm_normal_page() takes as they are."""
    if not _state["enabled"] or not _pte_batch._state["enabled"] or \
            vma.vm_flags & (VM_PFNMAP | VM_MIXEDMAP) or _pte_batch._tracing():
        return False
    if not _pte_batch._impl:
        _pte_batch._load()
    return True


def _fill(k, folio: int, page: int, nr: int, ptep: int, entry: int) -> int:
    """Map pages [page, page + nr) of a large page-cache folio with PTEs from
    ``entry`` (set_pte_range's, for ``page``) if all nr PTEs are none; the folio's
    counts as folio_add_file_rmap_ptes(). Returns the pages mapped (nr), or -1."""
    mem = k.mem
    fn = _impl.get("fill")
    if fn is None:
        fn = _fill_file_ptes
        if _pte_batch._impl.get("compiled"):
            from vmsim._jitcache import _njit
            fn = _njit(fn, nogil=True)
        _impl["fill"] = fn
    if _pte_batch._impl.get("compiled"):
        first = fn(k.ptpool.arr, mem.np_mapcount, ptep,
                   entry - (1 << 64) if entry >= 1 << 63 else entry, page, nr)
    else:
        first = fn(k.ptpool.mv, mem.mapcount, ptep, entry, page, nr)
    if first < 0:
        return -1
    # folio_add_file_rmap_ptes() of a large folio: _large_mapcount, _nr_pages_mapped,
    # and NR_FILE_MAPPED unless a PMD maps the folio too (ENTIRELY_MAPPED).
    mem.mapping[folio + 1] += nr
    mem.index[folio + 1] += first
    if not mem.lru_prev[folio + 1]:
        k.vmstat[vmstat.NR_MAPPED] += first
    return nr
