"""mmap, brk, placement and stack growth (mm/mmap.c, mm/vma.c __mmap_region,
arch/x86/kernel/sys_x86_64.c, arch/x86/mm/mmap.c, mm/util.c).

Functions return an address, or a negative errno as the kernel does; the user API
turns that into OSError.
"""
import errno

from vmsim.arch.x86 import pgtable_types as T
from bisect import bisect_right

from vmsim.arch.x86.mm.pkeys import (arch_calc_vm_prot_bits, execute_only_pkey,
                                     ARCH_VM_PKEY_FLAGS, VM_PKEY_SHIFT)
from vmsim.mm.mm_types import (
    vm_area_struct, VM_READ, VM_WRITE, VM_EXEC, VM_SHARED, VM_MAYREAD, VM_MAYWRITE, VM_MAYEXEC,
    VM_MAYSHARE, VM_GROWSDOWN, VM_LOCKED, VM_NORESERVE, VM_ACCOUNT, VM_SPECIAL, VM_NOHUGEPAGE,
    VM_HUGETLB, VM_DATA_DEFAULT_FLAGS, VM_SYNC, VM_LOCKED_MASK, VM_DROPPABLE, VM_WIPEONFORK,
    VM_DONTDUMP)
from vmsim.fs.inode import S_ISREG
from vmsim.mm.oom_kill import totalram_pages
from vmsim.mm.vma import (vm_stat_account, do_vmi_align_munmap, vms_gather_munmap_vmas,
                          vma_merge_struct, vma_merge_new_range, VMA_MERGE_ERROR_NOMEM,
                          _vmg_state)
from vmsim.mm._gap_tree import _highest_gap

_U64 = (1 << 64) - 1

PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC = 0, 1, 2, 4
PROT_SEM = 0x8
PROT_GROWSDOWN, PROT_GROWSUP = 0x01000000, 0x02000000
MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE, MAP_DROPPABLE = 0x01, 0x02, 0x03, 0x08
MAP_TYPE = 0x0F
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_32BIT = 0x40
MAP_ABOVE4G = 0x80
MAP_GROWSDOWN = 0x0100
MAP_DENYWRITE = 0x0800
MAP_EXECUTABLE = 0x1000
MAP_LOCKED = 0x2000
MAP_NORESERVE = 0x4000
MAP_POPULATE = 0x8000
MAP_NONBLOCK = 0x10000
MAP_STACK = 0x20000
MAP_HUGETLB = 0x40000
MAP_SYNC = 0x80000
MAP_FIXED_NOREPLACE = 0x100000
MAP_UNINITIALIZED = 0x4000000
MAP_HUGE_SHIFT = 26
MAP_HUGE_2MB = 21 << MAP_HUGE_SHIFT
MAP_HUGE_1GB = 30 << MAP_HUGE_SHIFT
LEGACY_MAP_MASK = (MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | MAP_DENYWRITE |
                   MAP_EXECUTABLE | MAP_UNINITIALIZED | MAP_GROWSDOWN | MAP_LOCKED |
                   MAP_NORESERVE | MAP_POPULATE | MAP_NONBLOCK | MAP_STACK | MAP_HUGETLB)

# arch/x86/mm/pgprot.c protection_map[] indexed by VM_READ|VM_WRITE|VM_EXEC|VM_SHARED
protection_map = [
    T.PAGE_NONE, T.PAGE_READONLY, T.PAGE_COPY, T.PAGE_COPY,
    T.PAGE_READONLY_EXEC, T.PAGE_READONLY_EXEC, T.PAGE_COPY_EXEC, T.PAGE_COPY_EXEC,
    T.PAGE_NONE, T.PAGE_READONLY, T.PAGE_SHARED, T.PAGE_SHARED,
    T.PAGE_READONLY_EXEC, T.PAGE_READONLY_EXEC, T.PAGE_SHARED_EXEC, T.PAGE_SHARED_EXEC,
]


# VM_PKEY_BITn -> _PAGE_PKEY_BITn: the key moves from vm_flags bits 32..35 to PTE bits
# 59..62 (arch/x86/mm/pgprot.c vm_get_page_prot).
_PKEY_PTE_SHIFT = T._PAGE_BIT_PKEY_BIT0 - VM_PKEY_SHIFT


_PROTECTION_MAP_BITS = VM_READ | VM_WRITE | VM_EXEC | VM_SHARED


def vm_get_page_prot(vm_flags: int) -> int:
    """vm_get_page_prot() (arch/x86/mm/pgprot.c): protection_map, plus the VMA's
    protection key as PTE bits 59..62."""
    return (protection_map[vm_flags & _PROTECTION_MAP_BITS] |
            (vm_flags & ARCH_VM_PKEY_FLAGS) << _PKEY_PTE_SHIFT)


def vma_wants_writenotify(vma, vm_page_prot) -> bool:
    """vma_wants_writenotify(): shared writable mappings with ->page_mkwrite."""
    if (vma.vm_flags & (VM_WRITE | VM_SHARED)) != (VM_WRITE | VM_SHARED):
        return False
    return bool(getattr(vma.vm_ops, "page_mkwrite", None))


def vma_set_page_prot(vma):
    """vma_set_page_prot(): vm_page_prot from flags, minus write when notify is wanted."""
    prot = vm_get_page_prot(vma.vm_flags)
    if vma_wants_writenotify(vma, prot):
        prot = vm_get_page_prot(vma.vm_flags & ~VM_SHARED)
    vma.vm_page_prot = prot


def calc_vm_prot_bits(prot: int, pkey: int = 0) -> int:
    """calc_vm_prot_bits() (include/linux/mman.h): PROT_READ/WRITE/EXEC are the bits
    of VM_READ/WRITE/EXEC (_calc_vm_trans() is then a mask), plus the key."""
    return (prot & (PROT_READ | PROT_WRITE | PROT_EXEC)) | arch_calc_vm_prot_bits(prot, pkey)


def calc_vm_flag_bits(file, flags: int) -> int:
    """calc_vm_flag_bits(): MAP_GROWSDOWN, MAP_LOCKED, MAP_SYNC, MAP_STACK -> VM_*."""
    if not flags & (MAP_GROWSDOWN | MAP_LOCKED | MAP_SYNC | MAP_STACK):
        return 0
    return ((VM_GROWSDOWN if flags & MAP_GROWSDOWN else 0) |
            (VM_LOCKED if flags & MAP_LOCKED else 0) |
            (VM_SYNC if flags & MAP_SYNC else 0) |
            (VM_NOHUGEPAGE if flags & MAP_STACK else 0))


# --- accounting -------------------------------------------------------------------
def rlimit(task, res: str) -> int:
    return task.rlim.get(res, (1 << 64) - 1)


def may_expand_vm(mm, flags: int, npages: int) -> bool:
    """may_expand_vm(): RLIMIT_AS and RLIMIT_DATA (infinite by default)."""
    task = mm.kernel.current
    if mm.total_vm + npages > rlimit(task, "RLIMIT_AS") >> 12:
        return False
    if (flags & (VM_WRITE | VM_SHARED | VM_GROWSDOWN)) == VM_WRITE:
        if mm.data_vm + npages > rlimit(task, "RLIMIT_DATA") >> 12:
            return False
    return True


def mlock_future_ok(mm, flags: int, length: int) -> bool:
    """mlock_future_ok(): RLIMIT_MEMLOCK, which root (CAP_IPC_LOCK) ignores."""
    return True


def vm_commit_limit(k) -> int:
    """vm_commit_limit() (mm/util.c): (totalram - hugetlb) * overcommit_ratio / 100 +
    swap, in pages (vmsim has no overcommit_kbytes and no swap)."""
    from vmsim.mm.hugetlb import hugetlb_total_pages
    return ((totalram_pages(k) - hugetlb_total_pages(k)) * k.sysctl_overcommit_ratio // 100
            + getattr(k, "total_swap_pages", 0))


def init_user_reserve(k):
    """init_user_reserve() / init_admin_reserve() (mm/mmap.c subsys_initcalls): 1/32
    of the free memory at boot, at most 128 MiB for a user and 8 MiB for the admin."""
    free_kbytes = sum(z.free_pages - sum(p.count for p in z.pcp) for z in k.page_alloc.zones) << 2
    k.sysctl_user_reserve_kbytes = min(free_kbytes // 32, 128 << 10)
    k.sysctl_admin_reserve_kbytes = min(free_kbytes // 32, 8 << 10)


def __vm_enough_memory(mm, pages: int, cap_sys_admin: bool = True) -> int:
    """__vm_enough_memory() (mm/util.c): the overcommit policy. vmsim's processes run
    as root, so cap_vm_enough_memory passes cap_sys_admin and the admin reserve is not
    held back."""
    k = mm.kernel
    mode = k.sysctl_overcommit_memory
    k.committed_as += pages                                 # vm_acct_memory()
    if mode == 1:                                           # OVERCOMMIT_ALWAYS
        return 0
    if mode == 0:                                           # OVERCOMMIT_GUESS
        if pages > totalram_pages(k) + getattr(k, "total_swap_pages", 0):
            k.committed_as -= pages
            return -errno.ENOMEM
        return 0
    allowed = vm_commit_limit(k)
    if not cap_sys_admin:
        allowed -= k.sysctl_admin_reserve_kbytes >> 2
    if mm is not None:
        allowed -= min(mm.total_vm // 32, k.sysctl_user_reserve_kbytes >> 2)
    if k.committed_as < allowed:
        return 0
    k.committed_as -= pages                                 # vm_unacct_memory()
    return -errno.ENOMEM


def accountable_mapping(file, vm_flags: int) -> bool:
    """accountable_mapping(): private writable memory is committed; hugetlb has its
    own accounting (the pool reservations)."""
    if file is not None:
        # Imported here: hugetlb imports this module; anonymous mappings skip it (an
        # import statement costs ~3 us a call on this Python).
        from vmsim.mm.hugetlb import is_file_hugepages
        if is_file_hugepages(file):
            return False
    return (vm_flags & (VM_NORESERVE | VM_SHARED | VM_WRITE)) == VM_WRITE


# --- placement ----------------------------------------------------------------------
def vm_start_gap(mm, vma) -> int:
    """vm_start_gap(): a stack VMA reserves stack_guard_gap below it."""
    start = vma.vm_start
    if vma.vm_flags & VM_GROWSDOWN:
        start -= mm.kernel.stack_guard_gap
        if start > vma.vm_start:
            start = 0
    return max(start, 0)


def vm_end_gap(mm, vma) -> int:
    return vma.vm_end


def unmapped_area_topdown(mm, length: int, low_limit: int, high_limit: int,
                          align_mask: int = 0, align_offset: int = 0, start_gap: int = 0) -> int:
    """unmapped_area_topdown() (mm/vma.c): the highest gap of ``length`` in
    [low_limit, high_limit), found through the gap tracking of the VMA tree
    (vma_iter_area_highest -> mas_empty_area_rev), then moved below a stack's guard
    gap by retrying."""
    info_length = length
    length = length + align_mask + start_gap
    mmin = mm.kernel.mmap_min_addr
    if low_limit < mmin:
        low_limit = mmin
    gaps = mm._mt_gap
    while True:
        mt = mm.mm_mt
        # vma_iter_area_highest(): the open range above the last VMA first, then the
        # gap tree (_gap_tree._area_highest, inline).
        last_end = mt[-1].vm_end if mt else 0
        if high_limit - (last_end if last_end > low_limit else low_limit) >= length:
            node = None
            gap_end = high_limit
        else:
            node = _highest_gap(gaps, low_limit, high_limit, length)
            if node is None:                            # vma_iter_area_highest failed
                return -errno.ENOMEM
            gap_end = node.start if node.start < high_limit else high_limit
        gap = gap_end - info_length
        gap -= (gap - align_offset) & align_mask
        # vma_next(&vmi): the VMA above the free range, where the search left the
        # iterator (no second walk of the tree); vma_prev(&vmi): the VMA below it ends
        # where the free range starts.
        if node is not None:
            tmp = node.vma
            if tmp.vm_flags & VM_GROWSDOWN:             # VM_STARTGAP_FLAGS
                if vm_start_gap(mm, tmp) < gap_end:
                    high_limit = vm_start_gap(mm, tmp)
                    continue
                return gap
            prev_end = node.start - node.gap
        else:
            prev_end = last_end
        if prev_end > gap:                              # vm_end_gap(): no VM_GROWSUP
            _, tmp = mm.find_vma_prev(gap)
            high_limit = tmp.vm_start
            continue
        return gap


def unmapped_area(mm, length: int, low_limit: int, high_limit: int,
                  align_mask: int = 0, align_offset: int = 0, start_gap: int = 0) -> int:
    """unmapped_area() (mm/vma.c): the lowest gap of ``length`` in [low_limit,
    high_limit) (vma_iter_area_lowest -> mas_empty_area), retried above a stack's
    guard gap."""
    length = length + align_mask + start_gap
    low_limit = max(low_limit, mm.kernel.mmap_min_addr)
    gaps = mm._mt_gap
    while True:
        mt = mm.mm_mt
        addr = gaps._area_lowest(mt[-1].vm_end if mt else 0, low_limit, high_limit, length)
        if addr is None:                                # vma_iter_area_lowest failed
            return -errno.ENOMEM
        # Adjust for the gap first so it doesn't interfere with the later alignment.
        gap = addr + start_gap
        gap += (align_offset - gap) & align_mask
        # vma_next(&vmi): the VMA above the free range, where the search left the
        # iterator.
        node = gaps.found
        tmp = node.vma if node is not None else None
        if tmp is not None and tmp.vm_flags & VM_GROWSDOWN:   # VM_STARTGAP_FLAGS
            if vm_start_gap(mm, tmp) < gap + length - 1:
                low_limit = tmp.vm_end
                continue
        else:
            _, tmp = mm.find_vma_prev(addr)             # vma_prev(&vmi)
            if tmp is not None and vm_end_gap(mm, tmp) > gap:
                low_limit = vm_end_gap(mm, tmp)
                continue
        return gap


def mmap_address_hint_valid(mm, addr: int, length: int) -> bool:
    """mmap_address_hint_valid() (arch/x86/kernel/sys_x86_64.c)."""
    win = mm.kernel.default_map_window
    if mm.task_size - length < addr:
        return False
    return (addr > win) == (addr + length > win)


def find_start_end(mm, addr: int, flags: int):
    """find_start_end() (arch/x86/kernel/sys_x86_64.c): the bottom-up search window;
    MAP_32BIT maps within [1 GiB, 2 GiB)."""
    if flags & MAP_32BIT:
        return 0x40000000, 0x80000000
    k = mm.kernel
    end = mm.task_size if addr > k.default_map_window else k.default_map_window
    return mm.mmap_legacy_base, end


def arch_get_unmapped_area(mm, filp, addr: int, length: int, pgoff: int, flags: int,
                           vm_flags: int) -> int:
    """arch_get_unmapped_area(): bottom-up from mmap_legacy_base (the fallback)."""
    if flags & MAP_FIXED:
        return addr
    begin, end = find_start_end(mm, addr, flags)
    if length > end:
        return -errno.ENOMEM
    if addr:
        addr = (addr + 0xFFF) & ~0xFFF
        vma = mm.find_vma(addr)
        if end - length >= addr and (not vma or addr + length <= vm_start_gap(mm, vma)):
            return addr
    return unmapped_area(mm, length, begin, end, _huge_align_mask(filp), pgoff << 12)


def _huge_align_mask(filp) -> int:
    """info.align_mask: huge_page_mask_align() for a hugetlbfs file, else 0."""
    if filp is None:
        return 0
    from vmsim.mm.hugetlb import is_file_hugepages, huge_page_mask_align
    if is_file_hugepages(filp):
        return huge_page_mask_align(filp)
    return 0


def arch_get_unmapped_area_topdown(mm, filp, addr0: int, length: int, pgoff: int,
                                   flags: int, vm_flags: int) -> int:
    """arch_get_unmapped_area_topdown(): hint if free, else below mmap_base, else bottom-up."""
    k = mm.kernel
    addr = addr0
    if length > mm.task_size:
        return -errno.ENOMEM
    if flags & MAP_FIXED:
        return addr
    if flags & MAP_32BIT:                          # goto bottomup
        return arch_get_unmapped_area(mm, filp, addr0, length, pgoff, flags, 0)
    if addr:
        addr &= ~0xFFF
        if mmap_address_hint_valid(mm, addr, length):
            vma = mm.find_vma(addr)
            if vma is None or addr + length <= vm_start_gap(mm, vma):
                return addr
    high_limit = mm.mmap_base
    if addr > k.default_map_window:
        high_limit += mm.task_size - k.default_map_window
    low = 1 << 32 if flags & MAP_ABOVE4G else 4096
    r = unmapped_area_topdown(mm, length, low, high_limit,
                              _huge_align_mask(filp) if filp is not None else 0, pgoff << 12)
    if r >= 0:
        return r
    return arch_get_unmapped_area(mm, filp, addr0, length, pgoff, flags, 0)


def mm_get_unmapped_area_vmflags(mm, filp, addr, length, pgoff, flags, vm_flags) -> int:
    """mm_get_unmapped_area_vmflags(): top-down for the default (MMF_TOPDOWN) layout."""
    return arch_get_unmapped_area_topdown(mm, filp, addr, length, pgoff, flags, vm_flags)


def __get_unmapped_area(mm, file, addr: int, length: int, pgoff: int, flags: int,
                        vm_flags: int) -> int:
    """__get_unmapped_area(): pick (or check) the address of a new mapping."""
    if length > mm.task_size:
        return -errno.ENOMEM
    ops_get = getattr(file, "get_unmapped_area", None) if file is not None else None
    if file is None:
        pgoff = 0                     # anonymous mappings: the offset plays no part here
    if ops_get is not None:
        addr = ops_get(mm, addr, length, pgoff, flags)
    elif flags & MAP_SHARED:
        # shmem_get_unmapped_area(): huge alignment when anonymous shmem may get
        # large folios.
        from vmsim.mm.shmem import shmem_get_unmapped_area
        addr = shmem_get_unmapped_area(mm, None, addr, length, pgoff, flags)
    elif file is None and not addr and length % (1 << 21) == 0:
        # Ensures that larger anonymous mappings are THP aligned.
        from vmsim.mm.huge_memory import thp_get_unmapped_area_vmflags
        addr = thp_get_unmapped_area_vmflags(mm, file, addr, length, pgoff, flags, vm_flags)
    else:
        addr = mm_get_unmapped_area_vmflags(mm, file, addr, length, pgoff, flags, vm_flags)
    if addr < 0:
        return addr
    if addr > mm.task_size - length:
        return -errno.ENOMEM
    if addr & 0xFFF:
        return -errno.EINVAL
    return addr


def round_hint_to_min(mm, hint: int) -> int:
    """round_hint_to_min(): a hint below mmap_min_addr becomes mmap_min_addr."""
    hint &= ~0xFFF
    mmin = mm.kernel.mmap_min_addr
    if hint and hint < (mmin + 0xFFF) & ~0xFFF:
        return (mmin + 0xFFF) & ~0xFFF
    return hint


# --- mmap ---------------------------------------------------------------------------
MAX_LFS_FILESIZE = (1 << 63) - 1                 # LLONG_MAX (include/linux/fs.h, 64-bit)


def file_mmap_size_max(file, inode) -> int:
    """file_mmap_size_max(): MAX_LFS_FILESIZE for regular files; vmsim has no block
    devices, sockets or FOP_UNSIGNED_OFFSET drivers, the other cases."""
    return MAX_LFS_FILESIZE if S_ISREG(inode.i_mode) else _U64


def file_mmap_ok(file, inode, pgoff: int, length: int) -> bool:
    """file_mmap_ok() (mm/mmap.c): the mapping's last byte fits the file's largest offset."""
    maxsize = file_mmap_size_max(file, inode)
    if maxsize and length > maxsize:
        return False
    maxsize -= length
    return not pgoff > maxsize >> 12


def do_mmap(mm, file, addr: int, length: int, prot: int, flags: int, vm_flags: int,
            pgoff: int):
    """do_mmap(): returns (address or -errno, populate length)."""
    k = mm.kernel
    if not length:
        return -errno.EINVAL, 0
    if flags & MAP_FIXED_NOREPLACE:
        flags |= MAP_FIXED
    if not flags & MAP_FIXED:
        addr = round_hint_to_min(mm, addr)
    length = ((length + 0xFFF) & ~0xFFF) & _U64           # PAGE_ALIGN(), unsigned long
    if not length:
        return -errno.ENOMEM, 0
    # offset overflow?
    if (pgoff + (length >> 12)) & _U64 < pgoff:
        return -errno.EOVERFLOW, 0
    if mm.map_count > k.sysctl_max_map_count:
        return -errno.ENOMEM, 0
    pkey = 0
    if prot == PROT_EXEC:
        pkey = execute_only_pkey(mm)
        if pkey < 0:
            pkey = 0
    vm_flags |= (calc_vm_prot_bits(prot, pkey) | calc_vm_flag_bits(file, flags) | mm.def_flags |
                 VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC)
    addr = __get_unmapped_area(mm, file, addr, length, pgoff, flags, vm_flags)
    if addr < 0:
        return addr, 0
    if flags & MAP_FIXED_NOREPLACE and mm._vmas_in(addr, addr + length):
        return -errno.EEXIST, 0
    if not mlock_future_ok(mm, vm_flags, length):
        return -errno.EAGAIN, 0
    if file is not None:
        if not file_mmap_ok(file, file.f_inode, pgoff, length):
            return -errno.EOVERFLOW, 0
        ret = file.mmap_checks(flags, vm_flags)
        if isinstance(ret, int) and ret < 0:
            return ret, 0
        # Check to see if we are violating any seals and update VMA flags if necessary
        # to avoid future seal violations.
        from vmsim.mm.memfd import memfd_check_seals_mmap
        ret = memfd_check_seals_mmap(file, ret)
        if ret < 0:
            return ret, 0
        vm_flags = ret
        if (flags & MAP_TYPE) == MAP_PRIVATE:
            pass
    else:
        t = flags & MAP_TYPE
        if t == MAP_SHARED:
            if vm_flags & VM_GROWSDOWN:
                return -errno.EINVAL, 0
            pgoff = 0
            vm_flags |= VM_SHARED | VM_MAYSHARE
        elif t in (MAP_DROPPABLE, MAP_PRIVATE):
            if t == MAP_DROPPABLE:
                # A locked or stack area makes no sense to be droppable; no hugetlb.
                if flags & (MAP_LOCKED | MAP_HUGETLB) or vm_flags & VM_GROWSDOWN:
                    return -errno.EINVAL, 0
                # Droppable pages are not reserved, and neither survive fork nor dump.
                vm_flags |= VM_DROPPABLE | VM_NORESERVE | VM_WIPEONFORK | VM_DONTDUMP
            # Set pgoff according to addr for anon_vma.
            pgoff = addr >> 12
        else:
            return -errno.EINVAL, 0
    if flags & MAP_NORESERVE:
        if k.sysctl_overcommit_memory != 2:
            vm_flags |= VM_NORESERVE
        # hugetlb applies strict overcommit unless MAP_NORESERVE
        from vmsim.mm.hugetlb import is_file_hugepages
        if file is not None and is_file_hugepages(file):
            vm_flags |= VM_NORESERVE
    addr = mmap_region(mm, file, addr, length, vm_flags, pgoff)
    populate = 0
    if addr >= 0 and (vm_flags & VM_LOCKED or (flags & (MAP_POPULATE | MAP_NONBLOCK)) == MAP_POPULATE):
        populate = length
    return addr, populate


def mmap_region(mm, file, addr: int, length: int, vm_flags: int, pgoff: int) -> int:
    """mmap_region() -> __mmap_region(): unmap what MAP_FIXED overlaps, merge or create."""
    k = mm.kernel
    pglen = length >> 12
    end = addr + length
    # __mmap_prepare(): gather what MAP_FIXED replaces (splitting the edge VMAs), check
    # the limits, charge, and only then clear the old range (vms_clean_up_area). A
    # failed check aborts (vms_abort_munmap_vmas): the old VMAs stay, split, with
    # their pages. One lookup at addr gives the VMA after the new range (or the first
    # one it overlaps) and the one before it, for the merge below.
    mt = mm.mm_mt
    i = bisect_right(mm.mm_mt_ends, addr)              # find_vma_prev(), inline
    nxt = mt[i] if i < len(mt) else None
    prev = mt[i - 1] if i else None
    old = mm._vmas_in(addr, end) if nxt is not None and nxt.vm_start < end else ()
    if old:
        err = vms_gather_munmap_vmas(mm, addr, end, old)
        if err:
            return err
        old = mm._vmas_in(addr, end)
    nr_pages = nr_accounted = 0                 # vms->nr_pages, vms->nr_accounted
    for v in old:
        n = (v.vm_end - v.vm_start) >> 12
        nr_pages += n
        if v.vm_flags & VM_ACCOUNT:
            nr_accounted += n
    if not may_expand_vm(mm, vm_flags, pglen - nr_pages):
        return -errno.ENOMEM
    charged = 0
    accountable = accountable_mapping(file, vm_flags)
    if accountable:
        # The replaced VMAs' charge carries over to the new mapping.
        charged = pglen - nr_accounted
        if charged:
            err = __vm_enough_memory(mm, charged)
            if err:
                return err
        vm_flags |= VM_ACCOUNT
    if old:
        do_vmi_align_munmap(mm, addr, end, old)
        if accountable:
            k.committed_as += nr_accounted      # vms->nr_accounted = 0: not unaccounted
        nxt, prev = mm.find_vma_prev(addr)      # around the range just cleared
    vma = None
    # Attempt to merge with adjacent VMAs (before any file ->mmap hook runs, as 6.18
    # does)...
    if prev is not None or nxt is not None:
        # VMG_MMAP_STATE: mm, prev, middle, next, start, end, pgoff, vm_flags, file
        vmg = _vmg_state(mm, prev, None, nxt, addr, end, pgoff, vm_flags, file)
        vma = vma_merge_new_range(vmg)
    # ...but if we can't, allocate a new VMA (__mmap_new_vma).
    if vma is None:
        vma = vm_area_struct(mm, addr, end, vm_flags, vm_get_page_prot(vm_flags), pgoff, file)
        if file is not None:
            err = file.mmap(vma)
            if err:
                if charged:
                    k.committed_as -= charged
                return err
        elif vm_flags & VM_SHARED:
            from vmsim.mm.shmem import shmem_zero_setup
            err = shmem_zero_setup(vma)
            if err:
                return err
        mm._vma_store(vma)
    # __mmap_complete()
    vm_stat_account(mm, vma.vm_flags, pglen)
    if vma.vm_flags & VM_LOCKED:
        if vma.vm_flags & VM_SPECIAL or vma.vm_flags & VM_HUGETLB:
            vma.vm_flags &= ~VM_LOCKED_MASK
        else:
            mm.locked_vm += pglen
    vma_set_page_prot(vma)
    return addr


def ksys_mmap_pgoff(mm, addr, length, prot, flags, fd_file, pgoff) -> int:
    """ksys_mmap_pgoff(): MAP_HUGETLB makes an anonymous hugetlbfs file of the size
    rounded up to the huge page (hugetlb_file_setup), then vm_mmap_pgoff()."""
    file = fd_file
    if not flags & MAP_ANONYMOUS:
        # Imported in the branches that need it: hugetlb imports this module.
        from vmsim.mm import hugetlb
        if fd_file is None:
            return -errno.EBADF
        if hugetlb.is_file_hugepages(fd_file):
            size = fd_file.f_inode.hstate.huge_page_size()
            length = ((length + size - 1) & ~(size - 1)) & _U64
        elif flags & MAP_HUGETLB:
            return -errno.EINVAL
    elif flags & MAP_HUGETLB:
        from vmsim.mm import hugetlb
        hs = hugetlb.hstate_sizelog(mm.kernel, (flags >> MAP_HUGE_SHIFT) & hugetlb.MAP_HUGE_MASK)
        if hs is None:
            return -errno.EINVAL
        size = hs.huge_page_size()
        length = ((length + size - 1) & ~(size - 1)) & _U64
        # VM_NORESERVE: the reservations are taken when vm_ops->mmap() is called.
        file = hugetlb.hugetlb_file_setup(mm.kernel, "anon_hugepage", length, VM_NORESERVE,
                                          (flags >> MAP_HUGE_SHIFT) & hugetlb.MAP_HUGE_MASK)
        if isinstance(file, int):
            return file
    ret = vm_mmap_pgoff(mm, file, addr, length, prot, flags, pgoff)
    if file is not fd_file:
        # The new VMA took its own reference (->mmap: get_file); drop the setup's.
        from vmsim.mm.vma import fput
        fput(mm.kernel, file)
    return ret


def vm_mmap_pgoff(mm, file, addr, length, prot, flags, pgoff) -> int:
    """vm_mmap_pgoff() (mm/util.c): do_mmap, then mm_populate()."""
    if (flags & MAP_TYPE) == MAP_SHARED_VALIDATE and flags & ~(LEGACY_MAP_MASK | MAP_SYNC | MAP_FIXED_NOREPLACE | MAP_HUGE_1GB | MAP_HUGE_2MB | (0x3F << MAP_HUGE_SHIFT)):
        return -errno.EOPNOTSUPP
    ret, populate = do_mmap(mm, file, addr, length, prot, flags, 0, pgoff)
    if ret >= 0 and populate:
        from vmsim.mm.gup import mm_populate
        mm_populate(mm, ret, populate)
    return ret


# --- brk ---------------------------------------------------------------------------
def check_brk_limits(mm, addr: int, length: int) -> int:
    """check_brk_limits(): the new area must be placeable (get_unmapped_area with
    MAP_FIXED checks it against TASK_SIZE)."""
    mapped_addr = __get_unmapped_area(mm, None, addr, length, 0, MAP_FIXED, 0)
    if mapped_addr < 0:                                   # IS_ERR_VALUE()
        return mapped_addr
    return 0 if mlock_future_ok(mm, mm.def_flags, length) else -errno.EAGAIN


def do_brk_flags(mm, vma, addr: int, length: int, vm_flags: int) -> int:
    """do_brk_flags(): extend the brk VMA in place, or create one."""
    k = mm.kernel
    vm_flags |= VM_ACCOUNT | VM_DATA_DEFAULT_FLAGS | mm.def_flags
    if not may_expand_vm(mm, vm_flags, length >> 12):
        return -errno.ENOMEM
    if mm.map_count > k.sysctl_max_map_count:
        return -errno.ENOMEM
    if __vm_enough_memory(mm, length >> 12):
        return -errno.ENOMEM
    # Expand the existing vma if possible (vma_merge_new_range in just_expand mode);
    # sys_brk only passes a VMA at or above start_brk, so the bss stays separate. A
    # forked brk VMA (non-singular anon_vma chain) is not expanded: a new VMA follows.
    merged = None
    if vma is not None and vma.vm_end == addr:
        vmg = vma_merge_struct(mm, prev=vma, start=addr, end=addr + length,
                               pgoff=addr >> 12, vm_flags=vm_flags, just_expand=True)
        merged = vma_merge_new_range(vmg)
        if merged is None and vmg.state == VMA_MERGE_ERROR_NOMEM:
            k.committed_as -= length >> 12
            return -errno.ENOMEM
    if merged is None:
        vma = vm_area_struct(mm, addr, addr + length, vm_flags, vm_get_page_prot(vm_flags),
                             addr >> 12)
        mm._vma_store(vma)
    mm.total_vm += length >> 12
    mm.data_vm += length >> 12
    if vm_flags & VM_LOCKED:
        mm.locked_vm += length >> 12
    return 0


def sys_brk(mm, brk: int) -> int:
    """sys_brk(): move the break; returns the new break, or the old one on failure."""
    from vmsim.mm.gup import mm_populate
    k = mm.kernel
    origbrk = mm.brk
    min_brk = mm.start_brk
    if brk < min_brk:
        return origbrk
    # Check against rlimit here. If this check is done later after the test of oldbrk
    # against newbrk, then it can escape the test and let the data segment grow beyond its rlimit.
    task = k.current
    if rlimit(task, "RLIMIT_DATA") < (1 << 64) - 1 and \
            brk - mm.start_brk + mm.end_data - mm.start_data > rlimit(task, "RLIMIT_DATA"):
        return origbrk
    newbrk = ((brk + 0xFFF) & ~0xFFF) & _U64             # PAGE_ALIGN() wraps to 0 at the top
    oldbrk = ((mm.brk + 0xFFF) & ~0xFFF) & _U64
    if oldbrk == newbrk:
        mm.brk = brk
        return mm.brk
    if brk <= mm.brk:
        # Always allow shrinking brk, unless the range holds no brk VMA.
        found = mm._vmas_in(newbrk, oldbrk)
        if not found or found[0].vm_start >= oldbrk:
            return origbrk
        mm.brk = brk
        if do_vmi_align_munmap(mm, newbrk, oldbrk, found):
            mm.brk = origbrk
            return origbrk
        return brk
    if check_brk_limits(mm, oldbrk, (newbrk - oldbrk) & _U64):
        return origbrk
    # Only check if the next VMA is within the stack_guard_gap of the expansion area.
    nxt = mm.find_vma(oldbrk)
    if nxt is not None and nxt.vm_start < newbrk + 4096 + k.stack_guard_gap and \
            newbrk + 4096 > vm_start_gap(mm, nxt):
        return origbrk
    _, brkvma = mm.find_vma_prev(oldbrk)           # vma_prev_limit(&vmi, mm->start_brk)
    if brkvma is not None and brkvma.vm_end <= mm.start_brk:
        brkvma = None
    if do_brk_flags(mm, brkvma, oldbrk, newbrk - oldbrk, 0) < 0:
        return origbrk
    mm.brk = brk
    if mm.def_flags & VM_LOCKED:
        mm_populate(mm, oldbrk, newbrk - oldbrk)
    return brk


# --- stack growth ------------------------------------------------------------------
def acct_stack_growth(vma, size: int, grow: int) -> int:
    """acct_stack_growth(): RLIMIT_AS/DATA, RLIMIT_STACK, memlock and overcommit checks."""
    mm = vma.vm_mm
    if not may_expand_vm(mm, vma.vm_flags, grow):
        return -errno.ENOMEM
    if size > rlimit(mm.kernel.current, "RLIMIT_STACK"):
        return -errno.ENOMEM
    if __vm_enough_memory(mm, grow):
        return -errno.ENOMEM
    return 0


def expand_downwards(vma, address: int) -> int:
    """expand_downwards(): grow a VM_GROWSDOWN VMA down to address (page aligned)."""
    from vmsim.mm.rmap import anon_vma_prepare
    mm = vma.vm_mm
    k = mm.kernel
    if not vma.vm_flags & VM_GROWSDOWN:
        return -errno.EFAULT
    address &= ~0xFFF
    if address < k.mmap_min_addr or address < 0:
        return -errno.EPERM
    prev = mm.vma_prev(vma)
    if prev is not None:
        if not prev.vm_flags & VM_GROWSDOWN and prev.vm_flags & (VM_READ | VM_WRITE | VM_EXEC) \
                and address - prev.vm_end < k.stack_guard_gap:
            return -errno.ENOMEM
    if anon_vma_prepare(k, vma):
        return -errno.ENOMEM
    error = 0
    if address < vma.vm_start:
        size = vma.vm_end - address
        grow = (vma.vm_start - address) >> 12
        error = -errno.ENOMEM
        if grow <= vma.vm_pgoff:
            error = acct_stack_growth(vma, size, grow)
            if not error:
                if vma.vm_flags & VM_LOCKED:
                    mm.locked_vm += grow
                vm_stat_account(mm, vma.vm_flags, grow)
                mm._vma_update(vma, address, vma.vm_end)
                vma.vm_pgoff -= grow
                if vma.vm_flags & VM_ACCOUNT:
                    pass
    return error


def expand_stack_locked(vma, address: int) -> int:
    """expand_stack_locked(): x86 stacks grow down."""
    return expand_downwards(vma, address)


# --- the file part of do_mmap() ---------------------------------------------------
def _do_mmap_file(file, flags: int, vm_flags: int):
    """do_mmap() for a file after file_mmap_ok: the mapping type against the open mode (EACCES), a file type without
    ->mmap (ENODEV), growsdown (EINVAL). Returns vm_flags or -errno. ext4 has
    FOP_MMAP_SYNC, so MAP_SHARED_VALIDATE | MAP_SYNC passes this check and is
    refused by ext4_file_mmap_prepare (EOPNOTSUPP: not DAX)."""
    from vmsim.fs.file import FMODE_READ, FMODE_WRITE
    t = flags & MAP_TYPE
    inode = file.f_inode
    flags_mask = LEGACY_MAP_MASK
    if inode.i_sb.s_type == "ext4":
        flags_mask |= MAP_SYNC
    if t in (MAP_SHARED, MAP_SHARED_VALIDATE):
        if t == MAP_SHARED:
            flags &= LEGACY_MAP_MASK
        if flags & ~flags_mask:
            return -errno.EOPNOTSUPP
        if vm_flags & VM_WRITE and not file.f_mode & FMODE_WRITE:
            return -errno.EACCES
        vm_flags |= VM_SHARED | VM_MAYSHARE
        if not file.f_mode & FMODE_WRITE:
            vm_flags &= ~(VM_MAYWRITE | VM_SHARED)
    elif t != MAP_PRIVATE:
        return -errno.EINVAL
    if not file.f_mode & FMODE_READ:
        return -errno.EACCES
    if inode.i_mapping is None:               # a directory: no ->mmap
        return -errno.ENODEV
    if vm_flags & VM_GROWSDOWN:
        return -errno.EINVAL
    if flags & MAP_SYNC and t == MAP_SHARED_VALIDATE:
        return -errno.EOPNOTSUPP              # ext4: daxdev_mapping_supported() fails
    return vm_flags
