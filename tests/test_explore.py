"""vmsim explore without a browser: the per-step page-table changes of run --json
--tables, the page's data and HTML, the CLI and --serve. (tests/test_explore_browser.py
drives the page in headless Chromium: pytest -m browser.)"""
import argparse
import json
import os
import re
import threading
import urllib.request

import pytest
from entrypoint import vmsim as run_vmsim, one_line_error

import vmsim
from vmsim import PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS, MAP_SHARED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = 4096
RW = 0x2


def _args(scenario):
    return argparse.Namespace(scenario=scenario, paths=True, max=10000, memory="1G", cpus=2,
                              levels=4, traceback=False)


@pytest.fixture(scope="module")
def fork_cow_doc():
    """examples/fork_cow.py as `vmsim run --json --tables --graphs` makes it (in-process)."""
    from vmsim.cli_views import record_run
    doc, fatal = record_run(_args(os.path.join(ROOT, "examples", "fork_cow.py")), True, True)
    doc.pop("_recorder")
    assert fatal is None
    return json.loads(json.dumps(doc))          # as a reader gets it


def _replay(doc, upto=None):
    """{(machine, pid): {(level, va): change}} after the steps (all, or up to ``upto``)."""
    state = {}
    for s in doc["steps"][:None if upto is None else upto + 1]:
        for c in s["tables"]:
            m = state.setdefault((s["machine"], c["pid"]), {})
            if c["new"]:
                m[(c["level"], c["va"])] = c
            else:
                m.pop((c["level"], c["va"]), None)
    return state


def _leaves(state, pid, lo, hi):
    return {c["va"]: c for (lv, va), c in state.get((0, pid), {}).items()
            if lv == "pte" and lo <= va < hi}


def test_replayed_changes_equal_a_walk_of_the_tables(machine):
    """The per-step diffs, replayed, give every entry a hardware walk (vmsim walk's
    walk_entries, an independent reader of the tables) finds, at every level."""
    from vmsim.views import StepRecorder
    from vmsim.walk import walk_entries
    with StepRecorder(tables=True) as rec:
        p = machine.spawn()
        a = p.mmap(0, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        p.touch(a, 8 * PAGE, write=True)
        s = p.mmap(0, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS)
        p.touch(s, 4 * PAGE, write=True)
        c = p.fork()
        c.touch(a, 2 * PAGE, write=True)
        p.read(a + 7 * PAGE, 1)
        p.munmap(a + 4 * PAGE, 2 * PAGE)
        p.mprotect(a, PAGE, PROT_READ)
        c.exit(0)
    doc = json.loads(json.dumps({"steps": rec.steps}))
    state = _replay(doc)
    k = machine.k
    for proc in (p,):
        mine = state[(0, proc.pid)]
        for vma in proc.task.mm.mm_mt:
            for va in range(vma.vm_start, vma.vm_end, PAGE):
                steps, phys = walk_entries(k, proc.task.mm, va)
                for lvl, ephys, e in steps:
                    e &= (1 << 64) - 1
                    base = va & ~((1 << lvl.shift) - 1)
                    got = mine.get((lvl.kname, base))
                    assert (got["new"] if got else 0) == e, (hex(va), lvl.kname)
                    if got:
                        assert got["table"] * 4096 + got["index"] * 8 == ephys
    # the reaped child left nothing behind, and every recorded entry is still there
    assert (0, c.pid) not in state or not state[(0, c.pid)]
    mine = state[(0, p.pid)]
    for (lv, va), ch in mine.items():
        steps, _ = walk_entries(k, p.task.mm, va)
        assert any(l.kname == lv and (e & (1 << 64) - 1) == ch["new"] for l, _, e in steps)


def test_fork_write_protects_and_cow_copies(fork_cow_doc):
    """What fork and the writes after it do to the PTEs (mm/memory.c copy_present_pte:
    both sides write-protected, same frames; wp_page_copy: a new frame, writable)."""
    doc = fork_cow_doc
    steps = doc["steps"]
    names = [s["call"]["name"] for s in steps]
    fork = names.index("fork")
    parent = steps[fork]["pid"]
    child = steps[fork]["call"]["ret"]["pid"]
    a = steps[names.index("mmap")]["call"]["ret"]
    before, after = _replay(doc, fork - 1), _replay(doc, fork)
    p0 = _leaves(before, parent, a, a + 16 * PAGE)
    p1 = _leaves(after, parent, a, a + 16 * PAGE)
    c1 = _leaves(after, child, a, a + 16 * PAGE)
    assert len(p0) == len(p1) == len(c1) == 16
    for va in p0:
        assert p0[va]["new"] & RW and not p1[va]["new"] & RW and not c1[va]["new"] & RW
        assert p1[va]["page"]["pfn"] == c1[va]["page"]["pfn"] == p0[va]["page"]["pfn"]
        assert p1[va]["page"]["kind"] == "anon" and p1[va]["page"]["mapcount"] == 2
    # the fork step's changes: the parent's 16 write-protected PTEs among them
    changed = {c["va"] for c in steps[fork]["tables"] if c["pid"] == parent and c["level"] == "pte"}
    assert set(p0) <= changed
    # the parent writes the first half: 8 new frames, writable; the child keeps the old
    w = fork + 1 + names[fork + 1:].index("touch")
    assert steps[w]["pid"] == parent
    p2 = _leaves(_replay(doc, w), parent, a, a + 16 * PAGE)
    c2 = _leaves(_replay(doc, w), child, a, a + 16 * PAGE)
    for i, va in enumerate(sorted(p2)):
        if i < 8:
            assert p2[va]["new"] & RW and p2[va]["page"]["pfn"] != c2[va]["page"]["pfn"]
            assert c2[va]["page"]["mapcount"] == 1       # re-sent: the child's page is alone now
        else:
            assert not p2[va]["new"] & RW and p2[va]["page"]["pfn"] == c2[va]["page"]["pfn"]
    assert steps[w]["faults"]["count"] == 8
    assert all("wp_page_copy" in f["paths"] for f in steps[w]["faults"]["records"])
    assert steps[w]["vmstat"].get("pgfault") == 8
    # PGFAULT counts every fault handle_mm_fault saw, execve's own (writing argv) too,
    # which the rusage and faults.count leave out
    for s in steps:
        assert s["vmstat"].get("pgfault", 0) == s["faults"]["count"] + s["faults"]["exec"]
    assert steps[0]["faults"]["exec"] >= 1


def test_page_data_and_html(fork_cow_doc, tmp_path):
    from vmsim import explore
    path = tmp_path / "cow.html"
    data = explore.write_page(fork_cow_doc, str(path))
    text = path.read_text()
    # self-contained: no resource from anywhere (links to the kernel's source are <a>s)
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", text)
    assert "default-src 'none'" in text
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S)
    assert json.loads(m.group(1)) == json.loads(json.dumps(data))
    # copies are marked as such where the frame changed under a present PTE
    steps = data["steps"]
    w = [s for s in steps if s["name"] == "touch"][1]
    copies = [c for c in w["ch"] if c["lv"] == "pte" and c["cp"] is not None]
    assert len(copies) == 8 and all(c["cp"] == w["n"] for c in copies)
    # each kernel function of the graphs is located in 6.18.2 (or is one the index lacks)
    g = w["graphs"][0]
    fns = {ln[1] for ln in g["lines"] if ln[1]}
    for name in ("exc_page_fault", "handle_mm_fault", "do_wp_page", "wp_page_copy"):
        assert name in fns and name in data["funcs"]
        assert data["funcs"][name][1].startswith("https://elixir.bootlin.com/linux/v6.18.2/source/")
    assert data["seeds"]["handle_mm_fault"][0][0] == "1a:1.4.3"
    # the error code decoded as the trace does it
    assert g["error_code"] == "0x7 [PROT|WRITE|USER]"


def _kernel_src():
    for cand in (os.environ.get("VMSIM_LINUX_SRC", ""), os.path.join(ROOT, "..", "shared", "linux-6.18.2"),
                 "/work/shared/linux-6.18.2"):
        if cand and os.path.isdir(os.path.join(cand, "mm")):
            return cand
    return None


def test_kernel_index_points_at_definitions():
    """Each location in kernel_index.json is a line of Linux 6.18.2 naming the function."""
    src = _kernel_src()
    if src is None:
        pytest.skip("Linux 6.18.2 source not found (shared/linux-6.18.2 beside the repository)")
    with open(os.path.join(ROOT, "vmsim", "explore", "kernel_index.json")) as f:
        index = json.load(f)["functions"]
    assert len(index) > 400
    for name, loc in index.items():
        path, line = loc.rsplit(":", 1)
        with open(os.path.join(src, path), errors="replace") as f:
            text = f.read().split("\n")[int(line) - 1]
        assert re.search(r"\b%s\b" % re.escape(name), text), (name, loc, text)
    assert index["do_anonymous_page"].startswith("mm/memory.c:")
    assert index["exc_page_fault"].startswith("arch/x86/mm/fault.c:")


def test_sampling_merges_left_out_steps(machine):
    """A long run keeps at most max_steps; each shown step carries the changes of those
    left out before it, so the state replayed at a shown step is the true one."""
    from vmsim.views import StepRecorder
    from vmsim import explore
    with StepRecorder(tables=True) as rec:
        p = machine.spawn()
        a = p.mmap(0, 150 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        for i in range(150):
            p.write(a + i * PAGE, b"x")
        p.munmap(a, 100 * PAGE)
    doc = {"command": "run", "steps": json.loads(json.dumps(rec.steps)),
           "machines": [{"paging_levels": 4, "memory": 1 << 30, "cpus": 2, "kernel": "6.18"}]}
    data = explore.page_data(doc, max_steps=30)
    assert len(data["steps"]) <= 31 and data["note"] and "merged" in data["note"]
    assert sum(s["merged"] for s in data["steps"]) + len(data["steps"]) == len(doc["steps"])
    final = {}
    for s in data["steps"]:
        for c in s["ch"]:
            if c["e"] == "0x0":
                final.pop(c["k"], None)
            else:
                final[c["k"]] = c["e"]
    truth = {f"{lv}:{va:x}": f"{c['new']:#x}" for (_, lv, va), c in
             (((m, lv, va), c) for (m, pid), d in _replay(doc).items() for (lv, va), c in d.items())}
    assert final == truth
    assert sum(1 for k in final if k.startswith("pte:")) == 150 - 100 + 1     # and the stack page


def test_cli_explore_writes_the_page_and_checks_its_arguments(tmp_path, fork_cow_doc, capsys):
    src = tmp_path / "doc.json"
    src.write_text(json.dumps(fork_cow_doc))
    out = tmp_path / "page.html"
    r = run_vmsim("explore", src, "-o", out, timeout=300)
    assert r.returncode == 0, r.stderr
    assert out.exists() and f"explore: {out}" in r.stdout
    plain = dict(fork_cow_doc)
    plain["steps"] = [{k: v for k, v in s.items() if k != "tables"} for s in plain["steps"]]
    src.write_text(json.dumps(plain))
    for argv, status, msg in (([src, "-o", out], 2, "--tables --graphs"),
                              ([tmp_path / "missing.py"], 2, "no such file"),
                              ([src, "--port", "8080"], 2, "--port goes with --serve")):
        assert _main(capsys, "explore", *argv) == (status, msg)


def test_run_tables_and_graphs_go_with_json(capsys):
    from vmsim.cli import main
    ex = os.path.join(ROOT, "examples", "fork_cow.py")
    for argv, msg in ((["run", "--tables", ex], "--tables goes with --json"),
                      (["run", "--graphs", ex], "--graphs goes with --json"),
                      (["run", "--json", "--graphs", "--no-paths", ex], "--graphs needs the fault paths")):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, err


def _main(capsys, *argv):
    """vmsim.cli.main in-process: (exit status, the message of its one-line error)."""
    from vmsim.cli import main
    capsys.readouterr()
    status = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    for want in ("--tables --graphs", "no such file", "--port goes with --serve"):
        if want in err[0]:
            return status, want
    return status, err[0]


def test_serve_binds_loopback_only(tmp_path):
    from vmsim import explore
    page = tmp_path / "p.html"
    page.write_text("<html>hello</html>")
    got = {}
    ready = threading.Event()

    def on_ready(url, httpd):
        got["url"], got["httpd"] = url, httpd
        ready.set()
    t = threading.Thread(target=explore.serve, args=(str(page), 0), kwargs={"ready": on_ready},
                         daemon=True)
    t.start()
    assert ready.wait(10)
    try:
        assert got["httpd"].server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(got["url"], timeout=10) as r:
            assert r.read() == b"<html>hello</html>"
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(got["url"] + "etc/passwd", timeout=10)
    finally:
        got["httpd"].shutdown()
        t.join(10)


def test_what_leaves_map(machine):
    """page records name what a leaf maps: a read of fresh private anonymous memory maps
    the zero page (do_anonymous_page), a write an anon folio, MAP_SHARED|MAP_ANONYMOUS
    a shmem page, a file mapping the file's page-cache page."""
    from vmsim.views import StepRecorder
    from vmsim import O_RDWR, O_CREAT
    with StepRecorder(tables=True) as rec:
        p = machine.spawn()
        a = p.mmap(0, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        p.read(a, 1)
        p.write(a + PAGE, b"x")
        s = p.mmap(0, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS)
        p.write(s, b"y")
        fd = p.open("/tmp/explore-test", O_RDWR | O_CREAT)
        p.ftruncate(fd, PAGE)
        f = p.mmap(0, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        p.write(f, b"z")
    state = _replay(json.loads(json.dumps({"steps": rec.steps})))[(0, p.pid)]
    kinds = {va: state[("pte", va)]["page"]["kind"] for va in (a, a + PAGE, s, f)}
    assert kinds == {a: "zero", a + PAGE: "anon", s: "shmem", f: "file"}
    assert state[("pte", a)]["page"]["pfn"] == machine.k.zero_pfn
    assert not state[("pte", a)]["new"] & RW and state[("pte", a + PAGE)]["new"] & RW
    assert state[("pte", f)]["page"]["file"].startswith("inode ")


def test_a_huge_pmd_leaf_and_its_mapcount(machine):
    """A MAP_HUGETLB page is a PMD leaf (PSE) mapping an order-9 folio; fork shares it
    write-protected (copy_hugetlb_page_range), so its mapcount (the folio's PMD
    mappings, kept in page[1]) goes to 2 and the leaf is sent again."""
    from vmsim.views import StepRecorder
    from vmsim import MAP_HUGETLB
    machine.write_file("/proc/sys/vm/nr_hugepages", "2")
    with StepRecorder(tables=True) as rec:
        p = machine.spawn()
        a = p.mmap(0, 2 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB)
        p.write(a, b"x")
        c = p.fork()
    doc = json.loads(json.dumps({"steps": rec.steps}))
    before = _replay(doc, len(doc["steps"]) - 2)[(0, p.pid)][("pmd", a)]
    after = _replay(doc)
    assert before["new"] & 0x80 and before["new"] & RW      # PSE, writable
    assert before["page"]["order"] == 9 and before["page"]["mapcount"] == 1
    for pid in (p.pid, c.pid):
        leaf = after[(0, pid)][("pmd", a)]
        assert leaf["page"]["pfn"] == before["page"]["pfn"] and leaf["page"]["mapcount"] == 2
        assert not leaf["new"] & RW
        assert not any(lv == "pte" and a <= va < a + (2 << 20) for lv, va in after[(0, pid)])
