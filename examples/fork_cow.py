"""Fork and copy-on-write.

    vmsim run examples/fork_cow.py

A parent writes 16 private anonymous pages, forks, and both write them again.
fork() copies no page: copy_page_range() write-protects the parent's PTEs and
shares the frames (mm/memory.c copy_present_pte). The first write of either side
then takes a write-protect fault, do_wp_page():

* while the other process still maps the page, wp_page_copy() copies it;
* once a page is mapped by one process only, wp_can_reuse_anon_folio() lets the
  writer keep it: the fault only makes the PTE writable again (no copy).

The expected counts are Linux 6.18's, recorded on a real kernel in
scenarios/recorded/fork_cow_copy.json and fork_cow_reuse.json.
"""
import vmsim
from vmsim import PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS

PAGE = 4096
N = 16


def minflt(p):
    return p.getrusage().ru_minflt


def main(machine):
    parent = machine.spawn()
    a = parent.mmap(0, N * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    parent.touch(a, N * PAGE, write=True, value=0x11)     # 16 anonymous faults
    assert minflt(parent) == N

    child = parent.fork()
    # fork copied the parent's PTEs (write-protected) for this anonymous VMA, so the
    # child reads the parent's data without a fault.
    assert child.read(a, 1) == b"\x11"
    assert minflt(child) == 0

    # The parent writes the first half while the child still maps every page:
    # 8 write-protect faults, each copies the page (wp_page_copy).
    before = minflt(parent)
    parent.touch(a, N // 2 * PAGE, write=True, value=0x22)
    assert minflt(parent) - before == N // 2

    # The child writes all 16 pages. The first 8 are now mapped by the child alone
    # (the parent has its copies): reused, no copy. The last 8 are still shared: copied.
    # Either way each first write is one fault: 16.
    child.touch(a, N * PAGE, write=True, value=0x33)
    assert minflt(child) == N
    assert parent.read(a, 1) == b"\x22" and parent.read(a + (N - 1) * PAGE, 1) == b"\x11"

    # The parent's last 8 pages are exclusive again (the child copied away from
    # them): writing them costs a fault each, but reuses the frame.
    before = minflt(parent)
    parent.touch(a + N // 2 * PAGE, N // 2 * PAGE, write=True, value=0x44)
    assert minflt(parent) - before == N // 2
    # A second pass over everything is free: all PTEs are writable now.
    before = minflt(parent)
    parent.touch(a, N * PAGE, write=True)
    assert minflt(parent) == before

    print(machine.read_file(f"/proc/{parent.pid}/smaps_rollup"))


if __name__ == "__main__":          # also runs with plain python
    main(vmsim.Machine(memory="1G"))
