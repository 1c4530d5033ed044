"""The page cache core (mm/filemap.c, include/linux/pagemap.h).

An address_space keeps its folios by index (the kernel's xarray ``i_pages``; a dict
here). Each cached folio holds one reference for the cache. filemap_map_pages() is
the ->map_pages used by fault-around: it maps folios that are already cached,
uptodate and unlocked around the faulting address. The file issue grows this into
full file mappings (filemap_fault, readahead, writeback).
"""
from vmsim.mm import vmstat
from vmsim.mm.mm_types import VM_FAULT_NOPAGE, VM_FAULT_OOM, MM_SHMEMPAGES, MM_FILEPAGES
from vmsim.mm.page_flags import PG_dirty, PG_uptodate, PG_locked, PG_swapbacked


class address_space:
    """struct address_space: the folios of one inode by page index."""

    def __init__(self, k, host, swapbacked: bool):
        self.host = host
        self.i_pages = {}
        self.nrpages = 0
        self.swapbacked = swapbacked
        self.id = k.register_object(self)
        self.i_mmap = []


def filemap_add_folio(k, mapping, pfn: int, index: int):
    """filemap_add_folio(): insert a locked folio at index; the cache takes a reference."""
    mem = k.mem
    mem.mapping[pfn] = mapping.id
    mem.index[pfn] = index
    mem.refcount[pfn] += 1
    mapping.i_pages[index] = pfn
    mapping.nrpages += 1
    k.vmstat[vmstat.NR_FILE_PAGES] += 1
    if mapping.swapbacked:
        k.vmstat[vmstat.NR_SHMEM] += 1


def filemap_remove_folio(k, mapping, index: int):
    """filemap_remove_folio(): delete from the cache and drop the cache's reference."""
    from vmsim.mm.swap import folio_put
    pfn = mapping.i_pages.pop(index)
    mapping.nrpages -= 1
    k.vmstat[vmstat.NR_FILE_PAGES] -= 1
    if mapping.swapbacked:
        k.vmstat[vmstat.NR_SHMEM] -= 1
    if k.mem.flags[pfn] & PG_dirty and not mapping.swapbacked:
        k.vmstat[vmstat.NR_DIRTY] -= 1
    k.mem.mapping[pfn] = 0
    folio_put(k, pfn)


def folio_mark_dirty(k, pfn: int):
    """folio_mark_dirty(): set PG_dirty (shmem folios are not counted in nr_dirty)."""
    f = k.mem.flags[pfn]
    if not f & PG_dirty:
        k.mem.flags[pfn] = f | PG_dirty
        if not f & PG_swapbacked:
            k.vmstat[vmstat.NR_DIRTY] += 1
            k.vmstat[vmstat.NR_DIRTIED] += 1


def filemap_map_pages(vmf, start_pgoff: int, end_pgoff: int) -> int:
    """filemap_map_pages(): map cached, uptodate, unlocked folios in [start, end].

    Returns VM_FAULT_NOPAGE when the faulting address itself got mapped, so the
    fault completes without ->fault.
    """
    from vmsim.mm.memory import pmd_install, set_pte_range
    from vmsim.arch.x86.pgtable import pte_offset_map
    vma = vmf.vma
    mm = vma.vm_mm
    k = mm.kernel
    mapping = vma.vm_file.f_mapping
    mem = k.mem
    cache = mapping.i_pages
    found = [i for i in range(start_pgoff, end_pgoff + 1)
             if i in cache and mem.flags[cache[i]] & PG_uptodate and not mem.flags[cache[i]] & PG_locked]
    if not found:
        return 0
    pool = k.ptpool.mv
    if pool[vmf.pmd] == 0:                       # filemap_map_pmd()
        if vmf.prealloc_pte >= 0:
            vmf.prealloc_pte = pmd_install(mm, vmf.pmd, vmf.prealloc_pte)
        else:
            return VM_FAULT_OOM
    ret = 0
    rss = 0
    for index in found:
        addr = vma.vm_start + ((index - vma.vm_pgoff) << 12)
        ptep = pte_offset_map(mm, vmf.pmd, addr)
        if pool[ptep]:
            continue
        pfn = cache[index]
        # filemap_map_folio_range(): map read-only semantics of a read fault.
        saved = vmf.flags
        vmf.flags = saved & ~1
        set_pte_range(vmf, pfn, pfn, 1, addr)
        vmf.flags = saved
        mem.refcount[pfn] += 1
        rss += 1
        if addr == vmf.address:
            ret = VM_FAULT_NOPAGE
    mm.rss_stat[MM_SHMEMPAGES if mapping.swapbacked else MM_FILEPAGES] += rss
    return ret
