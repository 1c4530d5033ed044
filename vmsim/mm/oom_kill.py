"""The OOM killer (mm/oom_kill.c, 6.18).

When the page allocator's slow path has nothing left (__alloc_pages_may_oom), it
calls out_of_memory(): select_bad_process() scores every process with oom_badness()
(RSS + page tables + swap entries, plus oom_score_adj per mille of RAM + swap;
OOM_SCORE_ADJ_MIN is never chosen), oom_kill_process() logs the kill and
__oom_kill_process() sends SIGKILL to the victim and to every process sharing its mm,
marks it an OOM victim (it may then dip into the reserves: ALLOC_OOM) and queues the
OOM reaper. The allocating task retries while the killer makes progress; a
VM_FAULT_OOM that still reaches the #PF handler only warns (pagefault_out_of_memory).

vmsim runs one task at a time. A victim other than the allocating task runs its
SIGKILL at once (_oom_victims_exit: get_signal -> do_group_exit -> exit_mmap), as it
would on another CPU while the allocator retries; its exit_mmap frees the memory and
sets MMF_OOM_SKIP before the reaper's OOM_REAPER_DELAY (2 s) would expire, so the
reaper itself never has work here and prints nothing. A victim that is the allocating
task dies when its fault returns to user mode (the API delivers the SIGKILL).

Not modelled: memory cgroups (no memcg OOM), cpusets and mempolicies
(CONSTRAINT_NONE always), the oom notifier chain, sysrq OOM, dump_stack() and
__show_mem() in dump_header(), threads (one task per process) and a global init
(vmsim has no init task: exit_notify releases orphans), vfork.
"""
from vmsim.kernel.printk import pr_err, pr_info, pr_warn, panic, __ratelimit
from vmsim.mm import vmstat
from vmsim.mm.mm_types import MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, MM_SWAPENTS
from vmsim.mm.page_alloc import format_gfp, tsk_is_oom_victim, __GFP_FS

__all__ = ["oom_control", "oom_badness", "select_bad_process", "oom_kill_process",
           "out_of_memory", "pagefault_out_of_memory", "OOM_SCORE_ADJ_MIN",
           "OOM_SCORE_ADJ_MAX"]

OOM_SCORE_ADJ_MIN = -1000
OOM_SCORE_ADJ_MAX = 1000
LONG_MIN = -(1 << 63)
LONG_MAX = (1 << 63) - 1
MMF_OOM_SKIP = 21
MMF_OOM_REAP_QUEUED = 25
SIGNAL_GROUP_EXIT = 0x00000004
SIGKILL = 9
SI_KERNEL = 0x80
CONSTRAINT_NONE = 0
oom_constraint_text = ("CONSTRAINT_NONE", "CONSTRAINT_CPUSET", "CONSTRAINT_MEMORY_POLICY",
                       "CONSTRAINT_MEMCG")
_CHOSEN_ABORT = -1                     # (void *)-1UL: an earlier victim is still exiting


class oom_control:
    """struct oom_control: the failed request and the selection state."""
    __slots__ = ("gfp_mask", "order", "totalpages", "chosen", "chosen_points", "constraint")

    def __init__(self, gfp_mask: int, order: int):
        self.gfp_mask = gfp_mask
        self.order = order
        self.totalpages = 0
        self.chosen = None
        self.chosen_points = LONG_MIN
        self.constraint = CONSTRAINT_NONE


def K(pages: int) -> int:
    """K(): pages to kB."""
    return pages << 2


def _c_div(a: int, b: int) -> int:
    """C's signed division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def totalram_pages(k) -> int:
    """totalram_pages() (include/linux/mm.h): _totalram_pages, the managed pages of
    all zones, kept as a counter (mmap's overcommit check reads it on every private
    writable mapping)."""
    return k.page_alloc._totalram_pages


def total_swap_pages(k) -> int:
    return getattr(k, "total_swap_pages", 0)


def _mm_flags_test(bit: int, mm) -> bool:
    return bool(mm.flags >> bit & 1)


def _mm_flags_set(bit: int, mm):
    mm.flags |= 1 << bit


def is_global_init(p) -> bool:
    """is_global_init(): vmsim has no init task (orphans are released, not reparented)."""
    return False


def oom_unkillable_task(p) -> bool:
    """oom_unkillable_task(): init and kernel threads (none in vmsim)."""
    return is_global_init(p)


def find_lock_task_mm(p):
    """find_lock_task_mm(): the thread of p that still has an mm (one per process)."""
    return p if p.mm is not None else None


def mm_pgtables_bytes(mm) -> int:
    return mm.pgtables_bytes


def oom_badness(p, totalpages: int) -> int:
    """oom_badness(): RSS + swap entries + page-table pages, plus oom_score_adj in
    units of totalpages / 1000; LONG_MIN for a task that must not be killed."""
    if oom_unkillable_task(p):
        return LONG_MIN
    t = find_lock_task_mm(p)
    if t is None:
        return LONG_MIN
    adj = t.oom_score_adj
    if adj == OOM_SCORE_ADJ_MIN or _mm_flags_test(MMF_OOM_SKIP, t.mm):
        return LONG_MIN
    mm = t.mm
    points = (mm.get_mm_rss() + mm.get_mm_counter(MM_SWAPENTS) +
              mm_pgtables_bytes(mm) // 4096)
    adj *= totalpages // 1000
    return points + adj


def constrained_alloc(k, oc) -> int:
    """constrained_alloc(): all of RAM and swap (one node, no cpusets or memcgs)."""
    oc.totalpages = totalram_pages(k) + total_swap_pages(k)
    return CONSTRAINT_NONE


def oom_evaluate_task(k, task, oc) -> bool:
    """oom_evaluate_task(): keep the highest-scoring task; abort (True) while an
    earlier victim still holds memory."""
    if oom_unkillable_task(task):
        return False
    if tsk_is_oom_victim(task):
        if _mm_flags_test(MMF_OOM_SKIP, task.oom_mm):
            return False
        oc.chosen = _CHOSEN_ABORT
        return True
    points = oom_badness(task, oc.totalpages)
    if points == LONG_MIN or points < oc.chosen_points:
        return False
    oc.chosen = task
    oc.chosen_points = points
    return False


def select_bad_process(k, oc):
    """select_bad_process(): for_each_process (creation order), the worst task."""
    oc.chosen_points = LONG_MIN
    for p in list(k.tasks.values()):
        if oom_evaluate_task(k, p, oc):
            break


def dump_task(k, p, oc):
    """dump_task(): one line of the task table, memory in pages."""
    if oom_unkillable_task(p):
        return
    task = find_lock_task_mm(p)
    if task is None:
        return
    mm = task.mm
    pr_info(k, "[%7d] %5d %5d %8d %8d %8d %8d %9d %8d %8d         %5d %s" % (
        task.pid, 0, task.pid, mm.total_vm, mm.get_mm_rss(),
        mm.get_mm_counter(MM_ANONPAGES), mm.get_mm_counter(MM_FILEPAGES),
        mm.get_mm_counter(MM_SHMEMPAGES), mm_pgtables_bytes(mm),
        mm.get_mm_counter(MM_SWAPENTS), task.oom_score_adj, task.comm))


def dump_tasks(k, oc):
    """dump_tasks(): the memory state of every eligible task."""
    pr_info(k, "Tasks state (memory values in pages):")
    pr_info(k, "[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem "
               "pgtables_bytes swapents oom_score_adj name")
    for p in list(k.tasks.values()):
        dump_task(k, p, oc)


def dump_oom_victim(k, oc, victim):
    """dump_oom_victim(): the one-line summary (cpuset and memcg: the root, "/")."""
    pr_info(k, "oom-kill:constraint=%s,nodemask=(null),cpuset=/,mems_allowed=0,"
               "global_oom,task_memcg=/,task=%s,pid=%d,uid=%d"
            % (oom_constraint_text[oc.constraint], victim.comm, victim.pid, 0))


def dump_header(k, oc):
    """dump_header(): who invoked the OOM killer and, with oom_dump_tasks, the task
    table (dump_stack() and __show_mem() are not modelled)."""
    cur = k.current
    pr_warn(k, "%s invoked oom-killer: gfp_mask=%#x(%s), order=%d, oom_score_adj=%d" % (
        cur.comm if cur is not None else "swapper/0", oc.gfp_mask, format_gfp(oc.gfp_mask),
        oc.order, cur.oom_score_adj if cur is not None else 0))
    if _sysctl(k, "oom_dump_tasks", 1):
        dump_tasks(k, oc)


def _sysctl(k, name: str, default: int) -> int:
    return int(k.sysctl.get("/proc/sys/vm/" + name, default))


def process_shares_mm(p, mm) -> bool:
    """process_shares_mm(): does a thread of p use mm?"""
    return p.mm is not None and p.mm is mm


def mark_oom_victim(k, tsk):
    """mark_oom_victim(): TIF_MEMDIE and signal->oom_mm (access to the reserves)."""
    if tsk.oom_mm is not None:
        return
    tsk.oom_mm = tsk.mm
    k.oom_victims = getattr(k, "oom_victims", 0) + 1


def exit_oom_victim(k, tsk):
    """exit_oom_victim(): the victim has released its mm (exit_mm)."""
    k.oom_victims = getattr(k, "oom_victims", 1) - 1


def queue_oom_reaper(k, tsk):
    """queue_oom_reaper(): arm the reaper's timer (OOM_REAPER_DELAY, 2 s). In vmsim
    the victim's own exit_mmap always comes first (MMF_OOM_SKIP), so the timer's
    wake_oom_reaper() finds nothing to do."""
    mm = tsk.oom_mm
    if _mm_flags_test(MMF_OOM_REAP_QUEUED, mm):
        return
    _mm_flags_set(MMF_OOM_REAP_QUEUED, mm)


def __task_will_free_mem(task) -> bool:
    """__task_will_free_mem(): the process is exiting (SIGNAL_GROUP_EXIT) or gone."""
    if task.signal_flags & SIGNAL_GROUP_EXIT:
        return True
    return task.state in ("Z", "X")


def task_will_free_mem(k, task) -> bool:
    """task_will_free_mem(): the task is dying and nobody else pins its mm."""
    mm = task.mm
    if mm is None:
        return False
    if not __task_will_free_mem(task):
        return False
    if _mm_flags_test(MMF_OOM_SKIP, mm):
        return False
    if mm.mm_users <= 1:
        return True
    for p in k.tasks.values():
        if p is task or not process_shares_mm(p, mm):
            continue
        if not __task_will_free_mem(p):
            return False
    return True


def do_send_sig_info(k, sig: int, p):
    """do_send_sig_info(SIGKILL, SEND_SIG_PRIV, p, PIDTYPE_TGID): queue the signal;
    complete_signal() makes a fatal one a group exit (SIGNAL_GROUP_EXIT)."""
    p.signals.append((sig, SI_KERNEL, 0, 0))
    if sig == SIGKILL:
        p.signal_flags |= SIGNAL_GROUP_EXIT


def __oom_kill_process(k, victim, message: str):
    """__oom_kill_process(): count OOM_KILL, SIGKILL the victim and every process
    sharing its mm, mark it a victim, log the kill and queue the reaper."""
    p = find_lock_task_mm(victim)
    if p is None:
        pr_info(k, "%s: OOM victim %d (%s) is already exiting. Skip killing the task"
                % (message, victim.pid, victim.comm))
        return
    victim = p
    mm = victim.mm
    vmstat.count_vm_event(k, vmstat.OOM_KILL)
    # SIGKILL before access to the reserves, so user space cannot deplete them.
    do_send_sig_info(k, SIGKILL, victim)
    mark_oom_victim(k, victim)
    pr_err(k, "%s: Killed process %d (%s) total-vm:%dkB, anon-rss:%dkB, file-rss:%dkB, "
              "shmem-rss:%dkB, UID:%d pgtables:%dkB oom_score_adj:%d" % (
                  message, victim.pid, victim.comm, K(mm.total_vm),
                  K(mm.get_mm_counter(MM_ANONPAGES)), K(mm.get_mm_counter(MM_FILEPAGES)),
                  K(mm.get_mm_counter(MM_SHMEMPAGES)), 0, mm_pgtables_bytes(mm) >> 10,
                  victim.oom_score_adj))
    can_oom_reap = True
    for p in list(k.tasks.values()):
        if p is victim or not process_shares_mm(p, mm):
            continue
        if is_global_init(p):
            can_oom_reap = False
            _mm_flags_set(MMF_OOM_SKIP, mm)
            continue
        do_send_sig_info(k, SIGKILL, p)
    if can_oom_reap:
        queue_oom_reaper(k, victim)


def oom_kill_process(k, oc, message: str):
    """oom_kill_process(): an exiting victim only gets the reserves; otherwise log
    (rate-limited dump_header / dump_oom_victim) and kill it."""
    victim = oc.chosen
    if task_will_free_mem(k, victim):
        mark_oom_victim(k, victim)
        queue_oom_reaper(k, victim)
        return
    if __ratelimit(k, "oom_kill_process"):
        dump_header(k, oc)
        dump_oom_victim(k, oc, victim)
    __oom_kill_process(k, victim, message)


def check_panic_on_oom(k, oc):
    """check_panic_on_oom(): vm.panic_on_oom (default 0) turns the OOM into a panic."""
    panic_on_oom = _sysctl(k, "panic_on_oom", 0)
    if not panic_on_oom:
        return
    if panic_on_oom != 2 and oc.constraint != CONSTRAINT_NONE:
        return
    dump_header(k, oc)
    panic(k, "Out of memory: %s panic_on_oom is enabled"
          % ("compulsory" if panic_on_oom == 2 else "system-wide"))


def out_of_memory(k, oc) -> bool:
    """out_of_memory(): kill the "best" process; True if that makes progress.

    With no killable process at all the kernel cannot survive the allocation
    loop: it panics ("System is deadlocked on memory")."""
    cur = k.current
    # A current task that is already dying gets the reserves instead of a victim.
    if cur is not None and task_will_free_mem(k, cur):
        mark_oom_victim(k, cur)
        queue_oom_reaper(k, cur)
        return True
    # The OOM killer does not compensate for IO-less reclaim.
    if not oc.gfp_mask & __GFP_FS:
        return True
    oc.constraint = constrained_alloc(k, oc)
    check_panic_on_oom(k, oc)
    if (_sysctl(k, "oom_kill_allocating_task", 0) and cur is not None and
            cur.mm is not None and not oom_unkillable_task(cur) and
            cur.oom_score_adj != OOM_SCORE_ADJ_MIN):
        oc.chosen = cur
        oom_kill_process(k, oc, "Out of memory (oom_kill_allocating_task)")
        return True
    select_bad_process(k, oc)
    if oc.chosen is None:
        dump_header(k, oc)
        pr_warn(k, "Out of memory and no killable processes...")
        # An allocation at the system level cannot survive this: it would loop
        # forever in the allocator.
        panic(k, "System is deadlocked on memory")
    if oc.chosen is not _CHOSEN_ABORT:
        oom_kill_process(k, oc, "Out of memory")
    return oc.chosen is not None


def pagefault_out_of_memory(k):
    """pagefault_out_of_memory(): a VM_FAULT_OOM that reached the #PF handler. The
    global OOM was handled in the allocator; a dying task just returns, others
    warn (rate-limited) and the fault is retried."""
    cur = k.current
    if any(s[0] == SIGKILL for s in cur.signals):           # fatal_signal_pending()
        return
    if __ratelimit(k, "pagefault_out_of_memory"):
        pr_warn(k, "Huh VM_FAULT_OOM leaked out to the #PF handler. Retrying PF")


def _oom_victims_exit(k):
    """vmsim runs one task at a time: each OOM-killed process other than the
    current one runs its pending SIGKILL now (get_signal -> do_group_exit), as it
    would on another CPU while the allocating task retries."""
    from vmsim.kernel.exit import do_group_exit
    for p in list(k.tasks.values()):
        if (p is not k.current and p.mm is not None and
                any(s[0] == SIGKILL for s in p.signals)):
            do_group_exit(k, p, SIGKILL)
