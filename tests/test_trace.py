"""The function-graph tracer: fault trees, error-code and vm_fault_t decoding, paths."""
import re
import sys

import pytest

import vmsim
from vmsim import PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED, MAP_ANONYMOUS, SignalDelivered
from vmsim.trace import function_graph, decode_error_code, decode_vm_fault

PAGE = 4096


def anon(p, pages=4, flags=MAP_PRIVATE):
    return p.mmap(0, pages * PAGE, PROT_READ | PROT_WRITE, flags | MAP_ANONYMOUS)


def test_decode_error_code_uses_trap_pf_bits():
    # arch/x86/include/asm/trap_pf.h: PROT=1, WRITE=2, USER=4, RSVD=8, INSTR=16
    assert decode_error_code(0x6) == "0x6 [WRITE|USER]"
    assert decode_error_code(0x7) == "0x7 [PROT|WRITE|USER]"
    assert decode_error_code(0x14) == "0x14 [USER|INSTR]"
    assert decode_error_code(0) == "0x0"


def test_decode_vm_fault_names_the_bits():
    # include/linux/mm_types.h: MAJOR=0x4, RETRY=0x400, SIGSEGV=0x40
    assert decode_vm_fault(0) == "0x0"
    assert decode_vm_fault(0x404) == "0x404 [MAJOR|RETRY]"
    assert decode_vm_fault(0x40) == "0x40 [SIGSEGV]"


def test_write_fault_tree(proc):
    a = anon(proc)
    with function_graph(proc.machine) as tr:
        proc.write(a, b"x")
    assert len(tr.faults) == 1
    f = tr.faults[0]
    assert f.address == a and f.pid == proc.pid
    text = tr.text()
    # The tree: exception entry, then the arch handler, then the generic fault path.
    header = f"exc_page_fault(addr={a:#x}, error_code=0x6 [WRITE|USER]) {{"
    body = [ln.split("| ", 1)[1] for ln in f.lines]
    assert body[0] == header
    assert body[1] == "  handle_page_fault() {"
    assert "    do_user_addr_fault() {" in body
    assert any(ln.strip().startswith("do_anonymous_page") for ln in body)
    assert re.search(r"\} /\* handle_mm_fault = 0x0 \*/", text)
    assert body[-1] == "}"
    assert {"do_anonymous_page", "handle_mm_fault", "__handle_mm_fault"} <= f.paths
    assert "do_wp_page" not in f.paths


def test_write_after_read_copies_the_zero_page(proc):
    a = anon(proc)
    with function_graph(proc.machine) as tr:
        proc.read(a, 1)
        proc.write(a, b"x")
    assert [f.error_code for f in tr.faults] == [0x4, 0x7]
    assert "do_anonymous_page" in tr.faults[0].paths
    assert {"do_wp_page", "wp_page_copy"} <= tr.faults[1].paths
    c = tr.path_counts()
    assert c["do_anonymous_page"] == 1 and c["wp_page_copy"] == 1


def test_sigsegv_fault_is_recorded(proc):
    with function_graph(proc.machine) as tr:
        with pytest.raises(SignalDelivered):
            proc.read(0x1000, 1)
    (f,) = tr.faults
    assert f.signal == "SIGSEGV"
    assert "handle_mm_fault" not in f.paths       # no VMA: bad_area before the generic path
    assert tr.path_counts()["signal SIGSEGV"] == 1


def test_shared_anonymous_goes_through_shmem_fault(proc):
    s = anon(proc, 4, MAP_SHARED)
    with function_graph(proc.machine) as tr:
        proc.write(s, b"x")
    assert {"do_fault", "do_shared_fault", "shmem_fault"} <= tr.faults[0].paths


def test_profile_hook_removed_and_nothing_traced_after(proc):
    before = sys.getprofile()
    a = anon(proc)
    with function_graph(proc.machine) as tr:
        pass
    assert sys.getprofile() is before
    proc.write(a, b"x")
    assert tr.faults == [] and tr.events == 0


def test_other_machines_are_filtered(proc):
    other = vmsim.Machine(memory="256M")
    q = other.spawn()
    b = anon(q)
    with function_graph(proc.machine) as tr:
        q.write(b, b"x")
    assert tr.faults == []


def test_max_events_truncates_but_keeps_counting(proc):
    a = anon(proc, 8)
    with function_graph(proc.machine, max_events=10) as tr:
        proc.touch(a, 8 * PAGE, write=True)
    assert tr.events == 10
    assert "truncated" in tr.text()
    assert tr.path_counts()["do_anonymous_page"] == 8


def test_all_calls_mode_traces_syscalls(proc):
    with function_graph(proc.machine, faults_only=False) as tr:
        anon(proc)
    assert tr.calls["do_mmap"] == 1
    assert tr.faults == []


def test_machine_trace_switch(proc):
    a = anon(proc)
    with proc.machine.trace() as tr:
        proc.write(a, b"x")
    assert len(tr.faults) == 1 and "exc_page_fault(addr=" in tr.text()


def test_user_accesses_trace_no_cpu_helpers(proc):
    """A read, a write and a touch that fault: exc_page_fault at the top (after the
    MMU's walk, mmu.translate, a leaf when it runs as Python), not inside vmsim's CPU
    loop that made the access (cpu._translate, _touch, _s64)."""
    a = anon(proc, 8)
    with function_graph(proc.machine, faults_only=False) as tr:
        proc.read(a, 1)
        proc.write(a + PAGE, b"x")
        proc.touch(a + 2 * PAGE, 2 * PAGE, write=True)
    text = tr.text()
    called = set(re.findall(r"\|\s+(\w+)\(", text))
    assert {"exc_page_fault", "handle_mm_fault"} <= called
    assert not {"touch", "s64"} & called
    assert not re.search(r"\|\s+translate\(\) \{", text)      # (the walk, when traced, is a leaf)


def test_vma_flag_changes_trace_no_vmsim_helpers(proc):
    """mprotect, madvise and mlock of part of a VMA split it (vma_modify): the trace
    shows the kernel's functions, not the callback vmsim hands vma_modify."""
    from vmsim import PROT_READ, MADV_DONTFORK
    a = anon(proc, 8)
    with function_graph(proc.machine, faults_only=False) as tr:
        proc.mprotect(a, PAGE, PROT_READ)
        proc.madvise(a + 2 * PAGE, PAGE, MADV_DONTFORK)
        proc.mlock(a + 4 * PAGE, PAGE)
    called = set(re.findall(r"\|\s+(\w+)\(\)", tr.text()))
    assert {"vma_modify", "mprotect_fixup", "madvise_update_vma", "mlock_fixup"} <= called
    assert "change" not in called
