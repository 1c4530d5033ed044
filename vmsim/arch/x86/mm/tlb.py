"""TLB flush primitives (arch/x86/mm/tlb.c, asm/tlbflush.h): a recording backend.

Until the TLB model lands, these record each flush; the debug checker compares the
record with the permission downgrades and unmaps made since, and flags any left
unflushed when a syscall returns (as a missing flush would leave a stale TLB entry).
``k.tlb_flushes`` keeps the most recent flushes only (at least TLB_FLUSH_RECORD): an
unbounded record grows by a tuple per flush (one per COW fault), and the garbage
collector's scans of it slowed every later fault.
"""
TLB_FLUSH_ALL = -1
TLB_FLUSH_RECORD = 4096


def note_downgrade(mm, start: int, end: int):
    """Record that [start, end) lost a translation or a permission in ``mm``."""
    mm.kernel.tlb_pending.append((mm, start, end))


def flush_tlb_mm_range(mm, start: int, end: int, stride_shift: int = 12, freed_tables: bool = False):
    """flush_tlb_mm_range(): flush [start, end) of ``mm`` on every CPU using it."""
    k = mm.kernel
    flushes = k.tlb_flushes
    flushes.append((mm, start, end, freed_tables))
    if len(flushes) > 2 * TLB_FLUSH_RECORD:
        del flushes[:TLB_FLUSH_RECORD]
    pending = k.tlb_pending
    if pending:
        if end == TLB_FLUSH_ALL:
            k.tlb_pending = [p for p in pending if p[0] is not mm]
        elif len(pending) == 1:               # the common case: a fault's own downgrade
            p = pending[0]
            if p[0] is mm and start <= p[1] and p[2] <= end:
                k.tlb_pending = []
        else:
            k.tlb_pending = [p for p in pending
                             if not (p[0] is mm and start <= p[1] and p[2] <= end)]


def flush_tlb_mm(mm):
    """flush_tlb_mm(): the whole address space."""
    flush_tlb_mm_range(mm, 0, TLB_FLUSH_ALL)


def flush_tlb_range(vma, start: int, end: int):
    """flush_tlb_range(): a range of one VMA."""
    flush_tlb_mm_range(vma.vm_mm, start, end)


def flush_tlb_page(vma, addr: int):
    """flush_tlb_page(): one page."""
    flush_tlb_mm_range(vma.vm_mm, addr, addr + 4096)


def flush_tlb_fix_spurious_fault(vma, address, ptep):
    """flush_tlb_fix_spurious_fault(): a no-op on x86 (``do { } while (0)``): a spurious
    fault means the TLB held a stale, more restrictive entry, which the fault refilled."""
