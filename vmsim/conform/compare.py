"""Observations derived from raw records (either side), and their comparison.

derive() turns the raw records of one run (executor.c output or vmsim_side.run())
into an ordered {key: value} of comparable observations: addresses become offsets
from named mappings, PFNs become relations (zero page, same frame as at an earlier
point, distinct), vmstat values become deltas. compare() pairs two such dicts.
"""
import errno as _errno

PAGE = 4096
PM_PFN = (1 << 55) - 1
PM_EXCL = 1 << 56
PM_FILE = 1 << 61
PM_SWAP = 1 << 62
PM_PRESENT = 1 << 63
SIGNAMES = {7: "SIGBUS", 11: "SIGSEGV", 9: "SIGKILL"}
CODES = {11: {1: "SEGV_MAPERR", 2: "SEGV_ACCERR", 4: "SEGV_PKUERR", 128: "SI_KERNEL"},
         7: {1: "BUS_ADRALN", 2: "BUS_ADRERR", 3: "BUS_OBJERR", 4: "BUS_MCEERR_AR", 128: "SI_KERNEL"}}
SKIPPED = object()


class RawError(Exception):
    """Raw records that cannot be derived (a crashed executor, a truncated recording)."""


class Range:
    """Linux's values of one observation over several recorded runs, min..max (a
    scenario's [varies] table says which and why); a value agrees when it lies within."""
    __hash__ = None

    def __init__(self, lo: int, hi: int):
        self.lo, self.hi = lo, hi

    def __eq__(self, other):
        if isinstance(other, Range):
            return (self.lo, self.hi) == (other.lo, other.hi)
        return isinstance(other, int) and not isinstance(other, bool) and self.lo <= other <= self.hi

    def __repr__(self):
        return f"{self.lo}..{self.hi}"

    __str__ = __repr__


def linux_runs(rec):
    """The raw runs of a recording: ``raw`` and, for a scenario with [varies], the
    further runs --record made (``more_runs``)."""
    return [rec["raw"]] + list(rec.get("more_runs", []))


def derive_runs(scn, runs):
    """derive() over one or several Linux runs of ``scn``: an observation the
    scenario's [varies] names becomes the Range of its values; every other one must be
    the same in every run (else the recording is not reproducible: RawError)."""
    obs, notes = derive(scn, runs[0])
    varies = scn.varies
    if varies is None:
        if len(runs) > 1:
            raise RawError(f"{len(runs)} runs recorded but the scenario has no [varies] table")
        return obs, notes
    if len(runs) < varies["runs"]:
        raise RawError(f"[varies] asks for {varies['runs']} Linux runs, {len(runs)} recorded: "
                       "re-record it with 'vmsim conform --record'")
    others = [derive(scn, r)[0] for r in runs[1:]]
    for key in varies["observations"]:
        if key not in obs:
            raise RawError(f"[varies] names {key!r}, which is not an observation of this scenario")
    for key in list(obs):
        vals = [obs[key]] + [o.get(key, "(absent)") for o in others]
        if key in varies["observations"]:
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
                raise RawError(f"[varies] names {key!r}, whose values {vals[:3]} are not counts")
            obs[key] = Range(min(vals), max(vals))
        elif any(v != vals[0] for v in vals[1:]):
            raise RawError(f"Linux's {len(runs)} runs disagree on {key!r} "
                           f"({', '.join(sorted({repr(v) for v in vals}))}), which [varies] does not name")
    notes.append(f"{len(runs)} runs; " + ", ".join(f"{k} {obs[k]}" for k in varies["observations"])
                 + f" ([varies]: {varies['reason']})")
    return obs, notes


def runs(tokens):
    """'Px.u*16 -...*4' from a token list."""
    out = []
    for t in tokens:
        if out and out[-1][0] == t:
            out[-1][1] += 1
        else:
            out.append([t, 1])
    return " ".join(t if n == 1 else f"{t}*{n}" for t, n in out) or "(none)"


def _errname(e):
    return _errno.errorcode.get(e, f"errno {e}")


def _u(v):
    """Executor values are printed signed: back to an unsigned 64-bit address."""
    return v & ((1 << 64) - 1)


def derive(scn, recs):
    """Return (observations {key: value or SKIPPED}, notes [str])."""
    notes = []
    hdr = next((r for r in recs if r.get("t") == "hdr"), None)
    if hdr is None:
        raise RawError("no header record")
    errs = [r for r in recs if r.get("t") == "error"]
    if errs:
        raise RawError(errs[0].get("msg", "executor error"))
    if not any(r.get("t") == "end" for r in recs):
        raise RawError("the run did not finish (no end record)")
    priv = bool(hdr.get("priv"))
    zero_pfn = hdr.get("zero_pfn", 0)
    if not priv:
        notes.append("unprivileged run: PFN relations (zero page, same frame) skipped; "
                     "knobs could not be set")
    addr = {}
    obs = {}
    pm_raw = {}           # (point, slot) -> entries
    vm_prev = None
    point = None
    for r in recs:
        t = r.get("t")
        if t == "step":
            kind, si, args = scn.ops[r["i"]]
            if si is None:        # a [settings] knob
                if r["err"]:
                    notes.append(f"setting {args[0]} = {args[1]} not applied "
                                 f"({_errname(r['err'])}): the Linux results are not for this scenario")
                    obs["settings"] = f"not applied: {args[0]}"
                continue
            st = scn.steps[si]
            lab = st.label
            res = "ok"
            if r["err"]:
                res = _errname(r["err"])
            elif kind == "mmap":
                slot, hs = args[0], args[4]
                addr[slot] = _u(r["ret"])
                if hs >= 0 and not args[3] & 0x10:
                    res = "ok, at hint" if _u(r["ret"]) == addr.get(hs, -1) + args[5] else "ok, not at hint"
                if args[6]:
                    res += ", aligned" if _u(r["ret"]) % args[6] == 0 else ", NOT aligned"
                rel, rng = st.place or (None, None)
                if rel is not None:
                    d = _u(r["ret"]) - addr.get(scn.slots[rel], 0)
                    res += f", at {rel}{d:+#x}"
                if rng is not None:
                    inside = rng[0] <= _u(r["ret"]) and _u(r["ret"]) + args[1] <= rng[1]
                    res += f", {'in' if inside else 'NOT in'} [{rng[0]:#x}, {rng[1]:#x})"
            elif kind == "mremap":
                slot, off = args[0], args[1]
                old = _u(r["base"]) + off
                new = _u(r["ret"])
                if args[5] >= 0:
                    res = "ok, at dest" if new == addr.get(args[5], -1) + args[6] else "ok, not at dest"
                else:
                    res = "ok, in place" if new == old else "ok, moved"
                if args[7] >= 0:
                    addr[args[7]] = new
            elif kind == "brk":
                res = f"brk = base{_u(r['ret']) - _u(r['base']):+#x}"
                if args[1] >= 0:
                    addr[args[1]] = _u(r["base"])
            elif kind == "touch":
                n = (args[2] + args[3] - 1) // args[3]
                res = f"{r['done']}/{n} accesses"
            elif kind == "fill":
                res = f"{r['done']}/{args[2]} bytes written"
            elif kind == "check":
                res = f"{r['done']}/{args[2]} bytes read, {r['ret']} differ"
            elif kind == "wait":
                res = f"ok, status {r['ret']}"
            elif kind == "prctl":
                res = f"ok, {r['ret']}"
            elif kind == "pwrite":
                res = f"{r['done']}/{args[2]} bytes written"
            elif kind == "pread":
                res = f"{r['done']}/{args[2]} bytes read, {r['ret']} differ"
            elif kind == "name":
                addr[args[0]] = _u(r["base"])
            obs[f"{lab}: result"] = res
            if r["nsig"]:
                s = r["signo"]
                sa = _u(r["saddr"])
                base = _u(r["base"])
                where = f"{sa:#x}"
                mname = st.t.get("map") if isinstance(st.t.get("map"), str) else None
                if kind == "brk":
                    mname = "brk_base"
                if base and mname and abs(sa - base) < (1 << 32):
                    where = f"{mname}{sa - base:+#x}"
                sig = f"{SIGNAMES.get(s, s)} {CODES.get(s, {}).get(r['code'], r['code'])} at {where}"
                if r["nsig"] > 1:
                    sig += f" (x{r['nsig']})"
            else:
                sig = "none"
            obs[f"{lab}: signal"] = sig
        elif t == "point":
            point = r["id"]
            obs[f"{point}: minflt"] = r["minflt"]
            obs[f"{point}: majflt"] = r["majflt"]
            st = _point_step(scn, point)
            for kind, slot, n, spec in (st.obs if st else []):
                if kind in ("smaps", "maps"):
                    rec = next((x for x in recs if x.get("t") == "smaps" and x["id"] == point
                                and x["slot"] == slot), None)
                    if rec is None:
                        continue
                    a0 = _u(rec["addr"])
                    if kind == "smaps":
                        for f in spec:
                            obs[f"{point}: smaps {n}.{f}"] = sum(v[3].get(f, 0) for v in rec["vmas"])
                    else:
                        obs[f"{point}: maps {n}"] = " ".join(
                            f"[{(_u(v[0]) - a0) // PAGE},{(_u(v[1]) - a0) // PAGE}) {v[2]}"
                            for v in rec["vmas"]) or "(none)"
                elif kind == "mincore":
                    rec = next((x for x in recs if x.get("t") == "mincore" and x["id"] == point
                                and x["slot"] == slot), None)
                    if rec is None:
                        continue
                    obs[f"{point}: mincore {n}"] = (_errname(rec["err"]) if rec["err"] else
                                                    runs("R" if c == "1" else "." for c in rec["v"]))
                else:
                    rec = next((x for x in recs if x.get("t") == "pagemap" and x["id"] == point
                                and x["slot"] == slot), None)
                    if rec is None:
                        continue
                    e = [_u(x) for x in rec["e"]]
                    pm_raw[(point, slot)] = e
                    obs[f"{point}: pagemap {n} bits"] = runs(
                        ("P" if x & PM_PRESENT else "S" if x & PM_SWAP else "-")
                        + ("f" if x & PM_FILE else ".") + ("x" if x & PM_EXCL else ".") for x in e)
                    key = f"{point}: pagemap {n} frames"
                    if not priv:
                        obs[key] = SKIPPED
                        continue
                    ref = None
                    if "ref" in spec:
                        ref = pm_raw.get((spec["ref"], scn.slots[spec.get("ref_map", n)]))
                        if ref is None:
                            obs[key] = f"no pagemap of {spec.get('ref_map', n)} at {spec['ref']}"
                            continue
                        key = f"{point}: pagemap {n} frames vs {spec.get('ref_map', n)}@{spec['ref']}"
                    obs[key] = runs(_frames(e, zero_pfn, ref))
        elif t == "vmstat":
            if vm_prev is not None:
                for k, v in r["v"].items():
                    if k in vm_prev:
                        obs[f"{r['id']}: vmstat {k} delta"] = v - vm_prev[k]
            vm_prev = r["v"]
    return obs, notes


def _point_step(scn, pid):
    for st in scn.steps:
        if st.op == "point" and st.t.get("id") == pid:
            return st
    return None


def _frames(e, zero_pfn, ref):
    pfns = [x & PM_PFN for x in e]
    count = {}
    for x, pfn in zip(e, pfns):
        if x & PM_PRESENT:
            count[pfn] = count.get(pfn, 0) + 1
    out = []
    for i, (x, pfn) in enumerate(zip(e, pfns)):
        if not x & PM_PRESENT:
            out.append(".")
        elif pfn == zero_pfn:
            out.append("Z")
        elif ref is not None:
            r = ref[i] if i < len(ref) else 0
            out.append("s" if r & PM_PRESENT and r & PM_PFN == pfn else "n")
        else:
            out.append("u" if count[pfn] == 1 else "d")
    return out


def compare(lobs, vobs):
    """[(key, linux, vmsim, status)] with status 'agree', 'DIFFER' or 'skipped'."""
    rows = []
    keys = list(lobs) + [k for k in vobs if k not in lobs]
    for k in keys:
        lv = lobs.get(k, "(absent)")
        vv = vobs.get(k, "(absent)")
        if lv is SKIPPED or vv is SKIPPED:
            rows.append((k, "(skipped)" if lv is SKIPPED else lv,
                         "(skipped)" if vv is SKIPPED else vv, "skipped"))
        else:
            rows.append((k, lv, vv, "agree" if lv == vv else "DIFFER"))
    return rows
