"""Conformance scenarios with files (issue 9): the file steps' validation ("FILE:LINE:
problem"), the executor program they become, the recordings' provenance, and that the
executor leaves no file behind. The expected Linux values live in the recordings
(scenarios/recorded/file_*.json, written by a real run); vmsim is compared with them
by tests/test_conform.py like every other scenario."""
import glob
import json
import os
import platform
import shutil

import pytest

from vmsim.conform import cli, compare, linux
from vmsim.conform.scenario import ScenarioFormatError, load, program_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILE_SCENARIOS = sorted(glob.glob(os.path.join(ROOT, "scenarios", "file_*.toml")))
HEAD = 'name = "x"\n[settings]\nkernel = "6.18"\nthp_enabled = "madvise"\n'
OPEN = "[[step]]\nop = 'open'\nfile = 'f'\n"


def _load(tmp_path, body):
    f = tmp_path / "s.toml"
    f.write_text(HEAD + body)
    return str(f), load(str(f))


@pytest.mark.parametrize("body, line, fragment", [
    ("[[step]]\nop = 'pwrite'\nfile = 'f'\npages = 1\n", 7, "unknown file 'f' (create it with an 'open' step first)"),
    (OPEN + "fs = 'nfs'\n", 8, "fs: unknown value 'nfs'"),
    (OPEN + "[[step]]\nop = 'open'\nfile = 'f'\nfs = 'shm'\n", 11, "opened on the other filesystem"),
    (OPEN + "[[step]]\nop = 'pwrite'\nfile = 'f'\n", 8, "missing 'length' or 'pages'"),
    (OPEN + "[[step]]\nop = 'pread'\nfile = 'f'\noffset = -4096\npages = 1\n", 11, "file offsets and lengths are >= 0"),
    (OPEN + "[[step]]\nop = 'fadvise'\nfile = 'f'\nadvice = 'forget'\n", 11, "advice: unknown value 'forget'"),
    (OPEN + "[[step]]\nop = 'drop_caches'\nvalue = 4\n", 10, "drop_caches value is 1"),
    (OPEN + "[[step]]\nop = 'ftruncate'\nfile = 'f'\n", 8, "missing 'length' or 'pages' (the new size)"),
    (OPEN + "flags = 'rdwr|sync'\n", 8, "flags: unknown flag 'sync'"),
    ("[[step]]\nop = 'mmap'\nmap = 'a'\npages = 1\nfile_offset = 4096\n", 9, "file_offset needs a 'file'"),
    (OPEN + "[[step]]\nop = 'mmap'\nmap = 'a'\npages = 1\nfile = 'g'\n", 12, "unknown file 'g'"),
    (OPEN + "[[step]]\nop = 'fsync'\nfile = 'f'\nfile_offset = 0\n", 11, "unknown key 'file_offset' for op 'fsync'"),
    ("[[step]]\nop = 'mmap'\nmap = 'a'\npages = 1\n[[step]]\nop = 'point'\nid = 'p'\nmincore = 'a'\n",
     12, "mincore = ['map', ...]"),
])
def test_malformed_file_steps_name_file_and_line(tmp_path, body, line, fragment):
    f = tmp_path / "s.toml"
    f.write_text(HEAD + body)
    with pytest.raises(ScenarioFormatError) as e:
        load(str(f))
    assert str(e.value).startswith(f"{f}:{line}: "), str(e.value)
    assert fragment in str(e.value)


def test_file_steps_become_executor_lines(tmp_path):
    """The protocol executor.c parses: file slots, fs, open(2) flags, 2 MiB-chunked I/O
    arguments, mmap's file slot and offset, and the mincore observation."""
    _, scn = _load(tmp_path, OPEN + "fs = 'shm'\nflags = 'rdwr|creat|trunc'\n"
                   "[[step]]\nop = 'pwrite'\nfile = 'f'\npage = 2\npages = 3\nvalue = 300\nper_page = true\n"
                   "[[step]]\nop = 'mmap'\nmap = 'a'\npages = 4\nprot = 'r'\nfile = 'f'\nfile_offset = '1p'\n"
                   "[[step]]\nop = 'fadvise'\nfile = 'f'\nadvice = 'dontneed'\n"
                   "[[step]]\nop = 'msync'\nmap = 'a'\nflags = 'async|invalidate'\n"
                   "[[step]]\nop = 'drop_caches'\n"
                   "[[step]]\nop = 'point'\nid = 'p'\nmincore = ['a']\n"
                   "[[step]]\nop = 'mmap'\nmap = 'b'\npages = 1\nfile = 'f'\nfixed = { map = 'a' }\n")
    lines = program_text(scn).splitlines()
    assert "open 0 1 578 420" in lines                    # O_RDWR|O_CREAT|O_TRUNC, 0644
    assert "pwrite 0 8192 12288 44 1" in lines            # value & 0xff
    assert "mmap 0 16384 1 2 -1 0 0 0 4096" in lines      # MAP_PRIVATE by default with a file
    assert "fadvise 0 0 0 4" in lines
    assert "msync 0 0 16384 3" in lines
    assert "dropcaches 3" in lines
    assert lines[lines.index("point p") + 1] == "mincore 0"
    assert "mmap 1 4096 3 18 0 0 0 0 0" in lines          # MAP_PRIVATE|MAP_FIXED at a
    assert scn.file_fs == {0: 1}


def test_file_scenarios_cover_the_issue():
    names = {os.path.basename(f)[:-5] for f in FILE_SCENARIOS}
    assert len(names) >= 20
    for want in ("file_read_faultaround", "file_shared_write", "file_private_write",
                 "file_private_read_then_write", "file_stride", "file_cold_drop_caches",
                 "file_cold_fadvise", "file_madv_random", "file_populate", "file_short_vma",
                 "file_unaligned_descending", "file_fork_private", "file_private_dontneed",
                 "file_sigbus_eof", "file_truncate_mapped", "file_shm_write"):
        assert want in names


@pytest.mark.parametrize("path", FILE_SCENARIOS, ids=[os.path.basename(f)[:-5] for f in FILE_SCENARIOS])
def test_file_recordings_are_root_runs_of_this_version(path):
    """Recorded as root (frames, drop_caches) with the current scenario and an executor
    that has the file ops (the current one, or a compatible one after the file ops)."""
    scn = load(path)
    with open(cli.recorded_path(path, scn.name)) as f:
        rec = json.load(f)
    assert rec["privileged"] and rec["scenario_sha256"] == scn.text_hash
    assert linux.executor_compatible(rec["executor_sha256"])
    assert "before the file ops" not in linux.COMPATIBLE_EXECUTORS.get(rec["executor_sha256"], "")
    obs, notes = compare.derive(scn, rec["raw"])
    assert not notes and obs


def test_recorded_linux_facts():
    """A few of the kernel's answers, read from the recordings (not from vmsim): the
    recordings say what the scenario descriptions claim."""
    def obs(name):
        path = os.path.join(ROOT, "scenarios", name + ".toml")
        scn = load(path)
        with open(cli.recorded_path(path, scn.name)) as f:
            return compare.derive(scn, json.load(f)["raw"])[0]
    o = obs("file_read_faultaround")
    assert o["read_page0: minflt"] == 1 and o["read_page0: pagemap a bits"] == "Pfx*16 -..*48"
    assert o["read_all: minflt"] == 3
    o = obs("file_cold_drop_caches")
    assert o["dropped: mincore a"] == ".*256" and o["read_page0: majflt"] == 1
    o = obs("file_sigbus_eof")
    sig = [v for k, v in o.items() if k.endswith(":touch(a): signal")]
    assert sig == ["SIGBUS BUS_ADRERR at a+0x3000 (x5)"]
    o = obs("file_private_write")
    assert o["shared_view: pagemap s frames vs a@cow"] == "n*32"


def _host_can_run():
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "amd64"):
        return "not Linux x86-64"
    if not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")):
        return "no C compiler"
    if os.geteuid() != 0:
        return "not root"
    return None


@pytest.mark.slow
def test_executor_removes_its_files(tmp_path):
    """A live run creates its files under fresh directories and leaves nothing."""
    why = _host_can_run()
    if why:
        pytest.skip(why)
    def ours():      # other programs use /tmp too: only the executor's names count
        return {d + "/" + n for d in ("/tmp", "/dev/shm") for n in os.listdir(d)
                if n.startswith("vmsim-conform-")}
    before = ours()
    scn = load(os.path.join(ROOT, "scenarios", "file_sigbus_eof.toml"))
    recs = linux.run(scn)
    assert recs[-1]["t"] == "end"
    assert ours() == before


@pytest.mark.slow
def test_live_executor_matches_file_recordings():
    """The drift check of tests/test_conform.py for the file scenarios."""
    from test_conform import live_drift_check
    live_drift_check(FILE_SCENARIOS)


def test_only_listed_executor_versions_stay_compatible():
    """Recordings of the current executor and of the listed earlier one are accepted; any
    other executor version is stale (re-record)."""
    assert linux.executor_compatible(linux.executor_hash())
    for h in linux.COMPATIBLE_EXECUTORS:
        assert linux.executor_compatible(h)
    assert not linux.executor_compatible("0" * 64)
    old = set(linux.COMPATIBLE_EXECUTORS)
    for f in glob.glob(os.path.join(ROOT, "scenarios", "recorded", "*.json")):
        with open(f) as fh:
            h = json.load(fh)["executor_sha256"]
        assert h == linux.executor_hash() or h in old, f
