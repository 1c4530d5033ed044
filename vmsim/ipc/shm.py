"""System V shared memory (ipc/shm.c): shmget, shmat, shmdt, shmctl (IPC_RMID,
IPC_STAT, IPC_SET, IPC_INFO, SHM_INFO, SHM_STAT, SHM_STAT_ANY, SHM_LOCK, SHM_UNLOCK),
/proc/sysvipc/shm.

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
Not modelled: permissions beyond root's (root passes ipcperms and owns what
IPC_SET gives away); SHM_LOCK's unevictable mapping (shmem_lock: vmsim reclaims no
shmem); the times come from a wall clock that starts at a fixed date
(_BOOT_REALTIME) and moves with the virtual clock; shm_rmid_forced = 1 (exit_shm's orphan destruction); shmat of an id removed and reused
between attach and mmap.
"""
import errno

from vmsim.mm.mm_types import VM_NORESERVE

from vmsim.uapi import (IPC_PRIVATE, IPC_CREAT, IPC_EXCL, IPC_RMID, IPC_SET, IPC_STAT, IPC_INFO,
                        SHM_LOCK, SHM_UNLOCK, SHM_STAT, SHM_INFO, SHM_STAT_ANY, SHM_HUGETLB,
                        SHM_NORESERVE, SHM_RDONLY, SHM_RND, SHM_REMAP, SHM_EXEC)

SHM_LOCKED = 0o2000                   # shm_perm.mode bit
SHM_HUGE_SHIFT = 26
SHM_HUGE_MASK = 0x3F
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
        # shm_perm's owner and creator (vmsim's tasks run as root), the times
        # (ktime_get_real_seconds(): _ktime_get_real_seconds).
        self.uid = self.gid = self.cuid = self.cgid = 0
        self.shm_atim = self.shm_dtim = 0
        self.shm_ctim = 0


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
        if shmflg & SHM_NORESERVE and k.sysctl_overcommit_memory != 2:
            acctflag = VM_NORESERVE
        if shmem_acct_size(k.current.mm, acctflag, size):
            return -errno.ENOMEM
        file = shmem_file_setup(k, name, size, acctflag)
        if not acctflag:
            file.f_inode.shm_acct = numpages        # shmem_unacct_size() at eviction
    if isinstance(file, int):
        return file
    shp = shmid_kernel(key, shmflg & S_IRWXUGO, size, file, k.current)
    shp.shm_ctim = _ktime_get_real_seconds(k)
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


# vmsim-only: the machine has no wall clock; CLOCK_REALTIME is this fixed date
# (2023-11-14, so that runs repeat) plus its virtual clock (what m.sleep() moves on).
_BOOT_REALTIME = 1_700_000_000


def _ktime_get_real_seconds(k) -> int:
    from vmsim.mm.huge_memory import _thp
    return _BOOT_REALTIME + _thp(k).clock_ns // 1_000_000_000


def ipc_get_maxidx(ns) -> int:
    """ipc_get_maxidx(): the highest index in use, -1 when there is none."""
    return max(ns.ipcs, default=-1)


def shm_obtain_object(k, idx: int):
    """shm_obtain_object(): SHM_STAT's id is an index (ipc_obtain_object_idr)."""
    shp = _ns(k).ipcs.get(idx)
    return -errno.EINVAL if shp is None else shp


def shm_add_rss_swap(shp) -> tuple:
    """shm_add_rss_swap(): (rss, swap) pages of the segment's file: a hugetlb file's
    pages_per_huge_page * nrpages (nrpages counts base pages, __filemap_add_folio),
    a shmem file's nrpages and info->swapped (vmsim's shmem does not swap: 0)."""
    inode = shp.shm_file.f_inode
    h = getattr(inode, "hstate", None)
    if h is not None:                                  # is_file_hugepages()
        return (1 << h.order) * inode.i_mapping.nrpages, 0
    return inode.i_mapping.nrpages, 0


def shm_get_stat(ns) -> tuple:
    """shm_get_stat(): rss and swap pages of every segment."""
    rss = swp = 0
    for shp in ns.ipcs.values():
        r, s = shm_add_rss_swap(shp)
        rss += r
        swp += s
    return rss, swp


def shmctl_ipc_info(k) -> tuple:
    """shmctl_ipc_info(): (the highest index in use or 0, struct shminfo64)."""
    ns = _ns(k)
    info = {"shmmax": SHMMAX, "shmmin": SHMMIN, "shmmni": SHMMNI, "shmseg": SHMMNI,
            "shmall": SHMALL}
    return max(ipc_get_maxidx(ns), 0), info


def shmctl_shm_info(k) -> tuple:
    """shmctl_shm_info(): (the highest index in use or 0, struct shm_info)."""
    ns = _ns(k)
    rss, swp = shm_get_stat(ns)
    info = {"used_ids": len(ns.ipcs), "shm_tot": ns.shm_tot, "shm_rss": rss, "shm_swp": swp,
            "swap_attempts": 0, "swap_successes": 0}
    return max(ipc_get_maxidx(ns), 0), info


def shmctl_stat(k, shmid: int, cmd: int):
    """shmctl_stat(): IPC_STAT of an id (returns 0), SHM_STAT / SHM_STAT_ANY of an
    index (returns the full id); with struct shmid64_ds as a dict."""
    if cmd in (SHM_STAT, SHM_STAT_ANY):
        shp = shm_obtain_object(k, shmid)
    else:
        shp = shm_obtain_object_check(k, shmid)
    if isinstance(shp, int):
        return shp, None
    ds = {"key": shp.key, "uid": shp.uid, "gid": shp.gid, "cuid": shp.cuid,
          "cgid": shp.cgid, "mode": shp.mode, "seq": shp.seq, "shm_segsz": shp.shm_segsz,
          "shm_atime": shp.shm_atim, "shm_dtime": shp.shm_dtim, "shm_ctime": shp.shm_ctim,
          "shm_cpid": shp.shm_cprid, "shm_lpid": shp.shm_lprid,
          "shm_nattch": shp.shm_nattch}
    return (0 if cmd == IPC_STAT else shp.id), ds


def ipc_update_perm(out: dict, shp):
    """ipc_update_perm(): uid, gid and the low 9 mode bits from IPC_SET's buffer."""
    shp.uid = out.get("uid", shp.uid)
    shp.gid = out.get("gid", shp.gid)
    shp.mode = (shp.mode & ~S_IRWXUGO) | (out.get("mode", shp.mode) & S_IRWXUGO)
    return 0


def shmctl_down(k, shmid: int, cmd: int, shmid64: dict) -> int:
    """shmctl_down(): IPC_RMID and IPC_SET (the caller is root: ipcctl_obtain_check
    lets it through)."""
    shp = shm_obtain_object_check(k, shmid)
    if isinstance(shp, int):
        return shp
    if cmd == IPC_RMID:
        do_shm_rmid(k, shp)
        return 0
    err = ipc_update_perm(shmid64, shp)
    if not err:
        shp.shm_ctim = _ktime_get_real_seconds(k)
    return err


def shmctl_do_lock(k, shmid: int, cmd: int) -> int:
    """shmctl_do_lock(): SHM_LOCK / SHM_UNLOCK of a shmem segment set / clear
    SHM_LOCKED (root has CAP_IPC_LOCK); a hugetlb segment is left alone. shmem_lock()
    makes the mapping unevictable, which vmsim does not model (no reclaim of shmem)."""
    shp = shm_obtain_object_check(k, shmid)
    if isinstance(shp, int):
        return shp
    if getattr(shp.shm_file.f_inode, "hstate", None) is not None:   # is_file_hugepages()
        return 0
    if cmd == SHM_LOCK:
        shp.mode |= SHM_LOCKED
    else:
        shp.mode &= ~SHM_LOCKED
    return 0


def ksys_shmctl(k, shmid: int, cmd: int, buf=None):
    """ksys_shmctl(): the return value, or (it, the buffer as a dict) for IPC_INFO,
    SHM_INFO, IPC_STAT, SHM_STAT and SHM_STAT_ANY; IPC_SET takes ``buf`` (uid, gid,
    mode)."""
    if cmd < 0 or shmid < 0:
        return -errno.EINVAL
    if cmd == IPC_INFO:
        return shmctl_ipc_info(k)
    if cmd == SHM_INFO:
        return shmctl_shm_info(k)
    if cmd in (SHM_STAT, SHM_STAT_ANY, IPC_STAT):
        err, ds = shmctl_stat(k, shmid, cmd)
        return err if err < 0 else (err, ds)
    if cmd == IPC_SET and buf is None:
        return -errno.EFAULT                       # copy_shmid_from_user() of NULL
    if cmd in (IPC_SET, IPC_RMID):
        return shmctl_down(k, shmid, cmd, dict(buf or {}))
    if cmd in (SHM_LOCK, SHM_UNLOCK):
        return shmctl_do_lock(k, shmid, cmd)
    return -errno.EINVAL


def sysvipc_shm_proc_show(k) -> str:
    """/proc/sysvipc/shm: the header (ipc_init_proc_interface) and a line per segment
    in index order (sysvipc_shm_proc_show, 64-bit field widths)."""
    out = ["       key      shmid perms                  size  cpid  lpid nattch   uid   gid  "
           "cuid  cgid      atime      dtime      ctime                   rss                  "
           "swap\n"]
    ns = _ns(k)
    for idx in sorted(ns.ipcs):
        shp = ns.ipcs[idx]
        rss, swp = shm_add_rss_swap(shp)
        key = shp.key - (1 << 32) if shp.key & (1 << 31) else shp.key
        out.append(f"{key:10d} {shp.id:10d}  {shp.mode:4o} {shp.shm_segsz:21d} "
                   f"{shp.shm_cprid:5d} {shp.shm_lprid:5d}  {shp.shm_nattch:5d} "
                   f"{shp.uid:5d} {shp.gid:5d} {shp.cuid:5d} {shp.cgid:5d} "
                   f"{shp.shm_atim:10d} {shp.shm_dtim:10d} {shp.shm_ctim:10d} "
                   f"{rss * 4096:21d} {swp * 4096:21d}\n")
    return "".join(out)


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
    shp.shm_atim = _ktime_get_real_seconds(k)
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
    shp.shm_dtim = _ktime_get_real_seconds(k)
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
    split and pagesize go to them. There is no ->map_pages, so a read fault on an
    attach never faults around (the reference machine: 8 read faults for 8 cached
    pages, scenario hugetlb_shm)."""
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
                                             mm._vmas_in(addr, addr + size)):
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
