"""The hardware MMU: the page walk, Accessed/Dirty updates and the #PF error code.

This is the processor, not the kernel (Intel SDM vol. 3, 4.5 "4-level and 5-level
paging", 4.6 "access rights", 4.7 "page-fault exceptions", 4.8 "accessed and dirty").
Everything here is arrays and ints only, in the subset numba compiles: entries are
int64 (NX is the sign bit), table rows are found through mem_map.private. The same
functions run as plain Python over memoryviews; :func:`compiled` returns numba builds
of them, and the tests check that both give identical results.

Addresses are passed as int64 (kernel-half addresses negative, see cpu._s64).
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
from vmsim.mm.page_data import _store

_P = 1
_RW = 2
_US = 4
_A = 0x20
_D = 0x40
_PS = 0x80
_XD = -0x8000000000000000          # bit 63 (execute disable) of an int64 entry
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
    return _walk(pt, rows, rows[cr3_pfn], 48 if la57 else 39, addr, access, pkru, _RW | _US)[0]


def _walk(pt, rows, row, shift, addr, access, pkru, rights):
    """The walk of translate() from the table in pool row ``row``, whose entries map
    1 << ``shift`` bytes, below entries granting ``rights`` (their R/W and U/S ANDed,
    XD ORed into bit 63). Returns (translate's result, the PMD table's row and rights,
    the PTE table's row and rights), a row -1 when the walk did not descend to it."""
    pmd = pte = -1
    pmd_rights = pte_rights = 0
    while True:
        p = row * 512 + ((addr >> shift) & 511)
        e = pt[p]
        if not (e & _P):
            return ~access, pmd, pmd_rights, pte, pte_rights
        rights = (rights & (e | ~(_RW | _US))) | (e & _XD)
        if shift == 12 or (e & _PS and (shift == 21 or shift == 30)):
            if (access & _ERR_USER) and not (rights & _US):
                return ~(access | _ERR_PROT), pmd, pmd_rights, pte, pte_rights
            err = access
            if (access & _ERR_WRITE) and not (rights & _RW):
                err |= _ERR_PROT
            if (access & _ERR_INSTR) and rights < 0:
                err |= _ERR_PROT
            if pkru and (rights & _US) and not (access & _ERR_INSTR):
                # The key is checked with the other rights; its violation adds PK.
                sh = ((e >> 59) & 15) * 2
                if (pkru >> sh) & 1 or ((access & _ERR_WRITE) and (pkru >> (sh + 1)) & 1):
                    err |= _ERR_PROT | _ERR_PK
            if err != access:
                return ~err, pmd, pmd_rights, pte, pte_rights
            if access & _ERR_WRITE:
                if (e & (_A | _D)) != (_A | _D):
                    pt[p] = e | _A | _D
            elif not (e & _A):
                pt[p] = e | _A
            mask = (1 << shift) - 1
            return ((e & _PFN) & ~mask) | (addr & mask), pmd, pmd_rights, pte, pte_rights
        if not (e & _A):
            pt[p] = e | _A
        row = rows[(e & _PFN) >> 12]
        shift -= 9
        if shift == 21:
            pmd = row
            pmd_rights = rights
        elif shift == 12:
            pte = row
            pte_rights = rights


def _touch_batch(pt, rows, pool, cr3_pfn, la57, base, stride, count, i, access, value, out, pkru=0):
    """Run accesses base + k*stride for k in [i, count); return the k that stopped.

    Stops on a fault (out[0] = error code, out[1] = address) or on a store that needs
    a new page-data row (out[0] = -1, out[1] = physical address); returns ``count``
    when all completed. A store writes the byte ``value`` (page_data._store, into
    ``pool``, the page-data rows).
    """
    while i < count:
        addr = base + i * stride
        r = translate(pt, rows, cr3_pfn, la57, addr, access, pkru)
        if r < 0:
            out[0] = ~r
            out[1] = addr
            return i
        if access & _ERR_WRITE and not _store(rows, pool, r, 1, value):
            out[0] = -1
            out[1] = r
            return i
        i += 1
    return count


_compiled = None


def compiled():
    """Return (translate, _touch_batch) compiled by numba, cached in the user's cache folder.

    Each is rebuilt over globals in which the functions it calls are compiled ones
    (``_walk`` and ``_store`` inlined at numba's IR level), so no call goes back into
    Python.
    """
    global _compiled
    if _compiled is None:
        import types
        from vmsim._jitcache import _njit
        g = dict(translate.__globals__)
        g["_walk"] = _njit(_walk, nogil=True, inline="always", _nrt=False)
        g["_store"] = _njit(_store, nogil=True, inline="always", _nrt=False)
        tr = _njit(types.FunctionType(translate.__code__, g, "translate", translate.__defaults__),
                   nogil=True, _nrt=False)
        g["translate"] = tr
        tb = types.FunctionType(_touch_batch.__code__, g, "_touch_batch", _touch_batch.__defaults__)
        _compiled = (tr, _njit(tb, nogil=True, _nrt=False))
    return _compiled
