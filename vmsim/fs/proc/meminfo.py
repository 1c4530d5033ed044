"""/proc/meminfo (fs/proc/meminfo.c, mm/show_mem.c si_mem_available, arch/x86/mm/pat/set_memory.c).

The lines are the ones the reference machine prints, in its order. Values come from
the model: MemTotal is the managed pages, MemFree NR_FREE_PAGES (see
vmsim.fs.proc.vmstat), the LRU lines the node LRU counters, DirectMap* the leaves of
the direct map in init_mm's page tables. Kernel memory vmsim does not model (slab,
vmalloc, per-CPU areas, kernel stacks) is whatever k.vmstat says, i.e. 0.
"""
from vmsim.arch.x86 import pgtable_types as T
from vmsim.fs.proc import vmstat as PV
from vmsim.mm import vmstat as V
from vmsim.mm.mmap import vm_commit_limit

# VMALLOC_SIZE_TB (arch/x86/include/asm/pgtable_64_types.h); VMALLOC_END is inclusive.
VMALLOC_SIZE_TB_L4 = 32
VMALLOC_SIZE_TB_L5 = 12800
DIRECT_MAP_SIZE_L4 = 1 << 46          # MAX_PHYSMEM_BITS 46 / 52
DIRECT_MAP_SIZE_L5 = 1 << 52
HPAGE_PMD_NR = 512


def totalram_pages(k) -> int:
    return k.page_alloc._totalram_pages




def si_mem_available(k, zones=None) -> int:
    """si_mem_available(): free minus reserves, plus reclaimable page cache and slab."""
    zones = zones or PV.node_zones(k)
    v = k.vmstat
    wmark_low = sum(zv.watermark[1] for zv in zones)
    available = sum(PV._zone_nr_free_pages(zv.zone) for zv in zones) - PV.totalreserve_pages(zones)
    pagecache = v[V.NR_ACTIVE_FILE] + v[V.NR_INACTIVE_FILE]
    pagecache -= min(pagecache // 2, wmark_low)
    available += pagecache
    reclaimable = v[V.NR_SLAB_RECLAIMABLE] + v[V.NR_KERNEL_MISC_RECLAIMABLE]
    reclaimable -= min(reclaimable // 2, wmark_low)
    available += reclaimable
    return max(available, 0)


def direct_pages_count(k):
    """direct_pages_count[PG_LEVEL_4K/2M/1G]: leaves of the direct map in init_mm."""
    from vmsim.fs.proc.task_mmu import walk_page_range
    counts = {12: 0, 21: 0, 30: 0}

    def leaf(addr, end, shift, e):
        if e & T._PAGE_PRESENT and shift in counts:
            counts[shift] += 1

    size = DIRECT_MAP_SIZE_L5 if k.la57 else DIRECT_MAP_SIZE_L4
    walk_page_range(k.init_mm, k.page_offset, k.page_offset + size, leaf)
    return counts


def meminfo_proc_show(k) -> str:
    """meminfo_proc_show(): every line in the kernel's format ("%-16s%8lu kB")."""
    v = k.vmstat
    zones = PV.node_zones(k)
    free = sum(PV._zone_nr_free_pages(zv.zone) for zv in zones)
    swapcache = v[V.NR_SWAPCACHED]
    buffers = 0
    cached = max(v[V.NR_FILE_PAGES] - swapcache - buffers, 0)
    sreclaimable = v[V.NR_SLAB_RECLAIMABLE]
    sunreclaim = v[V.NR_SLAB_UNRECLAIMABLE]
    vmalloc_tb = VMALLOC_SIZE_TB_L5 if k.la57 else VMALLOC_SIZE_TB_L4
    dm = direct_pages_count(k)
    rows = [
        ("MemTotal", totalram_pages(k)), ("MemFree", free),
        ("MemAvailable", si_mem_available(k, zones)), ("Buffers", buffers), ("Cached", cached),
        ("SwapCached", swapcache),
        ("Active", v[V.NR_ACTIVE_ANON] + v[V.NR_ACTIVE_FILE]),
        ("Inactive", v[V.NR_INACTIVE_ANON] + v[V.NR_INACTIVE_FILE]),
        ("Active(anon)", v[V.NR_ACTIVE_ANON]), ("Inactive(anon)", v[V.NR_INACTIVE_ANON]),
        ("Active(file)", v[V.NR_ACTIVE_FILE]), ("Inactive(file)", v[V.NR_INACTIVE_FILE]),
        ("Unevictable", v[V.NR_UNEVICTABLE]), ("Mlocked", v[V.NR_MLOCK]),
        ("SwapTotal", getattr(k, "total_swap_pages", 0)),
        ("SwapFree", getattr(k, "nr_swap_pages", 0)),
        ("Zswap", 0), ("Zswapped", 0),
        ("Dirty", v[V.NR_DIRTY]), ("Writeback", v[V.NR_WRITEBACK]),
        ("AnonPages", v[V.NR_ANON_PAGES]), ("Mapped", v[V.NR_MAPPED]), ("Shmem", v[V.NR_SHMEM]),
        ("KReclaimable", sreclaimable + v[V.NR_KERNEL_MISC_RECLAIMABLE]),
        ("Slab", sreclaimable + sunreclaim), ("SReclaimable", sreclaimable),
        ("SUnreclaim", sunreclaim),
    ]
    out = [f"{name + ':':<16}{val << 2:>8} kB\n" for name, val in rows]
    # KernelStack is kept in kB (NR_KERNEL_STACK_KB).
    out.append(f"{'KernelStack:':<16}{v[V.NR_KERNEL_STACK]:>8} kB\n")
    rows = [
        ("PageTables", v[V.NR_PAGE_TABLE_PAGES]), ("SecPageTables", v[V.NR_SEC_PAGE_TABLE_PAGES]),
        ("NFS_Unstable", 0), ("Bounce", 0), ("WritebackTmp", 0),
        ("CommitLimit", vm_commit_limit(k)), ("Committed_AS", k.committed_as),
    ]
    out += [f"{name + ':':<16}{val << 2:>8} kB\n" for name, val in rows]
    out.append(f"{'VmallocTotal:':<16}{((vmalloc_tb << 40) - 1) >> 10:>8} kB\n")
    rows = [
        ("VmallocUsed", 0), ("VmallocChunk", 0), ("Percpu", 0),
        ("AnonHugePages", v[V.NR_ANON_TRANSPARENT_HUGEPAGES]),
        ("ShmemHugePages", v[V.NR_SHMEM_HUGEPAGES]), ("ShmemPmdMapped", v[V.NR_SHMEM_PMDMAPPED]),
        ("FileHugePages", v[V.NR_FILE_HUGEPAGES]), ("FilePmdMapped", v[V.NR_FILE_PMDMAPPED]),
        ("Balloon", v[V.NR_BALLOON_PAGES]),
    ]
    out += [f"{name + ':':<16}{val << 2:>8} kB\n" for name, val in rows]
    # hugetlb_report_meminfo()
    from vmsim.mm.hugetlb import hugetlb_report_meminfo
    out.append(hugetlb_report_meminfo(k))
    # arch_report_meminfo()
    out.append(f"DirectMap4k:    {dm[12] << 2:>8} kB\n")
    out.append(f"DirectMap2M:    {dm[21] << 11:>8} kB\n")
    out.append(f"DirectMap1G:    {dm[30] << 20:>8} kB\n")
    return "".join(out)
