"""prctl(PR_SET_THP_DISABLE / PR_GET_THP_DISABLE) (kernel/sys.c, issue 10).

The expected values come from this machine's kernel (6.18.44): the probe
vmsim/conform/probes/prctl_thp_probe.c and its output prctl_thp-6.18.txt, and the
selftest tools/testing/selftests/mm/prctl_thp_disable.c ported below.
"""
import errno
import os

import pytest

import vmsim
from vmsim import MAP_PRIVATE, MAP_ANONYMOUS, PROT_READ, PROT_WRITE
from vmsim.uapi import (MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_COLLAPSE, PR_SET_THP_DISABLE,
                        PR_GET_THP_DISABLE, PR_THP_DISABLE_EXCEPT_ADVISED)

THP = "/sys/kernel/mm/transparent_hugepage/"
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS
H = 2 << 20
PROBE = os.path.join(os.path.dirname(vmsim.__file__), "conform", "probes", "prctl_thp-6.18.txt")


def vmstat(m, name):
    for line in m.read_file("/proc/vmstat").splitlines():
        k, v = line.split()
        if k == name:
            return int(v)
    raise KeyError(name)


def status_thp(p, tag):
    for line in p.machine.read_file(f"/proc/{p.pid}/status").splitlines():
        if line.startswith("THP_enabled"):
            return f"{tag} {line}"


def _call(fn, *args):
    """(return value, errno) as the probe's P() prints them."""
    try:
        r = fn(*args)
        return (0 if r is None else r), 0
    except OSError as e:
        return -1, e.errno


def _probe_run(p, tag, advice):
    """The probe's run(): a 4 MiB mapping, its aligned 2 MiB touched."""
    m = p.machine
    mem = p.mmap(0, 4 << 20, RW, ANON)
    a = (mem + H - 1) & ~(H - 1)
    if advice == 1:
        p.madvise(a, H, MADV_HUGEPAGE)
    t0, c0, f0 = vmstat(m, "thp_fault_alloc"), vmstat(m, "thp_collapse_alloc"), p.getrusage().ru_minflt
    p.touch(a, H, write=True)
    f1 = p.getrusage().ru_minflt
    cr = ce = 0
    if advice == 2:
        cr, ce = _call(p.madvise, a, H, MADV_COLLAPSE)
    p.munmap(mem, 4 << 20)
    return (f"{tag} advice={advice} thp_fault_alloc={vmstat(m, 'thp_fault_alloc') - t0} "
            f"minflt={f1 - f0} collapse_ret={cr} errno={ce} "
            f"thp_collapse_alloc={vmstat(m, 'thp_collapse_alloc') - c0}")


def test_prctl_thp_probe_matches_linux():
    """Every line the probe printed on 6.18.44, produced by the same calls in vmsim."""
    m = vmsim.Machine(memory="256M")
    p = m.spawn()
    out = []

    def P(text, *args):
        r, e = _call(p.prctl, *args)
        out.append(f"{text:<50} = {r} errno={e}")
    P("prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0)", PR_GET_THP_DISABLE, 0, 0, 0, 0)
    out.append(status_thp(p, "init"))
    out += [_probe_run(p, "enabled", adv) for adv in range(3)]
    P("prctl(PR_SET_THP_DISABLE, 0, PR_THP_DISABLE_EXCEPT_ADVISED, 0, 0)",
      PR_SET_THP_DISABLE, 0, PR_THP_DISABLE_EXCEPT_ADVISED, 0, 0)
    P("prctl(PR_SET_THP_DISABLE, 1, 1, 0, 0)", PR_SET_THP_DISABLE, 1, 1, 0, 0)
    P("prctl(PR_SET_THP_DISABLE, 1, 3, 0, 0)", PR_SET_THP_DISABLE, 1, 3, 0, 0)
    P("prctl(PR_SET_THP_DISABLE, 1, 0, 1, 0)", PR_SET_THP_DISABLE, 1, 0, 1, 0)
    P("prctl(PR_SET_THP_DISABLE, 1, 0, 0, 1)", PR_SET_THP_DISABLE, 1, 0, 0, 1)
    P("prctl(PR_GET_THP_DISABLE, 1, 0, 0, 0)", PR_GET_THP_DISABLE, 1, 0, 0, 0)
    P("prctl(PR_GET_THP_DISABLE, 0, 0, 0, 1)", PR_GET_THP_DISABLE, 0, 0, 0, 1)
    P("prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0)", PR_GET_THP_DISABLE, 0, 0, 0, 0)
    P("prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)", PR_SET_THP_DISABLE, 1, 0, 0, 0)
    P("prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0)", PR_GET_THP_DISABLE, 0, 0, 0, 0)
    out.append(status_thp(p, "completely"))
    out += [_probe_run(p, "completely", adv) for adv in range(3)]
    c = p.fork()
    out.append(f"child GET={c.prctl(PR_GET_THP_DISABLE)}")
    c.exit(0)
    p.wait(c.pid)
    c = p.fork()
    c.execve()
    out.append(f"after execve GET={c.prctl(PR_GET_THP_DISABLE)}")
    out.append(status_thp(c, "exec"))
    c.exit(0)
    p.wait(c.pid)
    P("prctl(PR_SET_THP_DISABLE, 5, PR_THP_DISABLE_EXCEPT_ADVISED, 0, 0)",
      PR_SET_THP_DISABLE, 5, PR_THP_DISABLE_EXCEPT_ADVISED, 0, 0)
    P("prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0)", PR_GET_THP_DISABLE, 0, 0, 0, 0)
    out.append(status_thp(p, "except_advised"))
    out += [_probe_run(p, "except_advised", adv) for adv in range(3)]
    P("prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0)", PR_SET_THP_DISABLE, 0, 0, 0, 0)
    P("prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0)", PR_GET_THP_DISABLE, 0, 0, 0, 0)
    P("prctl(PR_SET_THP_DISABLE, 1UL << 32, 0, 0, 0)", PR_SET_THP_DISABLE, 1 << 32, 0, 0, 0)
    P("prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0)", PR_GET_THP_DISABLE, 0, 0, 0, 0)
    P("prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0)", PR_SET_THP_DISABLE, 0, 0, 0, 0)
    P("prctl(12345, 0, 0, 0, 0)", 12345, 0, 0, 0, 0)
    with open(PROBE) as f:
        expected = f.read().splitlines()
    assert out == expected
    m.check()


def test_prctl_option_not_modelled_is_said():
    """Options 6.18 knows but vmsim does not model are not answered with a made-up
    errno."""
    m = vmsim.Machine(memory="256M")
    p = m.spawn()
    with pytest.raises(NotImplementedError):
        p.prctl(15, 0)                      # PR_SET_NAME


# --- tools/testing/selftests/mm/prctl_thp_disable.c ---------------------------------------
NONE, NOHUGE, HUGE, COLLAPSE = range(4)


def _test_mmap_thp(p, advice):
    """test_mmap_thp(): 1 if the aligned 2 MiB ends up as a THP (check_huge_anon)."""
    mem = p.mmap(0, 2 * H, RW, ANON)
    a = (mem + H) & ~(H - 1)
    if advice == HUGE:
        p.madvise(a, H, MADV_HUGEPAGE)
    elif advice == NOHUGE:
        p.madvise(a, H, MADV_NOHUGEPAGE)
    p.touch(a, H, write=True)
    if advice == COLLAPSE:
        try:
            p.madvise(a, H, MADV_COLLAPSE)
        except OSError:
            pass
    p.mprotect(a, H, PROT_READ)            # a VMA of its own to read smaps from
    smaps = p.machine.read_file(f"/proc/{p.pid}/smaps")
    anon_huge = None
    cur = False
    for line in smaps.splitlines():
        first = line.split()[0]
        if "-" in first and ":" not in first:
            cur = int(first.split("-")[0], 16) == a
        elif cur and line.startswith("AnonHugePages:"):
            anon_huge = int(line.split()[1]) << 10
    p.munmap(mem, 2 * H)
    return 1 if anon_huge == H else 0


def _completely(p, policy):
    assert p.prctl(PR_GET_THP_DISABLE) == 1
    assert [_test_mmap_thp(p, a) for a in (NONE, NOHUGE, HUGE, COLLAPSE)] == [0, 0, 0, 0]
    assert p.prctl(PR_SET_THP_DISABLE, 0) == 0
    assert _test_mmap_thp(p, NONE) == (policy == "always")
    assert _test_mmap_thp(p, NOHUGE) == 0
    assert _test_mmap_thp(p, HUGE) == (policy != "never")
    assert _test_mmap_thp(p, COLLAPSE) == 1


def _except_madvise(p, policy):
    assert p.prctl(PR_GET_THP_DISABLE) == 3
    assert _test_mmap_thp(p, NONE) == 0
    assert _test_mmap_thp(p, NOHUGE) == 0
    assert _test_mmap_thp(p, HUGE) == (policy != "never")
    assert _test_mmap_thp(p, COLLAPSE) == 1
    assert p.prctl(PR_SET_THP_DISABLE, 0) == 0
    assert _test_mmap_thp(p, NONE) == (policy == "always")
    assert _test_mmap_thp(p, NOHUGE) == 0
    assert _test_mmap_thp(p, HUGE) == (policy != "never")
    assert _test_mmap_thp(p, COLLAPSE) == 1


@pytest.mark.parametrize("fork", [False, True], ids=["nofork", "fork"])
@pytest.mark.parametrize("policy", ["never", "madvise", "always"])
@pytest.mark.parametrize("mode", ["completely", "except_madvise"])
def test_selftest_prctl_thp_disable(machine, mode, policy, fork):
    """prctl_thp_disable.c: FIXTURE_SETUP sets the prctl, then the policy (with the
    PMD size on inherit); the fork variants run the test in a child."""
    p = machine.spawn()
    if mode == "completely":
        assert p.prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0
    else:
        assert p.prctl(PR_SET_THP_DISABLE, 1, PR_THP_DISABLE_EXCEPT_ADVISED, 0, 0) == 0
    machine.write_file(THP + "enabled", policy)
    machine.write_file(THP + "hugepages-2048kB/enabled", "inherit")
    t = p.fork() if fork else p
    (_completely if mode == "completely" else _except_madvise)(t, policy)


def test_khugepaged_skips_an_mm_with_thp_disabled(machine):
    """hpage_collapse_test_exit_or_disable(): khugepaged collapses nothing in an mm
    disabled completely, and resumes when the prctl is cleared (the mm stays
    registered: collect_mm_slot frees only exiting mms)."""
    m = machine
    p = m.spawn()
    a = p.mmap(0, H, RW, ANON)
    assert a % H == 0
    p.madvise(a, H, MADV_NOHUGEPAGE)
    p.touch(a, H, write=True)                         # 512 small pages
    p.madvise(a, H, MADV_HUGEPAGE)                    # khugepaged_enter_vma()
    assert p.prctl(PR_SET_THP_DISABLE, 1) == 0
    m.sleep(30)
    assert m.read_file(THP + "khugepaged/pages_collapsed") == "0\n"
    assert p.prctl(PR_SET_THP_DISABLE, 0) == 0
    m.sleep(30)
    assert m.read_file(THP + "khugepaged/pages_collapsed") == "1\n"


def test_prctl_errno_for_bad_arguments(proc):
    """kernel/sys.c: EINVAL for arg4/arg5, for flags when enabling, unknown flags, and
    any argument of PR_GET_THP_DISABLE (prctl_thp-6.18.txt)."""
    from vmtest import errno_of
    for args in ((PR_SET_THP_DISABLE, 0, PR_THP_DISABLE_EXCEPT_ADVISED),
                 (PR_SET_THP_DISABLE, 1, 1), (PR_SET_THP_DISABLE, 1, 0, 0, 1),
                 (PR_GET_THP_DISABLE, 0, 1), (PR_GET_THP_DISABLE, -1)):
        assert errno_of(proc.prctl, *args) == errno.EINVAL
    assert proc.prctl(PR_GET_THP_DISABLE) == 0
