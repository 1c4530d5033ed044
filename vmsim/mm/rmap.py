"""Reverse mapping: anon_vma and the folio mapcounts (mm/rmap.c).

A folio's ``mapping`` (mem_map.mapping) is an object id: for anon folios the id of
their anon_vma (the kernel tags folio->mapping with FOLIO_MAPPING_ANON; vmsim sets
PG_anon), for page-cache folios the id of the address_space. mem_map.mapcount holds
the page's mapcount itself (the kernel stores it minus one in _mapcount).

Simplified: one anon_vma per VMA tree root with no anon_vma_chain yet (the lifecycle
issue adds anon_vma_fork and the chains); large-folio mapcounts are not built yet.
"""
from vmsim.mm import vmstat
from vmsim.mm.page_flags import PG_anon, PG_anon_exclusive, PG_swapbacked, PG_head

RMAP_NONE = 0
RMAP_EXCLUSIVE = 1 << 0


class anon_vma:
    """struct anon_vma: the root object anon folios point at."""
    __slots__ = ("id", "root", "refcount", "num_children", "num_active_vmas", "vmas")

    def __init__(self, oid):
        self.id = oid
        self.root = self
        self.refcount = 1
        self.num_children = 0
        self.num_active_vmas = 0
        self.vmas = []


def __anon_vma_prepare(k, vma) -> int:
    """__anon_vma_prepare(): attach a new anon_vma to the VMA; 0 or -ENOMEM."""
    av = anon_vma(0)
    av.id = k.register_object(av)
    av.num_active_vmas = 1
    av.vmas.append(vma)
    vma.anon_vma = av
    return 0


def anon_vma_prepare(k, vma) -> int:
    """anon_vma_prepare(): make sure the VMA has an anon_vma."""
    if vma.anon_vma is not None:
        return 0
    return __anon_vma_prepare(k, vma)


def unlink_anon_vmas(k, vma):
    """unlink_anon_vmas(): detach the VMA; free the anon_vma with its last VMA."""
    av = vma.anon_vma
    if av is None:
        return
    if vma in av.vmas:
        av.vmas.remove(vma)
    av.num_active_vmas -= 1
    vma.anon_vma = None
    if not av.vmas:
        k.unregister_object(av.id)


def __folio_set_anon(k, pfn, vma, address, exclusive):
    """__folio_set_anon(): point the folio at the VMA's anon_vma and set its index."""
    mem = k.mem
    mem.mapping[pfn] = vma.anon_vma.id
    mem.index[pfn] = ((address - vma.vm_start) >> 12) + vma.vm_pgoff
    f = mem.flags[pfn] | PG_anon
    if exclusive:
        f |= PG_anon_exclusive
    mem.flags[pfn] = f


def folio_add_new_anon_rmap(k, pfn, vma, address, flags):
    """folio_add_new_anon_rmap(): first mapping of a new anon folio (order 0 here).

    Sets swapbacked, the anon mapping and index, mapcount 1, AnonExclusive when
    RMAP_EXCLUSIVE, and NR_ANON_MAPPED (nr_anon_pages). Large folios: not modelled yet.
    """
    mem = k.mem
    mem.flags[pfn] = mem.flags[pfn] | PG_swapbacked
    __folio_set_anon(k, pfn, vma, address, flags & RMAP_EXCLUSIVE)
    mem.mapcount[pfn] = 1
    k.vmstat[vmstat.NR_ANON_PAGES] += 1


def folio_add_anon_rmap_pte(k, pfn, vma, address, flags):
    """folio_add_anon_rmap_ptes() for one page of an already-anon folio."""
    mem = k.mem
    mem.mapcount[pfn] += 1
    if mem.mapcount[pfn] == 1:
        k.vmstat[vmstat.NR_ANON_PAGES] += 1
    if flags & RMAP_EXCLUSIVE:
        mem.flags[pfn] = mem.flags[pfn] | PG_anon_exclusive


def folio_add_file_rmap_pte(k, pfn, vma):
    """folio_add_file_rmap_ptes() for one page: NR_FILE_MAPPED (nr_mapped) on first map."""
    mem = k.mem
    mem.mapcount[pfn] += 1
    if mem.mapcount[pfn] == 1:
        k.vmstat[vmstat.NR_MAPPED] += 1


def folio_remove_rmap_pte(k, pfn, vma):
    """folio_remove_rmap_ptes() for one page: drop the mapcount and the node stats."""
    mem = k.mem
    m = mem.mapcount[pfn] - 1
    mem.mapcount[pfn] = m
    if m == 0:
        f = mem.flags[pfn]
        if f & PG_anon:
            k.vmstat[vmstat.NR_ANON_PAGES] -= 1
            # An unmapped anon page is no longer exclusive to anybody.
            mem.flags[pfn] = f & ~PG_anon_exclusive
        else:
            k.vmstat[vmstat.NR_MAPPED] -= 1
    elif m < 0:
        raise AssertionError(f"VM_BUG_ON: mapcount underflow on pfn {pfn:#x}")


def folio_test_anon(k, pfn) -> bool:
    return bool(k.mem.flags[pfn] & PG_anon)
