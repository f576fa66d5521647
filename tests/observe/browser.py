"""Headless Chromium for the report tests: the page's DOM after its script ran, and a screenshot.

Chromium comes from Debian (``apt-get install chromium``; ``.ci/run`` installs it when missing).
Without it the tests fail with that instruction - they do not skip.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--hide-scrollbars", "--force-device-scale-factor=1")


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError("Chromium is needed for the report's browser test: sudo apt-get install chromium "
                         "(.ci/run installs it on a fresh machine)")


def _run(page: Path, *flags: str) -> str:
    with tempfile.TemporaryDirectory(prefix="ceap-chromium-") as profile:
        done = subprocess.run([chromium(), *_FLAGS, f"--user-data-dir={profile}", *flags, page.resolve().as_uri()],
                              capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, f"chromium exited {done.returncode}: {done.stderr[-2000:]}"
    return done.stdout


def dump_dom(page: Path) -> str:
    """The DOM after load, as Chromium serialises it (its scripts have run)."""
    return _run(page, "--virtual-time-budget=5000", "--dump-dom")


def screenshot(page: Path, out: Path, width: int = 1400, height: int = 3200) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    _run(page, f"--window-size={width},{height}", f"--screenshot={out.resolve()}")
    assert out.read_bytes()[:4] == b"\x89PNG", "chromium wrote no PNG"
    return out


class Elements(HTMLParser):
    """Every element's tag and attributes, and the text of the elements with an id."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text_by_id: dict[str, str] = {}
        self._open: list[str | None] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attributes = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attributes))
        self._open.append(attributes.get("id"))
        if attributes.get("id"):
            self.text_by_id.setdefault(attributes["id"], "")

    def handle_endtag(self, tag):
        if self._open:
            self._open.pop()

    def handle_data(self, data):
        for element_id in self._open:
            if element_id:
                self.text_by_id[element_id] += data

    def with_class(self, name: str) -> list[dict[str, str]]:
        return [a for _, a in self.elements if name in a.get("class", "").split()]
