"""The booted kernel: the machine-wide state mm/ and arch/ code reach through ``k``.

In Linux these are globals (mem_map, the zones, vm_event_states, init_mm, the
sysctls); vmsim keeps them on one Kernel object so several machines can coexist.
Boot (start_kernel, mem_init, paging_init) reserves the low 1 MiB and the kernel
image, builds init_mm's page tables for the kernel half of the address space
(the direct map with 1 GiB pages and the kernel text with 2 MiB pages, per
Documentation/arch/x86/x86_64/mm.rst) and sets up the zero page.
"""
from vmsim.arch.x86.pgtable import PageTablePool, _mk_kernel_table_entry
from vmsim.arch.x86 import pgtable_types as T
from vmsim.kernel.sched import cpu_state, _context_switch
from vmsim.arch.x86.mm.tlb import _kernel_entry
from vmsim.mm import vmstat
from vmsim.mm.mm_types import mm_struct
from vmsim.mm.page_alloc import PageAllocator
from vmsim.mm.page_data import PageData
from vmsim.mm.page_flags import PG_reserved, PGTY_table
from vmsim.mm.swap import lruvec, cpu_fbatches
from vmsim.profiles import load_profile
from vmsim.fs.sysfs import SYSCTL_VARS

KERNEL_IMAGE_PFN = 0x1000            # the kernel is loaded at 16 MiB (CONFIG_PHYSICAL_START)
KERNEL_IMAGE_PAGES = 0x2000          # 32 MiB: text, data, bss, boot page tables (memblock)
# Layout of the kernel half (mm.rst, 4-level; 5-level in parentheses).
PAGE_OFFSET_L4 = 0xFFFF888000000000
PAGE_OFFSET_L5 = 0xFF11000000000000
VMALLOC_START_L4 = 0xFFFFC90000000000
VMEMMAP_START_L4 = 0xFFFFEA0000000000
START_KERNEL_map = 0xFFFFFFFF80000000
VSYSCALL_ADDR = 0xFFFFFFFFFF600000


class Kernel:
    """Machine-wide state of one simulated Linux instance."""

    def __init__(self, memory_bytes: int, ncpus: int = 1, paging_levels: int = 4,
                 kernel: str = "6.18", pku: bool = False, tlb=None, pcid: bool = True,
                 pti: bool = False, invpcid: bool = True):
        self.profile = load_profile(kernel)
        self.release = self.profile["kernel"]["release"]
        self.la57 = paging_levels == 5
        self.paging_levels = paging_levels
        self.pgdir_shift = 48 if self.la57 else 39
        # TASK_SIZE_MAX = (1 << __VIRTUAL_MASK_SHIFT) - PAGE_SIZE; default mmap window 47 bits.
        self.task_size_max = (1 << (56 if self.la57 else 47)) - 4096
        self.default_map_window = (1 << 47) - 4096
        self.page_offset = PAGE_OFFSET_L5 if self.la57 else PAGE_OFFSET_L4
        self.ncpus = ncpus
        # X86_FEATURE_PKU + OSPKE: protection keys (vmsim.arch.x86.mm.pkeys).
        self.pku = bool(pku)
        nr_pages = memory_bytes >> 12
        if nr_pages < KERNEL_IMAGE_PFN + KERNEL_IMAGE_PAGES + 4096:
            raise ValueError("memory must be at least 64 MiB")
        self.memory_bytes = memory_bytes
        self.nr_pages = nr_pages
        self.page_alloc = PageAllocator(
            nr_pages, ncpus, [(KERNEL_IMAGE_PFN, KERNEL_IMAGE_PFN + KERNEL_IMAGE_PAGES)])
        self.page_alloc.kernel = self
        self.mem = self.page_alloc.mem
        self.log_buf = []              # printk records (vmsim.kernel.printk)
        self.ratelimit = {}
        self.panicked = None
        # The user's capabilities: root with CAP_SYS_RESOURCE (a container may drop it,
        # as the reference machine's does).
        self.cap_sys_resource = True
        self.page_data = PageData(self.mem.private)
        self.ptpool = PageTablePool(nr_pages)
        self.vmstat = [0] * vmstat.NR_VMSTAT_ITEMS
        self.lruvec = lruvec()
        from vmsim.mm.workingset import workingset_init
        workingset_init(self)
        self.cpu_fbatches = [cpu_fbatches() for _ in range(ncpus)]
        self.cpus = [cpu_state(i) for i in range(ncpus)]
        self.objects = [None]          # object ids (anon_vma, address_space); 0 is NULL
        self.free_object_ids = []
        self.tasks = {}
        self.next_pid = 1
        self.current = None
        self.tlb_flushes = []
        self.tlb_pending = []
        self.debug_vm = False
        self.checker = None
        self.trace_hook = None
        self.sysfs = dict(self.profile["sysfs"])
        self.sysctl = dict(self.profile["sysctl"])
        self.mmap_min_addr = int(self.sysctl["/proc/sys/vm/mmap_min_addr"])
        for path, var in SYSCTL_VARS.items():      # sysctl_max_map_count, ... as ints
            setattr(self, var, int(self.sysctl[path]))
        # khugepaged starts at boot when PMD THPs are enabled and raises
        # min_free_kbytes (start_stop_khugepaged -> set_recommended_min_free_kbytes).
        self.page_alloc.set_recommended_min_free_kbytes(
            self.sysfs["/sys/kernel/mm/transparent_hugepage/enabled"] in ("always", "madvise"))
        self.stack_guard_gap = self.profile["mm"]["stack_guard_gap_pages"] << 12
        self.fault_around_pages = self.profile["mm"]["fault_around_bytes"] >> 12
        self.committed_as = 0
        self._memblock_next = KERNEL_IMAGE_PFN + KERNEL_IMAGE_PAGES // 2
        # The zero page: empty_zero_page lives in the kernel image's bss.
        self.zero_pfn = self._memblock_alloc()
        # Pages behind [vvar], [vvar_vclock] and [vdso] (kernel image data).
        self.special_pages = {}
        for name, n in (("[vvar]", 4), ("[vvar_vclock]", 2), ("[vdso]", 2)):
            self.special_pages[name] = self._memblock_alloc()
            for _ in range(n - 1):
                self._memblock_alloc()
        self.init_mm = mm_struct(self)
        self._build_kernel_page_tables()
        self._init_tlb(tlb, pcid, pti, invpcid)
        self.shmem_files = []
        self._next_ino = 1
        # Files (vmsim.fs): descriptor tables by pid; the mount tree is built on first
        # use (vmsim.fs.namei.get_vfs) with this disk's per-request latency.
        self.task_files = {}
        self.vfs = None
        self.disk_latency_ns = 0
        from vmsim.mm.hugetlb import hugetlb_init
        hugetlb_init(self)
        from vmsim.mm.mmap import init_user_reserve
        init_user_reserve(self)
        self.mmu_notifier_log = []

    def _init_tlb(self, tlb, pcid, pti, invpcid):
        """X86_FEATURE_PCID / PTI / INVPCID, the CPUs' TLBs (None: not modelled, every
        access walks) and initialize_tlbstate_and_flush() on each CPU: init_mm loaded
        with ASID 0. With PTI the kernel mappings lose _PAGE_GLOBAL (pti_init)."""
        from vmsim.arch.x86.tlb import TLBState, geometry
        self.pcid = bool(pcid)
        self.pti = bool(pti)
        self.invpcid = bool(invpcid) and self.pcid
        self.tlb = None if tlb is None else TLBState(self.ncpus, geometry(tlb), self.pcid)
        self.tlb_check = False         # the stale-TLB checker (Machine sets it with debug_vm)
        self.last_mm_ctx_id = 1        # last_mm_ctx_id: init_mm has 1
        self.init_mm.ctx_id = 1
        for c in self.cpus:
            ts = c.tlbstate
            ts.loaded_mm = self.init_mm
            ts.ctxs[0][0] = self.init_mm.ctx_id
            c.cr3 = self.init_mm.pgd
        if self.pti:
            self._clear_kernel_global()

    def _clear_kernel_global(self):
        """pti_clone_kernel_text / pti_set_kernel_image_nonglobal: no global kernel pages."""
        from vmsim.arch.x86 import pgtable_types as T
        pool = self.ptpool.mv
        row = self.mem.private
        base = self.init_mm.pgd_ptr

        def clear(ptr, level):
            for i in range(512):
                e = pool[ptr + i]
                if not e & T._PAGE_PRESENT:
                    continue
                if level == 1 or e & T._PAGE_PSE:
                    pool[ptr + i] = e & ~T._PAGE_GLOBAL
                else:
                    clear(row[(e & T.PTE_PFN_MASK) >> 12] * 512, level - 1)
        for i in range(256, 512):
            e = pool[base + i]
            if e & T._PAGE_PRESENT:
                clear(row[(e & T.PTE_PFN_MASK) >> 12] * 512, self.paging_levels - 1)

    def get_next_ino(self) -> int:
        """get_next_ino() (fs/inode.c): the next number for an inode of a pseudo filesystem."""
        self._next_ino += 1
        return self._next_ino

    # --- MMU notifiers (mm/mmu_notifier.c) ------------------------------------------
    def mmu_notifier_invalidate_range_start(self, mm, event: str, start: int, end: int):
        """mmu_notifier_invalidate_range_start(): tell registered notifiers."""
        for n in mm.mmu_notifiers:
            n("invalidate_range_start", event, start, end)

    def mmu_notifier_invalidate_range_end(self, mm, event: str, start: int, end: int):
        for n in mm.mmu_notifiers:
            n("invalidate_range_end", event, start, end)

    def _mmu_notifier_range_done(self, mm):
        pass

    # --- boot helpers ------------------------------------------------------------
    def _memblock_alloc(self) -> int:
        """memblock_alloc(): a boot-time frame from the reserved kernel image area."""
        pfn = self._memblock_next
        self._memblock_next += 1
        assert pfn < KERNEL_IMAGE_PFN + KERNEL_IMAGE_PAGES
        return pfn

    def _boot_table(self) -> int:
        pfn = self._memblock_alloc()
        self.mem.private[pfn] = self.ptpool._alloc_slot(pfn)
        self.mem.flags[pfn] = PG_reserved | PGTY_table
        return pfn

    def _build_kernel_page_tables(self):
        """init_mm's PGD: the direct map (1 GiB pages) and the kernel text (2 MiB pages)."""
        mm = self.init_mm
        mm.pgd = self._boot_table()
        pool = self.ptpool.mv
        row = self.mem.private
        mm.pgd_ptr = row[mm.pgd] * 512

        def _walk_alloc(addr, upto_shift):
            """Return the pool index of the entry for addr at level upto_shift."""
            shift = self.pgdir_shift
            p = mm.pgd_ptr + ((addr >> shift) & 511)
            while shift > upto_shift:
                if pool[p] == 0:
                    t = self._boot_table()
                    pool[p] = _mk_kernel_table_entry(t)
                shift -= 9
                p = row[(pool[p] & T.PTE_PFN_MASK) >> 12] * 512 + ((addr >> shift) & 511)
            return p

        # Direct map of all RAM: 1 GiB pages (X86_FEATURE_GBPAGES), supervisor, NX.
        prot_large = T.PAGE_KERNEL | T._PAGE_PSE
        for gb in range((self.memory_bytes + (1 << 30) - 1) >> 30):
            pool[_walk_alloc(self.page_offset + (gb << 30), 30)] = (gb << 30) | prot_large
        # Kernel text mapping: 512 MiB at START_KERNEL_map -> physical 0, 2 MiB pages.
        for i in range(min(256, (self.memory_bytes >> 21))):
            prot = (T.PAGE_KERNEL | T._PAGE_PSE) & ~T._PAGE_NX if i < 24 else T.PAGE_KERNEL | T._PAGE_PSE
            pool[_walk_alloc(START_KERNEL_map + (i << 21), 21)] = (i << 21) | prot

    # --- objects -------------------------------------------------------------------
    def _register_object(self, obj) -> int:
        if self.free_object_ids:
            oid = self.free_object_ids.pop()
            self.objects[oid] = obj
        else:
            oid = len(self.objects)
            self.objects.append(obj)
        return oid

    def _unregister_object(self, oid: int):
        self.objects[oid] = None
        self.free_object_ids.append(oid)

    # --- tasks and CPUs --------------------------------------------------------
    def _current_cpu(self) -> int:
        cur = self.current
        return cur.cpu if cur is not None else 0

    def switch_to(self, task):
        """The task enters the kernel on its CPU (a syscall): if another task ran there,
        _context_switch() -> switch_mm_irqs_off() first."""
        self.current = task
        cpu = self.cpus[task.cpu]
        _kernel_entry(self, task.cpu)
        if cpu.curr is not task or (task.mm is not None and cpu.loaded_mm is not task.mm):
            _context_switch(self, task.cpu, task)

    def kernel_pgd_entries(self):
        """Return (first index, entries) of init_mm's kernel-half PGD entries."""
        base = self.init_mm.pgd_ptr
        return 256, [self.ptpool.mv[base + i] for i in range(256, 512)]
