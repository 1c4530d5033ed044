"""The TLB model: hardware TLBs (vmsim.arch.x86.tlb) and arch/x86/mm/tlb.c's flushing.

Expected values come from the SDM (what a TLB may keep, what CR3 / INVLPG drop) and
from arch/x86/mm/tlb.c 6.18 (TLB_NR_DYN_ASIDS = 6, tlb_single_page_flush_ceiling =
33, should_flush_tlb, choose_new_asid's round robin), not from runs of vmsim.
"""
import contextlib

import numpy as np
import pytest

import vmsim
from vmsim.arch.x86 import tlb as T
from vmsim.arch.x86.mm import tlb as K
from vmsim.mm.mmap import PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED, MAP_ANONYMOUS, MAP_FIXED

P = 4096
RW = PROT_READ | PROT_WRITE
PRIV = MAP_PRIVATE | MAP_ANONYMOUS


def machine(cpus=2, tlb="golden-cove", **kw):
    return vmsim.Machine(memory="512M", cpus=cpus, tlb=tlb, **kw)


def anon(p, pages, flags=PRIV, addr=0):
    return p.mmap(addr, pages * P, RW, flags | (MAP_FIXED if addr else 0))


def pte_index(m, p, addr):
    """The pool index of the leaf entry translating ``addr`` (a 4K PTE here)."""
    k = m.k
    pool, rows = k.ptpool.mv, k.mem.private
    row, shift = rows[p.mm.pgd], 39
    while True:
        i = row * 512 + ((addr >> shift) & 511)
        e = pool[i]
        if shift == 12 or e & 0x80:
            return i
        row = rows[(e & 0x000FFFFFFFFFF000) >> 12]
        shift -= 9


def stat(m, cpu, key):
    return m.tlb_stats()[cpu][key]


def hits(m, cpu):
    return sum(m.tlb_stats()[cpu]["hits"].values())


def vmstat(m, name):
    return int(m.read_file("/proc/vmstat").split(f"\n{name} ")[1].split()[0])


# --- hardware -------------------------------------------------------------------------
def test_hit_needs_no_walk_and_an_l2_hit_refills_l1():
    m = machine(cpus=1)
    p = m.spawn()
    a = anon(p, 4)
    p.touch(a, 4 * P, write=True)
    walks = stat(m, 0, "walks")
    p.touch(a, 4 * P)
    assert stat(m, 0, "walks") == walks                  # 4 hits, no walk
    assert m.tlb_stats()[0]["hits"]["L1 dTLB 4K"] >= 4


def test_store_through_an_entry_without_dirty_rewalks_and_sets_d():
    """SDM 4.8: a write through a TLB entry whose D is clear walks and sets D."""
    m = machine(cpus=1)
    p = m.spawn()
    a = anon(p, 1, MAP_SHARED | MAP_ANONYMOUS)
    p.read(a, 1)                                   # shmem read fault: RW PTE, D clear
    i = pte_index(m, p, a)
    assert m.k.ptpool.mv[i] & 2 and not m.k.ptpool.mv[i] & 0x40
    flt = p.getrusage().ru_minflt
    p.write(a, b"x")
    assert m.k.ptpool.mv[i] & 0x40                 # the re-walk set D
    assert stat(m, 0, "dirty_rewalks") == 1
    assert p.getrusage().ru_minflt == flt          # and no fault was needed


def test_permission_miss_on_a_cached_entry_rewalks_before_faulting():
    """A cached read-only entry, the PTE made writable without a flush (allowed on x86: a
    permission upgrade): the store re-walks and succeeds, no #PF (SDM 4.10.4.3). The
    PTE is edited by hand (the VMA stays read-only), so the debug checker is off."""
    m = machine(cpus=1, debug_vm=False)
    p = m.spawn()
    a = anon(p, 1)
    p.write(a, b"x")
    p.mprotect(a, P, PROT_READ)
    p.read(a, 1)                                   # caches the read-only entry
    i = pte_index(m, p, a)
    m.k.ptpool.mv[i] = m.k.ptpool.mv[i] | 2        # upgrade in place, no flush
    flt = p.getrusage().ru_minflt
    p.write(a, b"y")
    assert p.getrusage().ru_minflt == flt
    assert stat(m, 0, "perm_rewalks") == 1


def test_hit_does_not_see_a_table_change_until_flushed(monkeypatch):
    """A PTE cleared without a flush: the CPU still uses its entry (hardware), and the
    stale-TLB checker says so."""
    m = machine(cpus=1, debug_vm=False)
    p = m.spawn()
    a = anon(p, 1)
    p.write(a, b"old")
    i = pte_index(m, p, a)
    saved = m.k.ptpool.mv[i]
    m.k.ptpool.mv[i] = 0
    assert p.read(a, 3) == b"old"                  # served by the TLB
    m.k.tlb_check = True
    with pytest.raises(AssertionError, match="stale TLB entry on CPU 0.*not mapped any more"):
        p.read(a, 3)
    m.k.ptpool.mv[i] = saved


def test_global_entries_survive_cr3_writes_and_invpcid_all_drops_them():
    s = T.TLBState(1, T.PRESETS["golden-cove"], pcide=True)
    T._fill_level(s.ent, s.geo, s.clock, 0, 1, 2, -(1 << 40), 0, 1, 1, 0x1000 | 1)   # global
    T._fill_level(s.ent, s.geo, s.clock, 0, 1, 2, 0x400000, 0, 1, 0, 0x2000 | 1)    # PCID 1
    T._fill_level(s.ent, s.geo, s.clock, 0, 1, 2, 0x500000, 0, 2, 0, 0x3000 | 1)    # PCID 2
    s._write_cr3(0, 1, noflush=False)
    left = {(e[1] & ((1 << 64) - 1), e[3]) for e in s.entries(0)}
    assert left == {((-(1 << 40)) & ((1 << 64) - 1), 1), (0x500000, 2)}
    s._flush_all(0, include_global=False)
    assert [e[4] for e in s.entries(0)] == [True]
    s._flush_all(0, include_global=True)
    assert s.entries(0) == []


def test_without_pcid_every_cr3_write_drops_non_global_entries():
    s = T.TLBState(1, T.PRESETS["skylake"], pcide=False)
    T._fill_level(s.ent, s.geo, s.clock, 0, 1, 2, 0x400000, 0, 0, 0, 0x2000 | 1)
    s._write_cr3(0, 0, noflush=True)                # NOFLUSH means nothing without PCIDE
    assert s.entries(0) == []


def test_set_associative_lru_evicts_the_least_recently_used_way():
    g = T.custom_geometry({"L1 dTLB": (4, 2)})         # 2 sets of 2 ways
    s = T.TLBState(1, g, pcide=True)
    fill = lambda va: T._fill_level(s.ent, s.geo, s.clock, 0, 1, 2, va, 0, 1, 0, va | 1)
    look = lambda va: T.tlb_lookup(s.ent, s.geo, s.clock, s.stats, 0, 1, va, 2, -1)
    fill(0x0000)
    fill(0x2000)                                   # same set (even page numbers)
    assert look(0x0000) >= 0                       # 0x0000 now most recent
    fill(0x4000)                                   # evicts 0x2000
    assert look(0x2000) < 0 and look(0x0000) >= 0 and look(0x4000) >= 0


def test_paging_structure_caches_let_walks_skip_levels():
    m = machine(cpus=1)
    p = m.spawn()
    a = anon(p, 512 + 8)
    a2 = (a + (2 << 20)) & ~((2 << 20) - 1)
    p.touch(a2, 8 * P, write=True)
    m.k.tlb.ent[0, T.E_CTX, :m.k.tlb.geo[T.S_PML4E, T.G_BASE]] = 0    # drop TLB entries, keep PSCs
    m.k.tlb._held(0)
    reads = stat(m, 0, "walk_reads")
    p.touch(a2, 8 * P)
    assert stat(m, 0, "walk_reads") - reads == 8             # PDE cache hit: 1 read per walk
    assert stat(m, 0, "psc_hits")["PDE"] >= 8


def test_huge_pages_use_large_entries_and_itlb_fractures_1g():
    s = T.TLBState(1, T.PRESETS["golden-cove"], pcide=True)
    va = 1 << 30
    # a 1G translation fetched: the iTLB has no 1G structure, the 2M iTLB holds the part
    T._fill_level(s.ent, s.geo, s.clock, 0, 1, 1, va + (5 << 21) + 0x123, 2, 1, 0, (7 << 30) | 1)
    (name, vaddr, sc, pcid, glob, val), = s.entries(0)
    assert (name, vaddr, sc) == ("L1 iTLB 2M", va + (5 << 21), 1)
    assert val & ~0xFFF == (7 << 30) + (5 << 21)


def _geometry_functions(geo):
    """tlb's functions as compiled(geo) builds them (_with_geometry: geo's rows read
    from constants), left as Python."""
    g = dict(vars(T))
    g["_GEO"] = T._geometry_rows(geo)
    for name in T._FUNCS:
        g[name] = T._with_geometry(getattr(T, name), g, "test")
    return g


@pytest.mark.parametrize("sets, ways", [(4, 2), (3, 6), (4, 16), (2, 24)])
def test_sets_evict_their_least_recently_used_way(sets, ways):
    """Lookups, fills on a miss, INVLPG and CR3 writes on one structure, against a plain
    model of LRU sets (each set's tags, most recently used first): the sets of 2 to 16
    ways (an LRU word and a valid mask) and the larger (a stamp per way) keep the
    model's entries, and the debug checker finds their words consistent throughout."""
    st = T.TLBState(1, T.custom_geometry({"L2 TLB": (sets * ways, ways)}), pcide=True)
    s = T.S_L2
    assert T._ordered(st.geo, s) == (ways <= 16)
    rng = np.random.default_rng(sets * ways)
    model = [[] for _ in range(sets)]
    fullest = 0
    for step in range(2500):
        tag = int(rng.integers(0, sets * ways * 2))
        si = tag % sets
        op = rng.random()
        if op < 0.8:                    # a lookup; a miss walks and fills
            slot = T._probe_tag(st.ent, st.geo, st.clock, 0, s, tag, 0, 1)
            if tag in model[si]:
                assert slot >= 0 and st.ent[0, T.E_TAG, slot] == tag
                model[si].remove(tag)
            else:
                assert slot < 0
                T._fill_struct(st.ent, st.geo, st.clock, 0, s, tag, 1 | T.CTX_VALID, tag << 12)
            model[si].insert(0, tag)
            del model[si][ways:]
        elif op < 0.98:                 # INVLPG
            T._tlb_invalidate_addr(st.ent, st.geo, 0, 1, tag << 12, 0)
            if tag in model[si]:
                model[si].remove(tag)
        elif op < 0.99:                 # nothing else
            pass
        else:                           # MOV to CR3 without NOFLUSH
            st._write_cr3(0, 1, False)
            model = [[] for _ in range(sets)]
        valid = (st.ent[0, T.E_CTX] & T.CTX_VALID) != 0
        assert sorted(st.ent[0, T.E_TAG, valid].tolist()) == sorted(t for m in model for t in m)
        assert st._order_ok()
        fullest = max(fullest, *map(len, model))
    assert fullest == ways


def test_checker_finds_a_set_lru_word_or_mask_that_disagrees():
    m = machine(cpus=1)
    p = m.spawn()
    a = anon(p, 8)
    p.touch(a, 8 * P)
    hw = m.k.tlb
    first = int(hw.geo[T.S_L2, T.G_BASE])
    for field, change in ((first, 0x1), (first + 1, 1 << 15), (first + 1, 0)):
        saved = hw.ent.copy()
        hw.ent[0, T.E_LRU, field] = change if field == first + 1 else hw.ent[0, T.E_LRU, field] ^ change
        if field == first + 1 and change == 0:
            hw.ent[0, T.E_CTX, first] = T.CTX_VALID          # a valid way the mask lacks
        with pytest.raises(AssertionError, match="LRU word or valid-ways mask"):
            m.check()
        hw.ent[:] = saved
    m.check()


@pytest.mark.parametrize("geometry", ["golden-cove", "zen4",
                                      {"L1 dTLB": (12, 3), "L2 TLB": (40, 5), "PDE cache": (6, 3)}])
def test_geometry_build_leaves_the_state_the_generic_one_leaves(geometry):
    """The functions of a geometry's own build (the geometry's rows as constants) and
    the generic ones, from the same random TLB and table state, give the same results,
    TLB arrays and tables: stores and reads, checker off and on (as Python: the
    compiled builds are compared in test_replay_through_the_tlb_compiled_matches_python)."""
    rng = np.random.default_rng(11)
    m = machine(cpus=1, tlb=geometry, debug_vm=False)
    p = m.spawn()
    a = anon(p, 64)
    p.touch(a, 64 * P, write=True)
    k, hw = m.k, m.k.tlb
    g = _geometry_functions(hw.geo)
    for trial in range(4):
        hw.ent[0, T.E_CTX, rng.random(hw.nslots) < 0.5] = 0
        hw._held(0)
        for j in rng.choice(64, 16, replace=False):
            i = pte_index(m, p, a + int(j) * P)
            k.ptpool.mv[i] = k.ptpool.mv[i] & ~0x60
        results = []
        for impl in (T.tlb_touch_batch, g["_tlb_touch_batch"]):
            ent, clock, stats = hw.ent.copy(), hw.clock.copy(), hw.stats.copy()
            pt, rows = k.ptpool.arr[:k.ptpool.used * 512].copy(), k.mem.np_private   # rows: read only
            out = np.zeros(2, dtype=np.int64)
            n = impl(pt, rows, k.page_data.pool.reshape(-1), k.cpus[0].cr3, 0, a, 4096 * 3 + 8, 21, 0,
                     6 if trial % 2 else 4, 0, out, 0, ent, hw.geo, clock, stats, 0, hw.cur_pcid[0],
                     trial // 2, hw.bad.copy())
            results.append((n, out, ent, clock, stats, pt))
        py, spec = results
        assert py[0] == spec[0] == 21
        assert not np.array_equal(py[4], hw.stats)                  # it looked up
        for x, y in zip(py[1:], spec[1:]):
            assert np.array_equal(x, y)
    # The geometry really is a constant there: a wrong geo argument changes nothing
    # (it would change the generic functions' state).
    wrong = hw.geo.copy()
    wrong[:, T.G_WAYS] = np.minimum(wrong[:, T.G_WAYS], 1)
    ents = []
    for impl, geo in ((g["_tlb_touch_batch"], hw.geo), (g["_tlb_touch_batch"], wrong), (T.tlb_touch_batch, wrong)):
        ent = hw.ent.copy()
        out = np.zeros(2, dtype=np.int64)
        assert impl(k.ptpool.arr[:k.ptpool.used * 512].copy(), k.mem.np_private, k.page_data.pool.reshape(-1),
                    k.cpus[0].cr3, 0, a, P, 64, 0, 4, 0, out, 0, ent, geo, hw.clock.copy(),
                    hw.stats.copy(), 0, hw.cur_pcid[0], 0, hw.bad.copy()) == 64
        ents.append(ent)
    assert np.array_equal(ents[0], ents[1]) and not np.array_equal(ents[0], ents[2])


@pytest.mark.slow
def test_compiled_tlb_path_leaves_the_state_python_leaves():
    """numba's tlb_touch_batch and the Python one, from the same random TLB and table
    state, give the same results, TLB arrays and tables."""
    pytest.importorskip("numba")
    ns = T.compiled()
    rng = np.random.default_rng(5)
    m = machine(cpus=1, debug_vm=False)
    p = m.spawn()
    a = anon(p, 64)
    p.touch(a, 64 * P, write=True)
    k, hw = m.k, m.k.tlb
    for trial in range(4):          # checker off (the inlined hit loop), then on
        # random partial TLB contents and random A/D bits in the PTEs
        hw.ent[0, T.E_CTX, rng.random(hw.nslots) < 0.5] = 0
        hw._held(0)
        for j in rng.choice(64, 16, replace=False):
            i = pte_index(m, p, a + int(j) * P)
            k.ptpool.mv[i] = k.ptpool.mv[i] & ~0x60
        results = []
        for impl in (T.tlb_touch_batch, ns.tlb_touch_batch):
            ent, clock, stats = hw.ent.copy(), hw.clock.copy(), hw.stats.copy()
            pt, rows = k.ptpool.arr.copy(), k.mem.np_private.copy()
            out = np.zeros(2, dtype=np.int64)
            # The stores write 0 into zero-filled frames: the data pool stays as it is.
            n = impl(pt, rows, k.page_data.pool.reshape(-1), k.cpus[0].cr3, 0, a, 4096 * 3 + 8, 21, 0, 6 if trial % 2 else 4, 0,
                     out, 0, ent, hw.geo, clock, stats, 0, hw.cur_pcid[0], trial // 2, hw.bad.copy())
            results.append((n, out, ent, clock, stats, pt, rows))
        py, nb = results
        assert py[0] == nb[0]
        for x, y in zip(py[1:], nb[1:]):
            assert np.array_equal(x, y)


def test_presets_and_host_geometry():
    for name in ("golden-cove", "skylake", "zen3", "zen4"):
        m = machine(cpus=1, tlb=name)
        assert m.tlb_geometry()["name"] == name
    g = T.host_geometry()
    assert g.structs[T.S_L1D_4K][0] > 0
    m = machine(cpus=1, tlb="host")
    assert m.tlb_geometry()["name"].startswith("host")


def test_leaf2_descriptors_and_leaf18_parse():
    """CPUID leaf 2 descriptors (SDM vol. 2A table 3-12): 0x63 = 1G DTLB 4 entries
    4-way, 0x03 = DTLB 4K 64 entries 4-way, 0xB6 = ITLB 4K 128 8-way, 0xC3 = STLB 1536
    6-way; leaf 0x18 subleaf: a 4K/2M L2 unified TLB of 16 ways x 128 sets."""
    def fake(leaf, sub=0):
        if leaf == 0:
            return (0x18, 0x756E6547, 0x6C65746E, 0x49656E69)       # GenuineIntel
        if leaf == 1:
            return (0x906EA, 0, 0, 0)
        if leaf == 2:
            return (0x00B66301, 0x000000C3, 0x03, 0)
        if leaf == 0x18:
            return (0, 0, 0, 0)
        return (0, 0, 0, 0)
    import unittest.mock as um
    with um.patch.object(T, "_cpuid_reader", return_value=fake):
        g = T.host_geometry()
    assert g.source == "CPUID leaf 2"
    assert g.structs[T.S_L1D_1G][:2] == (4, 4)
    assert g.structs[T.S_L1D_4K][:2] == (64, 4)
    assert g.structs[T.S_L1I_4K][:2] == (128, 8)
    assert g.structs[T.S_L2][:2] == (1536, 6)

    def fake18(leaf, sub=0):
        if leaf == 0x18 and sub == 0:
            return (1, 0, 0, 0)
        if leaf == 0x18 and sub == 1:
            return (0, (16 << 16) | 0b0011, 128, 3 | (2 << 5))     # unified, level 2
        return fake(leaf, sub)
    with um.patch.object(T, "_cpuid_reader", return_value=fake18):
        g = T.host_geometry()
    assert g.source == "CPUID leaf 0x18"
    assert g.structs[T.S_L2] == (2048, 16, 3)


# --- arch/x86/mm/tlb.c ---------------------------------------------------------------
def two_cpu_threads(**kw):
    m = machine(cpus=2, **kw)
    p = m.spawn(cpu=0)
    t = p.clone_thread(cpu=1)
    return m, p, t


def test_ceiling_33_pages_flushed_one_by_one_34_is_a_full_flush():
    """get_flush_tlb_info: (end - start) >> stride_shift > 33 becomes TLB_FLUSH_ALL;
    nr_tlb_local_flush_one counts pages, nr_tlb_local_flush_all events."""
    m = machine(cpus=1)
    p = m.spawn()
    a = anon(p, 256)
    p.touch(a, 256 * P, write=True)
    one, full = vmstat(m, "nr_tlb_local_flush_one"), vmstat(m, "nr_tlb_local_flush_all")
    p.munmap(a + 8 * P, 33 * P)
    assert vmstat(m, "nr_tlb_local_flush_one") - one == 33
    assert vmstat(m, "nr_tlb_local_flush_all") == full
    p.munmap(a + 100 * P, 34 * P)
    assert vmstat(m, "nr_tlb_local_flush_all") == full + 1
    assert vmstat(m, "nr_tlb_local_flush_one") - one == 33


def test_remote_flush_ipis_the_other_cpu_running_the_mm():
    m, p, t = two_cpu_threads()
    a = anon(p, 16)
    p.touch(a, 16 * P, write=True)
    t.touch(a, 16 * P)
    assert m.k.cpus[1].tlbstate.loaded_mm is p.mm
    rf, rr = vmstat(m, "nr_tlb_remote_flush"), vmstat(m, "nr_tlb_remote_flush_received")
    p.munmap(a, P)
    assert vmstat(m, "nr_tlb_remote_flush") == rf + 1
    assert vmstat(m, "nr_tlb_remote_flush_received") == rr + 1
    assert stat(m, 1, "ipi_received") >= 1
    with pytest.raises(vmsim.SignalDelivered):
        t.read(a, 1)                               # CPU 1's entry went with the IPI


def test_single_threaded_mm_is_flushed_locally_without_ipi():
    m = machine(cpus=2)
    p = m.spawn(cpu=0)
    q = m.spawn(cpu=1)
    a = anon(p, 4)
    p.touch(a, 4 * P, write=True)
    rf = vmstat(m, "nr_tlb_remote_flush")
    p.munmap(a, P)
    assert vmstat(m, "nr_tlb_remote_flush") == rf
    assert stat(m, 0, "ipi_sent") == 0


def test_lazy_cpu_is_skipped_then_flushed_when_switched_back():
    """should_flush_tlb: a lazy CPU gets no IPI; switch_mm_irqs_off (prev == next,
    was_lazy, tlb_gen behind) flushes when it comes back."""
    m, p, t = two_cpu_threads()
    a = anon(p, 16)
    p.touch(a, 16 * P, write=True)
    t.touch(a, 16 * P)
    m.schedule(None, cpu=1)                        # CPU 1 idle: lazy, still on p's mm
    ts1 = m.k.cpus[1].tlbstate
    assert ts1.is_lazy and ts1.loaded_mm is p.mm
    recv = stat(m, 1, "ipi_received")
    p.munmap(a, P)                                 # no page table freed
    assert stat(m, 1, "ipi_received") == recv
    assert stat(m, 1, "lazy_skipped") == 1
    flushes = stat(m, 1, "flush_on_switch")
    m.schedule(t, cpu=1)
    assert stat(m, 1, "flush_on_switch") == flushes + 1
    with pytest.raises(vmsim.SignalDelivered):
        t.read(a, 1)


def test_lazy_cpu_gets_the_ipi_when_page_tables_are_freed():
    m, p, t = two_cpu_threads()
    a = p.mmap(0, 4 << 20, RW, PRIV)
    b = (a + (2 << 20) - 1) & ~((2 << 20) - 1)
    p.touch(b, 2 << 20, write=True)
    t.touch(b, P)
    m.schedule(None, cpu=1)
    recv = stat(m, 1, "ipi_received")
    p.munmap(b, 2 << 20)                           # the PTE table goes: freed_tables
    assert stat(m, 1, "ipi_received") == recv + 1
    assert m.k.cpus[1].tlbstate.loaded_mm is m.k.init_mm   # flush_tlb_func: lazy -> init_mm


def test_pcid_keeps_a_switched_out_process_entries():
    for pcid, expect_hits in ((True, True), (False, False)):
        m = machine(cpus=1, pcid=pcid)
        p = m.spawn(cpu=0)
        q = m.spawn(cpu=0)
        a = anon(p, 8)
        p.touch(a, 8 * P, write=True)
        b = anon(q, 8)
        q.touch(b, 8 * P, write=True)
        m.schedule(p, cpu=0)
        before = stat(m, 0, "misses")
        p.touch(a, 8 * P)
        assert (stat(m, 0, "misses") == before) == expect_hits, pcid


def test_seventh_mm_on_a_cpu_evicts_an_asid():
    """TLB_NR_DYN_ASIDS = 6: init_mm holds ASID 0 from boot, next_asid round robin 1..5
    then 0; the 7th user mm takes ASID 1 from the first, which then needs a flush."""
    m = machine(cpus=1)
    procs, addrs = [], []
    for _ in range(7):
        p = m.spawn(cpu=0)
        procs.append(p)
        a = anon(p, 2)
        p.touch(a, 2 * P, write=True)
        addrs.append(a)
    ts = m.k.cpus[0].tlbstate
    assert [pr.mm.ctx_id in [c[0] for c in ts.ctxs] for pr in procs] == [False] + [True] * 6
    assert ts.loaded_mm_asid == 1                  # the 7th got ASID 1 back
    m.schedule(procs[2], cpu=0)                    # still cached: no flush
    miss = stat(m, 0, "misses")
    procs[2].touch(addrs[2], 2 * P)
    assert stat(m, 0, "misses") == miss
    new = stat(m, 0, "asid_new")
    m.schedule(procs[0], cpu=0)
    assert stat(m, 0, "asid_new") == new + 1
    miss = stat(m, 0, "misses")
    procs[0].touch(addrs[0], 2 * P)
    assert stat(m, 0, "misses") == miss + 2


def test_pti_defers_the_user_pcid_flush_without_invpcid():
    """native_flush_tlb_one_user with PTI: INVPCID flushes the user PCID at once; without
    it, invalidate_user_asid marks it and SWITCH_TO_USER_CR3 flushes on return."""
    for invpcid in (True, False):
        m = machine(cpus=1, pti=True)
        m.k.invpcid = invpcid
        p = m.spawn()
        a = anon(p, 8)
        p.touch(a, 8 * P, write=True)
        pc = m.k.tlb.cur_pcid[0]
        assert pc == K.user_pcid(m.k.cpus[0].tlbstate.loaded_mm_asid)
        before = stat(m, 0, "user_pcid_flush")
        p.munmap(a, P)
        p.touch(a + P, P)
        assert (stat(m, 0, "user_pcid_flush") - before) == (0 if invpcid else 1)
        with pytest.raises(vmsim.SignalDelivered):
            p.read(a, 1)


def test_pti_kernel_mappings_are_not_global():
    for pti in (False, True):
        m = machine(cpus=1, pti=pti)
        k = m.k
        pool, rows = k.ptpool.mv, k.mem.private
        e = pool[k.init_mm.pgd_ptr + ((k.page_offset >> 39) & 511)]
        pud = pool[rows[(e & 0x000FFFFFFFFFF000) >> 12] * 512]
        assert bool(pud & 0x100) == (not pti)


def test_arch_tlbbatch_flush_is_a_full_flush_on_the_batch_cpus():
    m, p, t = two_cpu_threads()
    a = anon(p, 4)
    p.touch(a, 4 * P, write=True)
    t.touch(a, 4 * P)
    k = m.k
    b = K.arch_tlbflush_unmap_batch()
    K.arch_tlbbatch_add_pending(b, p.mm, a, a + P)
    assert b.cpumask == {0, 1}
    k.current = p.task
    full = stat(m, 1, "flush_all_local")
    K.arch_tlbbatch_flush(k, b)
    assert stat(m, 1, "flush_all_local") == full + 1 and b.cpumask == set()


# --- threads ---------------------------------------------------------------------------
def test_thread_shares_the_mm_and_its_exit_leaves_it_alive():
    m, p, t = two_cpu_threads()
    assert t.mm is p.mm and p.mm.mm_users == 2
    a = anon(t, 1)
    t.write(a, b"hi")
    assert p.read(a, 2) == b"hi"
    t.exit_thread(0)
    assert p.mm.mm_users == 1 and p.read(a, 2) == b"hi"
    assert t.pid not in m.k.tasks                  # exit_signal -1: autoreaped
    assert m.k.cpus[1].tlbstate.is_lazy            # its CPU went idle, lazily on the mm


def test_fork_from_a_thread_and_exit_group():
    m, p, t = two_cpu_threads()
    a = anon(p, 2)
    p.write(a, b"x")
    c = t.fork(cpu=0)
    assert c.read(a, 1) == b"x" and c.mm is not p.mm
    p.exit(3)
    assert p.task.state == "Z" or p.pid not in m.k.tasks
    assert t.task.state != "R"
    assert all(cpu.tlbstate.loaded_mm is not p.task.mm for cpu in m.k.cpus if p.task.mm)


def test_vmsim_run_prints_the_geometry_and_json_has_it(tmp_path):
    import json
    import subprocess
    import sys
    scen = tmp_path / "s.py"
    scen.write_text("p = machine.spawn(cpu=0)\nt = p.clone_thread(cpu=1)\n"
                    "a = p.mmap(0, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)\n"
                    "p.touch(a, 65536, write=True)\nt.touch(a, 65536)\np.munmap(a, 4096)\n")
    import os
    env = dict(os.environ, VMSIM_NUMBA="0")      # a few accesses: no compile needed
    run = lambda *a: subprocess.run([sys.executable, "-m", "vmsim.cli", *a], capture_output=True,
                                    text=True, env=env)
    r = run("run", "--no-paths", "--tlb", "skylake", str(scen))
    assert r.returncode == 0, r.stderr
    assert "TLB skylake: L1 iTLB 128 8-way (4K)" in r.stdout
    assert "CPU 1: 16 hits" not in r.stdout and "1 received" in r.stdout
    r = run("run", "--json", "--no-paths", "--tlb", "zen4", str(scen))
    d = json.loads(r.stdout)["tlb"]
    assert d["name"] == "zen4" and d["L1 dTLB"] == {"entries": 72, "ways": "full",
                                                   "page_sizes": ["4K", "2M", "1G"]}
    assert d["cpus"][1]["ipi_received"] == 1
    assert json.loads(run("run", "--json", "--no-paths", str(scen)).stdout)["tlb"] is None


def test_munmap_loop_shootdowns_as_measured_on_linux():
    """This machine (Linux 6.18, 2 vCPUs), bench/native_shootdown.c under SCHED_FIFO:
    5000 munmaps by thread A on CPU 0 gave CPU 1 exactly 5000 "TLB shootdowns" while
    thread B kept running in the mm there, and 37 (other processes' and B's wake-ups)
    while B slept. vmsim: one IPI per munmap to the busy CPU, none to the idle (lazy) one."""
    for busy in (True, False):
        m, p, t = two_cpu_threads()
        r = anon(p, 4)
        p.touch(r, 4 * P, write=True)
        t.touch(r, 4 * P)
        if not busy:
            m.schedule(None, cpu=1)
        before = stat(m, 1, "ipi_received")
        for _ in range(50):
            a = anon(p, 1)
            p.write(a, b"x")
            p.munmap(a, P)
        assert stat(m, 1, "ipi_received") - before == (50 if busy else 0)


def test_hugetlb_unmap_is_one_pmd_stride_and_uses_2m_entries():
    """tlb_flush: a gather that cleared only PMD-level entries flushes in PMD strides
    (tlb_get_unmap_shift), so a 2 MiB hugetlb munmap is one INVLPG, not 512."""
    from vmsim import MAP_HUGETLB
    m, p, t = two_cpu_threads()
    m.write_file("/proc/sys/vm/nr_hugepages", "2")
    a = p.mmap(0, 2 << 20, RW, PRIV | MAP_HUGETLB)
    p.touch(a, 2 << 20, write=True)
    t.touch(a, 2 << 20)
    assert m.tlb_stats()[1]["hits"].get("L1 dTLB 2M 2M", 0) == 511     # one walk, 511 hits
    one, full = vmstat(m, "nr_tlb_local_flush_one"), vmstat(m, "nr_tlb_local_flush_all")
    p.munmap(a, 2 << 20)
    assert vmstat(m, "nr_tlb_local_flush_one") - one == 1
    assert vmstat(m, "nr_tlb_local_flush_all") == full
    with pytest.raises(vmsim.SignalDelivered):
        t.read(a, 1)


@pytest.mark.parametrize("advice", [8, 20])                     # MADV_FREE, MADV_COLD
def test_madvise_of_a_young_huge_pmd_flushes_twice(advice):
    """madvise_free_huge_pmd / madvise_cold_or_pageout_pte_range on a young whole THP:
    pmdp_invalidate() flushes at once through flush_pmd_tlb_range(), which on x86 is
    flush_tlb_range() in 4 KiB strides (512 pages > 33: a full flush), then
    tlb_remove_pmd_tlb_entry() sets cleared_pmds, so tlb_finish_mmu's flush goes in PMD
    strides: one INVLPG (include/linux/pgtable.h, include/asm-generic/tlb.h)."""
    m = machine(cpus=1)
    p = m.spawn()
    a = p.mmap(0, 2 << 20, RW, PRIV)
    p.madvise(a, 2 << 20, 14)                                   # MADV_HUGEPAGE
    p.touch(a, 2 << 20, write=True)
    assert vmstat(m, "nr_anon_transparent_hugepages") == 1
    one, full = vmstat(m, "nr_tlb_local_flush_one"), vmstat(m, "nr_tlb_local_flush_all")
    p.madvise(a, 2 << 20, advice)
    assert vmstat(m, "nr_tlb_local_flush_all") - full == 1
    assert vmstat(m, "nr_tlb_local_flush_one") - one == 1
    p.read(a, 1)                                                # a fresh walk finds the PMD


def test_mprotect_of_a_huge_pmd_flushes_in_pmd_strides():
    """change_huge_pmd(): huge_pmd_needs_flush() then tlb_flush_pmd_range(), so the
    gather flushes one PMD stride (one INVLPG), not 512 pages (a full flush)."""
    m = machine(cpus=1)
    p = m.spawn()
    a = p.mmap(0, 2 << 20, RW, PRIV)
    p.madvise(a, 2 << 20, 14)                                   # MADV_HUGEPAGE
    p.touch(a, 2 << 20, write=True)
    one, full = vmstat(m, "nr_tlb_local_flush_one"), vmstat(m, "nr_tlb_local_flush_all")
    p.mprotect(a, 2 << 20, PROT_READ)
    assert vmstat(m, "nr_anon_transparent_hugepages") == 1
    assert vmstat(m, "nr_tlb_local_flush_one") - one == 1
    assert vmstat(m, "nr_tlb_local_flush_all") == full
    with pytest.raises(vmsim.SignalDelivered):
        p.write(a, b"x")


def test_flush_tlb_range_reaches_a_lazy_cpu():
    """x86's flush_tlb_range() passes freed_tables = true (it is used when normal PMDs
    are zapped), so native_flush_tlb_multi() IPIs CPUs in lazy TLB mode too; a munmap's
    gathered flush without freed tables skips them (should_flush_tlb)."""
    m, p, t = two_cpu_threads()
    src = anon(p, 512, addr=0x40000000)
    p.touch(src, 512 * P, write=True)
    t.touch(src, P)
    m.schedule(None, cpu=1)                                     # CPU 1 goes lazy
    before = stat(m, 1, "ipi_received")
    a = anon(p, 1)
    p.write(a, b"x")
    p.munmap(a, P)
    assert stat(m, 1, "ipi_received") == before
    # mremap of a whole PMD moves the table (move_normal_pmd: flush_tlb_range), then
    # unmapping the old range frees its emptied PMD table (freed tables): two IPIs.
    p.mremap(src, 512 * P, 512 * P, 3, 0x80000000)              # MAYMOVE | FIXED
    assert stat(m, 1, "ipi_received") == before + 2


def test_thread_shares_the_descriptor_table():
    """CLONE_FILES: a descriptor opened by one thread is the other's too."""
    m, p, t = two_cpu_threads()
    assert m.k.task_files[t.pid] is m.k.task_files[p.pid]


@pytest.mark.parametrize("pcid", [True, False])
def test_round_robin_run_keeps_entries_only_with_pcid(pcid):
    """m.run: two processes on one CPU in turn, a slice of one operation each, so six
    context switches. With PCID each keeps its ASID (ctxs[], NOFLUSH CR3 writes) and every
    read hits its TLB; without PCID every CR3 write flushes, and every read walks.
    When the work is done the CPU goes idle, lazily keeping the last mm."""
    m = vmsim.Machine(memory="1G", cpus=2, tlb="skylake", pcid=pcid)
    p, q = m.spawn(cpu=0), m.spawn(cpu=0)
    a = p.mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    b = q.mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    p.write(a, b"p")
    q.write(b, b"q")
    before = m.tlb_stats()[0]
    order = []
    n = m.run({p: [lambda: order.append(p.read(a, 1))] * 3,
               q: [lambda: order.append(q.read(b, 1))] * 3})
    after = m.tlb_stats()[0]
    assert n == 6 and order == [b"p", b"q"] * 3
    assert after["walks"] - before["walks"] == (0 if pcid else 6)
    assert after["is_lazy"] and m.k.cpus[0].curr is None
    with pytest.raises(ValueError):
        m.run({p: []}, time_slice=0)


def test_round_robin_slices_and_cpus():
    """A slice of two operations: a task runs two in a row; tasks on another CPU take
    their turns a slice at a time alongside."""
    m = vmsim.Machine(memory="1G", cpus=2)
    p, q, r = m.spawn(cpu=0), m.spawn(cpu=0), m.spawn(cpu=1)
    seen = []

    def op(who):
        return lambda: seen.append((who, m.k.cpus[0].curr.pid if m.k.cpus[0].curr else None))
    m.run({p: [op("p")] * 3, q: [op("q")] * 2, r: [op("r")] * 2}, time_slice=2)
    assert [w for w, _ in seen] == ["p", "p", "r", "r", "q", "q", "p"]
    assert all(cur == {"p": p.pid, "q": q.pid}[w] for w, cur in seen if w != "r")


# --- an independent model of the data side: the layout and the probe shortcuts change nothing
class _SetLRU:
    """One set-associative structure as the SDM describes it: per set, its tags in order
    of use (the least recently used first)."""

    def __init__(self, entries, ways):
        ways = ways or entries
        self.sets, self.ways = entries // ways, ways
        self.s = [[] for _ in range(self.sets)]

    def probe(self, tag, size=12):
        st = self.s[tag % self.sets]
        if (tag, size) in st:
            st.remove((tag, size))
            st.append((tag, size))
            return True
        return False

    def fill(self, tag, size=12):
        st = self.s[tag % self.sets]
        if len(st) == self.ways:
            st.pop(0)
        st.append((tag, size))


def _oracle(geom, trace, leaf_shift):
    """Hits per (structure, page size), misses, walks, entries read and paging-structure
    cache hits of the data-side lookups of ``trace`` (addresses), from an empty TLB,
    leaf_shift(va) giving the page size (12 or 21) of each page."""
    g = geom.structs
    l1 = {12: ("L1 dTLB 4K", _SetLRU(*g[T.S_L1D_4K][:2])), 21: ("L1 dTLB 2M 2M", _SetLRU(*g[T.S_L1D_2M][:2]))}
    l2 = _SetLRU(*g[T.S_L2][:2])                     # one STLB for 4K and 2M entries
    psc = {39: _SetLRU(*g[T.S_PML4E][:2]), 30: _SetLRU(*g[T.S_PDPTE][:2]), 21: _SetLRU(*g[T.S_PDE][:2])}
    hits, misses, walks, reads, done = {}, 0, 0, 0, {}
    psc_hits = {39: 0, 30: 0, 21: 0}
    for va in trace:
        sh = leaf_shift(va)
        # An L1 lookup probes every L1 data structure (4K first); the L2 holds both sizes.
        name, s1 = l1[sh]
        if s1.probe(va >> sh):
            hits[name] = hits.get(name, 0) + 1
            continue
        if l2.probe(va >> sh, sh):
            name = "L2 TLB " + ("4K" if sh == 12 else "2M")
            hits[name] = hits.get(name, 0) + 1
            s1.fill(va >> sh)
            continue
        misses += 1
        walks += 1
        done[sh] = done.get(sh, 0) + 1
        start = 48
        for lv in (21, 30, 39):                      # the PDE cache first (SDM 4.10.3.2)
            if psc[lv].probe(va >> lv):
                psc_hits[lv] += 1
                start = lv
                break
        level = start - 9
        while True:
            reads += 1
            if level == sh:
                break
            if level in psc:
                psc[level].fill(va >> level)
            level -= 9
        l2.fill(va >> sh, sh)
        s1.fill(va >> sh)
    return hits, misses, walks, reads, psc_hits, done


@pytest.mark.parametrize("preset", ["golden-cove", pytest.param("skylake", marks=pytest.mark.slow)])
def test_random_reads_and_writes_match_an_independent_lru_model(preset):
    """Hits per structure and page size, misses, walks, entries read and paging-structure
    cache hits of a random trace over 4K pages in 46 PDEs, 7 PDPTEs, 2 PML4Es and 2M pages,
    from an empty TLB, are those of a plain set-associative LRU model of the SDM's lookup
    and walk order written here (the TLB layout and vmsim's probe shortcuts must not
    change them)."""
    m = vmsim.Machine(memory="1G", cpus=1, tlb=preset, debug_vm=False)
    m.write_file("/sys/kernel/mm/transparent_hugepage/enabled", "madvise")
    p = m.spawn()
    rng = np.random.default_rng(7)
    small = p.mmap(0, 80 << 20, RW, PRIV)
    # Another PML4E, with 6 GiB-apart areas: more PDPTEs than the PDPTE cache holds.
    far = [p.mmap(0x100000000000 + (i << 30), 64 * P, RW, PRIV | MAP_FIXED) for i in range(6)]
    big = p.mmap(0, 12 << 20, RW, PRIV)
    hb = (big + (2 << 20) - 1) & ~((2 << 20) - 1)
    p.madvise(hb, 8 << 20, 14)                                          # MADV_HUGEPAGE
    pages = np.concatenate([small + rng.choice(80 << 8, 1000, replace=False) * P,
                            *(f + np.arange(64) * P for f in far)])
    p.access(pages, np.ones(len(pages), np.uint8))
    p.access(hb + np.arange(4) * (2 << 20), np.ones(4, np.uint8))
    hot = rng.choice(pages, 40)
    n = 3000
    pick = rng.random(n)
    addrs = np.where(pick < 0.5, rng.choice(pages, n), np.where(pick < 0.8, rng.choice(hot, n),
                     hb + rng.integers(0, 8 << 20, n)))
    addrs = (addrs & ~0xFFF) + rng.integers(0, P, n)
    huge = {int(hb + i * (2 << 20)) >> 21 for i in range(4)}
    assert all(m.k.ptpool.mv[pte_index(m, p, int(x))] & 0x80 for x in hb + np.arange(4) * (2 << 20))
    k = m.k
    k.tlb._flush_all(0)
    before = k.tlb.stats[0].copy()
    p.access(addrs.astype(np.int64), rng.integers(0, 2, n).astype(np.uint8))
    st = (k.tlb.stats[0] - before).tolist()
    hits, misses, walks, reads, psc, done = _oracle(k.tlb.geometry, addrs.tolist(),
                                              lambda va: 21 if va >> 21 in huge else 12)
    got = {f"{T.STRUCT_NAMES[s]} {T.SIZE_NAMES[sc]}": st[T.ST_HIT + 3 * s + sc]
           for s in range(T.S_PML4E) for sc in range(3) if st[T.ST_HIT + 3 * s + sc]}
    assert got == hits
    assert sum(hits.values()) + misses == n and hits["L1 dTLB 2M 2M"] and hits["L2 TLB 4K"]
    assert (st[T.ST_MISS], st[T.ST_WALK], st[T.ST_WALK_READS]) == (misses, walks, reads)
    assert [st[T.ST_PSC_HIT + i] for i in range(3)] == [psc[39], psc[30], psc[21]]
    assert psc[39] and psc[30] and psc[21]
    # Every walk here completes: per page size, the misses of the last TLB level.
    assert [st[T.ST_WALK_DONE + sc] for sc in range(3)] == [done.get(12, 0), done.get(21, 0), 0]
    assert done[12] and done[21]
    assert m.tlb_stats()[0]["walks_completed"]["2M"] >= done[21]


# --- p.access through the TLB: the compiled chunk loop against the same code as Python ---
_GEOMETRIES = ["golden-cove", "skylake", "zen3", "zen4",
               {"L1 dTLB": (12, 3), "L2 TLB": (40, 5), "L1 dTLB 2M": (4, 0), "PDE cache": (6, 3),
                "PDPTE cache": (2, 0), "PML4E cache": (2, 0), "L1 iTLB": (8, 2)}]


def _replay_case(i, n, compiled):
    """Random traces (hot pages, random pages, runs in a page; reads, stores, fetches of
    1-64 bytes) through p.access on one or two CPUs (a thread), with PCID on or off, the
    stale-TLB checker on or off, THP always or never, and an mprotect or MADV_DONTNEED
    between the calls; signals are taken and the trace goes on past them. Returns per
    call: the signals, the TLB arrays, the tables, mem_map's private words, min_flt."""
    from vmsim.arch.x86 import cpu as _cpu
    r = np.random.default_rng(100 + i)
    _cpu._use_compiled(compiled)
    try:
        m = vmsim.Machine("256M", cpus=2, tlb=_GEOMETRIES[i % len(_GEOMETRIES)], pcid=bool(i & 1),
                          debug_vm=False)
        m.k.tlb_check = bool(i & 2)
        m.write_file("/sys/kernel/mm/transparent_hugepage/enabled", "always" if i & 4 else "never")
        p = m.spawn(cpu=0)
        tasks = [p, p.clone_thread(cpu=1)] if i & 8 else [p]
        a = p.mmap(0, 16 << 20, RW, PRIV)
        b = p.mmap(0, 3 << 20, RW | vmsim.PROT_EXEC, PRIV)
        k, hw = m.k, m.k.tlb
        out = []
        for step in range(6):
            t = tasks[step % len(tasks)]
            pages = np.concatenate([r.integers(0, 4096, n // 2), r.choice(r.integers(0, 4096, 40), n // 4),
                                    np.repeat(r.integers(0, 4096, n // 32), 8)])
            r.shuffle(pages)
            addrs = (a + pages * P + r.integers(0, P, len(pages))).astype(np.int64)
            code = r.random(len(pages)) < 0.1
            addrs[code] = b + r.integers(0, 3 << 20, code.sum())
            kinds = r.choice([0, 0, 0, 1, 2], len(pages)).astype(np.uint8)
            kinds[~code & (kinds == 2)] = 0
            sizes = r.choice([1, 1, 1, 8, 64], len(pages))
            sig = []
            j = 0
            while j < len(addrs) and len(sig) < 40:
                try:
                    t.access(addrs[j:], kinds[j:], sizes[j:], value=step % 2)
                    break
                except vmsim.SignalDelivered as e:
                    sig.append((j + e.index, e.signo))
                    j += e.index + 1
            at = a + int(r.integers(0, 4000)) * P
            if step % 3 == 0:
                p.mprotect(at, 64 * P, PROT_READ)
            elif step % 3 == 1:
                p.madvise(at, 64 * P, 4)                            # MADV_DONTNEED
            else:
                p.mprotect(a, 16 << 20, RW)
            if len(tasks) == 2 and step == 3:
                m.schedule(None, cpu=1)
            out.append((sig, hw.ent.tobytes(), hw.clock.tobytes(), hw.stats.tobytes(), hw.bad.tobytes(),
                        k.ptpool.arr[:k.ptpool.used * 512].tobytes(), k.mem.np_private.tobytes(),
                        t.task.min_flt))
        m.check()
        return out
    finally:
        _cpu._default()


def test_geometry_build_runs_when_cached_or_when_the_generic_loop_paid_for_it(monkeypatch):
    """mmu_batch._impl: the generic TLB loop below _GEOMETRY_LOAD_AFTER accesses; past
    it the geometry's own build if numba's cache has it, else only once the generic
    loop spent _GEOMETRY_COMPILE_AFTER seconds on that geometry (nothing compiles here:
    the loops are not called)."""
    pytest.importorskip("numba")
    from vmsim.arch.x86 import cpu as _cpu, mmu_batch
    geo = vmsim.Machine("64M", tlb="skylake", debug_vm=False).k.tlb.geo
    monkeypatch.setattr(mmu_batch, "_geometry_work", {})
    monkeypatch.setattr(mmu_batch, "_GEOMETRY_LOAD_AFTER", 1000)
    monkeypatch.setattr(mmu_batch, "_GEOMETRY_COMPILE_AFTER", 5.0)
    cached = [False]
    monkeypatch.setattr(mmu_batch, "_cached", lambda fn: cached[0])
    _cpu._use_compiled(True)
    try:
        generic = mmu_batch._build(True, True)
        own = mmu_batch._build(True, True, geo)
        assert own is not generic
        fn, compiled, work = mmu_batch._impl(True, geo, 999)
        assert fn is generic and compiled and work == [999, 0.0]
        work[1] += 4.0                             # run_accesses adds the loop's time
        cached[0] = True
        assert mmu_batch._impl(True, geo, 0)[0] is generic      # 999 < 1000 accesses
        assert mmu_batch._impl(True, geo, 1)[:3] == (own, True, None)
        cached[0] = False
        assert mmu_batch._impl(True, geo, 1)[0] is generic      # 4 s < 5 s, not cached
        work[1] += 1.0
        assert mmu_batch._impl(True, geo, 1)[0] is own
        other = vmsim.Machine("64M", tlb="zen4", debug_vm=False).k.tlb.geo
        assert mmu_batch._impl(True, other, 10 ** 6)[0] is generic   # per geometry
    finally:
        _cpu._default()


@pytest.mark.slow
@pytest.mark.parametrize("case", range(16))
def test_replay_through_the_tlb_compiled_matches_python(case, monkeypatch):
    """mmu_batch's TLB builds (the generic one, and from case 8 on the geometry's own,
    tlb.compiled(geo); the TLB functions inlined, the repeat shortcut, with the checker
    too) leave exactly the state the plain-Python run leaves."""
    pytest.importorskip("numba")
    from vmsim.arch.x86 import mmu_batch
    py = _replay_case(case, 1500, False)
    if case >= 8:
        monkeypatch.setattr(mmu_batch, "_GEOMETRY_LOAD_AFTER", 0)
        monkeypatch.setattr(mmu_batch, "_GEOMETRY_COMPILE_AFTER", 0.0)
    nb = _replay_case(case, 1500, True)
    if case >= 8:                   # cases 8-12 take the five geometries
        geo = vmsim.Machine("64M", tlb=_GEOMETRIES[case % len(_GEOMETRIES)], debug_vm=False).k.tlb.geo
        assert (True, True, T._geometry_key(geo)) in mmu_batch._builds
    assert [x[0] for x in py] == [x[0] for x in nb]
    assert any(x[0] for x in py)                                    # signals met
    for x, y in zip(py, nb):
        assert x == y
