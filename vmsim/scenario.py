"""Running user scenario files (``vmsim run``, ``vmsim trace``, ``vmsim walk --scenario``).

A scenario is a Python file that uses the vmsim API. It runs with these globals:

* ``machine``: a fresh :class:`vmsim.Machine` (the CLI's --memory/--cpus/--levels);
* ``vmsim``, and every public name of ``vmsim`` (``PROT_READ``, ``MAP_PRIVATE``,
  ``MADV_DONTNEED``, ``SignalDelivered``, ...), as after ``from vmsim import *``;
* ``__name__ == "__vmsim_scenario__"`` (so an ``if __name__ == "__main__":`` block,
  for running the file with plain python, is skipped).

Top-level code runs first. If the file then defines ``main``, it is called as
``main(machine)`` with that same fresh Machine. Either style works; both may be
mixed. Every Machine the scenario creates itself is summarised too.

Mistakes are reported without a Python traceback: :class:`ScenarioError` carries
a one-line "FILE:LINE: message" and the exit status (2: the file cannot be read;
1: a syntax error or an exception raised while the scenario ran).
"""
import os
import sys
import traceback

import vmsim
import vmsim.api as _api


class ScenarioError(Exception):
    """A user mistake in or about a scenario file: ``str()`` is the one-line message."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status
        self.exception = None       # the scenario's own exception, if it raised one
        self.result = None          # ScenarioResult of what ran until then


class ScenarioResult:
    """What a run left: the machines (with vmstat baselines) and the scenario's globals."""

    def __init__(self, path, machine, machines, globals_):
        self.path = path
        self.machine = machine          # the machine to report on first
        self.machines = machines        # [(Machine, baseline)] in creation order
        self.globals = globals_

    def reported_machines(self):
        """The machines that ran processes (the provided one if none did)."""
        used = [(m, b) for m, b in self.machines if m.processes]
        return used or [(m, b) for m, b in self.machines if m is self.machine]


def vmstat_snapshot(machine) -> dict:
    """Return {name: value} from /proc/vmstat, or from the kernel's counters if the
    /proc view is not available."""
    try:
        text = machine.read_file("/proc/vmstat")
        out = {}
        for line in text.splitlines():
            name, _, val = line.partition(" ")
            out[name] = int(val)
        return out
    except Exception:       # /proc not built, or a partial implementation
        from vmsim.mm.vmstat import VMSTAT_NAMES
        return dict(zip(VMSTAT_NAMES, machine.k.vmstat))


def vmstat_deltas(machine, baseline: dict) -> list:
    """Return [(name, delta)] for the counters that changed since ``baseline``."""
    now = vmstat_snapshot(machine)
    return [(n, v - baseline.get(n, 0)) for n, v in now.items() if v != baseline.get(n, 0)]


MAX_SCENARIO_BYTES = 4 << 20


def read_scenario(path: str) -> bytes:
    """Return a scenario file's bytes, reading at most MAX_SCENARIO_BYTES of it.

    A scenario is a short program: anything longer (a device such as /dev/zero, a
    log passed by mistake) is refused instead of being read into memory without end.
    """
    with open(path, "rb") as f:
        source = f.read(MAX_SCENARIO_BYTES + 1)
    if len(source) > MAX_SCENARIO_BYTES:
        raise ScenarioError(f"{path}: larger than {MAX_SCENARIO_BYTES >> 20} MiB: "
                            f"not a scenario file", 2)
    return source


def compile_scenario(path: str):
    """Read and compile a scenario; raise ScenarioError (2: unreadable, 1: syntax)."""
    try:
        source = read_scenario(path)
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such file", 2) from None
    except IsADirectoryError:
        raise ScenarioError(f"{path}: is a directory", 2) from None
    except OSError as e:
        raise ScenarioError(f"{path}: {e.strerror}", 2) from None
    try:
        return compile(source, path, "exec")
    except SyntaxError as e:
        line = e.lineno or 0
        raise ScenarioError(f"{path}:{line}: SyntaxError: {e.msg}", 1) from None
    except ValueError as e:          # e.g. null bytes in the source
        raise ScenarioError(f"{path}: {e}", 1) from None


def _where(path: str, exc: BaseException) -> str:
    """Return "FILE:LINE" of the innermost scenario frame in the exception's traceback."""
    target = os.path.abspath(path)
    line = None
    for fs in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(fs.filename) == target:
            line = fs.lineno
    return f"{path}:{line}" if line is not None else path


def describe_exception(path: str, exc: BaseException) -> str:
    msg = str(exc)
    name = type(exc).__name__
    return f"{_where(path, exc)}: {name}: {msg}" if msg else f"{_where(path, exc)}: {name}"


def run_scenario(path: str, memory="1G", cpus=2, paging_levels=4, show_traceback=False,
                 **machine_kw):
    """Run a scenario file; return a ScenarioResult or raise ScenarioError."""
    code = compile_scenario(path)
    created = []
    baselines = {}
    orig_init = _api.Machine.__init__

    def baseline(m):
        if id(m) not in baselines:
            baselines[id(m)] = vmstat_snapshot(m)

    def tracking_init(self, *a, **kw):
        # Baselines for machines the scenario makes are taken right after boot.
        orig_init(self, *a, **kw)
        created.append((self, None))
        baseline(self)

    try:
        machine = vmsim.Machine(memory=memory, cpus=cpus, paging_levels=paging_levels, **machine_kw)
    except (ValueError, MemoryError) as e:
        raise ScenarioError(f"cannot create the machine: {e}", 2) from None
    created.append((machine, None))
    g = {n: getattr(vmsim, n) for n in vmsim.__all__}
    g.update(__name__="__vmsim_scenario__", __file__=path, __builtins__=__builtins__,
             vmsim=vmsim, machine=machine)
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [path]
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    baseline(machine)
    _api.Machine.__init__ = tracking_init
    try:
        exec(code, g)
        main = g.get("main")
        if callable(main):
            ret = main(machine)
            if isinstance(ret, vmsim.Machine):
                g["machine"] = ret
    except SystemExit as e:
        if e.code not in (None, 0):
            raise ScenarioError(f"{path}: exited with status {e.code}",
                                e.code if isinstance(e.code, int) else 1) from None
    except KeyboardInterrupt:
        raise
    except BaseException as e:
        if show_traceback:
            traceback.print_exc()
        err = ScenarioError(describe_exception(path, e), 1)
        # What ran until then, for a report of a scenario that died (of a signal).
        err.exception, err.result = e, _result(path, g, machine, created, baselines)
        raise err from None
    finally:
        _api.Machine.__init__ = orig_init
        sys.argv = saved_argv
        sys.path[:] = saved_path
    return _result(path, g, machine, created, baselines)


def _result(path, g, machine, created, baselines) -> ScenarioResult:
    primary = g.get("machine") if isinstance(g.get("machine"), vmsim.Machine) else machine
    seen, machines = set(), []
    for m, _ in created:
        if id(m) not in seen:
            seen.add(id(m))
            machines.append((m, baselines.get(id(m), {})))
    return ScenarioResult(path, primary, machines, g)
