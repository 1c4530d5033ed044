"""The OOM killer as 6.18 runs it from the page allocator (mm/oom_kill.c).

Victim choice, the kill, the log lines and /proc/<pid>/oom_score follow the source;
the oom_score and oom_score_adj answers marked "this machine" were read from the
6.18.44 kernel of the reference machine.
"""
import errno
import os

import pytest

from vmsim import Machine
from vmsim.api import SignalDelivered

PROT_RW = 3
MAP_PRIVATE_ANON_NORESERVE = 0x02 | 0x20 | 0x4000
MiB = 1 << 20


def vmstat(m, name):
    for line in m.read_file("/proc/vmstat").splitlines():
        key, val = line.split()
        if key == name:
            return int(val)
    raise KeyError(name)


def anon(p, size, touch=True):
    addr = p.mmap(0, size, PROT_RW, MAP_PRIVATE_ANON_NORESERVE)
    if touch:
        p.touch(addr, size, write=True)
    return addr


def status(m, p, field):
    for line in m.read_file(f"/proc/{p.pid}/status").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def test_oom_kills_the_bigger_process_and_the_faulting_one_continues():
    m = Machine("64M", cpus=2)
    p = m.spawn()
    c = p.fork()
    free0 = m.k.page_alloc.nr_free_pages()
    anon(c, 16 * MiB)
    assert vmstat(m, "oom_kill") == 0
    # The 64 MiB machine manages 31 MiB: p's 14 MiB do not fit beside c's 16. At
    # exhaustion the allocator kills c, the bigger process, and p's faults go on.
    a = anon(p, 14 * MiB)
    assert p.read(a + 14 * MiB - 4096, 1) == b"\x01"
    assert vmstat(m, "oom_kill") == 1
    # c is dead and its memory is back: only p's 14 MiB (and its page tables) are used.
    assert c.task.mm is None
    used = free0 - m.k.page_alloc.nr_free_pages()
    assert 3584 <= used < 3584 + 64
    for z in m.k.page_alloc.zones:
        assert z.pcp_pages == sum(pcp.count for pcp in z.pcp)
    with pytest.raises(ProcessLookupError) as e:
        c.read(0, 1)
    assert e.value.errno == errno.ESRCH
    # The parent's wait sees the child killed by SIGKILL.
    pid, st = p.waitpid(c.pid)
    assert pid == c.pid and os.WIFSIGNALED(st) and os.WTERMSIG(st) == 9
    # The log: header, the task table with c's 16 MiB + its argv page, the summary
    # and the kill (formats of dump_header, dump_task, dump_oom_victim,
    # __oom_kill_process).
    log = m.dmesg().splitlines()
    # An anonymous fault's gfp (vma_alloc_zeroed_movable_folio + folio_alloc_mpol's
    # __GFP_COMP) or a page table's (GFP_PGTABLE_USER).
    assert any(line in log for line in (
        "vmsim invoked oom-killer: gfp_mask=0x140dca(GFP_HIGHUSER_MOVABLE|__GFP_COMP|"
        "__GFP_ZERO), order=0, oom_score_adj=0",
        "vmsim invoked oom-killer: gfp_mask=0x400dc0(GFP_KERNEL_ACCOUNT|__GFP_ZERO), "
        "order=0, oom_score_adj=0"))
    assert "Tasks state (memory values in pages):" in log
    row = next(l for l in log if l.startswith("[%7d]" % c.pid)).split()
    assert row[5] == str(4096 + 1)                     # rss_anon
    assert (f"oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,"
            f"global_oom,task_memcg=/,task=vmsim,pid={c.pid},uid=0") in log
    kill = next(l for l in log if l.startswith("Out of memory: Killed process"))
    assert kill.startswith(f"Out of memory: Killed process {c.pid} (vmsim) total-vm:")
    assert f"anon-rss:{(4096 + 1) * 4}kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:" in kill
    assert kill.endswith(" oom_score_adj:0")
    assert not any("Huh VM_FAULT_OOM" in l for l in log)


def test_oom_score_adj_picks_the_victim():
    m = Machine("64M", cpus=2)
    p = m.spawn()
    big = p.fork()
    small = p.fork()
    anon(big, 12 * MiB)
    anon(small, 4 * MiB)
    m.write_file(f"/proc/{small.pid}/oom_score_adj", "1000")
    anon(p, 14 * MiB)
    assert vmstat(m, "oom_kill") == 1
    assert small.task.mm is None and big.task.mm is not None
    assert p.wait(small.pid) == -9              # os.waitstatus_to_exitcode
    assert big.read(0, 0) == b""                # big is untouched and alive


def test_oom_score_adj_min_is_never_chosen_and_the_faulting_task_dies_once():
    m = Machine("64M", cpus=2)
    p = m.spawn()
    c = p.fork()
    a = anon(c, 12 * MiB)
    m.write_file(f"/proc/{c.pid}/oom_score_adj", "-1000")
    with pytest.raises(SignalDelivered) as e:
        anon(p, 24 * MiB)
    assert e.value.signo == 9
    # p was the only killable task: it is gone, c keeps its memory.
    with pytest.raises(ProcessLookupError):
        p.touch(a, 4096)
    assert c.read(a + 12 * MiB - 4096, 1) == b"\x01"
    assert vmstat(m, "oom_kill") == 1
    assert f"Out of memory: Killed process {p.pid} (vmsim)" in m.dmesg()


def test_no_killable_process_panics():
    from vmsim.kernel.printk import KernelPanic
    m = Machine("64M")
    p = m.spawn()
    m.write_file(f"/proc/{p.pid}/oom_score_adj", "-1000")
    with pytest.raises(KernelPanic, match="System is deadlocked on memory"):
        anon(p, 64 * MiB)
    log = m.dmesg().splitlines()
    assert "Out of memory and no killable processes..." in log
    assert log[-1] == "Kernel panic - not syncing: System is deadlocked on memory"
    with pytest.raises(KernelPanic):
        p.read(0, 0)


def test_pagefault_out_of_memory_only_warns():
    """A VM_FAULT_OOM that reaches the #PF handler no longer kills the task."""
    from vmsim.arch.x86.mm.fault import pagefault_out_of_memory
    m = Machine("64M")
    p = m.spawn()
    pagefault_out_of_memory(m.k)
    assert p.task.signals == []
    assert m.dmesg() == "Huh VM_FAULT_OOM leaked out to the #PF handler. Retrying PF\n"
    assert vmstat(m, "oom_kill") == 0


def test_costly_order_never_calls_the_oom_killer():
    from vmsim.mm.page_alloc import GFP_HIGHUSER_MOVABLE
    __GFP_COMP, __GFP_NOWARN = 0x40000, 0x2000
    m = Machine("64M")
    p = m.spawn()
    anon(p, 16 * MiB)
    pa = m.k.page_alloc
    got = []
    while True:
        pfn = pa.alloc_pages(GFP_HIGHUSER_MOVABLE | __GFP_COMP | __GFP_NOWARN, 9)
        if pfn < 0:
            break
        got.append(pfn)
    assert vmstat(m, "oom_kill") == 0 and p.task.mm is not None
    for pfn in got:
        pa.mem.refcount[pfn] = 0
        pa.free_frozen_pages(pfn, 9)


def oom_score_formula(m, p, adj):
    """proc_oom_score(): (1000 + badness * 1000 / totalpages) * 2 / 3, badness =
    rss + swap entries + page-table pages + adj * (totalpages / 1000)."""
    totalpages = int(m.read_file("/proc/meminfo").split()[1]) // 4
    rss = int(m.read_file(f"/proc/{p.pid}/statm").split()[1])
    pte_pages = status(m, p, "VmPTE") // 4
    badness = rss + pte_pages + adj * (totalpages // 1000)
    q = abs(badness * 1000) // totalpages * (1 if badness >= 0 else -1)
    return (1000 + q) * 2 // 3


def test_oom_score():
    # Large enough that totalpages / 1000 loses little, as on this machine (24 GiB).
    m = Machine("16G", cpus=2)
    p = m.spawn()
    path = f"/proc/{p.pid}/oom_score"
    # A small process on this machine: 666, 999 with adj 500, 1332 with adj 1000.
    assert m.read_file(path) == "666\n"
    for adj, real in ((500, 999), (1000, 1332)):
        m.write_file(f"/proc/{p.pid}/oom_score_adj", str(adj))
        assert m.read_file(path) == f"{real}\n"
    anon(p, 32 * MiB)
    for adj in (0, 300, -300, -999):
        m.write_file(f"/proc/{p.pid}/oom_score_adj", str(adj))
        assert m.read_file(path) == f"{oom_score_formula(m, p, adj)}\n"
    m.write_file(f"/proc/{p.pid}/oom_score_adj", "-1000")
    assert m.read_file(path) == "0\n"


def test_oom_score_adj_write_as_this_machine():
    m = Machine("1G")
    p = m.spawn()
    path = f"/proc/{p.pid}/oom_score_adj"
    assert m.read_file(path) == "0\n"
    for data, nbytes, value in (("5\n\n", 3, 5), ("0x1f", 4, 31), (" -0 ", 4, 0),
                                ("+5", 2, 5), ("010", 3, 8), (" 12 ", 4, 12)):
        assert m.write_file(path, data) == nbytes
        assert m.read_file(path) == f"{value}\n"
    for data, err in (("", errno.EINVAL), ("1001", errno.EINVAL), ("-1001", errno.EINVAL),
                      ("abc", errno.EINVAL), ("0x", errno.EINVAL),
                      ("12345678901234", errno.ERANGE)):
        with pytest.raises(OSError) as e:
            m.write_file(path, data)
        assert e.value.errno == err
    assert m.read_file(path) == "12\n"
    # fork copies it (copy_signal).
    c = p.fork()
    assert m.read_file(f"/proc/{c.pid}/oom_score_adj") == "12\n"


def test_oom_score_adj_min_and_cap_sys_resource():
    """Lowering oom_score_adj below oom_score_adj_min needs CAP_SYS_RESOURCE. This
    machine's root lacks it (a container): 1000 and 500 are accepted, -500 and -0x10
    give EACCES."""
    m = Machine("64M")
    p = m.spawn()
    path = f"/proc/{p.pid}/oom_score_adj"
    m.k.cap_sys_resource = False
    for data in ("1000", "500"):
        m.write_file(path, data)
    for data in ("-500", "-0x10"):
        with pytest.raises(OSError) as e:
            m.write_file(path, data)
        assert e.value.errno == errno.EACCES
    assert m.read_file(path) == "500\n"
    # With the capability the write also sets the minimum (inherited by fork).
    m.k.cap_sys_resource = True
    m.write_file(path, "-500")
    c = p.fork()
    m.k.cap_sys_resource = False
    with pytest.raises(OSError) as e:
        m.write_file(f"/proc/{c.pid}/oom_score_adj", "-600")
    assert e.value.errno == errno.EACCES
    m.write_file(f"/proc/{c.pid}/oom_score_adj", "-400")
    assert m.read_file(f"/proc/{c.pid}/oom_score_adj") == "-400\n"
