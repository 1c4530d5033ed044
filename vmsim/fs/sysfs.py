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
import os
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
SYSCTL_USER_RESERVE = "/proc/sys/vm/user_reserve_kbytes"
SYSCTL_ADMIN_RESERVE = "/proc/sys/vm/admin_reserve_kbytes"
# unsigned long sysctls kept only as C variables (mm/util.c), set at boot
# (init_user_reserve / init_admin_reserve), proc_doulongvec_minmax with no bounds.
_ULONG_SYSCTLS = {SYSCTL_USER_RESERVE: "sysctl_user_reserve_kbytes",
                  SYSCTL_ADMIN_RESERVE: "sysctl_admin_reserve_kbytes"}

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
# The int sysctls the kernel reads as C variables on hot paths (mm/util.c
# sysctl_overcommit_memory / sysctl_overcommit_ratio, mm/mmap.c sysctl_max_map_count):
# the Kernel keeps each as an int beside its string in k.sysctl, and a write updates
# both (proc_dointvec stores into .data); the debug checker compares them.
SYSCTL_VARS = {
    SYSCTL_OVERCOMMIT_MEMORY: "sysctl_overcommit_memory",
    SYSCTL_OVERCOMMIT_RATIO: "sysctl_overcommit_ratio",
    SYSCTL_MAX_MAP_COUNT: "sysctl_max_map_count",
}
PTRS_PER_PTE = 512
PAGE_SIZE = 4096
INT_MAX = (1 << 31) - 1

KNOBS = (THP_ENABLED, THP_DEFRAG, THP_USE_ZERO_PAGE, THP_HPAGE_PMD_SIZE, THP_SHMEM_ENABLED,
         SYSCTL_OVERCOMMIT_MEMORY, SYSCTL_OVERCOMMIT_RATIO, SYSCTL_MAX_MAP_COUNT,
         SYSCTL_MMAP_MIN_ADDR, SYSCTL_RANDOMIZE_VA_SPACE, FAULT_AROUND_BYTES,
         SYSCTL_USER_RESERVE, SYSCTL_ADMIN_RESERVE)


def _is_knob(path: str) -> bool:
    return path in KNOBS or _thp_attr(path) is not None


def sysfs_streq(buf: str, s: str) -> bool:
    """sysfs_streq(): equal, ignoring one trailing newline on the written string."""
    return buf == s or buf == s + "\n"


def knob_read(k, path: str) -> str:
    """The text a read of the knob returns."""
    attr = _thp_attr(path)
    if attr is not None:
        if not _thp_attr_exists(k, attr, path):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        return _thp_attr_show(k, path, attr)
    if path in _MODES:
        cur = k.sysfs[path]
        return " ".join(f"[{m}]" if m == cur else m for m in _MODES[path]) + "\n"
    if path in (THP_USE_ZERO_PAGE, THP_HPAGE_PMD_SIZE):
        return f"{int(k.sysfs[path])}\n"
    if path == FAULT_AROUND_BYTES:
        return f"{k.fault_around_pages << 12}\n"         # fault_around_bytes_get()
    if path == SYSCTL_MMAP_MIN_ADDR:
        return f"{k.mmap_min_addr}\n"
    if path in _ULONG_SYSCTLS:
        return f"{getattr(k, _ULONG_SYSCTLS[path])}\n"
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


def proc_doulongvec_minmax(buf: str):
    """proc_doulongvec_minmax() for one value: blanks, an unsigned number in C syntax
    (strtoul base 0: 0x hex, 0 octal; no sign), blanks; (0, v) or (-EINVAL, 0); a
    write of only blanks stores nothing (1, 0)."""
    if not buf.strip():
        return 1, 0
    m = re.fullmatch(r"\s*(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\s*", buf)
    if not m:
        return -errno.EINVAL, 0
    t = m.group(1)
    v = int(t, 16) if t[:2].lower() == "0x" else int(t, 8) if t.startswith("0") else int(t)
    if v >= 1 << 64:
        return -errno.EINVAL, 0
    return 0, v


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
    attr = _thp_attr(path)
    if attr is not None:
        if not _thp_attr_exists(k, attr, path):
            return -errno.ENOENT
        return _thp_attr_store(k, path, attr, data)
    if path in _MODES:
        if path == THP_SHMEM_ENABLED:
            from vmsim.mm.shmem import shmem_enabled_store
            return shmem_enabled_store(k, data)
        ok = [m for m in _MODES[path] if sysfs_streq(data, m)]
        if not ok:
            return -errno.EINVAL
        k.sysfs[path] = ok[0]
        if path == THP_ENABLED:
            from vmsim.mm.khugepaged import start_stop_khugepaged
            start_stop_khugepaged(k)
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
    if path in _ULONG_SYSCTLS:
        err, val = proc_doulongvec_minmax(data)
        if err < 0:
            return err
        if err == 0:
            setattr(k, _ULONG_SYSCTLS[path], val)
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
        if path in SYSCTL_VARS:
            setattr(k, SYSCTL_VARS[path], val)
        return n
    return -errno.ENOENT


# --- the rest of /sys/kernel/mm/transparent_hugepage (mm/huge_memory.c, khugepaged.c) ---
# Orders with a hugepages-<size>kB directory: THP_ORDERS_ALL_ANON (2..PMD_ORDER: an
# "enabled" file and the anon stats) | THP_ORDERS_ALL_FILE_DEFAULT (1..PMD_ORDER:
# "shmem_enabled" and the shmem stats); every size has the any_stats group.
PMD_ORDER = 9
ANON_ORDERS = range(2, PMD_ORDER + 1)
FILE_ORDERS = range(1, PMD_ORDER + 1)
ANON_MODES = ("always", "inherit", "madvise", "never")              # anon_enabled_show()
SHMEM_SIZE_MODES = ("always", "inherit", "within_size", "advise", "never")
ANON_STATS = ("anon_fault_alloc", "anon_fault_fallback", "anon_fault_fallback_charge",
              "split_deferred", "nr_anon", "nr_anon_partially_mapped")
FILE_STATS = ("shmem_alloc", "shmem_fallback", "shmem_fallback_charge")
ANY_STATS = ("zswpout", "swpin", "swpin_fallback", "swpin_fallback_charge", "swpout",
             "swpout_fallback", "split", "split_failed")
KHUGEPAGED = THP + "khugepaged/"
# khugepaged attributes: the uint ones (kstrtouint), the ulong ones bounded by
# HPAGE_PMD_NR - 1 (kstrtoul), the 0/1 flag, the read-only counters.
_KH_UINT = ("scan_sleep_millisecs", "alloc_sleep_millisecs", "pages_to_scan")
_KH_MAXPTES = ("max_ptes_none", "max_ptes_swap", "max_ptes_shared")
_KH_RO = ("pages_collapsed", "full_scans")
UINT_MAX = (1 << 32) - 1


def thpsize_dir(order: int) -> str:
    """The hugepages-<size>kB directory of an order (thpsize_create())."""
    return f"{THP}hugepages-{(4096 << order) >> 10}kB/"


def _size_order(name: str):
    m = re.fullmatch(r"hugepages-(\d+)kB", name)
    if not m:
        return None
    kb = int(m.group(1))
    if kb < 8 or kb & (kb - 1) or str(kb) != m.group(1):
        return None
    order = (kb >> 2).bit_length() - 1
    return order if order in FILE_ORDERS else None


def _thp_attr(path: str):
    """("size", order, file) / ("stat", order, item) / ("khugepaged", name) /
    ("shrink_underused",) for the attribute files this section serves, else None."""
    if not path.startswith(THP):
        return None
    rest = path[len(THP):].split("/")
    if rest == ["shrink_underused"]:
        return ("shrink_underused",)
    if len(rest) == 2 and rest[0] == "khugepaged" and \
            rest[1] in _KH_UINT + _KH_MAXPTES + _KH_RO + ("defrag",):
        return ("khugepaged", rest[1])
    order = _size_order(rest[0])
    if order is None:
        return None
    if len(rest) == 2:
        if rest[1] == "enabled" and order in ANON_ORDERS:
            return ("size", order, "enabled")
        if rest[1] == "shmem_enabled":
            return ("size", order, "shmem_enabled")
    if len(rest) == 3 and rest[1] == "stats":
        names = ANY_STATS + FILE_STATS + (ANON_STATS if order in ANON_ORDERS else ())
        if rest[2] in names:
            return ("stat", order, rest[2])
    return None


def _thp_attr_exists(k, attr, path: str) -> bool:
    """The profile's kernel has this file (5.4: no hugepages-<size>kB, no
    shrink_underused, no khugepaged/max_ptes_shared)."""
    if attr[0] == "stat":
        return (thpsize_dir(attr[1]) + "shmem_enabled") in k.sysfs
    if attr[0] == "khugepaged" and attr[1] in _KH_RO:
        return True
    return path in k.sysfs


def _thp_attr_show(k, path: str, attr) -> str:
    from vmsim.mm import huge_memory as H
    kind = attr[0]
    if kind == "size":
        modes = ANON_MODES if attr[2] == "enabled" else SHMEM_SIZE_MODES
        cur = k.sysfs[path]
        return " ".join(f"[{m}]" if m == cur else m for m in modes) + "\n"
    if kind == "stat":
        return f"{H.sum_mthp_stat(k, attr[1], attr[2])}\n"      # DEFINE_MTHP_STAT_ATTR
    if kind == "khugepaged" and attr[1] in _KH_RO:
        return f"{getattr(H._thp(k), 'khugepaged_' + attr[1])}\n"
    return f"{int(k.sysfs[path])}\n"


def _kstrtobool(buf: str):
    """kstrtobool(): y/Y/1 and n/N/0 by the first character, on/off by two; else None."""
    if not buf:
        return None
    c = buf[0]
    if c in "yY1":
        return True
    if c in "nN0":
        return False
    if c in "oO" and len(buf) > 1:
        if buf[1] in "nN":
            return True
        if buf[1] in "fF":
            return False
    return None


def _thp_attr_store(k, path: str, attr, data: str) -> int:
    n = len(data)
    kind = attr[0]
    if kind == "stat" or (kind == "khugepaged" and attr[1] in _KH_RO):
        return -errno.EACCES                            # 0444: kernfs refuses the open
    if kind == "size":
        order, name = attr[1], attr[2]
        if name == "shmem_enabled":
            from vmsim.mm.shmem import thpsize_shmem_enabled_store
            return thpsize_shmem_enabled_store(k, path, order, data)
        ok = [m for m in ANON_MODES if sysfs_streq(data, m)]
        if not ok:
            return -errno.EINVAL
        k.sysfs[path] = ok[0]
        if name == "enabled":
            # thpsize_enabled_store(): set_bit / clear_bit in huge_anon_orders_*.
            from vmsim.mm.huge_memory import _thp
            _thp(k).huge_anon_orders = None
        from vmsim.mm.khugepaged import start_stop_khugepaged
        start_stop_khugepaged(k)
        return n
    if kind == "shrink_underused":
        val = _kstrtobool(data)                         # split_underused_thp_store()
        if val is None:
            return -errno.EINVAL
        k.sysfs[path] = str(int(val))
        return n
    name = attr[1]
    if name == "defrag":                                # single_hugepage_flag_store()
        val = _kstrtoul(data)
        if val is None or val > 1:
            return -errno.EINVAL
    elif name in _KH_UINT:
        val = _kstrtoul(data)                           # kstrtouint(): -ERANGE -> -EINVAL
        if val is None or val > UINT_MAX or (name == "pages_to_scan" and not val):
            return -errno.EINVAL
    else:
        val = _kstrtoul(data)
        if val is None or val > PTRS_PER_PTE - 1:
            return -errno.EINVAL
    k.sysfs[path] = str(val)
    if name in ("scan_sleep_millisecs", "alloc_sleep_millisecs"):
        from vmsim.mm.khugepaged import khugepaged_sleep_changed
        khugepaged_sleep_changed(k)                     # khugepaged_sleep_expire = 0; wake up
    return n
