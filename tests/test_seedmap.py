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


def test_5_4_profile_functions_resolve():
    """Entries whose step runs a different function under Machine(kernel="5.4")."""
    e54 = [e for e in SEED_MAP if e.get("vmsim_5_4")]
    assert any(e["key"] == "3b:3.7" for e in e54)
    for e in e54:
        assert check_entry({"key": e["key"], "vmsim": e["vmsim_5_4"]}) == "", e["key"]


def test_missing_entries_say_why():
    missing = [e for e in SEED_MAP if e["vmsim"] is None]
    assert missing, "hugetlb and THP internals are not built yet"
    for e in missing:
        assert e["status"].startswith("not modelled yet: "), e["key"]


def test_aliases_and_stubs_are_rejected():
    # huge_memory's mod_mthp_stat is an alias of count_mthp_stat: the map must name the
    # function that is defined.
    assert "alias" in check_entry({"key": "x", "vmsim": "vmsim.mm.huge_memory.mod_mthp_stat"})
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


# --- the command line fits a 100-column terminal and speaks plainly ---------------------
def _blocks(text):
    return [b for b in text.split("\n\n")[1:] if b.strip()]


@pytest.mark.parametrize("args", [(), ("--section", "3a"), ("--section", "2"), ("--missing",)])
def test_cli_seedmap_fits_100_columns_one_block_per_entry(args, capsys):
    from entrypoint import vmsim_here
    cp = vmsim_here(capsys, "seedmap", *args)
    assert cp.returncode == 0, cp.stderr
    lines = cp.stdout.rstrip("\n").splitlines()
    assert max(len(ln) for ln in lines) <= 100
    n = int(lines[0].split(": ")[1].split()[0])           # "seed map: 24 of 171 entries ..."
    blocks = _blocks(cp.stdout)
    assert len(blocks) == n > 0
    keys = [b.split()[0] for b in blocks]
    section = args[1] if args[:1] == ("--section",) else None
    want = [e["key"] for e in seedmap.select(section, "--missing" in args)]
    assert keys == want


def test_users_see_no_internal_work_items(capsys):
    from entrypoint import vmsim_here
    text = vmsim_here(capsys, "seedmap").stdout + vmsim_here(capsys, "seedmap", "--missing").stdout
    with open(os.path.join(REPO, "docs", "seedmap.md")) as f:
        text += f.read()
    assert "not modelled yet" in text
    assert "issue" not in text.lower()
    for e in SEED_MAP:
        assert "issue" not in str(e.get("status", "")).lower(), e["key"]


# --- corrections checked against the 6.18.2 source --------------------------------------
def _linux_src(rel):
    for cand in (os.environ.get("VMSIM_LINUX_SRC", ""), os.path.join(REPO, "..", "shared", "linux-6.18.2"),
                 "/work/shared/linux-6.18.2"):
        p = os.path.join(cand, rel)
        if cand and os.path.exists(p):
            with open(p) as f:
                return f.read()
    pytest.skip(f"Linux 6.18.2 source not found ({rel})")


def _entry(key):
    return next(e for e in SEED_MAP if e["key"] == key)


def test_early_pf_idts_on_x86_64():
    # idt.c: early_idts[] holds the #PF gate only under CONFIG_X86_32; x86-64 installs it
    # from early_pf_idts[] in idt_setup_early_pf().
    src = _linux_src("arch/x86/kernel/idt.c")
    early = src[src.index("early_idts[] = {"):]
    early = early[:early.index("};")]
    assert early.index("#ifdef CONFIG_X86_32") < early.index("X86_TRAP_PF") < early.index("#endif")
    pf = src[src.index("early_pf_idts[] = {"):]
    assert "X86_TRAP_PF" in pf[:pf.index("};")]
    assert "idt_setup_early_pf(void)" in src
    for key in ("0a:0.", "0a:idt.table", "0a:idt.gate"):
        e = _entry(key)
        assert "early_pf_idts" in e["linux_6_18"], key
        assert "removed" not in e["change"] and "no longer" not in e["change"], key
    assert "idt_setup_early_pf" in _entry("0a:0.")["linux_6_18"]
    assert "idt_setup_early_pf" in _entry("0a:idt.table")["linux_6_18"]


def test_large_rmappable_via_page_rmappable_folio():
    src = _linux_src("mm/internal.h")
    fn = src[src.index("page_rmappable_folio(struct page *page)"):]
    assert "folio_set_large_rmappable(folio)" in fn[:fn.index("\n}")]
    e = _entry("3a:3.6")
    assert "page_rmappable_folio" in e["linux_6_18"] and "folio_set_large_rmappable" in e["linux_6_18"]
    assert "folio_prep_large_rmappable" not in e["linux_6_18"]


def test_do_cow_fault_checks_vmf_can_call_fault_first():
    src = _linux_src("mm/memory.c")
    body = src[src.index("static vm_fault_t do_cow_fault(struct vm_fault *vmf)"):]
    body = body[:body.index("\n}")]
    order = [body.index(f) for f in ("vmf_can_call_fault(", "vmf_anon_prepare(", "folio_prealloc(")]
    assert order == sorted(order)
    e = _entry("6a:6.2")
    for text in (e["linux_6_18"], e["change"]):
        assert text.index("vmf_can_call_fault") < text.index("vmf_anon_prepare") < text.index("folio_prealloc")
