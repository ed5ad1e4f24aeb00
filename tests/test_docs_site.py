"""The docs site builds strictly, its internal links resolve, and three of its pages render
in headless Chromium without console errors; the distribution builds and its metadata
renders on the package index (``twine check --strict``).
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import os
import re
import subprocess
import sys
import threading
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from braid.testing.chromium import run_chromium

ROOT = Path(__file__).resolve().parent.parent
#: how Chromium (--enable-logging=stderr) reports a page's console messages and uncaught
#: errors; the canary test proves the pattern still matches this Chromium's output
CONSOLE_LINE = re.compile(r":CONSOLE[:(]\d*\)?\]? ?(.*)")
PAGES = {  # page -> text its rendered DOM must contain
    "index.html": "A first flow",
    "concepts/dependencies.html": "allow_failure",
    "reference/braid.html": 'id="braid.flow"',
}


def env() -> dict[str, str]:
    return dict(
        os.environ,
        NO_MKDOCS_2_WARNING="1",
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--quiet",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(out),
        ],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr[-4000:]}"
    return out


# -- links ------------------------------------------------------------------------------
class LinksAndIds(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.anchors: list[str] = []  # hrefs of <a>: links a reader may follow off-site
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "id":
                self.ids.add(value)
            elif (name == "href" and tag in ("a", "link")) or (
                name == "src" and tag in ("script", "img")
            ):
                self.links.append(value)
                if tag == "a":
                    self.anchors.append(value)


@functools.cache
def parsed(path: Path) -> LinksAndIds:
    parser = LinksAndIds()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_every_internal_link_resolves_to_a_file_and_anchor(site):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 25
    broken = []
    checked = 0
    for page in pages:
        for link in parsed(page).links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "data:")):
                if not link.startswith(("https:", "http:", "//")):
                    continue
                if link not in parsed(page).anchors:
                    # a stylesheet, script or image from elsewhere: the site must render
                    # offline, from its own files
                    broken.append(f"{page.relative_to(site)}: loads {link}")
                continue
            if not parts.path:
                target = page
            elif parts.path.startswith("/"):  # 404.html links from the site's root
                target = site / unquote(parts.path).lstrip("/")
            else:
                target = page.parent / unquote(parts.path)
            if parts.path.endswith("/") or target.is_dir():
                target = target / "index.html"
            target = target.resolve()
            checked += 1
            if not target.is_file() or site.resolve() not in target.parents:
                broken.append(f"{page.relative_to(site)}: {link}")
            elif (
                parts.fragment
                and target.suffix == ".html"
                and unquote(parts.fragment) not in parsed(target).ids
            ):
                broken.append(f"{page.relative_to(site)}: {link} (no such anchor)")
    assert checked > 500
    assert not broken, "\n".join(broken)


def test_generated_parts_are_in_the_site(site):
    runners = (site / "runners" / "index.html").read_text(encoding="utf-8")
    for field in ("requires_pickling", "native_dependencies", "remote"):
        assert f"<code>{field}</code>" in runners
    import braid.errors

    trouble = (site / "troubleshooting.html").read_text(encoding="utf-8")
    for name in braid.errors.__all__:
        assert f'id="{name.lower()}"' in trouble, name
    api = (site / "reference" / "braid.html").read_text(encoding="utf-8")
    import braid

    for name in braid.__all__:
        if name in vars(braid) and name != "errors":  # lazy names live in their modules
            assert f'id="braid.{name}"' in api, name


# -- Chromium ---------------------------------------------------------------------------
class QuietHandler(http.server.SimpleHTTPRequestHandler):
    failed: list[str]

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base's name
        pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.failed.append(f"{code} {self.path}")
        super().send_error(code, message, explain)


@pytest.fixture(scope="module")
def server(site):
    failed: list[str] = []
    handler = functools.partial(
        type("Handler", (QuietHandler,), {"failed": failed}), directory=str(site)
    )
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", failed, site
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def open_in_chromium(tmp_path: Path, url: str) -> tuple[str, list[str]]:
    """The DOM Chromium rendered for ``url``, and the console messages it logged."""
    done = run_chromium(
        tmp_path,
        url,
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
        "--dump-dom",
        test="the docs site test",
    )
    console = [m.group(1) for m in map(CONSOLE_LINE.search, done.stderr.splitlines()) if m]
    return done.stdout, console


def test_console_errors_are_seen(server, tmp_path):
    base, _failed, site = server
    (site / "canary.html").write_text(
        "<html><body><script>console.error('canary-error'); notDefined();</script></body></html>",
        encoding="utf-8",
    )
    try:
        _dom, console = open_in_chromium(tmp_path, f"{base}/canary.html")
    finally:
        (site / "canary.html").unlink()
    assert any("canary-error" in line for line in console), console
    assert any("notDefined" in line for line in console), console


@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_renders_without_console_errors(server, tmp_path, page):
    base, failed, _site = server
    failed.clear()
    dom, console = open_in_chromium(tmp_path, f"{base}/{page}")
    assert not console, f"{page} logged to the console:\n" + "\n".join(console)
    assert not failed, f"{page} requested missing files: {failed}"
    assert PAGES[page] in dom
    assert 'class="md-nav' in dom  # Material's navigation was rendered
    assert "md-typeset" in dom and "<h1" in dom


# -- the distribution -------------------------------------------------------------------
def test_wheel_and_sdist_build_and_their_metadata_renders(tmp_path):
    out = tmp_path / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    wheels, sdists = list(out.glob("*.whl")), list(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    check = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(wheels[0]), str(sdists[0])],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert check.returncode == 0, check.stdout + check.stderr

    version = re.search(
        r'^__version__ = "(.+)"$',
        (ROOT / "braid" / "__init__.py").read_text(encoding="utf-8"),
        re.M,
    )
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = wheel.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = wheel.read(meta_name).decode()
    assert "braid/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "docs/")) for n in names)
    assert "\nName: braid-flow\n" in metadata
    assert f"\nVersion: {version.group(1)}\n" in metadata
    assert "\nLicense-Expression: MIT\n" in metadata
    assert "Provides-Extra: dask" in metadata and "Provides-Extra: ray" in metadata
    assert "pip install 'braid-flow[dask]'" in metadata  # the README, as long description


def test_install_hints_name_the_distribution():
    # `braid` on the package index is an unrelated project; every hint must say braid-flow
    wrong = re.compile(r"pip install '?braid(\[|'|\s|$)")
    found = []
    for folder in ("braid", "bench", "ci", "docs", "examples"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".md", ".sh", ".toml") and path.is_file():
                for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                    if wrong.search(line) and "pip uninstall braid" not in line:
                        found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "\n".join(found)
