"""The fault path against Linux 6.18's rules and the real kernel's measured results
(vmsim/conform/probes/anon-probe-6.18.jsonl; the probe that produced them is anon_probe.c)."""
import pytest

import vmsim
from vmsim import (PROT_READ, PROT_WRITE, PROT_EXEC, PROT_NONE, MAP_PRIVATE, MAP_SHARED,
                   MAP_ANONYMOUS, MAP_FIXED, MAP_GROWSDOWN, SIGSEGV, SEGV_MAPERR,
                   SEGV_ACCERR, SI_KERNEL)
from vmsim.arch.x86.pgtable_types import X86_PF_PROT, X86_PF_USER, X86_PF_INSTR

RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS


def flt(p):
    return p.getrusage().ru_minflt


def segv(p, fn, *args):
    with pytest.raises(vmsim.SignalDelivered) as e:
        fn(*args)
    return e.value


def test_read_fault_maps_the_shared_zero_page(proc):
    a = proc.mmap(0, 16 << 12, RW, ANON)
    f = flt(proc)
    anon = proc.mm.rss_stat[1]
    proc.touch(a, 16 << 12)
    assert flt(proc) - f == 16          # read_touch: 16 minflt, Rss 0 (zero page)
    assert proc.mm.rss_stat[1] == anon


def test_strided_write_faults_only_touched_pages(proc):
    a = proc.mmap(0, 64 << 12, RW, ANON)
    f = flt(proc)
    proc.touch(a, 64 << 12, write=True, stride=4 << 12)
    assert flt(proc) - f == 16          # strided_write: every 4th of 64 pages
    assert proc.mm.rss_stat[1] == 16 + 1        # + the argv page of the stack


def test_write_after_read_copies_from_zero_page(proc):
    a = proc.mmap(0, 16 << 12, RW, ANON)
    proc.touch(a, 16 << 12)
    f = flt(proc)
    proc.touch(a, 16 << 12, write=True, value=0x5A)
    assert flt(proc) - f == 16          # read_then_write: 16 + 16
    assert proc.read(a + (3 << 12), 2) == b"\x5a\x00"


def test_fetch_from_nx_page_is_accerr_after_one_minor_fault(proc):
    a = proc.mmap(0, 4096, RW, ANON)
    f = flt(proc)
    e = segv(proc, proc.fetch, a)
    # do_user_addr_fault maps the page (access_error ignores exec), the retry hits NX.
    assert (e.signo, e.si_code, e.si_addr) == (SIGSEGV, SEGV_ACCERR, a)
    assert e.error_code == X86_PF_PROT | X86_PF_USER | X86_PF_INSTR
    assert flt(proc) - f == 1


def test_exec_mapping_can_be_fetched(proc):
    a = proc.mmap(0, 4096, PROT_READ | PROT_EXEC, ANON)
    assert proc.fetch(a, 4) == bytes(4)


def test_write_to_readonly_mapping_is_accerr_without_counting(proc):
    a = proc.mmap(0, 4096, PROT_READ, ANON)
    f = flt(proc)
    e = segv(proc, proc.write, a, b"x")
    assert (e.si_code, e.si_addr) == (SEGV_ACCERR, a)
    assert flt(proc) == f               # access_error fails before handle_mm_fault


def test_prot_none_read_is_accerr(proc):
    a = proc.mmap(0, 4096, PROT_NONE, ANON)
    e = segv(proc, proc.read, a, 1)
    assert (e.si_code, e.si_addr) == (SEGV_ACCERR, a)


@pytest.mark.parametrize("addr", [0x800000000000, 0x8000_0000_0000_1234, 0x0000_f000_0000_0000])
def test_noncanonical_address_is_gp_si_kernel(proc, addr):
    f = flt(proc)
    e = segv(proc, proc.read, addr, 1)
    # #GP, not #PF: SIGSEGV with SI_KERNEL and si_addr 0 (gp_user_force_sig_segv).
    assert (e.signo, e.si_code, e.si_addr) == (SIGSEGV, SI_KERNEL, 0)
    assert flt(proc) == f


@pytest.mark.parametrize("addr", [0xffff800000000000, 0xffffffff81000000, 0xffff888000000000,
                                  0xffffffffff600000])
def test_kernel_and_vsyscall_addresses_are_maperr(proc, addr):
    e = segv(proc, proc.read, addr, 1)
    assert (e.signo, e.si_code, e.si_addr) == (SIGSEGV, SEGV_MAPERR, addr)
    # sanitize_error_code(): user accesses to kernel addresses look like protection faults.
    assert e.error_code & X86_PF_PROT


@pytest.mark.parametrize("addr", [0, 0x7ffffffff000, 0x7fffffffffff])
def test_unmapped_user_addresses_are_maperr(proc, addr):
    e = segv(proc, proc.write, addr, b"x")
    assert (e.si_code, e.si_addr) == (SEGV_MAPERR, addr)


def test_touch_reports_offset_reached(proc):
    a = proc.mmap(0, 4 << 12, RW, ANON)
    proc.munmap(a + (2 << 12), 4096)
    with pytest.raises(vmsim.SignalDelivered) as e:
        proc.touch(a, 4 << 12, write=True)
    assert e.value.offset == 2 << 12 and e.value.si_addr == a + (2 << 12)
    assert proc.read(a + 4096, 1) == b"\x01"       # earlier pages took effect


def test_stack_grows_below_the_stack_vma(proc):
    mm = proc.mm
    stack = mm.find_vma(mm.start_stack)
    start = stack.vm_start
    f = flt(proc)
    for i in range(1, 65):
        proc.write(start - i * 4096, b"s")
    assert flt(proc) - f == 64
    assert mm.find_vma(mm.start_stack).vm_start == start - 64 * 4096


def test_stack_growth_beyond_rlimit_stack_is_maperr(proc):
    proc.task.rlim["RLIMIT_STACK"] = 1 << 20
    top = proc.mm.find_vma(proc.mm.start_stack).vm_end
    proc.write(top - (900 << 10), b"s")            # within 1 MiB: grows
    e = segv(proc, proc.write, top - (2 << 20), b"s")
    assert (e.signo, e.si_code) == (SIGSEGV, SEGV_MAPERR)


def test_growsdown_respects_guard_gap(proc):
    proc.mmap(0x10000000, 4096, RW, ANON | MAP_FIXED)             # the mapping below
    g = proc.mmap(0x10000000 + (1 << 20) + (8 << 12), 4096, RW, ANON | MAP_FIXED | MAP_GROWSDOWN)
    # Growing to within stack_guard_gap (1 MiB) of the mapping below fails.
    e = segv(proc, proc.write, g - (16 << 12), b"x")
    assert e.si_code == SEGV_MAPERR
    proc.write(g - 4096, b"x")
    assert proc.mm.vma_lookup(g - 4096).vm_end == g + 4096


def test_brk_grow_write_shrink(proc):
    mm = proc.mm
    base = proc.brk(0)
    assert base == mm.start_brk
    new = proc.brk(base + (16 << 12))
    assert new == base + (16 << 12)
    f = flt(proc)
    proc.touch(base, 16 << 12, write=True)
    assert flt(proc) - f == 16
    assert proc.brk(base) == base
    e = segv(proc, proc.read, base, 1)
    assert e.si_code == SEGV_MAPERR
    # Below the start of the heap: brk returns the current break unchanged.
    assert proc.brk(base - 4096) == base


def test_shared_anon_read_allocates_no_zero_page(proc):
    a = proc.mmap(0, 16 << 12, RW, MAP_SHARED | MAP_ANONYMOUS)
    f = flt(proc)
    proc.touch(a, 16 << 12)
    assert flt(proc) - f == 16
    # shmem: Rss grows (MM_SHMEMPAGES), Anonymous does not.
    assert proc.mm.rss_stat[3] == 16 and proc.mm.rss_stat[1] == 1   # stack argv page
    f = flt(proc)
    proc.touch(a, 16 << 12, write=True)
    assert flt(proc) - f == 0           # shmem PTEs are mapped writable (no write-notify)


def test_shared_anon_fault_around_after_dontneed(proc):
    """Real 6.18 (64 KiB-aligned shared anon, 64 pages): write 64 faults; after
    MADV_DONTNEED a read pass takes 4 faults (fault-around maps 16 cached pages per
    fault), a write pass 64 (do_shared_fault has no fault-around)."""
    n = 64 << 12
    a = proc.mmap(0, n + (16 << 12), RW, MAP_SHARED | MAP_ANONYMOUS)
    a = (a + 0xFFFF) & ~0xFFFF
    f = flt(proc)
    proc.touch(a, n, write=True)
    assert flt(proc) - f == 64
    proc.madvise(a, n, vmsim.MADV_DONTNEED)
    f = flt(proc)
    proc.touch(a, n)
    assert flt(proc) - f == 4
    assert proc.read(a + 5 * 4096, 1) == b"\x01"
    proc.madvise(a, n, vmsim.MADV_DONTNEED)
    f = flt(proc)
    proc.touch(a, n, write=True, value=2)
    assert flt(proc) - f == 64


def test_exit_returns_every_frame(machine):
    k = machine.k
    free0 = k.page_alloc.nr_free_pages()
    p = machine.spawn()
    a = p.mmap(0, 1 << 22, RW, ANON)
    p.touch(a, 1 << 22, write=True)
    s = p.mmap(0, 1 << 20, RW, MAP_SHARED | MAP_ANONYMOUS)
    p.touch(s, 1 << 20, write=True)
    p.exit(0)
    # exit_mmap (6.18) leaves folios in the per-CPU LRU batches; they go when drained.
    # The program image stays in the page cache (nr_file_pages), as a file does.
    from vmsim.mm.swap import batch_refs, lru_add_drain_all
    from vmsim.mm import vmstat
    cached = k.vmstat[vmstat.NR_FILE_PAGES]
    batch_only = set(batch_refs(k)) - {pfn for am in [k.vfs.exe_inode.i_mapping]
                                       for pfn in am.i_pages.values()}
    assert k.page_alloc.nr_free_pages() == free0 - len(batch_only) - cached
    lru_add_drain_all(k)
    assert k.page_alloc.nr_free_pages() == free0 - cached


def test_zap_passes_young_bit_to_the_folio(proc):
    """zap_present_folio_ptes(): a young PTE marks the page accessed when zapped; the
    second time it is activated (the reference kernel showed REF after one munmap of a
    memfd page, ACTIVE after a second)."""
    from vmsim.mm.page_flags import PG_referenced, PG_active
    from vmsim.mm.swap import lru_add_drain_all
    k = proc.machine.k
    a = proc.mmap(0, 4096, RW, MAP_SHARED | MAP_ANONYMOUS)
    proc.write(a, b"x")
    pfn = next(iter(proc.mm.find_vma(a).vm_file.f_mapping.i_pages.values()))
    lru_add_drain_all(k)
    assert not k.mem.flags[pfn] & (PG_referenced | PG_active)
    proc.madvise(a, 4096, vmsim.MADV_DONTNEED)
    assert k.mem.flags[pfn] & PG_referenced and not k.mem.flags[pfn] & PG_active
    proc.read(a, 1)
    proc.madvise(a, 4096, vmsim.MADV_DONTNEED)
    lru_add_drain_all(k)
    assert k.mem.flags[pfn] & PG_active
