"""Writeback of dirty page-cache folios (mm/page-writeback.c).

vmsim writes back synchronously, when asked (fsync, fdatasync, msync MS_SYNC,
sync_file_range is not modelled, and no flusher thread runs): write_cache_pages()
takes each dirty folio of the range, folio_clear_dirty_for_io() write-protects and
cleans the PTEs that map it in shared mappings (folio_mkclean, so the next write
faults and dirties it again), the folio is under writeback while ->writepages
copies it to the device, then folio_end_writeback(). nr_dirty, nr_writeback,
nr_zone_write_pending and nr_written move as the kernel's do.
"""
from vmsim.mm import vmstat
from vmsim.mm.filemap import _nr, PG_writeback
from vmsim.mm.page_flags import PG_dirty
from vmsim.arch.x86 import pgtable_types as T


def page_mkclean_one(vma, address: int, ptep: int, is_pmd: bool = False) -> bool:
    """page_mkclean_one(): write-protect and clean one PTE (or huge PMD: pmdp_invalidate,
    pmd_wrprotect, pmd_mkclean) of a shared mapping."""
    from vmsim.mm.memory import ptep_clear_flush
    from vmsim.arch.x86.pgtable import set_pte_at
    mm = vma.vm_mm
    pool = mm.kernel.ptpool.mv
    pte = pool[ptep]
    if not pte & (T._PAGE_RW | T._PAGE_DIRTY):
        return False
    if is_pmd:
        from vmsim.mm.huge_memory import pmdp_invalidate, set_pmd_at, HPAGE_PMD_MASK
        haddr = address & HPAGE_PMD_MASK
        entry = pmdp_invalidate(vma, haddr, ptep)
        set_pmd_at(mm, haddr, ptep, entry & ~(T._PAGE_RW | T._PAGE_DIRTY))
        return True
    entry = ptep_clear_flush(vma, address, ptep)
    entry &= ~(T._PAGE_RW | T._PAGE_DIRTY)
    set_pte_at(mm, address, ptep, entry)
    return True


def folio_mkclean(k, mapping, folio: int) -> int:
    """folio_mkclean(): clean every shared mapping's PTEs of the folio (rmap walk
    over the file's VMAs); returns how many were dirty or writable."""
    from vmsim.mm.memory import _vma_interval_tree_foreach
    from vmsim.mm.rmap import page_vma_mapped_walk
    from vmsim.mm.huge_memory import mm_find_pmd
    from vmsim.mm.mm_types import VM_SHARED
    mem = k.mem
    index = mem.index[folio]
    nr = _nr(k, folio)
    cleaned = 0
    for vma in _vma_interval_tree_foreach(k, mapping, index, index + nr - 1):
        if not vma.vm_flags & VM_SHARED:
            continue
        i = 0
        while i < nr:
            addr = vma.vm_start + ((index + i - vma.vm_pgoff) << 12)
            if not vma.vm_start <= addr < vma.vm_end:
                i += 1
                continue
            ptep = page_vma_mapped_walk(vma, folio + i, addr, pmd=nr == 512)
            if ptep >= 0 and ptep == mm_find_pmd(vma.vm_mm, addr):
                # One huge PMD maps the whole folio here.
                if page_mkclean_one(vma, addr, ptep, True):
                    cleaned += 1
                break
            if ptep >= 0 and page_mkclean_one(vma, addr, ptep):
                cleaned += 1
            i += 1
    return cleaned


def folio_clear_dirty_for_io(k, mapping, folio: int) -> bool:
    """folio_clear_dirty_for_io(): clean the PTEs, then PG_dirty goes and the folio
    stops counting as dirty (it is about to be written)."""
    mem = k.mem
    if not mem.flags[folio] & PG_dirty:
        return False
    if mem.mapcount[folio] or any(mem.mapcount[p] for p in range(folio, folio + _nr(k, folio))) or \
            (_nr(k, folio) > 1 and mem.lru_prev[folio + 1]):      # PMD-mapped (entire mapcount)
        folio_mkclean(k, mapping, folio)
    mem.flags[folio] = mem.flags[folio] & ~PG_dirty
    nr = _nr(k, folio)
    k.vmstat[vmstat.NR_DIRTY] -= nr
    k.vmstat[vmstat.NR_ZONE_WRITE_PENDING] -= nr
    return True


def folio_start_writeback(k, folio: int):
    mem = k.mem
    nr = _nr(k, folio)
    mem.flags[folio] = mem.flags[folio] | PG_writeback
    k.vmstat[vmstat.NR_WRITEBACK] += nr
    k.vmstat[vmstat.NR_ZONE_WRITE_PENDING] += nr


def folio_end_writeback(k, folio: int):
    """folio_end_writeback(): a folio marked for immediate reclaim (PG_reclaim, the
    bit PG_readahead shares) loses the mark and is rotated (folio_rotate_reclaimable)."""
    from vmsim.mm.page_flags import PG_reclaim
    mem = k.mem
    nr = _nr(k, folio)
    if mem.flags[folio] & PG_reclaim:
        from vmsim.mm.swap import folio_rotate_reclaimable
        mem.flags[folio] = mem.flags[folio] & ~PG_reclaim
        folio_rotate_reclaimable(k, folio)
    mem.flags[folio] = mem.flags[folio] & ~PG_writeback
    k.vmstat[vmstat.NR_WRITEBACK] -= nr
    k.vmstat[vmstat.NR_ZONE_WRITE_PENDING] -= nr
    k.vmstat[vmstat.NR_WRITTEN] += nr


def write_cache_pages(k, mapping, start: int, end: int, in_flight: list = None) -> int:
    """write_cache_pages() / writeback_iter(): write back the dirty folios of pages
    [start, end]; returns pages written. With ``in_flight`` (a list) the folios stay
    under writeback, appended there, for the caller to end (folio_end_writeback) once
    what the kernel does while the bios are in flight is done."""
    from vmsim.mm.truncate import _folios
    batch = []
    for index, folio in _folios(k, mapping, start, end):
        if folio_clear_dirty_for_io(k, mapping, folio):
            folio_start_writeback(k, folio)
            batch.append(folio)
    if batch and mapping.a_ops is not None and getattr(mapping.a_ops, "writepages", None):
        mapping.a_ops.writepages(k, mapping, batch)
    written = 0
    for folio in batch:
        written += _nr(k, folio)
        if in_flight is None:
            folio_end_writeback(k, folio)
    if in_flight is not None:
        in_flight += batch
    return written


def filemap_write_and_wait_range(k, mapping, lstart: int, lend: int) -> int:
    """filemap_write_and_wait_range(): write back bytes [lstart, lend] and wait."""
    if mapping.swapbacked:
        return 0                     # shmem: no writeback (its aops have none)
    write_cache_pages(k, mapping, lstart >> 12, lend >> 12 if lend >= 0 else 1 << 62)
    return 0
