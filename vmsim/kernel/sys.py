"""prctl(2) (kernel/sys.c): the options memory management reads.

Modelled: PR_SET_THP_DISABLE / PR_GET_THP_DISABLE (prctl_set_thp_disable,
prctl_get_thp_disable), which set MMF_DISABLE_THP_COMPLETELY or, with
PR_THP_DISABLE_EXCEPT_ADVISED, MMF_DISABLE_THP_EXCEPT_ADVISED in mm->flags.
vma_thp_disabled() (include/linux/huge_mm.h) reads them for the THP fault,
khugepaged, MADV_COLLAPSE and the file PMD paths; mm_init() copies them to a forked
or exec'd mm (MMF_INIT_LEGACY_MASK); /proc/PID/status shows THP_enabled (0 only when
disabled completely, task_thp_status). Any other option number that 6.18 knows
(kernel/sys.c's switch) is not modelled and raises NotImplementedError; an unknown
one is -EINVAL, as the switch's default.
"""
import errno

from vmsim.mm.huge_memory import MMF_DISABLE_THP_COMPLETELY, MMF_DISABLE_THP_EXCEPT_ADVISED
from vmsim.uapi import PR_SET_THP_DISABLE, PR_GET_THP_DISABLE, PR_THP_DISABLE_EXCEPT_ADVISED

# include/uapi/linux/prctl.h: the options numbered 1..78 in 6.18, and the two
# magic-valued ones (PR_SET_VMA, PR_GET_AUXV).
_PR_KNOWN_MAX = 78
PR_SET_VMA = 0x53564d41
PR_GET_AUXV = 0x41555856


def _mm_flags_test(bit: int, mm) -> bool:
    return bool(mm.flags >> bit & 1)


def _mm_flags_set(bit: int, mm):
    mm.flags |= 1 << bit


def _mm_flags_clear(bit: int, mm):
    mm.flags &= ~(1 << bit)


def prctl_get_thp_disable(k, arg2: int, arg3: int, arg4: int, arg5: int) -> int:
    """prctl_get_thp_disable(): "1 | flags" when disabled, else 0."""
    mm = k.current.mm
    if arg2 or arg3 or arg4 or arg5:
        return -errno.EINVAL
    if _mm_flags_test(MMF_DISABLE_THP_COMPLETELY, mm):
        return 1
    elif _mm_flags_test(MMF_DISABLE_THP_EXCEPT_ADVISED, mm):
        return 1 | PR_THP_DISABLE_EXCEPT_ADVISED
    return 0


def prctl_set_thp_disable(k, thp_disable: bool, flags: int, arg4: int, arg5: int) -> int:
    """prctl_set_thp_disable(): flags (arg3) only when disabling, and only
    PR_THP_DISABLE_EXCEPT_ADVISED; under the mmap write lock."""
    mm = k.current.mm
    if arg4 or arg5:
        return -errno.EINVAL
    # Flags are only allowed when disabling.
    if (not thp_disable and flags) or flags & ~PR_THP_DISABLE_EXCEPT_ADVISED:
        return -errno.EINVAL
    if thp_disable:
        if flags & PR_THP_DISABLE_EXCEPT_ADVISED:
            _mm_flags_clear(MMF_DISABLE_THP_COMPLETELY, mm)
            _mm_flags_set(MMF_DISABLE_THP_EXCEPT_ADVISED, mm)
        else:
            _mm_flags_set(MMF_DISABLE_THP_COMPLETELY, mm)
            _mm_flags_clear(MMF_DISABLE_THP_EXCEPT_ADVISED, mm)
    else:
        _mm_flags_clear(MMF_DISABLE_THP_COMPLETELY, mm)
        _mm_flags_clear(MMF_DISABLE_THP_EXCEPT_ADVISED, mm)
    return 0


def sys_prctl(k, option: int, arg2: int, arg3: int, arg4: int, arg5: int) -> int:
    """SYSCALL_DEFINE5(prctl): the option's handler (security_task_prctl passes)."""
    if option == PR_SET_THP_DISABLE:
        # The handler takes ``bool thp_disable``: any non-zero arg2 disables.
        return prctl_set_thp_disable(k, arg2 != 0, arg3, arg4, arg5)
    if option == PR_GET_THP_DISABLE:
        return prctl_get_thp_disable(k, arg2, arg3, arg4, arg5)
    if 1 <= option <= _PR_KNOWN_MAX or option in (PR_SET_VMA, PR_GET_AUXV):
        raise NotImplementedError(f"prctl option {option} is not modelled (only "
                                  "PR_SET_THP_DISABLE and PR_GET_THP_DISABLE)")
    return -errno.EINVAL
