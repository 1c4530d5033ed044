"""The real-kernel side: build the C executor once, run a scenario with it, parse.

The executor (executor.c, package data) is compiled on first use with the system
C compiler ($CC, else cc/gcc/clang) into ~/.cache/vmsim/ (or $XDG_CACHE_HOME/vmsim,
or $VMSIM_CACHE), keyed by its source hash: statically linked when the toolchain
can, else with -Wl,-z,now (BIND_NOW: no lazy symbol binding inside a measurement).
"""
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from importlib import resources

from vmsim.api import host_has_pku
from vmsim.conform.scenario import SETTING_KNOBS, program_text

# The host settings a recording depends on (the snapshot stored with it).
SNAPSHOT_PATHS = dict(SETTING_KNOBS, **{
    "thp_use_zero_page": "/sys/kernel/mm/transparent_hugepage/use_zero_page",
    "overcommit_memory": "/proc/sys/vm/overcommit_memory",
    "max_map_count": "/proc/sys/vm/max_map_count",
    "mmap_min_addr": "/proc/sys/vm/mmap_min_addr",
})


# Where scenario files are created: /tmp is on the disk filesystem (on the recording
# machine the root ext4, /dev/vda; no separate /tmp mount), /dev/shm is tmpfs.
FILE_DIRS = ("/tmp", "/dev/shm")


# Executor versions whose recordings stay valid with this one: each entry names what
# changed, and the change left every op those recordings use as it was (the live
# drift check, tests/test_conform.py, re-ran all of them with the new executor and
# found them identical before the entry was added).
COMPATIBLE_EXECUTORS = {
    "cda47d0a8440a1668ac4b6421cdb34b5b85782f4df451518f469650563e4ad45":
        "before the file ops (open, pwrite, drop_caches, msync, mincore, mmap of a file)",
    "0edd4a4aa5a1f447920d6ee0fb180b7410fcf4522fff200bbb799d682102c3bf":
        "before the prctl and memfd steps (appended op kinds; no earlier op changed)",
    "e8604048b03c8f5aa7a934538be8573a3bb25bf563fae27dc6c7e889766bf62a":
        "before the SysV shm steps (appended op kinds; no earlier op changed)",
    "11e5a07f756ea1b7a1ea572014aaaf45c5512d2a8c0f66cbf5b691c303a7245f":
        "before vmstat points folded the per-CPU node counters (stat_refresh) for "
        "workingset_* (no earlier scenario reads one; nothing else changed)",
}


def executor_compatible(sha256) -> bool:
    """Whether a recording made by the executor with this source hash is valid now."""
    return sha256 == executor_hash() or sha256 in COMPATIBLE_EXECUTORS


class LinuxUnavailable(Exception):
    """The real-kernel side cannot run here (no compiler, not Linux x86-64, ...)."""


def executor_source() -> bytes:
    return resources.files("vmsim.conform").joinpath("executor.c").read_bytes()


def executor_hash() -> str:
    return hashlib.sha256(executor_source()).hexdigest()


def cache_dir() -> str:
    d = os.environ.get("VMSIM_CACHE")
    if not d:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        d = os.path.join(base, "vmsim")
    return d


def _compiler():
    cands = [os.environ["CC"]] if os.environ.get("CC") else ["cc", "gcc", "clang"]
    for c in cands:
        path = shutil.which(c.split()[0])
        if path:
            return c.split()[0] if not os.environ.get("CC") else os.environ["CC"]
    return None


def executor_path() -> str:
    """Path of the compiled executor, building it if needed."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "amd64"):
        raise LinuxUnavailable(f"the real-kernel side needs Linux x86-64 (this is "
                               f"{platform.system()} {platform.machine()})")
    h = executor_hash()[:16]
    d = cache_dir()
    exe = os.path.join(d, f"conform-executor-{h}")
    if os.path.exists(exe):
        return exe
    cc = _compiler()
    if cc is None:
        raise LinuxUnavailable("no C compiler found (set CC, or install cc/gcc/clang) to build "
                               "the conformance executor; use the recorded Linux results instead")
    os.makedirs(d, exist_ok=True)
    from vmsim import progress
    with tempfile.TemporaryDirectory() as tmp, progress.status("compiling the conformance executor"):
        src = os.path.join(tmp, "executor.c")
        with open(src, "wb") as f:
            f.write(executor_source())
        out = os.path.join(tmp, "executor")
        errors = []
        for link in (["-static"], ["-Wl,-z,now"]):
            cmd = cc.split() + ["-O1", "-o", out, src] + link
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode == 0:
                break
            errors.append(f"{' '.join(cmd)}:\n{p.stderr.strip()}")
        else:
            raise LinuxUnavailable("cannot build the conformance executor:\n" + "\n".join(errors))
        tmp_exe = exe + f".{os.getpid()}"
        shutil.copy2(out, tmp_exe)
        os.replace(tmp_exe, exe)
    return exe


def _read(path):
    try:
        with open(path) as f:
            s = f.read().strip()
    except OSError:
        return None
    if "[" in s and "]" in s:
        return s[s.index("[") + 1:s.index("]")]
    return s


def snapshot() -> dict:
    """The host's relevant sysfs/sysctl values (selected mode for THP mode files)."""
    return {k: _read(p) for k, p in SNAPSHOT_PATHS.items()}


def cpu_mismatch(scn):
    """Why this host's CPU cannot run the scenario (its cpu_pku setting), else None."""
    want = scn.settings.get("cpu_pku")
    if want is None:
        return None
    has = host_has_pku()
    if (want == "yes") == has:
        return None
    return (f"the scenario needs a CPU {'with' if want == 'yes' else 'without'} protection keys "
            f"(cpu_pku = \"{want}\"); this host's CPU {'has' if has else 'has no'} pku/ospke")


def run(scn, timeout=120):
    """Run a parsed scenario on this machine's kernel; return the raw records."""
    why = cpu_mismatch(scn)
    if why:
        raise LinuxUnavailable(why)
    exe = executor_path()
    with tempfile.NamedTemporaryFile("w", suffix=".prog", delete=False) as f:
        f.write(program_text(scn))
        prog = f.name
    # The scenario's files live in fresh directories on the two filesystems (the
    # disk filesystem under /tmp, tmpfs under /dev/shm), removed whatever happens:
    # the executor runs as root and a killed run leaves its files behind.
    dirs = []
    try:
        for base in FILE_DIRS:
            dirs.append(tempfile.mkdtemp(prefix="vmsim-conform-", dir=base) if scn.files else base)
        # ASLR off (as setarch -R) so repeated runs place mappings alike.
        cmd = [exe, prog] + dirs
        if shutil.which("setarch"):
            cmd = ["setarch", platform.machine(), "-R"] + cmd
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LinuxUnavailable(f"the executor timed out after {timeout}s") from None
    finally:
        os.unlink(prog)
        if scn.files:
            for d in dirs:
                shutil.rmtree(d, ignore_errors=True)
    recs = []
    for line in p.stdout.splitlines():
        line = line.strip()
        if line:
            try:
                recs.append(json.loads(line))
            except json.JSONDecodeError:
                recs.append({"t": "error", "msg": f"bad executor output: {line[:80]}"})
    if p.returncode != 0 and not any(r.get("t") == "error" for r in recs):
        recs.append({"t": "error", "msg": f"executor exited with status {p.returncode}: "
                                          f"{p.stderr.strip()[:200]}"})
    return recs


def uname_r() -> str:
    return platform.release()
