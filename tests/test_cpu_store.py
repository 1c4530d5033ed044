"""A store is one instruction: when a page it covers faults with a signal, none of its
bytes is written (x86 restores the state from before a faulting instruction).

Seen on this machine (Linux 6.18.44, gcc -O1, an 8-byte store through a volatile
uint64_t * at 4 bytes before the end of the first of two pages, SIGSEGV / SIGBUS caught
with sigsetjmp): into a PROT_READ, PROT_NONE or unmapped second page, or a shared file
page past EOF, the first page's bytes stay as they were; si_addr is the second page's
first byte; a first page that was not present was faulted in (ru_minflt + 1 for
anonymous memory, mincore 1 0). Into a not-present anonymous second page all 8 bytes
are written. A straddling load reports the same si_addr.
"""
import numpy as np
import pytest

import vmsim
from vmsim import (PROT_READ, PROT_WRITE, PROT_NONE, MAP_PRIVATE, MAP_SHARED, MAP_ANONYMOUS,
                   O_RDWR, O_CREAT, SIGSEGV, SIGBUS, SEGV_MAPERR, SEGV_ACCERR, BUS_ADRERR,
                   ACCESS_READ, ACCESS_WRITE, SignalDelivered)
from vmsim.arch.x86 import cpu

ANON = MAP_PRIVATE | MAP_ANONYMOUS
RW = PROT_READ | PROT_WRITE
DATA = bytes(range(1, 9))


def _store(p, addr, data, how):
    if how == "python":
        p.write(addr, data)
    else:
        # One access of len(data) bytes through the chunk loop (mmu_batch), as Python
        # (how == "batch") or as numba's build (how == "compiled").
        p.access(np.array([addr]), np.array([ACCESS_WRITE], np.uint8), np.array([len(data)]),
                 value=data[0])


def _load(p, addr, n, how):
    if how == "python":
        return p.read(addr, n)
    p.access(np.array([addr]), np.array([ACCESS_READ], np.uint8), np.array([n]))


@pytest.fixture(params=["python", "batch", "compiled"])
def how(request):
    if request.param == "compiled":
        pytest.importorskip("numba")
    cpu._use_compiled(request.param == "compiled")
    yield request.param
    cpu._default()


def _second_page(p, a, what):
    if what == "read-only":
        p.mprotect(a + 4096, 4096, PROT_READ)
        return SIGSEGV, SEGV_ACCERR
    if what == "none":
        p.mprotect(a + 4096, 4096, PROT_NONE)
        return SIGSEGV, SEGV_ACCERR
    p.munmap(a + 4096, 4096)
    return SIGSEGV, SEGV_MAPERR


@pytest.mark.parametrize("what", ["read-only", "none", "unmapped"])
@pytest.mark.parametrize("first_present", [True, False])
def test_store_straddling_into_a_page_that_signals_writes_nothing(how, what, first_present):
    m = vmsim.Machine("64M")
    p = m.spawn()
    a = p.mmap(0, 2 << 12, RW, ANON)
    if first_present:
        p.write(a + 4088, b"\x55" * 8)
    signo, code = _second_page(p, a, what)
    flt = p.getrusage().ru_minflt
    data = DATA if how == "python" else b"\xab" * 8
    with pytest.raises(SignalDelivered) as e:
        _store(p, a + 4092, data, how)
    assert (e.value.signo, e.value.si_code, e.value.si_addr) == (signo, code, a + 4096)
    assert e.value.offset == 0
    assert getattr(e.value, "index", 0) == 0
    # The first page: faulted in if it was not (the CPU's first fault), its bytes as
    # before the store.
    assert p.mincore(a, 4096) == b"\x01"
    assert p.getrusage().ru_minflt == flt + (0 if first_present else 1)
    assert p.read(a + 4088, 8) == (b"\x55" * 8 if first_present else bytes(8))
    m.check()


def test_store_straddling_into_a_file_page_past_eof_writes_nothing(how):
    m = vmsim.Machine("64M")
    p = m.spawn()
    fd = p.open("/tmp/f4k", O_RDWR | O_CREAT, 0o644)
    p.ftruncate(fd, 4096)
    a = p.mmap(0, 2 << 12, RW, MAP_SHARED, fd, 0)
    with pytest.raises(SignalDelivered) as e:
        _store(p, a + 4092, b"\xab" * 8, how)
    assert (e.value.signo, e.value.si_code, e.value.si_addr) == (SIGBUS, BUS_ADRERR, a + 4096)
    assert e.value.offset == 0
    assert p.mincore(a, 4096) == b"\x01"
    assert p.read(a + 4088, 8) == bytes(8)
    assert p.pread(fd, 8, 4088) == bytes(8)
    m.check()


def test_store_straddling_into_a_page_that_faults_in_writes_every_byte_once(how, monkeypatch):
    m = vmsim.Machine("64M")
    p = m.spawn()
    a = p.mmap(0, 2 << 12, RW, ANON)
    flt = p.getrusage().ru_minflt
    data = DATA if how == "python" else b"\xab" * 8
    if how == "python":
        # Every byte written once: the store's bytes go to the frames after both
        # translations, not the first page's before the second page's fault and again.
        written = []
        write = m.k.page_data.write
        monkeypatch.setattr(m.k.page_data, "write",
                            lambda pfn, off, b: (written.append(len(b)), write(pfn, off, b))[1])
    _store(p, a + 4092, data, how)
    if how == "python":
        assert sum(written) == 8
    assert p.getrusage().ru_minflt == flt + 2
    assert p.read(a + 4088, 16) == b"\0" * 4 + data + b"\0" * 4
    m.check()


def test_store_over_many_pages_writes_all_or_nothing(how):
    # A store over 4 pages whose last page is read-only: nothing; once writable, all.
    m = vmsim.Machine("64M")
    p = m.spawn()
    a = p.mmap(0, 5 << 12, RW, ANON)
    p.write(a + 8192, b"\x11")              # a page in the middle present already
    p.mprotect(a + (3 << 12), 4096, PROT_READ)
    with pytest.raises(SignalDelivered) as e:
        _store(p, a + 100, b"\x7f" * (3 << 12), how)
    assert (e.value.si_addr, e.value.offset) == (a + (3 << 12), 0)
    assert p.read(a, 4 << 12) == bytes(8192) + b"\x11" + bytes((2 << 12) - 1)
    p.mprotect(a + (3 << 12), 4096, RW)
    _store(p, a + 100, b"\x7f" * (3 << 12), how)
    assert p.read(a, 5 << 12) == bytes(100) + b"\x7f" * (3 << 12) + bytes((2 << 12) - 100)
    m.check()


@pytest.mark.parametrize("what", ["none", "unmapped"])
def test_load_straddling_into_a_page_that_signals_reports_the_second_page(how, what):
    m = vmsim.Machine("64M")
    p = m.spawn()
    a = p.mmap(0, 2 << 12, RW, ANON)
    signo, code = _second_page(p, a, what)
    with pytest.raises(SignalDelivered) as e:
        _load(p, a + 4092, 8, how)
    assert (e.value.signo, e.value.si_code, e.value.si_addr) == (signo, code, a + 4096)
    m.check()


def test_batch_straddling_stores_amid_other_accesses(how):
    """The chunk loop hands a straddling store to Python (cpu._store) and goes on at
    the next access; a signal in one stops the batch there, the accesses before it
    done, none of its bytes written, the ones after it not run."""
    if how == "python":
        pytest.skip("the chunk loop only")
    m = vmsim.Machine("64M")
    p = m.spawn()
    a = p.mmap(0, 4 << 12, RW, ANON)
    p.mprotect(a + (3 << 12), 4096, PROT_READ)
    addrs = np.array([a, a + 4094, a + 10, a + (2 << 12) + 4090, a + 20, a + 4096 + 8])
    kinds = np.array([ACCESS_WRITE, ACCESS_WRITE, ACCESS_READ, ACCESS_WRITE, ACCESS_WRITE,
                      ACCESS_WRITE], np.uint8)
    sizes = np.array([1, 4, 8, 8, 1, 1])
    with pytest.raises(SignalDelivered) as e:
        p.access(addrs, kinds, sizes, value=0x5a)
    assert (e.value.index, e.value.offset, e.value.si_addr) == (3, 0, a + (3 << 12))
    assert p.read(a, 2 << 12) == b"\x5a" + bytes(4093) + b"\x5a" * 4 + bytes(4094)
    assert p.read(a + (2 << 12), 4096) == bytes(4096)
    # the same without the read-only page: every store done, in order
    p.mprotect(a + (3 << 12), 4096, RW)
    p.access(addrs, kinds, sizes, value=0x33)
    data = p.read(a, 4 << 12)
    for addr, kind, size in zip(addrs, kinds, sizes):
        if kind == ACCESS_WRITE:
            assert data[addr - a:addr - a + size] == b"\x33" * size
    assert data.count(0x33) == 1 + 4 + 8 + 1 + 1
    m.check()


def test_conform_write_step_stores_a_byte_at_a_time_as_the_executor(tmp_path):
    """`vmsim conform`'s write step is the executor's byte loop (executor.c do_fill):
    into a page that signals, the bytes before it are written and counted. vmsim's side
    stores a page at a time (p.write is one store, all or none)."""
    from vmsim.conform import compare, scenario, vmsim_side
    path = tmp_path / "w.toml"
    path.write_text('''description = "a write over 3 pages, the third read-only"
[settings]
kernel = "6.18"
thp_enabled = "madvise"
[[step]]
op = "mmap"
map = "a"
pages = 3
[[step]]
op = "mprotect"
map = "a"
page = 2
pages = 1
prot = "r"
[[step]]
op = "write"
map = "a"
offset = 100
length = 10000
value = 7
[[step]]
op = "check"
map = "a"
offset = 100
length = 8092
value = 7
''')
    scn = scenario.load(str(path))
    obs, _ = compare.derive(scn, vmsim_side.run(scn, timeout=120))
    assert obs["3:write(a): result"] == "8092/10000 bytes written"
    assert obs["3:write(a): signal"] == "SIGSEGV SEGV_ACCERR at a+0x2000"
    assert obs["4:check(a): result"] == "8092/8092 bytes read, 0 differ"
    assert obs["end: minflt"] == 2
