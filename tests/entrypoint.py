"""Run the installed ``vmsim`` console script in a subprocess, as a user's shell does
(or, where the process boundary is not what a test is about, vmsim.cli.main in the test's
process: the same exit status and output, without a child's interpreter and imports)."""
import os
import shutil
import subprocess
import sys


def vmsim_command() -> list:
    """The console script next to this interpreter (the venv's bin/vmsim), else PATH's."""
    exe = os.path.join(os.path.dirname(sys.executable), "vmsim")
    if not os.path.exists(exe):
        exe = shutil.which("vmsim")
    assert exe, "the vmsim console script is not installed (pip install -e .)"
    return [exe]


def vmsim(*args, env=None, timeout=120, **kw):
    """Run ``vmsim ARGS``; return the CompletedProcess (text mode, output captured)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(vmsim_command() + [str(a) for a in args], capture_output=True,
                          text=True, env=full_env, timeout=timeout, **kw)


def vmsim_here(capsys, *args):
    """``vmsim ARGS`` through vmsim.cli.main in this process; a CompletedProcess with its
    exit status and captured output (argparse's exit included)."""
    from vmsim.cli import main
    argv = [str(a) for a in args]
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["vmsim"] + argv, rc, out, err)


def one_line_error(cp) -> str:
    """Assert stderr is a single line and no traceback; return it."""
    assert "Traceback" not in cp.stderr, cp.stderr
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1, cp.stderr
    return lines[0]
