"""README.md's Python examples run as written (one namespace, in order), with the debug
checker on, so the page a newcomer reads first cannot drift from the API."""
import pathlib
import re

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 2
    ns = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"README.md python block {i + 1}", "exec"), ns)
    m, p = ns["m"], ns["p"]
    # what the second block claims: THP faults, a hugetlb page, a shootdown to CPU 1
    smaps = m.read_file(f"/proc/{p.pid}/smaps_rollup")
    assert int(re.search(r"AnonHugePages:\s+(\d+)", smaps).group(1)) >= 4096
    assert int(re.search(r"Private_Hugetlb:\s+(\d+)", smaps).group(1)) == 2048
    assert m.tlb_stats()[1]["ipi_received"] >= 1
    m.check()
