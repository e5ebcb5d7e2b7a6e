"""The run report beside every summary: a self-contained page from the summary alone, with
its charts as inline SVG, user data escaped, and no dependency the Merge Lambda lacks."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.dom.minidom

from lyrics_classifier.report import render_run_report


def full_summary() -> dict:
    return {
        "input": {"bucket": "in", "key": "incoming/songs.csv", "version_id": None, "bytes": 1234},
        "rows_in": 12,
        "rows_classified": 10,
        "rows_rejected": 2,
        "rejected_by_reason": {"empty lyrics": 2},
        "rows_with_warnings": 1,
        "label_counts": {"rock": 6, "pop": 3, "latin": 1, "country": 0},
        "language_counts": {"en": 8, "es": 2},
        "text_column": "lyrics",
        "model": {
            "name": "lyrics-genre-usem3-fewshot",
            "sha256": "80e4181d1b3c22677a824240b55df5aeb4422cb2379cd51b98dfd67abc6b72a9",
            "kind": "zero-shot (labels at run time)",
            "labels": ["rock", "pop", "latin", "country"],
            "label_set": {"name": "moods & more", "source": "labels/moods.json",
                          "sha256": "0123456789abcdef0123456789abcdef", "labels": ["rock", "pop", "latin", "country"],
                          "multi_label": False, "threshold": None},
        },
        "confidence_histogram": {"edges": [round(k / 20, 4) for k in range(21)],
                                 "counts": [0] * 10 + [1, 0, 2, 0, 0, 3, 0, 0, 0, 4]},
        "least_confident": [
            {"line": 7, "label": "pop", "score": 0.41, "text": "<script>alert('x')</script> & a chorus"},
            {"line": 3, "label": "rock", "score": 0.52, "text": "Turn it up, turn it up"},
        ],
        "timings": {"finished_at": "2025-01-01T00:00:00Z"},
    }


def svgs(page: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", page, re.S)


def test_a_full_summary_shows_every_section() -> None:
    page = render_run_report(full_summary())
    assert page.lstrip().lower().startswith("<!doctype html")
    assert "incoming/songs.csv" in page
    for fact in ("rows in</dt><dd>12", "rows classified</dt><dd>10", "rows rejected</dt><dd>2", "empty lyrics: 2"):
        assert fact in page, fact
    for heading in ("Labels", "Languages", "Confidence", "Least confident rows", "Label set"):
        assert f"<h2>{heading}" in page, heading
    assert "moods &amp; more" in page and "0123456789ab<" in page  # the label set's name and short hash
    assert "80e4181d1b3c<" in page  # the model's short hash
    assert "line numbers are those of the input file" in page
    assert re.search(r"<td class=\"num\">7</td><td class=\"text\">pop</td><td class=\"num\">0.410</td>", page)


def test_charts_are_inline_svg_with_a_bar_per_label_and_per_bin() -> None:
    page = render_run_report(full_summary())
    charts = svgs(page)
    assert len(charts) == 3  # labels, languages, confidence
    for chart in charts:
        xml.dom.minidom.parseString(chart)  # well-formed: a browser draws it
    labels, languages, confidence = charts
    assert labels.count("<rect") == 4 and ">rock<" in labels and "6 (60.0%)" in labels
    assert languages.count("<rect") == 2
    assert confidence.count("<rect") == 20 and "score of the predicted label" in confidence


def test_the_page_is_self_contained() -> None:
    page = render_run_report(full_summary())
    assert "<script" not in page and "src=" not in page and "href=" not in page and "@import" not in page


def test_row_text_and_labels_are_escaped() -> None:
    summary = full_summary()
    summary["label_counts"] = {"<b>bold</b>": 1, **summary["label_counts"]}
    page = render_run_report(summary)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; a chorus" in page
    assert "<b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page


def test_a_minimal_summary_renders_its_labels_only() -> None:
    """Summaries of older versions have label_counts and little else."""
    page = render_run_report({"label_counts": {"rock": 3, "pop": 0}})
    assert page.rstrip().endswith("</html>")
    assert "<h2>Labels" in page and len(svgs(page)) == 1
    for missing in ("Languages", "Confidence", "Least confident rows", "Label set"):
        assert f"<h2>{missing}" not in page
    assert "<dl" not in page  # no empty facts list


def test_a_model_without_a_label_set_has_no_label_set_section() -> None:
    summary = full_summary()
    summary["model"]["label_set"] = None
    assert "<h2>Label set" not in render_run_report(summary)


def test_the_report_module_needs_only_the_standard_library() -> None:
    """Merge renders the page in a Lambda without numpy or matplotlib."""
    code = ("import sys, lyrics_classifier.report as r; r.render_run_report({'label_counts': {'a': 1}}); "
            "print(' '.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(out.split())
    assert not loaded & {"numpy", "matplotlib", "lyrics_classifier.runtime"}


def test_the_cli_loads_matplotlib_only_for_a_report() -> None:
    """`predict` and `run` never pay for matplotlib: registering `evaluate` does not import it."""
    code = "import sys, lyrics_classifier.cli as c; c.build_parser(); print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
