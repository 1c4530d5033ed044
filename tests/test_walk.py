"""vmsim walk: address decomposition per paging mode, and the read-only table walk."""
import pytest

from vmsim import PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS
from vmsim.walk import parse_address, decompose, render_layout, check_address, vtop, walk_entries


def idx(fields):
    return {f.kname: f.value for f in fields}


def test_parse_address_as_crash_does():
    # crash(8) reads addresses as hex, with or without 0x: "4096" is 0x4096.
    assert parse_address("0x1000") == 4096
    assert parse_address("0X1000") == 4096
    assert parse_address("4096") == 0x4096
    assert parse_address("7ffff7ff6000") == 0x7FFFF7FF6000
    assert parse_address("0xffffffffffffffff") == (1 << 64) - 1
    for bad in ("zz", "-1", "+1", "0x1" + "0" * 16, "", "0x", "1_000", "0x_10",
                "\u0664\u0664",            # Arabic-Indic digits: int() takes them, crash does not
                "\uff11\uff12",            # fullwidth digits
                "0x1 0"):
        with pytest.raises(ValueError, match="bad address"):
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


# --- the x86-64 memory map (Documentation/arch/x86/x86_64/mm.rst, 6.18) --------------
@pytest.mark.parametrize("mode,addr,want", [
    ("4-level", 0x0000555555554000, "user-space virtual memory"),
    ("4-level", 0x00007ffffffff000, "guard hole"),
    ("4-level", 0xffff800000000000, "guard hole, also reserved for hypervisor"),
    ("4-level", 0xffff880000000000, "LDT remap for PTI"),
    ("4-level", 0xffff888000000000, "direct mapping of all physical memory"),
    ("4-level", 0xffffc87fffffffff, "direct mapping of all physical memory"),
    ("4-level", 0xffffc90000000000, "vmalloc/ioremap space"),
    ("4-level", 0xffffea0000000000, "virtual memory map (vmemmap_base)"),
    ("4-level", 0xffffec0000000000, "KASAN shadow memory"),
    ("4-level", 0xfffffe0000000000, "cpu_entry_area mapping"),
    ("4-level", 0xffffff0000000000, "%esp fixup stacks"),
    ("4-level", 0xffffffef00000000, "EFI region mapping space"),
    ("4-level", 0xffffffff81000000, "kernel text mapping"),
    ("4-level", 0xffffffffa0000000, "module mapping space"),
    ("4-level", 0xffffffffff600000, "legacy vsyscall ABI"),
    ("5-level", 0x00fffffffffff000, "guard hole"),
    ("5-level", 0x00ff000000000000, "user-space virtual memory"),
    ("5-level", 0xff10000000000000, "LDT remap for PTI"),
    ("5-level", 0xff11000000000000, "direct mapping of all physical memory"),
    ("5-level", 0xffa0000000000000, "vmalloc/ioremap space"),
    ("5-level", 0xffd4000000000000, "virtual memory map (vmemmap_base)"),
    ("5-level", 0xffffffff81000000, "kernel text mapping"),
])
def test_memory_map_regions(mode, addr, want):
    from vmsim.walk import region
    assert want in region(addr, mode)[2]
    assert want in render_layout(addr, mode)


@pytest.mark.parametrize("mode,bits", [("4-level", 48), ("5-level", 57)])
def test_memory_map_covers_exactly_the_canonical_addresses(mode, bits):
    from vmsim.walk import MEMORY_MAP
    rs = MEMORY_MAP[mode]
    half = 1 << (bits - 1)
    assert rs[0][0] == 0 and rs[-1][1] == (1 << 64) - 1
    for (a, b, _), (c, d, _) in zip(rs, rs[1:]):
        assert a <= b and (c == b + 1 or (b, c) == (half - 1, (1 << 64) - half)), (hex(b), hex(c))


def test_vtop_reports_a_non_canonical_address(machine, proc):
    # A non-canonical address never reaches the page tables: #GP, not a not-present #PF.
    text = vtop(machine, proc.pid, 0x0000800000000000)
    assert "non-canonical" in text and "not present" not in text


def test_vtop_labels_kernel_regions(machine, proc):
    assert "direct mapping of all physical memory" in vtop(machine, proc.pid, 0xFFFF888000001000)


# --- the command line: through the installed entry point (argv as the OS hands it over),
# then through vmsim.cli.main in this process ----------------------------------------------
def test_cli_walk_rejects_unicode_digits_and_junk():
    from entrypoint import vmsim, one_line_error
    for bad in ("\u0664\u0664", "0x-10"):
        cp = vmsim("walk", bad)
        assert cp.returncode == 2
        assert "bad address" in one_line_error(cp)


def test_cli_walk_address_outside_the_mode_is_an_error(tmp_path, capsys):
    from entrypoint import vmsim_here, one_line_error
    vmsim = lambda *a: vmsim_here(capsys, *a)          # noqa: E731  (in this process)
    cp = vmsim("walk", "0x800000000000", "--mode", "4-level")
    assert cp.returncode == 2 and "non-canonical" in one_line_error(cp)
    assert vmsim("walk", "0x800000000000", "--mode", "5-level").returncode == 0
    cp = vmsim("walk", "0x100000000", "--mode", "32-bit")
    assert cp.returncode == 2 and "wider than 32 bits" in one_line_error(cp)
    cp = vmsim("walk", "0x0800000000000000")               # no mode holds it
    assert cp.returncode == 2 and "fits no paging mode" in one_line_error(cp)
    scen = tmp_path / "s.py"
    scen.write_text("p = machine.spawn()\n")
    cp = vmsim("walk", "0x800000000000", "--scenario", scen)
    assert cp.returncode == 2 and "non-canonical" in one_line_error(cp)
    assert "not present" not in cp.stdout + cp.stderr


def test_cli_walk_labels_kernel_half(capsys):
    from entrypoint import vmsim_here
    vmsim = lambda *a: vmsim_here(capsys, *a)          # noqa: E731  (in this process)
    cp = vmsim("walk", "ffffffff81000000", "--mode", "4-level")
    assert cp.returncode == 0, cp.stderr
    assert "kernel text mapping" in cp.stdout and "kernel half" in cp.stdout
    cp = vmsim("walk", "0xff11000000000000", "--mode", "5-level")
    assert "direct mapping of all physical memory" in cp.stdout
