"""open, close, truncate, fallocate, fsync, fadvise and read/write (fs/open.c,
fs/read_write.c, fs/sync.c, mm/fadvise.c, mm/filemap.c generic_perform_write).

Each returns what the syscall does: a value >= 0 or -errno, with Linux's checks in
Linux's order for the arguments vmsim models.
"""
import errno

from vmsim.fs.file import (file, fget, fd_install, _task_files, FMODE_READ,
                           FMODE_WRITE, FMODE_RANDOM, O_ACCMODE, O_CREAT, O_EXCL, O_TRUNC,
                           O_APPEND, O_DIRECTORY)
from vmsim.fs.inode import S_ISDIR, S_ISREG
from vmsim.fs.namei import path_lookupat, vfs_create, _full_path
from vmsim.mm.page_flags import PG_uptodate
from vmsim.uapi import (O_CLOEXEC, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE,  # noqa: F401
                        FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_ZERO_RANGE, FALLOC_FL_INSERT_RANGE,
                        FALLOC_FL_UNSHARE_RANGE, FALLOC_FL_WRITE_ZEROES)

MAX_LFS_FILESIZE = (1 << 63) - 1
EXT4_MAX_SIZE = 16 << 40          # ext4 with 4 KiB blocks: s_maxbytes (16 TiB - 4 KiB)
POSIX_FADV_NORMAL, POSIX_FADV_RANDOM, POSIX_FADV_SEQUENTIAL, POSIX_FADV_WILLNEED, \
    POSIX_FADV_DONTNEED, POSIX_FADV_NOREUSE = range(6)
# include/linux/falloc.h
FALLOC_FL_MODE_MASK = (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_ZERO_RANGE |
                       FALLOC_FL_INSERT_RANGE | FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_WRITE_ZEROES)
SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2


def _s_maxbytes(inode) -> int:
    return EXT4_MAX_SIZE - 4096 if inode.i_sb.s_type == "ext4" else MAX_LFS_FILESIZE


def do_sys_open(k, task, path: str, flags: int, mode: int) -> int:
    """do_sys_openat2(): look up (or create) the file, open it, install an fd."""
    fs = _task_files(k, task)
    fd = fs.alloc_fd()
    if fd < 0:
        return fd
    r = path_lookupat(k, path)
    if isinstance(r, int):
        return r
    d, name, ino = r
    acc = flags & O_ACCMODE
    if ino is None:
        if not flags & O_CREAT:
            return -errno.ENOENT
        if not S_ISDIR(d.i_mode):
            return -errno.ENOTDIR
        if path.endswith("/"):
            return -errno.EISDIR
        ino = vfs_create(k, d, name, mode)
    else:
        if flags & O_CREAT and flags & O_EXCL:
            return -errno.EEXIST
        if S_ISDIR(ino.i_mode):
            if flags & O_CREAT or acc != 0:
                return -errno.EISDIR
        elif flags & O_DIRECTORY:
            return -errno.ENOTDIR
    f = file(ino, _full_path(path), flags)
    if flags & O_TRUNC and S_ISREG(ino.i_mode) and f.f_mode & FMODE_WRITE:
        do_truncate(k, ino, 0)
    fd_install(k, task, fd, f)
    if flags & O_CLOEXEC:
        fs.close_on_exec.add(fd)
    else:
        fs.close_on_exec.discard(fd)
    return fd


def do_truncate(k, inode, length: int) -> int:
    """do_truncate() -> ->setattr: ext4_setattr, hugetlbfs_setattr, or
    shmem_setattr (truncate_setsize)."""
    from vmsim.mm.truncate import truncate_setsize
    if length > _s_maxbytes(inode):
        return -errno.EFBIG
    setattr_op = getattr(inode.i_sb.s_op, "setattr", None)
    if setattr_op is not None:                   # ext4_setattr, hugetlbfs_setattr
        return setattr_op(k, inode, length)
    if inode.i_sb.s_type == "tmpfs":             # shmem_setattr(): the size seals
        from vmsim.mm.memfd import file_seals, F_SEAL_SHRINK, F_SEAL_GROW
        seals = file_seals(inode)
        if (length < inode.i_size and seals & F_SEAL_SHRINK) or \
                (length > inode.i_size and seals & F_SEAL_GROW):
            return -errno.EPERM
    old_pages = inode.i_mapping.nrpages
    truncate_setsize(k, inode, length)
    if inode.i_sb.s_type == "tmpfs":
        from vmsim.mm.shmem import shmem_inode_unacct_blocks
        shmem_inode_unacct_blocks(k, inode, old_pages - inode.i_mapping.nrpages)
    return 0


def do_ftruncate(k, task, fd: int, length: int) -> int:
    f = fget(k, task, fd)
    if f is None:
        return -errno.EBADF
    if length < 0:
        return -errno.EINVAL
    ino = f.f_inode
    if S_ISDIR(ino.i_mode) or not S_ISREG(ino.i_mode):
        return -errno.EINVAL
    if not f.f_mode & FMODE_WRITE:
        return -errno.EINVAL
    # do_ftruncate()'s EPERM is IS_APPEND(inode), the append-only inode attribute
    # (chattr +a), which vmsim's inodes never carry; an O_APPEND descriptor truncates.
    return do_truncate(k, ino, length)


def vfs_fallocate(k, task, fd: int, mode: int, offset: int, length: int) -> int:
    """vfs_fallocate(): argument checks, then ext4_fallocate / shmem_fallocate:
    allocation (KEEP_SIZE or extending i_size), PUNCH_HOLE, or (ext4) ZERO_RANGE,
    COLLAPSE_RANGE and INSERT_RANGE."""
    from vmsim.mm.truncate import truncate_pagecache_range
    f = fget(k, task, fd)
    if f is None:
        return -errno.EBADF
    if offset < 0 or length <= 0:
        return -errno.EINVAL
    if mode & ~(FALLOC_FL_MODE_MASK | FALLOC_FL_KEEP_SIZE):
        return -errno.EOPNOTSUPP
    # switch (mode & FALLOC_FL_MODE_MASK): one mode at a time (6.18.44: PUNCH_HOLE |
    # ZERO_RANGE is EOPNOTSUPP); a hole keeps the size, a collapse, an insertion or
    # WRITE_ZEROES may not be asked to.
    op = mode & FALLOC_FL_MODE_MASK
    if op not in (0, FALLOC_FL_UNSHARE_RANGE, FALLOC_FL_ZERO_RANGE, FALLOC_FL_PUNCH_HOLE,
                  FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_WRITE_ZEROES):
        return -errno.EOPNOTSUPP
    if op == FALLOC_FL_PUNCH_HOLE and not mode & FALLOC_FL_KEEP_SIZE:
        return -errno.EOPNOTSUPP
    if op in (FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_WRITE_ZEROES) and \
            mode & FALLOC_FL_KEEP_SIZE:
        return -errno.EOPNOTSUPP
    if not f.f_mode & FMODE_WRITE:
        return -errno.EBADF
    # vfs_fallocate()'s EPERM for PUNCH_HOLE is IS_APPEND(inode) (chattr +a, never set
    # here), not O_APPEND: an O_APPEND descriptor may punch holes.
    ino = f.f_inode
    if S_ISDIR(ino.i_mode):
        return -errno.EISDIR
    if not S_ISREG(ino.i_mode):
        return -errno.ENODEV
    if offset + length > _s_maxbytes(ino) or offset + length < 0:
        return -errno.EFBIG
    if getattr(f.f_op, "fallocate", None) is not None:
        return f.f_op.fallocate(k, f, mode, offset, length)      # ext4_, hugetlbfs_fallocate
    if ino.i_sb.s_type == "tmpfs":               # shmem_fallocate(): the modes, the seals
        if mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE):
            return -errno.EOPNOTSUPP
        from vmsim.mm.memfd import file_seals, F_SEAL_GROW, F_SEAL_WRITE, F_SEAL_FUTURE_WRITE
        seals = file_seals(ino)
        if mode & FALLOC_FL_PUNCH_HOLE and seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE):
            return -errno.EPERM
        if not mode & FALLOC_FL_PUNCH_HOLE and seals & F_SEAL_GROW and \
                offset + length > ino.i_size:
            return -errno.EPERM
    if mode & FALLOC_FL_PUNCH_HOLE:
        end = min(offset + length, ino.i_size)
        if end <= offset:
            return 0
        old_pages = ino.i_mapping.nrpages
        truncate_pagecache_range(k, ino, offset, end - 1)
        from vmsim.mm.shmem import shmem_inode_unacct_blocks
        shmem_inode_unacct_blocks(k, ino, old_pages - ino.i_mapping.nrpages)
        return 0
    if ino.i_sb.s_type == "tmpfs":
        from vmsim.mm.shmem import shmem_fallocate
        return shmem_fallocate(k, ino, mode, offset, length)
    if not mode & FALLOC_FL_KEEP_SIZE and offset + length > ino.i_size:
        ino.i_size = offset + length
    return 0


# --- read / write --------------------------------------------------------------------
def _readable(f):
    if f is None or not f.f_mode & FMODE_READ:
        return -errno.EBADF
    if S_ISDIR(f.f_inode.i_mode):
        return -errno.EISDIR
    return 0


def vfs_read(k, f, count: int, pos: int):
    """->read_iter: ext4 through filemap_read(); tmpfs through shmem_file_read_iter
    (holes read as zeros without allocating)."""
    from vmsim.mm.filemap import filemap_read
    ino = f.f_inode
    if getattr(f.f_op, "read_iter", None) is not None:
        return f.f_op.read_iter(k, f, pos, count)                # hugetlbfs_read_iter
    if ino.i_sb.s_type == "ext4":
        return filemap_read(k, f, pos, count)
    from vmsim.mm.shmem import shmem_get_folio, SGP_READ
    from vmsim.mm.swap import folio_mark_accessed, folio_put
    out = bytearray()
    end = min(pos + count, ino.i_size)
    while pos < end:
        index = pos >> 12
        off = pos & 4095
        n = min(4096 - off, end - pos)
        folio = shmem_get_folio(k, ino, index, SGP_READ)
        if folio < 0:
            out += bytes(n)
        else:
            out += k.page_data.read(folio + (index - k.mem.index[folio]), off, n)
            folio_mark_accessed(k, folio)
            folio_put(k, folio)
        pos += n
    return bytes(out)


def ksys_pread64(k, task, fd: int, count: int, pos, advance: bool):
    f = fget(k, task, fd)
    err = _readable(f)
    if err:
        return err
    if pos is None:
        pos = f.f_pos
    elif pos < 0:
        return -errno.EINVAL
    data = vfs_read(k, f, count, pos)
    if advance:
        f.f_pos = pos + len(data)
    return data


def generic_perform_write(k, f, pos: int, data: bytes) -> int:
    """generic_perform_write(): per folio, ->write_begin (find or create it; a folio
    only partly overwritten is read first), copy, ->write_end (uptodate, dirty,
    i_size). ext4 asks __filemap_get_folio for the order the chunk's size gives
    (fgf_set_order), up to the mapping's largest folio."""
    from vmsim.mm.filemap import (__filemap_get_folio, FGP_WRITEBEGIN, fgf_set_order,
                                  folio_mark_dirty, _nr)
    from vmsim.mm.swap import folio_put, folio_mark_accessed
    ino = f.f_inode
    mapping = ino.i_mapping
    mem = k.mem
    written = 0
    chunk = 4096 << mapping.max_folio_order
    tmpfs = ino.i_sb.s_type == "tmpfs"
    while written < len(data):
        offset = pos & (chunk - 1)
        nbytes = min(chunk - offset, len(data) - written)
        index = pos >> 12
        if tmpfs:
            from vmsim.mm.shmem import shmem_get_folio, SGP_WRITE
            folio = shmem_get_folio(k, ino, index, SGP_WRITE, pos + nbytes)
            if folio < 0:
                return written if written else folio
        else:
            folio = __filemap_get_folio(k, mapping, index, FGP_WRITEBEGIN | fgf_set_order(nbytes))
            if folio < 0:
                return written if written else folio
        findex = mem.index[folio]
        fnr = _nr(k, folio)
        fpos = findex << 12
        nbytes = min(nbytes, fpos + (fnr << 12) - pos)
        if not mem.flags[folio] & PG_uptodate:
            # ext4_block_write_begin(): blocks not wholly overwritten are read (holes
            # and blocks past EOF are zeroed). shmem_write_end() zeroes what the write
            # leaves of a fallocated folio: its frames already read as zeros.
            if not tmpfs and (pos > fpos or pos + nbytes < fpos + (fnr << 12)):
                mapping.a_ops.read_folio(k, mapping, folio)
            mem.flags[folio] = mem.flags[folio] | PG_uptodate
        if not tmpfs:
            # The rest of ->write_begin (ext4_da_write_begin: the buffers).
            mapping.a_ops.write_begin(k, mapping, folio, pos, nbytes)
        p = pos
        end = pos + nbytes
        src = written
        while p < end:
            page = folio + ((p >> 12) - findex)
            off = p & 4095
            n = min(4096 - off, end - p)
            k.page_data.write(page, off, data[src:src + n])
            p += n
            src += n
        folio_mark_accessed(k, folio)
        if tmpfs:
            folio_mark_dirty(k, folio)
            folio_put(k, folio)
            if pos + nbytes > ino.i_size:
                ino.i_size = pos + nbytes
        else:
            mapping.a_ops.write_end(k, mapping, folio, pos, nbytes)    # ext4_da_write_end
        pos += nbytes
        written += nbytes
    return written


def ksys_pwrite64(k, task, fd: int, data: bytes, pos, advance: bool):
    f = fget(k, task, fd)
    if f is None or not f.f_mode & FMODE_WRITE:
        return -errno.EBADF
    if getattr(f.f_op, "write_iter", True) is None:
        return -errno.EINVAL              # vfs_write(): no FMODE_CAN_WRITE (hugetlbfs)
    if pos is None:
        pos = f.f_inode.i_size if f.f_flags & O_APPEND else f.f_pos
    elif pos < 0:
        return -errno.EINVAL
    if not data:
        return 0
    if pos + len(data) > _s_maxbytes(f.f_inode):
        return -errno.EFBIG
    if f.f_inode.i_sb.s_type == "tmpfs":         # shmem_write_begin(): the seals
        from vmsim.mm.memfd import file_seals, F_SEAL_GROW, F_SEAL_WRITE, F_SEAL_FUTURE_WRITE
        seals = file_seals(f.f_inode)
        if seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE):
            return -errno.EPERM
        if seals & F_SEAL_GROW and pos + len(data) > f.f_inode.i_size:
            return -errno.EPERM
    n = generic_perform_write(k, f, pos, bytes(data))
    if advance and n > 0:
        f.f_pos = pos + n
    return n


def ksys_lseek(k, task, fd: int, offset: int, whence: int) -> int:
    f = fget(k, task, fd)
    if f is None:
        return -errno.EBADF
    if whence == SEEK_SET:
        new = offset
    elif whence == SEEK_CUR:
        new = f.f_pos + offset
    elif whence == SEEK_END:
        new = f.f_inode.i_size + offset
    else:
        return -errno.EINVAL
    if new < 0 or new > _s_maxbytes(f.f_inode):
        return -errno.EINVAL
    f.f_pos = new
    return new


def vfs_fsync_range(k, f, start: int, end: int, datasync: bool) -> int:
    """vfs_fsync_range() -> ext4_sync_file: write back and wait (tmpfs: noop_fsync)."""
    from vmsim.mm.page_writeback import filemap_write_and_wait_range
    if f.f_inode.i_sb.s_type == "hugetlbfs":
        return 0                                                 # noop_fsync
    return filemap_write_and_wait_range(k, f.f_mapping, start, end)


def do_fsync(k, task, fd: int, datasync: bool) -> int:
    f = fget(k, task, fd)
    if f is None:
        return -errno.EBADF
    if S_ISDIR(f.f_inode.i_mode):
        return 0
    return vfs_fsync_range(k, f, 0, -1, datasync)


def generic_fadvise(k, task, fd: int, offset: int, length: int, advice: int) -> int:
    """generic_fadvise() (mm/fadvise.c): the f_ra / f_mode hints, WILLNEED readahead,
    DONTNEED write-back start and invalidation of clean unmapped folios, a second pass
    after lru_add_drain_all() when some could not go."""
    from vmsim.mm.readahead import readahead_control, force_page_cache_ra
    from vmsim.mm.truncate import invalidate_mapping_pages, mapping_try_invalidate
    from vmsim.mm.swap import lru_add_drain, lru_add_drain_all
    f = fget(k, task, fd)
    if f is None:
        return -errno.EBADF
    ino = f.f_inode
    if not S_ISREG(ino.i_mode):
        return -errno.ESPIPE if not S_ISDIR(ino.i_mode) else (
            0 if 0 <= advice <= 5 and length >= 0 else -errno.EINVAL)
    if length < 0:
        return -errno.EINVAL
    if ino.i_sb.s_type == "hugetlbfs":
        # noop_backing_dev_info: valid advice is ignored.
        return 0 if POSIX_FADV_NORMAL <= advice <= POSIX_FADV_NOREUSE else -errno.EINVAL
    mapping = f.f_mapping
    if length == 0 or offset + length > MAX_LFS_FILESIZE or offset + length < 0:
        endbyte = MAX_LFS_FILESIZE
    else:
        endbyte = offset + length - 1
    if advice == POSIX_FADV_NORMAL:
        f.f_ra.ra_pages = ino.i_sb.ra_pages
        f.f_mode &= ~FMODE_RANDOM
    elif advice == POSIX_FADV_RANDOM:
        f.f_mode |= FMODE_RANDOM
    elif advice == POSIX_FADV_SEQUENTIAL:
        f.f_ra.ra_pages = ino.i_sb.ra_pages * 2
        f.f_mode &= ~FMODE_RANDOM
    elif advice == POSIX_FADV_WILLNEED:
        if mapping.swapbacked:
            return 0                              # shmem_fadvise: no readahead
        start_index = offset >> 12
        end_index = endbyte >> 12
        nrpages = end_index - start_index + 1
        if not nrpages:
            nrpages = ~0
        force_page_cache_ra(readahead_control(f, f.f_ra, mapping, start_index), nrpages)
    elif advice == POSIX_FADV_NOREUSE:
        pass
    elif advice == POSIX_FADV_DONTNEED:
        if mapping.swapbacked:
            return 0
        from vmsim.mm.page_writeback import write_cache_pages, folio_end_writeback
        # __filemap_fdatawrite_range(WB_SYNC_NONE): start writing back the range. The
        # bios complete after the invalidation below: on the reference machine every
        # page DONTNEED had just started writing (16 to 1024 pages) was still under
        # writeback there, and stayed cached.
        in_flight = []
        write_cache_pages(k, mapping, offset >> 12, endbyte >> 12, in_flight)
        # First and last full page: partial pages are kept, except a last one that
        # ends at i_size.
        start_index = (offset + 4095) >> 12
        end_index = endbyte >> 12
        if (endbyte & 4095) != 4095 and endbyte != ino.i_size - 1:
            # end_index 0: pgoff_t would wrap; nothing to invalidate (the kernel breaks).
            end_index -= 1
        if end_index >= start_index:
            nr_failed = [0]
            # Pages just written sit in the local CPU's LRU batch: drain it first.
            lru_add_drain(k)
            mapping_try_invalidate(k, mapping, start_index, end_index, nr_failed)
            if nr_failed[0]:
                # The failures may be folios in a remote CPU's LRU batch.
                lru_add_drain_all(k)
                invalidate_mapping_pages(k, mapping, start_index, end_index)
        for folio in in_flight:
            folio_end_writeback(k, folio)
    else:
        return -errno.EINVAL
    return 0
