"""Swap entries and PTE markers in a non-present PTE (include/linux/swapops.h, the x86-64
encoding of arch/x86/include/asm/pgtable_64.h).

vmsim has no swap device, so the only swap-format entries it makes are PTE markers;
the one marker it models is PTE_MARKER_GUARD (MADV_GUARD_INSTALL). x86-64 keeps the
type in the top SWP_TYPE_BITS bits and the offset inverted (the L1TF mitigation) from
bit SWP_OFFSET_FIRST_BIT up, so a marker PTE has the present and PROT_NONE bits clear.
PTEs are the pool's signed int64 values.
"""
from vmsim.arch.x86 import pgtable_types as T

_U64 = (1 << 64) - 1
SWP_TYPE_BITS = 5
SWP_OFFSET_FIRST_BIT = 9                        # _PAGE_BIT_PROTNONE + 1
SWP_OFFSET_SHIFT = SWP_OFFSET_FIRST_BIT + SWP_TYPE_BITS
MAX_SWAPFILES_SHIFT = 5
# include/linux/swap.h: the last type of the 5-bit space, whatever the config's
# device/migration/hwpoison types (MAX_SWAPFILES + those = (1 << 5) - 1).
SWP_PTE_MARKER = (1 << MAX_SWAPFILES_SHIFT) - 1

PTE_MARKER_UFFD_WP = 1 << 0
PTE_MARKER_POISONED = 1 << 1
PTE_MARKER_GUARD = 1 << 2
PTE_MARKER_MASK = (1 << 3) - 1

_PRESENT = T._PAGE_PRESENT | T._PAGE_PROTNONE


def _s64(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def __swp_entry(type_: int, offset: int) -> int:
    """__swp_entry() as a PTE (__swp_entry_to_pte): signed int64."""
    val = ((((~offset) << SWP_OFFSET_SHIFT) & _U64) >> SWP_TYPE_BITS) | \
        (type_ << (64 - SWP_TYPE_BITS))
    return _s64(val & _U64)


def swp_type(pte: int) -> int:
    """__swp_type()."""
    return (pte & _U64) >> (64 - SWP_TYPE_BITS)


def swp_offset(pte: int) -> int:
    """__swp_offset()."""
    return ((~pte << SWP_TYPE_BITS) & _U64) >> SWP_OFFSET_SHIFT


def is_swap_pte(pte: int) -> bool:
    """is_swap_pte(): neither none nor present."""
    return pte != 0 and not pte & _PRESENT


def make_pte_marker(marker: int) -> int:
    """make_pte_marker(): a swap-format PTE of type SWP_PTE_MARKER."""
    return __swp_entry(SWP_PTE_MARKER, marker & PTE_MARKER_MASK)


def is_pte_marker_entry(pte: int) -> bool:
    return is_swap_pte(pte) and swp_type(pte) == SWP_PTE_MARKER


def pte_marker_get(pte: int) -> int:
    return swp_offset(pte) & PTE_MARKER_MASK


def is_guard_swp_entry(pte: int) -> bool:
    """is_guard_swp_entry() on the entry of a swap PTE."""
    return is_pte_marker_entry(pte) and bool(pte_marker_get(pte) & PTE_MARKER_GUARD)


def is_guard_pte_marker(pte: int) -> bool:
    """is_guard_pte_marker() (mm/madvise.c)."""
    return is_swap_pte(pte) and is_guard_swp_entry(pte)


def pte_none_mostly(pte: int) -> bool:
    """pte_none_mostly(): none, or a PTE marker (which stands for an empty page)."""
    return pte == 0 or is_pte_marker_entry(pte)


GUARD_PTE = make_pte_marker(PTE_MARKER_GUARD)
