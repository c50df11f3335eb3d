#!/usr/bin/env python3
"""Checks the posture page (`meshguard report --html`) in a real, headless Chromium.

Driver: the Chrome DevTools protocol over `--remote-debugging-pipe` (file descriptors 3 and 4,
messages separated by NUL bytes), with Python's standard library only. No WebSocket, no port,
no crate to compile: nothing is added to the Rust build, and Chromium is the only thing the
check needs besides Python 3.

    posture.py check PAGE --expect CHECK_JSON [--screenshot PNG] [--pdf PDF]
        load the tutorial's PAGE from file://, fail on any console error, exception or
        network request, assert the grid, the mTLS colours and shapes, the findings counts
        (against `meshguard check --format json` of the same input), folding, the search box,
        the print stylesheet and printing (Page.printToPDF), and click a port and a
        reachability cell to see the deciding policy; optionally save a screenshot and the PDF.
    posture.py measure PAGE…
        print, per page, its size, the time from navigation start until the page has rendered
        (performance.now() when its script is done), and the time "Unfold all" takes on the
        first page of namespaces (rendering and laying out those workload rows).

Exit status 0 when every assertion holds, 1 otherwise (with the reason), 2 on usage errors.
"""

import base64
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
]


class Failure(Exception):
    pass


def chromium_binary():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """A headless Chromium driven over the DevTools pipe."""

    def __init__(self):
        binary = chromium_binary()
        if not binary:
            raise Failure("no chromium on PATH")
        self.profile = tempfile.mkdtemp(prefix="posture-chromium-")
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def wire_pipes():
            # Chromium reads commands from fd 3 and writes answers to fd 4.
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=wire_pipes,
            pass_fds=(3, 4, to_chrome_r, from_chrome_w),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.next_id = 0
        self.answers = {}
        self.events = queue.Queue()
        self.lock = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.session = None

    def _read(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self.from_chrome, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self.lock:
                    self.answers[None] = "closed"
                    self.lock.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self.lock:
                        self.answers[msg["id"]] = msg
                        self.lock.notify_all()
                else:
                    self.events.put(msg)

    def send(self, method, params=None, session=True, timeout=30):
        self.next_id += 1
        mid = self.next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self.lock:
            while mid not in self.answers:
                if None in self.answers:
                    raise Failure(f"chromium exited while waiting for {method}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Failure(f"no answer to {method} within {timeout} s")
                self.lock.wait(left)
            answer = self.answers.pop(mid)
        if "error" in answer:
            raise Failure(f"{method}: {answer['error']}")
        return answer.get("result", {})

    def open_page(self, width=1280, height=900):
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self.send(
            "Target.attachToTarget",
            {"targetId": target["targetId"], "flatten": True},
            session=False,
        )
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    def drain_events(self):
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def wait_event(self, method, timeout=30):
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                for e in seen:
                    self.events.put(e)
                raise Failure(f"no {method} within {timeout} s")
            try:
                e = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if e.get("method") == method:
                for x in seen:
                    self.events.put(x)
                return e
            seen.append(e)

    def evaluate(self, expression, timeout=30):
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            raise Failure(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def navigate(self, url, timeout=60):
        self.send("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired", timeout)
        deadline = time.monotonic() + timeout
        while self.evaluate("document.documentElement.getAttribute('data-ready')") != "true":
            errors = console_errors(self.peek_events())
            if errors:
                raise Failure("the page failed while loading: " + "; ".join(errors))
            if time.monotonic() > deadline:
                raise Failure(f"the page did not render within {timeout} s")
            time.sleep(0.05)

    def peek_events(self):
        events = self.drain_events()
        for e in events:
            self.events.put(e)
        return events

    def click(self, selector):
        """Scroll an element into view and click its centre with real mouse events."""
        box = self.evaluate(
            f"""(() => {{
              const el = document.querySelector({json.dumps(selector)});
              if (!el) return null;
              el.scrollIntoView({{block: 'center'}});
              const r = el.getBoundingClientRect();
              return {{x: r.left + r.width / 2, y: r.top + r.height / 2}};
            }})()"""
        )
        if box is None:
            raise Failure(f"nothing to click: {selector}")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": box["x"], "y": box["y"], "button": "left", "clickCount": 1},
            )

    def screenshot(self, path, max_height=2600):
        metrics = self.send("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        height = min(int(size["height"]), max_height)
        shot = self.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1},
            },
        )
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))

    def close(self):
        try:
            self.send("Browser.close", session=False, timeout=5)
        except Failure:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def console_errors(events):
    """Console errors, uncaught exceptions and error log entries among DevTools events."""
    out = []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append("exception: " + (d.get("exception", {}).get("description") or d.get("text", "")))
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            out.append("log: " + p["entry"].get("text", ""))
    return out


def requests_made(events):
    """URLs the page asked the network stack for (Network.requestWillBeSent)."""
    return [e["params"]["request"]["url"] for e in events
            if e.get("method") == "Network.requestWillBeSent"]


# Every element of the live DOM that loads something or names a URL (after the script ran).
EXTERNAL_IN_DOM = """(() => {
  const out = [];
  for (const el of document.querySelectorAll('*')) {
    const tag = el.tagName.toLowerCase();
    if (['link', 'img', 'iframe', 'object', 'embed', 'base', 'frame', 'audio', 'video', 'source'].includes(tag))
      out.push('<' + tag + '>');
    for (const a of el.attributes) {
      const v = a.value.trim().toLowerCase();
      // A tooltip is text (a JWT issuer in a reachability set is a URL by nature): it loads nothing.
      if (a.name !== 'title' && (v.includes('http://') || v.includes('https://') || v.startsWith('//'))) out.push('<' + tag + ' ' + a.name + '=' + a.value + '>');
      if (['href', 'src', 'action', 'srcset', 'data', 'poster'].includes(a.name) && !v.startsWith('#'))
        out.push('<' + tag + ' ' + a.name + '=' + a.value + '> leaves the page');
    }
  }
  return out;
})()"""


def file_url(path):
    return "file://" + os.path.abspath(path)


def expect(cond, what):
    if not cond:
        raise Failure(what)


def check(page, expected_json, screenshot, pdf_path=None):
    with open(expected_json) as f:
        summary = json.load(f)["summary"]
    b = Browser()
    try:
        b.open_page()
        b.navigate(file_url(page))

        # The grid: one row per namespace; the tutorial's one namespace with workloads is
        # unfolded; its workloads render through the DOM.
        grid = b.evaluate("""(() => {
          const ns = [...document.querySelectorAll('#grid tbody.ns')].map(tb => ({
            name: tb.dataset.ns, open: tb.classList.contains('open'),
            workloads: [...tb.querySelectorAll('tr.wl')].map(tr => ({
              name: tr.querySelector('.wlname').textContent,
              dataplane: tr.querySelector('.dp').textContent,
              sa: tr.querySelector('.saname').textContent,
              ports: [...tr.querySelectorAll('button.m')].map(b => b.dataset.mode + ' ' + b.title),
            })),
          }));
          return ns;
        })()""")
        names = [n["name"] for n in grid]
        expect(names == ["istio-system", "production"], f"namespaces in the grid: {names}")
        prod = grid[1]
        expect(prod["open"], "production is not unfolded")
        wl = {w["name"]: w for w in prod["workloads"]}
        expect(sorted(wl) == ["backend", "frontend"], f"production's workloads: {sorted(wl)}")
        expect(wl["backend"]["ports"] == ["STRICT STRICT on port 80: decided by PeerAuthentication production/backend-strict (port level)"],
               f"backend's port: {wl['backend']['ports']}")
        expect(wl["frontend"]["ports"] == ["STRICT STRICT on port 80: decided by PeerAuthentication production/default-strict (namespace level)"],
               f"frontend's port: {wl['frontend']['ports']}")
        expect(wl["frontend"]["sa"] == "default", f"frontend's ServiceAccount: {wl['frontend']['sa']}")

        # mTLS modes differ in colour and in shape (the legend shows all three; the grid's
        # STRICT chips look like the legend's).
        styles = b.evaluate("""(() => {
          const look = el => { const s = getComputedStyle(el); return {
            bg: s.backgroundColor, fg: s.color, border: s.borderTopStyle,
            shape: (sh => sh.clipPath + ' ' + sh.borderRadius)(getComputedStyle(el.querySelector('.sh'))) }; };
          const out = {};
          for (const m of ['strict', 'permissive', 'disable'])
            out[m] = look(document.querySelector('.legend .m-' + m));
          out.grid = look(document.querySelector('#grid tr.wl button.m'));
          return out;
        })()""")
        modes = [styles[m] for m in ("strict", "permissive", "disable")]
        for key in ("bg", "fg", "border", "shape"):
            values = [m[key] for m in modes]
            expect(len(set(values)) == 3, f"mTLS modes share a {key}: {values}")
        expect(styles["grid"] == styles["strict"], f"a STRICT port looks unlike the legend: {styles['grid']} vs {styles['strict']}")

        # Findings: the counts are check's, exactly.
        counts = b.evaluate("""(() => ({
          total: +document.getElementById('f-total').textContent,
          header: Object.fromEntries([...document.querySelectorAll('#counts [data-count]')].map(e => [e.dataset.count, +e.querySelector('b').textContent])),
          actions: Object.fromEntries([...document.querySelectorAll('#f-action option')].filter(o => o.value).map(o => [o.value, +o.textContent.match(/\\((\\d+)\\)$/)[1]])),
          rows: document.querySelectorAll('#fbody tr[data-action]').length,
        }))()""")
        expect(counts["total"] == summary["findings"], f"findings: page {counts['total']}, check {summary['findings']}")
        expect(counts["rows"] == min(summary["findings"], 100), f"finding rows: {counts['rows']}")
        for action in ("deny", "warn", "audit"):
            expect(counts["header"].get(action) == summary[action], f"header {action}: {counts['header']} vs {summary}")
            expect(counts["actions"].get(action, 0) == summary[action], f"filter {action}: {counts['actions']} vs {summary}")

        # Clicking a port shows the PeerAuthentication that decides it.
        b.click("#grid tr.wl[data-w] button.m[title*='backend-strict']")
        detail = b.evaluate("""(() => { const d = document.getElementById('detail');
          return {hidden: d.hidden, text: d.textContent, decided: (d.querySelector('.decided-by') || {}).textContent}; })()""")
        expect(not detail["hidden"], "the detail panel did not open on a click")
        expect("PeerAuthentication production/backend-strict (port level)" in (detail["decided"] or ""), f"detail: {detail['decided']}")
        expect('"portLevelMtls"' in detail["text"], "the detail panel does not show the policy's spec")

        # Reachability: a cell links to its deciding policy.
        b.click("#detail-close")
        expect(b.evaluate("document.getElementById('detail').hidden"), "the detail panel did not close")
        reach = b.evaluate("""(() => ({
          ns: document.getElementById('reach-table').dataset.ns,
          rows: [...document.querySelectorAll('#reach-table tbody th.row')].map(t => t.firstChild.textContent),
          cols: [...document.querySelectorAll('#reach-table thead th.col')].map(t => t.firstChild.textContent),
        }))()""")
        expect(reach["ns"] == "production", f"reachability shows {reach['ns']}")
        expect(reach["rows"][0].startswith("plaintext"), f"first row: {reach['rows'][0]}")
        expect("production/frontend" in reach["rows"], f"rows: {reach['rows']}")
        row = reach["rows"].index("production/frontend")
        col = reach["cols"].index("backend")
        # Cells are sets: frontend may GET /api/data of backend, so the cell says "some" (never
        # "none"), its title lists the set, and a click shows it with the allowing policy.
        badge = b.evaluate(f"""(() => {{ const c = document.querySelector("#reach-table .rc[data-r='{row}'][data-c='{col}']");
          return {{summary: c.querySelector('.v').dataset.summary, text: c.textContent}}; }})()""")
        expect(badge["summary"] == "some", f"frontend → backend: {badge}")
        b.evaluate(f"""document.querySelector("#reach-table .rc[data-r='{row}'][data-c='{col}']").dispatchEvent(new MouseEvent('mouseover', {{bubbles: true}}))""")
        title = b.evaluate(f"""document.querySelector("#reach-table .rc[data-r='{row}'][data-c='{col}']").title""")
        expect("GET /api/data" in title, f"frontend → backend title: {title}")
        shown = b.evaluate("""[...document.querySelectorAll('#reach-table .rc .v')].map(v => v.dataset.summary)""")
        expect(shown and all(x in ("all", "some", "none") for x in shown), f"cell summaries: {shown}")
        expect(not any("DENY" in t or "ALLOW" in t for t in b.evaluate("""[...document.querySelectorAll('#reach-table .rc')].map(c => c.textContent)""")),
               "a reachability cell still shows a single probe's verdict")
        b.click(f"#reach-table .rc[data-r='{row}'][data-c='{col}']")
        cell = b.evaluate("""(() => { const d = document.getElementById('detail');
          return {hidden: d.hidden, verdicts: [...d.querySelectorAll('.cell-verdict')].map(p => p.textContent),
                  set: [...d.querySelectorAll('.cell-set li')].map(li => li.textContent),
                  deciding: [...d.querySelectorAll('.deciding b')].map(b => b.textContent)}; })()""")
        expect(not cell["hidden"] and cell["verdicts"], f"reachability cell detail: {cell}")
        expect(cell["verdicts"][0].startswith("some"), f"frontend → backend: {cell['verdicts']}")
        expect("GET /api/data" in cell["set"], f"frontend → backend set: {cell['set']}")
        expect(cell["deciding"] and cell["deciding"][0].startswith("AuthorizationPolicy production/"), f"deciding policy: {cell['deciding']}")

        # Namespaces fold and unfold with real clicks; a namespace without workloads cannot.
        visible_rows = """[...document.querySelectorAll('#grid tr.wl')]
          .filter(tr => tr.getClientRects().length).map(tr => tr.querySelector('.wlname').textContent)"""
        fold_state = """(() => { const tb = document.querySelector('#grid tbody.ns[data-ns=production]');
          return {open: tb.classList.contains('open'), expanded: tb.querySelector('.fold').getAttribute('aria-expanded'),
                  rows: """ + visible_rows + """}; })()"""
        b.click("#grid tbody.ns[data-ns=production] .fold")
        folded = b.evaluate(fold_state)
        expect(folded == {"open": False, "expanded": "false", "rows": []}, f"after folding production: {folded}")
        b.click("#grid tbody.ns[data-ns=production] .fold")
        unfolded = b.evaluate(fold_state)
        expect(unfolded["open"] and unfolded["expanded"] == "true" and sorted(unfolded["rows"]) == ["backend", "frontend"],
               f"after unfolding production: {unfolded}")
        expect(b.evaluate("document.querySelector('#grid tbody.ns[data-ns=\"istio-system\"] .fold').disabled"),
               "istio-system has no workloads but its fold button is enabled")
        b.click("#fold-all")
        expect(b.evaluate(visible_rows) == [], "Fold all left workloads visible")
        b.click("#unfold-all")
        expect(sorted(b.evaluate(visible_rows)) == ["backend", "frontend"], "Unfold all did not show the workloads")

        # The search box filters namespaces and workloads (typed, as a user would).
        def search(text):
            b.evaluate("(() => { const s = document.getElementById('search'); s.value = ''; s.focus(); })()")
            if text:
                b.send("Input.insertText", {"text": text})
            else:
                b.evaluate("document.getElementById('search').dispatchEvent(new Event('input'))")
            time.sleep(0.3)  # the box waits 120 ms after the last keystroke
            return b.evaluate("""(() => ({
              namespaces: [...document.querySelectorAll('#grid tbody.ns')].filter(tb => !tb.hidden).map(tb => tb.dataset.ns),
              rows: """ + visible_rows + """,
              count: document.getElementById('search-count').textContent,
              page: document.getElementById('ns-page').textContent }))()""")
        found = search("backend")
        expect(found["namespaces"] == ["production"] and found["rows"] == ["backend"], f"search 'backend' shows {found}")
        found = search("istio")
        expect(found["namespaces"] == ["istio-system"], f"search 'istio' shows {found}")
        found = search("no-such-thing")
        expect(found["namespaces"] == [] and found["page"] == "no namespace matches", f"search 'no-such-thing' shows {found}")
        found = search("")
        expect(found["namespaces"] == ["istio-system", "production"], f"an empty search shows {found}")

        # Printing: the print stylesheet hides the controls and the panel; beforeprint unfolds
        # the namespaces and lists every finding, afterprint restores the page.
        b.click("#fold-all")
        b.evaluate("""(() => { window.__prints = [];
          // Registered after the page's own handler, so it sees the page as printed.
          addEventListener('beforeprint', () => window.__prints.push({
            rows: [...document.querySelectorAll('#grid tr.wl')].filter(tr => tr.getClientRects().length).length,
            findings: document.querySelectorAll('#fbody tr[data-action]').length,
            printing: document.documentElement.getAttribute('data-printing') }));
        })()""")
        pdf = base64.b64decode(b.send("Page.printToPDF", {"printBackground": True}, timeout=60)["data"])
        expect(pdf.startswith(b"%PDF") and len(pdf) > 10000, f"printToPDF gave {len(pdf)} bytes")
        if pdf_path:
            with open(pdf_path, "wb") as f:
                f.write(pdf)
        prints = b.evaluate("window.__prints")
        expect(prints and prints[0]["rows"] == 2 and prints[0]["findings"] == summary["findings"]
               and prints[0]["printing"] == "true", f"while printing: {prints}")
        after = b.evaluate("""(() => ({
          open: document.querySelectorAll('#grid tbody.ns.open').length,
          printing: document.documentElement.getAttribute('data-printing') }))()""")
        expect(after == {"open": 0, "printing": None}, f"after printing: {after}")
        b.send("Emulation.setEmulatedMedia", {"media": "print"})
        printed = b.evaluate("""(() => {
          const shown = sel => [...document.querySelectorAll(sel)].some(e => e.getClientRects().length);
          return {controls: shown('.noprint') || shown('nav') || shown('.fold'), note: shown('.printonly'),
                  chips: ['strict', 'permissive', 'disable'].map(m => getComputedStyle(document.querySelector('.legend .m-' + m)).backgroundColor)};
        })()""")
        b.send("Emulation.setEmulatedMedia", {"media": ""})
        expect(not printed["controls"], "the print stylesheet leaves controls on paper")
        expect(printed["note"], "the print note is not printed")
        expect(len(set(printed["chips"])) == 3, f"printed mTLS chips share a colour: {printed['chips']}")

        # Nothing on the page, as rendered, names or loads anything outside the file.
        b.click("#unfold-all")
        refs = b.evaluate(EXTERNAL_IN_DOM)
        expect(refs == [], f"the rendered page references the outside: {refs}")
        events = b.drain_events()
        foreign = [u for u in requests_made(events) if u != file_url(page)]
        expect(not foreign, f"the page made requests: {foreign}")
        errors = console_errors(events)
        expect(not errors, "console errors: " + "; ".join(errors))

        if screenshot:
            # The top of the page in one tall viewport, production unfolded, with the deciding
            # policy of a reachability cell (frontend's identity → backend) open.
            b.send("Emulation.setDeviceMetricsOverride",
                   {"width": 1280, "height": 1640, "deviceScaleFactor": 1, "mobile": False})
            b.click(f"#reach-table .rc[data-r='{row}'][data-c='{col}']")
            b.evaluate("window.scrollTo(0, 0)")
            time.sleep(0.2)
            b.screenshot(screenshot, max_height=1640)
    finally:
        b.close()


def measure(pages):
    b = Browser()
    try:
        b.open_page()
        for page in pages:
            b.navigate(file_url(page), timeout=120)
            rendered = b.evaluate("window.meshguardPosture")
            unfold = b.evaluate("""(() => { const t = performance.now();
              document.getElementById('unfold-all').click();
              document.body.offsetHeight;
              return {ms: performance.now() - t, rows: document.querySelectorAll('#grid tr.wl').length}; })()""")
            errors = console_errors(b.drain_events())
            expect(not errors, "console errors: " + "; ".join(errors))
            size = os.path.getsize(page)
            print(f"{page}: {size / 1e6:.2f} MB, rendered after {rendered['renderedMs']:.0f} ms "
                  f"({rendered['namespaces']} namespaces, {rendered['workloads']} workloads, "
                  f"{rendered['findings']} findings); \"Unfold all\" on the first page of namespaces: "
                  f"{unfold['rows']} workload rows in {unfold['ms']:.0f} ms")
    finally:
        b.close()


def main(argv):
    if len(argv) >= 2 and argv[0] == "check":
        page, rest = argv[1], argv[2:]
        expected, shot, pdf = None, None, None
        while rest:
            flag, value, rest = rest[0], rest[1] if len(rest) > 1 else None, rest[2:]
            if flag == "--expect":
                expected = value
            elif flag == "--screenshot":
                shot = value
            elif flag == "--pdf":
                pdf = value
            else:
                print(__doc__, file=sys.stderr)
                return 2
        if not expected:
            print("posture.py check: --expect CHECK_JSON is required", file=sys.stderr)
            return 2
        check(page, expected, shot, pdf)
        print(f"posture.py: {page} passes in headless Chromium" + (f"; screenshot {shot}" if shot else ""))
        return 0
    if len(argv) >= 2 and argv[0] == "measure":
        measure(argv[1:])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Failure as e:
        print(f"posture.py: FAIL: {e}", file=sys.stderr)
        sys.exit(1)
