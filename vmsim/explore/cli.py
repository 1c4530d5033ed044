"""``vmsim explore SCENARIO.py [-o OUT.html] [--serve [--port N]]``: run the scenario as
``vmsim run --json --tables --graphs`` does and write the explorer page (vmsim.explore).
A ``.json`` argument is such a document, made before."""
import json
import os
import sys


def add_parser(sub, machine_opts):
    sp = sub.add_parser("explore", help="write an HTML page to step through a scenario",
                        description="Run SCENARIO.py and write one self-contained HTML page "
                        "(no network, works from file://) to step through it: the timeline of "
                        "syscalls, faults and signals; for each step the VMAs, the page-table "
                        "tree with the step's changes, the processes side by side, the faults' "
                        "function graphs linked to Linux 6.18.2, counters, and an address walk. "
                        "SCENARIO may also be the document of "
                        "'vmsim run --json --tables --graphs'.")
    sp.add_argument("scenario", metavar="SCENARIO.py")
    sp.add_argument("-o", "--output", metavar="OUT.html",
                    help="the page to write (default: the scenario's name with .html, here)")
    sp.add_argument("--serve", action="store_true",
                    help="also serve the page on http://127.0.0.1:PORT/ until Ctrl-C")
    sp.add_argument("--port", type=int, default=0, help="the port for --serve (default: a free one)")
    sp.add_argument("--max-steps", type=int, default=None, metavar="N",
                    help="show at most N steps one by one (default 3000); the others are merged "
                         "into the step after them")
    sp.add_argument("--max", type=int, default=10000, metavar="N",
                    help="stop collecting system calls after N lines (default 10000)")
    machine_opts(sp)
    sp.set_defaults(func=cmd_explore, paths=True)
    return sp


def cmd_explore(args, out):
    from vmsim.cli import UsageError
    from vmsim import explore
    if args.port < 0 or args.port > 65535:
        raise UsageError(f"--port {args.port}: not a port number (0..65535)")
    if args.port and not args.serve:
        raise UsageError("--port goes with --serve")
    if args.max_steps is not None and args.max_steps <= 0:
        raise UsageError("--max-steps must be positive")
    src = args.scenario
    base = os.path.splitext(os.path.basename(src))[0] or "explore"
    path = args.output or base + ".html"
    status = 0
    if src.lower().endswith(".json"):
        try:
            with open(src) as f:
                doc = json.load(f)
        except OSError as e:
            raise UsageError(f"{src}: {e.strerror}") from None
        except ValueError as e:
            raise UsageError(f"{src}: not JSON: {e}") from None
    else:
        if not os.path.isfile(src):
            raise UsageError(f"{src}: no such file")
        from vmsim.cli_views import record_run
        from vmsim.scenario import ScenarioError
        try:
            doc, fatal = record_run(args, tables=True, graphs=True, status=f"exploring {src}")
            doc.pop("_recorder", None)
        except ScenarioError as e:
            if getattr(e, "document", None) is None:
                raise
            doc = e.document          # the steps up to the error: the page shows them
            print(f"vmsim: {e}", file=sys.stderr)
            status = e.status
    kw = {} if args.max_steps is None else {"max_steps": args.max_steps}
    try:
        data = explore.write_page(doc, path, **kw)
    except ValueError as e:
        raise UsageError(f"{src}: {e}") from None
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror}") from None
    size = os.path.getsize(path)
    out.line(f"explore: {path} ({len(data['steps'])} steps, {size >> 10} kB)"
             + (f"; {data['note']}" if data["note"] else ""))
    if data.get("killed"):
        k = data["killed"]
        out.line(f"  (pid {k['pid']} was killed by {k['name']}: the page shows the steps up to it)")
    if args.serve:
        def ready(url, httpd):
            out.line(f"serving {path} on {url} (127.0.0.1 only; Ctrl-C stops)")
            sys.stdout.flush()
        try:
            explore.serve(path, args.port, ready=ready)
        except OSError as e:
            raise UsageError(f"--port {args.port}: {e.strerror}") from None
        except KeyboardInterrupt:
            pass
    return status
