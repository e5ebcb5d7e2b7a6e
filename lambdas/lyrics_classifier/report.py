"""The run report: one self-contained HTML page beside every run's summary JSON.

Standard library only: Merge renders it inside a Lambda that has neither matplotlib nor numpy,
so the charts are inline SVG drawn here. Every value from the summary is HTML-escaped (lyrics
previews and labels are user data). `page` and `table` are shared with the evaluation report.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["bar_chart", "histogram", "page", "render_run_report", "table"]

MAX_LANGUAGES = 15  # bars drawn; the rest are summed into "other"

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 60rem; padding: 0 1rem; color: #1f2328; line-height: 1.45; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border: 1px solid #d0d7de; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.text { max-width: 32rem; overflow-wrap: anywhere; }
.muted { color: #59636e; } svg { max-width: 100%; height: auto; } img { max-width: 100%; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: .15rem 1rem; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; }
"""

_BAR = "#4c78a8"
_AXIS = "#59636e"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: str) -> str:
    """A complete HTML document: no scripts, no external files."""
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = (),
          row_class: str | None = None) -> str:
    """An HTML table; cells are escaped, columns in `numeric` right-aligned."""
    def cell(tag: str, index: int, value: Any) -> str:
        css = " class=\"num\"" if index in numeric else (" class=\"text\"" if tag == "td" else "")
        return f"<{tag}{css}>{_e(value)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    attr = f" class=\"{_e(row_class)}\"" if row_class else ""
    body = "".join(f"<tr{attr}>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>\n" for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bar_chart(counts: Mapping[str, int | float], title: str) -> str:
    """Horizontal bars, one per key in the order given, each with its count and share."""
    items = [(str(k), _number(v)) for k, v in counts.items()]
    if not items:
        return "<p class=\"muted\">none</p>"
    total = sum(v for _, v in items) or 1
    top = max(v for _, v in items) or 1
    label_width, bar_width, row, width = 170, 340, 24, 640
    height = row * len(items) + 8
    parts = [f"<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" width=\"{width}\" height=\"{height}\" "
             f"viewBox=\"0 0 {width} {height}\" font-size=\"13\" font-family=\"sans-serif\">"
             f"<title>{_e(title)}</title>"]
    for i, (name, value) in enumerate(items):
        y = 4 + i * row
        length = bar_width * value / top
        parts.append(
            f"<g><title>{_e(name)}: {_e(_format_count(value))} ({value / total:.1%})</title>"
            f"<text x=\"{label_width - 8}\" y=\"{y + 16}\" text-anchor=\"end\">{_e(_short(name, 24))}</text>"
            f"<rect x=\"{label_width}\" y=\"{y + 3}\" width=\"{length:.1f}\" height=\"{row - 8}\" fill=\"{_BAR}\"/>"
            f"<text x=\"{label_width + length + 6:.1f}\" y=\"{y + 16}\" fill=\"{_AXIS}\">"
            f"{_e(_format_count(value))} ({value / total:.1%})</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def histogram(edges: Sequence[float], counts: Sequence[int | float], title: str, x_label: str) -> str:
    """Vertical bars over the bins [edges[k], edges[k + 1]), with the x axis labelled at the
    first, middle and last edge and the y axis at 0 and the tallest bar."""
    counts = [_number(c) for c in counts]
    if not counts:
        return "<p class=\"muted\">none</p>"
    if len(edges) != len(counts) + 1:  # a malformed summary: equal bins over [0, 1]
        edges = [k / len(counts) for k in range(len(counts) + 1)]
    width, height, left, bottom, top_pad = 640, 240, 48, 40, 12
    plot_w, plot_h = width - left - 12, height - bottom - top_pad
    lo, hi = float(edges[0]), float(edges[-1])
    span = (hi - lo) or 1.0
    tallest = max(counts) or 1

    def x(value: float) -> float:
        return left + plot_w * (value - lo) / span

    parts = [f"<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" width=\"{width}\" height=\"{height}\" "
             f"viewBox=\"0 0 {width} {height}\" font-size=\"12\" font-family=\"sans-serif\">"
             f"<title>{_e(title)}</title>"]
    base = top_pad + plot_h
    for k, count in enumerate(counts):
        x0, x1 = x(float(edges[k])), x(float(edges[k + 1]))
        bar = plot_h * count / tallest
        parts.append(
            f"<rect x=\"{x0 + 1:.1f}\" y=\"{base - bar:.1f}\" width=\"{max(0.0, x1 - x0 - 2):.1f}\" "
            f"height=\"{bar:.1f}\" fill=\"{_BAR}\"><title>{_e(f'{edges[k]:g}–{edges[k + 1]:g}')}: "
            f"{_e(_format_count(count))}</title></rect>"
        )
    parts.append(f"<line x1=\"{left}\" y1=\"{base}\" x2=\"{left + plot_w}\" y2=\"{base}\" stroke=\"{_AXIS}\"/>"
                 f"<line x1=\"{left}\" y1=\"{top_pad}\" x2=\"{left}\" y2=\"{base}\" stroke=\"{_AXIS}\"/>")
    for value in (lo, (lo + hi) / 2, hi):
        parts.append(f"<text x=\"{x(value):.1f}\" y=\"{base + 16}\" text-anchor=\"middle\" fill=\"{_AXIS}\">"
                     f"{value:g}</text>")
    parts.append(f"<text x=\"{left - 6}\" y=\"{base + 4}\" text-anchor=\"end\" fill=\"{_AXIS}\">0</text>"
                 f"<text x=\"{left - 6}\" y=\"{top_pad + 8}\" text-anchor=\"end\" fill=\"{_AXIS}\">"
                 f"{_e(_format_count(tallest))}</text>"
                 f"<text x=\"{left + plot_w / 2:.1f}\" y=\"{height - 6}\" text-anchor=\"middle\" fill=\"{_AXIS}\">"
                 f"{_e(x_label)}</text></svg>")
    return "".join(parts)


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) and number > 0 else 0.0


def _format_count(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.3g}"


def _input_name(summary: Mapping[str, Any]) -> str:
    source = summary.get("input")
    if isinstance(source, Mapping):
        return str(source.get("key") or source.get("name") or "input")
    return str(source) if source else "input"


def _facts(pairs: Iterable[tuple[str, Any]]) -> str:
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in pairs if v is not None and v != "")
    return f"<dl class=\"facts\">{items}</dl>" if items else ""


def _count(summary: Mapping[str, Any], key: str) -> str | None:
    value = summary.get(key)
    return f"{value:,}" if isinstance(value, int) else None


def _model_facts(model: Any) -> list[tuple[str, Any]]:
    if not isinstance(model, Mapping):
        return []
    sha = model.get("sha256")
    return [("model", model.get("name")), ("model kind", model.get("kind")),
            ("model sha256", str(sha)[:12] if sha else None)]


def _label_set_section(model: Any) -> str:
    label_set = model.get("label_set") if isinstance(model, Mapping) else None
    if not isinstance(label_set, Mapping):
        return ""
    sha = label_set.get("sha256")
    labels = label_set.get("labels")
    pairs = [
        ("name", label_set.get("name")),
        ("sha256", str(sha)[:12] if sha else None),
        ("labels", ", ".join(str(label) for label in labels) if isinstance(labels, list) else None),
        ("multi-label", f"yes, threshold {label_set.get('threshold')}" if label_set.get("multi_label") else None),
    ]
    return "<h2>Label set (given at run time)</h2>\n" + _facts(pairs)


def _languages(counts: Mapping[str, Any]) -> dict[str, float]:
    ranked = sorted(((str(k), _number(v)) for k, v in counts.items()), key=lambda item: -item[1])
    shown = dict(ranked[:MAX_LANGUAGES])
    rest = sum(v for _, v in ranked[MAX_LANGUAGES:])
    if rest:
        shown["other"] = shown.get("other", 0) + rest
    return shown


def render_run_report(summary: dict[str, Any]) -> str:
    """The run report for a summary as Merge writes it. Only ``label_counts`` is required:
    summaries of older versions lack the other sections, which are then left out."""
    name = _input_name(summary)
    rejected = summary.get("rejected_by_reason")
    facts = [
        ("rows in", _count(summary, "rows_in")),
        ("rows classified", _count(summary, "rows_classified")),
        ("rows rejected", _count(summary, "rows_rejected")),
        ("rejected because", "; ".join(f"{reason}: {n:,}" for reason, n in rejected.items())
         if isinstance(rejected, Mapping) and rejected else None),
        ("rows with warnings", _count(summary, "rows_with_warnings")),
        ("text column", summary.get("text_column")),
        *_model_facts(summary.get("model")),
        ("finished at", (summary.get("timings") or {}).get("finished_at")
         if isinstance(summary.get("timings"), Mapping) else None),
    ]
    sections = [f"<h1>Run report: {_e(name)}</h1>", _facts(facts)]
    sections.append(_label_set_section(summary.get("model")))

    sections.append("<h2>Labels</h2>\n" + bar_chart(summary["label_counts"], "rows per predicted label"))

    languages = summary.get("language_counts")
    if isinstance(languages, Mapping) and languages:
        sections.append("<h2>Languages</h2>\n<p class=\"muted\">ISO 639-1 codes of the classified rows "
                        "(unknown: no letters)</p>\n" + bar_chart(_languages(languages), "rows per language"))

    hist = summary.get("confidence_histogram")
    if isinstance(hist, Mapping) and isinstance(hist.get("counts"), list):
        sections.append("<h2>Confidence</h2>\n<p class=\"muted\">the top label's score, rows per bin</p>\n"
                        + histogram(list(hist.get("edges") or []), hist["counts"], "confidence histogram",
                                    "score of the predicted label"))

    least = summary.get("least_confident")
    if isinstance(least, list) and least:
        rows = [(row.get("line", ""), row.get("label", ""), _score(row.get("score")), row.get("text", ""))
                for row in least if isinstance(row, Mapping)]
        sections.append("<h2>Least confident rows</h2>\n<p class=\"muted\">the rows to review first; "
                        "line numbers are those of the input file</p>\n"
                        + table(("line", "label", "score", "lyrics (preview)"), rows, numeric=(0, 2)))
    return page(f"Run report: {name}", "\n".join(s for s in sections if s))


def _score(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else ""
