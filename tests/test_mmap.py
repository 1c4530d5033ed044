"""mmap placement, flags and accounting, against 6.18 as measured on the reference kernel."""
import errno

import pytest

import vmsim
from vmsim import (PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED, MAP_SHARED_VALIDATE,
                   MAP_ANONYMOUS, MAP_NORESERVE, MADV_DONTNEED)

RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS
MAP_32BIT = 0x40


def status(machine, pid):
    out = {}
    for line in machine.read_file(f"/proc/{pid}/status").splitlines():
        key, _, val = line.partition(":")
        out[key] = val.strip()
    return out


def meminfo(machine, key):
    for line in machine.read_file("/proc/meminfo").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def test_vmpeak_survives_munmap(proc, machine):
    """update_hiwater_vm() runs before munmap lowers total_vm (VmPeak stays)."""
    a = proc.mmap(0, 256 << 20, RW, ANON | MAP_NORESERVE)
    peak = int(status(machine, proc.pid)["VmPeak"].split()[0])
    proc.munmap(a, 256 << 20)
    st = status(machine, proc.pid)
    assert int(st["VmPeak"].split()[0]) == peak
    assert int(st["VmSize"].split()[0]) <= peak - (256 << 10)


def test_large_private_anon_is_pmd_aligned_shared_anon_is_not(proc):
    """6.18: thp_get_unmapped_area_vmflags aligns private anon mappings whose length is a
    multiple of 2 MiB; shared anon goes to shmem_get_unmapped_area (shmem_enabled=never)."""
    a = proc.mmap(0, 4 << 20, RW, ANON)
    assert a % (2 << 20) == 0
    # With an offset the anonymous mapping is still aligned (pgoff is ignored).
    b = proc.mmap(0, 4 << 20, RW, ANON, offset=4096)
    assert b % (2 << 20) == 0



def test_shared_anon_placement_is_plain_top_down(machine):
    p = machine.spawn()
    first = p.mmap(0, 4096, RW, ANON)                # right below [vvar]: 0x7ffff7ff6000
    c = p.mmap(0, 4 << 20, RW, MAP_SHARED | MAP_ANONYMOUS)
    assert c == first - (4 << 20) and c % (2 << 20) != 0
    d = p.mmap(0, 4 << 20, RW, ANON)                 # private: the lowest aligned address
    assert d == ((c - (6 << 20)) + (2 << 20) - 1) & ~((2 << 20) - 1)


def test_map_shared_validate_anonymous_is_einval(proc):
    with pytest.raises(OSError) as e:
        proc.mmap(0, 4096, RW, MAP_SHARED_VALIDATE | MAP_ANONYMOUS)
    assert e.value.errno == errno.EINVAL


def test_map_32bit_lands_between_1g_and_2g(proc):
    a = proc.mmap(0, 4096, RW, ANON | MAP_32BIT)
    assert 0x40000000 <= a < 0x80000000


def test_noreserve_shmem_commits_per_page(proc, machine):
    """shmem_inode_acct_blocks(): a VM_NORESERVE shmem object commits pages as they fault."""
    a = proc.mmap(0, 64 << 20, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE)
    before = meminfo(machine, "Committed_AS")
    proc.touch(a, 16 << 20, write=True)
    assert meminfo(machine, "Committed_AS") - before == 16 << 10
    proc.munmap(a, 64 << 20)                      # the object goes: its pages are uncommitted
    assert meminfo(machine, "Committed_AS") == before


def test_dontneed_frees_every_emptied_pte_table(machine):
    """CONFIG_PT_RECLAIM: after MADV_DONTNEED of 64 MiB the PTE tables are gone, even when
    the mmu_gather filled up and flushed in the middle of a table (zap_pte_range retry)."""
    p = machine.spawn()
    a = p.mmap(0, 64 << 20, RW, ANON)
    base = int(status(machine, p.pid)["VmPTE"].split()[0])
    p.touch(a, 64 << 20, write=True)
    assert int(status(machine, p.pid)["VmPTE"].split()[0]) >= base + 32 * 4
    p.madvise(a, 64 << 20, MADV_DONTNEED)
    assert int(status(machine, p.pid)["VmPTE"].split()[0]) == base


def test_brk_respects_rlimit_data(proc):
    """do_brk_flags() checks may_expand_vm() with the data flags: RLIMIT_DATA applies."""
    proc.task.rlim["RLIMIT_DATA"] = 16 << 20
    proc.mmap(0, 14 << 20, RW, ANON)
    base = proc.brk(0)
    assert proc.brk(base + (4 << 20)) == base


def test_seeded_aslr_follows_the_kernels_ranges():
    """randomize_va_space=2 on x86-64: mmap_base moves by up to 2^28 pages below
    TASK_SIZE - (RLIMIT_STACK + 16 GiB stack randomisation + 1 MiB guard), the stack top
    by up to STACK_RND_MASK pages below STACK_TOP, brk by up to 32 MiB above .bss."""
    top = (1 << 47) - 4096
    gap = (8 << 20) + (0x3FFFFF << 12) + (1 << 20)
    seen = set()
    for seed in range(6):
        m = vmsim.Machine("256M", aslr_seed=seed)
        p = m.spawn()
        mm = p.mm
        assert top - gap - (1 << 40) <= mm.mmap_base <= top - gap
        stack = mm.find_vma(mm.start_stack)
        assert top - (0x3FFFFF << 12) <= stack.vm_end <= top
        assert 0x4ac000 <= mm.start_brk < 0x4ac000 + (32 << 20)
        again = vmsim.Machine("256M", aslr_seed=seed).spawn().mm
        assert (again.mmap_base, again.start_brk, again.start_stack) == \
            (mm.mmap_base, mm.start_brk, mm.start_stack)
        seen.add(mm.mmap_base)
    assert len(seen) == 6
    off = vmsim.Machine("256M").spawn().mm
    assert off.mmap_base == top - (128 << 20)            # ASLR off: the measured layout
