"""x86 memory protection keys (arch/x86/mm/pkeys.c, arch/x86/include/asm/pkeys.h,
pkru.h, mmu_context.h, arch/x86/kernel/fpu/xstate.c arch_set_user_pkey_access, 6.18).

A VMA carries a 4-bit key in vm_flags (VM_PKEY_BIT0..3, bits 32..35); vm_get_page_prot
copies it to PTE bits 59..62, and the CPU checks every user *data* access (never an
instruction fetch) against the running task's PKRU: two bits per key, AD (access
disable) and WD (write disable). A violation is a #PF with X86_PF_PK, which the fault
handler answers with SIGSEGV SEGV_PKUERR and the VMA's key in si_pkey.

Per mm (mm->context in the kernel; plain fields on vmsim's mm_struct so fork's
memcpy of the mm copies them, as arch_dup_pkeys does): ``pkey_allocation_map``
(bit n = key n allocated; key 0 implicitly) and ``execute_only_pkey`` (-1 until the
first exactly-PROT_EXEC mmap or mprotect allocates one and denies it data access in
the caller's PKRU). Per task: ``pkru`` (the XSAVE PKRU state), init_pkru_value at
exec, inherited by fork.

The CPU feature (X86_FEATURE_OSPKE) is per machine (``k.pku``); without it
arch_max_pkey() is 1, so pkey_alloc() finds no free key (ENOSPC), PROT_EXEC-only
mappings stay readable, and the MMU ignores the key bits (CR4.PKE clear: vmsim passes
PKRU 0 to the walk).
"""

PKEY_DISABLE_ACCESS = 0x1
PKEY_DISABLE_WRITE = 0x2
PKEY_ACCESS_MASK = PKEY_DISABLE_ACCESS | PKEY_DISABLE_WRITE
PKRU_AD_BIT = 0x1
PKRU_WD_BIT = 0x2
PKRU_BITS_PER_PKEY = 2
ARCH_DEFAULT_PKEY = 0

# include/linux/mm.h: VM_PKEY_SHIFT = VM_HIGH_ARCH_BIT_0 (32) on x86-64
VM_PKEY_SHIFT = 32
VM_PKEY_BIT0 = 1 << 32
VM_PKEY_BIT1 = 1 << 33
VM_PKEY_BIT2 = 1 << 34
VM_PKEY_BIT3 = 1 << 35
ARCH_VM_PKEY_FLAGS = VM_PKEY_BIT0 | VM_PKEY_BIT1 | VM_PKEY_BIT2 | VM_PKEY_BIT3


def PKRU_AD_MASK(pkey: int) -> int:
    return PKRU_AD_BIT << (pkey * PKRU_BITS_PER_PKEY)


# pkeys.c: deny access to every key but 0 at execve(), so early clone()d threads do
# not see data protected later. 0x55555554.
init_pkru_value = 0
for _k in range(1, 16):
    init_pkru_value |= PKRU_AD_MASK(_k)
del _k


def _cpu_has_ospke(k) -> bool:
    """cpu_feature_enabled(X86_FEATURE_OSPKE): the machine's CPU has PKU, CR4.PKE set."""
    return k.pku


def arch_pkeys_enabled(k) -> bool:
    return _cpu_has_ospke(k)


def arch_max_pkey(k) -> int:
    """arch_max_pkey(): 16 keys with OSPKE, else 1 (only the default key)."""
    return 16 if _cpu_has_ospke(k) else 1


def pkru_get_init_value(k) -> int:
    """pkru_get_init_value(): init_pkru_value (0 without pkeys)."""
    return init_pkru_value if _cpu_has_ospke(k) else 0


def read_pkru(k) -> int:
    """read_pkru(): the PKRU of the task running (current)."""
    return k.current.pkru if _cpu_has_ospke(k) else 0


def write_pkru(k, pkru: int):
    """write_pkru(): set current's PKRU (the register and its XSAVE image)."""
    if _cpu_has_ospke(k):
        k.current.pkru = pkru


def __pkru_allows_read(pkru: int, pkey: int) -> bool:
    return not pkru & (PKRU_AD_BIT << (pkey * PKRU_BITS_PER_PKEY))


def __pkru_allows_write(pkru: int, pkey: int) -> bool:
    # Access-disable disables writes too, so check both bits.
    return not pkru & ((PKRU_AD_BIT | PKRU_WD_BIT) << (pkey * PKRU_BITS_PER_PKEY))


def __pkru_allows_pkey(k, pkey: int, write: bool) -> bool:
    """__pkru_allows_pkey() (mmu_context.h): does current's PKRU allow this access?"""
    pkru = read_pkru(k)
    if not __pkru_allows_read(pkru, pkey):
        return False
    if write and not __pkru_allows_write(pkru, pkey):
        return False
    return True


def vma_pkey(vma) -> int:
    """vma_pkey(): the key in vm_flags bits VM_PKEY_BIT0..3."""
    return (vma.vm_flags & ARCH_VM_PKEY_FLAGS) >> VM_PKEY_SHIFT


def arch_calc_vm_prot_bits(prot: int, key: int) -> int:
    """arch_calc_vm_prot_bits() (arch/x86/include/asm/mman.h): the key as VM_PKEY_BIT*."""
    return (key & 0xF) << VM_PKEY_SHIFT


def arch_vma_access_permitted(k, vma, write: bool, execute: bool, foreign: bool) -> bool:
    """arch_vma_access_permitted() (mmu_context.h): pkeys never affect instruction
    fetches, nor accesses to another process's VMA; else ask current's PKRU."""
    if not k.pku:                     # _cpu_has_ospke(), inline: a static branch in C
        return True
    if execute:
        return True
    if foreign or vma.vm_mm is not k.current.mm:          # vma_is_foreign()
        return True
    return __pkru_allows_pkey(k, vma_pkey(vma), write)


# --- mm->context ---------------------------------------------------------------------

def _init_new_context_pkeys(mm):
    """The pkey part of init_new_context(): key 0 allocated implicitly, no exec-only key."""
    if _cpu_has_ospke(mm.kernel):
        mm.pkey_allocation_map = 0x1
        mm.execute_only_pkey = -1


def arch_dup_pkeys(oldmm, mm):
    """arch_dup_pkeys(): fork duplicates the parent's allocation map and exec-only key."""
    if not _cpu_has_ospke(mm.kernel):
        return
    mm.pkey_allocation_map = oldmm.pkey_allocation_map
    mm.execute_only_pkey = oldmm.execute_only_pkey


def mm_set_pkey_allocated(mm, pkey: int):
    mm.pkey_allocation_map |= 1 << pkey


def mm_set_pkey_free(mm, pkey: int):
    mm.pkey_allocation_map &= ~(1 << pkey)


def mm_pkey_is_allocated(mm, pkey: int) -> bool:
    """mm_pkey_is_allocated(): returned by pkey_alloc() (or key 0); the exec-only key
    is in the map but not available to the user interfaces."""
    if pkey < 0:
        return False
    if pkey >= arch_max_pkey(mm.kernel):
        return False
    if pkey == mm.execute_only_pkey:
        return False
    return bool(mm.pkey_allocation_map & (1 << pkey))


def mm_pkey_alloc(mm) -> int:
    """mm_pkey_alloc(): the lowest free key (ffz), or -1 when all are taken."""
    all_pkeys_mask = (1 << arch_max_pkey(mm.kernel)) - 1
    if mm.pkey_allocation_map == all_pkeys_mask:
        return -1
    m = mm.pkey_allocation_map
    ret = (~m & (m + 1)).bit_length() - 1              # ffz()
    mm_set_pkey_allocated(mm, ret)
    return ret


def mm_pkey_free(mm, pkey: int) -> int:
    """mm_pkey_free(): 0, or -EINVAL for a key not allocated by the user."""
    if not mm_pkey_is_allocated(mm, pkey):
        return -22
    mm_set_pkey_free(mm, pkey)
    return 0


def arch_set_user_pkey_access(k, tsk, pkey: int, init_val: int) -> int:
    """arch_set_user_pkey_access() (fpu/xstate.c): set the key's AD/WD bits in PKRU."""
    if not _cpu_has_ospke(k):
        return -22
    if pkey >= arch_max_pkey(k):
        return -22
    new_pkru_bits = 0
    if init_val & PKEY_DISABLE_ACCESS:
        new_pkru_bits |= PKRU_AD_BIT
    if init_val & PKEY_DISABLE_WRITE:
        new_pkru_bits |= PKRU_WD_BIT
    pkey_shift = pkey * PKRU_BITS_PER_PKEY
    new_pkru_bits <<= pkey_shift
    old_pkru = read_pkru(k) & ~((PKRU_AD_BIT | PKRU_WD_BIT) << pkey_shift)
    write_pkru(k, old_pkru | new_pkru_bits)
    return 0


# --- execute-only memory -----------------------------------------------------------------

def __execute_only_pkey(mm) -> int:
    """__execute_only_pkey(): the mm's exec-only key, allocated on first use, with
    data access denied in current's PKRU; -1 if no key is free."""
    k = mm.kernel
    need_to_set_mm_pkey = False
    execute_only_pkey = mm.execute_only_pkey
    if execute_only_pkey == -1:
        execute_only_pkey = mm_pkey_alloc(mm)
        if execute_only_pkey < 0:
            return -1
        need_to_set_mm_pkey = True
    # Skip the PKRU update when current already denies reads with the key.
    if not need_to_set_mm_pkey and not __pkru_allows_read(read_pkru(k), execute_only_pkey):
        return execute_only_pkey
    ret = arch_set_user_pkey_access(k, k.current, execute_only_pkey, PKEY_DISABLE_ACCESS)
    if ret:
        mm_set_pkey_free(mm, execute_only_pkey)
        return -1
    if need_to_set_mm_pkey:
        mm.execute_only_pkey = execute_only_pkey
    return execute_only_pkey


def execute_only_pkey(mm) -> int:
    """execute_only_pkey(): ARCH_DEFAULT_PKEY without OSPKE."""
    if not _cpu_has_ospke(mm.kernel):
        return ARCH_DEFAULT_PKEY
    return __execute_only_pkey(mm)


def vma_is_pkey_exec_only(vma) -> bool:
    from vmsim.mm.mm_types import VM_ACCESS_FLAGS, VM_EXEC
    if (vma.vm_flags & VM_ACCESS_FLAGS) != VM_EXEC:
        return False
    return vma_pkey(vma) == vma.vm_mm.execute_only_pkey


def __arch_override_mprotect_pkey(vma, prot: int, pkey: int) -> int:
    """__arch_override_mprotect_pkey(): the key a plain mprotect() gives the VMA.

    pkey_mprotect() keeps the user's key; exactly PROT_EXEC takes the exec-only key;
    leaving exec-only moves a VMA on the exec-only key back to the default key; else
    the VMA keeps its key.
    """
    if pkey != -1:
        return pkey
    if prot == 0x4:                                      # PROT_EXEC
        pkey = execute_only_pkey(vma.vm_mm)
        if pkey > 0:
            return pkey
    elif vma_is_pkey_exec_only(vma):
        return ARCH_DEFAULT_PKEY
    return vma_pkey(vma)


def arch_override_mprotect_pkey(vma, prot: int, pkey: int) -> int:
    if not _cpu_has_ospke(vma.vm_mm.kernel):
        return 0
    return __arch_override_mprotect_pkey(vma, prot, pkey)
