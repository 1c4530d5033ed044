"""VMA splitting, merging and unmapping (mm/vma.c).

Merging follows 6.18: vma_merge_new_range() (mmap_region, brk: a new range next to
compatible VMAs expands one of them) and vma_merge_existing_range() (vma_modify: an
attribute change over the start or end of a VMA moves that part into prev or next),
both ending in vma_expand()/commit_merge(). mremap uses copy_vma() (through
_vma_merge_copied_range) and vma_merge_extend(). munmap goes through
do_vmi_munmap -> do_vmi_align_munmap -> vms_gather_munmap_vmas (splits) ->
vms_complete_munmap_vmas -> vms_clear_ptes (unmap_vmas + free_pgtables).
"""
import errno

from vmsim.mm.mm_types import (vm_area_struct, vma_is_anonymous, VM_SPECIAL, VM_IGNORE_MERGE,
                               VM_STICKY,
                               VM_LOCKED, VM_ACCOUNT, VM_SHARED, VM_WRITE, VM_EXEC, VM_STACK,
                               VM_HUGETLB)
from vmsim.mm.mmu_gather import tlb_gather_mmu, tlb_finish_mmu
from vmsim.mm.memory import unmap_vmas, free_pgtables, update_hiwater_rss
# Module-level imports for what every merge, split and unmap calls (an import statement
# inside a function costs ~3 us a call on this Python; memory.py has loaded both).
from vmsim.mm.huge_memory import vma_adjust_trans_huge
from vmsim.mm.rmap import dup_anon_vma, unlink_anon_vmas, anon_vma_clone

FIRST_USER_ADDRESS = 0
USER_PGTABLES_CEILING = 0


# --- vma_merge_struct and 6.18's merge (mm/vma.h, mm/vma.c) ------------------------
VMA_MERGE_START, VMA_MERGE_ERROR_NOMEM, VMA_MERGE_NOMERGE, VMA_MERGE_SUCCESS = range(4)


class vma_merge_struct:
    """struct vma_merge_struct (mm/vma.h). The vma iterator, mempolicy and uffd
    context are not modelled (vmsim has neither NUMA policies nor userfaultfd).
    The hot callers (mmap_region, VMG_VMA_STATE) build it with _vmg_state()."""
    __slots__ = ("mm", "prev", "middle", "next", "target", "start", "end", "pgoff",
                 "vm_flags", "file", "anon_vma", "anon_name", "copied_from", "state",
                 "just_expand", "give_up_on_oom", "remove_middle", "remove_next",
                 "adjust_middle_start", "adjust_next_start")

    def __init__(self, mm, prev=None, middle=None, next=None, start=0, end=0, pgoff=0,
                 vm_flags=0, file=None, anon_vma=None, anon_name=None, copied_from=None,
                 state=VMA_MERGE_START, just_expand=False, give_up_on_oom=False):
        self.mm = mm
        self.prev = prev
        self.middle = middle
        self.next = next
        self.target = None
        self.start = start
        self.end = end
        self.pgoff = pgoff
        self.vm_flags = vm_flags
        self.file = file
        self.anon_vma = anon_vma
        self.anon_name = anon_name
        self.copied_from = copied_from
        self.state = state
        self.just_expand = just_expand
        self.give_up_on_oom = give_up_on_oom
        self.remove_middle = self.remove_next = False            # __remove_middle, ...
        self.adjust_middle_start = self.adjust_next_start = False


_object_new = object.__new__


def _vmg_state(mm, prev, middle, nxt, start: int, end: int, pgoff: int, vm_flags: int,
               file, anon_vma=None, anon_name=None):
    """A vma_merge_struct with these fields and the rest zero, as the VMG_STATE /
    VMG_MMAP_STATE / VMG_VMA_STATE initialisers build it on the stack: every mmap
    builds one, and a class call with __init__ costs twice this on this Python."""
    vmg = _object_new(vma_merge_struct)
    vmg.mm = mm
    vmg.prev = prev
    vmg.middle = middle
    vmg.next = nxt
    vmg.start = start
    vmg.end = end
    vmg.pgoff = pgoff
    vmg.vm_flags = vm_flags
    vmg.file = file
    vmg.anon_vma = anon_vma
    vmg.anon_name = anon_name
    vmg.target = vmg.copied_from = None
    vmg.state = VMA_MERGE_START
    vmg.just_expand = vmg.give_up_on_oom = vmg.remove_middle = vmg.remove_next = \
        vmg.adjust_middle_start = vmg.adjust_next_start = False
    return vmg


def VMG_VMA_STATE(mm, prev, vma, start: int, end: int):
    """VMG_VMA_STATE(): a vmg describing [start, end) of the existing ``vma``."""
    return _vmg_state(mm, prev, vma, None, start, end,
                      vma.vm_pgoff + ((start - vma.vm_start) >> 12),
                      vma.vm_flags, vma.vm_file, vma.anon_vma, vma.anon_name)


def vma_is_fork_child(vma) -> bool:
    """vma_is_fork_child(): the VMA has an anon_vma whose chain is not singular
    (it was forked from a parent, so its pages may be CoW-shared).

    6.18.2 names it vma_had_uncowed_parents(); renamed, and also applied to
    vmg->copied_from, by upstream 3b617fd3d317 "mm/vma: enforce VMA fork limit on
    unfaulted,faulted mremap merge too", in 6.18.y as of 6.18.8 (tests/test_vma_merge.py
    test_mremap_move_back_next_to_unfaulted: the layouts measured on this kernel).
    """
    return vma is not None and vma.anon_vma is not None and len(vma.anon_vma_chain) != 1


def _is_mergeable_anon_vma(vmg, merge_next: bool) -> bool:
    """is_mergeable_anon_vma() (the vmg form): tgt is next or prev, src the middle."""
    tgt = vmg.next if merge_next else vmg.prev
    src = vmg.middle
    tgt_anon = tgt.anon_vma
    src_anon = vmg.anon_vma
    # Case 1 - we will dup_anon_vma() from src into tgt.
    if tgt_anon is None and src_anon is not None:
        if vma_is_fork_child(src):
            return False
        if vma_is_fork_child(vmg.copied_from):
            return False
        return True
    # Case 2 - we will simply use tgt's anon_vma.
    if tgt_anon is not None and src_anon is None:
        return not vma_is_fork_child(tgt)
    # Case 3 - the anon_vma's are already shared.
    return src_anon is tgt_anon


def can_vma_merge_before(vmg) -> bool:
    """can_vma_merge_before(): the range may merge in front of vmg.next. The
    is_mergeable_vma() test is written out (every mmap next to a VMA runs it); so is
    is_mergeable_anon_vma()'s answer when neither side has an anon_vma."""
    nxt = vmg.next
    if ((nxt.vm_flags ^ vmg.vm_flags) & ~VM_IGNORE_MERGE or nxt.vm_file is not vmg.file or
            nxt.anon_name != vmg.anon_name):
        return False
    if (nxt.anon_vma is not None or vmg.anon_vma is not None) and \
            not _is_mergeable_anon_vma(vmg, True):
        return False
    return nxt.vm_pgoff == vmg.pgoff + ((vmg.end - vmg.start) >> 12)


def can_vma_merge_after(vmg) -> bool:
    """can_vma_merge_after(): the range may merge after vmg.prev (is_mergeable_vma()
    written out, as in can_vma_merge_before)."""
    prev = vmg.prev
    if ((prev.vm_flags ^ vmg.vm_flags) & ~VM_IGNORE_MERGE or prev.vm_file is not vmg.file or
            prev.anon_name != vmg.anon_name):
        return False
    if (prev.anon_vma is not None or vmg.anon_vma is not None) and \
            not _is_mergeable_anon_vma(vmg, False):
        return False
    return prev.vm_pgoff + ((prev.vm_end - prev.vm_start) >> 12) == vmg.pgoff


def can_vma_merge_left(vmg) -> bool:
    """can_vma_merge_left(): prev ends at vmg.start and is compatible."""
    return vmg.prev is not None and vmg.prev.vm_end == vmg.start and can_vma_merge_after(vmg)


def can_vma_merge_right(vmg, can_merge_left: bool) -> bool:
    """can_vma_merge_right(): next starts at vmg.end and is compatible; when prev
    merges too, prev's and next's anon_vmas must also be compatible with each other."""
    nxt = vmg.next
    if nxt is None or vmg.end != nxt.vm_start or not can_vma_merge_before(vmg):
        return False
    if not can_merge_left:
        return True
    prev = vmg.prev
    return prev.anon_vma is None or nxt.anon_vma is None or prev.anon_vma is nxt.anon_vma


def can_merge_remove_vma(vma) -> bool:
    """can_merge_remove_vma(): only VMAs without a ->close hook may be removed."""
    return vma.vm_ops is None or not getattr(vma.vm_ops, "close", None)


def _dup_anon_vma(dst, src, dups: list) -> int:
    """dup_anon_vma() (mm/vma.c), remembering dst for the abort path."""
    if src.anon_vma is not None and dst.anon_vma is None:
        ret = dup_anon_vma(dst, src)
        dups.append(dst)
        return ret
    return 0


def _undo_anon_dup(mm, dups):
    for v in dups:
        unlink_anon_vmas(mm.kernel, v)


def commit_merge(vmg) -> int:
    """commit_merge(): set the range of the VMA being expanded (or of middle when
    next absorbs part of it), move the adjusted VMA's start, and remove the VMAs the
    merge swallows (vma_complete: fput, unlink_anon_vmas, map_count), splitting huge
    PMDs at the moved boundaries first (vma_adjust_trans_huge)."""
    mm = vmg.mm
    vma = vmg.middle if vmg.adjust_next_start else vmg.target
    if vmg.adjust_middle_start:
        adjust = vmg.middle
        adj_pgoff = adjust.vm_pgoff + ((vmg.end - adjust.vm_start) >> 12)
    elif vmg.adjust_next_start:
        adjust = vmg.next
        adj_pgoff = adjust.vm_pgoff - ((adjust.vm_start - vmg.end) >> 12)
    else:
        adjust = None
    vma_adjust_trans_huge(vma, vmg.start, vmg.end, adjust)
    # Take the swallowed VMAs out of the tree, then give the survivors their new
    # ranges in place (vma_iter_store_overwrite over [start, end)), the one that
    # shrinks first so the ranges never overlap.
    removed = ()
    if vmg.remove_middle or vmg.remove_next:
        removed = [v for v, r in ((vmg.middle, vmg.remove_middle), (vmg.next, vmg.remove_next))
                   if r]
        for v in removed:
            mm._vma_remove(v)
    if adjust is None:
        mm._vma_update(vma, vmg.start, vmg.end)
        vma.vm_pgoff = vmg.pgoff
        if not removed:
            return 0
    else:
        if not vmg.adjust_next_start:
            mm._vma_update(adjust, vmg.end, adjust.vm_end)
        mm._vma_update(vma, vmg.start, vmg.end)
        vma.vm_pgoff = vmg.pgoff
        if vmg.adjust_next_start:
            mm._vma_update(adjust, vmg.end, adjust.vm_end)
        adjust.vm_pgoff = adj_pgoff
    k = mm.kernel
    for v in removed:                                  # vma_complete(): vp->remove
        if vma.vm_file is not None and v.vm_file is not None:
            fput(k, v.vm_file)
        v.vm_file = None
        if v.anon_vma is not None or v.anon_vma_chain:
            unlink_anon_vmas(k, v)
    return 0


def vma_merge_existing_range(vmg):
    """vma_merge_existing_range(): [vmg.start, vmg.end) of vmg.middle is getting the
    attributes in vmg; merge it into prev and/or next when they match. Returns the
    VMA the range now belongs to (prev or next, which survive; middle survives only
    shrunk), or None (vmg.state says NOMERGE or ERROR_NOMEM). Sticky flags of the
    range and of the VMAs it merges with end up on the target."""
    sticky_flags = vmg.vm_flags & VM_STICKY
    middle, prev = vmg.middle, vmg.prev
    start, end = vmg.start, vmg.end
    left_side = middle is not None and start == middle.vm_start
    right_side = middle is not None and end == middle.vm_end
    vmg.state = VMA_MERGE_NOMERGE
    # A special mapping, or a range strictly inside the VMA, can never merge.
    if vmg.vm_flags & VM_SPECIAL or (not left_side and not right_side):
        return None
    merge_left = can_vma_merge_left(vmg) if left_side else False
    if right_side:
        nxt = vmg.next = vmg.mm.vma_next(middle)
        merge_right = can_vma_merge_right(vmg, merge_left)
    else:
        merge_right = False
        nxt = None
    if not merge_left and not merge_right:
        return None
    merge_both = merge_left and merge_right
    # If we span the entire VMA, a merge implies it will be deleted.
    vmg.remove_middle = left_side and right_side
    if vmg.remove_middle and not can_merge_remove_vma(middle):
        return None
    vmg.remove_next = merge_both
    # If next cannot be deleted, reduce the operation to merging prev and middle.
    if vmg.remove_next and not can_merge_remove_vma(nxt):
        vmg.remove_next = False
        merge_right = merge_both = False
    if merge_right:
        vmg.target = nxt
        sticky_flags |= nxt.vm_flags & VM_STICKY
    if merge_left:
        vmg.target = prev
        sticky_flags |= prev.vm_flags & VM_STICKY
    dups = []
    if merge_both:
        vmg.start, vmg.end, vmg.pgoff = prev.vm_start, nxt.vm_end, prev.vm_pgoff
        err = _dup_anon_vma(prev, nxt if nxt.anon_vma is not None else middle, dups)
    elif merge_left:
        vmg.start, vmg.pgoff = prev.vm_start, prev.vm_pgoff
        if not vmg.remove_middle:
            vmg.adjust_middle_start = True
        err = _dup_anon_vma(prev, middle, dups)
    else:
        pglen = (vmg.end - vmg.start) >> 12
        if vmg.remove_middle:
            vmg.end = nxt.vm_end
            vmg.pgoff = nxt.vm_pgoff - pglen
        else:
            # We shrink middle and expand next.
            vmg.adjust_next_start = True
            vmg.start, vmg.end, vmg.pgoff = middle.vm_start, start, middle.vm_pgoff
        err = _dup_anon_vma(nxt, middle, dups)
    if err or commit_merge(vmg):
        _undo_anon_dup(vmg.mm, dups)
        if not vmg.give_up_on_oom:
            vmg.state = VMA_MERGE_ERROR_NOMEM
        return None
    vmg.target.vm_flags |= sticky_flags                # vm_flags_set()
    vmg.state = VMA_MERGE_SUCCESS
    return vmg.target


def vma_expand(vmg) -> int:
    """vma_expand(): grow vmg.target to [vmg.start, vmg.end), swallowing vmg.next
    when the range ends at its end; 0 or -ENOMEM.

    The dup_anon_vma() from vmg.copied_from is upstream 61f67c230a5e (6.18.y as of
    6.18.8); the sticky flags, 64212ba02e66 (6.18.y by 6.18.44, see VM_STICKY).
    """
    target, nxt = vmg.target, vmg.next
    sticky_flags = (vmg.vm_flags | target.vm_flags) & VM_STICKY
    remove_next = nxt is not None and target is not nxt and vmg.end == nxt.vm_end
    if remove_next:
        sticky_flags |= nxt.vm_flags & VM_STICKY
    dups = []
    ret = 0
    # Removing next or copying from a VMA (mremap): propagate anon_vma state.
    if remove_next:
        ret = _dup_anon_vma(target, nxt, dups)
    if not ret and vmg.copied_from is not None:
        ret = _dup_anon_vma(target, vmg.copied_from, dups)
    if ret:
        return ret
    if remove_next:
        vmg.remove_next = True
    if commit_merge(vmg):
        _undo_anon_dup(vmg.mm, dups)
        if not vmg.give_up_on_oom:
            vmg.state = VMA_MERGE_ERROR_NOMEM
        return -errno.ENOMEM
    target.vm_flags |= sticky_flags                    # vm_flags_set()
    return 0


def vma_shrink(mm, vma, start: int, end: int, pgoff: int) -> int:
    """vma_shrink(): cut vma down to [start, end) (one end stays put); 0."""
    assert vma.vm_start == start or vma.vm_end == end
    vma_adjust_trans_huge(vma, start, end, None)
    mm._vma_remove(vma)
    vma.vm_start, vma.vm_end, vma.vm_pgoff = start, end, pgoff
    vma.detached = False
    mm._vma_store(vma)
    return 0


def vma_merge_new_range(vmg):
    """vma_merge_new_range(): a new mapping [vmg.start, vmg.end) is about to go in
    between vmg.prev and vmg.next; expand prev (absorbing next too when both match)
    or next instead of creating a VMA. Returns the expanded VMA or None.
    vmg.just_expand (brk) only tries prev."""
    prev, nxt = vmg.prev, vmg.next
    end = vmg.end
    vmg.state = VMA_MERGE_NOMERGE
    # Special VMAs are unmergeable, also if no prev/next.
    if vmg.vm_flags & VM_SPECIAL or (prev is None and nxt is None):
        return None
    can_merge_left = can_vma_merge_left(vmg)
    can_merge_right = not vmg.just_expand and can_vma_merge_right(vmg, can_merge_left)
    if can_merge_right:
        vmg.end = nxt.vm_end
        vmg.target = nxt
    if can_merge_left:
        vmg.start, vmg.target, vmg.pgoff = prev.vm_start, prev, prev.vm_pgoff
        # Removing next is not permitted: reduce to merging prev and the range.
        if can_merge_right and not can_merge_remove_vma(nxt):
            vmg.end = end
    if vmg.target is not None and not vma_expand(vmg):
        vmg.state = VMA_MERGE_SUCCESS
        return vmg.target
    return None


def _vma_merge_copied_range(vmg):
    """_vma_merge_copied_range(): vma_merge_new_range() for mremap's copy; vmg.middle
    holds the VMA being copied and becomes vmg.copied_from (anon_vma state is then
    propagated from it by vma_expand).

    Not in 6.18.2: upstream 61f67c230a5e "mm/vma: fix anon_vma UAF on mremap()
    faulted, unfaulted merge", in 6.18.y as of 6.18.8.
    """
    vmg.copied_from = vmg.middle
    vmg.middle = None
    return vma_merge_new_range(vmg)


def vma_merge_extend(vma, delta: int):
    """vma_merge_extend(): grow vma by delta in place (mremap), as a new range right
    after it with vma as prev, so next is absorbed when it becomes adjacent and
    compatible. The merged VMA, or None (VM_SPECIAL, or the merge failed)."""
    mm = vma.vm_mm
    vmg = VMG_VMA_STATE(mm, vma, vma, vma.vm_end, vma.vm_end + delta)
    vmg.next = mm.vma_next(vma)                        # vma_iter_next_rewind()
    vmg.middle = None        # We use the VMA to populate VMG fields only.
    return vma_merge_new_range(vmg)


def copy_vma(vma, addr: int, length: int, pgoff: int):
    """copy_vma(): a VMA like ``vma`` at [addr, addr+len) for an mremap move, merged
    into a neighbour (_vma_merge_copied_range) when possible, else a vm_area_dup()
    linked in. The kernel's **vmap and *need_rmap_locks become the returned tuple
    (new_vma, vma, need_rmap_locks): vma is the VMA that now holds the source, which
    differs only when an unfaulted anonymous source was merged into the copy.
    new_vma is None on failure. vmsim has no mempolicy or uprobes."""
    mm = vma.vm_mm
    vma_start = vma.vm_start
    faulted_in_anon_vma = True
    vmg = VMG_VMA_STATE(mm, None, vma, addr, addr + length)
    # If anonymous vma has not yet been faulted, update new pgoff to match new
    # location, to increase its chance of merging.
    if vma_is_anonymous(vma) and vma.anon_vma is None:
        pgoff = addr >> 12
        faulted_in_anon_vma = False
    new_vma, vmg.prev = mm.find_vma_prev(addr)
    if new_vma is not None and new_vma.vm_start < addr + length:
        return None, vma, False                        # should never get here
    vmg.pgoff = pgoff
    vmg.next = new_vma                                 # vma_iter_next_rewind()
    new_vma = _vma_merge_copied_range(vmg)
    if new_vma is not None:
        # Source vma may have been merged into new_vma: only possible when it was
        # never faulted and its pgoff was reset to the destination above.
        if new_vma.vm_start <= vma_start < new_vma.vm_end:
            assert not faulted_in_anon_vma
            vma = new_vma
        return new_vma, vma, new_vma.vm_pgoff <= vma.vm_pgoff
    new_vma = vm_area_struct(mm, addr, addr + length, vma.vm_flags, vma.vm_page_prot, pgoff,
                             vma.vm_file, vma.vm_ops)
    new_vma.vm_private_data = vma.vm_private_data
    new_vma.anon_name = vma.anon_name
    if vma.anon_vma is not None:
        new_vma.anon_vma = vma.anon_vma                # vm_area_dup() copied the pointer
        anon_vma_clone(new_vma, vma)
    if new_vma.vm_file is not None:
        get_file(new_vma.vm_file)
    if getattr(new_vma.vm_ops, "open", None):
        new_vma.vm_ops.open(new_vma)
    mm._vma_store(new_vma)                              # vma_link()
    return new_vma, vma, False


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
        new.anon_vma = vma.anon_vma                    # vm_area_dup() copied the pointer
        anon_vma_clone(new, vma)
    if getattr(vma.vm_ops, "open", None):
        vma.vm_ops.open(new)
    # Get rid of shared page tables straddling the split boundary.
    if vma.vm_flags & VM_HUGETLB:
        from vmsim.mm.hugetlb import hugetlb_split
        hugetlb_split(vma, addr)
    vma_adjust_trans_huge(vma, vma.vm_start, addr, None)   # vma_prepare(): split huge PMDs at addr
    pgoff_delta = (addr - vma.vm_start) >> 12
    if new_below:
        new.vm_end = addr
        mm._vma_update(vma, addr, vma.vm_end)
        vma.vm_pgoff += pgoff_delta
    else:
        new.vm_start = addr
        new.vm_pgoff += pgoff_delta
        mm._vma_update(vma, vma.vm_start, addr)
    mm._vma_store(new)
    return new


def split_vma(mm, vma, addr: int, new_below: bool):
    """split_vma(): __split_vma() after the max_map_count check."""
    if mm.map_count >= mm.kernel.sysctl_max_map_count:
        return -errno.ENOMEM
    return __split_vma(mm, vma, addr, new_below)


def vma_modify(mm, vma, start: int, end: int, change, prev=None):
    """vma_modify() (behind vma_modify_flags / vma_modify_name): try
    vma_merge_existing_range() with the attributes ``change`` sets; if nothing
    merges, split off the parts of ``vma`` outside [start, end). ``change`` is then
    applied to the returned VMA, as the kernel's callers (mprotect_fixup,
    madvise_update_vma, mlock_fixup) set the new flags on it.

    ``prev`` is the caller's prev (the VMA before ``vma``, or ``vma`` itself when
    start is inside it); derived from the tree when not given. Returns the VMA now
    covering [start, end), or -errno.
    """
    if prev is None:
        prev = vma if start > vma.vm_start else mm.vma_prev(vma)
    # The kernel's callers pass the new attributes in the vmg; vmsim's pass a
    # function, so apply it to a detached copy to learn them.
    probe = vm_area_struct(mm, vma.vm_start, vma.vm_end, vma.vm_flags, vma.vm_page_prot,
                           vma.vm_pgoff, vma.vm_file, vma.vm_ops)
    probe.vm_private_data = vma.vm_private_data
    probe.anon_name = vma.anon_name
    probe.detached = True
    change(probe)
    vmg = VMG_VMA_STATE(mm, prev, vma, start, end)
    vmg.vm_flags = probe.vm_flags
    vmg.anon_name = probe.anon_name
    merged = vma_merge_existing_range(vmg)
    if merged is not None:
        # vma_modify_flags() hands the merged VMA's flags back to the caller, so the
        # flags it then sets keep the sticky ones the merge retained.
        sticky = merged.vm_flags & VM_STICKY
        change(merged)
        merged.vm_flags |= sticky
        return merged
    if vmg.state == VMA_MERGE_ERROR_NOMEM:
        return -errno.ENOMEM
    # Split any preceding portion of the VMA.
    if vma.vm_start < start:
        r = split_vma(mm, vma, start, True)
        if isinstance(r, int):
            return r
    # Split any trailing portion of the VMA.
    if vma.vm_end > end:
        r = split_vma(mm, vma, end, False)
        if isinstance(r, int):
            return r
    change(vma)
    return vma


def vm_stat_account(mm, flags: int, npages: int):
    """vm_stat_account(): total_vm, exec_vm, stack_vm, data_vm (the is_*_mapping()
    tests written out: they are static inline, and this runs on every mmap)."""
    mm.total_vm += npages
    if (flags & (VM_EXEC | VM_WRITE | VM_STACK)) == VM_EXEC:            # is_exec_mapping()
        mm.exec_vm += npages
    elif (flags & VM_STACK) == VM_STACK:                                # is_stack_mapping()
        mm.stack_vm += npages
    elif (flags & (VM_WRITE | VM_SHARED | VM_STACK)) == VM_WRITE:       # is_data_mapping()
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


def vms_gather_munmap_vmas(mm, start: int, end: int, vmas) -> int:
    """vms_gather_munmap_vmas(): split the VMAs at the edges of [start, end) so whole
    VMAs can be detached; 0 or -errno. The splits stay if the caller then aborts
    (vms_abort_munmap_vmas reattaches the pieces)."""
    k = mm.kernel
    first = vmas[0]
    if start > first.vm_start:
        # Make sure that map_count on return from munmap() will not exceed its limit.
        if end < first.vm_end and mm.map_count >= k.sysctl_max_map_count:
            return -errno.ENOMEM
        r = __split_vma(mm, first, start, True)
        if isinstance(r, int):
            return r
    last = vmas[-1]
    if last.vm_end > end:
        r = __split_vma(mm, last, end, True)
        if isinstance(r, int):
            return r
    return 0


def do_vmi_align_munmap(mm, start: int, end: int, vmas) -> int:
    """do_vmi_align_munmap(): split the edge VMAs, detach, clear PTEs, account."""
    k = mm.kernel
    err = vms_gather_munmap_vmas(mm, start, end, vmas)
    if err:
        return err
    vmas = mm._vmas_in(start, end)
    prev = mm.vma_prev(vmas[0])
    nxt = mm.vma_next(vmas[-1])
    for vma in vmas:
        mm._vma_remove(vma)
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
    k._mmu_notifier_range_done(mm)
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
    vmas = mm._vmas_in(start, end)
    if not vmas:
        return 0
    return do_vmi_align_munmap(mm, start, end, vmas)
