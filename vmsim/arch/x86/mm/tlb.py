"""TLB management (arch/x86/mm/tlb.c, asm/tlbflush.h, asm/mmu_context.h) as in 6.18.

Per CPU, cpu_tlbstate (on the CPU's cpu_state): loaded_mm, loaded_mm_asid, next_asid,
ctxs[TLB_NR_DYN_ASIDS] of (ctx_id, tlb_gen), user_pcid_flush_mask, and
cpu_tlbstate_shared.is_lazy. Per mm: context.ctx_id, context.tlb_gen, mm_cpumask.
switch_mm_irqs_off picks an ASID (choose_new_asid) and loads CR3 with or without
NOFLUSH; flush_tlb_mm_range bumps the mm's tlb_gen and runs flush_tlb_func on the
CPUs that need it (native_flush_tlb_multi: IPIs to mm_cpumask, lazy CPUs skipped
unless page tables were freed). The hardware effect of each CR3 write, INVLPG and
INVPCID is applied to the CPU's TLB model (vmsim.arch.x86.tlb) when the machine has
one (``k.tlb``); without it the bookkeeping and counters run the same.

Counters: NR_TLB_REMOTE_FLUSH, NR_TLB_REMOTE_FLUSH_RECEIVED, NR_TLB_LOCAL_FLUSH_ALL and
NR_TLB_LOCAL_FLUSH_ONE (pages, not events) exist in Linux only with
CONFIG_DEBUG_TLBFLUSH (off on the reference machine); vmsim always counts them.

The debug checker's record is kept too: _note_downgrade() records that a range lost a
translation or permission, flush_tlb_mm_range() clears what it covers, and a record
left when a syscall returns is a missing flush. ``k.tlb_flushes`` keeps the most
recent flushes only (at least TLB_FLUSH_RECORD). The stale-TLB checker (on a TLB hit,
vmsim.arch.x86.cpu) names the operation from the same records.

Not modelled: INVLPGB / global ASIDs (use_global_asid, broadcast_tlb_flush: AMD Zen 3+
only, and this machine's CPU lacks it), LAM, the PTI kernel half (user accesses to
kernel addresses fault as without PTI), CR4.PCE and the L1D flush mitigations.
"""
import sys

TLB_FLUSH_ALL = -1
TLB_FLUSH_RECORD = 4096
TLB_NR_DYN_ASIDS = 6
TLB_GENERATION_INVALID = 0
X86_CR3_PTI_PCID_USER_BIT = 11
# /sys/kernel/debug/x86/tlb_single_page_flush_ceiling
tlb_single_page_flush_ceiling = 33

# Per-CPU event counters of m.tlb_stats() (vmsim's; the kernel has trace points).
CPU_EVENTS = ("flush_one", "flush_all_local", "flush_on_switch", "noflush_switch",
              "ipi_sent", "ipi_received", "lazy_skipped", "wrong_cpu_trimmed",
              "asid_switch", "asid_new", "user_pcid_flush", "flush_global")


class cpu_tlbstate:
    """struct tlb_state + struct tlb_state_shared of one CPU."""
    __slots__ = ("loaded_mm", "loaded_mm_asid", "next_asid", "ctxs", "invalidate_other",
                 "user_pcid_flush_mask", "is_lazy", "events", "user_stale")

    def __init__(self):
        self.loaded_mm = None
        self.loaded_mm_asid = 0
        self.next_asid = 1
        self.ctxs = [[0, 0] for _ in range(TLB_NR_DYN_ASIDS)]   # (ctx_id, tlb_gen)
        self.invalidate_other = False
        self.user_pcid_flush_mask = 0
        self.is_lazy = False
        self.events = dict.fromkeys(CPU_EVENTS, 0)
        self.user_stale = True         # kernel entered since the last SWITCH_TO_USER_CR3


def _ts(k, cpu: int) -> cpu_tlbstate:
    return k.cpus[cpu].tlbstate


def init_new_context(mm):
    """init_new_context(): a fresh ctx_id (last_mm_ctx_id) and tlb_gen 0; an empty
    mm_cpumask (mm_init_cpumask)."""
    k = mm.kernel
    k.last_mm_ctx_id += 1
    mm.ctx_id = k.last_mm_ctx_id
    mm.tlb_gen = 0
    mm.cpumask = set()


def inc_mm_tlb_gen(mm) -> int:
    """inc_mm_tlb_gen(): the mm's new TLB generation."""
    mm.tlb_gen += 1
    return mm.tlb_gen


def kern_pcid(asid: int) -> int:
    """kern_pcid(): ASID + 1 (PCID 0 is for PCID-unaware code)."""
    return asid + 1


def user_pcid(asid: int) -> int:
    """user_pcid(): the kernel PCID with X86_CR3_PTI_PCID_USER_BIT (PTI)."""
    return kern_pcid(asid) | 1 << X86_CR3_PTI_PCID_USER_BIT


def _kpcid(k, asid):
    return kern_pcid(asid) if k.pcid else 0


# --- CR3 and the invalidating instructions (the hardware side is k.tlb) --------------
def write_cr3(k, cpu: int, pgd: int, asid: int, noflush: bool):
    """write_cr3(build_cr3[_noflush](pgd, asid)): CR3's PCID is kern_pcid(asid) with
    PCID on, 0 without (then every CR3 write flushes non-global entries)."""
    k.cpus[cpu].cr3 = pgd
    if k.tlb is not None:
        k.tlb._write_cr3(cpu, _kpcid(k, asid), noflush and k.pcid)
    _ts(k, cpu).user_stale = True


def invalidate_user_asid(k, cpu: int, asid: int):
    """invalidate_user_asid(): with PTI and PCID, mark the user PCID to be flushed at
    the next return to user space (SWITCH_TO_USER_CR3)."""
    if not (k.pti and k.pcid):
        return
    _ts(k, cpu).user_pcid_flush_mask |= 1 << kern_pcid(asid)


def _prepare_user_access(k, cpu: int):
    """SWITCH_TO_USER_CR3 on the way back to user space: with PTI, CR3 gets the user
    PGD and user PCID, flushing it (no NOFLUSH bit) if invalidate_user_asid asked to;
    without PCID that CR3 write flushes everything non-global, every time."""
    ts = _ts(k, cpu)
    if not ts.user_stale:
        return
    ts.user_stale = False
    hw = k.tlb
    if hw is None:
        return
    asid = ts.loaded_mm_asid
    if not k.pti:
        hw.cur_pcid[cpu] = _kpcid(k, asid)
        return
    if not k.pcid:
        hw._write_cr3(cpu, 0, False)
        return
    bit = 1 << kern_pcid(asid)
    flush = bool(ts.user_pcid_flush_mask & bit)
    if flush:
        ts.user_pcid_flush_mask &= ~bit
        ts.events["user_pcid_flush"] += 1
    hw._write_cr3(cpu, user_pcid(asid), not flush)


def _kernel_entry(k, cpu: int):
    """SWITCH_TO_KERNEL_CR3 (a syscall or exception entered the kernel): the next
    return to user space goes through _prepare_user_access again."""
    ts = k.cpus[cpu].tlbstate                  # _ts(), inline: every syscall enters here
    ts.user_stale = True
    if k.tlb is not None and k.pti:
        k.tlb.cur_pcid[cpu] = _kpcid(k, ts.loaded_mm_asid)


def flush_tlb_one_user(k, cpu: int, addr: int):
    """flush_tlb_one_user() -> native_flush_tlb_one_user(): INVLPG in the kernel PCID;
    with PTI the user PCID too, by INVPCID where the CPU has it, else deferred."""
    ts = _ts(k, cpu)
    asid = ts.loaded_mm_asid
    if k.tlb is not None:
        k.tlb._invlpg(cpu, _kpcid(k, asid), addr)
    if not (k.pti and k.pcid):
        return
    if k.invpcid:
        if k.tlb is not None:
            k.tlb._invlpg(cpu, user_pcid(asid), addr)        # invpcid_flush_one
    else:
        invalidate_user_asid(k, cpu, asid)


def flush_tlb_local(k, cpu: int):
    """flush_tlb_local() -> native_flush_tlb_local(): the user ASID is invalidated and
    CR3 rewritten with its own value (no NOFLUSH: the current PCID's entries go)."""
    ts = _ts(k, cpu)
    invalidate_user_asid(k, cpu, ts.loaded_mm_asid)
    mm = ts.loaded_mm
    write_cr3(k, cpu, k.cpus[cpu].cr3, ts.loaded_mm_asid, False)


def __flush_tlb_all(k, cpu: int):
    """__flush_tlb_all(): with PGE, global entries too (invpcid_flush_all or CR4.PGE
    toggled); with PTI the kernel mappings are not global anyway."""
    _ts(k, cpu).events["flush_global"] += 1
    if k.tlb is not None:
        k.tlb._flush_all(cpu, True)
    invalidate_user_asid(k, cpu, _ts(k, cpu).loaded_mm_asid)


# --- switching mms ------------------------------------------------------------------
def clear_asid_other(k, cpu: int):
    """clear_asid_other(): other ASIDs get flushed when next loaded (PTI only)."""
    ts = _ts(k, cpu)
    for asid in range(TLB_NR_DYN_ASIDS):
        if asid != ts.loaded_mm_asid:
            ts.ctxs[asid][0] = 0
    ts.invalidate_other = False


def choose_new_asid(k, cpu: int, next_mm, next_tlb_gen: int):
    """choose_new_asid(): (asid, need_flush). The ASID slot already holding next's
    ctx_id, flushed only if its tlb_gen is behind; else the next slot round robin
    (the 7th mm evicts one) and a flush. Without PCID: ASID 0, always flush."""
    if not k.pcid:
        return 0, True
    ts = _ts(k, cpu)
    if ts.invalidate_other:
        clear_asid_other(k, cpu)
    for asid in range(TLB_NR_DYN_ASIDS):
        if ts.ctxs[asid][0] != next_mm.ctx_id:
            continue
        return asid, ts.ctxs[asid][1] < next_tlb_gen
    ts.next_asid += 1
    asid = ts.next_asid - 1
    if asid >= TLB_NR_DYN_ASIDS:
        asid = 0
        ts.next_asid = 1
    ts.events["asid_new"] += 1
    return asid, True


def load_new_mm_cr3(k, cpu: int, pgd: int, new_asid: int, need_flush: bool):
    """load_new_mm_cr3(): CR3 with NOFLUSH unless a flush is needed (which also
    schedules the user PCID's flush)."""
    if need_flush:
        invalidate_user_asid(k, cpu, new_asid)
    write_cr3(k, cpu, pgd, new_asid, not need_flush)


def switch_mm_irqs_off(k, cpu: int, next_mm):
    """switch_mm_irqs_off(): make ``next_mm`` the CPU's loaded mm (init_mm to leave)."""
    ts = _ts(k, cpu)
    prev = ts.loaded_mm
    prev_asid = ts.loaded_mm_asid
    was_lazy = ts.is_lazy
    if was_lazy:
        ts.is_lazy = False
    if prev is next_mm:
        if not was_lazy:
            return
        # Lazy, back to the same mm: a flush may have been skipped meanwhile.
        next_tlb_gen = next_mm.tlb_gen
        if ts.ctxs[prev_asid][1] == next_tlb_gen:
            return
        asid, need_flush = prev_asid, True
    else:
        if next_mm is not k.init_mm:
            next_mm.cpumask.add(cpu)
        next_tlb_gen = next_mm.tlb_gen
        asid, need_flush = choose_new_asid(k, cpu, next_mm, next_tlb_gen)
        if asid != prev_asid:
            ts.events["asid_switch"] += 1
    if need_flush:
        ts.ctxs[asid][0] = next_mm.ctx_id
        ts.ctxs[asid][1] = next_tlb_gen
        load_new_mm_cr3(k, cpu, next_mm.pgd, asid, True)
        ts.events["flush_on_switch"] += 1          # TLB_FLUSH_ON_TASK_SWITCH, TLB_FLUSH_ALL
    else:
        load_new_mm_cr3(k, cpu, next_mm.pgd, asid, False)
        ts.events["noflush_switch"] += 1
    ts.loaded_mm = next_mm
    ts.loaded_mm_asid = asid
    k.cpus[cpu].loaded_mm = None if next_mm is k.init_mm else next_mm


def leave_mm(k, cpu: int):
    """leave_mm(): a lazy CPU switches to init_mm."""
    if _ts(k, cpu).loaded_mm is k.init_mm:
        return
    switch_mm_irqs_off(k, cpu, k.init_mm)


def enter_lazy_tlb(k, cpu: int):
    """enter_lazy_tlb(): a kernel thread or the idle task keeps the previous mm loaded
    (lazy TLB mode) instead of switching to init_mm."""
    if _ts(k, cpu).loaded_mm is k.init_mm:
        return
    _ts(k, cpu).is_lazy = True


# --- flushing -----------------------------------------------------------------------
class flush_tlb_info:
    """struct flush_tlb_info."""
    __slots__ = ("mm", "start", "end", "stride_shift", "freed_tables", "new_tlb_gen",
                 "initiating_cpu", "trim_cpumask")


def get_flush_tlb_info(k, mm, start, end, stride_shift, freed_tables, new_tlb_gen):
    """get_flush_tlb_info(): more than tlb_single_page_flush_ceiling strides become a
    full flush."""
    info = flush_tlb_info()
    if end == TLB_FLUSH_ALL or (end - start) >> stride_shift > tlb_single_page_flush_ceiling:
        start, end = 0, TLB_FLUSH_ALL
    info.start, info.end, info.mm = start, end, mm
    info.stride_shift = stride_shift
    info.freed_tables = freed_tables
    info.new_tlb_gen = new_tlb_gen
    info.initiating_cpu = k._current_cpu()
    info.trim_cpumask = False
    return info


def flush_tlb_func(k, cpu: int, f):
    """flush_tlb_func(): bring this CPU's TLB up to the mm's tlb_gen: a partial flush
    (INVLPG per stride) when it is exactly one generation behind and the range is
    known, else a full local flush."""
    ts = _ts(k, cpu)
    loaded_mm = ts.loaded_mm
    loaded_mm_asid = ts.loaded_mm_asid
    local = cpu == f.initiating_cpu
    if not local:
        k.vmstat[_NR_TLB_REMOTE_FLUSH_RECEIVED] += 1
        ts.events["ipi_received"] += 1
    if f.mm is not None and f.mm is not loaded_mm:
        f.mm.cpumask.discard(cpu)                  # TLB_REMOTE_WRONG_CPU
        ts.events["wrong_cpu_trimmed"] += 1
        return
    if loaded_mm is k.init_mm or loaded_mm is None:
        return
    if ts.is_lazy:
        switch_mm_irqs_off(k, cpu, k.init_mm)
        return
    local_tlb_gen = ts.ctxs[loaded_mm_asid][1]
    if f.new_tlb_gen != TLB_GENERATION_INVALID and f.new_tlb_gen <= local_tlb_gen:
        return
    mm_tlb_gen = loaded_mm.tlb_gen
    if local_tlb_gen == mm_tlb_gen:
        return
    if (f.end != TLB_FLUSH_ALL and f.new_tlb_gen == local_tlb_gen + 1
            and f.new_tlb_gen == mm_tlb_gen):
        nr_invalidate = (f.end - f.start) >> f.stride_shift
        addr = f.start
        while addr < f.end:
            flush_tlb_one_user(k, cpu, addr)
            addr += 1 << f.stride_shift
        ts.events["flush_one"] += nr_invalidate
        if local:
            k.vmstat[_NR_TLB_LOCAL_FLUSH_ONE] += nr_invalidate
    else:
        flush_tlb_local(k, cpu)
        ts.events["flush_all_local"] += 1
        if local:
            k.vmstat[_NR_TLB_LOCAL_FLUSH_ALL] += 1
    ts.ctxs[loaded_mm_asid][1] = mm_tlb_gen


def should_flush_tlb(k, cpu: int, info) -> bool:
    """should_flush_tlb(): skip lazy CPUs, and CPUs running another mm unless the
    cpumask is being trimmed."""
    ts = _ts(k, cpu)
    if ts.is_lazy:
        return False
    if info.mm is None:
        return True
    if ts.loaded_mm is info.mm:
        return True
    if info.trim_cpumask:
        return True
    return False


def should_trim_cpumask(mm) -> bool:
    """should_trim_cpumask(): at most once a second (HZ jiffies) per mm."""
    now = getattr(mm.kernel, "jiffies", 0)
    nxt = getattr(mm, "next_trim_cpumask", 0)
    if now > nxt:
        mm.next_trim_cpumask = now + getattr(mm.kernel, "HZ", 1000)
        return True
    return False


def on_each_cpu_cond_mask(k, cond, cpumask, info):
    """on_each_cpu_cond_mask(): flush_tlb_func on each CPU of ``cpumask`` for which
    ``cond`` holds (all of them when cond is None): locally on the initiating CPU, by
    IPI (CALL_FUNCTION_VECTOR, counted as a TLB shootdown) on the others."""
    me = info.initiating_cpu
    for cpu in sorted(cpumask):
        if cond is not None and not cond(k, cpu, info):
            if cpu != me:
                _ts(k, cpu).events["lazy_skipped"] += 1
            continue
        if cpu != me:
            _ts(k, me).events["ipi_sent"] += 1
        flush_tlb_func(k, cpu, info)


def native_flush_tlb_multi(k, cpumask, info):
    """native_flush_tlb_multi(): IPIs to the CPUs of ``cpumask``; lazy CPUs are skipped
    (should_flush_tlb) unless page tables were freed, when they must drop their
    paging-structure caches (they switch to init_mm in flush_tlb_func)."""
    k.vmstat[_NR_TLB_REMOTE_FLUSH] += 1
    if info.freed_tables:
        on_each_cpu_cond_mask(k, None, cpumask, info)
    else:
        on_each_cpu_cond_mask(k, should_flush_tlb, cpumask, info)


def flush_tlb_multi(k, cpumask, info):
    native_flush_tlb_multi(k, cpumask, info)


def _note_downgrade(mm, start: int, end: int):
    """Record that [start, end) lost a translation or a permission in ``mm`` (for the
    debug checker), with the model function that did it."""
    mm.kernel.tlb_pending.append((mm, start, end, sys._getframe(1).f_code.co_name))


def _record_flush(k, mm, start, end, freed_tables):
    flushes = k.tlb_flushes
    flushes.append((mm, start, end, freed_tables))
    if len(flushes) > 2 * TLB_FLUSH_RECORD:
        del flushes[:TLB_FLUSH_RECORD]
    pending = k.tlb_pending
    if pending:
        if end == TLB_FLUSH_ALL:
            k.tlb_pending = [p for p in pending if p[0] is not mm]
        elif len(pending) == 1:               # the common case: a fault's own downgrade
            p = pending[0]
            if p[0] is mm and start <= p[1] and p[2] <= end:
                k.tlb_pending = []
        else:
            k.tlb_pending = [p for p in pending
                             if not (p[0] is mm and start <= p[1] and p[2] <= end)]


def flush_tlb_mm_range(mm, start: int, end: int, stride_shift: int = 12, freed_tables: bool = False):
    """flush_tlb_mm_range(): flush [start, end) of ``mm`` on every CPU that may cache it:
    the other CPUs of mm_cpumask by IPI, or only this CPU when it alone has the mm."""
    k = mm.kernel
    _record_flush(k, mm, start, end, freed_tables)
    cpu = k._current_cpu()
    new_tlb_gen = inc_mm_tlb_gen(mm)
    info = get_flush_tlb_info(k, mm, start, end, stride_shift, freed_tables, new_tlb_gen)
    mask = mm.cpumask
    if mask and (len(mask) > 1 or cpu not in mask):      # cpumask_any_but(mask, cpu)
        info.trim_cpumask = should_trim_cpumask(mm)
        flush_tlb_multi(k, mask, info)
    elif mm is _ts(k, cpu).loaded_mm:
        flush_tlb_func(k, cpu, info)


def flush_tlb_mm(mm):
    """flush_tlb_mm(): the whole address space (freed_tables: lazy CPUs too)."""
    flush_tlb_mm_range(mm, 0, TLB_FLUSH_ALL, 0, True)


def flush_tlb_range(vma, start: int, end: int):
    """flush_tlb_range(): a range of one VMA (in huge-page strides for a hugetlb VMA).
    freed_tables is always true: callers also zap normal PMDs (retract_page_tables,
    collapse), so lazy CPUs must drop their paging-structure caches too
    (arch/x86/include/asm/tlbflush.h in 6.18)."""
    from vmsim.mm.mm_types import VM_HUGETLB
    shift = 12
    if vma.vm_flags & VM_HUGETLB:
        from vmsim.mm.hugetlb import hstate_vma
        shift = 12 + hstate_vma(vma).order
    flush_tlb_mm_range(vma.vm_mm, start, end, shift, True)


def flush_tlb_page(vma, addr: int):
    """flush_tlb_page(): one page."""
    flush_tlb_mm_range(vma.vm_mm, addr, addr + 4096)


def _flush_tlb_pages(vma, addrs):
    """flush_tlb_page(vma, a) for each address in order, with the same state after
    (vmsim-only, for the compiled fault runs' ptep_clear_flush). When the mm is loaded
    on this CPU alone, up to date and not lazy, with no TLB model and no pending
    downgrade record, each such flush is a one-page local flush_tlb_func; their sum is
    applied at once. Anything else goes through flush_tlb_page one by one."""
    mm = vma.vm_mm
    k = mm.kernel
    i, n = 0, len(addrs)
    while i < n:
        cpu = k._current_cpu()
        ts = _ts(k, cpu)
        mask = mm.cpumask
        asid = ts.loaded_mm_asid
        if k.tlb is not None or k.tlb_pending or len(mask) != 1 or cpu not in mask or \
                ts.loaded_mm is not mm or ts.is_lazy or ts.ctxs[asid][1] != mm.tlb_gen:
            flush_tlb_page(vma, addrs[i])
            i += 1
            continue
        m = n - i
        flushes = k.tlb_flushes                  # _record_flush(), trimmed as it does
        rest = [(mm, a, a + 4096, False) for a in addrs[i:]]
        while rest:
            take = 2 * TLB_FLUSH_RECORD + 1 - len(flushes)
            flushes.extend(rest[:take])
            rest = rest[take:]
            if len(flushes) > 2 * TLB_FLUSH_RECORD:
                del flushes[:TLB_FLUSH_RECORD]
        mm.tlb_gen += m                          # inc_mm_tlb_gen()
        if k.pti and k.pcid and not k.invpcid:   # flush_tlb_one_user()
            invalidate_user_asid(k, cpu, asid)
        ts.events["flush_one"] += m
        k.vmstat[_NR_TLB_LOCAL_FLUSH_ONE] += m
        ts.ctxs[asid][1] = mm.tlb_gen
        return


def flush_tlb_fix_spurious_fault(vma, address, ptep):
    """flush_tlb_fix_spurious_fault(): a no-op on x86 (``do { } while (0)``): a spurious
    fault means the TLB held a stale, more restrictive entry, which the fault refilled."""


def flush_tlb_kernel_range(k, start: int, end: int):
    """flush_tlb_kernel_range(): every CPU, entry by entry up to the ceiling, else
    __flush_tlb_all (kernel mappings may be global)."""
    full = end == TLB_FLUSH_ALL or (end - start) >> 12 > tlb_single_page_flush_ceiling
    me = k._current_cpu()
    for cpu in range(k.ncpus):
        if cpu != me:
            _ts(k, me).events["ipi_sent"] += 1
            _ts(k, cpu).events["ipi_received"] += 1
            k.vmstat[_NR_TLB_REMOTE_FLUSH_RECEIVED] += 1
        if full:
            __flush_tlb_all(k, cpu)
        else:
            addr = start
            while addr < end:
                if k.tlb is not None:     # flush_tlb_one_kernel: INVLPG (global entries too)
                    k.tlb._invlpg(cpu, _kpcid(k, _ts(k, cpu).loaded_mm_asid), addr)
                addr += 4096
            if k.pti:
                _ts(k, cpu).invalidate_other = True


class arch_tlbflush_unmap_batch:
    """struct arch_tlbflush_unmap_batch: the CPUs to flush for a reclaim / migration batch."""
    __slots__ = ("cpumask",)

    def __init__(self):
        self.cpumask = set()


def arch_tlbbatch_add_pending(batch, mm, start: int, end: int):
    """arch_tlbbatch_add_pending(): remember mm's CPUs; bump its tlb_gen."""
    inc_mm_tlb_gen(mm)
    batch.cpumask |= mm.cpumask
    mm.kernel.tlb_pending[:] = [p for p in mm.kernel.tlb_pending
                                if not (p[0] is mm and start <= p[1] and p[2] <= end)]


def arch_tlbbatch_flush(k, batch):
    """arch_tlbbatch_flush(): a full flush (mm NULL, TLB_GENERATION_INVALID) on the
    batch's CPUs."""
    cpu = k._current_cpu()
    info = get_flush_tlb_info(k, None, 0, TLB_FLUSH_ALL, 0, False, TLB_GENERATION_INVALID)
    if batch.cpumask and (len(batch.cpumask) > 1 or cpu not in batch.cpumask):
        flush_tlb_multi(k, batch.cpumask, info)
    elif cpu in batch.cpumask:
        flush_tlb_func(k, cpu, info)
    batch.cpumask = set()


def _vmstat_items():
    from vmsim.mm import vmstat as V
    return V.NR_TLB_REMOTE_FLUSH, V.NR_TLB_REMOTE_FLUSH_RECEIVED, V.NR_TLB_LOCAL_FLUSH_ALL, V.NR_TLB_LOCAL_FLUSH_ONE


(_NR_TLB_REMOTE_FLUSH, _NR_TLB_REMOTE_FLUSH_RECEIVED, _NR_TLB_LOCAL_FLUSH_ALL,
 _NR_TLB_LOCAL_FLUSH_ONE) = _vmstat_items()
