"""The report's ``index.html``: summary, histograms, filters, the gallery's first page, errors and
retired pairs, from ``index.html.j2`` (shipped next to this module as package data).

Autoescaping is on for every template: catalogue ids and error messages come from retailers' files.
"""

from __future__ import annotations

from typing import Any, Optional

from pipelines.report.ordering import FLAG_ORDER
from pipelines.report.scope import SCORE_NAMES


def _template():
    from pathlib import Path

    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(str(Path(__file__).resolve().parent)),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    return env.get_template("index.html.j2")


def render_index(summary: dict[str, Any], views: dict[str, Any], first: list[dict], errors: list[dict],
                 hist: dict[str, str], thresholds: dict, stats: dict, all_link: Optional[str]) -> str:
    """The page's HTML; ``all_link``: the catalogue report beside a changes report, if there is one."""
    return _template().render(
        s=summary, views=views, first=first, errors=errors, hist=hist, score_names=SCORE_NAMES,
        flags=FLAG_ORDER, thresholds=thresholds, stats=stats, all_link=all_link)
