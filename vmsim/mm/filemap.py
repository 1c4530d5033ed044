"""The page cache core (mm/filemap.c, include/linux/pagemap.h).

An address_space keeps its folios by index: the kernel's xarray ``i_pages``, here
vmsim.mm._xarray._XArray (64-slot leaves) mapping every page index a folio covers to
the folio's head PFN (a large folio is one multi-index entry in the kernel's xarray). A cached folio holds one reference per page for
the cache (filemap_add_folio: folio_ref_add(folio, nr)). The fault side:
filemap_fault() (->fault: minor when cached, VM_FAULT_MAJOR and read-around when not,
VM_FAULT_RETRY after dropping the fault lock for I/O) and filemap_map_pages()
(->map_pages, fault-around: maps what is cached, uptodate and not marked
PG_readahead, a large folio as a whole when it lies inside the VMA and one page
table). The read side: filemap_read() with page_cache_sync_ra/async_ra.
"""
import errno

from vmsim.mm import vmstat, _filemap_batch, workingset
from vmsim.mm._xarray import _XArray, xas_try_split_min_order
from vmsim.mm.page_alloc import __GFP_WRITE
from vmsim.arch.x86.pgtable import pte_offset_map, pfn_pte, pte_mkdirty
from vmsim.mm.mm_types import (VM_FAULT_NOPAGE, VM_FAULT_OOM, VM_FAULT_SIGBUS, VM_FAULT_MAJOR,
                               VM_FAULT_RETRY, VM_FAULT_LOCKED, MM_SHMEMPAGES, MM_FILEPAGES,
                               FAULT_FLAG_TRIED, FAULT_FLAG_ALLOW_RETRY, FAULT_FLAG_RETRY_NOWAIT)
from vmsim.mm.page_flags import (PG_dirty, PG_uptodate, PG_locked, PG_swapbacked, PG_head,
                                 PG_tail, PG_ORDER_MASK, PG_ORDER_SHIFT, PG_reclaim,
                                 PG_workingset, PG_private, PG_referenced)

# PG_readahead shares its bit with PG_reclaim (include/linux/page-flags.h).
PG_readahead = PG_reclaim
# PG_writeback: vmsim's I/O completes inside the call that starts it, so the flag
# is only set between folio_start_writeback and folio_end_writeback of one call.
PG_writeback = PG_private

# __filemap_get_folio() flags (include/linux/pagemap.h).
FGP_ACCESSED = 0x1
FGP_LOCK = 0x2
FGP_CREAT = 0x4
FGP_WRITE = 0x8
FGP_NOFS = 0x10
FGP_NOWAIT = 0x20
FGP_FOR_MMAP = 0x40
FGP_STABLE = 0x80
FGF_GET_ORDER_SHIFT = 26
FGP_WRITEBEGIN = FGP_LOCK | FGP_WRITE | FGP_CREAT | FGP_STABLE
MAX_PAGECACHE_ORDER = 9          # min(MAX_XAS_ORDER, PMD_ORDER) on x86-64
HPAGE_PMD_NR = 512
_PSE = 1 << 7                    # _PAGE_PSE
PRESENT = 1 << 0                 # _PAGE_PRESENT
_RW = 1 << 1                     # _PAGE_RW


class address_space:
    """struct address_space: the folios of one inode by page index."""

    def __init__(self, k, host, swapbacked: bool, a_ops=None, large_folios=False):
        self.host = host
        self.i_pages = _XArray()
        self.nrpages = 0
        self.swapbacked = swapbacked
        self.a_ops = a_ops
        # mapping_set_large_folios(): orders up to MAX_PAGECACHE_ORDER (ext4 in 6.18).
        self.max_folio_order = MAX_PAGECACHE_ORDER if large_folios else 0
        self.id = k._register_object(self)
        self.i_mmap = []
        # The xarray nodes of this mapping on the shadow_nodes list (nodes holding only
        # shadow entries: vmsim.mm.workingset.workingset_update_node).
        self.shadow_nodes = set()
        self.exiting = False              # AS_EXITING (mapping_set_exiting)
        # folio->private of this mapping's folios that have buffer heads (vmsim.fs.buffer):
        # head PFN -> one enum bh_state_bits word per block.
        self.folio_private = {}


def mapping_exiting(mapping) -> bool:
    return mapping.exiting


def mapping_empty(mapping) -> bool:
    """mapping_empty(): xa_empty(): no folio and no shadow entry."""
    return not mapping.i_pages.count


def mapping_large_folio_support(mapping) -> bool:
    return mapping.max_folio_order > 0


def shmem_mapping(mapping) -> bool:
    return mapping.swapbacked


def i_size_read(mapping) -> int:
    return mapping.host.i_size


def fgf_set_order(size: int) -> int:
    """fgf_set_order(): the folio order a write of ``size`` bytes asks for."""
    shift = size.bit_length() - 1 if size > 0 else 0
    if shift <= 12:
        return 0
    return (shift - 12) << FGF_GET_ORDER_SHIFT


def _order(k, pfn: int) -> int:
    f = k.mem.flags[pfn]
    return (f & PG_ORDER_MASK) >> PG_ORDER_SHIFT if f & PG_head else 0


def _nr(k, pfn: int) -> int:
    f = k.mem.flags[pfn]
    return 1 << ((f & PG_ORDER_MASK) >> PG_ORDER_SHIFT) if f & PG_head else 1


def folio_next_index(k, folio: int) -> int:
    return k.mem.index[folio] + _nr(k, folio)


def filemap_alloc_folio(k, gfp: int, order: int) -> int:
    """filemap_alloc_folio(): a folio of 2**order pages (compound when large, and
    large_rmappable: folio_alloc's page_rmappable_folio), or -1."""
    from vmsim.mm.page_alloc import __GFP_COMP
    from vmsim.mm.folio import prep_compound_page
    from vmsim.mm.page_flags import PG_large_rmappable
    pfn = k.page_alloc.alloc_pages(gfp | (__GFP_COMP if order else 0), order, k._current_cpu())
    if pfn >= 0 and order:
        prep_compound_page(k, pfn, order)
        k.mem.flags[pfn] = k.mem.flags[pfn] | PG_large_rmappable
    return pfn


def filemap_add_folio(k, mapping, pfn: int, index: int, gfp: int = 0):
    """filemap_add_folio() -> __filemap_add_folio(): insert a locked folio at index;
    the cache takes one reference per page and the folio counts in nr_file_pages
    (nr_shmem). A shadow entry it replaces is a refault (workingset_refault), unless
    the folio is being added for a write (__GFP_WRITE). The caller then does
    folio_add_lru(), as filemap_add_folio does next."""
    mem = k.mem
    nr = _nr(k, pfn)
    cache = mapping.i_pages
    shadow = None
    if cache.nr_values:
        # xas_for_each_conflict(): value entries give way; a larger one (the first and
        # only entry met) is split down to the folio's order first, its other pieces
        # keeping the shadow (xas_try_split, one tree level a step).
        forder = _order(k, pfn)
        order = -1
        for _first, o, entry in cache.values_in(index, index + nr - 1):
            shadow = entry
            if order == -1:
                order = o
        if shadow is not None and order > 0 and order > forder:
            split_order = max(forder, xas_try_split_min_order(order))
            while order > forder:
                cache.split_value(index, order, split_order)
                order = split_order
                split_order = max(xas_try_split_min_order(split_order), forder)
    mem.mapping[pfn] = mapping.id
    mem.index[pfn] = index
    mem.refcount[pfn] += nr
    if nr == 1:
        cache[index] = pfn
    else:
        cache.store_range(index, index + nr - 1, pfn)
    mapping.nrpages += nr
    k.vmstat[vmstat.NR_FILE_PAGES] += nr
    if mapping.swapbacked:
        k.vmstat[vmstat.NR_SHMEM] += nr
    if nr >= 512:                                   # folio_test_pmd_mappable()
        k.vmstat[vmstat.NR_SHMEM_HUGEPAGES if mapping.swapbacked else vmstat.NR_FILE_HUGEPAGES] += nr
    if cache.nr_values or mapping.shadow_nodes:
        workingset.workingset_update_node(k, mapping, index, index + nr - 1)
    if shadow is not None and not gfp & __GFP_WRITE:
        workingset.workingset_refault(k, pfn, shadow)


def filemap_unaccount_folio(k, mapping, pfn: int, nr: int):
    """filemap_unaccount_folio(): the cache counters; a dirty folio leaving the cache
    stops counting as dirty (folio_account_cleaned)."""
    k.vmstat[vmstat.NR_FILE_PAGES] -= nr
    if nr >= 512:
        k.vmstat[vmstat.NR_SHMEM_HUGEPAGES if mapping.swapbacked else vmstat.NR_FILE_HUGEPAGES] -= nr
    if mapping.swapbacked:
        k.vmstat[vmstat.NR_SHMEM] -= nr
    elif k.mem.flags[pfn] & PG_dirty:
        folio_account_cleaned(k, pfn, nr)


def filemap_remove_folio(k, mapping, index: int):
    """filemap_remove_folio(): delete the folio holding ``index`` from the cache
    (leaving no shadow) and drop the cache's references."""
    __filemap_remove_folio(k, mapping, mapping.i_pages[index], None)


def __filemap_remove_folio(k, mapping, pfn: int, shadow):
    """__filemap_remove_folio() -> page_cache_delete(): the folio's slots get
    ``shadow`` (reclaim's workingset_eviction entry) or become empty; then the cache's
    references are dropped (vmsim frees the folio here, as the caller would)."""
    from vmsim.mm.swap import folio_put_refs
    mem = k.mem
    nr = _nr(k, pfn)
    first = mem.index[pfn]
    cache = mapping.i_pages
    if shadow is not None:
        cache.store_value(first, _order(k, pfn), shadow)
    elif nr == 1:
        del cache[first]
    else:
        cache.erase_range(first, first + nr - 1)
    mapping.nrpages -= nr
    if cache.nr_values or mapping.shadow_nodes:
        workingset.workingset_update_node(k, mapping, first, first + nr - 1)
    filemap_unaccount_folio(k, mapping, pfn, nr)
    if mapping.folio_private:
        from vmsim.fs.buffer import _free_buffers
        _free_buffers(mapping, pfn)
    mem.flags[pfn] = mem.flags[pfn] & ~(PG_dirty | PG_readahead)
    mem.mapping[pfn] = 0
    folio_put_refs(k, pfn, nr)


# --- dirty and writeback state (mm/page-writeback.c) -------------------------------
def folio_account_dirtied(k, pfn: int, nr: int):
    """folio_account_dirtied(): nr_dirty, nr_zone_write_pending, nr_dirtied."""
    v = k.vmstat
    v[vmstat.NR_DIRTY] += nr
    v[vmstat.NR_ZONE_WRITE_PENDING] += nr
    v[vmstat.NR_DIRTIED] += nr


def folio_account_cleaned(k, pfn: int, nr: int):
    """folio_account_cleaned(): undo folio_account_dirtied() for a dropped folio."""
    v = k.vmstat
    v[vmstat.NR_DIRTY] -= nr
    v[vmstat.NR_ZONE_WRITE_PENDING] -= nr


def folio_mark_dirty(k, pfn: int):
    """folio_mark_dirty() -> ->dirty_folio: filemap_dirty_folio() sets PG_dirty on the
    folio; a page-cache folio of a disk file counts in nr_dirty (shmem's never do:
    noop_dirty_folio, its mapping has no writeback). ext4's (ext4_dirty_folio ->
    block_dirty_folio) first marks every buffer of a folio that has them dirty."""
    from vmsim.mm.folio import page_folio
    mem = k.mem
    if mem.flags[pfn] & PG_tail:
        pfn = page_folio(k, pfn)
    mid = mem.mapping[pfn]
    if mid > 0 and not mem.flags[pfn] & PG_swapbacked:
        # (a lazyfree anon folio is not swapbacked either: its mapping is an anon_vma;
        # a hugetlbfs folio's is -1)
        fp = getattr(k.objects[mid], "folio_private", None)
        bh = fp.get(pfn) if fp else None
        if bh is not None:
            from vmsim.fs.buffer import block_dirty_folio
            block_dirty_folio(k, k.objects[mid], pfn, bh)
            return
    __folio_mark_dirty(k, pfn)


def __folio_mark_dirty(k, pfn: int):
    """__folio_mark_dirty() (under folio_test_set_dirty): PG_dirty and the dirty
    accounting, the buffers left alone (mark_buffer_dirty's path)."""
    mem = k.mem
    f = mem.flags[pfn]
    if not f & PG_dirty:
        mem.flags[pfn] = f | PG_dirty
        if not f & PG_swapbacked and mem.mapping[pfn]:
            folio_account_dirtied(k, pfn, _nr(k, pfn))


# --- lookup ---------------------------------------------------------------------------
def filemap_get_entry(mapping, index: int):
    """filemap_get_entry(): the folio (no reference taken here), the shadow entry
    (xa_is_value) or None at ``index``."""
    return mapping.i_pages.load(index)


def filemap_get_folio(mapping, index: int) -> int:
    """filemap_get_folio(): the cached folio holding ``index`` (no reference taken
    here: callers that keep it take one), or -ENOENT."""
    pfn = mapping.i_pages.get(index)
    return -errno.ENOENT if pfn is None else pfn


def __filemap_get_folio(k, mapping, index: int, fgp_flags: int, gfp: int = None) -> int:
    """__filemap_get_folio(): find the folio at index, taking a reference; with
    FGP_CREAT allocate and add one (the order asked by FGF_GET_ORDER, lowered to fit
    the index's alignment and an existing neighbour), uptodate only after a read."""
    from vmsim.mm.page_alloc import GFP_HIGHUSER_MOVABLE
    from vmsim.mm.swap import folio_add_lru, folio_mark_accessed
    mem = k.mem
    pfn = mapping.i_pages.get(index)
    if pfn is not None:
        mem.refcount[pfn] += 1
        if fgp_flags & FGP_ACCESSED:
            folio_mark_accessed(k, pfn)
        return pfn
    if not fgp_flags & FGP_CREAT:
        return -errno.ENOENT
    order = (fgp_flags >> FGF_GET_ORDER_SHIFT) & 0x3F
    if not mapping_large_folio_support(mapping):
        order = 0
    order = min(order, mapping.max_folio_order)
    if index & ((1 << order) - 1):
        order = (index & -index).bit_length() - 1         # __ffs(index)
    while order and mapping.i_pages.any_in(index, index + (1 << order) - 1):
        order -= 1
    while True:
        pfn = filemap_alloc_folio(k, gfp if gfp is not None else GFP_HIGHUSER_MOVABLE, order)
        if pfn >= 0 or not order:
            break
        order -= 1
    if pfn < 0:
        return -errno.ENOMEM
    mem.flags[pfn] = mem.flags[pfn] | PG_locked
    if fgp_flags & FGP_ACCESSED:
        # "Init accessed so avoid atomic mark_page_accessed later".
        mem.flags[pfn] = mem.flags[pfn] | PG_referenced
    # FGP_WRITE: the folio is for a write (__GFP_WRITE), not a refault.
    filemap_add_folio(k, mapping, pfn, index, __GFP_WRITE if fgp_flags & FGP_WRITE else 0)
    folio_add_lru(k, pfn, k._current_cpu())
    mem.flags[pfn] = mem.flags[pfn] & ~PG_locked
    return pfn


def filemap_read_folio(k, file, mapping, folio: int) -> int:
    """filemap_read_folio(): ->read_folio, synchronously; 0 or -EIO."""
    mapping.a_ops.read_folio(k, mapping, folio)
    return 0 if k.mem.flags[folio] & PG_uptodate else -errno.EIO


# --- filemap_fault -------------------------------------------------------------------
MMAP_LOTSAMISS = 100


def maybe_unlock_mmap_for_io(vmf, fpin):
    """maybe_unlock_mmap_for_io(): a fault that may retry drops the mmap (or VMA) lock
    around I/O, pinning the file; returns the pinned file or None."""
    if fpin is not None:
        return fpin
    if (vmf.flags & (FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_RETRY_NOWAIT)) == FAULT_FLAG_ALLOW_RETRY:
        return vmf.vma.vm_file
    return None


def do_sync_mmap_readahead(vmf):
    """do_sync_mmap_readahead(): read-around for a page-cache miss (VM_HUGEPAGE: two
    PMD folios; VM_RAND_READ: none; VM_SEQ_READ: sync readahead; VM_EXEC: the VMA's
    pages from the fault on; else ra_pages centred on the fault, async_size a
    quarter). mmap_miss stops it after MMAP_LOTSAMISS misses."""
    from vmsim.mm.readahead import readahead_control, page_cache_ra_order, page_cache_sync_ra
    from vmsim.mm.mm_types import VM_HUGEPAGE, VM_RAND_READ, VM_SEQ_READ, VM_EXEC
    vma = vmf.vma
    file = vma.vm_file
    ra = file.f_ra
    mapping = file.f_mapping
    ractl = readahead_control(file, ra, mapping, vmf.pgoff)
    fpin = None
    vm_flags = vma.vm_flags
    if vm_flags & VM_HUGEPAGE:
        fpin = maybe_unlock_mmap_for_io(vmf, fpin)
        ractl.index &= ~511
        ra.size = 512
        if not vm_flags & VM_RAND_READ:
            ra.size *= 2
        ra.async_size = 512
        ra.order = 9
        page_cache_ra_order(ractl, ra)
        return fpin
    if (vm_flags & (VM_RAND_READ | VM_EXEC)) == VM_RAND_READ:
        return fpin
    if not ra.ra_pages:
        return fpin
    if vm_flags & VM_SEQ_READ:
        fpin = maybe_unlock_mmap_for_io(vmf, fpin)
        page_cache_sync_ra(ractl, ra.ra_pages)
        return fpin
    if ra.mmap_miss < MMAP_LOTSAMISS * 10:
        ra.mmap_miss += 1
    if ra.mmap_miss > MMAP_LOTSAMISS:
        return fpin
    if vm_flags & VM_EXEC:
        # exec_folio_order(): x86 asks for no particular order (0).
        start = vma.vm_pgoff
        end = start + ((vma.vm_end - vma.vm_start) >> 12)
        ra.order = 0
        ra.start = max(vmf.pgoff, start)
        ra.size = min(ra.start + ra.ra_pages, end) - ra.start
        ra.async_size = 0
    else:
        ra.start = max(0, vmf.pgoff - ra.ra_pages // 2)
        ra.size = ra.ra_pages
        ra.async_size = ra.ra_pages // 4
        ra.order = 0
    fpin = maybe_unlock_mmap_for_io(vmf, fpin)
    ractl.index = ra.start
    page_cache_ra_order(ractl, ra)
    return fpin


def do_async_mmap_readahead(vmf, folio: int):
    """do_async_mmap_readahead(): a hit lowers mmap_miss; a PG_readahead folio starts
    the next async window."""
    from vmsim.mm.readahead import readahead_control, page_cache_async_ra
    from vmsim.mm.mm_types import VM_RAND_READ
    file = vmf.vma.vm_file
    ra = file.f_ra
    fpin = None
    if vmf.vma.vm_flags & VM_RAND_READ or not ra.ra_pages:
        return fpin
    k = vmf.vma.vm_mm.kernel
    if not k.mem.flags[folio] & PG_locked and ra.mmap_miss:
        ra.mmap_miss -= 1
    if k.mem.flags[folio] & PG_readahead:
        fpin = maybe_unlock_mmap_for_io(vmf, fpin)
        page_cache_async_ra(readahead_control(file, ra, file.f_mapping, vmf.pgoff), folio,
                            ra.ra_pages)
    return fpin


def filemap_fault(vmf) -> int:
    """filemap_fault(): the folio at vmf.pgoff, locked, with a reference.

    Past EOF: SIGBUS. Cached: async readahead if marked, a minor fault. Not cached:
    pgmajfault, VM_FAULT_MAJOR, read-around (do_sync_mmap_readahead); the lock was
    dropped for the I/O, so the fault returns VM_FAULT_RETRY and the arch handler
    retries it with FAULT_FLAG_TRIED (which getrusage counts as major too).
    """
    vma = vmf.vma
    k = vma.vm_mm.kernel
    mem = k.mem
    file = vma.vm_file
    mapping = file.f_mapping
    index = vmf.pgoff
    max_idx = (i_size_read(mapping) + 4095) >> 12
    if index >= max_idx:
        return VM_FAULT_SIGBUS
    ret = 0
    fpin = None
    folio = mapping.i_pages.get(index)
    if folio is not None:
        mem.refcount[folio] += 1
        if not vmf.flags & FAULT_FLAG_TRIED:
            fpin = do_async_mmap_readahead(vmf, folio)
    else:
        k.vmstat[vmstat.PGMAJFAULT] += 1
        ret = VM_FAULT_MAJOR
        fpin = do_sync_mmap_readahead(vmf)
        folio = __filemap_get_folio(k, mapping, index, FGP_CREAT | FGP_FOR_MMAP)
        if folio < 0:
            if fpin is not None:
                return ret | VM_FAULT_RETRY
            return VM_FAULT_OOM
    if not mem.flags[folio] & PG_uptodate:
        # page_not_uptodate: read it in directly (VM_RAND_READ left it unread).
        fpin = maybe_unlock_mmap_for_io(vmf, fpin)
        err = filemap_read_folio(k, file, mapping, folio)
        if fpin is not None or err:
            from vmsim.mm.swap import folio_put
            folio_put(k, folio)
            return (ret | VM_FAULT_RETRY) if not err else VM_FAULT_SIGBUS
    if fpin is not None:
        from vmsim.mm.swap import folio_put
        folio_put(k, folio)
        return ret | VM_FAULT_RETRY
    max_idx = (i_size_read(mapping) + 4095) >> 12
    if index >= max_idx:
        from vmsim.mm.swap import folio_put
        folio_put(k, folio)
        return VM_FAULT_SIGBUS
    vmf.page = folio + (index - mem.index[folio])          # folio_file_page()
    return ret | VM_FAULT_LOCKED


def filemap_page_mkwrite(vmf) -> int:
    """filemap_page_mkwrite() / ext4_page_mkwrite(): the folio becomes dirty before the
    PTE is made writable (file_update_time, folio_mark_dirty); VM_FAULT_LOCKED."""
    vma = vmf.vma
    k = vma.vm_mm.kernel
    mapping = vma.vm_file.f_mapping
    from vmsim.mm.folio import page_folio
    folio = page_folio(k, vmf.page)
    if k.mem.mapping[folio] != mapping.id:
        return VM_FAULT_NOPAGE                     # truncated meanwhile
    folio_mark_dirty(k, folio)
    return VM_FAULT_LOCKED


# --- filemap_map_pages ----------------------------------------------------------------
def next_uptodate_folio(k, mapping, index: int, end_pgoff: int):
    """next_uptodate_folio(): (index, folio) of the next folio in [index, end_pgoff]
    that is uptodate, unlocked, not PG_readahead and inside i_size; or (-1, -1)."""
    mem = k.mem
    cache = mapping.i_pages
    max_idx = (i_size_read(mapping) + 4095) >> 12
    while index <= end_pgoff:
        folio = cache.get(index)
        if folio is None:
            index += 1
            continue
        f = mem.flags[folio]
        if f & (PG_locked | PG_readahead) or not f & PG_uptodate or index >= max_idx:
            index = mem.index[folio] + _nr(k, folio)
            continue
        return index, folio
    return -1, -1


def filemap_map_folio_range(vmf, folio: int, start: int, addr: int, nr_pages: int,
                            file_end: int, ptep: int) -> (int, int):
    """filemap_map_folio_range(): map pages [start, start + nr_pages) of a large
    folio; the whole folio when it is inside i_size (or shmem), the VMA and one page
    table. Returns (ret, pages mapped)."""
    vma = vmf.vma
    k = vma.vm_mm.kernel
    mem = k.mem
    pool = k.ptpool.mv
    mapping = vma.vm_file.f_mapping
    nr = _nr(k, folio)
    findex = mem.index[folio]
    addr0 = addr - start * 4096
    # "Fully within size of the file": file_end is the last index, so a folio that
    # ends at EOF is only mapped over the fault-around window here.
    if ((file_end >= findex + nr or mapping.swapbacked) and
            findex >= vma.vm_pgoff and
            vma.vm_start + ((findex + nr - vma.vm_pgoff) << 12) <= vma.vm_end and
            (addr0 >> 21) == ((addr0 + nr * 4096 - 1) >> 21)):
        ptep -= start
        start = 0
        addr = addr0
        nr_pages = nr
    ret = 0
    rss = 0
    count = 0
    page = folio + start
    if nr_pages >= 16:
        # Every PTE of the range none: one set_pte_range() for all of it (compiled
        # when not traced: vmsim.mm._filemap_batch, the same state).
        done = -1
        if _filemap_batch._usable(vma):
            entry = pfn_pte(page, vma.vm_page_prot)           # set_pte_range()'s, a read
            if entry & _RW and mem.flags[folio] & PG_dirty:
                entry = pte_mkdirty(entry)
            done = _filemap_batch._fill(k, folio, page, nr_pages, ptep, entry)
        elif not k.ptpool.arr[ptep:ptep + nr_pages].any():
            from vmsim.mm.memory import set_pte_range
            set_pte_range(vmf, folio, page, nr_pages, addr, ptep)
            done = nr_pages
        if done > 0:
            mem.refcount[folio] += nr_pages
            if addr <= vmf.address < addr + nr_pages * 4096:
                ret = VM_FAULT_NOPAGE
            return ret, nr_pages
    from vmsim.mm.memory import set_pte_range
    i = 0
    while i <= nr_pages:
        if i < nr_pages and pool[ptep + i] == 0:
            count += 1
            i += 1
            continue
        if count:
            a = addr + (i - count) * 4096
            set_pte_range(vmf, folio, page + i - count, count, a, ptep + i - count)
            rss += count
            mem.refcount[folio] += count
            if a <= vmf.address < a + count * 4096:
                ret = VM_FAULT_NOPAGE
        count = 0
        i += 1
    return ret, rss


def filemap_map_pmd(vmf, folio: int, start: int) -> bool:
    """filemap_map_pmd(): True when the PMD maps a huge page (already, or now through
    do_set_pmd for a PMD-sized folio, which takes the reference next_uptodate_folio
    got); else install the preallocated PTE table if the PMD is none."""
    from vmsim.mm.memory import do_set_pmd, pmd_install
    mm = vmf.vma.vm_mm
    k = mm.kernel
    pmd = k.ptpool.mv[vmf.pmd]
    if pmd & _PSE and pmd & PRESENT:                     # pmd_trans_huge()
        return True
    if pmd == 0 and _nr(k, folio) == HPAGE_PMD_NR:      # folio_test_pmd_mappable()
        page = folio + (start & (HPAGE_PMD_NR - 1))      # folio_file_page()
        k.mem.refcount[folio] += 1                       # next_uptodate_folio's folio_try_get()
        if not do_set_pmd(vmf, folio, page):
            return True
        k.mem.refcount[folio] -= 1
    if k.ptpool.mv[vmf.pmd] == 0 and vmf.prealloc_pte >= 0:
        vmf.prealloc_pte = pmd_install(mm, vmf.pmd, vmf.prealloc_pte)
    return False


def filemap_map_pages(vmf, start_pgoff: int, end_pgoff: int) -> int:
    """filemap_map_pages(): map cached, uptodate, unlocked folios in [start, end].

    Returns VM_FAULT_NOPAGE when the faulting address itself got mapped, so the
    fault completes without ->fault. A PMD-sized first folio with the PMD none is
    mapped by a PMD (filemap_map_pmd -> do_set_pmd).
    """
    vma = vmf.vma
    mm = vma.vm_mm
    k = mm.kernel
    file = vma.vm_file
    mapping = file.f_mapping
    mem = k.mem
    index, folio = next_uptodate_folio(k, mapping, start_pgoff, end_pgoff)
    mmap_miss = 0
    ret = 0
    if folio >= 0:
        file_end = ((i_size_read(mapping) + 4095) >> 12) - 1
        end_pgoff = min(end_pgoff, file_end)
        # Do not map with a PMD across i_size (SIGBUS semantics); shmem may. Without
        # filemap_map_pmd() no table is installed and pte_offset_map_lock() finds
        # none: ->fault and finish_fault() map the folio (finish_fault compares i_size
        # rounded up, so a 64 MiB file's last 2 MiB folio gets its PMD there).
        if (file_end >= mem.index[folio] + _nr(k, folio) or mapping.swapbacked) and \
                filemap_map_pmd(vmf, folio, start_pgoff):
            ret = VM_FAULT_NOPAGE
            folio = -1
        elif k.ptpool.mv[vmf.pmd] == 0 or k.ptpool.mv[vmf.pmd] & _PSE:
            folio = -1                                   # !pte_offset_map_lock()
    if folio >= 0:
        pool = k.ptpool.mv
        rss = 0
        base_addr = vma.vm_start + ((start_pgoff - vma.vm_pgoff) << 12)
        base_ptep = pte_offset_map(mm, vmf.pmd, base_addr)
        while folio >= 0:
            addr = base_addr + ((index - start_pgoff) << 12)
            ptep = base_ptep + (index - start_pgoff)
            fnr = _nr(k, folio)
            findex = mem.index[folio]
            nr_pages = min(findex + fnr - 1, end_pgoff) - index + 1
            if not mem.flags[folio] & PG_workingset:
                mmap_miss += nr_pages
            if fnr == 1:                                     # filemap_map_order0_folio()
                if pool[ptep] == 0:
                    from vmsim.mm.memory import set_pte_range
                    if vmf.address == addr:
                        ret = VM_FAULT_NOPAGE
                    set_pte_range(vmf, folio, folio, 1, addr, ptep)
                    mem.refcount[folio] += 1
                    rss += 1
            else:
                r, n = filemap_map_folio_range(vmf, folio, index - findex, addr, nr_pages,
                                               file_end, ptep)
                ret |= r
                rss += n
            index, folio = next_uptodate_folio(k, mapping, findex + fnr, end_pgoff)
        mm.rss_stat[MM_SHMEMPAGES if mapping.swapbacked else MM_FILEPAGES] += rss
    ra = getattr(file, "f_ra", None)
    if ra is not None:
        ra.mmap_miss = 0 if mmap_miss >= ra.mmap_miss else ra.mmap_miss - mmap_miss
    return ret


# --- read(2) ------------------------------------------------------------------------
def filemap_read(k, file, pos: int, count: int) -> bytes:
    """filemap_read(): copy from the page cache, reading folios in with readahead
    (filemap_get_pages: sync readahead on a miss, async on a PG_readahead folio)."""
    from vmsim.mm.readahead import readahead_control, page_cache_sync_ra, page_cache_async_ra
    from vmsim.mm.swap import folio_mark_accessed
    mapping = file.f_mapping
    ra = file.f_ra
    isize = i_size_read(mapping)
    if pos >= isize or count <= 0:
        return b""
    count = min(count, isize - pos)
    out = bytearray()
    mem = k.mem
    last_index = (pos + count + 4095) >> 12
    data = k.page_data
    last_pos = ra.prev_pos
    while count > 0:
        index = pos >> 12
        folio = mapping.i_pages.get(index)
        if folio is None:
            page_cache_sync_ra(readahead_control(file, ra, mapping, index), last_index - index)
            folio = mapping.i_pages.get(index)
            if folio is None:
                folio = __filemap_get_folio(k, mapping, index, FGP_CREAT)
                if folio < 0:
                    break
                mem.refcount[folio] -= 1
        if mem.flags[folio] & PG_readahead:
            page_cache_async_ra(readahead_control(file, ra, mapping, index), folio,
                                last_index - index)
        if not mem.flags[folio] & PG_uptodate:
            filemap_read_folio(k, file, mapping, folio)
        off = pos & 4095
        n = min(4096 - off, count)
        page = folio + (index - mem.index[folio])
        out += data.read(page, off, n)
        # When a read accesses the same folio several times, only the first access
        # marks it (pos_same_folio against where the last copy ended, this read's
        # or, for its first folio, the previous read's: ra->prev_pos).
        shift = 12 + _nr(k, folio).bit_length() - 1
        if pos >> shift != (last_pos - 1) >> shift:
            folio_mark_accessed(k, folio)
        pos += n
        count -= n
        last_pos = pos
    ra.prev_pos = last_pos
    return bytes(out)
