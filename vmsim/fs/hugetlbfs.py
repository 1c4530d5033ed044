"""hugetlbfs (fs/hugetlbfs/inode.c): files whose page cache holds hugetlb folios.

Mounts: one internal mount per hstate (mount_one_hugetlbfs: the unlinked files of
MAP_HUGETLB, memfd_create(MFD_HUGETLB) and SHM_HUGETLB, anonymous device 0:17) and a
user mount at /dev/hugepages with the default page size (pagesize=2M), as systemd's
dev-hugepages.mount makes it. The reference machine has no /dev/hugepages mounted;
its probes mount hugetlbfs on a directory of their own, which got device 0:40, the
number used here. No size= / min_size= / nr_inodes= options: no subpool, so
hugepage_subpool_get_pages() returns its argument.

An inode (struct hugetlbfs_inode_info) carries the hstate, the reservation map of
its shared mappings (inode->i_mapping->i_private_data: resv_map) and its page cache.
The kernel indexes that cache in base pages (filemap_lock_hugetlb_folio shifts the
huge index by the order); vmsim keys ``pages`` by the huge-page index, which names
the same folios. The inode is its own i_mapping (hugetlb code reads i_size and the
hstate through it).

File operations (hugetlbfs_file_operations): read_iter (hugetlbfs_read_iter),
mmap (hugetlbfs_file_mmap), get_unmapped_area, fsync (noop_fsync), fallocate
(hugetlbfs_fallocate with FALLOC_FL_PUNCH_HOLE); there is no write_iter, so write(2)
is EINVAL (vfs_write: no FMODE_CAN_WRITE). ftruncate goes to hugetlbfs_setattr
(EINVAL unless huge-page aligned, then hugetlb_vmtruncate); unlink leaves the inode
alive while open or mapped; the last iput runs hugetlbfs_evict_inode.
Seals (fcntl F_ADD_SEALS, vmsim/mm/memfd.py) are checked by setattr, fallocate and
the hole punch as here.
"""
import errno

from vmsim.fs.inode import S_ISDIR, S_IFDIR, S_IFREG

HUGETLBFS_DEV = (0, 0x11)            # the internal mounts' anonymous device (0:17)
HUGEPAGES_DEV = (0, 40)              # a fresh hugetlbfs mount on the reference machine
F_SEAL_SEAL = 0x0001
F_SEAL_SHRINK = 0x0002
F_SEAL_GROW = 0x0004
F_SEAL_WRITE = 0x0008
F_SEAL_FUTURE_WRITE = 0x0010
S_PRIVATE = 1 << 9                   # i_flags: an internal inode (SysV shm's)
LLONG_MAX = (1 << 63) - 1


class hugetlbfs_inode_info:
    """struct hugetlbfs_inode_info + its struct inode (regular file or directory)."""

    def __init__(self, sb, mode: int, ino: int):
        self.i_sb = sb
        self.i_mode = mode
        self.i_ino = ino
        self.i_size = 0
        self.i_nlink = 1
        self.i_count = 0
        self.i_flags = 0
        self.dev = sb.s_dev
        self.hstate = sb.hstate
        self.children = {} if S_ISDIR(mode) else None
        self.i_blocks = 0                   # 512-byte units (blocks_per_huge_page each)
        self.seals = F_SEAL_SEAL            # hugetlbfs_get_inode(): sealing not allowed
        if S_ISDIR(mode):
            self.i_mapping = None
            self.resv_map = None
        else:
            from vmsim.mm.hugetlb import resv_map
            self.resv_map = resv_map()      # resv_map_alloc() for regular inodes
            self.i_mapping = self
            self.pages = {}                 # huge-page index -> hugetlb folio (head PFN)

    @property
    def nrpages(self) -> int:
        return len(self.pages) << self.hstate.order

    def __repr__(self):
        return f"<hugetlbfs inode {self.i_ino} size {self.i_size} pages {sorted(self.pages)}>"


class hugetlbfs_super_block:
    """struct super_block of a hugetlbfs mount with its hugetlbfs_sb_info (hstate)."""

    def __init__(self, k, h, dev):
        self.kernel = k
        self.s_type = "hugetlbfs"
        self.s_dev = dev
        self.s_bdev = None
        self.ra_pages = 0                 # noop_backing_dev_info
        self.io_pages = 0
        self.large_folios = False
        self.hstate = h
        self.s_op = hugetlbfs_sops
        self.s_inodes = {}                # id -> inode (inode_sb_list_add / _del)
        k.__dict__.setdefault("hugetlbfs_sbs", []).append(self)


def hugetlbfs_get_inode(k, sb, mode: int):
    """hugetlbfs_get_inode(): a new inode with get_next_ino(), on the sb's list."""
    inode = hugetlbfs_inode_info(sb, mode, k.get_next_ino())
    sb.s_inodes[id(inode)] = inode
    return inode


def hstate_inode(inode):
    return inode.hstate


# --- read ----------------------------------------------------------------------------
def hugetlbfs_read_iter(k, file, pos: int, count: int):
    """hugetlbfs_read_iter(): copy from the cached folios; a hole reads as zeros
    without allocating; stops at i_size."""
    from vmsim.mm.hugetlb import filemap_lock_hugetlb_folio
    from vmsim.mm.swap import folio_put
    inode = file.f_inode
    h = inode.hstate
    shift = 12 + h.order
    hsize = 1 << shift
    index = pos >> shift
    offset = pos & (hsize - 1)
    out = bytearray()
    while len(out) < count:
        nr = hsize
        isize = inode.i_size
        if not isize:
            break
        end_index = (isize - 1) >> shift
        if index > end_index:
            break
        if index == end_index:
            nr = ((isize - 1) & (hsize - 1)) + 1
            if nr <= offset:
                break
        nr = min(nr - offset, count - len(out))
        folio = filemap_lock_hugetlb_folio(h, inode, index)
        if folio < 0:
            out += bytes(nr)
        else:
            p = offset
            while p < offset + nr:
                page = folio + (p >> 12)
                n = min(4096 - (p & 4095), offset + nr - p)
                out += k.page_data.read(page, p & 4095, n)
                p += n
            folio_put(k, folio)
        offset += nr
        index += offset >> shift
        offset &= hsize - 1
    return bytes(out)


# --- truncate, hole punch, eviction -------------------------------------------------------
def vma_offset_start(vma, start: int) -> int:
    """vma_offset_start(): the address of file page ``start`` in the VMA (clamped)."""
    if vma.vm_pgoff >= start:
        return vma.vm_start
    return vma.vm_start + ((start - vma.vm_pgoff) << 12)


def vma_offset_end(vma, end: int) -> int:
    """vma_offset_end(): the address after file page ``end`` (0: the whole VMA)."""
    if not end:
        return vma.vm_end
    t_end = ((end - vma.vm_pgoff) << 12) + vma.vm_start
    return min(t_end, vma.vm_end)


def hugetlb_vmdelete_list(k, inode, start: int, end: int, zap_flags: int):
    """hugetlb_vmdelete_list(): unmap file pages [start, end) (base-page offsets, end 0:
    to the end) from every VMA of the file, shared or private (i_mmap)."""
    from vmsim.mm.hugetlb import _hugetlb_vmas_of, unmap_hugepage_range
    for vma in _hugetlb_vmas_of(k, inode):
        vlast = vma.vm_pgoff + ((vma.vm_end - vma.vm_start) >> 12) - 1
        if vlast < start or (end and vma.vm_pgoff > end - 1):
            continue                        # vma_interval_tree_foreach's range
        v_start = vma_offset_start(vma, start)
        v_end = vma_offset_end(vma, end)
        if v_start < v_end:
            unmap_hugepage_range(vma, v_start, v_end, None, zap_flags)


def hugetlb_unmap_file_folio(k, h, inode, folio: int, index: int):
    """hugetlb_unmap_file_folio(): unmap a still-mapped cached folio from the VMAs
    that map it (hugetlb_vma_maps_pfn)."""
    from vmsim.mm.hugetlb import _hugetlb_vmas_of, unmap_hugepage_range, hugetlb_walk
    start = index << h.order
    end = (index + 1) << h.order
    for vma in _hugetlb_vmas_of(k, inode):
        v_start = vma_offset_start(vma, start)
        v_end = vma_offset_end(vma, end)
        if v_start >= v_end:
            continue
        ptep = hugetlb_walk(vma, v_start, h.huge_page_size())
        if ptep >= 0 and (k.ptpool.mv[ptep] & ((1 << 52) - 1)) >> 12 == folio:
            unmap_hugepage_range(vma, v_start, v_end, None, 0)


def hugetlb_delete_from_page_cache(k, inode, folio: int, index: int):
    """hugetlb_delete_from_page_cache(): clear dirty and uptodate, filemap_remove_folio
    (the cache's nr_pages references go)."""
    from vmsim.mm.page_flags import PG_dirty, PG_uptodate
    from vmsim.mm.swap import folio_put_refs
    mem = k.mem
    mem.flags[folio] = mem.flags[folio] & ~(PG_dirty | PG_uptodate)
    del inode.pages[index]
    mem.mapping[folio] = 0
    folio_put_refs(k, folio, 1 << inode.hstate.order)


def remove_inode_single_folio(k, h, inode, folio: int, index: int, truncate_op: bool) -> bool:
    """remove_inode_single_folio(): unmap it if still mapped, drop it from the cache,
    and for a hole punch release the page's reservation."""
    from vmsim.mm.hugetlb import hugetlb_unreserve_pages, folio_mapcount
    if folio_mapcount(k, folio):
        hugetlb_unmap_file_folio(k, h, inode, folio, index)
    hugetlb_delete_from_page_cache(k, inode, folio, index)
    if not truncate_op:
        hugetlb_unreserve_pages(inode, index, index + 1, 1)
    return True


def remove_inode_hugepages(k, inode, lstart: int, lend: int):
    """remove_inode_hugepages(): truncation (lend LLONG_MAX: the reservations past
    lstart go afterwards, less the pages freed) or hole punch (only the pages found
    give back their reservation)."""
    from vmsim.mm.hugetlb import hugetlb_unreserve_pages
    h = inode.hstate
    shift = 12 + h.order
    truncate_op = lend == LLONG_MAX
    first = lstart >> shift
    last = (lend >> 12) >> h.order if not truncate_op else None     # end (exclusive)
    freed = 0
    for index in sorted(inode.pages):
        if index < first or (last is not None and index >= last):
            continue
        if remove_inode_single_folio(k, h, inode, inode.pages[index], index, truncate_op):
            freed += 1
    if truncate_op:
        hugetlb_unreserve_pages(inode, lstart >> shift, LLONG_MAX, freed)


def hugetlbfs_evict_inode(k, inode):
    """hugetlbfs_evict_inode(): every page and reservation goes, then the resv_map."""
    inode.i_sb.s_inodes.pop(id(inode), None)   # inode_sb_list_del (evict)
    if inode.i_mapping is None:
        return
    remove_inode_hugepages(k, inode, 0, LLONG_MAX)
    inode.resv_map.refs -= 1                 # resv_map_release


def hugetlb_vmtruncate(k, inode, offset: int):
    """hugetlb_vmtruncate(): the new size, unmap past it from every VMA, drop the
    pages (truncate_op)."""
    h = inode.hstate
    assert not offset & ~h.huge_page_mask()
    pgoff = offset >> 12
    inode.i_size = offset
    hugetlb_vmdelete_list(k, inode, pgoff, 0, 0)
    remove_inode_hugepages(k, inode, offset, LLONG_MAX)


def hugetlbfs_setattr(k, inode, newsize: int) -> int:
    """hugetlbfs_setattr(ATTR_SIZE): huge-page aligned sizes only (EINVAL); seals."""
    h = inode.hstate
    oldsize = inode.i_size
    if newsize & ~h.huge_page_mask():
        return -errno.EINVAL
    if (newsize < oldsize and inode.seals & F_SEAL_SHRINK) or \
            (newsize > oldsize and inode.seals & F_SEAL_GROW):
        return -errno.EPERM
    hugetlb_vmtruncate(k, inode, newsize)
    return 0


def hugetlbfs_zero_partial_page(k, h, inode, start: int, end: int):
    """hugetlbfs_zero_partial_page(): zero [start, end) inside one cached folio."""
    from vmsim.mm.hugetlb import filemap_lock_hugetlb_folio
    from vmsim.mm.swap import folio_put
    idx = start >> (12 + h.order)
    folio = filemap_lock_hugetlb_folio(h, inode, idx)
    if folio < 0:
        return
    size = h.huge_page_size()
    start &= size - 1
    end &= size - 1
    if not end:
        end = size
    p = start
    while p < end:                           # folio_zero_segment()
        n = min(4096 - (p & 4095), end - p)
        k.page_data.write(folio + (p >> 12), p & 4095, bytes(n))
        p += n
    folio_put(k, folio)


def hugetlbfs_punch_hole(k, inode, offset: int, length: int) -> int:
    """hugetlbfs_punch_hole(): zero the partial pages at the edges, unmap and remove
    the whole pages inside (write seals: EPERM)."""
    h = inode.hstate
    hpage_size = h.huge_page_size()
    hole_start = (offset + hpage_size - 1) & ~(hpage_size - 1)
    hole_end = (offset + length) & ~(hpage_size - 1)
    if inode.seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE):
        return -errno.EPERM
    if offset < hole_start:
        hugetlbfs_zero_partial_page(k, h, inode, offset, min(offset + length, hole_start))
    if hole_end > hole_start:
        hugetlb_vmdelete_list(k, inode, hole_start >> 12, hole_end >> 12, 0)
    if offset + length > hole_end and offset + length > hole_start:
        hugetlbfs_zero_partial_page(k, h, inode, hole_end, offset + length)
    if hole_end > hole_start:
        remove_inode_hugepages(k, inode, hole_start, hole_end)
    return 0


class _pseudo_vma:
    """The pseudo_vma hugetlbfs_fallocate() builds for the allocation routines."""

    def __init__(self, mm, file):
        from vmsim.mm.mm_types import VM_HUGETLB, VM_MAYSHARE, VM_SHARED
        self.vm_mm = mm
        self.vm_flags = VM_HUGETLB | VM_MAYSHARE | VM_SHARED
        self.vm_file = file
        self.vm_start = 0
        self.vm_end = 0
        self.vm_pgoff = 0
        self.vm_private_data = None


def hugetlbfs_fallocate(k, file, mode: int, offset: int, length: int) -> int:
    """hugetlbfs_fallocate(): PUNCH_HOLE, or allocate (zeroed) and cache every huge
    page of the range not cached yet, consuming the inode's reservations; extends
    i_size unless KEEP_SIZE. Pool exhaustion: ENOSPC (pages allocated so far stay)."""
    from vmsim.fs.open import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE
    from vmsim.mm.hugetlb import (alloc_hugetlb_folio, folio_zero_user, hugetlb_add_to_page_cache,
                                  _hpg_set, HPG_migratable)
    from vmsim.mm.page_flags import PG_uptodate
    from vmsim.mm.swap import folio_put
    inode = file.f_inode
    h = inode.hstate
    if mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE):
        return -errno.EOPNOTSUPP
    if mode & FALLOC_FL_PUNCH_HOLE:
        return hugetlbfs_punch_hole(k, inode, offset, length)
    hpage_size = h.huge_page_size()
    start = offset >> (12 + h.order)
    end = (offset + length + hpage_size - 1) >> (12 + h.order)
    if inode.seals & F_SEAL_GROW and offset + length > inode.i_size:
        return -errno.EPERM
    pseudo_vma = _pseudo_vma(k.current.mm, file)
    for index in range(start, end):
        addr = index * hpage_size
        if index in inode.pages:              # filemap_get_folio(): already there
            continue
        folio = alloc_hugetlb_folio(pseudo_vma, addr, False)
        if folio < 0:
            return folio
        folio_zero_user(k, folio, 1 << h.order)
        k.mem.flags[folio] = k.mem.flags[folio] | PG_uptodate
        hugetlb_add_to_page_cache(k, folio, inode, index)
        _hpg_set(k, folio, HPG_migratable)
        folio_put(k, folio)                   # the allocation's reference
    if not mode & FALLOC_FL_KEEP_SIZE and offset + length > inode.i_size:
        inode.i_size = offset + length
    return 0


# --- mmap -----------------------------------------------------------------------------
def hugetlbfs_file_mmap(file, vma) -> int:
    """hugetlbfs_file_mmap(): VM_HUGETLB | VM_DONTEXPAND and hugetlb_vm_ops, the offset
    aligned to the huge page (EINVAL), the reservation of the mapped range (ENOMEM;
    none for an S_PRIVATE SysV shm inode, whose shmget reserved), and a writable
    mapping past the end grows i_size."""
    from vmsim.mm.hugetlb import hugetlb_reserve_pages, hugetlb_vm_ops
    from vmsim.mm.mm_types import VM_HUGETLB, VM_DONTEXPAND, VM_NORESERVE, VM_WRITE
    inode = file.f_inode
    h = inode.hstate
    vma.vm_flags |= VM_HUGETLB | VM_DONTEXPAND
    vma.vm_ops = hugetlb_vm_ops
    if vma.vm_pgoff & (0xFFF << 52):           # PGOFF_LOFFT_MAX
        return -errno.EINVAL
    if vma.vm_pgoff & ((1 << h.order) - 1):
        return -errno.EINVAL
    vma_len = vma.vm_end - vma.vm_start
    length = vma_len + (vma.vm_pgoff << 12)
    vm_flags = vma.vm_flags
    if inode.i_flags & S_PRIVATE:
        vm_flags |= VM_NORESERVE
    if hugetlb_reserve_pages(inode, vma.vm_pgoff >> h.order, length >> (12 + h.order),
                             vma, vm_flags) < 0:
        return -errno.ENOMEM
    if vma.vm_flags & VM_WRITE and inode.i_size < length:
        inode.i_size = length
    return 0


def hugetlb_get_unmapped_area(file, mm, addr: int, length: int, pgoff: int, flags: int) -> int:
    """hugetlb_get_unmapped_area(): length and a MAP_FIXED address must be huge-page
    aligned; a hint is rounded up; the search aligns to the huge page size."""
    from vmsim.mm.mmap import MAP_FIXED, mm_get_unmapped_area_vmflags
    h = file.f_inode.hstate
    size = h.huge_page_size()
    if length & (size - 1):
        return -errno.EINVAL
    if flags & MAP_FIXED and addr & (size - 1):
        return -errno.EINVAL
    addr0 = (addr + size - 1) & ~(size - 1) if addr else 0
    return mm_get_unmapped_area_vmflags(mm, file, addr0, length, pgoff, flags, 0)


class _HugetlbfsFileOps:
    """hugetlbfs_file_operations."""

    @staticmethod
    def mmap(file, vma) -> int:
        return hugetlbfs_file_mmap(file, vma)

    @staticmethod
    def get_unmapped_area(mm, file, addr, length, pgoff, flags):
        return hugetlb_get_unmapped_area(file, mm, addr, length, pgoff, flags)

    @staticmethod
    def read_iter(k, file, pos, count):
        return hugetlbfs_read_iter(k, file, pos, count)

    @staticmethod
    def fallocate(k, file, mode, offset, length):
        return hugetlbfs_fallocate(k, file, mode, offset, length)

    write_iter = None                          # write(2): EINVAL


hugetlbfs_file_operations = _HugetlbfsFileOps()


class hugetlbfs_sops:
    """hugetlbfs_ops (super_operations) with the inode and file operations."""
    a_ops = None
    f_op = hugetlbfs_file_operations

    @staticmethod
    def alloc_inode(k, sb, mode: int):
        return hugetlbfs_get_inode(k, sb, mode)

    @staticmethod
    def evict_inode(k, inode):
        hugetlbfs_evict_inode(k, inode)

    @staticmethod
    def setattr(k, inode, newsize: int) -> int:
        """->setattr with ATTR_SIZE."""
        return hugetlbfs_setattr(k, inode, newsize)


def is_file_hugepages(file) -> bool:
    """is_file_hugepages(): a hugetlbfs file, or a SysV shm attach of a hugetlb segment
    (is_file_shm_hugepages)."""
    f_op = getattr(file, "f_op", None)
    if f_op is hugetlbfs_file_operations:
        return True
    from vmsim.ipc.shm import is_file_shm_hugepages
    return is_file_shm_hugepages(file)


# --- mounts and the internal files ------------------------------------------------------
def init_hugetlbfs_fs(k):
    """init_hugetlbfs_fs(): the internal mount of each hstate (hugetlbfs_vfsmount[]),
    made at first use."""
    m = getattr(k, "hugetlbfs_vfsmount", None)
    if m is None:
        m = k.hugetlbfs_vfsmount = {h: hugetlbfs_super_block(k, h, HUGETLBFS_DEV)
                                    for h in k.hstates}
    return m


def hugetlbfs_fill_super(k, h, dev=HUGEPAGES_DEV):
    """hugetlbfs_fill_super(): a new mount's superblock and root directory (0755)."""
    sb = hugetlbfs_super_block(k, h, dev)
    root = hugetlbfs_get_inode(k, sb, S_IFDIR | 0o755)
    root.i_count = 1
    return root


def hugetlb_file_setup(k, name: str, size: int, acctflag: int, page_size_log: int,
                       private: bool = False):
    """hugetlb_file_setup(): an unlinked inode (mode 0777) of the hstate's internal
    mount, opened O_RDWR as "/<name>"; only ``size``'s reservation is taken now
    (acctflag VM_NORESERVE defers it to ->mmap). -ENODEV for an unknown size, -ENOMEM
    when the pool cannot cover the reservation."""
    from vmsim.fs.file import file, O_RDWR
    from vmsim.mm.hugetlb import hstate_sizelog, hugetlb_reserve_pages
    h = hstate_sizelog(k, page_size_log)
    if h is None:
        return -errno.ENODEV
    sb = init_hugetlbfs_fs(k)[h]
    inode = hugetlbfs_get_inode(k, sb, S_IFREG | 0o777)
    inode.i_nlink = 0                          # a pseudo file: evicted at the last iput
    inode.i_size = size
    if private:
        inode.i_flags |= S_PRIVATE
    if hugetlb_reserve_pages(inode, 0, size >> (12 + h.order), None, acctflag) < 0:
        return -errno.ENOMEM
    return file(inode, "/" + name, O_RDWR)
