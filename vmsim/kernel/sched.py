"""Tasks and CPUs (kernel/sched/, include/linux/sched.h): a scheduler the user drives.

Every task has a CPU it runs on (default 0); the model runs one task at a time, and
``Kernel.current`` is the task whose syscall or access is being modelled. Each CPU
runs one task (``curr``) or is idle; a task entering the kernel on a CPU where
another one ran is switched to there (_context_switch -> switch_mm_irqs_off), and
Machine.schedule moves a task to a CPU. The idle task and kernel threads have no mm:
they borrow the previous one in lazy TLB mode (enter_lazy_tlb).
"""
from vmsim.arch.x86.mm.tlb import (cpu_tlbstate, switch_mm_irqs_off, enter_lazy_tlb,
                                   leave_mm)


class task_struct:
    """struct task_struct: the fields memory management touches."""
    __slots__ = ("pid", "comm", "mm", "active_mm", "cpu", "min_flt", "maj_flt",
                 "exit_code", "state", "parent", "children", "rlim", "signals",
                 "personality", "oom_score_adj", "oom_score_adj_min", "oom_mm", "signal_flags",
                 "pkru", "tgid", "exit_signal",
                 "__weakref__")

    def __init__(self, pid, mm, cpu=0, rlim=None):
        self.pid = pid
        self.tgid = pid                 # a thread group leader until clone(CLONE_THREAD)
        self.exit_signal = 17           # SIGCHLD; -1 for a CLONE_THREAD thread (autoreaped)
        self.comm = "vmsim"
        self.mm = mm
        self.active_mm = mm
        self.cpu = cpu
        self.min_flt = 0
        self.maj_flt = 0
        self.exit_code = None
        self.state = "R"
        self.parent = None
        self.children = []
        self.rlim = dict(rlim or {})
        self.signals = []
        self.personality = 0
        self.oom_score_adj = 0          # signal->oom_score_adj
        self.oom_score_adj_min = 0      # signal->oom_score_adj_min
        self.oom_mm = None              # signal->oom_mm: set once an OOM victim
        self.signal_flags = 0           # signal->flags (SIGNAL_GROUP_EXIT)
        self.pkru = 0               # the XSAVE PKRU state (x86 protection keys)


class cpu_state:
    """Per-CPU state: the CR3 loaded (PGD pfn), the task running (None: idle), the user
    mm loaded (None for init_mm) and cpu_tlbstate."""
    __slots__ = ("id", "cr3", "curr", "loaded_mm", "tlbstate")

    def __init__(self, cpu_id):
        self.id = cpu_id
        self.cr3 = 0
        self.curr = None
        self.loaded_mm = None
        self.tlbstate = cpu_tlbstate()


def _context_switch(k, cpu: int, next_task):
    """context_switch() (kernel/sched/core.c): switch_mm_irqs_off to next's mm, or, for the idle task or a
    kernel thread (next_task None), keep the previous mm in lazy TLB mode."""
    c = k.cpus[cpu]
    prev = c.curr
    c.curr = next_task
    if prev is not None and prev is not next_task and prev.cpu == cpu and prev.state == "R":
        pass                          # prev stays runnable, just not running
    if next_task is None or next_task.mm is None:
        enter_lazy_tlb(k, cpu)
        return
    switch_mm_irqs_off(k, cpu, next_task.mm)


def _release_lazy_users(k, mm):
    """An mm whose last user is gone: CPUs still holding it lazily drop it (the lazy
    mm_count reference; on x86 they switch to init_mm at the latest at the next
    schedule). Page-table freeing already sent them to init_mm."""
    for c in k.cpus:
        if c.tlbstate.loaded_mm is mm:
            prev = k.current
            try:
                leave_mm(k, c.id)
            finally:
                k.current = prev
