"""Inodes and superblocks (fs/inode.c, include/linux/fs.h), for vmsim's small tree.

An inode holds its page cache (i_mapping), size, link count and, for a directory,
its entries. i_count counts the in-memory references: the dentry of a linked name
and every open struct file. When the last goes and the inode is unlinked, iput()
evicts it (truncate_inode_pages_final: nothing stays in the page cache).
"""
from vmsim.mm._xarray import _XArray

S_IFMT = 0o170000
S_IFREG = 0o100000
S_IFDIR = 0o040000


def S_ISDIR(m):
    return (m & S_IFMT) == S_IFDIR


def S_ISREG(m):
    return (m & S_IFMT) == S_IFREG


class super_block:
    """struct super_block: one mounted filesystem (``s_type`` "ext4" or "tmpfs")."""

    def __init__(self, k, s_type: str, dev, bdev=None, ra_pages: int = 0, io_pages: int = 0,
                 large_folios: bool = False):
        self.kernel = k
        self.s_type = s_type
        self.s_dev = dev
        self.s_bdev = bdev
        self.ra_pages = ra_pages          # bdi->ra_pages
        self.io_pages = io_pages          # bdi->io_pages
        self.large_folios = large_folios
        self.s_op = None
        self.huge = 0                     # shmem_sb_info->huge (tmpfs: SHMEM_HUGE_NEVER)


class inode:
    """struct inode (regular file or directory)."""

    def __init__(self, sb, mode: int, ino: int):
        from vmsim.mm.filemap import address_space
        k = sb.kernel
        self.i_sb = sb
        self.i_mode = mode
        self.i_ino = ino
        self.i_size = 0
        self.i_nlink = 1
        self.i_count = 0
        self.dev = sb.s_dev
        self.children = {} if S_ISDIR(mode) else None
        # ext4's block map (i_data): page index -> block number on the device (holes
        # are absent), an xarray (vmsim.mm._xarray) rather than the extent tree.
        self.i_blocks = _XArray()
        # ext4's delayed-allocation blocks (page indices written, not yet allocated: the
        # extent status tree's delayed extents); EXT4_I(inode)->i_reserved_data_blocks
        # counts them.
        self._es_delayed = set()
        self.i_mapping = None
        if not S_ISDIR(mode):
            ops = sb.s_op
            self.i_mapping = address_space(k, self, sb.s_type == "tmpfs", ops.a_ops,
                                           sb.large_folios)


def ihold(inode):
    inode.i_count += 1


def iput(k, inode):
    """iput(): drop a reference; an unlinked inode with none left is evicted."""
    inode.i_count -= 1
    if inode.i_count == 0 and inode.i_nlink == 0:
        evict(k, inode)


def evict(k, inode):
    """evict() -> ->evict_inode (hugetlbfs_evict_inode), else
    truncate_inode_pages_final(); free the blocks."""
    from vmsim.mm.truncate import truncate_inode_pages_final
    evict_inode = getattr(inode.i_sb.s_op, "evict_inode", None)
    if evict_inode is not None:
        evict_inode(k, inode)
        return
    if inode.i_mapping is not None:
        truncate_inode_pages_final(k, inode.i_mapping)
        k._unregister_object(inode.i_mapping.id)
        inode.i_mapping = None
    from vmsim.fs.ext4 import _ext4_free_blocks
    _ext4_free_blocks(inode, 0, (1 << 64) - 1)
