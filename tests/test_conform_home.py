"""One home for each thing: the old conform_linux probe lives under vmsim/conform/probes/,
every reference to its files resolves, and vmsim.demo does not borrow from vmsim.cli."""
import ast
import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBES = os.path.join(ROOT, "vmsim", "conform", "probes")


def test_conform_linux_is_folded_into_vmsim_conform():
    assert not os.path.exists(os.path.join(ROOT, "conform_linux"))
    for f in ("layout_probe.c", "pause_min.c", "layout.sh", "layout-6.18.txt", "anon_probe.c",
              "anon_probe.sh", "anon-probe-6.18.jsonl", "README.md"):
        assert os.path.exists(os.path.join(PROBES, f)), f


def test_references_to_probe_files_resolve():
    files = subprocess.run(["git", "ls-files", "*.md", "*.py", "*.sh"], cwd=ROOT,
                           capture_output=True, text=True).stdout.split()
    if not files:                                   # a copy that is not a git checkout
        files = [os.path.relpath(os.path.join(d, n), ROOT)
                 for d, dirs, names in os.walk(ROOT)
                 if not any(p.startswith(".") or p.endswith(".egg-info")
                            for p in os.path.relpath(d, ROOT).split(os.sep)[1:] or [])
                 and "__pycache__" not in d
                 for n in names if n.endswith((".md", ".py", ".sh"))]
    pat = re.compile(r"vmsim/conform/probes/[\w.-]*\w")
    seen = 0
    for f in files:
        if f == "tests/test_conform_home.py":
            continue
        text = open(os.path.join(ROOT, f), encoding="utf-8").read()
        for ref in pat.findall(text):
            seen += 1
            assert os.path.exists(os.path.join(ROOT, ref)), f"{f}: {ref}"
        if f == "tests/test_conform_home.py":
            continue                                # this file names the old folder itself
        for line in text.splitlines():
            old = "conform_linux" + "/"             # (spelled so this line is no hit)
            if old in line:                         # only the measured paths of the old run
                assert "/work/main/" + old in line, f"{f}: {line}"
    assert seen >= 5


def test_demo_does_not_import_the_cli():
    tree = ast.parse(open(os.path.join(ROOT, "vmsim", "demo.py")).read())
    mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m == "vmsim.cli" or (m or "").startswith("vmsim.cli") for m in mods)
