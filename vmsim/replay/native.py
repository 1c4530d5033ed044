"""vmsim's native trace format: columns, in .npz or Parquet.

Columns (one row per access, in program order):
    address  int64   (a kernel-half address is negative, as the CPU's 64-bit value)
    kind     uint8   0 read, 1 write, 2 instruction fetch
    size     int64   bytes, 0 to 1 MiB (an access that straddles a page is split by the replay)
    pid, tid, cpu    int64, optional: the process, the thread (a tid first met is a new
                     thread of its pid's process), the CPU the access runs on (the task
                     is scheduled there first: a context switch, and with --tlb that
                     CPU's TLB)
Events (process-level changes the access stream cannot show), each taking effect
before access ``at``: columns at, op (mmap munmap mprotect brk fork exit switch), pid
(the task acting: a pid, or a tid), addr, length, prot, flags, arg (fork: the child's
pid; switch: the pid or tid switched to, 0 for idle; exit: the status), cpu (switch:
the CPU, -1 for the task's own; optional in a file).

In .npz the events are arrays ``ev_*`` (``ev_op`` as strings). In Parquet they are
rows of the same file after the accesses, in row groups of their own, with columns
``ev_*`` (null in the access rows, as the access columns are in the event rows);
the key-value metadata ``vmsim.accesses`` says where they start. A reader takes each
stream's row groups and columns only, so events are read in batches as accesses are.
Files written before (their events as JSON in the schema metadata ``vmsim.events``)
are still read.

Both are written and read in chunks: the .npz writer spools each column (and each
event column) to a temporary file and zips it at the end (uncompressed, so readers
stream it); the .npz reader parses each member's .npy header and reads rows on demand,
the events EV_BATCH at a time when they are in order of at (as written; else whole).

A row the format cannot hold (a kind other than 0-2, a size outside 0 to 1 MiB, a
pid or tid outside 0 to PID_MAX_LIMIT - 1, a cpu the machine lacks, a null cell; an
event of an unknown op, at < 0, a cpu below -1, events out of order) stops the reader
with ``FILE: access N: problem`` (``event N`` for the Nth event row; both counted
from 0), or with ``skip_bad`` is skipped and counted in ``bad_lines``, as a text
trace's malformed lines are. An event's ``at`` counts the file's rows: the events
around a skipped access keep their place among the others.
"""
import json
import lzma
import os
import shutil
import tempfile
import zipfile
import zlib

import numpy as np

from vmsim.replay.readers import Chunk, Event, EVENT_OPS, TraceError

COLUMNS = (("address", np.int64), ("kind", np.uint8), ("size", np.int64))
OPTIONAL = (("pid", np.int64), ("tid", np.int64), ("cpu", np.int64))
EVENT_COLS = ("at", "pid", "addr", "length", "prot", "flags", "arg", "cpu")
# Event columns a file may lack (written before they existed), with their default.
EVENT_OPTIONAL = {"cpu": -1}
# Bounds of a row's values. PID_MAX_LIMIT (include/linux/threads.h, 64-bit): no pid
# or tid reaches it. NR_CPUS: x86-64's CONFIG_NR_CPUS_RANGE_END with MAXSMP (the
# replay's --cpus bound); the machine's own CPU count when the reader is told it.
PID_MAX_LIMIT = 4 << 20
NR_CPUS = 8192
MAX_SIZE = 1 << 20
# Events per batch read or written.
EV_BATCH = 1 << 16
# An .npz's ev_op: the op names as fixed-width strings (the longest is "mprotect").
_EV_OP = "U8"
# Parquet key-value metadata: the access rows (the events follow), the event rows.
PQ_ACCESSES = b"vmsim.accesses"
PQ_EVENTS = b"vmsim.event_rows"
PQ_OLD_EVENTS = b"vmsim.events"          # the earlier layout: events as JSON
# What zipfile raises on a damaged .npz (a bad CRC-32 or header, a method it lacks).
_ZIP_ERRORS = (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, zlib.error,
               lzma.LZMAError)


def _pa_schema(cols):
    import pyarrow as pa
    acc = [pa.field(name, pa.from_numpy_dtype(np.dtype(dt))) for name, dt in cols]
    ev = [pa.field("ev_op", pa.string())] + [pa.field(f"ev_{c}", pa.int64()) for c in EVENT_COLS]
    return pa.schema(acc + ev)


class TraceWriter:
    """Write a native trace chunk by chunk: ``w.write(chunk)``, ``w.event(ev)``,
    ``w.close()`` (or use it as a context manager). Events are written in order of
    ``at`` (stably: events of one ``at`` in the order given)."""

    def __init__(self, path, optional=()):
        self.path = path
        low = path.lower()
        if low.endswith(".npz"):
            self.fmt = "npz"
        elif low.endswith(".parquet") or low.endswith(".pq"):
            self.fmt = "parquet"
        else:
            raise ValueError(f"{path}: the native format is .npz or .parquet")
        d = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(d):           # said of the output, not of a temporary file in it
            import errno
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        self.optional = tuple(optional)
        self.events = []                   # not yet spooled
        self.n = 0
        self.n_events = 0
        self._cols = COLUMNS + tuple(c for c in OPTIONAL if c[0] in self.optional)
        try:
            self._tmp = tempfile.mkdtemp(prefix="vmsim-convert-",
                                         dir=os.path.dirname(os.path.abspath(path)) or ".")
        except OSError as e:               # said of the output too (EACCES, EROFS)
            raise OSError(e.errno, e.strerror, path) from None
        self._sorted = True                # the events given in order of at
        self._last_at = None
        if self.fmt == "npz":
            self._files = {name: open(os.path.join(self._tmp, name), "wb") for name, _ in self._cols}
            self._evfiles = None           # the events, spooled in the order given
        else:
            import pyarrow.parquet as pq
            self._schema = _pa_schema(self._cols)
            self._pq = pq.ParquetWriter(self.path + ".tmp", self._schema)
            self._evpq = None              # the events, spooled in the order given

    def write(self, chunk):
        cols = {"address": chunk.addr, "kind": chunk.kind, "size": chunk.size,
                "pid": chunk.pid, "tid": chunk.tid, "cpu": chunk.cpu}
        rows = getattr(chunk, "rows", None)
        for e in chunk.events:
            if rows is not None:
                # A reader that skipped bad rows: ``at`` counts the source's rows; here
                # it counts the rows written.
                e = e._replace(at=chunk.first + int(np.searchsorted(rows, e.at)))
            self.event(e)
        k = len(chunk.addr)
        if self.fmt == "npz":
            for name, dt in self._cols:
                np.ascontiguousarray(cols[name], dtype=dt).tofile(self._files[name])
        elif k:
            import pyarrow as pa
            arrays = [pa.array(np.asarray(cols[name], dtype=dt)) for name, dt in self._cols]
            arrays += [pa.nulls(k, f.type) for f in list(self._schema)[len(arrays):]]
            self._pq.write_table(pa.Table.from_arrays(arrays, schema=self._schema))
        self.n += k

    def event(self, ev):
        if ev.op not in EVENT_OPS:
            raise ValueError(f"unknown event {ev.op!r}: one of {', '.join(EVENT_OPS)}")
        self.events.append(ev)
        self.n_events += 1
        if self._last_at is not None and ev.at < self._last_at:
            self._sorted = False
        self._last_at = ev.at
        if len(self.events) >= EV_BATCH:
            self._spool_events()

    def close(self):
        try:
            if self.fmt == "npz":
                self._close_npz()
            else:
                self._close_parquet()
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def _close_npz(self):
        for f in self._files.values():
            f.close()
        self._spool_events()
        if self._evfiles is None:
            self._spool_events(force=True)            # no events: empty arrays
        for f in self._evfiles.values():
            f.close()
        raw = {c: os.path.join(self._tmp, f"ev_{c}") for c in self._evfiles}
        dts = {c: np.dtype(_EV_OP if c == "op" else np.int64) for c in raw}
        with zipfile.ZipFile(self.path + ".tmp", "w", zipfile.ZIP_STORED, allowZip64=True) as z:
            for name, dt in self._cols:
                _zip_npy(z, name, os.path.join(self._tmp, name), np.dtype(dt), self.n)
            if self._sorted:
                for c in raw:
                    _zip_npy(z, f"ev_{c}", raw[c], dts[c], self.n_events)
            else:
                # Given out of order: sorted in memory, as columns (a stable sort).
                order = np.argsort(np.fromfile(raw["at"], np.int64), kind="stable")
                for c in raw:
                    with z.open(f"ev_{c}.npy", "w", force_zip64=True) as f:
                        np.lib.format.write_array(f, np.fromfile(raw[c], dts[c])[order],
                                                  allow_pickle=False)
        os.replace(self.path + ".tmp", self.path)

    def _event_table(self, evs):
        import pyarrow as pa
        cols = {"ev_op": pa.array([e.op for e in evs], pa.string())}
        for c in EVENT_COLS:
            cols[f"ev_{c}"] = pa.array(np.array([getattr(e, c) for e in evs], dtype=np.int64))
        return pa.table(cols)

    def _spool_events(self, force=False):
        if self.fmt == "npz":
            # Each event column to a file of its own (ev_op as fixed-width strings).
            if not self.events and not force:
                return
            if self._evfiles is None:
                self._evfiles = {c: open(os.path.join(self._tmp, f"ev_{c}"), "wb")
                                 for c in EVENT_COLS + ("op",)}
            for c in EVENT_COLS:
                np.array([getattr(e, c) for e in self.events], np.int64).tofile(self._evfiles[c])
            np.array([e.op for e in self.events], _EV_OP).tofile(self._evfiles["op"])
            self.events = []
            return
        import pyarrow.parquet as pq
        if not self.events:
            return
        t = self._event_table(self.events)
        if self._evpq is None:
            self._evpq = pq.ParquetWriter(os.path.join(self._tmp, "events.parquet"), t.schema)
        self._evpq.write_table(t)
        self.events = []

    def _close_parquet(self):
        import pyarrow as pa
        import pyarrow.parquet as pq
        if self._evpq is not None:
            self._spool_events()
            self._evpq.close()
            f = pq.ParquetFile(os.path.join(self._tmp, "events.parquet"))
            if self._sorted:
                batches = f.iter_batches(batch_size=EV_BATCH)
            else:
                # Given out of order (w.event calls after the accesses): sorted in
                # memory, as columns (a stable sort, as the reader once sorted them).
                t = f.read()
                t = t.take(pa.compute.sort_indices(t, [("ev_at", "ascending")]))
                batches = t.to_batches(max_chunksize=EV_BATCH)
        else:
            t = self._event_table(sorted(self.events, key=lambda e: e.at))
            batches = t.to_batches(max_chunksize=EV_BATCH) if len(t) else []
        nacc = len(self._cols)
        for b in batches:
            # Rows of their own after the accesses': each write_table is new row groups.
            arrays = [pa.nulls(len(b), f.type) for f in list(self._schema)[:nacc]] + \
                [b.column(f.name) for f in list(self._schema)[nacc:]]
            self._pq.write_table(pa.Table.from_arrays(arrays, schema=self._schema))
        meta = {PQ_ACCESSES: str(self.n).encode(), PQ_EVENTS: str(self.n_events).encode()}
        if hasattr(self._pq, "add_key_value_metadata"):          # pyarrow >= 17
            self._pq.add_key_value_metadata(meta)
            self._pq.close()
            os.replace(self.path + ".tmp", self.path)
            return
        # Older pyarrow sets key-value metadata only when the writer opens: again,
        # now that the counts are known.
        self._pq.close()
        f = pq.ParquetFile(self.path + ".tmp")
        with pq.ParquetWriter(self.path, f.schema_arrow.with_metadata(meta)) as w:
            for i in range(f.num_row_groups):
                w.write_table(f.read_row_group(i))
        os.unlink(self.path + ".tmp")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.close()
            return
        # a failed conversion leaves no partial file
        if self.fmt == "npz":
            for f in list(self._files.values()) + list((self._evfiles or {}).values()):
                f.close()
        else:
            for w in (self._pq, self._evpq):
                if w is not None:
                    w.close()
            try:
                os.unlink(self.path + ".tmp")
            except OSError:
                pass
        shutil.rmtree(self._tmp, ignore_errors=True)


def _zip_npy(z, name, raw, dtype, n):
    with z.open(name + ".npy", "w", force_zip64=True) as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                "fortran_order": False, "shape": (n,)})
        with open(raw, "rb") as src:
            shutil.copyfileobj(src, f, 8 << 20)


def write_trace(path, addr, kind, size=None, events=(), **optional):
    """Write a whole trace in one call (arrays; ``size`` default 1)."""
    addr = np.asarray(addr, dtype=np.int64)
    size = np.ones(len(addr), np.int64) if size is None else size
    with TraceWriter(path, [k for k in optional if optional[k] is not None]) as w:
        w.write(Chunk(0, addr, np.asarray(kind, np.uint8), np.asarray(size, np.int64),
                      optional.get("pid"), optional.get("tid"), optional.get("cpu")))
        for e in events:
            w.event(e)


# --- reading ------------------------------------------------------------------------
def read_chunks(reader):
    if reader.format == "npz":
        yield from _npz_chunks(reader)
    else:
        yield from _parquet_chunks(reader)


def has_events(reader):
    """Whether the native trace at ``reader`` has an event the replay would apply (a
    row that is not bad: with skip_bad, bad ones are not counted), and its access
    rows; read from the events (and the columns' headers) only, not from the accesses."""
    probe = type(reader).__new__(type(reader))
    probe.__dict__.update(reader.__dict__, bad_lines=0, accesses=0)
    if reader.format == "npz":
        src = _npz_source(probe)
    else:
        src = _parquet_source(probe)
    with src:
        return next(iter(src.events), None) is not None, src.n


def _bad(path, problem):
    return TraceError(path, 0, problem)


class _Source:
    """An open native trace: ``n`` access rows, ``columns`` the access columns it has,
    ``take(k)`` the next k rows' columns (the file's dtypes) and their null cells,
    ``events`` an _Events."""
    n = 0
    columns = ()
    events = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        pass


def _npz_source(reader):
    path = reader.path
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise _bad(path, f"not a readable .npz: {e}") from None
    src = _Source()
    src.close = z.close
    try:
        names = set(z.namelist())
        cols = {}
        for name, dt in COLUMNS + OPTIONAL:
            if name + ".npy" in names:
                cols[name] = _npy_stream(path, z, name + ".npy")
            elif name in dict(COLUMNS):
                raise _bad(path, f"missing column {name!r} (a native trace has address, kind, size)")
        ns = {c[1] for c in cols.values()}
        if len(ns) != 1:
            raise _bad(path, "columns differ in length")
        src.n = ns.pop()
        src.columns = tuple(cols)
        src.take = lambda k: ({c: s[0](k) for c, s in cols.items()}, {})
        src.events = _npz_events(reader, z, names)
    except _ZIP_ERRORS as e:   # a damaged member
        z.close()
        raise _bad(path, f"not a readable .npz: {e}") from None
    except BaseException:
        z.close()
        raise
    return src


def _npz_events(reader, z, names):
    """The events of an .npz (arrays ev_*) as an _Events. In order of ``at``, as
    TraceWriter writes them, they are streamed: EV_BATCH rows of each array at a time,
    so the memory they take is bounded however many there are. Out of order (an .npz
    made by hand) they are read whole and sorted, as before."""
    path = reader.path
    if "ev_at.npy" not in names:
        return _Events.whole(reader, [])
    members = [c for c in EVENT_COLS + ("op",) if c not in EVENT_OPTIONAL or f"ev_{c}.npy" in names]
    try:
        heads = {c: _npy_stream(path, z, f"ev_{c}.npy", "US" if c == "op" else "iu", "bad event arrays: ")
                 for c in members}
        if len({n for _, n in heads.values()}) != 1:
            raise ValueError("event columns differ in length")
        n = heads["at"][1]
        # In order of at? Read ev_at once, a batch at a time.
        read_at = _npy_stream(path, z, "ev_at.npy", "iu", "bad event arrays: ")[0]
        last, ordered, left = None, True, n
        while left and ordered:
            a = read_at(min(EV_BATCH, left))
            left -= len(a)
            ordered = bool(np.all(a[1:] >= a[:-1])) and (last is None or a[0] >= last)
            last = a[-1]
    except _ZIP_ERRORS + (KeyError, ValueError, TypeError) as e:   # (KeyError: a member missing)
        raise _bad(path, f"bad event arrays: {e}") from None
    rows = _npz_event_rows(path, {c: h[0] for c, h in heads.items()}, n)
    if ordered:
        return _Events(reader, rows, True)
    return _Events.whole(reader, list(rows))


def _npz_event_rows(path, read, n):
    """(row index, Event) for the n rows of the event arrays' readers ``read``."""
    i = 0
    while i < n:
        k = min(EV_BATCH, n - i)
        try:
            cols = {c: r(k) for c, r in read.items()}
            ops = [str(o) for o in cols.pop("op")]
            vals = [cols[c].astype(np.int64).tolist() if c in cols else [EVENT_OPTIONAL[c]] * k
                    for c in EVENT_COLS]
        except _ZIP_ERRORS + (ValueError, TypeError, OverflowError) as e:
            raise _bad(path, f"bad event arrays: {e}") from None
        for j, row in enumerate(zip(*vals)):
            yield i + j, Event(row[0], ops[j], *row[1:])
        i += k


def _npy_stream(path, z, member, kinds="iu", what=""):
    """(read(k): the next k elements, the length) of the one-dimensional .npy array
    ``member`` of ``z``, whose dtype is of one of ``kinds``; read as it goes."""
    f = z.open(member)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dt = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dt = np.lib.format.read_array_header_2_0(f)
    except ValueError as e:
        raise _bad(path, f"{what}{member}: bad .npy header: {e}") from None
    if len(shape) != 1 or fortran:
        raise _bad(path, f"{what}{member}: expected a one-dimensional array, got shape {shape}")
    if dt.kind not in kinds:
        raise _bad(path, f"{what}{member}: expected {'integers' if kinds == 'iu' else 'strings'}, "
                         f"got {dt}")

    def read(k):
        try:
            raw = f.read(k * dt.itemsize)
        except _ZIP_ERRORS + (ValueError,) as e:   # a bad CRC-32
            raise _bad(path, f"{what}{member}: cannot read: {e}") from None
        if len(raw) != k * dt.itemsize:
            raise _bad(path, f"{what}{member}: truncated")
        return np.frombuffer(raw, dtype=dt)          # the file's dtype: checked, then converted
    return read, shape[0]


class _Events:
    """A trace's events in order of ``at``, read as the accesses reach them:
    :meth:`upto` (end) gives the good ones before access row ``end`` (None: all the
    rest). A bad event row raises, or with skip_bad is counted and dropped."""

    def __init__(self, reader, rows, streamed):
        self.reader = reader
        self.rows = rows              # an iterator of (row index, Event or a problem)
        self.streamed = streamed      # rows as the file has them: their order checked
        self.head = None
        self.last_at = None

    @classmethod
    def whole(cls, reader, rows):
        """Events read whole (.npz, the earlier Parquet layout): each checked in file
        order (so the first bad one is said before any access), then sorted by at."""
        good = [(i, e) for i, e in rows if _event_ok(reader, i, e)]
        good.sort(key=lambda r: r[1].at)
        return cls(reader, iter(good), False)

    def _next(self):
        for i, e in self.rows:
            if not _event_ok(self.reader, i, e):
                continue
            if self.streamed and self.last_at is not None and e.at < self.last_at:
                _row_bad(self.reader, f"event {i}: at {e.at} after an event at "
                                      f"{self.last_at} (events are in order of at)")
                continue
            self.last_at = e.at
            return e
        return None

    def __iter__(self):
        while True:
            e = self.upto(None, 1)
            if not e:
                return
            yield e[0]

    def upto(self, end, most=None):
        out = []
        while most is None or len(out) < most:
            if self.head is None:
                self.head = self._next()
                if self.head is None:
                    break
            if end is not None and self.head.at >= end:
                break
            out.append(self.head)
            self.head = None
        return out

    def pending(self):
        if self.head is None:
            self.head = self._next()
        return self.head is not None


def _row_bad(reader, problem):
    """A bad row: an error, or with skip_bad counted (as a text trace's bad line)."""
    if not reader.skip_bad:
        raise TraceError(reader.path, 0, problem)
    reader.bad_lines += 1


def _cpu_problem(reader, v, low=0):
    ncpus = getattr(reader, "cpus", None)
    if ncpus is not None:
        return f"cpu {v}, but the machine has {ncpus} CPU{'s' if ncpus != 1 else ''} (--cpus)"
    return f"cpu {v} ({'-1 or ' if low < 0 else ''}0 to {NR_CPUS - 1})"


def _event_ok(reader, i, e):
    """Whether event row ``i`` (an Event, or the problem that made it none) is good;
    a bad one raises or is counted (_row_bad)."""
    if isinstance(e, str):
        problem = e
    elif e.op not in EVENT_OPS:
        problem = f"unknown event {e.op!r} (one of {', '.join(EVENT_OPS)})"
    elif e.at < 0:
        problem = f"at {e.at} (the access it comes before, from 0)"
    elif not 0 <= e.pid < PID_MAX_LIMIT:
        problem = f"pid {e.pid} (0 to {PID_MAX_LIMIT - 1})"
    elif e.op in ("fork", "switch") and not 0 <= e.arg < PID_MAX_LIMIT:
        problem = f"{e.op} of pid {e.arg} (0 to {PID_MAX_LIMIT - 1})"
    elif not -1 <= e.cpu < (getattr(reader, "cpus", None) or NR_CPUS):
        problem = _cpu_problem(reader, e.cpu, -1)
    else:
        return True
    _row_bad(reader, f"event {i}: {problem}")
    return False


def _bad_rows(reader, cols, nulls):
    """(mask of the bad rows among ``cols`` (the file's dtypes), a function naming the
    problem of row i), or (None, None) when every row is good."""
    ncpus = getattr(reader, "cpus", None) or NR_CPUS
    checks = [(nulls[c], lambda i, c=c: f"no {c} (a null cell)") for c in nulls]
    for name, bad, say in (
            ("kind", lambda a: (a < 0) | (a > 2), lambda v: f"kind {v} (0 read, 1 write, 2 fetch)"),
            ("size", lambda a: (a < 0) | (a > MAX_SIZE), lambda v: f"size {v} (0 to 1 MiB)"),
            ("pid", lambda a: (a < 0) | (a >= PID_MAX_LIMIT),
             lambda v: f"pid {v} (0 to {PID_MAX_LIMIT - 1})"),
            ("tid", lambda a: (a < 0) | (a >= PID_MAX_LIMIT),
             lambda v: f"tid {v} (0 to {PID_MAX_LIMIT - 1})"),
            ("cpu", lambda a: (a < 0) | (a >= ncpus), lambda v: _cpu_problem(reader, v))):
        a = cols.get(name)
        if a is not None:
            checks.append((bad(a), lambda i, a=a, say=say: say(int(a[i]))))
    masks = [m for m, _ in checks if m.any()]
    if not masks:
        return None, None
    mask = np.logical_or.reduce(masks)

    def problem(i):
        return next(say(i) for m, say in checks if m[i])
    return mask, problem


def _chunks_from(reader, src):
    """The chunks of ``src`` (_Source): up to reader.chunk rows each, bad rows checked
    (an error, or skipped and counted), the events among them."""
    path = reader.path
    n, events = src.n, src.events
    first = 0                  # the file's row
    out = 0                    # the accesses yielded (rows less the skipped ones)
    shifted = False            # rows skipped so far: chunks carry their rows
    dts = dict(COLUMNS + OPTIONAL)
    while first < n or events.pending():
        k = min(reader.chunk, n - first)
        end = first + k
        evs = events.upto(end if end < n else None, EV_BATCH)   # the last: the events after it too
        if len(evs) == EV_BATCH and events.pending() and events.head.at < end:
            # At most EV_BATCH events a chunk: it ends at the next event's access (its
            # events at that row run at its end, before the next chunk's at that row).
            end = max(events.head.at, first)
            k = end - first
        # A chunk of events only (EV_BATCH of them before its first access) still has
        # the file's columns, empty: a reader of the chunks (convert) sees which it has.
        cols, nulls = src.take(k) if k else ({c: np.zeros(0, dts[c]) for c in src.columns}, {})
        keep = None
        if k:
            bad, problem = _bad_rows(reader, cols, nulls)
            if bad is not None:
                if not reader.skip_bad:
                    i = int(np.argmax(bad))
                    raise TraceError(path, 0, f"access {first + i}: {problem(i)}")
                keep = ~bad
                reader.bad_lines += int(np.count_nonzero(bad))
                shifted = True
        # Copies in the replay's dtypes: np.frombuffer's arrays are read-only, and numba
        # compiles the access loop anew (tens of seconds) for read-only arrays.
        cols = {c: (a[keep] if keep is not None else a).astype(dts[c]) for c, a in cols.items()}
        rows = None
        if shifted:
            rows = first + (np.flatnonzero(keep) if keep is not None else np.arange(k))
        m = len(cols["address"]) if k else 0
        chunk = Chunk(out, cols.get("address", np.zeros(0, np.int64)),
                      cols.get("kind", np.zeros(0, np.uint8)),
                      cols.get("size", np.zeros(0, np.int64)),
                      cols.get("pid"), cols.get("tid"), cols.get("cpu"), tuple(evs), rows)
        out += m
        reader.accesses = out
        if m or evs:
            yield chunk
        first = end


def _npz_chunks(reader):
    with _npz_source(reader) as src:
        yield from _chunks_from(reader, src)


def _parquet_file(reader):
    path = reader.path
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise _bad(path, "reading Parquet needs pyarrow (pip install pyarrow)") from None
    try:
        try:
            return pq.ParquetFile(path)
        except OSError as e:
            if "size limit" not in str(e):
                raise
            # A footer over pyarrow's 100 MB thrift limit: the earlier layout's JSON
            # events (1 M events are ~290 MB). Read it as the file it is.
            return pq.ParquetFile(path, thrift_string_size_limit=(1 << 31) - 1,
                                  thrift_container_size_limit=(1 << 31) - 1)
    except Exception as e:           # pyarrow.ArrowInvalid and friends
        raise _bad(path, f"not a readable Parquet file: {e}") from None


def _parquet_source(reader):
    import pyarrow as pa
    path = reader.path
    f = _parquet_file(reader)
    src = _Source()
    src.close = getattr(f, "close", lambda: None)
    try:
        schema = f.schema_arrow
        names = schema.names
        for c, _ in COLUMNS:
            if c not in names:
                raise _bad(path, f"missing column {c!r} (a native trace has address, kind, size)")
        use = [c for c, _ in COLUMNS + OPTIONAL if c in names]
        src.columns = tuple(use)
        for c in use:
            if not pa.types.is_integer(schema.field(c).type):
                raise _bad(path, f"column {c!r} is {schema.field(c).type}, expected integers")
        meta = dict(f.metadata.metadata or {})
        meta.update(schema.metadata or {})
        total = f.metadata.num_rows
        groups = list(range(f.num_row_groups))
        ev_groups = []
        if PQ_ACCESSES in meta:
            # Accesses, then the events in row groups of their own.
            try:
                src.n = int(meta[PQ_ACCESSES])
                nev = int(meta.get(PQ_EVENTS, b"0"))
            except ValueError:
                raise _bad(path, f"bad {PQ_ACCESSES.decode()} metadata") from None
            at, cut = 0, None
            for g in groups:
                if at == src.n:
                    cut = g
                    break
                at += f.metadata.row_group(g).num_rows
            if at == src.n and cut is None:
                cut = len(groups)
            if cut is None or src.n + nev != total:
                raise _bad(path, f"bad {PQ_ACCESSES.decode()} metadata: {src.n} accesses and "
                                 f"{nev} events do not fill the file's row groups ({total} rows)")
            groups, ev_groups = groups[:cut], groups[cut:]
            missing = [c for c in ("ev_op",) + tuple(f"ev_{c}" for c in EVENT_COLS)
                       if c not in names and c[3:] not in EVENT_OPTIONAL]
            if nev and missing:
                raise _bad(path, f"missing event column {missing[0]!r}")
            # A reader of its own: two iter_batches of one ParquetFile share its
            # reader's batch size (the last call's), and the events' would be the
            # accesses' million rows.
            fe = _parquet_file(reader) if nev else None
            if fe is not None:
                src.close = lambda: (f.close(), fe.close()) if hasattr(f, "close") else None
            src.events = _Events(reader, _parquet_events(reader, fe, ev_groups), True)
        else:
            src.n = total
            rows = []
            if PQ_OLD_EVENTS in meta:
                # The earlier layout: every event as JSON in the schema metadata.
                try:
                    doc = json.loads(meta[PQ_OLD_EVENTS])
                    if not isinstance(doc, list):
                        raise ValueError("not a list")
                except (ValueError, TypeError, UnicodeDecodeError) as e:
                    raise _bad(path, f"bad vmsim.events metadata: {e}") from None
                rows = [(i, _json_event(e)) for i, e in enumerate(doc)]
            src.events = _Events.whole(reader, rows)
        it = f.iter_batches(batch_size=reader.chunk, columns=use, row_groups=groups) \
            if groups else iter(())
        buf = {}

        def take(k):
            nonlocal buf
            while not buf or len(buf["address"]) < k:
                try:
                    b = next(it)
                except StopIteration:
                    raise _bad(path, "fewer access rows than its metadata says") from None
                except Exception as e:          # pyarrow's errors on damaged data
                    raise _bad(path, f"cannot read: {e}") from None
                cols = {}
                for c in use:
                    col = b.column(c)
                    if col.null_count:
                        cols["null:" + c] = col.is_null().to_numpy(zero_copy_only=False)
                        col = pa.compute.fill_null(col, 0)
                    cols[c] = col.to_numpy(zero_copy_only=False)
                buf = cols if not buf else {c: np.concatenate([buf.get(c, _zeros(buf, c)),
                                                              cols.get(c, _zeros(cols, c))])
                                            for c in set(buf) | set(cols)}
            out = {c: buf[c][:k] for c in buf}
            buf = {c: buf[c][k:] for c in buf}
            return ({c: v for c, v in out.items() if not c.startswith("null:")},
                    {c[5:]: v for c, v in out.items() if c.startswith("null:")})
        src.take = take
    except BaseException:
        f.close()
        raise
    return src


def _zeros(cols, name):
    """A null mask of no nulls, as long as ``cols``' columns."""
    return np.zeros(len(cols["address"]), bool)


def _json_event(e):
    """An Event from the earlier Parquet layout's JSON, or the problem with it."""
    try:
        if not isinstance(e, dict):
            raise TypeError("not an object")
        ev = Event(**{k: (v if k == "op" else int(v)) for k, v in e.items()})
        if not isinstance(ev.op, str):
            raise TypeError(f"op {ev.op!r} is not a string")
        return ev
    except (ValueError, TypeError, OverflowError) as err:
        return f"not an event: {err}"


def _parquet_events(reader, f, groups):
    """(row, Event) of the event row groups ``groups``, a batch at a time."""
    if not groups or f is None:
        return
    names = f.schema_arrow.names
    cols = ["ev_op"] + [f"ev_{c}" for c in EVENT_COLS if f"ev_{c}" in names]
    i = 0
    for b in _batches(reader, f.iter_batches(batch_size=EV_BATCH, columns=cols, row_groups=groups)):
        ops = b.column("ev_op").to_pylist()
        vals = {}
        for c in EVENT_COLS:
            if f"ev_{c}" in names:
                col = b.column(f"ev_{c}")
                vals[c] = col.to_pylist() if col.null_count or not \
                    __import__("pyarrow").types.is_integer(col.type) else col.to_numpy().tolist()
            else:
                vals[c] = [EVENT_OPTIONAL[c]] * len(ops)
        for j, op in enumerate(ops):
            row = [vals[c][j] for c in EVENT_COLS]
            if op is None or any(v is None for v in row):
                yield i, "a null cell"
            elif not all(isinstance(v, int) for v in row):
                yield i, "a value that is not an integer"
            else:
                yield i, Event(row[0], op, *row[1:])
            i += 1


def _batches(reader, it):
    """The batches of ``it``; pyarrow's errors on damaged data as a TraceError."""
    while True:
        try:
            b = next(it)
        except StopIteration:
            return
        except Exception as e:
            raise _bad(reader.path, f"cannot read: {e}") from None
        yield b


def _parquet_chunks(reader):
    with _parquet_source(reader) as src:
        yield from _chunks_from(reader, src)


def convert(src, dst, chunk=1 << 20, skip_bad=False, progress=None):
    """Convert a trace (any readable format) to the native format at ``dst``, with the
    pid / tid / cpu columns and events a native source has; return (accesses, bad
    lines skipped)."""
    from vmsim.replay.readers import open_trace
    r = open_trace(src, chunk, skip_bad)
    it = iter(r)
    first = next(it, None)
    optional = [c for c, _ in OPTIONAL if first is not None and getattr(first, c) is not None]
    with TraceWriter(dst, optional) as w:
        for c in ([first] if first is not None else []):
            w.write(c)
        for c in it:
            w.write(c)
            if progress:
                progress(r)
    return r.accesses, r.bad_lines
