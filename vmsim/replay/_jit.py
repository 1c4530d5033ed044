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


def _build(fn, helpers, name=None):
    from vmsim._jitcache import _njit
    g = dict(fn.__globals__)
    for hname, h in (helpers or {}).items():
        if isinstance(h, tuple):                  # (function, its own helpers)
            g[hname] = _build(*h)
        else:
            g[hname] = _njit(h, nogil=True)
    f = types.FunctionType(fn.__code__, g, name or fn.__name__)
    # numba names the cache file after the qualified name: one per build.
    f.__qualname__ = name or fn.__qualname__
    return _njit(f, nogil=True)


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
