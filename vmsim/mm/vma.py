"""VMA splitting, merging and unmapping (mm/vma.c).

6.18 merges with vma_merge_new_range() (a new mapping next to compatible VMAs) and
vma_merge_existing_range() (a flags change over part of a VMA); vmsim reaches the
same final layout by splitting at the range ends, applying the change and merging
the range with compatible neighbours (vma_modify()). munmap goes through
do_vmi_munmap -> do_vmi_align_munmap -> vms_gather_munmap_vmas (splits) ->
vms_complete_munmap_vmas -> vms_clear_ptes (unmap_vmas + free_pgtables).
"""
import errno

from vmsim.mm.mm_types import (vm_area_struct, VM_SOFTDIRTY, VM_SPECIAL, VM_LOCKED, VM_ACCOUNT,
                               VM_SHARED, VM_WRITE, VM_EXEC, VM_STACK, VM_GROWSDOWN,
                               VM_HUGETLB, VM_LOCKED_MASK)
from vmsim.mm.mmu_gather import tlb_gather_mmu, tlb_finish_mmu
from vmsim.mm.memory import unmap_vmas, free_pgtables, update_hiwater_rss
from vmsim.mm.swap import lru_add_drain

FIRST_USER_ADDRESS = 0
USER_PGTABLES_CEILING = 0
VM_STICKY = 0


def vma_had_uncowed_parents(vma) -> bool:
    """vma_had_uncowed_parents(): the VMA's anon_vma chain is not singular (forked)."""
    return vma is not None and vma.anon_vma is not None and len(vma.anon_vma_chain) != 1


def is_mergeable_anon_vma(src, tgt) -> bool:
    """is_mergeable_anon_vma(): one side without anon_vma merges only if the other
    side's anon_vma is not shared with a fork; else both must be the same."""
    if tgt.anon_vma is None and src.anon_vma is not None:
        return not vma_had_uncowed_parents(src)
    if tgt.anon_vma is not None and src.anon_vma is None:
        return not vma_had_uncowed_parents(tgt)
    return src.anon_vma is tgt.anon_vma


def is_mergeable_vma(vma, vm_flags, file, anon_name) -> bool:
    """is_mergeable_vma(): same flags (but VM_SOFTDIRTY), file, name; no ->close."""
    if (vma.vm_flags ^ vm_flags) & ~VM_SOFTDIRTY:
        return False
    if vma.vm_file is not file:
        return False
    if vma.anon_name != anon_name:
        return False
    return True


def can_merge(prev, nxt) -> bool:
    """Return whether VMA ``nxt`` directly following ``prev`` may become one VMA."""
    if prev.vm_end != nxt.vm_start:
        return False
    if prev.vm_flags & VM_SPECIAL or nxt.vm_flags & VM_SPECIAL:
        return False
    if not is_mergeable_vma(prev, nxt.vm_flags, nxt.vm_file, nxt.anon_name):
        return False
    if prev.vm_ops is not nxt.vm_ops and not (prev.vm_ops is None and nxt.vm_ops is None):
        if getattr(prev.vm_ops, "mapping", None) is not getattr(nxt.vm_ops, "mapping", 1):
            return False
    if not is_mergeable_anon_vma(nxt, prev):
        return False
    if prev.vm_pgoff + ((prev.vm_end - prev.vm_start) >> 12) != nxt.vm_pgoff:
        return False
    if prev.vm_private_data is not nxt.vm_private_data:
        return False
    return True


def vma_merge_pair(mm, prev, nxt):
    """Merge ``nxt`` into ``prev`` (commit_merge): prev grows, nxt goes away."""
    k = mm.kernel
    from vmsim.mm.rmap import unlink_anon_vmas, dup_anon_vma
    dup_anon_vma(prev, nxt)
    mm.vma_remove(nxt)
    unlink_anon_vmas(k, nxt)                  # anon_vma_merge()
    if nxt.vm_file is not None:
        fput(k, nxt.vm_file)
        nxt.vm_file = None
    mm.vma_update(prev, prev.vm_start, nxt.vm_end)
    return prev


def vma_try_merge(mm, vma):
    """Merge ``vma`` with its previous and next VMAs where can_merge() allows."""
    prev = mm.vma_prev(vma)
    if prev is not None and can_merge(prev, vma):
        vma = vma_merge_pair(mm, prev, vma)
    nxt = mm.vma_next(vma)
    if nxt is not None and can_merge(vma, nxt):
        vma = vma_merge_pair(mm, vma, nxt)
    return vma


def __split_vma(mm, vma, addr: int, new_below: bool):
    """__split_vma(): split at addr; return the new VMA (below or above addr), or -errno."""
    if vma.vm_ops is not None and getattr(vma.vm_ops, "may_split", None):
        err = vma.vm_ops.may_split(vma, addr)
        if err:
            return err
    new = vm_area_struct(mm, vma.vm_start, vma.vm_end, vma.vm_flags, vma.vm_page_prot,
                         vma.vm_pgoff, vma.vm_file, vma.vm_ops)
    new.vm_private_data = vma.vm_private_data
    new.anon_name = vma.anon_name
    if new.vm_file is not None:
        get_file(new.vm_file)
    if vma.anon_vma is not None:
        from vmsim.mm.rmap import anon_vma_clone
        new.anon_vma = vma.anon_vma                    # vm_area_dup() copied the pointer
        anon_vma_clone(new, vma)
    if getattr(vma.vm_ops, "open", None):
        vma.vm_ops.open(new)
    pgoff_delta = (addr - vma.vm_start) >> 12
    if new_below:
        new.vm_end = addr
        mm.vma_update(vma, addr, vma.vm_end)
        vma.vm_pgoff += pgoff_delta
    else:
        new.vm_start = addr
        new.vm_pgoff += pgoff_delta
        mm.vma_update(vma, vma.vm_start, addr)
    mm.vma_store(new)
    return new


def split_vma(mm, vma, addr: int, new_below: bool):
    """split_vma(): __split_vma() after the max_map_count check."""
    if mm.map_count >= int(mm.kernel.sysctl["/proc/sys/vm/max_map_count"]):
        return -errno.ENOMEM
    return __split_vma(mm, vma, addr, new_below)


def vma_modify(mm, vma, start: int, end: int, change):
    """vma_modify(): isolate [start, end) of ``vma`` (splitting), apply ``change``, merge.

    Returns the VMA now covering [start, end), or -errno from a failed split.
    """
    if vma.vm_start < start:
        r = split_vma(mm, vma, start, True)
        if isinstance(r, int):
            return r
    if vma.vm_end > end:
        r = split_vma(mm, vma, end, False)
        if isinstance(r, int):
            return r
    change(vma)
    return vma_try_merge(mm, vma)


def vm_stat_account(mm, flags: int, npages: int):
    """vm_stat_account(): total_vm, exec_vm, stack_vm, data_vm."""
    mm.total_vm += npages
    if is_exec_mapping(flags):
        mm.exec_vm += npages
    elif is_stack_mapping(flags):
        mm.stack_vm += npages
    elif is_data_mapping(flags):
        mm.data_vm += npages


def is_exec_mapping(flags):
    return (flags & (VM_EXEC | VM_WRITE | VM_STACK)) == VM_EXEC


def is_stack_mapping(flags):
    return (flags & VM_STACK) == VM_STACK


def is_data_mapping(flags):
    return (flags & (VM_WRITE | VM_SHARED | VM_STACK)) == VM_WRITE


def vms_clear_ptes(mm, vmas, start: int, end: int, unmap_start: int, unmap_end: int):
    """vms_clear_ptes(): unmap the detached VMAs' pages and free their page tables."""
    tlb = tlb_gather_mmu(mm)
    update_hiwater_rss(mm)
    unmap_vmas(tlb, vmas, start, end)
    free_pgtables(tlb, vmas, unmap_start, unmap_end)
    tlb_finish_mmu(tlb)


def do_vmi_align_munmap(mm, start: int, end: int, vmas) -> int:
    """do_vmi_align_munmap(): split the edge VMAs, detach, clear PTEs, account."""
    k = mm.kernel
    first = vmas[0]
    if start > first.vm_start:
        # Make sure that map_count on return from munmap() will not exceed its limit.
        if end < first.vm_end and mm.map_count >= int(k.sysctl["/proc/sys/vm/max_map_count"]):
            return -errno.ENOMEM
        r = __split_vma(mm, first, start, True)
        if isinstance(r, int):
            return r
    last = vmas[-1]
    if last.vm_end > end:
        r = __split_vma(mm, last, end, True)
        if isinstance(r, int):
            return r
        if last is first:
            pass
        vmas = mm.vmas_in(start, end)
    else:
        vmas = mm.vmas_in(start, end)
    prev = mm.vma_prev(vmas[0])
    nxt = mm.vma_next(vmas[-1])
    for vma in vmas:
        mm.vma_remove(vma)
    # vms_complete_munmap_vmas(): no lru_add_drain() here in 6.18 (the real kernel
    # keeps a pending MADV_FREE batch across an unrelated munmap).
    vms_clear_ptes(mm, vmas, start, end,
                   prev.vm_end if prev else FIRST_USER_ADDRESS,
                   nxt.vm_start if nxt else USER_PGTABLES_CEILING)
    update_hiwater_vm(mm)
    for vma in vmas:
        npages = (vma.vm_end - vma.vm_start) >> 12
        if vma.vm_flags & VM_LOCKED:
            mm.locked_vm -= npages
        vm_stat_account(mm, vma.vm_flags, -npages)
        if vma.vm_flags & VM_ACCOUNT:
            k.committed_as -= npages                      # vm_unacct_memory()
        remove_vma(k, vma)
    k.mmu_notifier_range_done(mm)
    return 0


def update_hiwater_vm(mm):
    """update_hiwater_vm(): remember the peak total_vm (VmPeak) before it drops."""
    if mm.hiwater_vm < mm.total_vm:
        mm.hiwater_vm = mm.total_vm


def remove_vma(k, vma):
    """remove_vma(): ->close and drop the file reference."""
    if getattr(vma.vm_ops, "close", None):
        vma.vm_ops.close(vma)
    if vma.vm_file is not None:
        fput(k, vma.vm_file)
    vma.vm_file = None


def get_file(file):
    """get_file(): one more reference to a struct file."""
    file.f_count += 1


def fput(k, file):
    """fput(): drop a reference; the last one releases the file."""
    file.f_count -= 1
    if file.f_count == 0 and hasattr(file, "release"):
        file.release(k)


def do_vmi_munmap(mm, start: int, length: int) -> int:
    """do_vmi_munmap(): checks, then unmap [start, start+len) if anything is there."""
    if start & 0xFFF or start > mm.task_size or length > mm.task_size - start:
        return -errno.EINVAL
    end = start + ((length + 0xFFF) & ~0xFFF)
    if end == start:
        return -errno.EINVAL
    vmas = mm.vmas_in(start, end)
    if not vmas:
        return 0
    return do_vmi_align_munmap(mm, start, end, vmas)
