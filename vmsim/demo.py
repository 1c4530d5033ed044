"""``vmsim demo``: a guided run through the seed's fault paths on anonymous and shmem memory.

Each step does what a C program would (mmap, loads, stores, mprotect, madvise) on one
process, and reports the page faults it took (counted by the function-graph tracer:
which of do_anonymous_page, do_wp_page, wp_page_copy, do_fault, do_read_fault,
do_shared_fault, shmem_fault, do_fault_around, stack expansion they went through),
the signals, and the PTE the address ends with. A few faults are shown as call
trees; then /proc/<pid>/smaps_rollup and the vmstat deltas.
"""
import errno

import vmsim
from vmsim import (PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED, MAP_ANONYMOUS, MADV_DONTNEED,
                   SignalDelivered)
from vmsim.trace import FAULT_PATHS, function_graph

PAGE = 4096


class Skip(Exception):
    """A step needs something vmsim does not model yet."""


def _call(fn, *a):
    """Call an API function; turn "not built yet" into Skip."""
    try:
        return fn(*a)
    except (ImportError, NotImplementedError) as e:
        raise Skip(f"not modelled yet ({type(e).__name__}: {e})") from None
    except OSError as e:
        if e.errno == errno.ENOSYS:
            raise Skip(f"not modelled yet ({e})") from None
        raise


def pte_state(machine, p, addr) -> str:
    """One line: the PTE of addr (flags) and what it maps."""
    from vmsim.walk import walk_entries
    from vmsim.arch.x86.pgtable_types import decode_flags
    k = machine.k
    steps, phys = walk_entries(k, p.mm, addr)
    lvl, _, e = steps[-1]
    if phys is None:
        return f"{lvl.kname} {e & ((1 << 64) - 1):#x}: not present"
    pfn = phys >> 12
    what = "the zero page" if pfn == k.zero_pfn else f"pfn {pfn:#x}"
    return f"{lvl.kname} {e & ((1 << 64) - 1):#x} {decode_flags(e)} -> {what}"


def _describe(faults) -> str:
    if not faults:
        return "no page fault"
    paths = []
    for name in FAULT_PATHS:
        n = sum(1 for f in faults if name in f.paths)
        if n:
            paths.append(f"{name} x{n}" if n > 1 else name)
    sigs = [f.signal for f in faults if f.signal]
    s = f"{len(faults)} page fault{'s' if len(faults) > 1 else ''}"
    if paths:
        s += ": " + ", ".join(paths)
    if sigs:
        s += "; signal " + ", ".join(sorted(set(sigs)))
    return s


def run_demo(out, traces=True, memory="1G"):
    """Run the tour, printing through ``out`` (a vmsim.cli.Out)."""
    from vmsim.scenario import vmstat_snapshot, vmstat_deltas
    m = vmsim.Machine(memory=memory, cpus=2)
    p = m.spawn()
    base = vmstat_snapshot(m)
    tr = function_graph(m, faults_only=True, max_events=200000)
    shown = []            # (title, Fault) to print as traces
    state = {}

    out.heading(f"vmsim demo: Linux {m.k.release} anonymous and shmem page faults (pid {p.pid})")

    def step(title, fn):
        out.line("")
        out.line(f"* {title}")
        first = len(tr.faults)
        try:
            with tr:
                note = fn()
        except Skip as e:
            out.line(f"    skipped: {e}")
            return []
        faults = tr.faults[first:]
        out.line(f"    -> {_describe(faults)}")
        if note:
            for ln in note if isinstance(note, list) else [note]:
                out.line(f"    {ln}")
        return faults

    def s1():
        a = state["a"] = p.mmap(0, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        p.read(a, 1)
        return f"{a:#x}: {pte_state(m, p, a)}"
    f = step("read of untouched private anonymous memory: do_anonymous_page maps the zero page "
             "read-only", s1)
    if f:
        shown.append(("read fault -> the zero page", f[0]))

    def s2():
        a = state["a"] + PAGE
        p.write(a, b"A")
        return f"{a:#x}: {pte_state(m, p, a)}"
    step("write to an untouched page: do_anonymous_page allocates a zeroed page, maps it writable",
         s2)

    def s3():
        a = state["a"]
        p.write(a, b"B")
        return f"{a:#x}: {pte_state(m, p, a)}"
    f = step("write after read: the zero page is read-only, do_wp_page -> wp_page_copy gives the "
             "process its own copy", s3)
    if f:
        shown.append(("write after read -> wp_page_copy from the zero page", f[0]))

    def s4():
        a = state["a"] + PAGE
        _call(p.mprotect, a, PAGE, PROT_READ)
        try:
            p.write(a, b"C")
        except SignalDelivered as e:
            return [f"{e}", f"{a:#x}: {pte_state(m, p, a)}"]
        return "the write succeeded (Linux delivers SIGSEGV here)"
    step("mprotect(PROT_READ), then write: access_error() refuses it, SIGSEGV with SEGV_ACCERR", s4)

    def s5():
        a = state["a"] + PAGE
        _call(p.mprotect, a, PAGE, PROT_READ | PROT_WRITE)
        before = pte_state(m, p, a)
        p.write(a, b"D")
        return [f"after mprotect: {before}", f"after the write: {pte_state(m, p, a)}"]
    step("mprotect(PROT_READ|PROT_WRITE), then write: the page is this process's alone "
         "(PageAnonExclusive), so it is reused, never copied; 6.18's mprotect maps it writable "
         "at once (can_change_private_pte_writable), sparing the do_wp_page -> wp_page_reuse "
         "fault", s5)

    def s6():
        try:
            p.read(0x1000, 1)
        except SignalDelivered as e:
            return str(e)
        return "no signal (Linux delivers SIGSEGV here)"
    step("load from an unmapped address: no VMA, SIGSEGV with SEGV_MAPERR", s6)

    def s7():
        a = state["a"]
        _call(p.madvise, a, 2 * PAGE, MADV_DONTNEED)
        after = pte_state(m, p, a)
        data = p.read(a, 1)
        p.write(a + PAGE, b"E")
        return [f"after MADV_DONTNEED: {after}", f"re-read returns {data!r} (zero-fill again): "
                f"{pte_state(m, p, a)}", f"re-write: {pte_state(m, p, a + PAGE)}"]
    step("MADV_DONTNEED, then touch again: the pages are zapped; a read maps the zero page, a "
         "write a new page", s7)

    def s8():
        s = state["s"] = p.mmap(0, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS)
        p.write(s, b"S")
        return f"{s:#x}: {pte_state(m, p, s)}"
    f = step("write to shared anonymous memory (shmem): do_fault -> do_shared_fault -> "
             "shmem_fault allocates the page in the shmem file's page cache", s8)
    if f:
        shown.append(("shared anonymous write -> do_shared_fault -> shmem_fault", f[0]))

    def s9():
        s = state["s"]
        p.touch(s, 16 * PAGE, write=True)
        _call(p.madvise, s, 16 * PAGE, MADV_DONTNEED)
        first = len(tr.faults)
        p.touch(s, 16 * PAGE, write=False)
        n = len(tr.faults) - first
        return (f"the 16 reads after MADV_DONTNEED took {n} fault{'s' if n != 1 else ''}: "
                f"do_fault_around mapped up to fault_around_bytes "
                f"({m.k.fault_around_pages * 4} KiB) of cached pages")
    f = step("fill the shmem mapping, MADV_DONTNEED it (the pages stay in the shmem file), read "
             "it back: do_read_fault -> do_fault_around maps the neighbours too", s9)
    reads = [x for x in f if "do_read_fault" in x.paths]
    if reads:
        shown.append(("read -> do_read_fault -> do_fault_around", reads[0]))

    def s10():
        vma = p.mm.find_vma(p.mm.start_stack)
        start = vma.vm_start
        a = start - 16 * PAGE
        p.write(a, b"T")
        vma = p.mm.find_vma(p.mm.start_stack)
        return f"stack VMA start {start:#x} -> {vma.vm_start:#x}; {a:#x}: {pte_state(m, p, a)}"
    step("write 64 KiB below the stack: lock_mm_and_find_vma -> expand_stack_locked grows the "
         "stack VMA down, then do_anonymous_page", s10)

    def s11():
        a = state["cow"] = p.mmap(0, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        p.write(a, b"parent")
        before = pte_state(m, p, a)
        c = state["child"] = p.fork(cpu=p.task.cpu)
        after = pte_state(m, p, a)
        c.write(a, b"child!")
        return [f"parent before fork: {before}",
                f"after fork (copy_page_range write-protected it in both): {after}",
                f"child after its write: {pte_state(m, c, a)}; parent still reads "
                f"{p.read(a, 6)!r}"]
    f = step("fork, then the child writes: copy_present_pte write-protected the private page in "
             "both processes; the child's write fault copies it (do_wp_page -> wp_page_copy)", s11)
    if f:
        shown.append(("copy-on-write in the child -> wp_page_copy", f[-1]))

    def s12():
        a, c = state["cow"], state["child"]
        c.exit(0)
        p.wait(c.pid)
        p.write(a, b"again")
        return f"after the child exited the page is the parent's alone: {pte_state(m, p, a)}"
    step("the child exits; the parent writes: wp_can_reuse_anon_folio finds one reference, "
         "the page is reused (do_wp_page -> wp_page_reuse, pgreuse)", s12)

    if traces and shown:
        out.heading("Function-graph traces of a few of these faults")
        for title, fault in shown:
            out.block(title, "\n".join(fault.lines))

    out.heading("Result")
    from vmsim.views import PROCESS_COLUMNS, process_rows
    out.table("Processes: faults (getrusage) and RSS", PROCESS_COLUMNS,
              process_rows(m), right=(0, 2, 3, 4, 5, 6, 7))
    counts = tr.path_counts()
    out.table(f"Page faults by path ({len(tr.faults)} traced)", ["path", "faults"],
              [[k, v] for k, v in counts.items()], right=(1,))
    try:
        rollup = m.read_file(f"/proc/{p.pid}/smaps_rollup")
        out.block(f"/proc/{p.pid}/smaps_rollup", rollup)
    except Exception as e:        # the /proc views are a separate piece of work
        out.line(f"/proc/{p.pid}/smaps_rollup: not available ({type(e).__name__}: {e})")
    out.table("vmstat deltas since the process started (non-zero)", ["counter", "delta"],
              [[k, f"{v:+d}"] for k, v in vmstat_deltas(m, base)], right=(1,))
    return m, p, tr
