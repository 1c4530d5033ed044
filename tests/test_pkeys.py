"""x86 protection keys (arch/x86/mm/pkeys.c, mm/mprotect.c pkey_*, arch/x86/mm/fault.c).

Two machines: without the CPU feature (what this test machine is: a 6.18.44 Firecracker
guest whose /proc/cpuinfo has neither pku nor ospke; the values are from a C program run
on it, quoted at each test), and with it (values from the 6.18 source, cited).
"""
import errno

import pytest

import vmsim
from vmsim import PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC, MAP_PRIVATE, MAP_ANONYMOUS
from vmsim.arch.x86 import mmu
from vmsim.arch.x86.cpu import _s64 as s64
from vmsim.arch.x86.pgtable_types import (X86_PF_PROT, X86_PF_WRITE, X86_PF_USER, X86_PF_INSTR,
                                          X86_PF_PK)
from vmsim.arch.x86.mm.pkeys import PKEY_DISABLE_ACCESS, PKEY_DISABLE_WRITE

from vmtest import pte_at

ANON = MAP_PRIVATE | MAP_ANONYMOUS
RW = PROT_READ | PROT_WRITE
SIGSEGV, SEGV_ACCERR, SEGV_PKUERR = 11, 2, 4
INIT_PKRU = 0x55555554            # pkeys.c init_pkru_value: AD for keys 1..15


def ret(fn, *a):
    """The syscall's return, or -errno as the C program printed it."""
    try:
        r = fn(*a)
    except OSError as e:
        return -e.errno
    return 0 if r is None else r


def segv(fn, *a):
    with pytest.raises(vmsim.SignalDelivered) as e:
        fn(*a)
    assert e.value.signo == SIGSEGV
    return e.value


def smaps_field(m, p, addr, name):
    """Return the value of ``name`` in addr's smaps entry, or None when absent."""
    inside = False
    for line in m.read_file(f"/proc/{p.pid}/smaps").splitlines():
        if "-" in line.split()[0] and not line.endswith("kB"):
            start = int(line.split("-")[0], 16)
            inside = start == addr
        elif inside and line.startswith(name + ":"):
            return int(line.split()[1])
    return None


# --- without the CPU feature: measured on this machine ------------------------------------

def test_no_pku_exec_only_is_readable_and_pkey_calls_fail_as_linux():
    # vmsim/conform/probes/pkey_probe.c on Linux 6.18.44 without pku/ospke (raw
    # syscalls, one per statement):
    #   *(char *)xonly = 0; pkey_mprotect(x, R, 0) = -22; (x, R, 1) = -22; (x, R, -1) = 0
    #   pkey_free(0) = -22; pkey_free(1) = -22; pkey_free(-1) = -22
    #   pkey_alloc(1, 0) = -22; pkey_alloc(0, 4) = -22
    #   child of fork: pkey_alloc = -22   (first call in that mm)
    #   pkey_alloc(0, 1) = -22; pkey_alloc(0, 0) = -28; pkey_alloc(0, 0) = -28
    #   pkey_free(0) = -22; pkey_mprotect(x, R, 0) = -22
    #   second child (after the parent's calls): pkey_alloc = -28
    #   after its execve: pkey_alloc = -22, then -28
    # The first pkey_alloc in an mm takes key 0 (mm->context zeroed: the map is empty and
    # execute_only_pkey is 0), arch_set_user_pkey_access fails (-EINVAL) and so does the
    # mm_pkey_free of key 0 (it equals execute_only_pkey): the key stays marked.
    m = vmsim.Machine("256M", pku=False)
    p = m.spawn()
    x = p.mmap(0, 8192, PROT_EXEC, ANON)
    assert p.read(x, 1) == b"\0"
    assert [ret(p.pkey_mprotect, x, 4096, PROT_READ, k) for k in (0, 1, -1)] == [-22, -22, 0]
    assert [ret(p.pkey_free, k) for k in (0, 1, -1)] == [-22, -22, -22]
    assert [ret(p.pkey_alloc, 1, 0), ret(p.pkey_alloc, 0, 4)] == [-22, -22]
    c1 = p.fork()
    assert ret(c1.pkey_alloc, 0, 0) == -22
    assert [ret(p.pkey_alloc, 0, 1), ret(p.pkey_alloc, 0, 0), ret(p.pkey_alloc, 0, 0)] == \
        [-22, -errno.ENOSPC, -errno.ENOSPC]
    assert [ret(p.pkey_free, 0), ret(p.pkey_mprotect, x, 4096, PROT_READ, 0)] == [-22, -22]
    c2 = p.fork()
    assert ret(c2.pkey_alloc, 0, 0) == -errno.ENOSPC
    c2.execve()
    assert [ret(c2.pkey_alloc, 0, 0), ret(c2.pkey_alloc, 0, 0)] == [-22, -errno.ENOSPC]
    # fs/proc/task_mmu.c show_smap(): ProtectionKey only when arch_pkeys_enabled()
    # (no ProtectionKey line in this machine's smaps; scenarios/exec_only_no_pku.toml).
    assert "ProtectionKey" not in m.read_file(f"/proc/{p.pid}/smaps")
    assert p.pkru == 0


# --- with the CPU feature: the 6.18 source ----------------------------------------------

@pytest.fixture
def pk():
    m = vmsim.Machine("256M", pku=True)
    return m, m.spawn()


def test_exec_only_mapping_gets_the_exec_only_key_and_reads_fault_pkuerr(pk):
    # do_mmap: prot == PROT_EXEC -> execute_only_pkey() -> mm_pkey_alloc() = ffz(0x1) = 1,
    # arch_set_user_pkey_access(current, 1, PKEY_DISABLE_ACCESS) (already set by
    # init_pkru_value). A data access: access_error() -> !arch_vma_access_permitted ->
    # bad_area_access_error -> SEGV_PKUERR with si_pkey = vma_pkey(vma).
    m, p = pk
    assert p.pkru == INIT_PKRU
    x = p.mmap(0, 8192, PROT_EXEC, ANON)
    assert p.pkru == INIT_PKRU
    from vmsim.arch.x86.mm.pkeys import vma_pkey
    assert vma_pkey(p.mm.vma_lookup(x)) == 1             # (merged with the second one)
    e = segv(p.read, x + 8, 1)
    assert (e.si_code, e.si_addr, e.si_pkey) == (SEGV_PKUERR, x + 8, 1)
    assert e.error_code == X86_PF_USER                  # not present: refused by access_error
    assert p.fetch(x, 4) == bytes(4)                    # pkeys never affect fetches
    assert (pte_at(p, x) >> 59) & 15 == 1               # vm_get_page_prot: _PAGE_PKEY_BIT0
    e = segv(p.read, x, 1)                              # now present: the MMU says PK
    assert (e.si_code, e.si_pkey) == (SEGV_PKUERR, 1)
    assert e.error_code == X86_PF_USER | X86_PF_PROT | X86_PF_PK
    e = segv(p.write, x, b"z")
    assert (e.si_code, e.si_pkey) == (SEGV_PKUERR, 1)
    # PROT_READ|PROT_EXEC is not exec-only: key 0, readable.
    rx = p.mmap(0, 4096, PROT_READ | PROT_EXEC, ANON)
    assert smaps_field(m, p, rx, "ProtectionKey") == 0
    assert p.read(rx, 1) == b"\0"


def test_mprotect_into_and_out_of_exec_only(pk):
    # __arch_override_mprotect_pkey: prot == PROT_EXEC takes the exec-only key; a VMA on
    # the exec-only key mprotect()ed to anything else goes back to ARCH_DEFAULT_PKEY.
    m, p = pk
    a = p.mmap(0, 4 * 4096, RW, ANON)
    p.write(a, b"abc")
    p.mprotect(a, 2 * 4096, PROT_EXEC)
    assert smaps_field(m, p, a, "ProtectionKey") == 1
    assert smaps_field(m, p, a + 2 * 4096, "ProtectionKey") == 0
    e = segv(p.read, a, 1)
    assert (e.si_code, e.si_pkey) == (SEGV_PKUERR, 1)
    assert e.error_code & X86_PF_PK                      # the PTE was present: pte_modify
    assert (pte_at(p, a) >> 59) & 15 == 1                # took the key bits from newprot
    p.mprotect(a, 4096, PROT_READ)
    assert smaps_field(m, p, a, "ProtectionKey") == 0
    assert p.read(a, 3) == b"abc"
    assert (pte_at(p, a) >> 59) & 15 == 0
    assert smaps_field(m, p, a + 4096, "ProtectionKey") == 1
    # The same exec-only key is reused, not a second one allocated.
    b = p.mmap(0, 4096, PROT_EXEC, ANON)
    assert smaps_field(m, p, b, "ProtectionKey") == 1
    assert p.pkey_alloc() == 2


def test_pkey_alloc_free_and_mprotect_errnos(pk):
    # mm_pkey_alloc: ffz of the map (key 0 implicit), -1 -> -ENOSPC when all 16 taken;
    # mm_pkey_is_allocated refuses the exec-only key, keys < 0 and >= arch_max_pkey().
    m, p = pk
    p.mmap(0, 4096, PROT_EXEC, ANON)                     # exec-only key = 1
    got = [p.pkey_alloc() for _ in range(14)]
    assert got == list(range(2, 16))
    assert ret(p.pkey_alloc) == -errno.ENOSPC
    assert [ret(p.pkey_free, k) for k in (1, 16, -1)] == [-22, -22, -22]
    assert ret(p.pkey_free, 7) == 0
    assert ret(p.pkey_free, 7) == -22
    assert p.pkey_alloc() == 7
    a = p.mmap(0, 4096, RW, ANON)
    assert ret(p.pkey_mprotect, a, 4096, RW, 1) == -22   # the exec-only key is not the user's
    p.pkey_free(9)
    assert ret(p.pkey_mprotect, a, 4096, RW, 9) == -22
    assert [ret(p.pkey_alloc, 1, 0), ret(p.pkey_alloc, 0, 4)] == [-22, -22]
    # pkey 0 is allocated implicitly and may be freed (mm_pkey_is_allocated(0) is true).
    assert ret(p.pkey_free, 0) == 0
    assert p.pkey_alloc() == 0


def test_pkey_rights_in_pkru_govern_data_access(pk):
    # pkey_alloc(0, init_val) -> arch_set_user_pkey_access: AD/WD bits for the key.
    m, p = pk
    a = p.mmap(0, 2 * 4096, RW, ANON)
    p.write(a, b"data")
    k = p.pkey_alloc(0, PKEY_DISABLE_ACCESS)
    assert k == 1 and p.pkru == INIT_PKRU                # key 1's AD was already set
    p.pkey_mprotect(a, 4096, RW, k)
    assert smaps_field(m, p, a, "ProtectionKey") == k
    e = segv(p.read, a, 1)
    assert (e.si_code, e.si_pkey) == (SEGV_PKUERR, k)
    assert e.error_code == X86_PF_USER | X86_PF_PROT | X86_PF_PK
    w = p.pkey_alloc(0, PKEY_DISABLE_WRITE)
    assert w == 2
    assert p.pkru == (INIT_PKRU & ~(3 << 4)) | (2 << 4)
    p.pkey_mprotect(a + 4096, 4096, RW, w)
    assert p.read(a + 4096, 1) == b"\0"                   # zero page: the key allows reads
    e = segv(p.write, a + 4096, b"x")
    assert (e.si_code, e.si_pkey) == (SEGV_PKUERR, w)
    p.pkru = 0                                           # wrpkru: everything allowed
    assert p.read(a, 4) == b"data"
    p.write(a + 4096, b"y")
    # pkey_free leaves the VMA tagged (mprotect.c: "could provide warnings").
    p.pkey_free(k)
    assert smaps_field(m, p, a, "ProtectionKey") == k
    # A write to a read-only PTE whose key denies access: both PROT reasons, PK reported.
    p.pkru = INIT_PKRU
    p.mprotect(a, 4096, PROT_READ)                       # keeps key k (vma_pkey)
    e = segv(p.write, a, b"q")
    assert e.si_code == SEGV_PKUERR
    p.pkru = 0
    e = segv(p.write, a, b"q")
    assert e.si_code == SEGV_ACCERR


def test_pkeys_inherited_by_fork_fresh_at_exec(pk):
    # fork: fpu_clone copies PKRU; arch_dup_mmap -> arch_dup_pkeys copies the map and
    # the exec-only key. exec: init_new_context (map 0x1, no exec-only key) and
    # fpu_flush_thread (init_pkru_value).
    m, p = pk
    x = p.mmap(0, 4096, PROT_EXEC, ANON)
    assert p.pkey_alloc(0, 0) == 2
    c = p.fork()
    assert c.pkru == p.pkru == INIT_PKRU & ~(3 << 4)
    e = segv(c.read, x, 1)
    assert (e.si_code, e.si_pkey) == (SEGV_PKUERR, 1)
    assert c.pkey_alloc() == 3
    assert p.pkey_alloc() == 3                           # separate maps after the copy
    c.execve()
    assert c.pkru == INIT_PKRU
    assert c.pkey_alloc() == 1
    y = c.mmap(0, 4096, PROT_EXEC, ANON)
    assert smaps_field(m, c, y, "ProtectionKey") == 2


def test_gup_respects_the_key(pk):
    # check_vma_flags: !arch_vma_access_permitted(vma, write, false, foreign) -> -EFAULT;
    # __get_user_pages under FOLL_MADV_POPULATE reports a check_vma_flags failure as
    # -EINVAL ("incompatible mappings / permissions" in madvise_populate).
    m, p = pk
    a = p.mmap(0, 4096, RW, ANON)
    k = p.pkey_alloc(0, PKEY_DISABLE_ACCESS)
    p.pkey_mprotect(a, 4096, RW, k)
    assert ret(p.madvise, a, 4096, vmsim.MADV_POPULATE_READ) == -errno.EINVAL
    p.pkru = 0
    assert ret(p.madvise, a, 4096, vmsim.MADV_POPULATE_READ) == 0


@pytest.mark.parametrize("pkru", [0, INIT_PKRU, 0x8])
def test_compiled_walk_checks_keys_like_python(pkru):
    m = vmsim.Machine("256M", pku=True)
    p = m.spawn()
    k = m.k
    a = p.mmap(0, 3 * 4096, RW, ANON)
    p.touch(a, 3 * 4096, write=True)
    p.pkru = 0
    key = p.pkey_alloc()
    p.pkey_mprotect(a + 4096, 4096, RW, key)
    p.mprotect(a + 2 * 4096, 4096, PROT_EXEC)
    p.mprotect(a + 2 * 4096, 4096, PROT_NONE)
    tr, _ = mmu.compiled()
    live = k.ptpool.arr[:k.ptpool.used * 512]       # the rows in use (the pool is sized for every frame)
    out = {}
    for name, fn in (("py", mmu.translate), ("numba", tr)):
        res = []
        for addr in (a, a + 4096, a + 2 * 4096):
            for acc in (X86_PF_USER, X86_PF_USER | X86_PF_WRITE, X86_PF_USER | X86_PF_INSTR):
                pt = live.copy()
                rows = k.mem.np_private.copy()
                res.append(int(fn(pt, rows, p.mm.pgd, k.la57, s64(addr), acc, pkru)))
        out[name] = res
    assert out["py"] == out["numba"]
    # key 1 with AD (INIT_PKRU) or WD (0x8) on the page of a + 4096:
    r, w, x = out["py"][3:6]
    if pkru == INIT_PKRU:
        assert ~r == X86_PF_USER | X86_PF_PROT | X86_PF_PK
        assert ~w == X86_PF_USER | X86_PF_WRITE | X86_PF_PROT | X86_PF_PK
    elif pkru == 0x8:
        assert r >= 0 and ~w == X86_PF_USER | X86_PF_WRITE | X86_PF_PROT | X86_PF_PK
    else:
        assert r >= 0 and w >= 0
    assert ~x == X86_PF_USER | X86_PF_INSTR | X86_PF_PROT     # NX, never PK on a fetch


def test_exec_only_key_redenies_and_falls_back_when_keys_run_out(pk):
    # __execute_only_pkey: with the key already set up, PKRU is rewritten only when
    # current's PKRU allows reads with it; mmap falls back to key 0 (readable) and
    # __arch_override_mprotect_pkey to the VMA's key when no key can be had.
    m, p = pk
    x = p.mmap(0, 4096, PROT_EXEC, ANON)
    p.pkru = 0
    p.mmap(0, 4096, PROT_EXEC, ANON)
    assert p.pkru == PKEY_DISABLE_ACCESS << 2            # AD for key 1 again
    c = p.fork()
    c.pkru = 0
    c.execve()                                           # fresh mm: no exec-only key yet
    assert [c.pkey_alloc() for _ in range(15)] == list(range(1, 16))
    y = c.mmap(0, 4096, PROT_EXEC, ANON)
    assert smaps_field(m, c, y, "ProtectionKey") == 0
    assert c.read(y, 1) == b"\0"
    z = c.mmap(0, 4096, RW, ANON)
    c.pkey_mprotect(z, 4096, RW, 5)
    c.mprotect(z, 4096, PROT_EXEC)                       # no exec-only key: keeps 5
    assert smaps_field(m, c, z, "ProtectionKey") == 5
    from vmsim.arch.x86.mm.pkeys import vma_pkey
    assert vma_pkey(p.mm.vma_lookup(x)) == 1             # (merged with the second one)


def test_walk_decodes_the_pte_key():
    from vmsim.arch.x86.pgtable_types import decode_flags
    m = vmsim.Machine("256M", pku=True)
    p = m.spawn()
    x = p.mmap(0, 4096, PROT_EXEC, ANON)
    p.fetch(x, 1)
    # the zero page, mapped special by do_anonymous_page
    assert decode_flags(pte_at(p, x)) == "(PRESENT|USER|ACCESSED|SPECIAL|PKEY=1)"
