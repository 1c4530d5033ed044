"""vmf_can_call_fault() (mm/memory.c 6.18): ->fault under the per-VMA lock only for VMAs
with ->map_pages; otherwise VM_FAULT_RETRY before anything is prepared, and the fault
is redone under mmap_lock. do_cow_fault checks it before vmf_anon_prepare."""
import vmsim
from vmsim.arch.x86.mm.fault import pt_regs
from vmsim.fs.ext4 import ext4_file_vm_ops as exe_vm_ops
from vmsim.mm.memory import handle_mm_fault
from vmsim.mm.mm_types import (FAULT_FLAG_DEFAULT, FAULT_FLAG_USER, FAULT_FLAG_WRITE,
                               FAULT_FLAG_VMA_LOCK, VM_FAULT_RETRY)

DATA = 0x4a4000                   # the image's private writable data segment


class _FaultOnlyOps:
    """A file's vm_ops with ->fault but no ->map_pages (a driver's, say)."""
    fault = staticmethod(exe_vm_ops.fault)


def _setup():
    m = vmsim.Machine("256M")
    p = m.spawn()
    # The image is a file: read it once so its pages are cached (filemap_fault on a
    # cold page drops the lock for I/O, a VM_FAULT_RETRY of its own).
    m.read_file("/usr/local/bin/vmsim-minimal")
    vma = p.mm.vma_lookup(DATA)
    assert vma.vm_file is not None and vma.anon_vma is None
    return m, p, vma


def test_cow_fault_without_map_pages_retries_before_anon_vma_prepare():
    m, p, vma = _setup()
    vma.vm_ops = _FaultOnlyOps()
    p._enter()
    flags = FAULT_FLAG_DEFAULT | FAULT_FLAG_USER | FAULT_FLAG_WRITE
    ret = handle_mm_fault(vma, DATA, flags | FAULT_FLAG_VMA_LOCK, pt_regs(0))
    assert ret & VM_FAULT_RETRY
    assert vma.anon_vma is None                   # vmf_anon_prepare was not reached
    # The #PF handler then retries under mmap_lock, where ->fault may run.
    p.write(DATA + 5, b"cow")
    assert vma.anon_vma is not None
    assert p.read(DATA + 5, 3) == b"cow"


def test_cow_fault_with_map_pages_runs_under_the_vma_lock():
    m, p, vma = _setup()
    p._enter()
    flags = FAULT_FLAG_DEFAULT | FAULT_FLAG_USER | FAULT_FLAG_WRITE | FAULT_FLAG_VMA_LOCK
    ret = handle_mm_fault(vma, DATA, flags, pt_regs(0))
    assert not ret & VM_FAULT_RETRY
    assert vma.anon_vma is not None
    p._done()
