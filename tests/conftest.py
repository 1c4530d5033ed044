import os

# Every test runs with the debug checker on (CONFIG_DEBUG_VM / page_table_check).
os.environ.setdefault("VMSIM_DEBUG_VM", "1")

import pytest  # noqa: E402


@pytest.fixture
def machine():
    import vmsim
    return vmsim.Machine(memory="1G", cpus=2)


@pytest.fixture
def proc(machine):
    return machine.spawn()
