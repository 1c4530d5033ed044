"""memfd_create(2) (mm/memfd.c): an unlinked shmem file ("/memfd:NAME (deleted)",
on the internal shm mount, device 0:1) or, with MFD_HUGETLB, an unlinked file of the
internal hugetlbfs mount of the size MFD_HUGE_* names (hugetlb_file_setup, 0:17),
opened O_RDWR with a descriptor (O_CLOEXEC with MFD_CLOEXEC).

The flag checks are sanitize_flags() with vm.memfd_noexec = 0 (this machine): without
MFD_EXEC or MFD_NOEXEC_SEAL the file is MFD_EXEC. Seals start as alloc_file() leaves
them (F_SEAL_SEAL cleared by MFD_ALLOW_SEALING or MFD_NOEXEC_SEAL, which also adds
F_SEAL_EXEC and drops the x bits); fcntl(F_ADD_SEALS / F_GET_SEALS) goes to
memfd_fcntl, and the seals are enforced where 6.18 checks them: shmem_setattr /
hugetlbfs_setattr (size), shmem_write_begin, shmem_fallocate / hugetlbfs_fallocate,
and do_mmap (memfd_check_seals_mmap).
"""
import errno

from vmsim.uapi import (MFD_CLOEXEC, MFD_ALLOW_SEALING, MFD_HUGETLB, MFD_NOEXEC_SEAL, MFD_EXEC,
                        MFD_HUGE_SHIFT, MFD_HUGE_MASK, O_RDWR)

MFD_NAME_PREFIX = "memfd:"
NAME_MAX = 255
MFD_NAME_MAX_LEN = NAME_MAX - len(MFD_NAME_PREFIX)
MFD_ALL_FLAGS = MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB | MFD_NOEXEC_SEAL | MFD_EXEC
F_SEAL_SEAL = 0x0001
F_SEAL_EXEC = 0x0020
O_LARGEFILE = 0o100000
SHM_DEV = (0, 1)                      # shm_mnt, the internal tmpfs mount


def check_sysctl_memfd_noexec(k, flags: int):
    """check_sysctl_memfd_noexec(): vm.memfd_noexec picks MFD_EXEC or MFD_NOEXEC_SEAL
    when neither is given; 2 requires MFD_NOEXEC_SEAL (EACCES). Returns flags or -errno."""
    sysctl = int(k.sysctl.get("/proc/sys/vm/memfd_noexec", "0"))
    if not flags & (MFD_EXEC | MFD_NOEXEC_SEAL):
        flags |= MFD_NOEXEC_SEAL if sysctl >= 1 else MFD_EXEC
    if not flags & MFD_NOEXEC_SEAL and sysctl >= 2:
        return -errno.EACCES
    return flags


def sanitize_flags(k, flags: int):
    """sanitize_flags(): unknown flags (MFD_HUGE_* only with MFD_HUGETLB) and
    MFD_EXEC with MFD_NOEXEC_SEAL are EINVAL. Returns flags or -errno."""
    if not flags & MFD_HUGETLB:
        if flags & ~MFD_ALL_FLAGS:
            return -errno.EINVAL
    elif flags & ~(MFD_ALL_FLAGS | (MFD_HUGE_MASK << MFD_HUGE_SHIFT)):
        return -errno.EINVAL
    if flags & MFD_EXEC and flags & MFD_NOEXEC_SEAL:
        return -errno.EINVAL
    return check_sysctl_memfd_noexec(k, flags)


def alloc_name(uname):
    """alloc_name(): "memfd:" + the name; a longer name than 249 bytes is EINVAL."""
    b = uname.encode() if isinstance(uname, str) else bytes(uname)
    b = b.split(b"\0", 1)[0]                      # strncpy_from_user stops at the NUL
    if len(b) > MFD_NAME_MAX_LEN:
        return -errno.EINVAL
    return MFD_NAME_PREFIX + b.decode("utf-8", "surrogateescape")


def shmem_file_setup(k, name: str, size: int, flags: int):
    """shmem_file_setup(): an unlinked inode (mode 0777) of the internal shm mount."""
    from vmsim.fs.file import file
    from vmsim.fs.inode import S_IFREG
    from vmsim.fs.namei import _get_vfs
    from vmsim.mm.shmem import _shm_mnt
    v = _get_vfs(k)
    sb = _shm_mnt(k)
    inode = v.new_inode(sb, S_IFREG | 0o777)
    inode.i_ino = k.get_next_ino()                    # get_next_ino(), as the pseudo files
    inode.i_count -= 1                            # no dentry holds it
    inode.i_nlink = 0
    inode.i_size = size
    inode.flags = flags
    return file(inode, "/" + name, O_RDWR)


def alloc_file(k, name: str, flags: int):
    """alloc_file(): the hugetlbfs or shmem file and its initial seals."""
    from vmsim.fs.hugetlbfs import hugetlb_file_setup
    from vmsim.mm.mm_types import VM_NORESERVE
    if flags & MFD_HUGETLB:
        f = hugetlb_file_setup(k, name, 0, VM_NORESERVE,
                               (flags >> MFD_HUGE_SHIFT) & MFD_HUGE_MASK)
        if isinstance(f, int):
            return f
    else:
        f = shmem_file_setup(k, name, 0, VM_NORESERVE)
    f.f_flags |= O_LARGEFILE
    inode = f.f_inode
    if not hasattr(inode, "seals"):
        inode.seals = F_SEAL_SEAL                 # shmem_get_inode()
    if flags & MFD_NOEXEC_SEAL:
        inode.i_mode &= ~0o111
        inode.seals = (inode.seals & ~F_SEAL_SEAL) | F_SEAL_EXEC
    elif flags & MFD_ALLOW_SEALING:
        inode.seals &= ~F_SEAL_SEAL
    return f


def sys_memfd_create(k, task, uname, flags: int) -> int:
    """SYSCALL_DEFINE2(memfd_create): the new descriptor or -errno."""
    from vmsim.fs.file import _task_files, fd_install
    flags = sanitize_flags(k, flags & 0xFFFFFFFF)
    if flags < 0:
        return flags
    name = alloc_name(uname)
    if isinstance(name, int):
        return name
    fs = _task_files(k, task)
    fd = fs.alloc_fd()                            # get_unused_fd_flags()
    if fd < 0:
        return fd
    f = alloc_file(k, name, flags)
    if isinstance(f, int):
        return f
    fd_install(k, task, fd, f)
    if flags & MFD_CLOEXEC:
        fs.close_on_exec.add(fd)
    else:
        fs.close_on_exec.discard(fd)
    return fd


# --- sealing (F_ADD_SEALS / F_GET_SEALS) ------------------------------------------------
F_SEAL_SHRINK = 0x0002
F_SEAL_GROW = 0x0004
F_SEAL_WRITE = 0x0008
F_SEAL_FUTURE_WRITE = 0x0010
F_ALL_SEALS = F_SEAL_SEAL | F_SEAL_EXEC | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | \
    F_SEAL_FUTURE_WRITE
F_ADD_SEALS = 1033
F_GET_SEALS = 1034


def memfd_file_seals_ptr(file):
    """memfd_file_seals_ptr(): the inode holding the seals of a shmem or hugetlbfs file
    (every shmem inode starts with F_SEAL_SEAL: shmem_get_inode), else None."""
    from vmsim.fs.hugetlbfs import is_file_hugepages
    inode = file.f_inode
    if is_file_hugepages(file):
        return inode
    if getattr(inode, "i_sb", None) is not None and inode.i_sb.s_type == "tmpfs":
        if not hasattr(inode, "seals"):
            inode.seals = F_SEAL_SEAL
        return inode
    return None


def file_seals(inode) -> int:
    """The seals of a shmem / hugetlbfs inode (0 for other files)."""
    return getattr(inode, "seals", 0) if inode.i_sb.s_type in ("tmpfs", "hugetlbfs") else 0


def _mapping_writable_count(k, inode) -> int:
    """mapping->i_mmap_writable: the VMAs of the file that may write it shared
    (vma_is_shared_maywrite)."""
    from vmsim.mm.mm_types import VM_SHARED, VM_MAYWRITE
    n = 0
    seen = set()
    for task in list(k.tasks.values()):
        mm = task.mm
        if mm is None or id(mm) in seen:
            continue
        seen.add(id(mm))
        for vma in mm.mm_mt:
            if vma.vm_file is not None and vma.vm_file.f_inode is inode and \
                    (vma.vm_flags & (VM_SHARED | VM_MAYWRITE)) == (VM_SHARED | VM_MAYWRITE):
                n += 1
    return n


def memfd_add_seals(k, file, seals: int) -> int:
    """memfd_add_seals(): only with the file open for writing (EPERM), known seals
    (EINVAL), on a shmem or hugetlbfs file (EINVAL), not sealed against sealing
    (EPERM); F_SEAL_WRITE needs no shared writable mapping (mapping_deny_writable:
    EBUSY); F_SEAL_EXEC on an executable file implies the write seals."""
    from vmsim.fs.file import FMODE_WRITE
    if not file.f_mode & FMODE_WRITE:
        return -errno.EPERM
    if seals & ~F_ALL_SEALS:
        return -errno.EINVAL
    inode = memfd_file_seals_ptr(file)
    if inode is None:
        return -errno.EINVAL
    if inode.seals & F_SEAL_SEAL:
        return -errno.EPERM
    if seals & F_SEAL_WRITE and not inode.seals & F_SEAL_WRITE:
        if _mapping_writable_count(k, inode):
            return -errno.EBUSY
    if seals & F_SEAL_EXEC and inode.i_mode & 0o111:
        seals |= F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE
    inode.seals |= seals
    return 0


def memfd_get_seals(file) -> int:
    inode = memfd_file_seals_ptr(file)
    return inode.seals if inode is not None else -errno.EINVAL


def memfd_fcntl(k, file, cmd: int, arg: int) -> int:
    if cmd == F_ADD_SEALS:
        return memfd_add_seals(k, file, arg & 0xFFFFFFFF)
    if cmd == F_GET_SEALS:
        return memfd_get_seals(file)
    return -errno.EINVAL


def memfd_check_seals_mmap(file, vm_flags: int):
    """memfd_check_seals_mmap(): a write-sealed file refuses new shared writable
    mappings (EPERM) and takes VM_MAYWRITE from shared read-only ones. vm_flags or
    -errno."""
    from vmsim.mm.mm_types import VM_SHARED, VM_WRITE, VM_MAYWRITE
    inode = file.f_inode
    if not getattr(inode, "i_sb", None) or not file_seals(inode) & (F_SEAL_WRITE |
                                                                   F_SEAL_FUTURE_WRITE):
        return vm_flags
    if not vm_flags & VM_SHARED:
        return vm_flags
    if vm_flags & VM_WRITE:
        return -errno.EPERM
    return vm_flags & ~VM_MAYWRITE
