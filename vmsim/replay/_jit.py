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


def _build(fn, helpers):
    from vmsim._jitcache import _njit
    g = dict(fn.__globals__)
    for name, h in (helpers or {}).items():
        if isinstance(h, tuple):                  # (function, its own helpers)
            g[name] = _build(*h)
        else:
            g[name] = _njit(h, nogil=True)
    return _njit(types.FunctionType(fn.__code__, g, fn.__name__), nogil=True)


def compile(fn, helpers=None):
    """``fn`` compiled, its ``helpers`` (name -> function, or (function, helpers))
    compiled and put in its globals so numba inlines them; ``fn`` itself when numba
    is off."""
    if not enabled():
        return fn
    key = fn.__qualname__, fn.__module__
    if key not in _cache:
        try:
            _cache[key] = _build(fn, helpers)
        except ImportError:
            return fn
    return _cache[key]
