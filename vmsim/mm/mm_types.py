"""mm_struct, vm_area_struct, vm_fault and the flag sets they carry.

Mirrors include/linux/mm_types.h, include/linux/mm.h (VM_*, FAULT_FLAG_*) and
include/linux/mm_types.h's vm_fault_t (VM_FAULT_*). The maple tree is modelled as
two sorted parallel lists (vm_end keys and VMAs) searched with bisect.
"""
from bisect import bisect_left, bisect_right

from vmsim.mm._gap_tree import _gap_tree

# VM_* (include/linux/mm.h)
VM_NONE = 0
VM_READ = 0x1
VM_WRITE = 0x2
VM_EXEC = 0x4
VM_SHARED = 0x8
VM_MAYREAD = 0x10
VM_MAYWRITE = 0x20
VM_MAYEXEC = 0x40
VM_MAYSHARE = 0x80
VM_GROWSDOWN = 0x100
VM_UFFD_MISSING = 0x200
VM_PFNMAP = 0x400
# Not in 6.18.2; in 6.18.y by 6.18.44 (a guard install shows "gu" in smaps VmFlags on
# this machine): upstream 5dba5cc2e0ff "mm: introduce VM_MAYBE_GUARD and make visible
# in /proc/$pid/smaps", backported in "[PATCH 6.18.y] mm: backport sticky VMA flags
# and soft-dirty fix" (2026).
VM_MAYBE_GUARD = 0x800
VM_UFFD_WP = 0x1000
VM_LOCKED = 0x2000
VM_IO = 0x4000
VM_SEQ_READ = 0x8000
VM_RAND_READ = 0x10000
VM_DONTCOPY = 0x20000
VM_DONTEXPAND = 0x40000
VM_LOCKONFAULT = 0x80000
VM_ACCOUNT = 0x100000
VM_NORESERVE = 0x200000
VM_HUGETLB = 0x400000
VM_SYNC = 0x800000
VM_ARCH_1 = 0x1000000
VM_WIPEONFORK = 0x2000000
VM_DONTDUMP = 0x4000000
VM_SOFTDIRTY = 0              # CONFIG_MEM_SOFT_DIRTY off in this profile
VM_MIXEDMAP = 0x10000000
VM_HUGEPAGE = 0x20000000
VM_NOHUGEPAGE = 0x40000000
VM_MERGEABLE = 0x80000000
VM_DROPPABLE = 1 << 40          # VM_DROPPABLE_BIT (CONFIG_64BIT): MAP_DROPPABLE
VM_STACK = VM_GROWSDOWN
VM_STACK_INCOMPLETE_SETUP = 0x10000 | 0x8000     # VM_RAND_READ | VM_SEQ_READ
VM_LOCKED_MASK = VM_LOCKED | VM_LOCKONFAULT
VM_ACCESS_FLAGS = VM_READ | VM_WRITE | VM_EXEC
VM_DATA_DEFAULT_FLAGS = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC  # VM_DATA_FLAGS_TSK_EXEC w/o exec
VM_STACK_DEFAULT_FLAGS = VM_DATA_DEFAULT_FLAGS
VM_SPECIAL = VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP
# Sticky flags (upstream 64212ba02e66 "mm: implement sticky VMA flags", same 6.18.y
# backport; verified on this machine's 6.18.44: a VMA without "gu" merges with one
# that has it, and the merged VMA keeps it): a difference in them does not prevent
# a merge, and the merged VMA gets all of them.
VM_STICKY = VM_MAYBE_GUARD
VM_IGNORE_MERGE = VM_SOFTDIRTY | VM_STICKY

# FAULT_FLAG_* (include/linux/mm_types.h enum fault_flag)
FAULT_FLAG_WRITE = 1 << 0
FAULT_FLAG_MKWRITE = 1 << 1
FAULT_FLAG_ALLOW_RETRY = 1 << 2
FAULT_FLAG_RETRY_NOWAIT = 1 << 3
FAULT_FLAG_KILLABLE = 1 << 4
FAULT_FLAG_TRIED = 1 << 5
FAULT_FLAG_USER = 1 << 6
FAULT_FLAG_REMOTE = 1 << 7
FAULT_FLAG_INSTRUCTION = 1 << 8
FAULT_FLAG_INTERRUPTIBLE = 1 << 9
FAULT_FLAG_UNSHARE = 1 << 10
FAULT_FLAG_ORIG_PTE_VALID = 1 << 11
FAULT_FLAG_VMA_LOCK = 1 << 12
FAULT_FLAG_DEFAULT = FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE | FAULT_FLAG_INTERRUPTIBLE

# vm_fault_t (include/linux/mm_types.h enum vm_fault_reason)
VM_FAULT_OOM = 0x000001
VM_FAULT_SIGBUS = 0x000002
VM_FAULT_MAJOR = 0x000004
VM_FAULT_HWPOISON = 0x000010
VM_FAULT_HWPOISON_LARGE = 0x000020
VM_FAULT_SIGSEGV = 0x000040
VM_FAULT_NOPAGE = 0x000100
VM_FAULT_LOCKED = 0x000200
VM_FAULT_RETRY = 0x000400
VM_FAULT_FALLBACK = 0x000800
VM_FAULT_DONE_COW = 0x001000
VM_FAULT_NEEDDSYNC = 0x002000
VM_FAULT_COMPLETED = 0x004000
VM_FAULT_ERROR = (VM_FAULT_OOM | VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV | VM_FAULT_HWPOISON |
                  VM_FAULT_HWPOISON_LARGE | VM_FAULT_FALLBACK)

VM_FAULT_NAMES = {VM_FAULT_OOM: "OOM", VM_FAULT_SIGBUS: "SIGBUS", VM_FAULT_MAJOR: "MAJOR",
                  VM_FAULT_HWPOISON: "HWPOISON", VM_FAULT_SIGSEGV: "SIGSEGV",
                  VM_FAULT_NOPAGE: "NOPAGE", VM_FAULT_LOCKED: "LOCKED", VM_FAULT_RETRY: "RETRY",
                  VM_FAULT_FALLBACK: "FALLBACK", VM_FAULT_DONE_COW: "DONE_COW",
                  VM_FAULT_COMPLETED: "COMPLETED"}

# mm counters (include/linux/mm_types_task.h)
MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES = 0, 1, 2, 3
NR_MM_COUNTERS = 4


class vm_area_struct:
    """struct vm_area_struct."""
    __slots__ = ("vm_start", "vm_end", "vm_mm", "vm_page_prot", "vm_flags", "vm_pgoff",
                 "vm_file", "vm_ops", "anon_vma", "anon_vma_chain", "vm_private_data", "anon_name",
                 "vm_lock_seq", "detached", "_mt_node", "__weakref__")

    def __init__(self, mm, start, end, flags, prot, pgoff=0, file=None, ops=None):
        self.vm_mm = mm
        self.vm_start = start
        self.vm_end = end
        self.vm_flags = flags
        self.vm_page_prot = prot
        self.vm_pgoff = pgoff
        self.vm_file = file
        self.vm_ops = ops
        self.anon_vma = None
        self.anon_vma_chain = []
        self.vm_private_data = None
        self.anon_name = None
        self.vm_lock_seq = 0
        self.detached = False
        self._mt_node = None        # vmsim-only: its node in mm._mt_gap

    def __repr__(self):
        # As /proc/PID/maps and smaps' VmFlags show it (for people, never on a hot path).
        f = self.vm_flags
        perms = ("r" if f & VM_READ else "-") + ("w" if f & VM_WRITE else "-") + \
            ("x" if f & VM_EXEC else "-") + ("s" if f & VM_MAYSHARE else "p")
        try:
            from vmsim.fs.proc.task_mmu import get_vma_name, show_smap_vma_flags
            name = get_vma_name(self)
            flags = show_smap_vma_flags(self).split(":", 1)[1].strip()
        except Exception:                  # a VMA being built or torn down
            name, flags = None, f"{f:#x}"
        return (f"<vm_area_struct {self.vm_start:08x}-{self.vm_end:08x} {perms} "
                f"{(self.vm_pgoff << 12) if self.vm_file is not None else 0:08x}"
                f"{' ' + name if name else ''} ({(self.vm_end - self.vm_start) >> 12} pages)"
                f" VmFlags: {flags}{' detached' if self.detached else ''}>")


def vma_is_anonymous(vma) -> bool:
    """Return whether the VMA has no vm_ops (vma_is_anonymous())."""
    return vma.vm_ops is None


def vma_is_accessible(vma) -> bool:
    return bool(vma.vm_flags & VM_ACCESS_FLAGS)


def vma_pages(vma) -> int:
    return (vma.vm_end - vma.vm_start) >> 12


def linear_page_index(vma, address: int) -> int:
    """Return the page-cache index of ``address`` in ``vma`` (linear_page_index())."""
    return ((address - vma.vm_start) >> 12) + vma.vm_pgoff


class mm_struct:
    """struct mm_struct: the VMA tree, the PGD, counters and layout."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.mm_mt_ends = []        # sorted vm_end of each VMA (maple tree keys)
        self.mm_mt = []             # the VMAs, in address order
        self._mt_gap = _gap_tree()  # the maple tree's gap tracking (mm/_gap_tree.py)
        self.pgd = -1               # PFN of the PGD page
        self.pgd_ptr = 0            # pool index of pgd entry 0
        self.rss_stat = [0] * NR_MM_COUNTERS
        self.hiwater_rss = 0
        self.hiwater_vm = 0
        self.total_vm = 0
        self.locked_vm = 0
        self.pinned_vm = 0
        self.data_vm = 0
        self.exec_vm = 0
        self.stack_vm = 0
        self.pgtables_bytes = 0
        self.map_count = 0
        self.mmap_base = 0
        self.mmap_legacy_base = 0
        self.task_size = 0
        self.start_code = self.end_code = self.start_data = self.end_data = 0
        self.start_brk = self.brk = self.start_stack = 0
        self.arg_start = self.arg_end = self.env_start = self.env_end = 0
        self.def_flags = 0
        self.mm_users = 1
        self.mm_count = 1
        self.flags = 0
        self.context_id = 0
        # mm->context's pkey state (arch/x86/include/asm/mmu.h); zero as mm_alloc's
        # memset leaves it; init_new_context() sets it up when the CPU has pkeys.
        self.pkey_allocation_map = 0
        self.execute_only_pkey = 0
        self.mmu_notifiers = []
        self.tlb_flush_pending = 0
        self.owner = None
        # mm->context's TLB state (asm/mmu.h) and mm_cpumask: init_new_context sets them.
        self.ctx_id = 0
        self.tlb_gen = 0
        self.cpumask = set()

    # --- the VMA tree (mm/mmap.c find_vma, maple tree walks) ------------------
    def find_vma(self, addr: int):
        """Return the first VMA with vm_end > addr, or None (find_vma())."""
        mt = self.mm_mt
        i = bisect_right(self.mm_mt_ends, addr)
        return mt[i] if i < len(mt) else None

    def vma_lookup(self, addr: int):
        """Return the VMA containing addr, or None (vma_lookup())."""
        i = bisect_right(self.mm_mt_ends, addr)
        if i < len(self.mm_mt):
            v = self.mm_mt[i]
            if v.vm_start <= addr:
                return v
        return None

    def find_vma_prev(self, addr: int):
        """Return (vma, prev) as find_vma_prev() does."""
        mt = self.mm_mt
        i = bisect_right(self.mm_mt_ends, addr)
        return (mt[i] if i < len(mt) else None), (mt[i - 1] if i else None)

    def vma_prev(self, vma):
        i = self._index(vma)
        return self.mm_mt[i - 1] if i > 0 else None

    def vma_next(self, vma):
        i = self._index(vma)
        return self.mm_mt[i + 1] if i + 1 < len(self.mm_mt) else None

    def _index(self, vma) -> int:
        mt = self.mm_mt
        i = bisect_left(self.mm_mt_ends, vma.vm_end)
        while mt[i] is not vma:
            i += 1
        return i

    def _vmas_in(self, start: int, end: int):
        """Return the VMAs intersecting [start, end), in order."""
        i = bisect_right(self.mm_mt_ends, start)
        out = []
        while i < len(self.mm_mt) and self.mm_mt[i].vm_start < end:
            out.append(self.mm_mt[i])
            i += 1
        return out

    def _vma_store(self, vma):
        """Insert ``vma`` (no overlap allowed) (vma_iter_store())."""
        mt = self.mm_mt
        i = bisect_right(self.mm_mt_ends, vma.vm_start)
        assert i == len(mt) or mt[i].vm_start >= vma.vm_end, "VMA overlap"
        gaps = self._mt_gap
        # The next VMA's gap first: when it held the big gap, the new VMA takes it.
        if i < len(mt):
            nxt = mt[i]
            gaps._set_gap(nxt, nxt.vm_start - vma.vm_end)
        self.mm_mt_ends.insert(i, vma.vm_end)
        mt.insert(i, vma)
        self.map_count += 1
        gaps._insert(vma, vma.vm_start - (mt[i - 1].vm_end if i else 0))

    def _vma_remove(self, vma):
        i = self._index(vma)
        mt = self.mm_mt
        del mt[i]
        del self.mm_mt_ends[i]
        self.map_count -= 1
        vma.detached = True
        gaps = self._mt_gap
        gaps._delete(vma)
        if i < len(mt):
            nxt = mt[i]
            gaps._set_gap(nxt, nxt.vm_start - (mt[i - 1].vm_end if i else 0))

    def _vma_update(self, vma, start: int, end: int):
        """Change a VMA's bounds in place, keeping the tree ordered (the new range
        may not overlap another VMA, so the VMA keeps its place)."""
        node = vma._mt_node
        old_start = vma.vm_start
        if end == vma.vm_end:
            # Only the start moves (a merge or stack growth in front of the VMA): the
            # tree's keys (vm_end) and neighbours stay, and the gap below changes by
            # as much as the start, so no lookup is needed.
            gap = node.gap + (start - old_start)
            assert gap >= 0, "VMA overlap"
            vma.vm_start = node.start = start
            self._mt_gap._node_gap(node, gap)
            return
        mt = self.mm_mt
        i = bisect_left(self.mm_mt_ends, vma.vm_end)         # _index(), inline
        while mt[i] is not vma:
            i += 1
        assert (i == 0 or mt[i - 1].vm_end <= start) and \
            (i + 1 == len(mt) or end <= mt[i + 1].vm_start), "VMA overlap"
        old_end = vma.vm_end
        vma.vm_start, vma.vm_end = start, end
        node.start, node.end = start, end
        self.mm_mt_ends[i] = end
        # Only the gaps next to a moved bound change.
        gaps = self._mt_gap
        if start != old_start:
            gaps._set_gap(vma, start - (mt[i - 1].vm_end if i else 0))
        if end != old_end and i + 1 < len(mt):
            nxt = mt[i + 1]
            gaps._set_gap(nxt, nxt.vm_start - end)

    def get_mm_counter(self, member: int) -> int:
        return self.rss_stat[member]

    def get_mm_rss(self) -> int:
        r = self.rss_stat
        return r[MM_FILEPAGES] + r[MM_ANONPAGES] + r[MM_SHMEMPAGES]


class vm_fault:
    """struct vm_fault: the state passed down the fault path (its fields only: a
    misspelt one raises; -1 is a NULL pointer)."""
    __slots__ = ("vma", "real_address", "address", "flags", "pgoff", "pud", "pmd", "pte",
                 "page", "cow_page", "folio", "prealloc_pte", "orig_pte", "orig_pmd",
                 "gfp_mask", "ptl")

    def __init__(self, vma, address, flags):
        self.vma = vma
        self.real_address = address
        self.address = address & ~0xFFF
        self.flags = flags
        self.pgoff = ((address - vma.vm_start) >> 12) + vma.vm_pgoff
        self.pud = self.pmd = self.pte = self.page = self.cow_page = self.folio = \
            self.prealloc_pte = -1
        self.orig_pte = self.orig_pmd = self.gfp_mask = 0
        self.ptl = None
