"""Creating, duplicating and dropping an mm; creating a task (kernel/fork.c, and
dup_mmap from mm/mmap.c).

mm_alloc -> mm_init -> mm_alloc_pgd -> pgd_alloc is the sequence exec (bprm_mm_init)
and fork (dup_mm) share; mmput -> __mmput -> exit_mmap + mmdrop -> mm_free_pgd.
fork: copy_process -> copy_mm -> dup_mm (memcpy of the parent's mm, mm_init, then
dup_mmap: each VMA duplicated with vm_area_dup, anon_vma_fork, copy_page_range).

Threads: _clone_thread is clone(CLONE_VM | CLONE_THREAD): the mm is shared. The
child starts on the CPU its caller picks (Machine.fork round-robins like spawn);
credentials, files and signals are not modelled; uprobes, KSM and khugepaged hooks
are no-ops.
"""
import errno

from vmsim.arch.x86.mm.pgtable import pgd_alloc, pgd_free
from vmsim.arch.x86.mm.tlb import flush_tlb_mm, init_new_context
from vmsim.arch.x86.mm.pkeys import _init_new_context_pkeys, arch_dup_pkeys
from vmsim.kernel.sched import task_struct
from vmsim.mm._gap_tree import _gap_tree
from vmsim.mm.mm_types import (mm_struct, vm_area_struct, VM_DONTCOPY, VM_ACCOUNT, VM_HUGETLB,
                               VM_WIPEONFORK, VM_LOCKED_MASK, VM_NOHUGEPAGE, vma_pages)

VM_INIT_DEF_MASK = VM_NOHUGEPAGE
# mm_struct fields mm_init() resets after dup_mm's memcpy.
_MM_INIT_FIELDS = ("mm_mt_ends", "mm_mt", "_mt_gap", "pgd", "pgd_ptr", "rss_stat", "locked_vm", "pinned_vm",
                   "pgtables_bytes", "map_count", "mm_users", "mm_count", "mmu_notifiers",
                   "tlb_flush_pending", "owner", "hugetlb_usage")


def mm_alloc_pgd(mm) -> int:
    """mm_alloc_pgd(): 0 or -ENOMEM."""
    return 0 if pgd_alloc(mm) >= 0 else -errno.ENOMEM


def mm_init(mm, task) -> int:
    """mm_init(): empty VMA tree, zero counters, no notifiers, def_flags inherited
    from current's mm only as VM_INIT_DEF_MASK; then the PGD."""
    mm.mm_mt_ends = []
    mm.mm_mt = []
    mm._mt_gap = _gap_tree()
    mm.map_count = 0
    mm.locked_vm = 0
    mm.pinned_vm = 0
    mm.rss_stat = [0] * len(mm.rss_stat)
    mm.pgtables_bytes = 0
    mm.mm_users = 1
    mm.mm_count = 1
    mm.mmu_notifiers = []
    mm.tlb_flush_pending = 0
    mm.hugetlb_usage = 0                                 # hugetlb_count_init()
    cur = mm.kernel.current
    if cur is not None and cur.mm is not None:
        # MMF_INIT_MASK: MMF_HUGE_ZERO_FOLIO (18) is the parent's own reference.
        mm.flags = cur.mm.flags & ~(1 << 18)
        mm.def_flags = cur.mm.def_flags & VM_INIT_DEF_MASK
    else:
        mm.flags = 0
        mm.def_flags = 0
    mm.owner = task
    mm.pgd = -1
    if mm_alloc_pgd(mm):
        return -errno.ENOMEM
    _init_new_context_pkeys(mm)                          # init_new_context()
    init_new_context(mm)
    return 0


def mm_alloc(k):
    """mm_alloc(): a new empty mm with its PGD, or None on OOM."""
    mm = mm_struct(k)
    if mm_init(mm, k.current):
        return None
    return mm


def mm_free_pgd(mm):
    pgd_free(mm)


def mmdrop(mm):
    """mmdrop() -> __mmdrop(): free the PGD once the last mm_count reference goes."""
    mm.mm_count -= 1
    if mm.mm_count == 0:
        mm_free_pgd(mm)


def mmput(mm):
    """mmput() -> __mmput(): exit_mmap, then mmdrop."""
    from vmsim.kernel.exit import exit_mmap
    mm.mm_users -= 1
    if mm.mm_users == 0:
        from vmsim.mm.khugepaged import khugepaged_exit
        from vmsim.mm.huge_memory import mm_put_huge_zero_folio
        khugepaged_exit(mm)
        exit_mmap(mm)
        mm_put_huge_zero_folio(mm)
        mmdrop(mm)


# --- fork -------------------------------------------------------------------------------
def vm_area_dup(orig):
    """vm_area_dup(): a copy of the VMA (anon_vma pointer included, chain empty)."""
    new = vm_area_struct(orig.vm_mm, orig.vm_start, orig.vm_end, orig.vm_flags,
                         orig.vm_page_prot, orig.vm_pgoff, orig.vm_file, orig.vm_ops)
    new.anon_vma = orig.anon_vma
    new.vm_private_data = orig.vm_private_data
    new.anon_name = orig.anon_name
    return new


def dup_mmap(mm, oldmm) -> int:
    """dup_mmap() (mm/mmap.c): duplicate every VMA of oldmm into mm; 0 or -errno.

    VM_DONTCOPY VMAs are left out (and unaccounted from the copied total_vm);
    VM_ACCOUNT VMAs are charged again (security_vm_enough_memory_mm); VM_WIPEONFORK
    VMAs get no anon_vma and no pages; VM_LOCKED / VM_LOCKONFAULT are not inherited.
    The parent's TLB is flushed at the end (flush_tlb_mm(oldmm)) for the PTEs
    copy_page_range write-protected.
    """
    from vmsim.mm.mmap import __vm_enough_memory
    from vmsim.mm.rmap import anon_vma_fork
    from vmsim.mm.memory import copy_page_range
    from vmsim.mm.vma import vm_stat_account, get_file
    k = mm.kernel
    mm.total_vm = oldmm.total_vm
    mm.data_vm = oldmm.data_vm
    mm.exec_vm = oldmm.exec_vm
    mm.stack_vm = oldmm.stack_vm
    retval = 0
    for mpnt in list(oldmm.mm_mt):
        if mpnt.vm_flags & VM_DONTCOPY:
            vm_stat_account(mm, mpnt.vm_flags, -vma_pages(mpnt))
            continue
        charge = 0
        if mpnt.vm_flags & VM_ACCOUNT:
            length = vma_pages(mpnt)
            if __vm_enough_memory(oldmm, length):
                retval = -errno.ENOMEM
                break
            charge = length
        tmp = vm_area_dup(mpnt)
        tmp.vm_mm = mm
        if tmp.vm_flags & VM_WIPEONFORK:
            # VM_WIPEONFORK gets a clean slate in the child; its anon_vma is
            # prepared at the first fault.
            tmp.anon_vma = None
        elif anon_vma_fork(k, tmp, mpnt):
            k.committed_as -= charge
            retval = -errno.ENOMEM
            break
        tmp.vm_flags &= ~VM_LOCKED_MASK
        if tmp.vm_flags & VM_HUGETLB:
            # Copy/update hugetlb private vma information.
            from vmsim.mm.hugetlb import hugetlb_dup_vma_private
            hugetlb_dup_vma_private(tmp)
        mm._vma_store(tmp)                                # vma_iter_bulk_store, map_count++
        if getattr(tmp.vm_ops, "open", None):
            tmp.vm_ops.open(tmp)
        if tmp.vm_file is not None:
            get_file(tmp.vm_file)
        if not tmp.vm_flags & VM_WIPEONFORK:
            retval = copy_page_range(tmp, mpnt)
        if retval:
            break
    if retval:
        # loop_out: the VMAs not duplicated leave the copied totals.
        copied = {(v.vm_start, v.vm_end) for v in mm.mm_mt}
        for v in oldmm.mm_mt:
            if (v.vm_start, v.vm_end) not in copied and not v.vm_flags & VM_DONTCOPY:
                vm_stat_account(mm, v.vm_flags, -vma_pages(v))
    arch_dup_pkeys(oldmm, mm)                            # arch_dup_mmap()
    flush_tlb_mm(oldmm)
    return retval


def dup_mm(tsk, oldmm):
    """dup_mm(): a copy of oldmm (memcpy + mm_init + dup_mmap), or None on failure."""
    k = oldmm.kernel
    mm = mm_struct(k)
    for name, value in oldmm.__dict__.items():            # memcpy(mm, oldmm, sizeof(*mm))
        if name not in _MM_INIT_FIELDS:
            setattr(mm, name, list(value) if isinstance(value, list) else value)
    if mm_init(mm, tsk):
        return None
    err = dup_mmap(mm, oldmm)
    if err:
        mm.owner = None
        mmput(mm)
        return None
    mm.hiwater_rss = mm.get_mm_rss()
    mm.hiwater_vm = mm.total_vm
    return mm


def copy_mm(clone_flags: int, tsk) -> int:
    """copy_mm(): give the new task its own copy of current's mm; 0 or -ENOMEM."""
    tsk.min_flt = tsk.maj_flt = 0
    tsk.mm = tsk.active_mm = None
    oldmm = tsk.parent.mm
    if oldmm is None:
        return 0
    mm = dup_mm(tsk, oldmm)
    if mm is None:
        return -errno.ENOMEM
    tsk.mm = tsk.active_mm = mm
    return 0


def copy_process(k, parent, cpu: int):
    """copy_process() for fork(): a new task (new pid, the parent's rlimits and
    personality) with a copy of the parent's mm; the task or -errno."""
    pid = k.next_pid
    p = task_struct(pid, None, cpu, parent.rlim)
    p.comm = parent.comm
    p.personality = parent.personality
    p.pkru = parent.pkru                                # fpu_clone() copies the xstate
    p.oom_score_adj = parent.oom_score_adj          # copy_signal()
    p.oom_score_adj_min = parent.oom_score_adj_min
    p.parent = parent
    prev = k.current
    k.current = parent
    err = copy_mm(0, p)
    k.current = prev
    if err:
        return err
    k.next_pid += 1
    k.tasks[pid] = p
    parent.children.append(p)
    from vmsim.fs.file import dup_fd
    dup_fd(k, parent, p)                                # copy_files()
    return p


def _clone_thread(k, current, cpu: int):
    """copy_process() with CLONE_VM | CLONE_THREAD: a task in current's thread group
    sharing its mm (copy_mm: mmget, mm_users + 1), autoreaped at exit (exit_signal -1,
    its parent is the group's parent). Returns the task."""
    pid = k.next_pid
    k.next_pid += 1
    p = task_struct(pid, current.mm, cpu, current.rlim)
    p.tgid = current.tgid
    p.exit_signal = -1
    p.comm = current.comm
    p.personality = current.personality
    p.pkru = current.pkru
    p.oom_score_adj = current.oom_score_adj
    p.oom_score_adj_min = current.oom_score_adj_min
    p.parent = current.parent
    current.mm.mm_users += 1                            # copy_mm: CLONE_VM -> mmget
    k.tasks[pid] = p
    from vmsim.fs.file import share_files
    share_files(k, current, p)                          # copy_files: CLONE_FILES
    return p


def kernel_clone(k, parent, cpu: int):
    """kernel_clone() for fork(): copy_process, then wake the child; pid or -errno."""
    p = copy_process(k, parent, cpu)
    if isinstance(p, int):
        return p
    return p.pid
