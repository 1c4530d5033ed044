"""The seed map: each numbered step of the seed notes -> its Linux 6.18 counterpart ->
the vmsim function doing that step (``vmsim seedmap``; data in vmsim/seedmap_data.py).

An entry's ``vmsim`` is a dotted path to a callable defined where the path says
(``vmsim.mm.memory.do_anonymous_page``, ``vmsim.mm.mm_types.mm_struct.find_vma``),
or None with a ``status`` ("not modelled yet: <what>") when vmsim has no
counterpart yet. :func:`render_markdown` regenerates docs/seedmap.md.
"""
import importlib
import os
import re

from vmsim.seedmap_data import SEED_MAP, SEED_FILE

DOC_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "docs", "seedmap.md")

SECTION_TITLES = {
    "0a": "Setup IDT", "1a": "handle_page_fault", "2a": "hugetlb_fault",
    "2b": "__handle_mm_fault", "3a": "do_huge_pmd_anonymous_page", "3b": "do_huge_pmd_wp_page",
    "3c": "PCID", "4a": "zap_page_range", "5a": "pgd_alloc (fork, exec)", "6a": "do_fault",
    "0b": "Page Table",
}


def resolve(path: str):
    """Return the object a dotted path names: the longest importable module prefix,
    then attributes (so class methods such as mm_struct.find_vma resolve).
    Raises LookupError if it does not exist."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        modname = ".".join(parts[:i])
        try:
            obj = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name is not None and not modname.startswith(e.name) and e.name != modname:
                raise LookupError(f"{path}: importing {modname} failed: {e}") from None
            continue
        for attr in parts[i:]:
            try:
                obj = getattr(obj, attr)
            except AttributeError:
                raise LookupError(f"{path}: {obj.__name__ if hasattr(obj, '__name__') else obj!r} "
                                  f"has no attribute {attr!r}") from None
        return obj
    raise LookupError(f"{path}: no such module")


def check_entry(entry) -> str:
    """Return "" if the entry's vmsim path names a callable defined where it says, else why."""
    path = entry["vmsim"]
    if path is None:
        return "" if str(entry.get("status", "")).startswith("not modelled") else \
            "vmsim is None but no 'status: not modelled ...'"
    try:
        obj = resolve(path)
    except LookupError as e:
        return str(e)
    if not callable(obj):
        return f"{path}: not callable ({type(obj).__name__})"
    name = path.rsplit(".", 1)[1]
    if getattr(obj, "__name__", None) != name:
        return f"{path}: is an alias of {getattr(obj, '__qualname__', obj)!r}"
    mod = getattr(obj, "__module__", "")
    if not path.startswith(mod + "."):
        return f"{path}: defined in {mod}, not there"
    return ""


def section_of(entry) -> str:
    return entry["key"].split(":", 1)[0]


def select(section=None, missing=False):
    """Entries of one section ("2" = 2a and 2b, or "2b"), or those not modelled yet."""
    out = []
    for e in SEED_MAP:
        sec = section_of(e)
        if section is not None and sec != section and sec.rstrip("abcdefgh") != section:
            continue
        if missing and e["vmsim"] is not None:
            continue
        out.append(e)
    return out


def sections():
    seen = []
    for e in SEED_MAP:
        s = section_of(e)
        if s not in seen:
            seen.append(s)
    return seen


def vmsim_cell(e) -> str:
    return e["vmsim"] if e["vmsim"] is not None else "— " + e.get("status", "")


def render_blocks(entries, width: int = 100) -> str:
    """Entries as blocks of lines no wider than ``width`` (``vmsim seedmap``): the key and
    the seed's line, then Linux 6.18's counterpart and vmsim's function, wrapped."""
    import textwrap
    out = []
    label = 16
    for e in entries:
        seed = " ".join(e["seed_line"].split())
        out += textwrap.wrap(f"{e['key']}  {seed}", width, subsequent_indent=" " * 4,
                             break_on_hyphens=False)
        vm = e["vmsim"] if e["vmsim"] is not None else e.get("status", "not modelled yet")
        for name, text in (("Linux 6.18", e["linux_6_18"]), ("vmsim", vm)):
            out += textwrap.wrap(" ".join(str(text).split()), width,
                                 initial_indent=f"    {name:<{label - 4}}",
                                 subsequent_indent=" " * label, break_on_hyphens=False)
        out.append("")
    return "\n".join(out).rstrip("\n")


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _seed_md(line: str) -> str:
    s = line.strip().replace("\t", "\\t")
    return "`" + s.replace("`", "'") + "`"


def render_markdown() -> str:
    """Return docs/seedmap.md, generated from SEED_MAP."""
    n = len(SEED_MAP)
    ver = sum(1 for e in SEED_MAP if e.get("verified"))
    seen = sum(1 for e in SEED_MAP if e.get("verified_6_18"))
    built = sum(1 for e in SEED_MAP if e["vmsim"] is not None)
    out = [
        f"# Seed map: {SEED_FILE} -> Linux 6.18 -> vmsim",
        "",
        "<!-- Generated from vmsim/seedmap_data.py by vmsim.seedmap.render_markdown(); do not edit."
        " Regenerate: python3 -c 'import vmsim.seedmap as s; s.write_markdown()' -->",
        "",
        f"Data: `vmsim/seedmap_data.py` (`SEED_MAP`, {n} entries, seed order). "
        f"Command line: `vmsim seedmap [--section N] [--missing]`.",
        f"Entries fully verified (6.18 function and change/release checked): {ver}; "
        f"6.18-era function seen in source: {seen}.",
        f"Entries with a vmsim function doing the step: {built}; not modelled yet: {n - built} "
        f"(`vmsim seedmap --missing`).",
        "",
        "**Key scheme** `<N><occ>:<number>[#<dup>]`: `<N>` = top-level section number, `<occ>` = a/b/c "
        "for the 1st/2nd/3rd section with that number (0a IDT setup, 0b Page Table; 2a hugetlb_fault, "
        "2b __handle_mm_fault; 3a do_huge_pmd_anonymous_page, 3b do_huge_pmd_wp_page, 3c PCID), "
        "`<number>` = number as written in the notes (`N.` for a heading), `#<dup>` for a number "
        "repeated within one section (`2b:2.11.1#2`, `4a:4.1.1.1#2..#4`). Unnumbered items: "
        "`0a:idt.table`, `0a:idt.gate`, `0a:idtentry`, `0a:note`, `5a:fork.<fn>`, `5a:exec.<fn>`, "
        "`0b:glossary.<LEVEL>`, `0b:0.1.walk.<var>`.",
        "",
        "**vmsim**: the dotted path of the vmsim function doing the step (tests/test_seedmap.py "
        "checks that each resolves to a callable defined there), or — and why, when vmsim has no "
        "counterpart yet; \"5.4 profile\" names the function that runs instead under "
        "`Machine(kernel=\"5.4\")` where that profile differs (the THP COW path).",
        "",
        "**Verification**: V = fully verified; S = the 6.18-era function/call seen in source but "
        "the release/commit of the rename is from memory (marked \"[release/commit unverified]\"); "
        "- = unverified.",
        "",
    ]
    for sec in sections():
        entries = [e for e in SEED_MAP if section_of(e) == sec]
        out += [f"## {sec}: {SECTION_TITLES.get(sec, '')}".rstrip(), "",
                "| key | seed line | Linux 6.18 | vmsim | change | ver |",
                "|---|---|---|---|---|---|"]
        for e in entries:
            v = "V" if e.get("verified") else "S" if e.get("verified_6_18") else "-"
            cell = f"`{e['vmsim']}`" if e["vmsim"] is not None else f"— {_md(e.get('status', ''))}"
            if e.get("vmsim_5_4"):
                cell += f" (5.4 profile: `{e['vmsim_5_4']}`)"
            out.append(f"| {e['key']} | {_md(_seed_md(e['seed_line']))} | {_md(e['linux_6_18'])} | "
                       f"{cell} | {_md(e['change'])} | {v} |")
        out.append("")
    return "\n".join(out)


def write_markdown(path: str = DOC_PATH):
    with open(path, "w") as f:
        f.write(render_markdown())


def seed_numbered_lines(seed_text: str) -> list:
    """Return the seed's numbered lines ("1.4.3 fault = handle_mm_fault(...)"), in order."""
    return [ln for ln in seed_text.splitlines() if re.match(r"^\d+(\.\d+)*\.? ", ln)]
