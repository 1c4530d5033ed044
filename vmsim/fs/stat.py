"""fstat(2) (fs/stat.c): vfs_fstat -> generic_fillattr, the fields vmsim keeps.

st_blocks counts 512-byte units: hugetlbfs adds blocks_per_huge_page per cached
folio (hugetlb_add_to_page_cache), tmpfs counts its cached pages (shmem), ext4 the
blocks a file has (written back or fallocated, past i_size too) and those its delayed
allocation reserved (ext4_file_getattr). Times and owners are not modelled (0).
"""
import errno
from typing import NamedTuple

from vmsim.fs.file import fget


class kstat(NamedTuple):
    """struct kstat / struct stat: the fields vmsim keeps."""
    st_mode: int
    st_ino: int
    st_dev: int
    st_nlink: int
    st_size: int
    st_blocks: int


def _i_blocks(inode) -> int:
    if isinstance(inode.i_blocks, int):
        return inode.i_blocks                          # hugetlbfs
    if inode.i_sb.s_type == "tmpfs":
        return inode.i_mapping.nrpages * 8 if inode.i_mapping is not None else 0
    if inode.i_sb.s_type == "ext4":
        from vmsim.fs.ext4 import ext4_file_getattr
        return ext4_file_getattr(inode)
    return len(inode.i_blocks) * 8


def new_encode_dev(dev) -> int:
    major, minor = dev
    return (minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)


def vfs_fstat(k, task, fd: int):
    """vfs_fstat(): the kstat of the open file, or -EBADF."""
    f = fget(k, task, fd)
    if f is None:
        return -errno.EBADF
    ino = f.f_inode
    return kstat(ino.i_mode, ino.i_ino, new_encode_dev(ino.dev), ino.i_nlink, ino.i_size,
                 _i_blocks(ino))
