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


def wanted(args) -> bool:
    return bool(getattr(args, "json", False) or getattr(args, "plot", None))


def dispatch(args, out):
    return {"run": cmd_run, "trace": cmd_trace, "walk": cmd_walk}[args.command](args, out)


def _emit(doc):
    json.dump(doc, sys.stdout, indent=1)
    sys.stdout.write("\n")


def _check_matplotlib():
    from vmsim.cli import UsageError
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("--plot needs matplotlib, which is not installed: "
                         "pip install 'vmsim[plot]' (or pip install matplotlib)") from None


def cmd_run(args, out):
    """vmsim run --json / --plot: the run, recorded step by step."""
    from vmsim.cli import _machine_kw, print_summary
    from vmsim.scenario import run_scenario, ScenarioError
    from vmsim.trace import function_graph
    from vmsim.views import StepRecorder, run_document, plot_steps
    from vmsim import progress
    if args.plot:
        _check_matplotlib()
    tracer = function_graph(None, faults_only=True, record=False) if args.paths else None
    result, error = None, None
    # With --json the scenario's own prints go to stderr: stdout is the document.
    redirect = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    rec = StepRecorder(tracer)
    try:
        with progress.status(f"running {args.scenario}"), redirect, rec, \
                (tracer if tracer is not None else contextlib.nullcontext()):
            result = run_scenario(args.scenario, **_machine_kw(args))
    except ScenarioError as e:
        if not args.json or not rec.steps:
            raise
        error = str(e)          # the document still shows every step up to the failure
    if args.plot:
        with progress.status(f"drawing {args.plot}"):
            plot_steps(rec, args.plot, title=args.scenario)
    if args.json:
        doc = run_document(result, rec, tracer, error)
        if result is None:
            doc["scenario"] = args.scenario
        _emit(doc)
        if error:
            print(f"vmsim: {error}", file=sys.stderr)
            return 1
    else:
        print_summary(out, result, tracer)
        out.line(f"plot: {args.plot} ({len(rec.steps)} steps)")
    return 0


def cmd_trace(args, out):
    """vmsim trace --json: the traced faults as records."""
    from vmsim.cli import _machine_kw
    from vmsim.scenario import run_scenario, ScenarioError
    from vmsim.trace import function_graph
    from vmsim.views import trace_document
    from vmsim import progress
    tracer = function_graph(None, faults_only=not args.all, max_events=args.max,
                            funcs=args.graph_funcs, pid=args.pid, show_exec=args.exec)
    error = None
    try:
        with progress.status(f"tracing {args.scenario}"), contextlib.redirect_stdout(sys.stderr), tracer:
            run_scenario(args.scenario, **_machine_kw(args))
    except ScenarioError as e:
        if not tracer.faults:
            raise
        error = str(e)
    _emit(trace_document(args.scenario, tracer, error))
    if error:
        print(f"vmsim: {error}", file=sys.stderr)
        return 1
    return 0


def cmd_walk(args, out):
    """vmsim walk --json: the address's split per paging mode, or a process's walk."""
    from vmsim.cli import UsageError, _machine_kw
    from vmsim.walk import parse_address, PAGING_MODES
    from vmsim.views import document, layout_record, PageWalk
    try:
        addr = parse_address(args.address)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.scenario is None:
        if args.pid is not None:
            raise UsageError("--pid needs --scenario FILE")
        modes = [args.mode] if args.mode else list(PAGING_MODES)
        _emit(document("walk", address=addr, modes=[layout_record(addr, m) for m in modes]))
        return 0
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
