"""The vmsim side of a conformance run: the scenario's ops through the public API.

run(scenario) returns the same raw records the C executor prints (see executor.c),
so compare.py derives both sides' observations with one function. Only the public
API is used: vmsim.Machine, Process methods, Machine.read_file / write_file.
"""
import struct

import vmsim
from vmsim.api import SignalDelivered

PAGE = 4096
IOCHUNK = 2 << 20
FILE_DIRS = ("/tmp", "/dev/shm")
FILE_OPS = ("open", "close", "unlink", "fsync", "ftruncate", "pwrite", "pread", "fadvise",
            "fallocate", "dropcaches", "msync", "memfd")
MEMORY = "512M"
CPUS = 2


def _ulong(v):
    """The executor's (size_t) / (uintptr_t) cast of a C long: vmsim gets the same number."""
    return v & ((1 << 64) - 1)


def _maps(m, pid):
    out = []
    for line in m.read_file(f"/proc/{pid}/maps").splitlines():
        parts = line.split()
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        out.append((lo, hi, parts[1], parts[5] if len(parts) > 5 else ""))
    return out


def _smaps_vmas(m, pid, lo, hi):
    vmas, cur = [], None
    for line in m.read_file(f"/proc/{pid}/smaps").splitlines():
        head = line.split(None, 1)[0] if line.strip() else ""
        if "-" in head and not head.endswith(":"):
            a, b = (int(x, 16) for x in head.split("-"))
            cur = None
            if a < hi and b > lo:
                cur = [a, b, line.split()[1], {"_": 0}]
                vmas.append(cur)
        elif cur is not None and ":" in line:
            k, _, v = line.partition(":")
            if k != "VmFlags" and v.strip().split() and v.strip().split()[0].lstrip("-").isdigit():
                cur[3][k] = int(v.split()[0])
    return vmas


class _Runner:
    def __init__(self, scn):
        self.s = scn
        # The CPU the scenario states (cpu_pku); unset, a CPU without protection keys,
        # as on the host most recordings come from, whatever this host has.
        self.m = vmsim.Machine(memory=MEMORY, cpus=CPUS,
                               pku=scn.settings.get("cpu_pku") == "yes")
        self.out = []
        # per process (index as in the scenario): mapping addresses as that process
        # knows them (a child starts with a copy of its parent's), the fault counts
        # at its last point, and its step records not printed yet (the executor
        # prints a process's results at its own points, exit and end)
        self.maddrs, self.mlens = [{}], [{}]
        self.maddr, self.mlen = self.maddrs[0], self.mlens[0]
        # per process: file slot -> descriptor (inherited by fork, as the executor's
        # static array is); the path of every file slot opened
        self.fdss = [{}]
        self.fds = self.fdss[0]
        self.fpath = {}
        self.shmids = {}          # SysV segment slot -> id
        for kind, step, args in scn.ops:
            if kind == "knob" and step is None:
                self.m.write_file(args[0], args[1])
        # The executor pins itself to CPU 0: per-CPU LRU batches matter (MADV_FREE).
        self.p = self.m.spawn(cpu=0)
        self.procs = [self.p]
        self.cur = 0
        self.brk_base = (self.p.brk(0) + PAGE - 1) & ~(PAGE - 1)
        self.out.append({"t": "hdr", "priv": 1, "zero_pfn": self.m.k.zero_pfn,
                         "release": "vmsim-" + scn.settings.get("kernel", "6.18"),
                         "brk_base": self.brk_base})

    def addr(self, slot, off):
        return _ulong((0 if slot < 0 else self.maddr.get(slot, 0)) + off)

    def switch(self, q):
        self.cur = q
        self.p = self.procs[q]
        self.maddr, self.mlen = self.maddrs[q], self.mlens[q]
        self.fds = self.fdss[q]

    def run(self):
        ops = self.s.ops
        self.ru0 = [self.p.getrusage()]
        pending = self.pending = [[]]
        i = 0
        while i < len(ops):
            kind, step, args = ops[i]
            if kind == "knob" and step is None:
                i += 1
                continue
            self.switch(self.s.op_proc[i])
            q = self.cur
            if kind == "point":
                ru0 = self.ru0[q]
                ru1 = self.p.getrusage()
                self.out += pending[q]
                pending[q] = []
                pid = args[0]
                self.out.append({"t": "point", "id": pid, "minflt": ru1.ru_minflt - ru0.ru_minflt,
                                 "majflt": ru1.ru_majflt - ru0.ru_majflt})
                i += 1
                vm = []
                while i < len(ops) and ops[i][0] != "endpoint":
                    k2, _, a2 = ops[i]
                    if k2 == "smaps":
                        self.obs_smaps(a2[0], pid)
                    elif k2 == "pagemap":
                        self.obs_pagemap(a2[0], pid)
                    elif k2 == "mincore":
                        self.obs_mincore(a2[0], pid)
                    elif k2 == "vmstat":
                        vm.append(a2[0])
                    i += 1
                if vm:
                    self.obs_vmstat(vm, pid)
                i += 1
                self.ru0[q] = self.p.getrusage()
                continue
            r = {"t": "step", "i": i, "ret": 0, "err": 0, "nsig": 0, "signo": 0, "code": 0,
                 "saddr": 0, "base": 0, "done": 0}
            if kind in ("fork", "exit", "wait", "execve"):
                self.lifecycle(kind, args, r)
            else:
                self.step(kind, args, r)
                pending[q].append(r)
            i += 1
        for q in self.s.alive_at_end:
            self.out += pending[q]
            pending[q] = []
        self.out += pending[0]
        self.out.append({"t": "end"})
        return self.out

    def lifecycle(self, kind, a, r):
        """fork / exit / wait / execve, with the executor's record order and fault
        accounting (the parent's interval leaves out what fork itself costs it; a
        child's counts start at fork)."""
        q, p = self.cur, self.p
        try:
            if kind == "fork":
                before = p.getrusage()
                child = p.fork(cpu=0)      # the executor pins every process to CPU 0
                after = p.getrusage()
                r0 = self.ru0[q]
                self.ru0[q] = r0._replace(ru_minflt=r0.ru_minflt + after.ru_minflt - before.ru_minflt,
                                          ru_majflt=r0.ru_majflt + after.ru_majflt - before.ru_majflt)
                c = a[0]
                while len(self.procs) <= c:
                    self.procs.append(None)
                    self.maddrs.append({})
                    self.mlens.append({})
                    self.ru0.append(None)
                    self.pending.append([])
                    self.fdss.append({})
                self.procs[c] = child
                self.fdss[c] = dict(self.fds)
                self.maddrs[c], self.mlens[c] = dict(self.maddr), dict(self.mlen)
                self.ru0[c] = child.getrusage()
                r["ret"] = child.pid
                self.pending[q].append(r)
            elif kind == "exit":
                p.exit(a[0])
                self.out += self.pending[q] + [r]
                self.pending[q] = []
            elif kind == "wait":
                self.pending[q].append(r)
                r["ret"] = p.wait(self.procs[a[0]].pid)
            elif kind == "execve":
                self.out += self.pending[q]
                self.pending[q] = [r]
                p.execve()
        except OSError as e:
            r["ret"], r["err"] = -1, e.errno

    # --- observations ---------------------------------------------------------
    def obs_smaps(self, slot, pid):
        lo = self.maddr.get(slot, 0)
        hi = lo + self.mlen.get(slot, 0)
        self.out.append({"t": "smaps", "id": pid, "slot": slot, "addr": lo,
                         "vmas": _smaps_vmas(self.m, self.p.pid, lo, hi)})

    def obs_pagemap(self, slot, pid):
        lo = self.maddr.get(slot, 0)
        n = min(self.mlen.get(slot, 0) // PAGE, 4096)
        raw = self.m.read_file(f"/proc/{self.p.pid}/pagemap", offset=(lo // PAGE) * 8, size=n * 8)
        e = list(struct.unpack(f"<{n}Q", raw)) if len(raw) == n * 8 else []
        self.out.append({"t": "pagemap", "id": pid, "slot": slot, "addr": lo, "e": e})

    def obs_mincore(self, slot, pid):
        lo = self.maddr.get(slot, 0)
        n = min(self.mlen.get(slot, 0) // PAGE, 4096)
        rec = {"t": "mincore", "id": pid, "slot": slot, "err": 0, "v": ""}
        try:
            rec["v"] = "".join("1" if b & 1 else "0" for b in self.p.mincore(lo, n * PAGE))
        except OSError as e:
            rec["err"] = e.errno
        self.out.append(rec)

    def obs_vmstat(self, names, pid):
        vals = {}
        for line in self.m.read_file("/proc/vmstat").splitlines():
            k, _, v = line.partition(" ")
            if k in names:
                vals[k] = int(v)
        self.out.append({"t": "vmstat", "id": pid, "v": {n: vals[n] for n in names if n in vals}})

    # --- steps ----------------------------------------------------------------
    def sig(self, r, e):
        if r["nsig"] == 0:
            r["signo"], r["code"], r["saddr"] = e.signo, e.si_code, e.si_addr
        r["nsig"] += 1

    def step(self, kind, a, r):
        p = self.p
        base = self.maddr.get(a[0], 0) if kind not in ("brk", "knob", "rlimit", "prctl", "shmget",
                                                      "shmrm") and a and \
            isinstance(a[0], int) and a[0] >= 0 else 0
        r["base"] = base
        try:
            if kind == "knob":
                self.m.write_file(a[0], a[1])
            elif kind == "mmap":
                slot, length, prot, flags, hs, hoff, align, fs, foff = a
                fd = self.fds.get(fs, -1) if fs >= 0 else -1
                if align:
                    res = p.mmap(0, length + align, 0, 0x22 | 0x4000)
                    at = (res + align - 1) & ~(align - 1)
                    q = p.mmap(at, length, prot, flags | 0x10, fd, foff)
                    if at > res:
                        p.munmap(res, at - res)
                    if res + length + align > at + length:
                        p.munmap(at + length, res + length + align - (at + length))
                else:
                    hint = _ulong(self.maddr[hs] + hoff) if hs >= 0 else 0
                    q = p.mmap(hint, length, prot, flags, fd, foff)
                r["ret"] = q
                self.maddr[slot], self.mlen[slot] = q, length
            elif kind == "munmap":
                p.munmap(_ulong(base + a[1]), _ulong(a[2]))
            elif kind == "mprotect":
                p.mprotect(_ulong(base + a[1]), _ulong(a[2]), a[3])
            elif kind == "madvise":
                p.madvise(_ulong(base + a[1]), _ulong(a[2]), a[3])
            elif kind == "mremap":
                slot, off, old, new, flags, ds, doff, rs = a
                dst = _ulong(self.maddr.get(ds, 0) + doff) if ds >= 0 else 0
                q = p.mremap(_ulong(base + off), _ulong(old), _ulong(new), flags, dst)
                r["ret"] = q
                if rs >= 0:
                    self.maddr[rs], self.mlen[rs] = q, new
            elif kind == "mlock":
                p.mlock(_ulong(base + a[1]), _ulong(a[2]), a[3])
            elif kind == "munlock":
                p.munlock(_ulong(base + a[1]), _ulong(a[2]))
            elif kind == "brk":
                r["base"] = self.brk_base
                r["ret"] = p.brk(_ulong(self.brk_base + a[0]))
                if a[1] >= 0:
                    self.maddr[a[1]], self.mlen[a[1]] = self.brk_base, max(a[0], 0)
            elif kind in FILE_OPS:
                self.file_op(kind, a, r)
            elif kind == "prctl":
                r["ret"] = p.prctl(*a)
            elif kind == "shmget":
                r["base"] = 0
                sid = p.shmget(0, a[1], a[2])
                self.shmids[a[0]] = sid
                r["ret"] = sid
            elif kind == "shmat":
                q = p.shmat(self.shmids.get(a[1], -1), 0, a[2])
                r["ret"] = q
                self.maddr[a[0]], self.mlen[a[0]] = q, a[3]
            elif kind == "shmdt":
                p.shmdt(_ulong(base))
            elif kind == "shmrm":
                r["base"] = 0
                p.shmctl(self.shmids.get(a[0], -1), 0)
            elif kind == "touch":
                self.touch(a, r)
            elif kind == "fill":
                self.fill(a, r)
            elif kind == "check":
                self.check(a, r)
            elif kind == "rlimit":
                self.setrlimit(a)
            elif kind == "name":
                slot, which, anchor, length = a
                want = "[stack]" if which == 0 else "[heap]"
                g = [x for x in _maps(self.m, p.pid) if x[3] == want]
                if not g:
                    r["ret"], r["err"] = -1, 2
                    return
                lo, hi = g[0][0], g[0][1]
                if anchor == 0:
                    self.maddr[slot], self.mlen[slot] = lo, hi - lo
                elif anchor == 1:
                    self.maddr[slot], self.mlen[slot] = hi - length, length
                else:
                    self.maddr[slot], self.mlen[slot] = lo - length, length
                r["base"] = self.maddr[slot]
        except OSError as e:
            r["ret"], r["err"] = -1, e.errno

    def file_op(self, kind, a, r):
        """The file steps, through the contract's Process methods (docs/file_api)."""
        p = self.p
        if kind == "open":
            f, fs, flags, mode = a
            path = self.fpath.setdefault(f, f"{FILE_DIRS[fs]}/vmsim-conform-{f}")
            fd = p.open(path, flags, mode)
            self.fds[f] = fd
            r["ret"] = fd
        elif kind == "memfd":
            fd = p.memfd_create("vmsim-conform", a[1])
            self.fds[a[0]] = fd
            r["ret"] = fd
        elif kind == "close":
            fd = self.fds.pop(a[0], -1)
            p.close(fd)
        elif kind == "unlink":
            p.unlink(self.fpath[a[0]])
        elif kind == "fsync":
            fd = self.fds.get(a[0], -1)
            p.fdatasync(fd) if a[1] else p.fsync(fd)
        elif kind == "ftruncate":
            p.ftruncate(self.fds.get(a[0], -1), a[1])
        elif kind in ("pwrite", "pread"):
            # the executor's chunks: one pwrite/pread per 2 MiB
            f, off, length, value, perpage = a
            fd = self.fds.get(f, -1)
            pos, end = off, off + length
            r["done"] = r["ret"] = 0
            while pos < end or (length == 0 and pos == off):
                n = min(end - pos, IOCHUNK)
                want = self.pattern(n, value, perpage, pos - off)
                if kind == "pwrite":
                    k = p.pwrite(fd, want, pos)
                else:
                    got = p.pread(fd, n, pos)
                    k = len(got)
                    r["ret"] += _ndiff(got, want)
                r["done"] += k
                pos += k
                if k == 0 or length == 0:
                    break
            if kind == "pwrite":
                r["ret"] = r["done"]
        elif kind == "fadvise":
            f, off, length, adv = a
            p.posix_fadvise(self.fds.get(f, -1), off, length, adv)
        elif kind == "fallocate":
            f, mode, off, length = a
            p.fallocate(self.fds.get(f, -1), mode, off, length)
        elif kind == "dropcaches":
            self.m.write_file("/proc/sys/vm/drop_caches", str(a[0]))
        elif kind == "msync":
            base = self.maddr.get(a[0], 0)
            p.msync(_ulong(base + a[1]), _ulong(a[2]), a[3])

    def setrlimit(self, a):
        res, soft, hard = a
        name = {3: "RLIMIT_STACK", 9: "RLIMIT_AS", 2: "RLIMIT_DATA", 8: "RLIMIT_MEMLOCK"}[res]
        inf = (1 << 64) - 1
        soft = inf if soft < 0 else soft
        if hasattr(self.p, "setrlimit"):
            self.p.setrlimit(name, soft, inf if hard < 0 else hard)
        else:
            # The API has no setrlimit yet: the task's limits are what the model reads.
            self.p.task.rlim[name] = soft

    def touch(self, a, r):
        slot, off, length, stride, write, value, cont, desc = a
        base = self.addr(slot, off)
        n = (length + stride - 1) // stride if stride > 0 else 0
        if not cont and not desc:
            try:
                self.p.touch(base, length, write=bool(write), stride=stride, value=value)
                r["done"] = n
            except SignalDelivered as e:
                self.sig(r, e)
                r["done"] = e.offset // stride
            return
        for j in range(n):
            k = n - 1 - j if desc else j
            try:
                self.p.touch(base + k * stride, 1, write=bool(write), stride=stride, value=value)
                r["done"] += 1
            except SignalDelivered as e:
                self.sig(r, e)
                if not cont:
                    return

    @staticmethod
    def pattern(length, value, perpage, start=0):
        if not perpage:
            return bytes([value]) * length
        out = bytearray()
        for pg in range(start // PAGE, (start + length + PAGE - 1) // PAGE):
            lo = max(pg * PAGE, start)
            hi = min((pg + 1) * PAGE, start + length)
            out += bytes([(value + pg) & 0xFF]) * (hi - lo)
        return bytes(out)

    def fill(self, a, r):
        slot, off, length, value, perpage = a
        start = self.addr(slot, off)
        data = self.pattern(length, value, perpage)
        # The executor stores a byte at a time (do_fill): the bytes before a page that
        # signals are written. p.write is one store, all its bytes or none: one a page.
        done = 0
        try:
            while done < length:
                n = min(length - done, PAGE - ((start + done) & (PAGE - 1)))
                self.p.write(start + done, data[done:done + n])
                done += n
            r["done"] = length
        except SignalDelivered as e:
            self.sig(r, e)
            r["done"] = done + e.offset

    def check(self, a, r):
        slot, off, length, value, perpage = a
        want = self.pattern(length, value, perpage)
        try:
            got = self.p.read(self.addr(slot, off), length)
        except SignalDelivered as e:
            self.sig(r, e)
            got = self.p.read(self.addr(slot, off), e.offset) if e.offset else b""
        r["done"] = len(got)
        r["ret"] = _ndiff(got, want)


def _ndiff(got, want) -> int:
    """How many of the first min(len) bytes differ (zip's pairs, compared by numpy:
    a byte-by-byte generator was ~2% of the conformance tests' time)."""
    import numpy as np
    n = min(len(got), len(want))
    return int(np.count_nonzero(np.frombuffer(got, np.uint8, n) != np.frombuffer(want, np.uint8, n)))


class Hang(Exception):
    """vmsim did not finish a scenario in time (a model bug such as a fault loop)."""


def run(scn, timeout=60):
    """Run a parsed scenario on a fresh vmsim Machine; return the raw records.

    A scenario that takes longer than ``timeout`` seconds raises Hang (in the main
    thread only: SIGALRM), so a model that loops fails the scenario instead of
    hanging the suite."""
    import signal
    import threading
    if not timeout or threading.current_thread() is not threading.main_thread() \
            or not hasattr(signal, "setitimer"):
        return _Runner(scn).run()

    def on_alarm(signo, frame):
        raise Hang(f"no result after {timeout}s (a model loop?)")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return _Runner(scn).run()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
