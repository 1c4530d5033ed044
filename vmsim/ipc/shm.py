"""System V shared memory (ipc/shm.c): shmget, shmat, shmdt, shmctl(IPC_RMID / IPC_STAT).

A segment (struct shmid_kernel) owns an unlinked file: a shmem file of the internal shm
mount, or with SHM_HUGETLB a hugetlbfs file of the size's internal mount whose pages are
reserved at shmget time (hugetlb_file_setup with HUGETLB_SHMFS_INODE: S_PRIVATE, so
hugetlbfs_file_mmap reserves nothing more). Its name is "SYSV<key in %08x>" and its
inode number the shmid, as /proc/PID/maps shows them. shmat maps the whole segment
MAP_SHARED through a clone of that file with shm_file_operations (the huge variant makes
is_file_hugepages() true) and shm_vm_ops, which count the attaches (shm_nattch) and
call the underlying vm_ops; shmdt unmaps the VMAs of the segment that start where the
attach did. IPC_RMID marks the segment SHM_DEST (its key becomes IPC_PRIVATE): it is
destroyed with its last attach. kernel.shm_rmid_forced is 0 (this machine), so exit
leaves segments alone.

One IPC namespace; ids are built as ipc_addid() does: idx + (seq << 15), idx from
idr_alloc_cyclic (a probe in a fresh namespace got 0, 1, 2 after 0 and 1 were removed). Limits are this
machine's: shmmax = shmall = ULONG_MAX - 2^24 (SHMMAX / SHMALL), shmmni 4096, SHMMIN 1.
Not modelled: permissions beyond root's (root passes ipcperms), IPC_SET, SHM_LOCK
(EINVAL here: not modelled), IPC_INFO / SHM_INFO / SHM_STAT, /proc/sysvipc/shm.
"""
import errno

from vmsim.mm.mm_types import VM_NORESERVE

IPC_PRIVATE = 0
IPC_CREAT = 0o1000
IPC_EXCL = 0o2000
IPC_RMID = 0
IPC_SET = 1
IPC_STAT = 2
SHM_HUGETLB = 0o4000
SHM_NORESERVE = 0o10000
SHM_HUGE_SHIFT = 26
SHM_HUGE_MASK = 0x3F
SHM_RDONLY = 0o10000
SHM_RND = 0o20000
SHM_REMAP = 0o40000
SHM_EXEC = 0o100000
SHM_DEST = 0o1000                     # shm_perm.mode bit
SHMLBA = 4096                         # x86
SHMMIN = 1
SHMMNI = 4096
SHMMAX = (1 << 64) - 1 - (1 << 24)
SHMALL = SHMMAX
IPCMNI_SHIFT = 15
S_IRWXUGO = 0o777


class shmid_kernel:
    """struct shmid_kernel."""

    def __init__(self, key, mode, size, file, creator):
        self.key = key
        self.mode = mode
        self.id = -1
        self.seq = 0
        self.shm_segsz = size
        self.shm_nattch = 0
        self.shm_file = file
        self.shm_creator = creator
        self.shm_cprid = creator.pid
        self.shm_lprid = 0


class _shm_ns:
    """The IPC namespace's shm part (struct ipc_ids + shm_tot)."""

    def __init__(self):
        self.ipcs = {}               # idx -> shmid_kernel
        self.seq = 0
        self.last_idx = -1
        self.shm_tot = 0


def _ns(k) -> _shm_ns:
    ns = getattr(k, "shm_ns", None)
    if ns is None:
        ns = k.shm_ns = _shm_ns()
    return ns


def ipc_addid(ns, shp) -> int:
    """ipc_addid() -> ipc_idr_alloc(): idr_alloc_cyclic() from after the last index
    (wrapping at IPCMNI); seq grows when the index does not move past the last one."""
    if len(ns.ipcs) >= SHMMNI:
        return -errno.ENOSPC
    idx = ns.last_idx + 1
    while True:
        if idx >= 1 << IPCMNI_SHIFT:
            idx = 0
        if idx not in ns.ipcs:
            break
        idx += 1
    if idx <= ns.last_idx:
        ns.seq += 1
    ns.last_idx = idx
    shp.seq = ns.seq
    shp.id = (ns.seq << IPCMNI_SHIFT) + idx
    ns.ipcs[idx] = shp
    return shp.id


def shm_obtain_object_check(k, shmid: int):
    """shm_obtain_object_check(): the segment of a valid id, or -EINVAL / -EIDRM."""
    shp = _ns(k).ipcs.get(shmid & ((1 << IPCMNI_SHIFT) - 1))
    if shp is None or shp.id != shmid:
        return -errno.EINVAL
    return shp


def newseg(k, key: int, shmflg: int, size: int):
    """newseg(): size limits, the file (hugetlb with the page reservation, or shmem
    with its commit charge), the id (the inode number in maps)."""
    from vmsim.fs.hugetlbfs import hugetlb_file_setup
    from vmsim.mm.hugetlb import hstate_sizelog
    ns = _ns(k)
    numpages = (size + 4095) >> 12
    if size < SHMMIN or size > SHMMAX:
        return -errno.EINVAL
    if numpages << 12 < size:
        return -errno.ENOSPC
    if ns.shm_tot + numpages > SHMALL:
        return -errno.ENOSPC
    name = "SYSV%08x" % (key & 0xFFFFFFFF)
    acctflag = 0
    if shmflg & SHM_HUGETLB:
        log = (shmflg >> SHM_HUGE_SHIFT) & SHM_HUGE_MASK
        hs = hstate_sizelog(k, log)
        if hs is None:
            return -errno.EINVAL
        hsz = hs.huge_page_size()
        hugesize = (size + hsz - 1) & ~(hsz - 1)
        if shmflg & SHM_NORESERVE:
            acctflag = VM_NORESERVE
        file = hugetlb_file_setup(k, name, hugesize, acctflag, log, private=True)
    else:
        from vmsim.mm.memfd import shmem_file_setup
        from vmsim.mm.shmem import shmem_acct_size
        if shmflg & SHM_NORESERVE and k.sysctl["/proc/sys/vm/overcommit_memory"] != "2":
            acctflag = VM_NORESERVE
        if shmem_acct_size(k.current.mm, acctflag, size):
            return -errno.ENOMEM
        file = shmem_file_setup(k, name, size, acctflag)
        if not acctflag:
            file.f_inode.shm_acct = numpages        # shmem_unacct_size() at eviction
    if isinstance(file, int):
        return file
    shp = shmid_kernel(key, shmflg & S_IRWXUGO, size, file, k.current)
    err = ipc_addid(ns, shp)
    if err < 0:
        _drop_file(k, file)
        return err
    file.f_inode.i_ino = shp.id
    ns.shm_tot += numpages
    return shp.id


def _drop_file(k, file):
    from vmsim.mm.vma import fput
    acct = getattr(file.f_inode, "shm_acct", 0)
    fput(k, file)
    if acct:
        k.committed_as -= acct


def ksys_shmget(k, key: int, size: int, shmflg: int) -> int:
    """ksys_shmget() -> ipcget(): IPC_PRIVATE always makes a segment; a key finds its
    segment (IPC_CREAT | IPC_EXCL: EEXIST; larger size: EINVAL) or makes one with
    IPC_CREAT (else ENOENT)."""
    ns = _ns(k)
    if key == IPC_PRIVATE:
        return newseg(k, key, shmflg, size)
    shp = next((s for s in ns.ipcs.values() if s.key == key and not s.mode & SHM_DEST), None)
    if shp is None:
        if not shmflg & IPC_CREAT:
            return -errno.ENOENT
        return newseg(k, key, shmflg, size)
    if shmflg & IPC_CREAT and shmflg & IPC_EXCL:
        return -errno.EEXIST
    if shp.shm_segsz < size:                       # shm_more_checks
        return -errno.EINVAL
    return shp.id


def shm_may_destroy(shp) -> bool:
    return shp.shm_nattch == 0 and bool(shp.mode & SHM_DEST)


def shm_destroy(k, shp):
    """shm_destroy(): drop the id, shm_tot and the segment's file."""
    ns = _ns(k)
    ns.shm_tot -= (shp.shm_segsz + 4095) >> 12
    ns.ipcs.pop(shp.id & ((1 << IPCMNI_SHIFT) - 1), None)
    file, shp.shm_file = shp.shm_file, None
    _drop_file(k, file)


def do_shm_rmid(k, shp):
    """do_shm_rmid(): destroy now if unattached, else mark SHM_DEST (the key goes
    private: ipc_set_key_private)."""
    if shp.shm_nattch:
        shp.mode |= SHM_DEST
        shp.key = IPC_PRIVATE
    else:
        shm_destroy(k, shp)


def ksys_shmctl(k, shmid: int, cmd: int):
    """ksys_shmctl(): IPC_RMID, IPC_STAT (a dict of the shmid64_ds fields vmsim keeps)."""
    if cmd < 0 or shmid < 0:
        return -errno.EINVAL
    if cmd == IPC_RMID:
        shp = shm_obtain_object_check(k, shmid)
        if isinstance(shp, int):
            return shp
        do_shm_rmid(k, shp)
        return 0
    if cmd == IPC_STAT:
        shp = shm_obtain_object_check(k, shmid)
        if isinstance(shp, int):
            return shp
        return {"shm_segsz": shp.shm_segsz, "shm_nattch": shp.shm_nattch,
                "shm_cpid": shp.shm_cprid, "shm_lpid": shp.shm_lprid,
                "mode": shp.mode, "key": shp.key}
    if cmd in (IPC_SET, 3, 11, 12, 13, 14, 15):   # IPC_SET, IPC_INFO, SHM_LOCK/UNLOCK/STAT/INFO
        raise NotImplementedError(f"shmctl cmd {cmd} is not modelled")
    return -errno.EINVAL


# --- the attach file ------------------------------------------------------------------
class shm_file_data:
    """struct shm_file_data: the segment id and its file, and the file's vm_ops."""

    def __init__(self, shmid, file):
        self.id = shmid
        self.file = file
        self.vm_ops = None


class _ShmFileOps:
    """shm_file_operations (shm_file_operations_huge is the same, a distinct object)."""

    def __init__(self, huge):
        self.huge = huge

    @staticmethod
    def mmap(file, vma) -> int:
        return shm_mmap(file, vma)

    @staticmethod
    def get_unmapped_area(mm, file, addr, length, pgoff, flags):
        base = file.private_data.file
        return base.f_op.get_unmapped_area(mm, base, addr, length, pgoff, flags)


shm_file_operations = _ShmFileOps(False)
shm_file_operations_huge = _ShmFileOps(True)


def is_file_shm_hugepages(file) -> bool:
    return getattr(file, "f_op", None) is shm_file_operations_huge


def alloc_file_clone(base, f_flags: int, fops):
    """alloc_file_clone(): a new struct file of the same inode and path."""
    from vmsim.fs.file import file
    f = file(base.f_inode, base.path, f_flags)
    f.f_op = fops
    return f


def __shm_open(k, sfd) -> int:
    shp = shm_obtain_object_check(k, sfd.id)
    if isinstance(shp, int):
        return -errno.EIDRM
    if shp.shm_file is not sfd.file:
        return -errno.EINVAL                      # ID was reused
    shp.shm_lprid = k.current.pid
    shp.shm_nattch += 1
    return 0


def shm_mmap(file, vma) -> int:
    """shm_mmap(): count the attach, mmap the segment's file, wrap its vm_ops."""
    k = vma.vm_mm.kernel
    sfd = file.private_data
    ret = __shm_open(k, sfd)
    if ret:
        return ret
    ret = sfd.file.f_op.mmap(sfd.file, vma)
    if ret:
        shm_close(vma, sfd)
        return ret
    sfd.vm_ops = vma.vm_ops
    vma.vm_ops = shm_vm_ops
    return 0


def shm_close(vma, sfd=None):
    """shm_close(): the underlying ->close, one attach less; destroy if marked."""
    k = vma.vm_mm.kernel
    if sfd is None:
        sfd = vma.vm_file.private_data
        if sfd.vm_ops is not None and getattr(sfd.vm_ops, "close", None):
            sfd.vm_ops.close(vma)
    shp = shm_obtain_object_check(k, sfd.id)
    if isinstance(shp, int):
        return
    shp.shm_lprid = k.current.pid
    shp.shm_nattch -= 1
    if shm_may_destroy(shp):
        shm_destroy(k, shp)


def shm_open(vma):
    """shm_open() (fork, VMA split): the underlying ->open, one attach more."""
    sfd = vma.vm_file.private_data
    if getattr(sfd.vm_ops, "open", None):
        sfd.vm_ops.open(vma)
    __shm_open(vma.vm_mm.kernel, sfd)


class _ShmVmOps:
    """shm_vm_ops: open / close count attaches around the underlying vm_ops; fault,
    map_pages, split and pagesize go to them."""
    name = "shm_vm_ops"

    @staticmethod
    def open(vma):
        shm_open(vma)

    @staticmethod
    def close(vma):
        shm_close(vma)

    @staticmethod
    def fault(vmf):
        return vmf.vma.vm_file.private_data.vm_ops.fault(vmf)

    @staticmethod
    def map_pages(vmf, start_pgoff, end_pgoff):
        ops = vmf.vma.vm_file.private_data.vm_ops
        return ops.map_pages(vmf, start_pgoff, end_pgoff)

    @staticmethod
    def may_split(vma, addr):
        ops = vma.vm_file.private_data.vm_ops
        return ops.may_split(vma, addr) if getattr(ops, "may_split", None) else 0

    @staticmethod
    def pagesize(vma):
        ops = vma.vm_file.private_data.vm_ops
        return ops.pagesize(vma) if getattr(ops, "pagesize", None) else 4096


shm_vm_ops = _ShmVmOps()


def do_shmat(k, task, shmid: int, shmaddr: int, shmflg: int) -> int:
    """do_shmat(): the address the whole segment is mapped at (MAP_SHARED, MAP_FIXED
    for a given address), or -errno."""
    from vmsim.fs.file import O_RDONLY, O_RDWR
    from vmsim.mm.mmap import (do_mmap, MAP_SHARED, MAP_FIXED, PROT_READ, PROT_WRITE,
                               PROT_EXEC)
    from vmsim.mm.gup import mm_populate
    mm = task.mm
    addr = shmaddr
    flags = MAP_SHARED
    if shmid < 0:
        return -errno.EINVAL
    if addr:
        if addr & (SHMLBA - 1):
            if shmflg & SHM_RND:
                addr &= ~(SHMLBA - 1)
                if not addr and shmflg & SHM_REMAP:
                    return -errno.EINVAL
            else:
                return -errno.EINVAL
        flags |= MAP_FIXED
    elif shmflg & SHM_REMAP:
        return -errno.EINVAL
    if shmflg & SHM_RDONLY:
        prot, f_flags = PROT_READ, O_RDONLY
    else:
        prot, f_flags = PROT_READ | PROT_WRITE, O_RDWR
    if shmflg & SHM_EXEC:
        prot |= PROT_EXEC
    shp = shm_obtain_object_check(k, shmid)
    if isinstance(shp, int):
        return shp
    from vmsim.fs.file import get_file
    base = get_file(shp.shm_file)
    shp.shm_nattch += 1
    size = base.f_inode.i_size
    from vmsim.fs.hugetlbfs import is_file_hugepages
    file = alloc_file_clone(base, f_flags, shm_file_operations_huge
                            if is_file_hugepages(base) else shm_file_operations)
    file.private_data = shm_file_data(shp.id, base)
    from vmsim.mm.vma import fput
    err = 0
    if addr and not shmflg & SHM_REMAP and (addr + size > (1 << 64) - 1 or
                                             mm.vmas_in(addr, addr + size)):
        err = -errno.EINVAL
    else:
        addr, populate = do_mmap(mm, file, addr, size, prot, flags, 0, 0)
        if addr < 0:
            err = addr
        elif populate:
            mm_populate(mm, addr, populate)
    fput(k, file)                       # out_fput: the VMA holds its own reference
    fput(k, base)                       # shm_release() of the clone's sfd->file
    shp.shm_nattch -= 1                 # out_nattch
    if shm_may_destroy(shp):
        shm_destroy(k, shp)
    return err if err else addr


def ksys_shmdt(k, task, shmaddr: int) -> int:
    """ksys_shmdt(): unmap the shm VMA starting at shmaddr (vm_pgoff 0 there) and the
    later fragments of the same segment within its size; EINVAL if there is none."""
    from vmsim.mm.vma import do_vmi_munmap
    mm = task.mm
    addr = shmaddr
    if addr & 0xFFF:
        return -errno.EINVAL
    retval = -errno.EINVAL
    file = None
    size = 0
    vmas = [v for v in mm.mm_mt if v.vm_end > addr]
    i = 0
    while i < len(vmas):
        v = vmas[i]
        i += 1
        if v.vm_ops is shm_vm_ops and (v.vm_start - addr) // 4096 == v.vm_pgoff:
            file = v.vm_file.private_data.file
            size = v.vm_file.f_inode.i_size
            do_vmi_munmap(mm, v.vm_start, v.vm_end - v.vm_start)
            retval = 0
            break
    size = (size + 4095) & ~4095
    while i < len(vmas) and vmas[i].vm_end - addr <= size:
        v = vmas[i]
        i += 1
        if v.vm_ops is shm_vm_ops and (v.vm_start - addr) // 4096 == v.vm_pgoff and \
                v.vm_file.private_data.file is file:
            do_vmi_munmap(mm, v.vm_start, v.vm_end - v.vm_start)
    return retval
