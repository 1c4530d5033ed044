"""The replay report: text (rich on a terminal), JSON, and matplotlib plots."""
import json

from vmsim.replay.infer import Area, format_areas

FAULT_KINDS = ("anonymous", "zero-page", "cow", "wp-reuse", "file", "thp", "thp-zero-page",
               "hugetlb", "swap", "other", "signal")


TLB_EXTRA = (("dirty_rewalks", "re-walks to set a Dirty bit"),
             ("perm_rewalks", "re-walks for rights the cached entry lacked"),
             ("walk_faults", "walks that ended in a page fault"))
FLUSH_LABELS = (("flush_one", "pages flushed one by one (INVLPG)"),
                ("flush_all_local", "full flushes of a CPU's TLB (flush_tlb_local)"),
                ("flush_global", "global flushes (__flush_tlb_all)"),
                ("flush_on_switch", "context switches that flushed"),
                ("noflush_switch", "context switches that kept the TLB (PCID)"),
                ("asid_switch", "ASID changes on a switch"),
                ("asid_new", "new ASIDs (choose_new_asid)"),
                ("user_pcid_flush", "deferred user-PCID flushes (PTI)"),
                ("ipi_sent", "shootdowns: flush IPIs sent"),
                ("ipi_received", "flush IPIs received"),
                ("lazy_skipped", "lazy-TLB CPUs skipped"),
                ("wrong_cpu_trimmed", "CPUs dropped from mm_cpumask"))


def _n(v):
    return f"{v:,}" if isinstance(v, int) else str(v)


def print_report(out, r):
    """Print one replay's result dict on a vmsim.cli.Out."""
    out.heading(f"replay of {r['trace']} ({r['format']}, {r['label']})")
    for note in r["notes"]:
        out.line(f"note: {note}")
    if r["inferred_areas"]:
        areas = [Area(**a) for a in r["inferred_areas"]]
        text = format_areas(areas)
        if r.get("faults_by_area") is not None:
            text = "\n".join(f"{ln}, {n} faults" for ln, n in zip(text.split("\n"), r["faults_by_area"]))
        b = r.get("brk")
        if b:
            text += (f"\nheap: brk() from start_brk {b['start_brk']:#x} to {b['brk']:#x} in "
                     f"{b['calls']:,} calls, as the trace reached higher heap addresses")
            if b["failed_at"] is not None:
                text += (f"; brk() failed at {b['failed_at']:#x} (a mapping in the way): the "
                         "rest of the heap area was mapped anonymous")
        out.block("VMAs inferred from the trace (an ELF's text and data: private mappings "
                  "of a file in the page cache; the heap by brk, the stack growing down; "
                  "the rest anonymous, private)", text)
    a = r["accesses"]
    # A native trace's bad rows count as a text trace's bad lines (--skip-bad).
    what = "rows" if r.get("format") in ("npz", "parquet") else "lines"
    if not a["total"]:
        if r["bad_lines"]:
            out.line(f"note: no accesses replayed: the trace's {r['bad_lines']:,} malformed "
                     f"{what} were all skipped (--skip-bad)")
        else:
            out.line("note: the trace holds no accesses")
    rows = [[k, _n(a[k])] for k in ("read", "write", "exec", "total")]
    if a.get("modify"):
        rows.insert(2, ["(of the writes, read-modify-write: lackey M)", _n(a["modify"])])
    rows.append(["bytes", _n(a["bytes"])])
    rows.append(["page-straddling (two translations)", _n(a["page_straddling"])])
    if r["bad_lines"]:
        rows.append([f"malformed {what} skipped", _n(r["bad_lines"])])
    out.table("accesses", ["kind", "count"], rows, right=(1,))
    f = r["faults"]
    rows = [["minflt (rusage)", _n(f["minflt"])], ["majflt (rusage)", _n(f["majflt"])]]
    if f["by_kind"] is not None:
        for k in FAULT_KINDS:
            if f["by_kind"].get(k):
                rows.append([k, _n(f["by_kind"][k])])
    if f.get("stack_growth"):
        rows.append(["(of these, grew the stack: expand_stack)", _n(f["stack_growth"])])
    out.table("faults", ["kind", "count"], rows, right=(1,))
    if r["signals"]:
        out.table("signals (the replay went on after the access)", ["signal", "count"],
                  [[k, _n(v)] for k, v in r["signals"].items()], right=(1,))
    t = r.get("tasks")
    if t and (t["threads"] > 1 or t["context_switches"]):
        out.table("tasks", ["", "count"],
                  [["processes", _n(t["processes"])], ["tasks (threads included)", _n(t["threads"])],
                   ["context switches", _n(t["context_switches"])],
                   ["migrations (to the CPU of the cpu column or a switch)", _n(t["migrations"])]],
                  right=(1,))
    rows = []
    t = r.get("tlb")
    if t:
        rows += [[k, _n(v)] for k, v in t.items() if k.startswith("hits ") and v]
        rows.append(["misses in L1 (all page sizes)", _n(t.get("l1_misses", 0))])
        rows.append(["misses in L2 too (all page sizes: a page walk each)", _n(t.get("misses", 0))])
        rows += _misses_per_size(t)
    if r.get("walks") is not None:
        rows.append(["page walks" + (" (misses and re-walks)" if t else
                                     " (no TLB model (--tlb): one per translation)"), _n(r["walks"])])
    if t:
        rows.append(["walk memory references (paging-structure entries read)",
                     _n(t.get("walk_reads", 0))])
        rows += [[f"paging-structure cache hits {k[9:]}", _n(v)] for k, v in t.items()
                 if k.startswith("psc_hits ")]
        for k, label in TLB_EXTRA:
            if t.get(k):
                rows.append([label, _n(t[k])])
    if rows:
        out.table("translation", ["", "count"], rows, right=(1,))
    fl = r.get("tlb_flushes")
    if fl:
        rows = [[label, _n(fl.get(k, 0))] for k, label in FLUSH_LABELS
                if fl.get(k) or k in ("ipi_sent", "flush_one", "flush_all_local")]
        out.table("TLB flushes and shootdowns (the kernel's, arch/x86/mm/tlb.c)", ["", "count"],
                  rows, right=(1,))
    out.table("memory at the end", ["", "value"],
              [["RSS", f"{r['rss_kb']:,} kB"], ["peak RSS", f"{r['maxrss_kb']:,} kB"],
               ["page-table pages", _n(r["pgtables"])]], right=(1,))
    s = r.get("series") or {}
    if len(s.get("accesses", ())) > 2:
        cols = ["accesses", "RSS kB", "page-table pages", "faults"]
        keys = ["accesses", "rss_kb", "pgtables", "faults"]
        if s.get("tlb_misses"):
            cols.append("TLB misses")
            keys.append("tlb_misses")
        out.table("over the run (--plot draws every sample)", cols,
                  [[_n(int(s[k][i])) for k in keys] for i in _samples(len(s["accesses"]))],
                  right=tuple(range(len(cols))))
    vd = r["vmstat_delta"]
    if vd:
        out.table("vmstat deltas", ["counter", "delta"],
                  [[k, f"{v:+,}"] for k, v in sorted(vd.items())], right=(1,))
    s = r["seconds"]
    # (a native trace with events is not scanned: its areas are its mmap events)
    scan = f"; trace scan {s['scan']:.2f} s" if s.get("scan") is not None else ""
    out.line(f"replayed {a['total']:,} accesses in {s['replay']:.2f} s "
             f"({r['accesses_per_s'] / 1e6:.2f} M accesses/s{scan})")


def _misses_per_size(t):
    """Rows of misses per level and page size, from the walks completed per page size
    (a miss's page size is known once its walk finds the entry, as the CPU's
    DTLB_*_MISSES.WALK_COMPLETED_4K / _2M_4M / _1G count): an L1 miss of a size is an
    L2 hit of that size or a completed walk; an L2 miss of a size, a completed walk."""
    rows = []
    if not any(k.startswith("walks_completed ") for k in t):
        return rows
    for size in ("4K", "2M", "1G"):
        walks = int(t.get(f"walks_completed {size}", 0))
        l2 = sum(int(v) for k, v in t.items()
                 if k.startswith("hits L2 ") and k.endswith(f" {size}"))
        if walks or l2:
            rows.append([f"misses in L1, {size} pages", _n(l2 + walks)])
            rows.append([f"misses in L2 too, {size} pages (walks completed)", _n(walks)])
    return rows


def _samples(n, rows=10):
    """About ``rows`` indices spread over a series of ``n`` samples, the last included."""
    step = max((n - 1) / (rows - 1), 1)
    return sorted({min(n - 1, round(i * step)) for i in range(rows)})


def compare_rows(results):
    """Rows of one side-by-side table: a metric per row, a configuration per column."""
    def get(r, path):
        v = r
        for p in path:
            v = v.get(p) if isinstance(v, dict) else None
            if v is None:
                return "-"
        return v
    metrics = [("accesses", ("accesses", "total")), ("minflt", ("faults", "minflt")),
               ("majflt", ("faults", "majflt"))]
    kinds = set()
    for r in results:
        kinds |= set((r["faults"].get("by_kind") or {}).keys())
    metrics += [(f"faults: {k}", ("faults", "by_kind", k)) for k in FAULT_KINDS if k in kinds]
    metrics += [("context switches", ("tasks", "context_switches"))]
    metrics += [("RSS kB", ("rss_kb",)), ("peak RSS kB", ("maxrss_kb",)),
                ("page-table pages", ("pgtables",)), ("walks", ("walks",))]
    tlb_keys = []
    flush = dict(FLUSH_LABELS)
    for r in results:
        for k in (r.get("tlb") or {}):
            if k not in tlb_keys and k not in flush:      # the flushes: rows of their own
                tlb_keys.append(k)
    metrics += [(f"tlb {k}", ("tlb", k)) for k in tlb_keys]
    metrics += [(label, ("tlb_flushes", k)) for k, label in FLUSH_LABELS
                if any((r.get("tlb_flushes") or {}).get(k) for r in results)]
    metrics += [("M accesses/s", ("accesses_per_s",))]
    rows = []
    for name, path in metrics:
        row = [name]
        for r in results:
            v = get(r, path)
            if name == "M accesses/s" and v != "-":
                v = f"{v / 1e6:.2f}"
            row.append(_n(v))
        rows.append(row)
    return rows


def print_compare(out, results, title="comparison"):
    cols = ["metric"] + [r["label"] for r in results]
    out.table(title, cols, compare_rows(results), right=tuple(range(1, len(cols))))
    notes = sorted({n for r in results for n in r["notes"]})
    for n in notes:
        out.line(f"note: {n}")


def json_doc(command, results):
    """The --json document: docs/json.md's common header, then one result (replay) or
    ``results`` (replay --compare, sweep)."""
    from vmsim import __version__
    head = {"schema_version": 1, "command": command, "vmsim_version": __version__}
    if isinstance(results, dict):
        return {**head, **results}
    return {**head, "results": results}


def write_json(path, doc):
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, default=int)
        f.write("\n")


def plot(results, path):
    """RSS, page-table pages, faults (and TLB misses when known) over the run, one line
    per configuration; a PNG at ``path``."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("--plot needs matplotlib (pip install 'vmsim[plot]')") from None
    panels = [("rss_kb", "RSS (kB)"), ("pgtables", "page-table pages"), ("faults", "faults")]
    if any(r["series"].get("tlb_misses") for r in results):
        panels.append(("tlb_misses", "TLB misses"))
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.6 * len(panels)), sharex=True)
    for ax, (key, label) in zip(axes, panels):
        for r in results:
            s = r["series"]
            if s.get(key):
                ax.plot(s["accesses"], s[key], label=r["label"], drawstyle="steps-post")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].set_title(f"replay of {results[0]['trace'].rsplit('/', 1)[-1]}")
    axes[-1].set_xlabel("accesses replayed")
    if len(results) > 1:
        axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
