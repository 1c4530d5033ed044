"""Creating and dropping an mm (kernel/fork.c).

mm_alloc -> mm_init -> mm_alloc_pgd -> pgd_alloc, the sequence exec (bprm_mm_init)
and fork (dup_mm) share; mmput -> __mmput -> exit_mmap + mmdrop -> mm_free_pgd.
fork itself (copy_process, dup_mmap, copy_page_range) is the lifecycle issue.
"""
from vmsim.arch.x86.mm.pgtable import pgd_alloc, pgd_free
from vmsim.mm.mm_types import mm_struct


def mm_alloc_pgd(mm) -> int:
    """mm_alloc_pgd(): 0 or -ENOMEM."""
    return 0 if pgd_alloc(mm) >= 0 else -12


def mm_init(mm, task) -> int:
    """mm_init(): counters, notifier list, then the PGD."""
    mm.owner = task
    return mm_alloc_pgd(mm)


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
        exit_mmap(mm)
        mmdrop(mm)
