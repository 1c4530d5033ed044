"""Property-based test: random mmap / munmap / mprotect / madvise / mremap / accesses on
two processes (one per CPU), with the debug checker after every syscall, against a
reference model of the bytes each page must hold and of Linux's errnos and signals.

Expected behaviour comes from the 6.18 syscall code: private anonymous memory reads
as zeros until written; MADV_DONTNEED zeroes private pages and keeps shared (shmem)
ones; MADV_FREE leaves old data or zeros (vmsim has no reclaim yet, but the model
accepts both); mremap moves the data; an access where no VMA is gives SIGSEGV
SEGV_MAPERR, one the VMA's protection forbids SEGV_ACCERR. Partial effects follow
the kernel: mprotect changes the VMAs before the first hole then fails with ENOMEM;
madvise(DONTNEED/FREE) skips holes and returns ENOMEM; POPULATE stops at the first
hole (ENOMEM) or a VMA whose protection forbids the access (EINVAL, as measured on
the 6.18 host, like MADV_FREE on shared memory and the partial mprotect).

Profiles: the default run is small (10 sequences of 30 steps); pytest -m slow runs 100
of 60 (TestVMStateMachineLong); HYPOTHESIS_PROFILE=long runs 300 of 120 (with the
checker every 5 syscalls to keep them tractable).
"""
import errno
import importlib
import os

import pytest
from hypothesis import settings, strategies as st, HealthCheck
from hypothesis.stateful import RuleBasedStateMachine, rule, precondition, invariant

import vmsim
from vmsim import (PROT_NONE, PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED, MAP_ANONYMOUS,
                   MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_POPULATE, SIGSEGV, SEGV_MAPERR, SEGV_ACCERR,
                   MADV_DONTNEED, MADV_FREE, MADV_POPULATE_READ, MADV_POPULATE_WRITE,
                   MREMAP_MAYMOVE, MREMAP_FIXED)
from vmsim.mm.debug_vm import VMChecker
from vmsim.mm.mm_types import VM_READ, VM_WRITE, VM_SHARED

PAGE = 4096
WIN = 96                  # pages in each process's window (plus a PROT_NONE guard page each side)
LOW = 0x200000000000      # issue 8's MAP_FIXED address (outside the windows)


SKIP = set(filter(None, os.environ.get("VMSIM_STATEFUL_SKIP", "").split(",")))   # e.g. "madvise"


def _have(mod):
    if mod.rsplit(".", 1)[-1] in SKIP:
        return False
    try:
        importlib.import_module(mod)
        return True
    except ImportError:
        return False


HAVE_MPROTECT = _have("vmsim.mm.mprotect")
HAVE_MADVISE = _have("vmsim.mm.madvise")
HAVE_MREMAP = _have("vmsim.mm.mremap")

# Under CI the examples come from a fixed seed (a red CI must mean a change broke
# something); local runs explore new random sequences every time.
settings.register_profile("vmsim-default", max_examples=10, stateful_step_count=30, deadline=None,
                          derandomize=bool(os.environ.get("CI")),
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=300, stateful_step_count=120, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
CHECK_EVERY = 5 if LONG else 1


class Page:
    """Model of one mapped page: protection, shared or private, mmap segment, and the
    possible contents (None stands for all zeros; two candidates after MADV_FREE)."""
    __slots__ = ("prot", "shared", "seg", "cands")

    def __init__(self, prot, shared, seg):
        self.prot = prot
        self.shared = shared
        self.seg = seg
        self.cands = [None]


def _bytes(c, off, n):
    return bytes(n) if c is None else bytes(c[off:off + n])


class VMStateMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.m = vmsim.Machine(memory="256M", cpus=2, debug_vm=False)
        self.checker = VMChecker(every=CHECK_EVERY).install(self.m)
        self.procs = [self.m.spawn(cpu=0), self.m.spawn(cpu=1)]
        self.pages = [{}, {}]       # per process: page address -> Page
        self.base = [0, 0]
        self.nseg = 0
        for i, p in enumerate(self.procs):
            w = p.mmap(0, (WIN + 2) * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS)
            p.munmap(w + PAGE, WIN * PAGE)
            self.base[i] = w + PAGE
            for g in (w, w + (WIN + 1) * PAGE):
                self.pages[i][g] = Page(PROT_NONE, False, -1)      # guards: never chosen

    # --- helpers -------------------------------------------------------------------
    def addr(self, i, page):
        return self.base[i] + page * PAGE

    def new_seg(self):
        self.nseg += 1
        return self.nseg

    def map_model(self, i, start, npages, prot, shared):
        seg = self.new_seg()
        for j in range(npages):
            self.pages[i][start + j * PAGE] = Page(prot, shared, seg)

    def in_window(self, i, a):
        return self.base[i] <= a < self.base[i] + WIN * PAGE

    def errno_of(self, fn, *args):
        try:
            return 0, fn(*args)
        except OSError as e:
            return e.errno, None

    # --- mmap ---------------------------------------------------------------------
    @rule(i=st.integers(0, 1), page=st.integers(0, WIN - 1), n=st.integers(1, 12),
          prot=st.sampled_from([PROT_READ, PROT_READ | PROT_WRITE, PROT_NONE]),
          shared=st.booleans(), populate=st.booleans())
    def mmap_fixed(self, i, page, n, prot, shared, populate):
        n = min(n, WIN - page)
        a = self.addr(i, page)
        flags = (MAP_SHARED if shared else MAP_PRIVATE) | MAP_ANONYMOUS | MAP_FIXED
        flags |= MAP_POPULATE if populate else 0
        assert self.procs[i].mmap(a, n * PAGE, prot, flags) == a
        self.map_model(i, a, n, prot, shared)

    @rule(i=st.integers(0, 1), page=st.integers(0, WIN - 1), n=st.integers(1, 8),
          prot=st.sampled_from([PROT_READ, PROT_READ | PROT_WRITE]), shared=st.booleans(),
          populate=st.booleans())
    def mmap_hint(self, i, page, n, prot, shared, populate):
        n = min(n, WIN - page)
        hint = self.addr(i, page)
        flags = (MAP_SHARED if shared else MAP_PRIVATE) | MAP_ANONYMOUS
        flags |= MAP_POPULATE if populate else 0
        free = all(hint + j * PAGE not in self.pages[i] for j in range(n))
        a = self.procs[i].mmap(hint, n * PAGE, prot, flags)
        if free:
            assert a == hint, "a free, valid hint is used as is"
        assert a & 0xFFF == 0
        for j in range(n):
            assert a + j * PAGE not in self.pages[i], f"mmap returned {a:#x} over a mapping"
        self.map_model(i, a, n, prot, shared)

    @rule(i=st.integers(0, 1), page=st.integers(0, WIN - 1))
    def mmap_fixed_noreplace(self, i, page):
        a = self.addr(i, page)
        err, ret = self.errno_of(self.procs[i].mmap, a, PAGE, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE)
        if a in self.pages[i]:
            assert err == errno.EEXIST
        else:
            assert (err, ret) == (0, a)
            self.map_model(i, a, 1, PROT_READ | PROT_WRITE, False)

    @rule(i=st.integers(0, 1), page=st.integers(0, WIN - 1),
          case=st.sampled_from(["len0", "unaligned_fixed", "no_type"]))
    def mmap_bad(self, i, page, case):
        a = self.addr(i, page)
        anon = MAP_PRIVATE | MAP_ANONYMOUS
        args = {"len0": (a, 0, PROT_READ, anon),
                "unaligned_fixed": (a + 123, PAGE, PROT_READ, anon | MAP_FIXED),
                "no_type": (a, PAGE, PROT_READ, MAP_ANONYMOUS)}[case]
        err, _ = self.errno_of(self.procs[i].mmap, *args)
        assert err == errno.EINVAL

    # --- munmap ---------------------------------------------------------------------
    @rule(i=st.integers(0, 1), page=st.integers(0, WIN - 1), n=st.integers(1, 16))
    def munmap(self, i, page, n):
        n = min(n, WIN - page)
        a = self.addr(i, page)
        self.procs[i].munmap(a, n * PAGE)
        for j in range(n):
            self.pages[i].pop(a + j * PAGE, None)

    @rule(i=st.integers(0, 1))
    def munmap_outside_window(self, i):
        """Unmap one mapping the kernel placed outside the window, if any."""
        outside = sorted(a for a, pg in self.pages[i].items() if pg.seg >= 0 and not self.in_window(i, a))
        if outside:
            a = outside[0]
            self.procs[i].munmap(a, PAGE)
            del self.pages[i][a]

    @rule(i=st.integers(0, 1), page=st.integers(0, WIN - 1), case=st.sampled_from(["unaligned", "len0"]))
    def munmap_bad(self, i, page, case):
        a = self.addr(i, page)
        args = (a + 1, PAGE) if case == "unaligned" else (a, 0)
        err, _ = self.errno_of(self.procs[i].munmap, *args)
        assert err == errno.EINVAL

    # --- mprotect ---------------------------------------------------------------------
    @precondition(lambda self: HAVE_MPROTECT)
    @rule(i=st.integers(0, 1), page=st.integers(0, WIN - 1), n=st.integers(1, 12),
          prot=st.sampled_from([PROT_NONE, PROT_READ, PROT_READ | PROT_WRITE]))
    def mprotect(self, i, page, n, prot):
        n = min(n, WIN - page)
        a = self.addr(i, page)
        err, _ = self.errno_of(self.procs[i].mprotect, a, n * PAGE, prot)
        # do_mprotect_pkey(): the VMAs from start up to the first hole change, then ENOMEM.
        hole = False
        for j in range(n):
            pg = self.pages[i].get(a + j * PAGE)
            if pg is None:
                hole = True
                break
            pg.prot = prot
        assert err == (errno.ENOMEM if hole else 0)

    @precondition(lambda self: HAVE_MPROTECT)
    @rule(i=st.integers(0, 1), page=st.integers(0, WIN - 1))
    def mprotect_unaligned(self, i, page):
        err, _ = self.errno_of(self.procs[i].mprotect, self.addr(i, page) + 8, PAGE, PROT_READ)
        assert err == errno.EINVAL

    # --- madvise ---------------------------------------------------------------------
    @precondition(lambda self: HAVE_MADVISE)
    @rule(i=st.integers(0, 1), page=st.integers(0, WIN - 1), n=st.integers(1, 12),
          advice=st.sampled_from([MADV_DONTNEED, MADV_FREE]))
    def madvise_dontneed_free(self, i, page, n, advice):
        n = min(n, WIN - page)
        a = self.addr(i, page)
        err, _ = self.errno_of(self.procs[i].madvise, a, n * PAGE, advice)
        expect = 0
        for j in range(n):
            pg = self.pages[i].get(a + j * PAGE)
            if pg is None:
                expect = errno.ENOMEM          # madvise_walk_vmas: skip the hole, go on
                continue
            if advice == MADV_DONTNEED:
                if not pg.shared:
                    pg.cands = [None]
            else:
                if pg.shared:                  # madvise_free_single_vma: anonymous VMAs only
                    expect = errno.EINVAL
                    break
                pg.cands = pg.cands + [None] if None not in pg.cands else pg.cands
        assert err == expect

    @precondition(lambda self: HAVE_MADVISE)
    @rule(i=st.integers(0, 1), page=st.integers(0, WIN - 1), n=st.integers(1, 12),
          write=st.booleans())
    def madvise_populate(self, i, page, n, write):
        n = min(n, WIN - page)
        a = self.addr(i, page)
        err, _ = self.errno_of(self.procs[i].madvise, a, n * PAGE,
                               MADV_POPULATE_WRITE if write else MADV_POPULATE_READ)
        expect = 0
        for j in range(n):
            pg = self.pages[i].get(a + j * PAGE)
            if pg is None:
                expect = errno.ENOMEM
                break
            if not pg.prot & (PROT_WRITE if write else PROT_READ):
                expect = errno.EINVAL          # check_vma_flags(); measured on 6.18: EINVAL
                break
        assert err == expect

    # --- mremap ---------------------------------------------------------------------
    def _segment_run(self, i, page, n):
        """The longest run from page (at most n pages) of one segment with one prot."""
        a = self.addr(i, page)
        first = self.pages[i].get(a)
        if first is None or first.seg < 0:
            return a, 0
        k = 0
        while k < n and page + k < WIN:
            pg = self.pages[i].get(a + k * PAGE)
            if pg is None or pg.seg != first.seg or pg.prot != first.prot:
                break
            k += 1
        return a, k

    @precondition(lambda self: HAVE_MREMAP)
    @rule(i=st.integers(0, 1), page=st.integers(0, WIN - 1), n=st.integers(1, 8),
          new_n=st.integers(1, 12), dest=st.one_of(st.none(), st.integers(0, WIN - 1)))
    def mremap(self, i, page, n, new_n, dest):
        a, n = self._segment_run(i, page, n)
        if n == 0:
            err, _ = self.errno_of(self.procs[i].mremap, a, PAGE, PAGE, 0)
            if a not in self.pages[i]:
                assert err == errno.EFAULT      # no VMA at old_addr
            return
        old = [self.pages[i][a + j * PAGE] for j in range(n)]
        if old[0].shared:
            new_n = min(new_n, n)               # beyond the shmem file's size would SIGBUS
        flags = MREMAP_MAYMOVE
        new_addr = 0
        if dest is not None:
            dest = min(dest, WIN - new_n)
            d = self.addr(i, dest)
            if d < a + n * PAGE and a < d + new_n * PAGE:
                dest = None                      # overlapping FIXED ranges are EINVAL
            else:
                flags |= MREMAP_FIXED
                new_addr = d
        ret = self.procs[i].mremap(a, n * PAGE, new_n * PAGE, flags, new_addr)
        if flags & MREMAP_FIXED:
            assert ret == new_addr
        grows_in_place = new_n > n and all(a + j * PAGE not in self.pages[i] for j in range(n, new_n))
        if not flags & MREMAP_FIXED and (new_n <= n or grows_in_place):
            assert ret == a, "mremap shrinks, or grows into free space, in place"
        for j in range(n):
            del self.pages[i][a + j * PAGE]
        if flags & MREMAP_FIXED:
            for j in range(new_n):
                self.pages[i].pop(ret + j * PAGE, None)
        seg = self.new_seg()
        for j in range(new_n):
            assert ret + j * PAGE not in self.pages[i], f"mremap moved onto a mapping at {ret:#x}"
            if j < n:
                pg = old[j]
                pg.seg = seg
            else:
                pg = Page(old[0].prot, old[0].shared, seg)
            self.pages[i][ret + j * PAGE] = pg

    @precondition(lambda self: HAVE_MREMAP)
    @rule(i=st.integers(0, 1), page=st.integers(0, WIN - 1))
    def mremap_bad(self, i, page):
        a = self.addr(i, page)
        err, _ = self.errno_of(self.procs[i].mremap, a + 16, PAGE, PAGE, MREMAP_MAYMOVE)
        assert err == errno.EINVAL                  # old_addr not page aligned
        err, _ = self.errno_of(self.procs[i].mremap, a, PAGE, 0, MREMAP_MAYMOVE)
        assert err == errno.EINVAL                  # new_len 0

    # --- accesses -------------------------------------------------------------------
    def _first_bad(self, i, a, size, write):
        """Return (offset of the first byte that faults, si_code) or (size, None)."""
        off = 0
        while off < size:
            x = a + off
            pg = self.pages[i].get(x & ~0xFFF)
            if pg is None:
                return off, SEGV_MAPERR
            if pg.prot == PROT_NONE or (write and not pg.prot & PROT_WRITE):
                return off, SEGV_ACCERR
            off += PAGE - (x & 0xFFF)
        return size, None

    @rule(i=st.integers(0, 1), page=st.integers(0, WIN - 1), off=st.integers(0, PAGE - 1),
          data=st.binary(min_size=1, max_size=24))
    def write(self, i, page, off, data):
        a = self.addr(i, page) + off
        good, code = self._first_bad(i, a, len(data), True)
        try:
            self.procs[i].write(a, data)
            assert code is None, f"write at {a:#x} should have faulted"
        except vmsim.SignalDelivered as e:
            # One store: none of its bytes when a page of it faults, as on x86
            # (tests/test_cpu_store.py).
            assert (e.signo, e.si_code, e.si_addr, e.offset) == (SIGSEGV, code, a + good, 0)
            return
        self._store(i, a, data)

    def _store(self, i, a, data):
        done = 0
        while done < len(data):
            x = a + done
            n = min(len(data) - done, PAGE - (x & 0xFFF))
            pg = self.pages[i][x & ~0xFFF]
            new = []
            for c in pg.cands:
                c = bytearray(PAGE) if c is None else bytearray(c)
                c[x & 0xFFF:(x & 0xFFF) + n] = data[done:done + n]
                new.append(c)
            pg.cands = new
            done += n

    @rule(i=st.integers(0, 1), page=st.integers(0, WIN - 1), off=st.integers(0, PAGE - 1),
          size=st.integers(1, 40))
    def read(self, i, page, off, size):
        a = self.addr(i, page) + off
        good, code = self._first_bad(i, a, size, False)
        try:
            got = self.procs[i].read(a, size)
            assert code is None, f"read at {a:#x} should have faulted"
        except vmsim.SignalDelivered as e:
            assert (e.signo, e.si_code, e.si_addr, e.offset) == (SIGSEGV, code, a + good, good)
            return
        self._verify(i, a, got)

    def _verify(self, i, a, got):
        done = 0
        while done < len(got):
            x = a + done
            n = min(len(got) - done, PAGE - (x & 0xFFF))
            pg = self.pages[i][x & ~0xFFF]
            chunk = got[done:done + n]
            ok = [c for c in pg.cands if _bytes(c, x & 0xFFF, n) == chunk]
            assert ok, (f"page {x & ~0xFFF:#x}: read {chunk[:16]!r} at +{x & 0xFFF:#x}, expected "
                        f"{[_bytes(c, x & 0xFFF, n)[:16] for c in pg.cands]}")
            pg.cands = ok
            done += n

    @rule(i=st.integers(0, 1), page=st.integers(0, WIN - 1), n=st.integers(1, 12),
          write=st.booleans(), value=st.integers(1, 255))
    def touch(self, i, page, n, write, value):
        n = min(n, WIN - page)
        a = self.addr(i, page)
        good, code = self._first_bad(i, a, n * PAGE, write)
        try:
            self.procs[i].touch(a, n * PAGE, write=write, value=value)
            assert code is None
        except vmsim.SignalDelivered as e:
            assert (e.signo, e.si_code, e.si_addr) == (SIGSEGV, code, a + good)
        if write:
            for j in range(good // PAGE):
                self._store(i, a + j * PAGE, bytes((value,)))

    # --- issue 8: bad arguments as C types, touch(stride=0), ignored new_addr, failed MAP_FIXED
    @rule(i=st.integers(0, 1), page=st.integers(0, WIN - 1),
          case=st.sampled_from(["mmap_neg", "mmap_neg_fixed", "mmap_min", "mmap_neg_addr",
                                "munmap_neg", "mprotect_neg", "madvise_neg", "mremap_neg"]))
    def c_type_lengths(self, i, page, case):
        """Negative values are huge unsigned ones: Linux's errno (syscall(2) on this
        machine's 6.18.44), and nothing changes (vmas_match_model)."""
        p, a = self.procs[i], self.addr(i, page)
        rw, anon = PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS
        call, want = {
            "mmap_neg": (lambda: p.mmap(a, -4096, rw, anon), errno.ENOMEM),
            "mmap_neg_fixed": (lambda: p.mmap(a, -4096, rw, anon | MAP_FIXED), errno.ENOMEM),
            "mmap_min": (lambda: p.mmap(0, -2**63, rw, anon), errno.ENOMEM),
            "mmap_neg_addr": (lambda: p.mmap(-4096, 4096, rw, anon | MAP_FIXED), errno.ENOMEM),
            "munmap_neg": (lambda: p.munmap(a, -4096), errno.EINVAL),
            "mprotect_neg": (lambda: p.mprotect(a, -4096, PROT_READ), errno.ENOMEM),
            "madvise_neg": (lambda: p.madvise(a, -4096, MADV_DONTNEED), errno.EINVAL),
            "mremap_neg": (lambda: p.mremap(a, 4096, -4096, MREMAP_MAYMOVE), errno.EINVAL),
        }[case]
        err, _ = self.errno_of(call)
        assert err == want, (case, err)

    @rule(i=st.integers(0, 1), page=st.integers(0, WIN - 1))
    def touch_stride0(self, i, page):
        """touch(stride=0) makes no access count: refused, no access."""
        with pytest.raises((ValueError, OSError)):
            self.procs[i].touch(self.addr(i, page), PAGE, write=True, stride=0)

    @precondition(lambda self: HAVE_MREMAP)
    @rule(i=st.integers(0, 1), page=st.integers(0, WIN - 1), n=st.integers(1, 4))
    def mremap_ignored_new_addr(self, i, page, n):
        """new_addr is ignored without MREMAP_FIXED / MREMAP_DONTUNMAP (check_mremap_params)."""
        a, n = self._segment_run(i, page, n)
        if n == 0:
            return
        assert self.procs[i].mremap(a, n * PAGE, n * PAGE, MREMAP_MAYMOVE, 0xfffffffffffff000) == a

    @rule(i=st.integers(0, 1), val=st.integers(1, 255))
    def mmap_fixed_enomem_keeps_mapping(self, i, val):
        """A MAP_FIXED that fails its overcommit check keeps the mapping it would have
        replaced, and its data (vms_abort_munmap_vmas)."""
        p = self.procs[i]
        lo = LOW + i * (1 << 32)
        rw, anon = PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED
        assert p.mmap(lo, 0x10000, rw, anon) == lo
        p.write(lo + 5, bytes([val]))
        err, _ = self.errno_of(p.mmap, lo, 0x400000000000, rw, anon)
        assert err == errno.ENOMEM
        assert p.read(lo + 5, 1) == bytes([val])
        p.munmap(lo, 0x10000)

    # --- model vs kernel -----------------------------------------------------------------
    @invariant()
    def vmas_match_model(self):
        for i, p in enumerate(self.procs):
            mm = p.mm
            for j in range(-1, WIN + 1):
                x = self.addr(i, j)
                pg = self.pages[i].get(x)
                v = mm.vma_lookup(x)
                assert (v is not None) == (pg is not None), f"pid {p.pid} page {x:#x}: VMA {v!r}"
                if v is not None:
                    want = ((VM_READ if pg.prot & PROT_READ else 0) |
                            (VM_WRITE if pg.prot & PROT_WRITE else 0))
                    assert v.vm_flags & (VM_READ | VM_WRITE) == want, f"{v!r} vs prot {pg.prot}"
                    assert bool(v.vm_flags & VM_SHARED) == pg.shared

    def teardown(self):
        for p in self.procs:
            if p.mm is not None:
                p.exit()
        self.m.check()              # includes the "everything is returned" check
        k = self.m.k
        from vmsim.mm.swap import lru_add_drain_all
        lru_add_drain_all(k)        # exit_mmap leaves the per-CPU batches to a later drain
        # The program image's page cache stays (nr_file_pages), as any file's does.
        from vmsim.mm import vmstat
        assert k.page_alloc.nr_free_pages() == sum(z.managed_pages for z in k.page_alloc.zones) \
            - k.vmstat[vmstat.NR_FILE_PAGES]


TestVMStateMachine = VMStateMachine.TestCase
TestVMStateMachine.settings = settings.get_profile("long" if LONG else "vmsim-default")


@pytest.mark.slow
class TestVMStateMachineLong(VMStateMachine.TestCase):
    settings = settings(max_examples=100, stateful_step_count=60, deadline=None,
                        derandomize=bool(os.environ.get("CI")),
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_skipped_rules_are_reported():
    """Rules whose syscall module is missing are skipped (precondition): say which."""
    missing = [m for m, ok in (("mprotect", HAVE_MPROTECT), ("madvise", HAVE_MADVISE),
                               ("mremap", HAVE_MREMAP)) if not ok]
    if missing:
        pytest.skip(f"stateful rules skipped until vmsim.mm.{{{', '.join(missing)}}} exist")


# --- issue 8's cases as explicit examples ------------------------------------------------
def test_example_map_fixed_enomem_keeps_the_mapping():
    sm = VMStateMachine()
    sm.mmap_fixed_enomem_keeps_mapping(i=0, val=0x5a)
    sm.vmas_match_model()
    sm.teardown()


def test_example_negative_lengths():
    sm = VMStateMachine()
    sm.mmap_fixed(i=0, page=4, n=4, prot=PROT_READ | PROT_WRITE, shared=False, populate=False)
    sm.write(i=0, page=4, off=0, data=b"keep")
    for case in ["mmap_neg", "mmap_neg_fixed", "mmap_min", "mmap_neg_addr", "munmap_neg",
                 "mprotect_neg", "madvise_neg", "mremap_neg"]:
        sm.c_type_lengths(i=0, page=4, case=case)
        sm.vmas_match_model()
    sm.read(i=0, page=4, off=0, size=4)
    sm.teardown()


def test_example_write_straddling_into_a_read_only_page_writes_nothing():
    """A write is one store: into a read-only second page it signals at that page and
    writes none of its bytes (as an x86 store on this machine; it wrote the first
    page's bytes before). The read of them checks the model's contents."""
    sm = VMStateMachine()
    sm.mmap_fixed(i=0, page=4, n=2, prot=PROT_READ | PROT_WRITE, shared=False, populate=False)
    sm.mprotect(i=0, page=5, n=1, prot=PROT_READ)
    sm.write(i=0, page=4, off=PAGE - 4, data=b"straddle")
    sm.read(i=0, page=4, off=PAGE - 8, size=8)
    sm.teardown()


def test_example_touch_stride0():
    sm = VMStateMachine()
    sm.mmap_fixed(i=1, page=0, n=2, prot=PROT_READ | PROT_WRITE, shared=False, populate=False)
    sm.touch_stride0(i=1, page=0)
    sm.read(i=1, page=0, off=0, size=16)
    sm.teardown()


def test_example_mremap_ignored_new_addr():
    sm = VMStateMachine()
    sm.mmap_fixed(i=0, page=10, n=4, prot=PROT_READ | PROT_WRITE, shared=False, populate=False)
    sm.write(i=0, page=10, off=7, data=b"x")
    sm.mremap_ignored_new_addr(i=0, page=10, n=4)
    sm.read(i=0, page=10, off=7, size=1)
    sm.vmas_match_model()
    sm.teardown()


def test_example_5level_touch_across_47_bits():
    """Machine(paging_levels=5): a touch whose range crosses 1 << 47 (the 4-level limit)
    walks both halves (no RecursionError): the page below is mapped, the one above not."""
    m = vmsim.Machine(memory="256M", cpus=1, paging_levels=5, debug_vm=True)
    p = m.spawn()
    below = (1 << 47) - 2 * PAGE
    rw = PROT_READ | PROT_WRITE
    assert p.mmap(below, 2 * PAGE, rw, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED) == below
    p.touch(below, 2 * PAGE, write=True, value=3)
    with pytest.raises(vmsim.SignalDelivered) as e:
        p.touch(below + PAGE, 2 * PAGE, write=True, value=4)
    assert e.value.si_addr == 1 << 47
    assert p.read(below, 1) == b"\x03" and p.read(below + PAGE, 1) == b"\x04"
    p.exit()
    m.check()
