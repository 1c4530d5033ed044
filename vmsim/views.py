"""Views of a machine for people and programs: records, HTML tables, step recordings.

Nothing here runs in the model's paths: these functions read a Machine after the fact
(reprs, ``_repr_html_`` for Jupyter, the ``--json`` documents of docs/json.md, the
``--plot`` figure). :class:`StepRecorder` wraps the Process API only while a scenario
runs under ``vmsim run --json/--plot``.
"""
import functools
import html
import inspect

SCHEMA_VERSION = 1
PAGE = 4096


# --- records (plain dicts, the JSON schema's building blocks) ----------------------------
def _perms(flags):
    from vmsim.mm.mm_types import VM_READ, VM_WRITE, VM_EXEC, VM_MAYSHARE
    return ("r" if flags & VM_READ else "-") + ("w" if flags & VM_WRITE else "-") + \
        ("x" if flags & VM_EXEC else "-") + ("s" if flags & VM_MAYSHARE else "p")


def vma_record(vma) -> dict:
    """A VMA as /proc/PID/maps and smaps' VmFlags show it."""
    from vmsim.fs.proc.task_mmu import get_vma_name, show_smap_vma_flags
    return {"start": vma.vm_start, "end": vma.vm_end, "perms": _perms(vma.vm_flags),
            "pgoff": vma.vm_pgoff if vma.vm_file is not None else 0,
            "name": get_vma_name(vma) or "",
            "vm_flags": show_smap_vma_flags(vma).split()[1:]}


def process_state(p) -> str:
    t = p.task
    if t.mm is None:
        return {"Z": "zombie", "X": "dead"}.get(t.state, "exited")
    return "running"


def process_record(p) -> dict:
    """A process's counters: getrusage faults, RSS by kind and page-table pages (pages)."""
    from vmsim.mm.mm_types import MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, MM_SWAPENTS
    t = p.task
    mm = t.mm
    rec = {"pid": p.pid, "state": process_state(p), "minflt": t.min_flt, "majflt": t.maj_flt}
    if mm is None:
        rec.update(rss=0, rss_anon=0, rss_file=0, rss_shmem=0, swapents=0, hiwater_rss=0,
                   pgtables=0, vmas=0)
        return rec
    rs = mm.rss_stat
    rss = rs[MM_ANONPAGES] + rs[MM_FILEPAGES] + rs[MM_SHMEMPAGES]
    rec.update(rss=rss, rss_anon=rs[MM_ANONPAGES], rss_file=rs[MM_FILEPAGES],
               rss_shmem=rs[MM_SHMEMPAGES], swapents=rs[MM_SWAPENTS],
               hiwater_rss=max(mm.hiwater_rss, rss), pgtables=mm.pgtables_bytes // PAGE,
               vmas=len(mm.mm_mt))
    return rec


PROCESS_COLUMNS = ["pid", "state", "minflt", "majflt", "RssAnon", "RssFile", "RssShmem", "VmHWM"]


def process_rows(machine, killed=None):
    """Rows of PROCESS_COLUMNS for a summary table (vmsim run, vmsim demo). ``killed``:
    {pid: signal name} of processes the scenario died with."""
    killed = killed or {}
    rows = []
    for pid, p in sorted(machine.processes.items()):
        r = process_record(p)
        if r["state"] != "running":
            rows.append([pid, "exited", r["minflt"], r["majflt"], "-", "-", "-", "-"])
            continue
        state = f"killed by {killed[pid]}" if pid in killed else "running"
        rows.append([pid, state, r["minflt"], r["majflt"]] +
                    [f"{r[k] * 4} kB" for k in ("rss_anon", "rss_file", "rss_shmem", "hiwater_rss")])
    return rows


def process_vmas(p) -> list:
    mm = p.task.mm
    return [] if mm is None else [vma_record(v) for v in mm.mm_mt]


def machine_record(m) -> dict:
    k = m.k
    return {"memory": k.memory_bytes, "cpus": k.ncpus, "paging_levels": k.paging_levels,
            "kernel": k.release}


# --- HTML tables (Jupyter) ------------------------------------------------------------------
def html_table(columns, rows, caption=None) -> str:
    e = html.escape
    out = ["<table>"]
    if caption:
        out.append(f"<caption style='text-align:left'>{e(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{e(str(c))}</th>" for c in columns) + "</tr></thead><tbody>")
    for r in rows:
        out.append("<tr>" + "".join(f"<td><code>{e(str(c))}</code></td>" for c in r) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def maps_html(p) -> str:
    """A process's /proc/PID/maps as a table, with its VmFlags and size."""
    rec = process_record(p)
    cap = (f"pid {p.pid} ({rec['state']}): RSS {rec['rss'] * 4} kB, "
           f"{rec['pgtables']} page-table pages, minflt {rec['minflt']}, majflt {rec['majflt']}")
    rows = [[f"{v['start']:08x}-{v['end']:08x}", v["perms"], f"{v['pgoff'] << 12:08x}",
             f"{(v['end'] - v['start']) >> 10} kB", v["name"], " ".join(v["vm_flags"])]
            for v in process_vmas(p)]
    return html_table(["range", "perms", "offset", "size", "name", "VmFlags"], rows, cap)


def machine_html(m) -> str:
    rows = []
    for pid, p in sorted(m.processes.items()):
        r = process_record(p)
        rows.append([pid, r["state"], r["minflt"], r["majflt"], f"{r['rss_anon'] * 4} kB",
                     f"{r['rss_file'] * 4} kB", f"{r['rss_shmem'] * 4} kB", r["pgtables"], r["vmas"]])
    return html_table(["pid", "state", "minflt", "majflt", "RssAnon", "RssFile", "RssShmem",
                       "page tables", "VMAs"], rows, repr(m))


# --- a page-table walk as an object ---------------------------------------------------------
class PageWalk:
    """The entries a hardware walk of ``addr`` reads in a process's page tables."""

    def __init__(self, process, addr):
        from vmsim.arch.x86.pgtable_types import decode_flags, paging_mode
        from vmsim.walk import walk_entries, check_address
        k = process.machine.k
        mm = process.task.mm
        if mm is None:
            raise ProcessLookupError(f"process {process.pid} has exited: it has no page tables")
        self.pid = process.pid
        self.address = addr
        self.mode = paging_mode(k.paging_levels).name
        problem = check_address(addr, paging_mode(k.paging_levels))
        if problem:
            raise ValueError(f"{addr:#x}: {problem}")
        steps, self.phys = walk_entries(k, mm, addr)
        self.levels = []
        for lvl, ephys, e in steps:
            e &= (1 << 64) - 1            # the pool stores int64: bit 63 is NX
            leaf = lvl.shift == 12 or bool(lvl.large and e & 0x80)
            self.levels.append({"level": lvl.kname, "intel": lvl.intel,
                                "index": (addr >> lvl.shift) & ((1 << lvl.bits) - 1),
                                "entry_address": ephys, "entry": e,
                                "flags": decode_flags(e, leaf=leaf) if e else "none"})

    def record(self) -> dict:
        return {"pid": self.pid, "address": self.address, "mode": self.mode,
                "levels": self.levels, "phys": self.phys}

    def __repr__(self):
        where = f"{self.phys:#x}" if self.phys is not None else "not mapped"
        lv = ", ".join(f"{x['level']}[{x['index']}]={x['entry']:#x}" for x in self.levels)
        return f"<PageWalk pid={self.pid} {self.address:#x} -> {where}: {lv}>"

    def _repr_html_(self):
        rows = [[f"{x['level'].upper()} ({x['intel']})", x["index"], f"{x['entry_address']:#x}",
                 f"{x['entry']:016x}", x["flags"]] for x in self.levels]
        where = f"{self.phys:#x}" if self.phys is not None else "not mapped"
        return html_table(["level", "index", "entry at", "entry", "flags"], rows,
                          f"pid {self.pid}: {self.address:#x} -> {where} ({self.mode} paging)")


# --- recording the steps of a scenario ------------------------------------------------------
def _jsonable(v):
    """A call's argument or result as JSON: ints stay ints, bytes become their length."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"bytes": len(v)}
    pid = getattr(v, "pid", None)
    if isinstance(pid, int):
        return {"pid": pid}
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    return repr(v)


def _record_dict(r) -> dict:
    """A vmsim.strace.Record as a plain dict {pid, kind, name, args, ret, errno}."""
    d = r._asdict()
    d["args"] = [_jsonable(a) for a in d["args"]]
    d["ret"] = _jsonable(d["ret"])
    return d


ACCESSES = ("read", "write", "fetch", "touch")
UNRECORDED = ("getrusage",)       # reads its own counters: not a step


class StepRecorder:
    """While active, every outermost call of the Process API (and Machine.spawn) becomes
    a step: the call as a syscall record {name, args, ret, errno, pid}, the signal it
    ended in, the caller's VMAs and every process's counters after it, and (with a
    function-graph ``tracer``) the step's page faults by path."""

    def __init__(self, tracer=None, limit=100_000, strace=None, tables=False, graphs=False):
        self.tracer = tracer
        self.tables = TableTracker() if tables else None   # step["tables"]: entries changed
        self.graphs = graphs          # step["faults"]["records"]: each fault's graph
        self._vmstat = {}             # id(machine) -> /proc/vmstat after its last step
        self.strace = strace          # a vmsim.strace.Strace entered before this recorder
        self.limit = limit
        self.steps = []
        self.machines = []            # Machines seen, in order (their index in the JSON)
        self.truncated = False
        self._depth = 0
        self._saved = []

    def _vmstat_before(self, obj):
        """The /proc/vmstat a machine's first step starts from (step["vmstat"])."""
        from vmsim.api import Machine
        m = obj if isinstance(obj, Machine) else getattr(obj, "machine", None)
        if m is not None and id(m) not in self._vmstat:
            self._vmstat[id(m)] = _vmstat_values(m)

    def _machine_index(self, m):
        for i, x in enumerate(self.machines):
            if x is m:
                return i
        self.machines.append(m)
        return len(self.machines) - 1

    def _wrap(self, fn, name, kind):
        sig = inspect.signature(fn)
        rec = self

        @functools.wraps(fn)
        def wrapper(obj, *a, **kw):
            if rec._depth:
                return fn(obj, *a, **kw)
            nfaults = len(rec.tracer.faults) if rec.tracer is not None else 0
            if rec.tables is not None:
                rec._vmstat_before(obj)
            nsys = len(rec.strace.records) if rec.strace is not None else 0
            rec._depth += 1
            ret = err = sig_ = None
            try:
                ret = fn(obj, *a, **kw)
                return ret
            except OSError as e:
                err = e.errno
                raise
            except Exception as e:
                if hasattr(e, "signo"):
                    sig_ = e
                raise
            finally:
                rec._depth -= 1
                try:
                    bound = sig.bind(obj, *a, **kw)
                    bound.apply_defaults()
                    args = {n: _jsonable(v) for n, v in list(bound.arguments.items())[1:]}
                except TypeError:
                    args = {"args": [_jsonable(x) for x in a]}
                rec._step(obj, name, kind, args, ret, err, sig_, nfaults, nsys)
        return wrapper

    def _step(self, obj, name, kind, args, ret, err, sig, nfaults, nsys=0):
        if len(self.steps) >= self.limit:
            self.truncated = True
            return
        from vmsim.api import Machine
        m = obj if isinstance(obj, Machine) else obj.machine
        p = ret if kind == "spawn" else obj
        if kind == "spawn" and p is None:
            return
        call = {"name": name, "args": args, "ret": None if err else _jsonable(ret),
                "errno": err, "pid": p.pid}
        if err:
            import errno as _errno
            call["ret"] = -1
            call["errno_name"] = _errno.errorcode.get(err)
        step = {"step": len(self.steps), "machine": self._machine_index(m), "pid": p.pid,
                "kind": kind, "call": call, "signal": None}
        if sig is not None:
            from vmsim import uapi
            names = {v: n for n, v in vars(uapi).items() if n.startswith("SIG") and isinstance(v, int)}
            step["signal"] = {"signo": sig.signo, "name": names.get(sig.signo, str(sig.signo)),
                              "si_code": sig.si_code, "si_addr": sig.si_addr, "offset": sig.offset}
        if self.strace is not None:
            # strace's records of this step (vmsim.strace.Record: C arguments in order,
            # strace's names: mlock2, exit_group, wait4; signals as kind "signal")
            step["syscalls"] = [_record_dict(r) for r in self.strace.records[nsys:]]
        step["vmas"] = process_vmas(p)
        step["processes"] = [process_record(q) for _, q in sorted(m.processes.items())]
        if self.tracer is not None:
            # the tracer's own count (path_counts: FAULT_PATHS, "#PF"/"GUP", minflt/majflt,
            # signals; execve's own faults left out) over this step's faults only
            from types import SimpleNamespace
            new = self.tracer.faults[nfaults:]
            by = type(self.tracer).path_counts(SimpleNamespace(faults=new))
            step["faults"] = {"count": sum(1 for f in new if not getattr(f, "exec", False)),
                              "by_path": dict(by),
                              "exec": sum(1 for f in new if getattr(f, "exec", False))}
            if self.graphs:
                step["faults"]["records"] = [fault_record(f) for f in new
                                             if not getattr(f, "exec", False)]
        if self.tables is not None:
            step["tables"] = self.tables.changes(step["machine"], m)
            now = _vmstat_values(m)
            before = self._vmstat.get(id(m), {})
            step["vmstat"] = {n: v - before.get(n, 0) for n, v in now.items() if v != before.get(n, 0)}
            self._vmstat[id(m)] = now
        self.steps.append(step)

    def __enter__(self):
        from vmsim.api import Machine, Process
        for name, fn in list(vars(Process).items()):
            if name.startswith("_") or not inspect.isfunction(fn) or name in UNRECORDED:
                continue
            self._saved.append((Process, name, fn))
            setattr(Process, name, self._wrap(fn, name, "access" if name in ACCESSES else "syscall"))
        self._saved.append((Machine, "spawn", Machine.spawn))
        Machine.spawn = self._wrap(Machine.spawn, "spawn", "spawn")
        return self

    def __exit__(self, *exc):
        for cls, name, fn in reversed(self._saved):
            setattr(cls, name, fn)
        self._saved.clear()
        return False


# --- page-table changes per step (run --json --tables; the explorer of issue 14) ----------
_U64 = (1 << 64) - 1


def page_record(k, pfn: int) -> dict:
    """What a leaf entry maps, as the explorer names it: {pfn, kind, order, mapcount,
    refcount, exclusive, file}. ``kind``: "zero" (the shared zero page), "anon" (an
    anonymous folio), "shmem" or "file" (a page-cache folio), "pfn" (no struct page)."""
    from vmsim.mm.folio import page_folio, folio_order, folio_precise_page_mapcount
    from vmsim.mm.page_flags import PG_anon, PG_anon_exclusive
    mem = k.mem
    if pfn >= k.nr_pages:
        return {"pfn": pfn, "kind": "pfn", "order": 0, "mapcount": 0, "refcount": 0,
                "exclusive": False, "file": None}
    if pfn == k.zero_pfn:
        kind, head, name = "zero", pfn, None
    else:
        head = page_folio(k, pfn)
        name = None
        if mem.flags[head] & PG_anon:
            kind = "anon"
        else:
            kind = "file"
            mid = int(mem.mapping[head])
            obj = k.objects[mid] if 0 < mid < len(k.objects) else None
            if obj is not None and getattr(obj, "swapbacked", False):
                kind = "shmem"
            host = getattr(obj, "host", None)
            name = getattr(host, "name", None) or getattr(host, "path", None)
            if name is None and getattr(host, "i_ino", None) is not None:
                name = f"inode {host.i_ino}"
    return {"pfn": pfn, "kind": kind, "order": int(folio_order(k, head)),
            "mapcount": int(folio_precise_page_mapcount(k, head, pfn)) if kind != "zero"
            else int(mem.mapcount[pfn]), "refcount": int(mem.refcount[head]),
            "exclusive": bool(mem.flags[pfn] & PG_anon_exclusive),
            "file": str(name) if name is not None else None}


def _vmstat_values(m) -> dict:
    """{name: value} as /proc/vmstat shows them (vmstat_show's values, without the text)."""
    from vmsim.fs.proc import vmstat as pv
    from vmsim.mm.vmstat import VMSTAT_NAMES
    v = pv._all_vmstat_values(m.k)
    for i in pv._THP_ITEMS:
        v[i] //= pv.HPAGE_PMD_NR
    return dict(zip(VMSTAT_NAMES, v))


class TableTracker:
    """The page-table entries each step changed, per process: a walk of every
    process's user-half tables after each step, compared table by table with the
    walk after the step before (numpy over each table's 512 entries, so a step costs
    O(tables), not O(entries)). A leaf's record is re-sent when the page it maps
    changes its mapcount, refcount or flags (a COW in another process makes a page
    exclusive again). The kernel half of the PGD (init_mm's, shared by every mm:
    pgd_ctor) is left out."""

    def __init__(self):
        self.prev = {}        # (machine index, pid) -> the last _walk of its tables
        self.shifts = {}

    def _walk(self, k, mm):
        """The mm's tables, level by level (numpy over all tables of a level at once):
        (keys [(level, va)], table pfns, entries T x 512, page info T x 512 x 3, leaf mask)."""
        import numpy as np
        from vmsim.arch.x86.pgtable_types import (paging_mode, PTE_PFN_MASK, _PAGE_PRESENT,
                                                  _PAGE_PSE, _PAGE_PROTNONE)
        from vmsim.mm.page_flags import PG_head
        mode = paging_mode(k.paging_levels)
        self.shifts = {lvl.kname: lvl.shift for lvl in mode.levels}
        pool = k.ptpool.arr
        rows_of = k.mem.np_private
        mem = k.mem
        last = len(mode.levels) - 1
        keys, tabs, E, I, L = [], [], [], [], []
        tables = np.array([mm.pgd], dtype=np.int64)
        bases = np.array([0], dtype=np.int64)
        slot = np.arange(512, dtype=np.int64)
        for li, lvl in enumerate(mode.levels):
            if not len(tables):
                break
            rows = rows_of[tables].astype(np.int64)
            ents = pool[(rows[:, None] * 512 + slot[None, :])]
            if li == 0:
                ents[:, 256:] = 0                      # the kernel half: init_mm's
            present = (ents & (_PAGE_PRESENT | _PAGE_PROTNONE)) != 0
            if li == last:
                leaf = present
            elif lvl.large:
                leaf = present & ((ents & _PAGE_PSE) != 0)
            else:
                leaf = np.zeros(ents.shape, dtype=bool)
            pfns = (ents & PTE_PFN_MASK) >> 12
            ok = leaf & (pfns < k.nr_pages)
            info = np.zeros(ents.shape + (3,), dtype=np.int64)
            if ok.any():
                idx = pfns[ok]
                # a large folio's head: its page[1] holds the entire (PMD) mapcount (mm/folio.py)
                head = ((mem.np_flags[idx] & PG_head) != 0) & (idx + 1 < k.nr_pages)
                info[ok, 0] = mem.np_mapcount[idx] + np.where(
                    head, mem.np_lru_prev[np.minimum(idx + 1, k.nr_pages - 1)], 0)
                info[ok, 1] = mem.np_refcount[idx]
                info[ok, 2] = mem.np_flags[idx]
            keys += [(lvl.kname, int(b)) for b in bases.tolist()]
            tabs.append(tables)
            E.append(ents)
            I.append(info)
            L.append(leaf)
            if li < last:
                t, i = np.nonzero(((ents & _PAGE_PRESENT) != 0) & ~leaf)
                tables = pfns[t, i]
                bases = bases[t] | (i.astype(np.int64) << lvl.shift)
        if not keys:
            return ([], np.zeros(0, dtype=np.int64), np.zeros((0, 512), dtype=np.int64),
                    np.zeros((0, 512, 3), dtype=np.int64), np.zeros((0, 512), dtype=bool))
        return keys, np.concatenate(tabs), np.concatenate(E), np.concatenate(I), np.concatenate(L)

    def changes(self, mi, machine) -> list:
        """The changed entries of every process of ``machine`` since the last call."""
        k = machine.k
        recs = []
        seen = set()
        empty = ([], None, None, None, None)
        for pid, p in sorted(machine.processes.items()):
            mm = p.task.mm
            cur = self._walk(k, mm) if mm is not None and mm.pgd >= 0 else empty
            seen.add((mi, pid))
            recs += self._diff(k, pid, self.prev.get((mi, pid), empty), cur)
            self.prev[(mi, pid)] = cur
        for key in [x for x in self.prev if x[0] == mi and x not in seen]:
            recs += self._diff(k, key[1], self.prev.pop(key), empty)
        return recs

    @staticmethod
    def _as_dict(w):
        keys, tabs, E, I, L = w
        return {x: (int(tabs[r]), E[r], I[r], L[r]) for r, x in enumerate(keys)}

    def _diff(self, k, pid, old, new) -> list:
        import numpy as np
        if old[0] == new[0] and (not new[0] or np.array_equal(old[1], new[1])):
            # the same tables as after the step before (the common case): compare them
            # all at once, then look only at the ones with a difference
            if not new[0]:
                return []
            rows = np.flatnonzero(((old[2] != new[2]) | (old[3] != new[3]).any(axis=2))
                                  .any(axis=1)).tolist()
            sub = [new[0][r] for r in rows]
            o = {x: (int(old[1][r]), old[2][r], old[3][r], old[4][r]) for x, r in zip(sub, rows)}
            n = {x: (int(new[1][r]), new[2][r], new[3][r], new[4][r]) for x, r in zip(sub, rows)}
            return self._diff_tables(k, pid, o, n)
        return self._diff_tables(k, pid, self._as_dict(old), self._as_dict(new))

    def _diff_tables(self, k, pid, old, new) -> list:
        import numpy as np
        from vmsim.arch.x86.pgtable_types import PTE_PFN_MASK
        recs = []
        zero = np.zeros(512, dtype=np.int64)
        zinfo = np.zeros((512, 3), dtype=np.int64)
        for key in sorted(set(old) | set(new), key=lambda x: (x[1], x[0])):
            level, base = key
            o = old.get(key)
            n = new.get(key)
            oe = o[1] if o is not None else zero
            ne = n[1] if n is not None else zero
            oi = o[2] if o is not None else zinfo
            ni = n[2] if n is not None else zinfo
            moved = o is not None and n is not None and o[0] != n[0]
            diff = (oe != ne) | (oi != ni).any(axis=1)
            if moved:
                diff |= ne != 0
            shift = self.shifts[level]
            for i in np.flatnonzero(diff).tolist():
                ov, nv = int(oe[i]) & _U64, int(ne[i]) & _U64
                if ov == nv == 0:
                    continue
                table = n[0] if n is not None else o[0]
                page = None
                if nv:
                    if n[3][i]:
                        page = page_record(k, (nv & PTE_PFN_MASK) >> 12)
                    elif level != "pte" and nv & 1:
                        page = {"pfn": (nv & PTE_PFN_MASK) >> 12, "kind": "table"}
                recs.append({"pid": pid, "level": level, "va": base | (i << shift),
                             "table": int(table), "index": i, "old": ov, "new": nv, "page": page})
        return recs


# --- the --json documents (docs/json.md) ----------------------------------------------------
def document(command, **fields) -> dict:
    """A --json document: schema_version and command first, then the command's fields."""
    import vmsim
    doc = {"schema_version": SCHEMA_VERSION, "command": command,
           "vmsim_version": getattr(vmsim, "__version__", None)}
    doc.update(fields)
    return doc


def run_document(result, recorder, tracer=None, error=None) -> dict:
    """``vmsim run --json``: the machines' final state and the recorded steps."""
    from vmsim.scenario import vmstat_deltas
    machines = []
    seen = list(recorder.machines) if recorder is not None else []
    if result is not None:
        for m, _ in result.machines:
            if m not in seen and (m.processes or m is result.machine):
                seen.append(m)
    bases = {id(m): b for m, b in result.machines} if result is not None else {}
    if result is None:              # the scenario failed: no vmstat baselines to diff with
        bases = None
    for m in seen:
        rec = machine_record(m)
        rec["processes"] = [process_record(p) for _, p in sorted(m.processes.items())]
        rec["vmstat_deltas"] = dict(vmstat_deltas(m, bases.get(id(m), {}))) if bases is not None else None
        if tracer is not None:
            rec["fault_paths"] = {str(pid): dict(tracer.path_counts(pid))
                                  for pid in sorted({f.pid for f in tracer.faults if f.pid in m.processes})}
        machines.append(rec)
    steps = recorder.steps if recorder is not None else []
    return document("run", scenario=result.path if result is not None else None,
                    error=error, machines=machines, steps=steps,
                    steps_truncated=bool(recorder and recorder.truncated))


def fault_record(f) -> dict:
    """A traced page fault (vmsim.trace.Fault) as ``vmsim trace --json`` shows it."""
    return {"pid": f.pid, "cpu": f.cpu, "address": f.address, "error_code": f.error_code,
            "kind": getattr(f, "kind", "fault"), "exec": bool(getattr(f, "exec", False)),
            "paths": sorted(f.paths), "signal": f.signal, "lines": list(f.lines),
            "truncated": f.truncated}


def trace_document(path, tracer, error=None, strace=None) -> dict:
    """``vmsim trace --json``: one record per traced page fault, with its call graph, and
    strace's records of the run."""
    faults = [fault_record(f) for f in tracer.shown_faults()]
    return document("trace", scenario=path, error=error, faults=faults,
                    truncated=bool(tracer.truncated),
                    syscalls=[_record_dict(r) for r in strace.records] if strace is not None else [],
                    syscalls_truncated=bool(strace is not None and strace.truncated))


def layout_record(addr, mode_name) -> dict:
    """How ``addr`` splits into table indices in one paging mode (vmsim walk ADDR)."""
    from vmsim.arch.x86.pgtable_types import PAGING_MODES
    from vmsim.walk import decompose, check_address, region
    mode = PAGING_MODES[mode_name]
    problem = check_address(addr, mode)
    r = region(addr, mode) if not problem else None
    return {"mode": mode_name, "va_bits": mode.va_bits, "problem": problem or None,
            "region": {"first": r[0], "last": r[1], "name": r[2],
                       "half": "kernel" if addr >> 63 else "user"} if r else None,
            "fields": [] if problem else
            [{"name": f.kname, "intel": f.intel, "hi": f.hi, "lo": f.lo, "value": f.value}
             for f in decompose(addr, mode)]}


# --- the --plot figure ----------------------------------------------------------------------
def plot_steps(recorder, path, title=""):
    """RSS, page-table pages and faults by kind (cumulative) over the steps, per process."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps = recorder.steps
    fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    keys = sorted({(s["machine"], q["pid"]) for s in steps for q in s["processes"]})
    multi = len({m for m, _ in keys}) > 1

    def label(m, pid):
        return f"machine {m + 1} pid {pid}" if multi else f"pid {pid}"
    from matplotlib.ticker import MaxNLocator
    styles = [dict(linestyle=ls, linewidth=lw) for ls, lw in
              (("-", 2.6), ("--", 2.0), (":", 2.0), ("-.", 1.6))]
    def draw(ax, xs, ys, **kw):
        # "post" steps: the value after step i spans [i, i+1), the last one too
        if xs:
            ax.step(xs + [xs[-1] + 1], ys + [ys[-1]], where="post", **kw)

    for n, (m, pid) in enumerate(keys):
        st = styles[n % len(styles)]
        xs, rss, pt = [], [], []
        for s in steps:
            if s["machine"] != m:
                continue
            q = next((q for q in s["processes"] if q["pid"] == pid), None)
            if q is not None:
                xs.append(s["step"])
                rss.append(q["rss"] * 4)
                pt.append(q["pgtables"])
        draw(axes[0], xs, rss, label=label(m, pid), **st)
        draw(axes[1], xs, pt, label=label(m, pid), **st)
    axes[1].yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[2].yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("RSS (kB)")
    axes[1].set_ylabel("page-table pages")
    totals = ("#PF", "minflt", "majflt")      # sums of the others: not drawn
    kinds = sorted({k for s in steps for k in s.get("faults", {}).get("by_path", {})} - set(totals))
    xs = [s["step"] for s in steps]
    if kinds:
        for n, kind in enumerate(kinds):
            st = styles[n % len(styles)]
            tot, ys = 0, []
            for s in steps:
                tot += s["faults"]["by_path"].get(kind, 0)
                ys.append(tot)
            draw(axes[2], xs, ys, label=kind, **st)
        axes[2].set_ylabel("faults by path (cumulative)")
    else:
        for name in ("minflt", "majflt"):
            tot = {}
            ys = []
            for s in steps:
                for q in s["processes"]:
                    tot[(s["machine"], q["pid"])] = q[name]
                ys.append(sum(tot.values()))
            draw(axes[2], xs, ys, label=name)
        axes[2].set_ylabel("faults (getrusage, all processes)")
    axes[2].set_xlabel("step (syscall or access)")
    for ax in axes:
        ax.set_ylim(bottom=0)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small", loc="upper left")
        ax.grid(True, alpha=0.3)
    # name the steps on the x axis when there are few
    if 0 < len(steps) <= 40:
        axes[2].set_xticks(xs)
        axes[2].set_xticklabels([f"{s['step']} {s['call']['name']} {s['pid']}" for s in steps],
                                rotation=60, ha="right", fontsize=7)
        axes[2].set_xlabel("step: call, pid")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
