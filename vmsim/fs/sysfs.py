"""The mm knobs by their real paths: THP sysfs files, vm sysctls, fault_around_bytes.

Reads print what the kernel prints (the selected mode in [brackets] for the THP mode
files); writes are parsed and checked as the kernel's store handlers do, then applied
to the model: ``k.sysfs`` / ``k.sysctl`` (the profile's strings), ``k.mmap_min_addr``,
``k.fault_around_pages``. Mirrors mm/huge_memory.c (enabled_store, defrag_store,
use_zero_page_store), mm/shmem.c (shmem_enabled_store), kernel/sysctl.c and
mm/util.c / security/min_addr.c (the vm sysctls), mm/memory.c (fault_around_bytes_set).

Write handlers return the byte count or a negative errno; procfs.py raises.
Simplified: mmap_min_addr does not take CONFIG_LSM_MMAP_MIN_ADDR into account, and
writes need no capability (processes run as root).
"""
import errno
import re

THP = "/sys/kernel/mm/transparent_hugepage/"
THP_ENABLED = THP + "enabled"
THP_DEFRAG = THP + "defrag"
THP_USE_ZERO_PAGE = THP + "use_zero_page"
THP_HPAGE_PMD_SIZE = THP + "hpage_pmd_size"
THP_SHMEM_ENABLED = THP + "shmem_enabled"
FAULT_AROUND_BYTES = "/sys/kernel/debug/fault_around_bytes"
SYSCTL_OVERCOMMIT_MEMORY = "/proc/sys/vm/overcommit_memory"
SYSCTL_OVERCOMMIT_RATIO = "/proc/sys/vm/overcommit_ratio"
SYSCTL_MAX_MAP_COUNT = "/proc/sys/vm/max_map_count"
SYSCTL_MMAP_MIN_ADDR = "/proc/sys/vm/mmap_min_addr"
SYSCTL_RANDOMIZE_VA_SPACE = "/proc/sys/kernel/randomize_va_space"

# The modes each THP mode file lists, in the kernel's order.
_MODES = {
    THP_ENABLED: ("always", "madvise", "never"),
    THP_DEFRAG: ("always", "defer", "defer+madvise", "madvise", "never"),
    THP_SHMEM_ENABLED: ("always", "within_size", "advise", "never", "deny", "force"),
}
# int sysctls: (min, max) as their proc_dointvec_minmax extra1/extra2 (None: unbounded).
_INT_SYSCTLS = {
    SYSCTL_OVERCOMMIT_MEMORY: (0, 2),
    SYSCTL_OVERCOMMIT_RATIO: (None, None),
    SYSCTL_MAX_MAP_COUNT: (0, None),
    SYSCTL_RANDOMIZE_VA_SPACE: (0, 2),
}
PTRS_PER_PTE = 512
PAGE_SIZE = 4096
INT_MAX = (1 << 31) - 1

KNOBS = (THP_ENABLED, THP_DEFRAG, THP_USE_ZERO_PAGE, THP_HPAGE_PMD_SIZE, THP_SHMEM_ENABLED,
         SYSCTL_OVERCOMMIT_MEMORY, SYSCTL_OVERCOMMIT_RATIO, SYSCTL_MAX_MAP_COUNT,
         SYSCTL_MMAP_MIN_ADDR, SYSCTL_RANDOMIZE_VA_SPACE, FAULT_AROUND_BYTES)


def is_knob(path: str) -> bool:
    return path in KNOBS


def sysfs_streq(buf: str, s: str) -> bool:
    """sysfs_streq(): equal, ignoring one trailing newline on the written string."""
    return buf == s or buf == s + "\n"


def knob_read(k, path: str) -> str:
    """The text a read of the knob returns."""
    if path in _MODES:
        cur = k.sysfs[path]
        return " ".join(f"[{m}]" if m == cur else m for m in _MODES[path]) + "\n"
    if path in (THP_USE_ZERO_PAGE, THP_HPAGE_PMD_SIZE):
        return f"{int(k.sysfs[path])}\n"
    if path == FAULT_AROUND_BYTES:
        return f"{k.fault_around_pages << 12}\n"         # fault_around_bytes_get()
    if path == SYSCTL_MMAP_MIN_ADDR:
        return f"{k.mmap_min_addr}\n"
    return f"{int(k.sysctl[path])}\n"


def _parse_long(buf: str):
    """proc_get_long(): optional blanks, a decimal integer, optional blanks; None if not."""
    m = re.fullmatch(r"\s*(-?\d+)\s*", buf)
    return int(m.group(1)) if m else None


def _kstrtoul(buf: str, base: int = 10):
    """kstrtoul(): digits (base 0: 0x / 0 prefixes) and at most one trailing newline."""
    s = buf[:-1] if buf.endswith("\n") else buf
    if base == 0:
        m = re.fullmatch(r"\+?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", s)
        if not m:
            return None
        t = m.group(1)
        return int(t, 16) if t[:2].lower() == "0x" else int(t, 8) if t.startswith("0") else int(t)
    m = re.fullmatch(r"\+?[0-9]+", s)
    return int(s) if m else None


def fault_around_bytes_set(k, val: int) -> int:
    """fault_around_bytes_set(): at most PTRS_PER_PTE pages, rounded down to a power of two."""
    if val // PAGE_SIZE > PTRS_PER_PTE:
        return -errno.EINVAL
    val = max(val, PAGE_SIZE)
    k.fault_around_pages = (1 << (val.bit_length() - 1)) >> 12
    return 0


def knob_write(k, path: str, data: str) -> int:
    """Store ``data`` into the knob: len(data), or -EINVAL / -EACCES as the kernel."""
    n = len(data)
    if path in _MODES:
        if path == THP_SHMEM_ENABLED:
            # shmem_enabled_store(): exact match after dropping one trailing newline.
            s = data[:-1] if data.endswith("\n") else data
            ok = [m for m in _MODES[path] if m == s]
        else:
            ok = [m for m in _MODES[path] if sysfs_streq(data, m)]
        if not ok:
            return -errno.EINVAL
        k.sysfs[path] = ok[0]
        return n
    if path == THP_HPAGE_PMD_SIZE:
        return -errno.EACCES                        # 0444: kernfs refuses the open
    if path == THP_USE_ZERO_PAGE:
        val = _kstrtoul(data)
        if val is None or val > 1:
            return -errno.EINVAL
        k.sysfs[path] = str(val)
        return n
    if path == FAULT_AROUND_BYTES:
        val = _kstrtoul(data[:23], 0)               # simple_attr_write: kstrtoull(buf, 0)
        if val is None:
            return -errno.EINVAL
        ret = fault_around_bytes_set(k, val)
        return ret if ret else n
    if path == SYSCTL_MMAP_MIN_ADDR:
        if not data.strip():
            return n
        val = _parse_long(data)
        if val is None or val < 0:
            return -errno.EINVAL
        k.sysctl[path] = str(val)
        k.mmap_min_addr = val                        # update_mmap_min_addr()
        return n
    if path in _INT_SYSCTLS:
        if not data.strip():
            return n
        val = _parse_long(data)
        lo, hi = _INT_SYSCTLS[path]
        if val is None or abs(val) > INT_MAX or (lo is not None and val < lo) or \
                (hi is not None and val > hi):
            return -errno.EINVAL
        k.sysctl[path] = str(val)
        return n
    return -errno.ENOENT
