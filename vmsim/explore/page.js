// vmsim explore: lays out the data vmsim wrote (the <script id="data"> block) and
// replays the page-table changes step by step. No model logic lives here: entries are
// decoded, faults traced and pages classified by vmsim; this script only indexes them.
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const $ = (id) => document.getElementById(id);
const N = D.steps.length;
const PAGE_ROWS = 100;             // timeline rows per page
const CKPT = 64;                   // a copy of the page-table state every CKPT steps
let cur = 0;
let treePid = null;                // the process whose tables are shown
const userOpen = new Map();        // tree node key -> open (true/false) chosen by the user
const showAll = new Set();         // tree node keys whose every child is shown
const MAX_CHILDREN = 64;           // children shown under one node until "show all"
let faultSel = 0;

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}
function el(tag, attrs, html) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (html !== undefined) e.innerHTML = html;
  return e;
}

// --- the page-table state after step i: {"m:pid": Map(key -> change)} ---------------------
const ckpts = new Map();
function cloneState(s) {
  const o = new Map();
  for (const [k, m] of s) o.set(k, new Map(m));
  return o;
}
function apply(state, i) {
  const st = D.steps[i];
  for (const c of st.ch) {
    const pk = st.m + ":" + c.pid;
    let m = state.get(pk);
    if (!m) { m = new Map(); state.set(pk, m); }
    if (c.e === "0x0") m.delete(c.k); else m.set(c.k, c);
    if (m.size === 0) state.delete(pk);
  }
}
let live = null, liveAt = -1;      // the state the page shows, moved forward in place
function stateAt(i) {
  if (live !== null && liveAt === i) return live;
  if (live === null || liveAt > i || i - liveAt > 2 * CKPT) {
    let base = -1;
    for (let j = Math.floor(i / CKPT) * CKPT; j >= 0; j -= CKPT) {
      if (ckpts.has(j)) { base = j; break; }
    }
    live = base >= 0 ? cloneState(ckpts.get(base)) : new Map();
    liveAt = base;
  }
  for (let j = liveAt + 1; j <= i; j++) {
    apply(live, j);
    if (j % CKPT === 0 && !ckpts.has(j)) ckpts.set(j, cloneState(live));
  }
  liveAt = i;
  return live;
}

// --- header ---------------------------------------------------------------------------------
function header() {
  $("title").textContent = "vmsim explore: " + (D.scenario || "run");
  const m = D.machines[0];
  $("meta").textContent = (m ? `Linux ${m.kernel} model, ${m.cpus} CPUs, ${m.memory >> 20} MiB, ` +
    `${D.mode.name} paging; ` : "") + `${D.steps_total} steps` + (D.version ? `; vmsim ${D.version}` : "");
  const notes = $("notes");
  for (const t of [D.note, D.graph_note, D.steps_truncated ? "the run made more than 100,000 steps: the rest were not recorded" : null]) {
    if (t) notes.appendChild(el("div", {}, esc(t)));
  }
  if (D.killed) notes.appendChild(el("div", {class: "err"}, esc(`pid ${D.killed.pid} was killed by ${D.killed.name}: ${D.error || ""}`)));
  else if (D.error) notes.appendChild(el("div", {class: "err"}, esc("the scenario failed: " + D.error)));
  const s = $("slider");
  s.max = String(Math.max(N - 1, 0));
}

// --- timeline -------------------------------------------------------------------------------
function stepText(st) {
  if (st.sys.length && st.kind === "syscall") return st.sys[0];
  return `[pid ${st.pid}] ` + st.call;
}
function timeline() {
  const page = Math.floor(cur / PAGE_ROWS);
  const pages = Math.ceil(N / PAGE_ROWS);
  const pg = $("timeline-pages");
  if (pages > 1) {
    if (pg.childElementCount !== pages) {
      pg.innerHTML = "";
      for (let p = 0; p < pages; p++) {
        const b = el("button", {"data-page": p}, `${D.steps[p * PAGE_ROWS].n}`);
        b.onclick = () => select(p * PAGE_ROWS);
        pg.appendChild(b);
      }
    }
    for (const b of pg.children) b.classList.toggle("cur", Number(b.dataset.page) === page);
  }
  const ol = $("timeline");
  if (ol.dataset.page !== String(page)) {
    ol.dataset.page = String(page);
    ol.innerHTML = "";
    for (let i = page * PAGE_ROWS; i < Math.min(N, (page + 1) * PAGE_ROWS); i++) {
      const st = D.steps[i];
      let b = "";
      if (st.faults.count) b += `<span class="badge flt" title="page faults">${st.faults.count} fault${st.faults.count > 1 ? "s" : ""}</span>`;
      if (st.signal) b += `<span class="badge sig">${esc(st.signal.split(" ")[0])}</span>`;
      if (st.merged) b += `<span class="badge mrg" title="steps ${st.first}..${st.n - 1} are merged into this one">+${st.merged} merged</span>`;
      const li = el("li", {"data-i": i}, `<span class="n">${st.n}</span><span class="txt">${esc(stepText(st))}</span>${b}`);
      li.onclick = () => select(i);
      ol.appendChild(li);
    }
  }
  for (const li of ol.children) li.classList.toggle("cur", Number(li.dataset.i) === cur);
  const c = ol.querySelector("li.cur");
  if (c) c.scrollIntoView({block: "nearest"});
}

// --- the step ---------------------------------------------------------------------------------
function stepPanel(st) {
  $("step-title").textContent = `Step ${st.n}: pid ${st.pid}, ` +
    (st.kind === "spawn" ? "a new process" : `${st.kind === "access" ? "access" : "system call"} ${st.name}`);
  let h = "";
  if (st.merged) h += `<div class="hint">Steps ${st.first} to ${st.n - 1} are left out of the timeline: their changes are shown with this one.</div>`;
  h += `<div class="hint">${st.kind === "access" ? "a user-mode access through the MMU" : st.kind === "spawn" ? "a new process (execve of the minimal program)" : "the system call as strace -f shows it"}:</div>`;
  h += `<pre>${esc(st.kind === "access" ? `[pid ${st.pid}] ${st.call}` : (st.sys.join("\n") || st.call))}</pre>`;
  if (st.kind === "access" && st.sys.length) h += `<pre>${esc(st.sys.join("\n"))}</pre>`;
  if (st.signal) h += `<div><span class="badge sig">signal</span> ${esc(st.signal)}</div>`;
  const paths = Object.entries(st.faults.by_path).map(([k, v]) => `${k} ${v}`).join(", ");
  h += `<div>Page faults: <b id="fault-count">${st.faults.count}</b>${paths ? " (" + esc(paths) + ")" : ""}` +
    (st.faults.exec ? ` <span class="hint">and ${st.faults.exec} that execve took for itself, writing argv to the new stack: ` +
      `not in the process's rusage (so not counted here), but in /proc/vmstat's pgfault</span>` : "") + "</div>";
  const vm = Object.entries(st.vmstat);
  if (vm.length) h += `<div>vmstat: <span class="mono">${esc(vm.map(([k, v]) => `${k} ${v > 0 ? "+" : ""}${v}`).join(", "))}</span></div>`;
  const ch = st.ch.filter((c) => c.o !== c.e).length;
  const pc = st.ch.length - ch;
  h += `<div>Page-table entries changed: <b id="change-count">${ch}</b>` +
    (pc ? ` <span class="hint">(and <span id="page-change-count">${pc}</span> entries whose page changed: its mapcount, refcount or flags)</span>` : "") + "</div>";
  $("step").innerHTML = h;
}

function vmaPanel(st, pid) {
  const idx = st.pvmas[String(pid)];
  $("vma-pid").textContent = `(pid ${pid}, as /proc/${pid}/maps)`;
  const vs = idx === undefined ? [] : D.vmasets[idx];
  if (!vs.length) { $("vmas").innerHTML = "<i>none</i>"; return; }
  let h = "<table id='vma-table'><tr><th>range</th><th>perms</th><th>offset</th><th>size</th><th>name</th><th>VmFlags</th></tr>";
  for (const v of vs) {
    h += `<tr><td class="mono">${v.start.slice(2)}-${v.end.slice(2)}</td><td class="mono">${v.perms}</td>` +
         `<td class="mono">${v.pgoff.slice(2).padStart(8, "0")}</td><td>${v.kb} kB</td><td>${esc(v.name)}</td><td class="mono">${esc(v.flags)}</td></tr>`;
  }
  $("vmas").innerHTML = h + "</table>";
}

// --- the page-table tree ------------------------------------------------------------------------
const LV = D.mode.levels.map((l) => l.k);
function cmpVa(a, b) { return a.pn - b.pn; }      // page numbers: exact as Numbers
function treePanel(st, state) {
  const pids = [];
  for (const q of st.procs) if (state.has(st.m + ":" + q.pid)) pids.push(q.pid);
  for (const c of st.ch) if (!pids.includes(c.pid)) pids.push(c.pid);
  if (treePid === null || !pids.includes(treePid)) treePid = pids.includes(st.pid) ? st.pid : pids[0];
  const tp = $("tree-pids");
  tp.innerHTML = "";
  for (const p of pids) {
    const b = el("button", {"data-pid": p, class: p === treePid ? "cur" : ""}, `pid ${p}`);
    b.onclick = () => { treePid = p; render(); };
    tp.appendChild(b);
  }
  const ents = state.get(st.m + ":" + treePid) || new Map();
  const kids = new Map();
  for (const c of ents.values()) {
    const p = c.p || "";
    if (!kids.has(p)) kids.set(p, []);
    kids.get(p).push(c);
  }
  for (const a of kids.values()) a.sort(cmpVa);
  const changed = new Set(st.ch.filter((c) => c.pid === treePid && c.o !== c.e).map((c) => c.k));
  const pchanged = new Set(st.ch.filter((c) => c.pid === treePid && c.o === c.e).map((c) => c.k));
  const hot = new Set();                // ancestors of a changed entry
  for (const k of [...changed, ...pchanged]) {
    let c = ents.get(k);
    while (c && c.p) { hot.add(c.p); c = ents.get(c.p); }
  }
  function size(key) { return (kids.get(key) || []).length; }
  function node(c) {
    const ch = kids.get(c.k) || [];
    const open = userOpen.has(c.k) ? userOpen.get(c.k) : (hot.has(c.k) || ch.length <= 16);
    const li = el("li", {"data-key": c.k});
    const cls = "node" + (changed.has(c.k) ? " chg" : pchanged.has(c.k) ? " pchg" : "");
    const tog = ch.length ? `<span class="tog">${open ? "&#9662;" : "&#9656;"}</span>` : `<span class="tog leaf">&middot;</span>`;
    const extra = ch.length ? ` <span class="hint">(${ch.length} entr${ch.length > 1 ? "ies" : "y"})</span>` : "";
    const old = changed.has(c.k) && c.o !== "0x0" ? `<div class="old" style="padding-left:2.2em">was ${esc(c.od)}</div>` :
      pchanged.has(c.k) && c.pc ? `<div class="pnote" style="padding-left:2.2em">same entry; its page: ${esc(c.pc)}</div>` : "";
    li.innerHTML = `<div class="${cls}" title="entry at ${c.ea} (table pfn ${c.t}, index ${c.i})">${tog}` +
      `<span class="lvl">${c.lv.toUpperCase()}[${c.i}]</span> <code>${c.va}</code> ` +
      `<span class="what">${esc(c.w)}</span>${extra} <span class="ent">${esc(c.d)}</span></div>${old}`;
    if (ch.length) {
      li.querySelector(".tog").onclick = () => { userOpen.set(c.k, !open); render(); };
      if (open) {
        const ul = el("ul");
        let shown = ch;
        if (ch.length > MAX_CHILDREN && !showAll.has(c.k)) {
          // the entries that changed at this step first, then the lowest addresses
          const pick = new Set(ch.filter((x) => changed.has(x.k) || pchanged.has(x.k) || hot.has(x.k)).slice(0, MAX_CHILDREN));
          for (const x of ch) { if (pick.size >= MAX_CHILDREN) break; pick.add(x); }
          shown = ch.filter((x) => pick.has(x));
        }
        for (const x of shown) ul.appendChild(node(x));
        if (shown.length < ch.length) {
          const more = el("li", {class: "more"}, `<a href="#" class="show-all">&hellip; ${ch.length - shown.length} more entries: show all ${ch.length}</a>`);
          more.querySelector("a").onclick = (e) => { e.preventDefault(); showAll.add(c.k); render(); };
          ul.appendChild(more);
        }
        li.appendChild(ul);
      }
    }
    return li;
  }
  const tree = $("tree");
  tree.innerHTML = "";
  const roots = [];
  for (const c of ents.values()) if (!c.p || !ents.has(c.p)) roots.push(c);
  roots.sort(cmpVa);
  if (!roots.length) { tree.innerHTML = "<i>no page tables (the process has exited, or nothing is mapped yet)</i>"; }
  else {
    const pgd = roots[0].lv === LV[0] ? `mm->pgd: PGD page pfn ${roots[0].t}` : "";
    const ul = el("ul");
    ul.appendChild(el("li", {}, `<span class="hint">${pgd} (user half; the kernel half is init_mm's, shared by every mm)</span>`));
    for (const r of roots) ul.appendChild(node(r));
    tree.appendChild(ul);
  }
  const gone = st.ch.filter((c) => c.pid === treePid && c.e === "0x0");
  $("removed").innerHTML = gone.length ? "Cleared at this step: " + gone.slice(0, 40).map((c) =>
    `<div class="mono">${c.lv.toUpperCase()}[${c.i}] ${c.va} was ${esc(c.od)}</div>`).join("") +
    (gone.length > 40 ? `<div>... and ${gone.length - 40} more</div>` : "") : "";
}

// --- processes side by side -----------------------------------------------------------------
const CATS = [
  ["cow", "shared with another process, write-protected (COW: a write copies or reuses)"],
  ["wpx", "write-protected, mapped once (a write makes it writable again: reuse)"],
  ["copied", "copied: a write gave this process its own frame"],
  ["reused", "reused: a write made the write-protected page writable again, no copy"],
  ["private", "private, writable"],
  ["shared", "shared and writable (MAP_SHARED)"],
  ["file", "file or shmem page"],
  ["zero", "the zero page"],
  ["swap", "not present (swap-format or PROT_NONE)"],
];
function category(c, users, vmaWritable) {
  const pg = c.pg;
  if (!pg || !c.pr) return "swap";
  if (pg.kind === "zero") return "zero";
  const n = (users.get(pg.pfn) || new Set()).size;
  if (pg.kind === "anon") {
    if (n > 1) return c.rw ? "shared" : "cow";
    if (!c.rw && vmaWritable) return "wpx";
    if (c.cp !== null && c.cp !== undefined) return "copied";
    if (c.ru !== null && c.ru !== undefined) return "reused";
    return "private";
  }
  return n > 1 && c.rw ? "shared" : "file";
}
function procsPanel(st, state) {
  const users = new Map();        // pfn -> pids mapping it
  const live = [];
  for (const q of st.procs) {
    const ents = state.get(st.m + ":" + q.pid);
    if (!ents) continue;
    live.push([q, ents]);
    for (const c of ents.values()) {
      if (c.leaf && c.pg) {
        if (!users.has(c.pg.pfn)) users.set(c.pg.pfn, new Set());
        users.get(c.pg.pfn).add(q.pid);
      }
    }
  }
  $("legend").innerHTML = CATS.map(([k, t]) => `<span><i class="cell c-${k}"></i> ${esc(t)}</span>`).join("");
  const box = $("procs");
  box.innerHTML = "";
  for (const [q, ents] of live) {
    const d = el("div", {class: "proc", "data-pid": q.pid});
    let h = `<b>pid ${q.pid}</b> <span class="hint">${q.state}, RSS ${q.rss * 4} kB (anon ${q.rss_anon * 4}, file ${q.rss_file * 4}, shmem ${q.rss_shmem * 4}), ` +
      `${q.pgtables} page-table pages, minflt ${q.minflt}</span>`;
    const idx = st.pvmas[String(q.pid)];
    const vmas = idx === undefined ? [] : D.vmasets[idx];
    const leaves = [...ents.values()].filter((c) => c.leaf).sort(cmpVa);
    // each leaf to its VMA (VMAs are sorted and disjoint)
    const per = vmas.map(() => []);
    let vi = 0;
    for (const c of leaves) {
      while (vi < vmas.length && vmas[vi].e <= c.pn) vi++;
      if (vi < vmas.length && vmas[vi].s <= c.pn) per[vi].push(c);
    }
    vmas.forEach((v, n) => {
      const mine = per[n];
      if (!mine.length) return;
      const pages = v.e - v.s;
      const byPn = new Map(mine.map((c) => [c.pn, c]));
      const w = v.perms[1] === "w";
      let cells = "";
      const cell = (c, pn) => {
        if (!c) return `<i class="cell none" title="0x${(BigInt(pn) << 12n).toString(16)}: not mapped"></i>`;
        const k = category(c, users, w);
        return `<i class="cell c-${k}" data-va="${c.va}" data-cat="${k}" title="${c.va}: ${esc(c.w)}\n${esc(c.d)}` +
          `${c.cp !== null && c.cp !== undefined ? "\ncopied at step " + c.cp : ""}` +
          `${c.ru !== null && c.ru !== undefined ? "\nreused (made writable) at step " + c.ru : ""}"></i>`;
      };
      if (pages <= 256) {
        for (let pn = v.s; pn < v.e; pn++) cells += cell(byPn.get(pn), pn);
      } else {
        for (const c of mine.slice(0, 256)) cells += cell(c, c.pn);
      }
      h += `<div class="vma"><span class="mono">${v.start.slice(2)}-${v.end.slice(2)} ${v.perms}</span> ${esc(v.name)}` +
        (pages > 256 ? ` <span class="hint">(${mine.length} mapped pages of ${pages}${mine.length > 256 ? ", the first 256 shown" : ""})</span>` : "") +
        `<div class="cells">${cells}</div></div>`;
    });
    d.innerHTML = h;
    box.appendChild(d);
  }
  $("procs-panel").style.display = live.length ? "" : "none";
}

// --- function graph -------------------------------------------------------------------------
function graphPanel(st) {
  const sel = $("graph-select");
  const g = st.graphs;
  if (faultSel >= g.length) faultSel = 0;
  sel.innerHTML = "";
  if (!g.length) {
    $("graph").innerHTML = esc(st.faults.count ? `${st.faults.count} fault(s) at this step; their graphs are not in the page (see the note at the top)` :
      "no page fault at this step");
    return;
  }
  if (g.length > 1) {
    const s = el("select", {id: "fault-select"});
    g.forEach((f, i) => {
      const o = el("option", {value: i}, esc(`fault ${i + 1} of ${g.length}: pid ${f.pid} ${f.address} ${f.error_code} ${f.paths.filter((p) => /^(do_|wp_|shmem|filemap|expand)/.test(p)).slice(-2).join(" ")}`));
      if (i === faultSel) o.selected = true;
      s.appendChild(o);
    });
    s.onchange = () => { faultSel = Number(s.value); graphPanel(st); };
    sel.appendChild(s);
    if (st.faults.count > g.length) sel.appendChild(el("span", {class: "hint"}, ` (${st.faults.count - g.length} more without their graph)`));
  }
  const f = g[faultSel];
  let h = `<span class="hint"># ${f.kind === "gup" ? "faultin_page (a fault the kernel took for a syscall)" : "page fault"} of pid ${f.pid} at ${f.address}, error code ${esc(f.error_code)}` +
    `${f.signal ? ", ended in " + f.signal : ""}${f.truncated ? " (graph truncated)" : ""}</span>\n`;
  for (const [pre, name, rest] of f.lines) {
    const line = name === null ? esc(pre) : esc(pre) + fn(name) + esc(rest);
    h += /\/\* (pte|pmd|pud|p4d|pgd) .*->/.test(rest) ? `<span class="write">${line}</span>\n` : line + "\n";
  }
  $("graph").innerHTML = h;
}
function fn(name) {
  const loc = D.funcs[name];
  let s = loc ? `<a href="${loc[1]}" target="_blank" rel="noopener" title="Linux 6.18.2 ${loc[0]}" data-fn="${name}">${name}</a>` : esc(name);
  const seed = D.seeds[name];
  if (seed) s += `<span class="seed" title="${esc(seed.map((x) => x[0] + "  " + x[1]).join("\n"))} (docs/seedmap.md)">seed ${esc(seed[0][0])}</span>`;
  return s;
}

// --- address walk ---------------------------------------------------------------------------
function parseAddr(t) {
  t = t.trim();
  const d = t.startsWith("0x") || t.startsWith("0X") ? t.slice(2) : t;
  if (!/^[0-9a-fA-F]+$/.test(d) || d.length > 16) return null;
  return BigInt("0x" + d);
}
function walkPanel(st, state) {
  const out = $("walk");
  const text = $("addr").value;
  if (!text.trim()) { out.innerHTML = ""; return; }
  const a = parseAddr(text);
  if (a === null) { out.innerHTML = `<div class="err">bad address: use hex digits 0-9 a-f, 0x optional</div>`; return; }
  const vb = BigInt(D.mode.va_bits);
  const top = a >> (vb - 1n);
  if (top !== 0n && top !== (1n << (65n - vb)) - 1n) {
    out.innerHTML = `<div class="err">0x${a.toString(16)} is non-canonical for ${D.mode.va_bits}-bit addresses: the CPU raises #GP, not #PF</div>`;
    return;
  }
  // the address split, as vmsim walk draws it
  let bits = "<tr class='bits'>", names = "<tr>", vals = "<tr>";
  for (const f of D.mode.fields) {
    const v = (a >> BigInt(f.lo)) & ((1n << BigInt(f.hi - f.lo + 1)) - 1n);
    bits += `<td>${f.hi}..${f.lo}</td>`;
    names += `<td>${f.name === "sign" || f.name === "offset" ? f.intel : f.intel + " (" + f.name + ")"}</td>`;
    vals += `<td class="mono" data-field="${f.name}">${f.name === "sign" || f.name === "offset" ? "0x" + v.toString(16) : v + " (0x" + v.toString(16) + ")"}</td>`;
  }
  let h = `<div>${D.mode.name} paging: ${D.mode.va_bits}-bit virtual address 0x${a.toString(16)}</div>` +
    `<table class="diagram">${bits}</tr>${names}</tr>${vals}</tr></table>`;
  for (const [lo, hi, name] of D.regions) {
    if (a >= BigInt(lo) && a <= BigInt(hi)) { h += `<div class="hint">region: ${esc(name)} (${lo}-${hi}, Documentation/arch/x86/x86_64/mm.rst)</div>`; break; }
  }
  const pid = treePid === null ? st.pid : treePid;
  const ents = state.get(st.m + ":" + pid) || new Map();
  h += `<div>walk in pid ${pid} at step ${st.n} (mm-&gt;pgd, then one entry per level):</div><table id="walk-table"><tr><th>level</th><th>index</th><th>entry at</th><th>entry</th><th>maps</th></tr>`;
  let phys = null, why = "";
  if (a >> 63n) {
    why = "a kernel address: the kernel half of the PGD is init_mm's (not recorded here); a user access gets SIGSEGV";
  } else {
    for (const l of D.mode.levels) {
      const sh = BigInt(l.shift);
      const idx = (a >> sh) & ((1n << BigInt(l.bits)) - 1n);
      const base = a & ~((1n << sh) - 1n);
      const c = ents.get(l.k + ":" + base.toString(16));
      if (!c) {
        h += `<tr data-level="${l.k}"><td>${l.k.toUpperCase()} (${l.intel})</td><td>${idx}</td><td></td><td class="mono" data-entry="0x0">0x0</td><td>none</td></tr>`;
        why = `not present (${l.k}_none: nothing mapped yet)`;
        break;
      }
      h += `<tr data-level="${l.k}"><td>${l.k.toUpperCase()} (${l.intel})</td><td>${idx}</td><td class="mono">${c.ea}</td>` +
        `<td class="mono" data-entry="${c.e}">${esc(c.d)}</td><td>${esc(c.w)}</td></tr>`;
      if (!c.pr) { why = c.w; break; }
      if (c.leaf) {
        const e = BigInt(c.e) & 0x000ffffffffff000n;
        phys = (e & ~((1n << sh) - 1n)) | (a & ((1n << sh) - 1n));
        break;
      }
    }
  }
  h += "</table>";
  h += phys !== null ? `<div class="result" id="walk-result" data-phys="0x${phys.toString(16)}">0x${a.toString(16)} &rarr; physical 0x${phys.toString(16)}</div>`
                     : `<div class="result" id="walk-result" data-phys="">0x${a.toString(16)}: ${esc(why)}</div>`;
  out.innerHTML = h;
}

// --- charts ---------------------------------------------------------------------------------
const COLORS = ["#2952a3", "#d2691e", "#2e8b57", "#8b3a8b", "#b22222", "#4682b4", "#6b8e23", "#a0522d"];
function charts(st) {
  const box = $("charts");
  if (!box.childElementCount) {
    const xs = D.charts.x;
    const last = Math.max(D.steps_total - 1, 1);
    for (const c of D.charts.charts) {
      const names = Object.keys(c.series);
      if (!names.length) continue;
      let max = 1;
      for (const n of names) for (const v of c.series[n]) max = Math.max(max, v);
      const W = 300, H = 100;
      let svg = `<svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">`;
      names.forEach((n, k) => {
        const ys = c.series[n];
        let pts = "";
        xs.forEach((x, i) => {
          const px = 4 + (W - 8) * x / last, py = H - 4 - (H - 12) * ys[i] / max;
          if (i) pts += ` ${px.toFixed(1)},${(H - 4 - (H - 12) * ys[i - 1] / max).toFixed(1)}`;
          pts += ` ${px.toFixed(1)},${py.toFixed(1)}`;
        });
        svg += `<polyline fill="none" stroke="${COLORS[k % COLORS.length]}" stroke-width="1.6" points="${pts}"><title>${esc(n)}: ${ys[ys.length - 1]} at the end</title></polyline>`;
      });
      svg += `<text x="4" y="10" font-size="9" fill="#888">max ${max}</text><line class="cursor" x1="0" x2="0" y1="0" y2="${H}" stroke="#c00" stroke-dasharray="2,2"/></svg>`;
      const lg = names.map((n, k) => `<i style="background:${COLORS[k % COLORS.length]}"></i>${esc(n)}`).join(" ");
      box.appendChild(el("div", {class: "chart"}, `<div class="t">${esc(c.title)}</div>${svg}<div class="lg">${lg}</div>`));
    }
  }
  const last = Math.max(D.steps_total - 1, 1);
  const x = (4 + 292 * st.n / last).toFixed(1);
  for (const l of box.querySelectorAll("line.cursor")) { l.setAttribute("x1", x); l.setAttribute("x2", x); }
}

// --- navigation -----------------------------------------------------------------------------
function render() {
  if (!N) { $("step-title").textContent = "The scenario made no step."; return; }
  const st = D.steps[cur];
  const state = stateAt(cur);
  $("slider").value = String(cur);
  $("position").textContent = `step ${st.n} (${cur + 1} of ${N} shown)`;
  timeline();
  stepPanel(st);
  treePanel(st, state);
  vmaPanel(st, treePid === null ? st.pid : treePid);
  procsPanel(st, state);
  graphPanel(st);
  walkPanel(st, state);
  charts(st);
  document.body.dataset.step = String(cur);
}
function select(i) {
  i = Math.max(0, Math.min(N - 1, i));
  if (i !== cur) faultSel = 0;
  cur = i;
  render();
  if (history.replaceState) history.replaceState(null, "", "#step=" + D.steps[cur].n);
}
$("prev").onclick = () => select(cur - 1);
$("next").onclick = () => select(cur + 1);
$("slider").oninput = () => select(Number($("slider").value));
$("addr").oninput = () => walkPanel(D.steps[cur], stateAt(cur));
document.addEventListener("keydown", (e) => {
  if (e.target && (e.target.tagName === "INPUT" || e.target.tagName === "SELECT")) return;   // the slider moves itself
  if (e.key === "ArrowRight" || e.key === "j") { select(cur + 1); e.preventDefault(); }
  else if (e.key === "ArrowLeft" || e.key === "k") { select(cur - 1); e.preventDefault(); }
  else if (e.key === "Home") { select(0); e.preventDefault(); }
  else if (e.key === "End") { select(N - 1); e.preventDefault(); }
  else if (e.key === "PageDown") { select(cur + PAGE_ROWS); e.preventDefault(); }
  else if (e.key === "PageUp") { select(cur - PAGE_ROWS); e.preventDefault(); }
});
header();
const m = /step=(\d+)/.exec(location.hash);
if (m) { const want = Number(m[1]); const i = D.steps.findIndex((s) => s.n >= want); cur = i < 0 ? N - 1 : i; }
render();
