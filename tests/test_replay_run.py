"""vmsim replay / convert / sweep: the replay engine, its report, and the CLI."""
import json
import lzma
import os
import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

import vmsim
from vmsim.cli import main
from vmsim.arch.x86 import cpu
from vmsim.replay import infer, native, sweep
from vmsim.replay.cli import SAMPLE
from vmsim.replay.readers import Event, TraceError
from vmsim.replay.run import Replay, ReplayConfig, replay

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "traces")


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _valgrind_count(path, what):
    """A count from Valgrind's own summary at the end of a lackey log."""
    with lzma.open(path, "rt") as f:
        for line in f:
            m = re.match(rf"==\d+==\s+{what}:\s+([\d,]+)", line)
            if m:
                return int(m.group(1).replace(",", ""))
    raise AssertionError(f"no {what!r} in {path}")


def _head(tmp_path, src, lines):
    dst = tmp_path / "head.lackey"
    with lzma.open(src, "rt") as f, open(dst, "w") as g:
        for i, line in enumerate(f):
            if i >= lines:
                break
            g.write(line)
    return str(dst)


@pytest.mark.slow
def test_replay_sample_counts_what_valgrind_counted(capsys, tmp_path):
    out_json = tmp_path / "r.json"
    rc, out, err = run(capsys, "replay", "--json", str(out_json))
    assert rc == 0, err
    r = json.loads(out_json.read_text())
    assert r["schema_version"] == 1 and r["command"] == "replay"
    # lackey writes one 'I' line per guest instruction it executed.
    assert r["accesses"]["exec"] == _valgrind_count(SAMPLE, "guest instrs")
    assert r["signals"] == {}
    assert r["faults"]["minflt"] == sum(r["faults"]["by_kind"].values())
    assert "VMAs inferred" in out and "stack" in out and "faults" in out


def _stats(r):
    r = dict(r)
    for k in ("seconds", "accesses_per_s", "series"):
        r.pop(k)
    return r


def _both_modes(fn):
    out = []
    for compiled in (False, True):
        cpu._use_compiled(compiled)
        try:
            out.append(fn())
        finally:
            cpu._default()
    return out


def test_compiled_and_interpreted_replays_agree(tmp_path):
    path = _head(tmp_path, SAMPLE, 6000)
    py, nb = _both_modes(lambda: _stats(replay(path, ReplayConfig(checker=True))))
    assert py == nb
    assert py["faults"]["minflt"] > 0


def test_sampled_counters_are_what_proc_vmstat_shows(tmp_path):
    """The per-step samples read two vmstat counters directly: /proc/vmstat's values."""
    from vmsim.replay import run as replay_run
    rp = Replay(_head(tmp_path, SAMPLE, 3000), ReplayConfig(fault_paths=False, memory="256M"))
    r = rp.run()
    text = dict(line.split() for line in rp.machine.read_file("/proc/vmstat").splitlines())
    assert r["pgtables"] == replay_run._pgtables(rp.machine) == int(text["nr_page_table_pages"]) > 0
    assert replay_run._pgfault(rp.machine) == int(text["pgfault"]) > 0
    assert r["series"]["faults"][-1] == r["vmstat_delta"]["pgfault"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sample", "ls-usr-bin"])
def test_real_traces_replay_identically_compiled_and_interpreted(name, tmp_path):
    """Real programs' traces replay to completion with the checker on, no signal (every
    access falls in an inferred VMA), the same statistics with and without numba (ls:
    its first million lines, the Python access loop being ~20x slower)."""
    path = SAMPLE if name == "sample" else _head(tmp_path, os.path.join(DATA, f"{name}.lackey.xz"),
                                                  1_000_000)
    py, nb = _both_modes(lambda: _stats(replay(path, ReplayConfig(checker=True))))
    assert py == nb
    assert py["signals"] == {}


# ru_minflt of the traced commands run natively on the reference machine (`/usr/bin/time
# -f %R`, 3 runs, in two sessions: tests/data/traces/README.md).
NATIVE_MINFLT = {"ls-usr-bin": (229, 235), "sort-2000-lines": (127, 132)}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ls-usr-bin", "sort-2000-lines"])
def test_real_traces_replay_to_completion(name):
    """... with the heap where Valgrind's brk(0) put it (0x4035000, right after ld.so's
    bss), no major fault (the ELF files' pages are cached), and fewer faults than the
    program took natively, by at most 30: the faults no user-mode trace holds (execve
    writing argv and the auxv and clearing the bss, the kernel writing into the
    program's buffers during system calls)."""
    r = replay(os.path.join(DATA, f"{name}.lackey.xz"), ReplayConfig(checker=True))
    assert r["signals"] == {} and r["accesses"]["total"] > 4_000_000
    assert r["faults"]["minflt"] == sum(r["faults"]["by_kind"].values())
    assert r["brk"]["start_brk"] == 0x4035000 and r["brk"]["failed_at"] is None
    assert r["faults"]["majflt"] == 0 and r["faults"]["by_kind"]["file"] > 0
    lo, hi = NATIVE_MINFLT[name]
    assert lo - 30 <= r["faults"]["minflt"] < lo


@pytest.mark.slow        # compiles the TLB-backed replay loop with the stale-TLB check (minutes cold)
@pytest.mark.skipif(not __import__("vmsim.replay.run", fromlist=["x"]).model_support()["tlb"],
                    reason="the TLB model is not in this build")
def test_replay_with_the_tlb_model(tmp_path):
    p = _head(tmp_path, SAMPLE, 6000)
    plain = replay(p, ReplayConfig(checker=True))
    r = replay(p, ReplayConfig(tlb="skylake", checker=True))     # stale-TLB checker on
    assert r["notes"] == [] and r["tlb"]["walks"] == r["walks"]
    assert sum(v for k, v in r["tlb"].items() if k.startswith("hits ")) > r["walks"]
    # A TLB changes which translations walk, not what the kernel does.
    assert r["faults"] == plain["faults"] and r["vmstat_delta"] == plain["vmstat_delta"]


def test_malformed_trace_cli(tmp_path, capsys):
    p = tmp_path / "bad.lackey"
    p.write_text("I  0401ab70,3\n L 04225e70,8\n L 0422,x\n")
    rc, out, err = run(capsys, "replay", str(p))
    assert rc == 1 and err.strip() == f"vmsim: {p}:3: bad size: expected a decimal number of " \
        "bytes from 1 to 4096 after the comma"
    assert "Traceback" not in err
    rc, out, err = run(capsys, "replay", str(p), "--skip-bad")
    assert rc == 0 and "malformed lines skipped" in out
    rc, out, err = run(capsys, "replay", str(tmp_path / "missing.lackey"))
    assert rc == 1 and "no such file" in err


def test_options_not_modelled_say_so(capsys, tmp_path):
    have = __import__("vmsim.replay.run", fromlist=["x"]).model_support()
    p = _head(tmp_path, SAMPLE, 3000)
    # With the TLB model in the build, a replay through it compiles its loop for minutes
    # on a cold cache: that is test_replay_with_the_tlb_model's (pytest -m slow).
    tlb = [] if have["tlb"] else ["--tlb", "host"]
    rc, out, err = run(capsys, "replay", p, *tlb, "--thp", "always",
                       "--json", str(tmp_path / "r.json"))
    assert rc == 0, err
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["command"] == "replay" and r["config"]["thp"] == "always"
    assert "VMAs inferred" in out and "minflt" in out
    if not have["tlb"]:
        assert "--tlb host: the TLB model is not in this build yet" in out
    if not have["thp"]:
        assert "--thp always: the sysfs knob is set, but huge-page faults are not modelled" in out


@pytest.mark.slow
def test_compare_plot_and_convert(capsys, tmp_path):
    p = _head(tmp_path, SAMPLE, 5000)
    png = tmp_path / "o.png"
    rc, out, err = run(capsys, "replay", p, "--compare", "thp=always,thp=never", "--plot", str(png))
    assert rc == 0, err
    assert "thp=always" in out and "thp=never" in out and "minflt" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    npz = tmp_path / "o.npz"
    rc, out, err = run(capsys, "convert", p, str(npz))
    assert rc == 0, err
    a = replay(p, ReplayConfig(checker=True))
    b = replay(str(npz), ReplayConfig(checker=True))
    # The native format stores a lackey M as the write access it is; only the text
    # reader counts how many writes were M lines.
    assert _stats(a)["accesses"]["modify"] > 0 and not _stats(b)["accesses"].get("modify")
    sa, sb = _stats(a), _stats(b)
    sa["accesses"].pop("modify"), sb["accesses"].pop("modify", None)
    assert sa | {"trace": 0, "format": 0, "lines": 0} == \
        sb | {"trace": 0, "format": 0, "lines": 0}


def test_convert_cli_and_replay_of_each_format(capsys, tmp_path):
    src = tmp_path / "t.pinatrace.gz"
    import gzip
    with gzip.open(src, "wt") as f:
        f.write("0x401000: W 0x7ffd1234\n0x401004: R 0x7ffd1238\n0x40100a: R 0x601040\n#eof\n")
    results = []
    for out in ("o.npz", "o.parquet"):
        rc, text, err = run(capsys, "convert", str(src), str(tmp_path / out))
        assert rc == 0 and "6 accesses" in text, err         # 3 fetches (the IPs), 3 data
    for p in (src, tmp_path / "o.npz", tmp_path / "o.parquet"):
        rc, text, err = run(capsys, "replay", str(p), "--json", str(tmp_path / "r.json"))
        assert rc == 0, err
        r = json.loads((tmp_path / "r.json").read_text())
        results.append((r["accesses"], r["faults"]))
    # The IPs are fetched: 0x401000 is an ELF object's text, 0x601040 (read, within
    # 2 MiB) its r-- data, both file-backed. The fetch at 0x401000 takes a file fault
    # (do_read_fault), the write to the stack page an anonymous one (do_anonymous_page);
    # the next fetches and the stack read hit present pages; the read at 0x601040 is a
    # second file fault.
    assert results[0] == results[1] == results[2]
    assert results[0][1]["by_kind"] == {"anonymous": 1, "file": 2}
    rc, text, err = run(capsys, "convert", str(src), str(tmp_path / "o.csv"))
    assert rc == 2 and "the native format is .npz or .parquet" in err


def test_native_events_drive_the_processes(tmp_path):
    """mmap 4 pages, write them, fork, the child writes page 0 and exits, the parent reads
    page 1: Linux takes 4 anonymous faults in the parent, 1 COW fault in the child
    (wp_page_copy: the page is shared with the parent), none for the parent's read."""
    base = 0x10000000
    addrs = [base, base + 4096, base + 8192, base + 12288, base, base + 4096]
    kinds = [1, 1, 1, 1, 1, 0]
    pids = np.array([5, 5, 5, 5, 6, 5])
    ev = [Event(0, "mmap", 5, base, 4 << 12, 3, vmsim.MAP_PRIVATE | vmsim.MAP_ANONYMOUS),
          Event(4, "fork", 5, arg=6), Event(5, "exit", 6)]
    p = str(tmp_path / "e.npz")
    native.write_trace(p, addrs, kinds, events=ev, pid=pids)
    r = replay(p, ReplayConfig(checker=True))
    assert r["faults"]["by_kind"] == {"anonymous": 4, "cow": 1}
    assert r["inferred_areas"] == [] and r["signals"] == {}


_ANON = vmsim.MAP_PRIVATE | vmsim.MAP_ANONYMOUS
_RW = vmsim.PROT_READ | vmsim.PROT_WRITE


@pytest.mark.parametrize("ext", ["npz", "parquet"])
def test_threads_of_one_mm_by_the_tid_column(tmp_path, ext):
    """tids 5, 6, 7 of pid 5 share one mm: a tid first met is a new thread
    (clone_thread); a page written by one thread does not fault for another; each
    thread's faults are its own (its task's min_flt), the sum is the process's; the
    RSS counts the shared mm once. A thread's exit event leaves the others running."""
    base = 0x10000000
    addrs = [base, base + 4096, base, base + 8192, base + 4096, base + 12288]
    kinds = [1, 1, 1, 1, 0, 1]
    tids = np.array([5, 6, 7, 7, 5, 6])
    ev = [Event(0, "mmap", 5, base, 4 << 12, _RW, _ANON), Event(5, "exit", 7)]
    p = str(tmp_path / f"t.{ext}")
    native.write_trace(p, addrs, kinds, events=ev, pid=np.full(6, 5), tid=tids)
    rp = Replay(p, ReplayConfig(checker=True))
    r = rp.run()
    assert r["faults"]["by_kind"] == {"anonymous": 4} and r["faults"]["minflt"] == 4
    assert r["tasks"]["processes"] == 1 and r["tasks"]["threads"] == 3
    assert r["signals"] == {}
    pids = {q.task.pid for q in rp.tasks.all()}
    assert len(pids) == 3 and {q.task.tgid for q in rp.tasks.all()} == {rp.process.pid}
    # the same trace without the tid column: one task, the same faults
    q = str(tmp_path / f"u.{ext}")
    native.write_trace(q, addrs, kinds, events=ev[:1], pid=np.full(6, 5))
    r1 = replay(q, ReplayConfig(checker=True))
    assert r1["faults"] == r["faults"] and r1["tasks"]["threads"] == 1
    assert r1["rss_kb"] == r["rss_kb"] == r["maxrss_kb"]              # one mm, counted once


def test_the_cpu_column_runs_accesses_on_that_cpu(tmp_path, capsys):
    """With a TLB model each CPU has its own TLB: a write and a read on CPU 0, a read
    on CPU 1, a read on CPU 0 again: CPU 1 walks once, CPU 0 as often as the same trace
    all on CPU 0 (its third read hits its own TLB, kept over the switches by its
    PCID). Moving the task is a context switch and a migration; a switch event with a
    cpu puts a task there; a cpu the machine lacks is a clear error."""
    base = 0x10000000
    ev = [Event(0, "mmap", 1, base, 4096, _RW, _ANON)]

    def per_cpu(events=ev, **cols):
        p = str(tmp_path / "c.npz")
        native.write_trace(p, [base] * 4, [1, 0, 0, 0], events=events, **cols)
        rp = Replay(p, ReplayConfig(tlb="skylake", cpus=2, checker=True))
        r = rp.run()
        return [(c["walks"], sum(c["hits"].values())) for c in rp.machine.tlb_stats()], r["tasks"]
    one, t1 = per_cpu(pid=np.ones(4, np.int64))
    assert one[1] == (0, 0) and t1["migrations"] == 0
    two, t2 = per_cpu(pid=np.ones(4, np.int64), cpu=np.array([0, 0, 1, 0]))
    assert two == [(one[0][0], one[0][1] - 1), (1, 0)], (one, two)
    assert t2["migrations"] == 2 and t2["context_switches"] >= 2
    # a switch event: the process to CPU 1 (no pid / cpu columns); the accesses after it run there
    sw, t3 = per_cpu(events=ev + [Event(2, "switch", 1, arg=1, cpu=1)])
    assert sw == [(one[0][0], one[0][1] - 2), (1, 1)] and t3["migrations"] == 1
    # CPU 5 of 2
    b = str(tmp_path / "b.npz")
    native.write_trace(b, [base, base], [1, 0], events=ev, pid=np.ones(2, np.int64), cpu=np.array([0, 5]))
    rc, out, err = run(capsys, "replay", b, "--cpus", "2")
    assert rc == 1 and err.strip() == f"vmsim: {b}: access 1: cpu 5, but the machine has 2 CPUs (--cpus)"


def test_convert_keeps_the_columns_and_events_of_a_native_trace(tmp_path, capsys):
    base = 0x10000000
    ev = [Event(0, "mmap", 5, base, 4096, _RW, _ANON), Event(2, "switch", 5, arg=6, cpu=1)]
    src = str(tmp_path / "a.npz")
    native.write_trace(src, [base, base + 8, base], [1, 0, 0], events=ev, pid=np.full(3, 5),
                       tid=np.array([5, 6, 6]), cpu=np.array([0, 1, 1]))
    for dst in ("b.parquet", "c.npz"):
        rc, out, err = run(capsys, "convert", src, str(tmp_path / dst))
        assert rc == 0, err
        cs = list(__import__("vmsim.replay.readers", fromlist=["x"]).open_trace(str(tmp_path / dst)))
        assert [c.tid.tolist() for c in cs] == [[5, 6, 6]] and [c.cpu.tolist() for c in cs] == [[0, 1, 1]]
        assert [c.pid.tolist() for c in cs] == [[5, 5, 5]] and list(cs[0].events) == ev
        src = str(tmp_path / dst)


def test_events_after_the_last_access_end_the_replay(tmp_path):
    """An event placed after the last access (at > the accesses) takes effect at the
    end (the replay hung here before)."""
    base = 0x10000000
    ev = [Event(0, "mmap", 1, base, 4096, _RW, _ANON), Event(9, "munmap", 1, base, 4096)]
    p = str(tmp_path / "e.npz")
    native.write_trace(p, [base], [1], events=ev)
    rp = Replay(p, ReplayConfig(checker=True))
    r = rp.run()
    assert r["faults"]["minflt"] == 1 and rp.process.mm.find_vma(base) is None or \
        rp.process.mm.find_vma(base).vm_start > base


def test_signal_is_counted_and_the_replay_goes_on(tmp_path):
    base = 0x10000000
    ev = [Event(0, "mmap", 1, base, 4096, vmsim.PROT_READ, vmsim.MAP_PRIVATE | vmsim.MAP_ANONYMOUS)]
    p = str(tmp_path / "s.npz")
    native.write_trace(p, [base, base, base + 8], [0, 1, 0], events=ev, pid=np.array([1, 1, 1]))
    r = replay(p, ReplayConfig(checker=True))
    assert r["signals"] == {"SIGSEGV at access 1": 1}
    assert r["accesses"]["total"] == 3


def test_inference_names_areas():
    P = 4096
    ps = infer.PageSet()
    text, heap, lib, stack = 0x400000, 0x600000, 0x7f0000000000, 0x7ffffffde000
    addr = np.array([text, text + P, text + 40 * P, heap, heap + 10 * P, lib, stack, stack - P])
    kind = np.array([2, 2, 1, 1, 1, 1, 1, 0], np.uint8)
    ps.add(addr, kind, np.array([1] * 7 + [4096 + 8]))        # the last one straddles
    areas = infer.infer_areas(*ps.result())
    got = [(a.start, a.end, a.prot, a.name) for a in areas]
    assert got == [(text, text + 40 * P, "r-x", "text"), (text + 40 * P, text + 41 * P, "rw-", "data"),
                   (heap, heap + 11 * P, "rw-", "heap"), (lib, lib + P, "rw-", "mmap"),
                   (stack - P, stack + P, "rw-", "stack")]


def test_inference_finds_valgrinds_brk_after_the_interpreter():
    """Valgrind loads the program at 0x108000, ld.so at 0x4000000 and puts the brk right
    after ld.so: without knowing which instruction touched a page (no fetches before
    them), the pages past ld.so's rw- segment and a read-only page are the heap (brk
    0x4035000 in `valgrind --trace-syscalls=yes ls`); a later library's tail is not."""
    pages = [(0x108000, 2), (0x109000, 1), (0x4000000, 0), (0x4001000, 2), (0x4027000, 0),
             (0x4031000, 1), (0x4042000, 0), (0x4044000, 1), (0x4045000, 1),
             (0x4900000, 2), (0x4901000, 1), (0x4902000, 0), (0x4903000, 1)]
    ps = infer.PageSet()
    ps.add(np.array([a for a, _ in pages]), np.array([k for _, k in pages], np.uint8), None)
    got = [(a.start, a.end, a.prot, a.name) for a in infer.infer_areas(*ps.result())]
    assert (0x4042000, 0x4046000, "rw-", "heap") in got
    assert [a for a in got if a[3] == "heap"] == [(0x4042000, 0x4046000, "rw-", "heap")]
    assert (0x4031000, 0x4042000, "rw-", "data") in got and (0x4901000, 0x4902000, "rw-", "data") in got
    # Past a library's rw- segment, an r-- then an rw- area are no segments of it (ld.so
    # maps the next object from its r-- headers to its text): mappings of the program.
    assert (0x4902000, 0x4903000, "r--", "mmap") in got and (0x4903000, 0x4904000, "rw-", "mmap") in got


def _lackey(path, lines):
    path.write_text("".join(f"I  {a:08x},4\n" if k == "I" else f" {k} {a:08x},8\n" for k, a in lines))
    return str(path)


def _areas(path):
    ps = infer.PageSet()
    from vmsim.replay.readers import open_trace
    for c in open_trace(path):
        ps.add(c.addr, c.kind, c.size)
    return infer.infer_areas(*ps.result(), toucher=ps.first_touch(), entry=ps.entry)


def _lackey_to_pinatrace(src, dst):
    """A lackey trace as Pin's pinatrace would log the same run: each load or store as
    'IP: R/W ADDR' with the IP of the 'I' line before it, a modify as a read then a
    write of one instruction; instructions without a memory operand are not logged."""
    ip = None
    with lzma.open(src, "rt") as f, open(dst, "w") as g:
        for line in f:
            if line.startswith("I  "):
                ip = line[3:line.index(",")]
            elif line[:3] in (" L ", " S ", " M "):
                a = line[3:line.index(",")]
                g.write({"L": f"0x{ip}: R 0x{a}\n", "S": f"0x{ip}: W 0x{a}\n",
                         "M": f"0x{ip}: R 0x{a}\n0x{ip}: W 0x{a}\n"}[line[1]])
        g.write("#eof\n")
    return str(dst)


def test_a_pinatrace_gets_the_text_and_data_areas_of_its_lackey_twin(tmp_path):
    """The reader takes each pinatrace record's IP as a fetch: inference finds the same
    ELF objects (text and data, file-backed) in a pinatrace made from the built-in
    sample (/bin/true under lackey) as in the lackey trace, and the same stack and
    anonymous areas. Without the IPs every region but the stack was an anonymous
    rw- 'mmap'."""
    pin = _lackey_to_pinatrace(SAMPLE, tmp_path / "true.pinatrace")
    want = [(a.start, a.end, a.prot, a.name, a.file, a.offset) for a in _areas(SAMPLE)]
    got = [(a.start, a.end, a.prot, a.name, a.file, a.offset) for a in _areas(pin)]
    assert got == want
    texts = {a[4] for a in got if a[3] == "text"}
    assert len(texts) >= 3 and all(a[4] for a in got if a[3] in ("text", "data"))
    assert {a[3] for a in got} >= {"text", "data", "stack"}


@pytest.mark.slow
def test_a_pinatrace_replays_with_the_faults_of_its_lackey_twin(tmp_path):
    """The sample's pinatrace replays with the lackey trace's faults in every text
    area, and in all but a few others: Pin logs a read-modify-write as a read then a
    write (a read fault, then a COW fault on a page it brought in), where lackey's M
    is one write. With the IPs dropped it took 88 faults against the lackey trace's 52."""
    pin = _lackey_to_pinatrace(SAMPLE, tmp_path / "true.pinatrace")
    a, b = replay(SAMPLE, ReplayConfig(checker=True)), replay(pin, ReplayConfig(checker=True))
    assert a["inferred_areas"] == [dict(x, pages=y["pages"]) for x, y in
                                   zip(b["inferred_areas"], a["inferred_areas"])]
    assert b["signals"] == {} and b["accesses"]["exec"] < a["accesses"]["exec"]
    text = [i for i, x in enumerate(a["inferred_areas"]) if x["name"] == "text"]
    assert [a["faults_by_area"][i] for i in text] == [b["faults_by_area"][i] for i in text]
    diff = sum(abs(x - y) for x, y in zip(a["faults_by_area"], b["faults_by_area"]))
    assert diff <= 3 and 0 <= b["faults"]["minflt"] - a["faults"]["minflt"] <= 3


def test_heap_starts_where_the_interpreter_stops_touching(tmp_path):
    """The heap Valgrind puts right after ld.so's bss, in one run of written pages with
    ld.so's data: ld.so never calls brk (its minimal malloc takes the rest of its last
    page, then mmaps), so the pages it touched first are its data; the heap starts at
    the first one another object's code (libc's malloc) touched first, and goes on past
    pages ld.so touched later (dlopen copying into malloc'd memory)."""
    path = _lackey(tmp_path / "h.lackey", [
        ("I", 0x401ab70), ("S", 0x4031000), ("S", 0x4033008),     # ld.so: entry, relocation
        ("I", 0x4001000), ("S", 0x4034000),                        # its bss
        ("I", 0x108000), ("L", 0x109000),                          # the program
        ("I", 0x4900000), ("S", 0x4035010), ("S", 0x4037000),      # libc's malloc
        ("I", 0x401ab80), ("S", 0x4036000),                        # ld.so, into the heap
        ("S", 0x1fff000ff0)])
    got = [(a.start, a.end, a.prot, a.name, a.file, a.offset) for a in _areas(path)]
    assert got == [(0x108000, 0x109000, "r-x", "text", "elf-00108000", 0),
                   (0x109000, 0x10a000, "r--", "data", "elf-00108000", 0x1000),
                   (0x4001000, 0x4031000, "r-x", "text", "elf-04001000", 0),
                   (0x4031000, 0x4035000, "rw-", "data", "elf-04001000", 0x30000),
                   (0x4035000, 0x4038000, "rw-", "heap", "", 0),
                   (0x4900000, 0x4901000, "r-x", "text", "elf-04900000", 0),
                   (0x1fff000000, 0x1fff001000, "rw-", "stack", "", 0)]
    # The same pages, ld.so's last one first touched by libc: the heap starts there.
    path = _lackey(tmp_path / "g.lackey", [
        ("I", 0x401ab70), ("S", 0x4031000), ("S", 0x4033008), ("I", 0x108000),
        ("L", 0x109000), ("I", 0x4900000), ("S", 0x4034000), ("S", 0x4035010)])
    assert [(a.start, a.end) for a in _areas(path) if a.name == "heap"] == [(0x4034000, 0x4036000)]


def test_elf_objects_are_told_from_other_mappings():
    """An ELF object is [r--] r-x... r--... [rw-], each area within 2 MiB of the one
    before: a data segment beyond untouched pages is its (python3.11's .data, 1.2 MiB
    past its last touched text page); an rw- area after an object's data (here the
    written region right above the program's object: its brk heap), or r-- areas not
    followed by text, are not; nor an area 2 MiB + a page away."""
    P = 4096
    pages = [(0x400000, 0), (0x401000, 2), (0x402000, 2), (0x403000, 0),
             (0x403000 + (1200 << 10), 1),                       # .data, 1.2 MiB on
             (0x403000 + (1200 << 10) + 100 * P, 1),              # the brk heap above it
             (0x4000000, 2), (0x4001000, 0),
             (0x4002000 + (2 << 20) + P, 0),                      # too far: not ld.so's
             (0x5000000, 0), (0x5001000, 0), (0x5100000, 2), (0x5101000, 1)]
    ps = infer.PageSet()
    ps.add(np.array([a for a, _ in pages]), np.array([k for _, k in pages], np.uint8), None)
    got = [(a.start, a.prot, a.name, a.file, a.offset) for a in infer.infer_areas(*ps.result())]
    data = 0x403000 + (1200 << 10)
    assert got == [(0x400000, "r--", "data", "elf-00400000", 0),
                   (0x401000, "r-x", "text", "elf-00400000", 0x1000),
                   (0x403000, "r--", "data", "elf-00400000", 0x3000),
                   (data, "rw-", "data", "elf-00400000", data - 0x400000),
                   (data + 100 * P, "rw-", "heap", "", 0),
                   (0x4000000, "r-x", "text", "elf-04000000", 0),
                   (0x4001000, "r--", "data", "elf-04000000", 0x1000),
                   (0x4002000 + (2 << 20) + P, "r--", "mmap", "", 0),
                   (0x5000000, "r--", "data", "elf-05000000", 0),
                   (0x5100000, "r-x", "text", "elf-05000000", 0x100000),
                   (0x5101000, "rw-", "data", "elf-05000000", 0x101000)]


def test_elf_segments_fault_as_file_pages(tmp_path):
    """Inferred text and data are MAP_PRIVATE mappings of a file whose pages are in the
    page cache: a fetch maps its fault_around_bytes (64 KiB) window of cached pages
    (do_read_fault -> do_fault_around), so 32 text pages fetched in two aligned windows
    take two faults; a data page written first takes do_cow_fault, a read maps the
    window (its pages read-only) and a write then copies (wp_page_copy); none is major."""
    text = [("I", 0x400000 + i * 4096) for i in range(32)]
    path = _lackey(tmp_path / "f.lackey", text + [
        ("S", 0x421000), ("L", 0x420000), ("S", 0x420000), ("L", 0x422000), ("S", 0x422000),
        ("S", 0x1fff000ff0)])
    rp = Replay(path, ReplayConfig(checker=True))
    r = rp.run()
    got = [(a["start"], a["end"], a["prot"], a["name"], a["file"]) for a in r["inferred_areas"]]
    assert got == [(0x400000, 0x420000, "r-x", "text", "elf-00400000"),
                   (0x420000, 0x423000, "rw-", "data", "elf-00400000"),
                   (0x1fff000000, 0x1fff001000, "rw-", "stack", "")]
    windows = len({(a >> 12) // 16 for _, a in text})
    assert windows == 2
    assert r["faults"]["by_kind"] == {"file": windows + 2, "cow": 2, "anonymous": 1}
    assert r["faults"]["majflt"] == 0 and r["faults"]["minflt"] == windows + 5
    assert r["faults_by_area"] == [windows, 4, 1]
    maps = rp.machine.read_file(f"/proc/{rp.process.pid}/maps").splitlines()
    assert maps[0].startswith("00400000-00420000 r-xp 00000000 ") and \
        maps[0].endswith(" /tmp/vmsim-replay/elf-00400000")
    assert maps[1].startswith("00420000-00423000 rw-p 00020000 ")
    assert "file-backed (elf-00400000 +0x20000)" in infer.format_areas(
        [infer.Area(**a) for a in r["inferred_areas"]])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([0x108, 0x400, 0x4000, 0x4800, 0x4a00, 0x1fff000]),
                          st.integers(0, 700), st.integers(1, 7), st.integers(-1, 40)),
                min_size=1, max_size=60),
       st.integers(0, 59))
def test_inferred_areas_cover_the_pages_once(recs, e):
    """Whatever the pages: the areas are sorted and disjoint, cover every touched page
    once, at most one is the heap, every text area is a file's, and a file's areas lie
    at their own addresses' offsets (start - offset is the object's first address)."""
    pages = np.array([(base << 12 >> 12) + off for base, off, _, _ in recs], np.int64)
    order = np.argsort(pages, kind="stable")
    pages, inv = np.unique(pages, return_inverse=True)
    bits = np.zeros(len(pages), np.uint8)
    toucher = np.full(len(pages), -1, np.int64)
    for j, (_, _, b, t) in enumerate(recs):
        bits[inv[j]] |= b
        if t >= 0 and toucher[inv[j]] < 0:
            toucher[inv[j]] = int(pages[t % len(pages)]) << 12
    entry = int(pages[e % len(pages)]) << 12
    areas = infer.infer_areas(pages, bits, toucher=toucher, entry=entry)
    assert all(a.start < a.end <= b.start for a, b in zip(areas, areas[1:]))
    starts = np.array([a.start for a in areas])
    for pg in pages:
        i = np.searchsorted(starts, pg << 12, side="right") - 1
        assert i >= 0 and areas[i].start <= pg << 12 < areas[i].end
    assert sum(a.pages for a in areas) == len(pages)
    assert [a.name for a in areas].count("heap") <= 1
    assert all(a.file for a in areas if a.name == "text")
    base = {}
    for a in areas:
        assert (a.name in ("text", "data")) == bool(a.file)
        if a.file:
            assert base.setdefault(a.file, a.start - a.offset) == a.start - a.offset
            assert a.file == f"elf-{a.start - a.offset:08x}"


def _summary(name):
    z = np.load(os.path.join(DATA, f"{name}.pages.npz"))
    return z["pages"], z["bits"], z["toucher"], int(z["entry"])


@pytest.mark.parametrize("name", ["ls-usr-bin", "sort-2000-lines", "python3-c-pass"])
def test_inference_of_the_real_traces(name):
    """The page summaries of the real traces (tests/data/traces/README.md; python3's
    624 MB trace is not kept): the heap starts at 0x4035000, where Valgrind's brk(0)
    put it right after ld.so's bss, and ld.so's rw- segment (0x4031900-0x40342d8 in
    `readelf -lW`) is the data of its object; every text area is a file's."""
    pages, bits, toucher, entry = _summary(name)
    assert entry >> 12 << 12 == 0x401a000            # ld.so's _start (Valgrind's entry)
    areas = infer.infer_areas(pages, bits, toucher=toucher, entry=entry)
    got = {a.start: (a.end, a.prot, a.name, a.file, a.offset) for a in areas}
    assert [a.start for a in areas if a.name == "heap"] == [0x4035000]
    assert got[0x4031000] == (0x4035000, "rw-", "data", "elf-04000000", 0x31000)
    assert all(a.file for a in areas if a.name == "text") and areas[-1].name == "stack"
    if name == "python3-c-pass":
        # python3.11 (not PIE, 0x400000-0xac9000) is one object, its text touched in four
        # regions; its .data, 1.2 MiB past its last touched read-only page, is its
        # segment; the 1 MiB written past libc's data (an obmalloc arena) is not.
        assert {a.file for a in areas if a.start < 0xac9000} == {"elf-00400000"}
        assert got[0x945000] == (0xac6000, "rw-", "data", "elf-00400000", 0x545000)
        assert got[0x4bac000] == (0x4cac000, "rw-", "mmap", "", 0)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ls-usr-bin", "sort-2000-lines"])
def test_page_summaries_are_the_traces(name):
    """The committed summaries are what a scan of the kept traces gives."""
    from vmsim.replay.readers import open_trace
    ps = infer.PageSet()
    for c in open_trace(os.path.join(DATA, f"{name}.lackey.xz")):
        ps.add(c.addr, c.kind, c.size)
    pages, bits, toucher, entry = _summary(name)
    got = ps.result()
    assert np.array_equal(got[0], pages) and np.array_equal(got[1], bits)
    assert np.array_equal(ps.first_touch(), toucher) and ps.entry == entry


def test_heap_grows_by_brk(tmp_path):
    """A text trace's heap (a written region right above the program's data) is grown with
    brk() as the accesses reach higher: start_brk at its first page, one brk per step
    that goes higher, the break at the highest byte touched, /proc/PID/maps' [heap];
    each heap page written once is one anonymous fault."""
    p = tmp_path / "h.lackey"
    p.write_text("I  00400000,4\n S 00401000,8\n S 00600000,8\n S 00601000,8\n L 00600000,8\n"
                 " S 00603ff8,16\n L 00600010,8\n S 7ffffffde000,8\n")
    rp = Replay(str(p), ReplayConfig(checker=True, step=8))      # early steps: one access
    r = rp.run()
    heap = [a for a in r["inferred_areas"] if a["name"] == "heap"]
    assert [(a["start"], a["end"], a["prot"]) for a in heap] == [(0x600000, 0x605000, "rw-")]
    assert r["brk"] == {"start_brk": 0x600000, "brk": 0x604008, "calls": 3, "failed_at": None}
    mm = rp.process.mm
    assert (mm.start_brk, mm.brk) == (0x600000, 0x604008)
    maps = rp.machine.read_file(f"/proc/{rp.process.pid}/maps")
    assert [ln for ln in maps.splitlines() if ln.endswith("[heap]")][0].startswith("00600000-00605000 rw-p")
    # 4 heap pages, stack; the text page, the data page (do_cow_fault)
    assert r["faults"]["by_kind"] == {"anonymous": 5, "file": 2}
    assert r["signals"] == {}


def test_sweep_grid_local(tmp_path):
    p = _head(tmp_path, SAMPLE, 1000)
    pts = sweep.parse_grid(["thp=always,never", "store_value=0,1"])
    assert pts == [{"thp": "always", "store_value": "0"}, {"thp": "always", "store_value": "1"},
                   {"thp": "never", "store_value": "0"}, {"thp": "never", "store_value": "1"}]
    res = sweep.sweep(p, pts[1:3], {"checker": True}, jobs=1)
    assert [r["label"] for r in res] == ["thp=always,store_value=1", "thp=never,store_value=0"]
    assert len({r["accesses"]["total"] for r in res}) == 1
    with pytest.raises(ValueError, match="unknown setting"):
        sweep.sweep(p, [{"nope": 1}], {})


@pytest.mark.slow
def test_sweep_cli_in_parallel_processes(capsys, tmp_path):
    p = _head(tmp_path, SAMPLE, 3000)
    rc, out, err = run(capsys, "sweep", p, "--grid", "thp=always,never", "--jobs", "2",
                       "--json", str(tmp_path / "s.json"))
    assert rc == 0, err
    assert "thp=always" in out and "thp=never" in out
    assert len(json.loads((tmp_path / "s.json").read_text())["results"]) == 2


@pytest.mark.extras
def test_sweep_on_ray_local(tmp_path):
    ray = pytest.importorskip("ray")
    p = _head(tmp_path, SAMPLE, 3000)
    done = []
    try:
        res = sweep.sweep(p, sweep.parse_grid(["thp=always,never"]), {}, ray="local",
                          on_done=lambda r: done.append(r["label"]))
    finally:
        ray.shutdown()
    assert sorted(done) == ["thp=always", "thp=never"]      # each point as it finished
    local = sweep.sweep(p, sweep.parse_grid(["thp=always,never"]), {}, jobs=1)
    assert [_stats(r) for r in res] == [_stats(r) for r in local]


_fuzz_ev = st.builds(lambda at, op, pid, arg, cpu, page: Event(at, op, pid, 0x10000000 + page * 4096, 4096,
                                                              _RW, _ANON, arg, cpu),
                     st.integers(0, 8), st.sampled_from(["mmap", "munmap", "mprotect", "brk", "fork",
                                                         "exit", "switch"]),
                     st.integers(1, 4), st.integers(0, 4), st.integers(-1, 2), st.integers(0, 3))


_fuzz_native_args = (st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2), st.integers(1, 4),
                                        st.integers(1, 6), st.integers(-1, 2)), min_size=1, max_size=8),
                     st.lists(_fuzz_ev, max_size=5),
                     st.sampled_from(["pid", "tid", "cpu", "pid+tid+cpu", ""]))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(*_fuzz_native_args)
def test_fuzz_native_tasks_and_cpus(tmp_path_factory, rows, events, cols):
    _fuzz_native(tmp_path_factory, rows, events, cols)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(*_fuzz_native_args)
def test_fuzz_native_tasks_and_cpus_long(tmp_path_factory, rows, events, cols):
    _fuzz_native(tmp_path_factory, rows, events, cols)


def _fuzz_native(tmp_path_factory, rows, events, cols):
    """Random pid / tid / cpu columns and events on a 2-CPU machine: the replay ends,
    or stops with a TraceError naming the file (never another exception)."""
    p = str(tmp_path_factory.mktemp("fn") / "t.npz")
    opt = {c: np.array([r[i] for r in rows]) for i, c in ((2, "pid"), (3, "tid"), (4, "cpu"))
           if c in cols.split("+")}
    native.write_trace(p, [0x10000000 + r[0] * 4096 for r in rows], [r[1] for r in rows],
                       events=events, **opt)
    try:
        replay(p, ReplayConfig(cpus=2, checker=True))
    except TraceError as e:
        assert str(e).startswith(p)


def test_a_replay_switching_to_numba_mid_trace_agrees(tmp_path, monkeypatch):
    """A replay whose accesses pay for numba runs its first steps on the plain-Python
    loop and the rest compiled (vmsim._jitcache's count; numba loads under the tracer
    that classifies the faults): the statistics of an all-Python replay."""
    import sys
    from vmsim import _jitcache
    path = _head(tmp_path, SAMPLE, 3000)
    cfg = dict(checker=True, step=16384, memory="256M")
    cpu._use_compiled(False)
    try:
        py = _stats(replay(path, ReplayConfig(**cfg)))
    finally:
        cpu._default()
    saved = dict(_jitcache._work)
    modes = []
    try:
        cpu._default()
        if not cpu._lazy[0]:
            pytest.skip("no numba, or VMSIM_NUMBA=0: nothing to switch to")
        _jitcache._work["walk"] = 0
        # The first step (2,048 accesses: 16384 / 8 early) counts 682 units
        # (mmu_batch._ACCESSES_PER_UNIT), the second (the last 945) 315 more.
        monkeypatch.setenv("VMSIM_JIT_AFTER", "900")
        lazy = _stats(Replay(path, ReplayConfig(**cfg), lambda phase, n, r: phase == "replay"
                             and modes.append(cpu._impl["compiled"])).run())
    finally:
        _jitcache._work.update(saved)
        cpu._default()
    assert modes == [False, True], modes
    assert lazy == py
    assert sys.getprofile() is None
