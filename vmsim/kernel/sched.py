"""Tasks and CPUs (kernel/sched/, include/linux/sched.h): a trivial scheduler.

Every task has a CPU it runs on (default 0); the model runs one task at a time, and
``Kernel.current`` is the task whose syscall or access is being modelled.
"""


class task_struct:
    """struct task_struct: the fields memory management touches."""
    __slots__ = ("pid", "comm", "mm", "active_mm", "cpu", "min_flt", "maj_flt",
                 "exit_code", "state", "parent", "children", "rlim", "signals",
                 "personality", "oom_score_adj", "oom_score_adj_min", "oom_mm", "signal_flags",
                 "pkru",
                 "__weakref__")

    def __init__(self, pid, mm, cpu=0, rlim=None):
        self.pid = pid
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
    """Per-CPU state: the CR3 loaded and the task running."""
    __slots__ = ("id", "cr3", "curr", "loaded_mm")

    def __init__(self, cpu_id):
        self.id = cpu_id
        self.cr3 = 0
        self.curr = None
        self.loaded_mm = None
