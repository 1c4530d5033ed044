"""A function-graph tracer for the model, in the style of ftrace's function_graph.

    with vmsim.trace.function_graph(machine) as tr:
        p.write(addr, b"x")
    print(tr.text())

prints each page fault as a call tree starting at the exception entry::

     0)    1   | exc_page_fault(addr=0x7ffff7ff6000, error_code=0x6 [WRITE|USER]) {
     0)    1   |   handle_page_fault() {
     0)    1   |     kmmio_fault();
     ...
     0)    1   |       handle_mm_fault() {
     ...
     0)    1   |       } /* handle_mm_fault = 0x0 */

The tracer is a profile hook (sys.setprofile on 3.11, sys.monitoring on 3.12+)
filtered to the model's packages (vmsim.arch, vmsim.mm, vmsim.kernel, vmsim.fs):
the model has no tracing calls and pays nothing while no tracer is installed.
Functions returning a vm_fault_t have their return value decoded (VM_FAULT_*
names, as ftrace's funcgraph-retval prints them). A numba-compiled MMU walk is
invisible to the profiler; the trace starts at the exception entry anyway.

Only the kernel's steps appear: vmsim's own helpers (a leading underscore, or listed
in :data:`VMSIM_HELPERS`) are left out (the kernel functions they call still show), and
with ``faults_only=False`` only calls made for a process (its syscalls, accesses and
exec) are recorded, not the machine's boot or a /proc read. Every change of a
page-table entry is made by the kernel function that makes it in 6.18 (set_pte_at,
set_ptes, ptep_get_and_clear_full, pmd_populate, pmd_clear, ... :data:`ENTRY_WRITERS`);
the trace shows the entry before and after, decoded::

     0)    1   |                 set_ptes(); /* pte 0x0 -> 0x800000000001a867 [P RW US A D NX pfn=0x1a] */

Filters as ftrace has them: ``funcs`` (set_graph_function: only the graphs of those
functions), ``pid`` (set_ftrace_pid), ``max_events``. The faults execve takes for
itself (writing argv, not counted in the task's rusage) are labelled ``exec`` and left
out of the text and the counts unless ``show_exec``. Faults GUP takes for a syscall
(MAP_POPULATE, mlock, MADV_POPULATE_*) start at faultin_page and count as faults too,
as mm_account_fault() counts them in the rusage.

Besides the text, the tracer counts, per fault, which fault paths it went through
(do_anonymous_page, do_wp_page, wp_page_copy, do_fault, do_read_fault,
do_shared_fault, ...), the minor/major faults it added to the task's rusage, and
whether it ended in a signal: see :attr:`FunctionGraph.faults` and
:meth:`FunctionGraph.path_counts`.
"""
import os
import sys
from collections import Counter

import vmsim
from vmsim.arch.x86 import traps as _traps
from vmsim.arch.x86 import pgtable_types as _T
from vmsim.arch.x86.pgtable_types import PfErr
from vmsim.mm import gup as _gup
from vmsim.mm.mm_types import VM_FAULT_NAMES

_ROOT = os.path.dirname(os.path.abspath(vmsim.__file__))
MODEL_PACKAGES = ("arch", "mm", "kernel", "fs", "ipc")
_PREFIXES = tuple(os.path.join(_ROOT, d) + os.sep for d in MODEL_PACKAGES)
_CO_GENERATOR_LIKE = 0x20 | 0x100 | 0x200     # CO_GENERATOR, CO_COROUTINE, CO_ASYNC_GENERATOR
# The debug checker (CONFIG_DEBUG_VM's role) and the store of page contents (what the
# CPU reads and writes; the kernel's copy_user_highpage / clear_page) stay out of
# traces with everything they call.
_QUIET_FILES = (os.path.join(_ROOT, "mm", "debug_vm.py"), os.path.join(_ROOT, "mm", "page_data.py"))
_QUIET = "<quiet>"
# vmsim-only data structures standing in for kernel ones (the page cache's xarray,
# vmsim.mm._xarray): their methods are not kernel functions and call none.
_UNTRACED_FILES = (os.path.join(_ROOT, "mm", "_xarray.py"),)

# Functions whose kernel counterpart returns vm_fault_t: their return value is decoded.
VM_FAULT_FUNCS = frozenset("""
handle_mm_fault __handle_mm_fault handle_pte_fault do_pte_missing do_anonymous_page
do_wp_page wp_page_copy wp_page_shared wp_pfn_shared do_fault do_read_fault do_cow_fault
do_shared_fault __do_fault finish_fault do_fault_around filemap_map_pages filemap_fault
shmem_fault create_huge_pmd create_huge_pud wp_huge_pmd wp_huge_pud do_huge_pmd_anonymous_page
do_huge_pmd_wp_page do_huge_pmd_numa_page do_swap_page do_numa_page vmf_anon_prepare
fault_dirty_shared_page hugetlb_fault hugetlb_no_page hugetlb_wp do_page_mkwrite
handle_userfault special_mapping_fault vmf_insert_pfn vmf_insert_page
""".split())

# The fault paths the run summary counts (a fault counts once per path it took).
FAULT_PATHS = ("do_anonymous_page", "do_wp_page", "wp_page_copy", "wp_page_reuse", "do_fault",
               "do_read_fault", "do_cow_fault", "do_shared_fault", "do_fault_around",
               "shmem_fault", "expand_stack_locked", "do_swap_page")

SIGNAL_NAMES = {7: "SIGBUS", 9: "SIGKILL", 11: "SIGSEGV"}

# vmsim's own helpers carry a leading underscore and are left out of the trace (what
# they call still shows). ``release`` is the one exception: vmsim's files implement
# the kernel's f_op->release slot under that name, whose callers (__fput) show.
VMSIM_HELPERS = frozenset("""
release
""".split())

# The kernel functions that write page-table entries: name -> (level, pointer
# argument, count argument or None). Their frame gives the mm (or vma) and pointer.
ENTRY_WRITERS = {
    "set_pte_at": ("pte", "ptep", None),
    "set_ptes": ("pte", "ptep", "nr"),
    "ptep_get_and_clear": ("pte", "ptep", None),
    "ptep_get_and_clear_full": ("pte", "ptep", None),
    "get_and_clear_full_ptes": ("pte", "ptep", "nr"),
    "clear_full_ptes": ("pte", "ptep", "nr"),
    "pte_clear_not_present_full": ("pte", "ptep", None),
    "clear_not_present_full_ptes": ("pte", "ptep", "nr"),
    "get_and_clear_ptes": ("pte", "ptep", "nr"),
    "ptep_clear_flush": ("pte", "ptep", None),
    "ptep_set_wrprotect": ("pte", "ptep", None),
    "wrprotect_ptes": ("pte", "ptep", "nr"),
    "ptep_test_and_clear_young": ("pte", "ptep", None),
    "ptep_set_access_flags": ("pte", "ptep", None),
    "modify_prot_commit_ptes": ("pte", "ptep", "nr"),
    "clear_young_dirty_ptes": ("pte", "ptep", "nr"),
    "pmd_populate": ("pmd", "pmdp", None),
    "pud_populate": ("pud", "pudp", None),
    "p4d_populate": ("p4d", "p4dp", None),
    "pgd_populate": ("pgd", "pgdp", None),
    "pmd_clear": ("pmd", "pmdp", None),
    "pud_clear": ("pud", "pudp", None),
    "p4d_clear": ("p4d", "p4dp", None),
    "pgd_clear": ("pgd", "pgdp", None),
    "clone_pgd_range": ("pgd", "dst", "count"),
}

_ULONG = (1 << 64) - 1
_ENTRY_BITS = ((_T._PAGE_PRESENT, "P"), (_T._PAGE_RW, "RW"), (_T._PAGE_USER, "US"),
               (_T._PAGE_PWT, "PWT"), (_T._PAGE_PCD, "PCD"), (_T._PAGE_ACCESSED, "A"),
               (_T._PAGE_DIRTY, "D"), (_T._PAGE_PSE, "PSE"), (_T._PAGE_GLOBAL, "G"), (_T._PAGE_SPECIAL, "SPECIAL"),
               (_T._PAGE_UFFD_WP, "UFFD_WP"), (1 << _T._PAGE_BIT_SOFT_DIRTY, "SOFT_DIRTY"),
               (1 << _T._PAGE_BIT_SOFTW4, "SOFTW4"), (_T._PAGE_SAVED_DIRTY, "SAVED_DIRTY"))


def decode_entry(entry: int, level: str = "pte") -> str:
    """Return "0x8000000123456867 [P RW US A D NX pfn=0x123456]" for an entry.

    Bit 7 is PSE above the PTE level and PAT in a PTE; bit 8 of a not-present
    entry is PROTNONE (arch/x86/include/asm/pgtable_types.h)."""
    e = entry & _ULONG
    if e == 0:
        return "0x0"
    names = []
    present = e & _T._PAGE_PRESENT
    if not present and not e & _T._PAGE_PROTNONE:        # a swap-format entry
        from vmsim.mm import swapops
        v = e - (1 << 64) if e >> 63 else e
        if swapops.is_pte_marker_entry(v):
            m = swapops.pte_marker_get(v)
            kinds = [n for bit, n in ((swapops.PTE_MARKER_UFFD_WP, "UFFD_WP"),
                                      (swapops.PTE_MARKER_POISONED, "POISONED"),
                                      (swapops.PTE_MARKER_GUARD, "GUARD")) if m & bit]
            return f"{e:#x} [pte marker {'|'.join(kinds) or m}]"
        return f"{e:#x} [swp type={swapops.swp_type(v)} offset={swapops.swp_offset(v):#x}]"
    for bit, name in _ENTRY_BITS:
        if e & bit:
            if bit == _T._PAGE_GLOBAL and not present:
                name = "PROTNONE"
            elif bit == _T._PAGE_PSE and level == "pte":
                name = "PAT"
            names.append(name)
    pkey = (e >> _T._PAGE_BIT_PKEY_BIT0) & 0xF
    if pkey:
        names.append(f"pkey={pkey}")
    if e >> 63:
        names.append("NX")
    names.append(f"pfn={(e & _T.PTE_PFN_MASK) >> 12:#x}")
    return f"{e:#x} [{' '.join(names)}]"


def decode_change(level: str, old, new) -> str:
    """Return "pte 0x0 -> 0x8000000123456867 [P RW US A D NX pfn=0x123456]" for one
    entry; for ``nr`` entries, how many changed and the first that did."""
    if len(old) == 1:
        return f"{level} {decode_entry(old[0], level)} -> {decode_entry(new[0], level)}"
    changed = [i for i in range(len(old)) if old[i] != new[i]]
    if not changed:
        return f"{level} x{len(old)}: none changed"
    i = changed[0]
    return (f"{level} x{len(old)}: {len(changed)} changed, [{i}] {decode_entry(old[i], level)}"
            f" -> {decode_entry(new[i], level)}")


def decode_error_code(error_code: int) -> str:
    """Return "0x6 [WRITE|USER]" for a #PF error code."""
    names = [f.name for f in PfErr if error_code & f.value]
    return f"{error_code:#x} [{'|'.join(names)}]" if names else f"{error_code:#x}"


def decode_vm_fault(ret) -> str:
    """Return "0x0" or "0x404 [MAJOR|RETRY]" for a vm_fault_t value."""
    if not isinstance(ret, int) or isinstance(ret, bool):
        return repr(ret)
    names = [n for bit, n in sorted(VM_FAULT_NAMES.items()) if ret & bit]
    return f"{ret:#x} [{'|'.join(names)}]" if names else f"{ret:#x}"


class Fault:
    """One traced page fault: where, who, what paths it took, and its call tree.

    ``kind``: "fault" (a #PF: exc_page_fault) or "gup" (faultin_page for a syscall).
    ``exec``: taken by execve itself (not in the task's rusage). ``minflt`` /
    ``majflt``: what the fault added to the task's rusage (mm_account_fault)."""
    __slots__ = ("pid", "cpu", "address", "error_code", "paths", "signal", "lines",
                 "truncated", "kind", "exec", "minflt", "majflt", "_task", "_first")

    def __init__(self, pid, cpu, address, error_code, kind="fault", task=None):
        self.pid = pid
        self.cpu = cpu
        self.address = address
        self.error_code = error_code
        self.paths = set()
        self.signal = None
        self.lines = []
        self.truncated = False
        self.kind = kind
        self.exec = False
        self.minflt = self.majflt = 0
        self._task = task
        self._first = -1
        if task is not None:
            self.minflt, self.majflt = -task.min_flt, -task.maj_flt

    def _done(self):
        t = self._task
        if t is not None:
            self.minflt += t.min_flt
            self.majflt += t.maj_flt
            self._task = None

    def header(self) -> str:
        if self.kind == "gup":
            return f"faultin_page(addr={self.address:#x}, flags={self.error_code:#x})"
        return f"exc_page_fault(addr={self.address:#x}, error_code={decode_error_code(self.error_code)})"

    def __repr__(self):
        return f"<Fault pid={self.pid} {self.header()} paths={sorted(self.paths)} signal={self.signal}>"


def _classify(code):
    """Return the function name to trace for a code object, or None."""
    if not code.co_filename.startswith(_PREFIXES):
        return None
    if code.co_filename in _QUIET_FILES:
        return _QUIET
    if code.co_filename in _UNTRACED_FILES:
        return None
    name = code.co_name
    # Comprehensions, generators and class bodies (no CO_NEWLOCALS) are not functions.
    if name.startswith("<") or code.co_flags & _CO_GENERATOR_LIKE or not code.co_flags & 0x2:
        return None
    # Dunders (struct initialisers) and vmsim's own _helpers are not kernel functions.
    if name.startswith("_") and (not name.startswith("__") or name.endswith("__")):
        return None
    if name in VMSIM_HELPERS:
        return None
    return name


def _caller(frame):
    """Return (Process, in_exec) for the API call a model frame runs under: the
    innermost Process method on the stack, and whether spawn or execve is below it."""
    from vmsim import api
    proc, in_exec = None, False
    f = frame
    while f is not None:
        code = f.f_code
        if code in _EXEC_CODES:
            in_exec = True
            break
        if proc is None and code.co_filename == api.__file__:
            p = f.f_locals.get("self")
            if isinstance(p, api.Process):
                proc = p
        f = f.f_back
    return proc, in_exec


class FunctionGraph:
    """A function-graph tracer; use :func:`function_graph` to install it."""

    # It records kernel functions only: the CPU's plain-Python access loop (mmu_batch)
    # runs without it, as its compiled build does.
    _kernel_functions_only = True

    def __init__(self, machine=None, faults_only=True, max_events=5000, record=True,
                 funcs=None, pid=None, show_exec=False):
        self.k = machine.k if machine is not None and hasattr(machine, "k") else machine
        self.faults_only = faults_only and not funcs
        self.max_events = max_events
        self.record = record      # True, False, or "signals": keep only faults ending in one
        self.funcs = frozenset(funcs or ())
        self.pid = pid
        self.show_exec = show_exec
        self.log_entries = False  # keep (pointer, old, new) of every entry write: entry_log
        self.entry_log = []
        self.faults = []          # Fault records, in order
        self.calls = Counter()    # calls per function name, inside traced regions
        self.events = 0           # lines recorded
        self.truncated = False
        self._lines = []          # all recorded lines, in order (faults and other calls)
        self._stack = []          # (key, name, line index or -1, entry-write state)
        self._cur = None          # the Fault being traced
        self._cur_depth = 0       # stack depth at which it started
        self._names = {}          # code -> name or None
        self._active = False
        self._mute = False        # inside a fault left out (another pid, execve's own)
        self._quiet = False       # inside the debug checker
        self._graph = None        # set_graph_function: depth of the graph being recorded
        self._prefix = " -)    -   | "

    # --- the hook -----------------------------------------------------------------
    def _emit(self, text, depth):
        if not self.record or self._mute:
            return -1
        if self.funcs:
            if self._graph is None:
                return -1
            depth -= self._graph
        if self.events >= self.max_events:
            self.truncated = True
            if self._cur is not None:
                self._cur.truncated = True
            return -1
        self.events += 1
        line = self._prefix + "  " * depth + text
        self._lines.append(line)
        if self._cur is not None:
            self._cur.lines.append(line)
        return len(self._lines) - 1

    def comment(self, text, pid=None, cpu=None):
        """Add a ``/* text */`` line between the graphs (strace's lines, in vmsim trace)."""
        if self._stack or self.record is not True or (self.pid is not None and pid != self.pid):
            return
        if self.events >= self.max_events:
            self.truncated = True
            return
        self.events += 1
        cpu = "-" if cpu is None else cpu
        pid = "-" if pid is None else pid
        self._lines.append(f"{cpu:>2}) {pid:>4}   | /* {text} */")

    def _start_fault(self, frame, kind):
        loc = frame.f_locals
        if kind == "fault":
            k = loc.get("k")
            address, code = loc.get("address", 0), loc.get("error_code", 0)
        else:
            vma = loc.get("vma")
            k = vma.vm_mm.kernel if vma is not None else None
            address, code = loc.get("address", 0), loc.get("flags", 0)
        if k is None or (self.k is not None and k is not self.k):
            return None
        task = k.current
        fault = Fault(task.pid, task.cpu, address, code, kind, task)
        fault.exec = _caller(frame)[1]
        self.faults.append(fault)
        self._cur = fault
        self._cur_depth = len(self._stack)
        self._mute = (fault.exec and not self.show_exec) or \
            (self.pid is not None and task.pid != self.pid)
        self._prefix = f"{task.cpu:2d}) {task.pid:4d}   | "
        fault._first = len(self._lines)
        return fault

    def _enter(self, key, code, frame):
        names = self._names
        name = names.get(code, 0)
        if name == 0:
            name = names[code] = _classify(code)
        if name is None or self._quiet:
            return False
        stack = self._stack
        if name is _QUIET:
            self._quiet = True
            stack.append((key, name, -1, None))
            return True
        cur = self._cur
        text = name + "()"
        if cur is None and (code is _EXC_CODE or code is _GUP_CODE):
            if self._start_fault(frame, "fault" if code is _EXC_CODE else "gup") is None:
                return False
            cur = self._cur
            text = cur.header()
        elif not stack:
            if self.faults_only:
                return False
            p, in_exec = _caller(frame)
            if p is None and not in_exec:
                return False        # not a process's call: booting, reading /proc
            if p is not None:
                self._prefix = f"{p.task.cpu:2d}) {p.pid:4d}   | "
                self._mute = self.pid is not None and p.pid != self.pid
            else:
                self._prefix = " -)    -   | "
                self._mute = self.pid is not None
        if cur is not None:
            cur.paths.add(name)
            if name in ("force_sig_fault", "force_sig"):
                signo = frame.f_locals.get("signo")
                cur.signal = SIGNAL_NAMES.get(signo, signo)
        if self.funcs and self._graph is None and name in self.funcs:
            self._graph = len(stack)
        self.calls[name] += 1
        w = None
        if name in ENTRY_WRITERS:
            w = self._entry_before(name, frame.f_locals)
        idx = self._emit(text + " {", len(stack))
        stack.append((key, name, idx, w))
        return True

    def _entry_before(self, name, loc):
        level, ptr_arg, nr_arg = ENTRY_WRITERS[name]
        ptr = loc.get(ptr_arg)
        mm = loc.get("mm")
        if mm is None:
            vma = loc.get("vma")
            mm = vma.vm_mm if vma is not None else None
        if mm is None or ptr is None:
            return None
        nr = loc.get(nr_arg, 1) if nr_arg else 1
        mv = mm.kernel.ptpool.mv
        return (level, mv, ptr, [int(mv[ptr + i]) for i in range(nr)])

    def _exit(self, key, retval):
        stack = self._stack
        if not stack or stack[-1][0] is not key:
            return
        _, name, idx, w = stack.pop()
        if name is _QUIET:
            self._quiet = False
            return
        depth = len(stack)
        ret = ""
        if name in VM_FAULT_FUNCS and isinstance(retval, int) and not isinstance(retval, bool):
            ret = f" /* {name} = {decode_vm_fault(retval)} */"
        elif w is not None:
            level, mv, ptr, old = w
            new = [int(mv[ptr + i]) for i in range(len(old))]
            if self.log_entries:
                self.entry_log.extend((ptr + i, o, n) for i, (o, n) in enumerate(zip(old, new)))
            ret = f" /* {decode_change(level, old, new)} */"
        if idx >= 0 and idx == len(self._lines) - 1:
            # A leaf: fold "name() {" into "name();" as ftrace does.
            line = self._lines[idx]
            new = line[:-2] + ";" + (ret.replace(f" {name} =", " =") if ret else "")
            self._lines[idx] = new
            if self._cur is not None and self._cur.lines and self._cur.lines[-1] is line:
                self._cur.lines[-1] = new
        elif idx >= 0:
            self._emit("}" + ret, depth)
        if self._graph is not None and depth == self._graph:
            self._graph = None
        cur = self._cur
        if cur is not None and depth == self._cur_depth:
            cur._done()
            if self.record == "signals" and cur.signal is None and cur._first >= 0:
                self.events -= len(self._lines) - cur._first
                del self._lines[cur._first:]
                cur.lines = []
            self._cur = None
            self._mute = False
        if not stack:
            self._mute = False

    # sys.setprofile (3.11)
    def _profile(self, frame, event, arg):
        if event == "call":
            self._enter(frame, frame.f_code, frame)
        elif event == "return":
            self._exit(frame, arg)

    # sys.monitoring (3.12+)
    def _mon_start(self, code, offset):
        if not self._enter(code, code, sys._getframe(1)):
            if self._names.get(code) is None:
                return sys.monitoring.DISABLE
        return None

    def _mon_return(self, code, offset, retval):
        if self._names.get(code, 0) is None:
            return sys.monitoring.DISABLE
        self._exit(code, retval)
        return None

    def _mon_unwind(self, code, offset, exc):
        self._exit(code, None)

    def start(self):
        if self._active:
            return self
        self._active = True
        if sys.version_info >= (3, 12):
            mon = sys.monitoring
            tool = mon.PROFILER_ID
            mon.use_tool_id(tool, "vmsim.trace")
            E = mon.events
            mon.register_callback(tool, E.PY_START, self._mon_start)
            mon.register_callback(tool, E.PY_RETURN, self._mon_return)
            mon.register_callback(tool, E.PY_UNWIND, self._mon_unwind)
            mon.set_events(tool, E.PY_START | E.PY_RETURN | E.PY_UNWIND)
            mon.restart_events()
        else:
            self._saved = sys.getprofile()
            sys.setprofile(self._profile)
        return self

    def stop(self):
        if not self._active:
            return self
        self._active = False
        if sys.version_info >= (3, 12):
            mon = sys.monitoring
            tool = mon.PROFILER_ID
            mon.set_events(tool, 0)
            for ev in (mon.events.PY_START, mon.events.PY_RETURN, mon.events.PY_UNWIND):
                mon.register_callback(tool, ev, None)
            mon.free_tool_id(tool)
        else:
            sys.setprofile(self._saved)
        self._stack.clear()
        self._cur = None
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # --- results --------------------------------------------------------------------
    def text(self, limit_faults=None, faults=None) -> str:
        """The trace, ftrace function_graph style (``limit_faults``: first N faults only;
        ``faults``: those Fault records only)."""
        head = "# CPU  PID   |  FUNCTION CALLS\n#  |    |     |   |   |   |\n"
        if limit_faults is not None or faults is not None:
            body = []
            for f in (faults if faults is not None else self.shown_faults()[:limit_faults]):
                body.extend(f.lines)
            out = head + "\n".join(body)
        else:
            out = head + "\n".join(self._lines)
        if self.truncated:
            out += f"\n# trace truncated at {self.max_events} lines (max_events)"
        return out + "\n"

    def shown_faults(self):
        """The faults the scenario took (execve's own left out unless show_exec)."""
        return [f for f in self.faults if self.show_exec or not f.exec]

    def exec_faults(self, pid=None) -> int:
        return sum(1 for f in self.faults if f.exec and (pid is None or f.pid == pid))

    def path_counts(self, pid=None) -> Counter:
        """Faults per path taken (FAULT_PATHS) and per signal, optionally for one pid;
        also "#PF" and "GUP" (faults by kind) and "minflt" / "majflt" (their rusage)."""
        c = Counter()
        for f in self.faults:
            if (pid is not None and f.pid != pid) or f.exec:
                continue
            c["#PF" if f.kind == "fault" else "GUP"] += 1
            c["minflt"] += f.minflt
            c["majflt"] += f.majflt
            for p in FAULT_PATHS:
                if p in f.paths:
                    c[p] += 1
            if f.signal is not None:
                c[f"signal {f.signal}"] += 1
        return c

    def pids(self):
        return sorted({f.pid for f in self.faults})


_EXC_CODE = _traps.exc_page_fault.__code__
_GUP_CODE = _gup.faultin_page.__code__


def _exec_codes():
    from vmsim import api
    return frozenset((api.Machine.spawn.__code__, api.Process.execve.__code__))


_EXEC_CODES = _exec_codes()


def function_graph(machine=None, faults_only=True, max_events=5000, record=True, funcs=None,
                   pid=None, show_exec=False) -> FunctionGraph:
    """Return a tracer to use as a context manager.

    ``machine``: trace only that Machine's faults (None: any). ``faults_only``: record
    only inside exc_page_fault and faultin_page (else every model call). ``max_events``:
    stop recording lines after that many (counting goes on). ``record=False``: count
    paths only; ``record="signals"``: keep the lines of faults that end in a signal.
    ``funcs``: set_graph_function (implies every model call). ``pid``: that process only.
    ``show_exec``: also the faults execve takes for itself.
    """
    return FunctionGraph(machine, faults_only, max_events, record, funcs, pid, show_exec)
