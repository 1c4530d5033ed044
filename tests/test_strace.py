"""Output in Linux's words: strace lines, symbolic errno/signal names, a scenario killed
by a signal, the kernel's entry writes in traces, the run summary.

The expected strace lines are real: tests/data/strace/strace-6.1.txt is strace 6.1's
output on this machine (Linux 6.18.44) for the C programs next to it."""
import os
import re
import subprocess
import textwrap

import numpy as np
import pytest

import vmsim
from vmsim import (PROT_READ, PROT_WRITE, PROT_EXEC, PROT_NONE, MAP_PRIVATE, MAP_SHARED,
                   MAP_ANONYMOUS, MAP_POPULATE, MAP_FIXED_NOREPLACE, MAP_HUGETLB, MAP_HUGE_2MB,
                   MADV_DONTNEED, MADV_FREE, MADV_COLD, MREMAP_MAYMOVE, MREMAP_FIXED,
                   MREMAP_DONTUNMAP, MLOCK_ONFAULT, SignalDelivered)
from vmsim.strace import ALIGN, Record, Strace, format_record, text
from vmsim.trace import function_graph, decode_entry

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
KERNEL = "/work/shared/linux-6.18.2"
with open(os.path.join(HERE, "data", "strace", "strace-6.1.txt")) as _f:
    REAL = [ln for ln in _f.read().splitlines() if not ln.startswith("#")]


def real(prefix):
    """The first line of the real strace output that starts with ``prefix``."""
    for ln in REAL:
        if ln.startswith(prefix):
            return ln
    raise AssertionError(f"no real line {prefix!r}")


def hexes(line):
    return [int(x, 16) for x in re.findall(r"0x[0-9a-f]+", line)]


def sc(name, args, ret=0, err=0, pid=1):
    return Record(pid, "syscall", name, args, -1 if err else ret, err)


# --- 1. strace's lines ----------------------------------------------------------------
def test_syscall_lines_match_real_strace():
    ln = real("mprotect(0x10000")
    assert format_record(sc("mprotect", (0x10000, 4096, PROT_READ), err=12), ALIGN) == ln
    ln = real("madvise(")
    a = hexes(ln)[0]
    assert format_record(sc("madvise", (a, 4096, MADV_DONTNEED)), ALIGN) == ln
    ln = real(f"madvise({a:#x}, 4096, 0x3039")
    assert format_record(sc("madvise", (a, 4096, 12345), err=22), ALIGN) == ln
    ln = real("mremap(")
    old, new = hexes(ln)
    assert format_record(sc("mremap", (old, 16384, 32768, MREMAP_MAYMOVE, 0), new), ALIGN) == ln
    ln = real(f"mremap({new:#x}")
    b, dst, ret = hexes(ln)
    flags = MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP
    assert format_record(sc("mremap", (b, 32768, 32768, flags, dst), ret), ALIGN) == ln
    assert format_record(sc("mlock2", (b, 4096, MLOCK_ONFAULT)), ALIGN) == real("mlock2(")
    assert format_record(sc("mlock", (b, 4096)), ALIGN) == real("mlock(")
    assert format_record(sc("munlock", (b, 4096)), ALIGN) == real("munlock(")
    assert format_record(sc("mincore", (b, 8192, b"\x01\x00")), ALIGN) == real("mincore(")
    assert format_record(sc("munmap", (b, 4096)), ALIGN) == real(f"munmap({b:#x}, 4096)")
    ln = real("brk(NULL)")
    assert format_record(sc("brk", (0,), hexes(ln)[0]), ALIGN) == ln
    assert format_record(sc("fork", (), 5), ALIGN) == real("fork()  ")
    assert format_record(sc("exit_group", (0,), None), ALIGN) == real("exit_group(0)")


def test_mmap_arguments_decoded_as_strace():
    ln = real("mmap(NULL, 8192, PROT_READ|PROT_WRITE")
    assert format_record(sc("mmap", (0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                                     -1, 0), hexes(ln)[0]), ALIGN) == ln
    flags = MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE | MAP_FIXED_NOREPLACE
    assert format_record(sc("mmap", (0x10000, 4096, PROT_NONE, flags, -1, 0), 0x10000),
                         ALIGN) == real("mmap(0x10000")
    flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB
    assert format_record(sc("mmap", (0, 4096, PROT_READ | PROT_EXEC, flags, -1, 0), err=12),
                         ALIGN) == real("mmap(NULL, 4096, PROT_READ|PROT_EXEC")
    assert format_record(sc("mmap", (0, 4096, 0x100, 0x80000000, -1, 0), err=9),
                         ALIGN) == real("mmap(NULL, 4096, 0x100")


def test_signal_exit_and_pid_prefix_lines():
    ln = real("--- SIGSEGV {si_signo=SIGSEGV, si_code=SEGV_ACCERR")
    rec = Record(4, "signal", "SIGSEGV", (2, hexes(ln)[0]), None, 0)
    assert format_record(rec) == ln
    ln = real("--- SIGBUS")
    assert format_record(Record(4, "signal", "SIGBUS", (2, hexes(ln)[0]), None, 0)) == ln
    assert format_record(Record(4, "killed", "SIGBUS", (), None, 0)) == real("+++ killed by SIGBUS")
    # strace -f on a terminal: "[pid N] " while more than one process is alive.
    recs = [sc("execve", ("/x",), pid=4), sc("fork", (), 5, pid=4),
            sc("exit_group", (3,), None, pid=5), Record(5, "exit", "", (3,), None, 0),
            sc("wait4", (5, 3, False), 5, pid=4), sc("exit_group", (0,), None, pid=4),
            Record(4, "exit", "", (0,), None, 0)]
    lines = text(recs).splitlines()
    assert lines[1] == real("fork()  ")
    assert lines[2] == real("[pid     5] exit_group(3)")
    assert lines[3] == real("[pid     5] +++ exited with 3")
    resumed = real("<... wait4 resumed>[{WIFEXITED")
    assert lines[4] == "wait4(5, " + resumed[len("<... wait4 resumed>"):].replace("       =", " =")
    assert lines[5:] == [real("exit_group(0)"), real("+++ exited with 0")]


def test_strace_collects_structured_records():
    m = vmsim.Machine(memory="64M")
    with Strace() as st:
        p = m.spawn()
        a = p.mmap(0, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        with pytest.raises(OSError):
            p.mprotect(a, 1 << 50, PROT_READ)
        c = p.fork()
        c.exit(0)
        p.wait(c.pid)
        p.mprotect(a, 4096, PROT_READ)
        with pytest.raises(SignalDelivered):
            p.write(a, b"x")
        p.mincore(a, 8192)
    r = st.records
    assert r[-1] == Record(1, "syscall", "mincore", (a, 8192, (0, 0)), 0, 0)   # never touched
    assert r[0] == Record(1, "syscall", "execve", ("/usr/local/bin/vmsim-minimal",), 0, 0)
    assert r[1] == Record(1, "syscall", "mmap", (0, 65536, 3, 0x22, -1, 0), a, 0)
    assert r[2] == Record(1, "syscall", "mprotect", (a, 1 << 50, PROT_READ), -1, 12)
    assert r[3] == Record(1, "syscall", "fork", (), c.pid, 0)
    assert r[4:6] == [Record(c.pid, "syscall", "exit_group", (0,), None, 0),
                      Record(c.pid, "exit", "", (0,), None, 0)]
    assert r[6] == Record(1, "syscall", "wait4", (c.pid, 0, False), c.pid, 0)
    assert r[8] == Record(1, "signal", "SIGSEGV", (vmsim.SEGV_ACCERR, a), None, 0)
    assert r[8]._asdict()["args"] == (2, a)
    import json
    assert json.loads(json.dumps([x._asdict() for x in r]))[1]["args"] == [0, 65536, 3, 0x22, -1, 0]
    # Not installed any more: the API is the plain one again.
    assert vmsim.Process.mmap.__qualname__ == "Process.mmap"


def test_strace_stops_collecting_at_its_limit():
    m = vmsim.Machine(memory="64M")
    with Strace(max_records=3) as st:
        p = m.spawn()
        for _ in range(5):
            p.mmap(0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS)
    assert len(st.records) == 3 and st.truncated
    assert st.text().splitlines()[-1] == \
        "# strace: output limit of 3 lines reached; later calls are not shown"


# --- 2. symbolic names in the API's exceptions ---------------------------------------
def test_signal_and_errno_have_symbolic_names(proc):
    with pytest.raises(SignalDelivered) as e:
        proc.read(0x1000, 1)
    assert str(e.value) == ("SIGSEGV {si_signo=SIGSEGV, si_code=SEGV_MAPERR, si_addr=0x1000} "
                            "(after 0 bytes)")
    with pytest.raises(OSError) as e:
        proc.munmap(3, 4096)
    assert e.value.errno == 22
    assert str(e.value) == "[Errno 22] EINVAL (Invalid argument)"
    assert str(SignalDelivered(7, 2, 0x7f0000000000)) == \
        "SIGBUS {si_signo=SIGBUS, si_code=BUS_ADRERR, si_addr=0x7f0000000000} (after 0 bytes)"


# --- 3. the CLI: a scenario killed by a signal -----------------------------------------
def vmsim_cli(*argv):
    """Run the installed ``vmsim`` console script in a subprocess."""
    from entrypoint import vmsim
    return vmsim(*argv, env={"COLUMNS": "200"}, timeout=300)


class _Done:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def cli(capsys, *argv):
    """``vmsim ARGS`` in this process (cheaper; the subprocess tests cover the entry point)."""
    from vmsim.cli import main
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return _Done(rc, out, err)


def scenario(tmp_path, body, name="scen.py"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return str(p)


SEGV = """\
    p = machine.spawn()
    a = p.mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    p.write(a, b"hello")
    p.mprotect(a, 4096, PROT_READ)
    p.write(a, b"x")
    p.munmap(a, 8192)
"""


def test_run_killed_scenario_reports_everything(tmp_path):
    r = vmsim_cli("run", scenario(tmp_path, SEGV))
    assert r.returncode == 128 + 11, r.stderr       # as a shell reports a SIGSEGV death
    out = r.stdout
    assert "Traceback" not in r.stderr
    assert "SignalDelivered: SIGSEGV {si_signo=SIGSEGV, si_code=SEGV_ACCERR" in r.stderr
    # The fatal fault's trace comes first of all, then the calls, then the summary.
    fatal = out.index("pid 1 killed by SIGSEGV: the fatal fault")
    exc = out.index("exc_page_fault(addr=")
    calls = out.index("System calls and signals")
    summary = out.index("Summary of")
    assert fatal < exc < calls < summary
    assert "error_code=0x7 [PROT|WRITE|USER]" in out[exc:calls]
    assert "force_sig_fault();" in out[exc:calls]
    lines = out[calls:summary].splitlines()
    a = re.search(r"= (0x[0-9a-f]+)", out[calls:]).group(1)
    assert f"mprotect({a}, 4096, PROT_READ) = 0" in lines
    assert lines[-3:-1] == [
        f"--- SIGSEGV {{si_signo=SIGSEGV, si_code=SEGV_ACCERR, si_addr={a}}} ---",
        "+++ killed by SIGSEGV +++"]
    assert "munmap" not in out                      # never ran
    assert re.search(r"^\s*1\s+killed by SIGSEGV\s+1\s+0\s", out, re.M)


def test_trace_killed_scenario_and_filters(tmp_path, capsys):
    path = scenario(tmp_path, SEGV)
    r = cli(capsys, "trace", path)
    assert r.returncode == 139
    assert r.stdout.index("the fatal fault") < r.stdout.index("The whole trace")
    assert "/* mprotect(" in r.stdout and "/* --- SIGSEGV {si_signo=SIGSEGV" in r.stdout
    # set_graph_function: only do_anonymous_page's graphs, from their own depth.
    r = cli(capsys, "trace", "--func", "do_anonymous_page", path)
    graph = [ln.split("| ", 1)[1] for ln in r.stdout.splitlines()
             if "| " in ln and not ln.startswith("#") and "| /*" not in ln]
    assert graph[0] == "do_anonymous_page() {"
    assert not any(ln.startswith("exc_page_fault") for ln in graph)
    # --max: the output limit, said so.
    r = cli(capsys, "trace", "--max", "10", path)
    assert "# trace truncated at 10 lines (max_events)" in r.stdout


def test_trace_pid_filter(tmp_path, capsys):
    path = scenario(tmp_path, """\
        p = machine.spawn()
        a = p.mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        p.write(a, b"p")
        c = p.fork()
        c.write(a, b"c")
    """)
    r = cli(capsys, "trace", "--pid", "2", path)
    assert r.returncode == 0, r.stderr
    body = [ln for ln in r.stdout.splitlines() if "| " in ln and not ln.startswith("#")]
    assert body and all(re.match(r"\s*\d\)\s+2\s+\|", ln) for ln in body)
    assert any("wp_page_copy()" in ln for ln in body)
    assert "# 1 page faults traced" in r.stdout


# --- 4. the kernel's steps only ----------------------------------------------------------
def test_entry_decoding():
    # arch/x86/include/asm/pgtable_types.h: P=0, RW=1, US=2, A=5, D=6, PSE/PAT=7, NX=63
    assert decode_entry(0) == "0x0"
    assert decode_entry(0x8000000123456067 - (1 << 64)) == \
        "0x8000000123456067 [P RW US A D NX pfn=0x123456]"
    assert decode_entry(0x8000000123456867 - (1 << 64)) == \
        "0x8000000123456867 [P RW US A D SOFT_DIRTY NX pfn=0x123456]"      # bit 11
    assert decode_entry(0x2000e7, "pmd") == "0x2000e7 [P RW US A D PSE pfn=0x200]"
    assert decode_entry(0x100, "pte") == "0x100 [PROTNONE pfn=0x0]"
    from vmsim.mm.swapops import make_pte_marker, PTE_MARKER_GUARD
    assert decode_entry(make_pte_marker(PTE_MARKER_GUARD)).endswith(" [pte marker GUARD]")


def test_fault_trace_shows_the_kernel_entry_writes(proc):
    a = proc.mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    with function_graph(proc.machine) as tr:
        proc.read(a, 1)
        proc.write(a, b"x")
    read, write = ("\n".join(f.lines) for f in tr.faults)
    # do_anonymous_page maps the zero page with set_ptes (mm/memory.c, 6.18) ...
    zero = re.search(r"set_ptes\(\); /\* pte 0x0 -> (0x[0-9a-f]+) \[P US A SPECIAL NX "
                     r"pfn=(0x[0-9a-f]+)\] \*/", read)
    assert zero and int(zero.group(2), 16) == proc.machine.k.zero_pfn
    # ... and wp_page_copy replaces it: ptep_clear_flush, then set_pte_at.
    assert re.search(r"ptep_clear_flush\(\) \{", write)
    assert re.search(rf"ptep_get_and_clear\(\); /\* pte {zero.group(1)} .* -> 0x0 \*/", write)
    assert re.search(r"set_pte_at\(\); /\* pte 0x0 -> 0x[0-9a-f]+ \[P RW US A D NX pfn=", write)
    assert write.index("ptep_clear_flush") < write.index("set_pte_at")


class _Freed:
    """Records the table rows freed (and zeroed) while it is installed."""

    def __init__(self, monkeypatch):
        from vmsim.arch.x86.pgtable import PageTablePool
        self.slots = set()
        orig = PageTablePool._free_slot

        def _free_slot(pool, slot):
            self.slots.add(slot)
            return orig(pool, slot)
        monkeypatch.setattr(PageTablePool, "_free_slot", _free_slot)


def test_every_entry_change_is_made_by_a_kernel_function(monkeypatch):
    """Replay what the traced entry writers did over each call; the page tables must
    end up as the model left them (A/D bits aside: the MMU sets those, not the kernel)."""
    m = vmsim.Machine(memory="64M")
    pool = m.k.ptpool
    freed = _Freed(monkeypatch)
    tr = function_graph(m, faults_only=False, record=False)
    tr.log_entries = True
    AD = np.int64(0x60)

    def step(fn):
        before = pool.arr[:pool.used * 512].copy()
        freed.slots.clear()
        tr.entry_log.clear()
        with tr:
            fn()
        after = pool.arr[:pool.used * 512]
        replay = np.zeros_like(after)
        replay[:len(before)] = before
        for ptr, old, new in tr.entry_log:
            replay[ptr] = new
        keep = np.ones(len(after), dtype=bool)
        for s in freed.slots:
            keep[s * 512:(s + 1) * 512] = False
        diff = np.nonzero((((replay ^ after) & ~AD) != 0) & keep)[0]
        assert not len(diff), f"{fn}: entries changed without a kernel writer: {diff[:5]}"

    p = m.spawn()
    st = {}
    step(lambda: st.update(a=p.mmap(0, 64 * 4096, PROT_READ | PROT_WRITE,
                                    MAP_PRIVATE | MAP_ANONYMOUS)))
    a = st["a"]
    step(lambda: p.touch(a, 32 * 4096, write=True))
    step(lambda: p.read(a + 40 * 4096, 1))
    step(lambda: st.update(s=p.mmap(0, 4 * 4096, PROT_READ | PROT_WRITE,
                                    MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE)))
    step(lambda: st.update(c=p.fork()))
    step(lambda: st["c"].write(a, b"c"))
    step(lambda: p.write(a + 4096, b"p"))
    step(lambda: st["c"].exit(0))
    step(lambda: p.mprotect(a, 8 * 4096, PROT_READ))
    step(lambda: p.madvise(a + 8 * 4096, 4 * 4096, MADV_FREE))
    step(lambda: p.madvise(a + 12 * 4096, 4 * 4096, MADV_COLD))
    step(lambda: p.madvise(a + 16 * 4096, 4 * 4096, MADV_DONTNEED))
    step(lambda: st.update(b=p.mremap(a + 20 * 4096, 8 * 4096, 16 * 4096, MREMAP_MAYMOVE)))
    step(lambda: p.madvise(a + 32 * 4096, 2 * 4096, vmsim.MADV_GUARD_INSTALL))
    step(lambda: st.update(c=p.fork()))                     # copies the guard markers
    step(lambda: p.madvise(a + 32 * 4096, 4096, vmsim.MADV_GUARD_REMOVE))
    step(lambda: st["c"].exit(0))                           # zaps the child's markers
    step(lambda: p.munmap(a, 64 * 4096))
    step(lambda: p.execve())
    step(lambda: p.exit(0))


def _kernel_identifiers(names):
    """The names among ``names`` that occur as identifiers in the 6.18 source."""
    r = subprocess.run(["grep", "-rhowF", "-f", "/dev/stdin", "mm", "arch/x86", "include",
                        "kernel/fork.c", "kernel/exit.c", "fs"],
                       input="\n".join(names), capture_output=True, text=True, cwd=KERNEL)
    return set(r.stdout.split())


@pytest.mark.skipif(not os.path.isdir(KERNEL), reason="needs the Linux 6.18 source tree")
def test_traces_name_only_kernel_functions(tmp_path, capsys):
    """Every function a full trace shows exists in Linux 6.18: vmsim's helpers stay out."""
    path = scenario(tmp_path, """\
        p = machine.spawn()
        a = p.mmap(0, 32 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        p.read(a, 1)
        p.touch(a, 8 * 4096, write=True)
        s = p.mmap(0, 2 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE)
        p.write(s, b"s")
        p.mlock(a, 4096)
        p.munlock(a, 4096)
        c = p.fork()
        c.write(a, b"c")
        c.exit(0)
        p.wait(c.pid)
        p.mprotect(a, 4096, PROT_READ)
        try:
            p.write(a, b"x")
        except SignalDelivered:
            pass
        p.madvise(a + 4096, 4096, MADV_FREE)
        p.madvise(a + 8192, 4096, MADV_COLD)
        p.madvise(a, 4096, MADV_DONTNEED)
        b = p.mremap(a + 16 * 4096, 4 * 4096, 8 * 4096, MREMAP_MAYMOVE)
        p.mincore(b, 4096)
        p.brk(p.brk(0) + 4096)
        p.munmap(b, 8 * 4096)
        p.exit(0)
    """)
    r = cli(capsys, "trace", "--all", "--exec", "--max", "100000", path)
    assert r.returncode == 0, r.stderr
    names = set(re.findall(r"\|\s+(\w+)\(", r.stdout)) - {"exc_page_fault", "faultin_page"}
    names -= {"mmap", "munmap", "mprotect", "madvise", "mremap", "mlock", "munlock", "fork",
              "wait4", "exit_group", "execve", "mincore", "brk"}      # strace's comments
    assert len(names) > 150
    assert sorted(names - _kernel_identifiers(names)) == []
    # vmsim's page-content store and checker: words the kernel has, not its functions.
    assert not names & {"copy", "clear", "read", "write", "check_all", "release"}


def test_summary_counts_match_the_rusage(tmp_path):
    """The fault table's minflt/majflt per process equal what getrusage() tells the
    scenario; execve's own faults are left out and said so."""
    path = scenario(tmp_path, """\
        p = machine.spawn()
        a = p.mmap(0, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        p.read(a, 1)
        p.touch(a, 8 * 4096, write=True)
        q = p.mmap(0, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE)
        try:
            p.read(0x1000, 1)
        except SignalDelivered:
            pass
        c = p.fork()
        c.write(a, b"c")
        c.execve()
        c.write(c.mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS), b"x")
        for x in (p, c):
            u = x.getrusage()
            print(f"RUSAGE {x.pid} {u.ru_minflt} {u.ru_majflt}")
    """)
    r = vmsim_cli("run", path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    seen = {int(m.group(1)): (int(m.group(2)), int(m.group(3)))
            for m in re.finditer(r"^RUSAGE (\d+) (\d+) (\d+)$", out, re.M)}
    table = out[out.index("Page faults traced"):]
    header = table.splitlines()[1].split()
    assert header[:6] == ["pid", "#PF", "GUP", "minflt", "majflt", "do_anonymous_page"]
    assert "SIGSEGV" in header
    for pid, (minflt, majflt) in seen.items():
        row = re.search(rf"^\s*{pid}\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", table, re.M)
        assert (int(row.group(3)), int(row.group(4))) == (minflt, majflt)
    assert int(re.search(r"^\s*1\s+\d+\s+(\d+)", table, re.M).group(1)) == 4     # MAP_POPULATE
    assert "left out: 2 faults execve took for itself" in out
    assert "#PF      page faults of user accesses" in out            # the legend


# --- 5. vmstat deltas a reader cares about ---------------------------------------------
def test_vmstat_deltas_show_events_and_hide_derived_values(tmp_path, capsys):
    path = scenario(tmp_path, """\
        p = machine.spawn()
        a = p.mmap(0, 64 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        p.touch(a, 64 * 4096, write=True)
        p.munmap(a, 64 * 4096)
    """)
    r = cli(capsys, "run", path)
    assert r.returncode == 0, r.stderr
    rows = {ln.split()[0] for ln in r.stdout[r.stdout.index("vmstat deltas"):].splitlines()[3:]
            if ln.strip() and not ln.startswith(" ")}
    assert {"pgfault", "pgfree", "pgalloc_dma32"} <= rows
    assert not rows & {"nr_dirty_threshold", "nr_dirty_background_threshold", "numa_hit",
                       "nr_free_pages_blocks", "nr_zone_active_anon"}
    assert "--all shows them" in r.stdout
    r = cli(capsys, "run", "--all", path)
    assert "nr_dirty_threshold" in r.stdout and "numa_hit" in r.stdout


def test_oom_kills_show_as_strace_shows_them(tmp_path, capsys):
    """An OOM victim's death appears after the call that killed it; a process killed
    in its own fault has no --- SIGKILL --- line (strace cannot see one) and the run
    exits 128 + 9."""
    path = scenario(tmp_path, """\
        MiB = 1 << 20
        p = machine.spawn()
        c = p.fork()
        a = c.mmap(0, 16 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)
        c.touch(a, 16 * MiB, write=True)
        b = p.mmap(0, 14 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)
        p.touch(b, 14 * MiB, write=True)          # the allocator kills c, the bigger one
        p.wait(c.pid)
        x = p.mmap(0, 64 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)
        p.touch(x, 64 * MiB, write=True)          # now p itself is the victim
    """)
    # (test_oom.py: a 64 MiB machine manages 31 MiB.) --no-paths: no profile hook, faster.
    r = cli(capsys, "run", "--no-paths", "--memory", "64M", path)
    assert r.returncode == 128 + 9, r.stderr
    calls = r.stdout[r.stdout.index("System calls"):r.stdout.index("Summary of")]
    calls = calls.strip().splitlines()
    i = calls.index("[pid     2] +++ killed by SIGKILL +++")
    assert calls[i - 1].startswith("[pid     1] mmap(NULL, 14680064,")
    assert calls[i + 1] == "wait4(2, [{WIFSIGNALED(s) && WTERMSIG(s) == SIGKILL}], 0, NULL) = 2"
    assert calls[-2:] == [calls[-2], "+++ killed by SIGKILL +++"]
    assert calls[-2].startswith("mmap(NULL, 67108864,")
    assert not any("--- SIGKILL" in ln for ln in calls)
