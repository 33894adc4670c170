"""``govpipe report``: a self-contained HTML page from the metrics and alerts topics.

collect.py   read both topics to the end (assign, until quiet) into ``ReportData``
summary.py   ``ReportData`` -> ``Summary`` (pure: totals, series, team rates, offenders)
charts.py    inline SVG charts drawn here (pure)
render.py    ``Summary`` -> HTML (pure; every data value escaped; no URLs, CSP none)
dossiers.py  "Tasks with findings" and their evidence pages (safe file names, the bound)
build.py     ``build_report(settings, out_path)``: the I/O shell
sample.py    realistic synthetic metrics and alerts (tests, docs screenshot)
screenshot.py  an HTML file -> PNG with headless Chromium (``python -m``)
"""

from __future__ import annotations

from pipeline.report.build import BuiltReport, build_report, render_data
from pipeline.report.collect import ReportData, TopicReader, collect, report_data
from pipeline.report.render import render_report
from pipeline.report.summary import Summary, summarise

__all__ = [
    "BuiltReport",
    "ReportData",
    "Summary",
    "TopicReader",
    "build_report",
    "collect",
    "render_data",
    "render_report",
    "report_data",
    "summarise",
]
