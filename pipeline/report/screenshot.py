"""An HTML file -> PNG with headless Chromium (Debian's ``chromium``).

    python -m pipeline.report.screenshot report.html docs/report.png [--width 1280] [--height 2000]
    python -m pipeline.report.screenshot --sample docs/report.png   # realistic synthetic data

Chromium runs with no network side-channels (no QUIC, no background networking,
no component updates, no sync) and a throwaway profile; the page itself fetches
nothing (CSP ``default-src 'none'``). ``find_chromium`` returns None when no
browser is installed (``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

CANDIDATES: Final = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DEFAULT_WIDTH: Final = 1280
DEFAULT_HEIGHT: Final = 2000
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


def screenshot(
    html_path: Path | str,
    png_path: Path | str,
    *,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    browser: str | None = None,
    timeout_s: float = 90.0,
) -> Path:
    """Render ``html_path`` in headless Chromium and save a ``width`` x ``height`` PNG."""
    browser = browser or find_chromium()
    if browser is None:
        raise ScreenshotError("chromium not installed: apt-get install chromium")
    html_file, png = Path(html_path), Path(png_path)
    if not html_file.is_file():
        raise ScreenshotError(f"{html_file} does not exist")
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="govpipe-chromium-") as profile:
        command = chromium_command(browser, html_file, png.resolve(), Path(profile), width, height)
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
                env={**os.environ, "HOME": profile},
            )
        except subprocess.TimeoutExpired:
            raise ScreenshotError(f"chromium took longer than {timeout_s:g}s") from None
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
    parser.add_argument("--height", type=int, default=DEFAULT_HEIGHT)
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
