"""The x86 page-fault handler (arch/x86/mm/fault.c, 6.18).

exc_page_fault (in traps) -> handle_page_fault -> do_kern_addr_fault or
do_user_addr_fault. The user path tries the per-VMA lock first
(lock_vma_under_rcu), falls back to the mmap_lock path (lock_mm_and_find_vma, which
also grows stacks) on a miss or VM_FAULT_RETRY, and turns VM_FAULT_* errors into
signals. Signals are queued on the task (force_sig_fault) as siginfo tuples; the
user API delivers them. Not modelled: kprobes, SMAP oopses and kernel-mode faults
(vmsim generates user accesses only), shadow stacks, SGX. The OOM
killer runs in the page allocator (vmsim.mm.oom_kill); VM_FAULT_OOM here only warns.
"""
from vmsim.arch.x86.pgtable_types import (X86_PF_PROT, X86_PF_WRITE, X86_PF_USER, X86_PF_RSVD,
                                          X86_PF_INSTR, X86_PF_PK, X86_PF_SHSTK, X86_PF_SGX)
from vmsim.mm.mm_types import (
    VM_WRITE, VM_READ, VM_EXEC, VM_GROWSDOWN,
    FAULT_FLAG_DEFAULT, FAULT_FLAG_USER, FAULT_FLAG_WRITE, FAULT_FLAG_INSTRUCTION,
    FAULT_FLAG_VMA_LOCK, FAULT_FLAG_TRIED,
    VM_FAULT_RETRY, VM_FAULT_COMPLETED, VM_FAULT_MAJOR, VM_FAULT_ERROR, VM_FAULT_OOM,
    VM_FAULT_SIGBUS, VM_FAULT_HWPOISON, VM_FAULT_HWPOISON_LARGE, VM_FAULT_SIGSEGV)
from vmsim.arch.x86.mm.pkeys import (_cpu_has_ospke, arch_vma_access_permitted,
                                     vma_pkey)
from vmsim.mm.memory import handle_mm_fault
from vmsim.mm.oom_kill import pagefault_out_of_memory

SIGBUS, SIGSEGV, SIGKILL = 7, 11, 9
SEGV_MAPERR, SEGV_ACCERR, SEGV_PKUERR = 1, 2, 4
BUS_ADRERR = 2
BUS_MCEERR_AR = 4
SI_KERNEL = 0x80
VSYSCALL_ADDR = 0xFFFFFFFFFF600000


class pt_regs:
    """The register state of the faulting context (what the handler reads)."""
    __slots__ = ("ip", "user", "flags")

    def __init__(self, ip: int = 0, user: bool = True):
        self.ip = ip
        self.user = user
        self.flags = 0x200          # X86_EFLAGS_IF


def user_mode(regs) -> bool:
    return regs.user


def force_sig_fault(task, signo: int, si_code: int, addr: int, error_code: int = 0):
    """force_sig_fault(): queue the signal on the task (delivered by the API layer)."""
    task.signals.append((signo, si_code, addr, error_code))


def force_sig_pkuerr(task, addr: int, pkey: int, error_code: int = 0):
    """force_sig_pkuerr(): SIGSEGV SEGV_PKUERR with si_pkey (kernel/signal.c)."""
    task.signals.append((SIGSEGV, SEGV_PKUERR, addr, error_code, pkey))


def force_sig(task, signo: int):
    """force_sig(): a kernel-generated signal: si_code SI_KERNEL, si_addr 0."""
    task.signals.append((signo, SI_KERNEL, 0, 0))


def kmmio_fault(regs, addr: int) -> bool:
    """kmmio_fault(): claims faults on ioremapped MMIO being traced (kmmiotrace).

    No kmmio probes exist in vmsim, so no user fault is ever claimed.
    """
    return False


def is_vsyscall_vaddr(vaddr: int) -> bool:
    return (vaddr & ~0xFFF) == VSYSCALL_ADDR


def fault_in_kernel_space(k, address: int) -> bool:
    """fault_in_kernel_space(): above TASK_SIZE_MAX, except the vsyscall page."""
    if address < k.task_size_max:        # the common case first; same result
        return False
    return not is_vsyscall_vaddr(address)


def sanitize_error_code(k, address: int, error_code: int) -> int:
    """sanitize_error_code(): user accesses to kernel addresses look like PROT faults."""
    if address >= k.task_size_max:
        error_code |= X86_PF_PROT
    return error_code


def __bad_area_nosemaphore(k, regs, error_code: int, address: int, pkey: int, si_code: int):
    """__bad_area_nosemaphore(): deliver SIGSEGV (user mode); SEGV_PKUERR carries the key."""
    error_code = sanitize_error_code(k, address, error_code)
    if si_code == SEGV_PKUERR:
        force_sig_pkuerr(k.current, address, pkey, error_code)
    else:
        force_sig_fault(k.current, SIGSEGV, si_code, address, error_code)


def bad_area_nosemaphore(k, regs, error_code: int, address: int):
    __bad_area_nosemaphore(k, regs, error_code, address, 0, SEGV_MAPERR)


def __bad_area(k, regs, error_code, address, mm, vma, pkey, si_code):
    """__bad_area(): drop the lock (VMA or mmap) and signal."""
    __bad_area_nosemaphore(k, regs, error_code, address, pkey, si_code)


def bad_area_access_from_pkeys(k, error_code: int, vma) -> bool:
    """bad_area_access_from_pkeys(): the hardware said PK, or the VMA's key forbids it."""
    if not _cpu_has_ospke(k):
        return False
    if error_code & X86_PF_PK:
        return True
    return not arch_vma_access_permitted(k, vma, bool(error_code & X86_PF_WRITE),
                                         bool(error_code & X86_PF_INSTR), False)


def bad_area_access_error(k, regs, error_code: int, address: int, mm, vma):
    """bad_area_access_error(): SEGV_PKUERR with the VMA's key (which may differ from
    the PTE's if the VMA changed meanwhile, as the kernel notes), else SEGV_ACCERR."""
    if bad_area_access_from_pkeys(k, error_code, vma):
        __bad_area(k, regs, error_code, address, mm, vma, vma_pkey(vma), SEGV_PKUERR)
    else:
        __bad_area(k, regs, error_code, address, mm, vma, 0, SEGV_ACCERR)


def do_sigbus(k, regs, error_code: int, address: int, fault: int):
    """do_sigbus(): BUS_ADRERR (BUS_MCEERR_AR for hwpoison)."""
    code = BUS_MCEERR_AR if fault & (VM_FAULT_HWPOISON | VM_FAULT_HWPOISON_LARGE) else BUS_ADRERR
    force_sig_fault(k.current, SIGBUS, code, address, error_code)


def access_error(error_code: int, vma) -> bool:
    """access_error(): does the VMA forbid this access? (pkeys, SGX, shadow stacks first).

    The VMA's key is checked here too, so a not-present fault the PTE's key would
    forbid is refused before a page is filled in.
    """
    if error_code & (X86_PF_PK | X86_PF_SGX):           # blocked by a key, or by SGX
        return True
    if not arch_vma_access_permitted(vma.vm_mm.kernel, vma, (error_code & X86_PF_WRITE) != 0,
                                     (error_code & X86_PF_INSTR) != 0, False):
        return True
    if error_code & X86_PF_SHSTK:
        return True                      # no shadow-stack VMAs are modelled
    if error_code & X86_PF_WRITE:
        return not vma.vm_flags & VM_WRITE
    if error_code & X86_PF_PROT:
        return True
    return not vma.vm_flags & (VM_READ | VM_WRITE | VM_EXEC)


def lock_vma_under_rcu(mm, address: int):
    """lock_vma_under_rcu(): the VMA containing address, read-locked, or None."""
    return mm.vma_lookup(address)


def lock_mm_and_find_vma(mm, address: int, regs):
    """lock_mm_and_find_vma(): find the VMA under mmap_lock, expanding a stack below it."""
    from vmsim.mm.mmap import expand_stack_locked
    vma = mm.find_vma(address)
    if vma is not None and vma.vm_start <= address:
        return vma
    if vma is None or not vma.vm_flags & VM_GROWSDOWN:
        return None
    if expand_stack_locked(vma, address):
        return None
    return vma


def emulate_vsyscall(k, error_code: int, regs, address: int) -> bool:
    """emulate_vsyscall() (arch/x86/entry/vsyscall/vsyscall_64.c), vsyscall=xonly.

    Data reads and writes are never fixed up; a fetch at one of the three entry
    points is emulated; a misaligned fetch gets SIGSEGV (SI_KERNEL).
    """
    if (error_code & (X86_PF_WRITE | X86_PF_USER)) != X86_PF_USER:
        return False
    # Only an instruction fetch is emulated: a failed vsyscall read is not fixed up.
    if not error_code & X86_PF_INSTR:
        return False
    if address != regs.ip:
        return False
    if (address & 0xFFF) not in (0, 0x400, 0x800):
        force_sig(k.current, SIGSEGV)
        return True
    return True


def do_user_addr_fault(k, regs, error_code: int, address: int):
    """do_user_addr_fault(): the user-address fault: VMA lock path, then mmap_lock path."""
    tsk = k.current
    mm = tsk.mm
    flags = FAULT_FLAG_DEFAULT
    if error_code & X86_PF_RSVD:
        raise AssertionError("pgtable_bad: reserved bit set in a user page table")
    if regs.user:
        flags |= FAULT_FLAG_USER
    if error_code & (X86_PF_SHSTK | X86_PF_WRITE):
        flags |= FAULT_FLAG_WRITE
    if error_code & X86_PF_INSTR:
        flags |= FAULT_FLAG_INSTRUCTION
    if address >= VSYSCALL_ADDR and is_vsyscall_vaddr(address):
        if emulate_vsyscall(k, error_code, regs, address):
            return
    # CONFIG_PER_VMA_LOCK (6.4+; the 5.4 profile goes straight to mmap_lock).
    if flags & FAULT_FLAG_USER and k.profile["config"].get("CONFIG_PER_VMA_LOCK", True):
        vma = lock_vma_under_rcu(mm, address)
        if vma is not None:
            if access_error(error_code, vma):
                bad_area_access_error(k, regs, error_code, address, None, vma)
                return
            fault = handle_mm_fault(vma, address, flags | FAULT_FLAG_VMA_LOCK, regs)
            if not fault & VM_FAULT_RETRY:
                return _done(k, regs, error_code, address, fault)
            if fault & VM_FAULT_MAJOR:
                flags |= FAULT_FLAG_TRIED
    # lock_mmap / retry:
    while True:
        vma = lock_mm_and_find_vma(mm, address, regs)
        if vma is None:
            bad_area_nosemaphore(k, regs, error_code, address)
            return
        if access_error(error_code, vma):
            bad_area_access_error(k, regs, error_code, address, mm, vma)
            return
        fault = handle_mm_fault(vma, address, flags, regs)
        if fault & VM_FAULT_COMPLETED:
            return
        if fault & VM_FAULT_RETRY:
            flags |= FAULT_FLAG_TRIED
            continue
        return _done(k, regs, error_code, address, fault)


def _done(k, regs, error_code: int, address: int, fault: int):
    """The ``done:`` tail of do_user_addr_fault(): errors become signals."""
    if not fault & VM_FAULT_ERROR:
        return
    if fault & VM_FAULT_OOM:
        pagefault_out_of_memory(k)
    elif fault & (VM_FAULT_SIGBUS | VM_FAULT_HWPOISON | VM_FAULT_HWPOISON_LARGE):
        do_sigbus(k, regs, error_code, address, fault)
    elif fault & VM_FAULT_SIGSEGV:
        bad_area_nosemaphore(k, regs, error_code, address)
    else:
        raise AssertionError("BUG: unexpected vm_fault_t %#x" % fault)


def spurious_kernel_fault(k, error_code: int, address: int) -> bool:
    """spurious_kernel_fault(): only kernel-mode faults can be spurious; never here."""
    return False


def do_kern_addr_fault(k, regs, hw_error_code: int, address: int):
    """do_kern_addr_fault(): a fault on a kernel address; from user mode, SIGSEGV."""
    if spurious_kernel_fault(k, hw_error_code, address):
        return
    bad_area_nosemaphore(k, regs, hw_error_code, address)


def handle_page_fault(k, regs, error_code: int, address: int):
    """handle_page_fault(): kmmio, then kernel- or user-address handling."""
    if kmmio_fault(regs, address):
        return
    if fault_in_kernel_space(k, address):
        do_kern_addr_fault(k, regs, error_code, address)
    else:
        do_user_addr_fault(k, regs, error_code, address)
