"""The Python API: a Machine running processes, with Linux's names and errors.

A user writes scenarios the way they write the C program: ``p.mmap(...)``,
``p.write(...)``, ``p.madvise(...)``. Syscalls return what Linux returns or raise
OSError with Linux's errno; an access Linux answers with a signal raises
SignalDelivered, after which the process stays usable (as if a handler caught it).
This layer reads the model; the model never imports it.
"""
import errno
import functools
import operator
import os
import re
from typing import NamedTuple

from vmsim.arch.x86 import cpu as _cpu
from vmsim.arch.x86.mm.pkeys import pkru_get_init_value
from vmsim.kernel.machine import Kernel
from vmsim.kernel.sched import task_struct
from vmsim.mm import mmap as _mmap
from vmsim.strace import format_siginfo

ENOSYS = errno.ENOSYS


class SignalDelivered(Exception):
    """An access ended in a signal: signo, si_code, si_addr, and how far it got
    (``si_pkey``: the protection key of a SEGV_PKUERR, else None).

    str() reads as strace prints the siginfo: ``SIGSEGV {si_signo=SIGSEGV,
    si_code=SEGV_ACCERR, si_addr=0x7ffff7ff5000} (after 0 bytes)``."""

    def __init__(self, signo, si_code, si_addr, offset=0, error_code=0, si_pkey=None):
        self.signo = signo
        self.si_code = si_code
        self.si_addr = si_addr
        self.offset = offset
        self.error_code = error_code
        self.si_pkey = si_pkey
        super().__init__(f"{format_siginfo(signo, si_code, si_addr)} (after {offset} bytes)")


class rusage(NamedTuple):
    """The fields of struct rusage vmsim models (resource.getrusage names)."""
    ru_minflt: int
    ru_majflt: int
    ru_maxrss: int


def parse_size(s) -> int:
    """Return bytes for 4096, "4G", "512M", "64k"."""
    if isinstance(s, int):
        return s
    m = re.fullmatch(r"\s*(\d+)\s*([kKmMgGtT]?)i?[bB]?\s*", str(s))
    if not m:
        raise ValueError(f"bad size {s!r}: use bytes or a suffix k, M, G, T")
    return int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}[m.group(2).lower()]


_U64 = (1 << 64) - 1


def _integer(name, v) -> int:
    """The Python integer behind an argument; anything a C caller could not pass
    (None, float, str) is a TypeError naming the argument."""
    try:
        return operator.index(v)
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {type(v).__name__}") from None


def _ulong(name, v) -> int:
    """An ``unsigned long`` / ``size_t`` argument as the kernel receives it: a C caller's
    value reduced modulo 2**64 (-4096 is 0xfffffffffffff000)."""
    if v.__class__ is int:                   # the common case, without operator.index
        return v & _U64
    return _integer(name, v) & _U64


def _loff(name, v) -> int:
    """An ``off_t`` / ``loff_t`` argument: 64-bit signed."""
    v = (v if v.__class__ is int else _integer(name, v)) & _U64
    return v - (1 << 64) if v >> 63 else v


def _cint(name, v) -> int:
    """An ``int`` argument (prot, flags, advice): the low 32 bits, signed, as the C
    compiler converts it; the syscall entry sees it sign-extended (a Python int with
    the same value behaves so under & and >>)."""
    v = (v if v.__class__ is int else _integer(name, v)) & 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def _count(name, v) -> int:
    """A byte count or stride of vmsim's own access helpers: a non-negative integer."""
    v = _integer(name, v)
    if v < 0:
        raise ValueError(f"{name} must not be negative, got {v}")
    return v


def _cpu_arg(k, cpu) -> int:
    """A CPU number for spawn/fork: one of the machine's CPUs."""
    cpu = _integer("cpu", cpu)
    if not 0 <= cpu < k.ncpus:
        raise ValueError(f"cpu must be in [0, {k.ncpus}), got {cpu}")
    return cpu


@functools.lru_cache(maxsize=1)
def host_has_pku() -> bool:
    """Does this host's CPU run with protection keys (flags pku and ospke)?"""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return "pku" in flags and "ospke" in flags
    except OSError:
        pass
    return False


def _check(ret):
    """Raise OSError for -errno; strerror reads "ENOMEM (Cannot allocate memory)", as
    strace shows a failed call."""
    if isinstance(ret, int) and -4096 < ret < 0:
        raise OSError(-ret, f"{errno.errorcode.get(-ret, -ret)} ({os.strerror(-ret)})")
    return ret


class Machine:
    """A simulated x86-64 machine running Linux (the 6.18 profile by default)."""

    def __init__(self, memory="4G", cpus=1, paging_levels=4, kernel="6.18", debug_vm=None,
                 aslr_seed=None, pku=None, disk_latency_ns=0, tlb=None, pcid=True, pti=False):
        """``aslr_seed``: None lays processes out with ASLR off (as the measured reference,
        setarch -R); an int turns on seeded randomisation (randomize_va_space=2).
        ``pku``: the CPU has protection keys (X86_FEATURE_OSPKE); None takes the host's
        /proc/cpuinfo flag, so PROT_EXEC-only mappings behave as on this machine.
        ``tlb``: the CPUs' TLBs: None (not modelled: every access walks the tables), a
        preset ("golden-cove", "skylake", "zen3", "zen4"), "host" (this machine's CPUID)
        or a dict of structures (vmsim.arch.x86.tlb.custom_geometry); None takes
        $VMSIM_TLB if set. ``pcid``: the CPU
        has PCID (X86_FEATURE_PCID, INVPCID with it); ``pti``: page table isolation on.
        With the debug checker on, every TLB hit is checked against the tables."""
        if pku is None:
            pku = host_has_pku()
        if tlb is None:
            tlb = os.environ.get("VMSIM_TLB") or None     # run a whole suite with TLBs on
        self.k = Kernel(parse_size(memory), cpus, paging_levels, kernel, pku=pku, tlb=tlb,
                        pcid=pcid, pti=pti)
        # The disk behind / and /tmp (vmsim.fs.blockdev): virtual time per request.
        self.k.disk_latency_ns = int(_count("disk_latency_ns", disk_latency_ns))
        if debug_vm is None:
            debug_vm = os.environ.get("VMSIM_DEBUG_VM", "") not in ("", "0")
        self.debug_vm = debug_vm
        self.k.tlb_check = bool(debug_vm)
        self.processes = {}
        self.aslr_seed = aslr_seed
        self._last_cpu = -1

    # --- processes ---------------------------------------------------------------
    def spawn(self, cpu=None) -> "Process":
        """A new process, as right after execve of a minimal static program."""
        from vmsim.kernel.fork import mm_alloc
        from vmsim.kernel.exec import _setup_new_exec_layout
        k = self.k
        if cpu is None:
            self._last_cpu = (self._last_cpu + 1) % k.ncpus
            cpu = self._last_cpu
        cpu = _cpu_arg(k, cpu)
        pid = k.next_pid
        k.next_pid += 1
        prof = k.profile["rlimits"]
        task = task_struct(pid, None, cpu, {"RLIMIT_STACK": prof["RLIMIT_STACK"],
                                           "RLIMIT_MEMLOCK": prof["RLIMIT_MEMLOCK"]})
        k.tasks[pid] = task
        k.current = task
        mm = mm_alloc(k)
        if mm is None:
            raise MemoryError("out of memory creating the mm")
        task.mm = task.active_mm = mm
        task.pkru = pkru_get_init_value(k)         # as after execve (fpu_flush_thread)
        k.switch_to(task)
        rng = None
        if self.aslr_seed is not None:
            import random
            rng = random.Random(self.aslr_seed * 1000003 + pid)
        _setup_new_exec_layout(k, mm, task, rng)
        p = Process(self, task)
        # The argv/envp/auxv page at the top of the stack, written by copy_strings.
        p.write(mm.arg_start, b"/usr/local/bin/vmsim-minimal\0")
        task.min_flt = task.maj_flt = 0
        self.processes[pid] = p
        self._after_syscall()
        return p

    # --- CPUs, scheduling and TLBs (vmsim.kernel.sched, arch/x86/mm/tlb.c) -----------
    def schedule(self, process, cpu=None) -> None:
        """Run ``process`` (a Process or thread; None: the idle task) on ``cpu`` now
        (default: its own): a context switch there (switch_mm_irqs_off; the idle task
        keeps the previous mm in lazy TLB mode). A task moved off a CPU leaves that CPU
        idle (lazy)."""
        from vmsim.kernel.sched import _context_switch
        k = self.k
        if process is None:
            cpu = _cpu_arg(k, 0 if cpu is None else cpu)
            _context_switch(k, cpu, None)
            return
        t = process.task
        if t.mm is None:
            raise ProcessLookupError(errno.ESRCH, f"process {process.pid} has exited")
        cpu = t.cpu if cpu is None else _cpu_arg(k, cpu)
        if cpu != t.cpu and k.cpus[t.cpu].curr is t:
            _context_switch(k, t.cpu, None)
        t.cpu = cpu
        prev = k.current
        k.current = t
        _context_switch(k, cpu, t)
        k.current = prev

    def run(self, work, time_slice=1) -> int:
        """A round-robin scheduler (SCHED_RR's rotation, kernel/sched/rt.c): ``work`` maps
        each Process or thread to an iterable of operations (callables taking no
        argument, each run as that task). Each CPU runs the tasks placed on it in turn,
        ``time_slice`` operations at a time (vmsim has no cycle clock, so a slice is
        counted in operations), with a context switch between tasks; the CPUs take turns
        a slice at a time. A CPU whose tasks are all done goes idle (lazy TLB). Returns
        the number of context switches made."""
        k = self.k
        if isinstance(time_slice, bool) or not isinstance(time_slice, int) or time_slice < 1:
            raise ValueError(f"time_slice must be a positive number of operations, not {time_slice!r}")
        queues = {}
        for proc, ops in dict(work).items():
            if not isinstance(proc, Process):
                raise TypeError(f"run(): {proc!r} is not a Process")
            if proc.task.mm is None:
                raise ProcessLookupError(errno.ESRCH, f"process {proc.pid} has exited")
            ops = iter(ops)
            first = next(ops, None)
            if first is not None:
                queues.setdefault(proc.task.cpu, []).append([proc, ops, first])
        switches = 0
        while queues:
            for cpu in sorted(queues):
                q = queues[cpu]
                ent = q[0]
                proc = ent[0]
                if k.cpus[cpu].curr is not proc.task:
                    self.schedule(proc, cpu)
                    switches += 1
                for _ in range(time_slice):
                    ent[2]()
                    ent[2] = next(ent[1], None)
                    if ent[2] is None or proc.task.mm is None:
                        q.pop(0)                    # done (or exited)
                        break
                else:
                    q.append(q.pop(0))              # the slice is used up: to the back
                if not q:
                    del queues[cpu]
                    self.schedule(None, cpu)
        return switches

    def tlb_stats(self) -> list:
        """Per CPU: TLB hits per structure and page size, misses, walks, paging-structure
        cache hits, re-walks, walks completed per page size, flushes by kind, IPIs sent /
        received, ASID switches (vmsim.arch.x86.tlb and arch/x86/mm/tlb.c counters)."""
        from vmsim.arch.x86 import tlb as T
        k = self.k
        out = []
        for c in k.cpus:
            ts = c.tlbstate
            d = {"cpu": c.id, "loaded_mm_asid": ts.loaded_mm_asid, "is_lazy": ts.is_lazy,
                 **ts.events}
            if k.tlb is not None:
                st = k.tlb.stats[c.id].tolist()
                hits = {}
                for s in range(T.S_PML4E):
                    for sc in range(3):
                        v = st[T.ST_HIT + 3 * s + sc]
                        if v:
                            hits[f"{T.STRUCT_NAMES[s]} {T.SIZE_NAMES[sc]}"] = v
                d.update(hits=hits, l1_misses=st[T.ST_L1_MISS], misses=st[T.ST_MISS],
                         walks=st[T.ST_WALK], walk_reads=st[T.ST_WALK_READS],
                         psc_hits={"PML4E": st[T.ST_PSC_HIT], "PDPTE": st[T.ST_PSC_HIT + 1],
                                   "PDE": st[T.ST_PSC_HIT + 2]},
                         dirty_rewalks=st[T.ST_DIRTY_REWALK], perm_rewalks=st[T.ST_PERM_REWALK],
                         walk_faults=st[T.ST_FAULT],
                         walks_completed={n: st[T.ST_WALK_DONE + i] for i, n in enumerate(T.SIZE_NAMES)})
            out.append(d)
        return out

    def tlb_geometry(self):
        """The CPUs' TLB geometry as data (None when TLBs are not modelled)."""
        k = self.k
        if k.tlb is None:
            return None
        return dict(k.tlb.geometry.describe(), pcid=k.pcid, pti=k.pti)

    # --- MMU notifiers (mm/mmu_notifier.c), as KVM or a device driver uses them ------
    def register_mmu_notifier(self, process, callback, on_end=None):
        """mmu_notifier_register() on the process's mm: ``callback(event, start, end)`` for
        each invalidate_range_start, with the kernel's event name (MMU_NOTIFY_UNMAP for
        munmap, MMU_NOTIFY_CLEAR for MADV_DONTNEED / MADV_FREE / a COW copy,
        MMU_NOTIFY_PROTECTION_VMA for mprotect, MMU_NOTIFY_PROTECTION_PAGE for fork's
        write-protection), and MMU_NOTIFY_RELEASE over [0, ULONG_MAX) when the mm goes
        (exit, exec). ``on_end`` gets invalidate_range_end the same way. Returns a
        handle for unregister_mmu_notifier."""
        from vmsim.mm.mmu_notifier import mmu_notifier_register
        if process.task.mm is None:
            raise ProcessLookupError(errno.ESRCH, f"process {process.pid} has exited")
        return mmu_notifier_register(process.task.mm, callback, on_end)

    def unregister_mmu_notifier(self, process, handle):
        """mmu_notifier_unregister()."""
        from vmsim.mm.mmu_notifier import mmu_notifier_unregister
        if process.task.mm is not None:
            mmu_notifier_unregister(process.task.mm, handle)

    # --- files under /proc and /sys ----------------------------------------------
    def read_file(self, path: str, offset: int = 0, size: int = -1):
        """Read a /proc or /sys file: str for text files, bytes for binary ones."""
        from vmsim.fs import procfs
        return procfs.read(self, path, offset, size)

    def write_file(self, path: str, data: str):
        """Write a sysfs or sysctl knob by its real path."""
        from vmsim.fs import procfs
        return procfs.write(self, path, data)

    def sleep(self, seconds: float):
        """Let ``seconds`` of virtual time pass: kernel threads that fall due run
        (khugepaged's passes, every scan_sleep_millisecs)."""
        from vmsim.mm.khugepaged import khugepaged_run_until
        from vmsim.mm.huge_memory import _thp
        khugepaged_run_until(self.k, _thp(self.k).clock_ns + int(seconds * 1e9))
        self._after_syscall()

    def _after_syscall(self):
        if self.debug_vm:
            from vmsim.mm.debug_vm import after_syscall
            after_syscall(self)

    def trace(self, faults_only=True, max_events=5000):
        """A function-graph tracer of this machine's page faults (vmsim.trace), used as
        ``with m.trace() as tr: ...`` then ``print(tr.text())``."""
        from vmsim.trace import function_graph
        return function_graph(self, faults_only, max_events)

    def dmesg(self) -> str:
        """The kernel log, as dmesg prints it (no timestamps: vmsim has no clock)."""
        return "".join(text + "\n" for _, text in self.k.log_buf)

    def check(self):
        """Run the debug checker now (raises AssertionError on a violation)."""
        from vmsim.mm.debug_vm import check_all
        check_all(self.k)

    # --- views (vmsim.views; never called by the model) ----------------------------
    def __repr__(self):
        k = self.k
        free = sum(z.free_pages for z in k.page_alloc.zones) if hasattr(k.page_alloc, "zones") else None
        live = sum(1 for p in self.processes.values() if p.task.mm is not None)
        mem = k.memory_bytes
        size = f"{mem >> 30} GiB" if mem % (1 << 30) == 0 else f"{mem >> 20} MiB"
        return (f"<Machine {size}, {k.ncpus} CPU{'s' if k.ncpus != 1 else ''}, {k.paging_levels}-level paging, Linux "
                f"{k.release}: {live} of {len(self.processes)} processes live"
                + (f", {free * 4} kB free>" if free is not None else ">"))

    def _repr_html_(self):
        from vmsim.views import machine_html
        return machine_html(self)


class Process:
    """A process of a Machine: its syscalls and its user-mode accesses."""

    def __init__(self, machine, task):
        self.machine = machine
        self.task = task
        self.pid = task.pid

    # --- plumbing ---------------------------------------------------------------
    def _enter(self):
        k = self.machine.k
        if k.panicked is not None:
            from vmsim.kernel.printk import KernelPanic
            raise KernelPanic(k.panicked)
        if self.task.mm is None:
            raise ProcessLookupError(errno.ESRCH, f"process {self.pid} has exited")
        k.switch_to(self.task)
        return k

    def _done(self, ret=None):
        if self.task.signals and self.task.signals[0][0] == 9:
            self._signal(0)      # an OOM kill during the call: fatal on return to user
        self.machine._after_syscall()
        return _check(ret) if ret is not None else None

    def _signal(self, offset):
        sig = self.task.signals.pop(0)
        self.task.signals.clear()
        if sig[0] == 9:          # SIGKILL cannot be caught: get_signal -> do_group_exit
            from vmsim.kernel.exit import do_group_exit
            do_group_exit(self.machine.k, self.task, 9)
        self.machine._after_syscall()
        raise SignalDelivered(sig[0], sig[1], sig[2], offset, sig[3],
                              sig[4] if len(sig) > 4 else None)

    @property
    def mm(self):
        return self.task.mm

    # --- views (vmsim.views; never called by the model) ----------------------------
    def __repr__(self):
        from vmsim.views import process_record
        r = process_record(self)
        if r["state"] != "running":
            return f"<Process pid={self.pid} {r['state']} minflt={r['minflt']} majflt={r['majflt']}>"
        return (f"<Process pid={self.pid} running: {r['vmas']} VMAs, RSS {r['rss'] * 4} kB "
                f"(anon {r['rss_anon'] * 4}, file {r['rss_file'] * 4}, shmem {r['rss_shmem'] * 4}), "
                f"{r['pgtables']} page-table pages, minflt={r['minflt']} majflt={r['majflt']}>")

    def _repr_html_(self):
        """The process's maps as a table (Jupyter)."""
        from vmsim.views import maps_html
        return maps_html(self)

    def walk(self, addr):
        """The page-table entries a hardware walk of ``addr`` reads (like crash's vtop):
        a PageWalk with ``levels``, ``phys`` and an HTML table for Jupyter."""
        from vmsim.views import PageWalk
        return PageWalk(self, addr)

    # --- syscalls ---------------------------------------------------------------
    def mmap(self, addr, length, prot, flags, fd=-1, offset=0) -> int:
        """mmap(2): the address of the new mapping. Arguments are taken as C's
        (void *addr, size_t length, int prot, int flags, int fd, off_t offset)."""
        addr, length = _ulong("addr", addr), _ulong("length", length)
        prot, flags, fd = _cint("prot", prot), _cint("flags", flags), _cint("fd", fd)
        offset = _loff("offset", offset)
        task = self.task
        self._enter()
        # arch/x86/kernel/sys_x86_64.c sys_mmap: the offset arrives as unsigned long.
        if offset & 0xFFF:
            return self._done(-errno.EINVAL)
        file = None
        if not flags & _mmap.MAP_ANONYMOUS:
            file = self._file(fd)
        ret = _mmap.ksys_mmap_pgoff(task.mm, addr, length, prot, flags, file,
                                    (offset & _U64) >> 12)
        return self._done(ret)

    def _file(self, fd):
        from vmsim.fs.file import fget
        return fget(self.machine.k, self.task, fd)

    def munmap(self, addr, length) -> None:
        """munmap(2)."""
        from vmsim.mm.vma import do_vmi_munmap
        addr, length = _ulong("addr", addr), _ulong("length", length)
        self._enter()
        self._done(do_vmi_munmap(self.mm, addr, length))

    def mprotect(self, addr, length, prot) -> None:
        """mprotect(2)."""
        from vmsim.mm.mprotect import do_mprotect_pkey
        addr, length, prot = _ulong("addr", addr), _ulong("length", length), _cint("prot", prot)
        self._enter()
        self._done(do_mprotect_pkey(self.mm, addr, length, prot, -1))

    def pkey_mprotect(self, addr, length, prot, pkey) -> None:
        """pkey_mprotect(2): mprotect and tag the range with protection key ``pkey``."""
        from vmsim.mm.mprotect import do_mprotect_pkey
        addr, length, prot = _ulong("addr", addr), _ulong("length", length), _cint("prot", prot)
        pkey = _cint("pkey", pkey)
        self._enter()
        self._done(do_mprotect_pkey(self.mm, addr, length, prot, pkey))

    def pkey_alloc(self, flags=0, access_rights=0) -> int:
        """pkey_alloc(2): a free protection key, its PKRU bits set to ``access_rights``
        (PKEY_DISABLE_ACCESS / PKEY_DISABLE_WRITE) in this task."""
        from vmsim.mm.mprotect import sys_pkey_alloc
        flags, access_rights = _ulong("flags", flags), _ulong("access_rights", access_rights)
        self._enter()
        return self._done(sys_pkey_alloc(self.mm, flags, access_rights))

    def pkey_free(self, pkey) -> None:
        """pkey_free(2)."""
        from vmsim.mm.mprotect import sys_pkey_free
        self._enter()
        self._done(sys_pkey_free(self.mm, _cint("pkey", pkey)))

    @property
    def pkru(self) -> int:
        """The task's PKRU register (what rdpkru / pkey_get read)."""
        return self.task.pkru

    @pkru.setter
    def pkru(self, value) -> None:
        """wrpkru: user space writes PKRU directly (pkey_set)."""
        if not self.machine.k.pku:
            raise SignalDelivered(4, 2, 0)        # #UD: SIGILL ILL_ILLOPN
        self.task.pkru = _integer("pkru", value) & 0xFFFFFFFF

    def madvise(self, addr, length, advice) -> None:
        """madvise(2)."""
        from vmsim.mm.madvise import do_madvise
        addr, length = _ulong("addr", addr), _ulong("length", length)
        advice = _cint("advice", advice)
        self._enter()
        self._done(do_madvise(self.mm, addr, length, advice))

    def prctl(self, option, arg2=0, arg3=0, arg4=0, arg5=0) -> int:
        """prctl(2) as (int option, unsigned long arg2..arg5): PR_SET_THP_DISABLE
        (arg3 PR_THP_DISABLE_EXCEPT_ADVISED) and PR_GET_THP_DISABLE."""
        from vmsim.kernel.sys import sys_prctl
        option = _cint("option", option)
        args = [_ulong(n, v) for n, v in (("arg2", arg2), ("arg3", arg3), ("arg4", arg4),
                                          ("arg5", arg5))]
        k = self._enter()
        return self._done(sys_prctl(k, option, *args))

    def mremap(self, old_addr, old_size, new_size, flags=0, new_addr=0) -> int:
        """mremap(2): the new address."""
        from vmsim.mm.mremap import do_mremap
        old_addr, old_size = _ulong("old_addr", old_addr), _ulong("old_size", old_size)
        new_size, flags = _ulong("new_size", new_size), _cint("flags", flags)
        new_addr = _ulong("new_addr", new_addr)
        self._enter()
        return self._done(do_mremap(self.mm, old_addr, old_size, new_size, flags, new_addr))

    def mlock(self, addr, length, flags=0) -> None:
        """mlock(2) (mlock2 with flags)."""
        from vmsim.mm.mlock import do_mlock
        addr, length, flags = _ulong("addr", addr), _ulong("length", length), _cint("flags", flags)
        self._enter()
        self._done(do_mlock(self.mm, addr, length, flags))

    def munlock(self, addr, length) -> None:
        """munlock(2)."""
        from vmsim.mm.mlock import _do_munlock
        addr, length = _ulong("addr", addr), _ulong("length", length)
        self._enter()
        self._done(_do_munlock(self.mm, addr, length))

    def mincore(self, addr, length) -> bytes:
        """mincore(2): one byte per page."""
        from vmsim.mm.mincore import _do_mincore_syscall
        addr, length = _ulong("addr", addr), _ulong("length", length)
        self._enter()
        ret = _do_mincore_syscall(self.mm, addr, length)
        if isinstance(ret, int):
            return self._done(ret)
        self._done()
        return ret

    def brk(self, addr) -> int:
        """brk(2), the raw syscall: the new break, or the old one on failure."""
        addr = _ulong("addr", addr)
        self._enter()
        return self._done(_mmap.sys_brk(self.mm, addr))

    def getrusage(self) -> rusage:
        """getrusage(RUSAGE_SELF): minor and major fault counts."""
        t = self.task
        mm = t.mm
        maxrss = (mm.hiwater_rss if mm else 0) * 4
        return rusage(t.min_flt, t.maj_flt, maxrss)

    def exit(self, status=0) -> None:
        """exit_group(2) (what libc's exit calls): every thread exits; with the last
        user of the mm gone, exit_mmap gives everything back."""
        from vmsim.kernel.exit import do_group_exit
        status = _cint("status", status)
        k = self._enter()
        do_group_exit(k, self.task, (status & 0xFF) << 8)
        self.machine._after_syscall()

    def exit_thread(self, status=0) -> None:
        """exit(2), the raw syscall: this thread only (the mm lives on while other
        threads use it: mmput drops one mm_users)."""
        from vmsim.kernel.exit import do_exit
        status = _cint("status", status)
        k = self._enter()
        do_exit(k, self.task, (status & 0xFF) << 8)
        self.machine._after_syscall()

    def clone_thread(self, cpu=None) -> "Process":
        """clone(CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | ...):
        a new thread sharing this mm (mm_users + 1), on ``cpu`` (round-robin by default);
        returned as a Process whose pid is the thread's TID."""
        from vmsim.kernel.fork import _clone_thread
        k = self._enter()
        m = self.machine
        if cpu is None:
            m._last_cpu = (m._last_cpu + 1) % k.ncpus
            cpu = m._last_cpu
        cpu = _cpu_arg(k, cpu)
        t = _clone_thread(k, self.task, cpu)
        if isinstance(t, int):
            return self._done(t)
        th = Process(m, t)
        m.processes[t.pid] = th
        self._done()
        return th

    def fork(self, cpu=None) -> "Process":
        """fork(2): the child Process (a new pid on the next CPU, round-robin as spawn).

        The child shares the parent's private pages copy-on-write (copy_page_range);
        its fault counters start at zero, as a new task's do."""
        from vmsim.kernel.fork import kernel_clone
        k = self._enter()
        m = self.machine
        if cpu is None:
            m._last_cpu = (m._last_cpu + 1) % k.ncpus
            cpu = m._last_cpu
        cpu = _cpu_arg(k, cpu)
        pid = kernel_clone(k, self.task, cpu)
        if pid < 0:
            return self._done(pid)
        child = Process(m, k.tasks[pid])
        m.processes[pid] = child
        self._done()
        return child

    def execve(self, path=None) -> None:
        """execve(2) of the minimal static program: a fresh mm with the spawn layout;
        the old mm is dropped (exec_mmap -> mmput). The faults exec itself takes
        (writing argv) are not counted in the task's rusage."""
        from vmsim.kernel.exec import do_execve
        k = self._enter()
        t = self.task
        ret = do_execve(k, t)
        if ret:
            return self._done(ret)
        k.switch_to(t)
        flt = (t.min_flt, t.maj_flt)
        self.write(self.mm.arg_start, b"/usr/local/bin/vmsim-minimal\0")
        t.min_flt, t.maj_flt = flt
        self._done()

    def wait(self, pid, nohang=False):
        """waitpid(2) for a child: its exit status (the value given to exit), or
        -signo if a signal killed it (os.waitstatus_to_exitcode); with ``nohang`` None
        while it still runs. ECHILD for a pid that is not our child; EDEADLK for a
        blocking wait on a running child (it could never exit here)."""
        ret = self.waitpid(pid, nohang)
        return None if ret[0] == 0 else os.waitstatus_to_exitcode(ret[1])

    def waitpid(self, pid, nohang=False):
        """waitpid(2) as os.waitpid returns it: (pid, raw wait status) for os.WIFEXITED /
        os.WIFSIGNALED / os.WTERMSIG, (0, 0) with ``nohang`` while the child runs."""
        from vmsim.kernel.exit import do_wait
        pid = _cint("pid", pid)
        k = self._enter()
        ret = do_wait(k, self.task, pid, nohang)
        if isinstance(ret, int):
            return self._done(ret)
        self._done()
        return (ret[0], ret[1] if ret[1] is not None else 0)

    # --- files (vmsim.fs: ext4 at / and /tmp, tmpfs at /dev/shm) -------------------
    def open(self, path, flags, mode=0o644) -> int:
        """open(2): the new descriptor."""
        from vmsim.fs.open import do_sys_open
        if not isinstance(path, str):
            raise TypeError("path must be a str")
        flags, mode = _cint("flags", flags), _cint("mode", mode)
        k = self._enter()
        return self._done(do_sys_open(k, self.task, path, flags, mode))

    def memfd_create(self, name, flags=0) -> int:
        """memfd_create(2): a descriptor of an anonymous shmem file, or of a hugetlbfs
        one with MFD_HUGETLB (MFD_HUGE_2MB / MFD_HUGE_1GB)."""
        from vmsim.mm.memfd import sys_memfd_create
        if not isinstance(name, (str, bytes)):
            raise TypeError("name must be a str or bytes")
        flags = _cint("flags", flags)
        k = self._enter()
        return self._done(sys_memfd_create(k, self.task, name, flags))

    def fcntl(self, fd, cmd, arg=0) -> int:
        """fcntl(2): F_GETFD / F_SETFD (FD_CLOEXEC), F_ADD_SEALS / F_GET_SEALS."""
        from vmsim.fs.fcntl import do_fcntl
        fd, cmd, arg = _cint("fd", fd), _cint("cmd", cmd), _ulong("arg", arg)
        k = self._enter()
        return self._done(do_fcntl(k, self.task, fd, cmd, arg))

    def fstat(self, fd):
        """fstat(2): (st_mode, st_ino, st_dev, st_nlink, st_size, st_blocks)."""
        from vmsim.fs.stat import vfs_fstat
        fd = _cint("fd", fd)
        k = self._enter()
        r = vfs_fstat(k, self.task, fd)
        if isinstance(r, int):
            return self._done(r)
        self._done()
        return r

    # --- System V shared memory (vmsim.ipc.shm) ------------------------------------
    def shmget(self, key, size, shmflg=0) -> int:
        """shmget(2): the segment id (SHM_HUGETLB [| SHM_HUGE_2MB / 1GB] for hugetlb)."""
        from vmsim.ipc.shm import ksys_shmget
        key, size, shmflg = _cint("key", key), _ulong("size", size), _cint("shmflg", shmflg)
        k = self._enter()
        return self._done(ksys_shmget(k, key, size, shmflg))

    def shmat(self, shmid, shmaddr=0, shmflg=0) -> int:
        """shmat(2): the address the segment is attached at."""
        from vmsim.ipc.shm import do_shmat
        shmid, shmflg = _cint("shmid", shmid), _cint("shmflg", shmflg)
        shmaddr = _ulong("shmaddr", shmaddr)
        k = self._enter()
        return self._done(do_shmat(k, self.task, shmid, shmaddr, shmflg))

    def shmdt(self, shmaddr) -> None:
        """shmdt(2)."""
        from vmsim.ipc.shm import ksys_shmdt
        shmaddr = _ulong("shmaddr", shmaddr)
        k = self._enter()
        self._done(ksys_shmdt(k, self.task, shmaddr))

    def shmctl(self, shmid, cmd, buf=None):
        """shmctl(2). IPC_STAT: a dict of struct shmid64_ds (key, uid, gid, cuid, cgid,
        mode, seq, shm_segsz, shm_atime, shm_dtime, shm_ctime, shm_cpid, shm_lpid,
        shm_nattch); SHM_STAT / SHM_STAT_ANY (``shmid`` is an index): (the full id,
        that dict); IPC_INFO / SHM_INFO: (the highest index in use, struct shminfo64 /
        shm_info as a dict); IPC_SET takes ``buf`` (a dict of uid, gid, mode);
        IPC_RMID, IPC_SET, SHM_LOCK, SHM_UNLOCK: None."""
        from vmsim.ipc.shm import ksys_shmctl
        shmid, cmd = _cint("shmid", shmid), _cint("cmd", cmd)
        if buf is not None and (not isinstance(buf, dict) or
                                any(not isinstance(buf.get(f, 0), int) for f in buf)):
            raise TypeError("shmctl: buf must be a dict of int fields (uid, gid, mode)")
        k = self._enter()
        r = ksys_shmctl(k, shmid, cmd, buf)
        if isinstance(r, tuple):
            self._done()
            return r[1] if cmd == 2 else r      # IPC_STAT returns 0 and the buffer
        self._done(r)

    def close(self, fd) -> None:
        """close(2)."""
        from vmsim.fs.file import close_fd
        fd = _cint("fd", fd)
        k = self._enter()
        self._done(close_fd(k, self.task, fd))

    def _rw(self, fn, *args):
        k = self._enter()
        ret = fn(k, self.task, *args)
        if isinstance(ret, bytes):
            self._done()
            return ret
        return self._done(ret)

    def read_fd(self, fd, n) -> bytes:
        """read(2) of up to n bytes at the file position."""
        from vmsim.fs.open import ksys_pread64
        return self._rw(ksys_pread64, _cint("fd", fd), _count("n", n), None, True)

    def pread(self, fd, n, offset) -> bytes:
        """pread(2)."""
        from vmsim.fs.open import ksys_pread64
        return self._rw(ksys_pread64, _cint("fd", fd), _count("n", n), _loff("offset", offset), False)

    def write_fd(self, fd, data) -> int:
        """write(2) at the file position (the end with O_APPEND); bytes written."""
        from vmsim.fs.open import ksys_pwrite64
        if isinstance(data, str):
            raise TypeError("data must be bytes-like, not str")
        return self._rw(ksys_pwrite64, _cint("fd", fd), bytes(data), None, True)

    def pwrite(self, fd, data, offset) -> int:
        """pwrite(2)."""
        from vmsim.fs.open import ksys_pwrite64
        if isinstance(data, str):
            raise TypeError("data must be bytes-like, not str")
        return self._rw(ksys_pwrite64, _cint("fd", fd), bytes(data), _loff("offset", offset), False)

    def lseek(self, fd, offset, whence) -> int:
        """lseek(2) (SEEK_SET, SEEK_CUR, SEEK_END)."""
        from vmsim.fs.open import ksys_lseek
        return self._rw(ksys_lseek, _cint("fd", fd), _loff("offset", offset), _cint("whence", whence))

    def ftruncate(self, fd, length) -> None:
        """ftruncate(2): a mapped range past the new size is unmapped (SIGBUS after)."""
        from vmsim.fs.open import do_ftruncate
        self._rw(do_ftruncate, _cint("fd", fd), _loff("length", length))

    def fallocate(self, fd, mode, offset, length) -> None:
        """fallocate(2): allocation, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, or
        (ext4) FALLOC_FL_ZERO_RANGE, FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE."""
        from vmsim.fs.open import vfs_fallocate
        self._rw(vfs_fallocate, _cint("fd", fd), _cint("mode", mode), _loff("offset", offset),
                 _loff("length", length))

    def fsync(self, fd) -> None:
        """fsync(2): write the file's dirty page-cache folios back to the disk."""
        from vmsim.fs.open import do_fsync
        self._rw(do_fsync, _cint("fd", fd), False)

    def fdatasync(self, fd) -> None:
        """fdatasync(2)."""
        from vmsim.fs.open import do_fsync
        self._rw(do_fsync, _cint("fd", fd), True)

    def posix_fadvise(self, fd, offset, length, advice) -> None:
        """posix_fadvise(2) (fadvise64): errors raise OSError with the returned errno."""
        from vmsim.fs.open import generic_fadvise
        self._rw(generic_fadvise, _cint("fd", fd), _loff("offset", offset), _loff("length", length),
                 _cint("advice", advice))

    def unlink(self, path) -> None:
        """unlink(2): the file lives on while open or mapped."""
        from vmsim.fs.namei import do_unlinkat
        if not isinstance(path, str):
            raise TypeError("path must be a str")
        k = self._enter()
        self._done(do_unlinkat(k, path))

    def mkdir(self, path, mode=0o777) -> None:
        """mkdir(2) (the process's umask is 0)."""
        from vmsim.fs.namei import do_mkdirat
        if not isinstance(path, str):
            raise TypeError("path must be a str")
        mode = _cint("mode", mode)
        k = self._enter()
        self._done(do_mkdirat(k, path, mode))

    def mount(self, source, target, fstype, flags=0, data=None) -> None:
        """mount(2): a tmpfs on the directory ``target`` with the options in ``data``
        ("huge=always,size=4m"), or MS_REMOUNT of a tmpfs mount (e.g. /dev/shm with
        "huge=within_size"). Other filesystem types are not modelled."""
        from vmsim.fs.namei import path_mount
        if not isinstance(target, str):
            raise TypeError("target must be a str")
        if data is not None and not isinstance(data, str):
            raise TypeError("data must be a str or None")
        flags = _ulong("flags", flags)
        k = self._enter()
        self._done(path_mount(k, source, target, fstype, flags, data))

    def umount(self, target, flags=0) -> None:
        """umount2(2): EBUSY while a file of the mount is open or mapped."""
        from vmsim.fs.namei import path_umount
        if not isinstance(target, str):
            raise TypeError("target must be a str")
        flags = _cint("flags", flags)
        k = self._enter()
        self._done(path_umount(k, target, flags))

    def msync(self, addr, length, flags) -> None:
        """msync(2): MS_SYNC writes the range's dirty file folios back."""
        from vmsim.mm.msync import sys_msync
        addr, length, flags = _ulong("addr", addr), _ulong("length", length), _cint("flags", flags)
        k = self._enter()
        self._done(sys_msync(self.mm, addr, length, flags))

    # --- user-mode accesses -------------------------------------------------------
    def read(self, addr, size) -> bytes:
        """Loads of ``size`` bytes at ``addr`` through the MMU (may fault)."""
        return self._access(_ulong("addr", addr), _count("size", size), None)

    def write(self, addr, data) -> None:
        """A store of ``data`` at ``addr`` through the MMU (may fault): one instruction,
        so when a page of it signals none of its bytes is written (offset 0)."""
        if isinstance(data, str):
            raise TypeError("data must be bytes-like, not str")
        data = bytes(data)
        self._access(_ulong("addr", addr), len(data), data)

    def fetch(self, addr, size=1) -> bytes:
        """Instruction fetches (NX checks; the I bit of the error code)."""
        return self._access(_ulong("addr", addr), _count("size", size), None, fetch=True)

    def _access(self, addr, size, data, fetch=False):
        k = self._enter()
        if data is not None:
            # One store: all its bytes or, when a page of it signals, none (cpu._store).
            if not _cpu._store(k, self.task, addr, data):
                self._signal(0)
            return self._done()
        access = _cpu.ACCESS_FETCH if fetch else _cpu.ACCESS_READ
        out = bytearray()
        done = 0
        from vmsim.arch.x86.mm.fault import pt_regs
        while done < size:
            a = (addr + done) & _U64                      # the address wraps as the CPU's
            n = min(size - done, 4096 - (a & 0xFFF))
            phys = _cpu._translate(k, self.task, a, access, pt_regs(a if fetch else 0))
            if phys is None:
                self._signal(done)
            if phys == _cpu.EMULATED:      # vsyscall emulation ran the call: no bytes
                break
            out += k.page_data.read(phys >> 12, phys & 0xFFF, n)
            done += n
        self._done()
        return bytes(out)

    def touch(self, addr, length, write=False, stride=4096, value=1) -> None:
        """One access per stride over [addr, addr+length): a load, or a store of ``value``
        (its low byte)."""
        addr, length = _ulong("addr", addr), _count("length", length)
        stride = _count("stride", stride)
        if not stride:
            raise ValueError("stride must be positive, got 0")
        value = _integer("value", value)
        k = self._enter()
        if not length:
            return self._done()
        count = (length + stride - 1) // stride
        i = _cpu._touch(k, self.task, addr, stride, count, write, value & 0xFF)
        if i < count:
            self._signal(i * stride)
        self._done()

    # --- a stream of accesses (a trace), run by the compiled chunk loop ------------
    def access(self, addrs, kinds, sizes=None, value=1) -> None:
        """Run user accesses in order: ``addrs`` (int64, or uint64) addresses, ``kinds``
        ACCESS_READ / ACCESS_WRITE / ACCESS_EXEC per access, ``sizes`` bytes per access
        (default 1; one that straddles a page is two translations). A store writes bytes
        ``value``: all of them, or none when a page of it signals (one instruction).

        Behaves as p.read / p.write / p.fetch of each access in turn would: a signal
        raises SignalDelivered after the accesses before it took effect, with ``index``
        the access that got it and ``offset`` its bytes done (0 for a store)."""
        from vmsim.arch.x86 import mmu_batch
        addrs, kinds, sizes = _access_arrays(addrs, kinds, sizes)
        value = _integer("value", value) & 0xFF
        k = self._enter()
        counter = [0]
        try:
            i, done = mmu_batch.run_accesses(k, self.task, addrs, kinds, sizes, value, counter)
        finally:
            self._translations = getattr(self, "_translations", 0) + counter[0]
        if i < len(addrs):
            try:
                self._signal(done)
            except SignalDelivered as e:
                e.index = int(i)
                raise
        self._done()


def _access_arrays(addrs, kinds, sizes):
    """The arrays of Process.access as the chunk loop takes them (contiguous int64
    addresses, uint8 kinds, int64 sizes or an empty array for all-ones)."""
    import numpy as np
    a = np.asarray(addrs)
    if a.dtype == np.uint64:
        a = a.view(np.int64)
    elif a.dtype.kind not in "iu" and a.size:
        raise TypeError(f"addrs must be integers, not {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.int64).reshape(-1)
    kd = np.asarray(kinds)
    if kd.dtype.kind not in "iub" and kd.size:
        raise TypeError(f"kinds must be integers, not {kd.dtype}")
    if kd.size and (kd.min() < 0 or kd.max() > 2):
        raise ValueError("kinds must be ACCESS_READ (0), ACCESS_WRITE (1) or ACCESS_EXEC (2)")
    kd = np.ascontiguousarray(kd, dtype=np.uint8).reshape(-1)
    if kd.shape != a.shape:
        raise ValueError(f"addrs and kinds differ in length ({len(a)} and {len(kd)})")
    if sizes is None:
        s = np.zeros(0, dtype=np.int64)
    else:
        s = np.asarray(sizes)
        if s.dtype.kind not in "iu" and s.size:
            raise TypeError(f"sizes must be integers, not {s.dtype}")
        s = np.ascontiguousarray(s, dtype=np.int64).reshape(-1)
        if s.shape != a.shape:
            raise ValueError(f"addrs and sizes differ in length ({len(a)} and {len(s)})")
        if s.size and s.min() < 0:
            raise ValueError("sizes must not be negative")
    # numba compiles the access loop anew for read-only arrays (np.frombuffer's,
    # np.load's with mmap_mode='r'): copies, so one build serves every caller.
    return tuple(x if x.flags.writeable else x.copy() for x in (a, kd, s))
