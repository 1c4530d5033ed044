"""vmsim's compiled runs of cached file read faults (mm/_filemap_batch.py, behind
Process.touch): do_read_fault -> do_fault_around -> filemap_map_pages taken in one
call leave exactly the state the kernel-named Python path leaves. The same random
programs run on two machines, one with the runs switched off; every mem_map array,
page-table row, table-pool slot, counter, allocator list, TLB record, the file's
readahead state and each process's fault counts must agree."""
import pytest
from hypothesis import given, settings, strategies as st

import vmsim
from vmsim import (PROT_READ, PROT_WRITE, PROT_NONE, MAP_PRIVATE, MAP_SHARED, MAP_ANONYMOUS,
                   MADV_DONTNEED, MADV_NOHUGEPAGE, MADV_HUGEPAGE, MADV_COLD, O_RDWR, O_CREAT,
                   POSIX_FADV_DONTNEED, SignalDelivered)
from vmsim.arch.x86 import cpu as _cpu
from vmsim.mm import _filemap_batch
from test_pte_batch import _state, _assert_same

MiB = 1 << 20
FILE_PAGES = 1536                      # 6 MiB: three PMDs' worth
KNOB = "/sys/kernel/debug/fault_around_bytes"

OPS = st.one_of(
    # loads over [page, page + n) of mapping m, one per stride
    st.tuples(st.just("read"), st.integers(0, 2), st.integers(0, FILE_PAGES - 1),
              st.integers(1, FILE_PAGES), st.sampled_from([4096, 4096, 8192, 1024, 20480])),
    st.tuples(st.just("dontneed"), st.integers(0, 2), st.integers(0, FILE_PAGES - 1),
              st.integers(1, 700), st.just(0)),
    st.tuples(st.just("nohuge"), st.integers(0, 2), st.integers(0, FILE_PAGES - 1),
              st.integers(1, 700), st.just(0)),
    st.tuples(st.just("huge"), st.integers(0, 2), st.integers(0, FILE_PAGES - 1),
              st.integers(1, 700), st.just(0)),
    st.tuples(st.just("munmap"), st.integers(0, 2), st.integers(0, FILE_PAGES - 1),
              st.integers(1, 40), st.just(0)),
    st.tuples(st.just("protnone"), st.integers(0, 2), st.integers(0, FILE_PAGES - 1),
              st.integers(1, 40), st.just(0)),
    st.tuples(st.just("mlock"), st.integers(0, 2), st.integers(0, FILE_PAGES - 1),
              st.integers(1, 40), st.just(0)),
    st.tuples(st.just("fork"), st.integers(0, 2), st.integers(0, FILE_PAGES - 1),
              st.integers(1, 600), st.just(4096)),
    st.tuples(st.just("fadvise"), st.just(0), st.integers(0, FILE_PAGES - 1),
              st.integers(1, 900), st.just(0)),
    st.tuples(st.just("pread"), st.just(0), st.integers(0, FILE_PAGES - 1),
              st.integers(1, 600), st.just(0)),
    st.tuples(st.just("cold"), st.integers(0, 2), st.integers(0, FILE_PAGES - 1),
              st.integers(1, 600), st.just(0)),
    st.tuples(st.just("pwrite"), st.just(0), st.integers(0, FILE_PAGES - 1),
              st.sampled_from([1, 3, 16, 512]), st.just(0)),
    st.tuples(st.just("truncate"), st.just(0), st.integers(FILE_PAGES // 2, FILE_PAGES + 8),
              st.integers(0, 4095), st.just(0)),
    st.tuples(st.just("miss"), st.just(0), st.integers(0, 1000), st.just(0), st.just(0)),
    st.tuples(st.just("knob"), st.just(0), st.sampled_from([4096, 16384, 65536, 1 << 20]),
              st.just(0), st.just(0)),
    st.tuples(st.just("cpu"), st.just(0), st.integers(0, 1), st.just(0), st.just(0)),
    st.tuples(st.just("anon"), st.just(0), st.integers(1, 30), st.just(0), st.just(0)),
)
CHUNKS = st.lists(st.sampled_from([1, 4, 16, 32, 128, 512]), min_size=1, max_size=14)


def _run(chunks, program, enabled, memory="64M"):
    """A 6 MiB file on /tmp written in ``chunks`` (pages per pwrite: the page-cache
    folio sizes), mapped private at offset 0, private at a 3-page offset and shared;
    ``program`` runs with the read-fault runs on or off."""
    _filemap_batch._set_run_enabled(enabled)
    try:
        m = vmsim.Machine(memory=memory, cpus=2)
        p = m.spawn()
        fd = p.open("/tmp/run", O_RDWR | O_CREAT, 0o644)
        off = 0
        for c in chunks:
            if off >= FILE_PAGES:
                break
            n = min(c, FILE_PAGES - off)
            p.pwrite(fd, bytes([off % 251 + 1]) * (n << 12), off << 12)
            off += n
        p.ftruncate(fd, FILE_PAGES << 12)
        maps = [(p.mmap(0, FILE_PAGES << 12, PROT_READ, MAP_PRIVATE, fd, 0), 0),
                (p.mmap(0, (FILE_PAGES - 3) << 12, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd,
                        3 << 12), 3),
                (p.mmap(0, FILE_PAGES << 12, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), 0)]
        procs = [p]
        for op, mi, page, n, stride in program:
            who = procs[-1]
            if who.mm is None:                  # the OOM killer struck (an "anon" op)
                break
            a, skew = maps[mi]
            page = max(page - skew, 0)
            length = max(min(n, FILE_PAGES - skew - page), 1) << 12
            a += page << 12
            try:
                if op == "read":
                    who.touch(a, length, stride=stride)
                elif op == "dontneed":
                    who.madvise(a, length, MADV_DONTNEED)
                elif op == "nohuge":
                    who.madvise(a, length, MADV_NOHUGEPAGE)
                elif op == "huge":
                    who.madvise(a, length, MADV_HUGEPAGE)
                elif op == "munmap":
                    who.munmap(a, length)
                elif op == "protnone":
                    who.mprotect(a, length, PROT_NONE)
                elif op == "mlock":
                    who.mlock(a, length)
                elif op == "fork" and len(procs) < 3:
                    procs.append(who.fork())
                    procs[-1].touch(a, length, stride=stride)
                elif op == "fadvise":
                    # Unmapped everywhere first (mapped folios stay cached), then
                    # dropped: holes, major faults, readahead and PG_readahead marks.
                    for q in procs:
                        for b, sk in maps:
                            try:
                                q.madvise(b + (max(page - sk, 0) << 12), n << 12,
                                          MADV_DONTNEED)
                            except OSError:
                                pass
                    who.posix_fadvise(fd, page << 12, n << 12, POSIX_FADV_DONTNEED)
                elif op == "pread":
                    who.pread(fd, n << 12, page << 12)        # marks accessed,
                    who.pread(fd, n << 12, page << 12)        # then active
                elif op == "cold":
                    who.madvise(a, length, MADV_COLD)         # active: PG_workingset
                elif op == "pwrite":
                    who.pwrite(fd, b"w" * (n << 12), page << 12)
                elif op == "truncate":
                    who.ftruncate(fd, (page << 12) - n)
                elif op == "miss":
                    # Any mmap_miss (a run of major faults leaves one; fault-around
                    # takes it down by the pages it maps that are not workingset).
                    who.mm.vma_lookup(maps[0][0]).vm_file.f_ra.mmap_miss = page
                elif op == "knob":
                    m.write_file(KNOB, str(page))
                elif op == "cpu":
                    m.schedule(who, page)
                elif op == "anon":
                    b = who.mmap(0, page * MiB, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                    who.touch(b, page * MiB, write=True)
            except (OSError, SignalDelivered):
                pass
        m.check()
        return m, procs
    finally:
        _filemap_batch._set_run_enabled(True)


def _full_state(m, procs):
    """_state() plus what the file fault path also changes: the table pool's slots,
    each mapped file's readahead state and every process's fault counts and signals."""
    live = [p for p in procs if p.mm is not None]       # the OOM killer may have struck
    out = _state(m, live)
    pool = m.k.ptpool
    out["ptpool"] = (list(pool.free_slots), pool.used, list(pool.slot_pfn),
                     list(pool.pt_share_count))   # deposits: mem_map lru links, in _state
    ras = []
    for p in live:
        r = p.getrusage()
        ras.append((p.pid, r.ru_minflt, r.ru_majflt, repr(p.task.signals)))
        for vma in p.mm._vmas_in(0, 1 << 64):
            f = vma.vm_file
            if f is not None and getattr(f, "f_ra", None) is not None:
                ra = f.f_ra
                ras.append((vma.vm_start, ra.start, ra.size, ra.async_size, ra.mmap_miss,
                            ra.prev_pos))
    out["procs"] = ras
    out["dead"] = [p.pid for p in procs if p.mm is None]
    return out


def _compare(chunks, program, memory="64M"):
    """Run with the runs off, then on; the states must agree. Returns (run calls that
    took faults, faults they took, PMD mappings, tables installed)."""
    py = _full_state(*_run(chunks, program, False, memory))
    seen = [0, 0, 0, 0]
    real = _filemap_batch._get_run

    def counting(compiled):
        fn = real(compiled)

        def run(*args):
            r = fn(*args)
            out = args[-1]
            seen[0] += out[0] > 0
            seen[1] += out[0]
            seen[2] += out[4]
            seen[3] += out[7]
            return r
        return run
    _filemap_batch._get_run = counting
    try:
        taken = _full_state(*_run(chunks, program, True, memory))
    finally:
        _filemap_batch._get_run = real
    _assert_same(py, taken)
    return seen


@settings(max_examples=8, deadline=None)
@given(CHUNKS, st.lists(OPS, min_size=1, max_size=10))
def test_read_fault_runs_leave_the_python_state(chunks, program):
    """Random page caches (folio sizes from the pwrite sizes, EOF inside a folio after
    truncation, holes and PG_readahead folios after POSIX_FADV_DONTNEED and
    readahead), private, offset and shared mappings, strided loads, MADV_DONTNEED,
    (NO)HUGEPAGE, munmap, PROT_NONE, mlock, forks, fault_around_bytes, CPU switches
    and an allocator pushed towards its watermark: identical state with and without
    the runs."""
    _compare(chunks, program)


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(CHUNKS, st.lists(OPS, min_size=1, max_size=20))
def test_read_fault_runs_leave_the_python_state_long(chunks, program):
    _compare(chunks, program)


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(CHUNKS, st.lists(OPS, min_size=1, max_size=16))
def test_compiled_read_fault_runs_leave_the_python_state(chunks, program):
    """The same with the numba builds of the walk and of the run."""
    saved = _cpu._impl["compiled"]
    _cpu._use_compiled(True)
    try:
        _compare(chunks, program)
    finally:
        _cpu._use_compiled(saved)


def test_read_fault_runs_are_taken_and_stop_where_the_python_path_must_run():
    # 4- and 16-page folios (a table installed per PMD), a 2 MiB folio by PTEs and by
    # a PMD (the table do_fault_around preallocates replayed), folios across a PMD
    # boundary of the offset mapping, holes and PG_readahead folios after
    # POSIX_FADV_DONTNEED (major faults: the Python path; mmap_miss moves), PG_workingset
    # folios after MADV_COLD, EOF inside a folio, a second process, and
    # fault_around_bytes at 4 KiB (no fault-around: the Python path).
    chunks = [4] * 128 + [512] + [16] * 32
    program = [("miss", 0, 300, 0, 0), ("nohuge", 0, 0, 512, 0), ("read", 0, 0, 1536, 4096),
               ("read", 2, 0, 1536, 4096), ("read", 1, 0, 1536, 4096),
               ("pread", 0, 0, 1536, 0), ("cold", 0, 0, 1536, 0),
               ("dontneed", 0, 100, 700, 0), ("miss", 0, 900, 0, 0),
               ("read", 0, 0, 1536, 8192),
               ("fadvise", 0, 200, 300, 0), ("read", 0, 0, 1536, 4096),
               ("truncate", 0, 1500, 2000, 0), ("dontneed", 0, 1400, 200, 0),
               ("read", 0, 1024, 512, 4096),
               ("fork", 0, 0, 1536, 4096), ("munmap", 0, 0, 1536, 0),
               ("knob", 0, 4096, 0, 0), ("read", 1, 0, 1536, 4096)]
    calls, faults, pmds, tables = _compare(chunks, program)
    assert calls >= 6 and faults >= 100 and pmds >= 1 and tables >= 2


def test_read_fault_runs_at_eof_inside_a_folio():
    # The last folio, two pages, ends in the middle of a page past EOF (truncation
    # cannot split it): first in its window under a none PMD filemap_map_pages maps
    # nothing and ->fault / finish_fault map one page; under a PTE table the window
    # maps up to the last page of the file.
    for first in (False, True):
        states = []
        for enabled in (False, True):
            _filemap_batch._set_run_enabled(enabled)
            try:
                m = vmsim.Machine(memory="64M")
                p = m.spawn()
                fd = p.open("/tmp/eof", O_RDWR | O_CREAT, 0o644)
                for off in range(0, 2 * MiB, 64 * 1024):             # 16-page folios
                    p.pwrite(fd, b"e" * (64 * 1024), off)
                p.pwrite(fd, b"f" * 8192, 2 * MiB)                     # an order-1 folio
                p.ftruncate(fd, 2 * MiB + 4096 + 100)
                a = p.mmap(0, 4 * MiB, PROT_READ, MAP_PRIVATE, fd, 0)
                p.madvise(a, 4 * MiB, MADV_NOHUGEPAGE)
                if first:
                    p.touch(a + 2 * MiB, 8192)
                    p.madvise(a + 2 * MiB, 8192, MADV_DONTNEED)
                p.touch(a, 2 * MiB, stride=4096 * 16)                  # tables, one run
                p.touch(a + 2 * MiB, 64, stride=4)                     # 16 loads at EOF
                p.touch(a + 2 * MiB + 4096, 64, stride=4)
                m.check()
                states.append(_full_state(m, [p]))
                pte = [p.mincore(a + 2 * MiB, 8192)]
                states[-1]["mincore"] = pte
            finally:
                _filemap_batch._set_run_enabled(True)
        _assert_same(*states)
