"""mprotect(2) against Linux 6.18 (mm/mprotect.c) and vmsim/conform/probes/anon-probe-6.18.jsonl."""
import errno

import pytest

import vmsim
from vmsim import PROT_NONE, PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS
from vmsim.arch.x86 import pgtable_types as T
from vmsim.mm.mm_types import VM_ACCOUNT, VM_WRITE, VM_READ
from vmtest import pte_at, pfn_at  # noqa: F401
from vmtest import flt, errno_of, vmas  # noqa: F401

P = 4096
PROT_GROWSDOWN, PROT_GROWSUP = 0x01000000, 0x02000000
ANON = MAP_PRIVATE | MAP_ANONYMOUS


def test_conform_mprotect_write(proc):
    """conform scenario mprotect_write: RO write -> SEGV_ACCERR; RW again -> 0 faults."""
    a = proc.mmap(0, 16 * P, PROT_READ | PROT_WRITE, ANON)
    f = flt(proc)
    proc.touch(a, 16 * P, write=True)
    assert flt(proc) - f == 16
    proc.mprotect(a, 16 * P, PROT_READ)
    assert all(not pte_at(proc, a + i * P) & T._PAGE_RW for i in range(16))
    with pytest.raises(vmsim.SignalDelivered) as e:
        proc.write(a, b"x")
    assert (e.value.signo, e.value.si_code, e.value.si_addr) == (11, 2, a)
    f = flt(proc)
    proc.mprotect(a, 16 * P, PROT_READ | PROT_WRITE)
    proc.touch(a, 16 * P, write=True, value=7)
    assert flt(proc) - f == 0                     # MM_CP_TRY_CHANGE_WRITABLE
    assert proc.read(a + 5 * P, 1) == b"\x07"
    assert proc.machine.k.tlb_pending == []


def test_zero_page_stays_readonly(proc):
    """can_change_pte_writable(): the zero page is not a normal page -> still COW-faults
    (measured on 6.18: 16 faults for the write pass)."""
    a = proc.mmap(0, 16 * P, PROT_READ | PROT_WRITE, ANON)
    proc.touch(a, 16 * P)
    proc.mprotect(a, 16 * P, PROT_READ)
    proc.mprotect(a, 16 * P, PROT_READ | PROT_WRITE)
    assert not pte_at(proc, a) & T._PAGE_RW
    f = flt(proc)
    proc.touch(a, 16 * P, write=True)
    assert flt(proc) - f == 16


def test_prot_none_ptes_and_back(proc):
    """PROT_NONE: pte_modify() to PAGE_NONE (protnone); back to RW costs 0 faults
    (measured on 6.18) and the data survives."""
    a = proc.mmap(0, 16 * P, PROT_READ | PROT_WRITE, ANON)
    proc.write(a, b"hello")
    proc.touch(a + P, 15 * P, write=True)
    proc.mprotect(a, 16 * P, PROT_NONE)
    pte = pte_at(proc, a)
    assert pte & T._PAGE_PROTNONE and not pte & T._PAGE_PRESENT
    with pytest.raises(vmsim.SignalDelivered) as e:
        proc.read(a, 1)
    assert e.value.si_code == 2                       # SEGV_ACCERR
    f = flt(proc)
    proc.mprotect(a, 16 * P, PROT_READ | PROT_WRITE)
    proc.touch(a + P, 15 * P, write=True)
    assert flt(proc) - f == 0
    assert proc.read(a, 5) == b"hello"


def test_errnos(proc):
    a = proc.mmap(0, 4 * P, PROT_READ | PROT_WRITE, ANON)
    assert errno_of(proc.mprotect, a + 1, P, PROT_READ) == errno.EINVAL
    assert errno_of(proc.mprotect, a, P, 0x10) == errno.EINVAL          # arch_validate_prot
    assert errno_of(proc.mprotect, a, P, PROT_READ | PROT_GROWSDOWN) == errno.EINVAL
    assert errno_of(proc.mprotect, a, P, PROT_GROWSDOWN | PROT_GROWSUP) == errno.EINVAL
    assert errno_of(proc.mprotect, a, P, PROT_READ | PROT_GROWSUP) == errno.EINVAL
    assert errno_of(proc.mprotect, 0x10000, P, PROT_READ) == errno.ENOMEM
    assert errno_of(proc.mprotect, a, (1 << 64) - a, PROT_READ) == errno.ENOMEM   # wraps
    proc.mprotect(0x10000, 0, PROT_READ)           # len 0 succeeds, even unmapped
    proc.mprotect(a, 4 * P, PROT_READ | 0x8)       # PROT_SEM is accepted


def test_hole_changes_what_lies_before(proc):
    """Measured on 6.18: [rw][hole][rw rw] mprotect(RO) -> ENOMEM, first page r--."""
    a = proc.mmap(0, 4 * P, PROT_READ | PROT_WRITE, ANON)
    proc.munmap(a + P, P)
    assert errno_of(proc.mprotect, a, 4 * P, PROT_READ) == errno.ENOMEM
    assert proc.mm.vma_lookup(a).vm_flags & (VM_READ | VM_WRITE) == VM_READ
    assert proc.mm.vma_lookup(a + 2 * P).vm_flags & VM_WRITE


def test_eacces_without_maywrite(proc):
    """newflags & ~(newflags >> 4): [vvar] has no VM_MAYWRITE (6.18 gives EACCES)."""
    vvar = [v for v in proc.mm.mm_mt if v.vm_flags & 0x400 and not v.vm_flags & 0x4][0]
    assert errno_of(proc.mprotect, vvar.vm_start, P, PROT_READ | PROT_WRITE) == errno.EACCES


def test_split_and_merge_back(proc):
    a = proc.mmap(0, 8 * P, PROT_READ | PROT_WRITE, ANON)
    proc.touch(a, 8 * P, write=True)
    proc.mprotect(a + 2 * P, 2 * P, PROT_READ)
    assert vmas(proc, a, a + 8 * P) == [(a, a + 2 * P), (a + 2 * P, a + 4 * P), (a + 4 * P, a + 8 * P)]
    proc.mprotect(a + 2 * P, 2 * P, PROT_READ | PROT_WRITE)
    assert vmas(proc, a, a + 8 * P) == [(a, a + 8 * P)]
    # Spanning several VMAs in one call.
    proc.mprotect(a + P, P, PROT_READ)
    proc.mprotect(a + 3 * P, P, PROT_NONE)
    proc.mprotect(a, 8 * P, PROT_READ)
    assert vmas(proc, a, a + 8 * P) == [(a, a + 8 * P)]


def test_vm_account_charged_when_private_becomes_writable(proc):
    """mprotect_fixup(): a private read-only mapping has no VM_ACCOUNT; making it
    writable charges its pages to Committed_AS and sets VM_ACCOUNT."""
    k = proc.machine.k
    a = proc.mmap(0, 8 * P, PROT_READ, ANON)
    assert not proc.mm.vma_lookup(a).vm_flags & VM_ACCOUNT
    before = k.committed_as
    proc.mprotect(a, 8 * P, PROT_READ | PROT_WRITE)
    assert proc.mm.vma_lookup(a).vm_flags & VM_ACCOUNT
    assert k.committed_as - before == 8
    # Read-only again with no anon_vma yet: the charge goes back.
    proc.mprotect(a, 8 * P, PROT_READ)
    assert k.committed_as == before
    assert not proc.mm.vma_lookup(a).vm_flags & VM_ACCOUNT


def test_tlb_flush_and_notifier(proc):
    k = proc.machine.k
    a = proc.mmap(0, 4 * P, PROT_READ | PROT_WRITE, ANON)
    proc.touch(a, 4 * P, write=True)
    events = []
    proc.mm.mmu_notifiers.append(lambda *e: events.append(e))
    k.tlb_flushes.clear()
    proc.mprotect(a, 4 * P, PROT_READ)
    assert ("invalidate_range_start", "protection_vma", a, a + 4 * P) in events
    assert ("invalidate_range_end", "protection_vma", a, a + 4 * P) in events
    assert any(mm is proc.mm and s <= a and a + 4 * P <= e for mm, s, e, _ in k.tlb_flushes)
    assert k.tlb_pending == []
    # x86 pte_flags_need_flush(): _PAGE_RW is flush_on_change, so RO -> RW flushes too,
    # while a PROT_NONE VMA over empty page tables flushes nothing.
    k.tlb_flushes.clear()
    proc.mprotect(a, 4 * P, PROT_READ | PROT_WRITE)
    assert any(s <= a and a + 4 * P <= e for _, s, e, _ in k.tlb_flushes)
    b = proc.mmap(0, 4 * P, PROT_READ | PROT_WRITE, ANON)
    k.tlb_flushes.clear()
    proc.mprotect(b, 4 * P, PROT_NONE)
    assert k.tlb_flushes == []
