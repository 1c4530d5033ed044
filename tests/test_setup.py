"""Set-up a newcomer meets: numba's cache folder, --version, the README and CI commands,
scenario files that are not scenarios, and Ctrl-C."""
import glob
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

import vmsim
from entrypoint import vmsim as run_vmsim, vmsim_command, one_line_error

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.dirname(os.path.abspath(vmsim.__file__))


def _inc(x):
    return x + 1


def _numba_files(top):
    return glob.glob(os.path.join(top, "**", "*.nb[ic]"), recursive=True)


@pytest.fixture
def jitcache(monkeypatch):
    pytest.importorskip("numba")
    from vmsim import _jitcache
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    return _jitcache


# --- numba's cache --------------------------------------------------------------------
def test_numba_cache_goes_to_xdg_cache_home(tmp_path, monkeypatch, jitcache):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert jitcache.cache_dir() == str(tmp_path / "vmsim" / "numba")
    f = jitcache._njit(_inc)
    assert f(41) == 42
    assert _numba_files(str(tmp_path / "vmsim" / "numba"))
    assert not _numba_files(os.path.dirname(__file__))       # not next to the source


def test_numba_cache_has_a_folder_per_version_of_the_sources(tmp_path, monkeypatch, jitcache):
    """numba re-checks a cached function against its own file only: a build that inlined
    code from another vmsim file must not be loaded after that file changed."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    f = jitcache._njit(_inc)
    assert f(1) == 2
    here = jitcache._source_digest()
    assert _numba_files(str(tmp_path / "cache" / "vmsim" / "numba" / here))

    def digest_of(top):
        monkeypatch.setattr(jitcache, "__file__", str(top / "_jitcache.py"))
        monkeypatch.setattr(jitcache, "_digest", None)
        return jitcache._source_digest()

    a = tmp_path / "a"
    (a / "arch").mkdir(parents=True)
    (a / "_jitcache.py").write_text("x = 1\n")
    (a / "arch" / "tlb.py").write_text("NSTAT = 43\n")
    (a / "notes.txt").write_text("not a source\n")
    first = digest_of(a)
    b = tmp_path / "b"                  # another checkout of the same sources
    (b / "arch").mkdir(parents=True)
    (b / "_jitcache.py").write_text("x = 1\n")
    (b / "arch" / "tlb.py").write_text("NSTAT = 43\n")
    assert digest_of(b) == first
    (b / "arch" / "tlb.py").write_text("NSTAT = 46\n")
    assert digest_of(b) != first
    assert first != here


def test_numba_cache_falls_back_to_home_dot_cache(tmp_path, monkeypatch, jitcache):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert jitcache.cache_dir() == str(tmp_path / ".cache" / "vmsim" / "numba")


def _make_read_only(d):
    """chmod a-w; as root, which ignores modes, also the immutable attribute."""
    os.chmod(d, 0o555)
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode != 0:
            pytest.skip("running as root and chattr +i is not available here")


def test_numba_cache_read_only_folder_costs_only_compile_time(tmp_path, monkeypatch, jitcache):
    d = tmp_path / "vmsim" / "numba"
    d.mkdir(parents=True)
    _make_read_only(d)
    try:
        with pytest.raises(OSError):
            (d / "probe").write_text("")                        # really read-only
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
        f = jitcache._njit(_inc)
        assert f(1) == 2
        assert not _numba_files(str(tmp_path))
        assert not _numba_files(os.path.dirname(__file__))    # no in-tree fallback either
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(d)], capture_output=True)
        os.chmod(d, 0o755)


def test_numba_cache_uncreatable_folder_costs_only_compile_time(tmp_path, monkeypatch, jitcache):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file" / "below"))
    f = jitcache._njit(_inc)
    assert f(2) == 3
    assert not _numba_files(os.path.dirname(__file__))


def test_import_vmsim_does_not_import_numba():
    code = "import sys, vmsim; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


_BLAS_PROBE = r"""
import os, sys
seen = []
class Probe:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy":
            seen.append(os.environ.get("OPENBLAS_THREAD_TIMEOUT"))
        return None
sys.meta_path.insert(0, Probe())
import vmsim
print(seen, os.environ.get("OPENBLAS_THREAD_TIMEOUT"))
"""


@pytest.mark.parametrize("user", [None, "12"])
def test_import_vmsim_quiets_openblas_threads_only_while_numpy_loads(user):
    """numpy loads with OPENBLAS_THREAD_TIMEOUT=4 (its idle threads sleep instead of
    spinning ~33 ms of CPU each), unless the user set it; afterwards the environment
    is as it was, so child processes never inherit it."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if user is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = user
    out = subprocess.run([sys.executable, "-c", _BLAS_PROBE], capture_output=True, text=True,
                         check=True, env=env)
    expect = "['4'] None" if user is None else f"['{user}'] {user}"
    assert out.stdout.strip() == expect


def test_cli_mmu_compiles_into_the_user_cache_never_the_package(tmp_path):
    # The newcomer bug: `vmsim demo` left numba files in site-packages/vmsim/.
    pytest.importorskip("numba")
    before = set(_numba_files(PKG))
    scen = tmp_path / "s.py"
    scen.write_text("p = machine.spawn()\na = p.mmap(0, 8192, PROT_READ | PROT_WRITE,"
                    " MAP_PRIVATE | MAP_ANONYMOUS)\np.touch(a, 8192, write=True)\n")
    cache = tmp_path / "cache"
    # VMSIM_JIT_AFTER=0: compile at the first access (a run this short stays on the
    # plain-Python walk otherwise)
    env = {"XDG_CACHE_HOME": str(cache), "VMSIM_NUMBA": "1", "NUMBA_CACHE_DIR": "",
           "VMSIM_JIT_AFTER": "0"}
    cp = run_vmsim("run", "--no-paths", scen, env=env)
    assert cp.returncode == 0, cp.stderr
    names = {os.path.basename(p).split("-")[0] for p in _numba_files(str(cache / "vmsim" / "numba"))}
    assert {"mmu.translate", "mmu._touch_batch"} <= names
    assert set(_numba_files(PKG)) == before


# The real entry point with an unusable cache folder: a cold compile of the walk without a
# cache in a subprocess (~5 s of the default run's budget), so a long form; the default
# run checks both folders in-process above (test_numba_cache_*_costs_only_compile_time:
# the same _jitcache._njit path, a small function).
@pytest.mark.slow
@pytest.mark.parametrize("where", ["read-only", "under a file"])
def test_cli_runs_with_an_unusable_cache_folder(tmp_path, where):
    pytest.importorskip("numba")
    scen = tmp_path / "s.py"
    scen.write_text("p = machine.spawn()\na = p.mmap(0, 8192, PROT_READ | PROT_WRITE,"
                    " MAP_PRIVATE | MAP_ANONYMOUS)\np.touch(a, 8192, write=True)\n"
                    "assert p.getrusage().ru_minflt >= 2\n")
    d = tmp_path / "xdg"
    if where == "read-only":
        d.mkdir()
        _make_read_only(d)
    else:
        d.write_text("a file")
        d = d / "below"
    before = set(_numba_files(PKG))
    try:
        cp = run_vmsim("run", "--no-paths", scen, env={"XDG_CACHE_HOME": str(d), "NUMBA_CACHE_DIR": "",
                                                       "VMSIM_NUMBA": "1", "VMSIM_JIT_AFTER": "0"})
    finally:
        if where == "read-only":
            if os.geteuid() == 0:
                subprocess.run(["chattr", "-i", str(d)], capture_output=True)
            os.chmod(d, 0o755)
    assert cp.returncode == 0, cp.stderr
    assert set(_numba_files(PKG)) == before


# --- version ------------------------------------------------------------------------------
def _pyproject_version():
    import tomllib
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]["version"]


def test_version():
    assert vmsim.__version__ == _pyproject_version()
    cp = run_vmsim("--version")
    assert cp.returncode == 0
    assert cp.stdout.strip() == f"vmsim {_pyproject_version()}"


# --- README and CI say the same set-up commands -----------------------------------------
def _readme_commands():
    with open(os.path.join(REPO, "README.md")) as f:
        return [re.sub(r"^\s*(\$ )?", "", ln).rstrip() for ln in f
                if re.match(r"^\s*(\$ )?pip install", ln)][:2]


def _ci_commands():
    """The two commands of .ci/run's newcomer check (its readme_1= and readme_2= lines, as
    bash reads them), and the order in which the script runs them."""
    with open(os.path.join(REPO, ".ci", "run")) as f:
        text = f.read()
    cmds = {}
    for ln in text.splitlines():
        m = re.match(r"^(readme_[12])=(.*)$", ln)
        if m:
            (word,) = shlex.split(m.group(2))
            cmds[m.group(1)] = word
    uses = [text.index(f'"${name}"') for name in ("readme_1", "readme_2")]
    assert uses[0] < uses[1], ".ci/run must run README command 1 first"
    return [cmds["readme_1"], cmds["readme_2"]]


def test_ci_runs_the_readme_commands_in_order():
    readme = _readme_commands()
    assert readme == ["pip install . && vmsim demo", "pip install -e '.[test]' && pytest"]
    assert _ci_commands() == readme
    for c in readme:
        shlex.split(c)                                    # well-formed shell


# --- scenario files -----------------------------------------------------------------------
def test_run_dev_zero_is_refused_quickly():
    t = time.monotonic()
    cp = run_vmsim("run", "/dev/zero", timeout=60)
    assert cp.returncode == 2
    assert "/dev/zero" in one_line_error(cp) and "MiB" in cp.stderr
    assert time.monotonic() - t < 30


def test_scenario_size_limit(tmp_path):
    from vmsim.scenario import read_scenario, ScenarioError, MAX_SCENARIO_BYTES
    ok = tmp_path / "ok.py"
    ok.write_bytes(b"#" * MAX_SCENARIO_BYTES)
    assert len(read_scenario(str(ok))) == MAX_SCENARIO_BYTES
    big = tmp_path / "big.py"
    big.write_bytes(b"#" * (MAX_SCENARIO_BYTES + 1))
    with pytest.raises(ScenarioError) as e:
        read_scenario(str(big))
    assert e.value.status == 2 and str(big) in str(e.value)


LOOP = """
import sys
p = machine.spawn()
a = p.mmap(0, 64 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
print("ready", flush=True)
sys.stdout.flush()
while True:
    p.touch(a, 64 * 4096, write=True)
    p.madvise(a, 64 * 4096, MADV_DONTNEED)
"""


@pytest.mark.parametrize("command", ["run", "trace"])
def test_ctrl_c_exits_130_without_traceback(tmp_path, command):
    scen = tmp_path / "loop.py"
    scen.write_text(LOOP)
    # As a shell starts a foreground command: SIGINT at its default, even if this test
    # runs in a background job (where SIGINT is ignored, and Python leaves it ignored).
    p = subprocess.Popen(vmsim_command() + [command, str(scen)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert p.stdout.readline().strip() == "ready"
        time.sleep(0.5)                                   # well inside the loop
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines() == ["vmsim: interrupted"]


def _ci_functions():
    """.ci/run's status helpers (pytest_meaning, step), to run them on their own."""
    with open(os.path.join(REPO, ".ci", "run")) as f:
        text = f.read()
    return text[text.index("status=0"):text.index("python3 -m venv")]


@pytest.mark.parametrize("rc,meaning", [(0, "passed"), (1, "tests failed"), (2, "interrupted"),
                                        (5, "no tests collected")])
def test_ci_reads_pytest_exit_status(rc, meaning):
    script = _ci_functions() + f'step demo "exit {rc}" pytest; echo "rc=$? status=$status"\n'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True).stdout
    assert f"ci: demo: {'' if rc == 0 else f'exit status {rc}: '}{meaning}" in out
    assert f"rc={rc} status={0 if rc == 0 else 1}" in out
