"""The ``vmsim`` command line.

    vmsim run SCENARIO.py       run a scenario file; print its system calls as strace -f
                                does, then faults, RSS and vmstat deltas (--all: every counter)
    vmsim trace SCENARIO.py     run it with the function-graph tracer: the faults' kernel
                                calls, page-table entry writes decoded, syscalls as comments
                                (--func NAME, --pid N, --max N, --all, --exec)
    vmsim walk ADDR             split an address into table indices for each paging mode;
                                with --scenario FILE --pid N, walk that process's page tables
    vmsim explore SCENARIO.py   write an HTML page to step through the scenario (tables,
                                faults' graphs, processes side by side, an address walk)
    vmsim demo                  a built-in tour of the anonymous and shmem fault paths
    vmsim seedmap               the seed notes -> Linux 6.18 -> vmsim function table
    vmsim replay [TRACE]        replay a memory trace (lackey, pinatrace, .npz, .parquet);
                                vmsim convert TRACE OUT.npz, vmsim sweep TRACE --grid K=V1,V2
                                (vmsim.replay, docs/replay.md)

Scenario files are described in :mod:`vmsim.scenario`. User mistakes never show a
Python traceback: one line on stderr and exit status 2 (bad usage: arguments,
missing file) or 1 (the scenario failed: syntax error, exception, "FILE:LINE: ...").
A scenario that dies of a signal (an uncaught SignalDelivered) is reported as a killed
process: the fatal fault's trace, what ran until then, and exit status 128 + signo, as
a shell gives it (139 for SIGSEGV, 135 for SIGBUS).
Output uses rich tables on a terminal and plain text otherwise.
"""
import argparse
import re
import sys

EXIT_SCENARIO = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A bad argument: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


# --- output: rich on a terminal, plain text otherwise ---------------------------------
class Out:
    """Prints headings, tables and blocks of text, with rich when the file is a TTY."""

    def __init__(self, file=None, rich=None):
        self.file = file if file is not None else sys.stdout
        if rich is None:
            rich = hasattr(self.file, "isatty") and self.file.isatty()
        self.console = None
        self.before_output = None     # stops a progress display before the first output
        if rich:
            try:
                from rich.console import Console
                self.console = Console(file=self.file, highlight=False)
            except ImportError:
                pass

    def line(self, text=""):
        self._progress_done()
        if self.console is not None:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=self.file)

    def _progress_done(self):
        if self.before_output is not None:
            self.before_output()
            self.before_output = None

    def heading(self, text):
        self._progress_done()
        if self.console is not None:
            self.console.rule(f"[bold]{_escape(text)}")
        else:
            print(f"\n{text}\n{'=' * len(text)}", file=self.file)

    def block(self, title, text):
        """A titled block of preformatted text (a /proc file, a trace)."""
        self._progress_done()
        if self.console is not None:
            from rich.panel import Panel
            from rich.text import Text
            self.console.print(Panel(Text(text.rstrip("\n")), title=_escape(title), expand=False))
        else:
            print(f"--- {title} ---", file=self.file)
            print(text.rstrip("\n"), file=self.file)

    def table(self, title, columns, rows, right=()):
        self._progress_done()
        """``columns``: header names; ``right``: indices of right-aligned columns."""
        rows = [[str(c) for c in r] for r in rows]
        if self.console is not None:
            from rich.table import Table
            t = Table(title=_escape(title) if title else None, title_justify="left")
            for i, c in enumerate(columns):
                t.add_column(_escape(c), justify="right" if i in right else "left", overflow="fold")
            for r in rows:
                t.add_row(*[_escape(c) for c in r])
            self.console.print(t)
            return
        if title:
            print(title, file=self.file)
        widths = [len(c) for c in columns]
        for r in rows:
            for i, c in enumerate(r):
                widths[i] = max(widths[i], len(c))

        def fmt(r):
            cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(r)]
            return "  ".join(cells).rstrip()
        print(fmt(columns), file=self.file)
        print("  ".join("-" * w for w in widths), file=self.file)
        for r in rows:
            print(fmt(r), file=self.file)


def _escape(text):
    try:
        from rich.markup import escape
        return escape(str(text))
    except ImportError:
        return str(text)


# --- summaries -------------------------------------------------------------------------
from vmsim.views import process_rows   # noqa: E402  (shared with vmsim.demo)


# The vmstat counters a reader of the summary cares about: faults, allocations and
# frees, reclaim and LRU events, THP events, what is mapped. The rest (per-zone
# copies, NUMA accounting, derived values such as the dirty thresholds, the free
# page-block count) only with --all.
VMSTAT_SHOWN = re.compile(
    r"(pg(maj)?fault|pgalloc_\w+|pgfree|pgreuse|pgactivate|pgdeactivate|pglazyfreed?|"
    r"pgrotated|pgrefill|pgscan_\w+|pgsteal_\w+|pswp(in|out)|thp_\w+|unevictable_pgs_\w+|"
    r"nr_free_pages|nr_anon_pages|nr_anon_transparent_hugepages|nr_mapped|nr_file_pages|"
    r"nr_shmem|nr_(in)?active_(anon|file)|nr_unevictable|nr_mlock|nr_page_table_pages|"
    r"cow_ksm|oom_kill|pgmigrate_\w+|htlb_buddy_alloc_\w+)")

FAULT_LEGEND = """\
  #PF      page faults of user accesses (exc_page_fault)
  GUP      faults a syscall took through get_user_pages (MAP_POPULATE, mlock, MADV_POPULATE_*)
  minflt   of these, the ones the task's rusage counts as minor (ru_minflt): faults that
           completed; a fault ending in a signal or retried is not counted (mm_account_fault)
  majflt   the ones counted as major (ru_majflt)
  do_*...  faults that went through that kernel function (a fault counts once in each)
  SIG*     faults that ended in that signal"""


def print_summary(out, result, tracer=None, show_all=False, killed=None):
    """The ``vmsim run`` summary: per process faults and RSS, fault paths, vmstat deltas.

    Fault counts exclude the faults execve takes for itself (writing argv), as the
    task's rusage does; the fault table's minflt/majflt then equal getrusage's."""
    from vmsim.scenario import vmstat_deltas
    from vmsim.trace import FAULT_PATHS
    machines = result.reported_machines()
    for n, (m, base) in enumerate(machines):
        suffix = f" (machine {n + 1} of {len(machines)})" if len(machines) > 1 else ""
        out.heading(f"Summary of {result.path}{suffix}")
        out.table("Processes: faults (getrusage) and RSS",
                  ["pid", "state", "minflt", "majflt", "RssAnon", "RssFile", "RssShmem", "VmHWM"],
                  process_rows(m, killed), right=(0, 2, 3, 4, 5, 6, 7))
        if tracer is not None:
            mine = [f for f in tracer.faults if f.pid in m.processes and not f.exec]
            pids = sorted({f.pid for f in mine})
            cols = [p for p in FAULT_PATHS if any(p in f.paths for f in mine)]
            sigs = sorted({f.signal for f in mine if f.signal is not None})
            kinds = ["#PF"] + (["GUP"] if any(f.kind == "gup" for f in mine) else [])
            rows = []
            for pid in pids:
                c = tracer.path_counts(pid)
                rows.append([pid] + [c.get(k, 0) for k in kinds] + [c["minflt"], c["majflt"]] +
                            [c.get(p, 0) for p in cols] + [c.get(f"signal {s}", 0) for s in sigs])
            header = ["pid"] + kinds + ["minflt", "majflt"] + cols + sigs
            out.table("Page faults traced, by kind and path", header, rows,
                      right=tuple(range(len(header))))
            nexec = sum(1 for f in tracer.faults if f.exec and f.pid in m.processes)
            legend = FAULT_LEGEND
            if "GUP" not in kinds:
                legend = "\n".join(ln for ln in legend.splitlines() if not ln.startswith("  GUP "))
            if not sigs:
                legend = "\n".join(ln for ln in legend.splitlines() if not ln.startswith("  SIG*"))
            if nexec:
                legend += (f"\n  (left out: {nexec} fault{'s' * (nexec != 1)} execve took for "
                           f"itself, writing argv; the rusage leaves {'them' if nexec != 1 else 'it'} "
                           f"out too)")
            out.line(legend)
        deltas = vmstat_deltas(m, base)
        shown = [(k, v) for k, v in deltas if show_all or VMSTAT_SHOWN.fullmatch(k)]
        hidden = len(deltas) - len(shown)
        title = "vmstat deltas (non-zero)" if show_all else \
            "vmstat deltas: faults, allocations, frees, LRU and THP events (non-zero)"
        out.table(title, ["counter", "delta"], [[k, f"{v:+d}"] for k, v in shown], right=(1,))
        if hidden:
            out.line(f"  ({hidden} more changed: per-zone, NUMA and derived counters; --all shows them)")


# --- commands ----------------------------------------------------------------------------
def _not_a_toml_scenario(path):
    """`vmsim run x.toml`: conformance scenarios are run by `vmsim conform`."""
    if path and path.lower().endswith(".toml"):
        raise UsageError(f"{path} is a conformance scenario (TOML): run it with "
                         f"'vmsim conform {path}'; run, trace and walk --scenario take a Python scenario")


def _machine_kw(args):
    kw = dict(memory=args.memory, cpus=args.cpus, paging_levels=args.levels,
              show_traceback=args.traceback)
    if getattr(args, "tlb", None) is not None or not getattr(args, "pcid", True) or getattr(args, "pti", False):
        kw.update(tlb=args.tlb, pcid=args.pcid, pti=args.pti)
    return kw


def _run_traced(args, tracers):
    """Run the scenario under the tracers; return (result, fatal) where fatal is the
    ScenarioError of a scenario that died of an uncaught signal (None otherwise)."""
    from vmsim.api import SignalDelivered
    from vmsim.scenario import run_scenario, ScenarioError
    import contextlib
    with contextlib.ExitStack() as stack:
        for t in tracers:
            stack.enter_context(t)
        try:
            return run_scenario(args.scenario, **_machine_kw(args)), None
        except ScenarioError as e:
            if not isinstance(e.exception, SignalDelivered) or e.result is None:
                raise
            return e.result, e


def _killed_pid(result, exc):
    """The pid whose access raised the fatal SignalDelivered (its innermost Process)."""
    from vmsim.api import Process
    tb = exc.__traceback__
    pid = None
    while tb is not None:
        obj = tb.tb_frame.f_locals.get("self")
        if isinstance(obj, Process):
            pid = obj.pid
        tb = tb.tb_next
    return pid


def _report_death(out, fatal, st, tracer):
    """The scenario died of a signal: its fault's trace first; return (pid, exit status)."""
    from vmsim.strace import signal_name
    exc = fatal.exception
    pid = _killed_pid(fatal.result, exc)
    sig = signal_name(exc.signo)
    st.killed(pid, exc.signo)
    out.heading(f"pid {pid} killed by {sig}: the fatal fault")
    if tracer is not None and tracer.record:
        faults = [f for f in tracer.faults if f.pid == pid and f.signal is not None]
        out.line(tracer.text(faults=faults[-1:]).rstrip("\n"))
    else:
        out.line("(not traced: run without --no-paths to see it)")
    return pid, sig


def cmd_run(args, out):
    """Run the scenario; print its system calls (strace), then the summary.

    A scenario that dies of an uncaught signal (SignalDelivered) is reported as a
    killed process: the fatal fault's trace, the calls up to it, the summary, and the
    exit status a shell gives a process killed by that signal: 128 + signo (139 for
    SIGSEGV, 135 for SIGBUS)."""
    from vmsim import cli_views
    from vmsim.strace import Strace
    from vmsim.trace import function_graph
    tracer = None
    if args.paths:
        tracer = function_graph(None, faults_only=True, record="signals")
    st = Strace(max_records=args.max)
    steps = cli_views.plot_recorder(args, tracer)       # --plot: the steps to draw
    result, fatal = _run_traced(args, [st] + ([tracer] if tracer else []) + ([steps] if steps else []))
    killed = {}
    if fatal is not None:
        pid, sig = _report_death(out, fatal, st, tracer)
        killed[pid] = sig
    out.heading("System calls and signals (as strace -f shows them)")
    out.line(st.text().rstrip("\n") or "(none)")
    print_summary(out, result, tracer, show_all=args.all, killed=killed)
    _print_tlbs(out, result.machine)
    if steps is not None:
        cli_views.draw(args, steps, out)
    if fatal is not None:
        print(f"vmsim: {fatal}", file=sys.stderr)
        return 128 + fatal.exception.signo
    return 0


def _print_tlbs(out, machine):
    """The CPUs' TLB geometry, and per CPU what went through it (Machine.tlb_stats)."""
    k = machine.k
    out.heading("TLBs")
    if k.tlb is None:
        out.line("not modelled: every access walks the page tables (--tlb PRESET or host)")
        return
    out.line(k.tlb.geometry.text() + f"; PCID {'on' if k.pcid else 'off'}, PTI {'on' if k.pti else 'off'}")
    for s in machine.tlb_stats():
        hits = sum(s["hits"].values())
        out.line(f"CPU {s['cpu']}: {hits} hits, {s['misses']} misses, {s['walks']} walks, "
                 f"{s['flush_one']} pages + {s['flush_all_local']} full flushes, "
                 f"{s['ipi_sent']} IPIs sent, {s['ipi_received']} received, "
                 f"{s['asid_switch']} ASID switches")


def cmd_trace(args, out):
    """Run the scenario under the function-graph tracer; strace's lines appear as
    ``/* ... */`` comments between the graphs. Exit status as ``vmsim run``."""
    from vmsim.strace import Strace, format_record
    from vmsim.trace import function_graph
    tracer = function_graph(None, faults_only=not args.all, max_events=args.max,
                            funcs=args.graph_funcs, pid=args.pid, show_exec=args.exec)

    def on_record(rec, proc):
        tracer.comment(format_record(rec), rec.pid, proc.task.cpu if proc is not None else None)
    st = Strace(max_records=args.max, pid=args.pid, on_record=on_record)
    result, fatal = _run_traced(args, [st, tracer])
    if fatal is not None:
        pid, sig = _report_death(out, fatal, st, tracer)
        out.heading("The whole trace")
    out.line(tracer.text().rstrip("\n"))
    shown = tracer.shown_faults()
    if args.pid is not None:
        shown = [f for f in shown if f.pid == args.pid]
    nexec = tracer.exec_faults(args.pid)
    note = f"# {len(shown)} page faults traced"
    if nexec and not args.exec:
        note += f" ({nexec} more taken by execve itself, writing argv: not shown, --exec shows them)"
    out.line(note)
    if fatal is not None:
        print(f"vmsim: {fatal}", file=sys.stderr)
        return 128 + fatal.exception.signo
    return 0


def cmd_walk(args, out):
    from vmsim.walk import parse_address, render_layout, vtop, check_address, PAGING_MODES
    from vmsim.arch.x86.pgtable_types import paging_mode
    try:
        addr = parse_address(args.address)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.pid is not None and args.scenario is None:
        raise UsageError("--pid needs --scenario FILE")
    if args.scenario is None:
        modes = [args.mode] if args.mode else list(PAGING_MODES)
        problems = {m: check_address(addr, PAGING_MODES[m]) for m in modes}
        if all(problems.values()):
            if args.mode:
                raise UsageError(f"{args.mode} paging: {addr:#x} is {problems[args.mode]}")
            raise UsageError(f"{addr:#x} fits no paging mode: wider than 32 bits, and "
                             f"non-canonical for 48- and 57-bit addresses (bits 63..47, "
                             f"resp. 63..56, must all equal bit 47, resp. 56)")
        for i, m in enumerate(modes):
            if i:
                out.line("")
            if problems[m]:
                out.line(f"{m} paging: {addr:#x} is {problems[m]}")
                continue
            out.line(render_layout(addr, m))
        return 0
    # The scenario's machine fixes the mode: an address it cannot hold is a usage error,
    # found before the scenario runs.
    mname = paging_mode(args.levels).name
    if args.mode and args.mode != mname:
        raise UsageError(f"--mode {args.mode}: the scenario's machine uses {mname} paging"
                         f" (choose the machine's with --levels 4 or 5)")
    problem = check_address(addr, PAGING_MODES[mname])
    if problem:
        raise UsageError(f"{mname} paging: {addr:#x} is {problem}")
    from vmsim.scenario import run_scenario
    result = run_scenario(args.scenario, **_machine_kw(args))
    machine = result.machine
    if paging_mode(machine.k.paging_levels).name != mname:
        mname = paging_mode(machine.k.paging_levels).name
        problem = check_address(addr, PAGING_MODES[mname])
        if problem:
            raise UsageError(f"the scenario's machine uses {mname} paging: {addr:#x} is {problem}")
    pid = args.pid
    if pid is None:
        live = sorted(machine.processes)
        if len(live) != 1:
            raise UsageError(f"--pid N needed: the scenario has processes "
                             f"{', '.join(map(str, live)) or '(none)'}")
        pid = live[0]
    out.line(render_layout(addr, mname))
    out.line("")
    try:
        out.line(vtop(machine, pid, addr))
    except LookupError as e:
        raise UsageError(str(e)) from None
    return 0


def cmd_demo(args, out):
    from vmsim.demo import run_demo
    run_demo(out, traces=not args.no_trace)
    return 0


def cmd_seedmap(args, out):
    from vmsim import seedmap
    if args.markdown:
        out.line(seedmap.render_markdown())
        return 0
    if args.section is not None and args.section not in seedmap.sections() and \
            args.section not in {s.rstrip("abcdefgh") for s in seedmap.sections()}:
        raise UsageError(f"--section {args.section}: sections are "
                         f"{', '.join(seedmap.sections())} (or just the number)")
    entries = seedmap.select(args.section, args.missing)
    what = "not modelled yet" if args.missing else "seed map"
    title = f"{what}: {len(entries)} of {len(seedmap.SEED_MAP)} entries"
    if args.section:
        title += f" (section {args.section})"
    # One block per entry, wrapped to fit a 100-column terminal (or a narrower one).
    import shutil
    width = min(100, shutil.get_terminal_size((100, 24)).columns) if out.console else 100
    out.line(title)
    out.line("")
    out.line(seedmap.render_blocks(entries, max(width, 60)))
    return 0


def cmd_conform(args, out):
    """`vmsim conform ...`: the conformance harness (vmsim.conform.cli)."""
    from vmsim.conform.cli import main as conform_main
    return conform_main(args.rest)


def _vmsim_version() -> str:
    from vmsim import __version__
    return __version__


class _Version(argparse._VersionAction):
    """--version, looked up only when asked: importlib.metadata costs ~30 ms of every
    command's start (vmsim replay's, issue 13)."""

    def __call__(self, parser, namespace, values, option_string=None):
        self.version = f"vmsim {_vmsim_version()}"
        super().__call__(parser, namespace, values, option_string)


def build_parser():
    from vmsim import cli_views
    p = _Parser(prog="vmsim", description="vmsim: an executable model of Linux 6.18 x86-64 "
                "memory management.")
    p.add_argument("--version", action=_Version)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def machine_opts(sp):
        sp.add_argument("--memory", default="1G", help="RAM of the scenario's machine (default 1G)")
        sp.add_argument("--cpus", type=int, default=2, help="CPUs (default 2)")
        sp.add_argument("--levels", type=int, choices=(4, 5), default=4,
                        help="paging levels (4, or 5 for LA57)")
        sp.add_argument("--tlb", default=None, metavar="GEOMETRY",
                        help="model the CPUs' TLBs: golden-cove, skylake, zen3, zen4 or host "
                        "(this machine's CPUID); default: not modelled, every access walks")
        sp.add_argument("--no-pcid", dest="pcid", action="store_false",
                        help="a CPU without PCID (every CR3 write flushes the TLB)")
        sp.add_argument("--pti", action="store_true", help="page table isolation on")
        sp.add_argument("--traceback", action="store_true",
                        help="also print the Python traceback of a scenario error")

    sp = sub.add_parser("run", help="run a scenario and summarise it",
                        description="Run SCENARIO.py (see vmsim.scenario: top-level code with a "
                        "'machine' global, and/or main(machine)), then print faults per process "
                        "and per path, RSS and vmstat deltas.")
    sp.add_argument("scenario", metavar="SCENARIO.py")
    sp.add_argument("--no-paths", dest="paths", action="store_false",
                    help="do not count fault paths (runs faster: no profile hook)")
    sp.add_argument("--all", action="store_true",
                    help="every vmstat counter that changed (per-zone, NUMA, derived values)")
    sp.add_argument("--max", type=int, default=10000, metavar="N",
                    help="stop collecting system calls after N lines (default 10000)")
    machine_opts(sp)
    cli_views.add_options(sp, plot=True)
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("trace", help="run a scenario with the function-graph tracer",
                        description="Run SCENARIO.py under a function-graph tracer (ftrace's "
                        "function_graph): each page fault's kernel calls, every page-table "
                        "entry write decoded, the system calls as comments.")
    sp.add_argument("scenario", metavar="SCENARIO.py")
    sp.add_argument("--all", action="store_true", help="trace every model call, not only faults")
    sp.add_argument("--func", dest="graph_funcs", action="append", metavar="NAME",
                    help="set_graph_function: only the graphs of NAME (repeatable)")
    sp.add_argument("--pid", type=int, help="only this process (set_ftrace_pid)")
    sp.add_argument("--exec", action="store_true",
                    help="also the faults execve takes for itself (writing argv)")
    sp.add_argument("--max", "--max-events", dest="max", type=int, default=5000, metavar="N",
                    help="stop recording after N lines (default 5000)")
    machine_opts(sp)
    cli_views.add_options(sp)
    sp.set_defaults(func=cmd_trace)

    from vmsim.arch.x86.pgtable_types import PAGING_MODES
    sp = sub.add_parser("walk", help="decompose an address / walk a process's page tables")
    sp.add_argument("address", metavar="ADDR", help="hex, 0x optional (as crash: 7ffff7ff6000)")
    sp.add_argument("--mode", choices=list(PAGING_MODES), help="one paging mode (default: all)")
    sp.add_argument("--scenario", metavar="FILE", help="run FILE, then walk in a process's mm")
    sp.add_argument("--pid", type=int, help="the process to walk (with --scenario)")
    machine_opts(sp)
    cli_views.add_options(sp)
    sp.set_defaults(func=cmd_walk)

    sp = sub.add_parser("demo", help="a tour of the anonymous and shmem fault paths")
    sp.add_argument("--no-trace", action="store_true", help="skip the function-graph traces")
    sp.set_defaults(func=cmd_demo)

    sp = sub.add_parser("conform", help="run scenarios on this kernel and on vmsim, compare",
                        add_help=False)
    sp.add_argument("rest", nargs=argparse.REMAINDER)
    sp.set_defaults(func=cmd_conform)

    from vmsim.explore.cli import add_parser as add_explore      # issue 14: vmsim explore
    add_explore(sub, machine_opts)

    sp = sub.add_parser("seedmap", help="the seed notes -> Linux 6.18 -> vmsim table")
    sp.add_argument("--section", help="one section: 0..6, or 0a, 2b, ...")
    sp.add_argument("--missing", action="store_true", help="only steps not modelled yet")
    sp.add_argument("--markdown", action="store_true", help="print docs/seedmap.md")
    sp.set_defaults(func=cmd_seedmap)

    from vmsim.replay.cli import add_parsers as _replay_parsers   # replay, convert, sweep
    _replay_parsers(sub)
    return p


def main(argv=None) -> int:
    """Entry point of the ``vmsim`` console script; returns the exit status."""
    from vmsim.scenario import ScenarioError
    out = Out()
    args_list = sys.argv[1:] if argv is None else list(argv)
    if args_list[:1] == ["conform"]:
        # The harness has its own options (--record, --show-diff): hand them all over.
        from vmsim.conform.cli import main as conform_main
        return conform_main(args_list[1:])
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return EXIT_USAGE
        if args.command in ("run", "trace") or getattr(args, "scenario", None):
            _not_a_toml_scenario(args.scenario)
        if getattr(args, "max", 1) <= 0:
            raise UsageError("--max must be positive")
        if getattr(args, "cpus", 1) <= 0:
            raise UsageError("--cpus must be positive")
        from vmsim import cli_views
        if cli_views.wanted(args):
            return cli_views.dispatch(args, out)
        if (getattr(args, "scenario", None) and args.command != "explore") or \
                args.command == "demo":      # numba's first compile (explore shows its own)
            from vmsim import progress
            with progress.status(f"running {getattr(args, 'scenario', None) or 'the demo'}") as bar:
                out.before_output = bar.stop
                return args.func(args, out)
        return args.func(args, out)
    except UsageError as e:
        print(f"vmsim: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ScenarioError as e:
        print(f"vmsim: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        print("vmsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except SystemExit as e:          # --help, --version
        return e.code if isinstance(e.code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
