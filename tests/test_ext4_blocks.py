"""ext4's block map (inode.i_blocks: page index -> block number, an xarray) and the
device's blocks (block_device.disk, free_blocks): the same answers as a plain dict
{index: contents} per inode, through the API as through the helpers, and the debug
checker catching a corrupted one."""
import itertools
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from vmsim.fs.ext4 import _ext4_free_blocks, _ext4_get_block, _ext4_set_block
from vmsim.mm._xarray import _XArray

O_RDWR, O_CREAT = 2, 0o100
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2

IDX = st.one_of(st.integers(0, 200), st.integers(0, 1 << 40))
BLOCK = st.sampled_from([bytes(4096), b"a" * 4096, b"b" * 4096])
OPS = st.lists(st.one_of(
    st.tuples(st.just("set"), st.integers(0, 2), IDX, BLOCK),
    st.tuples(st.just("free"), st.integers(0, 2), IDX, st.integers(0, 150)),
), max_size=50)


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_block_maps_behave_as_dicts(ops):
    bdev = SimpleNamespace(disk=[], free_blocks=[])
    inodes = [SimpleNamespace(i_blocks=_XArray(), i_sb=SimpleNamespace(s_bdev=bdev),
                              _es_delayed=set()) for _ in range(3)]
    model = [{} for _ in inodes]
    peak = 0
    for kind, n, i, arg in ops:
        ino, d = inodes[n], model[n]
        if kind == "set":
            _ext4_set_block(ino, i, arg)
            d[i] = arg
        else:
            _ext4_free_blocks(ino, i, i + arg)
            for j in [j for j in d if i <= j <= i + arg]:
                del d[j]
        for ino, d in zip(inodes, model):
            assert ino.i_blocks.keys() == sorted(d) and ino.i_blocks._check() == []
            assert all(_ext4_get_block(ino, j) == v for j, v in d.items())
            assert _ext4_get_block(ino, i) == d.get(i)
        # Every block of the device is one inode's or free, never both.
        used = [b for ino in inodes for b in ino.i_blocks.values()]
        assert sorted(used + bdev.free_blocks) == list(range(len(bdev.disk)))
        assert all(bdev.disk[b] is None for b in bdev.free_blocks)
        # A freed block is handed out again before the device grows.
        peak = max(peak, len(used))
        assert len(bdev.disk) == peak


FILE_OPS = st.lists(st.one_of(
    st.tuples(st.just("pwrite"), st.integers(0, 40 << 12), st.integers(1, 3 << 12),
              st.integers(0, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 48 << 12)),
    st.tuples(st.just("punch"), st.integers(0, 40 << 12), st.integers(1, 20 << 12)),
    st.tuples(st.just("zero"), st.integers(0, 40 << 12), st.integers(1, 20 << 12), st.booleans()),
    st.tuples(st.just("alloc"), st.integers(0, 40 << 12), st.integers(1, 20 << 12), st.booleans()),
    st.tuples(st.just("collapse"), st.integers(0, 40), st.integers(1, 8)),
    st.tuples(st.just("insert"), st.integers(0, 40), st.integers(1, 8)),
    st.tuples(st.just("fsync"),),
    st.tuples(st.just("drop"),),
), min_size=1, max_size=14)


_names = itertools.count()


_FIXTURE = [HealthCheck.function_scoped_fixture]


@settings(max_examples=5, deadline=None, suppress_health_check=_FIXTURE)
@given(FILE_OPS)
# A hole inside one block: only its bytes are zeroed on the disk (ext4_zero_partial_blocks).
@example(ops=[("pwrite", 175, 390, 96), ("fsync",), ("punch", 1091, 285), ("drop",)])
# A hole from a page boundary to inside that page zeroes the cached page (folio_zero_range).
@example(ops=[("pwrite", 0, 1, 1), ("punch", 0, 1), ("drop",)])
def test_file_blocks_follow_the_writes(machine, ops):
    _file_blocks_follow_the_writes(machine, ops)


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=_FIXTURE)
@given(FILE_OPS)
def test_file_blocks_follow_the_writes_long(machine, ops):
    _file_blocks_follow_the_writes(machine, ops)


def _file_blocks_follow_the_writes(machine, ops):
    """pwrite / fsync / ftruncate / punch / zero range / fallocate / collapse / insert
    range / drop_caches on an ext4 file against a bytearray: after fsync every block
    holds the file's bytes there, the pages written and fsynced since their last
    truncate or punch have blocks, those past i_size are unwritten (preallocated),
    st_blocks counts them; after drop_caches a read sees the same bytes (from
    the blocks); unlinked, the file's blocks are all free. The debug checker runs
    (incrementally) after each call, fully at the end."""
    p = machine.spawn()
    path = f"/tmp/blocks-{next(_names)}"
    fd = p.open(path, O_RDWR | O_CREAT, 0o644)
    ino = p._file(fd).f_inode
    data = bytearray()
    dirty, synced = set(), set()
    for op in ops:
        if op[0] == "pwrite":
            off, n, v = op[1:]
            p.pwrite(fd, bytes([v]) * n, off)
            if off + n > len(data):
                data.extend(bytes(off + n - len(data)))
            data[off:off + n] = bytes([v]) * n
            dirty |= set(range(off >> 12, ((off + n - 1) >> 12) + 1))
        elif op[0] == "truncate":
            p.ftruncate(fd, op[1])
            del data[op[1]:]
            data.extend(bytes(op[1] - len(data)))
            last = (op[1] + 4095) >> 12
            dirty = {i for i in dirty if i < last}
            synced = {i for i in synced if i < last}
        elif op[0] == "punch":
            off, n = op[1:]
            p.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, n)
            end = min(off + n, len(data))
            if end > off:
                data[off:end] = bytes(end - off)
                # ext4_punch_hole(): a hole past i_size ends at i_size's page end, so
                # the EOF block goes whole (6.18.44: a 1-byte file punched over
                # [0, 2) has st_blocks 0).
                hole_end = off + n if off + n <= len(data) else (len(data) + 4095) & ~4095
                whole = set(range((off + 4095) >> 12, hole_end >> 12))
                dirty -= whole
                synced -= whole
        elif op[0] == "zero":
            off, n, keep = op[1:]
            p.fallocate(fd, 0x10 | (FALLOC_FL_KEEP_SIZE if keep else 0), off, n)
            if not keep and off + n > len(data):
                data.extend(bytes(off + n - len(data)))
            end = min(off + n, len(data))
            if end > off:
                data[off:end] = bytes(end - off)
        elif op[0] == "alloc":
            off, n, keep = op[1:]
            p.fallocate(fd, FALLOC_FL_KEEP_SIZE if keep else 0, off, n)
            if not keep and off + n > len(data):
                data.extend(bytes(off + n - len(data)))
        elif op[0] in ("collapse", "insert"):
            # Block-aligned; a collapse must end before EOF, an insertion start before
            # it (else EINVAL). The cache from the offset on is written back first.
            a, b = op[1:]
            off, n = a << 12, b << 12
            bad = off + n >= len(data) if op[0] == "collapse" else off >= len(data)
            try:
                p.fallocate(fd, 0x08 if op[0] == "collapse" else 0x20, off, n)
            except OSError as e:
                assert bad and e.errno == 22, op
                continue
            assert not bad, op
            if op[0] == "collapse":
                del data[off:off + n]
                moved = {i - b for i in synced | dirty if i >= a + b}
            else:
                data[off:off] = bytes(n)
                moved = {i + b for i in synced | dirty if i >= a}
            synced = {i for i in synced if i < a} | moved
            dirty = {i for i in dirty if i < a}
        elif op[0] == "fsync":
            p.fsync(fd)
            synced |= dirty
            dirty = set()
            for i, blk in ino.i_blocks.items():
                want = bytes(data[i << 12:(i + 1) << 12])
                got = _ext4_get_block(ino, i)         # None: unwritten (reads as zeros)
                assert (bytes(4096) if got is None else got) == want + bytes(4096 - len(want)), i
        else:
            p.fsync(fd)
            synced |= dirty
            dirty = set()
            machine.write_file("/proc/sys/vm/drop_caches", "3")
            assert p.pread(fd, len(data) + 100, 0) == bytes(data)
        have = set(ino.i_blocks.keys())
        # Past i_size only blocks KEEP_SIZE preallocated: unwritten.
        assert synced <= have and all(_ext4_get_block(ino, i) is None for i in have
                                      if i >= (len(data) + 4095) >> 12)
        # Delayed allocation: the pages written since their last writeback, truncation
        # or punch that have no block yet hold a reservation; st_blocks counts both
        # (ext4_file_getattr).
        delayed = {i for i in dirty if i not in have}
        assert ino._es_delayed == delayed
        assert p.fstat(fd).st_blocks == 8 * (len(have) + len(delayed))
    p.close(fd)
    p.unlink(path)                               # evicted: its blocks are free again
    bdev = machine.k.vfs.bdev
    assert sorted(bdev.free_blocks) == list(range(len(bdev.disk))) and not ino.i_blocks
    machine.check()
    p.exit()


def test_debug_vm_catches_corrupted_block_maps(machine):
    p = machine.spawn()
    fd = p.open("/tmp/corrupt", O_RDWR | O_CREAT, 0o644)
    p.pwrite(fd, b"x" * (3 << 12), 0)
    p.fsync(fd)
    p.ftruncate(fd, 2 << 12)                     # block of index 2 freed
    machine.check()
    ino = p._file(fd).f_inode
    bdev = machine.k.vfs.bdev
    b0, b1 = ino.i_blocks[0], ino.i_blocks[1]
    (free,) = bdev.free_blocks

    def caught(pattern):
        with pytest.raises(AssertionError, match=pattern):
            machine.check()

    ino.i_blocks[1] = b0                         # two indices share a block
    caught(rf"ext4: block {b0} is mapped or free 2 times")
    ino.i_blocks[1] = free                       # a free block mapped
    caught(rf"ext4: block {free} is mapped or free 2 times")
    ino.i_blocks[1] = b1
    bdev.disk[b1] = None
    caught(rf"ext4: mapped block {b1} holds nothing")
    bdev.disk[b1] = b"x" * 4095
    caught(r"ext4: a block holds other than 4 KiB of bytes")
    bdev.disk[b1] = b"x" * 4096
    bdev.disk[free] = b"x" * 4096
    caught(rf"ext4: free block {free} holds data")
    bdev.disk[free] = None
    ino.i_blocks[5] = free                       # past i_size (and not free)
    bdev.free_blocks.clear()
    caught(r"ext4: inode \d+ maps a written block at index 0x5, past i_size 8192")
    del ino.i_blocks[5]
    bdev.free_blocks.append(free)
    ino.i_blocks.nodes[0][64] += 1               # the xarray itself
    caught(r"ext4: inode \d+ i_blocks: node 0x0 count 3, 2 slots used")
    ino.i_blocks.nodes[0][64] -= 1
    bdev.free_blocks.append(len(bdev.disk))
    caught(r"ext4: block numbers outside the device's \d+ blocks")
    bdev.free_blocks.pop()
    machine.check()
    p.exit()


def test_major_fault_traces_show_no_block_map_helpers(machine):
    """A major fault reading blocks back (ext4_mpage_readpages) traces kernel functions
    only: no _ext4_* helper, no xarray method."""
    from vmsim import PROT_READ, MAP_PRIVATE
    from vmsim.trace import function_graph
    p = machine.spawn()
    fd = p.open("/tmp/traced", O_RDWR | O_CREAT, 0o644)
    p.pwrite(fd, b"y" * (16 << 12), 0)
    p.fsync(fd)
    machine.write_file("/proc/sys/vm/drop_caches", "3")
    a = p.mmap(0, 16 << 12, PROT_READ, MAP_PRIVATE, fd, 0)
    with function_graph(machine) as tr:
        assert p.read(a + (3 << 12), 2) == b"yy"
    names = set().union(*(f.paths for f in tr.faults))
    assert "filemap_fault" in names and "readahead" in tr.text()
    assert not [n for n in names if n[:1] == "_" and n[1:2] != "_"] and "_ext4" not in tr.text()
    p.exit()
