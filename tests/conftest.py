import os

# Every test runs with the debug checker on (CONFIG_DEBUG_VM / page_table_check).
os.environ.setdefault("VMSIM_DEBUG_VM", "1")

import pytest  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "no_final_check: the test leaves a corrupted machine on "
                            "purpose (no full debug-checker pass at its end)")


@pytest.fixture
def machine(request):
    """A 1 GiB, 2-CPU machine without protection keys (the CPU the recorded values come
    from, whatever this host has); the checker's full pass runs at the end of a test that
    spawned processes (the per-call passes are incremental)."""
    import vmsim
    m = vmsim.Machine(memory="1G", cpus=2, pku=False)
    yield m
    # Only for tests that ran processes (unit tests build bare mm/VMA structures).
    if m.debug_vm and m.processes and request.node.get_closest_marker("no_final_check") is None:
        m.check()


@pytest.fixture
def proc(machine):
    return machine.spawn()


@pytest.fixture
def fragment():
    """Leave no free 2 MiB block: take every free frame, give back every other one.
    The frames kept are a reference holder the debug checker is told about."""
    from vmsim.mm import debug_vm
    from vmsim.mm.page_alloc import GFP_HIGHUSER_MOVABLE, __GFP_RECLAIM, __GFP_NOWARN
    from vmsim.mm.swap import folio_put
    held = {}
    src = lambda k: held                                  # noqa: E731
    debug_vm.EXTRA_REF_SOURCES.append(src)

    def run(m):
        k = m.k
        got = []
        while True:
            pfn = k.page_alloc.alloc_pages((GFP_HIGHUSER_MOVABLE | __GFP_NOWARN) & ~__GFP_RECLAIM, 0)
            if pfn < 0:
                break
            got.append(pfn)
        for pfn in sorted(got):
            if pfn & 1:
                folio_put(k, pfn)
            else:
                held[pfn] = 1
    yield run
    debug_vm.EXTRA_REF_SOURCES.remove(src)
