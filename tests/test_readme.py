"""README.md's Python examples run as written (one namespace, in order), with the debug
checker on, so the page a newcomer reads first cannot drift from the API. They run in a
subprocess with VMSIM_NUMBA=0: the same code as Python (identical results by design), so
this test does not pay for compiling the TLB and replay loops that no other default test
needs."""
import json
import os
import pathlib
import re
import subprocess
import sys

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"

DRIVER = r"""
import json, re, sys
blocks = re.findall(r"```python\n(.*?)```", open(sys.argv[1]).read(), re.S)
ns = {}
for i, code in enumerate(blocks):
    exec(compile(code, f"README.md python block {i + 1}", "exec"), ns)
m, p = ns["m"], ns["p"]
m.check()
smaps = m.read_file(f"/proc/{p.pid}/smaps_rollup")
print(json.dumps({"blocks": len(blocks),
                  "AnonHugePages": int(re.search(r"AnonHugePages:\s+(\d+)", smaps).group(1)),
                  "Private_Hugetlb": int(re.search(r"Private_Hugetlb:\s+(\d+)", smaps).group(1)),
                  "ipi_received": m.tlb_stats()[1]["ipi_received"]}))
"""


def test_readme_python_blocks_run():
    env = dict(os.environ, VMSIM_NUMBA="0", VMSIM_DEBUG_VM="1")
    r = subprocess.run([sys.executable, "-c", DRIVER, str(README)], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["blocks"] >= 2
    # what the second block claims: THP faults, a hugetlb page, a shootdown to CPU 1
    assert got["AnonHugePages"] >= 4096
    assert got["Private_Hugetlb"] == 2048
    assert got["ipi_received"] >= 1
