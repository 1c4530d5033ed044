"""Shared memory and tmpfs (mm/shmem.c).

MAP_SHARED | MAP_ANONYMOUS is shmem underneath: shmem_zero_setup() gives the VMA an
unlinked shmem file ("/dev/zero (deleted)" in /proc/pid/maps) and shmem_anon_vm_ops,
so faults go through do_fault -> shmem_fault, with fault-around (filemap_map_pages)
over folios already in the page cache, and no zero page: a read fault allocates.

Huge shmem as 6.18 has it: a tmpfs mount's ``huge=`` option (never, always,
within_size, advise; shmem_parse_huge) picks its large folios; the internal mount
(shm_mnt: shared anonymous memory, memfd, SysV shm) follows
transparent_hugepage/shmem_enabled, whose deny / force override every mount
(shmem_huge_global_enabled), and for anonymous shmem the per-size
hugepages-<size>kB/shmem_enabled bitmaps (huge_shmem_orders_*) decide the orders
(shmem_allowable_huge_orders). shmem_get_folio_gfp() tries those orders high to low
(shmem_suitable_orders: the VMA's alignment, nothing cached in the range), counting
thp_file_alloc / thp_file_fallback and the per-size shmem_alloc / shmem_fallback
stats; finish_fault() maps a PMD-sized folio with one PMD (do_set_pmd), and
shmem_get_unmapped_area() aligns mappings that may get one.
Not modelled: swap, memcg (thp_file_fallback_charge never counts), the
shrinklist of large folios past i_size (shmem_unused_huge_shrink), fallocate
allocating folios (vmsim's tmpfs fallocate only sets i_size), size= limits, and
khugepaged's collapse_file (khugepaged and MADV_COLLAPSE pass shmem VMAs by).
"""
import errno

from vmsim.mm import vmstat
from vmsim.mm.filemap import (address_space, filemap_add_folio, filemap_map_pages,
                              filemap_alloc_folio, filemap_remove_folio, MAX_PAGECACHE_ORDER)
from vmsim.mm.huge_memory import (_thp, vma_thp_disabled, thp_vma_suitable_order,
                                  count_mthp_stat, vma_thp_gfp_mask)
from vmsim.mm.swap import folio_add_lru, folio_put
from vmsim.mm.mm_types import (VM_FAULT_OOM, VM_FAULT_LOCKED, VM_FAULT_SIGBUS, VM_NORESERVE,
                               VM_HUGEPAGE)
from vmsim.mm.page_alloc import GFP_HIGHUSER_MOVABLE
from vmsim.mm.page_flags import (PG_swapbacked, PG_uptodate, PG_locked, PG_head,
                                 PG_ORDER_MASK, PG_ORDER_SHIFT)

S_IFREG = 0o100000
PAGE_SIZE = 4096
HPAGE_PMD_ORDER = 9
HPAGE_PMD_NR = 1 << HPAGE_PMD_ORDER
# THP_ORDERS_ALL_FILE_DEFAULT (include/linux/huge_mm.h): orders 1..PMD_ORDER.
THP_ORDERS_ALL_FILE_DEFAULT = ((1 << (HPAGE_PMD_ORDER + 1)) - 1) & ~1
THP_SHMEM_ENABLED = "/sys/kernel/mm/transparent_hugepage/shmem_enabled"
SHM_DEV = (0, 1)                      # shm_mnt, the internal tmpfs mount

# The huge= values (mm/shmem.c); deny and force only through shmem_enabled.
SHMEM_HUGE_NEVER = 0
SHMEM_HUGE_ALWAYS = 1
SHMEM_HUGE_WITHIN_SIZE = 2
SHMEM_HUGE_ADVISE = 3
SHMEM_HUGE_DENY = -1
SHMEM_HUGE_FORCE = -2
_HUGE_BY_NAME = {"never": SHMEM_HUGE_NEVER, "always": SHMEM_HUGE_ALWAYS,
                 "within_size": SHMEM_HUGE_WITHIN_SIZE, "advise": SHMEM_HUGE_ADVISE,
                 "deny": SHMEM_HUGE_DENY, "force": SHMEM_HUGE_FORCE}
_SIZE_MODES = ("always", "inherit", "within_size", "advise", "never")


def shmem_format_huge(huge: int) -> str:
    """shmem_format_huge(): the name of a huge= value."""
    for name, v in _HUGE_BY_NAME.items():
        if v == huge:
            return name
    return "bad_val"


def _shmem_huge(k) -> int:
    """The static shmem_huge: the value transparent_hugepage/shmem_enabled shows."""
    return _HUGE_BY_NAME.get(k.sysfs.get(THP_SHMEM_ENABLED, "never"), SHMEM_HUGE_NEVER)


def _huge_shmem_orders(k, mode: str) -> int:
    """huge_shmem_orders_always / _madvise / _inherit / _within_size: the orders whose
    hugepages-<size>kB/shmem_enabled is ``mode`` (kept as the kernel keeps them and
    reset by thpsize_shmem_enabled_store). A profile without per-size files (5.4) has
    only the PMD size, which inherits (shmem_init)."""
    st = _thp(k)
    masks = getattr(st, "huge_shmem_orders", None)
    if masks is None:
        masks = {}
        for order in range(1, HPAGE_PMD_ORDER + 1):
            m = k.sysfs.get(f"/sys/kernel/mm/transparent_hugepage/hugepages-"
                            f"{(4096 << order) >> 10}kB/shmem_enabled",
                            "inherit" if order == HPAGE_PMD_ORDER else "never")
            masks[m] = masks.get(m, 0) | 1 << order
        st.huge_shmem_orders = masks
    return masks.get(mode, 0)


def _shm_mnt(k):
    """shm_mnt: the internal tmpfs mount (shmem_init) behind shared anonymous memory,
    memfd and SysV shm; its huge= is shmem_huge when that is neither deny nor force."""
    sb = k.__dict__.get("shm_mnt")
    if sb is None:
        from vmsim.fs.inode import super_block
        sb = k.shm_mnt = super_block(k, "tmpfs", SHM_DEV, None, 0, 0, False)
        sb.s_op = shmem_sops
        huge = _shmem_huge(k)
        sb.huge = huge if huge > SHMEM_HUGE_DENY else SHMEM_HUGE_NEVER
    return sb


def _shmem_sb(k, inode):
    """SHMEM_SB(inode->i_sb): the mount's superblock (shm_mnt for the inodes of
    shared anonymous mappings)."""
    sb = getattr(inode, "i_sb", None)
    return sb if sb is not None else _shm_mnt(k)


def shmem_parse_huge(k, s: str) -> int:
    """shmem_parse_huge(): the huge= / shmem_enabled value, or -EINVAL; force only
    while hugepages-2048kB/shmem_enabled inherits and no other size does ("Do not
    override huge allocation policy with non-PMD sized mTHP")."""
    huge = _HUGE_BY_NAME.get(s)
    if huge is None:
        return -errno.EINVAL
    if huge == SHMEM_HUGE_FORCE and _huge_shmem_orders(k, "inherit") != 1 << HPAGE_PMD_ORDER:
        return -errno.EINVAL
    return huge


def shmem_enabled_store(k, data: str) -> int:
    """shmem_enabled_store(): at most 15 bytes, one trailing newline dropped, parsed
    by shmem_parse_huge; shm_mnt's huge= follows unless deny or force; khugepaged is
    started or stopped. The byte count or -EINVAL."""
    if len(data) + 1 > 16:
        return -errno.EINVAL
    s = data[:-1] if data.endswith("\n") else data
    huge = shmem_parse_huge(k, s)
    if huge == -errno.EINVAL:
        return huge
    k.sysfs[THP_SHMEM_ENABLED] = shmem_format_huge(huge)
    if huge > SHMEM_HUGE_DENY:
        _shm_mnt(k).huge = huge
    from vmsim.mm.khugepaged import start_stop_khugepaged
    start_stop_khugepaged(k)
    return len(data)


def thpsize_shmem_enabled_store(k, path: str, order: int, data: str) -> int:
    """thpsize_shmem_enabled_store(): move the order to one huge_shmem_orders_*
    bitmap; inherit for a non-PMD size is -EINVAL while shmem_enabled is force."""
    from vmsim.fs.sysfs import sysfs_streq
    ok = [m for m in _SIZE_MODES if sysfs_streq(data, m)]
    if not ok:
        return -errno.EINVAL
    if ok[0] == "inherit" and _shmem_huge(k) == SHMEM_HUGE_FORCE and order != HPAGE_PMD_ORDER:
        return -errno.EINVAL
    k.sysfs[path] = ok[0]
    _thp(k).huge_shmem_orders = None
    from vmsim.mm.khugepaged import start_stop_khugepaged
    start_stop_khugepaged(k)
    return len(data)


def shmem_hpage_pmd_enabled(k) -> bool:
    """shmem_hpage_pmd_enabled(): may anonymous shmem get PMD-sized folios at all
    (khugepaged's hugepage_pmd_enabled asks)."""
    pmd = 1 << HPAGE_PMD_ORDER
    huge = _shmem_huge(k)
    if huge == SHMEM_HUGE_DENY:
        return False
    for mode in ("always", "advise", "within_size"):
        if _huge_shmem_orders(k, mode) & pmd:
            return True
    return bool(_huge_shmem_orders(k, "inherit") & pmd) and huge != SHMEM_HUGE_NEVER


def _highest_order(orders: int) -> int:
    return orders.bit_length() - 1


def shmem_get_orders_within_size(inode, within_size_orders: int, index: int,
                                 write_end: int) -> int:
    """shmem_get_orders_within_size(): the orders, from the highest, once one would
    end inside max(write_end, i_size); else 0."""
    orders = within_size_orders
    while orders:
        order = _highest_order(orders)
        aligned_index = (index + 1 + (1 << order) - 1) & ~((1 << order) - 1)
        i_size = max(write_end, inode.i_size)
        i_size = (i_size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        if i_size >> 12 >= aligned_index:
            return orders
        orders &= ~(1 << order)
    return 0


def shmem_huge_global_enabled(k, inode, index: int, write_end: int, shmem_huge_force: bool,
                              vma, vm_flags: int) -> int:
    """shmem_huge_global_enabled(): the orders the mount's huge= (or shmem_enabled's
    deny / force) allows: a mapping (vma) asks for the PMD order only, a write(2) for
    any file order; within_size needs the folio inside i_size, advise VM_HUGEPAGE."""
    maybe_pmd_order = 0 if HPAGE_PMD_ORDER > MAX_PAGECACHE_ORDER else 1 << HPAGE_PMD_ORDER
    if (getattr(inode, "i_mode", S_IFREG) & 0o170000) != S_IFREG:
        return 0
    huge = _shmem_huge(k)
    if huge == SHMEM_HUGE_DENY:
        return 0
    if shmem_huge_force or huge == SHMEM_HUGE_FORCE:
        return maybe_pmd_order
    sb_huge = _shmem_sb(k, inode).huge
    if sb_huge == SHMEM_HUGE_ALWAYS:
        return maybe_pmd_order if vma is not None else THP_ORDERS_ALL_FILE_DEFAULT
    if sb_huge == SHMEM_HUGE_WITHIN_SIZE:
        orders = maybe_pmd_order if vma is not None else THP_ORDERS_ALL_FILE_DEFAULT
        orders = shmem_get_orders_within_size(inode, orders, index, write_end)
        if orders:
            return orders
        sb_huge = SHMEM_HUGE_ADVISE                         # fallthrough
    if sb_huge == SHMEM_HUGE_ADVISE and vm_flags & VM_HUGEPAGE:
        return maybe_pmd_order
    return 0


def vma_is_anon_shmem(vma) -> bool:
    """vma_is_anon_shmem(): a shared anonymous mapping, memfd or SysV segment (an
    inode unlinked when it was mapped: shmem_anon_vm_ops)."""
    return vma.vm_ops is shmem_anon_vm_ops


def shmem_file(file) -> bool:
    """shmem_file(): a file whose mapping is shmem's (tmpfs, shm_mnt, and the SysV
    attach file, which shares its segment's mapping)."""
    if file is None:
        return False
    return bool(getattr(getattr(file, "f_mapping", None), "swapbacked", False))


def shmem_allowable_huge_orders(k, inode, vma, index: int, write_end: int,
                                shmem_huge_force: bool) -> int:
    """shmem_allowable_huge_orders(): the large orders a new folio at index may have.
    A tmpfs file (or no VMA) gets the mount's global orders; anonymous shmem adds the
    per-size bitmaps: always, within_size (inside i_size), advise (VM_HUGEPAGE) and
    inherit (when the mount allows any); deny gives none, force only inherit."""
    vm_flags = vma.vm_flags if vma is not None else 0
    # thp_disabled_by_hw(): this machine's CPU has PSE.
    if vma is not None and vma_thp_disabled(vma, vm_flags, shmem_huge_force):
        return 0
    global_orders = shmem_huge_global_enabled(k, inode, index, write_end, shmem_huge_force,
                                              vma, vm_flags)
    if vma is None or not vma_is_anon_shmem(vma):
        return global_orders
    huge = _shmem_huge(k)
    if huge == SHMEM_HUGE_DENY:
        return 0
    if huge == SHMEM_HUGE_FORCE:
        return _huge_shmem_orders(k, "inherit")
    mask = _huge_shmem_orders(k, "always")
    mask |= shmem_get_orders_within_size(inode, _huge_shmem_orders(k, "within_size"), index, 0)
    if vm_flags & VM_HUGEPAGE:
        mask |= _huge_shmem_orders(k, "advise")
    if global_orders > 0:
        mask |= _huge_shmem_orders(k, "inherit")
    return THP_ORDERS_ALL_FILE_DEFAULT & mask


def thp_vma_suitable_orders(vma, addr: int, orders: int) -> int:
    """thp_vma_suitable_orders(): the orders whose aligned block at addr fits the VMA."""
    out = orders
    o = orders
    while o:
        order = _highest_order(o)
        if not thp_vma_suitable_order(vma, addr, order):
            out &= ~(1 << order)
        o &= ~(1 << order)
    return out


def _xa_find(mapping, first: int, last: int) -> bool:
    """xa_find(XA_PRESENT): anything cached in [first, last]."""
    return mapping.i_pages.any_in(first, last)


def shmem_suitable_orders(inode, vmf, mapping, index: int, orders: int) -> int:
    """shmem_suitable_orders(): the orders the VMA's alignment allows, from the highest
    whose aligned range holds nothing in the page cache yet."""
    if vmf is not None and vmf.vma is not None:
        orders = thp_vma_suitable_orders(vmf.vma, vmf.address, orders)
        if not orders:
            return 0
    while orders:
        order = _highest_order(orders)
        aligned_index = index & ~((1 << order) - 1)
        if not _xa_find(mapping, aligned_index, aligned_index + (1 << order) - 1):
            break
        orders &= ~(1 << order)
    return orders


class shmem_inode:
    """A shmem inode with its mapping; vmsim gives each an inode number."""

    def __init__(self, k, name: str, size: int, flags: int):
        self.name = name
        self.i_size = size
        self.i_mode = S_IFREG | 0o777
        self.i_ino = k.get_next_ino()
        self.i_mapping = address_space(k, self, True)
        # __shmem_get_inode(): large folios when the mount's huge= is set then.
        if _shm_mnt(k).huge:
            self.i_mapping.max_folio_order = MAX_PAGECACHE_ORDER
        self.flags = flags
        self.nlink = 0
        self.acct_pages = 0


class _shmem_kfile:
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
    return _shmem_kfile(shmem_inode(k, name, size, vm_flags))


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


def shmem_get_unmapped_area(mm, file, uaddr, length, pgoff, flags) -> int:
    """shmem_get_unmapped_area(): the plain placement (mm_get_unmapped_area), moved to
    the huge page size's alignment (matching the file offset) when the mapping may get
    huge folios: the mount's huge= or force, or for shared anonymous memory (file None)
    the highest order of the per-size bitmaps; not for deny, MAP_FIXED, a hint taken
    as given, or a mapping shorter than the huge page."""
    from vmsim.mm.mmap import mm_get_unmapped_area_vmflags, MAP_FIXED
    task_size = mm.task_size
    if length > task_size:
        return -errno.ENOMEM
    addr = mm_get_unmapped_area_vmflags(mm, file, uaddr, length, pgoff, flags, 0)
    if addr < 0 or addr & (PAGE_SIZE - 1) or addr > task_size - length:
        return addr
    k = mm.kernel
    huge = _shmem_huge(k)
    if huge == SHMEM_HUGE_DENY or flags & MAP_FIXED or uaddr == addr:
        return addr
    hpage_size = PAGE_SIZE << HPAGE_PMD_ORDER
    if huge != SHMEM_HUGE_FORCE:
        order = 0
        if file is not None:
            sb = _shmem_sb(k, file.f_inode)
        else:
            sb = _shm_mnt(k)
            hpage_orders = _huge_shmem_orders(k, "always") | \
                _huge_shmem_orders(k, "within_size") | _huge_shmem_orders(k, "advise")
            if sb.huge != SHMEM_HUGE_NEVER:
                hpage_orders |= _huge_shmem_orders(k, "inherit")
            if hpage_orders:
                order = _highest_order(hpage_orders)
                hpage_size = PAGE_SIZE << order
        if sb.huge == SHMEM_HUGE_NEVER and not order:
            return addr
    if length < hpage_size:
        return addr
    offset = (pgoff << 12) & (hpage_size - 1)
    if offset and offset + length < 2 * hpage_size:
        return addr
    if (addr & (hpage_size - 1)) == offset:
        return addr
    inflated_len = length + hpage_size - PAGE_SIZE
    if inflated_len > task_size:
        return addr
    inflated_addr = mm_get_unmapped_area_vmflags(mm, None, uaddr, inflated_len, 0, flags, 0)
    if inflated_addr < 0 or inflated_addr & (PAGE_SIZE - 1):
        return addr
    inflated_offset = inflated_addr & (hpage_size - 1)
    inflated_addr += offset - inflated_offset
    if inflated_offset > offset:
        inflated_addr += hpage_size
    if inflated_addr > task_size - length:
        return addr
    return inflated_addr


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
SGP_READ, SGP_NOALLOC, SGP_CACHE, SGP_WRITE, SGP_FALLOC = range(5)


def shmem_alloc_folio(k, gfp: int, order: int) -> int:
    """shmem_alloc_folio(): a folio of 2**order pages (no mempolicy), or -1."""
    return filemap_alloc_folio(k, gfp, order)


def shmem_alloc_and_add_folio(vmf, gfp: int, inode, index: int, orders: int, k=None) -> int:
    """shmem_alloc_and_add_folio(): a new locked, swapbacked folio of the highest
    suitable order that can be allocated (each order that cannot counts
    thp_file_fallback for the PMD size and its shmem_fallback stat), else order 0 when
    no orders were asked; added to the page cache at the order's aligned index
    (shmem_add_to_page_cache), its blocks accounted (shmem_inode_acct_blocks: -ENOSPC
    when a VM_NORESERVE object cannot commit them; the folio leaves the cache again),
    and to the LRU. -ENOMEM when nothing could be allocated. The allocation's
    reference is returned."""
    if k is None:
        k = vmf.vma.vm_mm.kernel
    mapping = inode.i_mapping
    pfn = -1
    if orders > 0:
        suitable = shmem_suitable_orders(inode, vmf, mapping, index, orders)
        while suitable:
            order = _highest_order(suitable)
            pages = 1 << order
            aligned_index = index & ~(pages - 1)
            pfn = shmem_alloc_folio(k, gfp, order)
            if pfn >= 0:
                index = aligned_index
                break
            if pages == HPAGE_PMD_NR:
                k.vmstat[vmstat.THP_FILE_FALLBACK] += 1
            count_mthp_stat(k, order, "shmem_fallback")
            suitable &= ~(1 << order)
    else:
        pages = 1
        pfn = shmem_alloc_folio(k, gfp, 0)
    if pfn < 0:
        return -errno.ENOMEM
    mem = k.mem
    # mem_cgroup_charge(): no memcg, it never fails.
    mem.flags[pfn] = mem.flags[pfn] | PG_swapbacked | PG_locked
    filemap_add_folio(k, mapping, pfn, index)                  # shmem_add_to_page_cache()
    if shmem_inode_acct_blocks(k, inode, pages):
        filemap_remove_folio(k, mapping, index)
        mem.flags[pfn] = mem.flags[pfn] & ~PG_locked
        folio_put(k, pfn)
        return -errno.ENOSPC
    folio_add_lru(k, pfn, k._current_cpu())
    return pfn


def shmem_get_folio_gfp(k, inode, index: int, sgp: int, vmf=None, write_end: int = 0) -> int:
    """shmem_get_folio_gfp(): the folio holding index with a reference (SGP_CACHE, the
    fault's: locked too); past i_size -EINVAL for SGP_READ / SGP_CACHE, even where a
    large folio is cached; a hole, or a folio fallocated and not yet used (not
    uptodate), on SGP_READ is -1 (nothing allocated: read(2) copies zeros); a fallocated
    folio found by another sgp is cleared and made uptodate; else a new folio, of a
    large order when shmem_allowable_huge_orders() gives any (thp_file_alloc for the
    PMD size, the size's shmem_alloc stat) and of order 0 if that fails, cleared and
    uptodate (SGP_FALLOC's stays not uptodate); -errno on failure."""
    mem = k.mem
    if sgp <= SGP_CACHE and index << 12 >= inode.i_size:
        return -errno.EINVAL
    pfn = inode.i_mapping.i_pages.get(index)
    if pfn is not None:
        if not mem.flags[pfn] & PG_uptodate:
            if sgp == SGP_READ:
                return -1                                 # a fallocated folio reads as a hole
            # clear: every page of the folio (new frames read as zeros) + uptodate;
            # SGP_WRITE / SGP_FALLOC leave that to the write / a later user.
            if sgp not in (SGP_WRITE, SGP_FALLOC):
                mem.flags[pfn] = mem.flags[pfn] | PG_uptodate
        mem.refcount[pfn] += 1
        if sgp == SGP_CACHE:
            mem.flags[pfn] = mem.flags[pfn] | PG_locked
        return pfn
    if sgp == SGP_READ:
        return -1
    vma = vmf.vma if vmf is not None else None
    pfn = -1
    orders = shmem_allowable_huge_orders(k, inode, vma, index, write_end, False)
    if orders > 0:
        huge_gfp = vma_thp_gfp_mask(vma, k)               # limit_gfp_mask(): no mempolicy
        pfn = shmem_alloc_and_add_folio(vmf, huge_gfp, inode, index, orders, k)
        if pfn >= 0:
            order = _folio_order(k, pfn)
            if order == HPAGE_PMD_ORDER:                  # folio_test_pmd_mappable()
                k.vmstat[vmstat.THP_FILE_ALLOC] += 1
            count_mthp_stat(k, order, "shmem_alloc")
    if pfn < 0:
        pfn = shmem_alloc_and_add_folio(vmf, GFP_HIGHUSER_MOVABLE, inode, index, 0, k)
        if pfn < 0:
            return pfn
    # clear_highpage() of each page + folio_mark_uptodate(): new frames read as zeros.
    # SGP_FALLOC's new folio stays not uptodate (shmem_fallocate can undo it); vmsim's
    # write(2) path marks its folio uptodate here rather than in shmem_write_end.
    if sgp != SGP_FALLOC:
        mem.flags[pfn] = mem.flags[pfn] | PG_uptodate
    if sgp != SGP_CACHE:
        mem.flags[pfn] = mem.flags[pfn] & ~PG_locked
    return pfn


def _folio_order(k, pfn: int) -> int:
    f = k.mem.flags[pfn]
    return (f & PG_ORDER_MASK) >> PG_ORDER_SHIFT if f & PG_head else 0


def shmem_fault(vmf) -> int:
    """shmem_fault(): the folio at vmf.pgoff, allocated if missing; vmf.page is its
    page at pgoff (folio_file_page); VM_FAULT_LOCKED."""
    k = vmf.vma.vm_mm.kernel
    inode = vmf.vma.vm_file.f_inode
    pfn = shmem_get_folio_gfp(k, inode, vmf.pgoff, SGP_CACHE, vmf)
    if pfn < 0:
        return VM_FAULT_OOM if pfn == -errno.ENOMEM else VM_FAULT_SIGBUS     # vmf_error()
    vmf.page = pfn + (vmf.pgoff - k.mem.index[pfn]) if k.mem.flags[pfn] & PG_head else pfn
    # The folio is unlocked when the fault finishes (folio_unlock in do_*_fault).
    k.mem.flags[pfn] = k.mem.flags[pfn] & ~PG_locked
    return VM_FAULT_LOCKED


def shmem_evict_inode(k, inode):
    """shmem_evict_inode() -> shmem_truncate_range(): drop every cached folio."""
    for index, _ in list(inode.i_mapping.i_pages.entries_in(0, (1 << 64) - 1)):
        if index in inode.i_mapping.i_pages:          # a large folio goes whole
            filemap_remove_folio(k, inode.i_mapping, index)
    k._unregister_object(inode.i_mapping.id)


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
        """shmem_mmap(): shmem_vm_ops, or shmem_anon_vm_ops for an inode unlinked at
        the time of mmap (memfd, SysV shm: anonymous shared memory)."""
        vma.vm_ops = shmem_vm_ops if file.f_inode.i_nlink else shmem_anon_vm_ops
        return 0

    @staticmethod
    def get_unmapped_area(mm, file, addr, length, pgoff, flags):
        return shmem_get_unmapped_area(mm, file, addr, length, pgoff, flags)


class shmem_sops:
    a_ops = None
    f_op = _ShmemFileOps()


def shmem_get_folio(k, inode, index: int, sgp: int, write_end: int = 0) -> int:
    """shmem_get_folio(): shmem_get_folio_gfp() for read(2) (SGP_READ) and write(2)
    (SGP_WRITE, with the end of the write for huge=within_size), with a reference the
    caller drops."""
    return shmem_get_folio_gfp(k, inode, index, sgp, None, write_end)


def shmem_inode_unacct_blocks(k, inode, nr: int):
    """shmem_inode_unacct_blocks(): pages a truncation or hole punch freed."""
    nr = min(nr, inode.acct_pages)
    inode.acct_pages -= nr
    k.committed_as -= nr


# --- tmpfs mounts (mm/shmem.c: shmem_parse_one, shmem_fill_super, shmem_reconfigure) ----
# Options tmpfs accepts (shmem_fs_parameters; CONFIG_TMPFS_QUOTA and CONFIG_UNICODE's
# are off on the reference kernel) and the generic superblock flags the legacy mount(2)
# data string may carry (vfs_parse_sb_flag).
_TMPFS_OPTS = ("size", "nr_blocks", "nr_inodes", "mode", "uid", "gid", "huge", "mpol",
               "inode32", "inode64", "noswap")
_SB_FLAGS = ("dirsync", "lazytime", "mand", "ro", "rw", "sync", "async", "nolazytime",
             "nomand", "silent")
_HUGE_MOUNT = ("never", "always", "within_size", "advise")       # shmem_param_enums_huge


def _memparse(s: str):
    """memparse(): a number (0x / 0 prefixes) with an optional K/M/G/T/P/E suffix;
    (value, rest)."""
    import re
    m = re.match(r"(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)([kKmMgGtTpPeE]?)", s)
    if not m:
        return 0, s
    t = m.group(1)
    v = int(t, 16) if t[:2].lower() == "0x" else int(t, 8) if t.startswith("0") else int(t)
    suf = m.group(2).lower()
    if suf:
        v <<= 10 * ("kmgtpe".index(suf) + 1)
    return v, s[m.end():]


class shmem_options:
    """struct shmem_options: what a mount's data string asked for (``seen``: which)."""

    def __init__(self):
        self.seen = set()
        self.huge = SHMEM_HUGE_NEVER
        self.blocks = 0
        self.inodes = 0
        self.mode = 0o1777


def shmem_parse_one(k, ctx, key: str, value) -> int:
    """shmem_parse_one(): one option; -EINVAL for an unknown one or a bad value
    ("tmpfs: Bad value for 'huge'"). size (also N%), nr_blocks and nr_inodes are kept,
    not enforced (vmsim models no tmpfs block or inode limits); uid, gid, mpol,
    inode32/64 and noswap are accepted with their value's syntax unchecked."""
    if key in _SB_FLAGS and value is None:
        return 0
    if key not in _TMPFS_OPTS:
        return -errno.EINVAL                            # "tmpfs: Unknown parameter"
    flag = key in ("inode32", "inode64", "noswap")
    if flag != (value is None):
        return -errno.EINVAL
    if key == "size":
        size, rest = _memparse(value)
        if rest[:1] == "%":
            from vmsim.mm.oom_kill import totalram_pages
            size = (size << 12) * totalram_pages(k) // 100
            rest = rest[1:]
        if rest:
            return -errno.EINVAL
        ctx.blocks = (size + PAGE_SIZE - 1) // PAGE_SIZE
        ctx.seen.add("blocks")
    elif key in ("nr_blocks", "nr_inodes"):
        v, rest = _memparse(value)
        if rest:
            return -errno.EINVAL
        if key == "nr_blocks":
            ctx.blocks = v
            ctx.seen.add("blocks")
        else:
            ctx.inodes = v
            ctx.seen.add("inodes")
    elif key == "mode":
        try:
            ctx.mode = int(value, 8) & 0o7777
        except ValueError:
            return -errno.EINVAL
    elif key == "huge":
        if value not in _HUGE_MOUNT:
            return -errno.EINVAL
        ctx.huge = _HUGE_BY_NAME[value]
        ctx.seen.add("huge")
    return 0


def shmem_parse_monolithic(k, data) -> "shmem_options | int":
    """shmem_parse_monolithic(): the comma-separated data string, option by option."""
    ctx = shmem_options()
    for opt in (data or "").split(","):
        if not opt:
            continue
        key, eq, value = opt.partition("=")
        ret = shmem_parse_one(k, ctx, key, value if eq else None)
        if ret:
            return ret
    return ctx


def shmem_fill_super(k, ctx, dev):
    """shmem_fill_super(): a new tmpfs superblock; huge= as given, else tmpfs_huge
    (never: no transparent_hugepage_tmpfs= boot option)."""
    from vmsim.fs.inode import super_block
    sb = super_block(k, "tmpfs", dev, None, 0, 0, False)
    sb.s_op = shmem_sops
    sb.huge = ctx.huge if "huge" in ctx.seen else SHMEM_HUGE_NEVER
    # shmem_default_max_blocks() (half of RAM) unless size= / nr_blocks= said.
    from vmsim.mm.oom_kill import totalram_pages
    sb.max_blocks = ctx.blocks if "blocks" in ctx.seen else totalram_pages(k) // 2
    sb.max_inodes = ctx.inodes if "inodes" in ctx.seen else 1
    return sb


def shmem_reconfigure(k, sb, ctx) -> int:
    """shmem_reconfigure(): a remount; huge= changes what later allocations get (the
    folios already cached stay); a size limit on a mount without one is -EINVAL
    ("Cannot retroactively limit size"), likewise inodes."""
    if "blocks" in ctx.seen and ctx.blocks and not getattr(sb, "max_blocks", 0):
        return -errno.EINVAL
    if "inodes" in ctx.seen and ctx.inodes and not getattr(sb, "max_inodes", 0):
        return -errno.EINVAL
    if "huge" in ctx.seen:
        sb.huge = ctx.huge
    if "blocks" in ctx.seen:
        sb.max_blocks = ctx.blocks
    if "inodes" in ctx.seen:
        sb.max_inodes = ctx.inodes
    return 0


def shmem_fallocate(k, inode, mode: int, offset: int, length: int) -> int:
    """shmem_fallocate() without FALLOC_FL_PUNCH_HOLE (the caller checked the seals and
    arguments): a folio for every page of the range (shmem_get_folio(SGP_FALLOC): of a
    large order where huge= or shmem_enabled allow one for write_end offset+len), left
    not uptodate but dirty until first used; on failure the folios it added go again
    (shmem_undo_range(unfalloc)); i_size grows unless FALLOC_FL_KEEP_SIZE. -ENOSPC for a
    range larger than the mount (max_blocks) or a VM_NORESERVE commit that fails."""
    from vmsim.mm.filemap import folio_mark_dirty, folio_next_index
    start = offset >> 12
    end = (offset + length + PAGE_SIZE - 1) >> 12
    max_blocks = getattr(_shmem_sb(k, inode), "max_blocks", 0)
    if max_blocks and end - start > max_blocks:
        return -errno.ENOSPC
    undo_fallocend = getattr(inode, "fallocend", 0)
    inode.fallocend = max(undo_fallocend, end)
    mem = k.mem
    index = start
    while index < end:
        folio = shmem_get_folio(k, inode, index, SGP_FALLOC, offset + length)
        if folio < 0:
            inode.fallocend = undo_fallocend
            mapping = inode.i_mapping
            for i in range(start, index):                 # shmem_undo_range(unfalloc)
                f = mapping.i_pages.get(i)
                if f is not None and mem.index[f] == i and not mem.flags[f] & PG_uptodate:
                    from vmsim.mm.truncate import truncate_inode_folio
                    nr_before = mapping.nrpages
                    truncate_inode_folio(k, mapping, f)
                    shmem_inode_unacct_blocks(k, inode, nr_before - mapping.nrpages)
            return folio
        index = folio_next_index(k, folio)
        folio_mark_dirty(k, folio)
        folio_put(k, folio)
    if not mode & 1 and offset + length > inode.i_size:          # FALLOC_FL_KEEP_SIZE
        inode.i_size = offset + length
    return 0
