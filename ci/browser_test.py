#!/usr/bin/python3
"""Browser test of the built book: serve it on a free localhost port, open every page in
headless Chromium and check what a reader sees, page by page.

    ci/browser_test.py [BOOK_DIR]     # default: book/ (build it first: mdbook build)

Uses only what Debian 12 packages: chromium, chromium-driver and python3-selenium (hence
/usr/bin/python3, Debian's interpreter, where apt puts selenium). Install them with
`LAB_BROWSER=1 ci/setup.sh`. Elsewhere, set CHROMIUM and CHROMEDRIVER and run it with a
python3 that has selenium 4.

Checks, for every page listed in src/SUMMARY.md (plus print.html):
  - no page error: no uncaught exception, no console error, no failed or 4xx/5xx request,
    and no request leaving localhost (the workshop room has no network);
  - every ```mermaid diagram rendered to an <svg> (and not to mermaid's "Syntax error");
  - <details> blocks (speaker notes, solutions) start collapsed; no code block has a Run button;
  - the sidebar lists every page of SUMMARY.md;
  - search finds `on_message`;
  - the print page holds every chapter's title and all their diagrams, drawn before it
    calls window.print().
Saves screenshots of two chapters in target/browser/. Exits 1 with one line per problem.

How errors are seen: ChromeDriver's "browser" log (goog:loggingPrefs) carries uncaught
exceptions (source javascript), console.error calls (console-api) and failed loads (network)
as SEVERE entries; its "performance" log carries the DevTools Network events, from which
come every request's URL, status and failure. A script injected before each page's own
scripts also records uncaught exceptions, unhandled rejections and console.error calls, so
that an error is caught even if one of the two logs misses it.

On Ubuntu, where Chromium exists only as a snap, the test is SKIPPED with the reason
printed (exit 0), unless CHROMIUM and CHROMEDRIVER name a Chromium that is not a snap.
"""
import functools
import http.server
import json
import os
import pathlib
import re
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
SEARCH_TERM = "on_message"
TIMEOUT_S = 20
IDLE_S = 0.5  # "network idle": no request in flight and no network event for this long

# Runs in every page before the page's own scripts (CDP Page.addScriptToEvaluateOnNewDocument).
# print.html calls window.print() 100ms after it loaded: replace it (no print dialog in a
# test) by a recorder of how many diagrams were drawn when it was called; a diagram that is
# still mermaid source at that moment is printed as source. mermaid-init.js wraps this one.
INIT_SCRIPT = r"""
window.__bookErrors = [];
window.addEventListener('error', (e) => {
  window.__bookErrors.push('uncaught exception: ' + (e.error && e.error.message || e.message));
});
window.addEventListener('unhandledrejection', (e) => {
  window.__bookErrors.push('unhandled rejection: ' + (e.reason && e.reason.message || e.reason));
});
const __consoleError = console.error.bind(console);
console.error = (...args) => {
  window.__bookErrors.push('console error: ' + args.map(String).join(' '));
  __consoleError(...args);
};
window.print = () => {
  window.__printed = {
    drawn: document.querySelectorAll('pre.mermaid svg').length,
    blocks: document.querySelectorAll('pre.mermaid').length,
  };
};
"""


def fail(message):
    print(f"browser test: ERROR: {message}", file=sys.stderr)
    sys.exit(1)


def skip_reason(chromium):
    """Why this machine cannot run the test (None if it can). Never a silent skip."""
    if os.environ.get("CHROMIUM"):
        explicit = True
    else:
        explicit = False
        os_id = ""
        try:
            for line in pathlib.Path("/etc/os-release").read_text().splitlines():
                if line.startswith("ID="):
                    os_id = line[3:].strip().strip('"')
        except OSError:
            pass
        if os_id == "ubuntu":
            return (
                "Ubuntu packages Chromium only as a snap (apt's chromium-browser and "
                "chromium-chromedriver are transitional packages that install it), and this "
                "test drives Debian's Chromium only; set CHROMIUM and CHROMEDRIVER to a "
                "Chromium that is not a snap to run it"
            )
    path = pathlib.Path(chromium)
    if path.exists():
        real = str(path.resolve())
        wrapper = ""
        try:
            with open(real, "rb") as f:
                head = f.read(4096)
            if head.startswith(b"#!"):
                wrapper = head.decode(errors="replace")
        except OSError:
            pass
        if real.startswith("/snap/") or "/snap/" in wrapper:
            what = "CHROMIUM" if explicit else "this machine's"
            return f"{what} {chromium} is the snap (or a wrapper that starts it), which this test does not drive"
    return None


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(book):
    """Serves BOOK on a free 127.0.0.1 port (port 0: the kernel picks); returns its base URL."""
    handler = functools.partial(QuietHandler, directory=str(book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def pages_of(book):
    """The pages a reader can reach from the table of contents, in order: `[Title](file.md)`.
    The book's sources sit beside its output (mdBook's default); else this repository's."""
    beside = book.resolve().parent / "src" / "SUMMARY.md"
    summary = beside if beside.exists() else ROOT / "src" / "SUMMARY.md"
    pages = [m + ".html" for m in re.findall(r"\]\(([^)]+)\.md\)", summary.read_text())]
    if not pages:
        fail(f"no pages found in {summary}")
    return pages


class Browser:
    def __init__(self, chromium, chromedriver, base):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for arg in [
            "--headless=new",
            "--no-sandbox",  # CI runs as root: Chromium refuses to start sandboxed as root
            "--window-size=1280,900",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            # A new, empty profile (ChromeDriver's default); these keep it from calling home:
            # the machine has no network and Chromium's retries are noise.
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            # The book is served from localhost; anything else is a resource the room won't
            # have. Chromium never proxies loopback, so every other request goes to a proxy
            # that does not exist and fails (and is reported below from the Network events).
            "--proxy-server=http://127.0.0.1:9",
        ]:
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        options.add_experimental_option("perfLoggingPrefs", {"enableNetwork": True, "enablePage": False})
        self.driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
        self.driver.set_page_load_timeout(TIMEOUT_S)
        # --window-size counts the window, not the page: make the viewport itself 1280x900.
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}
        )
        self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": INIT_SCRIPT})
        self.base = base
        self.requests = {}  # requestId -> url, for loadingFailed (which has no url)
        self.in_flight = set()

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def count(self, selector):
        return self.js("return document.querySelectorAll(arguments[0]).length", selector)

    def wait_for(self, script, timeout=TIMEOUT_S):
        """Polls a JS expression until it is truthy; returns its last value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.js("return " + script)
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.05)

    def network_events(self, errors, document_status):
        """Drains the performance log; records request problems in ERRORS; returns the count."""
        entries = self.driver.get_log("performance")
        for entry in entries:
            message = json.loads(entry["message"])["message"]
            method, params = message.get("method", ""), message.get("params", {})
            rid = params.get("requestId")
            if method == "Network.requestWillBeSent":
                url = params["request"]["url"]
                if url.startswith(("data:", "blob:")):
                    continue
                self.requests[rid] = url
                self.in_flight.add(rid)
                if not url.startswith(self.base + "/"):
                    errors.append(f"request leaves localhost: {url}")
            elif method == "Network.responseReceived":
                response = params["response"]
                status = int(response.get("status", 0))
                if params.get("type") == "Document" and response["url"] == document_status.get("url"):
                    document_status["status"] = status
                if status >= 400:
                    errors.append(f"HTTP {status} for {response['url']}")
            elif method == "Network.loadingFinished":
                self.in_flight.discard(rid)
            elif method == "Network.loadingFailed":
                self.in_flight.discard(rid)
                url = self.requests.get(rid, "?")
                if url.startswith(self.base + "/"):
                    errors.append(f"request failed: {url} ({params.get('errorText')})")
                # A request leaving localhost is reported once, when it is sent.
        return len(entries)

    def console_errors(self, errors):
        """Drains the browser log: every SEVERE entry is an error a reader's console shows."""
        for entry in self.driver.get_log("browser"):
            if entry.get("level") != "SEVERE":
                continue
            source = entry.get("source", "")
            text = entry.get("message", "")
            if source == "javascript":
                errors.append(f"uncaught exception: {text}")
            elif source == "network":
                errors.append(f"failed load: {text}")
            else:
                errors.append(f"console error ({source}): {text}")

    def open(self, file):
        """Opens FILE, waits until the network is idle, returns (errors, http_status)."""
        errors = []
        url = f"{self.base}/{file}"
        document = {"url": url, "status": None}
        self.in_flight.clear()
        self.driver.get_log("performance")  # what the previous page left behind
        self.driver.get_log("browser")
        try:
            self.driver.get(url)  # returns after the 'load' event
        except Exception as e:  # a timeout: report it, carry on with the next page
            errors.append(f"did not load within {TIMEOUT_S}s: {type(e).__name__}")
        # Network idle (Playwright's "networkidle"): nothing in flight and no event for IDLE_S.
        deadline = time.monotonic() + TIMEOUT_S
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            if self.network_events(errors, document) or self.in_flight:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= IDLE_S:
                break
            time.sleep(0.1)
        return errors, document["status"]

    def page_errors(self, errors):
        """What the page raised since it was opened (call after the checks, as Playwright's
        listeners would have collected it): both logs, and the injected recorder."""
        self.network_events(errors, {})
        logged = []
        self.console_errors(logged)
        recorded = self.js("return window.__bookErrors || []") or []
        errors.extend(logged)
        # The injected recorder is the cross-check: its entries are reported when the browser
        # log missed them (it saw fewer JS errors than the page did).
        js_logged = [e for e in logged if not e.startswith("failed load")]
        if len(recorded) > len(js_logged):
            errors.extend(f"{e} (seen by the page, not in the browser log)" for e in recorded)
        return errors


def main():
    book = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "book")
    os.chdir(ROOT)
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    chromedriver = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
    reason = skip_reason(chromium)
    if reason:
        print(f"browser test: SKIPPED: {reason}")
        return 0
    if not (book / "index.html").is_file():
        fail(f"{book}/index.html not found: build the book first (mdbook build)")
    for path, package in [(chromium, "chromium"), (chromedriver, "chromium-driver")]:
        if not os.access(path, os.X_OK):
            fail(f"{path} not found: install it with LAB_BROWSER=1 ci/setup.sh (Debian package {package})")
    try:
        import selenium  # noqa: F401
    except ImportError:
        fail(
            f"{sys.executable} has no selenium: install Debian's python3-selenium "
            "(LAB_BROWSER=1 ci/setup.sh) and run this with /usr/bin/python3"
        )

    shot_dir = ROOT / "target" / "browser"
    shot_dir.mkdir(parents=True, exist_ok=True)
    pages = pages_of(book)
    base = serve(book)
    started = time.monotonic()
    problems = []

    def problem(where, what):
        line = f"{where}: {what}"
        if line not in problems:
            problems.append(line)

    browser = Browser(chromium, chromedriver, base)
    try:
        titles = {}
        diagrams = 0
        shots = []

        def mermaid(file):
            """Waits until every mermaid block holds an <svg>; returns the number of blocks."""
            blocks = browser.count("pre.mermaid")
            if blocks == 0:
                return 0
            browser.wait_for("[...document.querySelectorAll('pre.mermaid')].every((el) => el.querySelector('svg'))")
            rendered, broken = browser.js(
                """
                const all = [...document.querySelectorAll('pre.mermaid')];
                const svgs = all.filter((el) => el.querySelector('svg'));
                // A diagram mermaid cannot parse still becomes an <svg>: one that says "Syntax error".
                const bad = svgs.filter((el) => /Syntax error/i.test(el.textContent) || el.querySelector('.error-icon'));
                return [svgs.length, bad.length];
                """
            )
            if rendered < blocks:
                problem(file, f"{blocks - rendered} of {blocks} mermaid diagram(s) did not render to an <svg>")
            if broken > 0:
                problem(file, f'{broken} mermaid diagram(s) rendered as "Syntax error": check the diagram source')
            return blocks

        def screenshot(file):
            path = shot_dir / re.sub(r"\.html$", ".png", file)
            browser.driver.save_screenshot(str(path))
            return path

        for file in pages:
            page_started = time.monotonic()
            errors, status = browser.open(file)
            if status is None or status >= 400:
                problem(file, f"HTTP {status}")
            title = browser.js("const h = document.querySelector('main h1'); return h ? h.textContent.trim() : ''")
            titles[file] = title
            if not title:
                problem(file, "no <h1> title in the page")
            blocks = mermaid(file)
            diagrams += blocks
            # Speaker notes and solutions start collapsed; nothing offers to run code on the
            # playground (the book's code needs the lab and a Redis server, and the room has no
            # network).
            open_details = browser.count("main details[open]")
            if open_details:
                problem(file, f"{open_details} <details> block(s) open on load: speaker notes and solutions start collapsed")
            play = browser.count("main .play-button")
            if play:
                problem(file, f"{play} code block(s) with a Run button: mark them rust,ignore or rust,noplayground")
            browser.page_errors(errors)
            for error in errors:
                problem(file, error)
            # Screenshots: "Running the lab" (the reader's first steps) and the first chapter
            # with a diagram.
            if file == "running-the-lab.html" or (blocks and not any(d for _, d in shots)):
                shots.append((screenshot(file), blocks > 0))
            ms = int((time.monotonic() - page_started) * 1000)
            state = "ok" if not errors else f"{len(errors)} error(s)"
            print(f"  {file}: {state}, {blocks} diagram(s), {ms}ms", flush=True)
        # Without any diagram yet, take the second screenshot of the first chapter.
        if len(shots) < 2:
            file = next((f for f in pages if re.match(r"ch\d\d-", f)), pages[0])
            browser.open(file)
            shots.append((screenshot(file), False))

        # The sidebar lists every page of SUMMARY.md (mdBook 0.5 fills it from toc.js at load).
        errors, _ = browser.open("index.html")
        browser.page_errors(errors)
        for error in errors:
            problem("index.html", error)
        browser.wait_for("document.querySelector('#mdbook-sidebar a[href]')")
        links = browser.js(
            "return [...document.querySelectorAll('#mdbook-sidebar a[href]')].map((a) => a.getAttribute('href'))"
        )
        listed = {re.sub(r"#.*$", "", re.sub(r"^\./", "", href)) for href in links}
        for file in pages:
            if file not in listed:
                problem("sidebar", f"does not list {file}")
        print(f"  sidebar: {len(links)} links, {sum(f in listed for f in pages)}/{len(pages)} pages")

        # Search: open the search bar as a reader would (the "s" key), type, read the results.
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By

        ActionChains(browser.driver).send_keys("s").perform()
        visible = "(() => { const b = document.querySelector('#mdbook-searchbar'); return !!b && b.offsetParent !== null; })()"
        if not browser.wait_for(visible):
            problem("search", "pressing 's' did not open the search bar")
        else:
            # mdBook searches on keyup: type like a reader, key by key.
            browser.driver.find_element(By.ID, "mdbook-searchbar").send_keys(SEARCH_TERM)
            browser.wait_for("document.querySelector('#mdbook-searchresults li a')")
            hits = browser.js(
                "return [...document.querySelectorAll('#mdbook-searchresults li a')].map((a) => a.getAttribute('href'))"
            )
            if not hits:
                problem("search", f'no result for "{SEARCH_TERM}"')
            print(f'  search "{SEARCH_TERM}": {len(hits)} result(s), first {hits[0] if hits else "-"}')
        for error in browser.page_errors([]):
            problem("index.html (search)", error)

        # The print page: one document with every chapter and every diagram, for offline reading.
        errors, status = browser.open("print.html")
        if status is None or status >= 400:
            problem("print.html", f"HTTP {status}")
        headings = set(browser.js("return [...document.querySelectorAll('main h1')].map((h) => h.textContent.trim())"))
        for file, title in titles.items():
            if title and title not in headings:
                problem("print.html", f'misses the chapter "{title}" ({file})')
        blocks = mermaid("print.html")
        if blocks != diagrams:
            problem("print.html", f"{blocks} diagram(s), the chapters have {diagrams}")
        printed = browser.wait_for("window.__printed")
        if not printed:
            problem("print.html", "never called window.print()")
        elif printed["drawn"] < printed["blocks"]:
            problem(
                "print.html",
                f"window.print() came when {printed['drawn']} of {printed['blocks']} diagram(s) were drawn: "
                "the rest would print as source",
            )
        browser.page_errors(errors)
        for error in errors:
            problem("print.html", error)
        print(f"  print.html: {len(headings)} chapter titles, {blocks} diagram(s)")
    finally:
        browser.driver.quit()

    seconds = time.monotonic() - started
    print(f"  screenshots: {', '.join(str(p.relative_to(ROOT)) for p, _ in shots)}")
    if problems:
        print(f"browser test: {len(problems)} problem(s) in {seconds:.1f}s:")
        for p in problems:
            print(f"  - {p}")
        return 1
    print(f"browser test: {len(pages)} pages + print.html, {diagrams} diagram(s), ok in {seconds:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
