"""POSIX_FADV_DONTNEED (mm/fadvise.c generic_fadvise): write back, lru_add_drain(),
mapping_try_invalidate(); when some folios could not go (nr_failed), lru_add_drain_all()
and invalidate_mapping_pages() again. mapping_try_invalidate() deactivates what stays
(deactivate_file_folio -> the lru_deactivate_file batch).

Linux figures: Python probes (os.pwrite / fsync / posix_fadvise, mmap + mincore through
ctypes) run as root on the reference machine (6.18.44, ext4 /tmp, 2 CPUs):
- 20 (and 40) pages written one 4 KiB pwrite each on CPU 1 (sched_setaffinity), fsync,
  the task moved to CPU 0, DONTNEED over the file: 0 pages left (3 runs), although
  CPU 1's lru_add batch held the last pages: the second pass after lru_add_drain_all().
- The same written on CPU 0 (pinned) with an fsync: 0 left (20 pages).
- Written without fsync, DONTNEED at once: every page left (16/16, 64/64, 256/256,
  1024/1024, written 1, 1, 16 and 256 pages a pwrite): the writeback DONTNEED starts
  is still in flight when it invalidates.
- A 10-page + 100-byte file: DONTNEED over [0, i_size) drops all 11 pages (a range
  ending at i_size - 1 keeps its last partial page in the invalidation); over
  [0, i_size - 50) the last page stays.
"""
import pytest

import vmsim
from vmsim import O_RDWR, O_CREAT, O_TRUNC, POSIX_FADV_DONTNEED

from vmtest import file_mincore

P = 4096


def _written(p, path, pages):
    fd = p.open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
    for i in range(pages):
        p.pwrite(fd, b"\1" * P, i * P)
    p.fsync(fd)
    return fd


def vmstat(m):
    return {l.split()[0]: int(l.split()[1]) for l in m.read_file("/proc/vmstat").splitlines()}


def _calls(machine, fn):
    import re
    from vmsim.trace import function_graph
    with function_graph(machine, faults_only=False, max_events=200000) as tr:
        fn()
    return re.findall(r"\|\s+(\w+)\(\)", tr.text())


@pytest.mark.parametrize("pages", [20, 40])
def test_dontneed_second_pass_drops_folios_a_remote_cpu_batch_held(machine, pages):
    """Written on CPU 1, advised on CPU 0: the first pass fails on the folios still in
    CPU 1's lru_add batch (their batch reference), lru_add_drain_all() puts them on the
    LRU and the second pass drops them. Linux: 0 left for 20 and 40 pages."""
    k = machine.k
    p = machine.spawn(cpu=1)
    fd = _written(p, "/tmp/remote", pages)
    mapping = p._file(fd).f_inode.i_mapping
    folios = [mapping.i_pages.get(i) for i in range(pages)]
    # PAGEVEC_SIZE 31: the batch moved when full; the last folios are still in it.
    held = [f for f in folios if f in k.cpu_fbatches[1].lru_add]
    assert len(held) >= pages - 30 and held == folios[-len(held):]
    machine.schedule(p, 0)
    called = _calls(machine, lambda: p.posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED))
    assert file_mincore(p, fd, pages) == "." * pages
    assert not k.cpu_fbatches[1].lru_add
    i = called.index("mapping_try_invalidate")
    assert called.index("lru_add_drain_all", i) < called.index("invalidate_mapping_pages", i)
    p.close(fd)


def test_the_first_pass_counts_the_folios_it_could_not_drop(machine):
    """mapping_try_invalidate()'s nr_failed: the folios held by CPU 1's batch (their
    batch reference); deactivate_file_folio() leaves them alone (not on the LRU yet).
    After lru_add_drain_all() a second pass drops them all."""
    from vmsim.mm.truncate import mapping_try_invalidate
    k = machine.k
    p = machine.spawn(cpu=1)
    fd = _written(p, "/tmp/failed", 20)
    mapping = p._file(fd).f_inode.i_mapping
    nr_failed = [0]
    machine.schedule(p, 0)
    assert mapping_try_invalidate(k, mapping, 0, 19, nr_failed) == 0
    assert nr_failed == [20] and not k.cpu_fbatches[0].lru_deactivate_file
    from vmsim.mm.swap import lru_add_drain_all
    lru_add_drain_all(k)
    assert not k.cpu_fbatches[1].lru_add
    nr_failed = [0]
    assert mapping_try_invalidate(k, mapping, 0, 19, nr_failed) == 20 and nr_failed == [0]
    machine.check()
    p.close(fd)


def test_dontneed_on_the_writing_cpu_needs_one_pass(machine):
    """Written and advised on CPU 0: lru_add_drain() empties the local batch, the first
    pass drops everything, no lru_add_drain_all(). Linux: 0 of 20 left."""
    p = machine.spawn(cpu=0)
    fd = _written(p, "/tmp/local", 20)
    called = _calls(machine, lambda: p.posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED))
    assert file_mincore(p, fd, 20) == "." * 20
    assert "mapping_try_invalidate" in called and "lru_add_drain_all" not in called
    assert "invalidate_mapping_pages" not in called
    p.close(fd)


@pytest.fixture
def pin():
    """References the debug checker is told about (debug_vm.EXTRA_REF_SOURCES)."""
    from vmsim.mm import debug_vm
    held = {}
    src = lambda k: held                                  # noqa: E731
    debug_vm.EXTRA_REF_SOURCES.append(src)
    yield held
    debug_vm.EXTRA_REF_SOURCES.remove(src)


def test_dontneed_deactivates_an_active_folio_it_cannot_drop(machine, pin):
    """A folio that stays because something holds it (here an extra reference, as a
    GUP pin would) is deactivated: to the tail of the inactive list, unreferenced.
    Twice: the first pass fails (nr_failed 1: pgdeactivate and pgrotated + 16, the
    large folio moves at once), so the second pass runs and fails again (pgrotated
    + 16 more; it was no longer active)."""
    from vmsim.mm.page_flags import PG_active, PG_referenced
    from vmsim.mm.swap import lru_add_drain_all
    k = machine.k
    p = machine.spawn(cpu=0)
    fd = p.open("/tmp/held", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    p.pwrite(fd, b"\1" * (16 * P), 0)
    p.fsync(fd)
    p.pread(fd, 16 * P, 0)
    p.pread(fd, 16 * P, 0)                        # active, then referenced again
    lru_add_drain_all(k)
    folio = p._file(fd).f_inode.i_mapping.i_pages.get(0)
    assert k.mem.flags[folio] & PG_active
    k.mem.refcount[folio] += 1                    # a pin
    pin[folio] = 1
    v = vmstat(machine)
    p.posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    lru_add_drain_all(k)
    w = vmstat(machine)
    assert file_mincore(p, fd, 16) == "R" * 16
    assert not k.mem.flags[folio] & (PG_active | PG_referenced)
    assert (w["pgdeactivate"] - v["pgdeactivate"], w["pgrotated"] - v["pgrotated"]) == (16, 32)
    assert k.lruvec.tail[2] == folio                 # LRU_INACTIVE_FILE's tail
    k.mem.refcount[folio] -= 1
    del pin[folio]
    machine.check()
    p.close(fd)


@pytest.mark.parametrize("length,left", [(10 * P + 100, "." * 11), (10 * P + 50, "." * 10 + "R"),
                                         (0, "." * 11)])
def test_dontneed_drops_the_last_partial_page_when_the_range_ends_at_i_size(machine, proc,
                                                                            length, left):
    p = proc
    fd = p.open("/tmp/eofadv", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    p.pwrite(fd, b"\1" * (10 * P + 100), 0)
    p.fsync(fd)
    p.posix_fadvise(fd, 0, length, POSIX_FADV_DONTNEED)
    assert file_mincore(p, fd, 11) == left
    p.close(fd)


@pytest.mark.parametrize("pages,chunk", [(16, 1), (16, 16), (64, 1), (256, 16)])
def test_dontneed_right_after_a_write_keeps_the_pages_under_writeback(machine, proc, pages,
                                                                      chunk):
    """The folios DONTNEED starts writing back are still under writeback when it
    invalidates, so they stay cached, clean. find_lock_entries() skips a folio under
    writeback: mapping_try_invalidate() neither deactivates it nor counts it in
    nr_failed, so there is no second pass. Linux: all pages left for these four
    shapes. After that, a second DONTNEED drops them all (Linux, with an fsync
    between: 0 left)."""
    from vmsim.mm.filemap import PG_readahead
    from vmsim.mm.page_flags import PG_dirty
    p, k = proc, machine.k
    fd = p.open("/tmp/unsynced", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    for i in range(0, pages, chunk):
        p.pwrite(fd, b"\1" * (chunk * P), i * P)
    v = vmstat(machine)
    called = _calls(machine, lambda: p.posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED))
    w = vmstat(machine)
    assert (w["nr_dirty"] - v["nr_dirty"], w["pgpgout"] - v["pgpgout"]) == (-pages, 4 * pages)
    assert "mapping_try_invalidate" in called
    assert "deactivate_file_folio" not in called and "lru_add_drain_all" not in called
    assert w["pgrotated"] == v["pgrotated"]
    assert file_mincore(p, fd, pages) == "R" * pages
    cache = p._file(fd).f_inode.i_mapping.i_pages
    assert not any(k.mem.flags[cache.get(i)] & (PG_readahead | PG_dirty) for i in range(pages))
    p.fsync(fd)
    p.posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    assert file_mincore(p, fd, pages) == "." * pages
    p.close(fd)


def test_checker_catches_broken_lru_batches(machine):
    """The debug checker's per-CPU batch rules: a batch never reaches PAGEVEC_SIZE
    (it moves when full) and never holds a large folio or a tail page."""
    from vmsim.mm.page_flags import PG_head
    from vmsim.mm.swap import deactivate_file_folio, PAGEVEC_SIZE
    k = machine.k
    p = machine.spawn(cpu=0)
    fd = p.open("/tmp/batches", O_RDWR | O_CREAT | O_TRUNC, 0o644)
    p.pwrite(fd, b"\1" * (16 * P), 0)
    p.pwrite(fd, b"\1" * P, 16 * P)
    p.fsync(fd)
    from vmsim.mm.swap import lru_add_drain_all
    lru_add_drain_all(k)
    cache = p._file(fd).f_inode.i_mapping.i_pages
    large, small = cache.get(0), cache.get(16)
    assert k.mem.flags[large] & PG_head and not k.mem.flags[small] & PG_head
    fb = k.cpu_fbatches[0]
    deactivate_file_folio(k, small, 0)
    assert fb.lru_deactivate_file == [small]
    machine.check()

    def caught(pattern):
        with pytest.raises(AssertionError, match=pattern):
            machine.check()

    fb.lru_deactivate_file.append(large)
    caught(r"pfn 0x[0-9a-f]+ in cpu 0's lru_deactivate_file batch is a large folio")
    fb.lru_deactivate_file[-1] = large + 1
    caught(r"in cpu 0's lru_deactivate_file batch is a tail page")
    fb.lru_deactivate_file.pop()
    fb.lru_move_tail.extend([small] * PAGEVEC_SIZE)
    caught(rf"cpu 0's lru_move_tail batch holds {PAGEVEC_SIZE} folios")
    del fb.lru_move_tail[:]
    machine.check()
    p.close(fd)
