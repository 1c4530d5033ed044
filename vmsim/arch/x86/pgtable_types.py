"""x86-64 page-table entry format and paging modes.

Mirrors arch/x86/include/asm/pgtable_types.h and pgtable_64_types.h. Entries are
64-bit; vmsim keeps them as *signed* int64 everywhere (Python ints in int64 range,
numpy int64 arrays, numba int64), so bit 63 (NX) is the sign bit. Every constant
below is an int64 value: this is the one integer discipline that stays exact in
numba, where mixing uint64 with signed ints silently becomes float64.

Paging modes are data (:data:`PAGING_MODES`), as Volatility3 describes Intel layers:
each level has the kernel's name, the Intel name, the shift and width of the
address bits it consumes, and whether it may hold a large page. The MMU walk,
``vmsim walk`` and the accessors all read this table.
"""
import enum
from typing import NamedTuple

# Bit numbers (pgtable_types.h)
_PAGE_BIT_PRESENT = 0
_PAGE_BIT_RW = 1
_PAGE_BIT_USER = 2
_PAGE_BIT_PWT = 3
_PAGE_BIT_PCD = 4
_PAGE_BIT_ACCESSED = 5
_PAGE_BIT_DIRTY = 6
_PAGE_BIT_PSE = 7         # 4 MB (or 2MB) page
_PAGE_BIT_PAT = 7         # on 4KB pages
_PAGE_BIT_GLOBAL = 8
_PAGE_BIT_SOFTW1 = 9
_PAGE_BIT_SOFTW2 = 10
_PAGE_BIT_SOFTW3 = 11
_PAGE_BIT_PAT_LARGE = 12
_PAGE_BIT_SOFTW4 = 57
_PAGE_BIT_SOFTW5 = 58
_PAGE_BIT_PKEY_BIT0 = 59
_PAGE_BIT_NX = 63
_PAGE_BIT_SPECIAL = _PAGE_BIT_SOFTW1
_PAGE_BIT_UFFD_WP = _PAGE_BIT_SOFTW2
_PAGE_BIT_SOFT_DIRTY = _PAGE_BIT_SOFTW3
_PAGE_BIT_SAVED_DIRTY = _PAGE_BIT_SOFTW5
_PAGE_BIT_PROTNONE = _PAGE_BIT_GLOBAL   # only valid on a PROT_NONE pte

_PAGE_PRESENT = 1 << _PAGE_BIT_PRESENT
_PAGE_RW = 1 << _PAGE_BIT_RW
_PAGE_USER = 1 << _PAGE_BIT_USER
_PAGE_PWT = 1 << _PAGE_BIT_PWT
_PAGE_PCD = 1 << _PAGE_BIT_PCD
_PAGE_ACCESSED = 1 << _PAGE_BIT_ACCESSED
_PAGE_DIRTY = 1 << _PAGE_BIT_DIRTY
_PAGE_PSE = 1 << _PAGE_BIT_PSE
_PAGE_GLOBAL = 1 << _PAGE_BIT_GLOBAL
_PAGE_SPECIAL = 1 << _PAGE_BIT_SPECIAL
_PAGE_UFFD_WP = 1 << _PAGE_BIT_UFFD_WP
_PAGE_SAVED_DIRTY = 1 << _PAGE_BIT_SAVED_DIRTY
_PAGE_PROTNONE = 1 << _PAGE_BIT_PROTNONE
_PAGE_NX = -(1 << 63)                  # bit 63 as an int64
# CONFIG_MEM_SOFT_DIRTY is off in the 6.18 profile: pgtable_types.h defines it as 0.
_PAGE_SOFT_DIRTY = 0

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = ~(PAGE_SIZE - 1)
PTRS_PER_PTE = 512
PMD_SHIFT = 21
PMD_SIZE = 1 << PMD_SHIFT
PMD_MASK = ~(PMD_SIZE - 1)
PUD_SHIFT = 30
PUD_SIZE = 1 << PUD_SHIFT
PUD_MASK = ~(PUD_SIZE - 1)
P4D_SHIFT = 39
PGDIR_SHIFT_L4 = 39
PGDIR_SHIFT_L5 = 48

__PHYSICAL_MASK_SHIFT = 52
PTE_PFN_MASK = ((1 << __PHYSICAL_MASK_SHIFT) - 1) & PAGE_MASK   # bits 12..51
PTE_FLAGS_MASK = ~PTE_PFN_MASK
PMD_PFN_MASK_2M = ((1 << __PHYSICAL_MASK_SHIFT) - 1) & PMD_MASK

# Protections (pgtable_types.h __PP/__RW/_USR/___A/__NX/___D/_PSE/_GLB)
__PP, __RW, _USR, ___A, ___D, __NX, _GLB = (_PAGE_PRESENT, _PAGE_RW, _PAGE_USER,
                                            _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_NX, _PAGE_GLOBAL)
PAGE_NONE = ___A | _GLB                      # _PAGE_PROTNONE is _PAGE_GLOBAL
PAGE_SHARED = __PP | __RW | _USR | ___A | __NX
PAGE_SHARED_EXEC = __PP | __RW | _USR | ___A
PAGE_COPY_NOEXEC = __PP | _USR | ___A | __NX
PAGE_COPY_EXEC = __PP | _USR | ___A
PAGE_COPY = PAGE_COPY_NOEXEC
PAGE_READONLY = __PP | _USR | ___A | __NX
PAGE_READONLY_EXEC = __PP | _USR | ___A
# Kernel mappings: supervisor-only, global (__PAGE_KERNEL).
PAGE_KERNEL = __PP | __RW | ___A | ___D | __NX | _GLB
_KERNPG_TABLE = __PP | __RW | ___A | ___D
_PAGE_TABLE = __PP | __RW | _USR | ___A | ___D


class PteFlags(enum.IntFlag):
    """The low entry bits, for display and decoding (raw ints on the hot path)."""
    PRESENT = _PAGE_PRESENT
    RW = _PAGE_RW
    USER = _PAGE_USER
    PWT = _PAGE_PWT
    PCD = _PAGE_PCD
    ACCESSED = _PAGE_ACCESSED
    DIRTY = _PAGE_DIRTY
    PSE = _PAGE_PSE
    GLOBAL = _PAGE_GLOBAL
    SPECIAL = _PAGE_SPECIAL
    UFFD_WP = _PAGE_UFFD_WP
    SOFTW3 = 1 << _PAGE_BIT_SOFTW3


def decode_flags(entry: int, *, leaf: bool = True) -> str:
    """Return the entry's flags as the crash utility prints them: "(PRESENT|RW|...)"."""
    names = [f.name for f in PteFlags if entry & f.value and f.name]
    if not leaf:
        names = ["PSE" if n == "PSE" else n for n in names]
    if entry & _PAGE_NX:
        names.append("NX")
    if entry & ((1 << _PAGE_BIT_SOFTW5) | (1 << _PAGE_BIT_SOFTW4)):
        names.append("SOFTW4/5")
    if leaf and (entry >> _PAGE_BIT_PKEY_BIT0) & 0xF:
        names.append("PKEY=%d" % ((entry >> _PAGE_BIT_PKEY_BIT0) & 0xF))
    return "(" + "|".join(names) + ")" if names else "(none)"


# X86 page-fault error code bits (arch/x86/include/asm/trap_pf.h)
X86_PF_PROT = 1 << 0
X86_PF_WRITE = 1 << 1
X86_PF_USER = 1 << 2
X86_PF_RSVD = 1 << 3
X86_PF_INSTR = 1 << 4
X86_PF_PK = 1 << 5
X86_PF_SHSTK = 1 << 6
X86_PF_SGX = 1 << 15
X86_PF_RMP = 1 << 31


class PfErr(enum.IntFlag):
    """The #PF error code, for display."""
    PROT = X86_PF_PROT
    WRITE = X86_PF_WRITE
    USER = X86_PF_USER
    RSVD = X86_PF_RSVD
    INSTR = X86_PF_INSTR
    PK = X86_PF_PK
    SHSTK = X86_PF_SHSTK


class Level(NamedTuple):
    """One paging level: kernel name, Intel name, shift, index bits, may map a large page."""
    kname: str
    intel: str
    shift: int
    bits: int
    large: bool


class PagingMode(NamedTuple):
    """A paging mode: its levels top-down and the virtual-address width."""
    name: str
    levels: tuple
    va_bits: int
    entry_bytes: int
    folded: tuple        # kernel levels folded into the one above (pgtable-nop*d.h)


PAGING_MODES = {
    "32-bit": PagingMode("32-bit", (
        Level("pgd", "PD", 22, 10, True),
        Level("pte", "PT", 12, 10, False)), 32, 4, ("p4d", "pud", "pmd")),
    "pae": PagingMode("pae", (
        Level("pgd", "PDPT", 30, 2, False),
        Level("pmd", "PD", 21, 9, True),
        Level("pte", "PT", 12, 9, False)), 32, 8, ("p4d", "pud")),
    "4-level": PagingMode("4-level", (
        Level("pgd", "PML4", 39, 9, False),
        Level("pud", "PDPT", 30, 9, True),
        Level("pmd", "PD", 21, 9, True),
        Level("pte", "PT", 12, 9, False)), 48, 8, ("p4d",)),
    "5-level": PagingMode("5-level", (
        Level("pgd", "PML5", 48, 9, False),
        Level("p4d", "PML4", 39, 9, False),
        Level("pud", "PDPT", 30, 9, True),
        Level("pmd", "PD", 21, 9, True),
        Level("pte", "PT", 12, 9, False)), 57, 8, ()),
}


def paging_mode(levels: int) -> PagingMode:
    """Return the x86-64 paging mode for ``levels`` (4, or 5 with LA57)."""
    if levels == 4:
        return PAGING_MODES["4-level"]
    if levels == 5:
        return PAGING_MODES["5-level"]
    raise ValueError(f"x86-64 paging_levels must be 4 or 5, not {levels}")
