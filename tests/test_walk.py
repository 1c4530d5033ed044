"""vmsim walk: address decomposition per paging mode, and the read-only table walk."""
import pytest

from vmsim import PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS
from vmsim.walk import parse_address, decompose, render_layout, check_address, vtop, walk_entries


def idx(fields):
    return {f.kname: f.value for f in fields}


def test_parse_address():
    assert parse_address("0x1000") == 4096
    assert parse_address("4096") == 4096
    assert parse_address("7ffff7ff6000") == 0x7FFFF7FF6000
    assert parse_address("0xffffffffffffffff") == (1 << 64) - 1
    for bad in ("zz", "-1", "0x1" + "0" * 16, ""):
        with pytest.raises(ValueError):
            parse_address(bad)


@pytest.mark.parametrize("addr", [0x7FFFF7FF6123, 0x0000555555554ABC, 0xFFFF888012345678])
def test_4_level_indices(addr):
    # Intel SDM 4.5: PML4 bits 47:39, PDPT 38:30, PD 29:21, PT 20:12, offset 11:0.
    got = idx(decompose(addr, "4-level"))
    assert got["pgd"] == (addr >> 39) & 0x1FF
    assert got["pud"] == (addr >> 30) & 0x1FF
    assert got["pmd"] == (addr >> 21) & 0x1FF
    assert got["pte"] == (addr >> 12) & 0x1FF
    assert got["offset"] == addr & 0xFFF
    assert "p4d" not in got


def test_5_level_indices():
    addr = 0x00FF_1234_5678_9ABC
    got = idx(decompose(addr, "5-level"))
    assert got["pgd"] == (addr >> 48) & 0x1FF      # PML5: bits 56:48
    assert got["p4d"] == (addr >> 39) & 0x1FF


def test_32_bit_and_pae_indices():
    addr = 0xBFFF1234
    got = idx(decompose(addr, "32-bit"))           # 10/10/12 split
    assert (got["pgd"], got["pte"], got["offset"]) == (addr >> 22, (addr >> 12) & 0x3FF, 0x234)
    got = idx(decompose(addr, "pae"))              # 2/9/9/12 split
    assert (got["pgd"], got["pmd"], got["pte"]) == (addr >> 30, (addr >> 21) & 0x1FF, (addr >> 12) & 0x1FF)


def test_layout_names_levels_and_folding():
    text = render_layout(0x7FFFF7FF6000, "4-level")
    for name in ("PML4 (pgd)", "PDPT (pud)", "PD (pmd)", "PT (pte)", "Offset"):
        assert name in text
    assert "folded: the p4d is the pgd entry itself" in text
    text5 = render_layout(0x7FFFF7FF6000, "5-level")
    assert "PML5 (pgd)" in text5 and "PML4 (p4d)" in text5 and "folded" not in text5


def test_canonical_checks():
    assert check_address(0x800000000000, PAGING_4()) != ""       # bit 47 set, 63..48 clear
    assert check_address(0xFFFF800000000000, PAGING_4()) == ""
    assert check_address(0x1_0000_0000, PAGING("32-bit")) != ""


def PAGING(name):
    from vmsim.arch.x86.pgtable_types import PAGING_MODES
    return PAGING_MODES[name]


def PAGING_4():
    return PAGING("4-level")


def test_vtop_reaches_the_written_data(machine, proc):
    a = proc.mmap(0, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    proc.write(a + 0x10, b"hello")
    k = machine.k
    steps, phys = walk_entries(k, proc.mm, a + 0x10)
    assert phys is not None and phys & 0xFFF == 0x10
    assert k.page_data.read(phys >> 12, phys & 0xFFF, 5) == b"hello"
    text = vtop(machine, proc.pid, a + 0x10)
    assert f"{phys:x}" in text
    assert "PTE (PT)" in text and "RW" in text.splitlines()[-2] and "DIRTY" in text


def test_vtop_read_only_zero_page_and_not_present(machine, proc):
    a = proc.mmap(0, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    proc.read(a, 1)
    text = vtop(machine, proc.pid, a)
    pte_line = [ln for ln in text.splitlines() if "PTE (PT)" in ln][0]
    assert "PRESENT" in pte_line and "RW" not in pte_line     # zero page mapped read-only
    assert "the zero page" in text
    assert "not present" in vtop(machine, proc.pid, a + 4096)


def test_vtop_direct_map_is_page_offset(machine, proc):
    # Documentation/arch/x86/x86_64/mm.rst: the direct map starts at 0xffff888000000000.
    text = vtop(machine, proc.pid, 0xFFFF888000000000 + 0x123456)
    assert text.splitlines()[2].split()[1] == "123456"


def test_vtop_does_not_set_accessed(machine, proc):
    a = proc.mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    proc.write(a, b"x")
    k = machine.k
    steps, _ = walk_entries(k, proc.mm, a)
    ephys = steps[-1][1]
    ptr = k.mem.private[ephys >> 12] * 512 + (ephys & 0xFFF) // 8
    k.ptpool.mv[ptr] = k.ptpool.mv[ptr] & ~0x20          # clear _PAGE_ACCESSED by hand
    before = [e for _, _, e in walk_entries(k, proc.mm, a)[0]]
    assert not before[-1] & 0x20
    vtop(machine, proc.pid, a)
    assert [e for _, _, e in walk_entries(machine.k, proc.mm, a)[0]] == before


def test_vtop_unknown_pid(machine, proc):
    with pytest.raises(LookupError):
        vtop(machine, 999, 0x1000)
