"""An HTML file -> PNG with headless Chromium (Debian's ``chromium``).

    python -m pipeline.report.screenshot report.html docs/report.png [--width 1280] [--height H]
    python -m pipeline.report.screenshot --sample docs/report.png   # realistic synthetic data

Chromium runs with no network side-channels (no QUIC, no background networking,
no component updates, no sync) and a throwaway profile; the page itself fetches
nothing (CSP ``default-src 'none'``). ``find_chromium`` returns None when no
browser is installed (``apt-get install chromium``).

The image is the whole page: without ``height`` the page is first measured (a
throwaway copy with one inline script that puts the document height in the title,
read back with ``--dump-dom``), then captured at exactly that height.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

CANDIDATES: Final = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DEFAULT_WIDTH: Final = 1280
#: Bounds of a measured page height (a runaway page is cut at the maximum).
MIN_HEIGHT: Final = 200
MAX_HEIGHT: Final = 30_000
_CSP_META: Final = re.compile(r'<meta http-equiv="Content-Security-Policy"[^>]*>', re.IGNORECASE)
_MEASURE: Final = (
    "<script>document.title='govpipe-height:'+Math.ceil(Math.max("
    "document.documentElement.scrollHeight,document.body.scrollHeight))</script>"
)
_MEASURED: Final = re.compile(r"<title>govpipe-height:(\d+)</title>")
FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


class ScreenshotError(RuntimeError):
    """Chromium is missing, failed, or wrote no image."""


def find_chromium() -> str | None:
    """The browser to use: ``$CHROMIUM`` if set, else the first known name on PATH."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return shutil.which(explicit) or (explicit if Path(explicit).is_file() else None)
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_command(
    browser: str, html_path: Path, png_path: Path, profile: Path, width: int, height: int
) -> list[str]:
    return [
        browser,
        *FLAGS,
        f"--user-data-dir={profile}",
        f"--screenshot={png_path}",
        f"--window-size={width},{height}",
        html_path.resolve().as_uri(),
    ]


def _run(command: list[str], profile: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            env={**os.environ, "HOME": profile},
        )
    except subprocess.TimeoutExpired:
        raise ScreenshotError(f"chromium took longer than {timeout_s:g}s") from None


def page_height(browser: str, html_file: Path, width: int, timeout_s: float = 90.0) -> int:
    """The rendered height of ``html_file`` at ``width`` CSS pixels."""
    page = html_file.read_text(encoding="utf-8")
    page = _CSP_META.sub("", page, count=1)
    page = (
        page.replace("</body>", _MEASURE + "</body>", 1) if "</body>" in page else page + _MEASURE
    )
    with tempfile.TemporaryDirectory(prefix="govpipe-chromium-") as scratch:
        copy = Path(scratch) / "measure.html"
        copy.write_text(page, encoding="utf-8")
        profile = Path(scratch) / "profile"
        command = [
            browser,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},800",
            "--dump-dom",
            copy.as_uri(),
        ]
        done = _run(command, str(profile), timeout_s)
    match = _MEASURED.search(done.stdout)
    if match is None:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise ScreenshotError(f"could not measure the page height (exit {done.returncode}): {tail}")
    return min(max(int(match.group(1)), MIN_HEIGHT), MAX_HEIGHT)


def screenshot(
    html_path: Path | str,
    png_path: Path | str,
    *,
    width: int = DEFAULT_WIDTH,
    height: int | None = None,
    browser: str | None = None,
    timeout_s: float = 90.0,
) -> Path:
    """Render ``html_path`` in headless Chromium and save a PNG ``width`` wide and as tall
    as the page (or ``height``, when given)."""
    browser = browser or find_chromium()
    if browser is None:
        raise ScreenshotError("chromium not installed: apt-get install chromium")
    html_file, png = Path(html_path), Path(png_path)
    if not html_file.is_file():
        raise ScreenshotError(f"{html_file} does not exist")
    if height is None:
        height = page_height(browser, html_file, width, timeout_s)
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="govpipe-chromium-") as profile:
        command = chromium_command(browser, html_file, png.resolve(), Path(profile), width, height)
        done = _run(command, profile, timeout_s)
    if done.returncode != 0 or not png.is_file() or png.stat().st_size == 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise ScreenshotError(f"chromium exited {done.returncode} without an image: {tail}")
    return png


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.report.screenshot", description=__doc__.split("\n")[0]
    )
    parser.add_argument("html", nargs="?", type=Path, help="the report HTML (omit with --sample)")
    parser.add_argument("png", type=Path, help="where the PNG goes, e.g. docs/report.png")
    parser.add_argument(
        "--sample",
        action="store_true",
        help="render a report of realistic synthetic data first (pipeline.report.sample)",
    )
    parser.add_argument("--seed", type=int, default=7, help="--sample: random seed")
    parser.add_argument("--width", type=int, default=DEFAULT_WIDTH)
    parser.add_argument(
        "--height", type=int, default=None, help="default: the whole page, measured"
    )
    args = parser.parse_args(argv)
    if not args.sample and args.html is None:
        parser.error("give the HTML file, or --sample")
    try:
        with tempfile.TemporaryDirectory(prefix="govpipe-report-") as scratch:
            html = args.html
            if args.sample:
                from pipeline.report.sample import write_sample_report

                html = write_sample_report(html or Path(scratch) / "report.html", seed=args.seed)
            out = screenshot(html, args.png, width=args.width, height=args.height)
    except ScreenshotError as exc:
        print(f"screenshot: {exc}", file=sys.stderr)
        return 1
    print(f"{out} ({out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
