"""Reading and writing /proc and /sys files of a Machine (fs/proc/base.c, fs/proc/root.c).

read(machine, path, offset, size) returns str for text files and bytes for the binary
ones (pagemap, kpageflags, kpagecount), as a read(2) at ``offset`` of ``size`` bytes
would (size -1: to the end; pagemap has no end short of TASK_SIZE, so it needs a
size). Errors are raised as the syscall would report them: FileNotFoundError (ENOENT)
for a path that does not exist, OSError(EINVAL) for a misaligned pagemap/kpage* read,
OSError(ESRCH) for smaps_rollup of a zombie, OSError(EIO) / OSError(EINVAL) for writing
the read-only /proc files (as the reference machine answers), OSError(EACCES) for a read-only sysfs file.

/proc/self is the current task (the one whose syscall ran last).
"""
import errno
import os

from vmsim.fs import sysfs
from vmsim.mm import hugetlb
from vmsim.fs.proc import array, base, meminfo, page, task_mmu, vmstat

_TEXT_PID_FILES = {
    "maps": lambda k, t: task_mmu.proc_pid_maps(t.mm),
    "smaps": lambda k, t: task_mmu.proc_pid_smaps(t.mm),
    "smaps_rollup": lambda k, t: task_mmu.show_smaps_rollup(t.mm),
    "status": array.proc_pid_status,
    "stat": array.do_task_stat,
    "statm": array.proc_pid_statm,
    "oom_score": base.proc_oom_score,
    "oom_score_adj": base.oom_score_adj_read,
}
_TEXT_FILES = {
    "/proc/meminfo": meminfo.meminfo_proc_show,
    "/proc/vmstat": vmstat.vmstat_show,
    "/proc/zoneinfo": vmstat.zoneinfo_show,
    "/proc/buddyinfo": vmstat.buddyinfo_show,
    "/proc/sysvipc/shm": lambda k: _sysvipc_shm(k),
}


def _sysvipc_shm(k):
    from vmsim.ipc.shm import sysvipc_shm_proc_show
    return sysvipc_shm_proc_show(k)
_BINARY_FILES = {
    "/proc/kpageflags": page.kpageflags_read,
    "/proc/kpagecount": page.kpagecount_read,
}


def _enoent(path):
    return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)


def _err(ret, path):
    return OSError(-ret, os.strerror(-ret), path)


def _normalize(path: str) -> str:
    path = "/" + "/".join(p for p in path.split("/") if p and p != ".")
    return path


def _task(k, pidstr: str, path: str):
    if pidstr == "self":
        task = k.current
        if task is None:
            raise _enoent(path)
        return task
    if not pidstr.isdigit():
        raise _enoent(path)
    task = k.tasks.get(int(pidstr))
    if task is None:
        raise _enoent(path)
    return task


def _slice(data, offset: int, size: int):
    if offset < 0:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
    if size is None or size < 0:
        return data[offset:]
    return data[offset:offset + size]


def read(machine, path: str, offset: int = 0, size: int = -1):
    """Read ``size`` bytes (str for text files) at ``offset`` of a /proc or /sys file."""
    k = machine.k
    p = _normalize(path)
    if not p.startswith(("/proc/", "/sys/")):
        return _vfs_read(machine, p, offset, size)
    if p == FAULT_AROUND_BYTES:
        return _slice(f"{k.fault_around_pages << 12}\n", offset, size)
    if sysfs._is_knob(p):
        return _slice(sysfs.knob_read(k, p), offset, size)
    if hugetlb._is_knob(k, p):
        return _slice(hugetlb.knob_read(k, p), offset, size)
    if p in _TEXT_FILES:
        return _slice(_TEXT_FILES[p](k), offset, size)
    if p in _BINARY_FILES:
        ret = _BINARY_FILES[p](k, offset, size)
        if isinstance(ret, int):
            raise _err(ret, path)
        return ret
    parts = p.split("/")
    if len(parts) == 4 and parts[1] == "proc":
        task = _task(k, parts[2], path)
        name = parts[3]
        if name == "pagemap":
            if size is None or size < 0:
                raise OSError(errno.EINVAL, "pagemap: give the number of bytes to read", path)
            ret = task_mmu.pagemap_read(task.mm, offset, size)
            if isinstance(ret, int):
                raise _err(ret, path)
            return ret
        fn = _TEXT_PID_FILES.get(name)
        if fn is not None:
            ret = fn(k, task)
            if isinstance(ret, int):
                raise _err(ret, path)
            return _slice(ret, offset, size)
    raise _enoent(path)


def write(machine, path: str, data) -> int:
    """Write a knob; returns the number of bytes written (the kernel's store result)."""
    k = machine.k
    p = _normalize(path)
    if isinstance(data, (bytes, bytearray)):
        data = bytes(data).decode()
    if not p.startswith(("/proc/", "/sys/")):
        return _vfs_write(machine, p, data)
    data = str(data)
    if p == "/proc/sys/vm/drop_caches":
        return drop_caches_sysctl_handler(k, data)
    if p == FAULT_AROUND_BYTES:
        return fault_around_bytes_set(k, data)
    if sysfs._is_knob(p):
        ret = sysfs.knob_write(k, p, data)
        if ret < 0:
            raise _err(ret, path)
        return ret
    if hugetlb._is_knob(k, p):
        ret = hugetlb.knob_write(k, p, data)
        if ret < 0:
            raise _err(ret, path)
        return ret
    if p in _TEXT_FILES or p in _BINARY_FILES:
        raise _err(-errno.EIO, path)                 # proc_reg_write(): no ->write
    parts = p.split("/")
    if len(parts) == 4 and parts[1] == "proc":
        task = _task(k, parts[2], path)
        if parts[3] == "oom_score_adj":
            ret = base.oom_score_adj_write(k, task, data)
            if ret < 0:
                raise _err(ret, path)
            return ret
        if parts[3] in _TEXT_PID_FILES or parts[3] == "pagemap":
            raise _err(-errno.EINVAL, path)          # no ->write: vfs_write() says EINVAL
    raise _enoent(path)


def drop_caches_sysctl_handler(k, data: str) -> int:
    """drop_caches_sysctl_handler() (fs/drop_caches.c): bit 1 drops clean, unmapped
    page-cache folios; bit 2 (slab) has nothing to drop in vmsim; 1..4 only."""
    from vmsim.mm.truncate import _drop_pagecache
    s = data.strip()
    try:
        val = int(s, 0)
    except ValueError:
        raise _err(-errno.EINVAL, "/proc/sys/vm/drop_caches")
    if not 1 <= val <= 4:
        raise _err(-errno.EINVAL, "/proc/sys/vm/drop_caches")
    if val & 1:
        _drop_pagecache(k)
    if val & 2:
        from vmsim.mm import vmstat as V
        k.vmstat[V.DROP_SLAB] += 1
    return len(data)


def _vfs_read(machine, path: str, offset: int, size: int):
    """A regular file read as root does (open, pread, close), as bytes."""
    from vmsim.fs.namei import path_lookupat
    from vmsim.fs.file import file
    from vmsim.fs.inode import S_ISDIR, iput
    from vmsim.fs.open import vfs_read
    k = machine.k
    r = path_lookupat(k, path)
    if isinstance(r, int):
        raise _err(r, path)
    ino = r[2]
    if ino is None:
        raise _enoent(path)
    if S_ISDIR(ino.i_mode):
        raise _err(-errno.EISDIR, path)
    f = file(ino, path, 0)
    try:
        n = ino.i_size - offset if size is None or size < 0 else size
        return vfs_read(k, f, max(n, 0), offset)
    finally:
        iput(k, ino)


def _vfs_write(machine, path: str, data) -> int:
    """Write (create or truncate) a regular file as root does."""
    from vmsim.fs.open import do_sys_open, ksys_pwrite64
    from vmsim.fs.file import close_fd
    k = machine.k
    task = k.current
    if task is None or task.mm is None:
        live = [t for t in k.tasks.values() if t.mm is not None]
        if not live:
            raise OSError(errno.ESRCH, "no live process to write the file from", path)
        task = live[0]
    if isinstance(data, str):
        data = data.encode()
    fd = do_sys_open(k, task, path, 0o1101, 0o644)      # O_WRONLY | O_CREAT | O_TRUNC
    if fd < 0:
        raise _err(fd, path)
    n = ksys_pwrite64(k, task, fd, bytes(data), None, True)
    close_fd(k, task, fd)
    if n < 0:
        raise _err(n, path)
    return n


# CONFIG_DEBUG_FS's knob of mm/memory.c (debugfs mounted at /sys/kernel/debug). The
# reference machine has no debugfs mounted, so its value there could not be observed.
FAULT_AROUND_BYTES = "/sys/kernel/debug/fault_around_bytes"


def fault_around_bytes_set(k, data: str) -> int:
    """fault_around_bytes_set(): at most PTRS_PER_PTE pages, rounded down to a power of
    two, at least one page (which turns fault-around off: should_fault_around)."""
    try:
        val = int(data.strip(), 0)
    except ValueError:
        raise _err(-errno.EINVAL, FAULT_AROUND_BYTES)
    if val < 0 or val // 4096 > 512:
        raise _err(-errno.EINVAL, FAULT_AROUND_BYTES)
    val = max(val, 4096)
    k.fault_around_pages = (1 << (val.bit_length() - 1)) >> 12
    return len(data)
