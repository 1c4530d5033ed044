"""Tearing down an address space (mm/mmap.c exit_mmap, kernel/exit.c).

exit_mmap: mmu_notifier_release, tlb_gather_mmu_fullmm, unmap_vmas
over every VMA, free_pgtables from FIRST_USER_ADDRESS to USER_PGTABLES_CEILING,
tlb_finish_mmu, then remove_vma for each VMA and drop the accounting.
"""
from vmsim.mm.memory import unmap_vmas, free_pgtables
from vmsim.mm.mmu_gather import tlb_gather_mmu_fullmm, tlb_finish_mmu
from vmsim.mm.vma import remove_vma, FIRST_USER_ADDRESS, USER_PGTABLES_CEILING
from vmsim.mm.mm_types import VM_ACCOUNT

MMF_OOM_SKIP = 21


def mmu_notifier_release(mm):
    """mmu_notifier_release() -> __mmu_notifier_release(): each subscription's ->release
    (interval notifiers get an MMU_NOTIFY_RELEASE invalidation of [0, ULONG_MAX)), then
    the subscriptions are unhooked, so exit_mmap's own unmap notifies nobody."""
    for n in list(mm.mmu_notifiers):
        n("release", "release", 0, (1 << 64) - 1)
    mm.mmu_notifiers.clear()


def exit_mmap(mm):
    """exit_mmap(): unmap and free everything the mm maps."""
    k = mm.kernel
    mmu_notifier_release(mm)
    # No lru_add_drain() here since 6.14 ("mm: remove unnecessary calls to lru_add_drain").
    vmas = list(mm.mm_mt)
    tlb = tlb_gather_mmu_fullmm(mm)
    # update_hiwater_rss(mm) here? but nobody should be looking (6.18's own comment)
    if vmas:
        unmap_vmas(tlb, vmas, 0, (1 << 64) - 1)
        free_pgtables(tlb, vmas, FIRST_USER_ADDRESS, USER_PGTABLES_CEILING)
    # Hide the mm from the OOM killer and reaper: its memory is already freed.
    mm.flags |= 1 << MMF_OOM_SKIP
    tlb_finish_mmu(tlb)
    for vma in vmas:
        if vma.vm_flags & VM_ACCOUNT:
            k.committed_as -= (vma.vm_end - vma.vm_start) >> 12
        mm._vma_remove(vma)
        remove_vma(k, vma)
    mm.total_vm = mm.data_vm = mm.stack_vm = mm.exec_vm = mm.locked_vm = 0


def do_exit(k, task, code: int):
    """do_exit() -> exit_mm(): drop the task's mm and become a zombie. ``code`` is
    the wait status the parent reads: (status & 0xff) << 8 from exit(2), the signal
    number for a fatal signal."""
    mm = task.mm
    task.exit_code = code
    task.state = "Z"
    task.signals.clear()
    if mm is not None:
        # exit_mm(): current->mm = NULL and enter_lazy_tlb: the CPU keeps the mm loaded
        # lazily (the task will not run again: its CPU goes idle), then mmput.
        from vmsim.kernel.sched import _context_switch, _release_lazy_users
        task.mm = None
        c = k.cpus[task.cpu]
        if c.curr is task:
            _context_switch(k, task.cpu, None)
        task.active_mm = None
        from vmsim.kernel.fork import mmput
        prev = k.current
        k.current = task
        try:
            mmput(mm)
            if mm.mm_users == 0:
                _release_lazy_users(k, mm)
        finally:
            k.current = prev if prev is not task else None
        if task.oom_mm is not None:
            from vmsim.mm.oom_kill import exit_oom_victim
            exit_oom_victim(k, task)
    # exit_files(): close the descriptors after the mm went (as do_exit orders them).
    from vmsim.fs.file import exit_files
    exit_files(k, task)
    exit_notify(k, task)


def do_group_exit(k, task, exit_code: int):
    """do_group_exit(): the whole thread group exits (zap_other_threads, each other
    thread in do_exit, then this one); get_signal() calls it with the signal number
    for a fatal signal such as SIGKILL, exit_group(2) with the status."""
    for t in [t for t in k.tasks.values() if t.tgid == task.tgid and t is not task and t.state == "R"]:
        do_exit(k, t, exit_code)
    do_exit(k, task, exit_code)


def exit_notify(k, task):
    """exit_notify(): the task's children go to the child reaper (init, which reaps
    zombies at once; vmsim has no init task, so orphans are released); a task whose
    parent is gone is released right away (autoreap)."""
    for child in list(task.children):
        child.parent = None
        if child.state == "Z":
            release_task(k, child)
    task.children = []
    if task.parent is None or task.exit_signal == -1:     # autoreap (threads: exit_signal -1)
        release_task(k, task)


def release_task(k, task):
    """release_task(): forget a reaped zombie (its pid is free again)."""
    k.tasks.pop(task.pid, None)
    if task.parent is not None and task in task.parent.children:
        task.parent.children.remove(task)
    task.state = "X"


def do_wait(k, parent, pid: int, wnohang: bool = False):
    """do_wait() / kernel_waitid for one pid: (pid, wait status) of a zombie child,
    (0, None) with WNOHANG if it still runs, -ECHILD if it is not our child.

    A blocking wait for a running child would wait forever in vmsim (only one task
    runs at a time): -EDEADLK then.
    """
    import errno
    child = k.tasks.get(pid)
    if child is None or child.parent is not parent:
        return -errno.ECHILD
    if child.state != "Z":
        return (0, None) if wnohang else -errno.EDEADLK
    code = child.exit_code
    release_task(k, child)
    return pid, code
