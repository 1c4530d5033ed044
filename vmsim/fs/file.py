"""Open files and descriptor tables (fs/file_table.c, fs/file.c, fs/open.c).

A struct file holds a reference on its inode (i_count) and the readahead state of
this open (f_ra). The descriptor table of a task (files_struct) is copied by fork
(dup_fd: both tables point at the same struct files, f_count raised), kept by execve
but for the close-on-exec descriptors (do_close_on_exec), and closed by exit
(exit_files). vmsim keeps the tables in ``Kernel.task_files`` by pid.
"""
import errno

from vmsim.fs.inode import ihold, iput

FMODE_READ = 0x1
FMODE_WRITE = 0x2
FMODE_RANDOM = 0x1000
O_ACCMODE = 3
from vmsim.uapi import O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_TRUNC, O_APPEND  # noqa: E402,F401
O_DIRECTORY = 0o200000
NR_OPEN_DEFAULT = 1024                   # RLIMIT_NOFILE soft limit


class file:
    """struct file: an open of an inode."""

    def __init__(self, inode, path: str, flags: int):
        from vmsim.mm.readahead import file_ra_state
        self.f_inode = inode
        self.f_mapping = inode.i_mapping
        self.f_flags = flags
        acc = flags & O_ACCMODE
        self.f_mode = ((FMODE_READ if acc in (O_RDONLY, O_RDWR) else 0) |
                       (FMODE_WRITE if acc in (O_WRONLY, O_RDWR) else 0))
        self.f_pos = 0
        self.f_ra = file_ra_state(inode.i_sb.ra_pages)     # file_ra_state_init()
        self.f_count = 1
        self.f_op = inode.i_sb.s_op.f_op
        self.path = path
        self.dev = inode.dev
        ihold(inode)

    @property
    def deleted(self) -> bool:
        return self.f_inode.i_nlink == 0

    # --- the hooks mm/mmap.c calls ----------------------------------------------------
    def get_unmapped_area(self, mm, addr, length, pgoff, flags):
        return self.f_op.get_unmapped_area(mm, self, addr, length, pgoff, flags)

    def mmap_checks(self, flags: int, vm_flags: int):
        """The file part of do_mmap(): the mapping type against the open mode;
        returns vm_flags or -errno."""
        from vmsim.mm.mmap import _do_mmap_file
        return _do_mmap_file(self, flags, vm_flags)

    def mmap(self, vma) -> int:
        """__mmap_new_vma(): the VMA holds the file (get_file), then ->mmap_prepare
        gives it the filesystem's vm_ops."""
        err = self.f_op.mmap(self, vma)
        if not err:
            get_file(self)
        return err

    def release(self, k):
        """__fput(): the last reference went: drop the inode."""
        iput(k, self.f_inode)


def get_file(f):
    f.f_count += 1
    return f


def fput(k, f):
    f.f_count -= 1
    if f.f_count == 0:
        f.release(k)


class files_struct:
    """struct files_struct: the descriptor table."""

    def __init__(self):
        self.fd = []
        self.count = 1              # tasks sharing the table (CLONE_FILES threads)
        self.close_on_exec = set()  # fdtable->close_on_exec

    def alloc_fd(self) -> int:
        """alloc_fd(): the lowest free descriptor, or -EMFILE."""
        for i, f in enumerate(self.fd):
            if f is None:
                return i
        if len(self.fd) >= NR_OPEN_DEFAULT:
            return -errno.EMFILE
        self.fd.append(None)
        return len(self.fd) - 1


def _task_files(k, task) -> files_struct:
    fs = k.task_files.get(task.pid)
    if fs is None:
        fs = k.task_files[task.pid] = files_struct()
    return fs


def fget(k, task, fd: int):
    """fget() (fdget): the struct file of ``fd`` or None (EBADF)."""
    fs = k.task_files.get(task.pid)
    if fs is None or not 0 <= fd < len(fs.fd):
        return None
    return fs.fd[fd]


def fd_install(k, task, fd: int, f):
    _task_files(k, task).fd[fd] = f


def close_fd(k, task, fd: int) -> int:
    """close_fd() -> filp_close(): 0 or -EBADF."""
    f = fget(k, task, fd)
    if f is None:
        return -errno.EBADF
    k.task_files[task.pid].fd[fd] = None
    k.task_files[task.pid].close_on_exec.discard(fd)
    fput(k, f)
    return 0


def share_files(k, parent, child):
    """copy_files() with CLONE_FILES (a thread): the same table, one more user."""
    fs = _task_files(k, parent)
    fs.count += 1
    k.task_files[child.pid] = fs


def dup_fd(k, parent, child):
    """dup_fd() (copy_files at fork): the child's table shares the open files."""
    old = k.task_files.get(parent.pid)
    if old is None:
        return
    new = files_struct()
    new.fd = [get_file(f) if f is not None else None for f in old.fd]
    new.close_on_exec = set(old.close_on_exec)
    k.task_files[child.pid] = new


def exit_files(k, task):
    """exit_files() -> put_files_struct() -> close_files(): close every descriptor."""
    fs = k.task_files.pop(task.pid, None)
    if fs is None:
        return
    fs.count -= 1
    if fs.count:
        return                      # another thread still uses the table
    for f in fs.fd:
        if f is not None:
            fput(k, f)


def do_close_on_exec(k, task):
    """do_close_on_exec() (begin_new_exec): close the O_CLOEXEC descriptors."""
    fs = k.task_files.get(task.pid)
    if fs is None:
        return
    for fd in sorted(fs.close_on_exec):
        close_fd(k, task, fd)
