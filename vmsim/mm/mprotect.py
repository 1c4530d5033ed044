"""mprotect(2) and the page-table protection walk (mm/mprotect.c).

do_mprotect_pkey -> mprotect_fixup (vma_modify, accounting, vma_set_page_prot) ->
change_protection -> change_protection_range -> change_p4d/pud/pmd_range ->
change_pte_range, which rewrites each present PTE with pte_modify() and, with
MM_CP_TRY_CHANGE_WRITABLE, maps exclusive anon pages writable at once
(can_change_pte_writable), so a write after mprotect(RW) costs no fault. PTEs whose
change needs a flush (pte_needs_flush) widen the caller's mmu_gather, which
tlb_finish_mmu() flushes. pkey_mprotect / pkey_alloc / pkey_free and the x86
execute-only key follow arch/x86/mm/pkeys.c (vmsim.arch.x86.mm.pkeys).

Simplified: PROT_NONE PTEs keep their PFN as is (x86's L1TF PFN inversion,
flip_protnone_guard, is not modelled); huge PMDs/PUDs do not exist yet (THP issue);
swap and migration entries do not exist (no swap device).
"""
import errno

from vmsim.arch.x86 import pgtable_types as T
from vmsim.arch.x86.pgtable import (pgd_offset, p4d_offset, pud_offset, pmd_offset,
                                    pte_offset_map, pte_modify, pte_mkwrite)
from vmsim.arch.x86.mm.tlb import _note_downgrade
from vmsim.arch.x86.mm.pkeys import (ARCH_VM_PKEY_FLAGS, PKEY_ACCESS_MASK, mm_pkey_alloc,
                                     mm_pkey_free, mm_pkey_is_allocated,
                                     arch_override_mprotect_pkey, arch_set_user_pkey_access)
from vmsim.arch.x86.pgtable import modify_prot_commit_ptes
from vmsim.mm.mm_types import (VM_WRITE, VM_SHARED, VM_ACCOUNT, VM_HUGETLB, VM_NORESERVE,
                               VM_LOCKED, VM_GROWSDOWN, VM_ACCESS_FLAGS, vma_is_anonymous)
from vmsim.mm.mmap import (PROT_READ, PROT_WRITE, PROT_EXEC, PROT_SEM, PROT_GROWSDOWN,
                           PROT_GROWSUP, vma_set_page_prot, vma_wants_writenotify,
                           may_expand_vm, __vm_enough_memory, calc_vm_prot_bits)
from vmsim.mm.mmu_gather import tlb_gather_mmu, tlb_finish_mmu, tlb_flush_pte_range
from vmsim.mm.page_flags import PG_anon, PG_anon_exclusive, PG_tail
from vmsim.mm import _pte_batch

MM_CP_TRY_CHANGE_WRITABLE = 1 << 0
MM_CP_PROT_NUMA = 1 << 1
MM_CP_UFFD_WP = 1 << 2
MM_CP_UFFD_WP_RESOLVE = 1 << 3
VM_GROWSUP = 0                      # x86 stacks only grow down
_U64 = (1 << 64) - 1
_P = T._PAGE_PRESENT
_PROTNONE = T._PAGE_PROTNONE
_PFN = T.PTE_PFN_MASK
_PSE = T._PAGE_PSE

# arch/x86/include/asm/tlbflush.h pte_flags_need_flush()
_FLUSH_ON_CLEAR = T._PAGE_DIRTY | T._PAGE_PRESENT | T._PAGE_ACCESSED
_SOFTWARE_FLAGS = ((1 << T._PAGE_BIT_SOFTW1) | (1 << T._PAGE_BIT_SOFTW2) |
                   (1 << T._PAGE_BIT_SOFTW3) | (1 << T._PAGE_BIT_SOFTW4) | T._PAGE_SAVED_DIRTY)
_FLUSH_ON_CHANGE = (T._PAGE_RW | T._PAGE_USER | T._PAGE_PWT | T._PAGE_PCD | _PSE |
                    T._PAGE_GLOBAL | (1 << T._PAGE_BIT_PAT_LARGE) | (0xF << T._PAGE_BIT_PKEY_BIT0) |
                    T._PAGE_NX)
_FLAGS_MASK = ~_PFN
_PFN_PMD = _PFN & ~((1 << 21) - 1)          # PHYSICAL_PMD_PAGE_MASK's PFN bits
VM_FLAGS_CLEAR = ARCH_VM_PKEY_FLAGS     # | VM_ARCH_CLEAR, which is VM_NONE on x86


def arch_validate_prot(prot: int, addr: int) -> bool:
    """arch_validate_prot() (include/linux/mman.h generic version; x86 has no override)."""
    return (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM)) == 0


def pte_flags_need_flush(oldflags: int, newflags: int, ignore_access: bool) -> bool:
    """pte_flags_need_flush() (arch/x86/include/asm/tlbflush.h): a flag cleared that
    the TLB may hold set, or a permission / cache / key flag changed."""
    diff = (oldflags ^ newflags) & ~_SOFTWARE_FLAGS
    if ignore_access:
        diff &= ~T._PAGE_ACCESSED
    if diff & oldflags & _FLUSH_ON_CLEAR:
        return True
    return bool(diff & _FLUSH_ON_CHANGE)


def pte_needs_flush(oldpte: int, newpte: int) -> bool:
    """pte_needs_flush() (x86): a present PTE whose PFN or permission bits changed."""
    if not oldpte & _P:
        return False
    if (oldpte & _PFN) != (newpte & _PFN):
        return True
    return pte_flags_need_flush(oldpte & _FLAGS_MASK, newpte & _FLAGS_MASK, True)


def huge_pmd_needs_flush(oldpmd: int, newpmd: int) -> bool:
    """huge_pmd_needs_flush() (x86): as pte_needs_flush for a huge PMD, whose PFN field
    starts at bit 21 and whose Accessed bit counts (see pmdp_clear_flush_young)."""
    if not oldpmd & _P:
        return False
    if (oldpmd & _PFN_PMD) != (newpmd & _PFN_PMD):
        return True
    return pte_flags_need_flush(oldpmd & ~_PFN_PMD, newpmd & ~_PFN_PMD, False)


def vma_wants_manual_pte_write_upgrade(vma) -> bool:
    """vma_wants_manual_pte_write_upgrade(): private writable, or shared with writenotify."""
    if vma.vm_flags & VM_SHARED:
        return vma_wants_writenotify(vma, vma.vm_page_prot)
    return bool(vma.vm_flags & VM_WRITE)


def can_change_pte_writable(vma, addr: int, pte: int) -> bool:
    """can_change_pte_writable(): may this PTE become writable without a write fault?

    Private: only exclusive anon pages (what do_wp_page would reuse). Shared: only
    dirty PTEs (the filesystem was already notified). Soft-dirty and uffd-wp are off.
    """
    from vmsim.mm.memory import vm_normal_page
    if not vma.vm_flags & VM_WRITE:
        return False
    if (pte & (_PROTNONE | _P)) == _PROTNONE:                 # pte_protnone
        return False
    if not vma.vm_flags & VM_SHARED:
        page = vm_normal_page(vma, addr, pte)
        if page < 0:
            return False
        mflags = vma.vm_mm.kernel.mem.flags
        f = mflags[page]
        if f & PG_tail:                         # a page of a large folio: folio_test_anon()
            from vmsim.mm.folio import page_folio
            return bool(mflags[page_folio(vma.vm_mm.kernel, page)] & PG_anon) and \
                bool(f & PG_anon_exclusive)
        return bool(f & PG_anon) and bool(f & PG_anon_exclusive)
    return bool(pte & T._PAGE_DIRTY)


def change_pte_range(tlb, vma, pmdp: int, addr: int, end: int, newprot: int, cp_flags: int) -> int:
    """change_pte_range(): pte_modify() each present PTE of [addr, end); return the count."""
    mm = vma.vm_mm
    pool = mm.kernel.ptpool.mv
    ptep = pte_offset_map(mm, pmdp, addr)
    pages = 0
    batch = _pte_batch._usable(vma, False)  # vmsim's compiled runs of none / present PTEs
    while addr != end:
        if batch:
            done, status, n, flushed = _pte_batch._change_run(
                mm.kernel, ptep, addr, end, newprot, bool(cp_flags & MM_CP_TRY_CHANGE_WRITABLE),
                vma)
            for a in flushed:
                _note_downgrade(mm, a, a + 4096)
            if flushed:
                tlb_flush_pte_range(tlb, flushed[0], flushed[-1] + 4096 - flushed[0])
            pages += n
            addr += done << 12
            ptep += done
            if addr == end:
                break
            batch = done > 0        # a run of other entries: the Python code takes it
        oldpte = pool[ptep]
        if oldpte & (_P | _PROTNONE):                               # pte_present
            ptent = pte_modify(oldpte, newprot)
            if cp_flags & MM_CP_TRY_CHANGE_WRITABLE and not ptent & T._PAGE_RW and \
                    can_change_pte_writable(vma, addr, ptent):
                ptent = pte_mkwrite(ptent, vma)
            modify_prot_commit_ptes(vma, addr, ptep, oldpte, ptent, 1)
            if pte_needs_flush(oldpte, ptent):
                _note_downgrade(mm, addr, addr + 4096)
                tlb_flush_pte_range(tlb, addr, 4096)
            pages += 1
        elif oldpte:
            # A PTE marker: guard (and poison) markers are ignored unconditionally,
            # because any access should sigsegv anyway. Swap entries: not modelled.
            from vmsim.mm.swapops import is_pte_marker_entry
            if not is_pte_marker_entry(oldpte):
                raise NotImplementedError("swap / migration entries are not modelled")
        addr += 4096
        ptep += 1
    return pages


def _end(addr: int, end: int, size: int) -> int:
    b = ((addr + size) & ~(size - 1)) & _U64
    return b if ((b - 1) & _U64) < ((end - 1) & _U64) else end


def change_pmd_range(tlb, vma, pudp: int, addr: int, end: int, newprot: int, cp_flags: int) -> int:
    mm = vma.vm_mm
    pool = mm.kernel.ptpool.mv
    pmdp = pmd_offset(mm, pudp, addr)
    pages = 0
    while True:
        nxt = _end(addr, end, T.PMD_SIZE)
        pmd = pool[pmdp]
        if pmd:
            if pmd & _PSE:
                # A part of a huge PMD: split it; the whole of one: change_huge_pmd().
                from vmsim.mm.huge_memory import __split_huge_pmd, change_huge_pmd
                if nxt - addr != T.PMD_SIZE:
                    __split_huge_pmd(vma, pmdp, addr, False)
                    # A file PMD is zapped, not split: change_pte_range() finds no
                    # table (-EAGAIN), and the retry sees pmd_none().
                    pmd = pool[pmdp]
                else:
                    pages += change_huge_pmd(tlb, vma, pmdp, addr, newprot, cp_flags)
                    addr = nxt
                    pmdp += 1
                    if addr == end:
                        return pages
                    continue
            if pmd:
                pages += change_pte_range(tlb, vma, pmdp, addr, nxt, newprot, cp_flags)
        addr = nxt
        pmdp += 1
        if addr == end:
            return pages


def change_pud_range(tlb, vma, p4dp: int, addr: int, end: int, newprot: int, cp_flags: int) -> int:
    """change_pud_range(): the MMU_NOTIFY_PROTECTION_VMA range starts at the first table."""
    mm = vma.vm_mm
    k = mm.kernel
    pool = k.ptpool.mv
    pudp = pud_offset(mm, p4dp, addr)
    pages = 0
    notified = None
    while True:
        nxt = _end(addr, end, T.PUD_SIZE)
        if pool[pudp]:
            if notified is None:
                notified = (addr, end)
                k.mmu_notifier_invalidate_range_start(mm, "protection_vma", addr, end)
            pages += change_pmd_range(tlb, vma, pudp, addr, nxt, newprot, cp_flags)
        addr = nxt
        pudp += 1
        if addr == end:
            break
    if notified is not None:
        k.mmu_notifier_invalidate_range_end(mm, "protection_vma", *notified)
    return pages


def change_p4d_range(tlb, vma, pgdp: int, addr: int, end: int, newprot: int, cp_flags: int) -> int:
    mm = vma.vm_mm
    k = mm.kernel
    if not k.la57:
        return change_pud_range(tlb, vma, pgdp, addr, end, newprot, cp_flags)
    pool = k.ptpool.mv
    p4dp = p4d_offset(mm, pgdp, addr)
    pages = 0
    while True:
        nxt = _end(addr, end, 1 << 39)
        if pool[p4dp]:
            pages += change_pud_range(tlb, vma, p4dp, addr, nxt, newprot, cp_flags)
        addr = nxt
        p4dp += 1
        if addr == end:
            return pages


def change_protection_range(tlb, vma, addr: int, end: int, newprot: int, cp_flags: int) -> int:
    mm = vma.vm_mm
    k = mm.kernel
    pool = k.ptpool.mv
    shift = k.pgdir_shift
    pgdp = pgd_offset(mm, addr)
    pages = 0
    while True:
        nxt = _end(addr, end, 1 << shift)
        if pool[pgdp]:
            pages += change_p4d_range(tlb, vma, pgdp, addr, nxt, newprot, cp_flags)
        addr = nxt
        pgdp += 1
        if addr == end:
            return pages


def change_protection(tlb, vma, start: int, end: int, cp_flags: int) -> int:
    """change_protection(): apply vma.vm_page_prot to the PTEs of [start, end)."""
    if vma.vm_flags & VM_HUGETLB:
        from vmsim.mm.hugetlb import hugetlb_change_protection
        return hugetlb_change_protection(vma, start, end, vma.vm_page_prot, cp_flags)
    return change_protection_range(tlb, vma, start, end, vma.vm_page_prot, cp_flags)


def mprotect_fixup(tlb, vma, start: int, end: int, newflags: int):
    """mprotect_fixup(): returns (0 or -errno, the VMA now covering [start, end))."""
    from vmsim.mm.vma import vma_modify, vm_stat_account
    mm = vma.vm_mm
    k = mm.kernel
    oldflags = vma.vm_flags
    nrpages = (end - start) >> 12
    charged = 0
    if newflags == oldflags:
        return 0, vma
    # PROT_NONE PFN checks (arch_has_pfn_modify_check): only for L1TF-vulnerable CPUs
    # with PFN maps above max_pfn; vmsim's pfnmaps are kernel pages, always allowed.
    if newflags & VM_WRITE:
        # Check space limits when area turns into data.
        if not may_expand_vm(mm, newflags, nrpages) and may_expand_vm(mm, oldflags, nrpages):
            return -errno.ENOMEM, vma
        if not oldflags & (VM_ACCOUNT | VM_WRITE | VM_HUGETLB | VM_SHARED | VM_NORESERVE):
            charged = nrpages
            if __vm_enough_memory(mm, charged):
                return -errno.ENOMEM, vma
            newflags |= VM_ACCOUNT
    elif oldflags & VM_ACCOUNT and vma_is_anonymous(vma) and vma.anon_vma is None:
        newflags &= ~VM_ACCOUNT

    def _change(v):
        v.vm_flags = newflags
        vma_set_page_prot(v)

    new = vma_modify(mm, vma, start, end, _change)
    if isinstance(new, int):
        k.committed_as -= charged                        # vm_unacct_memory(charged)
        return new, vma
    vma = new
    mm_cp_flags = MM_CP_TRY_CHANGE_WRITABLE if vma_wants_manual_pte_write_upgrade(vma) else 0
    change_protection(tlb, vma, start, end, mm_cp_flags)
    if oldflags & VM_ACCOUNT and not newflags & VM_ACCOUNT:
        k.committed_as -= nrpages                        # vm_unacct_memory()
    # Private VM_LOCKED VMA becoming writable: trigger COW to avoid major fault on access.
    if (oldflags & (VM_WRITE | VM_SHARED | VM_LOCKED)) == VM_LOCKED and newflags & VM_WRITE:
        from vmsim.mm.gup import populate_vma_page_range
        populate_vma_page_range(vma, start, end)
    vm_stat_account(mm, oldflags, -nrpages)
    vm_stat_account(mm, newflags, nrpages)
    return 0, vma


def do_mprotect_pkey(mm, start: int, length: int, prot: int, pkey: int) -> int:
    """do_mprotect_pkey(): mprotect(2) / pkey_mprotect(2) (pkey -1 for mprotect);
    0 or -errno. VMAs before a hole are changed before -ENOMEM is returned, as in
    the kernel."""
    grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP)
    prot &= ~(PROT_GROWSDOWN | PROT_GROWSUP)
    if grows == (PROT_GROWSDOWN | PROT_GROWSUP):          # can't be both
        return -errno.EINVAL
    if start & 0xFFF:
        return -errno.EINVAL
    if not length:
        return 0
    length = ((length + 0xFFF) & ~0xFFF) & _U64
    end = (start + length) & _U64
    if end <= start:
        return -errno.ENOMEM
    if not arch_validate_prot(prot, start):
        return -errno.EINVAL
    reqprot = prot
    # If userspace did not allocate the pkey, do not let them use it here.
    if pkey != -1 and not mm_pkey_is_allocated(mm, pkey):
        return -errno.EINVAL
    vmas = mm._vmas_in(start, end)         # vma_find(&vmi, end)
    if not vmas:
        return -errno.ENOMEM
    vma = vmas[0]
    if grows & PROT_GROWSDOWN:
        if vma.vm_start >= end:
            return -errno.ENOMEM
        start = vma.vm_start
        if not vma.vm_flags & VM_GROWSDOWN:
            return -errno.EINVAL
    else:
        if vma.vm_start > start:
            return -errno.ENOMEM
        if grows & PROT_GROWSUP:
            end = vma.vm_end
            if not vma.vm_flags & VM_GROWSUP:
                return -errno.EINVAL

    tlb = tlb_gather_mmu(mm)
    nstart = start
    tmp = vma.vm_start
    error = 0
    while vma is not None and vma.vm_start < end:
        if vma.vm_start != tmp:
            error = -errno.ENOMEM
            break
        # Each mprotect() call explicitly passes r/w/x permissions; the others are cleared.
        new_vma_pkey = arch_override_mprotect_pkey(vma, prot, pkey)
        newflags = calc_vm_prot_bits(prot, new_vma_pkey)
        newflags |= vma.vm_flags & ~(VM_ACCESS_FLAGS | VM_FLAGS_CLEAR)
        # newflags >> 4 shift VM_MAY% in place of VM_%
        if (newflags & ~(newflags >> 4)) & VM_ACCESS_FLAGS:
            error = -errno.EACCES
            break
        tmp = min(vma.vm_end, end)
        if vma.vm_ops is not None and getattr(vma.vm_ops, "mprotect", None):
            error = vma.vm_ops.mprotect(vma, nstart, tmp, newflags)
            if error:
                break
        error, vma = mprotect_fixup(tlb, vma, nstart, tmp, newflags)
        if error:
            break
        tmp = vma.vm_end                                   # vma_iter_end(&vmi)
        nstart = tmp
        prot = reqprot
        vma = mm.find_vma(tmp)
    tlb_finish_mmu(tlb)
    if not error and tmp < end:
        error = -errno.ENOMEM
    return error


def sys_pkey_alloc(mm, flags: int, init_val: int) -> int:
    """pkey_alloc(2): a new key with init_val's rights in current's PKRU; -EINVAL for
    flags or unknown rights, -ENOSPC when no key is free (always, without pkeys)."""
    if flags:
        return -errno.EINVAL
    if init_val & ~PKEY_ACCESS_MASK:
        return -errno.EINVAL
    k = mm.kernel
    pkey = mm_pkey_alloc(mm)
    if pkey == -1:
        return -errno.ENOSPC
    ret = arch_set_user_pkey_access(k, k.current, pkey, init_val)
    if ret:
        # Without OSPKE the only key, 0, looks like the exec-only key (mm->context is
        # zeroed), so this free fails and the key stays marked: the next call is -ENOSPC.
        mm_pkey_free(mm, pkey)
        return ret
    return pkey


def sys_pkey_free(mm, pkey: int) -> int:
    """pkey_free(2): 0 or -EINVAL; VMAs still tagged with the key keep it."""
    return mm_pkey_free(mm, pkey)
