"""Memory-trace readers: Valgrind lackey, Intel Pin pinatrace, and vmsim's native format.

Every reader streams: :func:`open_trace` returns a :class:`TraceReader` whose iteration
yields :class:`Chunk` s of at most ``chunk`` accesses (numpy arrays: int64 address,
uint8 kind, int64 size), so a trace larger than memory replays in constant space.

Text formats
    lackey      ``valgrind --tool=lackey --trace-mem=yes``: ``I  ADDR,SIZE`` (a fetch),
                `` L ADDR,SIZE`` (load), `` S ADDR,SIZE`` (store), `` M ADDR,SIZE``
                (modify: a read-modify-write instruction, one write access: the CPU
                translates it once for writing, so an untouched page takes one write
                fault, where a load then a store take two, the zero page's and the
                write-protect one; counted in ``modifies``); ``==PID==`` lines are
                Valgrind's log.
    pinatrace   Pin's ManualExamples/pinatrace: ``IP: R ADDR`` / ``IP: W ADDR`` (one
                byte each: the tool records no size), ``#eof`` ends the trace. The tool
                logs the IP of each memory instruction, not every fetch: each record's
                IP is read as a one-byte fetch (ACCESS_EXEC) before its data access,
                except when it is the previous record's IP (one instruction with two
                memory operands, or a rep string instruction: fetched once). So
                inference sees the text pages of the code that touched memory
                (instructions with no memory operand are not in the trace).
Compressed inputs (.gz, .xz, .zst) are decompressed on the fly (.zst by the
``zstandard`` package, or without it by the ``zstd`` program). The text is parsed by one byte loop, plain Python for a short
trace (pieces of plain lines as numpy arrays, _BLOCKS) and compiled with numba once
the lines read pay for it (vmsim._jitcache; plain
Python for good with VMSIM_NUMBA=0). A malformed line stops the reader with
``FILE:LINE: problem`` (:class:`TraceError`), or with ``skip_bad`` is skipped and counted
(``bad_lines``; a native trace's bad rows likewise, see native).

Native format (:mod:`vmsim.replay.native`): .npz or Parquet columns address, kind,
size and optional pid / tid / cpu, plus an event stream (mmap, munmap, ...).
"""
import os
import types
from typing import NamedTuple, Optional

import numpy as np

READ, WRITE, EXEC = 0, 1, 2
CHUNK = 1 << 20
_BLOCK = 8 << 20


class TraceError(Exception):
    """A trace that cannot be read: ``FILE:LINE: problem`` (line 0: the whole file)."""

    def __init__(self, path, line, problem):
        self.path, self.line, self.problem = path, line, problem
        super().__init__(f"{path}:{line}: {problem}" if line else f"{path}: {problem}")

    def __reduce__(self):
        # Raised in a sweep's worker process, it is pickled back to the parent.
        return TraceError, (self.path, self.line, self.problem)


class Event(NamedTuple):
    """A process event in a native trace, taking effect before access ``at``."""
    at: int
    op: str            # mmap munmap mprotect brk fork exit switch
    pid: int = 0
    addr: int = 0
    length: int = 0
    prot: int = 0
    flags: int = 0
    arg: int = 0       # fork: the child's pid; switch: the pid or tid switched to (0: idle); exit: status
    cpu: int = -1      # switch: the CPU it happens on (-1: the task's own)


EVENT_OPS = ("mmap", "munmap", "mprotect", "brk", "fork", "exit", "switch")


class Chunk(NamedTuple):
    """Accesses ``first .. first+len(addr)`` of a trace, with the events among them.
    ``rows``: once a native reader has skipped bad rows, each access's row in the file
    (an event's ``at`` counts those), else None (access ``first + i`` is row
    ``first + i``)."""
    first: int
    addr: np.ndarray
    kind: np.ndarray
    size: np.ndarray
    pid: Optional[np.ndarray] = None
    tid: Optional[np.ndarray] = None
    cpu: Optional[np.ndarray] = None
    events: tuple = ()
    rows: Optional[np.ndarray] = None


# --- decompression -------------------------------------------------------------------
def open_binary(path):
    """``path`` opened for reading bytes, decompressed by its suffix. A compressed
    input that ends inside a stream (truncated) or does not decode raises OSError once
    the bytes before the damage are read, so the reader names the line it stopped at."""
    low = path.lower()
    if low.endswith(".gz"):
        import zlib
        # wbits 31: a gzip member (header, deflate, CRC and length checked at its end)
        return _Decompressing(path, lambda: _Adapted(zlib.decompressobj(31), True), zlib.error)
    if low.endswith(".xz"):
        import lzma
        return _Decompressing(path, lzma.LZMADecompressor, lzma.LZMAError)
    if low.endswith(".zst") or low.endswith(".zstd"):
        try:
            import zstandard
        except ImportError:
            zstandard = None
        if zstandard is not None:
            new = zstandard.ZstdDecompressor().decompressobj
            return _Decompressing(path, lambda: _Adapted(new(), False), zstandard.ZstdError)
        import shutil
        exe = shutil.which("zstd")
        if exe is None:
            raise TraceError(path, 0, "reading .zst needs the zstandard package (pip install "
                                      "zstandard) or the zstd program, or decompress it "
                                      "first (zstd -d)")
        if not os.access(path, os.R_OK):
            open(path, "rb").close()            # the OSError open() gives
        return _Pipe([exe, "-dc", "--", path])
    return open(path, "rb")


class _Adapted:
    """zlib's decompressobj (``bounded``: its output bounded by max_length, the input
    it did not take kept in unconsumed_tail) or zstandard's (its whole output at once:
    _Decompressing feeds it small pieces) with lzma's interface."""

    def __init__(self, d, bounded):
        self.d, self.bounded = d, bounded

    def decompress(self, data, max_length):
        if self.bounded:
            return self.d.decompress(self.d.unconsumed_tail + data, max_length)
        return self.d.decompress(data) if data else b""

    @property
    def needs_input(self):
        return not self.bounded or not self.d.unconsumed_tail

    @property
    def eof(self):
        return self.d.eof

    @property
    def unused_data(self):
        return self.d.unused_data


class _Decompressing:
    """A compressed file read as its decompressed bytes, stream after stream
    (concatenated members, as gzip -d, xz -d and zstd -d take them). ``new`` makes a
    decompressor with lzma's interface (decompress(data, max_length), needs_input,
    eof, unused_data); ``error`` is the exception its bad data raises."""

    PIECE = 1 << 16            # compressed bytes per decompress call
    OUT = 1 << 22              # at most this much output per call (zlib, lzma)

    def __init__(self, path, new, error):
        self.f = open(path, "rb")
        self.new, self.error = new, error
        self.d = new()
        self.fresh = True      # nothing fed to self.d yet
        self.inbuf = b""       # input past the last stream's end
        self.streams = 0       # streams decoded to their end
        self.eof = False
        self.err = None        # an error met after some output: raised at the next read

    def _step(self, limit):
        """Some decompressed bytes (b"" when the input ended between streams)."""
        if self.d.needs_input:
            data, self.inbuf = self.inbuf or self.f.read(self.PIECE), b""
            if not data:
                piece = b"" if self.fresh else self.d.decompress(b"", limit)
                if not piece and not self.d.eof:
                    if not self.fresh:
                        raise OSError("the compressed data ends early")
                    if not self.streams:              # as gzip -d, xz -d, zstd -d say
                        raise OSError("the compressed file is empty")
                    self.eof = True                   # the end, between two streams
            else:
                self.fresh = False
                piece = self.d.decompress(data, limit)
        else:
            piece = self.d.decompress(b"", limit)
        if self.d.eof:
            self.inbuf = self.d.unused_data
            self.d, self.fresh = self.new(), True
            self.streams += 1
        return piece

    def read(self, n=-1):
        n = n if n is not None and n >= 0 else 1 << 62
        out = []
        got = 0
        while got < n and not self.eof and self.err is None:
            try:
                piece = self._step(min(n - got, self.OUT))
            except (OSError, EOFError, self.error) as e:
                self.err = e
                break
            out.append(piece)
            got += len(piece)
        if self.err is not None and not got:
            e, self.err = self.err, None
            self.eof = True
            raise OSError(str(e) or type(e).__name__)
        return b"".join(out)

    def close(self):
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Pipe:
    """The output of a decompressing program, read as a file (``zstd -dc`` when the
    zstandard package is missing); its failure (a corrupt or truncated input) is an
    OSError with the program's message once its output is read."""

    def __init__(self, argv):
        import subprocess
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)

    def read(self, n=-1):
        data = self.proc.stdout.read(n)
        if not data and n != 0:
            err = self.proc.stderr.read().decode(errors="replace").strip()
            if self.proc.wait():
                raise OSError(err.splitlines()[-1] if err else
                              f"zstd exited with status {self.proc.returncode}")
        return data

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.stdout.close()
        self.proc.stderr.close()
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _strip_compression(name):
    low = name.lower()
    for suf in (".gz", ".xz", ".zst", ".zstd"):
        if low.endswith(suf):
            return name[:-len(suf)]
    return name


def detect_format(path):
    """'lackey', 'pinatrace', 'npz' or 'parquet', by suffix, else by the first lines."""
    base = _strip_compression(os.path.basename(path)).lower()
    if base.endswith(".npz"):
        return "npz"
    if base.endswith(".parquet") or base.endswith(".pq"):
        return "parquet"
    if base.endswith(".lackey"):
        return "lackey"
    if base.endswith(".pinatrace") or base.endswith(".pin"):
        return "pinatrace"
    with open_binary(path) as f:
        try:
            head = f.read(1 << 16)
        except (OSError, EOFError) as e:
            raise TraceError(path, 0, f"cannot read: {e}") from None
    if head.startswith(b"PK\x03\x04"):
        return "npz"
    if head.startswith(b"PAR1"):
        return "parquet"
    for line in head.split(b"\n")[:50]:
        s = line.rstrip(b"\r")
        if not s or s.startswith(b"=="):
            continue
        if s[:3] in (b"I  ", b" L ", b" S ", b" M "):
            return "lackey"
        if b": R " in s or b": W " in s or s.startswith(b"#"):
            return "pinatrace"
        break
    raise TraceError(path, 0, "unknown trace format: expected a Valgrind lackey or Pin "
                              "pinatrace text trace, or a vmsim .npz / .parquet trace")


# --- the compiled text parsers -----------------------------------------------------------
_HEX = np.full(256, -1, dtype=np.int64)
for _c in b"0123456789":
    _HEX[_c] = _c - 48
for _c in b"abcdef":
    _HEX[_c] = _c - 87
    _HEX[_c - 32] = _c - 87

# Problems a parser reports (res[4]); the messages are in _PROBLEMS.
_E_RECORD, _E_ADDR, _E_SIZE, _E_TRAIL, _E_LONG = 1, 2, 3, 4, 5
# A record's return when its accesses do not fit before ``cap``: the line is left for
# the next call (a pinatrace record writes two: its fetch and its data access).
_NO_ROOM = -64
# The parsers' state and counters (see _parse_lines).
_NRES = 11
_PROBLEMS = {
    "lackey": {
        _E_RECORD: "not a lackey record: expected 'I  ADDR,SIZE', ' L ADDR,SIZE', "
                   "' S ADDR,SIZE', ' M ADDR,SIZE' or a '==PID==' log line",
        _E_ADDR: "bad address: expected 1 to 16 hex digits",
        _E_SIZE: "bad size: expected a decimal number of bytes from 1 to 4096 after the comma",
        _E_TRAIL: "unexpected characters after the size",
        _E_LONG: "line too long",
    },
    "pinatrace": {
        _E_RECORD: "not a pinatrace record: expected 'IP: R ADDR', 'IP: W ADDR' or '#eof'",
        _E_ADDR: "bad address: expected 0x and 1 to 16 hex digits",
        _E_SIZE: "bad size",
        _E_TRAIL: "unexpected characters after the address",
        _E_LONG: "line too long",
    },
}


def _hex(buf, pos, end, hexv, res):
    """Parse hex digits at buf[pos:end]; res[7] = value; return the position after
    them, or -1 when there are none or more than 16."""
    v = 0
    p = pos
    while p < end:
        d = hexv[buf[p]]
        if d < 0:
            break
        v = (v << 4) | d
        p += 1
    if p == pos or p - pos > 16:
        return -1
    res[7] = _wrap64(v)
    return p


def _wrap64(v):
    """A 64-bit address as int64 (the kernel half negative); numba's int64 arithmetic
    wraps by itself, so the compiled build uses :func:`_same` instead."""
    return v - (1 << 64) if v >> 63 else v


def _same(v):
    return v


def _parse_lines(buf, pos, end, hexv, addr, kind, size, cap, skip_bad, res):
    """Parse the lines of buf[pos:end] (each ending in \\n) into the arrays from res[1],
    each by ``_record`` (the format's: bound per format by :func:`_parser`).

    res (_NRES entries): [0] position reached, [1] accesses written, [2] lines read,
    [3] bad lines skipped, [4] problem of the line that stopped (0: none), [5] that
    line's index from the call's start, [6] 1 once pinatrace's '#eof' was read, [7]
    scratch, [8] lackey modify records read, [9] pinatrace: the last record's IP,
    [10] 1 once there is one. Stops when the arrays are full (``cap``: a record that
    does not fit returns _NO_ROOM and is read by the next call), and after '#eof'."""
    n = res[1]
    lines = 0
    while pos < end:
        if n >= cap or res[6]:
            break
        e = pos
        while buf[e] != 10:
            e += 1
        le = e
        if le > pos and buf[le - 1] == 13:
            le -= 1
        w = _record(buf, pos, le, hexv, addr, kind, size, n, cap, res)
        if w == _NO_ROOM:
            break
        if w < 0:
            if not skip_bad:
                res[0] = pos
                res[1] = n
                res[2] += lines
                res[4] = -w
                res[5] = lines
                return
            res[3] += 1
        else:
            n += w
        lines += 1
        pos = e + 1
    res[0] = pos
    res[1] = n
    res[2] += lines


def _lackey_record(buf, pos, le, hexv, addr, kind, size, n, cap, res):
    """One lackey line buf[pos:le] into the arrays at ``n``: the accesses written
    (0 or 1), or minus its problem (_E_*)."""
    ln = le - pos
    if ln == 0 or (ln >= 2 and buf[pos] == 61 and buf[pos + 1] == 61):
        return 0                                    # blank, or '==PID== ...' log
    if ln < 6:
        return -_E_RECORD
    c0 = buf[pos]
    c1 = buf[pos + 1]
    c2 = buf[pos + 2]
    k = -1
    if c0 == 73 and c1 == 32 and c2 == 32:          # 'I  '
        k = 2
    elif c0 == 32 and c2 == 32:
        if c1 == 76:                                # ' L '
            k = 0
        elif c1 == 83:                              # ' S '
            k = 1
        elif c1 == 77:                              # ' M '
            k = 3
    if k < 0:
        return -_E_RECORD
    p = _hex(buf, pos + 3, le, hexv, res)
    if p < 0 or p >= le or buf[p] != 44:
        return -_E_ADDR
    a = res[7]
    p += 1
    s = 0
    q = p
    while q < le and buf[q] >= 48 and buf[q] <= 57 and q - p < 5:
        s = s * 10 + (buf[q] - 48)
        q += 1
    if q == p or s == 0 or s > 4096 or (q < le and buf[q] >= 48 and buf[q] <= 57):
        return -_E_SIZE
    while q < le and (buf[q] == 32 or buf[q] == 9):
        q += 1
    if q != le:
        return -_E_TRAIL
    if k == 3:                                      # modify: one write access
        k = 1
        res[8] += 1
    addr[n] = a
    kind[n] = k
    size[n] = s
    return 1


def _pinatrace_record(buf, pos, le, hexv, addr, kind, size, n, cap, res):
    """As _lackey_record for a pinatrace line: its IP as a fetch, unless the last
    record's IP is the same (res[9], res[10]), then its data access; 0 to 2 accesses,
    or _NO_ROOM. '#eof' sets res[6]."""
    ln = le - pos
    if ln == 0:
        return 0
    if buf[pos] == 35:                              # '#': a comment, or '#eof'
        if ln == 4 and buf[pos + 1] == 101 and buf[pos + 2] == 111 and buf[pos + 3] == 102:
            res[6] = 1
        return 0
    p = pos
    if ln > 2 and buf[p] == 48 and (buf[p + 1] == 120 or buf[p + 1] == 88):
        p += 2
    p = _hex(buf, p, le, hexv, res)
    if p < 0 or p + 4 >= le or buf[p] != 58 or buf[p + 1] != 32 or buf[p + 3] != 32 \
            or (buf[p + 2] != 82 and buf[p + 2] != 87):
        return -_E_RECORD
    ip = res[7]
    k = 0
    if buf[p + 2] == 87:
        k = 1
    p += 4
    if p + 2 < le and buf[p] == 48 and (buf[p + 1] == 120 or buf[p + 1] == 88):
        p = _hex(buf, p + 2, le, hexv, res)
    else:
        p = -1
    if p < 0:
        return -_E_ADDR
    while p < le and (buf[p] == 32 or buf[p] == 9):
        p += 1
    if p != le:
        return -_E_TRAIL
    w = 0
    if res[10] == 0 or ip != res[9]:
        if n + 2 > cap:
            return _NO_ROOM
        addr[n] = ip
        kind[n] = 2
        size[n] = 1
        w = 1
    res[9] = ip
    res[10] = 1
    addr[n + w] = res[7]
    kind[n + w] = k
    size[n + w] = 1
    return w + 1


# --- a block of well-formed lines, parsed as numpy arrays ----------------------------
# The byte loop above in plain Python costs ~6 us a line; a short trace (the built-in
# sample: 167,449 lines) would take a second before its first access. Most blocks are
# every line a plain record (lackey's 'I  ADDR,SIZE' etc., pinatrace's 'IP: R 0xADDR',
# nothing after), a lackey '==' log line or blank: such a block is parsed by
# whole-array operations instead, at ~0.6 us a line, into the records the byte loop
# gives. A block with any other line (malformed, '#eof', or one this does not take:
# trailing blanks) goes to the byte loop, which reads, skips or reports every line.
_HEX8 = _HEX.astype(np.int8)
_DEC8 = np.full(256, -1, dtype=np.int8)
_DEC8[48:58] = np.arange(10)
_LSM = np.full(256, -1, dtype=np.int8)
_LSM[76], _LSM[83], _LSM[77] = 0, 1, 3                # ' L ', ' S ', ' M '
_POW16 = 16 ** np.arange(7, -1, -1, dtype=np.int64)
_FRONT = 16
_POW10 = 10 ** np.arange(4, -1, -1, dtype=np.int64)


def _block_lines(block, lo, hi):
    """The lines of block[lo:hi] (``hi`` just after a newline): (bytes, the bytes with
    room to read past the end, and _FRONT zeros before them (the array's base), line
    ends, starts, ends without a '\\r', lengths)."""
    cut = hi - lo
    b = np.frombuffer(block, dtype=np.uint8, count=cut, offset=lo)
    ends = np.flatnonzero(b == 10)
    starts = np.empty(len(ends), dtype=np.int64)
    starts[:1] = 0
    starts[1:] = ends[:-1] + 1
    le = ends - ((ends > starts) & (b[ends - 1] == 13))      # without a '\r' before '\n'
    full = np.zeros(_FRONT + cut + 24, dtype=np.uint8)
    bp = full[_FRONT:]
    bp[:cut] = b
    return b, bp, ends, starts, le, le - starts


def _one_per_line(b, ends, char, lines):
    """The position of ``char`` in each of ``lines`` (indices), or None unless each of
    them has it exactly once and no other line has it."""
    at = np.flatnonzero(b == char)
    if len(at) != len(lines) or not np.array_equal(np.searchsorted(ends, at), lines):
        return None
    return at


def _hex_before(bp, end, n):
    """The values (uint64) of the ``n`` (1 to 16) hex digits before each ``end`` in
    bp (_block_lines'), or None when one of them is not a hex digit."""
    w = int(n.max(initial=1))
    col = np.arange(w)
    # The w bytes before each end; the first line's may start before bp: its base has
    # _FRONT bytes more in front (digits outside a line are masked off).
    d = _HEX8[np.lib.stride_tricks.sliding_window_view(bp.base, w)[end + _FRONT - w]]
    inside = col >= (w - n)[:, None]
    if np.any(inside & (d < 0)):
        return None
    d = np.where(inside, d, 0).astype(np.int64)
    k = min(w, 8)
    v = (d[:, w - k:] @ _POW16[8 - k:]).astype(np.uint64)
    if w > 8:
        v |= (d[:, :w - 8] @ _POW16[16 - w:]).astype(np.uint64) << np.uint64(32)
    return v


def _lackey_block(block, lo, hi, res=None):
    """The records of lackey lines block[lo:hi] (``hi`` just after a newline) as
    (addr, kind, size, lines, modifies), the byte loop's (_lackey_record) for the same
    lines, or None when a line is not a plain record, log or blank line. (``res``:
    the byte loop's state, which lackey records do not use.)"""
    b, bp, ends, starts, le, ln = _block_lines(block, lo, hi)
    c0, c1, c2 = bp[starts], bp[starts + 1], bp[starts + 2]
    fetch = (c0 == 73) & (c1 == 32) & (c2 == 32)             # 'I  '
    rec = (fetch | ((c0 == 32) & (c2 == 32) & (_LSM[c1] >= 0))) & (ln >= 6)
    if not len(ends) or not np.all(rec | (ln == 0) | ((ln >= 2) & (c0 == 61) & (c1 == 61))):
        return None
    # One comma in each record line ('==' lines may have more: not counted).
    commas = np.flatnonzero(b == 44)
    commas = commas[rec[np.searchsorted(ends, commas)]]
    lines = np.flatnonzero(rec)
    if len(commas) != len(lines) or not np.array_equal(np.searchsorted(ends, commas), lines):
        return None
    na = commas - starts[rec] - 3                            # address digits
    ns = le[rec] - commas - 1                                # size digits, up to the end
    if len(lines) and (na.min() < 1 or na.max() > 16 or ns.min() < 1 or ns.max() > 5):
        return None
    a = _hex_before(bp, commas, na)
    if a is None:
        return None
    col = np.arange(5)
    d = _DEC8[np.lib.stride_tricks.sliding_window_view(bp, 5)[commas + 1]]
    inside = col < ns[:, None]
    if np.any(inside & (d < 0)):
        return None
    size = (np.where(inside, d, 0).astype(np.int64) @ _POW10) // 10 ** (5 - ns)
    if len(lines) and (size.min() < 1 or size.max() > 4096):
        return None
    k = np.where(fetch[rec], 2, _LSM[c1[rec]])
    modifies = int(np.count_nonzero(k == 3))
    k[k == 3] = 1                                            # modify: one write access
    return a.view(np.int64), k.astype(np.uint8), size, len(ends), modifies


def _pinatrace_block(block, lo, hi, res=None):
    """As _lackey_block for pinatrace lines (_pinatrace_record's records: each IP a
    fetch unless the record before has the same IP; ``res``: the byte loop's state,
    its [9] and [10] the last record's IP, read and, when the block is taken,
    updated): every line 'IP: R 0xADDR' / 'IP: W 0xADDR' (IP with or without 0x) or
    blank; a '#' line ('#eof' ends the trace) is the byte loop's."""
    b, bp, ends, starts, le, ln = _block_lines(block, lo, hi)
    lines = np.flatnonzero(ln > 0)
    colons = _one_per_line(b, ends, 58, lines)
    if not len(ends) or colons is None:
        return None
    rs = starts[lines]
    pre = np.where((bp[rs] == 48) & ((bp[rs + 1] | 32) == 120), 2, 0)     # '0x' or '0X'
    nip = colons - rs - pre
    na = le[lines] - colons - 6
    if len(lines) and (nip.min() < 1 or nip.max() > 16 or na.min() < 1 or na.max() > 16):
        return None
    rw = bp[colons + 2]
    if not np.all((bp[colons + 1] == 32) & ((rw == 82) | (rw == 87)) & (bp[colons + 3] == 32)
                  & (bp[colons + 4] == 48) & ((bp[colons + 5] | 32) == 120)):
        return None
    ip = _hex_before(bp, colons, nip)
    if ip is None:
        return None
    a = _hex_before(bp, le[lines], na)
    if a is None:
        return None
    ip = ip.view(np.int64)
    m = len(lines)
    fetch = np.ones(m, dtype=bool)
    fetch[1:] = ip[1:] != ip[:-1]
    if m and res is not None and res[10]:
        fetch[0] = ip[0] != res[9]
    at = np.arange(m) + np.cumsum(fetch)                     # each data access's index
    addr = np.empty(m + int(np.count_nonzero(fetch)), dtype=np.int64)
    kind = np.full(len(addr), EXEC, dtype=np.uint8)
    addr[at] = a.view(np.int64)
    kind[at] = rw == 87
    addr[at[fetch] - 1] = ip[fetch]
    if m and res is not None:
        res[9], res[10] = ip[-1], 1
    return addr, kind, np.ones(len(addr), np.int64), len(ends), 0


_BLOCKS = {"lackey": _lackey_block, "pinatrace": _pinatrace_block}


_RECORDS = {"lackey": _lackey_record, "pinatrace": _pinatrace_record}
_PARSERS = {}
# A line parsed in plain Python costs about two plain-Python walk accesses (~5 us):
# the parser's work counts that much toward vmsim._jitcache's threshold.
_PARSE_WEIGHT = 2
# A line _BLOCKS' parsers take costs about a sixteenth of that; they take pieces of
# about _PIECE bytes (its temporary arrays are ~250 bytes a line).
_FAST_LINES_PER_UNIT = 16
_PIECE = 1 << 20


def _parser(fmt, compiled=True):
    """(parse function, compiled?) for ``fmt``: _parse_lines with that format's record,
    as the numba build (``compiled`` and numba usable) or plain Python over bytes."""
    from vmsim.replay import _jit
    if compiled and _jit.enabled():
        fn = _jit.compile(_parse_lines, {"_record": (_RECORDS[fmt], {"_hex": (_hex, {"_wrap64": _same})})},
                          name=f"_parse_lines_{fmt}")
        if fn is not _parse_lines:
            return fn, True
    if fmt not in _PARSERS:
        g = dict(_parse_lines.__globals__, _record=_RECORDS[fmt])
        _PARSERS[fmt] = types.FunctionType(_parse_lines.__code__, g, f"_parse_lines_{fmt}")
    return _PARSERS[fmt], False


# --- readers ---------------------------------------------------------------------------
class TraceReader:
    """Iterate a trace in chunks. ``bad_lines`` counts skipped lines (skip_bad),
    ``lines`` the text lines read, ``modifies`` lackey's modify records (each one write
    access), ``accesses`` the accesses yielded so far."""

    def __init__(self, path, chunk=CHUNK, skip_bad=False, fmt=None, cpus=None):
        self.path = path
        self.chunk = max(int(chunk), 2)
        self.skip_bad = skip_bad
        self.cpus = cpus            # a native trace's cpu column: 0 to cpus - 1 (the machine's)
        if not os.path.exists(path):
            raise TraceError(path, 0, "no such file")
        if os.path.isdir(path):
            raise TraceError(path, 0, "is a directory")
        self.format = fmt or detect_format(path)
        self.bad_lines = 0
        self.modifies = 0
        self.lines = 0
        self.accesses = 0
        self.compressed = _strip_compression(path) != path

    def __iter__(self):
        if self.format in ("npz", "parquet"):
            from vmsim.replay import native
            yield from native.read_chunks(self)
            return
        yield from self._text_chunks()

    def _text_chunks(self):
        from vmsim._jitcache import _worth_compiling
        from vmsim.replay import _jit
        # Plain Python until the lines read pay for loading numba (vmsim._jitcache): a
        # short trace never loads it. Each block's lines are counted before it is
        # parsed, so a block decides its own build. Without numba the array pieces stay:
        # they are ~10x the plain-Python byte loop.
        jit = _jit.enabled()
        lazy = True
        parse, compiled = _parser(self.format, compiled=False)
        if jit and _worth_compiling(0, "parse"):        # earlier readers paid for it
            lazy = False
            parse, compiled = _parser(self.format)
        hexv = _HEX if compiled else _HEX.tolist()
        cap = self.chunk
        res = np.zeros(_NRES, dtype=np.int64)
        addr = np.empty(cap, dtype=np.int64)
        kind = np.empty(cap, dtype=np.uint8)
        size = np.empty(cap, dtype=np.int64)
        tail = b""
        try:
            f = open_binary(self.path)
        except OSError as e:
            raise TraceError(self.path, 0, f"cannot open: {e.strerror or e}") from None
        with f:
            eof = False
            while not eof:
                try:
                    data = f.read(_BLOCK)
                except (OSError, EOFError, ValueError) as e:
                    raise TraceError(self.path, self.lines + 1,
                                     f"cannot read (corrupt or truncated compressed file?): {e}") from None
                except Exception as e:                  # zstandard.ZstdError
                    raise TraceError(self.path, self.lines + 1, f"cannot read: {e}") from None
                if not data:
                    eof = True
                    if not tail:
                        break
                    data = b"\n"
                block = tail + data
                cut = block.rfind(b"\n") + 1
                if cut == 0:
                    if len(block) > (1 << 20):
                        raise TraceError(self.path, self.lines + 1, _PROBLEMS[self.format][_E_LONG])
                    tail = block
                    continue
                tail = block[cut:]
                pos = 0
                if lazy:
                    # Whole pieces of plain lines as arrays; the byte loop goes on from
                    # the first piece that has another line.
                    fast = 0
                    while pos < cut:
                        end = block.rfind(b"\n", pos, pos + _PIECE) + 1 or cut
                        got = _BLOCKS[self.format](block, pos, end, res)
                        if got is None:
                            break
                        a, k, s, nl, nm = got
                        fast += nl
                        res[2] += nl
                        res[8] += nm
                        self.lines, self.modifies = int(res[2]), int(res[8])
                        j = 0
                        while j < len(a):
                            n = int(res[1])
                            m = min(cap - n, len(a) - j)
                            addr[n:n + m], kind[n:n + m], size[n:n + m] = \
                                a[j:j + m], k[j:j + m], s[j:j + m]
                            res[1] = n + m
                            j += m
                            if n + m >= cap:
                                yield self._chunk(addr, kind, size, cap)
                                res[1] = 0
                        pos = end
                    if jit and _worth_compiling(fast // _FAST_LINES_PER_UNIT, "parse"):
                        lazy = False                    # the next blocks compiled
                        parse, compiled = _parser(self.format)
                        hexv = _HEX if compiled else hexv
                if lazy and jit and pos < cut and \
                        _worth_compiling(block.count(b"\n", pos, cut) * _PARSE_WEIGHT, "parse"):
                    lazy = False
                    parse, compiled = _parser(self.format)
                    hexv = _HEX if compiled else hexv
                # Python ints in Python mode: numpy uint8 arithmetic would wrap.
                buf = np.frombuffer(block, dtype=np.uint8, count=cut) if compiled else block
                while pos < cut:
                    res[0] = pos
                    parse(buf, pos, cut, hexv, addr, kind, size, cap, self.skip_bad, res)
                    pos = int(res[0])
                    self.lines = int(res[2])
                    self.bad_lines = int(res[3])
                    self.modifies = int(res[8])
                    if res[4]:
                        raise TraceError(self.path, self.lines + 1, _PROBLEMS[self.format][int(res[4])])
                    n = int(res[1])
                    if res[6]:                         # pinatrace '#eof'
                        eof = True
                        break
                    if pos < cut or n >= cap:
                        if n:
                            yield self._chunk(addr, kind, size, n)
                        res[1] = 0
                if res[6]:
                    break
        n = int(res[1])
        if n:
            yield self._chunk(addr, kind, size, n)

    def _chunk(self, addr, kind, size, n):
        c = Chunk(self.accesses, addr[:n].copy(), kind[:n].copy(), size[:n].copy())
        self.accesses += n
        return c


def open_trace(path, chunk=CHUNK, skip_bad=False, fmt=None, cpus=None) -> TraceReader:
    """A reader of the trace at ``path`` (format by suffix or content); ``cpus``: the
    machine's CPUs, which a native trace's cpu column must name."""
    return TraceReader(path, chunk, skip_bad, fmt, cpus)
