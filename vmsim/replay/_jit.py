"""numba builds of the replay layer's byte loops, cached per user (vmsim._jitcache).

With VMSIM_NUMBA=0, or without a usable numba, the same functions run as plain Python.
"""
import os
import types

_cache = {}


def enabled() -> bool:
    if os.environ.get("VMSIM_NUMBA", "1") == "0":
        return False
    import importlib.util
    return importlib.util.find_spec("numba") is not None


# The byte loops allocate nothing: built without numba's reference counting
# (_nrt=False), as with it every array passed on to a helper costs an atomic
# incref/decref pair a line (~250 ns a lackey line, ~50 without); the helpers are
# inlined into their caller (inline='always').
def _build(fn, helpers, name=None, inline="never"):
    from vmsim._jitcache import _njit
    g = dict(fn.__globals__)
    for hname, h in (helpers or {}).items():
        if isinstance(h, tuple):                  # (function, its own helpers)
            g[hname] = _build(*h, inline="always")
        else:
            g[hname] = _njit(h, nogil=True, _nrt=False, inline="always")
    f = types.FunctionType(fn.__code__, g, name or fn.__name__)
    # numba names the cache file after the qualified name: one per build. Its cache
    # key leaves out the options: the suffix keeps an older build (with NRT) unused.
    f.__qualname__ = (name or fn.__qualname__) + "_nonrt"
    return _njit(f, nogil=True, _nrt=False, inline=inline)


def compile(fn, helpers=None, name=None):
    """``fn`` compiled, its ``helpers`` (name -> function, or (function, helpers))
    compiled and put in its globals so numba inlines them; ``fn`` itself when numba
    is off. ``name`` tells apart builds of one function with other helpers."""
    if not enabled():
        return fn
    key = name or fn.__qualname__, fn.__module__
    if key not in _cache:
        try:
            _cache[key] = _build(fn, helpers, name)
        except ImportError:
            return fn
    return _cache[key]
