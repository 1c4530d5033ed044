"""System V shared memory with SHM_HUGETLB (ipc/shm.c, issue 10).

The expected lines are what vmsim/conform/probes/shm_probe.c printed on this machine's
kernel (6.18.44, in a fresh IPC namespace; shm-6.18.txt); the same calls run here.
"""
import os

import vmsim
from vmsim import SignalDelivered
from vmsim.uapi import (IPC_PRIVATE, IPC_CREAT, IPC_EXCL, IPC_RMID, IPC_STAT, SHM_HUGETLB,
                        SHM_NORESERVE, SHM_RDONLY, SHM_RND, SHM_REMAP)

H = 2 << 20
PROBE = os.path.join(os.path.dirname(vmsim.__file__), "conform", "probes", "shm-6.18.txt")


def test_shm_probe_matches_linux():
    m = vmsim.Machine(memory="256M")
    m.write_file("/proc/sys/vm/nr_hugepages", "4")
    p = m.spawn()
    out = []

    def pool(tag):
        mi = {l.split(":")[0]: l.split()[1] for l in m.read_file("/proc/meminfo").splitlines()
              if l.startswith("HugePages")}
        out.append(f"{tag} pool free={mi['HugePages_Free']} rsvd={mi['HugePages_Rsvd']}")

    def maps(tag, proc=p):
        for line in m.read_file(f"/proc/{proc.pid}/maps").splitlines():
            if "SYSV" in line:
                f = line.split()
                lo, hi = (int(x, 16) for x in f[0].split("-"))
                out.append(f"{tag} maps len={hi - lo} {f[1]} {f[3]} ino={f[4]} {f[5]}")

    def nattch(tag, shmid, proc=p):
        try:
            d = proc.shmctl(shmid, IPC_STAT)
            out.append(f"{tag} stat segsz={d['shm_segsz']} nattch={d['shm_nattch']} "
                       f"mode={d['mode'] & 0o1777:o}")
        except OSError as e:
            out.append(f"{tag} stat errno={e.errno}")

    def R(tag, fn, *args):
        try:
            r = fn(*args)
            out.append(f"{tag} ret={0 if r is None else r} errno=0")
        except OSError as e:
            out.append(f"{tag} ret=-1 errno={e.errno}")
    pool("start")
    R("get_size0", p.shmget, IPC_PRIVATE, 0, IPC_CREAT | 0o600)
    R("get_badhuge", p.shmget, IPC_PRIVATE, H, IPC_CREAT | SHM_HUGETLB | (20 << 26) | 0o600)
    R("get_toobig", p.shmget, IPC_PRIVATE, 10 * H, IPC_CREAT | SHM_HUGETLB | 0o600)
    pool("toobig")
    R("get_nokey", p.shmget, 0x1234, 4096, 0o600)
    h = p.shmget(IPC_PRIVATE, 3 << 20, IPC_CREAT | SHM_HUGETLB | 0o600)
    out.append(f"huge id={h}")
    pool("huge_created")
    nr = p.shmget(IPC_PRIVATE, 10 * H, IPC_CREAT | SHM_HUGETLB | SHM_NORESERVE | 0o600)
    out.append(f"noreserve id={nr}")
    pool("noreserve_created")
    a = p.shmat(h, 0, 0)
    out.append(f"attach ok=1 aligned={int(a % H == 0)}")
    maps("attached")
    pool("attached")
    nattch("attached", h)
    p.write(a, b"\x07")
    p.write(a + H, b"\x08")
    pool("written")
    c = p.fork()
    out.append(f"child data={c.read(a, 1)[0]},{c.read(a + H, 1)[0]}")
    nattch("child", h, c)
    c.write(a + 1, b"\x09")
    c.exit(0)
    p.wait(c.pid)
    out.append(f"after_child data={p.read(a + 1, 1)[0]}")
    nattch("after_child", h)
    R("at_misaligned", p.shmat, h, a + 4096 + 1, 0)
    R("at_overlap", p.shmat, h, a, 0)
    R("dt_misaligned", p.shmdt, a + 1)
    R("dt_notshm", p.shmdt, 0x10000)
    R("rmid", p.shmctl, h, IPC_RMID)
    nattch("rmid", h)
    pool("rmid")
    R("dt", p.shmdt, a)
    pool("detached")
    nattch("detached", h)
    R("rmid_again", p.shmctl, h, IPC_RMID)
    R("rmid_noreserve", p.shmctl, nr, IPC_RMID)
    pool("noreserve_removed")
    s = p.shmget(0x4d2, 8192, IPC_CREAT | 0o600)
    out.append(f"shmem id={s}")
    R("get_same_key", p.shmget, 0x4d2, 4096, 0o600)
    R("get_excl", p.shmget, 0x4d2, 4096, IPC_CREAT | IPC_EXCL | 0o600)
    R("get_bigger", p.shmget, 0x4d2, 3 * 4096, 0o600)
    b = p.shmat(s, 0, SHM_RDONLY)
    maps("shmem_rdonly")
    cc = p.shmat(s, 0, 0)
    p.write(cc, b"\x05")
    out.append(f"shmem data={p.read(b, 1)[0]}")
    d = p.shmat(s, cc + 4096 + 123, SHM_RND | SHM_REMAP)
    out.append(f"rnd at=c{d - cc:+d}")
    nattch("shmem", s)
    for x in (b, cc, d):
        p.shmdt(x)
    nattch("shmem_detached", s)
    p.shmctl(s, IPC_RMID)
    with open(PROBE) as f:
        expected = f.read().splitlines()
    assert out == expected
    m.check()


def test_shm_hugetlb_segment_outlives_its_creator_until_rmid(machine):
    """exit does not remove a segment (kernel.shm_rmid_forced = 0): another process
    attaches it by key and finds the data; IPC_RMID with no attach frees the pool."""
    m = machine
    m.write_file("/proc/sys/vm/nr_hugepages", "2")
    p = m.spawn()
    c = p.fork()
    sid = c.shmget(0x77, H, IPC_CREAT | SHM_HUGETLB | 0o600)
    a = c.shmat(sid)
    c.write(a, b"kept")
    c.exit(0)
    p.wait(c.pid)
    assert p.shmget(0x77, H, 0) == sid
    b = p.shmat(sid, 0, SHM_RDONLY)
    assert p.read(b, 4) == b"kept"
    try:
        p.write(b, b"x")
        raise AssertionError("SHM_RDONLY attach was writable")
    except SignalDelivered as e:
        assert e.signo == 11
    p.shmdt(b)
    assert "HugePages_Free:        1" in m.read_file("/proc/meminfo")
    p.shmctl(sid, IPC_RMID)
    assert "HugePages_Free:        2" in m.read_file("/proc/meminfo")


SHMCTL_PROBE = os.path.join(os.path.dirname(vmsim.__file__), "conform", "probes",
                            "shmctl-6.18.txt")


def test_shmctl_commands_and_proc_sysvipc_shm_match_linux():
    """shmctl IPC_INFO, SHM_INFO, SHM_STAT, SHM_STAT_ANY, IPC_SET, SHM_LOCK / SHM_UNLOCK
    and /proc/sysvipc/shm: the lines vmsim/conform/probes/shmctl_probe.c printed on
    this machine's kernel (shmctl-6.18.txt), from the same calls."""
    from vmsim.uapi import (IPC_SET, IPC_INFO, SHM_INFO, SHM_STAT, SHM_STAT_ANY, SHM_LOCK,
                            SHM_UNLOCK)
    m = vmsim.Machine(memory="256M")
    p = m.spawn()
    out = []

    def ipc_info(tag):
        r, i = p.shmctl(0, IPC_INFO)
        out.append(f"{tag} ipc_info ret={r} shmmax={i['shmmax']} shmmin={i['shmmin']} "
                   f"shmmni={i['shmmni']} shmseg={i['shmseg']} shmall={i['shmall']}")

    def shm_info(tag):
        r, i = p.shmctl(0, SHM_INFO)
        out.append(f"{tag} shm_info ret={r} used_ids={i['used_ids']} shm_tot={i['shm_tot']} "
                   f"shm_rss={i['shm_rss']} shm_swp={i['shm_swp']}")

    def who(pid):
        return "self" if pid == p.pid else "other" if pid else "0"

    def stat(tag, shmid, cmd):
        try:
            r = p.shmctl(shmid, cmd)
        except OSError as e:
            out.append(f"{tag} stat ret=-1 errno={e.errno}")
            return
        r, d = (0, r) if cmd == IPC_STAT else r
        out.append(f"{tag} stat ret={r} key={d['key']} uid={d['uid']} gid={d['gid']} "
                   f"cuid={d['cuid']} cgid={d['cgid']} mode={d['mode']:o} "
                   f"segsz={d['shm_segsz']} nattch={d['shm_nattch']} cpid={who(d['shm_cpid'])} "
                   f"lpid={who(d['shm_lpid'])} atime={int(d['shm_atime'] != 0)} "
                   f"dtime={int(d['shm_dtime'] != 0)} ctime={int(d['shm_ctime'] != 0)}")

    def proc(tag):
        lines = m.read_file("/proc/sysvipc/shm").splitlines(keepends=True)
        out.append(f"{tag} proc header={lines[0]}".rstrip("\n"))
        for line in lines[1:]:
            f = line.split()
            out.append(f"{tag} proc key={f[0]} id={f[1]} perms={f[2]} size={f[3]} "
                       f"cpid={who(int(f[4]))} lpid={who(int(f[5]))} nattch={f[6]} uid={f[7]} "
                       f"gid={f[8]} cuid={f[9]} cgid={f[10]} atime={int(f[11] != '0')} "
                       f"dtime={int(f[12] != '0')} ctime={int(f[13] != '0')} rss={f[14]} "
                       f"swap={f[15]} len={len(line)}")

    def R(tag, fn, *args):
        try:
            fn(*args)
            out.append(f"{tag} ret=0 errno=0")
        except OSError as e:
            out.append(f"{tag} ret=-1 errno={e.errno}")
    ipc_info("empty")
    shm_info("empty")
    proc("empty")
    a = p.shmget(IPC_PRIVATE, 3 * 4096 + 100, IPC_CREAT | 0o600)
    b = p.shmget(0x1234, 8192, IPC_CREAT | 0o640)
    out.append(f"ids a={a} b={b}")
    ipc_info("two")
    shm_info("two")
    q = p.shmat(a, 0, 0)
    p.write(q, b"\x01")
    p.write(q + 8192, b"\x02")
    shm_info("written")
    proc("written")
    stat("a", a, IPC_STAT)
    stat("stat_idx0", 0, SHM_STAT)
    stat("stat_any_idx1", 1, SHM_STAT_ANY)
    stat("stat_idx5", 5, SHM_STAT)
    R("set_b", p.shmctl, b, IPC_SET, {"uid": 1, "gid": 2, "mode": 0o3604})
    stat("b_set", b, IPC_STAT)
    R("set_bad", p.shmctl, 77, IPC_SET, {"uid": 1, "gid": 2, "mode": 0o3604})
    R("lock_a", p.shmctl, a, SHM_LOCK)
    stat("a_locked", a, IPC_STAT)
    R("lock_a_again", p.shmctl, a, SHM_LOCK)
    proc("locked")
    R("unlock_a", p.shmctl, a, SHM_UNLOCK)
    stat("a_unlocked", a, IPC_STAT)
    R("unlock_a_again", p.shmctl, a, SHM_UNLOCK)
    R("lock_bad", p.shmctl, 77, SHM_LOCK)
    R("cmd_99", p.shmctl, a, 99)
    R("neg_id", p.shmctl, -1, IPC_STAT)
    R("rmid_a", p.shmctl, a, IPC_RMID)
    proc("a_removed")
    shm_info("a_removed")
    R("dt_a", p.shmdt, q)
    proc("a_detached")
    ipc_info("a_detached")
    m.write_file("/proc/sys/vm/nr_hugepages", "2")
    h = p.shmget(IPC_PRIVATE, 2 << 20, IPC_CREAT | SHM_HUGETLB | 0o600)
    out.append(f"huge id={h}")
    hq = p.shmat(h, 0, 0)
    p.write(hq, b"\x01")
    shm_info("huge")
    proc("huge")
    R("lock_huge", p.shmctl, h, SHM_LOCK)
    stat("huge_locked", h, IPC_STAT)
    p.shmdt(hq)
    p.shmctl(h, IPC_RMID)
    p.shmctl(b, IPC_RMID)
    m.write_file("/proc/sys/vm/nr_hugepages", "0")
    proc("end")
    shm_info("end")
    with open(SHMCTL_PROBE) as f:
        expected = f.read().splitlines()
    assert out == expected
    m.check()


def test_shmctl_bad_calls_get_linux_errno():
    """IPC_SET without a buffer is EFAULT (copy_shmid_from_user); an unknown command,
    a negative id or command, and SHM_STAT of a free index are EINVAL."""
    import errno
    import pytest
    from vmsim.uapi import IPC_SET, SHM_STAT
    m = vmsim.Machine(memory="64M")
    p = m.spawn()
    s = p.shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0o600)
    for args, err in (((s, IPC_SET), errno.EFAULT), ((s, 16), errno.EINVAL),
                      ((-1, IPC_STAT), errno.EINVAL), ((s, -3), errno.EINVAL),
                      ((3, SHM_STAT), errno.EINVAL)):
        with pytest.raises(OSError) as e:
            p.shmctl(*args)
        assert e.value.errno == err, args
    p.shmctl(s, IPC_RMID)
    m.check()
