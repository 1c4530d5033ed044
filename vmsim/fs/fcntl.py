"""fcntl(2) (fs/fcntl.c do_fcntl): the commands vmsim models: F_GETFD / F_SETFD (the
close-on-exec flag) and the memfd seals F_ADD_SEALS / F_GET_SEALS (memfd_fcntl). Any
other command Linux knows raises NotImplementedError; an unknown one is EINVAL.
"""
import errno

from vmsim.fs.file import fget

F_GETFD = 1
F_SETFD = 2
FD_CLOEXEC = 1


def do_fcntl(k, task, fd: int, cmd: int, arg: int) -> int:
    """do_fcntl(): EBADF for a bad descriptor, then the command."""
    from vmsim.mm.memfd import memfd_fcntl, F_ADD_SEALS, F_GET_SEALS
    f = fget(k, task, fd)
    if f is None:
        return -errno.EBADF
    fs = k.task_files[task.pid]
    if cmd == F_GETFD:
        return FD_CLOEXEC if fd in fs.close_on_exec else 0
    if cmd == F_SETFD:
        if arg & FD_CLOEXEC:
            fs.close_on_exec.add(fd)
        else:
            fs.close_on_exec.discard(fd)
        return 0
    if cmd in (F_ADD_SEALS, F_GET_SEALS):
        return memfd_fcntl(k, f, cmd, arg)
    if 0 <= cmd <= 16 or 1024 <= cmd <= 1038:
        raise NotImplementedError(f"fcntl command {cmd} is not modelled")
    return -errno.EINVAL
