"""The seed map: every vmsim path names a callable doing the step; the seed is covered."""
import os

import pytest

from vmsim import seedmap
from vmsim.seedmap import SEED_MAP, SEED_FILE, check_entry, resolve

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _seed_path():
    for cand in (os.environ.get("VMSIM_SEEDS", ""), os.path.join(REPO, "..", "shared", "seeds"),
                 os.path.join(REPO, "shared", "seeds"), "/work/shared/seeds"):
        p = os.path.join(cand, SEED_FILE)
        if cand and os.path.exists(p):
            return p
    return None


@pytest.mark.parametrize("entry", [e for e in SEED_MAP if e["vmsim"] is not None],
                         ids=lambda e: e["key"])
def test_vmsim_path_resolves_to_a_callable_defined_there(entry):
    assert check_entry(entry) == ""
    assert callable(resolve(entry["vmsim"]))


def test_missing_entries_say_why():
    missing = [e for e in SEED_MAP if e["vmsim"] is None]
    assert missing, "hugetlb and THP internals are not built yet"
    for e in missing:
        assert e["status"].startswith("not modelled yet: "), e["key"]


def test_aliases_and_stubs_are_rejected():
    # huge_memory's wp_huge_pmd is an alias of a stub that raises: it does not do the step.
    assert "alias" in check_entry({"key": "x", "vmsim": "vmsim.mm.huge_memory.wp_huge_pmd"})
    assert check_entry({"key": "x", "vmsim": "vmsim.mm.memory.no_such_function"})
    assert "not callable" in check_entry({"key": "x", "vmsim": "vmsim.arch.x86.pgtable_types.PAGING_MODES"})
    # memory.py imports create_huge_pmd from huge_memory: the path must name where it is defined.
    assert "defined in" in check_entry({"key": "x", "vmsim": "vmsim.mm.memory.create_huge_pmd"})


def test_keys_are_unique():
    keys = [e["key"] for e in SEED_MAP]
    assert len(keys) == len(set(keys))


def test_every_numbered_seed_line_is_mapped():
    path = _seed_path()
    if path is None:
        pytest.skip("seed notes not found (shared/seeds beside the repository)")
    with open(path) as f:
        lines = seedmap.seed_numbered_lines(f.read())
    assert len(lines) > 100
    mapped = {e["seed_line"].strip() for e in SEED_MAP}
    assert [ln for ln in lines if ln.strip() not in mapped] == []


def test_docs_seedmap_is_up_to_date():
    with open(os.path.join(REPO, "docs", "seedmap.md")) as f:
        assert f.read() == seedmap.render_markdown(), \
            "regenerate: python3 -c 'import vmsim.seedmap as s; s.write_markdown()'"


def test_select_sections_and_missing():
    two = seedmap.select("2")
    assert {seedmap.section_of(e) for e in two} == {"2a", "2b"}
    assert {seedmap.section_of(e) for e in seedmap.select("2b")} == {"2b"}
    assert all(e["vmsim"] is None for e in seedmap.select(missing=True))
