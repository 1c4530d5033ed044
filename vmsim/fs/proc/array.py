"""/proc/<pid>/status, stat and statm (fs/proc/array.c).

The memory lines come from the mm (task_mem / task_statm in task_mmu.py). The rest
of the task state vmsim does not model (credentials, signals, capabilities, seccomp,
scheduling, times) is printed with the values a root process that has just been
exec'ed has on the reference machine: uid/gid 0, no signals pending or handled, full
capabilities, zero CPU time and context switches.
"""
from vmsim.fs.proc.task_mmu import task_mem, task_statm

PF_RANDOMIZE = 0x00400000
ADDR_NO_RANDOMIZE = 0x0040000
SIGCHLD = 17
RLIM_INFINITY = (1 << 64) - 1
CAP_FULL = (1 << 41) - 1                 # CAP_LAST_CAP 40
MAX_NUMNODES = 1 << 10                   # NODES_SHIFT 10 on the reference kernel

_STATES = {"R": "R (running)", "S": "S (sleeping)", "D": "D (disk sleep)",
           "T": "T (stopped)", "t": "t (tracing stop)", "X": "X (dead)", "Z": "Z (zombie)",
           "P": "P (parked)", "I": "I (idle)"}


def bitmap_string(bits, nbits: int) -> str:
    """The %*pb format: hex in 32-bit groups separated by commas, width from nbits."""
    mask = 0
    for b in bits:
        mask |= 1 << b
    groups = []
    n = nbits
    while n > 0:
        w = 32 if n % 32 == 0 else n % 32
        groups.append((mask & ((1 << w) - 1), w))
        mask >>= w
        n -= w
    # The first printed group is the most significant one.
    groups.reverse()
    out = []
    for i, (v, w) in enumerate(groups):
        out.append("%0*x" % ((w + 3) // 4, v))
    return ",".join(out)


def bitmap_list(bits) -> str:
    """The %*pbl format: ranges "0-3,5"."""
    bits = sorted(bits)
    out = []
    i = 0
    while i < len(bits):
        j = i
        while j + 1 < len(bits) and bits[j + 1] == bits[j] + 1:
            j += 1
        out.append(str(bits[i]) if i == j else f"{bits[i]}-{bits[j]}")
        i = j + 1
    return ",".join(out)


def rlimit_sigpending(k) -> int:
    """init_task's RLIMIT_SIGPENDING: max_threads / 2 (fork_init / set_max_threads)."""
    totalram = sum(z.managed_pages for z in k.page_alloc.zones)
    # max_threads = totalram / (8 * THREAD_SIZE / PAGE_SIZE), THREAD_SIZE 16 KiB.
    return max(totalram // 32, 20) // 2


def _pf_flags(k, task) -> int:
    """task->flags as exec leaves them: PF_RANDOMIZE when ASLR is on for the task."""
    if int(k.sysctl["/proc/sys/kernel/randomize_va_space"]) and not task.personality & ADDR_NO_RANDOMIZE:
        return PF_RANDOMIZE
    return 0


def task_thp_status(mm) -> str:
    """task_thp_status(): 0 only when prctl(PR_SET_THP_DISABLE) disabled THP completely
    (CONFIG_TRANSPARENT_HUGEPAGE=y)."""
    from vmsim.mm.huge_memory import MMF_DISABLE_THP_COMPLETELY
    return "THP_enabled:\t%d\n" % (not mm.flags >> MMF_DISABLE_THP_COMPLETELY & 1)


def proc_pid_status(k, task) -> str:
    """proc_pid_status(): Name, task_state, task_mem, task_sig, task_cap, ..."""
    mm = task.mm
    pid = task.pid
    ppid = task.parent.pid if task.parent is not None else 0
    out = [f"Name:\t{task.comm}\n", "Umask:\t0022\n",
           f"State:\t{_STATES.get(task.state, task.state)}\n",
           f"Tgid:\t{pid}\nNgid:\t0\nPid:\t{pid}\nPPid:\t{ppid}\nTracerPid:\t0\n",
           "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nFDSize:\t64\nGroups:\t \n",
           f"NStgid:\t{pid}\nNSpid:\t{pid}\nNSpgid:\t{pid}\nNSsid:\t{pid}\n", "Kthread:\t0\n"]
    if mm is not None:
        out.append(task_mem(mm))
        out.append("CoreDumping:\t0\n")
        out.append(task_thp_status(mm))
        out.append("untag_mask:\t0xffffffffffffffff\n")
    out.append("Threads:\t1\n")
    out.append(f"SigQ:\t0/{rlimit_sigpending(k)}\n")
    for name in ("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt"):
        out.append(f"{name}:\t{0:016x}\n")
    out.append(f"CapInh:\t{0:016x}\nCapPrm:\t{CAP_FULL:016x}\nCapEff:\t{CAP_FULL:016x}\n"
               f"CapBnd:\t{CAP_FULL:016x}\nCapAmb:\t{0:016x}\n")
    out.append("NoNewPrivs:\t0\nSeccomp:\t0\nSeccomp_filters:\t0\n")
    out.append("Speculation_Store_Bypass:\tvulnerable\nSpeculationIndirectBranch:\talways enabled\n")
    cpus = list(range(k.ncpus))
    out.append(f"Cpus_allowed:\t{bitmap_string(cpus, k.ncpus)}\n")
    out.append(f"Cpus_allowed_list:\t{bitmap_list(cpus)}\n")
    out.append(f"Mems_allowed:\t{bitmap_string([0], MAX_NUMNODES)}\n")
    out.append("Mems_allowed_list:\t0\n")
    out.append("voluntary_ctxt_switches:\t0\nnonvoluntary_ctxt_switches:\t0\n")
    return "".join(out)


def do_task_stat(k, task) -> str:
    """do_task_stat(): the 52 fields of /proc/<pid>/stat."""
    mm = task.mm
    pid = task.pid
    ppid = task.parent.pid if task.parent is not None else 0
    state = task.state[0]
    vsize = mm.total_vm * 4096 if mm else 0
    rss = mm.get_mm_rss() if mm else 0
    f = [pid, f"({task.comm})", state, ppid, pid, pid, 0, -1, _pf_flags(k, task),
         task.min_flt, 0, task.maj_flt, 0, 0, 0, 0, 0, 20, 0, 1, 0, 0, vsize, rss,
         RLIM_INFINITY,
         mm.start_code if mm else 0, mm.end_code if mm else 0, mm.start_stack if mm else 0,
         0, 0, 0, 0, 0, 0, 0, 0, 0, SIGCHLD, task.cpu, 0, 0, 0, 0, 0]
    if mm is not None:
        f += [mm.start_data, mm.end_data, mm.start_brk, mm.arg_start, mm.arg_end,
              mm.env_start, mm.env_end]
    else:
        f += [0] * 7
    code = task.exit_code
    f.append(code if code is not None else 0)
    return " ".join(str(x) for x in f) + "\n"


def proc_pid_statm(k, task) -> str:
    """proc_pid_statm(): size resident shared text lib data dt, in pages."""
    mm = task.mm
    if mm is None:
        return "0 0 0 0 0 0 0\n"
    size, shared, text, data, resident = task_statm(mm)
    return f"{size} {resident} {shared} {text} 0 {data} 0\n"
