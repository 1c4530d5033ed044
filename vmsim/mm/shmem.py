"""Shared memory and tmpfs (mm/shmem.c): the part shared anonymous mappings need.

MAP_SHARED | MAP_ANONYMOUS is shmem underneath: shmem_zero_setup() gives the VMA an
unlinked shmem file ("/dev/zero (deleted)" in /proc/pid/maps) and shmem_anon_vm_ops,
so faults go through do_fault -> shmem_fault, with fault-around (filemap_map_pages)
over folios already in the page cache, and no zero page: a read fault allocates.
Not modelled yet: swap, huge shmem (shmem_enabled is "never" in this profile),
fallocate and holes (the file issue).
"""
import errno

from vmsim.mm.filemap import address_space, filemap_add_folio, filemap_map_pages
from vmsim.mm.mm_types import VM_FAULT_OOM, VM_FAULT_LOCKED, VM_FAULT_SIGBUS, VM_NORESERVE
from vmsim.mm.page_alloc import GFP_HIGHUSER_MOVABLE
from vmsim.mm.page_flags import PG_swapbacked, PG_uptodate, PG_locked


class shmem_inode:
    """A shmem inode with its mapping; vmsim gives each an inode number."""

    def __init__(self, k, name: str, size: int, flags: int):
        self.name = name
        self.i_size = size
        self.i_ino = k.next_ino()
        self.i_mapping = address_space(k, self, True)
        self.flags = flags
        self.nlink = 0
        self.acct_pages = 0


class shmem_file:
    """struct file for a shmem inode."""

    def __init__(self, inode):
        self.f_inode = inode
        self.f_mapping = inode.i_mapping
        self.path = "/" + inode.name
        self.deleted = inode.nlink == 0
        self.dev = (0, 1)
        self.f_count = 1

    def release(self, k):
        """shmem_release / the final iput: an unlinked inode's pages go."""
        if self.f_inode.nlink == 0:
            shmem_evict_inode(k, self.f_inode)
            k.committed_as -= self.f_inode.acct_pages       # shmem_unacct_size()
            if self in k.shmem_files:
                k.shmem_files.remove(self)


class _ShmemAnonVmOps:
    """shmem_anon_vm_ops: ->fault, ->map_pages; no ->page_mkwrite."""
    name = "shmem_anon_vm_ops"

    @staticmethod
    def fault(vmf):
        return shmem_fault(vmf)

    @staticmethod
    def map_pages(vmf, start_pgoff, end_pgoff):
        return filemap_map_pages(vmf, start_pgoff, end_pgoff)


shmem_anon_vm_ops = _ShmemAnonVmOps()


def shmem_kernel_file_setup(k, name: str, size: int, vm_flags: int):
    """shmem_kernel_file_setup(): an unlinked shmem file of ``size`` bytes."""
    return shmem_file(shmem_inode(k, name, size, vm_flags))


def shmem_acct_size(mm, flags: int, size: int) -> int:
    """shmem_acct_size(): commit the object's size unless VM_NORESERVE; 0 or -ENOMEM."""
    if flags & VM_NORESERVE:
        return 0
    from vmsim.mm.mmap import __vm_enough_memory
    return __vm_enough_memory(mm, (size + 4095) >> 12)


def shmem_zero_setup(vma) -> int:
    """shmem_zero_setup(): back a shared anonymous VMA with a "dev/zero" shmem file
    (__shmem_file_setup charges Committed_AS through shmem_acct_size)."""
    k = vma.vm_mm.kernel
    size = vma.vm_end - vma.vm_start
    if shmem_acct_size(vma.vm_mm, vma.vm_flags, size):
        return -errno.ENOMEM
    file = shmem_kernel_file_setup(k, "dev/zero", size, vma.vm_flags)
    if not vma.vm_flags & VM_NORESERVE:
        file.f_inode.acct_pages = (size + 4095) >> 12
    vma.vm_file = file
    vma.vm_ops = shmem_anon_vm_ops
    k.shmem_files.append(file)
    return 0


def shmem_get_unmapped_area(mm, file, addr, length, pgoff, flags) -> int:
    """shmem_get_unmapped_area(): shmem_enabled=never in this profile, so no huge
    alignment: the plain top-down placement (mm_get_unmapped_area)."""
    from vmsim.mm.mmap import mm_get_unmapped_area_vmflags
    return mm_get_unmapped_area_vmflags(mm, file, addr, length, pgoff, flags, 0)


def shmem_inode_acct_blocks(k, inode, pages: int) -> int:
    """shmem_inode_acct_blocks(): a VM_NORESERVE object commits memory page by page
    as it is allocated (shmem_acct_blocks); 0 or -ENOMEM."""
    if not inode.flags & VM_NORESERVE:
        return 0
    from vmsim.mm.mmap import __vm_enough_memory
    if __vm_enough_memory(k.current.mm, pages):
        return -errno.ENOMEM
    inode.acct_pages += pages
    return 0


# enum sgp_type (mm/shmem.c): what shmem_get_folio_gfp() may do for a missing folio.
SGP_READ, SGP_NOALLOC, SGP_CACHE, SGP_WRITE = range(4)


def shmem_alloc_and_add_folio(vmf, inode, index: int, k=None) -> int:
    """shmem_alloc_and_add_folio(): a new locked, swapbacked order-0 folio
    (shmem_alloc_folio -> filemap_alloc_folio) added to the page cache
    (shmem_add_to_page_cache) and the LRU, its block accounted
    (shmem_inode_acct_blocks: -ENOSPC when a VM_NORESERVE object cannot commit it);
    -ENOMEM when no page is free. The allocation's reference is returned."""
    from vmsim.mm.filemap import filemap_alloc_folio
    from vmsim.mm.swap import folio_add_lru
    if k is None:
        k = vmf.vma.vm_mm.kernel
    if shmem_inode_acct_blocks(k, inode, 1):
        return -errno.ENOSPC
    pfn = filemap_alloc_folio(k, GFP_HIGHUSER_MOVABLE, 0)
    if pfn < 0:
        if inode.flags & VM_NORESERVE:
            inode.acct_pages -= 1
            k.committed_as -= 1
        return -errno.ENOMEM
    k.mem.flags[pfn] = k.mem.flags[pfn] | PG_swapbacked | PG_locked
    filemap_add_folio(k, inode.i_mapping, pfn, index)
    folio_add_lru(k, pfn, k.current_cpu())
    return pfn


def shmem_get_folio_gfp(k, inode, index: int, sgp: int, vmf=None) -> int:
    """shmem_get_folio_gfp(): the folio at index with a reference (SGP_CACHE, the
    fault's: locked too); past i_size -EINVAL for SGP_READ / SGP_CACHE; a hole on
    SGP_READ is -1 (nothing allocated: read(2) copies zeros); else a new folio from
    shmem_alloc_and_add_folio(), cleared and uptodate; -errno on failure."""
    mem = k.mem
    pfn = inode.i_mapping.i_pages.get(index)
    if pfn is not None:
        mem.refcount[pfn] += 1
        if sgp == SGP_CACHE:
            mem.flags[pfn] = mem.flags[pfn] | PG_locked
        return pfn
    if sgp <= SGP_CACHE and index << 12 >= ((inode.i_size + 4095) & ~4095):
        return -errno.EINVAL
    if sgp == SGP_READ:
        return -1
    pfn = shmem_alloc_and_add_folio(vmf, inode, index, k)
    if pfn < 0:
        return pfn
    # clear_highpage() + folio_mark_uptodate(): a new frame reads as zeros.
    mem.flags[pfn] = mem.flags[pfn] | PG_uptodate
    if sgp != SGP_CACHE:
        mem.flags[pfn] = mem.flags[pfn] & ~PG_locked
    return pfn


def shmem_fault(vmf) -> int:
    """shmem_fault(): the folio at vmf.pgoff, allocated if missing; VM_FAULT_LOCKED."""
    inode = vmf.vma.vm_file.f_inode
    pfn = shmem_get_folio_gfp(vmf.vma.vm_mm.kernel, inode, vmf.pgoff, SGP_CACHE, vmf)
    if pfn < 0:
        return VM_FAULT_OOM if pfn == -errno.ENOMEM else VM_FAULT_SIGBUS     # vmf_error()
    vmf.page = pfn
    # The folio is unlocked when the fault finishes (folio_unlock in do_*_fault).
    k = vmf.vma.vm_mm.kernel
    k.mem.flags[pfn] = k.mem.flags[pfn] & ~PG_locked
    return VM_FAULT_LOCKED


def shmem_evict_inode(k, inode):
    """shmem_evict_inode() -> shmem_truncate_range(): drop every cached folio."""
    from vmsim.mm.filemap import filemap_remove_folio
    for index in list(inode.i_mapping.i_pages):
        filemap_remove_folio(k, inode.i_mapping, index)
    k.unregister_object(inode.i_mapping.id)


# --- tmpfs files (the /dev/shm mount): shmem_file_operations, shmem_vm_ops ----------
class _ShmemVmOps:
    """shmem_vm_ops: ->fault, ->map_pages; no ->page_mkwrite (tmpfs has no
    writeback, so shared writable PTEs are made writable at once)."""
    name = "shmem_vm_ops"

    @staticmethod
    def fault(vmf):
        return shmem_fault(vmf)

    @staticmethod
    def map_pages(vmf, start_pgoff, end_pgoff):
        return filemap_map_pages(vmf, start_pgoff, end_pgoff)


shmem_vm_ops = _ShmemVmOps()


class _ShmemFileOps:
    """shmem_file_operations (mmap and placement)."""

    @staticmethod
    def mmap(file, vma) -> int:
        """shmem_mmap_prepare(): file_accessed, shmem_vm_ops."""
        vma.vm_ops = shmem_vm_ops
        return 0

    @staticmethod
    def get_unmapped_area(mm, file, addr, length, pgoff, flags):
        return shmem_get_unmapped_area(mm, file, addr, length, pgoff, flags)


class shmem_sops:
    a_ops = None
    f_op = _ShmemFileOps()


def shmem_get_folio(k, inode, index: int, sgp: int) -> int:
    """shmem_get_folio(): shmem_get_folio_gfp() for read(2) (SGP_READ) and write(2)
    (SGP_WRITE), with a reference the caller drops."""
    return shmem_get_folio_gfp(k, inode, index, sgp)


def shmem_inode_unacct_blocks(k, inode, nr: int):
    """shmem_inode_unacct_blocks(): pages a truncation or hole punch freed."""
    nr = min(nr, inode.acct_pages)
    inode.acct_pages -= nr
    k.committed_as -= nr
