"""``vmsim conform [--record] [--show-diff] [--recorded] PATHS...``

Runs each scenario on this machine's kernel (the C executor) and on vmsim, prints
per scenario and observation point what Linux reported, what vmsim reported and
whether they agree, and exits 1 on any disagreement (2 for a malformed scenario or
bad usage). --recorded compares with scenarios/recorded/<name>.json instead of a
live run (the default when the live side cannot run here); --record re-records
those files from a live run.
"""
import argparse
import glob
import json
import os
import sys
import traceback

from vmsim.conform import compare as C
from vmsim.conform import linux, vmsim_side
from vmsim.conform.scenario import ScenarioFormatError, load

EXIT_OK, EXIT_DIFF, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise ScenarioFormatError(f"vmsim conform: {message} (see 'vmsim conform --help')")


def scenario_files(paths):
    """Expand directories to their *.toml files (sorted); raise for a missing path."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            out += sorted(glob.glob(os.path.join(p, "*.toml")))
        elif os.path.exists(p):
            out.append(p)
        else:
            raise ScenarioFormatError(f"{p}: no such file or directory")
    return out


def recorded_path(scn_path, name):
    return os.path.join(os.path.dirname(os.path.abspath(scn_path)), "recorded", f"{name}.json")


def record(scn, recs, more_runs=()):
    """The recording written by --record (``more_runs``: the further runs of a
    scenario with [varies])."""
    rec = {
        "scenario": scn.name,
        "scenario_sha256": scn.text_hash,
        "kernel_release": linux.uname_r(),
        "snapshot": linux.snapshot(),
        "executor_sha256": linux.executor_hash(),
        "privileged": bool(next((r for r in recs if r.get("t") == "hdr"), {}).get("priv")),
        "cpu_pku": linux.host_has_pku(),
        "raw": recs,
    }
    if more_runs:
        rec["more_runs"] = list(more_runs)
    return rec


def write_recording(path, rec):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("{\n")
        items = [(k, v) for k, v in rec.items() if k not in ("raw", "more_runs")]
        for k, v in items:
            f.write(f"  {json.dumps(k)}: {json.dumps(v, sort_keys=True)},\n")
        if rec.get("more_runs"):
            f.write('  "more_runs": [\n')
            f.write(",\n".join("    [\n" + ",\n".join("      " + json.dumps(r) for r in run)
                               + "\n    ]" for run in rec["more_runs"]))
            f.write("\n  ],\n")
        f.write('  "raw": [\n')
        f.write(",\n".join("    " + json.dumps(r) for r in rec["raw"]))
        f.write("\n  ]\n}\n")


def load_recording(path, scn):
    """(raw records, notes) from a recording; raise ScenarioFormatError if unusable."""
    try:
        with open(path) as f:
            rec = json.load(f)
    except FileNotFoundError:
        raise ScenarioFormatError(f"{scn.path}: no recorded Linux results ({path}); "
                                  "run 'vmsim conform --record' on a Linux machine") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ScenarioFormatError(f"{path}: unreadable recording: {e}") from None
    if rec.get("scenario_sha256") != scn.text_hash:
        raise ScenarioFormatError(f"{path}: recorded from a different version of {scn.path}; "
                                  "re-record it with 'vmsim conform --record'")
    want = scn.settings.get("cpu_pku")
    if want is not None and "cpu_pku" in rec and rec["cpu_pku"] != (want == "yes"):
        raise ScenarioFormatError(f"{path}: recorded on a CPU {'with' if rec['cpu_pku'] else 'without'} "
                                  f"protection keys, but {scn.path} states cpu_pku = \"{want}\"")
    return rec, [f"Linux: recorded on {rec.get('kernel_release')}"
                 f"{'' if rec.get('privileged') else ' (unprivileged)'}"]


class Result:
    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(path)
        self.rows = []
        self.notes = []
        self.error = None          # a failure that is not a disagreement
        self.status = EXIT_OK
        self.scn = None

    @property
    def differ(self):
        return sum(1 for r in self.rows if r[3] == "DIFFER")

    @property
    def agree(self):
        return sum(1 for r in self.rows if r[3] == "agree")


def run_scenario(path, mode="auto", do_record=False):
    """Run one scenario both ways; return a Result."""
    res = Result(path)
    try:
        scn = load(path)
    except ScenarioFormatError as e:
        res.error, res.status = str(e), EXIT_USAGE
        return res
    res.scn = scn
    res.name = scn.name
    lrecs = None
    if mode in ("auto", "live") or do_record:
        try:
            lrecs = linux.run(scn)
            # A scenario whose Linux result varies is run as many times as it says.
            more = [linux.run(scn) for _ in range(scn.varies["runs"] - 1)] if scn.varies else []
            lruns = [lrecs] + more
            res.notes.append(f"Linux: live on {linux.uname_r()}")
            if do_record:
                rp = recorded_path(path, scn.name)
                write_recording(rp, record(scn, lrecs, more))
                res.notes.append(f"recorded {os.path.relpath(rp)}")
        except linux.LinuxUnavailable as e:
            if mode == "live" or do_record:
                res.error, res.status = f"{path}: {e}", EXIT_DIFF
                return res
            res.notes.append(f"live run not possible ({str(e).splitlines()[0]}): using the recording")
    if lrecs is None:
        try:
            rec, notes = load_recording(recorded_path(path, scn.name), scn)
        except ScenarioFormatError as e:
            res.error, res.status = str(e), EXIT_DIFF
            return res
        lruns = C.linux_runs(rec)
        res.notes += notes
    try:
        lobs, lnotes = C.derive_runs(scn, lruns)
    except C.RawError as e:
        res.error, res.status = f"{path}: the Linux side failed: {e}", EXIT_DIFF
        return res
    res.notes += [f"Linux: {n}" for n in lnotes]
    try:
        vrecs = vmsim_side.run(scn, timeout=20)
        vobs, _ = C.derive(scn, vrecs)
    except Exception as e:                         # vmsim cannot run it: a failure
        tb = traceback.extract_tb(e.__traceback__)
        where = f" ({tb[-1].filename.split('vmsim/')[-1]}:{tb[-1].lineno})" if tb else ""
        res.error, res.status = (f"{path}: vmsim cannot run this scenario: "
                                 f"{type(e).__name__}: {e}{where}"), EXIT_DIFF
        return res
    res.rows = C.compare(lobs, vobs)
    if res.differ:
        res.status = EXIT_DIFF
    return res


def _expand(v):
    """Page-by-page tokens of a run-length string."""
    out = []
    for part in str(v).split():
        t, _, n = part.partition("*")
        out += [t] * (int(n) if n.isdigit() else 1)
    return out


def print_result(res, show_diff, out):
    w = out.write
    if res.error:
        w(f"{res.name}: ERROR: {res.error}\n")
        return
    scn = res.scn
    n = len(res.rows)
    skipped = n - res.agree - res.differ
    w(f"\n== {res.name}: {n} observations, {res.agree} agree, {res.differ} differ"
      f"{f', {skipped} skipped' if skipped else ''}\n")
    if scn.source:
        w(f"   from: {scn.source}\n")
    for note in res.notes:
        w(f"   {note}\n")
    rows = [r for r in res.rows if r[3] != "agree"] if show_diff else res.rows
    kw = max((len(r[0]) for r in rows), default=0)
    for key, lv, vv, st in rows:
        mark = {"agree": "ok", "DIFFER": "DIFFER", "skipped": "skip"}[st]
        if st == "agree":
            w(f"   {key:<{kw}}  {lv}  [{mark}]\n")
        else:
            w(f"   {key:<{kw}}  linux: {lv}  vmsim: {vv}  [{mark}]\n")
            if show_diff and st == "DIFFER" and "pagemap" in key:
                lt, vt = _expand(lv), _expand(vv)
                diffs = []
                for i in range(max(len(lt), len(vt))):
                    a = lt[i] if i < len(lt) else "?"
                    b = vt[i] if i < len(vt) else "?"
                    if a == b:
                        continue
                    if diffs and diffs[-1][1] == i - 1 and diffs[-1][2:] == [a, b]:
                        diffs[-1][1] = i
                    else:
                        diffs.append([i, i, a, b])
                for lo, hi, a, b in diffs:
                    pages = f"page {lo}" if lo == hi else f"pages {lo}-{hi}"
                    w(f"      {pages}: linux {a}  vmsim {b}\n")


def json_document(results, mode, recorded):
    """``vmsim conform --json`` (docs/json.md)."""
    from vmsim.views import document
    scns = []
    for r in results:
        scns.append({
            "name": r.name, "path": r.path, "status": r.status, "error": r.error,
            "source": r.scn.source if r.scn else None, "notes": r.notes,
            "agree": r.agree, "differ": r.differ,
            "skipped": len(r.rows) - r.agree - r.differ,
            "observations": [{"key": k, "linux": ({"min": lv.lo, "max": lv.hi}
                                                  if isinstance(lv, C.Range) else lv),
                              "vmsim": vv, "status": st.lower()}
                             for k, lv, vv, st in r.rows]})
    return document("conform", mode=mode, record=recorded, scenarios=scns, totals={
        "scenarios": len(results), "observations": sum(len(r.rows) for r in results),
        "agree": sum(r.agree for r in results), "differ": sum(r.differ for r in results),
        "failed": sum(1 for r in results if r.error)})


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = _Parser(prog="vmsim conform", description=__doc__.split("\n\n")[1])
    ap.add_argument("paths", nargs="+", metavar="PATH", help="scenario files or directories")
    ap.add_argument("--record", action="store_true",
                    help="run on this kernel and (re)write recorded/<name>.json")
    ap.add_argument("--show-diff", action="store_true",
                    help="print only disagreements, page by page for pagemap")
    ap.add_argument("--recorded", action="store_true",
                    help="compare with the recorded Linux results, not a live run")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON document (docs/json.md) instead of the text report")
    try:
        args = ap.parse_args(argv)
        files = scenario_files(args.paths)
    except ScenarioFormatError as e:
        print(str(e), file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as e:                     # --help
        return int(e.code or 0)
    if not files:
        print("vmsim conform: no scenario files (*.toml) found", file=sys.stderr)
        return EXIT_USAGE
    mode = "recorded" if args.recorded else "auto"
    results = []
    from vmsim import progress
    with progress.bar("conform", total=len(files)) as bar:
        for f in files:
            bar.update(os.path.basename(f))
            r = run_scenario(f, mode, args.record)
            if not args.json:
                print_result(r, args.show_diff, sys.stdout)
            if r.error:
                print(r.error if r.error.startswith(f) else f"{f}: {r.error}", file=sys.stderr)
            results.append(r)
            bar.advance()
    if args.json:
        print(json.dumps(json_document(results, mode, args.record), indent=1))
        return max((r.status for r in results), default=EXIT_OK)
    tot = sum(len(r.rows) for r in results)
    agree = sum(r.agree for r in results)
    differ = sum(r.differ for r in results)
    failed = [r for r in results if r.error]
    print(f"\n{len(results)} scenarios, {tot} observations compared, {agree} agree, "
          f"{differ} differ, {len(failed)} scenarios could not be compared")
    for r in results:
        if r.differ:
            print(f"  {r.name}: {r.differ} disagreement(s)")
    return max((r.status for r in results), default=EXIT_OK)


if __name__ == "__main__":
    sys.exit(main())
