"""Shadow entries and the workingset counters (mm/workingset.c), page-cache side.

Real-kernel figures come from C probes run as root on the reference machine (Linux
6.18.44, ext4 /tmp, CPU-pinned, /proc/sys/vm/stat_refresh written before each
/proc/vmstat read so the per-CPU node-stat deltas are folded): a file written and
fsynced, mapped MAP_PRIVATE read-only, every page read, MADV_PAGEOUT, read again.
The host's Active(file) was 44468..46280 pages, so every refault there was "recent";
vmsim starts with an empty page cache, so the tests that expect activation build an
active set first (pread twice: folio_mark_accessed activates on the second).
"""
import pytest

from vmsim import (O_RDWR, O_CREAT, O_TRUNC, PROT_READ, MAP_PRIVATE, MAP_FIXED, MADV_PAGEOUT,
                   MADV_DONTNEED, POSIX_FADV_DONTNEED)

P = 4096
KEYS = ("workingset_nodes", "workingset_refault_file", "workingset_activate_file",
        "workingset_restore_file")


def vmstat(m):
    return {l.split()[0]: int(l.split()[1]) for l in m.read_file("/proc/vmstat").splitlines()}


class Counters:
    def __init__(self, m):
        self.m = m
        self.last = vmstat(m)

    def delta(self):
        v = vmstat(self.m)
        d = tuple(v[k] - self.last[k] for k in KEYS)
        self.last = v
        return d


def _file(p, path, pages, chunk=16):
    fd = p.open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
    for i in range(0, pages, chunk):
        p.pwrite(fd, b"\1" * (chunk * P), i * P)
    p.fsync(fd)
    return fd


def _map(p, fd, pages):
    """MAP_FIXED at a 2 MiB boundary, as the probe (and the scenarios) place it."""
    a = p.mmap(0, pages * P + (2 << 20), PROT_READ, MAP_PRIVATE, fd, 0)
    b = (a + (2 << 20) - 1) & ~((2 << 20) - 1)
    p.munmap(a, pages * P + (2 << 20))
    return p.mmap(b, pages * P, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0)


def _shadowed(m):
    """The address_space holding shadow entries (value entries in its i_pages)."""
    return next(o for o in m.k.objects
                if o is not None and getattr(getattr(o, "i_pages", None), "nr_values", 0))


def _active_set(p, pages=1024):
    """Give the machine an Active(file) of ``pages`` pages (read twice)."""
    fd = _file(p, "/tmp/active", pages, min(pages, 512))
    p.pread(fd, pages * P, 0)
    p.pread(fd, pages * P, 0)
    return fd


# (pages, pages per pwrite): (nodes after pageout, after a refault and a second
# pageout, after truncating to half, after extending and touching) as the probe saw.
SHAPES = {(2, 2): (1, 1, None, None), (64, 16): (1, 1, 0, -1), (256, 16): (4, 4, -2, -2),
          (1024, 512): (1, 16, -8, -8), (4096, 1): (64, 64, -32, -32)}


@pytest.mark.parametrize("pages,chunk", [(2, 2), (64, 16), (256, 16), (1024, 512)])
def test_pageout_leaves_shadows_and_the_touch_refaults(machine, proc, pages, chunk):
    p = proc
    _active_set(p, 2048)
    fd = _file(p, "/tmp/f", pages, chunk)
    a = _map(p, fd, pages)
    c = Counters(machine)
    p.touch(a, pages * P)
    assert c.delta() == (0, 0, 0, 0)
    nodes, nodes2, trunc, ext = SHAPES[(pages, chunk)]
    p.madvise(a, pages * P, MADV_PAGEOUT)
    assert c.delta() == (nodes, 0, 0, 0)
    assert p.mincore(a, pages * P) == bytes(pages)
    p.touch(a, pages * P)
    # All refault, all recent (the distance is about the pages evicted), none was
    # active before eviction.
    assert c.delta() == (-nodes, pages, pages, 0)
    p.madvise(a, pages * P, MADV_PAGEOUT)
    assert c.delta() == (nodes2, 0, 0, 0)
    if trunc is None:
        return
    p.ftruncate(fd, pages * P // 2)
    assert c.delta() == (trunc, 0, 0, 0)
    p.ftruncate(fd, pages * P)
    p.touch(a, pages * P)
    # Only the half that kept its shadows refaults; it was active when paged out
    # (MADV_PAGEOUT set PG_workingset), so it is restored too.
    assert c.delta() == (ext, pages // 2, pages // 2, pages // 2)


def test_lone_shadow_at_index_0_needs_no_node(machine, proc):
    p = proc
    _active_set(p)
    fd = _file(p, "/tmp/f", 1, 1)
    a = _map(p, fd, 1)
    c = Counters(machine)
    p.touch(a, P)
    p.madvise(a, P, MADV_PAGEOUT)
    assert c.delta() == (0, 0, 0, 0)
    p.touch(a, P)
    assert c.delta() == (0, 1, 1, 0)


def test_refault_of_a_folio_that_was_active_is_restored(machine, proc):
    p = proc
    _active_set(p)
    fd = _file(p, "/tmp/f", 256)
    a = _map(p, fd, 256)
    c = Counters(machine)
    p.touch(a, 256 * P)
    p.madvise(a, 256 * P, MADV_PAGEOUT)
    p.touch(a, 256 * P)
    assert c.delta() == (0, 256, 256, 0)
    p.madvise(a, 256 * P, MADV_PAGEOUT)     # active now: PG_workingset kept in the shadow
    p.touch(a, 256 * P)
    assert c.delta() == (0, 256, 256, 256)
    p.madvise(a, 256 * P, MADV_PAGEOUT)
    p.pread(fd, 256 * P, 0)                 # read() refaults the same way
    assert c.delta() == (-4 + 4, 256, 256, 256)


def test_invalidation_and_writes_clear_shadows_without_refaults(machine, proc):
    """drop_caches and FADV_DONTNEED remove folios without shadows and clear the
    shadows they meet; a buffered write over a shadow replaces it without a refault
    (__GFP_WRITE)."""
    p = proc
    _active_set(p)
    fd = _file(p, "/tmp/f", 256)
    a = _map(p, fd, 256)
    c = Counters(machine)
    p.touch(a, 256 * P)
    p.madvise(a, 256 * P, MADV_PAGEOUT)
    assert c.delta() == (4, 0, 0, 0)
    p.posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    assert c.delta() == (-4, 0, 0, 0)
    p.touch(a, 256 * P)
    assert c.delta() == (0, 0, 0, 0)
    p.madvise(a, 256 * P, MADV_PAGEOUT)
    machine.write_file("/proc/sys/vm/drop_caches", "1")
    assert c.delta() == (0, 0, 0, 0)
    p.touch(a, 256 * P)
    assert c.delta() == (0, 0, 0, 0)
    p.madvise(a, 256 * P, MADV_PAGEOUT)
    assert c.delta() == (4, 0, 0, 0)
    for i in range(0, 256, 16):
        p.pwrite(fd, b"\2" * 16 * P, i * P)
    assert c.delta() == (-4, 0, 0, 0)


def test_distant_refault_is_not_activated(machine, proc):
    """The probe: 16 pages of A paged out, then 512 MiB of B (more than the host's
    Active(file)); A's refault counts, but is not activated. Here B is 4 MiB against
    an Active(file) of 64 pages."""
    p = proc
    _active_set(p, 64)
    fa = _file(p, "/tmp/a", 16)
    fb = _file(p, "/tmp/b", 1024, 512)
    a = _map(p, fa, 16)
    b = _map(p, fb, 1024)
    p.touch(a, 16 * P)
    p.touch(b, 1024 * P)
    c = Counters(machine)
    p.madvise(a, 16 * P, MADV_PAGEOUT)
    p.madvise(b, 1024 * P, MADV_PAGEOUT)
    p.touch(a, 16 * P)
    assert c.delta()[1:] == (16, 0, 0)
    k = machine.k
    assert k.vmstat[__import__("vmsim.mm.vmstat", fromlist=["x"]).NR_ACTIVE_FILE] < 1024


def test_unlinked_file_keeps_no_shadows(machine, proc):
    p = proc
    fd = _file(p, "/tmp/f", 256)
    a = _map(p, fd, 256)
    p.touch(a, 256 * P)
    p.madvise(a, 256 * P, MADV_PAGEOUT)
    c = Counters(machine)
    mapping = _shadowed(machine)
    p.munmap(a, 256 * P)
    p.unlink("/tmp/f")
    p.close(fd)
    assert c.delta() == (-4, 0, 0, 0)
    assert not mapping.i_pages.nr_values and not mapping.shadow_nodes and mapping.exiting


def test_eviction_packs_the_clock_and_the_workingset_bit(machine, proc):
    from vmsim.mm import workingset as ws
    from vmsim.mm._xarray import xa_is_value
    s = ws.pack_shadow(0, 0, 12345, True)
    assert xa_is_value(s)
    assert ws.unpack_shadow(s) == (0, 0, 12345, True)
    assert ws.unpack_shadow(ws.pack_shadow(7, 3, ws.EVICTION_MASK + 5, False)) == (7, 3, 4, False)
    assert ws.EVICTION_SHIFT == 28                  # 1 + 1 + NODES_SHIFT 10 + 16
    assert machine.k.workingset_bucket_order == 0


@pytest.mark.no_final_check
def test_checker_catches_broken_shadow_state(machine, proc):
    from vmsim.mm import debug_vm
    p = proc
    fd = _file(p, "/tmp/f", 128)
    a = _map(p, fd, 128)
    p.touch(a, 128 * P)
    p.madvise(a, 64 * P, MADV_PAGEOUT)          # leaf node 0 all shadows, node 1 folios
    mapping = _shadowed(machine)
    cache = mapping.i_pages
    k = machine.k

    def fails(mutate, undo, what):
        mutate()
        with pytest.raises(AssertionError, match=what):
            debug_vm.check_all(k)
        undo()
        debug_vm.check_all(k)

    from vmsim.mm import workingset as ws
    from vmsim.mm._xarray import xa_mk_sibling
    leaf = cache.nodes[0]
    assert cache.values_in(0, 63) == [(i, 4, leaf[i]) for i in range(0, 64, 16)]
    v = leaf[16]
    fails(lambda: leaf.__setitem__(17, xa_mk_sibling(0)),             # a sibling of another slot
          lambda: leaf.__setitem__(17, xa_mk_sibling(16)), r"slot 0x11 holds -?\d+, not a sibling of slot 0x10")
    fails(lambda: leaf.__setitem__(20, 7),                             # a folio inside a shadow
          lambda: leaf.__setitem__(20, xa_mk_sibling(16)), "slot 0x15 holds a sibling -?\\d+ outside any entry")
    fails(lambda: leaf.__setitem__(16, ws.pack_shadow(1, 0, 5, False)),   # memcg id 1
          lambda: leaf.__setitem__(16, v), "index 0x10 holds .*not a shadow packed")
    fails(lambda: leaf.__setitem__(65, leaf[65] - 1),
          lambda: leaf.__setitem__(65, leaf[65] + 1), "nr_values 63, 64 value slots")
    fails(lambda: setattr(mapping, "nrpages", mapping.nrpages + 1),
          lambda: setattr(mapping, "nrpages", mapping.nrpages - 1), "nrpages = 65, holds 64")
    size = mapping.host.i_size
    fails(lambda: setattr(mapping.host, "i_size", 40 * P),
          lambda: setattr(mapping.host, "i_size", size), r"shadow at 0x30 \(order 4\) lies past i_size")
    from vmsim.mm import vmstat as vs
    n = k.vmstat[vs.WORKINGSET_NODES]
    fails(lambda: k.vmstat.__setitem__(vs.WORKINGSET_NODES, n + 1),
          lambda: k.vmstat.__setitem__(vs.WORKINGSET_NODES, n), "workingset_nodes")
    saved = set(mapping.shadow_nodes)
    assert saved == {(0, 0)}
    fails(lambda: mapping.shadow_nodes.clear(),
          lambda: mapping.shadow_nodes.update(saved), "shadow_nodes|workingset_nodes")


def _pmd_shadow(p, machine):
    """A 2 MiB file cached in one PMD-sized folio (a 2 MiB pwrite) and paged out: one
    order-9 shadow at index 0 (a value entry in the shift-6 node's first 8 slots)."""
    from vmsim import MADV_NOHUGEPAGE
    fd = _file(p, "/tmp/f", 512, 512)
    a = _map(p, fd, 512)
    p.madvise(a, 512 * P, MADV_NOHUGEPAGE)
    p.touch(a, 512 * P)
    p.madvise(a, 512 * P, MADV_PAGEOUT)
    mapping = _shadowed(machine)
    cache = mapping.i_pages
    (first, order, v), = cache.values_in(0, 511)
    assert (first, order, len(cache), cache.nr_values) == (0, 9, 0, 512)
    assert sorted(cache.multi) == list(range(8)) and not cache.nodes
    return fd, a, mapping, v


def test_refault_inside_a_large_shadow_splits_it_as_xas_try_split(machine, proc):
    """An order-0 folio read into index 5 of an order-9 shadow: __filemap_add_folio
    splits the shadow one tree level a step (xas_try_split_min_order: 9 -> 6 in the
    shift-6 node, 6 -> 5 into a new leaf, 5 -> 0 in the leaf), every piece keeping
    the shadow, then stores the folio over index 5; the refault counts one page. The
    leaf holds a folio, the shift-6 node a leaf: neither is a shadow node."""
    from vmsim import MADV_RANDOM
    p = proc
    _active_set(p)
    fd, a, mapping, v = _pmd_shadow(p, machine)
    c = Counters(machine)
    p.madvise(a, 512 * P, MADV_RANDOM)            # no read-around: one order-0 folio
    p.read(a + 5 * P, 1)
    assert c.delta() == (-1, 1, 1, 0)
    cache = mapping.i_pages
    want = [(i, 0, v) for i in range(32) if i != 5] + [(32, 5, v)] + \
        [(i, 6, v) for i in range(64, 512, 64)]
    assert cache.values_in(0, 511) == want
    assert len(cache) == mapping.nrpages == 1 and cache.nr_values == 511
    assert p.mincore(a, 40 * P) == bytes([0] * 5 + [1] + [0] * 34)
    # The pieces refault one by one; a read of the order-5 piece's page splits it too.
    p.read(a + 40 * P, 1)
    assert c.delta() == (0, 1, 1, 0)
    assert cache.values_in(32, 63) == [(i, 0, v) for i in range(32, 64) if i != 40]


def test_truncation_clears_a_shadow_it_cuts_and_invalidation_keeps_it(machine, proc):
    """POSIX_FADV_DONTNEED of part of an order-9 shadow leaves it (find_lock_entries
    omits a value entry that begins before the range or runs past it); a truncation
    into it clears it whole (truncate_inode_pages_range's find_get_entries pass
    meets it, and xas_store(NULL) at its canonical slot takes the siblings too), so
    no shadow lies past i_size."""
    p = proc
    fd, a, mapping, v = _pmd_shadow(p, machine)
    c = Counters(machine)
    p.posix_fadvise(fd, 100 * P, 50 * P, POSIX_FADV_DONTNEED)
    assert mapping.i_pages.values_in(0, 511) == [(0, 9, v)]
    assert c.delta() == (0, 0, 0, 0)
    p.munmap(a, 512 * P)
    p.ftruncate(fd, 300 * P)
    assert mapping.i_pages.values_in(0, 1 << 40) == [] and mapping.i_pages.count == 0
    assert c.delta() == (-1, 0, 0, 0)


def test_lone_shadow_off_index_0_lives_in_a_node(machine, proc):
    """Only index 0 can sit in xa_head: one page cached at index 5 and paged out
    leaves a leaf node holding nothing but its shadow (count == nr_values == 1),
    which counts in workingset_nodes until the refault."""
    from vmsim import MADV_RANDOM
    p = proc
    fd = _file(p, "/tmp/f", 16)
    machine.write_file("/proc/sys/vm/drop_caches", "1")
    _active_set(p)
    a = _map(p, fd, 16)
    p.madvise(a, 16 * P, MADV_RANDOM)             # one order-0 folio, no read-around
    c = Counters(machine)
    p.read(a + 5 * P, 1)
    p.madvise(a, 16 * P, MADV_PAGEOUT)
    assert c.delta() == (1, 0, 0, 0)
    mapping = _shadowed(machine)
    assert mapping.i_pages.count == mapping.i_pages.nr_values == 1
    p.read(a + 5 * P, 1)
    assert c.delta() == (-1, 1, 1, 0)


# --- random file operations: shadows stay consistent ----------------------------------
from hypothesis import given, settings, strategies as st  # noqa: E402

PG = st.integers(0, 700)
ALIGNED = st.one_of(PG, st.sampled_from([0, 16, 64, 512]))    # where large folios form
FOPS = st.lists(st.one_of(
    st.tuples(st.just("pwrite"), ALIGNED, st.sampled_from([1, 3, 16, 64, 512]), st.integers(1, 255),
              st.booleans()),
    st.tuples(st.just("truncate"), PG),
    st.tuples(st.just("pageout"), ALIGNED, st.one_of(st.integers(1, 600), st.just(512)),
              st.sampled_from(["", "random", "nohuge"])),
    st.tuples(st.just("fadvise"), PG, st.integers(0, 600)),
    st.tuples(st.just("pread"), PG, st.integers(1, 300)),
    st.tuples(st.just("drop"),),
), min_size=1, max_size=14)
# Shadows of order-9, order-4 and order-0 folios, cut by reads, invalidations and
# truncations (hypothesis's draws rarely line a large clean folio up with a page-out).
FOPS_SEEN = [
    [("pwrite", 0, 512, 7, True), ("pwrite", 512, 64, 8, True), ("pageout", 0, 600, "nohuge"),
     ("pread", 5, 1), ("fadvise", 100, 50), ("pread", 520, 3), ("truncate", 300),
     ("pageout", 0, 600, "random"), ("pread", 0, 40)],
    [("pwrite", 0, 512, 9, True), ("pageout", 0, 512, ""), ("fadvise", 0, 300),
     ("truncate", 700), ("pread", 600, 20), ("pageout", 512, 200, ""), ("drop",)],
]


def _run_file_ops(ops):
    """Random writes, truncations, page-outs (shadows of folios of every order),
    invalidations and reads of one file, the debug checker on after every call (its
    shadow checks: structure, packing, none past i_size, shadow_nodes and
    workingset_nodes), every byte read compared with a plain model of the file."""
    import vmsim
    from vmsim import MADV_RANDOM, MADV_NOHUGEPAGE
    m = vmsim.Machine(memory="1G", cpus=1, pku=False, debug_vm=True)
    p = m.spawn()
    _active_set(p, 256)
    fd = p.open("/tmp/r", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    data = bytearray()
    for op in ops:
        kind = op[0]
        if kind == "pwrite":
            off, n = op[1] * P, op[2] * P
            p.pwrite(fd, bytes([op[3]]) * n, off)
            if op[4]:
                p.fsync(fd)                        # clean folios: reclaim may evict them
            data[len(data):] = bytes(max(0, off + n - len(data)))
            data[off:off + n] = bytes([op[3]]) * n
        elif kind == "truncate":
            p.ftruncate(fd, op[1] * P + 100)
            size = op[1] * P + 100
            data[len(data):] = bytes(max(0, size - len(data)))
            del data[size:]
        elif kind == "pageout":
            pages = (len(data) + P - 1) // P
            first = min(op[1], max(pages - 1, 0))
            n = min(op[2], pages - first)
            if n <= 0:
                continue
            # At a 2 MiB boundary (as _map): PTE-mapped large folios lie in one table.
            a = p.mmap(0, n * P + (2 << 20), PROT_READ, MAP_PRIVATE, fd, 0)
            p.munmap(a, n * P + (2 << 20))
            a = p.mmap((a + (2 << 20) - 1) & ~((2 << 20) - 1), n * P, PROT_READ,
                       MAP_PRIVATE | MAP_FIXED, fd, first * P)
            if op[3] == "random":
                p.madvise(a, n * P, MADV_RANDOM)
            elif op[3] == "nohuge":
                p.madvise(a, n * P, MADV_NOHUGEPAGE)
            p.touch(a, n * P)
            got = p.read(a, min(n * P, len(data) - first * P))
            assert got == bytes(data[first * P:first * P + len(got)])
            p.madvise(a, n * P, MADV_PAGEOUT)
            p.munmap(a, n * P)
        elif kind == "fadvise":
            p.posix_fadvise(fd, op[1] * P, op[2] * P, POSIX_FADV_DONTNEED)
        elif kind == "pread":
            got = p.pread(fd, op[2] * P, op[1] * P)
            assert got == bytes(data[op[1] * P:op[1] * P + op[2] * P])
        else:
            m.write_file("/proc/sys/vm/drop_caches", "1")
    m.check()
    p.close(fd)
    p.unlink("/tmp/r")
    m.check()
    assert m.k.vmstat[__import__("vmsim.mm.vmstat", fromlist=["x"]).WORKINGSET_NODES] == 0


@settings(max_examples=12, deadline=None)
@given(FOPS)
def test_random_file_ops_keep_shadows_consistent(ops):
    _run_file_ops(ops)


@pytest.mark.parametrize("ops", FOPS_SEEN)
def test_file_ops_over_large_shadows_keep_them_consistent(ops):
    _run_file_ops(ops)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(FOPS)
def test_random_file_ops_keep_shadows_consistent_long(ops):
    _run_file_ops(ops)


def _chunk_shadow(p, machine, pages):
    """A file of ``pages`` cached in order-6 folios (64-page pwrites), mapped with
    PTEs, and pages 64-127 paged out: one order-6 shadow at index 64, a value entry in
    the shift-6 node's chunk slot 1. Returns (fd, a, mapping, the shadow)."""
    from vmsim import MADV_NOHUGEPAGE
    fd = _file(p, "/tmp/f", pages, 64)
    a = _map(p, fd, pages)
    p.madvise(a, pages * P, MADV_NOHUGEPAGE)
    p.touch(a, pages * P)
    p.madvise(a + 64 * P, 64 * P, MADV_PAGEOUT)
    mapping = _shadowed(machine)
    cache = mapping.i_pages
    (first, order, v), = cache.values_in(0, pages - 1)
    assert (first, order, cache.multi[1], len(cache)) == (64, 6, v, pages - 64)
    return fd, a, mapping, v


def test_touch_over_a_large_shadow_refaults_it(machine, proc):
    """A read-touch from a cached order-6 folio over an order-6 shadow (a value entry
    in the shift-6 node's chunk slot) and on: the touch's read-fault run
    (vmsim.mm._filemap_batch) maps the folios and finds no folio in the shadow's
    chunk, so filemap_fault reads it back in there (a refault of its 64 pages,
    activated: the clock moved less than Active(file))."""
    p = proc
    _active_set(p)
    fd, a, mapping, v = _chunk_shadow(p, machine, 512)
    cache = mapping.i_pages
    p.madvise(a, 64 * P, MADV_DONTNEED)           # the run starts at a cached page
    c = Counters(machine)
    p.touch(a, 512 * P)
    assert c.delta() == (0, 64, 64, 0)          # the shift-6 node held folios too
    assert cache.nr_values == 0 and len(cache) == 512


def test_truncation_trace_shows_kernel_functions_only(machine, proc):
    """A truncation over shadows traced (faults_only=False): truncate_inode_pages_range
    calls truncate_folio_batch_exceptionals -> clear_shadow_entries as the kernel does,
    with no vmsim-only helper (a nested ``whole()`` was one) between them."""
    import re
    from vmsim.trace import function_graph
    p = proc
    fd, a, mapping, v = _pmd_shadow(p, machine)
    p.munmap(a, 512 * P)
    with function_graph(machine, faults_only=False) as tr:
        p.ftruncate(fd, 300 * P)
    text = tr.text()
    assert "clear_shadow_entries" in text and not mapping.i_pages.nr_values
    called = re.findall(r"\|\s+(\w+)\(\)", text)
    i = called.index("truncate_inode_pages_range")
    assert called[i + 1] == "truncate_folio_batch_exceptionals", called[i:i + 4]
    assert "whole" not in called


def test_truncating_bytes_inside_one_page_keeps_the_shadow_over_it(machine, proc):
    """truncate_inode_pages_range() of bytes inside one page (a hole punch's range,
    truncate_pagecache_range) truncates no page whole: start (rounded up) is past end
    (rounded down), both loops of mm/truncate.c run only while index < end, so the
    order-6 shadow covering that page stays, as do the folios beside it."""
    from vmsim.mm.truncate import truncate_inode_pages_range
    p = proc
    fd, a, mapping, v = _chunk_shadow(p, machine, 128)
    cache = mapping.i_pages
    c = Counters(machine)
    for lstart, lend in ((65 * P + 100, 65 * P + 199), (65 * P + 100, 66 * P + 50),
                         (3 * P + 1, 3 * P + 2)):
        truncate_inode_pages_range(machine.k, mapping, lstart, lend)
        assert cache.values_in(0, 127) == [(64, 6, v)] and len(cache) == 64, (lstart, lend)
    machine.check()
    assert c.delta() == (0, 0, 0, 0)
