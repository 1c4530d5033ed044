"""`vmsim conform` on hostile input (issue 8): deep nesting and numbers that do not fit
the C types the executor passes. Each mistake is one "FILE:LINE: problem" line on
stderr, exit status 2, and no traceback; the real `vmsim` entry point runs them."""
import os

import pytest
from entrypoint import vmsim

from vmsim.conform.scenario import ScenarioFormatError, load

HEAD = 'name = "x"\n[settings]\nkernel = "6.18"\nthp_enabled = "madvise"\n'


def vmsim_cli(*args):
    return vmsim(*args, timeout=120)


def test_deep_nesting_is_a_clean_error(tmp_path):
    f = tmp_path / "deep.toml"
    f.write_text(HEAD + "[[step]]\nop = 'point'\nid = " + "[" * 100_000 + "\n")
    r = vmsim_cli("conform", "--recorded", str(f))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "RecursionError" not in r.stderr + r.stdout
    assert f"{f}:7: arrays or inline tables nested more than" in r.stderr


def test_nesting_ignores_brackets_in_strings_and_comments(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text("# " + "[" * 200 + "\ndescription = '" + "{" * 200 + "'\n" + HEAD +
                 "[[step]]\nop = 'mmap'\nmap = 'a'\npages = 1\nnote = \"]]]\\\"[[[\"\n")
    assert load(str(f)).name == "x"


@pytest.mark.parametrize("body, line, fragment", [
    # 2^52 pages are 2^64 bytes: the C side saw 0, vmsim 2^64 (a false DIFFER before)
    ("op = 'mmap'\nmap = 'a'\npages = 4503599627370496\n", 8, "pages: 4503599627370496 pages"),
    ("op = 'mmap'\nmap = 'a'\nlength = 18446744073709551616\n", 8, "does not fit in 64 bits"),
    ("op = 'mmap'\nmap = 'a'\npages = 1\nprot = 4294967299\n", 9, "prot: 4294967299 does not fit in a C int"),
    ("op = 'mmap'\nmap = 'a'\npages = 1\nflags = -2147483649\n", 9, "flags: -2147483649 does not fit"),
])
def test_numbers_must_fit_their_c_type(tmp_path, body, line, fragment):
    f = tmp_path / "n.toml"
    f.write_text(HEAD + "[[step]]\n" + body)
    with pytest.raises(ScenarioFormatError) as e:
        load(str(f))
    assert str(e.value).startswith(f"{f}:{line}: step 1 (mmap): ")
    assert fragment in str(e.value)
    if line == 8 and "pages" in body:          # one through the real command line
        r = vmsim_cli("conform", "--recorded", str(f))
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert f"{f}:{line}:" in r.stderr


def test_offsets_wrap_as_the_c_side_casts_them():
    """A 64-bit value above 2^63 reaches the executor as a negative long (its cast back to
    size_t restores it) and vmsim as the same unsigned number."""
    from vmsim.conform import vmsim_side
    from vmsim.conform.scenario import program_text
    scn = load(os.path.join(os.path.dirname(__file__), "..", "scenarios", "size_t_lengths.toml"))
    text = program_text(scn)
    assert "munmap 0 0 -4096" in text          # 0xfffffffffffff000 as the C long it is
    assert vmsim_side._ulong(-4096) == 0xfffffffffffff000


def test_rlimit_beyond_a_long_is_refused(tmp_path):
    """The executor reads a negative long as RLIM_INFINITY: 2^63 + 5 would be unlimited
    there and 2^63 + 5 in vmsim."""
    f = tmp_path / "r.toml"
    f.write_text(HEAD + "[[step]]\nop = 'setrlimit'\nresource = 'STACK'\nsoft = 9223372036854775813\n")
    with pytest.raises(ScenarioFormatError) as e:
        load(str(f))
    assert str(e.value).startswith(f"{f}:8: step 1 (setrlimit): soft: ")
