"""The native trace format's rows: bad rows (an error naming the file and row, or
skipped and counted with --skip-bad), Parquet's streamed events and its earlier
layout, fuzzed malformed input."""
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

import vmsim
from vmsim.cli import main
from vmsim.replay import native
from vmsim.replay.readers import open_trace, TraceError, Event
from vmsim.replay.run import Replay, ReplayConfig, replay

_ANON = vmsim.MAP_PRIVATE | vmsim.MAP_ANONYMOUS
_RW = vmsim.PROT_READ | vmsim.PROT_WRITE
BASE = 0x10000000


def _have_pyarrow():
    import importlib.util
    try:
        return importlib.util.find_spec("pyarrow.parquet") is not None
    except (ImportError, ValueError):
        return False


# The fuzz tests draw the formats this install reads (Parquet needs the replay extra).
_EXTS = ["npz"] + (["parquet"] if _have_pyarrow() else [])


def _pq():
    return pytest.importorskip("pyarrow.parquet")


def _write_raw(path, cols, events=None):
    """A native file with the columns as given (any integer dtype, values unchecked):
    np.savez, or a plain Parquet table (nullable: None cells are nulls)."""
    if path.endswith(".npz"):
        arrays = {k: np.asarray(v) for k, v in cols.items()}
        if events is not None:
            arrays.update({f"ev_{k}": np.asarray(v) for k, v in events.items()})
        np.savez(path, **arrays)
    else:
        import pyarrow as pa
        pq = _pq()
        pq.write_table(pa.table({k: pa.array(v, pa.int64()) for k, v in cols.items()}), path)


def _read(path, **kw):
    r = open_trace(path, **kw)
    cs = list(r)
    return r, cs


def _cat(cs, name):
    return np.concatenate([getattr(c, name) for c in cs]).tolist() if cs else []


# (column, bad value, the problem said); the reader is told a 2-CPU machine.
BAD_ROWS = [
    ("kind", 7, "kind 7 (0 read, 1 write, 2 fetch)"),
    ("kind", 257, "kind 257 (0 read, 1 write, 2 fetch)"),      # not wrapped to 1 by uint8
    ("size", -1, "size -1 (0 to 1 MiB)"),
    ("size", (1 << 20) + 1, "size 1048577 (0 to 1 MiB)"),
    ("pid", -3, "pid -3 (0 to 4194303)"),
    ("tid", 1 << 22, "tid 4194304 (0 to 4194303)"),
    ("cpu", -1, "cpu -1, but the machine has 2 CPUs (--cpus)"),
    ("cpu", 5, "cpu 5, but the machine has 2 CPUs (--cpus)"),
]


@pytest.mark.parametrize("ext", ["npz", "parquet"])
@pytest.mark.parametrize("col,value,problem", BAD_ROWS)
def test_a_bad_row_names_the_file_and_row_or_is_skipped(tmp_path, ext, col, value, problem):
    if ext == "parquet":
        _pq()
    p = str(tmp_path / f"t.{ext}")
    cols = {"address": [BASE, BASE + 8, BASE + 16, BASE + 24], "kind": [1, 0, 0, 0],
            "size": [8, 8, 8, 8], "pid": [1] * 4, "tid": [1] * 4, "cpu": [0, 1, 0, 1]}
    cols[col] = list(cols[col])
    cols[col][2] = value
    _write_raw(p, cols)
    with pytest.raises(TraceError) as e:
        _read(p, cpus=2)
    assert str(e.value) == f"{p}: access 2: {problem}"
    r, cs = _read(p, cpus=2, skip_bad=True, chunk=3)
    assert r.bad_lines == 1 and r.accesses == 3
    assert _cat(cs, "addr") == [BASE, BASE + 8, BASE + 24]
    assert [c.rows.tolist() if c.rows is not None else None for c in cs] == [[0, 1], [3]]
    assert all(a.flags.writeable for c in cs for a in (c.addr, c.kind, c.size, c.pid))


def test_a_null_cell_is_a_bad_row(tmp_path):
    _pq()
    p = str(tmp_path / "n.parquet")
    _write_raw(p, {"address": [BASE, None, BASE], "kind": [1, 0, None], "size": [1, 1, 1]})
    with pytest.raises(TraceError, match=r"n.parquet: access 1: no address \(a null cell\)$"):
        _read(p)
    r, cs = _read(p, skip_bad=True)
    assert r.bad_lines == 2 and _cat(cs, "addr") == [BASE]


def test_a_column_of_another_type_is_an_error(tmp_path):
    pq = _pq()
    import pyarrow as pa
    p = str(tmp_path / "f.parquet")
    pq.write_table(pa.table({"address": [1.5], "kind": [0], "size": [1]}), p)
    with pytest.raises(TraceError, match="column 'address' is double, expected integers"):
        _read(p, skip_bad=True)


def _events_trace(path, bad=None):
    """mmap 2 pages, write them, fork at 3, the child (pid 2) writes page 0, exits:
    with an access row ``bad`` (its index) that is bad (kind 9) inserted."""
    addrs = [BASE, BASE + 4096, BASE + 8, BASE, BASE + 4096]
    kinds = [1, 1, 0, 1, 0]
    pids = [1, 1, 1, 2, 1]
    ev = [Event(0, "mmap", 1, BASE, 8192, _RW, _ANON), Event(3, "fork", 1, arg=2),
          Event(4, "exit", 2)]
    if bad is not None:
        addrs.insert(bad, BASE + 12345)
        kinds.insert(bad, 9)
        pids.insert(bad, 1)
        ev = [e._replace(at=e.at + (e.at >= bad)) for e in ev]
    native.write_trace(path, addrs, kinds, events=ev, pid=np.array(pids))


@pytest.mark.parametrize("ext", ["npz", "parquet"])
def test_skipped_rows_are_counted_as_bad_lines_and_events_keep_their_place(tmp_path, capsys, ext):
    """A bad row (kind 9) before the fork: with --skip-bad the replay is the one of the
    trace without it (the events around it stay before the same accesses), and the bad
    row is counted where a text trace's bad lines are (the report, JSON bad_lines)."""
    if ext == "parquet":
        _pq()
    good, bad = str(tmp_path / f"g.{ext}"), str(tmp_path / f"b.{ext}")
    _events_trace(good)
    _events_trace(bad, bad=3)
    rc = main(["replay", bad, "--json", str(tmp_path / "r.json")])
    out, err = capsys.readouterr()
    assert rc == 1 and err == f"vmsim: {bad}: access 3: kind 9 (0 read, 1 write, 2 fetch)\n"
    assert "Traceback" not in err
    rc = main(["replay", bad, "--skip-bad", "--json", str(tmp_path / "r.json")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "malformed rows skipped" in out and "Traceback" not in err
    r = json.loads((tmp_path / "r.json").read_text())
    g = replay(good, ReplayConfig(checker=True))
    assert r["bad_lines"] == 1 and g["bad_lines"] == 0
    assert r["faults"] == g["faults"] == {"minflt": 3, "majflt": 0,
                                          "by_kind": {"anonymous": 2, "cow": 1}, "stack_growth": 0}
    assert r["accesses"] == g["accesses"] and r["tasks"] == g["tasks"]
    # convert drops the bad row and renumbers the events
    rc = main(["convert", bad, str(tmp_path / f"c.{ext}"), "--skip-bad"])
    out, err = capsys.readouterr()
    assert rc == 0 and "5 accesses, 1 malformed rows skipped" in out, err
    _, a = _read(good)
    _, b = _read(str(tmp_path / f"c.{ext}"))
    assert _cat(a, "addr") == _cat(b, "addr") and [c.events for c in a] == [c.events for c in b]


def test_after_skipped_rows_errors_name_the_files_row(tmp_path):
    """A later problem the replay finds (a pid no fork made) names the access by its
    row in the file, not by its place among the accesses kept."""
    p = str(tmp_path / "t.npz")
    ev = [Event(0, "mmap", 1, BASE, 4096, _RW, _ANON)]
    native.write_trace(p, [BASE, BASE, BASE, BASE], [1, 1, 0, 0], events=ev,
                       pid=np.array([1, -1, 1, 9]))
    with pytest.raises(TraceError, match=r"t.npz: access 3: pid 9 before a fork event created it$"):
        replay(p, ReplayConfig(skip_bad=True))


@pytest.mark.parametrize("ext", ["npz", "parquet"])
def test_bad_event_rows(tmp_path, ext):
    if ext == "parquet":
        _pq()
    p = str(tmp_path / f"e.{ext}")
    good = Event(0, "mmap", 1, BASE, 4096, _RW, _ANON)
    for ev, problem in ((Event(1, "jump", 1), "unknown event 'jump' (one of mmap, munmap, "
                                               "mprotect, brk, fork, exit, switch)"),
                        (Event(-1, "brk", 1), "at -1 (the access it comes before, from 0)"),
                        (Event(1, "exit", -2), "pid -2 (0 to 4194303)"),
                        (Event(1, "fork", 1, arg=-5), "fork of pid -5 (0 to 4194303)"),
                        (Event(1, "switch", 1, arg=1, cpu=-2), "cpu -2 (-1 or 0 to 8191)")):
        cols = {c: [getattr(e, c) for e in (good, ev)] for c in native.EVENT_COLS + ("op",)}
        if ext == "npz":
            _write_raw(p, {"address": [BASE, BASE], "kind": [1, 0], "size": [1, 1]},
                       {k: np.array(v, dtype="U8" if k == "op" else np.int64) for k, v in cols.items()})
        else:
            native.write_trace(p, [BASE, BASE], [1, 0], events=[good])
            _append_event_rows(p, [ev])
        with pytest.raises(TraceError) as e:
            _read(p)
        assert str(e.value) == f"{p}: event 1: {problem}"
        r, cs = _read(p, skip_bad=True)
        assert r.bad_lines == 1 and [e for c in cs for e in c.events] == [good]


def _append_event_rows(path, evs):
    """Add events to a Parquet trace in the new layout, unchecked (TraceWriter.event
    refuses an unknown op): its rows, with the event count in the metadata."""
    import pyarrow as pa
    pq = _pq()
    f = pq.ParquetFile(path)
    t = f.read()
    meta = dict(f.metadata.metadata)
    extra = {name: pa.nulls(len(evs), t.schema.field(name).type) for name in t.schema.names}
    extra["ev_op"] = pa.array([e.op for e in evs], pa.string())
    for c in native.EVENT_COLS:
        extra[f"ev_{c}"] = pa.array([getattr(e, c) for e in evs], pa.int64())
    meta[native.PQ_EVENTS] = str(int(meta[native.PQ_EVENTS]) + len(evs)).encode()
    n = int(meta[native.PQ_ACCESSES])
    with pq.ParquetWriter(path, t.schema.with_metadata(meta)) as w:
        w.write_table(t.slice(0, n))
        w.write_table(pa.concat_tables([t.slice(n), pa.table(extra, schema=t.schema)]))


# --- Parquet's events --------------------------------------------------------------
def _old_parquet_writer(path, addr, kind, size, events):
    """The writer of the earlier layout (vmsim before the events were rows), as it was:
    the accesses as row groups, the events as JSON in the schema metadata."""
    import pyarrow as pa
    pq = _pq()
    t = pa.table({"address": np.asarray(addr, np.int64), "kind": np.asarray(kind, np.uint8),
                  "size": np.asarray(size, np.int64)})
    with pq.ParquetWriter(path + ".tmp", t.schema) as w:
        w.write_table(t)
    meta = json.dumps([e._asdict() for e in events])
    f = pq.ParquetFile(path + ".tmp")
    schema = f.schema_arrow.with_metadata({b"vmsim.events": meta.encode()})
    with pq.ParquetWriter(path, schema) as w:
        for b in f.iter_batches(batch_size=1 << 20):
            w.write_batch(b)
    os.unlink(path + ".tmp")


def test_parquet_files_of_the_earlier_layout_still_replay(tmp_path):
    _pq()
    addrs, kinds = [BASE, BASE + 4096, BASE, BASE + 4096], [1, 1, 1, 0]
    ev = [Event(3, "exit", 2), Event(0, "mmap", 0, BASE, 8192, _RW, _ANON), Event(2, "fork", 0, arg=2)]
    old, new = str(tmp_path / "old.parquet"), str(tmp_path / "new.parquet")
    _old_parquet_writer(old, addrs, kinds, [1] * 4, ev)
    native.write_trace(new, addrs, kinds, events=ev)
    a, b = replay(old, ReplayConfig(checker=True)), replay(new, ReplayConfig(checker=True))
    assert a["faults"] == b["faults"] and a["faults"]["by_kind"] == {"anonymous": 2, "cow": 1}
    assert a["tasks"] == b["tasks"] and a["tasks"]["processes"] == 2
    _, cs = _read(old)
    assert [e for c in cs for e in c.events] == sorted(ev, key=lambda e: e.at)
    # a bad JSON event is a bad row: said, or skipped
    _old_parquet_writer(old, addrs, kinds, [1] * 4, ev[:1])
    pq = _pq()
    f = pq.ParquetFile(old)
    doc = json.loads(f.schema_arrow.metadata[b"vmsim.events"]) + [{"at": "x", "op": "brk"}]
    pq.write_table(f.read().replace_schema_metadata({b"vmsim.events": json.dumps(doc).encode()}), old)
    with pytest.raises(TraceError, match=r"old.parquet: event 1: not an event: invalid literal"):
        _read(old)
    r, cs = _read(old, skip_bad=True)
    assert r.bad_lines == 1 and [e for c in cs for e in c.events] == ev[:1]


def test_parquet_events_are_rows_read_in_batches(tmp_path, monkeypatch):
    """The events are rows after the accesses, in row groups of their own (no JSON in
    the metadata), read a batch at a time as the accesses reach them; given out of
    order they are written sorted by at, stably."""
    pq = _pq()
    monkeypatch.setattr(native, "EV_BATCH", 4)
    p = str(tmp_path / "e.parquet")
    n = 50
    ev = [Event(i // 2, "brk", 1, addr=i) for i in range(2 * n)][::-1]   # out of order
    native.write_trace(p, np.arange(n) * 8, np.zeros(n), events=ev)
    f = pq.ParquetFile(p)
    meta = f.metadata.metadata
    assert b"vmsim.events" not in meta and meta[native.PQ_ACCESSES] == b"50" \
        and meta[native.PQ_EVENTS] == b"100"
    sizes = [f.metadata.row_group(g).num_rows for g in range(f.num_row_groups)]
    assert sum(sizes) == 150 and sizes[0] == 50 and max(sizes[1:]) == 4
    batches = []
    real = native._parquet_events

    def spy(reader, f, groups):
        for row in real(reader, f, groups):
            batches.append(row[0])
            yield row
    monkeypatch.setattr(native, "_parquet_events", spy)
    r = open_trace(p, chunk=10)
    it = iter(r)
    c = next(it)
    # At most EV_BATCH events a chunk (it ends at the next event's access), and one
    # event read ahead: not the other 95.
    assert [e.at for e in c.events] == [0, 0, 1, 1] and len(c.addr) == 2 and len(batches) <= 5
    cs = [c] + list(it)
    got = [e for c in cs for e in c.events]
    assert got == sorted(ev, key=lambda e: e.at) and max(len(c.events) for c in cs) == 4
    assert [e.addr for e in got[:4]] == [1, 0, 3, 2]         # stable: as given within an at
    assert np.concatenate([c.addr for c in cs]).tolist() == (np.arange(n) * 8).tolist()
    # the replay runs each event before its access ``at``, in the file's order
    seen, ran = [], [0]
    rp = Replay(p, ReplayConfig(checker=True))
    run = rp._run

    def counting(q, chunk, lo, hi, signals):
        ran[0] += hi - lo
        return run(q, chunk, lo, hi, signals)
    rp._run = counting
    rp._event = lambda tasks, e: seen.append((e, ran[0]))
    rp.run()
    assert seen == [(e, e.at) for e in got]


def test_npz_events_are_read_in_batches(tmp_path, monkeypatch):
    """.npz events (arrays ev_*) are read EV_BATCH rows at a time as the accesses reach
    them, not whole (1,000,000 events took 584 MiB to read, now 97 MiB); the writer
    spools them to files and, given out of order, writes them sorted by at, stably."""
    monkeypatch.setattr(native, "EV_BATCH", 4)
    p = str(tmp_path / "e.npz")
    n = 50
    ev = [Event(i // 2, "brk", 1, addr=i) for i in range(2 * n)][::-1]   # out of order
    native.write_trace(p, np.arange(n) * 8, np.zeros(n), events=ev)
    with np.load(p) as z:
        assert z["ev_at"].tolist() == sorted(e.at for e in ev)
        assert z["ev_addr"].tolist()[:4] == [1, 0, 3, 2]              # stable
        assert z["ev_op"].dtype == np.dtype("U8") and set(z["ev_op"].tolist()) == {"brk"}
    rows = []
    real = native._npz_event_rows

    def spy(path, read, k):
        for row in real(path, read, k):
            rows.append(row[0])
            yield row
    monkeypatch.setattr(native, "_npz_event_rows", spy)
    reads = []
    stream = native._npy_stream

    def counting(path, z, member, *a):
        read, k = stream(path, z, member, *a)

        def rd(m):
            reads.append((member, m))
            return read(m)
        return rd, k
    monkeypatch.setattr(native, "_npy_stream", counting)
    r = open_trace(p, chunk=10)
    it = iter(r)
    c = next(it)
    # At most EV_BATCH events a chunk, and a batch read ahead: not the other 90.
    assert [e.at for e in c.events] == [0, 0, 1, 1] and len(c.addr) == 2 and len(rows) <= 8
    assert max(m for member, m in reads if member.startswith("ev_")) == 4
    cs = [c] + list(it)
    got = [e for c in cs for e in c.events]
    assert got == sorted(ev, key=lambda e: e.at) and max(len(c.events) for c in cs) == 4
    assert np.concatenate([c.addr for c in cs]).tolist() == (np.arange(n) * 8).tolist()


def test_npz_events_out_of_order_in_the_file_are_read_whole_and_sorted(tmp_path):
    """An .npz made by hand may hold its events out of order of at: they are read
    whole and sorted (stably), as before; a bad one is said or skipped either way."""
    p = str(tmp_path / "h.npz")
    # _events_trace's, the events out of order
    evs = {"at": [4, 0, 3], "op": np.array(["exit", "mmap", "fork"]), "pid": [2, 1, 1],
           "addr": [0, BASE, 0], "length": [0, 8192, 0], "prot": [0, _RW, 0],
           "flags": [0, _ANON, 0], "arg": [0, 0, 2]}
    addrs, kinds = [BASE, BASE + 4096, BASE + 8, BASE, BASE + 4096], [1, 1, 0, 1, 0]
    _write_raw(p, {"address": addrs, "kind": kinds, "size": [1] * 5,
                   "pid": [1, 1, 1, 2, 1]}, evs)
    _, cs = _read(p)
    assert [(e.at, e.op) for c in cs for e in c.events] == [(0, "mmap"), (3, "fork"), (4, "exit")]
    g = str(tmp_path / "g.npz")
    _events_trace(g)
    a, b = replay(p, ReplayConfig(checker=True)), replay(g, ReplayConfig(checker=True))
    assert a["faults"] == b["faults"] == {"minflt": 3, "majflt": 0, "by_kind":
                                          {"anonymous": 2, "cow": 1}, "stack_growth": 0}
    assert a["tasks"] == b["tasks"]
    evs["op"] = np.array(["exit", "mmap", "frob"])
    _write_raw(p, {"address": addrs, "kind": kinds, "size": [1] * 5}, evs)
    with pytest.raises(TraceError, match=r"h.npz: event 2: unknown event 'frob'"):
        _read(p)
    for streamed in (False, True):
        if streamed:           # in order: streamed, the bad one said when reached
            order = [1, 2, 0]
            _write_raw(p, {"address": addrs, "kind": kinds, "size": [1] * 5},
                       {k: np.asarray(v)[order] for k, v in evs.items()})
            with pytest.raises(TraceError, match=r"h.npz: event 1: unknown event 'frob'"):
                _read(p)
        r, cs = _read(p, skip_bad=True)
        assert r.bad_lines == 1 and [e.op for c in cs for e in c.events] == ["mmap", "exit"]


@pytest.mark.parametrize("member,problem", [
    ("ev_at", "bad event arrays: ev_at.npy: expected integers, got float64"),
    ("ev_op", "bad event arrays: ev_op.npy: expected strings, got int64"),
    ("ev_pid", "bad event arrays: event columns differ in length"),
])
def test_npz_event_arrays_of_the_wrong_kind(tmp_path, member, problem):
    p = str(tmp_path / "w.npz")
    evs = {"at": [0], "op": np.array(["brk"]), "pid": [1], "addr": [BASE], "length": [0],
           "prot": [0], "flags": [0], "arg": [0]}
    c = member[3:]
    evs[c] = {"at": [0.5], "op": [7], "pid": [1, 1]}[c]
    _write_raw(p, {"address": [BASE], "kind": [0], "size": [1]}, evs)
    with pytest.raises(TraceError) as e:
        _read(p)
    assert str(e.value) == f"{p}: {problem}"


def test_parquet_writer_without_add_key_value_metadata(tmp_path, monkeypatch):
    """pyarrow before 17 has no ParquetWriter.add_key_value_metadata: the writer then
    writes the file again with the counts in its schema's metadata; it reads the same.
    An empty trace is a file of no row groups."""
    pq = _pq()
    ev = [Event(1, "brk", 1, addr=5), Event(0, "mmap", 1, BASE, 4096, _RW, _ANON)]
    a = str(tmp_path / "a.parquet")
    native.write_trace(a, [BASE, BASE + 8], [1, 0], events=ev)
    monkeypatch.delattr(pq.ParquetWriter, "add_key_value_metadata")
    b = str(tmp_path / "b.parquet")
    native.write_trace(b, [BASE, BASE + 8], [1, 0], events=ev)
    assert not os.path.exists(b + ".tmp")
    ra, rb = (list(open_trace(p)) for p in (a, b))
    assert [(c.addr.tolist(), c.events) for c in ra] == [(c.addr.tolist(), c.events) for c in rb]
    assert [e for c in rb for e in c.events] == ev[::-1]
    e = str(tmp_path / "e.parquet")
    native.write_trace(e, [], [])
    r, cs = _read(e)
    assert cs == [] and r.accesses == 0


# --- fuzzing -----------------------------------------------------------------------
_val = st.one_of(st.integers(-3, 10), st.sampled_from([-(1 << 63), (1 << 63) - 1, 1 << 20,
                                                       (1 << 20) + 1, 1 << 22, 255, 256]))
_fuzz_rows = st.lists(st.tuples(_val, _val, _val, _val, _val, _val), max_size=12)
_fuzz_events = st.lists(st.tuples(_val, st.sampled_from(list(native.EVENT_OPS) + ["bogus", ""]),
                                  _val, _val, _val), max_size=6)


_fuzz_rows_args = (_fuzz_rows, _fuzz_events, st.sampled_from(_EXTS), st.booleans(),
                   st.integers(2, 5), st.sets(st.sampled_from(["pid", "tid", "cpu"])))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(*_fuzz_rows_args)
def test_fuzz_native_rows(tmp_path_factory, rows, events, ext, skip, chunk, opt):
    _fuzz_rows_check(tmp_path_factory, rows, events, ext, skip, chunk, opt)


@pytest.mark.slow
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(*_fuzz_rows_args)
def test_fuzz_native_rows_long(tmp_path_factory, rows, events, ext, skip, chunk, opt):
    _fuzz_rows_check(tmp_path_factory, rows, events, ext, skip, chunk, opt)


def _fuzz_rows_check(tmp_path_factory, rows, events, ext, skip, chunk, opt):
    """Random values in every column and event field: the reader yields only good rows
    (and counts the rest with skip_bad) or stops with a TraceError naming the file
    and an access or event row; never another exception, never a hang."""
    if ext == "parquet":
        _pq()
    p = str(tmp_path_factory.mktemp("fr") / f"t.{ext}")
    names = ["address", "kind", "size", "pid", "tid", "cpu"]
    cols = {c: np.array([r[i] for r in rows], np.int64) for i, c in enumerate(names)
            if i < 3 or c in opt}
    evs = [Event(at, op, pid, 0, 0, 0, 0, arg, cpu) for at, op, pid, arg, cpu in events]
    if ext == "npz":
        ea = {c: np.array([getattr(e, c) for e in evs], np.int64) for c in native.EVENT_COLS}
        ea["op"] = np.array([e.op for e in evs], "U8")
        _write_raw(p, cols, ea)
    else:
        good = [e for e in evs if e.op in native.EVENT_OPS]
        native.write_trace(p, cols["address"], np.zeros(len(rows), np.uint8), events=good,
                           **{c: cols[c] for c in opt})
        import pyarrow as pa
        pq = _pq()
        f = pq.ParquetFile(p)
        t = f.read()
        n = len(rows)
        k = pa.array(np.concatenate([cols["kind"], np.zeros(len(good), np.int64)]))
        s = pa.array(np.concatenate([cols["size"], np.zeros(len(good), np.int64)]))
        t = t.set_column(t.schema.get_field_index("kind"), "kind", k) \
             .set_column(t.schema.get_field_index("size"), "size", s)
        with pq.ParquetWriter(p, t.schema.with_metadata(f.metadata.metadata)) as w:
            w.write_table(t.slice(0, n))
            if len(good):
                w.write_table(t.slice(n))
    try:
        r = open_trace(p, chunk=chunk, skip_bad=skip, cpus=2)
        got = 0
        for c in r:
            assert len(c.addr) == len(c.kind) == len(c.size) <= chunk
            assert c.kind.max(initial=0) <= 2 and c.size.min(initial=0) >= 0
            assert c.size.max(initial=0) <= 1 << 20
            if c.cpu is not None:
                assert c.cpu.min(initial=0) >= 0 and c.cpu.max(initial=0) < 2
            for e in c.events:
                assert e.op in native.EVENT_OPS and e.at >= 0
            got += len(c.addr)
        assert got == r.accesses and (skip or r.bad_lines == 0)
        assert r.accesses + (r.bad_lines if skip else 0) >= len(rows) or not skip
    except TraceError as e:
        assert not skip
        assert str(e).startswith(f"{p}: access ") or str(e).startswith(f"{p}: event "), str(e)


_damage_args = (st.sampled_from(_EXTS), st.sampled_from(["cut", "flip", "zero"]),
                st.floats(0, 1), st.integers(0, 255), st.booleans())


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(*_damage_args)
def test_fuzz_damaged_native_files(tmp_path_factory, ext, how, where, byte, skip):
    _damaged(tmp_path_factory, ext, how, where, byte, skip)


@pytest.mark.slow
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(*_damage_args)
def test_fuzz_damaged_native_files_long(tmp_path_factory, ext, how, where, byte, skip):
    _damaged(tmp_path_factory, ext, how, where, byte, skip)


def _damaged(tmp_path_factory, ext, how, where, byte, skip):
    """A valid native trace with a byte changed or its tail cut: a TraceError naming
    the file, or rows read (the damage was in what no reader checks); nothing else."""
    if ext == "parquet":
        _pq()
    p = str(tmp_path_factory.mktemp("fd") / f"t.{ext}")
    native.write_trace(p, np.arange(40) * 4096, np.arange(40) % 3, np.arange(40) % 9,
                       events=[Event(3, "mmap", 1, BASE, 4096, 3, 0x22), Event(7, "exit", 1)],
                       pid=np.ones(40, np.int64))
    data = bytearray(open(p, "rb").read())
    i = int(where * (len(data) - 1))
    if how == "cut":
        data = data[:i]
    elif how == "flip":
        data[i] ^= byte or 1
    else:
        data[i:i + 8] = bytes(8)
    open(p, "wb").write(bytes(data))
    try:
        for _ in open_trace(p, chunk=7, skip_bad=skip):
            pass
    except TraceError as e:
        assert str(e).startswith(p)


# --- read once ---------------------------------------------------------------------
def _same(r):
    """A replay's result without its timings."""
    r = json.loads(json.dumps(r))
    for k in ("seconds", "accesses_per_s"):
        r.pop(k)
    r["series"].pop("t")
    return r


def _counting_reads(monkeypatch, chunk=None):
    """Count the passes over trace files (a TraceReader iterated); ``chunk``: the
    readers' chunk size."""
    from vmsim.replay import readers, run
    reads = []
    real = readers.TraceReader.__iter__

    def counted(self):
        reads.append(self.path)
        return real(self)
    monkeypatch.setattr(readers.TraceReader, "__iter__", counted)
    if chunk:
        opener = run.open_trace
        monkeypatch.setattr(run, "open_trace", lambda *a, **kw: opener(*a, **{**kw, "chunk": chunk}))
    return reads


def _sample_traces(tmp_path):
    """The first 6,000 lines of the built-in sample with a malformed line, and the
    same as .npz with a bad row (kind 9): text and native traces without events."""
    import lzma
    from vmsim.replay.cli import SAMPLE
    with lzma.open(SAMPLE, "rt") as f:
        lines = [next(f) for _ in range(6000)]
    lines.insert(3000, " L zzzz,8\n")
    text = tmp_path / "s.lackey"
    text.write_text("".join(lines))
    cs = list(open_trace(str(text), skip_bad=True))
    addr = np.concatenate([c.addr for c in cs])
    kind = np.concatenate([c.kind for c in cs])
    size = np.concatenate([c.size for c in cs])
    npz = str(tmp_path / "s.npz")
    _write_raw(npz, {"address": np.insert(addr, 2000, BASE), "kind": np.insert(kind, 2000, 9),
                     "size": np.insert(size, 2000, 1)})
    return [str(text), npz]


def test_a_trace_over_the_keep_threshold_is_read_once_with_the_same_report(tmp_path, monkeypatch):
    """A trace longer than run.KEEP (lowered here to 1,000 accesses; chunks of 700) is
    read and parsed once: the scan spools what it read and the replay takes it from
    there. The report (inferred areas, faults, series, bad lines) is the one of the
    same trace kept in memory."""
    from vmsim.replay import run
    for path in _sample_traces(tmp_path):
        cfg = dict(checker=True, skip_bad=True, memory="1G")
        reads = _counting_reads(monkeypatch, chunk=700)
        kept = _same(replay(path, ReplayConfig(**cfg)))
        assert reads == [path] and kept["accesses"]["total"] > 5000
        monkeypatch.setattr(run, "KEEP", 1000)
        reads.clear()
        spooled = _same(replay(path, ReplayConfig(**cfg)))
        assert reads == [path]
        assert spooled == kept
        assert kept["bad_lines"] == 1 and len(kept["inferred_areas"]) >= 4
        assert len(kept["series"]["accesses"]) > 8        # chunk by chunk, as read
        monkeypatch.setattr(run, "KEEP", 1 << 21)


def test_a_spool_that_cannot_be_written_reads_the_trace_again(tmp_path, monkeypatch):
    import errno
    from vmsim.replay import run
    path = _sample_traces(tmp_path)[0]
    reads = _counting_reads(monkeypatch, chunk=700)
    kept = _same(replay(path, ReplayConfig(skip_bad=True, memory="1G")))
    monkeypatch.setattr(run, "KEEP", 1000)

    def full(self, c):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(run._Spool, "_write", full)
    reads.clear()
    assert _same(replay(path, ReplayConfig(skip_bad=True, memory="1G"))) == kept
    assert reads == [path, path]


@pytest.mark.parametrize("ext", ["npz", "parquet"])
def test_a_native_trace_with_events_is_not_scanned(tmp_path, monkeypatch, ext):
    """Its areas come from its events, not inference: only the events are read
    before the replay, which reads the accesses once; the report is the one of the
    replay that scanned it first (has_events made to say no: the earlier path)."""
    if ext == "parquet":
        _pq()
    from vmsim.replay import run
    p = str(tmp_path / f"e.{ext}")
    _events_trace(p, bad=2)
    reads = _counting_reads(monkeypatch, chunk=2)
    monkeypatch.setattr(run, "KEEP", 2)
    once = Replay(p, ReplayConfig(checker=True, skip_bad=True))
    r = _same(once.run())
    assert reads == [p] and r["inferred_areas"] == [] and r["bad_lines"] == 1
    assert r["faults"]["by_kind"] == {"anonymous": 2, "cow": 1}
    monkeypatch.setattr(native, "has_events", lambda reader: (False, 0))
    reads.clear()
    assert _same(replay(p, ReplayConfig(checker=True, skip_bad=True))) == r
    assert reads == [p]                # scanned, and spooled past KEEP


@pytest.mark.parametrize("ext", ["npz", "parquet"])
def test_convert_keeps_the_columns_when_the_first_chunk_is_only_events(tmp_path, monkeypatch, ext):
    """More than EV_BATCH events before the first access make a first chunk of events
    and no access rows (its columns absent); convert still writes the source's pid,
    tid and cpu columns, read from the file, not from that chunk."""
    if ext == "parquet":
        _pq()
    monkeypatch.setattr(native, "EV_BATCH", 4)
    src = str(tmp_path / f"s.{ext}")
    n = 20
    pid = np.ones(n, np.int64)
    tid = np.full(n, 1, np.int64)
    cpu = np.zeros(n, np.int64)
    ev = [Event(0, "brk", 1, addr=i) for i in range(6)]
    native.write_trace(src, np.arange(n) * 8, np.zeros(n), events=ev, pid=pid, tid=tid, cpu=cpu)
    first = next(iter(open_trace(src, chunk=8)))
    assert len(first.addr) == 0 and len(first.events) == 4
    dst = str(tmp_path / "d.npz")
    assert native.convert(src, dst, chunk=8) == (n, 0)
    cs = list(open_trace(dst))
    assert np.concatenate([c.pid for c in cs]).tolist() == pid.tolist()
    assert np.concatenate([c.tid for c in cs]).tolist() == tid.tolist()
    assert np.concatenate([c.cpu for c in cs]).tolist() == cpu.tolist()
    assert [e for c in cs for e in c.events] == ev


def test_convert_into_a_folder_it_cannot_write_names_the_output(tmp_path, capsys, monkeypatch):
    """The writer's temporary folder goes beside the output; a folder it cannot write
    (EACCES, EROFS) is said of the output file the user named, not of vmsim's
    temporary folder."""
    import errno
    src = str(tmp_path / "s.npz")
    native.write_trace(src, [BASE], [0])
    dst = str(tmp_path / "out.npz")

    def refused(prefix="", dir=None, **kw):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES),
                              os.path.join(dir or ".", prefix + "x1y2z3"))
    monkeypatch.setattr(native.tempfile, "mkdtemp", refused)
    assert main(["convert", src, dst]) == 1
    out, err = capsys.readouterr()
    assert f"{dst}: {os.strerror(errno.EACCES)}" in err and "vmsim-convert" not in err
    assert not os.path.exists(dst)
