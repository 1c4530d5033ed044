"""Conformance scenarios: the TOML format, its validation, and the resolved op list.

A scenario (documented for users in docs/conformance.md) is parsed into a
:class:`Scenario` whose ``ops`` is the same flat program for both sides: linux.py
writes it as the executor's text lines, vmsim_side.py interprets it with the vmsim
API. Every mistake raises :class:`ScenarioFormatError` whose message is
"FILE:LINE: problem" (never a traceback).
"""
import errno as _errno
import hashlib
import os
import re
import tomllib

from vmsim import uapi

PAGE = 4096

# [settings] keys -> knob paths (values are the mode names the sysfs files accept)
SETTING_KNOBS = {
    "thp_enabled": "/sys/kernel/mm/transparent_hugepage/enabled",
    "thp_defrag": "/sys/kernel/mm/transparent_hugepage/defrag",
    "shmem_enabled": "/sys/kernel/mm/transparent_hugepage/shmem_enabled",
}
SETTING_DEFAULTS = {"thp_defrag": "madvise", "shmem_enabled": "never"}
SETTING_CHOICES = {
    "thp_enabled": ("always", "madvise", "never"),
    "thp_defrag": ("always", "defer", "defer+madvise", "madvise", "never"),
    "shmem_enabled": ("always", "within_size", "advise", "never", "deny", "force"),
    # Not a knob: the CPU the scenario needs (protection keys change what PROT_EXEC-only
    # memory does). Unset: the scenario runs alike on either CPU.
    "cpu_pku": ("yes", "no"),
}
KERNELS = ("6.18",)

PROT = {"r": 1, "w": 2, "x": 4}
MAP_FLAGS = {
    "shared": 0x01, "private": 0x02, "droppable": 0x08, "fixed": 0x10, "anonymous": 0x20, "32bit": 0x40, "growsdown": 0x100,
    "locked": 0x2000, "noreserve": 0x4000, "populate": 0x8000, "nonblock": 0x10000,
    "stack": 0x20000, "fixed_noreplace": 0x100000,
    "hugetlb": 0x40000, "huge_2mb": 21 << 26, "huge_1gb": 30 << 26,   # MAP_HUGE_SHIFT 26
}
MADV = {n[5:].lower(): getattr(uapi, n) for n in dir(uapi) if n.startswith("MADV_")}
MREMAP = {"maymove": 1, "fixed": 2, "dontunmap": 4}
MLOCK = {"onfault": 1}
RLIMITS = {"STACK": 3, "AS": 9, "DATA": 2, "MEMLOCK": 8}
# files: open(2) flags (x86-64 values), posix_fadvise advice, msync and fallocate flags
O_FLAGS = {"rdonly": 0, "wronly": 1, "rdwr": 2, "creat": 0o100, "excl": 0o200, "trunc": 0o1000,
           "append": 0o2000}
FADV = {"normal": 0, "random": 1, "sequential": 2, "willneed": 3, "dontneed": 4, "noreuse": 5}
MS_FLAGS = {"async": uapi.MS_ASYNC, "invalidate": uapi.MS_INVALIDATE, "sync": uapi.MS_SYNC}
FALLOC = {"keep_size": uapi.FALLOC_FL_KEEP_SIZE, "punch_hole": uapi.FALLOC_FL_PUNCH_HOLE,
          "collapse_range": uapi.FALLOC_FL_COLLAPSE_RANGE, "zero_range": uapi.FALLOC_FL_ZERO_RANGE,
          "insert_range": uapi.FALLOC_FL_INSERT_RANGE, "unshare_range": uapi.FALLOC_FL_UNSHARE_RANGE,
          "write_zeroes": uapi.FALLOC_FL_WRITE_ZEROES}
FILESYSTEMS = {"tmp": 0, "shm": 1}       # /tmp (the disk filesystem) and /dev/shm (tmpfs)
FS_MEMFD = 2                             # a file made by a 'memfd' step (no path)
MFD_FLAGS = {"cloexec": uapi.MFD_CLOEXEC, "allow_sealing": uapi.MFD_ALLOW_SEALING,
             "hugetlb": uapi.MFD_HUGETLB, "huge_2mb": uapi.MFD_HUGE_2MB,
             "huge_1gb": uapi.MFD_HUGE_1GB, "noexec_seal": uapi.MFD_NOEXEC_SEAL,
             "exec": uapi.MFD_EXEC}
SHMGET_FLAGS = {"hugetlb": uapi.SHM_HUGETLB, "noreserve": uapi.SHM_NORESERVE,
                "huge_2mb": uapi.SHM_HUGE_2MB, "huge_1gb": uapi.SHM_HUGE_1GB}
SHMAT_FLAGS = {"rdonly": uapi.SHM_RDONLY, "exec": uapi.SHM_EXEC}
MAX_SEGS = 16
PRCTL_OPTIONS = {"set_thp_disable": uapi.PR_SET_THP_DISABLE,
                 "get_thp_disable": uapi.PR_GET_THP_DISABLE}
MAX_FILES = 16

SMAPS_FIELDS = ("Size", "Rss", "Pss", "Shared_Clean", "Shared_Dirty", "Private_Clean",
                "Private_Dirty", "Referenced", "Anonymous", "LazyFree", "AnonHugePages",
                "ShmemPmdMapped", "FilePmdMapped", "Shared_Hugetlb", "Private_Hugetlb", "Swap",
                "SwapPss", "Locked")
SMAPS_DEFAULT = ("Rss", "Pss", "Shared_Clean", "Shared_Dirty", "Private_Clean",
                 "Private_Dirty", "Anonymous", "LazyFree", "AnonHugePages", "Swap", "Locked")

# /proc/vmstat counters a scenario may observe: only those the rest of a live
# machine does not move. pgfault, pgalloc_*, nr_* and the LRU counters change all
# the time on a running system; the THP event counters stay put while nothing else
# uses THP (enabled=madvise and no other MADV_HUGEPAGE user), and the
# unevictable_pgs_* counters while nothing else mlocks.
# htlb_buddy_alloc_* move only when a hugetlb pool grows from the buddy allocator.
# workingset_* (file) counters move only when page-cache folios are reclaimed and read
# again (no swap here: the anon ones never move); the executor folds the per-CPU
# node-stat deltas first (/proc/sys/vm/stat_refresh), or they lag by up to the
# vmstat threshold.
VMSTAT_ALLOWED = re.compile(r"^(thp_[a-z_]+|unevictable_pgs_[a-z]+|htlb_buddy_alloc_[a-z]+|"
                            r"workingset_(nodes|refault_file|activate_file|restore_file))$")
# [varies]: Linux's result for these observations is not reproducible; --record makes
# `runs` runs and the recording's min..max is what vmsim must fall within.
VARIES_MIN_RUNS = 3

LIFECYCLE_OPS = ("fork", "exit", "wait", "execve")
MAX_PROCS = 16
ID_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


class ScenarioFormatError(Exception):
    """A malformed scenario: str() is "FILE:LINE: problem"."""


# tomllib parses nested arrays and inline tables recursively: a few hundred levels
# exhaust Python's stack (RecursionError). No scenario needs more than three.
MAX_NESTING = 32


def _too_deep(text, limit=MAX_NESTING):
    """The 1-based line where ``[``/``{`` nesting in values first exceeds ``limit``
    (strings and comments skipped), else None."""
    depth = 0
    line = 1
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        elif c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        elif c in "\"'":
            q3 = text[i:i + 3]
            if q3 in ('"""', "'''"):
                j = text.find(q3, i + 3)
                j = n if j < 0 else j + 3
            else:
                j = i + 1
                while j < n and text[j] not in (c, "\n"):
                    j += 2 if c == '"' and text[j] == "\\" else 1
                j += 1
            line += text.count("\n", i, min(j, n))
            i = j
            continue
        elif c in "[{":
            depth += 1
            if depth > limit:
                return line
        elif c in "]}":
            depth = max(depth - 1, 0)
        i += 1
    return None


class Step:
    """One [[step]] table: ``op``, its TOML line, the raw table and its label."""

    def __init__(self, index, table, line):
        self.index = index
        self.t = table
        self.line = line
        self.op = table.get("op")
        self.label = ""
        self.proc = 0
        self.place = None        # mmap: (relative_to name or None, (lo, hi) or None)


class Scenario:
    """A parsed, validated scenario; ``ops`` is the resolved program for both sides."""

    def __init__(self, path):
        self.path = path
        self.name = ""
        self.description = ""
        self.source = ""
        self.settings = {}
        self.processes = []      # process names; index 0 is the initial process
        self.op_proc = []        # per op: the index of the process that runs it
        self.declared = []       # names of the [[process]] tables
        self.alive_at_end = []   # indices of the forked processes that never exit
        self.steps = []
        self.slots = {}          # mapping name -> slot number
        self.files = {}          # file name -> file slot number
        self.file_fs = {}        # file slot -> 0 (/tmp, disk) or 1 (/dev/shm, tmpfs)
        self.ops = []            # [(kind, step_index or None, args)] (see linux.py)
        self.vmstat = []
        self.varies = None       # {"runs", "reason", "observations"} or None
        self.points = []
        self.text_hash = ""

    def knobs(self):
        """{path: value} the scenario's settings require."""
        return {SETTING_KNOBS[k]: v for k, v in self.settings.items() if k in SETTING_KNOBS}


def _lines_of(text, header):
    """1-based line numbers of each ``[[header]]`` table, in order."""
    pat = re.compile(r"^\s*\[\[\s*" + re.escape(header) + r"\s*\]\]")
    return [i + 1 for i, l in enumerate(text.splitlines()) if pat.match(l)]


def _key_line(text, start, key):
    """Line of ``key =`` in the table starting at ``start`` (else ``start``)."""
    lines = text.splitlines()
    pat = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
    for i in range(start, len(lines)):
        if i > start - 1 and re.match(r"^\s*\[", lines[i]) and i != start - 1:
            break
        if pat.match(lines[i]):
            return i + 1
    return start


def parse_len(v, what="length"):
    """Bytes for 4096, "16p"/"16 pages", "64K", "2M", "-16p"."""
    if isinstance(v, bool):
        raise ValueError(f"{what}: expected a size, got {v!r}")
    if isinstance(v, int):
        return v
    if not isinstance(v, str):
        raise ValueError(f"{what}: expected a size (bytes, '16p', '64K'), got {v!r}")
    s = v.strip().replace("_", "")
    neg = s.startswith("-")
    if neg or s.startswith("+"):
        s = s[1:].strip()
    m = re.fullmatch(r"(0x[0-9a-fA-F]+|\d+)\s*(p|pages?|[kKmMgGtT]i?[bB]?|[bB]?)", s)
    if not m:
        raise ValueError(f"{what}: bad size {v!r} (use bytes, '16p' pages, or '64K', '2M')")
    n = int(m.group(1), 0)
    unit = m.group(2).lower()
    if unit.startswith("p"):
        n *= PAGE
    elif unit and unit[0] in "kmgt":
        n <<= {"k": 10, "m": 20, "g": 30, "t": 40}[unit[0]]
    return -n if neg else n


def parse_prot(v):
    if isinstance(v, int):
        return v
    s = str(v).lower().replace("prot_", "")
    if s in ("none", "", "-", "---"):
        return 0
    parts = re.split(r"[|,+ ]+", s)
    if len(parts) > 1 or s in ("read", "write", "exec"):
        out = 0
        for p in parts:
            if p in ("read", "r"):
                out |= 1
            elif p in ("write", "w"):
                out |= 2
            elif p in ("exec", "x"):
                out |= 4
            elif p != "none":
                raise ValueError(f"prot: unknown {p!r} (use 'rw', 'r', 'none', 'read|write')")
        return out
    out = 0
    for c in s:
        if c == "-":
            continue
        if c not in PROT:
            raise ValueError(f"prot: unknown {v!r} (use 'rw', 'r', 'rwx', 'none')")
        out |= PROT[c]
    return out


def _parse_flags(v, table, what):
    if isinstance(v, int):
        return v
    items = v if isinstance(v, list) else re.split(r"[|,+ ]+", str(v).strip())
    out = 0
    for it in items:
        name = str(it).lower()
        for pre in ("map_", "mremap_", "mlock_", "madv_", "o_", "ms_", "falloc_fl_", "posix_fadv_"):
            if name.startswith(pre):
                name = name[len(pre):]
        if not name:
            continue
        if name not in table:
            raise ValueError(f"{what}: unknown flag {it!r} (known: {', '.join(sorted(table))})")
        out |= table[name]
    return out


def _errno_name(e):
    return _errno.errorcode.get(e, str(e))


COMMON = {"op", "proc", "id", "note"}
RANGE = {"map", "offset", "length", "pages", "page"}
FRANGE = {"file", "offset", "length", "pages", "page"}
OP_KEYS = {
    "mmap": {"map", "length", "pages", "prot", "flags", "hint", "fixed", "align", "relative_to", "in_range",
             "file", "file_offset"},
    "open": {"file", "fs", "flags", "mode"}, "close": {"file"}, "unlink": {"file"},
    "fsync": {"file", "data"}, "ftruncate": {"file", "length", "pages"},
    "pwrite": FRANGE | {"value", "per_page"}, "pread": FRANGE | {"value", "per_page"},
    "fadvise": FRANGE | {"advice"}, "fallocate": FRANGE | {"mode"},
    "drop_caches": {"value"}, "msync": RANGE | {"flags"},
    "munmap": RANGE, "mprotect": RANGE | {"prot"}, "madvise": RANGE | {"advice"},
    "mremap": RANGE | {"new_length", "new_pages", "flags", "dest", "as"},
    "mlock": RANGE | {"flags"}, "munlock": RANGE,
    "brk": {"offset", "map"},
    "touch": RANGE | {"address", "stride", "access", "value", "on_signal", "order"},
    "write": RANGE | {"address", "value", "per_page"},
    "check": RANGE | {"address", "value", "per_page"},
    "setrlimit": {"resource", "soft", "hard"},
    "name": {"map", "special", "anchor", "length", "pages"},
    "knob": {"path", "value"},
    "point": {"smaps", "pagemap", "maps", "mincore"},
    "fork": {"child"},
    "exit": {"status"},
    "wait": {"child"},
    "execve": set(),
    "prctl": {"option", "arg2", "arg3", "arg4", "arg5"},
    "memfd": {"file", "flags"},
    "shmget": {"segment", "length", "pages", "flags"},
    "shmat": {"map", "segment", "length", "pages", "flags"},
    "shmdt": {"map"},
    "shmrm": {"segment"},
}
OP_KEYS = {k: v | COMMON for k, v in OP_KEYS.items()}


def load(path):
    """Parse and validate a scenario file; raise ScenarioFormatError."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ScenarioFormatError(f"{path}: {e.strerror or e}") from None
    try:
        text = raw.decode()
        deep = _too_deep(text)
        if deep is not None:
            raise ScenarioFormatError(f"{path}:{deep}: arrays or inline tables nested more "
                                      f"than {MAX_NESTING} deep")
        doc = tomllib.loads(text)
    except UnicodeDecodeError as e:
        raise ScenarioFormatError(f"{path}: not UTF-8 text ({e.reason})") from None
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        line = m.group(1) if m else "?"
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg)
        raise ScenarioFormatError(f"{path}:{line}: TOML syntax: {msg}") from None
    return build(path, text, doc)


def build(path, text, doc):
    s = Scenario(path)
    s.text_hash = hashlib.sha256(text.encode()).hexdigest()
    step_lines = _lines_of(text, "step")

    def err(line, msg):
        raise ScenarioFormatError(f"{path}:{line}: {msg}")

    top = {"name", "description", "source", "settings", "process", "step", "vmstat", "varies"}
    for k in doc:
        if k not in top:
            err(_key_line(text, 1, k), f"unknown top-level key {k!r} (known: {', '.join(sorted(top))})")
    s.name = doc.get("name") or os.path.splitext(os.path.basename(path))[0]
    if not isinstance(s.name, str) or not ID_RE.match(s.name):
        err(_key_line(text, 1, "name"), f"name must be an identifier, got {s.name!r}")
    s.description = str(doc.get("description", ""))
    s.source = str(doc.get("source", ""))

    settings = doc.get("settings")
    if not isinstance(settings, dict):
        err(1, "missing [settings] table (kernel, thp_enabled; see docs/conformance.md)")
    sl = next((i + 1 for i, l in enumerate(text.splitlines()) if l.strip() == "[settings]"), 1)
    for k, v in settings.items():
        if k == "kernel":
            if str(v) not in KERNELS:
                err(_key_line(text, sl, k), f"kernel {v!r}: vmsim models {', '.join(KERNELS)}")
        elif k in SETTING_CHOICES:
            if v not in SETTING_CHOICES[k]:
                err(_key_line(text, sl, k),
                    f"{k} = {v!r}: one of {', '.join(SETTING_CHOICES[k])}")
        else:
            err(_key_line(text, sl, k),
                f"unknown setting {k!r} (known: kernel, {', '.join(SETTING_CHOICES)})")
    for k in ("kernel", "thp_enabled"):
        if k not in settings:
            err(sl, f"[settings] must state {k!r}")
    s.settings = dict(SETTING_DEFAULTS)
    s.settings.update({k: str(v) for k, v in settings.items()})

    procs = doc.get("process", [{"name": "main"}])
    if not isinstance(procs, list) or not all(isinstance(p, dict) for p in procs) or not procs:
        err(1, "[[process]] must be an array of tables")
    plines = _lines_of(text, "process") or [1]
    for j, p in enumerate(procs):
        n = p.get("name", "main")
        if not isinstance(n, str) or not ID_RE.match(n) or set(p) - {"name"}:
            err(plines[min(j, len(plines) - 1)], f"a [[process]] has one key, name (an identifier), got {p!r}")
    # The first [[process]] is the initial one; the others are created by fork steps
    # (fork's `child` names a new process, so declaring them is optional).
    s.processes = [procs[0].get("name", "main")]
    s.declared = [p.get("name", "main") for p in procs]
    if len(set(s.declared)) != len(s.declared):
        err(plines[-1], "process names must be unique")

    vm = doc.get("vmstat", [])
    if not isinstance(vm, list):
        err(_key_line(text, 1, "vmstat"), "vmstat must be a list of counter names")
    for c in vm:
        if not isinstance(c, str) or not VMSTAT_ALLOWED.match(c):
            err(_key_line(text, 1, "vmstat"),
                f"vmstat counter {c!r} is not allowed: only thp_*, unevictable_pgs_*, htlb_buddy_alloc_* "
                "and workingset_{nodes,refault,activate,restore}_file counters are quiet on a "
                "live machine (see docs/conformance.md)")
    s.vmstat = list(vm)

    va = doc.get("varies")
    if va is not None:
        vl = next((i + 1 for i, l in enumerate(text.splitlines()) if l.strip() == "[varies]"), 1)
        if not isinstance(va, dict) or set(va) != {"runs", "reason", "observations"}:
            err(vl, "[varies] has exactly the keys runs, reason and observations")
        if not isinstance(va["runs"], int) or isinstance(va["runs"], bool) or \
                not VARIES_MIN_RUNS <= va["runs"] <= 100:
            err(_key_line(text, vl, "runs"), f"[varies] runs must be {VARIES_MIN_RUNS}..100")
        if not isinstance(va["reason"], str) or len(va["reason"].strip()) < 20:
            err(_key_line(text, vl, "reason"), "[varies] reason must say why Linux's result varies")
        obs = va["observations"]
        if not isinstance(obs, list) or not obs or not all(
                isinstance(o, str) and re.match(r"^[A-Za-z_][A-Za-z0-9_.-]*: (minflt|majflt|smaps \S+|vmstat \S+ delta)$", o)
                for o in obs):
            err(_key_line(text, vl, "observations"),
                "[varies] observations: a list of counted observations (\"POINT: minflt\", "
                "\"POINT: majflt\", \"POINT: smaps MAP.FIELD\", \"POINT: vmstat NAME delta\")")
        s.varies = {"runs": va["runs"], "reason": va["reason"].strip(), "observations": list(obs)}

    steps = doc.get("step", [])
    if not isinstance(steps, list) or not steps:
        err(1, "no [[step]] tables")
    ops = []
    for knob, val in s.knobs().items():
        ops.append(("knob", None, [knob, val]))
    lengths = {}
    point_ids = set()
    s.op_proc = [0] * len(ops)
    # the process tree as the program runs it: parent, alive, exec'd, waited
    s._parent = {0: None}
    s._alive = {0}
    s._execd = set()
    s._exited = set()
    s._reaped = set()
    for i, t in enumerate(steps):
        line = step_lines[i] if i < len(step_lines) else 1
        st = Step(i, t, line)
        s.steps.append(st)
        try:
            n0 = len(ops)
            _resolve(s, st, t, ops, lengths, point_ids)
            for kind, _, args in ops[n0:]:
                if kind != "knob":
                    for a in args:
                        _fit(None, a)
            s.op_proc += [st.proc] * (len(ops) - n0)
        except ValueError as e:
            key = getattr(e, "key", None)
            err(_key_line(text, line, key) if key else line, f"step {i + 1} ({t.get('op', '?')}): {e}")
    for n in s.declared:
        if n not in s.processes:
            err(plines[s.declared.index(n)], f"process {n!r} is declared but no fork step creates it")
    if not ops or ops[-1][0] != "endpoint" or s.op_proc[-1] != 0:
        ops += [("point", None, ["end"]), ("endpoint", None, [])]
        s.op_proc += [0, 0]
        s.points.append("end")
    s.ops = ops
    s.alive_at_end = sorted(s._alive - {0})
    return s


class _KeyError(ValueError):
    def __init__(self, key, msg):
        super().__init__(msg)
        self.key = key


# The executor keeps every argument in a C ``long`` and casts it to the syscall's type
# (size_t, unsigned long, int): a number only means the same on both sides if it fits.
LONG_MIN, ULONG_END = -(1 << 63), 1 << 64
INT_KEYS = ("prot", "flags", "advice", "resource", "mode")     # C int arguments
LONG_KEYS = ("soft", "hard")        # the executor tests them for < 0 (RLIM_INFINITY)


def _fit(key, v):
    """Raise unless ``v`` fits the C type the executor passes for ``key``."""
    if not isinstance(v, int) or isinstance(v, bool):
        return v
    if key in INT_KEYS:
        if not -(1 << 31) <= v < (1 << 31):
            raise _KeyError(key, f"{key}: {v} does not fit in a C int (32 bits)")
    elif key in LONG_KEYS:
        if not LONG_MIN <= v < -LONG_MIN:
            raise _KeyError(key, f"{key}: {v} does not fit in a C long (use 'unlimited')")
    elif not LONG_MIN <= v < ULONG_END:
        raise _KeyError(key, f"{key or 'a value'}: {v:#x} does not fit in 64 bits (the C side would see "
                             f"{v & (ULONG_END - 1):#x})")
    return v


def _resolve(s, st, t, ops, lengths, point_ids):
    op = t.get("op")
    if op not in OP_KEYS:
        raise _KeyError("op", f"unknown op {op!r} (known: {', '.join(sorted(OP_KEYS))})")
    for k in t:
        if k not in OP_KEYS[op]:
            raise _KeyError(k, f"unknown key {k!r} for op {op!r} (known: {', '.join(sorted(OP_KEYS[op]))})")
    pname = t.get("proc", s.processes[0])
    if not isinstance(pname, str) or pname not in s.processes:
        raise _KeyError("proc", f"unknown process {pname!r} (the initial one, or a fork's child)")
    me = s.processes.index(pname)
    if me not in s._alive:
        raise _KeyError("proc", f"process {pname!r} has exited")
    if me in s._execd and op != "exit":
        raise _KeyError("op", f"process {pname!r} has called execve: it can only exit now "
                              "(its memory is the minimal program's, not the scenario's)")
    st.proc = me
    sid = t.get("id")
    if sid is not None and (not isinstance(sid, str) or not ID_RE.match(sid)):
        raise _KeyError("id", f"id must be an identifier, got {sid!r}")

    def get(key, conv, default=None, required=False):
        if key not in t:
            if required:
                raise _KeyError(None, f"missing {key!r}")
            return default
        try:
            return _fit(key, conv(t[key]))
        except _KeyError:
            raise
        except (ValueError, TypeError) as e:
            msg = str(e)
            raise _KeyError(key, msg if msg.startswith(key) else f"{key}: {msg}") from None
        except KeyError:
            raise _KeyError(key, f"{key}: unknown value {t[key]!r}") from None

    def slot_of(name, key="map", define=False):
        if not isinstance(name, str) or not ID_RE.match(name):
            raise _KeyError(key, f"{key} must be a mapping name, got {name!r}")
        if name not in s.slots:
            if not define:
                raise _KeyError(key, f"unknown mapping {name!r} (define it with mmap, brk or name first)")
            if len(s.slots) >= 60:
                raise _KeyError(key, "too many mappings (60 at most)")
            s.slots[name] = len(s.slots)
        return s.slots[name]

    def size_of(key_len, key_pages):
        if key_len in t and key_pages in t:
            raise _KeyError(key_pages, f"give {key_len!r} or {key_pages!r}, not both")
        if key_pages in t:
            v = t[key_pages]
            if not isinstance(v, int) or isinstance(v, bool):
                raise _KeyError(key_pages, f"{key_pages} must be an integer")
            if not LONG_MIN <= v * PAGE < ULONG_END:
                raise _KeyError(key_pages, f"{key_pages}: {v} pages ({v * PAGE:#x} bytes) do not "
                                           "fit in a 64-bit size_t")
            return v * PAGE
        if key_len in t:
            return get(key_len, lambda v: parse_len(v, key_len))
        return None

    def rng(allow_abs=False):
        """(slot, offset, length) of the step's range."""
        if allow_abs and "address" in t:
            if "map" in t:
                raise _KeyError("address", "give 'map' or 'address', not both")
            a = get("address", lambda v: int(v, 0) if isinstance(v, str) else int(v))
            length = size_of("length", "pages")
            return -1, a, length if length is not None else 1
        if "map" not in t:
            raise _KeyError(None, "missing 'map'" + (" (or 'address')" if allow_abs else ""))
        slot = slot_of(t["map"])
        off = 0
        if "page" in t:
            if "offset" in t:
                raise _KeyError("page", "give 'offset' or 'page', not both")
            off = _fit("page", get("page", int) * PAGE)
        else:
            off = get("offset", lambda v: parse_len(v, "offset"), 0)
        length = size_of("length", "pages")
        if length is None:
            length = lengths.get(t["map"], 0) - off
        return slot, off, length

    def file_of(name, key="file", define=False, fs=0):
        """The slot of a file name; ``define`` (open) allocates one on first use."""
        if not isinstance(name, str) or not ID_RE.match(name):
            raise _KeyError(key, f"{key} must be a file name, got {name!r}")
        if name not in s.files:
            if not define:
                raise _KeyError(key, f"unknown file {name!r} (create it with an 'open' step first)")
            if len(s.files) >= MAX_FILES:
                raise _KeyError(key, f"too many files ({MAX_FILES} at most)")
            s.files[name] = len(s.files)
            s.file_fs[s.files[name]] = fs
        elif define and s.file_fs[s.files[name]] != fs:
            raise _KeyError("fs", f"file {name!r} was opened on the other filesystem")
        return s.files[name]

    def frng(need_len=True):
        """(file slot, offset, length) of a file range (offset/page, length/pages)."""
        f = file_of(t.get("file"))
        if "page" in t:
            if "offset" in t:
                raise _KeyError("page", "give 'offset' or 'page', not both")
            off = _fit("page", get("page", int) * PAGE)
        else:
            off = get("offset", lambda v: parse_len(v, "offset"), 0)
        length = size_of("length", "pages")
        if length is None:
            if need_len:
                raise _KeyError(None, "missing 'length' or 'pages'")
            length = 0
        if off < 0 or length < 0:
            raise _KeyError("offset" if off < 0 else "length", "file offsets and lengths are >= 0 "
                            "(give errno cases through mmap/msync ranges)")
        return f, off, length

    label = sid or (f"{st.index + 1}:{op}" + (f"({t['map']})" if isinstance(t.get("map"), str) else "")
                    + (f"@{pname}" if me else ""))
    st.label = label
    i = st.index
    if op == "mmap":
        slot = slot_of(t.get("map"), define=True) if "map" in t else None
        if slot is None:
            raise _KeyError(None, "missing 'map' (the new mapping's name)")
        length = size_of("length", "pages")
        if not length:
            # A negative length is passed as the C caller's size_t (-4096 -> 2**64-4096).
            raise _KeyError("length", "mmap needs a nonzero 'length' or 'pages'")
        prot = get("prot", parse_prot, 3)
        # a file mapping defaults to MAP_PRIVATE, an anonymous one to MAP_PRIVATE|MAP_ANONYMOUS
        flags = get("flags", lambda v: _parse_flags(v, MAP_FLAGS, "flags"),
                    MAP_FLAGS["private"] if "file" in t else 0x22)
        hs, hoff = -1, 0
        for k in ("hint", "fixed"):
            if k in t:
                h = t[k]
                if not isinstance(h, dict) or "map" not in h:
                    raise _KeyError(k, f"{k} = {{ map = 'name', offset = '16p' }}")
                hs = slot_of(h["map"], k)
                try:
                    hoff = _fit(k, parse_len(h.get("offset", 0), "offset"))
                except ValueError as e:
                    raise _KeyError(k, str(e)) from None
                if k == "fixed":
                    flags |= MAP_FLAGS["fixed"]
        if "hint" in t and "fixed" in t:
            raise _KeyError("fixed", "give 'hint' or 'fixed', not both")
        align = get("align", lambda v: parse_len(v, "align"), 0)
        if align and (align & (align - 1) or align < PAGE):
            raise _KeyError("align", "align must be a power of two of at least 4K")
        if align and hs >= 0:
            raise _KeyError("align", "align cannot be combined with hint/fixed")
        # Placement observations are derived from the returned address only (the
        # executor's program does not change): relative to another mapping, and/or
        # whether it lies in an absolute range (MAP_32BIT: [1G, 2G)).
        rel = t.get("relative_to")
        if rel is not None:
            slot_of(rel, "relative_to")
        rng_ = None
        if "in_range" in t:
            v = t["in_range"]
            if not isinstance(v, list) or len(v) != 2:
                raise _KeyError("in_range", "in_range = ['1G', '2G'] (absolute, end excluded)")
            try:
                rng_ = tuple(parse_len(x, "in_range") for x in v)
            except ValueError as e:
                raise _KeyError("in_range", str(e)) from None
            if not 0 <= rng_[0] < rng_[1]:
                raise _KeyError("in_range", "in_range needs 0 <= low < high")
        st.place = (rel, rng_)
        fs_, foff = -1, 0
        if "file" in t:
            fs_ = file_of(t["file"])
            foff = get("file_offset", lambda v: parse_len(v, "file_offset"), 0)
        elif "file_offset" in t:
            raise _KeyError("file_offset", "file_offset needs a 'file'")
        lengths[t["map"]] = length
        ops.append(("mmap", i, [slot, length, prot, flags, hs, hoff, align, fs_, foff]))
    elif op == "open":
        fs = get("fs", lambda v: FILESYSTEMS[v], 0)
        f = file_of(t.get("file"), define=True, fs=fs)
        flags = get("flags", lambda v: _parse_flags(v, O_FLAGS, "flags"), O_FLAGS["rdwr"] | O_FLAGS["creat"])
        mode = get("mode", lambda v: int(v, 8) if isinstance(v, str) else int(v), 0o644)
        ops.append(("open", i, [f, fs, flags, mode]))
    elif op in ("shmget", "shmrm"):
        name = t.get("segment")
        if not isinstance(name, str) or not ID_RE.match(name):
            raise _KeyError("segment", "segment must be a name")
        segs = s.__dict__.setdefault("segments", {})
        if op == "shmrm":
            if name not in segs:
                raise _KeyError("segment", f"unknown segment {name!r} (make it with 'shmget')")
            ops.append(("shmrm", i, [segs[name]]))
        else:
            if name in segs or len(segs) >= MAX_SEGS:
                raise _KeyError("segment", f"segment {name!r} exists already or too many")
            segs[name] = len(segs)
            length = size_of("length", "pages")
            if not length:
                raise _KeyError(None, "shmget needs 'length' or 'pages'")
            flags = get("flags", lambda v: _parse_flags(v, SHMGET_FLAGS, "flags"), 0)
            ops.append(("shmget", i, [segs[name], length, flags | uapi.IPC_CREAT | 0o600]))
    elif op == "shmat":
        segs = s.__dict__.setdefault("segments", {})
        name = t.get("segment")
        if name not in segs:
            raise _KeyError("segment", f"unknown segment {name!r} (make it with 'shmget')")
        slot = slot_of(t.get("map"), define=True)
        length = size_of("length", "pages")
        if not length:
            raise _KeyError(None, "shmat needs the attach's 'length' (the segment size, "
                            "rounded up to its page size)")
        lengths[t["map"]] = length
        ops.append(("shmat", i, [slot, segs[name],
                                 get("flags", lambda v: _parse_flags(v, SHMAT_FLAGS, "flags"), 0),
                                 length]))
    elif op == "shmdt":
        ops.append(("shmdt", i, [slot_of(t.get("map"))]))
    elif op == "memfd":
        f = file_of(t.get("file"), define=True, fs=FS_MEMFD)
        ops.append(("memfd", i, [f, get("flags", lambda v: _parse_flags(v, MFD_FLAGS, "flags"), 0)]))
    elif op == "prctl":
        opt = get("option", lambda v: v if isinstance(v, int) else PRCTL_OPTIONS[str(v).lower()],
                  required=True)
        args = [get(k, int, 0) & ((1 << 64) - 1) for k in ("arg2", "arg3", "arg4", "arg5")]
        ops.append(("prctl", i, [opt] + args))
    elif op in ("close", "unlink"):
        f = file_of(t.get("file"))
        if op == "unlink" and s.file_fs[f] == FS_MEMFD:
            raise _KeyError("file", "a memfd file has no name to unlink")
        ops.append((op, i, [f]))
    elif op == "fsync":
        ops.append(("fsync", i, [file_of(t.get("file")), int(bool(get("data", bool, False)))]))
    elif op == "ftruncate":
        f = file_of(t.get("file"))
        length = size_of("length", "pages")
        if length is None:
            raise _KeyError(None, "missing 'length' or 'pages' (the new size)")
        ops.append(("ftruncate", i, [f, length]))
    elif op in ("pwrite", "pread"):
        f, off, length = frng()
        ops.append((op, i, [f, off, length, get("value", int, 1) & 0xFF,
                            int(bool(get("per_page", bool, False)))]))
    elif op == "fadvise":
        f, off, length = frng(need_len=False)
        adv = get("advice", lambda v: v if isinstance(v, int) else FADV[str(v).lower().replace("posix_fadv_", "")],
                  required=True)
        ops.append(("fadvise", i, [f, off, length, adv]))
    elif op == "fallocate":
        f, off, length = frng()
        mode = get("mode", lambda v: _parse_flags(v, FALLOC, "mode"), 0)
        ops.append(("fallocate", i, [f, mode, off, length]))
    elif op == "drop_caches":
        v = get("value", int, 3)
        if v not in (1, 2, 3):
            raise _KeyError("value", "drop_caches value is 1 (page cache), 2 (slab) or 3 (both)")
        ops.append(("dropcaches", i, [v]))
    elif op == "msync":
        ops.append(("msync", i, list(rng()) + [get("flags", lambda v: _parse_flags(v, MS_FLAGS, "flags"),
                                                    MS_FLAGS["sync"])]))
    elif op in ("munmap", "munlock"):
        ops.append((op, i, list(rng())))
    elif op == "mprotect":
        ops.append((op, i, list(rng()) + [get("prot", parse_prot, required=True)]))
    elif op == "madvise":
        adv = get("advice", lambda v: v if isinstance(v, int) else MADV[str(v).lower().replace("madv_", "")],
                  required=True)
        ops.append((op, i, list(rng()) + [adv]))
    elif op == "mlock":
        ops.append((op, i, list(rng()) + [get("flags", lambda v: _parse_flags(v, MLOCK, "flags"), 0)]))
    elif op == "mremap":
        slot, off, length = rng()
        newlen = size_of("new_length", "new_pages")
        newlen = length if newlen is None else newlen
        flags = get("flags", lambda v: _parse_flags(v, MREMAP, "flags"), 1)
        ds, doff = -1, 0
        if "dest" in t:
            d = t["dest"]
            if isinstance(d, dict) and set(d) == {"address"}:
                # An absolute new_addr (passed even without 'fixed', which Linux ignores).
                try:
                    doff = parse_len(d["address"], "address")
                except ValueError as e:
                    raise _KeyError("dest", str(e)) from None
                if not 0 <= doff < 1 << 64:
                    raise _KeyError("dest", "address must be in [0, 2**64)")
                # A slot no step defines holds NULL on both sides: NULL + address.
                if "@null" not in s.slots:
                    s.slots["@null"] = len(s.slots)
                ds, doff = s.slots["@null"], doff - (1 << 64) if doff >= 1 << 63 else doff
            else:
                if not isinstance(d, dict) or "map" not in d:
                    raise _KeyError("dest", "dest = { map = 'name', offset = '16p' } "
                                            "or { address = '0x...' }")
                ds = slot_of(d["map"], "dest")
                try:
                    doff = _fit("dest", parse_len(d.get("offset", 0), "offset"))
                except ValueError as e:
                    raise _KeyError("dest", str(e)) from None
                if not flags & MREMAP["fixed"]:
                    raise _KeyError("dest", "dest needs flags to include 'fixed'")
        elif flags & MREMAP["fixed"]:
            raise _KeyError("flags", "'fixed' needs a dest = { map = ... }")
        res_name = t.get("as", t["map"])
        rs = slot_of(res_name, "as", define=True)
        lengths[res_name] = newlen
        ops.append((op, i, [slot, off, length, newlen, flags, ds, doff, rs]))
    elif op == "brk":
        off = get("offset", lambda v: parse_len(v, "offset"), required=True)
        rs = -1
        if "map" in t:
            rs = slot_of(t["map"], define=True)
            lengths[t["map"]] = max(off, 0)
        ops.append(("brk", i, [off, rs]))
    elif op == "touch":
        slot, off, length = rng(allow_abs=True)
        stride = get("stride", lambda v: parse_len(v, "stride"), PAGE)
        if stride <= 0:
            raise _KeyError("stride", "stride must be positive")
        access = get("access", str, "read")
        if access not in ("read", "write"):
            raise _KeyError("access", "access is 'read' or 'write'")
        value = get("value", int, 1) & 0xFF
        cont = get("on_signal", str, "stop")
        if cont not in ("stop", "continue"):
            raise _KeyError("on_signal", "on_signal is 'stop' or 'continue'")
        order = get("order", str, "ascending")
        if order not in ("ascending", "descending"):
            raise _KeyError("order", "order is 'ascending' or 'descending'")
        ops.append(("touch", i, [slot, off, length, stride, int(access == "write"), value,
                                 int(cont == "continue"), int(order == "descending")]))
    elif op in ("write", "check"):
        slot, off, length = rng(allow_abs=True)
        ops.append(("fill" if op == "write" else "check", i,
                    [slot, off, length, get("value", int, required=True) & 0xFF,
                     int(bool(get("per_page", bool, False)))]))
    elif op == "setrlimit":
        res = get("resource", lambda v: RLIMITS[str(v).upper().replace("RLIMIT_", "")], required=True)

        def lim(v):
            return -1 if v in ("unlimited", "infinity", -1) else parse_len(v, "limit")
        soft = get("soft", lim, required=True)
        hard = get("hard", lim, -1)
        ops.append(("rlimit", i, [res, soft, hard]))
    elif op == "name":
        slot = slot_of(t.get("map"), define=True)
        which = get("special", lambda v: {"[stack]": 0, "[heap]": 1}[v], required=True)
        anchor = get("anchor", lambda v: {"vma": 0, "top": 1, "below": 2}[v], 0)
        length = size_of("length", "pages") or 0
        if anchor and length <= 0:
            raise _KeyError("length", "anchor 'top'/'below' needs a positive length")
        lengths[t["map"]] = length
        ops.append(("name", i, [slot, which, anchor, length]))
    elif op == "knob":
        if me:
            raise _KeyError("proc", "knobs are set (and restored) by the initial process")
        path = get("path", str, required=True)
        val = get("value", str, required=True)
        if not path.startswith(("/sys/", "/proc/sys/")) or " " in path or " " in val or not val:
            raise _KeyError("path", "knob path must be under /sys or /proc/sys; no spaces")
        ops.append(("knob", i, [path, val]))
    elif op == "fork":
        cn = t.get("child")
        if not isinstance(cn, str) or not ID_RE.match(cn):
            raise _KeyError("child" if "child" in t else None, "fork needs child = 'name' (a new process name)")
        if cn in s.processes:
            raise _KeyError("child", f"process {cn!r} already exists")
        if len(s.processes) >= MAX_PROCS:
            raise _KeyError("child", f"too many processes ({MAX_PROCS} at most)")
        s.processes.append(cn)
        c = len(s.processes) - 1
        s._parent[c] = me
        s._alive.add(c)
        ops.append(("fork", i, [c]))
    elif op == "exit":
        if me == 0:
            raise _KeyError("proc", "the initial process cannot exit (it runs the scenario)")
        status = get("status", int, 0)
        if not 0 <= status <= 255:
            raise _KeyError("status", "status is 0..255")
        s._alive.discard(me)
        s._exited.add(me)
        # orphans go to init (vmsim: to nobody): no scenario process can wait for them
        for c, par in list(s._parent.items()):
            if par == me:
                s._parent[c] = None
        ops.append(("exit", i, [status]))
    elif op == "wait":
        cn = t.get("child")
        if cn not in s.processes:
            raise _KeyError("child" if "child" in t else None, "wait needs child = 'name' of a forked process")
        c = s.processes.index(cn)
        if s._parent.get(c) != me:
            raise _KeyError("child", f"{cn!r} is not a child of {pname!r} (an orphan's parent is gone)")
        if c not in s._exited or c in s._reaped:
            raise _KeyError("child", f"{cn!r} has not exited (a blocking wait would never return "
                                     "in vmsim) or was already waited for")
        s._reaped.add(c)
        ops.append(("wait", i, [c]))
    elif op == "execve":
        if me == 0:
            raise _KeyError("proc", "the initial process cannot execve (it runs the scenario)")
        s._execd.add(me)
        ops.append(("execve", i, []))
    elif op == "point":
        if me in s._execd:
            raise _KeyError("proc", "no observations of an exec'd process")
        pid = t.get("id")
        if pid is None:
            raise _KeyError(None, "a point needs an 'id'")
        if pid in point_ids:
            raise _KeyError("id", f"point id {pid!r} used twice")
        point_ids.add(pid)
        s.points.append(pid)
        obs = []
        sm = t.get("smaps", [])
        if isinstance(sm, list):
            sm = {n: list(SMAPS_DEFAULT) for n in sm}
        if not isinstance(sm, dict):
            raise _KeyError("smaps", "smaps = ['map', ...] or { map = ['Rss', ...] }")
        for n, fields in sm.items():
            if fields == "all":
                fields = list(SMAPS_DEFAULT)
            if not isinstance(fields, list) or any(f not in SMAPS_FIELDS for f in fields):
                raise _KeyError("smaps", f"smaps fields for {n!r}: a list of {', '.join(SMAPS_FIELDS)}")
            obs.append(("smaps", slot_of(n, "smaps"), n, fields))
        pm = t.get("pagemap", [])
        if isinstance(pm, list):
            pm = {n: {} for n in pm}
        if not isinstance(pm, dict):
            raise _KeyError("pagemap", "pagemap = ['map', ...] or { map = { ref = 'point', ref_map = 'm' } }")
        for n, spec in pm.items():
            if isinstance(spec, str):
                spec = {"ref": spec}
            if not isinstance(spec, dict) or set(spec) - {"ref", "ref_map"}:
                raise _KeyError("pagemap", f"pagemap spec for {n!r}: {{ ref = 'point', ref_map = 'map' }}")
            if "ref" in spec and spec["ref"] not in point_ids - {pid}:
                raise _KeyError("pagemap", f"pagemap ref {spec['ref']!r} is not an earlier point")
            rm = spec.get("ref_map", n)
            if "ref" in spec:
                slot_of(rm, "pagemap")
            obs.append(("pagemap", slot_of(n, "pagemap"), n, spec))
        mp = t.get("maps", [])
        if not isinstance(mp, list):
            raise _KeyError("maps", "maps = ['map', ...]")
        for n in mp:
            obs.append(("maps", slot_of(n, "maps"), n, None))
        mc = t.get("mincore", [])
        if not isinstance(mc, list):
            raise _KeyError("mincore", "mincore = ['map', ...]")
        for n in mc:
            obs.append(("mincore", slot_of(n, "mincore"), n, None))
        st.obs = obs
        ops.append(("point", i, [pid]))
        done = set()
        for kind, slot, n, spec in obs:
            if kind in ("smaps", "maps"):
                if slot not in done:
                    ops.append(("smaps", i, [slot]))
                    done.add(slot)
            elif kind == "mincore":
                ops.append(("mincore", i, [slot]))
            else:
                ops.append(("pagemap", i, [slot]))
        for c in s.vmstat:
            ops.append(("vmstat", i, [c]))
        ops.append(("endpoint", i, []))


def program_text(s):
    """The executor's program: one op per line."""
    out = [f"# scenario {s.name}"]
    if len(s.processes) > 1:
        out.append(f"procs {len(s.processes)}")
    for (kind, _, args), proc in zip(s.ops, s.op_proc):
        # int64 on the C side: addresses above 2^63 wrap to negative numbers
        out.append(" ".join(([f"@{proc}"] if proc else []) + [kind] +
                            [str(a - (1 << 64) if isinstance(a, int) and a >= 1 << 63 else a)
                             for a in args]))
    return "\n".join(out) + "\n"
