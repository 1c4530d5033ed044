"""Reverse mapping: anon_vma, anon_vma_chain, folio mapcounts and rmap walks (mm/rmap.c).

A folio's ``mapping`` (mem_map.mapping) is an object id: for anon folios the id of
their anon_vma (the kernel tags folio->mapping with FOLIO_MAPPING_ANON; vmsim sets
PG_anon), for page-cache folios the id of the address_space. mem_map.mapcount holds
the page's mapcount itself (the kernel stores it minus one in _mapcount).

The anon_vma tree is the kernel's: every VMA with anon pages has a list of
anon_vma_chain links (vma.anon_vma_chain, newest first as list_add puts them), one per
anon_vma whose folios it may map, and every anon_vma keeps the chains that link it
(anon_vma.rb_root; the kernel's interval tree is a plain list here, searched by
pgoff). fork links the child's VMA to all of the parent's anon_vmas (anon_vma_clone)
and gives it its own anon_vma for the pages it will COW (anon_vma_fork), so an rmap
walk from a folio finds the parent's and every child's mapping.

Simplified: large-folio mapcounts (entire/large mapcount, MM IDs) are not built yet.
"""
from vmsim.mm import vmstat
from vmsim.mm.folio import folio_test_anon  # noqa: F401  (rmap.c users import it here)
from vmsim.mm.page_flags import (PG_anon, PG_anon_exclusive, PG_swapbacked, PG_head, PG_tail,
                                 PG_ORDER_SHIFT)
from vmsim.mm.mm_types import VM_DROPPABLE

RMAP_NONE = 0
RMAP_EXCLUSIVE = 1 << 0


class anon_vma:
    """struct anon_vma: root, parent, refcount, num_children, num_active_vmas, rb_root."""
    __slots__ = ("id", "root", "parent", "refcount", "num_children", "num_active_vmas",
                 "rb_root", "__weakref__")

    def __init__(self, oid):
        self.id = oid
        self.root = self
        self.parent = self
        self.refcount = 1
        self.num_children = 0
        self.num_active_vmas = 0
        self.rb_root = []

    @property
    def vmas(self):
        """The VMAs chained to this anon_vma (its interval tree's members)."""
        return [avc.vma for avc in self.rb_root]

    def __repr__(self):
        return (f"<anon_vma {self.id} root={self.root.id} parent={self.parent.id} "
                f"children={self.num_children} active_vmas={self.num_active_vmas}>")


class anon_vma_chain:
    """struct anon_vma_chain: links one VMA (same_vma list) with one anon_vma (rb)."""
    __slots__ = ("vma", "anon_vma")

    def __init__(self, vma, av):
        self.vma = vma
        self.anon_vma = av


def anon_vma_alloc(k) -> anon_vma:
    """anon_vma_alloc(): refcount 1, its own root and parent."""
    av = anon_vma(0)
    av.id = k._register_object(av)
    return av


def anon_vma_free(k, av):
    k._unregister_object(av.id)
    av.id = 0


def get_anon_vma(av):
    av.refcount += 1


def put_anon_vma(k, av):
    """put_anon_vma() -> __put_anon_vma(): free it and, with its last user, its root."""
    av.refcount -= 1
    if av.refcount:
        return
    root = av.root
    anon_vma_free(k, av)
    if root is not av:
        root.refcount -= 1
        if root.refcount == 0:
            anon_vma_free(k, root)


def anon_vma_chain_link(vma, avc, av):
    """anon_vma_chain_link(): list_add on the VMA's chain, insert in the anon_vma's tree."""
    vma.anon_vma_chain.insert(0, avc)
    av.rb_root.append(avc)


def __anon_vma_prepare(k, vma) -> int:
    """__anon_vma_prepare(): reuse a mergeable neighbour's anon_vma
    (find_mergeable_anon_vma) or allocate a new root; link it. 0 or -ENOMEM."""
    av = find_mergeable_anon_vma(vma)
    allocated = None
    if av is None:
        av = allocated = anon_vma_alloc(k)
        av.num_children += 1                  # self-parent link for new root
    avc = anon_vma_chain(vma, av)
    if vma.anon_vma is None:
        vma.anon_vma = av
        anon_vma_chain_link(vma, avc, av)
        av.num_active_vmas += 1
        allocated = None
    if allocated is not None:
        put_anon_vma(k, allocated)
    return 0


def anon_vma_prepare(k, vma) -> int:
    """anon_vma_prepare(): make sure the VMA has an anon_vma."""
    if vma.anon_vma is not None:
        return 0
    return __anon_vma_prepare(k, vma)


def reusable_anon_vma(old, a, b):
    """reusable_anon_vma() (mm/vma.c): old's anon_vma if old was never forked and is
    compatible with b (anon_vma_compatible: adjacent, same policy, flags but
    VM_ACCESS_FLAGS/VM_IGNORE_MERGE (sticky flags: 6.18.y by 6.18.44), file, pgoff
    in step)."""
    from vmsim.mm.mm_types import VM_READ, VM_WRITE, VM_EXEC, VM_IGNORE_MERGE
    if a.vm_end != b.vm_start or a.vm_file is not b.vm_file:
        return None
    if (a.vm_flags ^ b.vm_flags) & ~(VM_READ | VM_WRITE | VM_EXEC | VM_IGNORE_MERGE):
        return None
    if b.vm_pgoff != a.vm_pgoff + ((b.vm_start - a.vm_start) >> 12):
        return None
    av = old.anon_vma
    if av is not None and len(old.anon_vma_chain) == 1:
        return av
    return None


def find_mergeable_anon_vma(vma):
    """find_mergeable_anon_vma() (mm/vma.c): an adjacent unforked VMA's anon_vma."""
    mm = vma.vm_mm
    if vma.detached or not mm.mm_mt or all(v is not vma for v in mm._vmas_in(vma.vm_start, vma.vm_end)):
        return None
    nxt = mm.vma_next(vma)
    if nxt is not None:
        av = reusable_anon_vma(nxt, vma, nxt)
        if av is not None:
            return av
    prev = mm.vma_prev(vma)
    if prev is not None:
        return reusable_anon_vma(prev, prev, vma)
    return None


def anon_vma_clone(dst, src) -> int:
    """anon_vma_clone(): link dst to every anon_vma src is linked to, oldest first;
    reuse one that lost all its VMAs and has fewer than two children. 0 or -ENOMEM."""
    for pavc in reversed(src.anon_vma_chain):
        av = pavc.anon_vma
        anon_vma_chain_link(dst, anon_vma_chain(dst, av), av)
        # Reuse existing anon_vma if it has no vma and only one anon_vma child.
        # Root anon_vma is never reused: it has self-parent reference and at least one child.
        if dst.anon_vma is None and src.anon_vma is not None and \
                av.num_children < 2 and av.num_active_vmas == 0:
            dst.anon_vma = av
    if dst.anon_vma is not None:
        dst.anon_vma.num_active_vmas += 1
    return 0


def anon_vma_fork(k, vma, pvma) -> int:
    """anon_vma_fork(): attach the child's VMA to the parent's anon_vmas, then give it
    its own anon_vma (child of the parent's) for the pages it will COW."""
    if pvma.anon_vma is None:
        return 0
    vma.anon_vma = None
    vma.anon_vma_chain = []
    err = anon_vma_clone(vma, pvma)
    if err:
        return err
    if vma.anon_vma is not None:
        return 0
    av = anon_vma_alloc(k)
    av.num_active_vmas += 1
    avc = anon_vma_chain(vma, av)
    av.root = pvma.anon_vma.root
    av.parent = pvma.anon_vma
    get_anon_vma(av.root)
    vma.anon_vma = av
    anon_vma_chain_link(vma, avc, av)
    av.parent.num_children += 1
    return 0


def dup_anon_vma(dst, src) -> int:
    """dup_anon_vma() (mm/vma.c): a merge extends dst over src's anon pages."""
    if src.anon_vma is not None and dst.anon_vma is None:
        dst.anon_vma = src.anon_vma
        ret = anon_vma_clone(dst, src)
        if ret:
            return ret
    return 0


def unlink_anon_vmas(k, vma):
    """unlink_anon_vmas(): drop the VMA's chains, newest first; free anon_vmas left
    with no VMA (the root last)."""
    empty = []
    for avc in list(vma.anon_vma_chain):
        av = avc.anon_vma
        av.rb_root.remove(avc)
        if not av.rb_root:
            av.parent.num_children -= 1
            empty.append(avc)
            continue
        vma.anon_vma_chain.remove(avc)
    if vma.anon_vma is not None:
        vma.anon_vma.num_active_vmas -= 1
        vma.anon_vma = None
    for avc in empty:
        av = avc.anon_vma
        if av.num_children or av.num_active_vmas:
            raise AssertionError(f"VM_WARN_ON: unlinking {av!r} with children or active VMAs")
        put_anon_vma(k, av)
        vma.anon_vma_chain.remove(avc)


# --- folio mapcounts -----------------------------------------------------------------
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

    Sets swapbacked (not for VM_DROPPABLE: those folios are dropped, never swapped),
    the anon mapping and index, mapcount 1, AnonExclusive when RMAP_EXCLUSIVE, and
    NR_ANON_MAPPED (nr_anon_pages). Large folios: not modelled yet.
    """
    mem = k.mem
    if not vma.vm_flags & VM_DROPPABLE:
        mem.flags[pfn] = mem.flags[pfn] | PG_swapbacked
    __folio_set_anon(k, pfn, vma, address, flags & RMAP_EXCLUSIVE)
    mem.mapcount[pfn] = 1
    k.vmstat[vmstat.NR_ANON_PAGES] += 1


def folio_add_anon_rmap_ptes(k, pfn, nr, vma, address, flags):
    """folio_add_anon_rmap_ptes(): map nr pages of an already-anon folio; the first
    mapping of a page counts it in NR_ANON_MAPPED; RMAP_EXCLUSIVE marks them exclusive."""
    mem = k.mem
    if mem.flags[pfn] & _LARGE:
        return _large_add_rmap_ptes(k, pfn, nr, flags)
    for p in range(pfn, pfn + nr):
        mem.mapcount[p] += 1
        if mem.mapcount[p] == 1:
            k.vmstat[vmstat.NR_ANON_PAGES] += 1
        if flags & RMAP_EXCLUSIVE:
            mem.flags[p] = mem.flags[p] | PG_anon_exclusive


def folio_add_anon_rmap_pte(k, pfn, vma, address, flags):
    """folio_add_anon_rmap_pte(): folio_add_anon_rmap_ptes() for one page."""
    folio_add_anon_rmap_ptes(k, pfn, 1, vma, address, flags)


def folio_try_dup_anon_rmap_pte(k, pfn, dst_vma, src_vma) -> int:
    """folio_try_dup_anon_rmap_pte() (include/linux/rmap.h): fork shares an anon page.

    A possibly DMA-pinned AnonExclusive page must be copied instead (-EBUSY); vmsim
    has no long-term pins yet (folio_maybe_dma_pinned is false), so this always
    clears PageAnonExclusive and raises the mapcount.
    """
    mem = k.mem
    mem.flags[pfn] = mem.flags[pfn] & ~PG_anon_exclusive
    mem.mapcount[pfn] += 1
    if mem.flags[pfn] & _LARGE:
        mem.mapping[_folio(k, pfn) + 1] += 1             # _large_mapcount
    return 0


def folio_dup_file_rmap_pte(k, pfn, dst_vma):
    """folio_dup_file_rmap_pte(): one more PTE mapping of a page-cache page (and of
    its large folio: _large_mapcount)."""
    mem = k.mem
    mem.mapcount[pfn] += 1
    if mem.flags[pfn] & (PG_head | PG_tail):
        from vmsim.mm.folio import page_folio
        mem.mapping[page_folio(k, pfn) + 1] += 1


def folio_add_file_rmap_pte(k, pfn, vma):
    """folio_add_file_rmap_ptes() for one page: NR_FILE_MAPPED (nr_mapped) on first map."""
    mem = k.mem
    if mem.flags[pfn] & (PG_head | PG_tail):
        from vmsim.mm.folio import page_folio
        folio_add_file_rmap_ptes(k, page_folio(k, pfn), pfn, 1, vma)
        return
    mem.mapcount[pfn] += 1
    if mem.mapcount[pfn] == 1:
        k.vmstat[vmstat.NR_MAPPED] += 1


def folio_add_file_rmap_ptes(k, folio, page, nr, vma):
    """folio_add_file_rmap_ptes() -> __folio_add_rmap(RMAP_LEVEL_PTE): each page's
    mapcount; a large folio's _large_mapcount and _nr_pages_mapped; the pages mapped
    for the first time count in NR_FILE_MAPPED (nr_mapped)."""
    mem = k.mem
    if nr >= 16:
        seg = mem.np_mapcount[page:page + nr]
        seg += 1
        first = int((seg == 1).sum())
    else:
        mc = mem.mapcount
        first = 0
        for p in range(page, page + nr):
            m = mc[p] + 1
            mc[p] = m
            if m == 1:
                first += 1
    if mem.flags[folio] & PG_head:
        mem.mapping[folio + 1] += nr            # _large_mapcount
        mem.index[folio + 1] += first           # _nr_pages_mapped
        if mem.lru_prev[folio + 1]:
            # PMD-mapped too (ENTIRELY_MAPPED): every page already counts as mapped.
            return
    k.vmstat[vmstat.NR_MAPPED] += first


def folio_add_file_rmap_pmd(k, folio, page, vma):
    """folio_add_file_rmap_pmd() -> __folio_add_file_rmap(RMAP_LEVEL_PMD): the
    entire and large mapcounts; the first PMD mapping counts the pages no PTE maps in
    NR_FILE_MAPPED and the folio in NR_FILE_PMDMAPPED / NR_SHMEM_PMDMAPPED; the folio
    is mlocked in a VM_LOCKED VMA (mlock_vma_folio)."""
    from vmsim.mm.mm_types import VM_LOCKED, VM_SPECIAL
    mem = k.mem
    nr_pages = 1 << ((mem.flags[folio] >> PG_ORDER_SHIFT) & 0x1F)
    em = mem.lru_prev[folio + 1] + 1
    mem.lru_prev[folio + 1] = em                # _entire_mapcount
    mem.mapping[folio + 1] += 1                 # folio_inc_large_mapcount()
    if em == 1:
        k.vmstat[vmstat.NR_MAPPED] += nr_pages - mem.index[folio + 1]
        k.vmstat[vmstat.NR_SHMEM_PMDMAPPED if mem.flags[folio] & PG_swapbacked
                 else vmstat.NR_FILE_PMDMAPPED] += nr_pages
    if (vma.vm_flags & (VM_LOCKED | VM_SPECIAL)) == VM_LOCKED:
        from vmsim.mm.mlock import mlock_folio
        mlock_folio(k, folio)


def folio_remove_rmap_ptes(k, pfn, nr, vma):
    """folio_remove_rmap_ptes(): drop the mapcounts; the last unmap of a page leaves
    the node stats (NR_ANON_MAPPED / NR_FILE_MAPPED)."""
    mem = k.mem
    if mem.flags[pfn] & (PG_head | PG_tail):
        # A page of a large folio: its folio's _large_mapcount / _nr_pages_mapped.
        from vmsim.mm.folio import page_folio
        folio = page_folio(k, pfn)
        if not mem.flags[folio] & PG_anon:
            mem.mapping[folio + 1] -= nr
            seg = mem.np_mapcount[pfn:pfn + nr]
            last = int((seg == 1).sum())
            mem.index[folio + 1] -= last
            seg -= 1
            if not mem.lru_prev[folio + 1]:     # not PMD-mapped (< ENTIRELY_MAPPED)
                k.vmstat[vmstat.NR_MAPPED] -= last
            if vma is not None and vma.vm_flags & 0x2000:          # VM_LOCKED
                from vmsim.mm.mlock import munlock_folio
                munlock_folio(k, folio)
            return
        return _large_remove_rmap_ptes(k, pfn, nr, vma)
    for p in range(pfn, pfn + nr):
        m = mem.mapcount[p] - 1
        mem.mapcount[p] = m
        if m == 0:
            f = mem.flags[p]
            if f & PG_anon:
                k.vmstat[vmstat.NR_ANON_PAGES] -= 1
                # An unmapped anon page is no longer exclusive to anybody.
                mem.flags[p] = f & ~PG_anon_exclusive
            else:
                k.vmstat[vmstat.NR_MAPPED] -= 1
        elif m < 0:
            raise AssertionError(f"VM_BUG_ON: mapcount underflow on pfn {p:#x}")
    # munlock_vma_folio(): unmapping from a VM_LOCKED VMA drops an mlock.
    if vma is not None and vma.vm_flags & 0x2000:          # VM_LOCKED
        from vmsim.mm.mlock import munlock_folio
        munlock_folio(k, pfn)


def folio_remove_rmap_pte(k, pfn, vma):
    """folio_remove_rmap_pte(): folio_remove_rmap_ptes() for one page."""
    folio_remove_rmap_ptes(k, pfn, 1, vma)


def folio_move_anon_rmap(k, pfn, vma):
    """folio_move_anon_rmap(): point an exclusively owned anon folio at vma's anon_vma."""
    k.mem.mapping[_folio(k, pfn)] = vma.anon_vma.id


# --- large folios mapped by PTEs (__folio_add_rmap / __folio_remove_rmap, RMAP_LEVEL_PTE) --
_LARGE = PG_head | PG_tail


def _folio(k, pfn):
    """page_folio()."""
    if not k.mem.flags[pfn] & PG_tail:
        return pfn
    from vmsim.mm.folio import page_folio
    return page_folio(k, pfn)


def _large_add_rmap_ptes(k, pfn, nr, flags):
    """Pages of a large anon folio get PTE mappings: per-page mapcount,
    _nr_pages_mapped, _large_mapcount; NR_ANON_MAPPED counts pages newly mapped while
    no PMD maps the folio."""
    mem = k.mem
    folio = _folio(k, pfn)
    new = 0
    for p in range(pfn, pfn + nr):
        mem.mapcount[p] += 1
        if mem.mapcount[p] == 1:
            new += 1
        if flags & RMAP_EXCLUSIVE:
            mem.flags[p] = mem.flags[p] | PG_anon_exclusive
    mem.index[folio + 1] += new
    mem.mapping[folio + 1] += nr
    if not mem.lru_prev[folio + 1]:
        k.vmstat[vmstat.NR_ANON_PAGES] += new


def _large_remove_rmap_ptes(k, pfn, nr, vma):
    """The PTE mappings of pages of a large folio go; a folio left partially mapped
    goes on the deferred split queue (deferred_split_folio(folio, true))."""
    mem = k.mem
    folio = _folio(k, pfn)
    gone = 0
    for p in range(pfn, pfn + nr):
        m = mem.mapcount[p] - 1
        mem.mapcount[p] = m
        if m == 0:
            gone += 1
            mem.flags[p] = mem.flags[p] & ~PG_anon_exclusive
        elif m < 0:
            raise AssertionError(f"VM_BUG_ON: mapcount underflow on pfn {p:#x}")
    mem.index[folio + 1] -= gone
    mem.mapping[folio + 1] -= nr
    anon = mem.flags[folio] & PG_anon
    if not mem.lru_prev[folio + 1]:
        k.vmstat[vmstat.NR_ANON_PAGES if anon else vmstat.NR_MAPPED] -= gone
    if anon and gone and not mem.lru_prev[folio + 1] and mem.index[folio + 1] > 0:
        from vmsim.mm.huge_memory import deferred_split_folio
        deferred_split_folio(k, folio, True)
    if vma is not None and vma.vm_flags & 0x2000:          # VM_LOCKED
        from vmsim.mm.mlock import munlock_folio
        munlock_folio(k, folio)




# --- rmap walks -----------------------------------------------------------------------
def vma_address(vma, pgoff: int, nr: int = 1) -> int:
    """vma_address(): the user address of page pgoff in vma, or -EFAULT if outside."""
    address = vma.vm_start + ((pgoff - vma.vm_pgoff) << 12)
    if pgoff < vma.vm_pgoff or address >= vma.vm_end:
        return -14
    return address


def page_vma_mapped_walk(vma, pfn: int, address: int, pmd: bool = False) -> int:
    """page_vma_mapped_walk() for one page: the pool index of the PTE at address in
    vma's mm if it maps pfn, else -1. With ``pmd`` (callers that handle pvmw.pmd), a
    huge PMD there mapping pfn's folio is found too: its index is returned (compare
    with mm_find_pmd() to tell the level)."""
    from vmsim.arch.x86 import pgtable_types as T
    mm = vma.vm_mm
    k = mm.kernel
    pool = k.ptpool.mv
    row = k.mem.private
    levels = 5 if k.la57 else 4
    shift = k.pgdir_shift
    p = mm.pgd_ptr + ((address >> shift) & 511)
    for _ in range(levels - 1):
        e = pool[p]
        if not e & T._PAGE_PRESENT:
            return -1
        if e & T._PAGE_PSE:
            if pmd and shift == 21 and 0 <= pfn - ((e & T.PMD_PFN_MASK_2M) >> 12) < 512:
                return p
            return -1
        shift -= 9
        p = row[(e & T.PTE_PFN_MASK) >> 12] * 512 + ((address >> shift) & 511)
    e = pool[p]
    if e & (T._PAGE_PRESENT | T._PAGE_PROTNONE) and (e & T.PTE_PFN_MASK) >> 12 == pfn:
        return p
    return -1


def rmap_walk_anon(k, pfn: int, rmap_one, locked: bool = False):
    """rmap_walk_anon(): for each VMA chained to the folio's anon_vma whose range holds
    the folio's index, call rmap_one(pfn, vma, address) where a PTE maps it; stop when
    it returns False. The kernel walks the interval tree of folio_anon_vma(folio)."""
    mem = k.mem
    if not mem.flags[pfn] & PG_anon:
        return
    av = k.objects[mem.mapping[pfn]]
    if not isinstance(av, anon_vma):
        return
    pgoff = mem.index[pfn]
    for avc in list(av.rb_root):
        vma = avc.vma
        address = vma_address(vma, pgoff)
        if address < 0:
            continue
        if page_vma_mapped_walk(vma, pfn, address) < 0:
            continue
        if rmap_one(pfn, vma, address) is False:
            break


def rmap_walk_file(k, pfn: int, rmap_one, locked: bool = False):
    """rmap_walk_file(): the VMAs mapping the folio's file at its index. vmsim keeps no
    i_mmap tree, so the live mms' VMAs of that mapping are searched."""
    mem = k.mem
    mid = mem.mapping[pfn]
    pgoff = mem.index[pfn]
    seen = []
    for t in k.tasks.values():
        mm = t.mm
        if mm is None or any(mm is s for s in seen):
            continue
        seen.append(mm)
        for vma in mm.mm_mt:
            f = vma.vm_file
            if f is None or getattr(f.f_mapping, "id", None) != mid:
                continue
            address = vma_address(vma, pgoff)
            if address < 0 or page_vma_mapped_walk(vma, pfn, address) < 0:
                continue
            if rmap_one(pfn, vma, address) is False:
                return


def rmap_walk(k, pfn: int, rmap_one):
    """rmap_walk(): anon or file walk by the folio's mapping."""
    if k.mem.flags[pfn] & PG_anon:
        rmap_walk_anon(k, pfn, rmap_one)
    else:
        rmap_walk_file(k, pfn, rmap_one)


def folio_mapped_by(k, pfn: int):
    """Return [(mm, address)] of every PTE mapping the page, found by rmap_walk."""
    out = []
    rmap_walk(k, pfn, lambda p, vma, addr: out.append((vma.vm_mm, addr)))
    return out
