"""MADV_GUARD_INSTALL / MADV_GUARD_REMOVE (mm/madvise.c, PTE_MARKER_GUARD) and
MAP_DROPPABLE (mm/mmap.c do_mmap) as 6.18. Linux facts: scenarios guard_regions,
guard_regions_fork and map_droppable, recorded on this machine's 6.18.44; the raw
pagemap value of a guard page is the one recorded there."""
import errno
import json
import os

import pytest

from vmsim import (PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS, MAP_SHARED, MAP_FIXED,
                   MAP_DROPPABLE)
from vmsim.api import SignalDelivered
from vmsim.mm.mm_types import (VM_DROPPABLE, VM_WIPEONFORK, VM_DONTDUMP, VM_NORESERVE,
                               VM_ACCOUNT, VM_LOCKED)
from vmsim.mm.page_flags import PG_swapbacked
from vmsim.uapi import (MADV_GUARD_INSTALL, MADV_GUARD_REMOVE, MADV_DONTNEED, MADV_KEEPONFORK,
                        MADV_POPULATE_READ)
from vmtest import pte_at, pfn_at, vmas

P = 4096
ANON = MAP_PRIVATE | MAP_ANONYMOUS
RW = PROT_READ | PROT_WRITE
MAP_LOCKED = 0x2000
HERE = os.path.dirname(__file__)


def _segv(fn, *a):
    with pytest.raises(SignalDelivered) as e:
        fn(*a)
    return e.value


def _guarded(proc, a):
    """The first access of a guard page is SIGSEGV SEGV_MAPERR at that address."""
    e = _segv(proc.read, a, 1)
    return (e.signo, e.si_code, e.si_addr) == (11, 1, a)


def test_install_zaps_and_faults_sigsegv(proc):
    """guard_regions (Linux): pages 4-7 of a written mapping become guard pages: Rss
    drops by 16 kB, no VMA split, reads and writes there are SIGSEGV SEGV_MAPERR and
    are not counted as faults."""
    a = proc.mmap(0, 16 * P, RW, ANON)
    proc.write(a, b"\1" * 16 * P)
    rss = proc.mm.get_mm_rss()
    proc.madvise(a + 4 * P, 4 * P, MADV_GUARD_INSTALL)
    assert proc.mm.get_mm_rss() == rss - 4
    assert vmas(proc, a, a + 16 * P) == [(a, a + 16 * P)]
    f = proc.getrusage().ru_minflt
    for i in range(4, 8):
        assert _guarded(proc, a + i * P)
    e = _segv(proc.write, a + 5 * P, b"x")
    assert e.si_addr == a + 5 * P
    assert proc.getrusage().ru_minflt == f
    assert proc.read(a + 3 * P, 1) == b"\1" and proc.read(a + 8 * P, 1) == b"\1"


def test_pagemap_of_guard_page_matches_linux(proc):
    """pagemap of a guard page: PM_SWAP | PM_GUARD_REGION (bit 58), frame = swap type
    SWP_PTE_MARKER | PTE_MARKER_GUARD << 5: the raw value Linux recorded."""
    with open(os.path.join(HERE, "..", "scenarios", "recorded", "guard_regions.json")) as f:
        raw = json.load(f)["raw"]
    linux = [r["e"] for r in raw if r["t"] == "pagemap" and r["id"] == "installed"][0]
    a = proc.mmap(0, 16 * P, RW, ANON)
    proc.touch(a, 16 * P, write=True)
    proc.madvise(a + 4 * P, 4 * P, MADV_GUARD_INSTALL)
    pm = proc.machine.read_file(f"/proc/{proc.pid}/pagemap", (a // P) * 8, 16 * 8)
    ents = [int.from_bytes(pm[i:i + 8], "little") for i in range(0, len(pm), 8)]
    assert ents[4:8] == linux[4:8] == [0x440000000000009f] * 4
    assert ents[0] >> 58 == linux[0] >> 58                   # present, exclusive


def test_markers_survive_dontneed_and_remove_reads_zero(proc):
    a = proc.mmap(0, 8 * P, RW, ANON)
    proc.write(a, b"\2" * 8 * P)
    proc.madvise(a, 4 * P, MADV_GUARD_INSTALL)
    proc.madvise(a, 8 * P, MADV_DONTNEED)
    assert _guarded(proc, a + P)
    proc.madvise(a, 8 * P, MADV_GUARD_REMOVE)
    assert proc.read(a, 4 * P) == bytes(4 * P)
    assert pfn_at(proc, a) == proc.machine.k.zero_pfn


def test_install_is_idempotent_and_keeps_existing_markers(proc):
    a = proc.mmap(0, 8 * P, RW, ANON)
    proc.madvise(a + 2 * P, 2 * P, MADV_GUARD_INSTALL)
    proc.write(a, b"q")
    proc.madvise(a, 8 * P, MADV_GUARD_INSTALL)          # zaps page 0, keeps 2-3
    for i in range(8):
        assert _guarded(proc, a + i * P)


def test_fork_copies_markers(proc):
    """Install calls anon_vma_prepare, so fork copies the page tables, markers too,
    even if nothing was ever faulted in (guard_regions_fork on Linux)."""
    a = proc.mmap(0, 8 * P, RW, ANON)
    proc.madvise(a, 2 * P, MADV_GUARD_INSTALL)
    assert proc.mm.vma_lookup(a).anon_vma is not None
    c = proc.fork()
    assert _guarded(c, a) and _guarded(c, a + P)
    c.madvise(a, 2 * P, MADV_GUARD_REMOVE)
    assert c.read(a, 1) == b"\0"
    assert _guarded(proc, a)
    c.exit(0)


def test_refused_on_locked_special_allowed_remove(proc):
    a = proc.mmap(0, 4 * P, RW, ANON | MAP_LOCKED)
    with pytest.raises(OSError) as e:
        proc.madvise(a, P, MADV_GUARD_INSTALL)
    assert e.value.errno == errno.EINVAL
    proc.madvise(a, P, MADV_GUARD_REMOVE)                 # non-destructive: allowed


def test_munmap_and_exit_drop_markers(proc):
    """Only ZAP_FLAG_DROP_MARKER zaps (munmap, exit) remove markers; the checker would
    report a marker left outside any VMA."""
    a = proc.mmap(0, 8 * P, RW, ANON)
    proc.madvise(a, 8 * P, MADV_GUARD_INSTALL)
    proc.munmap(a + 2 * P, 2 * P)
    assert pte_at(proc, a + 2 * P) == 0
    proc.mmap(a + 2 * P, 2 * P, RW, ANON | MAP_FIXED)
    proc.write(a + 2 * P, b"ok")
    assert _guarded(proc, a + P)
    c = proc.fork()
    c.exit(0)
    proc.machine.check()


def test_populate_over_guard_is_efault(proc):
    a = proc.mmap(0, 4 * P, RW, ANON)
    proc.madvise(a + P, P, MADV_GUARD_INSTALL)
    with pytest.raises(OSError) as e:
        proc.madvise(a, 4 * P, MADV_POPULATE_READ)
    assert e.value.errno == errno.EFAULT


def test_guard_on_shared_anon_and_mincore(proc):
    a = proc.mmap(0, 4 * P, RW, MAP_SHARED | MAP_ANONYMOUS)
    proc.write(a, b"s" * 4 * P)
    proc.madvise(a, 2 * P, MADV_GUARD_INSTALL)
    assert _guarded(proc, a)
    # pte_none_mostly(): a marker is looked up in the page cache like a hole.
    assert proc.mincore(a, 4 * P) == b"\1\1\1\1"


# --- MAP_DROPPABLE ---------------------------------------------------------------------
def test_droppable_flags_and_accounting(proc):
    """do_mmap's MAP_DROPPABLE case: VM_DROPPABLE | VM_NORESERVE | VM_WIPEONFORK |
    VM_DONTDUMP, not accounted; its folios are not swapbacked (they are dropped, not
    swapped: folio_add_new_anon_rmap). VmFlags shows dp."""
    k = proc.machine.k
    c0 = k.committed_as
    d = proc.mmap(0, 16 * P, RW, MAP_DROPPABLE | MAP_ANONYMOUS)
    v = proc.mm.vma_lookup(d)
    want = VM_DROPPABLE | VM_NORESERVE | VM_WIPEONFORK | VM_DONTDUMP
    assert v.vm_flags & want == want and not v.vm_flags & VM_ACCOUNT
    assert k.committed_as == c0
    proc.write(d, b"\11")
    assert not k.mem.flags[pfn_at(proc, d)] & PG_swapbacked
    smaps = proc.machine.read_file(f"/proc/{proc.pid}/smaps")
    assert any(" dp" in l for l in smaps.splitlines() if l.startswith("VmFlags"))


def test_droppable_fork_mlock_and_refusals(proc):
    """map_droppable (Linux): the child reads zeros, mlock succeeds without locking,
    MADV_KEEPONFORK is EINVAL, MAP_LOCKED / MAP_GROWSDOWN with it are EINVAL."""
    d = proc.mmap(0, 16 * P, RW, MAP_DROPPABLE | MAP_ANONYMOUS)
    proc.write(d, b"\11" * 16 * P)
    proc.mlock(d, 16 * P)
    assert not proc.mm.vma_lookup(d).vm_flags & VM_LOCKED and proc.mm.locked_vm == 0
    with pytest.raises(OSError) as e:
        proc.madvise(d, 16 * P, MADV_KEEPONFORK)
    assert e.value.errno == errno.EINVAL
    c = proc.fork()
    assert c.read(d, 16 * P) == bytes(16 * P)
    c.exit(0)
    for extra in (MAP_LOCKED, 0x100):
        with pytest.raises(OSError) as e:
            proc.mmap(0, P, RW, MAP_DROPPABLE | MAP_ANONYMOUS | extra)
        assert e.value.errno == errno.EINVAL


def test_guard_calls_match_linux(proc):
    """vmsim/conform/probes/guard_args.c on this machine's 6.18.44: mlock over guard pages
    populates up to the first one and fails ENOMEM (GUP's -EFAULT, mlock's POSIX
    errno), MADV_POPULATE_WRITE is EFAULT, MLOCK_ONFAULT does not populate (ok),
    mincore reads a marker as a hole (anon 0; shared anon: the page cache, 1)."""
    from vmsim.uapi import MLOCK_ONFAULT
    want = {}
    path = os.path.join(HERE, "..", "vmsim", "conform", "probes", "guard_args-6.18.txt")
    with open(path) as f:
        for line in f:
            if not line.startswith("#"):
                k, v = line.split(None, 1)
                want.setdefault(k, []).append(v.strip())
    got = {}

    def R(name, fn):
        try:
            fn()
            got[name] = ["ok"]
        except OSError as e:
            got[name] = [errno.errorcode[e.errno]]

    a = proc.mmap(0, 16 * P, RW, ANON)
    R("install", lambda: proc.madvise(a + 4 * P, 4 * P, MADV_GUARD_INSTALL))
    R("mlock_over_guard", lambda: proc.mlock(a, 16 * P))
    R("populate_write", lambda: proc.madvise(a, 16 * P, 23))
    R("mlock2_onfault_over_guard", lambda: proc.mlock(a, 16 * P, MLOCK_ONFAULT))
    R("munlock", lambda: proc.munlock(a, 16 * P))
    v = proc.mincore(a, 16 * P)
    got["mincore"] = ["ok"]
    vec = ["".join(str(v[i]) for i in (0, 3, 4, 7, 8))]
    s = proc.mmap(0, 4 * P, RW, MAP_SHARED | MAP_ANONYMOUS)
    proc.write(s, b"\1" * 4 * P)
    R("install_shared", lambda: proc.madvise(s, 2 * P, MADV_GUARD_INSTALL))
    v = proc.mincore(s, 4 * P)
    got["mincore_shared"] = ["ok"]
    vec.append("".join(str(x) for x in v))
    got["vec"] = vec
    R("install_len0", lambda: proc.madvise(a, 0, MADV_GUARD_INSTALL))
    R("remove_unmapped", lambda: proc.madvise(0x100000000000, P, MADV_GUARD_REMOVE))
    assert got == want
