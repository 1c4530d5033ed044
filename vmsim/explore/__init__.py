"""``vmsim explore``: one self-contained HTML page to step through a scenario (issue 14).

The page is built from the run's JSON document (``vmsim run --json --tables --graphs``,
docs/json.md): :func:`page_data` turns it into what the page shows (entries decoded by
vmsim.trace.decode_entry, strace lines by vmsim.strace, kernel functions located in
Linux 6.18.2 by kernel_index.json and in the seed notes by vmsim.seedmap_data), and
:func:`render` inlines that data, page.js and page.css into one HTML file: no network,
works from file://. The script only lays the data out and replays the page-table
changes step by step; nothing of the model runs in it.

Plain HTML, CSS and JavaScript with inline SVG for the charts, and no library: the
page needs a tree, a table and a few polylines, which a library would not make
shorter, and the file stays readable and free of third-party licences.
"""
import html
import json
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_URL = "https://elixir.bootlin.com/linux/v6.18.2/source/"
MAX_STEPS = 3000          # steps shown one by one; past that, runs of steps are merged
MAX_GRAPHS = 400          # faults whose function graph the page carries
CHART_POINTS = 600        # points per chart series
_U64 = (1 << 64) - 1


# --- the data the page shows -------------------------------------------------------------
def _kernel_index():
    with open(os.path.join(HERE, "kernel_index.json")) as f:
        return json.load(f)["functions"]


def _seed_lines():
    """{function name: [[key, seed line], ...]} from the seed map (docs/seedmap.md)."""
    from vmsim.seedmap_data import SEED_MAP
    out = {}
    for e in SEED_MAP:
        if e.get("vmsim"):
            name = e["vmsim"].rsplit(".", 1)[1]
            out.setdefault(name, []).append([e["key"], " ".join(e["seed_line"].split())])
    return out


def _hex(v):
    return f"{v:#x}"


def _call_text(step):
    """An access (or spawn) as a call: ``touch(addr=0x..., length=65536, write=True)``."""
    call = step["call"]
    parts = []
    for k, v in call["args"].items():
        if isinstance(v, bool) or v is None:
            parts.append(f"{k}={v}")
        elif isinstance(v, int):
            parts.append(f"{k}={v:#x}" if k in ("addr", "address", "start") or v >= 4096 else f"{k}={v}")
        elif isinstance(v, dict) and "bytes" in v:
            parts.append(f"{k}=<{v['bytes']} bytes>")
        else:
            parts.append(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}")
    ret = call["ret"]
    if call.get("errno"):
        r = f" = -1 {call.get('errno_name') or call['errno']}"
    elif isinstance(ret, dict):
        r = " = " + ", ".join(f"{k} {v}" for k, v in ret.items())
    elif isinstance(ret, int) and not isinstance(ret, bool):
        r = f" = {ret:#x}" if ret >= 4096 else f" = {ret}"
    else:
        r = ""
    return f"{call['name']}({', '.join(parts)}){r}"


def _strace_lines(step):
    from vmsim.strace import Record, format_record
    out = []
    for r in step.get("syscalls") or []:
        rec = Record(r["pid"], r["kind"], r["name"], tuple(r["args"]), r["ret"], r["errno"])
        try:
            out.append(f"[pid {r['pid']}] " + format_record(rec))
        except Exception:          # a record this vmsim cannot format: show it raw
            out.append(f"[pid {r['pid']}] {r['name']}{tuple(r['args'])} = {r['ret']}")
    return out


_GRAPH_LINE = re.compile(r"^(.*?\|\s*)(\w+)(\(.*)$")


def _graph(f, funcs):
    """A fault for the page: header, and its lines split as [prefix, function, rest]."""
    from vmsim.trace import decode_error_code
    lines = []
    for ln in f["lines"]:
        m = _GRAPH_LINE.match(ln)
        if m:
            funcs.add(m.group(2))
            lines.append([m.group(1), m.group(2), m.group(3)])
        else:
            lines.append([ln, None, ""])
    return {"pid": f["pid"], "address": _hex(f["address"]), "kind": f["kind"],
            "error_code": decode_error_code(f["error_code"]) if f["kind"] == "fault" else _hex(f["error_code"]),
            "paths": f["paths"], "signal": f["signal"], "lines": lines,
            "truncated": f["truncated"] or not f["lines"]}


def _what(level, change, levels_below):
    """What an entry maps, in words."""
    from vmsim.arch.x86.pgtable_types import _PAGE_PRESENT, _PAGE_PROTNONE
    e = change["new"]
    pg = change["page"]
    if not e:
        return "none"
    if pg is not None and pg["kind"] == "table":
        return f"{levels_below} table at pfn {pg['pfn']:#x}"
    if pg is None:
        if not e & (_PAGE_PRESENT | _PAGE_PROTNONE):
            from vmsim.trace import decode_entry
            d = decode_entry(e, level)
            return "swap-format entry: " + d[d.index("[") + 1:-1] if "[" in d else "not present"
        return "not present"
    size = {"pte": "4 KiB", "pmd": "2 MiB", "pud": "1 GiB"}.get(level, "")
    kinds = {"anon": "anon folio", "zero": "the zero page", "shmem": "shmem page",
             "file": "file page", "pfn": "a pfn without struct page"}
    s = kinds.get(pg["kind"], pg["kind"])
    if level != "pte":
        s = f"huge page ({size}): {s}"
    elif pg.get("order"):
        s += f" (order {pg['order']})"
    if pg.get("file"):
        s += f" of {pg['file']}"
    s += f", pfn {pg['pfn']:#x}"
    if pg["kind"] not in ("zero", "pfn"):
        s += f", mapcount {pg['mapcount']}, refcount {pg['refcount']}"
        if pg["kind"] == "anon":
            s += ", exclusive" if pg.get("exclusive") else ", shared"
    if not e & _PAGE_PRESENT:
        s += " (PROT_NONE)"
    return s


def _charts(steps, machines):
    """Small multiples over the steps: RSS and page-table pages per process, faults by
    path and the busiest vmstat counters (cumulative)."""
    from vmsim.cli import VMSTAT_SHOWN
    n = len(steps)
    stride = max(1, -(-n // CHART_POINTS))
    xs = list(range(0, n, stride))
    if xs and xs[-1] != n - 1:
        xs.append(n - 1)
    multi = len(machines) > 1

    def label(m, pid):
        return f"m{m + 1} pid {pid}" if multi else f"pid {pid}"
    keys = []
    for s in steps:
        for q in s["processes"]:
            k = (s["machine"], q["pid"])
            if k not in keys:
                keys.append(k)
    rss = {k: [] for k in keys}
    pt = {k: [] for k in keys}
    last = {}
    full_rss, full_pt = {k: [0] * n for k in keys}, {k: [0] * n for k in keys}
    for i, s in enumerate(steps):
        for q in s["processes"]:
            last[(s["machine"], q["pid"])] = q
        for k in keys:
            q = last.get(k)
            full_rss[k][i] = q["rss"] * 4 if q else 0
            full_pt[k][i] = q["pgtables"] if q else 0
    for k in keys:
        rss[k] = [full_rss[k][i] for i in xs]
        pt[k] = [full_pt[k][i] for i in xs]
    paths = []
    for s in steps:
        for p in (s.get("faults") or {}).get("by_path", {}):
            if p not in paths and p not in ("minflt", "majflt"):
                paths.append(p)
    faults = {}
    for p in paths:
        tot, ys = 0, []
        for s in steps:
            tot += (s.get("faults") or {}).get("by_path", {}).get(p, 0)
            ys.append(tot)
        faults[p] = [ys[i] for i in xs]
    activity = {}
    for s in steps:
        for c, v in (s.get("vmstat") or {}).items():
            if VMSTAT_SHOWN.fullmatch(c):
                activity[c] = activity.get(c, 0) + abs(v)
    busiest = sorted(activity, key=lambda c: (-activity[c], c))[:6]
    vm = {}
    for c in sorted(busiest):
        tot, ys = 0, []
        for s in steps:
            tot += (s.get("vmstat") or {}).get(c, 0)
            ys.append(tot)
        vm[c] = [ys[i] for i in xs]
    return {"x": xs, "charts": [
        {"title": "RSS (kB)", "series": {label(*k): rss[k] for k in keys}},
        {"title": "page-table pages", "series": {label(*k): pt[k] for k in keys}},
        {"title": "faults by kind and path (cumulative)", "series": faults},
        {"title": "vmstat changes (cumulative, busiest counters)", "series": vm},
    ]}


def _merge(group):
    """Steps left out of the timeline: their changes go to the step shown after them."""
    last = dict(group[-1])
    tables = {}
    for s in group:
        for c in s.get("tables") or []:
            key = (c["pid"], c["level"], c["va"])
            if key in tables:
                c = dict(c, old=tables[key]["old"])
            tables[key] = c
    last["tables"] = [c for c in tables.values() if c["old"] != c["new"] or c["page"]]
    vmstat, by_path, count, records, syscalls, nexec = {}, {}, 0, [], [], 0
    for s in group:
        for k, v in (s.get("vmstat") or {}).items():
            vmstat[k] = vmstat.get(k, 0) + v
        f = s.get("faults") or {}
        count += f.get("count", 0)
        nexec += f.get("exec", 0)
        for k, v in f.get("by_path", {}).items():
            by_path[k] = by_path.get(k, 0) + v
        records += f.get("records", [])
        syscalls += s.get("syscalls") or []
    last["vmstat"] = {k: v for k, v in vmstat.items() if v}
    last["faults"] = {"count": count, "by_path": by_path, "records": records, "exec": nexec}
    last["syscalls"] = syscalls
    last["_merged"] = len(group) - 1
    last["_first"] = group[0]["step"]
    return last


def _sample(steps, max_steps):
    """Keep at most ``max_steps``: every step with a signal or an error, and evenly
    spread others; each kept step carries the changes of the ones left out before it."""
    if len(steps) <= max_steps:
        return steps, None
    must = {i for i, s in enumerate(steps) if s.get("signal") or s["call"].get("errno")
            or s["kind"] == "spawn" or s["call"]["name"] in ("fork", "exit", "execve")}
    budget = max(max_steps - len(must), 1)
    every = -(-len(steps) // budget)
    keep = sorted(must | set(range(0, len(steps), every)) | {len(steps) - 1})
    out, prev = [], -1
    for i in keep:
        group = steps[prev + 1:i + 1]
        out.append(_merge(group) if len(group) > 1 else group[0])
        prev = i
    note = (f"{len(steps)} steps: {len(out)} shown; the {len(steps) - len(out)} left out are "
            f"merged into the step shown after them (their page-table changes, faults and "
            f"counters appear there; the timeline says how many each one holds)")
    return out, note


def page_data(doc, max_steps=MAX_STEPS, max_graphs=MAX_GRAPHS) -> dict:
    """The page's data from a ``vmsim run --json --tables --graphs`` document."""
    from vmsim.arch.x86.pgtable_types import PAGING_MODES, paging_mode, _PAGE_PRESENT, _PAGE_RW
    from vmsim.walk import MEMORY_MAP
    from vmsim.trace import decode_entry
    if doc.get("command") != "run":
        raise ValueError("not a 'vmsim run --json' document")
    steps_all = doc.get("steps") or []
    if steps_all and "tables" not in steps_all[0]:
        raise ValueError("the document has no page-table changes: make it with "
                         "'vmsim run --json --tables --graphs'")
    machines = doc.get("machines") or []
    levels = machines[0]["paging_levels"] if machines else 4
    mode = paging_mode(levels)
    names = [lvl.kname for lvl in mode.levels]
    below = {names[i]: names[i + 1].upper() for i in range(len(names) - 1)}
    shifts = {lvl.kname: lvl.shift for lvl in mode.levels}
    parent = {names[i + 1]: names[i] for i in range(len(names) - 1)}
    steps, note = _sample(steps_all, max_steps)
    index = _kernel_index()
    funcs = set()
    vmasets, vmaset_ids = [], {}

    def vmaset(vmas):
        key = json.dumps(vmas, sort_keys=True)
        if key not in vmaset_ids:
            vmaset_ids[key] = len(vmasets)
            vmasets.append([{"start": _hex(v["start"]), "end": _hex(v["end"]), "perms": v["perms"],
                             "s": v["start"] >> 12, "e": v["end"] >> 12,
                             "pgoff": _hex(v["pgoff"] << 12), "name": v["name"],
                             "kb": (v["end"] - v["start"]) >> 10, "flags": " ".join(v["vm_flags"])}
                            for v in vmas])
        return vmaset_ids[key]
    proc_vmas = {}                     # (machine, pid) -> vmaset index, as of the step
    copied = {}                        # (pid, level, va) -> step of the copy (COW)
    reused = {}                        # (pid, level, va) -> step it was made writable in place
    pages = {}                         # (pid, level, va) -> the page it mapped, as last sent
    graphs_left = max_graphs
    graphs_total = graphs_kept = 0
    out_steps = []
    for s in steps:
        mi = s["machine"]
        proc_vmas[(mi, s["pid"])] = vmaset(s["vmas"])
        ret = s["call"].get("ret")
        if s["call"]["name"] == "fork" and isinstance(ret, dict) and "pid" in ret:
            proc_vmas[(mi, ret["pid"])] = proc_vmas[(mi, s["pid"])]
        changes = []
        for c in s.get("tables") or []:
            lv = c["level"]
            va = c["va"]
            key = f"{lv}:{va:x}"
            par = f"{parent[lv]}:{va & ~((1 << shifts[parent[lv]]) - 1) & _U64:x}" if lv in parent else None
            ck = (mi, c["pid"], lv, va)
            old, new = c["old"], c["new"]
            leafish = c["page"] is not None and c["page"]["kind"] != "table"
            if new == 0:
                copied.pop(ck, None)
                reused.pop(ck, None)
            elif leafish and old & _PAGE_PRESENT and new & _PAGE_PRESENT:
                if (old ^ new) & 0x000ffffffffff000:
                    copied[ck] = s["step"]
                    reused.pop(ck, None)
                elif new & _PAGE_RW and not old & _PAGE_RW:
                    reused[ck] = s["step"]
            was = pages.pop(ck, None)
            if c["page"] is not None:
                pages[ck] = c["page"]
            pc = None                  # the entry is the same: its page's counts changed
            if old == new and was is not None and c["page"] is not None:
                pc = ", ".join(f"{f} {was.get(f)} -> {c['page'].get(f)}"
                               for f in ("mapcount", "refcount", "exclusive")
                               if was.get(f) != c["page"].get(f)) or "page flags"
            changes.append({"pid": c["pid"], "k": key, "pc": pc, "p": par, "lv": lv, "va": _hex(va), "pn": va >> 12,
                            "t": _hex(c["table"]), "i": c["index"],
                            "ea": _hex(c["table"] * 4096 + c["index"] * 8),
                            "o": _hex(old), "e": _hex(new),
                            "d": decode_entry(new, lv) if new else "0x0",
                            "od": decode_entry(old, lv) if old else "0x0",
                            "w": _what(lv, c, below.get(lv, "")), "pg": c["page"],
                            "pr": bool(new & _PAGE_PRESENT), "rw": bool(new & _PAGE_RW),
                            "leaf": leafish, "cp": copied.get(ck), "ru": reused.get(ck)})
        f = s.get("faults") or {}
        graphs = []
        for r in f.get("records", []):
            graphs_total += 1
            if graphs_left > 0 or r["signal"]:
                graphs_left -= 1
                graphs_kept += 1
                graphs.append(_graph(r, funcs))
        sig = s.get("signal")
        out_steps.append({
            "n": s["step"], "first": s.get("_first", s["step"]), "merged": s.get("_merged", 0),
            "m": mi, "pid": s["pid"], "kind": s["kind"], "call": _call_text(s),
            "name": s["call"]["name"], "sys": _strace_lines(s),
            "signal": (f"{sig['name']} si_code={sig['si_code']} si_addr={sig['si_addr']:#x}"
                       if sig else None),
            "faults": {"count": f.get("count", 0), "by_path": f.get("by_path", {}),
                       "exec": f.get("exec", 0),
                       "records": len(f.get("records", []))},
            "graphs": graphs, "ch": changes, "vmstat": s.get("vmstat") or {},
            "procs": s["processes"],
            "pvmas": {str(pid): v for (m2, pid), v in proc_vmas.items() if m2 == mi
                      and any(q["pid"] == pid for q in s["processes"])},
        })
    mode_fields = []
    if mode.va_bits > 32:
        mode_fields.append({"name": "sign", "intel": "sign-extend", "hi": 63, "lo": mode.va_bits})
    for lvl in mode.levels:
        mode_fields.append({"name": lvl.kname, "intel": lvl.intel,
                            "hi": lvl.shift + lvl.bits - 1, "lo": lvl.shift})
    mode_fields.append({"name": "offset", "intel": "Offset", "hi": mode.levels[-1].shift - 1, "lo": 0})
    seeds = _seed_lines()
    graph_note = None
    if graphs_kept < graphs_total:
        graph_note = (f"function graphs of {graphs_kept} of {graphs_total} faults are in the page "
                      f"(the first {max_graphs} and every one ending in a signal); the others "
                      f"show their paths only")
    return {
        "scenario": doc.get("scenario"), "version": doc.get("vmsim_version"),
        "error": doc.get("error"), "killed": doc.get("killed"),
        "mode": {"name": mode.name, "va_bits": mode.va_bits,
                 "levels": [{"k": lvl.kname, "intel": lvl.intel, "shift": lvl.shift,
                             "bits": lvl.bits, "large": lvl.large} for lvl in mode.levels],
                 "folded": list(mode.folded), "fields": mode_fields},
        "regions": [[_hex(a), _hex(b), t] for a, b, t in MEMORY_MAP.get(mode.name, ())],
        "machines": [{k: m.get(k) for k in ("memory", "cpus", "paging_levels", "kernel")}
                     for m in machines],
        "vmstat_final": [m.get("vmstat_deltas") for m in machines],
        "steps_total": len(steps_all), "steps_truncated": bool(doc.get("steps_truncated")),
        "note": note, "graph_note": graph_note,
        "steps": out_steps, "vmasets": vmasets,
        "funcs": {n: [index[n], SOURCE_URL + index[n].replace(":", "#L")] for n in sorted(funcs)
                  if n in index},
        "seeds": {n: seeds[n] for n in sorted(funcs) if n in seeds},
        "charts": _charts(steps_all, machines),
    }


# --- the page ------------------------------------------------------------------------------
def _read(name):
    with open(os.path.join(HERE, name)) as f:
        return f.read()


def _script_json(data) -> str:
    """JSON safe inside <script>: no "</" (closing tag), no U+2028/2029."""
    s = json.dumps(data, separators=(",", ":"))
    return s.replace("</", "<\\/").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render(data) -> str:
    """The HTML page: data, style and script inlined."""
    title = f"vmsim explore: {data.get('scenario') or 'run'}"
    return (_read("page.html")
            .replace("{{TITLE}}", html.escape(title))
            .replace("{{CSS}}", _read("page.css"))
            .replace("{{DATA}}", _script_json(data))
            .replace("{{JS}}", _read("page.js").replace("</script", "<\\/script")))


def write_page(doc, path, **kw) -> dict:
    data = page_data(doc, **kw)
    with open(path, "w") as f:
        f.write(render(data))
    return data


def serve(path, port=0, out=None, ready=None):
    """Serve the page at http://127.0.0.1:PORT/ (loopback only) until interrupted."""
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?")[0] not in ("/", "/index.html", "/" + os.path.basename(path)):
                self.send_error(404)
                return
            with open(path, "rb") as f:
                body = f.read()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass
    httpd = http.server.HTTPServer(("127.0.0.1", port), Handler)
    url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    if ready is not None:
        ready(url, httpd)
    try:
        httpd.serve_forever()
    finally:
        httpd.server_close()
    return url
