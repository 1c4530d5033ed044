"""Tearing down an address space (mm/mmap.c exit_mmap, kernel/exit.c).

exit_mmap: mmu_notifier_release, lru_add_drain, tlb_gather_mmu_fullmm, unmap_vmas
over every VMA, free_pgtables from FIRST_USER_ADDRESS to USER_PGTABLES_CEILING,
tlb_finish_mmu, then remove_vma for each VMA and drop the accounting.
"""
from vmsim.mm.memory import unmap_vmas, free_pgtables, update_hiwater_rss
from vmsim.mm.mmu_gather import tlb_gather_mmu_fullmm, tlb_finish_mmu
from vmsim.mm.swap import lru_add_drain
from vmsim.mm.vma import remove_vma, FIRST_USER_ADDRESS, USER_PGTABLES_CEILING
from vmsim.mm.mm_types import VM_ACCOUNT


def mmu_notifier_release(mm):
    """mmu_notifier_release(): tell notifiers the mm is going (->release)."""
    for n in list(mm.mmu_notifiers):
        n("release", "release", 0, 0)
    mm.mmu_notifiers.clear()


def exit_mmap(mm):
    """exit_mmap(): unmap and free everything the mm maps."""
    k = mm.kernel
    mmu_notifier_release(mm)
    lru_add_drain(k)
    vmas = list(mm.mm_mt)
    tlb = tlb_gather_mmu_fullmm(mm)
    update_hiwater_rss(mm)
    if vmas:
        unmap_vmas(tlb, vmas, 0, (1 << 64) - 1)
        free_pgtables(tlb, vmas, FIRST_USER_ADDRESS, USER_PGTABLES_CEILING)
    tlb_finish_mmu(tlb)
    for vma in vmas:
        if vma.vm_flags & VM_ACCOUNT:
            k.committed_as -= (vma.vm_end - vma.vm_start) >> 12
        mm.vma_remove(vma)
        remove_vma(k, vma)
    mm.total_vm = mm.data_vm = mm.stack_vm = mm.exec_vm = mm.locked_vm = 0


def do_exit(k, task, code: int):
    """do_exit() -> exit_mm(): drop the task's mm and become a zombie."""
    mm = task.mm
    task.exit_code = code
    task.state = "Z"
    if mm is not None:
        task.mm = None
        for cpu in k.cpus:
            if cpu.loaded_mm is mm:
                cpu.loaded_mm = None
                cpu.cr3 = k.init_mm.pgd
        from vmsim.kernel.fork import mmput
        prev = k.current
        k.current = task
        try:
            mmput(mm)
        finally:
            k.current = prev if prev is not task else None
