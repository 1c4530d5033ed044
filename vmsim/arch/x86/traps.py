"""Exception entry (arch/x86/kernel/idt.c, arch/x86/kernel/traps.c, arch/x86/mm/fault.c).

The IDT routes vector 14 (#PF) to asm_exc_page_fault -> exc_page_fault (the seed's
``idtentry page_fault do_page_fault`` became DEFINE_IDTENTRY_RAW_ERRORCODE in 5.8) and
vector 13 (#GP) to exc_general_protection. vmsim raises these from the MMU model:
``cpu_exception(k, vector, error_code, cr2)``.
"""
from vmsim.arch.x86.mm.fault import handle_page_fault, force_sig, SIGSEGV

X86_TRAP_GP = 13
X86_TRAP_PF = 14


def exc_page_fault(k, regs, error_code: int, address: int):
    """exc_page_fault(): read CR2 (``address``), then handle_page_fault()."""
    handle_page_fault(k, regs, error_code, address)


def exc_general_protection(k, regs, error_code: int):
    """exc_general_protection(): from user mode, SIGSEGV with SI_KERNEL and si_addr 0
    (gp_user_force_sig_segv); a non-canonical address raises #GP, not #PF."""
    if regs.user:
        force_sig(k.current, SIGSEGV)
        return
    raise AssertionError("general protection fault in kernel mode")


# The IDT: vector -> handler, as idt_setup_early_pf / def_idts install them.
idt_table = {X86_TRAP_PF: exc_page_fault, X86_TRAP_GP: exc_general_protection}
