"""Per-frame flag bits kept in mem_map.flags (include/linux/page-flags.h).

vmsim keeps one uint32 of flags per PFN. The PG_* bits are the kernel's concepts; the
page types (buddy, table) and the compound-page bookkeeping that the kernel keeps in
page_type / compound_head / folio->_flags_1 live here too, and the buddy order or the
folio order sits in bits 27..31. /proc/kpageflags translates these into KPF_* bits.
"""
PG_locked = 1 << 0
PG_referenced = 1 << 2
PG_uptodate = 1 << 3
PG_dirty = 1 << 4
PG_lru = 1 << 5
PG_head = 1 << 6
PG_active = 1 << 8
PG_workingset = 1 << 9
PG_reserved = 1 << 13
PGTY_hugetlb = 1 << 15             # page_type: a hugetlb folio (head page)
PG_private = 1 << 14
PG_reclaim = 1 << 16
PG_swapbacked = 1 << 17
PG_unevictable = 1 << 18
PG_mlocked = 1 << 19
PG_anon_exclusive = 1 << 20       # PG_mappedtodisk aliased for anon pages
PG_tail = 1 << 21                 # page->compound_head & 1
PG_large_rmappable = 1 << 22
PG_partially_mapped = 1 << 23     # on the deferred split queue
PG_anon = 1 << 24                 # folio->mapping & FOLIO_MAPPING_ANON
PGTY_buddy = 1 << 25              # page_type: free in the buddy allocator
PGTY_table = 1 << 26              # page_type: a page-table page (ptdesc)
PG_ORDER_SHIFT = 27               # buddy order (PGTY_buddy) or folio order (PG_head)
PG_ORDER_MASK = 0x1F << PG_ORDER_SHIFT   # five bits: a 1 GiB hugetlb folio is order 18

NAMES = {v: k for k, v in list(globals().items()) if k.startswith(("PG_", "PGTY_")) and k != "PG_ORDER_SHIFT" and k != "PG_ORDER_MASK"}
