"""vmsim replay / convert / sweep as a user types them: the issue's commands, user
mistakes (a clear message and exit status, never a traceback), the report's fault kinds."""
import json
import pickle
import re

import numpy as np
import pytest

import vmsim
from vmsim.cli import main
from vmsim.replay import infer, sweep
from vmsim.replay.readers import TraceError
from vmsim.replay.run import ReplayConfig, replay, _fault_kind

# A small lackey trace: a fetch, a stack store and a load, a heap store.
LACKEY = "I  00400000,4\n S 7ffd0000,8\n L 7ffd0000,8\nI  00400004,4\n S 00601000,8\n"


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


@pytest.fixture
def trace(tmp_path):
    p = tmp_path / "t.lackey"
    p.write_text(LACKEY)
    return str(p)


def test_grid_takes_its_axes_after_one_flag(capsys, trace, tmp_path):
    """The issue's `vmsim sweep trace --grid thp=always,never tlb=host,skylake
    pcid=on,off`: every axis after one --grid (it was 'unrecognized arguments')."""
    js = tmp_path / "s.json"
    rc, out, err = run(capsys, "sweep", trace, "--grid", "thp=always,never", "store_value=0,1",
                       "--jobs", "1", "--json", str(js))
    assert rc == 0, err
    labels = [r["label"] for r in json.loads(js.read_text())["results"]]
    assert labels == ["thp=always,store_value=0", "thp=always,store_value=1",
                      "thp=never,store_value=0", "thp=never,store_value=1"]
    # --grid per axis still works, and so does the trace after the axes
    rc, out2, err = run(capsys, "sweep", "--grid", "thp=always,never", trace, "--jobs", "1")
    assert rc == 0, err
    assert "thp=always" in out2 and "thp=never" in out2


@pytest.mark.parametrize("argv,message", [
    (["--compare", "cpus=0"], "vmsim: error: cpus: 0 is out of range (1 to 8192)"),
    (["--compare", "cpus=x"], "vmsim: error: cpus: 'x' is not an integer"),
    (["--compare", "thp=sometimes"], "vmsim: error: thp: 'sometimes' is not one of always, madvise, never"),
    (["--compare", "pcid=maybe"], "vmsim: error: pcid: 'maybe' is not one of on, off"),
    (["--compare", "paging_levels=3"], "vmsim: error: paging_levels: 3 (4 or 5)"),
    (["--compare", "memory=3Q"], "vmsim: error: bad size '3Q': use bytes or a suffix k, M, G, T"),
    (["--compare", "nope=1"], "vmsim: error: unknown setting 'nope'"),
    (["--store-value", "300"], "vmsim: error: store_value: 300 is out of range (0 to 255)"),
    (["--cpus", "0"], "vmsim: error: argument --cpus: '0' is not a positive integer"),
    (["--json", "/nonexistent-dir/r.json"], "vmsim: /nonexistent-dir/r.json: No such file or directory"),
    (["--plot", "/"], "vmsim: /: Is a directory"),
])
def test_replay_mistakes_are_said_before_any_replay(capsys, trace, argv, message):
    """A bad value is a clear message and a non-zero exit, before the replay runs (cpus=0
    was a ZeroDivisionError traceback from the per-CPU lists' set-up, cpus=-1 numpy's
    'negative dimensions'; an unwritable --json failed after the whole replay)."""
    rc, out, err = run(capsys, "replay", trace, *argv)
    assert rc in (1, 2) and err.startswith(message), err
    assert out == ""


@pytest.mark.parametrize("argv,message", [
    (["--grid", "cpus=0,1"], "vmsim: error: cpus: 0 is out of range"),
    (["--grid", "thp"], "vmsim: error: bad grid axis 'thp'"),
    (["--jobs", "0", "--grid", "thp=never"], "vmsim: error: argument --jobs: '0' is not a positive integer"),
])
def test_sweep_mistakes_are_said_before_any_worker(capsys, trace, argv, message):
    rc, out, err = run(capsys, "sweep", trace, *argv)
    assert rc == 2 and err.startswith(message), err


def test_sweep_of_a_missing_trace(capsys, tmp_path):
    rc, out, err = run(capsys, "sweep", str(tmp_path / "none.npz"), "--grid", "thp=always,never")
    assert rc == 1 and err.strip() == f"vmsim: {tmp_path / 'none.npz'}: no such file"


def test_a_trace_error_crosses_to_the_sweeps_parent_process():
    """A worker's TraceError is pickled back to the parent: it unpickled with the wrong
    arguments, and the pool reported 'A process in the process pool was terminated
    abruptly' instead of the file and line."""
    e = pickle.loads(pickle.dumps(TraceError("t.lackey", 7, "bad size")))
    assert str(e) == "t.lackey:7: bad size" and (e.path, e.line, e.problem) == ("t.lackey", 7, "bad size")


class _F:
    def __init__(self, paths, error_code=6, minflt=1):
        self.paths, self.error_code, self.minflt, self.signal = set(paths), error_code, minflt, None


def test_a_thp_fault_is_one_that_mapped_a_huge_pmd():
    """create_huge_pmd() -> do_huge_pmd_anonymous_page() returning VM_FAULT_FALLBACK (a
    VMA too small for 2 MiB) then do_anonymous_page() is a 4 KiB fault: the report
    called it 'thp' (3 of them in `ls /usr/bin` with --thp always, and no
    thp_fault_alloc in vmstat)."""
    fallback = ["handle_mm_fault", "create_huge_pmd", "do_huge_pmd_anonymous_page",
                "do_anonymous_page", "do_pte_missing"]
    assert _fault_kind(_F(fallback)) == "anonymous"
    assert _fault_kind(_F(fallback, error_code=4)) == "zero-page"
    assert _fault_kind(_F(["create_huge_pmd", "do_huge_pmd_anonymous_page",
                           "__do_huge_pmd_anonymous_page", "map_anon_folio_pmd"])) == "thp"
    assert _fault_kind(_F(["create_huge_pmd", "do_huge_pmd_anonymous_page",
                           "set_huge_zero_folio"], error_code=4)) == "thp-zero-page"
    assert _fault_kind(_F(["wp_huge_pmd", "do_huge_pmd_wp_page", "do_huge_zero_wp_pmd",
                           "map_anon_folio_pmd"])) == "thp"


def _thp_trace(tmp_path, pages_at):
    from vmsim.replay import native
    from vmsim.replay.readers import Event
    p = str(tmp_path / "thp.npz")
    addrs = np.array([a for a, n in pages_at for a in range(a, a + n * 4096, 4096)], np.int64)
    ev = [Event(0, "mmap", 1, a, n * 4096, 3, vmsim.MAP_PRIVATE | vmsim.MAP_ANONYMOUS)
          for a, n in pages_at]
    native.write_trace(p, addrs, np.ones(len(addrs), np.uint8), events=ev)
    return p


def test_thp_faults_counted_as_the_kernel_counts_them(tmp_path):
    """--thp always: a 2 MiB-aligned 2 MiB area's first write is one THP fault
    (thp_fault_alloc +1); an 8-page area falls back to 4 KiB faults (anonymous)."""
    p = _thp_trace(tmp_path, [(0x40000000, 512), (0x50000000, 8)])
    r = replay(p, ReplayConfig(thp="always", checker=True))
    assert r["faults"]["by_kind"] == {"thp": 1, "anonymous": 8}
    assert r["vmstat_delta"]["thp_fault_alloc"] == r["faults"]["by_kind"]["thp"]


def test_a_big_top_region_is_not_a_stack():
    """The highest written region is the stack only within the default stack limit
    (8 MiB): a 256 MiB region of a synthetic trace was named 'stack', mapped growsdown
    from its top page, and every access more than 8 MiB below got SIGSEGV
    (acct_stack_growth: RLIMIT_STACK) at ~0.1 ms each."""
    text = np.array([0x400000 >> 12], np.int64)
    for span, name in ((8 << 20, "stack"), (256 << 20, "mmap")):
        data = (0x5000000 + np.arange(0, span, 1 << 16, dtype=np.int64)) >> 12
        data = np.append(data, (0x5000000 + span - 4096) >> 12)
        pages = np.concatenate([text, data])
        bits = np.concatenate([[4], np.full(len(data), 2)]).astype(np.uint8)
        areas = infer.infer_areas(pages, bits)
        assert [a.name for a in areas] == ["text", name], areas


def test_config_values_checked_in_the_api_too():
    with pytest.raises(ValueError, match="cpus: 0 is out of range"):
        ReplayConfig(cpus=0)
    with pytest.raises(ValueError, match="unknown TLB preset"):
        sweep.make_config({}, {"tlb": "nosuch"})
    assert ReplayConfig(cpus="2", store_value="0x7f").store_value == 0x7f


def _two_cpu_trace(tmp_path):
    """pid 5's threads 5 and 6 on CPUs 0 and 1 write 4 pages, then pid 5 unmaps them:
    the munmap's flush reaches CPU 1 by IPI (a TLB shootdown)."""
    from vmsim.replay import native
    from vmsim.replay.readers import Event
    base = 0x10000000
    addrs = [base + i * 4096 for i in range(4)] * 2 + [base + 8 * 4096]
    tids = [5] * 4 + [6] * 4 + [5]
    cpus = [0] * 4 + [1] * 4 + [0]
    ev = [Event(0, "mmap", 5, base, 16 << 12, 3, vmsim.MAP_PRIVATE | vmsim.MAP_ANONYMOUS),
          Event(8, "munmap", 5, base, 4 << 12)]
    p = str(tmp_path / "two.npz")
    native.write_trace(p, addrs, [1] * 9, events=ev, pid=np.full(9, 5), tid=np.array(tids),
                       cpu=np.array(cpus))
    return p


def test_flushes_and_shootdowns_reported_without_a_tlb_model(capsys, tmp_path):
    """The kernel's flush decisions (arch/x86/mm/tlb.c) are made with or without a model
    of the TLBs: the report showed them only with --tlb, so `--cpus 4 --pcid off`
    without --tlb printed no flushes or shootdowns at all."""
    p = _two_cpu_trace(tmp_path)
    js = tmp_path / "r.json"
    rc, out, err = run(capsys, "replay", p, "--cpus", "2", "--pcid", "off", "--json", str(js))
    assert rc == 0, err
    r = json.loads(js.read_text())
    fl, vd = r["tlb_flushes"], r["vmstat_delta"]
    assert fl["ipi_sent"] >= 1
    assert fl["ipi_received"] == vd["nr_tlb_remote_flush_received"]
    assert fl["noflush_switch"] == 0                      # PCID off: every switch flushes
    assert "TLB flushes and shootdowns" in out
    assert re.search(rf"shootdowns: flush IPIs sent +{fl['ipi_sent']}\n", out)
    rc, out, err = run(capsys, "replay", p, "--compare", "cpus=2+pcid=on,cpus=2+pcid=off")
    assert rc == 0, err
    assert re.search(r"shootdowns: flush IPIs sent +\d+ +\d+\n", out)


def test_the_text_report_shows_memory_over_the_run(tmp_path):
    """RSS, page-table pages and faults over the run were only in --json and --plot."""
    import io
    from vmsim.cli import Out
    from vmsim.replay import native, report
    from vmsim.replay.readers import Event
    from vmsim.replay.run import Replay
    base = 0x10000000
    p = str(tmp_path / "grow.npz")
    n = 96                        # pages, written at 1 KiB strides: 384 accesses
    native.write_trace(p, base + np.arange(0, n << 12, 1024), np.ones(4 * n, np.uint8),
                       events=[Event(0, "mmap", 1, base, n << 12, 3,
                                     vmsim.MAP_PRIVATE | vmsim.MAP_ANONYMOUS)])
    r = Replay(p, ReplayConfig(step=8 * 32)).run()        # a sample every 32 accesses early on
    f = io.StringIO()
    report.print_report(Out(f, rich=False), r)
    out = f.getvalue()
    table = out.split("over the run")[1].split("vmstat deltas")[0].strip().splitlines()[3:]
    rows = [[int(x.replace(",", "")) for x in ln.split()] for ln in table]
    assert len(rows) == 10 and rows[-1] == [4 * n, r["rss_kb"], r["pgtables"], r["faults"]["minflt"]]
    assert rows[-1][1] - rows[0][1] == n * 4 and [x[0] for x in rows] == sorted(x[0] for x in rows)
    assert [x[1:] for x in rows] == [[a, b, c] for a, b, c in zip(
        *(np.array(r["series"][k])[[r["series"]["accesses"].index(x[0]) for x in rows]]
          for k in ("rss_kb", "pgtables", "faults")))]


def test_an_empty_trace_says_so(capsys, tmp_path):
    p = tmp_path / "e.lackey"
    p.write_text("")
    rc, out, err = run(capsys, "replay", str(p))
    assert rc == 0 and "note: the trace holds no accesses" in out


@pytest.mark.parametrize("ext", ["lackey", "npz", "parquet"])
def test_a_trace_whose_accesses_were_all_skipped_says_so(capsys, tmp_path, ext):
    """Every access malformed, skipped with --skip-bad: the note says so (it said the
    trace holds no accesses)."""
    from vmsim.replay import native
    p = str(tmp_path / f"b.{ext}")
    if ext == "lackey":
        open(p, "w").write(" S zz,8\n L 7ffd0000,\n")
    else:
        if ext == "parquet":
            pytest.importorskip("pyarrow.parquet")
        native.write_trace(p, [0x10000000] * 3, [9, 7, 3])
    rc, out, err = run(capsys, "replay", p, "--skip-bad")
    n, what = (2, "lines") if ext == "lackey" else (3, "rows")
    assert rc == 0, err
    assert f"note: no accesses replayed: the trace's {n} malformed {what} were all skipped " \
        "(--skip-bad)" in out
    assert "holds no accesses" not in out


@pytest.mark.parametrize("ext", ["npz", "parquet"])
def test_the_scan_time_is_printed_only_when_the_trace_was_scanned(capsys, tmp_path, ext):
    """A native trace with events is not scanned (its areas are its mmap events): the
    report gives no scan time for it (it printed 'trace scan 0.00 s'); one without
    events is scanned and says how long that took."""
    from vmsim.replay import native
    from vmsim.replay.readers import Event
    if ext == "parquet":
        pytest.importorskip("pyarrow.parquet")
    base, rw = 0x10000000, vmsim.PROT_READ | vmsim.PROT_WRITE
    ev, plain = str(tmp_path / f"e.{ext}"), str(tmp_path / f"p.{ext}")
    native.write_trace(ev, [base, base + 4096], [1, 0],
                       events=[Event(0, "mmap", 1, base, 8192, rw,
                                     vmsim.MAP_PRIVATE | vmsim.MAP_ANONYMOUS)])
    native.write_trace(plain, [base, base + 4096], [1, 0])
    for path, scanned in ((ev, False), (plain, True)):
        js = tmp_path / "r.json"
        rc, out, err = run(capsys, "replay", path, "--json", str(js))
        assert rc == 0, err
        last = out.strip().splitlines()[-1]
        assert last.startswith("replayed 2 accesses in ")
        assert ("; trace scan " in last) == scanned, last
        assert (json.loads(js.read_text())["seconds"]["scan"] is None) == (not scanned)


def test_the_replay_progress_knows_the_total(tmp_path):
    """The scan counts the accesses, so the replay's progress bar has an end (and an ETA)."""
    from vmsim.replay.run import Replay
    seen = []
    p = tmp_path / "t.lackey"
    p.write_text(LACKEY)
    Replay(str(p), ReplayConfig(), lambda phase, n, r: seen.append((phase, getattr(r, "total", None)))).run()
    assert ("replay", 5) in seen


def test_convert_to_a_missing_directory_names_the_output(capsys, trace, tmp_path):
    out = tmp_path / "no" / "o.npz"
    rc, o, err = run(capsys, "convert", trace, str(out))
    assert rc == 1 and err.strip() == f"vmsim: {out}: No such file or directory"


def test_tlb_misses_per_level_and_page_size():
    """With the walks completed per page size (Machine.tlb_stats' walks_completed),
    the report shows misses per level and page size: an L1 miss of a size is an L2 hit
    of that size or a completed walk of that size; an L2 miss, a completed walk."""
    from vmsim.replay import report
    t = {"hits L1 dTLB 4K": 100, "hits L1 dTLB 2M": 50, "hits L2 TLB 4K": 7, "hits L2 TLB 2M": 2,
         "hits L2 iTLB 4K": 1, "l1_misses": 16, "misses": 6, "walks": 6,
         "walks_completed 4K": 4, "walks_completed 2M": 1, "walks_completed 1G": 0}
    rows = dict(report._misses_per_size(t))
    assert rows == {"misses in L1, 4K pages": "12", "misses in L2 too, 4K pages (walks completed)": "4",
                    "misses in L1, 2M pages": "3", "misses in L2 too, 2M pages (walks completed)": "1"}
    del t["walks_completed 4K"], t["walks_completed 2M"], t["walks_completed 1G"]
    assert report._misses_per_size(t) == []        # a model without the counts: no rows


def test_every_series_has_a_sample_per_access_count(tmp_path):
    """--tlb with --plot failed after the whole replay ('x and y must have same first
    dimension'): the TLB-misses series had no sample at access 0 (the plot itself:
    test_plot_with_the_tlb_model, -m slow)."""
    r = replay(_two_cpu_trace(tmp_path), ReplayConfig(cpus=2, tlb="skylake"))
    s = r["series"]
    assert {len(v) for v in s.values()} == {len(s["accesses"])}
    assert s["tlb_misses"] == sorted(s["tlb_misses"]) and s["tlb_misses"][-1] > s["tlb_misses"][0]


@pytest.mark.slow                   # matplotlib's import and a 4-panel PNG: ~3 s
def test_plot_with_the_tlb_model(capsys, tmp_path):
    p = _two_cpu_trace(tmp_path)
    png, js = tmp_path / "o.png", tmp_path / "o.json"
    rc, out, err = run(capsys, "replay", p, "--cpus", "2", "--tlb", "skylake", "--plot", str(png),
                       "--json", str(js))
    assert rc == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    s = json.loads(js.read_text())["series"]
    assert {len(v) for v in s.values()} == {len(s["accesses"])}
    assert s["tlb_misses"] == sorted(s["tlb_misses"]) and s["tlb_misses"][-1] > s["tlb_misses"][0]


def test_a_ray_address_that_takes_no_connection_is_said_at_once():
    """ray.init(address=...) retried an unreachable cluster for minutes (a sweep with a
    mistyped --ray address sat there); the address is tried first (5 s at most)."""
    import socket
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        sweep._reachable(f"127.0.0.1:{port}")
        sweep._reachable(f"ray://127.0.0.1:{port}")
    with pytest.raises(RuntimeError, match=f"--ray 127.0.0.1:{port}: cannot reach the cluster"):
        sweep._reachable(f"127.0.0.1:{port}")           # closed now
    with pytest.raises(ValueError, match="use auto, local, HOST:PORT"):
        sweep._reachable("nonsense")


@pytest.mark.slow       # compiles the TLB-backed replay loop (minutes on a cold cache)
def test_the_issues_commands_on_the_sample(capsys, tmp_path):
    """The issue's commands, as written, on the built-in sample (a lackey trace of
    /bin/true): replay with --thp always --tlb host; --cpus 4 --pcid off with --json
    and --plot; --compare; sweep over three axes after one --grid."""
    from vmsim.replay.cli import SAMPLE
    rc, out, err = run(capsys, "replay", SAMPLE, "--thp", "always", "--tlb", "host")
    assert rc == 0, err
    assert "hits L1 iTLB 4K" in out and "TLB flushes and shootdowns" in out
    assert "faults: thp" not in out and not re.search(r"^thp +\d", out, re.M)   # no 2 MiB area
    js, png = tmp_path / "out.json", tmp_path / "out.png"
    rc, out, err = run(capsys, "replay", SAMPLE, "--cpus", "4", "--pcid", "off", "--json", str(js),
                       "--plot", str(png))
    assert rc == 0, err
    r = json.loads(js.read_text())
    assert r["config"]["cpus"] == 4 and r["config"]["pcid"] == "off"
    assert r["tlb_flushes"]["noflush_switch"] == 0 and png.stat().st_size > 0
    npz = tmp_path / "trace.npz"
    assert run(capsys, "convert", SAMPLE, str(npz))[0] == 0
    rc, out, err = run(capsys, "replay", str(npz), "--compare", "thp=always,thp=never")
    # thp, tlb and pcid change no fault of /bin/true's (no 2 MiB-aligned anonymous area):
    # every column's minflt is the plain replay's
    n = r["faults"]["minflt"]
    assert rc == 0 and re.search(rf"minflt +{n} +{n}\n", out), out
    rc, out, err = run(capsys, "sweep", str(npz), "--grid", "thp=always,never", "tlb=host,skylake",
                       "pcid=on,off", "--jobs", "2")
    assert rc == 0, err
    assert out.count("thp=") == 8 and re.search(r"minflt" + rf" +{n}" * 8 + r"\n", out), out


def test_an_area_too_big_for_the_machine_is_named(capsys, tmp_path):
    """An inferred area larger than the machine can commit (__vm_enough_memory) failed
    as a bare 'vmsim: ENOMEM (Cannot allocate memory)'."""
    p = tmp_path / "big.lackey"
    p.write_text("".join(f" S {0x5000000 + i * (128 << 10):08x},8\n" for i in range(1200)))
    rc, out, err = run(capsys, "replay", str(p), "--memory", "100M")
    end = 0x5000000 + 1199 * (128 << 10) + 4096          # past the last page touched
    assert rc == 2 and err.strip() == (f"vmsim: error: mapping the inferred mmap "
                                       f"0x5000000-{end:#x} (100M machine, --memory): "
                                       "ENOMEM (Cannot allocate memory)"), err
