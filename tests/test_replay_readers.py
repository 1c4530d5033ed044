"""Trace readers (vmsim.replay.readers / native): formats, errors, streaming, fuzzing."""
import gzip
import lzma
import os
import re
import sys

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st, HealthCheck

from vmsim.replay import readers, native
from vmsim.replay.readers import open_trace, TraceError, Event

LACKEY = """\
==123== Lackey, an example Valgrind tool
==123== Command: /bin/true
==123== 
I  0401ab70,3
 S 1fff000768,8
 L 04225e70,8
 M 0422ae50,4
I  0401b770,1
==123== 
"""
# Hand-decoded from Valgrind's lackey format: I fetch, L load, S store, M modify (a
# read-modify-write instruction: one write access, as the CPU translates it).
LACKEY_EXPECT = (
    [0x0401ab70, 0x1fff000768, 0x04225e70, 0x0422ae50, 0x0401b770],
    [2, 1, 0, 1, 2],
    [3, 8, 8, 4, 1],
)

PIN = """\
0x401000: W 0x7ffd1234
0x401004: R 0x7ffd1238
0x40100a: R 0x601040
#eof
0x40100e: W 0x1
"""


def _all(path, **kw):
    r = open_trace(str(path), **kw)
    cs = list(r)
    if not cs:
        return r, [], [], []
    return (r, np.concatenate([c.addr for c in cs]).tolist(),
            np.concatenate([c.kind for c in cs]).tolist(), np.concatenate([c.size for c in cs]).tolist())


def test_lackey(tmp_path):
    p = tmp_path / "t.lackey"
    p.write_text(LACKEY)
    r, a, k, s = _all(p)
    assert (a, k, s) == tuple(list(x) for x in LACKEY_EXPECT)
    assert r.format == "lackey" and r.lines == LACKEY.count("\n") and r.modifies == 1


def test_lackey_format_detected_by_content_and_chunks(tmp_path):
    p = tmp_path / "trace.txt"
    p.write_text(LACKEY * 5)
    r, a, k, s = _all(p, chunk=3)
    assert r.format == "lackey"
    assert a == LACKEY_EXPECT[0] * 5 and k == LACKEY_EXPECT[1] * 5


def test_pinatrace_stops_at_eof(tmp_path):
    p = tmp_path / "t.pinatrace"
    p.write_text(PIN)
    r, a, k, s = _all(p)
    # Each record's IP is a fetch (kind 2) before its data access.
    assert a == [0x401000, 0x7ffd1234, 0x401004, 0x7ffd1238, 0x40100a, 0x601040]
    assert k == [2, 1, 2, 0, 2, 0] and s == [1] * 6 and r.lines == 4 and r.accesses == 6


# One instruction with two memory operands (a read and a write: pinatrace writes a line
# for each) is fetched once; the same IP again after another instruction is fetched
# again. Blank and comment lines, and a skipped bad line, do not end an instruction.
PIN_SAME_IP = """0x401000: R 0x601000
0x401000: W 0x602000

# a comment
0x401000: W 0x603000
0x401004: R 0x601008
0x401000: R 0x601000
0x401000: bad
0X0000401000: W 0X601010
"""


@pytest.mark.parametrize("numba", ["0", "1"])
@pytest.mark.parametrize("chunk", [2, 3, 100])
def test_pinatrace_fetches_an_instruction_once_per_run_of_its_ip(tmp_path, monkeypatch, numba, chunk):
    from vmsim import _jitcache
    from vmsim.replay import _jit
    monkeypatch.setenv("VMSIM_NUMBA", numba)
    if numba == "1" and not _jit.enabled():
        pytest.skip("numba off")
    # "1": the compiled byte loop from the first line (else the numpy pieces, then
    # the plain byte loop at the bad line).
    monkeypatch.setitem(_jitcache._work, "parse", 1 << 40 if numba == "1" else 0)
    p = tmp_path / "t.pinatrace"
    p.write_text(PIN_SAME_IP)
    r = open_trace(str(p), chunk=chunk, skip_bad=True)
    chunks = list(r)
    a = np.concatenate([c.addr for c in chunks]).tolist()
    k = np.concatenate([c.kind for c in chunks]).tolist()
    assert a == [0x401000, 0x601000, 0x602000, 0x603000, 0x401004, 0x601008,
                 0x401000, 0x601000, 0x601010]
    assert k == [2, 0, 1, 1, 2, 0, 2, 0, 1]
    assert all(len(c.addr) <= chunk for c in chunks) and r.bad_lines == 1 and r.lines == 9
    with pytest.raises(TraceError, match=r":8: not a pinatrace record"):
        list(open_trace(str(p), chunk=chunk))


@pytest.mark.parametrize("suffix,opener", [(".gz", gzip.open), (".xz", lzma.open)])
def test_compressed(tmp_path, suffix, opener):
    p = tmp_path / ("t.lackey" + suffix)
    with opener(p, "wb") as f:
        f.write(LACKEY.encode())
    _, a, k, s = _all(p)
    assert (a, k, s) == tuple(list(x) for x in LACKEY_EXPECT)


@pytest.mark.extras
def test_zstd(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    p = tmp_path / "t.lackey.zst"
    p.write_bytes(zstandard.ZstdCompressor().compress(LACKEY.encode()))
    _, a, k, s = _all(p)
    assert (a, k, s) == tuple(list(x) for x in LACKEY_EXPECT)


@pytest.mark.extras
def test_a_truncated_zst_says_so(tmp_path):
    """zstandard's stream_reader ended a truncated frame as if the file ended there:
    the trace was read short (the last partial line showed as a bad address, or, cut
    at a block that ends a line, not at all)."""
    zstandard = pytest.importorskip("zstandard")
    text = _many_lines(20000)
    z = zstandard.ZstdCompressor().compress(text)
    p = tmp_path / "t.lackey.zst"
    p.write_bytes(z[:len(z) // 2])
    with pytest.raises(TraceError, match="the compressed data ends early"):
        _all(p)


def _many_lines(n):
    rng = np.random.default_rng(5)
    return "".join(f" L {a:08x},8\n" for a in rng.integers(0x10000000, 0x20000000, n)).encode()


def test_zstd_without_the_package(tmp_path, monkeypatch):
    """Without the zstandard package a .zst is read through the zstd program (as
    `zstd -dc`); without either, the error says what to install."""
    import shutil
    import subprocess
    monkeypatch.setitem(sys.modules, "zstandard", None)      # as if not installed
    p = tmp_path / "t.lackey.zst"
    exe = shutil.which("zstd")
    if exe is not None:
        p.write_bytes(subprocess.run([exe, "-c"], input=LACKEY.encode(), capture_output=True,
                                     check=True).stdout)
        _, a, k, s = _all(p)
        assert (a, k, s) == tuple(list(x) for x in LACKEY_EXPECT)
        z = subprocess.run([exe, "-c"], input=_many_lines(20000), capture_output=True,
                           check=True).stdout
        p.write_bytes(z[:len(z) // 2])
        with pytest.raises(TraceError, match="cannot read"):
            _all(p)
    else:
        p.write_bytes(b"\x28\xb5\x2f\xfd")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(TraceError, match="zstandard package .* or the zstd program"):
        _all(p)


@pytest.mark.parametrize("suffix", [".gz", ".xz"])
def test_a_truncated_compressed_trace_names_the_line_it_ends_in(tmp_path, suffix):
    """The error names the line the data ends in: gzip.open's read of a whole block
    lost what it had decompressed, so the reader said line 1 of a trace cut after
    thousands of lines."""
    import zlib
    text = _many_lines(20000)
    if suffix == ".gz":
        z = gzip.compress(text)
        cut = z[:len(z) // 2]
        whole = zlib.decompressobj(31).decompress(cut).count(b"\n")
    else:
        z = lzma.compress(text)
        cut = z[:len(z) // 2]
        whole = lzma.LZMADecompressor().decompress(cut).count(b"\n")
    assert whole > 1000
    p = tmp_path / ("t.lackey" + suffix)
    p.write_bytes(cut)
    with pytest.raises(TraceError) as e:
        _all(p)
    assert e.value.line == whole + 1 and "the compressed data ends early" in e.value.problem


def test_concatenated_gzip_members_read_as_one(tmp_path):
    """gzip -d reads every member of a file (cat a.gz b.gz > c.gz), and so does the reader."""
    p = tmp_path / "t.lackey.gz"
    p.write_bytes(gzip.compress(LACKEY.encode()) + gzip.compress(LACKEY.encode()))
    _, a, _, _ = _all(p)
    assert a == LACKEY_EXPECT[0] * 2
    p.write_bytes(b"")                      # a compressed file of no bytes: cut short
    with pytest.raises(TraceError, match="the compressed file is empty"):
        _all(p)


def test_block_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "_BLOCK", 7)               # lines cut across reads
    p = tmp_path / "t.lackey"
    p.write_text(LACKEY.rstrip("\n"))                        # and no final newline
    _, a, k, s = _all(p, chunk=2)
    assert (a, k, s) == tuple(list(x) for x in LACKEY_EXPECT)


@pytest.mark.parametrize("line,problem", [
    ("X  0401ab70,3", "not a lackey record"),
    (" L zz,8", "bad address"),
    (" L 0401ab70", "bad address"),
    (" L 0401ab70,", "bad size"),
    (" L 0401ab70,0", "bad size"),
    (" L 11223344556677889,8", "bad address"),
    (" L 0401ab70,8 x", "unexpected characters"),
])
def test_malformed_line_names_file_and_line(tmp_path, line, problem):
    p = tmp_path / "bad.lackey"
    p.write_text("I  0401ab70,3\n L 04225e70,8\n" + line + "\nI  0401ab73,5\n")
    with pytest.raises(TraceError) as e:
        _all(p)
    assert str(e.value).startswith(f"{p}:3: {problem}")
    r, a, _, _ = _all(p, skip_bad=True)
    assert r.bad_lines == 1 and a == [0x0401ab70, 0x04225e70, 0x0401ab73]


def test_pinatrace_malformed(tmp_path):
    p = tmp_path / "bad.pinatrace"
    p.write_text("0x1: R 0x10\n0x2: Q 0x10\n")
    with pytest.raises(TraceError, match=r":2: not a pinatrace record"):
        _all(p)


def test_unknown_format_and_missing_file(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("hello world\n")
    with pytest.raises(TraceError, match="unknown trace format"):
        open_trace(str(p))
    with pytest.raises(TraceError, match="no such file"):
        open_trace(str(tmp_path / "nope.lackey"))


def _parse_both(fmt, text, cap, skip, prev=None):
    """The records, counters and stop of one parse call, plain Python then compiled
    (``prev``: the IP of a pinatrace record read before)."""
    outs = []
    for compiled in (False, True):
        fn, is_compiled = readers._parser(fmt, compiled)
        assert is_compiled == compiled
        buf = np.frombuffer(text, np.uint8) if compiled else text
        hexv = readers._HEX if compiled else readers._HEX.tolist()
        res = np.zeros(readers._NRES, np.int64)
        if prev is not None:
            res[9], res[10] = prev - (1 << 64) if prev >> 63 else prev, 1
        a, k, s = np.zeros(cap, np.int64), np.zeros(cap, np.uint8), np.zeros(cap, np.int64)
        fn(buf, 0, len(buf), hexv, a, k, s, cap, skip, res)
        outs.append((res[:7].tolist() + res[8:].tolist(), a.tolist(), k.tolist(), s.tolist()))
    return outs


def test_python_parser_matches_compiled():
    from vmsim.replay import _jit
    if not _jit.enabled():
        pytest.skip("numba off")
    text = (LACKEY + " L 0,1\nbad line\n M ffffffffffffffff,4096\n").encode() * 3
    py, nb = _parse_both("lackey", text, 100, True)
    assert py == nb
    assert py[0][3] == 3                                 # 3 bad lines skipped
    assert py[1][6] == -1 and py[2][6] == 1              # M ffffffffffffffff: one write, the kernel half
    assert py[0][7] == 6                                 # res[8]: modify records, 2 in each of 3 copies


_rand_line = st.one_of(
    st.sampled_from(["I  0401ab70,3", " L 1fff000768,8", " S 0,1", " M ffff,4096", "==1== x", "",
                     " M ffffffffffffffff,4096", " L 1ffffffffffffffff,1", " S 1,4097", " L 1,0",
                     "#eof", "#x", "0x1: R 0x2", "0x3: W 0x4", "0xffffffffffffffff: W 0xffffffffffffffff",
                     "0x1: R 0x", "0x1: W 0x2 ", "0x1: W 0x2x", "I  1,2\r", "0x1: W 0x8",
                     "0x0001: R 0x2", "1: R 0x3", "0x3: R 0x4"]),
    st.builds(lambda k, a, s: f"{k}{a:x},{s}", st.sampled_from(["I  ", " L ", " S ", " M "]),
              st.integers(0, (1 << 64) - 1), st.integers(1, 4096)),
    st.builds(lambda k, ip, a: f"{ip:#x}: {k} {a:#x}", st.sampled_from("RW"),
              st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 64) - 1)),
    st.text(alphabet="ILSMRW :,0123456789abcdefx=#\t\r", max_size=30),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# pinatrace: the same IP twice (one fetch), a record whose fetch and access do not fit
# (cap 3: the third line waits for the next call), the IP of a record read before.
@example(["0x1: R 0x2", "0x1: W 0x8", "0x3: R 0x4"], "pinatrace", False, 3, None)
@example(["0x1: R 0x2", "bad", "0x0001: W 0x2", "0x3: W 0x4"], "pinatrace", True, 2, 1)
@given(st.lists(_rand_line, max_size=40), st.sampled_from(["lackey", "pinatrace"]), st.booleans(),
       st.integers(2, 20), st.one_of(st.none(), st.sampled_from([1, 3]), st.integers(0, (1 << 64) - 1)))
def test_python_and_compiled_parsers_agree_on_random_lines(lines, fmt, skip, cap, prev):
    """The plain-Python build of a parser (a short trace's) and its numba build (a long
    trace's) give the same records, counters, state (pinatrace's last IP) and problem
    on any input."""
    from vmsim.replay import _jit
    if not _jit.enabled():
        pytest.skip("numba off")
    text = "".join(line + "\n" for line in lines).encode()
    py, nb = _parse_both(fmt, text, cap, skip, prev)
    assert py == nb


def test_a_long_trace_switches_to_the_compiled_parser_and_reads_the_same(tmp_path, monkeypatch):
    """A trace whose lines reach the threshold loads the compiled parser from its next
    block on (vmsim._jitcache); the records equal an all-Python read."""
    from vmsim import _jitcache
    from vmsim.replay import _jit
    if not _jit.enabled():
        pytest.skip("numba off")
    p = tmp_path / "t.lackey"
    rng = np.random.default_rng(5)
    a = rng.integers(0, 1 << 47, 3000)
    k = rng.choice(["I  ", " L ", " S ", " M "], 3000)
    p.write_text("".join(f"{kk}{aa:x},{1 + aa % 16}\n" for kk, aa in zip(k, a)))
    monkeypatch.setattr(readers, "_BLOCK", 4096)
    seen = []
    real = readers._parser

    def spy(fmt, compiled=True):
        fn, c = real(fmt, compiled)
        seen.append(c)
        return fn, c
    monkeypatch.setattr(readers, "_parser", spy)
    saved = dict(_jitcache._work)
    outs = []
    try:
        # 3000 plain lines count 3000 // 16 units (readers._FAST_LINES_PER_UNIT) in
        # ~170-line blocks: 100 is reached mid-file.
        for after in ("1000000", "100"):
            monkeypatch.setenv("VMSIM_JIT_AFTER", after)
            _jitcache._work["parse"] = 0
            seen.clear()
            _, addr, kind, size = _all(p, chunk=700)
            outs.append((addr, kind, size, list(seen)))
    finally:
        _jitcache._work.update(saved)
    assert outs[0][:3] == outs[1][:3] and len(outs[0][0]) == 3000
    assert outs[0][3] == [False]                        # Python to the end
    assert outs[1][3] == [False, True]                  # switched once, mid-file


def test_a_reader_after_the_threshold_starts_compiled(tmp_path, monkeypatch):
    """Once earlier readers' lines passed the threshold, a new reader parses its first
    block with the compiled parser too, not as arrays (_BLOCKS); same records."""
    from vmsim import _jitcache
    from vmsim.replay import _jit
    if not _jit.enabled():
        pytest.skip("numba off")
    p = tmp_path / "t.lackey"
    rng = np.random.default_rng(6)
    a = rng.integers(0, 1 << 47, 500)
    k = rng.choice(["I  ", " L ", " S ", " M "], 500)
    p.write_text("".join(f"{kk}{aa:x},{1 + aa % 16}\n" for kk, aa in zip(k, a)))
    calls = []
    real = readers._lackey_block

    def spy(block, lo, hi, res=None):
        calls.append(lo)
        return real(block, lo, hi, res)
    monkeypatch.setitem(readers._BLOCKS, "lackey", spy)
    monkeypatch.setenv("VMSIM_JIT_AFTER", "100")
    saved = dict(_jitcache._work)
    outs = []
    try:
        for work in (0, 100):
            _jitcache._work["parse"] = work
            calls.clear()
            outs.append((_all(p, chunk=70)[1:], len(calls)))
    finally:
        _jitcache._work.update(saved)
    assert outs[0][0] == outs[1][0] and len(outs[0][0][0]) == 500
    assert outs[0][1] > 0 and outs[1][1] == 0           # arrays first, then none at all


@pytest.mark.parametrize("ext", ["npz", "parquet"])
def test_native_roundtrip_with_events(tmp_path, ext):
    p = str(tmp_path / f"t.{ext}")
    ev = [Event(0, "mmap", 7, 0x10000, 0x4000, 3, 0x22), Event(2, "fork", 7, arg=8),
          Event(3, "exit", 8)]
    native.write_trace(p, [0x10000, -4096, 0x10008], [1, 0, 2], [8, 1, 4], events=ev,
                       pid=np.array([7, 7, 8]))
    chunks = list(open_trace(p, chunk=2))
    assert [c.first for c in chunks] == [0, 2]
    assert np.concatenate([c.addr for c in chunks]).tolist() == [0x10000, -4096, 0x10008]
    assert np.concatenate([c.pid for c in chunks]).tolist() == [7, 7, 8]
    assert [e for c in chunks for e in c.events] == ev
    # Writable arrays: numba would compile the access loop anew for read-only ones
    # (np.frombuffer's), tens of seconds each time a cache is cold.
    assert all(a.flags.writeable for c in chunks for a in (c.addr, c.kind, c.size, c.pid))


def test_access_copies_read_only_arrays():
    from vmsim.api import _access_arrays
    ro = np.frombuffer(np.arange(3, dtype=np.int64).tobytes(), np.int64)
    kinds = np.frombuffer(bytes(3), np.uint8)
    out = _access_arrays(ro, kinds, ro)
    assert all(a.flags.writeable for a in out) and out[0].tolist() == [0, 1, 2]
    w = np.arange(3, dtype=np.int64)
    assert np.shares_memory(_access_arrays(w, np.zeros(3, np.uint8), None)[0], w)   # no copy when writable


def test_convert_text_to_native(tmp_path):
    src = tmp_path / "t.lackey.gz"
    with gzip.open(src, "wb") as f:
        f.write(LACKEY.encode() * 3)
    for ext in ("npz", "parquet"):
        dst = str(tmp_path / f"o.{ext}")
        n, bad = native.convert(str(src), dst, chunk=4)
        assert n == 3 * len(LACKEY_EXPECT[0]) and bad == 0
        _, a, k, s = _all(dst)
        assert a == LACKEY_EXPECT[0] * 3 and k == LACKEY_EXPECT[1] * 3 and s == LACKEY_EXPECT[2] * 3


def test_native_bad_files(tmp_path):
    p = tmp_path / "bad.npz"
    p.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(TraceError, match="not a readable .npz"):
        list(open_trace(str(p)))
    q = str(tmp_path / "k.npz")
    native.write_trace(q, [1, 2], [0, 1])
    np.savez(q, address=np.array([1]), kind=np.array([7]), size=np.array([1]))
    with pytest.raises(TraceError, match="kind 7"):
        list(open_trace(q))
    np.savez(q, address=np.array([1]), size=np.array([1]))
    with pytest.raises(TraceError, match="missing column 'kind'"):
        list(open_trace(q))


_line = st.one_of(
    st.sampled_from(["I  0401ab70,3", " L 1fff000768,8", " S 0,1", " M ffff,4096", "==1== x", "",
                     "#eof", "0x1: R 0x2", "0x3: W 0x4"]),
    st.text(alphabet="ILSMRW :,0123456789abcdefx=#\t\r", max_size=30),
)


_text_args = (st.lists(_line, max_size=20), st.sampled_from(["lackey", "pinatrace"]), st.booleans(),
              st.integers(2, 5))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(*_text_args)
def test_fuzz_text_readers(tmp_path_factory, lines, fmt, skip, chunk):
    _fuzz_text(tmp_path_factory, lines, fmt, skip, chunk)


@pytest.mark.slow
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(*_text_args)
def test_fuzz_text_readers_long(tmp_path_factory, lines, fmt, skip, chunk):
    _fuzz_text(tmp_path_factory, lines, fmt, skip, chunk)


def _fuzz_text(tmp_path_factory, lines, fmt, skip, chunk):
    p = tmp_path_factory.mktemp("fz") / f"t.{fmt}"
    p.write_text("\n".join(lines))
    try:
        r = open_trace(str(p), chunk=chunk, skip_bad=skip)
        for c in r:
            assert len(c.addr) == len(c.kind) == len(c.size) <= chunk
            assert c.kind.max(initial=0) <= 2 and c.size.min(initial=1) >= 1
    except TraceError as e:
        assert str(e).startswith(str(p))
        assert not skip or e.line == 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.sampled_from(["t.npz", "t.parquet", "t.lackey.gz", "t.lackey.xz",
                                                 "t.lackey", "t.bin"]))
def test_fuzz_binary_inputs(tmp_path_factory, data, name):
    p = tmp_path_factory.mktemp("fb") / name
    p.write_bytes(data)
    try:
        for _ in open_trace(str(p), chunk=4, skip_bad=True):
            pass
    except TraceError:
        pass


_FUZZ_TEXT = _many_lines(300)
_FUZZ_PACKED = {".gz": gzip.compress(_FUZZ_TEXT), ".xz": lzma.compress(_FUZZ_TEXT),
                ".gz2": gzip.compress(_FUZZ_TEXT[:1500]) + gzip.compress(_FUZZ_TEXT[1500:])}


_damage = (st.sampled_from(sorted(_FUZZ_PACKED)), st.sampled_from(["cut", "flip", "insert"]),
           st.floats(0, 1), st.integers(0, 255), st.integers(1, 300), st.integers(1, 5000))
_hc = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


@settings(max_examples=60, deadline=None, suppress_health_check=_hc)
@given(*_damage)
def test_fuzz_damaged_compressed_traces(tmp_path_factory, monkeypatch, suffix, how, where, byte,
                                        piece, out):
    _fuzz_damaged(tmp_path_factory, monkeypatch, suffix, how, where, byte, piece, out)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, suppress_health_check=_hc)
@given(*_damage)
def test_fuzz_damaged_compressed_traces_long(tmp_path_factory, monkeypatch, suffix, how, where,
                                             byte, piece, out):
    _fuzz_damaged(tmp_path_factory, monkeypatch, suffix, how, where, byte, piece, out)


def _fuzz_damaged(tmp_path_factory, monkeypatch, suffix, how, where, byte, piece, out):
    """A compressed trace cut short or with a byte changed or inserted, read through
    small decompression pieces: a TraceError, or (the damage in a field no check
    covers, such as gzip's mtime) the whole trace exactly; never another exception, a
    hang, or a trace read short without an error."""
    monkeypatch.setattr(readers._Decompressing, "PIECE", piece)
    monkeypatch.setattr(readers._Decompressing, "OUT", out)
    z = bytearray(_FUZZ_PACKED[suffix])
    i = min(int(where * len(z)), len(z) - 1)
    if how == "cut":
        z = z[:i]
    elif how == "flip":
        z[i] ^= byte or 1
    else:
        z.insert(i, byte)
    p = tmp_path_factory.mktemp("fc") / ("t.lackey" + suffix[:3])
    p.write_bytes(bytes(z))
    plain = tmp_path_factory.mktemp("fc") / "t.lackey"
    plain.write_bytes(_FUZZ_TEXT)
    try:
        got = _all(p)[1]
    except TraceError as e:
        assert str(e).startswith(str(p))
        return
    assert got == _all(plain)[1]


# --- whole blocks of plain lackey lines as arrays (readers._lackey_block) --------------
_LACKEY_KINDS = st.sampled_from(["I  ", " L ", " S ", " M "])
_lackey_like = st.one_of(
    # plain, and past the edges: 17+ hex digits, 6+ size digits, blanks after the size
    st.builds(lambda k, a, z, zs, s, end: f"{k}{'0' * z}{a:x},{'0' * zs}{s}{end}", _LACKEY_KINDS,
              st.one_of(st.sampled_from([0, (1 << 60) - 1, 1 << 60, 1 << 63, (1 << 64) - 1]),
                        st.integers(0, (1 << 64) - 1)), st.integers(0, 3), st.integers(0, 3),
              st.one_of(st.sampled_from([0, 1, 4095, 4096, 4097, 99999]), st.integers(0, 5000)),
              st.sampled_from(["", "", "\r", " ", "\t", "\r\r"])),
    st.builds(lambda k, a, s: f"{k}{a:X},{s:05d}", _LACKEY_KINDS, st.integers(0, 1 << 40),
              st.integers(1, 4096)),
    st.sampled_from(["==7== Lackey, an example, of a log line", "==1==", "", "\r"]),
)
# The form _lackey_block must take, written out here: a record with 1-16 hex digits, a
# size of 1-5 decimal digits from 1 to 4096 and nothing after it, a '==' log line, or a
# blank line (each maybe with a '\r' before its newline).
_PLAIN = re.compile(r"((I  | [LSM] )[0-9a-fA-F]{1,16},(\d{1,5})|==.*|)\r?")


def _is_plain(line):
    m = _PLAIN.fullmatch(line)
    return m is not None and (m.group(3) is None or 1 <= int(m.group(3)) <= 4096)


def _byte_loop(text, cap, fmt="lackey", res=None):
    fn, _ = readers._parser(fmt, compiled=False)
    res = np.zeros(readers._NRES, np.int64) if res is None else res
    a, k, s = np.zeros(cap, np.int64), np.zeros(cap, np.uint8), np.zeros(cap, np.int64)
    fn(text, 0, len(text), readers._HEX.tolist(), a, k, s, cap, False, res)
    n = int(res[1])
    return int(res[4]), a[:n].tolist(), k[:n].tolist(), s[:n].tolist(), int(res[2]), int(res[8])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example([" M ffffffffffffffff,4096", "I  0,00001"])                  # the edges, inside
@example(["I  0,1", "I  10000,1"])            # the first line's digits start near the block's
@example([" L 01000000000000000,8"])                                # 17 digits
@example([" L 10,4097"])
@example([" L 10,000008"])                                          # 6 digits
@example([" L 10,0"])
@example(["IL 10,8"])
@example([" X 10,8"])
@example([" L010,8"])
@example(["I  10,8 "])
@given(st.one_of(st.lists(_lackey_like, min_size=1, max_size=6),
                 st.lists(st.one_of(_lackey_like, _rand_line), min_size=1, max_size=40)))
def test_plain_lackey_blocks_parse_as_the_byte_loop(lines):
    """_lackey_block (a short trace's parser before numba) takes a block when every line
    is plain, and then gives the byte loop's records, line and modify counts; any
    other block it leaves to the byte loop."""
    text = "".join(line + "\n" for line in lines).encode()
    got = readers._lackey_block(text, 0, len(text))
    plain = all(_is_plain(line) for line in lines)
    assert (got is not None) == plain, [line for line in lines if not _is_plain(line)]
    if got is None:
        return
    problem, a, k, s, nlines, modifies = _byte_loop(text, 2 * len(lines) + 1)
    assert problem == 0
    assert (got[0].tolist(), got[1].tolist(), got[2].tolist(), got[3], got[4]) == \
        (a, k, s, nlines, modifies)
    assert got[0].dtype == np.int64 and got[1].dtype == np.uint8 and got[2].dtype == np.int64


@pytest.mark.parametrize("skip", [False, True])
def test_a_bad_line_after_plain_pieces_reads_as_the_byte_loop(tmp_path, monkeypatch, skip):
    """Plain pieces go as arrays, the piece with a malformed line to the byte loop: the
    same chunks, counts and error line as the byte loop alone."""
    rng = np.random.default_rng(9)
    lines = [f"{kk}{aa:x},{1 + aa % 8}" for kk, aa in
             zip(rng.choice(["I  ", " L ", " S ", " M "], 400), rng.integers(0, 1 << 47, 400))]
    lines[250] = " L 12345,zz"                                   # line 251
    p = tmp_path / "t.lackey"
    p.write_text("==1== log\n" + "\n".join(lines[:250]) + "\n" + "\n".join(lines[250:]) + "\n")
    monkeypatch.setattr(readers, "_PIECE", 512)                  # ~25 lines a piece
    monkeypatch.setenv("VMSIM_JIT_AFTER", "100000000")           # no numba: plain Python
    calls = []
    real = readers._lackey_block

    def spy(block, lo, hi, res=None):
        got = real(block, lo, hi, res)
        calls.append(got is not None)
        return got
    outs = []
    for fast in (spy, lambda block, lo, hi, res=None: None):
        monkeypatch.setitem(readers._BLOCKS, "lackey", fast)
        r = open_trace(str(p), chunk=37, skip_bad=skip)
        chunks = []
        try:
            for c in r:
                chunks.append((c.first, c.addr.tolist(), c.kind.tolist(), c.size.tolist()))
            err = None
        except TraceError as e:
            err = e.line, e.problem
        outs.append((chunks, err, r.lines, r.bad_lines, r.modifies, r.accesses))
    assert outs[0] == outs[1]
    assert calls[:2] == [True, True] and False in calls      # arrays first, then the byte loop
    if skip:
        assert outs[0][3] == 1 and outs[0][5] == 399
    else:
        assert outs[0][1] == (252, readers._PROBLEMS["lackey"][readers._E_SIZE])


_PIN_IPS = [0, (1 << 60) - 1, 1 << 60, (1 << 64) - 1]
_pin_like = st.builds(
    lambda p, ip, z, k, q, a, end: f"{p}{'0' * z}{ip:x}: {k} {q}{a:x}{end}",
    st.sampled_from(["0x", "0X", "", "0x0x"]),
    st.one_of(st.sampled_from(_PIN_IPS), st.integers(0, 1 << 64)),
    st.integers(0, 2), st.sampled_from(["R", "W", "r", "X"]), st.sampled_from(["0x", "0X", "", "x"]),
    st.one_of(st.sampled_from([0, (1 << 60) - 1, 1 << 60, (1 << 64) - 1]), st.integers(0, 1 << 64)),
    st.sampled_from(["", "", "\r", " ", "\t"]))
# The form _pinatrace_block must take: 'IP: R 0xADDR' or 'IP: W 0xADDR', IP with or
# without 0x, 1-16 hex digits each, nothing after; or a blank line; '\r' allowed last.
_PIN_PLAIN = re.compile(r"((0[xX])?[0-9a-fA-F]{1,16}: [RW] 0[xX][0-9a-fA-F]{1,16}|)\r?")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(["0xffffffffffffffff: W 0xffffffffffffffff", "1: R 0x0", "", "0X1: R 0X2\r"], None)
@example(["0x0x1: R 0x2"], None)
@example(["0x: R 0x2"], None)
@example(["01000000000000000: R 0x2"], None)                                # 17 digits
@example(["0x1: R 0x10000000000000000"], None)
@example(["0x1: R 0x2 "], None)
@example(["0x1: R 0x"], None)
@example(["0x1: R 1x2"], None)
@example(["0x1:  R 0x2"], None)
@example(["0x1: R 0x2", "#eof", "0x3: W 0x4"], None)
@example(["0x1: R 0x2", "# a: W 0x4"], None)
@example(["0x1: R 0x2", "0x0001: W 0x3", "", "1: W 0x4", "0x2: R 0x5", "0x1: R 0x6"], 1)
@example(["", "0x1: R 0x2"], 1)
@given(st.one_of(st.lists(_pin_like, min_size=1, max_size=6),
                 st.lists(st.one_of(_pin_like, _rand_line), min_size=1, max_size=40)),
       st.one_of(st.none(), st.sampled_from(_PIN_IPS + [1, 3]), st.integers(0, (1 << 64) - 1)))
def test_plain_pinatrace_blocks_parse_as_the_byte_loop(lines, prev):
    """As test_plain_lackey_blocks_parse_as_the_byte_loop, for _pinatrace_block: the
    same fetches (each IP unless the record before, maybe one read before the block:
    ``prev``, has it) and data accesses, and the same last IP after it."""
    text = "".join(line + "\n" for line in lines).encode()
    state = np.zeros(readers._NRES, np.int64)
    if prev is not None:
        state[9], state[10] = prev - (1 << 64) if prev >> 63 else prev, 1
    res = state.copy()
    got = readers._pinatrace_block(text, 0, len(text), res)
    plain = all(_PIN_PLAIN.fullmatch(line) for line in lines)
    assert (got is not None) == plain, [line for line in lines if not _PIN_PLAIN.fullmatch(line)]
    if got is None:
        assert res.tolist() == state.tolist()               # a block not taken: state unchanged
        return
    loop = state.copy()
    problem, a, k, s, nlines, _ = _byte_loop(text, 2 * len(lines) + 1, "pinatrace", loop)
    assert problem == 0
    assert (got[0].tolist(), got[1].tolist(), got[2].tolist(), got[3], got[4]) == (a, k, s, nlines, 0)
    assert res[9:].tolist() == loop[9:].tolist()


def test_pinatrace_pieces_stop_at_eof_as_the_byte_loop(tmp_path, monkeypatch):
    """Plain pinatrace pieces go as arrays; the piece with '#eof' goes to the byte
    loop, which stops there: the records of the byte loop alone."""
    rng = np.random.default_rng(4)
    # IPs from a few: runs of one IP (one fetch) cross the pieces' and chunks' edges.
    lines = [f"{ip:#x}: {k} {a:#x}" for ip, k, a in
             zip(0x401000 + rng.integers(0, 3, 400), rng.choice(["R", "W"], 400),
                 rng.integers(0, 1 << 47, 400))]
    lines[300] = "#eof"
    p = tmp_path / "t.pinatrace"
    p.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(readers, "_PIECE", 512)
    monkeypatch.setenv("VMSIM_JIT_AFTER", "100000000")
    calls = []
    real = readers._pinatrace_block

    def spy(block, lo, hi, res=None):
        got = real(block, lo, hi, res)
        calls.append(got is not None)
        return got
    outs = []
    for fast in (spy, lambda block, lo, hi, res=None: None):
        monkeypatch.setitem(readers._BLOCKS, "pinatrace", fast)
        r = open_trace(str(p), chunk=41)
        chunks = list(r)
        assert all(len(c.addr) <= 41 for c in chunks)
        # The pieces fill a chunk to the access; the byte loop leaves a record whose
        # fetch and data access do not both fit to the next chunk.
        outs.append(([np.concatenate([getattr(c, f) for c in chunks]).tolist()
                      for f in ("addr", "kind", "size")], r.lines, r.accesses))
    assert outs[0] == outs[1]
    ips = [int(line.split(":")[0], 16) for line in lines[:300]]
    fetches = 1 + sum(a != b for a, b in zip(ips, ips[1:]))
    assert 100 < fetches < 300 and outs[0][2] == 300 + fetches
    assert outs[0][0][1].count(2) == fetches
    assert calls[:2] == [True, True] and calls[-1] is False
