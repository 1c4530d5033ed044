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

Besides the text, the tracer counts, per fault, which fault paths it went through
(do_anonymous_page, do_wp_page, wp_page_copy, do_fault, do_read_fault,
do_shared_fault, ...) and whether it ended in a signal: see :attr:`FunctionGraph.faults`
and :meth:`FunctionGraph.path_counts`.
"""
import os
import sys
from collections import Counter

import vmsim
from vmsim.arch.x86 import traps as _traps
from vmsim.arch.x86.pgtable_types import PfErr
from vmsim.mm.mm_types import VM_FAULT_NAMES

_ROOT = os.path.dirname(os.path.abspath(vmsim.__file__))
MODEL_PACKAGES = ("arch", "mm", "kernel", "fs")
_PREFIXES = tuple(os.path.join(_ROOT, d) + os.sep for d in MODEL_PACKAGES)
_CO_GENERATOR_LIKE = 0x20 | 0x100 | 0x200     # CO_GENERATOR, CO_COROUTINE, CO_ASYNC_GENERATOR

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
    """One traced page fault: where, who, what paths it took, and its call tree."""
    __slots__ = ("pid", "cpu", "address", "error_code", "paths", "signal", "lines", "truncated")

    def __init__(self, pid, cpu, address, error_code):
        self.pid = pid
        self.cpu = cpu
        self.address = address
        self.error_code = error_code
        self.paths = set()
        self.signal = None
        self.lines = []
        self.truncated = False

    def header(self) -> str:
        return f"exc_page_fault(addr={self.address:#x}, error_code={decode_error_code(self.error_code)})"

    def __repr__(self):
        return f"<Fault pid={self.pid} {self.header()} paths={sorted(self.paths)} signal={self.signal}>"


def _classify(code):
    """Return the function name to trace for a code object, or None."""
    if not code.co_filename.startswith(_PREFIXES):
        return None
    name = code.co_name
    if name.startswith("<") or code.co_flags & _CO_GENERATOR_LIKE:
        return None
    # Dunders (struct initialisers) and vmsim's own _helpers are not kernel functions.
    if name.startswith("_") and (not name.startswith("__") or name.endswith("__")):
        return None
    return name


class FunctionGraph:
    """A function-graph tracer; use :func:`function_graph` to install it."""

    def __init__(self, machine=None, faults_only=True, max_events=5000, record=True):
        self.k = machine.k if machine is not None and hasattr(machine, "k") else machine
        self.faults_only = faults_only
        self.max_events = max_events
        self.record = record
        self.faults = []          # Fault records, in order
        self.calls = Counter()    # calls per function name, inside traced regions
        self.events = 0           # lines recorded
        self.truncated = False
        self._lines = []          # all recorded lines, in order (faults and other calls)
        self._stack = []          # (frame or code, name, line index or -1)
        self._cur = None          # the Fault being traced
        self._names = {}          # code -> name or None
        self._active = False

    # --- the hook -----------------------------------------------------------------
    def _emit(self, text):
        if not self.record:
            return -1
        if self.events >= self.max_events:
            self.truncated = True
            if self._cur is not None:
                self._cur.truncated = True
            return -1
        self.events += 1
        cur = self._cur
        prefix = f"{cur.cpu:2d}) {cur.pid:4d}   | " if cur is not None else " -)    -   | "
        line = prefix + text
        self._lines.append(line)
        if cur is not None:
            cur.lines.append(line)
        return len(self._lines) - 1

    def _enter(self, key, code, frame_locals):
        names = self._names
        name = names.get(code, 0)
        if name == 0:
            name = names[code] = _classify(code)
        if name is None:
            return False
        stack = self._stack
        if not stack:
            if code is _EXC_CODE:
                loc = frame_locals()
                k = loc.get("k")
                if self.k is not None and k is not self.k:
                    return False
                task = k.current if k is not None else None
                self._cur = Fault(task.pid if task else 0, task.cpu if task else 0,
                                  loc.get("address", 0), loc.get("error_code", 0))
                self.faults.append(self._cur)
                text = self._cur.header()
            elif self.faults_only:
                return False
            else:
                self._cur = None
                text = name + "()"
        else:
            text = name + "()"
            cur = self._cur
            if cur is not None:
                cur.paths.add(name)
                if name in ("force_sig_fault", "force_sig"):
                    signo = frame_locals().get("signo")
                    cur.signal = SIGNAL_NAMES.get(signo, signo)
        self.calls[name] += 1
        idx = self._emit("  " * len(stack) + text + " {")
        stack.append((key, name, idx))
        return True

    def _exit(self, key, retval):
        stack = self._stack
        if not stack or stack[-1][0] is not key:
            return
        _, name, idx = stack.pop()
        depth = len(stack)
        ret = ""
        if name in VM_FAULT_FUNCS and isinstance(retval, int) and not isinstance(retval, bool):
            ret = f" /* {name} = {decode_vm_fault(retval)} */"
        if idx >= 0 and idx == len(self._lines) - 1:
            # A leaf: fold "name() {" into "name();" as ftrace does.
            line = self._lines[idx]
            new = line[:-2] + ";" + (ret.replace(f" {name} =", " =") if ret else "")
            self._lines[idx] = new
            if self._cur is not None and self._cur.lines and self._cur.lines[-1] is line:
                self._cur.lines[-1] = new
        elif idx >= 0:
            self._emit("  " * depth + "}" + ret)
        if not stack:
            self._cur = None

    # sys.setprofile (3.11)
    def _profile(self, frame, event, arg):
        if event == "call":
            self._enter(frame, frame.f_code, lambda: frame.f_locals)
        elif event == "return":
            self._exit(frame, arg)

    # sys.monitoring (3.12+)
    def _mon_start(self, code, offset):
        f = sys._getframe(1)
        if not self._enter(code, code, lambda: f.f_locals):
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
    def text(self, limit_faults=None) -> str:
        """The trace, ftrace function_graph style (``limit_faults``: first N faults only)."""
        head = "# CPU  PID   |  FUNCTION CALLS\n#  |    |     |   |   |   |\n"
        if limit_faults is not None:
            body = []
            for f in self.faults[:limit_faults]:
                body.extend(f.lines)
            out = head + "\n".join(body)
        else:
            out = head + "\n".join(self._lines)
        if self.truncated:
            out += f"\n# trace truncated at {self.max_events} lines (max_events)"
        return out + "\n"

    def path_counts(self, pid=None) -> Counter:
        """Faults per path taken (FAULT_PATHS) and per signal, optionally for one pid."""
        c = Counter()
        for f in self.faults:
            if pid is not None and f.pid != pid:
                continue
            for p in FAULT_PATHS:
                if p in f.paths:
                    c[p] += 1
            if f.signal is not None:
                c[f"signal {f.signal}"] += 1
        return c

    def pids(self):
        return sorted({f.pid for f in self.faults})


_EXC_CODE = _traps.exc_page_fault.__code__


def function_graph(machine=None, faults_only=True, max_events=5000, record=True) -> FunctionGraph:
    """Return a tracer to use as a context manager.

    ``machine``: trace only that Machine's faults (None: any). ``faults_only``: record
    only inside exc_page_fault (else every model call). ``max_events``: stop recording
    lines after that many (counting goes on). ``record=False``: count paths only.
    """
    return FunctionGraph(machine, faults_only, max_events, record)
