"""A simulated block device (block/, the part the page cache sees).

Not the block layer: a queue that counts what the filesystems submit. Each request
(a bio, at most ``max_sectors_kb`` long, as vda's queue splits them) costs
``latency_ns`` of virtual time, kept in ``busy_ns``; reads and writes count in
/proc/vmstat pgpgin / pgpgout (in KiB: the kernel counts 512-byte sectors in
submit_bio and halves them when /proc/vmstat is read).
"""
from vmsim.mm import vmstat


class block_device:
    """struct block_device with its request queue's limits and statistics."""

    def __init__(self, k, dev, latency_ns: int = 0, read_ahead_kb: int = 8192,
                 max_sectors_kb: int = 4096):
        self.kernel = k
        self.bd_dev = dev
        self.latency_ns = int(latency_ns)
        self.read_ahead_kb = read_ahead_kb
        self.max_sectors_kb = max_sectors_kb
        # queue/write_zeroes_unmap_max_bytes != 0 (bdev_write_zeroes_unmap_sectors):
        # 0 on the reference machine's virtio disk, so ext4 refuses WRITE_ZEROES.
        self.write_zeroes_unmap = False
        self.nr_reads = self.nr_writes = 0
        self.kb_read = self.kb_written = 0
        self.busy_ns = 0
        # vmsim-only: the disk's contents, block number -> its 4 KiB (bytes; identical
        # contents may share one object), None for a free block, and the free numbers
        # (ext4's block bitmaps: mballoc hands a freed block out again).
        self.disk = []
        self.free_blocks = []


def submit_bio(bdev, write: bool, nr_pages: int):
    """submit_bio() of a run of ``nr_pages`` contiguous blocks, split into requests of
    max_sectors_kb; counts pgpgin / pgpgout and the device time."""
    if nr_pages <= 0:
        return
    k = bdev.kernel
    kb = nr_pages * 4
    nreq = (kb + bdev.max_sectors_kb - 1) // bdev.max_sectors_kb
    if write:
        bdev.nr_writes += nreq
        bdev.kb_written += kb
        k.vmstat[vmstat.PGPGOUT] += kb
    else:
        bdev.nr_reads += nreq
        bdev.kb_read += kb
        k.vmstat[vmstat.PGPGIN] += kb
    bdev.busy_ns += nreq * bdev.latency_ns
