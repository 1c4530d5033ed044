"""The hardware MMU: the page walk, Accessed/Dirty updates and the #PF error code.

This is the processor, not the kernel (Intel SDM vol. 3, 4.5 "4-level and 5-level
paging", 4.6 "access rights", 4.7 "page-fault exceptions", 4.8 "accessed and dirty").
Everything here is arrays and ints only, in the subset numba compiles: entries are
int64 (NX is the sign bit), table rows are found through mem_map.private. The same
functions run as plain Python over memoryviews; :func:`compiled` returns numba builds
of them, and the tests check that both give identical results.

Addresses are passed as int64 (kernel-half addresses negative, see cpu.s64).
Return convention: a translation returns the physical address (>= 0), or ``~err``
(< 0) where ``err`` is the #PF error code the CPU pushes; CR2 is the address.
Modelled: CR0.WP=1, CR4.SMEP/SMAP (user accesses only are generated), EFER.NXE=1,
large pages at PDPT and PD level, reserved-bit checks on bits 52..62 of non-leaf
entries when present (none are ever set by the kernel model), protection keys (SDM
4.6.2: a user-mode data access to a user page whose PTE key, bits 59..62, has AD set
in PKRU, or WD on a write, faults with PK|PROT; instruction fetches are exempt; the
caller passes PKRU 0 when CR4.PKE is clear). Not modelled: shadow stacks, the TLB
(translations are walked every time until the TLB issue).
"""

_P = 1
_RW = 2
_US = 4
_A = 0x20
_D = 0x40
_PS = 0x80
_PFN = 0x000FFFFFFFFFF000
_ERR_PROT = 1
_ERR_WRITE = 2
_ERR_USER = 4
_ERR_INSTR = 16
_ERR_PK = 32


def translate(pt, rows, cr3_pfn, la57, addr, access, pkru=0):
    """Return the physical address of ``addr`` for ``access`` (X86_PF_* bits), or ~err.

    ``pt`` is the table pool, ``rows`` mem_map.private (PFN -> pool row), ``pkru``
    the running task's PKRU. Accessed is set in each entry used, Dirty in the leaf on
    a write, as the CPU does.
    """
    if la57:
        shift = 48
    else:
        shift = 39
    row = rows[cr3_pfn]
    user_ok = 1
    write_ok = 1
    nx = 0
    while True:
        p = row * 512 + ((addr >> shift) & 511)
        e = pt[p]
        if not (e & _P):
            return ~access
        if not (e & _US):
            user_ok = 0
        if not (e & _RW):
            write_ok = 0
        if e < 0:
            nx = 1
        if shift == 12 or (e & _PS and (shift == 21 or shift == 30)):
            if (access & _ERR_USER) and not user_ok:
                return ~(access | _ERR_PROT)
            err = access
            if (access & _ERR_WRITE) and not write_ok:
                err |= _ERR_PROT
            if (access & _ERR_INSTR) and nx:
                err |= _ERR_PROT
            if pkru and user_ok and not (access & _ERR_INSTR):
                # The key is checked with the other rights; its violation adds PK.
                sh = ((e >> 59) & 15) * 2
                if (pkru >> sh) & 1 or ((access & _ERR_WRITE) and (pkru >> (sh + 1)) & 1):
                    err |= _ERR_PROT | _ERR_PK
            if err != access:
                return ~err
            if access & _ERR_WRITE:
                if (e & (_A | _D)) != (_A | _D):
                    pt[p] = e | _A | _D
            elif not (e & _A):
                pt[p] = e | _A
            if shift == 12:
                return (e & _PFN) | (addr & 0xFFF)
            mask = (1 << shift) - 1
            return ((e & _PFN) & ~mask) | (addr & mask)
        if not (e & _A):
            pt[p] = e | _A
        row = rows[(e & _PFN) >> 12]
        shift -= 9


def touch_batch(pt, rows, cr3_pfn, la57, base, stride, count, i, access, value, out, pkru=0):
    """Run accesses base + k*stride for k in [i, count); return the k that stopped.

    Stops on a fault (out[0] = error code, out[1] = address) or on a store the inline
    data encoding cannot hold (out[0] = -1, out[1] = physical address); returns
    ``count`` when all completed. A store writes the byte ``value`` (see page_data).
    """
    while i < count:
        addr = base + i * stride
        r = translate(pt, rows, cr3_pfn, la57, addr, access, pkru)
        if r < 0:
            out[0] = ~r
            out[1] = addr
            return i
        if access & _ERR_WRITE:
            pfn = r >> 12
            off = r & 0xFFF
            h = rows[pfn]
            if h == 0:
                if value != 0:
                    rows[pfn] = off | (1 << 12) | (value << 15)
            elif h > 0 and (h & 0xFFF) == off and ((h >> 12) & 7) == 1:
                if value != 0:
                    rows[pfn] = off | (1 << 12) | (value << 15)
                else:
                    rows[pfn] = 0
            else:
                out[0] = -1
                out[1] = r
                return i
        i += 1
    return count


_compiled = None


def compiled():
    """Return (translate, touch_batch) compiled by numba, cached in the user's cache folder.

    touch_batch is rebuilt over globals in which ``translate`` is the compiled one, so
    numba inlines the walk instead of calling back into Python.
    """
    global _compiled
    if _compiled is None:
        import types
        from vmsim._jitcache import _njit
        tr = _njit(translate, nogil=True)
        g = dict(translate.__globals__)
        g["translate"] = tr
        tb = types.FunctionType(touch_batch.__code__, g, "touch_batch")
        _compiled = (tr, _njit(tb, nogil=True))
    return _compiled
