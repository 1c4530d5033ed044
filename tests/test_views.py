"""Views: reprs and HTML tables for notebooks, --json on run/trace/walk/conform (the
schema of docs/json.md), --plot, and progress display only on a terminal. CLI checks
run the real `vmsim` entry point in a subprocess."""
import json
import os
import pty
import subprocess

import pytest
from entrypoint import vmsim as run_vmsim, vmsim_command

import vmsim
from vmsim import PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED, MAP_ANONYMOUS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = 4096


def vmsim_cli(*args, **kw):
    return run_vmsim(*args, cwd=ROOT, timeout=300, **kw)


# --- reprs ---------------------------------------------------------------------------------
def test_reprs_show_pid_state_rss_and_maps_like_ranges():
    m = vmsim.Machine(memory="1G", cpus=2)
    p = m.spawn()
    a = p.mmap(0, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    p.touch(a, 4 * PAGE, write=True)
    r = repr(p)
    # 4 anonymous pages + the argv page of the stack = 20 kB; 4 minor faults
    assert r.startswith(f"<Process pid={p.pid} running:") and "RSS 20 kB (anon 20" in r
    assert "minflt=4" in r
    assert repr(m).startswith("<Machine 1 GiB, 2 CPUs, 4-level paging, Linux 6.18")
    vma = p.mm.find_vma(a)
    assert repr(vma).startswith(f"<vm_area_struct {a:08x}-{a + 4 * PAGE:08x} rw-p 00000000 (4 pages)")
    assert "VmFlags: rd wr mr mw me ac" in repr(vma)          # as smaps prints them
    stack = p.mm.find_vma(p.mm.start_stack)
    assert " rw-p 00000000 [stack] " in repr(stack)
    c = p.fork()
    c.exit(3)
    assert repr(c) == f"<Process pid={c.pid} zombie minflt=0 majflt=0>"


def test_html_views_of_maps_and_a_walk():
    m = vmsim.Machine(memory="1G")
    p = m.spawn()
    a = p.mmap(0, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS)
    p.write(a, b"x")
    h = p._repr_html_()
    assert h.startswith("<table>") and f"{a:08x}-{a + 2 * PAGE:08x}" in h and "rw-s" in h
    assert "[stack]" in h and "<th>VmFlags</th>" in h
    assert "<td><code>1</code></td>" in m._repr_html_()
    w = p.walk(a + 5)
    assert [x["level"] for x in w.levels] == ["pgd", "pud", "pmd", "pte"]
    assert [x["index"] for x in w.levels] == [(a >> s) & 511 for s in (39, 30, 21, 12)]
    assert w.phys is not None and w.phys & 0xFFF == 5
    pte = w.levels[-1]["entry"]
    assert pte >> 12 & ((1 << 40) - 1) == w.phys >> 12 and pte & 1   # present, our frame
    wh = w._repr_html_()
    assert "PTE (PT)" in wh and f"{pte:016x}" in wh
    assert "not mapped" in repr(p.walk(0x10000))


def test_reprs_stay_out_of_the_model_paths():
    """The model never formats a repr: the VMA tree and faults work with __repr__ broken."""
    from vmsim.mm.mm_types import vm_area_struct
    saved = vm_area_struct.__repr__
    vm_area_struct.__repr__ = lambda self: 1 / 0
    try:
        m = vmsim.Machine(memory="1G")
        p = m.spawn()
        a = p.mmap(0, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        p.touch(a, 8 * PAGE, write=True)
        p.fork().touch(a, 8 * PAGE, write=True)
        p.munmap(a + PAGE, PAGE)
    finally:
        vm_area_struct.__repr__ = saved


# --- --json -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fork_cow_run(tmp_path_factory):
    """One `vmsim run --json --plot` of examples/fork_cow.py (both outputs at once)."""
    png = tmp_path_factory.mktemp("plot") / "cow.png"
    plot = ["--plot", str(png)] if _have_matplotlib() else []
    r = vmsim_cli("run", "--json", *plot, "examples/fork_cow.py")
    return r, png


def _have_matplotlib():
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


def test_run_json_steps_carry_syscalls_vmas_and_counters(fork_cow_run):
    r, _ = fork_cow_run
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)                  # the scenario's prints went to stderr
    assert "smaps_rollup" not in r.stdout and "Rss:" in r.stderr
    assert doc["schema_version"] == 1 and doc["command"] == "run"
    steps = doc["steps"]
    names = [s["call"]["name"] for s in steps]
    assert names[:4] == ["spawn", "mmap", "touch", "fork"]
    mmap = steps[1]["call"]
    assert set(mmap) >= {"name", "args", "ret", "errno", "pid"}
    assert mmap["args"]["length"] == 16 * PAGE and mmap["errno"] is None
    assert any(v["start"] == mmap["ret"] and v["perms"] == "rw-p" for v in steps[1]["vmas"])
    # the parent's first write pass: 16 anonymous faults (Linux: fork_cow_* recordings)
    assert steps[2]["faults"]["by_path"]["do_anonymous_page"] == 16
    p1 = next(q for q in steps[2]["processes"] if q["pid"] == 1)
    assert p1["minflt"] == 16 and p1["rss_anon"] == 17 and p1["pgtables"] >= 4
    # after the parent's half write: 8 COW copies
    assert steps[5]["call"]["name"] == "touch" and steps[5]["faults"]["by_path"]["wp_page_copy"] == 8
    assert doc["machines"][0]["processes"][0]["pid"] == 1


def test_run_json_records_errno_signals_and_a_fatal_end(tmp_path):
    f = tmp_path / "s.py"
    f.write_text("p = machine.spawn()\n"
                 "try:\n    p.munmap(0x1001, 4096)\nexcept OSError:\n    pass\n"
                 "a = p.mmap(0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS)\n"
                 "try:\n    p.write(a, b'x')\nexcept SignalDelivered:\n    pass\n"
                 "p.write(0x1000, b'x')\n")
    r = vmsim_cli("run", "--json", str(f))
    # the uncaught SIGSEGV kills the scenario (exit 128 + 11, as a shell reports it);
    # the document still has every step
    assert r.returncode == 139 and "SignalDelivered" in r.stderr
    doc = json.loads(r.stdout)
    assert doc["killed"] == {"pid": 1, "signo": 11, "name": "SIGSEGV"}
    mu = doc["steps"][1]["call"]
    assert (mu["name"], mu["ret"], mu["errno"], mu["errno_name"]) == ("munmap", -1, 22, "EINVAL")
    assert doc["steps"][1]["syscalls"] == [{"pid": 1, "kind": "syscall", "name": "munmap",
                                            "args": [0x1001, 4096], "ret": -1, "errno": 22}]
    assert [x["kind"] for x in doc["steps"][3]["syscalls"]] == ["signal"]
    sig = doc["steps"][3]["signal"]
    assert (sig["name"], sig["si_code"], sig["si_addr"]) == ("SIGSEGV", 2, doc["steps"][2]["call"]["ret"])
    assert doc["error"] and doc["steps"][-1]["signal"]["si_code"] == 1    # SEGV_MAPERR


def test_run_json_after_an_exception_has_the_steps_before_it(tmp_path):
    f = tmp_path / "boom.py"
    f.write_text("p = machine.spawn()\na = p.mmap(0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS)\n"
                 "raise ValueError('boom')\n")
    r = vmsim_cli("run", "--json", str(f))
    assert r.returncode == 1 and f"{f}:3: ValueError: boom" in r.stderr
    doc = json.loads(r.stdout)
    assert doc["error"] == f"{f}:3: ValueError: boom" and doc["killed"] is None
    assert [s["call"]["name"] for s in doc["steps"]] == ["spawn", "mmap"]


def test_trace_and_walk_json(tmp_path):
    f = tmp_path / "t.py"
    f.write_text("p = machine.spawn()\np.write(p.mm.start_stack - (1 << 20), b'x')\n")
    doc = json.loads(vmsim_cli("trace", "--json", str(f)).stdout)
    assert doc["command"] == "trace"
    grow = [x for x in doc["faults"] if "expand_stack_locked" in x["paths"]]
    assert len(grow) == 1 and grow[0]["error_code"] == 6 and grow[0]["signal"] is None
    assert any("do_anonymous_page" in line for line in grow[0]["lines"])
    doc = json.loads(vmsim_cli("walk", "--json", "0x7ffff7ff6123").stdout)
    four = next(x for x in doc["modes"] if x["mode"] == "4-level")
    vals = {f["name"]: f["value"] for f in four["fields"]}
    assert (vals["pgd"], vals["pud"], vals["pmd"], vals["pte"], vals["offset"]) == \
        (0xff, 0x1ff, 0x1bf, 0x1f6, 0x123)
    f = tmp_path / "w.py"
    f.write_text("p = machine.spawn()\na = p.mmap(0x10000000, 4096, PROT_READ|PROT_WRITE,"
                 " MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED)\np.write(a, b'x')\n")
    doc = json.loads(vmsim_cli("walk", "--json", "0x10000000", "--scenario", str(f)).stdout)
    assert doc["walk"]["phys"] is not None and doc["vma"]["perms"] == "rw-p"
    assert [lv["index"] for lv in doc["walk"]["levels"]] == [0, 0, 0x80, 0]


def test_conform_json():
    r = vmsim_cli("conform", "--recorded", "--json", "scenarios/empty.toml", "scenarios/mprotect_segv.toml")
    assert r.returncode == 0
    assert r.stderr == ""                # no progress display: stderr is not a terminal
    doc = json.loads(r.stdout)
    assert doc["schema_version"] == 1 and doc["totals"]["scenarios"] == 2
    assert doc["totals"]["differ"] == 0 and doc["totals"]["agree"] == doc["totals"]["observations"]
    obs = doc["scenarios"][1]["observations"]
    assert {"key", "linux", "vmsim", "status"} == set(obs[0])
    assert any("SEGV_ACCERR" in str(o["linux"]) for o in obs)


def test_json_doc_lists_every_field():
    """docs/json.md documents each top-level key the commands emit."""
    text = open(os.path.join(ROOT, "docs", "json.md")).read()
    for key in ("schema_version", "steps", "processes", "vmas", "by_path", "errno_name",
                "signal", "faults", "modes", "walk", "observations", "totals", "pgtables"):
        assert f"`{key}`" in text, key


# --- --plot ---------------------------------------------------------------------------------
def test_plot_writes_a_png(fork_cow_run):
    pytest.importorskip("matplotlib")
    r, out = fork_cow_run
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path):
    block = tmp_path / "block"
    (block / "matplotlib").mkdir(parents=True)
    (block / "matplotlib" / "__init__.py").write_text("raise ImportError('blocked for the test')\n")
    r = vmsim_cli("run", "--plot", str(tmp_path / "x.png"), "examples/fork_cow.py",
                  env={"PYTHONPATH": str(block)})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "pip install 'vmsim[plot]'" in r.stderr


# --- progress -------------------------------------------------------------------------------
def test_progress_on_a_terminal():
    """(Off a terminal there is none: test_conform_json sees an empty stderr.)"""
    master, slave = pty.openpty()
    proc = subprocess.Popen(vmsim_command() + ["conform", "--recorded", "scenarios/empty.toml",
                             "scenarios/brk.toml"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=slave)
    os.close(slave)
    seen = b""
    try:
        while True:              # read the terminal while it runs (a full pty would block it)
            try:
                chunk = os.read(master, 65536)
            except OSError:      # EIO: the last writer closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
    assert proc.wait(timeout=120) == 0
    assert b"conform" in seen and (b"1/2" in seen or b"0/2" in seen)
