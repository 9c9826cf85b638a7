"""The built report in a real browser: headless Chromium, every non-local request blocked.

Opens each page of the tiny book (tests/tiny_book.py) from a local HTTP server and checks that no
request failed or left the machine and that the console shows no error; then moves E3's lambda
slider, E5's temperature slider, B1's label-weight slider and B6's gallery pager and checks that the figure shown changes. Screenshots go to a
temporary folder (printed). Needs Debian's `chromium` (CHROMIUM to override /usr/bin/chromium),
the `playwright` package (no `playwright install`: it drives the system browser) and the local
JavaScript copies from `make assets`. Without them the tests skip, except under CI (CI set),
where `make test` installs them and their absence is a failure.
"""

import functools
import http.server
import os
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest
from tiny_book import tiny_book as build_tiny_book

from kdlib import report

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
SLIDER_PAGES = {"lambda": "executed/e3_initialisation.html", "temperature": "executed/e5_temperature.html",
                "alpha": "executed/b1_hard_labels.html", "gallery": "executed/b6_disagreements.html",
                "authors' gallery": "executed/p1_authors_networks.html"}


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"browser test cannot run under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def tiny_book(tmp_path_factory, cifar_real_source):
    return build_tiny_book(tmp_path_factory, cifar_real_source)


@pytest.fixture(scope="module")
def site(tiny_book):
    """The built book served on 127.0.0.1 (a random free port); yields its base URL."""
    if not tiny_book.local_assets:
        _unavailable("local JavaScript not installed (run `make assets`); the pages would use CDNs")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(tiny_book.index.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -r requirements.txt)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Page:
    """A browser tab that blocks and records non-local requests, failures and console errors."""

    def __init__(self, browser, base: str):
        self.base = base
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.blocked: list[str] = []
        self.failed: list[str] = []
        self.errors: list[str] = []
        self.page.route("**/*", self._route)
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        self.page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.url} (HTTP {r.status})"))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _route(self, route):
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlparse(url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def open(self, path: str):
        self.page.goto(self.base + path, wait_until="networkidle")
        return self.page

    def check_clean(self, what: str):
        assert not self.blocked, f"{what}: non-local requests {self.blocked}"
        assert not self.failed, f"{what}: failed requests {self.failed}"
        assert not self.errors, f"{what}: console errors {self.errors}"


def test_every_page_loads_locally_without_errors(site, browser):
    pages = ["index.html", "background.html"] + [f"executed/{n}.html" for n in report.NOTEBOOKS]
    for path in pages:
        tab = Page(browser, site)
        page = tab.open(path)
        assert page.locator("h1").count() >= 1, path
        tab.check_clean(path)
        tab.page.close()


def test_math_is_typeset_locally(site, browser):
    tab = Page(browser, site)
    page = tab.open("background.html")
    page.wait_for_selector("mjx-container", timeout=20_000)  # MathJax rendered (from _static/vendor)
    tab.check_clean("background.html")


def _shown_image(widget) -> str:
    """src of the figure the widget displays (the Stack renders only its selected child)."""
    images = widget.locator("img")
    visible = [images.nth(i) for i in range(images.count()) if images.nth(i).is_visible()]
    assert len(visible) == 1, f"expected one visible figure, found {len(visible)}"
    return visible[0].get_attribute("src")


@pytest.mark.parametrize("slider", sorted(SLIDER_PAGES))
def test_slider_changes_the_figure(site, browser, slider, tmp_path_factory):
    shots = tmp_path_factory.mktemp(f"screenshots_{slider}")
    tab = Page(browser, site)
    page = tab.open(SLIDER_PAGES[slider])
    page.wait_for_selector(".kdlib-figure-slider img", timeout=20_000)  # widgets rendered, no kernel
    widgets = page.locator(".kdlib-figure-slider")
    assert widgets.count() >= 1, f"no {slider} slider on {SLIDER_PAGES[slider]}"
    moved = 0
    for i in range(widgets.count()):
        widget = widgets.nth(i)
        widget.scroll_into_view_if_needed()
        before = _shown_image(widget)
        readout = widget.locator(".widget-readout").inner_text()
        page.screenshot(path=str(shots / f"{slider}-{i}-before.png"), full_page=True)
        handle = widget.locator(".noUi-handle").first
        if handle.get_attribute("aria-valuemin") == handle.get_attribute("aria-valuemax"):
            continue  # one position (a gallery group of one page): nothing to move
        moved += 1
        at_end = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
        handle.focus()
        page.keyboard.press("ArrowLeft" if at_end else "ArrowRight")  # one step, like a reader would
        page.wait_for_function("([el, src]) => { const im = [...el.querySelectorAll('img')]"
                               ".filter(x => x.offsetParent !== null); return im.length == 1 && im[0].src != src; }",
                               arg=[widget.element_handle(), before], timeout=10_000)
        widget.screenshot(path=str(shots / f"{slider}-{i}-after.png"))
        page.screenshot(path=str(shots / f"{slider}-{i}-after-page.png"), full_page=True)
        assert _shown_image(widget) != before
        assert widget.locator(".widget-readout").inner_text() != readout
    assert moved, f"no {slider} slider on {SLIDER_PAGES[slider]} has more than one position"
    tab.check_clean(SLIDER_PAGES[slider])
    print(f"\nscreenshots of the {slider} slider: {shots}")
