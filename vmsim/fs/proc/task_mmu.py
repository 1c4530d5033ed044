"""/proc/<pid>/maps, smaps, smaps_rollup and pagemap (fs/proc/task_mmu.c).

Every number is computed from the raw page tables, as the kernel's page walk does
(walk_page_vma with smaps_pte_range / pagemap_pmd_range): a leaf entry is looked up
in mem_map (flags, refcount, mapcount) and accounted by smaps_account(); nothing is
read from the RSS counters. The walk skips empty entries with numpy, so a mostly
unpopulated VMA costs little.

Non-present entries: guard PTE markers show as pagemap swap entries with
PM_GUARD_REGION and count nowhere in smaps, as 6.18's; swap itself is not modelled
(any other non-present entry would be reported as a swap entry, PM_SWAP and smaps
Swap, without its type and offset); task_mmu's numa_maps, clear_refs and PAGEMAP_SCAN are not built;
the page-idle tracking (folio_test_young) is not modelled, so Referenced comes from the
PTE accessed bit and PG_referenced.
"""
import errno

import numpy as np

from vmsim.arch.x86.mm.pkeys import arch_pkeys_enabled, vma_pkey
from vmsim.arch.x86 import pgtable_types as T
from vmsim.mm.swapops import (is_pte_marker_entry, is_guard_swp_entry, swp_type, swp_offset,
                              MAX_SWAPFILES_SHIFT)
from vmsim.mm.mm_types import (VM_READ, VM_WRITE, VM_EXEC, VM_SHARED, VM_MAYREAD, VM_MAYWRITE,
                               VM_MAYEXEC, VM_MAYSHARE, VM_GROWSDOWN, VM_UFFD_MISSING, VM_PFNMAP,
                               VM_MAYBE_GUARD, VM_DROPPABLE, VM_UFFD_WP, VM_LOCKED, VM_IO, VM_SEQ_READ,
                               VM_RAND_READ, VM_DONTCOPY, VM_DONTEXPAND, VM_LOCKONFAULT,
                               VM_ACCOUNT, VM_NORESERVE, VM_HUGETLB, VM_SYNC, VM_ARCH_1,
                               VM_WIPEONFORK, VM_DONTDUMP, VM_MIXEDMAP, VM_HUGEPAGE,
                               VM_NOHUGEPAGE, VM_MERGEABLE, VM_SOFTDIRTY,
                               MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, MM_SWAPENTS)
from vmsim.mm.page_flags import (PG_anon, PG_swapbacked, PG_dirty, PG_referenced, PG_head,
                                 PG_tail, PG_ORDER_MASK, PG_ORDER_SHIFT)

PAGE_SHIFT = 12
PAGE_SIZE = 4096
PSS_SHIFT = 12
HPAGE_PMD_SIZE = 1 << 21
_PFN = T.PTE_PFN_MASK
_PRESENT_BITS = T._PAGE_PRESENT | T._PAGE_PROTNONE

# The gate VMA (arch/x86/entry/vsyscall/vsyscall_64.c): VM_EXEC only in xonly mode.
VSYSCALL_START = 0xFFFFFFFFFF600000
VSYSCALL_END = VSYSCALL_START + PAGE_SIZE

# pagemap entry bits (task_mmu.c, Documentation/admin-guide/mm/pagemap.rst)
PM_ENTRY_BYTES = 8
PM_PFRAME_BITS = 55
PM_PFRAME_MASK = (1 << PM_PFRAME_BITS) - 1
PM_SOFT_DIRTY = 1 << 55
PM_MMAP_EXCLUSIVE = 1 << 56
PM_UFFD_WP = 1 << 57
PM_GUARD_REGION = 1 << 58
PM_GUARD_REGION = 1 << 58
PM_FILE = 1 << 61
PM_SWAP = 1 << 62
PM_PRESENT = 1 << 63
PAGEMAP_WALK_SIZE = 1 << 21
ULONG_MAX = (1 << 64) - 1

# show_smap_vma_flags() mnemonics, by flag value (VM_SOFTDIRTY is 0 in this profile).
_MNEMONICS = {
    VM_READ: "rd", VM_WRITE: "wr", VM_EXEC: "ex", VM_SHARED: "sh", VM_MAYREAD: "mr",
    VM_MAYWRITE: "mw", VM_MAYEXEC: "me", VM_MAYSHARE: "ms", VM_GROWSDOWN: "gd",
    VM_PFNMAP: "pf", VM_LOCKED: "lo", VM_IO: "io", VM_SEQ_READ: "sr", VM_RAND_READ: "rr",
    VM_DONTCOPY: "dc", VM_DONTEXPAND: "de", VM_LOCKONFAULT: "lf", VM_ACCOUNT: "ac",
    VM_NORESERVE: "nr", VM_HUGETLB: "ht", VM_SYNC: "sf", VM_ARCH_1: "ar",
    VM_WIPEONFORK: "wf", VM_DONTDUMP: "dd", VM_MIXEDMAP: "mm", VM_HUGEPAGE: "hg",
    VM_NOHUGEPAGE: "nh", VM_MERGEABLE: "mg", VM_UFFD_MISSING: "um", VM_UFFD_WP: "uw",
    VM_MAYBE_GUARD: "gu", VM_DROPPABLE: "dp",
}
if VM_SOFTDIRTY:
    _MNEMONICS[VM_SOFTDIRTY] = "sd"
# Protection-key bits are printed as ProtectionKey, not as mnemonics.
_VM_PKEY_BITS = 0xF << 32


# --- the page walk (mm/pagewalk.c) ---------------------------------------------------
def walk_page_range(mm, start: int, end: int, leaf):
    """walk_page_range(): call leaf(addr, end, shift, entry) for every non-empty leaf.

    ``shift`` is 12 for a PTE, 21 for a huge PMD, 30 for a huge PUD; [addr, end) is the
    part of the leaf's range inside [start, end). Empty entries (the pte_hole cases)
    are skipped: callers treat what they were not told about as a hole.
    """
    k = mm.kernel
    if start >= end or mm.pgd < 0:
        return
    _walk_level(k, mm.pgd_ptr, k.pgdir_shift, start, end, leaf, k.la57)


def _walk_level(k, base: int, shift: int, start: int, end: int, leaf, la57: bool):
    arr = k.ptpool.arr
    first = start >> shift
    i0 = first & 511
    i1 = ((end - 1) >> shift) & 511
    ents = arr[base + i0: base + i1 + 1]
    nz = np.flatnonzero(ents)
    if not len(nz):
        return
    private = k.mem.private
    size = 1 << shift
    for j in nz.tolist():
        e = int(ents[j])
        a = (first + j) << shift
        lo = a if a > start else start
        hi = a + size if a + size < end else end
        if shift == 12 or (shift in (21, 30) and e & T._PAGE_PSE) or not e & T._PAGE_PRESENT:
            leaf(lo, hi, shift, e)
            continue
        child = private[(e & _PFN) >> PAGE_SHIFT] * 512
        _walk_level(k, child, shift - 9, lo, hi, leaf, la57)


def _pte_present(e: int) -> bool:
    return bool(e & _PRESENT_BITS)


def vm_normal_page(vma, addr: int, pte: int) -> int:
    """vm_normal_page(): the PFN with a struct page to account, or -1 (see mm/memory.py)."""
    from vmsim.mm.memory import vm_normal_page as _vnp
    return _vnp(vma, addr, pte)


def folio_head(k, pfn: int) -> int:
    """page_folio(): the head PFN of the folio ``pfn`` belongs to."""
    flags = k.mem.flags
    if not flags[pfn] & PG_tail:
        return pfn
    # The nearest page at or below pfn without PG_tail (page 0 at the bottom), looked
    # for in growing chunks: a page by page walk back cost smaps ~256 steps a page of a
    # PMD-sized folio.
    npf = k.mem.np_flags
    hi, step = pfn, 16
    while hi > 0:
        lo = max(hi - step, 0)
        nt = np.flatnonzero((npf[lo:hi] & PG_tail) == 0)
        if len(nt):
            return lo + int(nt[-1])
        hi, step = lo, step * 8
    return 0


def _precise_page_mapcount(k, folio: int, page: int) -> int:
    """folio_precise_page_mapcount() (CONFIG_PAGE_MAPCOUNT=y here): the page's PTE
    mappings plus the folio's PMD mappings."""
    from vmsim.mm.folio import folio_precise_page_mapcount
    return folio_precise_page_mapcount(k, folio, page)


def folio_order(k, head: int) -> int:
    f = k.mem.flags[head]
    return (f & PG_ORDER_MASK) >> PG_ORDER_SHIFT if f & PG_head else 0


# --- /proc/<pid>/maps -------------------------------------------------------------------
class gate_vma:
    """The [vsyscall] gate VMA get_gate_vma() returns (not in the mm's tree)."""
    vm_start = VSYSCALL_START
    vm_end = VSYSCALL_END
    vm_flags = VM_EXEC
    vm_pgoff = 0
    vm_file = None
    vm_ops = None
    vm_mm = None
    anon_name = None
    vm_private_data = "[vsyscall]"


GATE_VMA = gate_vma()


def get_gate_vma(mm):
    """get_gate_vma(): the vsyscall page of a 64-bit mm."""
    return GATE_VMA if mm is not None else None


def vma_is_initial_heap(vma) -> bool:
    """vma_is_initial_heap(): the VMA overlaps [start_brk, brk)."""
    mm = vma.vm_mm
    return vma.vm_start < mm.brk and vma.vm_end > mm.start_brk


def vma_is_initial_stack(vma) -> bool:
    """vma_is_initial_stack(): the VMA contains start_stack."""
    mm = vma.vm_mm
    return vma.vm_start <= mm.start_stack <= vma.vm_end


def _file_path(file) -> str:
    """d_path() of the mapped file, with seq_path's escaping of newlines."""
    path = getattr(file, "path", "") or ""
    if getattr(file, "deleted", False):
        path += " (deleted)"
    return path.replace("\\", "\\134").replace("\n", "\\012")


def get_vma_name(vma):
    """get_vma_name(): the name printed after the header, or None."""
    anon_name = vma.anon_name if vma.vm_mm is not None else None
    if vma.vm_file is not None:
        if anon_name:
            return f"[anon_shmem:{anon_name}]"
        return _file_path(vma.vm_file)
    if vma is GATE_VMA:
        return "[vsyscall]"
    # _install_special_mapping() VMAs: vm_ops->name() returns the mapping's name.
    if vma.vm_ops is not None and isinstance(vma.vm_private_data, str):
        return vma.vm_private_data
    if vma.vm_mm is None:
        return "[vdso]"
    if vma_is_initial_heap(vma):
        return "[heap]"
    if vma_is_initial_stack(vma):
        return "[stack]"
    if anon_name:
        return f"[anon:{anon_name}]"
    return None


def _file_dev_ino(file):
    inode = getattr(file, "f_inode", file)
    dev = getattr(file, "dev", None) or getattr(inode, "dev", (0, 0))
    return dev, getattr(inode, "i_ino", 0)


def show_vma_header_prefix(start: int, end: int, flags: int, pgoff: int, dev, ino: int) -> str:
    """show_vma_header_prefix(): "start-end perms offset major:minor inode "."""
    return "%08x-%08x %s%s%s%s %08x %02x:%02x %d " % (
        start, end,
        "r" if flags & VM_READ else "-", "w" if flags & VM_WRITE else "-",
        "x" if flags & VM_EXEC else "-", "s" if flags & VM_MAYSHARE else "p",
        pgoff, dev[0], dev[1], ino)


def _pad(prefix: str, name) -> str:
    """seq_setwidth(25 + 6 * sizeof(void *) - 1) then seq_pad(' '): name at column 73."""
    if name is None:
        return prefix + "\n"
    return prefix.ljust(72) + " " + name + "\n"


def show_map_vma(vma) -> str:
    """show_map_vma(): one line of /proc/<pid>/maps."""
    dev, ino, pgoff = (0, 0), 0, 0
    if vma.vm_file is not None:
        dev, ino = _file_dev_ino(vma.vm_file)
        pgoff = vma.vm_pgoff << PAGE_SHIFT
    prefix = show_vma_header_prefix(vma.vm_start, vma.vm_end, vma.vm_flags, pgoff, dev, ino)
    return _pad(prefix, get_vma_name(vma))


def _vmas_and_gate(mm):
    vmas = list(mm.mm_mt)
    gate = get_gate_vma(mm)
    if gate is not None:
        vmas.append(gate)
    return vmas


def proc_pid_maps(mm) -> str:
    """/proc/<pid>/maps: every VMA, then the gate VMA (m_start/m_next/show_map)."""
    if mm is None:
        return ""
    return "".join(show_map_vma(v) for v in _vmas_and_gate(mm))


# --- smaps -------------------------------------------------------------------------------
class mem_size_stats:
    """struct mem_size_stats (bytes; the pss fields in PSS_SHIFT fixed point)."""
    __slots__ = ("resident", "shared_clean", "shared_dirty", "private_clean", "private_dirty",
                 "referenced", "anonymous", "lazyfree", "anonymous_thp", "shmem_thp",
                 "file_thp", "swap", "shared_hugetlb", "private_hugetlb", "ksm", "pss",
                 "pss_anon", "pss_file", "pss_shmem", "pss_dirty", "pss_locked", "swap_pss")

    def __init__(self):
        for s in self.__slots__:
            setattr(self, s, 0)


def smaps_page_accumulate(k, mss, folio: int, size: int, pss: int, dirty: bool,
                          locked: bool, private: bool):
    """smaps_page_accumulate(): Pss by type, Pss_Dirty, and the four clean/dirty sums."""
    f = k.mem.flags[folio]
    mss.pss += pss
    if f & PG_anon:
        mss.pss_anon += pss
    elif f & PG_swapbacked:
        mss.pss_shmem += pss
    else:
        mss.pss_file += pss
    if locked:
        mss.pss_locked += pss
    if dirty or f & PG_dirty:
        mss.pss_dirty += pss
        if private:
            mss.private_dirty += size
        else:
            mss.shared_dirty += size
    elif private:
        mss.private_clean += size
    else:
        mss.shared_clean += size


def smaps_account(k, mss, page: int, compound: bool, young: bool, dirty: bool, locked: bool,
                  present: bool):
    """smaps_account(): one mapped page (or a whole PMD-mapped folio if compound).

    refcount == 1 means mapped exactly once (private, full Pss); otherwise each page is
    private if its mapcount is below 2 and its Pss is PAGE_SIZE / mapcount.
    """
    mem = k.mem
    folio = folio_head(k, page)
    nr = 1 << folio_order(k, folio) if compound else 1
    size = nr * PAGE_SIZE
    f = mem.flags[folio]
    if f & PG_anon:
        mss.anonymous += size
        if not f & PG_swapbacked and not dirty and not f & PG_dirty:
            mss.lazyfree += size
    mss.resident += size
    if young or f & PG_referenced:
        mss.referenced += size
    if mem.refcount[folio] == 1 or not present:
        smaps_page_accumulate(k, mss, folio, size, size << PSS_SHIFT, dirty, locked, present)
        return
    for i in range(nr):
        mapcount = _precise_page_mapcount(k, folio, page + i)
        pss = PAGE_SIZE << PSS_SHIFT
        if mapcount >= 2:
            pss //= mapcount
        smaps_page_accumulate(k, mss, folio, PAGE_SIZE, pss, dirty, locked, mapcount < 2)


def smaps_pte_entry(k, mss, vma, addr: int, pte: int):
    """smaps_pte_entry(): a present PTE is accounted by its page; a swap PTE as Swap."""
    locked = bool(vma.vm_flags & VM_LOCKED)
    if _pte_present(pte):
        page = vm_normal_page(vma, addr, pte)
        young = bool(pte & T._PAGE_ACCESSED)
        dirty = bool(pte & T._PAGE_DIRTY)
        present = True
    else:
        if is_pte_marker_entry(pte):
            return                  # a non_swap_entry without a page: nothing to count
        # A swap entry (see the module docstring): swp_swapcount() taken as 1.
        mss.swap += PAGE_SIZE
        mss.swap_pss += PAGE_SIZE << PSS_SHIFT
        return
    if page < 0:
        return
    smaps_account(k, mss, page, False, young, dirty, locked, present)


def smaps_pmd_entry(k, mss, vma, addr: int, pmd: int):
    """smaps_pmd_entry(): a PMD-mapped THP, AnonHugePages / ShmemPmdMapped / FilePmdMapped."""
    if not (pmd & (_PRESENT_BITS | T._PAGE_PSE)):
        return
    page = (pmd & T.PMD_PFN_MASK_2M) >> PAGE_SHIFT
    if pmd & T._PAGE_SPECIAL or page == getattr(k, "huge_zero_pfn", -1):
        return                                   # vm_normal_page_pmd(): huge zero page
    f = k.mem.flags[folio_head(k, page)]
    if f & PG_anon:
        mss.anonymous_thp += HPAGE_PMD_SIZE
    elif f & PG_swapbacked:
        mss.shmem_thp += HPAGE_PMD_SIZE
    else:
        mss.file_thp += HPAGE_PMD_SIZE
    smaps_account(k, mss, page, True, bool(pmd & T._PAGE_ACCESSED), bool(pmd & T._PAGE_DIRTY),
                  bool(vma.vm_flags & VM_LOCKED), True)


def smap_gather_stats(vma, mss, start: int = 0):
    """smap_gather_stats(): walk the VMA's page tables (walk_page_vma + smaps_walk_ops)."""
    mm = vma.vm_mm
    if mm is None:
        return
    if vma.vm_flags & VM_HUGETLB:
        smaps_hugetlb_range(vma, mss)
        return
    k = mm.kernel
    if start >= vma.vm_end:
        return
    begin = start or vma.vm_start

    def leaf(addr, end, shift, e):
        if shift == PAGE_SHIFT:
            smaps_pte_entry(k, mss, vma, addr, e)
        elif shift == 21:
            smaps_pmd_entry(k, mss, vma, addr, e)

    walk_page_range(mm, begin, vma.vm_end, leaf)


def _dec(label: str, val: int, width: int = 8) -> str:
    """seq_put_decimal_ull_width(m, label, val, width): kB values."""
    return f"{label}{val:>{width}} kB\n"


def __show_smap(mss, rollup_mode: bool) -> str:
    """__show_smap(): the fields smaps and smaps_rollup share."""
    out = [_dec("Rss:            ", mss.resident >> 10),
           _dec("Pss:            ", (mss.pss >> PSS_SHIFT) >> 10),
           _dec("Pss_Dirty:      ", (mss.pss_dirty >> PSS_SHIFT) >> 10)]
    if rollup_mode:
        out += [_dec("Pss_Anon:       ", (mss.pss_anon >> PSS_SHIFT) >> 10),
                _dec("Pss_File:       ", (mss.pss_file >> PSS_SHIFT) >> 10),
                _dec("Pss_Shmem:      ", (mss.pss_shmem >> PSS_SHIFT) >> 10)]
    out += [_dec("Shared_Clean:   ", mss.shared_clean >> 10),
            _dec("Shared_Dirty:   ", mss.shared_dirty >> 10),
            _dec("Private_Clean:  ", mss.private_clean >> 10),
            _dec("Private_Dirty:  ", mss.private_dirty >> 10),
            _dec("Referenced:     ", mss.referenced >> 10),
            _dec("Anonymous:      ", mss.anonymous >> 10),
            _dec("KSM:            ", mss.ksm >> 10),
            _dec("LazyFree:       ", mss.lazyfree >> 10),
            _dec("AnonHugePages:  ", mss.anonymous_thp >> 10),
            _dec("ShmemPmdMapped: ", mss.shmem_thp >> 10),
            _dec("FilePmdMapped:  ", mss.file_thp >> 10),
            _dec("Shared_Hugetlb: ", mss.shared_hugetlb >> 10),
            _dec("Private_Hugetlb: ", mss.private_hugetlb >> 10, 7),
            _dec("Swap:           ", mss.swap >> 10),
            _dec("SwapPss:        ", (mss.swap_pss >> PSS_SHIFT) >> 10),
            _dec("Locked:         ", (mss.pss_locked >> PSS_SHIFT) >> 10)]
    return "".join(out)


def show_smap_vma_flags(vma) -> str:
    """show_smap_vma_flags(): "VmFlags: " and one mnemonic per set bit, in bit order."""
    out = ["VmFlags: "]
    flags = vma.vm_flags
    for bit in range(64):
        v = 1 << bit
        if not flags & v or v & _VM_PKEY_BITS:
            continue
        out.append(_MNEMONICS.get(v, "??") + " ")
    return "".join(out) + "\n"


def thp_eligible(vma) -> int:
    """THPeligible: thp_vma_allowable_orders(vma, vm_flags, TVA_SMAPS, THP_ORDERS_ALL) != 0."""
    if vma.vm_mm is None:
        return 0
    from vmsim.mm import huge_memory as H
    fn = getattr(H, "thp_vma_allowable_orders", None)
    if fn is not None:
        return int(bool(fn(vma, vma.vm_flags, H.TVA_SMAPS, (1 << (H.PMD_ORDER + 1)) - 1)))
    return int(bool(H.thp_vma_allowable_order(vma, vma.vm_flags, H.TVA_SMAPS, H.PMD_ORDER)))


def vma_kernel_pagesize(vma) -> int:
    """vma_kernel_pagesize(): PAGE_SIZE (hugetlb VMAs report their huge page size)."""
    if vma.vm_flags & VM_HUGETLB and vma.vm_mm is not None:
        from vmsim.mm.hugetlb import vma_kernel_pagesize as hugetlb_pagesize
        return hugetlb_pagesize(vma)
    return PAGE_SIZE


def smaps_hugetlb_range(vma, mss):
    """smaps_hugetlb_range(): each mapped huge page counts whole in Shared_Hugetlb when
    its folio may be mapped by more than one (or the entry is in a shared PMD table),
    else in Private_Hugetlb; hugetlb pages are not in Rss."""
    from vmsim.mm import hugetlb as H
    mm = vma.vm_mm
    k = mm.kernel
    sz = H.hstate_vma(vma).huge_page_size()
    for addr in range(vma.vm_start, vma.vm_end, sz):
        ptep = H.huge_pte_offset(mm, addr, sz)
        if ptep < 0:
            continue
        e = k.ptpool.mv[ptep]
        if not e & (T._PAGE_PRESENT | T._PAGE_PROTNONE):
            continue
        folio = (e & T.PTE_PFN_MASK) >> PAGE_SHIFT
        if H.folio_mapcount(k, folio) > 1 or H.ptdesc_pmd_is_shared(k, ptep):
            mss.shared_hugetlb += sz
        else:
            mss.private_hugetlb += sz


def show_smap(vma, pkeys_enabled: bool = False) -> str:
    """show_smap(): the maps line, the sizes, __show_smap, THPeligible, ProtectionKey
    (only when arch_pkeys_enabled()), VmFlags."""
    mss = mem_size_stats()
    smap_gather_stats(vma, mss, 0)
    pkey = "ProtectionKey:  %8u\n" % vma_pkey(vma) if pkeys_enabled else ""
    return "".join([
        show_map_vma(vma),
        _dec("Size:           ", (vma.vm_end - vma.vm_start) >> 10),
        _dec("KernelPageSize: ", vma_kernel_pagesize(vma) >> 10),
        _dec("MMUPageSize:    ", vma_kernel_pagesize(vma) >> 10),
        __show_smap(mss, False),
        "THPeligible:    %8u\n" % thp_eligible(vma),
        pkey,
        show_smap_vma_flags(vma)])


def proc_pid_smaps(mm) -> str:
    """/proc/<pid>/smaps."""
    if mm is None:
        return ""
    pkeys = arch_pkeys_enabled(mm.kernel)
    return "".join(show_smap(v, pkeys) for v in _vmas_and_gate(mm))


def gather_rollup(mm):
    """The mem_size_stats show_smaps_rollup() sums, with the covered [start, end)."""
    mss = mem_size_stats()
    vmas = mm.mm_mt
    for vma in vmas:
        smap_gather_stats(vma, mss, 0)
    start = vmas[0].vm_start if vmas else 0
    end = vmas[-1].vm_end if vmas else 0
    return mss, start, end


def show_smaps_rollup(mm):
    """show_smaps_rollup(): one header "[rollup]" and the sums; -ESRCH without an mm."""
    if mm is None:
        return -errno.ESRCH
    mss, start, end = gather_rollup(mm)
    prefix = show_vma_header_prefix(start, end, 0, 0, (0, 0), 0)
    return _pad(prefix, "[rollup]") + __show_smap(mss, True)


# --- task_mem / task_statm (used by array.py) ---------------------------------------------
def task_mem(mm) -> str:
    """task_mem(): the Vm*/Rss* lines of /proc/<pid>/status."""
    r = mm.rss_stat
    anon, file, shmem = r[MM_ANONPAGES], r[MM_FILEPAGES], r[MM_SHMEMPAGES]
    hiwater_vm = total_vm = mm.total_vm
    if hiwater_vm < mm.hiwater_vm:
        hiwater_vm = mm.hiwater_vm
    hiwater_rss = total_rss = anon + file + shmem
    if hiwater_rss < mm.hiwater_rss:
        hiwater_rss = mm.hiwater_rss
    text = (((mm.end_code + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)) - (mm.start_code & ~(PAGE_SIZE - 1)))
    text = min(text, mm.exec_vm << PAGE_SHIFT)
    lib = (mm.exec_vm << PAGE_SHIFT) - text
    swap = r[MM_SWAPENTS]
    rows = [("VmPeak", hiwater_vm << 2), ("VmSize", total_vm << 2), ("VmLck", mm.locked_vm << 2),
            ("VmPin", mm.pinned_vm << 2), ("VmHWM", hiwater_rss << 2), ("VmRSS", total_rss << 2),
            ("RssAnon", anon << 2), ("RssFile", file << 2), ("RssShmem", shmem << 2),
            ("VmData", mm.data_vm << 2), ("VmStk", mm.stack_vm << 2), ("VmExe", text >> 10),
            ("VmLib", lib >> 10), ("VmPTE", mm.pgtables_bytes >> 10), ("VmSwap", swap << 2)]
    out = "".join(f"{name}:\t{val:>8} kB\n" for name, val in rows)
    # hugetlb_report_usage()
    return out + f"HugetlbPages:\t{getattr(mm, 'hugetlb_usage', 0) << 2:>8} kB\n"


def task_statm(mm):
    """task_statm(): (size, shared, text, data, resident) in pages."""
    r = mm.rss_stat
    shared = r[MM_FILEPAGES] + r[MM_SHMEMPAGES]
    text = (((mm.end_code + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)) -
            (mm.start_code & ~(PAGE_SIZE - 1))) >> PAGE_SHIFT
    data = mm.data_vm + mm.stack_vm
    resident = shared + r[MM_ANONPAGES]
    return mm.total_vm, shared, text, data, resident


# --- pagemap -----------------------------------------------------------------------------
def make_pme(frame: int, flags: int) -> int:
    return (frame & PM_PFRAME_MASK) | flags


def pte_to_pagemap_entry(k, vma, addr: int, pte: int, show_pfn: bool = True) -> int:
    """pte_to_pagemap_entry(): PFN, present/swap, file-or-shared-anon, exclusive bits."""
    frame = flags = 0
    page = -1
    if _pte_present(pte):
        if show_pfn:
            frame = (pte & _PFN) >> PAGE_SHIFT
        flags |= PM_PRESENT
        page = vm_normal_page(vma, addr, pte)
        if T._PAGE_SOFT_DIRTY and pte & T._PAGE_SOFT_DIRTY:
            flags |= PM_SOFT_DIRTY
        if pte & T._PAGE_UFFD_WP:
            flags |= PM_UFFD_WP
    else:
        flags |= PM_SWAP
        if is_pte_marker_entry(pte):
            if show_pfn:
                frame = swp_type(pte) | (swp_offset(pte) << MAX_SWAPFILES_SHIFT)
            if is_guard_swp_entry(pte):
                flags |= PM_GUARD_REGION
    if page >= 0:
        mem = k.mem
        if not mem.flags[folio_head(k, page)] & PG_anon:
            flags |= PM_FILE
        if flags & PM_PRESENT and _precise_page_mapcount(k, folio_head(k, page), page) == 1:
            flags |= PM_MMAP_EXCLUSIVE          # __folio_page_mapped_exclusively()
    if vma.vm_flags & VM_SOFTDIRTY:
        flags |= PM_SOFT_DIRTY
    return make_pme(frame, flags)


def _pagemap_pmd(k, vma, addr: int, end: int, pmd: int, out, base: int, show_pfn: bool = True):
    """pagemap_pmd_range() for a huge PMD: one entry per 4 KiB page of it."""
    flags = PM_SOFT_DIRTY if vma.vm_flags & VM_SOFTDIRTY else 0
    frame = 0
    head = -1
    if pmd & (_PRESENT_BITS | T._PAGE_PSE):
        flags |= PM_PRESENT
        head = (pmd & T.PMD_PFN_MASK_2M) >> PAGE_SHIFT
        if pmd & T._PAGE_UFFD_WP:
            flags |= PM_UFFD_WP
        if not k.mem.flags[folio_head(k, head)] & PG_anon:
            flags |= PM_FILE
    idx = (addr & (HPAGE_PMD_SIZE - 1)) >> PAGE_SHIFT
    a = addr
    while a < end:
        cur = flags
        # __folio_page_mapped_exclusively(folio, page) with page = pmd_page(): the
        # head page decides for every entry of the PMD.
        if head >= 0 and _precise_page_mapcount(k, head, head) == 1:
            cur |= PM_MMAP_EXCLUSIVE
        if show_pfn and head >= 0:
            frame = head + idx
        out[(a - base) >> PAGE_SHIFT] = make_pme(frame, cur)
        a += PAGE_SIZE
        idx += 1


def pagemap_hugetlb_range(k, vma, lo: int, hi: int, out, base: int, show_pfn: bool = True):
    """pagemap_hugetlb_range(): per huge page: present, file unless anon, exclusive
    unless possibly shared (or in a shared PMD table), the subpage's frame."""
    from vmsim.mm import hugetlb as H
    sz = H.hstate_vma(vma).huge_page_size()
    mm = vma.vm_mm
    a = lo
    while a < hi:
        nxt = min((a | (sz - 1)) + 1, hi)
        flags = PM_SOFT_DIRTY if vma.vm_flags & VM_SOFTDIRTY else 0
        ptep = H.huge_pte_offset(mm, a, sz)
        e = k.ptpool.mv[ptep] if ptep >= 0 else 0
        frame = 0
        if e & T._PAGE_PRESENT:
            folio = (e & T.PTE_PFN_MASK) >> PAGE_SHIFT
            if not k.mem.flags[folio] & PG_anon:
                flags |= PM_FILE
            if H.folio_mapcount(k, folio) <= 1 and not H.ptdesc_pmd_is_shared(k, ptep):
                flags |= PM_MMAP_EXCLUSIVE
            if e & T._PAGE_UFFD_WP:
                flags |= PM_UFFD_WP
            flags |= PM_PRESENT
            if show_pfn:
                frame = folio + ((a & (sz - 1)) >> PAGE_SHIFT)
        while a < nxt:
            out[(a - base) >> PAGE_SHIFT] = make_pme(frame, flags)
            if flags & PM_PRESENT and show_pfn:
                frame += 1
            a += PAGE_SIZE


def pagemap_read(mm, offset: int, count: int, show_pfn: bool = True):
    """pagemap_read(): ``count`` bytes of 8-byte entries from file position ``offset``.

    Returns bytes or a negative errno: -EINVAL for an unaligned position or count.
    Entries stop at mm->task_size, as in the kernel (a short read).
    """
    if mm is None:
        return b""
    if offset % PM_ENTRY_BYTES or count % PM_ENTRY_BYTES:
        return -errno.EINVAL
    if not count:
        return b""
    k = mm.kernel
    svpfn = offset // PM_ENTRY_BYTES
    end_vaddr = mm.task_size
    start_vaddr = end_vaddr
    if svpfn <= (ULONG_MAX >> PAGE_SHIFT):
        start_vaddr = (svpfn << PAGE_SHIFT) & ULONG_MAX
        end = (start_vaddr + ((count // PM_ENTRY_BYTES) << PAGE_SHIFT)) & ULONG_MAX
        if start_vaddr <= end < mm.task_size:
            end_vaddr = end
    if start_vaddr > mm.task_size:
        start_vaddr = end_vaddr
    if start_vaddr >= end_vaddr:
        return b""
    n = (end_vaddr - start_vaddr) >> PAGE_SHIFT
    out = np.zeros(n, dtype=np.uint64)
    for vma in mm._vmas_in(start_vaddr, end_vaddr):
        lo, hi = max(vma.vm_start, start_vaddr), min(vma.vm_end, end_vaddr)
        if vma.vm_flags & VM_SOFTDIRTY:
            out[(lo - start_vaddr) >> PAGE_SHIFT:(hi - start_vaddr) >> PAGE_SHIFT] = PM_SOFT_DIRTY
        if vma.vm_flags & VM_HUGETLB:
            pagemap_hugetlb_range(k, vma, lo, hi, out, start_vaddr, show_pfn)
            continue

        def leaf(addr, end, shift, e, vma=vma):
            if shift == PAGE_SHIFT:
                out[(addr - start_vaddr) >> PAGE_SHIFT] = pte_to_pagemap_entry(k, vma, addr, e,
                                                                               show_pfn)
            elif shift == 21:
                _pagemap_pmd(k, vma, addr, end, e, out, start_vaddr, show_pfn)

        walk_page_range(mm, lo, hi, leaf)
    return out.astype("<u8").tobytes()[:count]
