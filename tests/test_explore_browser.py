"""The explorer page in headless Chromium (Debian's chromium, driven by Playwright's
Python package with executable_path: no browser download). Run with ``pytest -m
browser`` after ``apt-get install chromium chromium-driver`` and ``pip install
'.[browser]'`` (.ci/run does both). The default run skips these.

For two examples: open the page from file://, step through the timeline with the keys
and the buttons, expand a branch of the page-table tree, type an address, and check
what the page shows against the JSON document it was made from and against
``vmsim walk --json``; the browser console must stay free of errors. A failing test
leaves a screenshot in tests/artifacts/ (or $VMSIM_ARTIFACTS)."""
import json
import os
import shutil

import pytest
from entrypoint import vmsim as run_vmsim

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = os.environ.get("VMSIM_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = os.environ.get("VMSIM_ARTIFACTS", os.path.join(ROOT, "tests", "artifacts"))
# as root in a closed network (/work/.library/env/machines/python.md)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.browser


def _why_not():
    if not os.path.exists(CHROMIUM) and not shutil.which("chromium"):
        return "needs Debian's chromium (apt-get install chromium chromium-driver)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs Playwright's Python package: pip install '.[browser]'"
    return None


@pytest.fixture(scope="module", autouse=True)
def _only_when_asked(request):
    expr = request.config.option.markexpr or ""
    if "browser" not in expr.replace("not browser", ""):
        pytest.skip("browser test: runs with 'pytest -m browser' (headless Chromium)")
    why = _why_not()
    if why:
        pytest.skip(why)


@pytest.fixture(scope="module")
def browser(_only_when_asked, tmp_path_factory):
    from playwright.sync_api import sync_playwright
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        exe = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
        ctx = p.chromium.launch_persistent_context(str(profile), executable_path=exe,
                                                   args=CHROMIUM_ARGS, headless=True,
                                                   viewport={"width": 1400, "height": 1000})
        yield ctx
        ctx.close()


@pytest.fixture
def page(browser, request):
    pg = browser.new_page()
    errors = []
    pg.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}")
          if m.type in ("error", "warning") else None)
    pg.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    pg.on("request", lambda r: errors.append(f"network request: {r.url}")
          if not r.url.startswith(("file:", "data:", "about:")) else None)
    pg.errors = errors
    failures = request.session.testsfailed
    yield pg
    if request.session.testsfailed > failures:        # this test failed: keep what it saw
        os.makedirs(ARTIFACTS, exist_ok=True)
        shot = os.path.join(ARTIFACTS, f"{request.node.name}.png")
        try:
            pg.screenshot(path=shot, full_page=True)
            print(f"screenshot: {shot}")
        except Exception as e:          # the page is gone: say so, keep the test's failure
            print(f"no screenshot: {e}")
    pg.close()


def _explore(tmp_path, example):
    """`vmsim run --json --tables --graphs` of the example, then `vmsim explore` of that
    document: the page and the JSON it shows."""
    doc_path = tmp_path / "run.json"
    r = run_vmsim("run", "--json", "--tables", "--graphs", os.path.join(ROOT, "examples", example),
                  timeout=600)
    assert r.returncode in (0, 139), r.stderr
    doc_path.write_text(r.stdout)
    html = tmp_path / "page.html"
    r = run_vmsim("explore", doc_path, "-o", html, timeout=600)
    assert r.returncode == 0, r.stderr
    return html, json.loads(doc_path.read_text())


def _current(page):
    return int(page.get_attribute("body", "data-step"))


def _leaf_ptes(doc, upto, pid):
    state = {}
    for s in doc["steps"][:upto + 1]:
        for c in s["tables"]:
            if c["pid"] != pid:
                continue
            if c["new"]:
                state[(c["level"], c["va"])] = c
            else:
                state.pop((c["level"], c["va"]), None)
    return state


def test_fork_cow_page(page, tmp_path):
    html, doc = _explore(tmp_path, "fork_cow.py")
    steps = doc["steps"]
    page.goto(html.as_uri())
    page.wait_for_selector("#timeline li")
    assert page.locator("#timeline li").count() == len(steps)
    assert _current(page) == 0
    assert f"and {steps[0]['faults']['exec']} that execve took for itself" in page.inner_text("#step")
    # step with the keys and the buttons; each step's title and fault count match the JSON
    names = [s["call"]["name"] for s in steps]
    fork = names.index("fork")
    for i in range(1, fork + 2):
        page.keyboard.press("ArrowRight") if i % 2 else page.click("#next")
        assert _current(page) == i
        assert page.inner_text("#fault-count") == str(steps[i]["faults"]["count"])
        assert page.inner_text("#change-count") == str(sum(1 for c in steps[i]["tables"]
                                                            if c["old"] != c["new"]))
        assert f"pid {steps[i]['pid']}" in page.inner_text("#step-title")
    page.keyboard.press("ArrowLeft")
    assert _current(page) == fork
    # fork: both processes side by side, the anonymous pages COW-protected in both
    parent, child = steps[fork]["pid"], steps[fork]["call"]["ret"]["pid"]
    assert page.locator("#procs .proc").count() == 2
    a = steps[names.index("mmap")]["call"]["ret"]
    for pid in (parent, child):
        cats = page.eval_on_selector_all(
            f"#procs .proc[data-pid='{pid}'] .cell[data-cat]",
            "els => els.map(e => [e.dataset.va, e.dataset.cat])")
        mine = {int(va, 16): cat for va, cat in cats if a <= int(va, 16) < a + 16 * 4096}
        assert len(mine) == 16 and set(mine.values()) == {"cow"}, mine
    # the next touch by the parent: 8 pages copied (its own frames now), 8 still shared
    w = fork + 1 + names[fork + 1:].index("touch")
    page.fill("#slider", str(w))
    page.dispatch_event("#slider", "input")
    assert _current(page) == w
    cats = page.eval_on_selector_all(f"#procs .proc[data-pid='{parent}'] .cell[data-cat]",
                                     "els => els.map(e => [e.dataset.va, e.dataset.cat])")
    mine = sorted((int(va, 16), cat) for va, cat in cats if a <= int(va, 16) < a + 16 * 4096)
    assert [c for _, c in mine] == ["copied"] * 8 + ["cow"] * 8
    # then the child writes all 16: its first 8 are its alone now (reused in place, no
    # copy: wp_page_reuse), the last 8 still shared (copied: wp_page_copy); the parent's
    # last 8 are write-protected and mapped once
    w2 = w + 1 + names[w + 1:].index("touch")
    assert steps[w2]["pid"] == child
    page.fill("#slider", str(w2))
    page.dispatch_event("#slider", "input")
    for pid, want in ((child, ["reused"] * 8 + ["copied"] * 8), (parent, ["copied"] * 8 + ["wpx"] * 8)):
        cats = page.eval_on_selector_all(f"#procs .proc[data-pid='{pid}'] .cell[data-cat]",
                                         "els => els.map(e => [e.dataset.va, e.dataset.cat])")
        got = sorted((int(va, 16), cat) for va, cat in cats if a <= int(va, 16) < a + 16 * 4096)
        assert [c for _, c in got] == want, (pid, got)
    page.fill("#slider", str(w))
    page.dispatch_event("#slider", "input")
    # the fault's graph: kernel functions linked to 6.18.2, seed lines where known
    graph = page.inner_text("#graph")
    for fn in ("exc_page_fault", "handle_mm_fault", "do_wp_page", "wp_page_copy"):
        assert fn in graph
    href = page.get_attribute("#graph a[data-fn='do_wp_page']", "href")
    assert href.startswith("https://elixir.bootlin.com/linux/v6.18.2/source/mm/memory.c#L")
    assert page.locator("#graph .seed").count() > 0
    assert page.locator("#fault-select option").count() == steps[w]["faults"]["count"]
    # the tree: the changed PTEs are highlighted; close and open a branch
    assert page.locator("#tree .node.chg").count() == sum(
        1 for c in steps[w]["tables"]
        if c["pid"] == page.evaluate("treePid") and c["new"] and c["new"] != c["old"])
    pte_table = page.locator("#tree li[data-key^='pmd:'] >> nth=0")
    key = pte_table.get_attribute("data-key")
    n_open = page.locator(f"#tree li[data-key='{key}'] > ul > li").count()
    assert n_open > 0
    page.click(f"#tree li[data-key='{key}'] > .node > .tog")
    assert page.locator(f"#tree li[data-key='{key}'] > ul > li").count() == 0
    page.click(f"#tree li[data-key='{key}'] > .node > .tog")
    assert page.locator(f"#tree li[data-key='{key}'] > ul > li").count() == n_open
    # the address box at the last step against vmsim walk --json after the run
    page.keyboard.press("End")
    assert _current(page) == len(steps) - 1
    page.click(f"#tree-pids button[data-pid='{parent}']")
    addr = a + 9 * 4096 + 0x123
    page.fill("#addr", hex(addr))
    r = run_vmsim("walk", "--json", "--scenario", os.path.join(ROOT, "examples", "fork_cow.py"),
                  "--pid", parent, hex(addr), timeout=600)
    assert r.returncode == 0, r.stderr
    walk = json.loads(r.stdout)["walk"]
    rows = page.eval_on_selector_all("#walk-table tr[data-level]",
                                     "rs => rs.map(r => [r.dataset.level, r.querySelector('[data-entry]').dataset.entry])")
    assert [(lv, int(e, 16)) for lv, e in rows] == [(x["level"], x["entry"]) for x in walk["levels"]]
    assert int(page.get_attribute("#walk-result", "data-phys"), 16) == walk["phys"]
    fields = page.eval_on_selector_all("#walk td[data-field]", "ts => ts.map(t => [t.dataset.field, t.textContent])")
    assert dict(fields)["pte"].startswith(str((addr >> 12) & 511) + " ")
    # the page's leaf PTEs of the parent at the end equal the JSON's
    last = _leaf_ptes(doc, len(steps) - 1, parent)
    shown = page.evaluate(f"[...stateAt(N - 1).get('0:{parent}').values()].map(c => [c.k, c.e])")
    assert {k: int(e, 16) for k, e in shown} == {f"{lv}:{va:x}": c["new"] for (lv, va), c in last.items()}
    assert page.errors == []


def test_mprotect_segv_page(page, tmp_path):
    """A scenario with signals: the timeline marks them, the step shows si_code and the
    graph of the fault that ended in SIGSEGV."""
    html, doc = _explore(tmp_path, "mprotect_segv.py")
    steps = doc["steps"]
    page.goto(html.as_uri() + "#step=0")
    page.wait_for_selector("#timeline li")
    sig = [i for i, s in enumerate(steps) if s["signal"]]
    assert sig and page.locator("#timeline .badge.sig").count() == len(sig)
    page.click(f"#timeline li[data-i='{sig[0]}']")
    assert _current(page) == sig[0]
    s = steps[sig[0]]
    text = page.inner_text("#step")
    assert f"si_addr={s['signal']['si_addr']:#x}" in text and s["signal"]["name"] in text
    assert "force_sig_fault" in page.inner_text("#graph") or "bad_area" in page.inner_text("#graph")
    # the charts: one polyline per process in the RSS chart
    assert page.locator("#charts .chart").count() >= 3
    # a bad address and a non-canonical one are refused in words
    page.fill("#addr", "zz")
    assert "bad address" in page.inner_text("#walk")
    page.fill("#addr", "0x800000000000")
    assert "non-canonical" in page.inner_text("#walk")
    assert page.errors == []


def test_long_run_page(page, machine, tmp_path):
    """A run of 1,200 steps shown as at most 300: the page says what it merged, the
    timeline pages, and the state at the last step is the document's."""
    from vmsim.views import StepRecorder
    from vmsim import explore, PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS
    with StepRecorder(tables=True) as rec:
        p = machine.spawn()
        a = p.mmap(0, 800 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        for i in range(800):
            p.write(a + i * 4096, b"x")
        c = p.fork()
        for i in range(0, 800, 2):
            c.write(a + i * 4096, b"y")
    doc = {"command": "run", "scenario": "long", "steps": json.loads(json.dumps(rec.steps)),
           "machines": [{"paging_levels": 4, "memory": 1 << 30, "cpus": 2, "kernel": "6.18.44"}]}
    html = tmp_path / "long.html"
    data = explore.write_page(doc, str(html), max_steps=300)
    page.goto(html.as_uri())
    page.wait_for_selector("#timeline li")
    assert "merged into the step shown after them" in page.inner_text("#notes")
    assert page.locator("#timeline-pages button").count() == -(-len(data["steps"]) // 100)
    page.click("#timeline-pages button >> nth=2")
    assert _current(page) == 200
    ms = page.evaluate("""() => { const t = performance.now();
        for (let i = 0; i < N; i += 7) { select(i); document.body.offsetHeight; }
        return (performance.now() - t) / Math.ceil(N / 7); }""")
    print(f"long run: {len(data['steps'])} steps shown of {len(doc['steps'])}, {ms:.0f} ms a step")
    page.keyboard.press("End")
    last = {}
    for s in doc["steps"]:
        for ch in s["tables"]:
            if ch["pid"] == c.pid:
                if ch["new"]:
                    last[f"{ch['level']}:{ch['va']:x}"] = ch["new"]
                else:
                    last.pop(f"{ch['level']}:{ch['va']:x}", None)
    shown = page.evaluate(f"[...stateAt(N - 1).get('0:{c.pid}').values()].map(c => [c.k, c.e])")
    assert {k: int(e, 16) for k, e in shown} == last
    # the child's half-written area: 400 copied or reused pages, 400 still COW-shared
    cats = page.eval_on_selector_all(f"#procs .proc[data-pid='{c.pid}'] .cell[data-cat]",
                                     "els => els.map(e => e.dataset.cat)")
    assert "cow" in cats and page.locator(f"#procs .proc[data-pid='{c.pid}'] .hint").count() > 0
    assert page.errors == []
