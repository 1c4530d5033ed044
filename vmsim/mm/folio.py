"""Folio helpers (include/linux/mm.h, include/linux/mm_types.h struct folio).

A folio is a head page plus, for large folios, its tail pages. As in the kernel, a
large folio's extra fields live in the first tail page's slots of mem_map:

    page[1].lru_prev  <- folio->_entire_mapcount   (PMD mappings of the whole folio)
    page[1].mapping   <- folio->_large_mapcount    (all mappings of all pages)
    page[1].index     <- folio->_nr_pages_mapped   (pages mapped by PTEs)
    page[1].lru_next  <- folio->_pincount

(every page keeps its own PTE mapcount in mapcount, and its data handle in private)
The head carries PG_head and the order (PG_ORDER_SHIFT); tail pages carry PG_tail
and point at nothing (compound_head() is ``pfn & ~(nr - 1)`` for naturally aligned
folios, which all buddy allocations are). PG_anon_exclusive is per page;
PG_partially_mapped marks deferred-split membership. Order-0 folios use only their
own page's fields. Large anonymous folios (mTHP, THP) arrive with the THP issue;
these helpers are what it builds on.
"""
from vmsim.mm.page_flags import (PG_head, PG_tail, PG_ORDER_MASK, PG_ORDER_SHIFT,
                                 PG_large_rmappable, PG_anon, PG_anon_exclusive,
                                 PG_partially_mapped)


def folio_test_large(k, pfn: int) -> bool:
    return bool(k.mem.flags[pfn] & PG_head)


def folio_order(k, pfn: int) -> int:
    """folio_order(): 0 for a single page."""
    f = k.mem.flags[pfn]
    return (f & PG_ORDER_MASK) >> PG_ORDER_SHIFT if f & PG_head else 0


def folio_nr_pages(k, pfn: int) -> int:
    """folio_nr_pages(): 1 unless folio_test_large(), else the large folio's count."""
    f = k.mem.flags[pfn]
    if not f & PG_head:
        return 1
    return 1 << ((f & PG_ORDER_MASK) >> PG_ORDER_SHIFT)


def page_folio(k, pfn: int) -> int:
    """page_folio(): the head PFN of the folio containing ``pfn``."""
    flags = k.mem.flags
    if not flags[pfn] & PG_tail:
        return pfn
    # The folio found last (zap and rmap walk a large folio page by page); checked
    # again, so a freed or split folio is never taken for a live one.
    last = k.__dict__.get("_page_folio_last")
    if last is not None and last[0] < pfn < last[1]:
        f = flags[last[0]]
        if f & PG_head and last[0] + (1 << ((f & PG_ORDER_MASK) >> PG_ORDER_SHIFT)) == last[1]:
            return last[0]
    for order in range(1, 19):
        head = pfn & ~((1 << order) - 1)
        f = flags[head]
        if f & PG_head and (f & PG_ORDER_MASK) >> PG_ORDER_SHIFT >= order:
            k._page_folio_last = (head, head + (1 << ((f & PG_ORDER_MASK) >> PG_ORDER_SHIFT)))
            return head
    raise AssertionError(f"tail page {pfn:#x} without a head")


def prep_compound_page(k, pfn: int, order: int):
    """prep_compound_page(): mark head and tails of a new large folio."""
    mem = k.mem
    mem.flags[pfn] = (mem.flags[pfn] & ~PG_ORDER_MASK) | PG_head | (order << PG_ORDER_SHIFT)
    for p in range(pfn + 1, pfn + (1 << order)):
        mem.flags[p] = PG_tail
    if order:
        mem.lru_prev[pfn + 1] = 0        # _entire_mapcount
        mem.lru_next[pfn + 1] = 0        # _pincount
        mem.mapping[pfn + 1] = 0         # _large_mapcount
        mem.index[pfn + 1] = 0           # _nr_pages_mapped


def folio_entire_mapcount(k, pfn: int) -> int:
    return k.mem.lru_prev[pfn + 1] if folio_test_large(k, pfn) else 0


def folio_large_mapcount(k, pfn: int) -> int:
    return k.mem.mapping[pfn + 1]


def folio_mapcount(k, pfn: int) -> int:
    """folio_mapcount(): all mappings of the folio (page mapcount for order 0)."""
    if not folio_test_large(k, pfn):
        return k.mem.mapcount[pfn]
    return folio_large_mapcount(k, pfn)


def folio_mapped(k, pfn: int) -> bool:
    return folio_mapcount(k, pfn) > 0


def folio_precise_page_mapcount(k, folio: int, page: int) -> int:
    """folio_precise_page_mapcount(): PTE mappings of the page plus the PMD mappings."""
    return k.mem.mapcount[page] + folio_entire_mapcount(k, folio)


def PageAnonExclusive(k, page: int) -> bool:
    return bool(k.mem.flags[page] & PG_anon_exclusive)


def folio_test_anon(k, pfn: int) -> bool:
    return bool(k.mem.flags[pfn] & PG_anon)


def folio_test_partially_mapped(k, pfn: int) -> bool:
    return bool(k.mem.flags[pfn] & PG_partially_mapped)


def folio_test_large_rmappable(k, pfn: int) -> bool:
    return bool(k.mem.flags[pfn] & PG_large_rmappable)
