"""Kernel profiles: the checked-in description of the kernel vmsim models.

Return the parsed profile with :func:`load_profile`; the model, the /proc and sysfs
views and the docs all read the same file.
"""
import functools
import pathlib

__all__ = ["load_profile", "DEFAULT_KERNEL"]

DEFAULT_KERNEL = "6.18"
_DIR = pathlib.Path(__file__).parent


@functools.cache
def load_profile(kernel: str = DEFAULT_KERNEL) -> dict:
    """Return the profile of kernel release ``kernel`` (e.g. "6.18") as a dict."""
    path = _DIR / f"linux-{kernel}.toml"
    if not path.exists():
        raise ValueError(f"no kernel profile for {kernel!r}: profiles are "
                         f"{sorted(p.stem[6:] for p in _DIR.glob('linux-*.toml'))}")
    import tomllib              # here, not at import vmsim: only Machine() reads a profile
    with path.open("rb") as f:
        return tomllib.load(f)
