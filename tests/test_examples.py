"""The learner's examples (examples/*.py): each runs under the real `vmsim run` and its
own assertions (Linux 6.18's numbers, from scenarios/recorded/) hold; the README lists
each with its command; `vmsim run` on a TOML scenario points to `vmsim conform`."""
import glob
import os

import pytest
from entrypoint import vmsim

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(f for f in glob.glob(os.path.join(ROOT, "examples", "*.py"))
                  if not os.path.basename(f).startswith("_"))
NAMES = [os.path.basename(f)[:-3] for f in EXAMPLES]


def vmsim_cli(*args, **kw):
    return vmsim(*args, cwd=ROOT, timeout=300, **kw)


def test_the_five_topics_are_there():
    assert {"fork_cow", "mprotect_segv", "madvise_free", "shared_anon", "stack_growth"} <= set(NAMES)


# What each example prints that shows Linux's numbers (its asserts check more).
SHOWS = {"mprotect_segv": ["SIGSEGV si_code=SEGV_ACCERR", "SIGSEGV si_code=SEGV_MAPERR"],
         "madvise_free": ["LazyFree  248 kB"],
         "shared_anon": ["parent: Rss 128 kB Pss 64 kB Shared_Dirty 128 kB"],
         "stack_growth": ["(97 pages)"]}


@pytest.mark.parametrize("name", NAMES)
def test_example_runs_and_its_assertions_hold(name, tmp_path):
    # fork_cow also draws its --plot (the text form's; without fault paths: getrusage)
    plot = tmp_path / "p.png"
    extra = ["--plot", str(plot)] if name == "fork_cow" and _have_matplotlib() else []
    r = vmsim_cli("run", "--no-paths", *extra, f"examples/{name}.py")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert f"Summary of examples/{name}.py" in r.stdout
    for text in SHOWS.get(name, []):
        assert text in r.stdout
    if extra:
        assert f"plot: {plot} (11 steps)" in r.stdout and plot.read_bytes()[:4] == b"\x89PNG"


def _have_matplotlib():
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.mark.parametrize("name", NAMES)
def test_example_is_in_the_readme(name):
    with open(os.path.join(ROOT, "README.md")) as f:
        assert f"vmsim run examples/{name}.py" in f.read()


def test_a_broken_example_fails(tmp_path):
    """The runner really reports a failed assertion (the examples' checks are live)."""
    from vmsim.scenario import run_scenario, ScenarioError
    src = open(os.path.join(ROOT, "examples", "fork_cow.py")).read()
    bad = tmp_path / "fork_cow.py"
    bad.write_text(src.replace("assert minflt(child) == N\n", "assert minflt(child) == N + 1\n"))
    (tmp_path / "_util.py").write_text(open(os.path.join(ROOT, "examples", "_util.py")).read())
    with pytest.raises(ScenarioError) as e:
        run_scenario(str(bad))
    assert "AssertionError" in str(e.value) and e.value.status == 1


@pytest.mark.parametrize("cmd", [["run"], ["walk", "0x1000", "--scenario"]])
def test_toml_scenario_points_to_conform(cmd):
    r = vmsim_cli(*cmd, "scenarios/empty.toml")
    assert r.returncode == 2
    assert "vmsim conform scenarios/empty.toml" in r.stderr
    assert "Traceback" not in r.stderr
