"""Path lookup and the mount tree (fs/namei.c, fs/namespace.c), for vmsim's tree.

Two filesystems, as on the reference machine (findmnt): ext4 on /dev/vda at / (and
so /tmp, a directory of it) and tmpfs at /dev/shm; and hugetlbfs at /dev/hugepages
(vmsim/fs/hugetlbfs.py; the reference machine mounts none there). The tree holds /,
/tmp, /dev, /dev/shm and /dev/hugepages; files are created in any existing directory
(there is no mkdir).
"""
import errno

from vmsim.fs.inode import inode, super_block, S_IFDIR, S_IFREG, S_ISDIR, ihold, iput

VDA_DEV = (0xfe, 0)          # /dev/vda, 254:0
SHM_DEV = (0, 0x1a)          # /dev/shm's anonymous device on the reference machine


class vfs:
    """The mounted filesystems and the root directory."""

    def __init__(self, k, disk_latency_ns: int = 0):
        from vmsim.fs.blockdev import block_device
        from vmsim.fs.ext4 import ext4_sops
        from vmsim.mm.shmem import shmem_sops
        self.kernel = k
        self.next_ino = {}
        bdev = block_device(k, VDA_DEV, disk_latency_ns)
        self.bdev = bdev
        ra_pages = bdev.read_ahead_kb // 4
        self.ext4 = super_block(k, "ext4", VDA_DEV, bdev, ra_pages, bdev.max_sectors_kb // 4, True)
        self.ext4.s_op = ext4_sops
        # tmpfs: noop_backing_dev_info, ra_pages 0 (shmem never reads ahead).
        self.tmpfs = super_block(k, "tmpfs", SHM_DEV, None, 0, 0, False)
        self.tmpfs.s_op = shmem_sops
        self.root = self.new_inode(self.ext4, S_IFDIR | 0o755)
        tmp = self.new_inode(self.ext4, S_IFDIR | 0o1777)
        dev = self.new_inode(self.tmpfs, S_IFDIR | 0o755)        # devtmpfs, roughly
        shm = self.new_inode(self.tmpfs, S_IFDIR | 0o1777)
        self.root.children.update(tmp=tmp, dev=dev)
        dev.children["shm"] = shm
        # hugetlbfs at /dev/hugepages, default page size (systemd's dev-hugepages.mount).
        from vmsim.fs.hugetlbfs import hugetlbfs_fill_super
        dev.children["hugepages"] = hugetlbfs_fill_super(k, k.hstate)
        # The program spawn() and execve() run: a sparse ext4 file (its pages read as
        # zeros, without I/O) with the reference binary's size and inode number.
        from vmsim.kernel.exec import EXE_PATH, EXE_SIZE, EXE_INO
        d = self.root
        for name in EXE_PATH.split("/")[1:-1]:
            nd = self.new_inode(self.ext4, S_IFDIR | 0o755)
            d.children[name] = nd
            d = nd
        exe = self.new_inode(self.ext4, S_IFREG | 0o755)
        exe.i_ino = EXE_INO
        exe.i_size = EXE_SIZE
        d.children[EXE_PATH.rsplit("/", 1)[1]] = exe
        self.exe_inode = exe

    def new_inode(self, sb, mode: int):
        """new_inode(): the next inode number of the filesystem (->alloc_inode for a
        filesystem with its own inode type: hugetlbfs)."""
        alloc = getattr(sb.s_op, "alloc_inode", None)
        if alloc is not None:
            ino = alloc(self.kernel, sb, mode)
            ihold(ino)
            return ino
        n = self.next_ino.get(sb.s_type, 12 if sb.s_type == "ext4" else 2) + 1
        self.next_ino[sb.s_type] = n
        ino = inode(sb, mode, n)
        if sb.s_type == "tmpfs":
            from vmsim.mm.mm_types import VM_NORESERVE
            ino.flags = VM_NORESERVE          # tmpfs files commit memory per page
            ino.acct_pages = 0
            if sb.huge and ino.i_mapping is not None:
                # __shmem_get_inode(): mapping_set_large_folios() when huge= is set.
                from vmsim.mm.filemap import MAX_PAGECACHE_ORDER
                ino.i_mapping.max_folio_order = MAX_PAGECACHE_ORDER
        ihold(ino)                            # the dentry's reference
        return ino


def _get_vfs(k):
    v = getattr(k, "vfs", None)
    if v is None:
        v = k.vfs = vfs(k, getattr(k, "disk_latency_ns", 0))
    return v


def _split(path: str):
    if not isinstance(path, str) or not path:
        return None
    return [p for p in path.split("/") if p and p != "."]


def path_lookupat(k, path: str, parent: bool = False):
    """Walk the path: (directory inode, last name, inode or None), or -errno.
    Relative paths start at / (every vmsim process runs in /)."""
    parts = _split(path)
    if parts is None:
        return -errno.ENOENT
    v = _get_vfs(k)
    d = v.root
    stack = [d]
    for i, name in enumerate(parts):
        if len(name) > 255:
            return -errno.ENAMETOOLONG
        last = i == len(parts) - 1
        if name == "..":
            if len(stack) > 1:
                stack.pop()
            d = stack[-1]
            if last:
                return d, None, d
            continue
        if not S_ISDIR(d.i_mode):
            return -errno.ENOTDIR
        child = d.children.get(name)
        if last:
            return d, name, child
        if child is None:
            return -errno.ENOENT
        stack.append(child)
        d = child
    return d, None, d


def _full_path(path: str) -> str:
    parts = []
    for p in _split(path) or []:
        if p == "..":
            if parts:
                parts.pop()
        else:
            parts.append(p)
    return "/" + "/".join(parts)


def may_create(d) -> int:
    return 0 if S_ISDIR(d.i_mode) else -errno.ENOTDIR


def vfs_create(k, d, name: str, mode: int):
    """vfs_create(): a new regular file in directory d."""
    v = _get_vfs(k)
    ino = v.new_inode(d.i_sb, S_IFREG | (mode & 0o7777))
    d.children[name] = ino
    return ino


def do_unlinkat(k, path: str) -> int:
    """do_unlinkat(): remove the name; the inode lives on while open or mapped."""
    r = path_lookupat(k, path)
    if isinstance(r, int):
        return r
    d, name, ino = r
    if ino is None:
        return -errno.ENOENT
    if name is None:
        return -errno.EISDIR if S_ISDIR(ino.i_mode) else -errno.EBUSY
    if S_ISDIR(ino.i_mode):
        return -errno.EISDIR
    del d.children[name]
    ino.i_nlink -= 1
    iput(k, ino)                      # the dentry's reference (d_delete + dput)
    return 0
