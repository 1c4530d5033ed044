"""The stale-TLB checker: every TLB hit (with the debug checker on) is compared with
the tables; a hit they no longer back is reported with the operation that changed the
tables and the flush that did not happen.

Mutation tests remove one flush on purpose (munmap, mprotect RW->RO, a COW fault,
MADV_DONTNEED, mremap's move: the CVE-2018-18281 shape) and check the report; the
syscall-return check of pending flushes is switched off there, so the TLB checker
alone has to find it. With the flushes in place, random multi-threaded multi-CPU
schedules report nothing.
"""
import contextlib

import numpy as np
import pytest
from hypothesis import given, settings, HealthCheck, strategies as st

import vmsim
from vmsim.mm.mmap import PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS
from vmsim.uapi import MADV_DONTNEED, MREMAP_MAYMOVE

P = 4096
RW = PROT_READ | PROT_WRITE
PRIV = MAP_PRIVATE | MAP_ANONYMOUS


def setup(pages=8):
    """p on CPU 0 and its thread t on CPU 1, both with the region in their TLBs."""
    m = vmsim.Machine(memory="512M", cpus=2, tlb="golden-cove", debug_vm=True)
    p = m.spawn(cpu=0)
    t = p.clone_thread(cpu=1)
    a = p.mmap(0, pages * P, RW, PRIV)
    p.touch(a, pages * P, write=True)
    t.touch(a, pages * P, write=True)
    return m, p, t, a


def noop(*a, **kw):
    pass


@contextlib.contextmanager
def without(monkeypatch, target):
    """Remove one flush (``module.function``) for the duration, and the syscall-return
    check of pending flushes for the whole test."""
    import vmsim.mm.debug_vm as dv
    monkeypatch.setattr(dv, "_check_tlb", noop)
    mod, name = target.rsplit(".", 1)
    import importlib
    m = importlib.import_module(mod)
    saved = getattr(m, name)
    setattr(m, name, noop)
    try:
        yield
    finally:
        setattr(m, name, saved)


def op_munmap(p, t, a):
    p.munmap(a, P)
    t.read(a, 1)


def op_mprotect(p, t, a):
    p.mprotect(a, P, PROT_READ)
    t.write(a, b"x")


def op_cow(p, t, a):
    c = p.fork(cpu=0)            # fork flushes the parent's TLBs (flush_tlb_mm)
    t.read(a, 1)                 # CPU 1 caches the read-only, shared frame again
    p.write(a, b"y")             # COW on CPU 0: wp_page_copy -> ptep_clear_flush
    t.read(a, 1)                 # CPU 1 must not see the old frame
    c.exit(0)


def op_dontneed(p, t, a):
    p.madvise(a, P, MADV_DONTNEED)
    t.read(a, 1)


def op_mremap(p, t, a):
    p.mremap(a, 8 * P, 16 * P, MREMAP_MAYMOVE, 0)
    t.read(a, 1)


MUTATIONS = [
    (op_munmap, "vmsim.mm.mmu_gather.flush_tlb_mm_range", "not mapped any more", "zap_pte_range"),
    (op_mprotect, "vmsim.mm.mmu_gather.flush_tlb_mm_range", "no longer allow writes", "change_pte_range"),
    (op_cow, "vmsim.mm.memory.flush_tlb_page", "map another frame", "ptep_clear_flush"),
    (op_dontneed, "vmsim.mm.mmu_gather.flush_tlb_mm_range", "not mapped any more", "zap_pte_range"),
    (op_mremap, "vmsim.mm.mremap.flush_tlb_range", "not mapped any more", "move_ptes"),
]


@pytest.mark.parametrize("op, flush, what, changer", MUTATIONS, ids=[m[0].__name__ for m in MUTATIONS])
def test_missing_flush_is_reported_on_the_stale_hit(monkeypatch, op, flush, what, changer):
    m, p, t, a = setup()
    with without(monkeypatch, flush):
        with pytest.raises(AssertionError, match="stale TLB entry on CPU 1") as e:
            try:
                op(p, t, a)
            except vmsim.SignalDelivered:
                pass
    msg = str(e.value)
    assert what in msg and changer in msg and "no flush_tlb_mm_range covered it" in msg, msg


@pytest.mark.parametrize("op", [m[0] for m in MUTATIONS], ids=[m[0].__name__ for m in MUTATIONS])
def test_with_the_flushes_in_place_nothing_is_reported(op):
    m, p, t, a = setup()
    try:
        op(p, t, a)
    except vmsim.SignalDelivered:
        pass


class _Batched:
    """A task whose reads and writes are p.access calls of 8 accesses in the page (the
    first a lookup, the other 7 repeats of it in access_chunk)."""

    def __init__(self, t):
        self.t = t

    def __getattr__(self, name):
        return getattr(self.t, name)

    def _access(self, addr, kind):
        self.t.access(addr + 8 * np.arange(8, dtype=np.int64), np.full(8, kind, np.uint8))

    def read(self, addr, n):
        self._access(addr, vmsim.ACCESS_READ)

    def write(self, addr, data):
        self._access(addr, vmsim.ACCESS_WRITE)


@pytest.mark.parametrize("op, flush, what, changer", MUTATIONS, ids=[m[0].__name__ for m in MUTATIONS])
def test_missing_flush_is_reported_through_p_access(monkeypatch, op, flush, what, changer):
    """The same stale hits met by p.access, whose repeat shortcut stays on with the
    checker: the first access of the page is the lookup, and its hit is checked."""
    m, p, t, a = setup()
    with without(monkeypatch, flush):
        with pytest.raises(AssertionError, match="stale TLB entry on CPU 1") as e:
            try:
                op(p, _Batched(t), a)
            except vmsim.SignalDelivered:
                pass
    msg = str(e.value)
    assert what in msg and changer in msg and "no flush_tlb_mm_range covered it" in msg, msg


def test_first_level_hits_repeat_with_the_checker_on(monkeypatch):
    """With the checker on, p.access compares one hit per page and kind with the tables
    (mmu_batch._tlb), not every access: the others are repeats of a first-level hit
    (access_chunk), and leave the TLB, its statistics and the tables as the same
    accesses one by one do, each checked."""
    from vmsim.arch.x86 import cpu, mmu_batch, tlb as T
    seen = []

    def counting(fn):
        def check_hit(*args):
            seen.append(args[4])
            return fn(*args)
        return check_hit
    states = []
    cpu._use_compiled(False)               # the plain-Python build: its globals are patched
    try:
        for batch in (True, False):
            m = vmsim.Machine(memory="64M", cpus=1, tlb="golden-cove", debug_vm=True)
            p = m.spawn()
            a = p.mmap(0, 4 * P, RW, PRIV)
            p.touch(a, 4 * P, write=True)
            addrs = a + np.repeat(np.arange(4) * P, 16) + np.tile(np.arange(16) * 8, 4)
            kinds = np.tile(np.repeat([vmsim.ACCESS_READ, vmsim.ACCESS_WRITE], 8), 4).astype(np.uint8)
            seen.clear()
            monkeypatch.setattr(mmu_batch, "_tlb_check_hit", counting(T._tlb_check_hit))
            monkeypatch.setattr(T, "_tlb_check_hit", counting(T._tlb_check_hit))
            if batch:
                p.access(addrs.astype(np.int64), kinds, value=0)   # zeros: no store leaves the chunk
            else:
                for x, kd in zip(addrs.tolist(), kinds.tolist()):
                    p.read(x, 1) if kd == vmsim.ACCESS_READ else p.write(x, b"\0")
            monkeypatch.undo()
            hw = m.k.tlb
            states.append((len(seen), hw.ent.tobytes(), hw.clock.tobytes(), hw.stats.tobytes(),
                           m.k.ptpool.arr[:m.k.ptpool.used * 512].tobytes()))
            m.check()
    finally:
        cpu._default()
    # A read then a store per page: the store's hit is checked, its 7 repeats and the
    # read's are not (a store that hit allows a read too: access_chunk).
    assert states[0][0] == 2 * 4
    assert states[1][0] == 64
    assert states[0][1:] == states[1][1:]


def test_a_flush_that_skips_a_cpu_is_reported(monkeypatch):
    """A shootdown that leaves out the other CPU (here: should_flush_tlb says no to
    everyone): the record shows a flush was issued, the remote TLB still has the entry."""
    import vmsim.arch.x86.mm.tlb as K
    m, p, t, a = setup()
    monkeypatch.setattr(K, "should_flush_tlb", lambda k, cpu, info: cpu == info.initiating_cpu)
    p.munmap(a, P)
    with pytest.raises(AssertionError, match="issued but did not reach this CPU"):
        t.read(a, 1)


OPS = st.lists(st.tuples(st.sampled_from(["touch", "write", "munmap", "mprotect_ro", "mprotect_rw",
                                          "dontneed", "mremap", "fork", "idle", "migrate",
                                          "thread", "exit_thread"]),
                         st.integers(0, 7), st.integers(0, 2), st.integers(0, 1)),
               min_size=5, max_size=40)


CONFIGS = st.sampled_from([("zen4", True, False), ("golden-cove", False, False),
                           ("skylake", True, True), ("zen3", False, True)])


def run_schedule(ops, config=("zen4", True, False)):
    tlb, pcid, pti = config
    m = vmsim.Machine(memory="512M", cpus=2, tlb=tlb, pcid=pcid, pti=pti, debug_vm=True)
    p = m.spawn(cpu=0)
    tasks = [p, p.clone_thread(cpu=1)]
    a = p.mmap(0, 16 * P, RW, PRIV)
    regions = [a]
    for what, page, who, cpu in ops:
        live = [x for x in tasks if x.task.mm is not None and x.task.state == "R"]
        if not live:
            break
        x = live[who % len(live)]
        r = regions[page % len(regions)]
        addr = r + (page % 8) * P
        try:
            if what == "touch":
                x.touch(r, 8 * P)
            elif what == "write":
                x.write(addr, b"w")
            elif what == "munmap":
                x.munmap(addr, P)
            elif what == "mprotect_ro":
                x.mprotect(r, 4 * P, PROT_READ)
            elif what == "mprotect_rw":
                x.mprotect(r, 8 * P, RW)
            elif what == "dontneed":
                x.madvise(r, 4 * P, MADV_DONTNEED)
            elif what == "mremap":
                regions[page % len(regions)] = x.mremap(r, 8 * P, 8 * P + P * (page % 3), MREMAP_MAYMOVE, 0)
            elif what == "fork":
                tasks.append(x.fork(cpu=cpu))
            elif what == "idle":
                m.schedule(None, cpu=cpu)
            elif what == "migrate":
                m.schedule(x, cpu=cpu)
            elif what == "thread":
                tasks.append(x.clone_thread(cpu=cpu))
            elif what == "exit_thread" and sum(1 for y in live if y.mm is x.mm) > 1:
                x.exit_thread(0)
        except (vmsim.SignalDelivered, OSError):
            pass
    m.check()


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(OPS, CONFIGS)
def test_random_thread_schedules_report_nothing(ops, config):
    run_schedule(ops, config)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(OPS, CONFIGS)
def test_random_thread_schedules_report_nothing_long(ops, config):
    run_schedule(ops, config)
