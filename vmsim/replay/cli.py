"""`vmsim replay`, `vmsim convert`, `vmsim sweep` (wired into vmsim.cli).

    vmsim replay [TRACE] [--thp MODE] [--tlb PRESET] [--cpus N] [--pcid on|off]
                 [--json OUT.json] [--plot OUT.png] [--compare k=v,k=v] [--skip-bad]
    vmsim convert TRACE OUT.npz|OUT.parquet [--skip-bad]
    vmsim sweep TRACE --grid k=v1,v2 [--grid ...] [--jobs N] [--ray auto|ADDRESS] [--json OUT]

Without TRACE, replay runs the built-in sample: vmsim/replay/data/sample.lackey.xz,
``valgrind --tool=lackey --trace-mem=yes /bin/true`` captured on the reference machine
(Debian 12 /bin/true, valgrind 3.19). A malformed trace prints
``vmsim: FILE:LINE: problem`` and exits 1.
"""
import os
import sys
import time

SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "sample.lackey.xz")


def add_parsers(sub):
    def common(sp):
        sp.add_argument("--thp", choices=("always", "madvise", "never"),
                        help="/sys/kernel/mm/transparent_hugepage/enabled")
        sp.add_argument("--tlb", metavar="PRESET",
                        help="model the TLBs: host (this CPU's, from CPUID), golden-cove, "
                             "skylake, zen3 or zen4 (default: none, every access walks)")
        sp.add_argument("--cpus", type=_positive, default=1, help="CPUs of the machine (default 1)")
        sp.add_argument("--pcid", choices=("on", "off"),
                        help="the CPU has PCID (default on): a context switch keeps the TLB's "
                             "entries (the report's flush counts; with --tlb, its hits)")
        sp.add_argument("--memory", default="16G", help="RAM of the machine (default 16G)")
        sp.add_argument("--store-value", type=lambda s: int(s, 0), default=0, metavar="BYTE",
                        help="the byte each store writes (default 0: a trace records no data, "
                             "and zeros cost no host memory)")
        sp.add_argument("--skip-bad", action="store_true",
                        help="skip malformed lines of a text trace, or bad rows of a native "
                             "one (counted), instead of stopping at the first")
        sp.add_argument("--no-paths", dest="fault_paths", action="store_false",
                        help="count faults only by rusage, not by kind (no profile hook: faster)")
        sp.add_argument("--no-check", dest="checker", action="store_false", default=None,
                        help="turn the debug checker off even with VMSIM_DEBUG_VM=1")

    sp = sub.add_parser("replay", help="replay a memory trace (lackey, pinatrace, native)",
                        description="Replay a memory trace through the model and report "
                        "accesses, faults by kind, RSS and page-table pages over time, vmstat "
                        "deltas. Without TRACE: the built-in sample trace.")
    sp.add_argument("trace", nargs="?", metavar="TRACE")
    common(sp)
    sp.add_argument("--json", dest="json_out", metavar="OUT.json", help="write the result as JSON")
    sp.add_argument("--plot", dest="plot_out", metavar="OUT.png",
                    help="RSS, page-table pages, faults (and TLB misses with --tlb) over the "
                         "run (matplotlib; .png, or .pdf, .svg by the name)")
    sp.add_argument("--compare", metavar="K=V,K=V",
                    help="replay once per item (K=V, or K=V+K=V) and print one table")
    sp.set_defaults(func=cmd_replay)

    sp = sub.add_parser("convert", help="convert a text trace to the native .npz / .parquet format")
    sp.add_argument("trace", metavar="TRACE")
    sp.add_argument("output", metavar="OUT.npz|OUT.parquet")
    sp.add_argument("--skip-bad", action="store_true",
                    help="skip malformed lines or a native trace's bad rows (counted)")
    sp.set_defaults(func=cmd_convert)

    sp = sub.add_parser("sweep", help="replay a trace over a grid of configurations")
    sp.add_argument("trace", metavar="TRACE", nargs="?")
    # --grid thp=always,never tlb=host,skylake (axes after one --grid), or --grid per axis
    sp.add_argument("--grid", action="extend", nargs="+", default=[], metavar="K=V1,V2",
                    help="axes of the grid: thp, tlb, cpus, pcid, memory, ... (one or more "
                         "after --grid, or --grid per axis)")
    sp.add_argument("--jobs", type=_positive, help="local worker processes (default: CPUs)")
    sp.add_argument("--ray", metavar="auto|ADDRESS",
                    help="run the points on Ray (optional extra: pip install 'vmsim[ray]')")
    common(sp)
    sp.add_argument("--json", dest="json_out", metavar="OUT.json", help="write all results as JSON")
    sp.set_defaults(func=cmd_sweep)


def _positive(text):
    import argparse
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return n


def _base(args):
    return dict(thp=args.thp, tlb=args.tlb, cpus=args.cpus, pcid=args.pcid, memory=args.memory,
                store_value=args.store_value, skip_bad=args.skip_bad,
                fault_paths=args.fault_paths, checker=args.checker)


class _Progress:
    """A rich progress line on a terminal's stderr: phase, accesses, accesses/s."""

    def __init__(self, label):
        from vmsim import progress
        self.prog = None
        if not progress.enabled():
            return
        from rich.console import Console
        from rich.progress import (BarColumn, Progress, SpinnerColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        # The scan does not know the trace's length (a pulsing bar); the replay does.
        self.prog = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                             TextColumn("{task.completed:,.0f} accesses"),
                             TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                             TimeRemainingColumn(),
                             console=Console(file=sys.stderr), transient=True)
        self.task = self.prog.add_task(label, total=None, rate="")
        self.t0 = time.perf_counter()
        self.phase = None
        self.prog.start()

    def __call__(self, phase, n, reader):
        if self.prog is None:
            return
        if phase != self.phase:
            self.phase, self.t0 = phase, time.perf_counter()
            # a new phase: the replay's bar runs to the accesses the scan counted
            self.prog.reset(self.task, total=getattr(reader, "total", None) if phase == "replay"
                            else None, rate="")
        dt = time.perf_counter() - self.t0
        rate = f"{n / dt / 1e6:.1f} M accesses/s" if dt > 0.2 else ""
        self.prog.update(self.task, completed=n, rate=rate,
                         description={"scan": "scanning the trace", "replay": "replaying"}
                         .get(phase, phase))

    def stop(self):
        if self.prog is not None:
            self.prog.stop()
            self.prog = None


def _errors(fn):
    def wrapped(args, out):
        from vmsim.replay.readers import TraceError
        try:
            return fn(args, out)
        except TraceError as e:
            print(f"vmsim: {e}", file=sys.stderr)
            return 1
        except (ValueError, RuntimeError) as e:
            print(f"vmsim: error: {e}", file=sys.stderr)
            return 2
        except BrokenPipeError:
            raise                               # `vmsim replay ... | head`: vmsim.cli.main's
        except OSError as e:
            print(f"vmsim: {getattr(e, 'filename', None) or ''}{': ' if getattr(e, 'filename', None) else ''}"
                  f"{e.strerror or e}", file=sys.stderr)
            return 1
    return wrapped


def _check_outputs(args):
    """--json / --plot files that cannot be written fail now, not after the replay."""
    import errno
    for path in (getattr(args, "json_out", None), getattr(args, "plot_out", None)):
        if not path:
            continue
        d = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(d):
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        if os.path.isdir(path):
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if not os.access(d, os.W_OK) or os.path.exists(path) and not os.access(path, os.W_OK):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), path)
    if getattr(args, "plot_out", None):
        import importlib.util
        if importlib.util.find_spec("matplotlib") is None:
            raise RuntimeError("--plot needs matplotlib (pip install 'vmsim[plot]')")


@_errors
def cmd_replay(args, out):
    from vmsim.replay import report, sweep
    from vmsim.replay.run import Replay
    path = args.trace or SAMPLE
    base = _base(args)
    points = sweep.parse_compare(args.compare) if args.compare else [{}]
    for s in points:                      # a bad value fails before any replay
        sweep.make_config(base, s)
    _check_outputs(args)
    results = []
    for s in points:
        cfg = sweep.make_config(base, s)
        bar = _Progress(f"replay {os.path.basename(path)}")
        try:
            r = Replay(path, cfg, bar).run()
        finally:
            bar.stop()
        if s:
            r["label"] = "+".join(f"{k}={v}" for k, v in s.items())
        results.append(r)
    if len(results) == 1:
        report.print_report(out, results[0])
    else:
        report.print_compare(out, results, f"replay of {path}")
    if args.json_out:
        report.write_json(args.json_out, report.json_doc("replay", results[0] if len(results) == 1
                                                         else results))
    if args.plot_out:
        report.plot(results, args.plot_out)
    return 0


@_errors
def cmd_convert(args, out):
    from vmsim.replay import native
    bar = _Progress(f"convert {os.path.basename(args.trace)}")
    try:
        n, bad = native.convert(args.trace, args.output, skip_bad=args.skip_bad,
                                progress=lambda r: bar("converting", r.accesses, r))
    finally:
        bar.stop()
    msg = f"{args.trace} -> {args.output}: {n:,} accesses"
    if bad:
        from vmsim.replay.readers import detect_format
        what = "rows" if detect_format(args.trace) in ("npz", "parquet") else "lines"
        msg += f", {bad:,} malformed {what} skipped"
    out.line(msg)
    return 0


@_errors
def cmd_sweep(args, out):
    from vmsim.replay import report, sweep
    grid = args.grid
    if args.trace is None:
        # `vmsim sweep --grid thp=always,never trace.npz`: --grid took the trace too
        files = [g for g in grid if "=" not in g]
        if len(files) != 1:
            raise ValueError("vmsim sweep needs one TRACE (vmsim sweep TRACE --grid K=V1,V2 ...)")
        args.trace = files[0]
        grid = [g for g in grid if "=" in g]
    points = sweep.parse_grid(grid)
    _check_outputs(args)
    from vmsim.replay.readers import open_trace
    open_trace(args.trace)                # a missing or unreadable trace: before any worker
    from vmsim import progress
    with progress.bar(f"sweep of {os.path.basename(args.trace)}", total=len(points)) as bar:
        # each point as it finishes, with its replay's rate
        results = sweep.sweep(args.trace, points, _base(args), jobs=args.jobs, ray=args.ray,
                              on_done=lambda r: bar.advance(
                                  f"{r['label']}: {r['accesses_per_s'] / 1e6:.1f} M accesses/s"))
        bar.stop()
    report.print_compare(out, results, f"sweep of {args.trace} ({len(points)} points)")
    if args.json_out:
        report.write_json(args.json_out, report.json_doc("sweep", results))
    return 0
