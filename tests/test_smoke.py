import errno

import pytest

import vmsim
from vmsim import PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS, SIGSEGV, SEGV_MAPERR


def test_write_touch_faults_once_per_page(proc):
    a = proc.mmap(0, 16 << 12, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    before = proc.getrusage().ru_minflt
    proc.touch(a, 16 << 12, write=True)
    assert proc.getrusage().ru_minflt - before == 16
    proc.touch(a, 16 << 12, write=True)
    assert proc.getrusage().ru_minflt - before == 16


def test_read_then_write_is_two_faults_and_keeps_data(proc):
    a = proc.mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    before = proc.getrusage().ru_minflt
    assert proc.read(a, 8) == bytes(8)
    proc.write(a + 100, b"abc")
    assert proc.getrusage().ru_minflt - before == 2
    assert proc.read(a + 99, 5) == b"\0abc\0"


def test_unmapped_access_is_segv_maperr(proc):
    a = proc.mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    proc.munmap(a, 4096)
    with pytest.raises(vmsim.SignalDelivered) as e:
        proc.read(a, 1)
    assert (e.value.signo, e.value.si_code, e.value.si_addr) == (SIGSEGV, SEGV_MAPERR, a)


def test_mmap_zero_length_is_einval(proc):
    with pytest.raises(OSError) as e:
        proc.mmap(0, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS)
    assert e.value.errno == errno.EINVAL
