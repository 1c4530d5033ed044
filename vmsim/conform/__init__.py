"""Conformance with the real kernel: one scenario, run on Linux and on vmsim, compared.

    scenario.py    the TOML format (docs/conformance.md), validation, the resolved ops
    executor.c     the real-kernel side (compiled on first use by linux.py)
    linux.py       build, run and parse the executor; the host snapshot
    vmsim_side.py  the same ops through the vmsim API
    compare.py     observations derived from raw records, and their comparison
    cli.py         ``vmsim conform``: main(argv) -> exit status
"""
from vmsim.conform.scenario import ScenarioFormatError, load  # noqa: F401



def main(argv=None) -> int:
    """``vmsim conform`` (see vmsim.conform.cli)."""
    from vmsim.conform.cli import main as _main
    return _main(argv)
