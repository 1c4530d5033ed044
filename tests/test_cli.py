"""The vmsim command line: run, trace, walk, demo, seedmap, and user-mistake handling."""
import os
import re
import subprocess
import sys
import textwrap


from vmsim.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scenario(tmp_path, text, name="scen.py"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return str(p)


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def proc_row(out, pid):
    for ln in out.splitlines():
        cells = ln.split()
        if cells and cells[0] == str(pid) and len(cells) > 3 and cells[1] in ("running", "exited"):
            return cells
    raise AssertionError(f"no row for pid {pid} in:\n{out}")


TOP = """
    p = machine.spawn()
    a = p.mmap(0, 8 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    p.read(a, 1)
    p.touch(a, 8 * 4096, write=True)
"""


def _vmstat(out, name):
    for ln in out.splitlines():
        cells = ln.split()
        if len(cells) == 2 and cells[0] == name:
            return int(cells[1])
    return 0


def test_run_top_level_scenario(tmp_path, capsys):
    rc, base, err = run(capsys, "run", scenario(tmp_path, "p = machine.spawn()\n", "base.py"))
    assert rc == 0, err
    rc, out, err = run(capsys, "run", scenario(tmp_path, TOP))
    assert rc == 0, err
    # Linux: the read maps the zero page (1 fault), the writes fault once per page: the
    # zero-page PTE is write-protected (do_wp_page) and 7 pages are new -> 9 minor faults
    # and 8 more anonymous pages resident than right after exec.
    row = proc_row(out, 1)
    assert row[1:4] == ["running", "9", "0"]
    assert int(row[4]) - int(proc_row(base, 1)[4]) == 8 * 4
    assert "do_anonymous_page" in out and "wp_page_copy" in out
    assert _vmstat(out, "pgfault") - _vmstat(base, "pgfault") == 9
    assert _vmstat(out, "nr_anon_pages") - _vmstat(base, "nr_anon_pages") == 8


def test_run_main_style_gets_the_machine(tmp_path, capsys):
    path = scenario(tmp_path, """
        import vmsim
        def main(machine):
            assert isinstance(machine, vmsim.Machine)
            p = machine.spawn()
            a = p.mmap(0, 4096, vmsim.PROT_READ | vmsim.PROT_WRITE,
                       vmsim.MAP_PRIVATE | vmsim.MAP_ANONYMOUS)
            p.write(a, b"x")
            print("main ran")
        if __name__ == "__main__":
            raise SystemExit("not run by vmsim")
    """)
    rc, out, err = run(capsys, "run", path)
    assert rc == 0, err
    assert "main ran" in out
    assert proc_row(out, 1)[2] == "1"


def test_run_scenario_with_its_own_machine(tmp_path, capsys):
    path = scenario(tmp_path, """
        m = vmsim.Machine(memory="256M")
        p = m.spawn()
        p.write(p.mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS), b"x")
    """)
    rc, out, err = run(capsys, "run", path)
    assert rc == 0, err
    assert proc_row(out, 1)[2] == "1"


def test_missing_file(tmp_path, capsys):
    rc, out, err = run(capsys, "run", str(tmp_path / "nope.py"))
    assert rc == 2
    assert err.strip() == f"vmsim: {tmp_path / 'nope.py'}: no such file"


def test_syntax_error_reports_file_and_line(tmp_path, capsys):
    path = scenario(tmp_path, "p = machine.spawn()\nx = = 1\n")
    rc, out, err = run(capsys, "run", path)
    assert rc == 1
    assert err.startswith(f"vmsim: {path}:2: SyntaxError")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_exception_inside_scenario_reports_scenario_line(tmp_path, capsys):
    path = scenario(tmp_path, """\
        p = machine.spawn()

        def helper():
            p.munmap(3, 4096)      # EINVAL: unaligned (mm/vma.c do_vmi_munmap)
        helper()
    """)
    rc, out, err = run(capsys, "run", path)
    assert rc == 1
    assert err.strip() == f"vmsim: {path}:4: OSError: [Errno 22] EINVAL (Invalid argument)"


def test_uncaught_signal_kills_the_scenario(tmp_path, capsys):
    # A shell reports a process killed by SIGSEGV as status 128 + 11.
    path = scenario(tmp_path, "p = machine.spawn()\np.read(0x1000, 1)\n")
    rc, out, err = run(capsys, "run", path)
    assert rc == 139
    assert f"{path}:2: SignalDelivered: SIGSEGV {{si_signo=SIGSEGV, si_code=SEGV_MAPERR, " \
           f"si_addr=0x1000}}" in err


def test_bad_arguments(capsys):
    assert run(capsys, "run")[0] == 2
    assert run(capsys, "frobnicate")[0] == 2
    rc, out, err = run(capsys, "run", "x.py", "--cpus", "0")
    assert rc == 2 and "--cpus" in err
    assert run(capsys)[0] == 2            # no command: help, usage status


def test_trace_prints_fault_trees(tmp_path, capsys):
    rc, out, err = run(capsys, "trace", scenario(tmp_path, TOP))
    assert rc == 0, err
    assert "error_code=0x4 [USER])" in out          # the read of the untouched page
    assert "error_code=0x7 [PROT|WRITE|USER])" in out   # write to the zero page
    assert "  handle_page_fault() {" in out
    assert "wp_page_copy() {" in out


def test_trace_all_of_munmap_shows_no_vmsim_helpers(tmp_path, capsys):
    # The mmu_gather's list of gathered pages is vmsim's (mmu_gather._gathered), not a
    # kernel function: `trace --all` of a munmap showed it as pages().
    rc, out, err = run(capsys, "trace", "--all", scenario(tmp_path, """
        import vmsim
        m = vmsim.Machine("64M")
        p = m.spawn()
        a = p.mmap(0, 8 << 12, vmsim.PROT_READ | vmsim.PROT_WRITE,
                   vmsim.MAP_PRIVATE | vmsim.MAP_ANONYMOUS)
        p.touch(a, 8 << 12, write=True)
        p.munmap(a, 8 << 12)
    """))
    assert rc == 0, err
    called = set(re.findall(r"\|\s+(\w+)\(\)", out))
    assert {"unmap_vmas", "zap_pte_range", "tlb_finish_mmu"} <= called
    assert not {"pages", "_gathered"} & called


def test_walk_modes(capsys):
    rc, out, err = run(capsys, "walk", "0x7ffff7ff6000")
    assert rc == 0
    for m in ("4-level paging", "5-level paging", "32-bit paging", "pae paging"):
        assert m in out
    assert "is wider than 32 bits" in out
    rc, out, err = run(capsys, "walk", "0xbfff1234", "--mode", "32-bit")
    assert rc == 0 and "767 (0x2ff)" in out


def test_walk_bad_address(capsys):
    rc, out, err = run(capsys, "walk", "0xzz")
    assert rc == 2 and "bad address" in err and "Traceback" not in err
    assert run(capsys, "walk", "0x1000", "--mode", "6-level")[0] == 2
    assert run(capsys, "walk", "0x1000", "--pid", "1")[0] == 2


def test_walk_in_a_scenario_process(tmp_path, capsys):
    path = scenario(tmp_path, """
        p = machine.spawn()
        a = p.mmap(0x10000000, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        p.write(a, b"x")
    """)
    rc, out, err = run(capsys, "walk", "0x10000000", "--scenario", path, "--pid", "1")
    assert rc == 0, err
    assert "PTE (PT):" in out and "(PRESENT|RW|USER|ACCESSED|DIRTY|NX)" in out
    rc, out, err = run(capsys, "walk", "0x10001000", "--scenario", path)
    assert rc == 0 and "not present" in out
    assert run(capsys, "walk", "0x1000", "--scenario", path, "--pid", "7")[0] == 2
    assert run(capsys, "walk", "0x1000", "--scenario", path, "--mode", "5-level")[0] == 2


def test_demo(capsys):
    rc, out, err = run(capsys, "demo")
    assert rc == 0, err
    for word in ("do_anonymous_page", "wp_page_copy", "SIGSEGV", "do_shared_fault", "shmem_fault",
                 "do_fault_around", "expand_stack_locked", "exc_page_fault(addr="):
        assert word in out
    # Linux: fault-around maps the other 15 cached shmem pages, so the 16 reads take one fault.
    assert "the 16 reads after MADV_DONTNEED took 1 fault" in out
    try:
        import vmsim.fs.procfs  # noqa: F401
    except ImportError:
        return
    assert "Rss:" in out


def test_seedmap(capsys):
    rc, out, err = run(capsys, "seedmap", "--section", "4")
    assert rc == 0 and "zap_page_range_single" in out
    assert "2b:" not in out
    rc, out, err = run(capsys, "seedmap", "--missing")
    assert rc == 0 and "not modelled yet" in out and "vmsim.mm.memory.do_anonymous_page" not in out
    assert run(capsys, "seedmap", "--section", "9")[0] == 2


def test_subprocess_console_entry(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "vmsim.cli", "run", str(tmp_path / "missing.py")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_rich_output_renders():
    import io
    from vmsim.cli import Out
    buf = io.StringIO()
    o = Out(buf, rich=True)
    assert o.console is not None
    o.heading("Summary [x]")
    o.table("t", ["a", "b"], [["[red]1", 2]], right=(1,))
    o.block("/proc/1/smaps_rollup", "Rss:  4 kB\n")
    text = buf.getvalue()
    assert "[red]1" in text and "Rss:" in text and "Summary [x]" in text
