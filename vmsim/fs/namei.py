"""Path lookup and the mount tree (fs/namei.c, fs/namespace.c), for vmsim's tree.

Two filesystems, as on the reference machine (findmnt): ext4 on /dev/vda at / (and
so /tmp, a directory of it) and tmpfs at /dev/shm (huge=never); and hugetlbfs at
/dev/hugepages (vmsim/fs/hugetlbfs.py; the reference machine mounts none there). The
tree holds /, /tmp, /dev, /dev/shm and /dev/hugepages; files are created in any
existing directory, directories with mkdir(2). mount(2) makes new tmpfs mounts (and
remounts /dev/shm or them: MS_REMOUNT) with tmpfs's options (mm/shmem.c), umount(2)
removes them; a mount covers its directory's entry, as a dentry's mount does.
Not modelled: other filesystem types (mount raises NotImplementedError for the ones
the reference kernel knows, ENODEV for the rest), bind / move / propagation flags,
mount namespaces, /proc/mounts.
"""
import errno

from vmsim.fs.inode import inode, super_block, S_IFDIR, S_IFREG, S_ISDIR, ihold, iput
from vmsim.uapi import (MS_RDONLY, MS_REMOUNT, MS_BIND, MS_MOVE, MS_SHARED, MS_PRIVATE, MS_SLAVE,
                        MS_UNBINDABLE, MNT_FORCE, MNT_DETACH)

VDA_DEV = (0xfe, 0)          # /dev/vda, 254:0
SHM_DEV = (0, 0x1a)          # /dev/shm's anonymous device on the reference machine


class vfs:
    """The mounted filesystems and the root directory."""

    def __init__(self, k, disk_latency_ns: int = 0):
        from vmsim.fs.blockdev import block_device
        from vmsim.fs.ext4 import ext4_sops
        from vmsim.mm.shmem import shmem_sops
        self.kernel = k
        self._next_ino = {}
        bdev = block_device(k, VDA_DEV, disk_latency_ns)
        self.bdev = bdev
        ra_pages = bdev.read_ahead_kb // 4
        self.ext4 = super_block(k, "ext4", VDA_DEV, bdev, ra_pages, bdev.max_sectors_kb // 4, True)
        self.ext4.s_op = ext4_sops
        # tmpfs: noop_backing_dev_info, ra_pages 0 (shmem never reads ahead).
        self.tmpfs = super_block(k, "tmpfs", SHM_DEV, None, 0, 0, False)
        self.tmpfs.s_op = shmem_sops
        from vmsim.mm.oom_kill import totalram_pages
        self.tmpfs.max_blocks = totalram_pages(k) // 2       # shmem_default_max_blocks()
        self.tmpfs.max_inodes = 0
        self.root = self.new_inode(self.ext4, S_IFDIR | 0o755)
        tmp = self.new_inode(self.ext4, S_IFDIR | 0o1777)
        dev = self.new_inode(self.tmpfs, S_IFDIR | 0o755)        # devtmpfs, roughly
        shm = self.new_inode(self.tmpfs, S_IFDIR | 0o1777)
        self.root.children.update(tmp=tmp, dev=dev)
        dev.children["shm"] = shm
        self.root.mnt_root = self.ext4
        shm.mnt_root = self.tmpfs             # /dev/shm is a mount of its own
        self.next_anon_dev = 0x30
        # hugetlbfs at /dev/hugepages, default page size (systemd's dev-hugepages.mount).
        from vmsim.fs.hugetlbfs import hugetlbfs_fill_super
        dev.children["hugepages"] = hugetlbfs_fill_super(k, k.hstate)
        dev.children["hugepages"].mnt_root = dev.children["hugepages"].i_sb
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
        n = self._next_ino.get(sb.s_type, 12 if sb.s_type == "ext4" else 2) + 1
        self._next_ino[sb.s_type] = n
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


def do_mkdirat(k, path: str, mode: int) -> int:
    """do_mkdirat(): a new directory (mode & 0777 | sticky etc. as given, no umask:
    vmsim's processes have umask 0)."""
    r = path_lookupat(k, path)
    if isinstance(r, int):
        return r
    d, name, ino = r
    if ino is not None:
        return -errno.EEXIST
    if not S_ISDIR(d.i_mode):
        return -errno.ENOTDIR
    v = _get_vfs(k)
    nd = v.new_inode(d.i_sb, S_IFDIR | (mode & 0o7777))
    d.children[name] = nd
    return 0


# umount2(2) flags (include/linux/fs.h) the uapi header does not name
MNT_EXPIRE = 4
UMOUNT_NOFOLLOW = 8
# Filesystem types the reference kernel registers (/proc/filesystems) that vmsim
# cannot mount: mount(2) of one raises NotImplementedError rather than a wrong errno.
_KNOWN_FS = ("sysfs", "tmpfs", "bdev", "proc", "cgroup", "cgroup2", "cpuset", "devtmpfs",
             "configfs", "debugfs", "tracefs", "securityfs", "sockfs", "bpf", "pipefs",
             "ramfs", "hugetlbfs", "devpts", "ext3", "ext2", "ext4", "squashfs", "vfat",
             "ecryptfs", "fuse", "fusectl", "virtiofs", "mqueue", "pstore", "autofs",
             "overlay", "9p", "binfmt_misc")


def _mount_root(k, path: str):
    """The root inode of the mount whose root ``path`` names, or -errno."""
    r = path_lookupat(k, path)
    if isinstance(r, int):
        return r
    d, name, ino = r
    if ino is None:
        return -errno.ENOENT
    return ino


def path_mount(k, dev_name, path: str, fstype, flags: int, data) -> int:
    """path_mount(): MS_REMOUNT reconfigures the mount rooted at path (do_remount:
    -EINVAL if path is not a mount's root); otherwise do_new_mount() of a tmpfs
    (shmem_parse_monolithic + shmem_fill_super) on the directory path."""
    from vmsim.mm.shmem import shmem_parse_monolithic, shmem_fill_super, shmem_reconfigure
    ino = _mount_root(k, path)
    if isinstance(ino, int):
        return ino
    if flags & MS_REMOUNT:
        sb = getattr(ino, "mnt_root", None)
        if sb is None:
            return -errno.EINVAL
        if sb.s_type != "tmpfs":
            raise NotImplementedError(f"remount of {sb.s_type} is not modelled")
        ctx = shmem_parse_monolithic(k, data)
        if isinstance(ctx, int):
            return ctx
        return shmem_reconfigure(k, sb, ctx)
    if flags & (MS_BIND | MS_MOVE | MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE):
        raise NotImplementedError("bind, move and propagation mounts are not modelled")
    if not isinstance(fstype, str) or not fstype:
        return -errno.EINVAL if fstype == "" else -errno.EFAULT
    if fstype != "tmpfs":
        if fstype in _KNOWN_FS:
            raise NotImplementedError(f"mounting {fstype} is not modelled")
        return -errno.ENODEV
    if not S_ISDIR(ino.i_mode):
        return -errno.ENOTDIR
    ctx = shmem_parse_monolithic(k, data)
    if isinstance(ctx, int):
        return ctx
    if flags & MS_RDONLY:
        raise NotImplementedError("read-only tmpfs mounts are not modelled")
    v = _get_vfs(k)
    sb = shmem_fill_super(k, ctx, (0, v.next_anon_dev))
    v.next_anon_dev += 1
    root = v.new_inode(sb, S_IFDIR | ctx.mode)
    root.mnt_root = sb
    root.mnt_covered = ino                # the dentry the mount sits on
    root.mnt_parent_dir, root.mnt_name = _parent_entry(k, path, ino)
    root.mnt_parent_dir.children[root.mnt_name] = root
    return 0


def _parent_entry(k, path: str, ino):
    """The directory entry (parent, name) naming ``ino`` on ``path``."""
    parts = [p for p in _full_path(path).split("/") if p]
    r = path_lookupat(k, "/" + "/".join(parts[:-1]) if len(parts) > 1 else "/")
    parent = r[2]
    return parent, parts[-1]


def _busy(sb, d) -> bool:
    for c in (d.children or {}).values():
        if getattr(c, "mnt_root", None) is not None and c.i_sb is not sb:
            return True                    # another mount below
        if S_ISDIR(c.i_mode):
            if _busy(sb, c):
                return True
        elif c.i_count > 1:
            return True                    # open or mapped
    return False


def _kill_litter(k, d):
    """kill_litter_super(): every dentry of the mount goes (d_genocide), so its files'
    pages go with their inodes."""
    for name, c in list(d.children.items()):
        if S_ISDIR(c.i_mode):
            _kill_litter(k, c)
        del d.children[name]
        c.i_nlink = 0
        iput(k, c)


def path_umount(k, path: str, flags: int) -> int:
    """path_umount(): -EINVAL unless path is a mount's root (and not /), -EBUSY while
    a file of it is open or mapped or something is mounted below; then the mount's
    files go (tmpfs: kill_litter_super) and the covered directory shows again."""
    if flags & ~(MNT_FORCE | MNT_DETACH | MNT_EXPIRE | UMOUNT_NOFOLLOW):
        return -errno.EINVAL
    ino = _mount_root(k, path)
    if isinstance(ino, int):
        return ino
    sb = getattr(ino, "mnt_root", None)
    if sb is None:
        return -errno.EINVAL                              # not a mount point
    cov = getattr(ino, "mnt_covered", None)
    if cov is None:
        raise NotImplementedError("unmounting the boot mounts is not modelled")
    if flags & MNT_DETACH:
        raise NotImplementedError("lazy umount (MNT_DETACH) is not modelled")
    if _busy(sb, ino):
        return -errno.EBUSY
    _kill_litter(k, ino)
    ino.mnt_parent_dir.children[ino.mnt_name] = cov
    ino.i_nlink = 0
    iput(k, ino)
    return 0
