"""cnnlab report: a self-contained page, checked by structure (always) and in a real browser.

The browser test drives Debian's Chromium (/usr/bin/chromium, or $CNNLAB_CHROMIUM) with
playwright; it never downloads a browser. Screenshots at 1280 and 390 px wide and a PDF print
are kept under test-artifacts/ (git-ignored; $CNNLAB_TEST_ARTIFACTS moves them).
"""
import base64
import io
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from cnnlab.cli import main
from cnnlab.report import is_report

from conftest import make_image_folder

HOSTILE = "<img src=x onerror=alert(1)>"
MATH = "$x^2$ & co"
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("CNNLAB_TEST_ARTIFACTS") or ROOT / "test-artifacts")
CHROMIUM = os.environ.get("CNNLAB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def hostile_runs(tmp_path_factory):
    """Two short runs on a dataset whose class folders are named like markup and mathtext,
    with some test images filed under the wrong class so that there are mistakes to show."""
    tmp = tmp_path_factory.mktemp("hostile")
    data = make_image_folder(tmp / "data", classes=(HOSTILE, MATH, "plain"), n_train=16, n_test=6)
    for i in range(2):
        (data / "test" / "plain" / f"{i:04d}.png").rename(data / "test" / HOSTILE / f"moved{i}.png")
    runs = []
    for name, epochs in (("run-a", 2), ("run-b", 1)):
        out = tmp / name
        assert main(["train", "--data", str(data), "--epochs", str(epochs), "--batch-size", "8",
                     "--val-size", "8", "--out", str(out)]) == 0
        runs.append(out)
    assert main(["evaluate", str(runs[0])]) == 0  # run-a has eval.json; run-b is evaluated by report
    one, two = tmp / "one.html", tmp / "two.html"
    assert main(["report", str(runs[0]), "--out", str(one)]) == 0
    assert main(["report", *map(str, runs), "--out", str(two)]) == 0
    return {"runs": runs, "one": one, "two": two, "data": data}


class Page(HTMLParser):
    """Tags with their attributes, the text, and the style sheets of a page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.text, self.styles, self._in_style = [], [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        (self.styles if self._in_style else self.text).append(data)


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.mark.parametrize("which", ["one", "two"])
def test_page_is_self_contained_and_escapes_data(hostile_runs, which):
    path = hostile_runs[which]
    page = parse(path)
    kinds = {t for t, _ in page.tags}
    assert not kinds & {"script", "link", "iframe", "object", "embed", "base", "form"}
    for tag, attrs in page.tags:
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)  # no event handlers at all
        if "href" in attrs:
            assert attrs["href"].startswith("#"), attrs["href"]
    css = "".join(page.styles)
    assert "url(" not in css and "@import" not in css
    images = [a for t, a in page.tags if t == "img"]
    assert len(images) >= (6 if which == "one" else 12)
    for attrs in images:
        src = attrs["src"]
        assert src.startswith("data:image/png;base64,"), src[:40]
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            im.load()
            assert im.format == "PNG" and im.width > 0 and im.height > 0
    text = "".join(page.text)
    assert HOSTILE in text and MATH in text  # shown as text...
    raw = path.read_text()
    assert "<img src=x" not in raw and "&lt;img src=x onerror=alert(1)&gt;" in raw  # ...never as markup
    assert "http://" not in raw and "https://" not in raw


def test_single_page_has_every_part(hostile_runs):
    text = "".join(parse(hostile_runs["one"]).text)
    for part in ("Training curves", "Per class", "Most confused pairs", "Confusion matrix",
                 "Most confident mistakes", "Calibration", "Sample test images per class", "Model",
                 "Recipe and configuration", "Data", "Machine, versions and times", "fingerprint",
                 "total params: ", "torch version", "training time"):
        assert part in text, part


def test_comparison_page_puts_the_runs_side_by_side(hostile_runs):
    text = "".join(parse(hostile_runs["two"]).text)
    assert "Runs side by side" in text and "Accuracy per class" in text and "Settings that differ" in text
    assert "run-a" in text and "run-b" in text
    assert "was computed for this report" in text  # run-b had no eval.json
    assert not (hostile_runs["runs"][1] / "eval.json").exists()  # and the report wrote none there


def test_report_never_overwrites_a_foreign_file(hostile_runs, tmp_path, capsys):
    mine = tmp_path / "notes.html"
    mine.write_text("<p>my notes</p>")
    assert main(["report", str(hostile_runs["runs"][0]), "--out", str(mine)]) == 2
    assert mine.read_text() == "<p>my notes</p>"
    assert "is not a cnnlab report" in capsys.readouterr().err
    assert is_report(hostile_runs["one"])
    assert main(["report", str(hostile_runs["runs"][0]), "--out", str(hostile_runs["one"])]) == 0  # its own: fine


def _browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[test]'")
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed: run 'apt-get install -y chromium' (Debian/Ubuntu) "
                    "or set CNNLAB_CHROMIUM to a Chromium binary; the structural tests still ran")
    return sync_playwright


@pytest.mark.parametrize("which", ["one", "two"])
def test_page_in_a_real_browser(hostile_runs, which):
    sync_playwright = _browser()
    url = hostile_runs[which].resolve().as_uri()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            for width in (1280, 390):
                page = browser.new_page(viewport={"width": width, "height": 900})
                errors, requests, dialogs = [], [], []
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("request", lambda r: requests.append(r.url))
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                page.goto(url, wait_until="load")
                page.wait_for_load_state("networkidle")
                sizes = page.evaluate("Array.from(document.images, i => [i.complete, i.naturalWidth])")
                assert sizes and all(done and w > 0 for done, w in sizes), sizes
                assert HOSTILE in page.inner_text("body")
                assert page.evaluate("document.querySelectorAll('script, img[src=\"x\"]').length") == 0
                # nothing wider than the screen: tables and code scroll inside their own box
                assert page.evaluate("document.documentElement.scrollWidth") <= width
                # nothing cut off either: every figure whole on the screen, every table and note
                # inside its box (only the model's monospace table scrolls)
                cut = page.evaluate("""[
                  ...Array.from(document.images).filter(i => i.getBoundingClientRect().right > innerWidth + 0.5)
                     .map(i => 'image ' + i.alt),
                  ...Array.from(document.querySelectorAll('.scroll, .note, dl.kv, .cards'))
                     .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.className + ' box')]""")
                assert cut == [], (width, cut)
                if width == 1280:  # figures at the size their text was set in: 10 pt is 14 px
                    shown = page.evaluate("""Array.from(document.querySelectorAll(
                        'img[alt="confusion matrix"], img[alt="confident mistakes"]'),
                        i => [i.alt, i.getBoundingClientRect().width / i.naturalWidth])""")
                    assert shown and all(scale >= 0.95 for _, scale in shown), shown
                text = page.inner_text("body")
                assert "tested on " in text and "None" not in text and "{'" not in text
                page.screenshot(path=str(ARTIFACTS / f"report-{which}-{width}px.png"), full_page=True)
                if width == 1280:
                    page.pdf(path=str(ARTIFACTS / f"report-{which}.pdf"))  # the print stylesheet
                assert errors == [] and dialogs == []
                assert [u for u in requests if not u.startswith(("data:", url))] == []
                page.close()
        finally:
            browser.close()
