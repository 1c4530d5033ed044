"""Property-based test: fork / exec / exit / write / read / munmap / mremap /
MADV_DONTNEED across a tree of processes, with the debug checker after every syscall,
against a per-process reference of expected bytes.

Expected behaviour (6.18 source): a child starts with a copy of its parent's private
memory and shares its MAP_SHARED memory; writes to private memory are seen only by the
writer, writes to shared memory by every process mapping it; MADV_DONTNEED zeroes
private pages; munmap makes an access SIGSEGV; mremap moves the bytes; exec leaves the
process with none of the regions. Nothing written may be lost or leak.
"""
import os
import pytest
from hypothesis import settings, strategies as st, HealthCheck
from hypothesis.stateful import RuleBasedStateMachine, rule, precondition, invariant, initialize

import vmsim
from vmsim import (PROT_NONE, PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED, MAP_ANONYMOUS,
                   SignalDelivered, MADV_DONTNEED, MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP)

P = 4096
W = 12                      # private window pages
S = 4                       # shared window pages
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS
MAX_PROCS = 6
HALF = 2048


class ForkTree(RuleBasedStateMachine):
    @initialize()
    def setup(self):
        self.m = vmsim.Machine(memory="256M", cpus=2, debug_vm=True)
        root = self.m.spawn()
        g = root.mmap(0, (2 * W + 3) * P, PROT_NONE, ANON)
        self.priv = g + P
        self.dst = g + (W + 2) * P
        root.mprotect(self.priv, W * P, RW)
        self.shared = root.mmap(0, S * P, RW, MAP_SHARED | MAP_ANONYMOUS)
        self.procs = {root.pid: root}
        # Per process: page address -> expected byte (None = unmapped); shared bytes.
        # Two bytes per page (offsets 0 and HALF), so a COW that loses the page's other
        # contents shows.
        self.mem = {root.pid: {self.priv + i * P: (0, 0) for i in range(W)}}
        self.has_shared = {root.pid: True}
        self.shared_bytes = [0] * S
        self.dead = []

    _forced = None              # explicit examples choose the process

    def _pick(self, data, include_root=True):
        if self._forced is not None:
            return self._forced
        pids = sorted(self.procs)
        if not include_root:
            pids = pids[1:]
        return self.procs[data.draw(st.sampled_from(pids))]

    @precondition(lambda self: len(self.procs) < MAX_PROCS)
    @rule(data=st.data())
    def fork(self, data):
        p = self._pick(data)
        c = p.fork()
        self.procs[c.pid] = c
        self.mem[c.pid] = dict(self.mem[p.pid])
        self.has_shared[c.pid] = self.has_shared[p.pid]

    @precondition(lambda self: len(self.procs) > 1)
    @rule(data=st.data())
    def exit(self, data):
        p = self._pick(data, include_root=False)
        p.exit(0)
        del self.procs[p.pid]
        if p.task.parent is not None and p.task.parent.pid in self.procs:
            assert self.procs[p.task.parent.pid].wait(p.pid) == 0

    @precondition(lambda self: len(self.procs) > 1)
    @rule(data=st.data())
    def execve(self, data):
        p = self._pick(data, include_root=False)
        p.execve()
        self.mem[p.pid] = {}
        self.has_shared[p.pid] = False

    @rule(data=st.data(), page=st.integers(0, W - 1), half=st.integers(0, 1),
          val=st.integers(1, 255))
    def write(self, data, page, half, val):
        p = self._pick(data)
        addr = self.priv + page * P
        exp = self.mem[p.pid].get(addr)
        if exp is None:
            with pytest.raises(SignalDelivered):
                p.write(addr + half * HALF, bytes([val]))
            return
        p.write(addr + half * HALF, bytes([val]))
        self.mem[p.pid][addr] = (val, exp[1]) if half == 0 else (exp[0], val)

    @rule(data=st.data(), page=st.integers(0, S - 1), val=st.integers(1, 255))
    def write_shared(self, data, page, val):
        p = self._pick(data)
        if not self.has_shared[p.pid]:
            return
        p.write(self.shared + page * P, bytes([val]))
        self.shared_bytes[page] = val

    @rule(data=st.data(), lo=st.integers(0, W - 1), n=st.integers(1, 4))
    def dontneed(self, data, lo, n):
        p = self._pick(data)
        hi = min(W, lo + n)
        addrs = [self.priv + i * P for i in range(lo, hi)]
        if any(self.mem[p.pid].get(a) is None for a in addrs):
            return
        p.madvise(addrs[0], len(addrs) * P, MADV_DONTNEED)
        for a in addrs:
            self.mem[p.pid][a] = (0, 0)

    @rule(data=st.data(), lo=st.integers(0, W - 1), n=st.integers(1, 3))
    def munmap(self, data, lo, n):
        p = self._pick(data)
        hi = min(W, lo + n)
        p.munmap(self.priv + lo * P, (hi - lo) * P)
        for i in range(lo, hi):
            self.mem[p.pid].pop(self.priv + i * P, None)

    @rule(data=st.data(), lo=st.integers(0, W - 1), n=st.integers(1, 3), to=st.integers(0, W - 3))
    def mremap(self, data, lo, n, to):
        p = self._pick(data)
        hi = min(W, lo + n)
        src = [self.priv + i * P for i in range(lo, hi)]
        if any(self.mem[p.pid].get(a) is None for a in src):
            return
        dst = self.dst + to * P
        got = p.mremap(src[0], len(src) * P, len(src) * P, MREMAP_MAYMOVE | MREMAP_FIXED, dst)
        assert got == dst
        vals = [self.mem[p.pid].pop(a) for a in src]
        for i, v in enumerate(vals):
            self.mem[p.pid][dst + i * P] = v

    @rule(data=st.data(), lo=st.integers(0, W - 1), n=st.integers(1, 3), to=st.integers(0, W - 3))
    def mremap_dontunmap(self, data, lo, n, to):
        """MREMAP_DONTUNMAP (issue 8): the pages move, the private source stays mapped
        and reads as zeros; a later exit must give everything back."""
        p = self._pick(data)
        hi = min(W, lo + n)
        src = [self.priv + i * P for i in range(lo, hi)]
        if any(self.mem[p.pid].get(a) is None for a in src):
            return
        dst = self.dst + to * P
        got = p.mremap(src[0], len(src) * P, len(src) * P,
                       MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, dst)
        assert got == dst
        vals = [self.mem[p.pid][a] for a in src]
        for i, v in enumerate(vals):
            self.mem[p.pid][dst + i * P] = v
        for a in src:
            self.mem[p.pid][a] = (0, 0)

    @rule(data=st.data())
    def read_all(self, data):
        p = self._pick(data)
        for addr, exp in self.mem[p.pid].items():
            assert (p.read(addr, 1)[0], p.read(addr + HALF, 1)[0]) == exp, (p.pid, hex(addr))
        if self.has_shared[p.pid]:
            for i in range(S):
                assert p.read(self.shared + i * P, 1)[0] == self.shared_bytes[i]

    @invariant()
    def every_byte_as_expected(self):
        # The checker already ran after each syscall; the sweep's reads skip it.
        self.m.debug_vm = False
        try:
            for pid, p in self.procs.items():
                for addr, exp in self.mem[pid].items():
                    assert (p.read(addr, 1)[0], p.read(addr + HALF, 1)[0]) == exp, (pid, hex(addr))
                if self.has_shared[pid]:
                    assert [p.read(self.shared + i * P, 1)[0] for i in range(S)] == self.shared_bytes
        finally:
            self.m.debug_vm = True

    @invariant()
    def unmapped_fault(self):
        for pid, p in self.procs.items():
            for i in range(W):
                a = self.priv + i * P
                if a not in self.mem[pid]:
                    with pytest.raises(SignalDelivered):
                        p.read(a, 1)
                    break

    def teardown(self):
        if not hasattr(self, "procs"):
            return
        for p in list(self.procs.values())[::-1]:
            p.exit(0)
        self.m.check()
        k = self.m.k
        from vmsim.mm import vmstat
        assert k.vmstat[vmstat.NR_ANON_PAGES] == 0
        assert k.vmstat[vmstat.NR_PAGE_TABLE_PAGES] == 0
        assert k.committed_as == 0, "Committed_AS after every process exited"


# The default run keeps the sequences as long (40 steps: trees of up to MAX_PROCS with
# several generations of COW) and runs fewer of them; under CI they come from a fixed
# seed. The long run (pytest -m slow, in .ci/run) explores many more.
_SETTINGS = dict(deadline=None, derandomize=bool(os.environ.get("CI")),
                 suppress_health_check=[HealthCheck.too_slow])
ForkTree.TestCase.settings = settings(max_examples=8, stateful_step_count=40, **_SETTINGS)
TestForkTree = ForkTree.TestCase


@pytest.mark.slow
class TestForkTreeLong(ForkTree.TestCase):
    settings = settings(max_examples=150, stateful_step_count=60, **_SETTINGS)


def test_example_dontunmap_then_exit():
    """Issue 8: MREMAP_DONTUNMAP in a forked child, then exit: everything is returned
    (Committed_AS back to 0 at teardown)."""
    sm = ForkTree()
    sm.setup()
    sm._forced = sm.procs[min(sm.procs)]
    sm.write(data=None, page=0, half=0, val=9)
    sm.fork(data=None)
    sm._forced = sm.procs[max(sm.procs)]
    sm.mremap_dontunmap(data=None, lo=0, n=3, to=2)
    sm.read_all(data=None)
    sm.exit(data=None)
    sm._forced = None
    sm.every_byte_as_expected()
    sm.teardown()
