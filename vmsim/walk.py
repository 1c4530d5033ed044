"""``vmsim walk``: how a virtual address splits into table indices, and its walk.

Data-driven: every paging mode is read from
:data:`vmsim.arch.x86.pgtable_types.PAGING_MODES` (the levels' kernel names
pgd/p4d/pud/pmd/pte, their Intel names, shifts and widths), so one walker serves
32-bit, PAE, 4-level and 5-level paging. :func:`render_layout` draws the address
like the seed notes' diagrams; :func:`vtop` walks a process's page tables
read-only (no Accessed bits set, unlike the MMU) and prints each level's entry
with its flags, as the crash utility's ``vtop`` does.
"""
from typing import NamedTuple

from vmsim.arch.x86.pgtable_types import (PAGING_MODES, PTE_PFN_MASK, _PAGE_PRESENT, _PAGE_PSE,
                                          _PAGE_PROTNONE, decode_flags, paging_mode)

KERNEL_LEVELS = ("pgd", "p4d", "pud", "pmd", "pte")
ACCESSORS = {"pgd": "pgd_offset(mm, addr)", "p4d": "p4d_offset(pgd, addr)",
             "pud": "pud_offset(p4d, addr)", "pmd": "pmd_offset(pud, addr)",
             "pte": "pte_offset_map(pmd, addr)"}
MASK64 = (1 << 64) - 1


class Field(NamedTuple):
    """One bit field of a virtual address."""
    kname: str        # pgd/p4d/pud/pmd/pte, "offset", or "sign" (sign extension)
    intel: str        # PML5/PML4/PDPT/PD/PT, "Offset", "sign-extend"
    hi: int
    lo: int
    value: int


_HEX = frozenset("0123456789abcdefABCDEF")


def parse_address(text: str) -> int:
    """Parse an address as crash does: hex, ``0x`` optional ("0x7ffff7ff6000", "7ffff7ff6000").

    Only ASCII hex digits count (int() would also take Unicode digits, "_" and signs).
    Raises ValueError with a user-facing message for anything that is not a 64-bit
    address.
    """
    s = str(text).strip()
    digits = s[2:] if s[:2] in ("0x", "0X") else s
    if not digits or not set(digits) <= _HEX:
        raise ValueError(f"bad address {text!r}: use hex digits 0-9 a-f, 0x optional "
                         f"(0x7ffff7ff6000)")
    v = int(digits, 16)
    if v > MASK64:
        raise ValueError(f"bad address {text!r}: wider than 64 bits")
    return v


# Documentation/arch/x86/x86_64/mm.rst (6.18): the x86-64 virtual memory map, as
# (first, last, description) per paging mode. The direct map, vmalloc and vmemmap
# bases shown are the defaults; CONFIG_RANDOMIZE_MEMORY moves them at boot.
_SHARED_TOP = (
    (0xfffffc0000000000, 0xfffffdffffffffff, "unused hole (vaddr_end for KASLR)"),
    (0xfffffe0000000000, 0xfffffe7fffffffff, "cpu_entry_area mapping"),
    (0xfffffe8000000000, 0xfffffeffffffffff, "unused hole"),
    (0xffffff0000000000, 0xffffff7fffffffff, "%esp fixup stacks"),
    (0xffffff8000000000, 0xffffffeeffffffff, "unused hole"),
    (0xffffffef00000000, 0xfffffffeffffffff, "EFI region mapping space"),
    (0xffffffff00000000, 0xffffffff7fffffff, "unused hole"),
    (0xffffffff80000000, 0xffffffff9fffffff, "kernel text mapping, mapped to physical address 0"),
    (0xffffffffa0000000, 0xfffffffffeffffff, "module mapping space"),
    (0xffffffffff000000, 0xffffffffff5fffff,
     "fixmap range (from FIXADDR_START, variable size and offset)"),
    (0xffffffffff600000, 0xffffffffff600fff, "legacy vsyscall ABI"),
    (0xffffffffff601000, 0xffffffffffdfffff, "unused hole"),
    (0xffffffffffe00000, 0xffffffffffffffff, "unused hole"),
)
MEMORY_MAP = {
    "4-level": (
        (0x0000000000000000, 0x00007fffffffefff, "user-space virtual memory, different per mm"),
        (0x00007ffffffff000, 0x00007fffffffffff, "guard hole"),
        (0xffff800000000000, 0xffff87ffffffffff, "guard hole, also reserved for hypervisor"),
        (0xffff880000000000, 0xffff887fffffffff, "LDT remap for PTI"),
        (0xffff888000000000, 0xffffc87fffffffff,
         "direct mapping of all physical memory (page_offset_base)"),
        (0xffffc88000000000, 0xffffc8ffffffffff, "unused hole"),
        (0xffffc90000000000, 0xffffe8ffffffffff, "vmalloc/ioremap space (vmalloc_base)"),
        (0xffffe90000000000, 0xffffe9ffffffffff, "unused hole"),
        (0xffffea0000000000, 0xffffeaffffffffff, "virtual memory map (vmemmap_base)"),
        (0xffffeb0000000000, 0xffffebffffffffff, "unused hole"),
        (0xffffec0000000000, 0xfffffbffffffffff, "KASAN shadow memory"),
    ) + _SHARED_TOP,
    "5-level": (
        (0x0000000000000000, 0x00fffffffffff000 - 1, "user-space virtual memory, different per mm"),
        (0x00fffffffffff000, 0x00ffffffffffffff, "guard hole"),
        (0xff00000000000000, 0xff0fffffffffffff, "guard hole, also reserved for hypervisor"),
        (0xff10000000000000, 0xff10ffffffffffff, "LDT remap for PTI"),
        (0xff11000000000000, 0xff90ffffffffffff,
         "direct mapping of all physical memory (page_offset_base)"),
        (0xff91000000000000, 0xff9fffffffffffff, "unused hole"),
        (0xffa0000000000000, 0xffd1ffffffffffff, "vmalloc/ioremap space (vmalloc_base)"),
        (0xffd2000000000000, 0xffd3ffffffffffff, "unused hole"),
        (0xffd4000000000000, 0xffd5ffffffffffff, "virtual memory map (vmemmap_base)"),
        (0xffd6000000000000, 0xffdeffffffffffff, "unused hole"),
        (0xffdf000000000000, 0xfffffbffffffffff, "KASAN shadow memory"),
    ) + _SHARED_TOP,
}


def region(addr: int, mode) -> tuple:
    """Return (first, last, description) of the mm.rst region holding ``addr``, or None
    (a 32-bit mode, or a non-canonical address)."""
    name = mode if isinstance(mode, str) else mode.name
    for r in MEMORY_MAP.get(name, ()):
        if r[0] <= addr <= r[1]:
            return r
    return None


def describe_region(addr: int, mode, indent: str = "") -> str:
    """Two lines naming the region of ``addr`` in the x86-64 memory map, or ""."""
    r = region(addr, mode)
    if r is None:
        return ""
    half = "kernel" if addr >> 63 else "user"
    return (f"{indent}region: {r[2]}\n"
            f"{indent}        {r[0]:016x}-{r[1]:016x}, {half} half"
            f" (Documentation/arch/x86/x86_64/mm.rst)")


def mode_names():
    return list(PAGING_MODES)


def check_address(addr: int, mode) -> str:
    """Return "" if ``addr`` is a valid address in ``mode``, else why not."""
    if mode.va_bits == 32:
        if addr >> 32:
            return f"wider than 32 bits ({mode.name} paging has 32-bit addresses)"
        return ""
    top = addr >> (mode.va_bits - 1)
    if top != 0 and top != (1 << (65 - mode.va_bits)) - 1:
        return (f"non-canonical for {mode.va_bits}-bit addresses (bits 63..{mode.va_bits - 1} "
                f"must all equal bit {mode.va_bits - 1}): the CPU raises #GP, not #PF")
    return ""


def decompose(addr: int, mode) -> list:
    """Return the address's fields top-down: [sign-extension,] one per level, offset."""
    if isinstance(mode, str):
        mode = PAGING_MODES[mode]
    fields = []
    if mode.va_bits > 32:
        hi = 63
        lo = mode.va_bits
        fields.append(Field("sign", "sign-extend", hi, lo, (addr >> lo) & ((1 << (hi - lo + 1)) - 1)))
    for lvl in mode.levels:
        hi = lvl.shift + lvl.bits - 1
        fields.append(Field(lvl.kname, lvl.intel, hi, lvl.shift, (addr >> lvl.shift) & ((1 << lvl.bits) - 1)))
    last = mode.levels[-1].shift
    fields.append(Field("offset", "Offset", last - 1, 0, addr & ((1 << last) - 1)))
    return fields


def _size(shift: int) -> str:
    for unit, s in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if shift >= s:
            return f"{1 << (shift - s)} {unit}"
    return f"{1 << shift} B"


def render_layout(addr: int, mode) -> str:
    """Draw the address split for ``mode`` like the seed's diagrams, then the walk."""
    if isinstance(mode, str):
        mode = PAGING_MODES[mode]
    fields = decompose(addr, mode)
    labels, values = [], []
    for f in fields:
        if f.kname == "sign":
            labels.append("sign-extend")
            values.append(f"{f.value:#x}")
        elif f.kname == "offset":
            labels.append("Offset")
            values.append(f"{f.value:#x}")
        else:
            labels.append(f"{f.intel} ({f.kname})")
            values.append(f"{f.value} ({f.value:#x})")
    widths = [max(len(lab), len(val), len(str(f.hi)) + len(str(f.lo)) + 2) + 2
              for f, lab, val in zip(fields, labels, values)]
    total = sum(widths) + len(widths) + 1
    nums = [" "] * total
    x = 0
    for f, w in zip(fields, widths):
        hi, lo = str(f.hi), str(f.lo)
        nums[x + 1:x + 1 + len(hi)] = hi
        nums[x + w + 1 - len(lo):x + w + 1] = lo
        x += w + 1
    border = "+" + "+".join("-" * w for w in widths) + "+"
    row_l = "|" + "|".join(lab.ljust(w) for lab, w in zip(labels, widths)) + "|"
    row_v = "|" + "|".join(val.rjust(w) for val, w in zip(values, widths)) + "|"
    ind = "  "
    lines = [f"{mode.name} paging: {mode.va_bits}-bit virtual address {addr:#x}"
             f" ({len(mode.levels)} levels, {mode.entry_bytes}-byte entries)", "",
             ind + "".join(nums).rstrip(), ind + border, ind + row_l, ind + border,
             ind + row_v, ind + border, ""]
    problem = check_address(addr, mode)
    if problem:
        lines += [f"  note: {addr:#x} is {problem}", ""]
    where = describe_region(addr, mode, "  ")
    if where:
        lines += [where, ""]
    by_k = {f.kname: f for f in fields}
    lvl_by_k = {lvl.kname: lvl for lvl in mode.levels}
    lines.append("  mm->pgd")
    for kn in KERNEL_LEVELS:
        acc = ACCESSORS[kn]
        if kn in lvl_by_k:
            f, lvl = by_k[kn], lvl_by_k[kn]
            maps = f"each entry maps {_size(lvl.shift)}"
            if lvl.large:
                maps += " (a large page is possible here)"
            lines.append(f"    -> {acc:<26} {kn}_index(addr) = {f.value:<4} {lvl.intel + ' entry':<11}"
                         f" bits {f.hi}..{f.lo:<3} {maps}")
        elif kn in mode.folded:
            parent = KERNEL_LEVELS[KERNEL_LEVELS.index(kn) - 1]
            lines.append(f"    -> {acc:<26} folded: the {kn} is the {parent} entry itself"
                         f" (pgtable-no{kn}.h)")
    off = by_k["offset"]
    lines.append(f"    -> {'page + offset':<26} offset = {off.value:#x}{'':<6}"
                 f" bits {off.hi}..{off.lo}")
    return "\n".join(lines)


def _vma_flags(vma) -> str:
    from vmsim.mm.mm_types import VM_READ, VM_WRITE, VM_EXEC, VM_SHARED
    f = vma.vm_flags
    return ("r" if f & VM_READ else "-") + ("w" if f & VM_WRITE else "-") + \
        ("x" if f & VM_EXEC else "-") + ("s" if f & VM_SHARED else "p")


def walk_entries(k, mm, addr: int):
    """Walk ``mm``'s tables read-only; return (steps, phys) where steps are
    (level, entry_phys, entry) and phys is the physical address or None."""
    mode = paging_mode(k.paging_levels)
    pool = k.ptpool.mv
    rows = k.mem.private
    table_pfn = mm.pgd
    steps = []
    for lvl in mode.levels:
        idx = (addr >> lvl.shift) & ((1 << lvl.bits) - 1)
        e = int(pool[rows[table_pfn] * 512 + idx])
        steps.append((lvl, table_pfn * 4096 + idx * mode.entry_bytes, e))
        if not e & _PAGE_PRESENT:
            return steps, None
        if lvl.shift == 12 or (lvl.large and e & _PAGE_PSE):
            size = 1 << lvl.shift
            return steps, ((e & PTE_PFN_MASK) & ~(size - 1)) | (addr & (size - 1))
        table_pfn = (e & PTE_PFN_MASK) >> 12
    return steps, None


def vtop(machine, pid: int, addr: int) -> str:
    """crash-style ``vtop`` of ``addr`` in process ``pid``: entries, flags, physical address."""
    k = machine.k
    proc = machine.processes.get(pid)
    if proc is None:
        raise LookupError(f"no process {pid} (processes: {', '.join(map(str, sorted(machine.processes))) or 'none'})")
    mm = proc.task.mm
    if mm is None:
        raise LookupError(f"process {pid} has exited: it has no page tables")
    mode = paging_mode(k.paging_levels)
    head = f"PID: {pid}  {mode.name} paging ({'/'.join(lvl.kname for lvl in mode.levels)})"
    problem = check_address(addr, mode)
    if problem:
        # No table is consulted: the CPU checks the form before any walk (SDM 4.5).
        return "\n".join([head, f"{'VIRTUAL':<18}PHYSICAL", f"{addr:<18x}(non-canonical)", "",
                          f"{addr:#x} is {problem}"])
    steps, phys = walk_entries(k, mm, addr)
    out = [head, f"{'VIRTUAL':<18}PHYSICAL",
           f"{addr:<18x}{phys:x}" if phys is not None else f"{addr:<18x}(not mapped)", ""]
    where = describe_region(addr, mode)
    if where:
        out += [where]
    vma = mm.vma_lookup(addr)
    if vma is not None:
        kind = "anon" if vma.vm_ops is None and vma.vm_file is None else \
            (getattr(vma.vm_ops, "name", None) or type(vma.vm_ops).__name__.strip("_"))
        out.append(f"VMA: {vma.vm_start:x}-{vma.vm_end:x} {_vma_flags(vma)} {kind}")
    else:
        out.append("VMA: none (a kernel address: a user access gets SIGSEGV)" if addr >= k.task_size_max
                   else "VMA: none (an access here gets SIGSEGV)")
    out.append(f"PGD DIRECTORY: pfn {mm.pgd:#x} (mm->pgd)")
    for lvl, ephys, e in steps:
        name = f"{lvl.kname.upper()} ({lvl.intel})"
        line = f"  {name:>11}: {ephys:x} => {e & MASK64:x}"
        if e == 0:
            line += "  (none)"
        else:
            line += "  " + decode_flags(e, leaf=lvl.shift == 12 or bool(e & _PAGE_PSE))
        out.append(line)
    last_lvl, _, last = steps[-1]
    if phys is None:
        if last == 0:
            why = f"not present ({last_lvl.kname}_none: nothing mapped yet)"
        elif last & _PAGE_PROTNONE:
            why = "not present (PROT_NONE or a NUMA hinting entry)"
        else:
            why = "not present (a swap or migration entry)"
        out.append(f"   PAGE: {why}")
    else:
        pfn = phys >> 12
        what = []
        if pfn == k.zero_pfn:
            what.append("the zero page")
        if last_lvl.shift != 12:
            what.append(f"{_size(last_lvl.shift)} page")
        if pfn < k.nr_pages:
            what.append(f"refcount {int(k.mem.refcount[pfn])} mapcount {int(k.mem.mapcount[pfn])}")
        out.append(f"   PAGE: {phys & ~0xFFF:x}  (pfn {pfn:#x}{'; ' + ', '.join(what) if what else ''})")
    return "\n".join(out)
