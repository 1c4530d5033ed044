import os
import sys

# Every test runs with the debug checker on (CONFIG_DEBUG_VM / page_table_check).
os.environ.setdefault("VMSIM_DEBUG_VM", "1")

# The run writes bytecode (__pycache__, git-ignored) even where PYTHONDONTWRITEBYTECODE
# is set, as on this project's machines: without it each xdist worker rewrote the asserts
# of every test module and compiled vmsim's sources afresh (~6 CPU-s each), and so did
# every CLI subprocess (~0.25 s each). The workers and subprocesses inherit the change.
if sys.dont_write_bytecode:
    sys.dont_write_bytecode = False
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

import pytest  # noqa: E402


def _share_numba_builds():
    """The workers make each numba build once: a worker about to compile a function
    another worker is compiling into the same cache waits for it, then loads the
    build from the cache (numba's Dispatcher.compile tries the cache first), instead
    of compiling it a second time at once (a cold cache on CI: _write_fault_run ~9 s,
    _read_fault_run ~5 s of CPU each, made twice when two test files on different
    workers reached them together). Waiting is never longer than compiling."""
    import fcntl
    import hashlib
    from vmsim import _jitcache
    njit = _jitcache._njit
    held = set()                         # this process's locks (a nested compile)

    def _njit(fn, **options):
        disp = njit(fn, **options)
        if type(getattr(disp, "_cache", None)).__name__ == "NullCache":
            return disp                  # no cache folder: nothing to share
        code = fn.__code__
        key = hashlib.sha1(repr((fn.__module__, fn.__qualname__, code.co_filename,
                                 code.co_firstlineno)).encode()).hexdigest()[:16]
        # next to the cache (a writable folder; numba's own files are *.nbi / *.nbc)
        path = os.path.join(_jitcache.cache_dir(), f"test-build-{key}.lock")
        compile_ = disp.compile

        def compile(sig):
            try:
                fh = None if key in held else open(path, "a")
            except OSError:              # the folder went away (a test's tmp_path)
                fh = None
            if fh is None:
                return compile_(sig)
            with fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                held.add(key)
                try:
                    return compile_(sig)
                finally:
                    held.discard(key)
                    fcntl.flock(fh, fcntl.LOCK_UN)
        disp.compile = compile
        return disp
    _jitcache._njit = _njit


if os.environ.get("PYTEST_XDIST_WORKER"):
    _share_numba_builds()


def pytest_collection(session):
    """On a fresh checkout each worker rewrites the asserts of every test module it
    collects (~0.8 MB of tests, some 5 CPU-s) and pytest caches the result in
    __pycache__. The second worker imports the modules last-first before collecting, so
    the two meet in the middle and each module is rewritten once: the other worker
    loads the cached result. Only when the run collects the whole folder."""
    import importlib
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    top = str(session.config.invocation_params.dir)
    if os.environ.get("PYTEST_XDIST_WORKER") != "gw1" or \
            not any(os.path.abspath(os.path.join(top, a)) == here for a in session.config.args):
        return
    for name in sorted(os.listdir(here), reverse=True):
        if name.startswith("test_") and name.endswith(".py") and name[:-3] not in sys.modules:
            try:
                importlib.import_module(name[:-3])
            except (Exception, pytest.skip.Exception):
                pass                     # collection imports it again and reports


def pytest_configure(config):
    config.addinivalue_line("markers", "no_final_check: the test leaves a corrupted machine on "
                            "purpose (no full debug-checker pass at its end)")


# The longest test files of the default run, longest first (CPU seconds of each file on
# a cold numba cache, 2 workers: conform 25, replay_run 14, filemap_run 10, strace 6.5,
# views 6, ... down to debug_vm 1.2). pytest-xdist hands each worker a whole file at a
# time in collection order (--dist loadfile --no-loadscope-reorder in pyproject.toml):
# long files first, the short ones fill in at the end and both workers finish together.
# Files not listed run after these, in name order. A long new file belongs in the list.
# A file that needs a numba build made by a file above it comes well after it, so the
# build is in the cache by then: test_file.py and test_workingset.py after
# test_filemap_run.py, whose first test compiles _read_fault_run. (Next to each other,
# the second worker waited out the first's compile: on a cold cache at load 9,
# test_file's 16 MiB read-touch took 31 s of wall for 0.3 CPU-s of its own.)
LONG_FIRST = [
    "test_conform.py", "test_replay_run.py", "test_filemap_run.py", "test_strace.py",
    "test_views.py", "test_tlb.py", "test_pte_batch.py", "test_replay_readers.py",
    "test_setup.py", "test_stateful_fork.py", "test_examples.py", "test_file_thp.py",
    "test_workingset.py", "test_file.py", "test_hugetlb.py", "test_fork.py",
    "test_hugetlbfs.py", "test_longrun.py", "test_readme.py", "test_explore.py",
    "test_replay_native.py", "test_stateful.py", "test_replay_access.py", "test_thp.py",
    "test_gap_tree.py", "test_mremap.py", "test_prctl.py", "test_shmem_thp.py",
    "test_debug_vm.py",
]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))     # stable: in-file order kept


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
