"""msync(2) (mm/msync.c).

MS_ASYNC does nothing since 2.6.19 (dirty pages are tracked already); MS_SYNC writes
back the file range of each shared file VMA in the range (vfs_fsync_range);
MS_INVALIDATE on a VM_LOCKED VMA is EBUSY. An unmapped hole in the range is ENOMEM,
reported after the VMAs that exist are done.
"""
import errno

from vmsim.mm.mm_types import VM_LOCKED, VM_SHARED
from vmsim.uapi import MS_ASYNC, MS_INVALIDATE, MS_SYNC


def sys_msync(mm, start: int, length: int, flags: int) -> int:
    from vmsim.fs.open import vfs_fsync_range
    k = mm.kernel
    if flags & ~(MS_ASYNC | MS_INVALIDATE | MS_SYNC):
        return -errno.EINVAL
    if start & 4095:
        return -errno.EINVAL
    if flags & MS_ASYNC and flags & MS_SYNC:
        return -errno.EINVAL
    length = (length + 4095) & ~4095
    end = start + length
    if end < start:
        return -errno.ENOMEM
    if end == start:
        return 0
    unmapped_error = 0
    vma = mm.find_vma(start)
    while True:
        error = -errno.ENOMEM
        if vma is None:
            break
        if start < vma.vm_start:
            if flags == MS_ASYNC:
                break
            start = vma.vm_start
            if start >= end:
                break
            unmapped_error = -errno.ENOMEM
        if flags & MS_INVALIDATE and vma.vm_flags & VM_LOCKED:
            error = -errno.EBUSY
            break
        file = vma.vm_file
        fstart = (start - vma.vm_start) + (vma.vm_pgoff << 12)
        fend = fstart + (min(end, vma.vm_end) - start) - 1
        start = vma.vm_end
        if flags & MS_SYNC and file is not None and vma.vm_flags & VM_SHARED:
            error = vfs_fsync_range(k, file, fstart, fend, True) if hasattr(file, "f_ra") else 0
            if error or start >= end:
                break
            vma = mm.find_vma(start)
        else:
            if start >= end:
                error = 0
                break
            vma = mm.find_vma(vma.vm_end)
    return error or unmapped_error
