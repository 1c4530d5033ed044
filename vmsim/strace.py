"""The scenario's system calls and signals, printed as strace prints them.

    with vmsim.strace.Strace() as st:
        p = m.spawn()
        p.mmap(0, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    print(st.text())

    execve("/usr/local/bin/vmsim-minimal", ["/usr/local/bin/vmsim-minimal"], NULL) = 0
    mmap(NULL, 65536, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7ffff7fe8000

Collection sits above the model: while a :class:`Strace` is active, the syscall methods
of :class:`vmsim.Process` (and ``Machine.spawn``, shown as the new process's execve)
are wrapped; each call leaves one :class:`Record`. The model never sees it.

A Record is a plain tuple, ready for JSON (``rec._asdict()``):

``pid``
    the calling process.
``kind``
    ``"syscall"``; ``"signal"`` (a fault ended in a signal: the ``--- SIG... ---`` line);
    ``"exit"`` (the process exited: ``+++ exited with N +++``); ``"killed"`` (the
    scenario died of the signal: ``+++ killed by SIG... +++``).
``name``
    the syscall's name as strace shows it (``mmap``, ``mlock2``, ``exit_group``,
    ``wait4``, ...); for the other kinds the signal's name (``SIGSEGV``) or ``""``.
``args``
    the C arguments as passed, in order (ints; the path of execve; the result
    array of mincore, a tuple of ints, and the status of wait4 in place of their
    pointers; ``None`` for a pointer the call did not fill: wait4's while the child
    still runs, printed as NULL). Every field is JSON-ready.
    For a signal: ``(si_code, si_addr)``; for an exit: ``(status,)``.
``ret``
    the return value (an int; ``-1`` on failure; ``None`` where the call does not
    return: exit_group, and for the other kinds).
``errno``
    0, or the errno of a failed call (``ret == -1``).

:func:`format_record` turns one record into strace's line; :func:`format_siginfo`
and :func:`errno_name` are shared with the API's messages. The decoding tables follow
strace 6.1 (xlat/mmap_prot.in, mmap_flags.in, madvise_cmds.in, mremap_flags.in,
mlock_flags.in) and the uapi headers they mirror.
"""
import errno as _errno
import functools
import inspect
import os
from typing import NamedTuple, Optional

from vmsim import uapi as _u

__all__ = ["Record", "Strace", "format_record", "format_siginfo", "errno_name", "text"]

EXE = "/usr/local/bin/vmsim-minimal"
ALIGN = 40              # strace pads "call(...)" to this column before " = ret"


class Record(NamedTuple):
    """One line of the trace (see the module docstring)."""
    pid: int
    kind: str
    name: str
    args: tuple
    ret: Optional[int]
    errno: int


# --- decoding ------------------------------------------------------------------------
SIGNALS = {_u.SIGBUS: "SIGBUS", _u.SIGKILL: "SIGKILL", _u.SIGSEGV: "SIGSEGV"}
SIGNAL_NUMBERS = {v: k for k, v in SIGNALS.items()}
SI_CODES = {
    _u.SIGSEGV: {_u.SEGV_MAPERR: "SEGV_MAPERR", _u.SEGV_ACCERR: "SEGV_ACCERR",
                 3: "SEGV_BNDERR", _u.SEGV_PKUERR: "SEGV_PKUERR"},
    _u.SIGBUS: {_u.BUS_ADRALN: "BUS_ADRALN", _u.BUS_ADRERR: "BUS_ADRERR",
                _u.BUS_OBJERR: "BUS_OBJERR", _u.BUS_MCEERR_AR: "BUS_MCEERR_AR",
                5: "BUS_MCEERR_AO"},
}
_SI_GENERIC = {_u.SI_KERNEL: "SI_KERNEL", 0: "SI_USER"}

PROT = [(0x1, "PROT_READ"), (0x2, "PROT_WRITE"), (0x4, "PROT_EXEC"), (0x8, "PROT_SEM"),
        (0x01000000, "PROT_GROWSDOWN"), (0x02000000, "PROT_GROWSUP")]
MAP_TYPES = {0x01: "MAP_SHARED", 0x02: "MAP_PRIVATE", 0x03: "MAP_SHARED_VALIDATE",
             0x08: "MAP_DROPPABLE"}
MAP_FLAGS = [(0x10, "MAP_FIXED"), (0x20, "MAP_ANONYMOUS"), (0x40, "MAP_32BIT"),
             (0x80, "MAP_ABOVE4G"), (0x100, "MAP_GROWSDOWN"), (0x800, "MAP_DENYWRITE"),
             (0x1000, "MAP_EXECUTABLE"), (0x2000, "MAP_LOCKED"), (0x4000, "MAP_NORESERVE"),
             (0x8000, "MAP_POPULATE"), (0x10000, "MAP_NONBLOCK"), (0x20000, "MAP_STACK"),
             (0x40000, "MAP_HUGETLB"), (0x80000, "MAP_SYNC"), (0x100000, "MAP_FIXED_NOREPLACE"),
             (0x4000000, "MAP_UNINITIALIZED")]
MAP_HUGE_SHIFT, MAP_HUGE_MASK = 26, 0x3F
MADVISE = {v: n for n, v in vars(_u).items() if n.startswith("MADV_")}
MREMAP = [(_u.MREMAP_MAYMOVE, "MREMAP_MAYMOVE"), (_u.MREMAP_FIXED, "MREMAP_FIXED"),
          (_u.MREMAP_DONTUNMAP, "MREMAP_DONTUNMAP")]
MLOCK = [(_u.MLOCK_ONFAULT, "MLOCK_ONFAULT")]
_ULONG = (1 << 64) - 1


def errno_name(e: int) -> str:
    """Return "ENOMEM (Cannot allocate memory)" for 12."""
    return f"{_errno.errorcode.get(e, str(e))} ({os.strerror(e)})"


def signal_name(signo) -> str:
    return SIGNALS.get(signo, str(signo))


def format_siginfo(signo: int, si_code: int, si_addr: int) -> str:
    """Return "SIGSEGV {si_signo=SIGSEGV, si_code=SEGV_ACCERR, si_addr=0x...}"."""
    code = SI_CODES.get(signo, {}).get(si_code) or _SI_GENERIC.get(si_code, str(si_code))
    name = signal_name(signo)
    return f"{name} {{si_signo={name}, si_code={code}, si_addr={_ptr(si_addr)}}}"


def _ptr(v) -> str:
    return "NULL" if not v else f"{v & _ULONG:#x}"


def _ulong(v) -> str:
    return str(v & _ULONG)


def _int(v) -> str:
    v &= 0xFFFFFFFF
    return str(v - (1 << 32) if v >= 1 << 31 else v)


def _flags(v: int, table, unknown: str, zero: str = "0") -> str:
    v &= 0xFFFFFFFF
    names = []
    for bit, name in table:
        if v & bit:
            names.append(name)
            v &= ~bit
    if v:
        names.append(f"{v:#x}" + ("" if names else f" /* {unknown} */"))
    return "|".join(names) if names else zero


def decode_prot(prot: int) -> str:
    return _flags(prot, PROT, "PROT_???", "PROT_NONE")


def decode_map_flags(flags: int) -> str:
    flags &= 0xFFFFFFFF
    t = flags & 0x0F
    names = [MAP_TYPES.get(t, f"{t:#x} /* MAP_??? */") if t else "MAP_FILE"]
    rest = flags & ~0x0F & ~(MAP_HUGE_MASK << MAP_HUGE_SHIFT)
    if rest:
        names.append(_flags(rest, MAP_FLAGS, "MAP_???"))
    huge = (flags >> MAP_HUGE_SHIFT) & MAP_HUGE_MASK
    if huge:
        names.append(f"{huge}<<MAP_HUGE_SHIFT")
    return "|".join(names)


def decode_madvise(advice: int) -> str:
    return MADVISE.get(advice) or f"{advice & 0xFFFFFFFF:#x} /* MADV_??? */"


def _wait_status(status) -> str:
    """``status``: the exit code, or -signo for a child killed by a signal (as
    os.waitstatus_to_exitcode gives it)."""
    if status is None:
        return "NULL"
    if status < 0:
        return f"[{{WIFSIGNALED(s) && WTERMSIG(s) == {signal_name(-status)}}}]"
    return f"[{{WIFEXITED(s) && WEXITSTATUS(s) == {status & 0xFF}}}]"


def _mincore_vec(vec) -> str:
    if vec is None:
        return "NULL"
    cells = [str(b & 1) for b in vec[:32]]
    return "[" + ", ".join(cells) + (", ..." if len(vec) > 32 else "") + "]"


def format_args(name: str, args: tuple) -> str:
    """Return the argument list of one syscall, decoded as strace does."""
    a = args
    if name == "mmap":
        off = f"{a[5] & _ULONG:#x}" if a[5] else "0"
        return (f"{_ptr(a[0])}, {_ulong(a[1])}, {decode_prot(a[2])}, {decode_map_flags(a[3])}, "
                f"{_int(a[4])}, {off}")
    if name in ("munmap", "mlock", "munlock"):
        return f"{_ptr(a[0])}, {_ulong(a[1])}"
    if name == "mprotect":
        return f"{_ptr(a[0])}, {_ulong(a[1])}, {decode_prot(a[2])}"
    if name == "madvise":
        return f"{_ptr(a[0])}, {_ulong(a[1])}, {decode_madvise(a[2])}"
    if name == "mlock2":
        return f"{_ptr(a[0])}, {_ulong(a[1])}, {_flags(a[2], MLOCK, 'MLOCK_???')}"
    if name == "mremap":
        s = f"{_ptr(a[0])}, {_ulong(a[1])}, {_ulong(a[2])}, {_flags(a[3], MREMAP, 'MREMAP_???')}"
        return s + f", {_ptr(a[4])}" if a[3] & _u.MREMAP_FIXED else s
    if name == "mincore":
        return f"{_ptr(a[0])}, {_ulong(a[1])}, {_mincore_vec(a[2])}"
    if name == "brk":
        return _ptr(a[0])
    if name == "wait4":
        return f"{a[0]}, {_wait_status(a[1])}, {'WNOHANG' if a[2] else '0'}, NULL"
    if name == "exit_group":
        return _int(a[0])
    if name == "execve":
        return f'"{a[0]}", ["{a[0]}"], NULL'
    if name == "getrusage":
        return f"RUSAGE_SELF, {{..., ru_maxrss={a[1]}, ru_minflt={a[2]}, ru_majflt={a[3]}, ...}}"
    return ", ".join(hex(x) if isinstance(x, int) and x > 4096 else repr(x) for x in a)


def _ret(name: str, ret) -> str:
    if ret is None:
        return "?"
    if name in ("mmap", "mremap", "brk"):
        return f"{ret & _ULONG:#x}"
    return str(ret)


def format_record(rec: Record, column: int = 0) -> str:
    """Return strace's line for a record (without the ``[pid N]`` prefix); a syscall's
    " = ret" starts at ``column`` when the call is shorter."""
    if rec.kind == "signal":
        signo = SIGNAL_NUMBERS.get(rec.name, 0)
        return f"--- {format_siginfo(signo, rec.args[0], rec.args[1])} ---"
    if rec.kind == "exit":
        return f"+++ exited with {rec.args[0] & 0xFF} +++"
    if rec.kind == "killed":
        return f"+++ killed by {rec.name} +++"
    call = f"{rec.name}({format_args(rec.name, rec.args)})"
    ret = f"-1 {errno_name(rec.errno)}" if rec.errno else _ret(rec.name, rec.ret)
    return f"{call.ljust(column - 1)} = {ret}"



def text(records, limit_note=None) -> str:
    """Return the records as strace -f prints them to a terminal: a ``[pid N]`` prefix
    while more than one process is alive, " = ret" aligned at column 40."""
    alive = set()
    lines = []
    for rec in records:
        if rec.kind == "syscall" and rec.name == "execve" and rec.errno == 0:
            alive.add(rec.pid)
        prefix = f"[pid {rec.pid:5d}] " if len(alive) > 1 else ""
        lines.append(prefix + format_record(rec, ALIGN - len(prefix)))
        if rec.kind == "syscall" and rec.name == "fork" and not rec.errno:
            alive.add(rec.ret)
        if rec.kind in ("exit", "killed"):
            alive.discard(rec.pid)
    if limit_note:
        lines.append(limit_note)
    return "\n".join(lines) + ("\n" if lines else "")


# --- collection ------------------------------------------------------------------------
# Process method -> (the syscall's name, or a function of the arguments giving it;
# the C arguments from the method's arguments ``v``, in order; the return value from
# the method's result ``r``). Arguments are taken by position, as the C call has them.
def _mlock_name(v):
    return "mlock2" if v[2] else "mlock"


_SYSCALLS = {
    "mmap": ("mmap", lambda v: tuple(v[:6]), lambda r, v: r),
    "munmap": ("munmap", lambda v: tuple(v[:2]), lambda r, v: 0),
    "mprotect": ("mprotect", lambda v: tuple(v[:3]), lambda r, v: 0),
    "madvise": ("madvise", lambda v: tuple(v[:3]), lambda r, v: 0),
    "mremap": ("mremap", lambda v: tuple(v[:5]), lambda r, v: r),
    "mlock": (_mlock_name, lambda v: tuple(v[:3]) if v[2] else tuple(v[:2]), lambda r, v: 0),
    "munlock": ("munlock", lambda v: tuple(v[:2]), lambda r, v: 0),
    "mincore": ("mincore", lambda v: (v[0], v[1], None), lambda r, v: 0),
    "brk": ("brk", lambda v: (v[0],), lambda r, v: r),
    "fork": ("fork", lambda v: (), lambda r, v: r.pid),
    "exit": ("exit_group", lambda v: (v[0],), lambda r, v: None),
    "wait": ("wait4", lambda v: (v[0], None, bool(v[1])), lambda r, v: 0 if r is None else v[0]),
    "waitpid": ("wait4", lambda v: (v[0], None, bool(v[1])), lambda r, v: r[0]),
    "execve": ("execve", lambda v: (v[0] or EXE,), lambda r, v: 0),
}
_ACCESSES = ("read", "write", "fetch", "touch")


class Strace:
    """Collects the Records of every Process while active (a context manager).

    ``max_records``: stop collecting after that many (the text then says so).
    ``pid``: only that process's records. ``on_record(rec, process)``: called for
    each record kept (``vmsim trace`` puts them into the function graph)."""

    def __init__(self, max_records=10000, pid=None, on_record=None):
        self.records = []
        self.max_records = max_records
        self.pid = pid
        self.on_record = on_record
        self.truncated = False
        self._saved = {}
        self._depth = 0
        self._dead = set()        # pids whose +++ line is out

    # --- keeping records --------------------------------------------------------
    def add(self, rec: Record, process=None):
        if self.pid is not None and rec.pid != self.pid:
            return
        if len(self.records) >= self.max_records:
            self.truncated = True
            return
        self.records.append(rec)
        if self.on_record is not None:
            self.on_record(rec, process)

    def signal(self, process, exc):
        self.add(Record(process.pid, "signal", signal_name(exc.signo), (exc.si_code, exc.si_addr),
                        None, 0), process)

    def killed(self, pid, signo):
        """The process died of this signal: the ``+++ killed by ... +++`` line (once)."""
        if pid in self._dead:
            return
        self._dead.add(pid)
        self.add(Record(pid, "killed", signal_name(signo), (), None, 0))

    def _reap(self, machine):
        """A process another one's call killed (the OOM killer's victim) gets its
        ``+++ killed by SIGKILL +++`` line after that call, as strace -f shows it."""
        for pid, p in machine.processes.items():
            code = p.task.exit_code
            if code is not None and code & 0x7F and pid not in self._dead:
                self.killed(pid, code & 0x7F)

    def _signalled(self, proc, exc):
        # SIGKILL cannot be caught or shown on delivery: strace only sees the death.
        if exc.signo == _u.SIGKILL:
            self.killed(proc.pid, exc.signo)
        else:
            self.signal(proc, exc)

    # --- wrapping the API -------------------------------------------------------
    def _wrap_syscall(self, meth, orig):
        from vmsim.api import SignalDelivered
        sig = inspect.signature(orig)
        name, mkargs, mkret = _SYSCALLS[meth]
        tracer = self

        @functools.wraps(orig)
        def wrapper(proc, *a, **kw):
            if tracer._depth:
                return orig(proc, *a, **kw)
            b = sig.bind(proc, *a, **kw)
            b.apply_defaults()
            v = list(b.arguments.values())[1:]
            sysname = name(v) if callable(name) else name
            args = mkargs(v)
            tracer._depth += 1
            try:
                r = orig(proc, *a, **kw)
            except OSError as e:
                if e.errno is not None:
                    tracer.add(Record(proc.pid, "syscall", sysname, args, -1, e.errno), proc)
                raise
            except SignalDelivered as e:       # killed during the call (OOM): "= ?"
                tracer.add(Record(proc.pid, "syscall", sysname, args, None, 0), proc)
                tracer._signalled(proc, e)
                tracer._reap(proc.machine)
                raise
            finally:
                tracer._depth -= 1
            if sysname == "mincore":
                args = args[:2] + (tuple(r),)
            elif meth == "wait" and r is not None:
                args = (args[0], r) + args[2:]
            elif meth == "waitpid" and r[0]:
                args = (args[0], os.waitstatus_to_exitcode(r[1])) + args[2:]
            tracer.add(Record(proc.pid, "syscall", sysname, args, mkret(r, v), 0), proc)
            if sysname == "exit_group":
                tracer._dead.add(proc.pid)
                tracer.add(Record(proc.pid, "exit", "", (args[0],), None, 0), proc)
            tracer._reap(proc.machine)
            return r
        return wrapper

    def _wrap_access(self, orig):
        from vmsim.api import SignalDelivered
        tracer = self

        @functools.wraps(orig)
        def wrapper(proc, *a, **kw):
            try:
                r = orig(proc, *a, **kw)
            except SignalDelivered as e:
                if not tracer._depth:
                    tracer._signalled(proc, e)
                    tracer._reap(proc.machine)
                raise
            if not tracer._depth:
                tracer._reap(proc.machine)
            return r
        return wrapper

    def _wrap_spawn(self, orig):
        tracer = self

        @functools.wraps(orig)
        def wrapper(machine, *a, **kw):
            tracer._depth += 1
            try:
                p = orig(machine, *a, **kw)
            finally:
                tracer._depth -= 1
            if not tracer._depth:
                tracer.add(Record(p.pid, "syscall", "execve", (EXE,), 0, 0), p)
            return p
        return wrapper

    def start(self):
        from vmsim.api import Machine, Process
        if self._saved:
            return self
        for meth in _SYSCALLS:
            orig = Process.__dict__[meth]
            self._saved[(Process, meth)] = orig
            setattr(Process, meth, self._wrap_syscall(meth, orig))
        for meth in _ACCESSES:
            orig = Process.__dict__[meth]
            self._saved[(Process, meth)] = orig
            setattr(Process, meth, self._wrap_access(orig))
        self._saved[(Machine, "spawn")] = Machine.__dict__["spawn"]
        Machine.spawn = self._wrap_spawn(Machine.__dict__["spawn"])
        return self

    def stop(self):
        for (cls, meth), orig in self._saved.items():
            setattr(cls, meth, orig)
        self._saved.clear()
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def text(self) -> str:
        note = (f"# strace: output limit of {self.max_records} lines reached; later calls "
                f"are not shown" if self.truncated else None)
        return text(self.records, note)
