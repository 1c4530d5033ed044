#!/usr/bin/env python3
"""Compact human view of anon_probe JSON lines: python3 show.py < results-6.18.jsonl"""
import sys, json
for l in sys.stdin:
    l = l.strip()
    if not l:
        continue
    d = json.loads(l)
    if d.get('header'):
        print('#', l); continue
    sm = d.get('smaps') or {}
    pm = d.get('pm') or {}
    keep = {k: v for k, v in d.items() if k not in ('scenario', 'smaps', 'pm', 'pid', 'step', 'addr', 'npages')}
    sms = {k: sm.get(k) for k in ('Rss', 'Anonymous', 'Private_Dirty', 'Private_Clean', 'Shared_Dirty',
                                 'Shared_Clean', 'LazyFree', 'Locked') if sm and (sm.get(k) or k == 'Rss')}
    pages = pm.get('pages', '')
    if pages:
        toks = pages.split()
        # run-length compress the per-page tokens
        out, prev, n = [], None, 0
        for t in toks + [None]:
            if t == prev:
                n += 1
            else:
                if prev is not None:
                    out.append(f'{prev}x{n}' if n > 1 else prev)
                prev, n = t, 1
        pages = ' '.join(out)
    print(f"{d.get('scenario')}/{d.get('step')}: {keep} smaps={sms} pm=[{pages}]")
