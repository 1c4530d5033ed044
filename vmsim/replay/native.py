"""vmsim's native trace format: columns, in .npz or Parquet.

Columns (one row per access, in program order):
    address  int64   (a kernel-half address is negative, as the CPU's 64-bit value)
    kind     uint8   0 read, 1 write, 2 instruction fetch
    size     int64   bytes (an access that straddles a page is split by the replay)
    pid, tid, cpu    int64, optional: the process, the thread (a tid first met is a new
                     thread of its pid's process), the CPU the access runs on (the task
                     is scheduled there first: a context switch, and with --tlb that
                     CPU's TLB)
Events (process-level changes the access stream cannot show), each taking effect
before access ``at``: columns at, op (mmap munmap mprotect brk fork exit switch), pid
(the task acting: a pid, or a tid), addr, length, prot, flags, arg (fork: the child's
pid; switch: the pid or tid switched to, 0 for idle; exit: the status), cpu (switch:
the CPU, -1 for the task's own; optional in a file). In .npz they are arrays ``ev_*`` (``ev_op`` as strings); in Parquet
the events are JSON in the schema metadata (key ``vmsim.events``).

Both are written and read in chunks: the .npz writer spools each column to a temporary
file and zips it at the end (uncompressed, so readers stream it); the .npz reader
parses each member's .npy header and reads rows on demand.
"""
import json
import os
import shutil
import tempfile
import zipfile

import numpy as np

from vmsim.replay.readers import Chunk, Event, EVENT_OPS, TraceError

COLUMNS = (("address", np.int64), ("kind", np.uint8), ("size", np.int64))
OPTIONAL = (("pid", np.int64), ("tid", np.int64), ("cpu", np.int64))
EVENT_COLS = ("at", "pid", "addr", "length", "prot", "flags", "arg", "cpu")
# Event columns a file may lack (written before they existed), with their default.
EVENT_OPTIONAL = {"cpu": -1}


class TraceWriter:
    """Write a native trace chunk by chunk: ``w.write(chunk)``, ``w.event(ev)``,
    ``w.close()`` (or use it as a context manager)."""

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
        self.events = []
        self.n = 0
        self._cols = COLUMNS + tuple(c for c in OPTIONAL if c[0] in self.optional)
        if self.fmt == "npz":
            self._tmp = tempfile.mkdtemp(prefix="vmsim-convert-",
                                         dir=os.path.dirname(os.path.abspath(path)) or ".")
            self._files = {name: open(os.path.join(self._tmp, name), "wb") for name, _ in self._cols}
        else:
            self._pq = None

    def write(self, chunk):
        cols = {"address": chunk.addr, "kind": chunk.kind, "size": chunk.size,
                "pid": chunk.pid, "tid": chunk.tid, "cpu": chunk.cpu}
        for e in chunk.events:
            self.event(e)
        if self.fmt == "npz":
            for name, dt in self._cols:
                np.ascontiguousarray(cols[name], dtype=dt).tofile(self._files[name])
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq
            t = pa.table({name: np.asarray(cols[name], dtype=dt) for name, dt in self._cols})
            if self._pq is None:
                self._pq = pq.ParquetWriter(self.path + ".tmp", t.schema)
            self._pq.write_table(t)
        self.n += len(chunk.addr)

    def event(self, ev):
        if ev.op not in EVENT_OPS:
            raise ValueError(f"unknown event {ev.op!r}: one of {', '.join(EVENT_OPS)}")
        self.events.append(ev)

    def close(self):
        if self.fmt == "npz":
            self._close_npz()
        else:
            self._close_parquet()

    def _close_npz(self):
        for f in self._files.values():
            f.close()
        try:
            with zipfile.ZipFile(self.path + ".tmp", "w", zipfile.ZIP_STORED, allowZip64=True) as z:
                for name, dt in self._cols:
                    _zip_npy(z, name, os.path.join(self._tmp, name), np.dtype(dt), self.n)
                ev = {c: np.array([getattr(e, c) for e in self.events], dtype=np.int64)
                      for c in EVENT_COLS}
                ev["op"] = np.array([e.op for e in self.events], dtype="U8")
                for c, arr in ev.items():
                    with z.open(f"ev_{c}.npy", "w", force_zip64=True) as f:
                        np.lib.format.write_array(f, arr, allow_pickle=False)
            os.replace(self.path + ".tmp", self.path)
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def _close_parquet(self):
        import pyarrow as pa
        import pyarrow.parquet as pq
        meta = json.dumps([e._asdict() for e in self.events])
        if self._pq is None:
            t = pa.table({name: np.zeros(0, dtype=dt) for name, dt in self._cols})
            self._pq = pq.ParquetWriter(self.path + ".tmp", t.schema)
            self._pq.write_table(t)
        self._pq.close()
        # The metadata goes in once the row count is known: rewrite the footer's schema.
        f = pq.ParquetFile(self.path + ".tmp")
        schema = f.schema_arrow.with_metadata({b"vmsim.events": meta.encode()})
        with pq.ParquetWriter(self.path, schema) as w:
            for b in f.iter_batches(batch_size=1 << 20):
                w.write_batch(b)
        os.unlink(self.path + ".tmp")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.close()
        elif self.fmt == "npz":
            for f in self._files.values():
                f.close()
            shutil.rmtree(self._tmp, ignore_errors=True)
        elif self._pq is not None:          # a failed conversion leaves no partial file
            self._pq.close()
            try:
                os.unlink(self.path + ".tmp")
            except OSError:
                pass


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
    path = reader.path
    if reader.format == "npz":
        yield from _npz_chunks(reader)
    else:
        yield from _parquet_chunks(reader)


def _bad(path, problem):
    return TraceError(path, 0, problem)


def _events_sorted(path, events):
    evs = sorted(events, key=lambda e: e.at)
    for e in evs:
        if e.op not in EVENT_OPS:
            raise _bad(path, f"unknown event {e.op!r} (one of {', '.join(EVENT_OPS)})")
    return evs


def _npz_chunks(reader):
    path = reader.path
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise _bad(path, f"not a readable .npz: {e}") from None
    with z:
        names = set(z.namelist())
        cols = {}
        for name, dt in COLUMNS + OPTIONAL:
            if name + ".npy" in names:
                cols[name] = _npy_stream(path, z, name + ".npy", dt)
            elif name in dict(COLUMNS):
                raise _bad(path, f"missing column {name!r} (a native trace has address, kind, size)")
        ns = {c[1] for c in cols.values()}
        if len(ns) != 1:
            raise _bad(path, "columns differ in length")
        n = ns.pop()
        events = []
        if "ev_at.npy" in names:
            try:
                ev = {c: _npy_whole(z, f"ev_{c}.npy") for c in EVENT_COLS + ("op",)
                      if c not in EVENT_OPTIONAL or f"ev_{c}.npy" in names}
                for c, v in EVENT_OPTIONAL.items():
                    ev.setdefault(c, np.full(len(ev["at"]), v, np.int64))
                if len({len(v) for v in ev.values()}) != 1:
                    raise ValueError("event columns differ in length")
                events = [Event(int(ev["at"][i]), str(ev["op"][i]),
                                *(int(ev[c][i]) for c in EVENT_COLS[1:])) for i in range(len(ev["at"]))]
            except (KeyError, ValueError, TypeError, IndexError) as e:
                raise _bad(path, f"bad event arrays: {e}") from None
        events = _events_sorted(path, events)
        yield from _chunks_from(reader, n, lambda k: {c: s[0](k) for c, s in cols.items()}, events)


def _npy_whole(z, member):
    with z.open(member) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _npy_stream(path, z, member, dtype):
    f = z.open(member)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dt = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dt = np.lib.format.read_array_header_2_0(f)
    except ValueError as e:
        raise _bad(path, f"{member}: bad .npy header: {e}") from None
    if len(shape) != 1 or fortran:
        raise _bad(path, f"{member}: expected a one-dimensional array, got shape {shape}")
    if dt.kind not in "iu":
        raise _bad(path, f"{member}: expected integers, got {dt}")

    def read(k):
        raw = f.read(k * dt.itemsize)
        if len(raw) != k * dt.itemsize:
            raise _bad(path, f"{member}: truncated")
        # A copy: np.frombuffer's array is read-only, and numba compiles the access
        # loop anew (tens of seconds) for read-only arrays.
        return np.frombuffer(raw, dtype=dt).astype(dtype)
    return read, shape[0]


def _chunks_from(reader, n, take, events):
    path = reader.path
    ei = 0
    first = 0
    while first < n or ei < len(events):
        k = min(reader.chunk, n - first)
        cols = take(k) if k else {}
        end = first + k
        evs = []
        while ei < len(events) and events[ei].at < end:
            evs.append(events[ei])
            ei += 1
        if end >= n and ei < len(events):         # events after the last access
            evs.extend(events[ei:])
            ei = len(events)
        if k:
            kind = cols["kind"]
            if kind.size and kind.max() > 2:
                bad = int(np.argmax(kind > 2))
                raise TraceError(path, 0, f"access {first + bad}: kind {int(kind[bad])} "
                                          "(0 read, 1 write, 2 fetch)")
            size = cols["size"]
            if size.size and (size.min() < 0 or size.max() > 1 << 20):
                bad = int(np.argmax((size < 0) | (size > 1 << 20)))
                raise TraceError(path, 0, f"access {first + bad}: size {int(size[bad])} "
                                          "(0 to 1 MiB)")
        chunk = Chunk(first, cols.get("address", np.zeros(0, np.int64)),
                      cols.get("kind", np.zeros(0, np.uint8)).astype(np.uint8, copy=False),
                      cols.get("size", np.zeros(0, np.int64)),
                      cols.get("pid"), cols.get("tid"), cols.get("cpu"), tuple(evs))
        reader.accesses = end
        yield chunk
        first = end
        if k == 0:
            break


def _parquet_chunks(reader):
    path = reader.path
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise _bad(path, "reading Parquet needs pyarrow (pip install pyarrow)") from None
    try:
        f = pq.ParquetFile(path)
    except Exception as e:           # pyarrow.ArrowInvalid and friends
        raise _bad(path, f"not a readable Parquet file: {e}") from None
    names = f.schema_arrow.names
    for c, _ in COLUMNS:
        if c not in names:
            raise _bad(path, f"missing column {c!r} (a native trace has address, kind, size)")
    meta = f.schema_arrow.metadata or {}
    events = []
    if b"vmsim.events" in meta:
        try:
            events = [Event(**{k: (v if k == "op" else int(v)) for k, v in e.items()})
                      for e in json.loads(meta[b"vmsim.events"])]
        except (ValueError, TypeError) as e:
            raise _bad(path, f"bad vmsim.events metadata: {e}") from None
    events = _events_sorted(path, events)
    use = [c for c, _ in COLUMNS + OPTIONAL if c in names]
    dts = dict(COLUMNS + OPTIONAL)
    it = f.iter_batches(batch_size=reader.chunk, columns=use)
    buf = {}

    def take(k):
        nonlocal buf
        while not buf or len(buf["address"]) < k:
            b = next(it)
            cols = {c: b.column(c).to_numpy(zero_copy_only=False).astype(dts[c]) for c in use}     # writable
            buf = cols if not buf else {c: np.concatenate([buf[c], cols[c]]) for c in use}
        out = {c: buf[c][:k] for c in use}
        buf = {c: buf[c][k:] for c in use}
        return out
    yield from _chunks_from(reader, f.metadata.num_rows, take, events)


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
