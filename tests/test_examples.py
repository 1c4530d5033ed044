"""The learner's examples (examples/*.py): each runs under the real `vmsim run` and its
own assertions (Linux 6.18's numbers, from scenarios/recorded/) hold; the README lists
each with its command; `vmsim run` on a TOML scenario points to `vmsim conform`."""
import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(f for f in glob.glob(os.path.join(ROOT, "examples", "*.py"))
                  if not os.path.basename(f).startswith("_"))
NAMES = [os.path.basename(f)[:-3] for f in EXAMPLES]


def vmsim_cli(*args):
    exe = os.path.join(os.path.dirname(sys.executable), "vmsim")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_the_five_topics_are_there():
    assert {"fork_cow", "mprotect_segv", "madvise_free", "shared_anon", "stack_growth"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_example_runs_and_its_assertions_hold(name):
    r = vmsim_cli("run", f"examples/{name}.py")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert f"Summary of examples/{name}.py" in r.stdout


@pytest.mark.parametrize("name", NAMES)
def test_example_is_in_the_readme(name):
    with open(os.path.join(ROOT, "README.md")) as f:
        assert f"vmsim run examples/{name}.py" in f.read()


def test_example_output_shows_linux_numbers():
    r = vmsim_cli("run", "--no-paths", "examples/mprotect_segv.py")
    assert "SIGSEGV si_code=SEGV_ACCERR" in r.stdout and "SIGSEGV si_code=SEGV_MAPERR" in r.stdout
    r = vmsim_cli("run", "--no-paths", "examples/madvise_free.py")
    assert "LazyFree  248 kB" in r.stdout


def test_a_broken_example_fails(tmp_path):
    """The runner really reports a failed assertion (the examples' checks are live)."""
    src = open(os.path.join(ROOT, "examples", "fork_cow.py")).read()
    bad = tmp_path / "fork_cow.py"
    bad.write_text(src.replace("assert minflt(child) == N\n", "assert minflt(child) == N + 1\n"))
    (tmp_path / "_util.py").write_text(open(os.path.join(ROOT, "examples", "_util.py")).read())
    r = vmsim_cli("run", str(bad))
    assert r.returncode == 1 and "AssertionError" in r.stderr


@pytest.mark.parametrize("cmd", [["run"], ["trace"], ["walk", "0x1000", "--scenario"]])
def test_toml_scenario_points_to_conform(cmd):
    r = vmsim_cli(*cmd, "scenarios/empty.toml")
    assert r.returncode == 2
    assert "vmsim conform scenarios/empty.toml" in r.stderr
    assert "Traceback" not in r.stderr
