"""mremap(2) (mm/mremap.c).

do_mremap -> check_mremap_params, then (6.17+) remap_move for a pure MREMAP_FIXED
move (every VMA of the range moves, gaps kept), else check_prep_vma and either
mremap_to (MREMAP_FIXED / MREMAP_DONTUNMAP) or mremap_at (shrink in place, expand
in place with vma_merge_extend, or move). move_vma -> copy_vma_and_data ->
copy_vma + move_page_tables (copy_vma and vma_merge_extend live in mm/vma.py, as in
mm/vma.c): whole PUD/PMD entries are moved when the extent is a
whole aligned table at both ends (move_normal_pud / move_normal_pmd, after
try_realign_addr), PTEs one by one otherwise (move_ptes); the physical pages stay,
and anon folios keep their index because the new VMA keeps the linear vm_pgoff.
The source is then unmapped (unmap_source_vma), or with MREMAP_DONTUNMAP left
mapped but empty (dontunmap_complete).

Not modelled: hugetlb VMAs (the hugetlb issue), huge PMDs (THP issue), uffd,
vm_ops->may_split other than through split_vma, and the copy failure rollback
(page-table allocation failure in move_page_tables).
"""
import errno

from vmsim.arch.x86 import pgtable_types as T
from vmsim.arch.x86.pgtable import pgd_offset, p4d_offset, pud_offset, pmd_offset, pte_offset_map
from vmsim.arch.x86.pgtable import (get_and_clear_ptes, set_ptes, pmd_clear, pmd_populate,
                                    pud_clear, pud_populate)
from vmsim.arch.x86.mm.tlb import _note_downgrade, flush_tlb_range
from vmsim.mm.mm_types import (VM_ACCOUNT, VM_LOCKED, VM_LOCKED_MASK, VM_SHARED,
                               VM_MAYSHARE, VM_DONTEXPAND, VM_PFNMAP, VM_HUGETLB)
from vmsim.uapi import MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP

_U64 = (1 << 64) - 1
_P = T._PAGE_PRESENT
_PROTNONE = T._PAGE_PROTNONE
_PSE = T._PAGE_PSE
PMD_SIZE = T.PMD_SIZE
PUD_SIZE = T.PUD_SIZE
MAP_SHARED = 0x01
MAP_FIXED = 0x10

MREMAP_INVALID, MREMAP_NO_RESIZE, MREMAP_SHRINK, MREMAP_EXPAND = range(4)


class vma_remap_struct:
    """struct vma_remap_struct: the state of one mremap() call."""

    def __init__(self, mm, addr, old_len, new_len, flags, new_addr):
        self.mm = mm
        self.addr = addr
        self.old_len = old_len
        self.new_len = new_len
        self.flags = flags
        self.new_addr = new_addr
        self.vma = None
        self.delta = 0
        self.charged = 0
        self.mlocked = False
        self.remap_type = MREMAP_INVALID
        self.populate_expand = False


class pagetable_move_control:
    """struct pagetable_move_control (PAGETABLE_MOVE)."""

    def __init__(self, old, new, old_addr, new_addr, length):
        self.old = old
        self.new = new
        self.old_addr = old_addr
        self.new_addr = new_addr
        self.old_end = old_addr + length
        self.len_in = length
        self.need_rmap_locks = False
        self.for_stack = False


# --- moving page tables -----------------------------------------------------------
def get_extent(size: int, pmc) -> int:
    """get_extent(): bytes to the next table boundary at both ends, within the range."""
    mask = ~(size - 1) & _U64
    old_addr, new_addr = pmc.old_addr, pmc.new_addr
    extent = (((old_addr + size) & mask) - old_addr) & _U64
    extent = min(extent, pmc.old_end - old_addr)
    extent = min(extent, (((new_addr + size) & mask) - new_addr) & _U64)
    return extent


def get_old_pud(mm, addr: int) -> int:
    """get_old_pud(): the PUD entry pointer of addr, or -1 if a level is empty."""
    pool = mm.kernel.ptpool.mv
    pgdp = pgd_offset(mm, addr)
    if not pool[pgdp]:
        return -1
    p4dp = p4d_offset(mm, pgdp, addr)
    if not pool[p4dp]:
        return -1
    pudp = pud_offset(mm, p4dp, addr)
    return pudp if pool[pudp] else -1


def get_old_pmd(mm, addr: int) -> int:
    pudp = get_old_pud(mm, addr)
    if pudp < 0:
        return -1
    pmdp = pmd_offset(mm, pudp, addr)
    return pmdp if mm.kernel.ptpool.mv[pmdp] else -1


def alloc_new_pud(mm, addr: int) -> int:
    from vmsim.mm.memory import p4d_alloc, pud_alloc
    p4dp = p4d_alloc(mm, pgd_offset(mm, addr), addr)
    if p4dp < 0:
        return -1
    return pud_alloc(mm, p4dp, addr)


def alloc_new_pmd(mm, addr: int) -> int:
    from vmsim.mm.memory import pmd_alloc
    pudp = alloc_new_pud(mm, addr)
    if pudp < 0:
        return -1
    return pmd_alloc(mm, pudp, addr)


def move_ptes(pmc, extent: int, old_pmd: int, new_pmd: int) -> int:
    """move_ptes(): move each PTE of the extent; flush the old range if any was present."""
    vma = pmc.old
    mm = vma.vm_mm
    pool = mm.kernel.ptpool.mv
    old_addr, new_addr = pmc.old_addr, pmc.new_addr
    old_end = old_addr + extent
    old_ptep = pte_offset_map(mm, old_pmd, old_addr)
    new_ptep = pte_offset_map(mm, new_pmd, new_addr)
    force_flush = False
    while old_addr < old_end:
        pte = pool[old_ptep]
        if pte:
            if pte & (_P | _PROTNONE):
                force_flush = True
                _note_downgrade(mm, old_addr, old_addr + 4096)
            pte = get_and_clear_ptes(mm, old_addr, old_ptep, 1)
            set_ptes(mm, new_addr, new_ptep, pte, 1)     # move_pte() is a no-op on x86
        old_addr += 4096
        new_addr += 4096
        old_ptep += 1
        new_ptep += 1
    if force_flush:
        flush_tlb_range(vma, old_end - extent, old_end)
    return 0


def move_normal_pmd(pmc, old_pmd: int, new_pmd: int) -> bool:
    """move_normal_pmd(): hand the whole PTE table over to the new PMD entry."""
    vma = pmc.old
    mm = vma.vm_mm
    pool = mm.kernel.ptpool.mv
    # The destination pmd shouldn't be established, free_pgtables() should have released it.
    if pool[new_pmd]:
        return False
    pmd = pool[old_pmd]
    if not pmd & _P or pmd & _PSE:
        return False
    pmd_clear(mm, old_pmd)
    pmd_populate(mm, new_pmd, (pmd & T.PTE_PFN_MASK) >> 12)     # pmd_pgtable(pmd)
    _note_downgrade(mm, pmc.old_addr, pmc.old_addr + PMD_SIZE)
    flush_tlb_range(vma, pmc.old_addr, pmc.old_addr + PMD_SIZE)
    return True


def move_normal_pud(pmc, old_pud: int, new_pud: int) -> bool:
    """move_normal_pud(): hand the whole PMD table over to the new PUD entry."""
    vma = pmc.old
    mm = vma.vm_mm
    pool = mm.kernel.ptpool.mv
    if pool[new_pud]:
        return False
    pud = pool[old_pud]
    if not pud & _P or pud & _PSE:
        return False
    pud_clear(mm, old_pud)
    pud_populate(mm, new_pud, (pud & T.PTE_PFN_MASK) >> 12)     # pud_pgtable(pud)
    _note_downgrade(mm, pmc.old_addr, pmc.old_addr + PUD_SIZE)
    flush_tlb_range(vma, pmc.old_addr, pmc.old_addr + PUD_SIZE)
    return True


def can_align_down(pmc, vma, addr_to_align: int, mask: int) -> bool:
    """can_align_down(): the VMA starts at addr and nothing is mapped below it to the boundary."""
    addr_masked = addr_to_align & mask
    if not pmc.for_stack and vma.vm_start != addr_to_align:
        return False
    if pmc.for_stack and addr_masked >= vma.vm_start:
        return True
    return not vma.vm_mm._vmas_in(addr_masked, vma.vm_start)


def try_realign_addr(pmc, pagetable_mask: int):
    """try_realign_addr(): start the copy at the table boundary when both ends are at
    the same offset and nothing lies below, so whole tables can move."""
    align_mask = ~pagetable_mask & _U64
    old_align = pmc.old_addr & align_mask
    new_align = pmc.new_addr & align_mask
    old_align_next = align_mask + 1 - old_align
    if pmc.len_in < old_align_next or old_align == 0 or old_align != new_align:
        return
    if not can_align_down(pmc, pmc.old, pmc.old_addr, pagetable_mask) or \
            not can_align_down(pmc, pmc.new, pmc.new_addr, pagetable_mask):
        return
    pmc.old_addr &= pagetable_mask
    pmc.new_addr &= pagetable_mask


def pmc_progress(pmc) -> int:
    orig_old_addr = pmc.old_end - pmc.len_in
    return 0 if pmc.old_addr < orig_old_addr else pmc.old_addr - orig_old_addr


def move_page_tables(pmc) -> int:
    """move_page_tables(): move [old_addr, old_end) to new_addr; return bytes moved."""
    from vmsim.mm.memory import pte_alloc
    if not pmc.len_in:
        return 0
    vma = pmc.old
    mm = vma.vm_mm
    k = mm.kernel
    pool = k.ptpool.mv
    if vma.vm_flags & VM_HUGETLB:
        from vmsim.mm.hugetlb import move_hugetlb_page_tables
        return move_hugetlb_page_tables(pmc.old, pmc.new, pmc.old_addr, pmc.new_addr,
                                        pmc.len_in)
    try_realign_addr(pmc, ~(PMD_SIZE - 1) & _U64)
    k.mmu_notifier_invalidate_range_start(mm, "unmap", pmc.old_addr, pmc.old_end)
    while pmc.old_addr < pmc.old_end:
        extent = get_extent(PUD_SIZE, pmc)
        old_pud = get_old_pud(mm, pmc.old_addr)
        if old_pud >= 0:
            new_pud = alloc_new_pud(mm, pmc.new_addr)
            if new_pud < 0:
                break
            if pool[old_pud] & _PSE:
                raise NotImplementedError("huge PUD mappings (THP) are not modelled")
            if extent == PUD_SIZE and move_normal_pud(pmc, old_pud, new_pud):
                pmc.old_addr += extent
                pmc.new_addr += extent
                continue
            extent = get_extent(PMD_SIZE, pmc)
            old_pmd = get_old_pmd(mm, pmc.old_addr)
            if old_pmd >= 0:
                new_pmd = alloc_new_pmd(mm, pmc.new_addr)
                if new_pmd < 0:
                    break
                if pool[old_pmd] & _PSE:
                    # pmd_trans_huge: move the whole PMD (move_huge_pmd), else split it.
                    from vmsim.mm.huge_memory import move_huge_pmd, __split_huge_pmd
                    if extent == PMD_SIZE and move_huge_pmd(pmc.old, pmc.old_addr, pmc.new_addr,
                                                            old_pmd, new_pmd):
                        pmc.old_addr += extent
                        pmc.new_addr += extent
                        continue
                    __split_huge_pmd(pmc.old, old_pmd, pmc.old_addr, False)
                    if pool[old_pmd] == 0:
                        # A file PMD is zapped by the split (pmd_none: continue); the
                        # folio is faulted in again at the new place.
                        pmc.old_addr += extent
                        pmc.new_addr += extent
                        continue
                if not (extent == PMD_SIZE and move_normal_pmd(pmc, old_pmd, new_pmd)):
                    if pte_alloc(mm, new_pmd):
                        break
                    move_ptes(pmc, extent, old_pmd, new_pmd)
        pmc.old_addr += extent
        pmc.new_addr += extent
    k.mmu_notifier_invalidate_range_end(mm, "unmap", pmc.old_end - pmc.len_in, pmc.old_end)
    return pmc_progress(pmc)


def vrm_overlaps(vrm) -> bool:
    start_old, end_old = vrm.addr, vrm.addr + vrm.old_len
    start_new, end_new = vrm.new_addr, vrm.new_addr + vrm.new_len
    return end_old > start_new and end_new > start_old


def vrm_implies_new_addr(vrm) -> bool:
    return bool(vrm.flags & (MREMAP_FIXED | MREMAP_DONTUNMAP))


def vrm_move_only(vrm) -> bool:
    """vrm_move_only(): MREMAP_FIXED without a size change moves every VMA in range."""
    return bool(vrm.flags & MREMAP_FIXED) and vrm.old_len == vrm.new_len


def vrm_set_new_addr(vrm) -> int:
    """vrm_set_new_addr(): get_unmapped_area() for the destination (MAP_FIXED honoured)."""
    from vmsim.mm.mmap import __get_unmapped_area
    vma = vrm.vma
    pgoff = vma.vm_pgoff + ((vrm.addr - vma.vm_start) >> 12)
    new_addr = vrm.new_addr if vrm_implies_new_addr(vrm) else 0
    map_flags = (MAP_FIXED if vrm.flags & MREMAP_FIXED else 0) | \
        (MAP_SHARED if vma.vm_flags & VM_MAYSHARE else 0)
    res = __get_unmapped_area(vrm.mm, vma.vm_file, new_addr, vrm.new_len, pgoff, map_flags, 0)
    if res < 0:
        return res
    vrm.new_addr = res
    return 0


def vrm_calc_charge(vrm) -> bool:
    """vrm_calc_charge(): commit charge for an accounted VMA (new_len with DONTUNMAP)."""
    from vmsim.mm.mmap import __vm_enough_memory
    if not vrm.vma.vm_flags & VM_ACCOUNT:
        return True
    charged = (vrm.new_len if vrm.flags & MREMAP_DONTUNMAP else vrm.delta) >> 12
    if __vm_enough_memory(vrm.mm, charged):
        return False
    vrm.charged = charged
    return True


def vrm_uncharge(vrm):
    if not vrm.vma.vm_flags & VM_ACCOUNT:
        return
    vrm.mm.kernel.committed_as -= vrm.charged            # vm_unacct_memory()
    vrm.charged = 0


def vrm_stat_account(vrm, nbytes: int):
    """vrm_stat_account(): total/data/exec/stack_vm, and locked_vm for VM_LOCKED."""
    from vmsim.mm.vma import vm_stat_account
    pages = nbytes >> 12
    vm_stat_account(vrm.mm, vrm.vma.vm_flags, pages)
    if vrm.vma.vm_flags & VM_LOCKED:
        vrm.mm.locked_vm += pages
        vrm.mlocked = True


def prep_move_vma(vrm) -> int:
    """prep_move_vma(): stay below max_map_count (the unmap may split one VMA in three)."""
    mm = vrm.mm
    vma = vrm.vma
    if mm.map_count >= mm.kernel.sysctl_max_map_count - 3:
        return -errno.ENOMEM
    may_split = getattr(vma.vm_ops, "may_split", None) if vma.vm_ops is not None else None
    if may_split:
        err = 0
        if vma.vm_start != vrm.addr:
            err = may_split(vma, vrm.addr)
        if not err and vma.vm_end != vrm.addr + vrm.old_len:
            err = may_split(vma, vrm.addr + vrm.old_len)
        if err:
            return err
    return 0


def unmap_source_vma(vrm):
    """unmap_source_vma(): munmap the old range without unaccounting a moved VM_ACCOUNT
    charge (the flag is cleared for the unmap and restored on what remains)."""
    from vmsim.mm.vma import do_vmi_munmap
    mm = vrm.mm
    addr, length, vma = vrm.addr, vrm.old_len, vrm.vma
    accountable_move = bool(vma.vm_flags & VM_ACCOUNT) and not vrm.flags & MREMAP_DONTUNMAP
    if accountable_move:
        vma.vm_flags &= ~VM_ACCOUNT
        vm_start, vm_end = vma.vm_start, vma.vm_end
    err = do_vmi_munmap(mm, addr, length)
    vrm.vma = None
    if err:
        # OOM: unable to split vma, just get accounts right
        mm.kernel.committed_as += length >> 12              # vm_acct_memory()
        return
    if accountable_move:
        end = addr + length
        if vm_start < addr:
            prev = mm.vma_lookup(addr - 4096)
            prev.vm_flags |= VM_ACCOUNT
        if vm_end > end:
            nxt = mm.vma_lookup(end)
            nxt.vm_flags |= VM_ACCOUNT


def copy_vma_and_data(vrm):
    """copy_vma_and_data(): (0 or -errno, new VMA or None)."""
    from vmsim.mm.vma import copy_vma
    vma = vrm.vma
    new_pgoff = vma.vm_pgoff + ((vrm.addr - vma.vm_start) >> 12)
    new_vma, vma, need_rmap_locks = copy_vma(vma, vrm.new_addr, vrm.new_len, new_pgoff)
    if new_vma is None:
        vrm_uncharge(vrm)
        return -errno.ENOMEM, None
    # The source may have been merged into the copy (an unfaulted anon VMA).
    vrm.vma = vma
    pmc = pagetable_move_control(vma, new_vma, vrm.addr, vrm.new_addr, vrm.old_len)
    pmc.need_rmap_locks = need_rmap_locks
    moved_len = move_page_tables(pmc)
    err = 0
    if moved_len < vrm.old_len:
        err = -errno.ENOMEM
    elif vma.vm_ops is not None and getattr(vma.vm_ops, "mremap", None):
        err = vma.vm_ops.mremap(new_vma)
    if err:
        # On error, move entries back from new area to old, then unmap the new area instead.
        back = pagetable_move_control(new_vma, vma, vrm.new_addr, vrm.addr, moved_len)
        back.need_rmap_locks = True
        move_page_tables(back)
        vrm.vma = new_vma
        vrm.old_len = vrm.new_len
        vrm.addr = vrm.new_addr
    if vma.vm_flags & VM_HUGETLB:
        from vmsim.mm.hugetlb import fixup_hugetlb_reservations
        fixup_hugetlb_reservations(vma)
    return err, new_vma


def dontunmap_complete(vrm, new_vma):
    """dontunmap_complete(): the source keeps its range but loses VM_LOCKED*, and its
    anon_vma if the whole VMA was moved. It stays VM_ACCOUNT: vrm_calc_charge()
    charged new_len for the copy, so both are accounted until unmapped."""
    from vmsim.mm.rmap import unlink_anon_vmas
    vma = vrm.vma
    start, end = vrm.addr, vrm.addr + vrm.old_len
    old_start, old_end = vma.vm_start, vma.vm_end
    vma.vm_flags &= ~VM_LOCKED_MASK
    if new_vma is not vma and start == old_start and end == old_end:
        unlink_anon_vmas(vrm.mm.kernel, vma)


def move_vma(vrm) -> int:
    """move_vma(): copy the VMA and its page tables to new_addr, then drop the source."""
    mm = vrm.mm
    err = prep_move_vma(vrm)
    if err:
        return err
    if not vrm_calc_charge(vrm):
        return -errno.ENOMEM
    err, new_vma = copy_vma_and_data(vrm)
    if err and new_vma is None:
        return err
    hiwater_vm = mm.hiwater_vm
    vrm_stat_account(vrm, vrm.new_len)
    if not err and vrm.flags & MREMAP_DONTUNMAP:
        dontunmap_complete(vrm, new_vma)
    else:
        unmap_source_vma(vrm)
    mm.hiwater_vm = hiwater_vm
    return err if err else vrm.new_addr


def _remap_is_valid(vrm) -> int:
    """_remap_is_valid(): may the VMA be moved or grown to new_len? 0 or -errno."""
    from vmsim.mm.mmap import may_expand_vm, mlock_future_ok
    vma = vrm.vma
    old_len, new_len = vrm.old_len, vrm.new_len
    # Duplicating a private mapping (old_len 0) makes no sense.
    if not old_len and not vma.vm_flags & (VM_SHARED | VM_MAYSHARE):
        return -errno.EINVAL
    if vrm.flags & MREMAP_DONTUNMAP and vma.vm_flags & (VM_DONTEXPAND | VM_PFNMAP):
        return -errno.EINVAL
    # We permit crossing of boundaries for the range being unmapped due to a shrink.
    if vrm.remap_type == MREMAP_SHRINK:
        old_len = new_len
    # We can't remap across vm area boundaries
    if old_len > vma.vm_end - vrm.addr:
        return -errno.EFAULT
    if new_len == old_len:
        return 0
    pgoff = ((vrm.addr - vma.vm_start) >> 12) + vma.vm_pgoff
    if pgoff + (new_len >> 12) > _U64:
        return -errno.EINVAL
    if vma.vm_flags & (VM_DONTEXPAND | VM_PFNMAP):
        return -errno.EFAULT
    if not mlock_future_ok(vrm.mm, vma.vm_flags, vrm.delta):
        return -errno.EAGAIN
    if not may_expand_vm(vrm.mm, vma.vm_flags, vrm.delta >> 12):
        return -errno.ENOMEM
    return 0


def shrink_vma(vrm, drop_lock: bool) -> int:
    """shrink_vma(): munmap the tail [addr+new_len, addr+old_len)."""
    from vmsim.mm.vma import do_vmi_munmap
    res = do_vmi_munmap(vrm.mm, vrm.addr + vrm.new_len, vrm.delta)
    vrm.vma = None
    if res:
        return res
    if not drop_lock:
        vrm.vma = vrm.mm.vma_lookup(vrm.addr)
        if vrm.vma is None:
            return -errno.EFAULT
    return 0


def mremap_to(vrm) -> int:
    """mremap_to(): move (after unmapping the MREMAP_FIXED destination)."""
    from vmsim.mm.vma import do_vmi_munmap
    from vmsim.mm.mmap import may_expand_vm
    mm = vrm.mm
    if vrm.flags & MREMAP_FIXED:
        err = do_vmi_munmap(mm, vrm.new_addr, vrm.new_len)
        vrm.vma = None
        if err:
            return err
        # If we remap a portion of a VMA elsewhere in the same VMA, this can invalidate it.
        vrm.vma = mm.vma_lookup(vrm.addr)
        if vrm.vma is None:
            return -errno.EFAULT
    if vrm.remap_type == MREMAP_SHRINK:
        err = shrink_vma(vrm, False)
        if err:
            return err
        vrm.old_len = vrm.new_len
    # MREMAP_DONTUNMAP expands by old_len since old_len == new_len
    if vrm.flags & MREMAP_DONTUNMAP:
        if not may_expand_vm(mm, vrm.vma.vm_flags, vrm.old_len >> 12):
            return -errno.ENOMEM
    err = vrm_set_new_addr(vrm)
    if err:
        return err
    return move_vma(vrm)


def vma_expandable(vma, delta: int) -> bool:
    """vma_expandable(): nothing mapped in [vm_end, vm_end + delta) and still in TASK_SIZE."""
    from vmsim.mm.mmap import __get_unmapped_area
    mm = vma.vm_mm
    end = vma.vm_end + delta
    if end > _U64:
        return False
    if mm._vmas_in(vma.vm_end, end):
        return False
    r = __get_unmapped_area(mm, None, vma.vm_start, end - vma.vm_start, 0, MAP_FIXED, 0)
    return r >= 0 and not r & 0xFFF


def expand_vma_in_place(vrm) -> int:
    """expand_vma_in_place(): charge, then vma_merge_extend() (mm/vma.py)."""
    from vmsim.mm.vma import vma_merge_extend
    if not vrm_calc_charge(vrm):
        return -errno.ENOMEM
    vma = vma_merge_extend(vrm.vma, vrm.delta)
    if vma is None:
        vrm_uncharge(vrm)
        return -errno.ENOMEM
    vrm.vma = vma
    vrm_stat_account(vrm, vrm.delta)
    return 0


def vrm_can_expand_in_place(vrm) -> bool:
    """vrm_can_expand_in_place(): the range ends at the VMA's end and the gap allows."""
    if vrm.vma.vm_end - vrm.addr != vrm.old_len:
        return False
    return vma_expandable(vrm.vma, vrm.delta)


def expand_vma(vrm) -> int:
    """expand_vma(): grow in place if possible, else move (MREMAP_MAYMOVE) or -ENOMEM."""
    if vrm_can_expand_in_place(vrm):
        err = expand_vma_in_place(vrm)
        if err:
            return err
        return vrm.addr
    if not vrm.flags & MREMAP_MAYMOVE:
        return -errno.ENOMEM
    err = vrm_set_new_addr(vrm)
    if err:
        return err
    return move_vma(vrm)


def mremap_at(vrm) -> int:
    if vrm.remap_type == MREMAP_NO_RESIZE:
        return vrm.addr
    if vrm.remap_type == MREMAP_SHRINK:
        res = shrink_vma(vrm, True)
        if res:
            return res
        return vrm.addr
    return expand_vma(vrm)


def check_mremap_params(vrm) -> int:
    """check_mremap_params(): flags, alignment, lengths, FIXED/DONTUNMAP rules, overlap."""
    mm = vrm.mm
    flags = vrm.flags
    if flags & ~(MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP):
        return -errno.EINVAL
    if vrm.addr & 0xFFF:
        return -errno.EINVAL
    # We allow a zero old-len as a special case for DOS-emu "duplicate shm area" thing.
    # But a zero new-len is nonsensical.
    if not vrm.new_len:
        return -errno.EINVAL
    # Is the new length silly?
    if vrm.new_len > mm.task_size:
        return -errno.EINVAL
    # Remainder of checks are for cases with specific new_addr.
    if not vrm_implies_new_addr(vrm):
        return 0
    # Is the new address silly?
    if vrm.new_addr > mm.task_size - vrm.new_len:
        return -errno.EINVAL
    if vrm.new_addr & 0xFFF:
        return -errno.EINVAL
    if not flags & MREMAP_MAYMOVE:
        return -errno.EINVAL
    if flags & MREMAP_DONTUNMAP and vrm.old_len != vrm.new_len:
        return -errno.EINVAL
    if vrm_overlaps(vrm):
        return -errno.EINVAL
    if mm.map_count + 2 >= mm.kernel.sysctl_max_map_count - 3:
        return -errno.ENOMEM
    return 0


def align_hugetlb(vrm) -> bool:
    """align_hugetlb(): lengths rounded up to the huge page, addresses aligned to it,
    and no expansion (the reservation cannot be split)."""
    from vmsim.mm.hugetlb import hstate_vma
    size = hstate_vma(vrm.vma).huge_page_size()
    vrm.old_len = (vrm.old_len + size - 1) & ~(size - 1)
    vrm.new_len = (vrm.new_len + size - 1) & ~(size - 1)
    if vrm.addr & (size - 1) or vrm.new_addr & (size - 1):
        return False
    return vrm.new_len <= vrm.old_len


def check_prep_vma(vrm) -> int:
    vma = vrm.vma
    if vma is None:
        return -errno.EFAULT
    if vma.vm_flags & VM_HUGETLB and not align_hugetlb(vrm):
        return -errno.EINVAL
    vrm.delta = abs(vrm.old_len - vrm.new_len)
    if vrm.delta == 0:
        vrm.remap_type = MREMAP_NO_RESIZE
    elif vrm.old_len > vrm.new_len:
        vrm.remap_type = MREMAP_SHRINK
    else:
        vrm.remap_type = MREMAP_EXPAND
    if not vrm_implies_new_addr(vrm):
        vrm.new_addr = vrm.addr
    if vrm.remap_type == MREMAP_EXPAND or vrm_implies_new_addr(vrm):
        return _remap_is_valid(vrm)
    return 0


def vma_multi_allowed(vma) -> bool:
    """vma_multi_allowed(): no custom ->get_unmapped_area that could move a FIXED target."""
    f = vma.vm_file
    if f is None or not getattr(f, "get_unmapped_area", None):
        return True
    return bool(getattr(f.f_mapping, "swapbacked", False))


def remap_move(vrm) -> int:
    """remap_move(): MREMAP_FIXED with no resize moves every VMA in [addr, addr+old_len),
    split as needed, keeping the gaps between them. No VMA at addr: -EFAULT."""
    mm = vrm.mm
    start, end = vrm.addr, vrm.addr + vrm.old_len
    target_addr = vrm.new_addr
    res = -errno.EFAULT
    seen_vma = False
    last_end = 0
    cur = start
    # for_each_vma_range() stops at end: a DONTUNMAP move next to the source VMA may
    # merge the new VMA into it (copy_vma), and that VMA must not be visited again.
    while cur < end:
        vmas = mm._vmas_in(cur, end)
        if not vmas:
            break
        vma = vmas[0]
        addr = max(vma.vm_start, start)
        length = min(end, vma.vm_end) - addr
        if not seen_vma and start < vma.vm_start:
            return -errno.EFAULT                     # No gap permitted at the start.
        offset = vma.vm_start - last_end if seen_vma else 0
        last_end = vma.vm_end
        cur = vma.vm_end
        vrm.vma = vma
        vrm.addr = addr
        vrm.new_addr = target_addr + offset
        vrm.old_len = vrm.new_len = length
        multi_allowed = vma_multi_allowed(vma)
        if not multi_allowed:
            if seen_vma or vma.vm_end < end:
                return -errno.EFAULT
        res_vma = check_prep_vma(vrm)
        if not res_vma:
            res_vma = mremap_to(vrm)
        if res_vma < 0:
            return res_vma
        if not seen_vma:
            res = res_vma
        seen_vma = True
        target_addr = res_vma + vrm.new_len
    return res


def do_mremap(mm, addr: int, old_len: int, new_len: int, flags: int, new_addr: int) -> int:
    """do_mremap(): mremap(2); the new address or -errno."""
    from vmsim.mm.gup import mm_populate
    vrm = vma_remap_struct(mm, addr, ((old_len + 0xFFF) & ~0xFFF) & _U64,
                           ((new_len + 0xFFF) & ~0xFFF) & _U64, flags, new_addr)
    res = check_mremap_params(vrm)
    if res:
        return res
    if vrm_move_only(vrm):
        res = remap_move(vrm)
    else:
        vrm.vma = mm.vma_lookup(vrm.addr)
        res = check_prep_vma(vrm)
        if res:
            return res
        res = mremap_to(vrm) if vrm_implies_new_addr(vrm) else mremap_at(vrm)
    failed = res < 0
    if not failed and vrm.mlocked and vrm.new_len > vrm.old_len:
        mm_populate(mm, vrm.new_addr + vrm.old_len, vrm.delta)
    return res
