"""The ``--json`` and ``--plot`` forms of ``vmsim run``, ``trace`` and ``walk`` (the
schema is docs/json.md). Kept apart from vmsim/cli.py's text output: main() hands a
command here when one of these options is given."""
import contextlib
import json
import sys


def add_options(sp, plot=False):
    """The options this module serves, on one subcommand's parser."""
    sp.add_argument("--json", action="store_true",
                    help="print one JSON document (docs/json.md) instead of text")
    if plot:
        sp.add_argument("--plot", metavar="OUT.png",
                        help="draw RSS, page-table pages and faults over the scenario's steps "
                             "(needs matplotlib: pip install 'vmsim[plot]')")
        sp.add_argument("--tables", action="store_true",
                        help="with --json: each step's changed page-table entries (steps[].tables)")
        sp.add_argument("--graphs", action="store_true",
                        help="with --json: each step's faults with their function graphs "
                             "(steps[].faults.records)")


def wanted(args) -> bool:
    """--json: the command's JSON form runs here instead of the text one."""
    from vmsim.cli import UsageError
    json_ = bool(getattr(args, "json", False))
    for opt in ("tables", "graphs"):
        if getattr(args, opt, False) and not json_:
            raise UsageError(f"--{opt} goes with --json")
    if getattr(args, "graphs", False) and not args.paths:
        raise UsageError("--graphs needs the fault paths: leave out --no-paths")
    return json_


def dispatch(args, out):
    return {"run": cmd_run, "trace": cmd_trace, "walk": cmd_walk}[args.command](args, out)


def _emit(doc):
    json.dump(doc, sys.stdout, indent=1)
    sys.stdout.write("\n")


def _killed(st, fatal):
    """The ``killed`` member of a run/trace document; tells strace who died."""
    if fatal is None:
        return None
    from vmsim.cli import _killed_pid
    from vmsim.strace import signal_name
    exc = fatal.exception
    pid = _killed_pid(fatal.result, exc)
    st.killed(pid, exc.signo)
    return {"pid": pid, "signo": exc.signo, "name": signal_name(exc.signo)}


def _emit_with_status(doc, fatal):
    """Print the document; exit as the text form does (128 + signo when killed)."""
    _emit(doc)
    if fatal is None:
        return 0
    print(f"vmsim: {fatal}", file=sys.stderr)
    return 128 + fatal.exception.signo


def _check_matplotlib():
    from vmsim.cli import UsageError
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("--plot needs matplotlib, which is not installed: "
                         "pip install 'vmsim[plot]' (or pip install matplotlib)") from None


def plot_recorder(args, tracer):
    """For ``vmsim run --plot``: a StepRecorder to run with (None without --plot)."""
    if not getattr(args, "plot", None):
        return None
    _check_matplotlib()
    from vmsim.views import StepRecorder
    return StepRecorder(tracer)


def draw(args, rec, out=None):
    """Write the --plot figure of a recorded run."""
    from vmsim.views import plot_steps
    from vmsim import progress
    with progress.status(f"drawing {args.plot}"):
        plot_steps(rec, args.plot, title=args.scenario)
    msg = f"plot: {args.plot} ({len(rec.steps)} steps)"
    if out is not None:
        out.line(msg)
    else:
        print(f"vmsim: {msg}", file=sys.stderr)


# The function-graph lines kept for a run's steps with --graphs (about 50 a fault);
# the faults past them keep their paths, with "truncated" set and no lines.
GRAPH_LINES = 200_000


def record_run(args, tables=False, graphs=False, status=None):
    """Run the scenario under strace, the function-graph tracer (unless --no-paths)
    and a StepRecorder; return (document, fatal). A scenario failing with an exception
    raises ScenarioError with ``e.document`` set to the document of the steps up to it
    (None when nothing ran)."""
    from vmsim.cli import _run_traced
    from vmsim.strace import Strace
    from vmsim.trace import function_graph
    from vmsim.views import StepRecorder, run_document
    from vmsim import progress
    from vmsim.scenario import ScenarioError
    tracer = None
    if args.paths:
        tracer = function_graph(None, faults_only=True, record=True if graphs else "signals",
                                max_events=GRAPH_LINES if graphs else 5000)
    st = Strace(max_records=args.max)
    rec = StepRecorder(tracer, strace=st, tables=tables, graphs=graphs)
    try:
        # The scenario's own prints go to stderr: stdout is the document.
        with progress.status(status or f"running {args.scenario}"), \
                contextlib.redirect_stdout(sys.stderr):
            # Strace innermost: each step then carries the syscall records it made.
            result, fatal = _run_traced(args, [st] + ([tracer] if tracer else []) + [rec])
    except ScenarioError as e:
        e.document = None
        e.recorder = rec
        if rec.steps:                  # something ran: the steps up to the error
            doc = run_document(None, rec, tracer, str(e))
            doc.update(scenario=args.scenario, killed=None)
            e.document = doc
        raise
    killed = _killed(st, fatal)
    doc = run_document(result, rec, tracer, str(fatal) if fatal else None)
    doc["killed"] = killed
    doc["_recorder"] = rec             # for --plot; taken out before printing
    m = result.machine if result is not None else None
    doc["tlb"] = None if m is None or m.k.tlb is None else dict(m.tlb_geometry(), cpus=m.tlb_stats())
    return doc, fatal


def cmd_run(args, out):
    """vmsim run --json [--plot] [--tables] [--graphs]: the run, recorded step by step,
    as one document. Exit status as the text form: 128 + signo for a scenario killed
    by a signal."""
    from vmsim.scenario import ScenarioError
    if args.plot:
        _check_matplotlib()
    try:
        doc, fatal = record_run(args, args.tables, args.graphs)
    except ScenarioError as e:
        if e.document is None:         # nothing ran (unreadable file, syntax error)
            raise
        # an exception in the scenario: the document of the steps up to it, then the error
        _emit(e.document)
        raise
    rec = doc.pop("_recorder")
    if args.plot:
        draw(args, rec)
    return _emit_with_status(doc, fatal)


def cmd_trace(args, out):
    """vmsim trace --json: the traced faults and strace's records. Exit status as the
    text form."""
    from vmsim.cli import _run_traced
    from vmsim.strace import Strace
    from vmsim.trace import function_graph
    from vmsim.views import trace_document
    from vmsim import progress
    tracer = function_graph(None, faults_only=not args.all, max_events=args.max,
                            funcs=args.graph_funcs, pid=args.pid, show_exec=args.exec)
    st = Strace(max_records=args.max, pid=args.pid)
    with progress.status(f"tracing {args.scenario}"), contextlib.redirect_stdout(sys.stderr):
        result, fatal = _run_traced(args, [st, tracer])
    killed = _killed(st, fatal)
    doc = trace_document(args.scenario, tracer, str(fatal) if fatal else None, st)
    doc["killed"] = killed
    return _emit_with_status(doc, fatal)


def cmd_walk(args, out):
    """vmsim walk --json: the address's split per paging mode, or a process's walk."""
    from vmsim.cli import UsageError, _machine_kw
    from vmsim.walk import parse_address, PAGING_MODES
    from vmsim.views import document, layout_record, PageWalk
    try:
        addr = parse_address(args.address)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.pid is not None and args.scenario is None:
        raise UsageError("--pid needs --scenario FILE")
    if args.scenario is None:
        modes = [layout_record(addr, m) for m in ([args.mode] if args.mode else list(PAGING_MODES))]
        if all(m["problem"] for m in modes):      # the same usage errors as the text form
            raise UsageError(f"{addr:#x} fits no paging mode: " +
                             "; ".join(f"{m['mode']}: {m['problem']}" for m in modes))
        _emit(document("walk", address=addr, modes=modes))
        return 0
    from vmsim.arch.x86.pgtable_types import paging_mode
    from vmsim.walk import check_address
    mname = paging_mode(args.levels).name
    if args.mode and args.mode != mname:
        raise UsageError(f"--mode {args.mode}: the scenario's machine uses {mname} paging"
                         f" (choose the machine's with --levels 4 or 5)")
    problem = check_address(addr, PAGING_MODES[mname])
    if problem:
        raise UsageError(f"{mname} paging: {addr:#x} is {problem}")
    from vmsim.scenario import run_scenario
    from vmsim import progress
    with progress.status(f"running {args.scenario}"), contextlib.redirect_stdout(sys.stderr):
        result = run_scenario(args.scenario, **_machine_kw(args))
    machine = result.machine
    pid = args.pid
    if pid is None:
        live = sorted(machine.processes)
        if len(live) != 1:
            raise UsageError(f"--pid N needed: the scenario has processes "
                             f"{', '.join(map(str, live)) or '(none)'}")
        pid = live[0]
    p = machine.processes.get(pid)
    if p is None:
        raise UsageError(f"no process {pid} (processes: {', '.join(map(str, sorted(machine.processes)))})")
    try:
        w = PageWalk(p, addr)
    except (ProcessLookupError, ValueError) as e:
        raise UsageError(str(e)) from None
    mm = p.task.mm
    vma = mm.vma_lookup(addr)
    from vmsim.views import vma_record
    _emit(document("walk", address=addr, scenario=args.scenario, walk=w.record(),
                   vma=vma_record(vma) if vma is not None else None))
    return 0
