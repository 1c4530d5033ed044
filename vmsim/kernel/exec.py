"""Starting a program: the address space after execve (fs/exec.c, fs/binfmt_elf.c,
arch/x86/mm/mmap.c, arch/x86/entry/vdso/vma.c).

exec builds a fresh mm (bprm_mm_init -> mm_alloc -> mm_init -> mm_alloc_pgd ->
pgd_alloc), maps the ELF segments, then setup_arg_pages leaves the stack VMA at
STACK_TOP with 128 KiB of initial expansion (stack_expand), and arch_setup_additional_pages
maps [vvar], [vvar_vclock] and [vdso] just below mmap_base. With ASLR off the layout is
the one measured on the reference machine for a minimal static program (see
docs/linux-layout.md): the binary at 0x400000, brk at the page-aligned end of .bss.

The program image is one sparse ext4 file (vmsim.fs: its pages read as zeros,
without I/O) mapped from the page cache as the ELF loader maps it, shared by every
process; vvar and vdso faults insert special PFN mappings (no accounting); the heap that
glibc's start-up creates with sbrk is not there (spawn() is the state right after
execve, before any user code runs); only the top stack page (argv/envp/auxv) is
populated.
"""
from vmsim.arch.x86.mm.pkeys import pkru_get_init_value
from vmsim.mm.mm_types import (vm_area_struct, VM_READ, VM_WRITE, VM_EXEC, VM_MAYREAD, VM_MAYWRITE,
                               VM_MAYEXEC, VM_GROWSDOWN, VM_ACCOUNT, VM_DONTEXPAND, VM_IO,
                               VM_PFNMAP, VM_DONTDUMP, VM_MIXEDMAP, VM_FAULT_SIGBUS,
                               VM_FAULT_NOPAGE, VM_FAULT_OOM, VM_FAULT_LOCKED)
from vmsim.mm.mmap import vm_get_page_prot, vma_set_page_prot
from vmsim.mm.vma import vm_stat_account

STACK_TOP_L4 = (1 << 47) - 4096
SIZE_128M = 128 << 20
STACK_EXPAND = 128 << 10                          # setup_arg_pages stack_expand
VDSO_PAGES, VVAR_PAGES, VVAR_VCLOCK_PAGES = 2, 4, 2

# The minimal static program (pause_min on the reference machine, readelf -lW).
EXE_PATH = "/usr/local/bin/vmsim-minimal"
EXE_SEGMENTS = [          # (start, end, prot, file offset)
    (0x400000, 0x401000, VM_READ, 0x0),
    (0x401000, 0x479000, VM_READ | VM_EXEC, 0x1000),
    (0x479000, 0x4a0000, VM_READ, 0x79000),
    (0x4a0000, 0x4a4000, VM_READ, 0xa0000),        # RELRO, mprotected read-only
    (0x4a4000, 0x4a7000, VM_READ | VM_WRITE, 0xa4000),
]
EXE_BSS = (0x4a7000, 0x4ac000)
EXE_SIZE = 0xa7000
EXE_INO = 5308492


class _SpecialMapping:
    """_install_special_mapping() ops: [vvar], [vvar_vclock], [vdso]."""

    def __init__(self, name):
        self.name = name

    @staticmethod
    def may_split(vma, addr) -> int:
        """special_mapping_split(): special mappings cannot be split."""
        return -22

    def fault(self, vmf):
        """special_mapping_fault(): vmsim inserts a special PFN PTE (vmf_insert_pfn)."""
        from vmsim.arch.x86.pgtable import pte_mkspecial, pfn_pte, pte_offset_map, set_pte_at
        from vmsim.mm.memory import pte_alloc
        vma = vmf.vma
        mm = vma.vm_mm
        k = mm.kernel
        if pte_alloc(mm, vmf.pmd):
            return VM_FAULT_OOM
        pfn = k.special_pages[self.name] + ((vmf.address - vma.vm_start) >> 12)
        ptep = pte_offset_map(mm, vmf.pmd, vmf.address)
        set_pte_at(mm, vmf.address, ptep, pte_mkspecial(pfn_pte(pfn, vma.vm_page_prot)))   # insert_pfn
        return VM_FAULT_NOPAGE


STACK_RND_MASK = 0x3FFFFF                         # 64-bit: 22 bits of pages (16 GiB)
MMAP64_RND_BITS = 28                             # /proc/sys/vm/mmap_rnd_bits on the reference


def stack_maxrandom_size(rng) -> int:
    """stack_maxrandom_size(): the largest stack randomisation (0 without PF_RANDOMIZE)."""
    return STACK_RND_MASK << 12 if rng is not None else 0


def arch_mmap_rnd(rng) -> int:
    """arch_mmap_rnd() -> arch_rnd(mmap64_rnd_bits): page-aligned random offset."""
    return rng.getrandbits(MMAP64_RND_BITS) << 12 if rng is not None else 0


def mmap_base(k, rnd: int, task_size: int, rlim_stack: int, rng=None) -> int:
    """mmap_base() (arch/x86/mm/mmap.c): task_size minus the clamped stack gap and rnd."""
    gap = rlim_stack
    pad = stack_maxrandom_size(rng) + k.stack_guard_gap
    if gap + pad > gap:
        gap += pad
    gap_min = SIZE_128M
    gap_max = (task_size // 6) * 5
    gap = min(max(gap, gap_min), gap_max)
    return (task_size - gap - rnd + 0xFFF) & ~0xFFF


def arch_pick_mmap_layout(mm, rlim_stack: int, rng=None):
    """arch_pick_mmap_layout(): top-down layout; legacy base at TASK_UNMAPPED_BASE + rnd.
    ``rng`` set means PF_RANDOMIZE (vmsim's seeded ASLR); None means ASLR off."""
    k = mm.kernel
    rnd = arch_mmap_rnd(rng)
    mm.mmap_base = mmap_base(k, rnd, STACK_TOP_L4, rlim_stack, rng)
    mm.mmap_legacy_base = (((STACK_TOP_L4 // 3) + 0xFFF) & ~0xFFF) + rnd


def randomize_stack_top(stack_top: int, rng=None) -> int:
    """randomize_stack_top() (mm/util.c): up to STACK_RND_MASK pages below STACK_TOP."""
    random_variable = (rng.getrandbits(64) & STACK_RND_MASK) << 12 if rng is not None else 0
    return ((stack_top + 0xFFF) & ~0xFFF) - random_variable


def arch_randomize_brk(brk: int, rng=None) -> int:
    """arch_randomize_brk() -> randomize_page(mm->brk, SZ_32M) on 64-bit."""
    if rng is None:
        return brk
    return brk + (rng.getrandbits(64) % ((32 << 20) >> 12) << 12)


def _map(mm, start, end, flags, pgoff, file=None, ops=None, name=None):
    vma = vm_area_struct(mm, start, end, flags, vm_get_page_prot(flags), pgoff, file, ops)
    vma.vm_private_data = name
    vma_set_page_prot(vma)
    mm._vma_store(vma)
    vm_stat_account(mm, flags, (end - start) >> 12)
    return vma


def _setup_new_exec_layout(k, mm, task, rng=None):
    """The mm of a freshly exec'ed minimal static program (load_elf_binary + friends).

    ``rng`` (a random.Random) turns on vmsim's seeded ASLR: mmap_base, the stack top and
    the brk start are randomised as with randomize_va_space=2 (the non-PIE binary itself
    stays at 0x400000, as the kernel leaves it)."""
    rlim_stack = task.rlim["RLIMIT_STACK"]
    arch_pick_mmap_layout(mm, rlim_stack, rng)
    mm.task_size = k.task_size_max if k.la57 else STACK_TOP_L4
    exe = open_exec(k)
    base_flags = VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
    from vmsim.fs.ext4 import ext4_file_vm_ops
    for start, end, prot, off in EXE_SEGMENTS:
        _map(mm, start, end, prot | base_flags, off >> 12, exe, ext4_file_vm_ops)
        exe.f_count += 1
    exe.f_count -= 1
    # The bss tail beyond the file: anonymous (vm_brk_flags), accounted.
    _map(mm, EXE_BSS[0], EXE_BSS[1], VM_READ | VM_WRITE | base_flags | VM_ACCOUNT,
         EXE_BSS[0] >> 12)
    k.committed_as += (EXE_BSS[1] - EXE_BSS[0]) >> 12
    mm.start_code, mm.end_code = 0x401000, 0x479000
    mm.start_data, mm.end_data = 0x4a06d8, 0x4a6270
    mm.start_brk = mm.brk = arch_randomize_brk(EXE_BSS[1], rng)
    # arch_setup_additional_pages(): vvar, vvar_vclock, vdso just below mmap_base.
    top = mm.mmap_base
    vdso = top - VDSO_PAGES * 4096
    vclock = vdso - VVAR_VCLOCK_PAGES * 4096
    vvar = vclock - VVAR_PAGES * 4096
    _map(mm, vvar, vclock, VM_READ | VM_MAYREAD | VM_IO | VM_DONTDUMP | VM_PFNMAP | VM_DONTEXPAND,
         0, None, _SpecialMapping("[vvar]"), "[vvar]")
    _map(mm, vclock, vdso, VM_READ | VM_MAYREAD | VM_IO | VM_DONTDUMP | VM_PFNMAP | VM_DONTEXPAND,
         0, None, _SpecialMapping("[vvar_vclock]"), "[vvar_vclock]")
    _map(mm, vdso, top, VM_READ | VM_EXEC | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC |
         VM_DONTEXPAND | VM_MIXEDMAP, 0, None, _SpecialMapping("[vdso]"), "[vdso]")
    # setup_arg_pages(): one page of argv/envp strings at STACK_TOP, expanded by 128 KiB.
    stack_top = randomize_stack_top(STACK_TOP_L4, rng)
    sflags = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC | VM_GROWSDOWN | VM_ACCOUNT
    stack = _map(mm, stack_top - 4096 - STACK_EXPAND, stack_top, sflags,
                 (stack_top - 4096 - STACK_EXPAND) >> 12, None, None, "[stack]")
    k.committed_as += (stack.vm_end - stack.vm_start) >> 12
    mm.start_stack = stack_top - 0x8e0
    mm.arg_start = stack_top - 0x500
    mm.arg_end = mm.env_start = stack_top - 0x4e0
    mm.env_end = stack_top - 0x20
    return stack


def open_exec(k):
    """open_exec() of the program, then prepare_binprm(): kernel_read() of the first
    BINPRM_BUF_SIZE (256) bytes through the page cache, whose sync readahead
    (get_init_ra_size(1) = 4 pages, PG_readahead on the second) leaves the image's
    first pages cached: the text faults that follow are minor and start the async
    readahead. The image is one ext4 file shared by every process (text pages
    Shared_Clean in smaps when several map them)."""
    from vmsim.fs.namei import _get_vfs
    from vmsim.fs.file import file, O_RDONLY
    from vmsim.mm.filemap import filemap_read
    ino = _get_vfs(k).exe_inode
    f = file(ino, EXE_PATH, O_RDONLY)
    filemap_read(k, f, 0, 256)
    return f


def exec_mmap(k, tsk, mm) -> int:
    """exec_mmap(): switch the task to the new mm (activate_mm loads its CR3 on the
    task's CPU), then drop the old one with mmput (exit_mmap when it was the last user)."""
    from vmsim.kernel.fork import mmput
    old_mm = tsk.mm
    tsk.mm = tsk.active_mm = mm
    from vmsim.arch.x86.mm.tlb import switch_mm_irqs_off
    from vmsim.kernel.sched import _release_lazy_users
    switch_mm_irqs_off(k, tsk.cpu, mm)                   # activate_mm -> switch_mm
    k.cpus[tsk.cpu].curr = tsk
    if old_mm is not None:
        mmput(old_mm)
        if old_mm.mm_users == 0:                         # lazy-TLB users let it go
            _release_lazy_users(k, old_mm)
    return 0


def bprm_mm_init(k):
    """bprm_mm_init(): the new program's mm (mm_alloc -> mm_init -> mm_alloc_pgd ->
    pgd_alloc); None on OOM. The temporary stack VMA of __bprm_mm_init is folded into
    _setup_new_exec_layout's final one."""
    from vmsim.kernel.fork import mm_alloc
    return mm_alloc(k)


def do_execve(k, tsk) -> int:
    """do_execveat_common() of the minimal static program: bprm_mm_init (mm_alloc ->
    mm_init -> mm_alloc_pgd -> pgd_alloc), begin_new_exec -> exec_mmap (the old mm is
    dropped), then the program's layout (_setup_new_exec_layout). 0 or -ENOMEM.

    Simplified: the new mm is laid out after exec_mmap rather than built in
    bprm->mm first (no observable difference: the old mm is gone either way once
    execve returns); the argument page is written by the caller.
    """
    mm = bprm_mm_init(k)
    if mm is None:
        return -12
    exec_mmap(k, tsk, mm)
    from vmsim.fs.file import do_close_on_exec
    do_close_on_exec(k, tsk)
    # flush_thread() -> fpu_flush_thread(): the FPU state, PKRU included, is reset
    # (pkru_write_default: init_pkru_value).
    tsk.pkru = pkru_get_init_value(k)
    _setup_new_exec_layout(k, mm, tsk)
    return 0
