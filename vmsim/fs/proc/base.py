"""/proc/<pid>/oom_score and /proc/<pid>/oom_score_adj (fs/proc/base.c)."""
import errno

from vmsim.mm.oom_kill import (oom_badness, totalram_pages, total_swap_pages, LONG_MIN,
                               OOM_SCORE_ADJ_MIN, OOM_SCORE_ADJ_MAX, _c_div)

PROC_NUMBUF = 13
_ULONG = 1 << 64


def proc_oom_score(k, task) -> str:
    """proc_oom_score(): the badness scaled into [0, 2000] and by 2/3:
    (1000 + badness * 1000 / totalpages) * 2 / 3 (0 for an unkillable task)."""
    totalpages = totalram_pages(k) + total_swap_pages(k)
    points = 0
    badness = oom_badness(task, totalpages)
    if badness != LONG_MIN:
        points = _c_div((1000 + _c_div(badness * 1000, totalpages)) * 2, 3) % _ULONG
    return "%d\n" % points


def oom_score_adj_read(k, task) -> str:
    """oom_score_adj_read(): signal->oom_score_adj."""
    return "%d\n" % task.oom_score_adj


def kstrtoint(s: str):
    """kstrtoint(s, 0): (0, value) for an int in C syntax (0x hex, 0 octal, optional
    sign, one trailing newline); (-EINVAL, 0) for anything else, (-ERANGE, 0)
    beyond int."""
    neg = False
    if s.startswith("-"):
        neg, s = True, s[1:]
    elif s.startswith("+"):
        s = s[1:]
    if s.endswith("\n"):
        s = s[:-1]
    if s[:2].lower() == "0x" and len(s) > 2:
        base, digits = 16, s[2:]
    elif s.startswith("0"):
        base, digits = 8, s
    else:
        base, digits = 10, s
    valid = "0123456789abcdef"[:base]
    if not digits or any(c not in valid for c in digits.lower()):
        return -errno.EINVAL, 0
    v = int(digits, base)
    if neg:
        v = -v
    if not -(1 << 31) <= v < (1 << 31):
        return -errno.ERANGE, 0
    return 0, v


def oom_score_adj_write(k, task, data: str) -> int:
    """oom_score_adj_write(): parse (at most PROC_NUMBUF - 1 bytes), range-check
    [OOM_SCORE_ADJ_MIN, OOM_SCORE_ADJ_MAX] (-EINVAL), then __set_oom_adj(); the
    byte count or -errno."""
    raw = data.encode()
    count = len(raw)
    if count > PROC_NUMBUF - 1:
        count = PROC_NUMBUF - 1
        raw = raw[:count]
    err, v = kstrtoint(raw.decode(errors="replace").strip(" \t\n\r\v\f"))   # strstrip()
    if err:
        return err
    if v < OOM_SCORE_ADJ_MIN or v > OOM_SCORE_ADJ_MAX:
        return -errno.EINVAL
    err = __set_oom_adj(k, task, v)
    return err if err < 0 else count


def __set_oom_adj(k, task, oom_adj: int) -> int:
    """__set_oom_adj(): set signal->oom_score_adj; going below oom_score_adj_min needs
    CAP_SYS_RESOURCE (-EACCES), and a writer that has it sets the new minimum. No
    process shares an mm with another in vmsim: nobody to update alongside."""
    if oom_adj < task.oom_score_adj_min and not k.cap_sys_resource:
        return -errno.EACCES
    task.oom_score_adj = oom_adj
    if k.cap_sys_resource:
        task.oom_score_adj_min = oom_adj
    return 0
