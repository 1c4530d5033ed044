"""Syscall arguments as the kernel's C types (issue 8): lengths and addresses are
unsigned long / size_t, offsets off_t, prot / flags / advice int; the kernel's own
overflow checks decide the errno. Real-kernel answers: vmsim/conform/probes/bad_args.c, run
on this machine's 6.18.44 (vmsim/conform/probes/bad_args-6.18.txt)."""
import errno
import os

import pytest

import vmsim
from vmsim import PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS, MAP_FIXED, MADV_DONTNEED
from vmtest import vmas

P = 4096
ANON = MAP_PRIVATE | MAP_ANONYMOUS
RW = PROT_READ | PROT_WRITE
MAP_NORESERVE = 0x4000
MREMAP_MAYMOVE = 1
HERE = os.path.dirname(__file__)


def _linux_results():
    path = os.path.join(HERE, "..", "vmsim", "conform", "probes", "bad_args-6.18.txt")
    out = {}
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            name, res = line.split()
            out[name] = res
    return out


def _run(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]


def _bad_args_calls(p, a):
    """The calls of vmsim/conform/probes/bad_args.c, in its order, with its arguments
    (a C long of -4096 is the Python int -4096 here)."""
    T = 1 << 47
    return [
        ("mmap_len_-4096", lambda: p.mmap(0, -4096, RW, ANON)),
        ("mmap_len_-1", lambda: p.mmap(0, -1, RW, ANON)),
        ("mmap_len_2^63", lambda: p.mmap(0, 1 << 63, RW, ANON)),
        ("mmap_len_2^47", lambda: p.mmap(0, T, RW, ANON | MAP_NORESERVE)),
        ("mmap_fixed_-4096", lambda: p.mmap(-4096, P, RW, ANON | MAP_FIXED)),
        ("mmap_fixed_taskend", lambda: p.mmap(T - P, P, RW, ANON | MAP_FIXED)),
        ("mmap_fixed_at_taskend", lambda: p.mmap(T, P, RW, ANON | MAP_FIXED)),
        ("mmap_hint_-4096", lambda: p.mmap(-4096, P, RW, ANON)),
        ("mmap_off_-4096", lambda: p.mmap(0, 2 * P, RW, ANON, -1, -4096)),
        ("mmap_off_1", lambda: p.mmap(0, 2 * P, RW, ANON, -1, 1)),
        ("mmap_prot_-1", lambda: p.mmap(0, P, -1, ANON)),
        ("mmap_prot_int_-1", lambda: p.mmap(0, P, -1, ANON)),
        ("mmap_flags_type0", lambda: p.mmap(0, P, RW, MAP_ANONYMOUS)),
        ("mmap_fixed_over_-4096len", lambda: p.mmap(a, -4096, RW, ANON | MAP_FIXED)),
        ("munmap_len_-4096", lambda: p.munmap(a, -4096)),
        ("munmap_addr_-4096", lambda: p.munmap(-4096, P)),
        ("munmap_len_0", lambda: p.munmap(a, 0)),
        ("mprotect_len_-4096", lambda: p.mprotect(a, -4096, PROT_READ)),
        ("mprotect_addr_-4096", lambda: p.mprotect(-4096, P, PROT_READ)),
        ("mprotect_prot_-1", lambda: p.mprotect(a, P, -1)),
        ("madvise_len_-4096", lambda: p.madvise(a, -4096, MADV_DONTNEED)),
        ("madvise_addr_-4096", lambda: p.madvise(-4096, P, MADV_DONTNEED)),
        ("madvise_adv_-1", lambda: p.madvise(a, P, -1)),
        ("mlock_len_-4096", lambda: p.mlock(a, -4096)),
        ("mlock_len_-1", lambda: p.mlock(a, -1)),
        ("mlock_addr_-4096", lambda: p.mlock(-4096, P)),
        ("mlock2_flags_-1", lambda: p.mlock(a, P, -1)),
        ("munlock_addr_-4096", lambda: p.munlock(-4096, P)),
        ("munlock_len_-1", lambda: p.munlock(a, -1)),
        ("mremap_old_-4096", lambda: p.mremap(a, -4096, P, MREMAP_MAYMOVE)),
        ("mremap_new_-4096", lambda: p.mremap(a, P, -4096, MREMAP_MAYMOVE)),
        ("mremap_addr_-4096", lambda: p.mremap(-4096, P, P, 0)),
        ("mremap_flags_-1", lambda: p.mremap(a, P, 2 * P, -1)),
        ("mremap_new_2^47", lambda: p.mremap(a, P, T, MREMAP_MAYMOVE)),
        ("mincore_len_-4096", lambda: p.mincore(a, -4096)),
        ("mincore_addr_-4096", lambda: p.mincore(-4096, P)),
        ("mincore_addr_taskend", lambda: p.mincore(T - P, P)),
    ]


def test_bad_integer_arguments_get_linux_errno(proc):
    """Each call of bad_args.c gets the errno (or success) Linux 6.18.44 gave, the
    break does not move for a wrapped brk, and the first mapping's data survives."""
    linux = _linux_results()
    a = proc.mmap(0, 16 * P, RW, ANON)
    proc.write(a, b"\1" * 16 * P)
    got = {name: _run(fn) for name, fn in _bad_args_calls(proc, a)}
    want = {k: v for k, v in linux.items() if k in got}
    assert len(want) == len(got)
    assert got == want
    b0 = proc.brk(0)
    assert ("unchanged" if proc.brk(-4096) == b0 else "moved") == linux["brk_-4096"]
    assert ("unchanged" if proc.brk(1 << 47) == b0 else "moved") == linux["brk_2^47"]
    assert linux["data"] == "intact"
    assert proc.read(a, 1) == b"\1" and proc.read(a + 16 * P - 1, 1) == b"\1"
    # (successful calls above may have merged new mappings next to it)
    assert len(vmas(proc, a, a + 16 * P)) == 1


def test_mmap_minus_4096_is_enomem_not_a_backwards_vma(proc):
    """mmap(0, (size_t)-4096) was a VMA ending below its start; Linux: ENOMEM."""
    n = proc.mm.map_count
    with pytest.raises(OSError) as e:
        proc.mmap(0, -4096, RW, ANON)
    assert e.value.errno == errno.ENOMEM
    assert proc.mm.map_count == n
    assert all(v.vm_start < v.vm_end for v in proc.mm.mm_mt)


def test_mmap_minus_2_63_no_overflow_error(proc):
    with pytest.raises(OSError) as e:
        proc.mmap(0, -2**63, RW, ANON)
    assert e.value.errno == errno.ENOMEM


def test_mmap_fixed_top_of_address_space(proc):
    """MAP_FIXED at (void *)-4096: get_unmapped_area's addr > TASK_SIZE - len is ENOMEM
    (was: returned -0x1000)."""
    with pytest.raises(OSError) as e:
        proc.mmap(-4096, P, RW, ANON | MAP_FIXED)
    assert e.value.errno == errno.ENOMEM


def test_negative_length_fixed_over_mapping_keeps_it(proc):
    """MAP_FIXED with length -4096 over a mapping: ENOMEM and the mapping stays (was an
    AssertionError 'VMA overlap')."""
    a = proc.mmap(0, 4 * P, RW, ANON)
    proc.write(a, b"x")
    with pytest.raises(OSError) as e:
        proc.mmap(a, -4096, RW, ANON | MAP_FIXED)
    assert e.value.errno == errno.ENOMEM
    assert proc.read(a, 1) == b"x"


@pytest.mark.parametrize("call, arg", [
    (lambda p: p.mmap(None, P, RW, ANON), "addr"),
    (lambda p: p.mmap(0, 4096.0, RW, ANON), "length"),
    (lambda p: p.mmap(0, P, "rw", ANON), "prot"),
    (lambda p: p.mmap(0, P, RW, None), "flags"),
    (lambda p: p.mmap(0, P, RW, ANON, -1, 0.5), "offset"),
    (lambda p: p.munmap(0x1000, None), "length"),
    (lambda p: p.mprotect(1.0, P, RW), "addr"),
    (lambda p: p.madvise(0, P, "dontneed"), "advice"),
    (lambda p: p.mremap(0, P, P, 0, None), "new_addr"),
    (lambda p: p.mlock(0, P, 1.5), "flags"),
    (lambda p: p.munlock("0", P), "addr"),
    (lambda p: p.mincore(0, []), "length"),
    (lambda p: p.brk(None), "addr"),
    (lambda p: p.read(None, 1), "addr"),
    (lambda p: p.read(0, 1.0), "size"),
    (lambda p: p.touch(0, P, stride=None), "stride"),
])
def test_values_c_cannot_pass_are_type_errors(proc, call, arg):
    with pytest.raises(TypeError, match=arg):
        call(proc)


@pytest.mark.parametrize("kw, arg", [({"stride": 0}, "stride"), ({"stride": -4096}, "stride"),
                                     ({"length": -1}, "length")])
def test_touch_bad_counts_are_value_errors(proc, kw, arg):
    """touch(stride=0) was a ZeroDivisionError."""
    a = proc.mmap(0, P, RW, ANON)
    args = {"length": P, **kw}
    with pytest.raises(ValueError, match=arg):
        proc.touch(a, **args)
    with pytest.raises(ValueError, match="size"):
        proc.read(a, -1)


def test_int_arguments_take_the_low_32_bits(proc):
    """prot is an int: 2**32 + PROT_READ arrives as PROT_READ."""
    a = proc.mmap(0, P, (1 << 32) | PROT_READ, ANON)
    assert proc.mm.vma_lookup(a).vm_flags & 0x3 == 0x1


def test_exited_process_is_esrch():
    m = vmsim.Machine(memory="256M")
    p = m.spawn()
    c = p.fork()
    c.exit(0)
    with pytest.raises(OSError) as e:
        c.mmap(0, P, RW, ANON)
    assert e.value.errno == errno.ESRCH
    assert isinstance(e.value, ProcessLookupError)


def test_map_hugetlb_without_a_pool_is_enomem(proc):
    with pytest.raises(OSError) as e:
        proc.mmap(0, 2 << 20, RW, ANON | 0x40000)          # MAP_HUGETLB
    assert e.value.errno == errno.ENOMEM


def test_cpu_and_pid_arguments(proc):
    with pytest.raises(ValueError, match="cpu"):
        proc.fork(cpu=7)
    with pytest.raises(TypeError, match="cpu"):
        proc.machine.spawn(cpu=0.0)
    with pytest.raises(TypeError, match="pid"):
        proc.wait(None)
