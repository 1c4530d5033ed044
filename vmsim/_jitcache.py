"""vmsim-only: compile a function with numba, caching the machine code per user.

numba's default is to cache next to the source, in the installed package's
__pycache__; a leftover folder there outlives ``pip uninstall`` and turns
site-packages/vmsim into an empty namespace package that hides a later editable
install. So the cache goes to $XDG_CACHE_HOME/vmsim/numba (else ~/.cache/vmsim/numba),
or to $NUMBA_CACHE_DIR when the user set one, and nowhere else (a folder in it per
version of vmsim's sources): when that folder
cannot be created or written, the function is compiled without a cache, which costs
compile time on every run and nothing more.

numba is imported here, on the first compile, never at ``import vmsim``; and only
once the work in hand pays for it (:func:`_worth_compiling`).
"""
import os
import sys

# Importing numba and loading the cached machine code of the walk costs about 0.3 s of
# CPU, what the plain-Python walk takes for some 130,000 accesses. So vmsim runs its
# first work (execve writing argv, a first fault, a short script) as plain Python and
# loads numba once the work done so far plus the batch in hand reaches this many
# accesses (or PTEs): a run that ends sooner never pays for numba, and one that goes
# on pays at most about half the load again in Python work (ski rental). A batch as
# large as this alone goes compiled at once. VMSIM_JIT_AFTER overrides it (0: at once).
# The work is counted per feature: the walk with the PTE runs, the TLB model's
# loops, whose build is larger (a machine without a TLB model never loads it), and
# the trace readers' text parsers (vmsim.replay.readers).
JIT_AFTER = 1 << 16
_work = {"walk": 0, "tlb": 0, "parse": 0}


def _jit_after() -> int:
    v = os.environ.get("VMSIM_JIT_AFTER")
    return int(v) if v and v.isdigit() else JIT_AFTER


def _worth_compiling(n: int, feature: str = "walk") -> bool:
    """Count ``n`` more units of ``feature``'s work (accesses, PTEs); return whether
    its compiled build should run from now on."""
    done = _work[feature] + n
    _work[feature] = done
    return done >= _jit_after()


class _untraced:
    """vmsim's function-graph tracer (vmsim.trace) off for a moment: it records kernel
    functions only, but on Python 3.11 its profile hook is still called for every
    Python call, and importing numba and loading cached machine code makes ~10^5 of
    them (+0.9 s when a replay switches to the compiled walk). Another profiler stays."""

    def __enter__(self):
        hook = sys.getprofile()
        if getattr(getattr(hook, "__self__", None), "_kernel_functions_only", False):
            self.hook = hook
            sys.setprofile(None)
        else:
            self.hook = None
        return self

    def __exit__(self, *exc):
        if self.hook is not None:
            sys.setprofile(self.hook)
        return False


def cache_dir() -> str:
    """Return the folder numba's cache for vmsim goes to (it may not exist yet)."""
    user = os.environ.get("NUMBA_CACHE_DIR")
    if user:
        return user
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "vmsim", "numba")


def _writable(d: str) -> bool:
    """Create ``d`` if needed and try a file in it, as numba's ensure_cache_path does."""
    import tempfile
    try:
        os.makedirs(d, exist_ok=True)
        with tempfile.TemporaryFile(dir=d):
            pass
        return True
    except OSError:
        return False


_digest = None


def _source_digest() -> str:
    """A digest of every vmsim source file (path within the package and contents).

    numba invalidates a cached function when its own file changes, not when a function
    it calls or inlines from another file does: a build that inlined tlb.py kept its old
    code after tlb.py alone changed. So each version of vmsim's sources caches into a
    folder of its own (hashing the ~2 MB of sources once per process takes ~15 ms,
    beside numba's ~0.3 s import)."""
    global _digest
    if _digest is None:
        import hashlib
        top = os.path.dirname(os.path.abspath(__file__))
        h = hashlib.sha1()
        for root, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(root, name)
                    h.update(os.path.relpath(path, top).encode() + b"\0")
                    with open(path, "rb") as f:
                        h.update(f.read())
        _digest = h.hexdigest()[:16]
    return _digest


def _cached(dispatcher) -> bool:
    """Has numba's cache a build of ``dispatcher`` (one made by :func:`_njit`): its
    index file, which numba writes with the first build it saves?"""
    cache = getattr(dispatcher, "_cache", None)
    path = getattr(getattr(cache, "_cache_file", None), "_index_path", None)
    return bool(path) and os.path.exists(path)


def _njit(fn, **options):
    """Return numba.njit(**options)(fn), cached in :func:`cache_dir` (in the folder of
    this version of the sources, :func:`_source_digest`) if it is writable.

    numba's locator reads config.CACHE_DIR when the dispatcher is made, so it is set
    for that moment only: other numba users in the same process keep their settings.
    Were the folder unusable, numba would fall back to the package's __pycache__,
    hence no cache at all then.
    """
    with _untraced():
        import numba
        from numba.core import config
        d = os.path.join(cache_dir(), _source_digest())
        if not _writable(d):
            return numba.njit(cache=False, **options)(fn)
        saved = config.CACHE_DIR
        config.CACHE_DIR = d
        try:
            return numba.njit(cache=True, **options)(fn)
        finally:
            config.CACHE_DIR = saved
