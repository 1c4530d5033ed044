"""Deposited page-table pages of huge PMDs (mm/pgtable-generic.c,
pgtable_trans_huge_deposit / pgtable_trans_huge_withdraw).

A THP's PMD keeps a PTE table in reserve for its split. The kernel lists the
reserves of all the huge PMDs of one PMD table together: the list's head is
pmd_huge_pte in the PMD table's ptdesc (x86-64 has split PMD locks, so
pmd_huge_pte(mm, pmd) is pmd_ptdesc(pmd)->pmd_huge_pte, include/linux/mm.h), and the
deposited tables are linked through their own page->lru. The ptdesc overlays struct
page, pmd_huge_pte in lru.prev's word (include/linux/mm_types.h struct ptdesc); so
here pmd_huge_pte is ``mem_map.lru_prev[PMD table pfn]`` (0 is NULL) and a deposited
table's lru is ``lru_next`` / ``lru_prev[its pfn]``, a circular list as list_head
makes it. Which table a withdraw returns follows the kernel's list order (the last
deposited, then the first, then the rest in order).
"""


def pmd_ptdesc(k, pmdp: int) -> int:
    """pmd_ptdesc(): the PFN of the PMD table holding the entry ``pmdp``."""
    return k.ptpool.slot_pfn[pmdp >> 9]


def pgtable_trans_huge_deposit(mm, pmdp: int, pgtable: int):
    """pgtable_trans_huge_deposit(): keep ``pgtable`` for a later split of the huge
    PMD at ``pmdp``: the first one starts the PMD table's list (INIT_LIST_HEAD), later
    ones go in after the head (list_add); the new one becomes pmd_huge_pte."""
    k = mm.kernel
    ptdesc = k.ptpool.slot_pfn[pmdp >> 9]
    nxt, prv = k.mem.lru_next, k.mem.lru_prev
    head = prv[ptdesc]                                  # pmd_huge_pte(mm, pmdp)
    if not head:
        nxt[pgtable] = pgtable                          # INIT_LIST_HEAD(&pgtable->lru)
        prv[pgtable] = pgtable
    else:
        after = nxt[head]                               # list_add(&pgtable->lru, &head->lru)
        prv[after] = pgtable
        nxt[pgtable] = after
        prv[pgtable] = head
        nxt[head] = pgtable
    prv[ptdesc] = pgtable


def pgtable_trans_huge_withdraw(mm, pmdp: int) -> int:
    """pgtable_trans_huge_withdraw(): take pmd_huge_pte back; the next table on its
    list (list_first_entry_or_null) becomes pmd_huge_pte, and the taken one leaves
    the list (list_del; the last one keeps its empty list)."""
    k = mm.kernel
    ptdesc = k.ptpool.slot_pfn[pmdp >> 9]
    nxt, prv = k.mem.lru_next, k.mem.lru_prev
    pgtable = prv[ptdesc]
    if not pgtable:
        # The kernel would dereference NULL here.
        raise AssertionError(f"pgtable_trans_huge_withdraw: nothing deposited at PMD {pmdp}")
    first = nxt[pgtable]
    if first == pgtable:
        prv[ptdesc] = 0
    else:
        prv[ptdesc] = first
        before = prv[pgtable]                           # list_del(&pgtable->lru)
        nxt[before] = first
        prv[first] = before
        nxt[pgtable] = 0                                # (LIST_POISON1 / 2)
        prv[pgtable] = 0
    return pgtable


def _deposited(k, ptdesc: int) -> list:
    """vmsim-only (the checker, tests): the tables deposited in the PMD table
    ``ptdesc``, pmd_huge_pte first, then along its list."""
    nxt = k.mem.lru_next
    head = k.mem.lru_prev[ptdesc]
    out = []
    t = head
    while t:
        out.append(t)
        t = nxt[t]
        if t == head or len(out) > 512:
            break
    return out
