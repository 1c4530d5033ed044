"""mprotect and SIGSEGV.

    vmsim run examples/mprotect_segv.py

A store to a page whose VMA does not allow writing is answered by the #PF handler
(arch/x86/mm/fault.c do_user_addr_fault -> access_error -> bad_area_access_error)
with SIGSEGV, si_code SEGV_ACCERR, si_addr the faulting address. A store to an
address no VMA covers gets SEGV_MAPERR instead. Neither is a counted fault: the
kernel counts a fault (perf_sw_event, task->min_flt) only once handle_mm_fault ran.

vmsim raises SignalDelivered where a real process would get the signal; the process
stays usable afterwards, as if a handler had caught it. Expected values: Linux 6.18
(scenarios/recorded/mprotect_segv.json, bad_addresses.json).
"""
import vmsim
from vmsim import (PROT_NONE, PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS,
                   SignalDelivered, SIGSEGV, SEGV_ACCERR, SEGV_MAPERR)

PAGE = 4096
N = 4


def expect_segv(access, si_code, si_addr):
    """Run ``access`` and check it ended in SIGSEGV with this si_code and si_addr."""
    try:
        access()
    except SignalDelivered as sig:
        assert (sig.signo, sig.si_code, sig.si_addr) == (SIGSEGV, si_code, si_addr), sig
        name = {SEGV_MAPERR: "SEGV_MAPERR", SEGV_ACCERR: "SEGV_ACCERR"}[si_code]
        print(f"  SIGSEGV si_code={name} si_addr={si_addr:#x}")
        return
    raise AssertionError("no signal")


def main(machine):
    p = machine.spawn()
    a = p.mmap(0, N * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    p.touch(a, N * PAGE, write=True, value=7)
    faults = p.getrusage().ru_minflt            # N: one anonymous fault per page

    # Read-only: writes are refused, reads still work (the pages stay mapped).
    p.mprotect(a, N * PAGE, PROT_READ)
    print("write to a PROT_READ page:")
    expect_segv(lambda: p.write(a + 2 * PAGE + 5, b"x"), SEGV_ACCERR, a + 2 * PAGE + 5)
    assert p.read(a, 1) == b"\x07"
    assert p.getrusage().ru_minflt == faults    # neither the SIGSEGV nor the read counted

    # PROT_NONE: even a read is an access error.
    p.mprotect(a, PAGE, PROT_NONE)
    print("read of a PROT_NONE page:")
    expect_segv(lambda: p.read(a, 1), SEGV_ACCERR, a)

    # Unmapped: no VMA at all -> SEGV_MAPERR.
    p.munmap(a + 3 * PAGE, PAGE)
    print("write to an unmapped page:")
    expect_segv(lambda: p.write(a + 3 * PAGE, b"x"), SEGV_MAPERR, a + 3 * PAGE)

    # Back to read-write. The pages are exclusive to this process, so mprotect itself
    # makes their PTEs writable again (change_pte_range -> can_change_pte_writable):
    # writing the two pages that were PROT_READ costs no fault at all (Linux: 0).
    p.mprotect(a, 3 * PAGE, PROT_READ | PROT_WRITE)
    before = p.getrusage().ru_minflt
    p.touch(a + PAGE, 2 * PAGE, write=True)
    print(f"rewrite after mprotect(RW): {p.getrusage().ru_minflt - before} faults")
    assert p.getrusage().ru_minflt == before
    print(machine.read_file(f"/proc/{p.pid}/maps"))


if __name__ == "__main__":
    main(vmsim.Machine(memory="1G"))
