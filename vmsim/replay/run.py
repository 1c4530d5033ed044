"""Replay a trace through the model: one Machine, the trace's processes, p.access per step.

A text trace (or a native one without events) starts from a process whose spawn
layout is cleared (munmap of the whole user range) and replaced by the areas inferred
from the trace (vmsim.replay.infer): an ELF object's segments as private mappings of a
file (under ELF_DIR, in the page cache), the heap grown by brk() as the trace reaches
it, the stack growing down, the rest anonymous private mappings; a native trace with
events starts from spawn() and applies its mmap / munmap / mprotect / brk / fork / exit
/ switch events in order. The accesses run in steps of ``step`` through Process.access
(the compiled chunk loop); a signal is counted and the replay goes on after the access
that got it (as a handler that skips the instruction would). Faults are classified by
the paths the kernel model took (the function-graph tracer, counting only).
"""
import bisect
import os
import time
from collections import Counter

import numpy as np

import vmsim
import vmsim.trace
from vmsim.replay import infer
from vmsim.replay import readers
from vmsim.replay.readers import open_trace, TraceError

KIND_NAMES = ("read", "write", "exec")
STEP = 1 << 16
# A trace of up to this many accesses (17 bytes each) is kept in memory between the
# scan and the replay; a longer one is spooled to a temporary file (_Spool).
KEEP = 1 << 21


class ReplayConfig:
    """The knobs of one replay (the CLI's options; a sweep's grid point). A value the
    machine cannot take is a ValueError naming the setting (the CLI prints it)."""
    FIELDS = ("thp", "tlb", "cpus", "pcid", "memory", "store_value", "gap", "paging_levels")
    # The values a setting takes: thp as /sys/kernel/mm/transparent_hugepage/enabled,
    # pcid on or off; integers within these bounds (cpus up to x86-64's NR_CPUS limit,
    # CONFIG_NR_CPUS_RANGE_END with MAXSMP; a store writes one byte; 4- or 5-level paging).
    CHOICES = {"thp": ("always", "madvise", "never"), "pcid": ("on", "off")}
    RANGES = {"cpus": (1, 8192), "store_value": (0, 255), "gap": (4096, 1 << 47),
              "paging_levels": (4, 5)}

    def __init__(self, thp=None, tlb=None, cpus=1, pcid=None, memory="16G", store_value=0,
                 gap=infer.GAP, paging_levels=4, skip_bad=False, fault_paths=True,
                 step=STEP, checker=None):
        self.thp = self.tlb = self.pcid = None
        for key, value in (("thp", thp), ("tlb", tlb), ("cpus", cpus), ("pcid", pcid),
                           ("memory", memory), ("store_value", store_value), ("gap", gap),
                           ("paging_levels", paging_levels)):
            self.set(key, value)
        self.skip_bad, self.fault_paths, self.step, self.checker = skip_bad, fault_paths, step, checker

    def set(self, key, value):
        key = key.replace("-", "_")
        if key not in self.FIELDS:
            raise ValueError(f"unknown setting {key!r}: one of {', '.join(self.FIELDS)}")
        if key in self.RANGES:
            try:
                value = int(value, 0) if isinstance(value, str) else int(value)
            except ValueError:
                raise ValueError(f"{key}: {value!r} is not an integer") from None
            lo, hi = self.RANGES[key]
            if key == "paging_levels" and value not in (4, 5):
                raise ValueError(f"paging_levels: {value} (4 or 5)")
            if not lo <= value <= hi:
                raise ValueError(f"{key}: {value} is out of range ({lo} to {hi})")
        elif key in self.CHOICES and value is not None and value not in self.CHOICES[key]:
            raise ValueError(f"{key}: {value!r} is not one of {', '.join(self.CHOICES[key])}")
        elif key == "memory":
            from vmsim.api import parse_size
            parse_size(value)                         # a bad size says so before any replay
        elif key == "tlb" and value is not None and model_support()["tlb"]:
            from vmsim.arch.x86 import tlb as _tlb
            if value != "host":
                _tlb.geometry(value)                  # an unknown preset says so here
        setattr(self, key, value)

    def label(self):
        parts = [f"{f}={getattr(self, f)}" for f in ("thp", "tlb", "pcid") if getattr(self, f)]
        if self.cpus != 1:
            parts.append(f"cpus={self.cpus}")
        return ",".join(parts) or "default"


def model_support():
    """Which optional model parts this build has: {'tlb': bool, 'thp': bool}."""
    import importlib.util
    from vmsim.mm import huge_memory
    return {"tlb": importlib.util.find_spec("vmsim.arch.x86.tlb") is not None,
            "thp": hasattr(huge_memory, "do_huge_pmd_anonymous_page")}


def config_notes(cfg):
    """What an option asks for that this build does not model: said, not ignored."""
    have = model_support()
    notes = []
    if cfg.tlb and not have["tlb"]:
        notes.append(f"--tlb {cfg.tlb}: the TLB model is not in this build yet; every "
                     "translation is a page walk and there are no TLB statistics")
    if cfg.pcid and not have["tlb"]:
        notes.append(f"--pcid {cfg.pcid}: PCIDs only matter with the TLB model, which is not "
                     "in this build yet")
    if cfg.thp and cfg.thp != "never" and not have["thp"]:
        notes.append(f"--thp {cfg.thp}: the sysfs knob is set, but huge-page faults are not "
                     "modelled in this build yet: every fault takes the 4 KiB path")
    if cfg.cpus > 1:
        notes.append(f"--cpus {cfg.cpus}: the machine has {cfg.cpus} CPUs; accesses run on "
                     "the CPU their cpu column (or a switch event) names, else on CPU 0")
    return notes


def _fault_kind(f):
    """The report's fault kind of a traced fault (vmsim.trace.Fault)."""
    paths = f.paths
    if f.signal is not None:
        return "signal"
    if "hugetlb_fault" in paths:
        return "hugetlb"
    # A THP fault maps a huge PMD (map_anon_folio_pmd; do_huge_zero_wp_pmd's too) or
    # the huge zero folio (set_huge_zero_folio); create_huge_pmd's VM_FAULT_FALLBACK
    # (a VMA too small or misaligned for 2 MiB) goes on to do_anonymous_page: 4 KiB.
    if "map_anon_folio_pmd" in paths:
        return "thp"
    if "set_huge_zero_folio" in paths:
        return "thp-zero-page"
    if "wp_page_copy" in paths:
        return "cow"
    if "wp_page_reuse" in paths or "do_wp_page" in paths:
        return "wp-reuse"
    if paths & {"do_fault", "do_read_fault", "do_cow_fault", "do_shared_fault", "shmem_fault"}:
        return "file"
    if "do_anonymous_page" in paths:
        return "anonymous" if f.error_code & 2 else "zero-page"
    if "do_swap_page" in paths:
        return "swap"
    return "other"


def _map_areas(p, areas, memory):
    """Map the areas inferred from a text trace into the fresh process ``p`` (its own
    mappings gone first); the heap is brk's: its _Brk is returned (or None). A mapping
    the machine refuses names the area and the machine's size."""
    heap = None
    what = "the ELF objects' files"
    try:
        p.munmap(0, p.mm.task_size if hasattr(p.mm, "task_size") else 0x7ffffffff000)
        fds = _elf_files(p, areas)
        for a in areas:
            if a.name == "heap":
                # As load_elf_binary sets mm->start_brk = mm->brk after the bss;
                # the replay grows the heap with brk() (_grow_brk).
                heap = _Brk(a)
                p.mm.start_brk = p.mm.brk = a.start
                continue
            what = f"{a.name} {a.start:#x}-{a.end:#x}"
            prot = vmsim.PROT_READ | (vmsim.PROT_WRITE if "w" in a.prot else 0) | \
                (vmsim.PROT_EXEC if "x" in a.prot else 0)
            flags = vmsim.MAP_PRIVATE | vmsim.MAP_FIXED
            start, length = a.start, a.end - a.start
            if a.file:
                # An ELF segment, as ld.so maps it (_dl_map_segments): MAP_PRIVATE of its
                # file, so faults take do_read_fault (fault-around) and do_cow_fault /
                # wp_page_copy as the program's did.
                p.mmap(start, length, prot, flags, fds[a.file], a.offset)
                continue
            flags |= vmsim.MAP_ANONYMOUS
            if a.name == "stack":
                # Its top page only: the model's expand_stack grows it, as Linux grew the
                # program's stack.
                flags |= vmsim.MAP_GROWSDOWN
                start, length = a.end - 4096, 4096
            p.mmap(start, length, prot, flags)
        for fd in fds.values():
            p.close(fd)
    except OSError as e:
        # Say which inferred area the machine could not map (overcommit's
        # __vm_enough_memory on a small --memory), not a bare errno.
        raise RuntimeError(f"mapping the inferred {what} ({memory} machine, "
                           f"--memory): {e.strerror or e}") from None
    return heap


class Replay:
    """One replay in progress; :meth:`run` returns the result dict (see report.py)."""

    def __init__(self, path, cfg=None, progress=None):
        self.path = path
        self.cfg = cfg or ReplayConfig()
        self.progress = progress
        self.reader = open_trace(path, skip_bad=self.cfg.skip_bad, cpus=self.cfg.cpus)
        self.chunks = None          # the trace's chunks, when the scan kept them
        self.result = None

    def _machine(self):
        cfg = self.cfg
        kw = {}
        if model_support()["tlb"] and (cfg.tlb or cfg.pcid):
            kw = {"tlb": cfg.tlb or None, "pcid": cfg.pcid != "off"}
        m = vmsim.Machine(memory=cfg.memory, cpus=cfg.cpus, paging_levels=cfg.paging_levels,
                          debug_vm=cfg.checker, **kw)
        if cfg.thp:
            m.write_file("/sys/kernel/mm/transparent_hugepage/enabled", cfg.thp)
        return m

    def _infer(self):
        """The inferred areas, and whether the trace has events. A native trace with
        events needs none (it is replayed from spawn() through its events): only its
        events are read first. Else the trace is scanned for its pages, and what the
        scan read is kept for the replay (_Spool: in memory, past KEEP accesses in a
        temporary file), so the trace is read and parsed once."""
        if self.reader.format in ("npz", "parquet"):
            from vmsim.replay import native
            events, rows = native.has_events(self.reader)
            if events:
                self.reader.total = rows       # for a progress bar of the replay
                return [], True
        ps = infer.PageSet()
        r = open_trace(self.path, skip_bad=self.cfg.skip_bad, fmt=self.reader.format,
                       cpus=self.cfg.cpus)
        events = False
        kept = _Spool()
        try:
            for c in r:
                ps.add(c.addr, c.kind, c.size)
                events = events or bool(c.events)
                if kept is not None:
                    try:
                        kept.add(c)
                    except OSError:
                        # No room for the spool ($TMPDIR full): the replay reads the
                        # trace again.
                        kept.close()
                        kept = None
                if self.progress:
                    self.progress("scan", r.accesses, r)
        except BaseException:
            if kept is not None:
                kept.close()
            raise
        if kept is not None:
            self.reader, self.chunks = r, kept
        self.reader.total = r.accesses     # for a progress bar of the replay
        pages, bits = ps.result()
        return infer.infer_areas(pages, bits, self.cfg.gap, ps.first_touch(), ps.entry), events

    def run(self):
        cfg = self.cfg
        t0 = time.perf_counter()
        areas, has_events = self._infer()
        m = self._machine()
        p = m.spawn()
        tasks = _Tasks(self.path, m, p)
        heap = None
        if not has_events:
            heap = _map_areas(p, areas, cfg.memory)
        starts = [a.start for a in areas] if not has_events else []
        area_faults = Counter()
        stack_growth = [0]
        vm0 = _vmstat(m)
        kinds = np.zeros(3, np.int64)
        nbytes = 0
        split = 0
        signals = Counter()
        faults = Counter()
        series = {"accesses": [], "rss_kb": [], "pgtables": [], "faults": [], "t": [],
                  "tlb_misses": []}
        tracer = None
        if cfg.fault_paths:
            tracer = vmsim.trace.function_graph(m, record=False)
            tracer.start()
        done = 0
        series["accesses"].append(0)
        series["rss_kb"].append(_rss(p))
        series["pgtables"].append(_pgtables(m))
        series["faults"].append(0)
        series["t"].append(0.0)
        if getattr(m.k, "tlb", None) is not None:
            series["tlb_misses"].append(_tlb_totals(m)["misses"])   # one sample per access count
        t1 = time.perf_counter()
        try:
            for chunk in (self.chunks if self.chunks is not None else self.reader):
                n = len(chunk.addr)
                evs = list(chunk.events)
                pos = 0
                while pos < n or evs:
                    upto = n
                    # Events after the trace's last access (in its last chunk) take
                    # effect at its end.
                    while evs and (_at(chunk, evs[0]) <= pos or pos >= n):
                        self._event(tasks, evs.pop(0))
                    if evs:
                        upto = min(n, _at(chunk, evs[0]))
                    # Finer samples early: a short trace still plots as a curve.
                    step = cfg.step if done + pos >= 1 << 20 else max(cfg.step // 8, 1)
                    upto = min(upto, pos + step)
                    if upto <= pos and not evs:
                        break
                    if upto > pos:
                        if heap is not None:
                            heap.grow(p, chunk, pos, upto)
                        self._step(tasks, chunk, pos, upto, signals)
                        pos = upto
                    if tracer is not None:
                        for f in tracer.faults:
                            if not f.exec:
                                faults[_fault_kind(f)] += 1
                                if "expand_stack_locked" in f.paths or "expand_stack" in f.paths:
                                    stack_growth[0] += 1
                                if starts:
                                    i = bisect.bisect_right(starts, f.address) - 1
                                    if i >= 0 and f.address < areas[i].end:
                                        area_faults[i] += 1
                        tracer.faults.clear()
                    series["accesses"].append(done + pos)
                    series["rss_kb"].append(tasks.rss_kb())
                    series["pgtables"].append(_pgtables(m))
                    series["faults"].append(sum(faults.values()) if tracer else _pgfault(m) - vm0.get("pgfault", 0))
                    series["t"].append(time.perf_counter() - t1)
                    if getattr(m.k, "tlb", None) is not None:
                        series["tlb_misses"].append(_tlb_totals(m)["misses"])
                    if self.progress:
                        self.progress("replay", done + pos, self.reader)
                k = chunk.kind
                kinds += np.bincount(k, minlength=3)[:3]
                s = chunk.size
                nbytes += int(s.sum())
                split += int(np.count_nonzero(((chunk.addr & 0xFFF) + s) > 4096))
                done += n
        finally:
            if tracer is not None:
                tracer.stop()
            if self.chunks is not None:
                self.chunks.close()
        t2 = time.perf_counter()
        vm1 = _vmstat(m)
        proc_list = tasks.all()
        ru = [q.getrusage() for q in proc_list]
        self.result = {
            "trace": os.path.abspath(self.path),
            "format": self.reader.format,
            "config": {f: getattr(cfg, f) for f in ReplayConfig.FIELDS},
            "label": cfg.label(),
            "notes": config_notes(cfg),
            "model": model_support(),
            "inferred_areas": [] if has_events else [a._asdict() for a in areas],
            "brk": heap.result(p) if heap is not None else None,
            "faults_by_area": [area_faults[i] for i in range(len(starts))] if tracer else None,
            "lines": self.reader.lines,
            "bad_lines": self.reader.bad_lines,
            "accesses": {"total": done, **{KIND_NAMES[i]: int(kinds[i]) for i in range(3)},
                         "bytes": nbytes, "page_straddling": split,
                         "modify": getattr(self.reader, "modifies", 0)},
            "faults": {"minflt": sum(r.ru_minflt for r in ru), "majflt": sum(r.ru_majflt for r in ru),
                       "by_kind": dict(faults) if tracer else None,
                       "stack_growth": stack_growth[0] if tracer else None},
            "signals": dict(signals),
            "tasks": {"processes": len({q.task.tgid for q in proc_list}),
                      "threads": len(proc_list), "context_switches": tasks.switches,
                      "migrations": tasks.migrations},
            "walks": (_tlb_totals(m)["walks"] if getattr(m.k, "tlb", None) is not None
                      else sum(getattr(q, "_translations", 0) for q in proc_list)),
            "tlb": _tlb_totals(m) if getattr(m.k, "tlb", None) is not None else None,
            "tlb_flushes": _tlb_flushes(m),
            "rss_kb": series["rss_kb"][-1] if series["rss_kb"] else 0,
            "maxrss_kb": max(series["rss_kb"], default=0),
            "pgtables": _pgtables(m),
            "series": series,
            "vmstat_delta": {k: vm1[k] - vm0.get(k, 0) for k in vm1 if vm1[k] != vm0.get(k, 0)},
            "seconds": {"scan": None if has_events else t1 - t0, "replay": t2 - t1},
            "accesses_per_s": done / (t2 - t1) if t2 > t1 else 0.0,
        }
        self.machine, self.process, self.tasks = m, p, tasks
        return self.result

    def _step(self, tasks, chunk, lo, hi, signals):
        """Run accesses lo..hi of ``chunk``, each by the task and on the CPU its pid /
        tid / cpu columns name (without them: the task the last switch put on)."""
        cols = [c[lo:hi] for c in (chunk.pid, chunk.tid, chunk.cpu) if c is not None]
        if not cols:
            self._run(tasks.current, chunk, lo, hi, signals)
            return
        cut = np.zeros(hi - lo - 1, bool) if hi - lo > 1 else np.zeros(0, bool)
        for c in cols:
            cut |= c[1:] != c[:-1]
        bounds = [lo] + (lo + 1 + np.nonzero(cut)[0]).tolist() + [hi]
        for a, b in zip(bounds[:-1], bounds[1:]):
            pid = None if chunk.pid is None else int(chunk.pid[a])
            tid = None if chunk.tid is None else int(chunk.tid[a])
            cpu = None if chunk.cpu is None else int(chunk.cpu[a])
            q = tasks.get(pid, tid, f"access {_row(chunk, a)}")
            tasks.run_on(q, cpu, f"access {_row(chunk, a)}")
            self._run(q, chunk, a, b, signals)

    def _run(self, q, chunk, lo, hi, signals):
        if q.task.mm is None:
            raise TraceError(self.path, 0, f"access {_row(chunk, lo)}: its task (pid "
                                           f"{q.task.pid} in the model) has exited")
        while lo < hi:
            try:
                q.access(chunk.addr[lo:hi], chunk.kind[lo:hi], chunk.size[lo:hi],
                         value=self.cfg.store_value)
                return
            except vmsim.SignalDelivered as e:
                signals[f"{_signame(e.signo)} at access {_row(chunk, lo + e.index)}"
                        if len(signals) < 20 else _signame(e.signo)] += 1
                lo += e.index + 1
                if q.task.mm is None:
                    return

    def _event(self, tasks, ev):
        what = f"event {ev.op} at access {ev.at}"
        q = tasks.get(ev.pid, None, what, thread_ok=True)
        try:
            if ev.op == "mmap":
                q.mmap(ev.addr, ev.length, ev.prot, ev.flags | (vmsim.MAP_FIXED if ev.addr else 0))
            elif ev.op == "munmap":
                q.munmap(ev.addr, ev.length)
            elif ev.op == "mprotect":
                q.mprotect(ev.addr, ev.length, ev.prot)
            elif ev.op == "brk":
                q.brk(ev.addr)
            elif ev.op == "fork":
                tasks.add(ev.arg, q.fork(), what)
            elif ev.op == "exit":
                if q.task.tgid != q.task.pid:
                    q.exit_thread(ev.arg)           # a thread: exit(2)
                else:
                    q.exit(ev.arg)                  # exit_group(2)
            elif ev.op == "switch":
                # On CPU ev.cpu (default: the next task's own), task ev.arg runs now
                # (0: the CPU goes idle); it runs the accesses no pid/tid column assigns.
                nxt = tasks.get(ev.arg, None, what, thread_ok=True) if ev.arg else None
                if nxt is None:
                    tasks.idle(ev.cpu if ev.cpu >= 0 else q.task.cpu, what)
                else:
                    tasks.run_on(nxt, ev.cpu if ev.cpu >= 0 else None, what)
                    tasks.current = nxt
        except OSError as e:
            raise TraceError(self.path, 0, f"{what}: {ev.op} failed: {e}") from None


class _Spool:
    """The chunks a scan read, for the replay to take again in the same order and
    sizes: in memory up to KEEP accesses; past that every chunk's columns go to a
    temporary file (unlinked from the start: nothing is left behind), read back as
    raw arrays, so the replay neither decompresses nor parses the trace again."""
    FIELDS = ("addr", "kind", "size", "pid", "tid", "cpu", "rows")

    def __init__(self):
        self.mem = []
        self.n = 0
        self.file = None
        self.index = []            # per chunk: first, its arrays' (field, dtype, n), events

    def add(self, chunk):
        if self.file is None:
            self.mem.append(chunk)
            self.n += len(chunk.addr)
            if self.n <= KEEP:
                return
            import tempfile
            self.file = tempfile.TemporaryFile(prefix="vmsim-replay-")
            mem, self.mem = self.mem, []
            for c in mem:
                self._write(c)
            return
        self._write(chunk)

    def _write(self, c):
        cols = []
        for name in self.FIELDS:
            a = getattr(c, name)
            if a is not None:
                a = np.ascontiguousarray(a)
                self.file.write(memoryview(a).cast("B"))
                cols.append((name, a.dtype, len(a)))
        self.index.append((c.first, cols, c.events))

    def __iter__(self):
        if self.file is None:
            yield from self.mem
            return
        self.file.flush()
        self.file.seek(0)
        for first, cols, events in self.index:
            got = {}
            for name, dt, n in cols:
                a = np.empty(n, dt)
                if self.file.readinto(memoryview(a).cast("B")) != a.nbytes:
                    raise OSError("the replay's spool file is short")
                got[name] = a
            yield readers.Chunk(first, events=events, **{
                f: got.get(f) for f in self.FIELDS})

    def close(self):
        self.mem = []
        if self.file is not None:
            self.file.close()


def _row(chunk, i):
    """The trace row of access ``i`` of ``chunk`` (its index in the trace, unless a
    native reader skipped bad rows before it)."""
    return chunk.first + i if chunk.rows is None else int(chunk.rows[i])


def _at(chunk, ev):
    """Where in ``chunk`` event ``ev`` takes effect: before its access ``at`` (a row of
    the trace; a skipped row's events go before the next access)."""
    if chunk.rows is None:
        return ev.at - chunk.first
    return int(np.searchsorted(chunk.rows, ev.at))


class _Tasks:
    """The trace's tasks: its pid or tid -> Process (a thread is a Process named by its
    TID). The first pid met (an event's or an access's) is the spawned process, a fork
    event adds the child; a tid first met in an access is a new thread of its pid's
    process (clone_thread: a trace records no clone). A task runs on the CPU its
    access's cpu column names: Machine.schedule there (switch_mm_irqs_off: with the
    TLB model, each CPU's own TLB), counted as a context switch, and as a migration
    when it moves the task."""

    def __init__(self, path, m, p):
        self.path, self.m, self.p = path, m, p
        self.first = None
        self.by_id = {}
        self.current = p
        self.switches = 0
        self.migrations = 0

    def _bad(self, what, problem):
        return TraceError(self.path, 0, f"{what}: {problem}")

    def add(self, tid, q, what):
        if tid in self.by_id:
            raise self._bad(what, f"pid {tid} already names a task")
        self.by_id[tid] = q

    def get(self, pid, tid, what, thread_ok=False):
        """The task of an access's pid and tid (either may be None), or with
        ``thread_ok`` (an event's pid) of a pid or tid."""
        if pid is None:
            pid = self.first if self.first is not None else tid
        if self.first is None:
            self.first = pid
            self.by_id[pid] = self.p
        q = self.by_id.get(pid)
        if q is None:
            raise self._bad(what, f"pid {pid} before a fork event created it")
        if q.task.tgid != q.task.pid and not thread_ok:
            raise self._bad(what, f"pid {pid} is a thread (tid) of another process")
        if tid is None or tid == pid:
            return q
        th = self.by_id.get(tid)
        if th is None:
            if q.task.mm is None:
                raise self._bad(what, f"tid {tid} of pid {pid}, which has exited")
            th = self.by_id[tid] = q.clone_thread()
        elif th.task.tgid != q.task.tgid:
            raise self._bad(what, f"tid {tid} is not a thread of pid {pid}")
        return th

    def run_on(self, q, cpu, what):
        k = self.m.k
        if cpu is None:
            cpu = q.task.cpu
        elif not 0 <= cpu < k.ncpus:
            raise self._bad(what, f"cpu {cpu}, but the machine has {k.ncpus} CPU"
                                  f"{'s' if k.ncpus != 1 else ''} (--cpus)")
        if q.task.mm is None or k.cpus[cpu].curr is q.task:
            return
        self.switches += 1
        self.migrations += cpu != q.task.cpu
        self.m.schedule(q, cpu)

    def idle(self, cpu, what):
        k = self.m.k
        if not 0 <= cpu < k.ncpus:
            raise self._bad(what, f"cpu {cpu}, but the machine has {k.ncpus} CPUs (--cpus)")
        if k.cpus[cpu].curr is not None:
            self.switches += 1
        self.m.schedule(None, cpu)

    def all(self):
        out = [self.p]
        for q in self.by_id.values():
            if all(q is not r for r in out):
                out.append(q)
        return out

    def rss_kb(self):
        """RSS of the live mms (threads share theirs)."""
        seen = set()
        tot = 0
        for q in self.all():
            mm = q.task.mm
            if mm is not None and id(mm) not in seen:
                seen.add(id(mm))
                tot += _rss(q)
        return tot


# Where the replay puts the files of the ELF objects it inferred (vmsim's / is ext4).
ELF_DIR = "/tmp/vmsim-replay"


def _elf_files(p, areas):
    """A file per inferred ELF object (Area.file), as long as its areas reach, its
    pages in the page cache (POSIX_FADV_WILLNEED: force_page_cache_readahead), as a
    program's libraries are on a machine that ran it before: its faults find them
    there (minor faults, fault-around), none is major. The file's name -> an fd."""
    size = {}
    for a in areas:
        if a.file:
            size[a.file] = max(size.get(a.file, 0), a.offset + a.end - a.start)
    fds = {}
    if size:
        p.mkdir(ELF_DIR)
    for name, n in size.items():
        fd = fds[name] = p.open(f"{ELF_DIR}/{name}", vmsim.O_RDWR | vmsim.O_CREAT)
        p.ftruncate(fd, n)
        p.posix_fadvise(fd, 0, n, vmsim.POSIX_FADV_WILLNEED)
    return fds


class _Brk:
    """The inferred heap of a text trace, grown by brk() as the program's malloc grew
    it: before each step, the break moves up to the highest heap byte the step
    touches (page-aligned by sys_brk). Should brk fail (something mapped in the way),
    the rest of the area is mapped anonymous instead, and said."""

    def __init__(self, area):
        self.area = area
        self.top = area.start
        self.calls = 0
        self.failed = None

    def grow(self, p, chunk, lo, hi):
        if self.failed is not None:
            return
        a = chunk.addr[lo:hi]
        inside = (a >= self.area.start) & (a < self.area.end)
        if not inside.any():
            return
        top = int((a[inside] + np.maximum(chunk.size[lo:hi][inside], 1)).max())
        if top <= self.top:
            return
        self.calls += 1
        if p.brk(top) != top:
            self.failed = self.top
            start = (self.top + 4095) & ~4095
            if start < self.area.end:
                p.mmap(start, self.area.end - start, vmsim.PROT_READ | vmsim.PROT_WRITE,
                       vmsim.MAP_PRIVATE | vmsim.MAP_ANONYMOUS | vmsim.MAP_FIXED)
            return
        self.top = top

    def result(self, p):
        mm = p.task.mm
        return {"start_brk": self.area.start, "brk": mm.brk if mm is not None else self.top,
                "calls": self.calls, "failed_at": self.failed}


def _tlb_totals(m):
    """The machine's TLB counters summed over its CPUs (Machine.tlb_stats)."""
    tot = Counter()
    for c in m.tlb_stats():
        for k, v in c.items():
            if k in ("cpu", "loaded_mm_asid", "is_lazy"):
                continue
            if isinstance(v, dict):
                for kk, vv in v.items():
                    tot[f"{k} {kk}" if k != "hits" else f"hits {kk}"] += vv
            elif isinstance(v, (int, np.integer)):
                tot[k] += int(v)
    out = dict(tot)
    out.setdefault("misses", 0)
    out.setdefault("walks", 0)
    return out


# The kernel's TLB flush decisions (arch/x86/mm/tlb.c, counted per CPU in its
# tlbstate), made with or without a model of the TLBs themselves.
FLUSH_EVENTS = ("flush_one", "flush_all_local", "flush_global", "flush_on_switch",
                "noflush_switch", "asid_switch", "asid_new", "user_pcid_flush", "ipi_sent",
                "ipi_received", "lazy_skipped", "wrong_cpu_trimmed")


def _tlb_flushes(m):
    """The machine's TLB flush and shootdown events summed over its CPUs."""
    tot = dict.fromkeys(FLUSH_EVENTS, 0)
    for c in m.tlb_stats():
        for k in FLUSH_EVENTS:
            tot[k] += int(c.get(k, 0))
    return tot


def _signame(signo):
    import signal
    try:
        return signal.Signals(signo).name
    except ValueError:
        return str(signo)


def _vmstat(m):
    out = {}
    for line in m.read_file("/proc/vmstat").splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v)
        except ValueError:
            pass
    return out


# Per step a replay samples two counters; /proc/vmstat (vmstat_show) prints them as the
# kernel's counter array holds them, so they are read there, not from its whole text.
def _pgfault(m):
    """pgfault, as /proc/vmstat shows it."""
    from vmsim.mm import vmstat
    return int(m.k.vmstat[vmstat.PGFAULT])


def _rss(q):
    mm = q.task.mm
    if mm is None:
        return 0
    from vmsim.views import process_record
    return process_record(q)["rss"] * 4


def _pgtables(m):
    """nr_page_table_pages (vmstat): the machine's page-table pages."""
    from vmsim.mm import vmstat
    return int(m.k.vmstat[vmstat.NR_PAGE_TABLE_PAGES])


def replay(path, cfg=None, progress=None):
    """Replay the trace at ``path``; the result dict."""
    return Replay(path, cfg, progress).run()
