"""Stack growth.

    vmsim run examples/stack_growth.py

The [stack] VMA is VM_GROWSDOWN: an access just below it does not find a VMA
(find_vma returns the stack), and lock_mm_and_find_vma -> expand_stack ->
expand_downwards extends the VMA down to the faulting page, after the checks of
acct_stack_growth: RLIMIT_STACK (8 MiB here) and the stack_guard_gap (256 pages,
1 MiB) to the mapping below. Touching pages downwards grows it one page per fault.
A touch beyond RLIMIT_STACK is SIGSEGV SEGV_MAPERR, as for an unmapped address.

Expected values: Linux 6.18 (scenarios/recorded/stack_growth.json: 64 pages
below the stack, touched downwards, 64 faults and the VMA 64 pages larger;
stack_rlimit.json for the limit).
"""
import vmsim
from vmsim import SignalDelivered, SIGSEGV, SEGV_MAPERR
from _util import maps_line

PAGE = 4096
N = 64


def main(machine):
    p = machine.spawn()
    lo, hi, perms = maps_line(machine, p.pid, "[stack]")
    print(f"[stack] at start: {lo:#x}-{hi:#x} {perms} ({(hi - lo) // PAGE} pages)")

    for i in range(1, N + 1):                        # downwards, like a growing stack
        p.write(lo - i * PAGE, b"\x01")
    assert p.getrusage().ru_minflt == N
    lo2, hi2, _ = maps_line(machine, p.pid, "[stack]")
    print(f"[stack] after {N} pages below it: {lo2:#x}-{hi2:#x} ({(hi2 - lo2) // PAGE} pages)")
    assert (lo2, hi2) == (lo - N * PAGE, hi)

    # 8 MiB (RLIMIT_STACK) below the top is too far: the stack may not grow there.
    too_far = hi - (8 << 20) - PAGE
    try:
        p.write(too_far, b"\x01")
        raise AssertionError("the stack grew beyond RLIMIT_STACK")
    except SignalDelivered as sig:
        assert (sig.signo, sig.si_code, sig.si_addr) == (SIGSEGV, SEGV_MAPERR, too_far)
        print(f"write at top - 8 MiB - 4 KiB: SIGSEGV SEGV_MAPERR si_addr={too_far:#x}")
    assert maps_line(machine, p.pid, "[stack]")[:2] == (lo2, hi2)


if __name__ == "__main__":
    main(vmsim.Machine(memory="1G"))
