"""The report as one HTML page: no scripts, no external files but its own PNGs (relative paths).

Every name on the page comes from folder names or a manifest, so each goes through
:func:`html.escape` before it is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

from indexer.model.evaluate import RetrievalMetrics
from indexer.report.confusion import ConfusedPair
from indexer.report.per_class import ClassScores

METRIC_MEANINGS = {
    "Recall@1": "Share of photos whose nearest other photo is of the same class: the first "
                "search result is right.",
    "Recall@2": "Share of photos with a photo of their class among their 2 nearest others.",
    "Recall@4": "… among their 4 nearest others.",
    "Recall@8": "… among their 8 nearest others.",
    "MAP@R": "With R the number of other photos of a photo's class: how completely and how "
             "early its R nearest results are of its class (precision at each correct place, "
             "averaged over R). 100 means every photo of the class comes before any other; "
             "stricter than Recall@1, it measures the whole result list.",
    "R-Precision": "Share of each photo's R nearest results that are of its class.",
    "NMI": "Agreement between the classes and a k-means clustering of the embeddings with as "
           "many clusters as classes (100: the clusters are the classes).",
    "queries": "Photos of the test classes, each querying all the others.",
    "classes": "Test classes: classes the model was not trained on.",
}  # fmt: skip

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 1140px; margin: 2em auto; padding: 0 1.5em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
.meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: .8em 0; }
th, td { padding: .3em .8em; text-align: left; border-bottom: 1px solid #eee; vertical-align: top; }
th { background: #f6f6f6; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.bar { background: #e8eef7; width: 120px; height: .8em; display: inline-block; }
.bar span { background: #4a78c2; height: 100%; display: block; }
.low td.num.map { color: #b42318; font-weight: 600; }
.pairs { display: flex; flex-wrap: wrap; gap: 1.5em; }
.pair { flex: 0 1 525px; } .pair img { max-width: 100%; border: 1px solid #eee; }
.map img { max-width: 100%; border: 1px solid #eee; }
.note { color: #555; max-width: 60em; }
.summary { background: #f4f7fc; border-left: 4px solid #4a78c2; padding: .7em 1em; }
"""


@dataclass
class PairSection:
    pair: ConfusedPair
    image: str | None  # the PNG beside the page, relative
    examples: int


@dataclass
class ReportPage:
    model_version: str
    data: list[str]
    created: str
    metrics: RetrievalMetrics
    classes: list[ClassScores]  # worst first
    most_confused_with: dict[str, tuple[str, float]]
    pairs: list[PairSection]
    map_image: str | None
    map_method: str
    skipped: list[tuple[str, str]] = field(default_factory=list)


def render_html(page: ReportPage) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Search quality: {escape(page.model_version)}</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Search quality report</h1>",
        f'<p class="meta">model <b>{escape(page.model_version)}</b> · '
        f"{page.metrics.classes} test classes, {page.metrics.queries} photos · "
        f"data {escape(', '.join(page.data))} · {escape(page.created)}</p>",
        '<p class="note">Every photo of the test classes was used as a search query against '
        "all the other photos; a result counts as right when it is of the query's class. "
        "All figures are percentages.</p>",
        _summary(page),
        _metrics_section(page.metrics),
        _classes_section(page),
        _pairs_section(page.pairs),
        _map_section(page),
    ]
    if page.skipped:
        parts.append(_skipped_section(page.skipped))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _summary(page: ReportPage) -> str:
    """The findings in three sentences, for a reader who stops here."""
    worst = ", ".join(escape(scores.name) for scores in page.classes[:3])
    text = (f"The first result is of the photo's own class for <b>{page.metrics.recall_at_1:.1f}%"
            f"</b> of the photos, and one of the first 4 results at least for "
            f"{page.metrics.recall_at_4:.1f}%. "
            f"The classes found worst (lowest MAP@R) are {worst}.")
    if page.pairs:
        mixed = "; ".join(f"{escape(s.pair.first)} and {escape(s.pair.second)}"
                          for s in page.pairs[:3])
        text += f" The classes mixed up most: {mixed}."
    return f'<p class="summary">{text}</p>'


def _metrics_section(metrics: RetrievalMetrics) -> str:
    rows = "".join(
        f'<tr><th>{escape(name)}</th><td class="num">{escape(value)}</td>'
        f"<td>{escape(METRIC_MEANINGS.get(name, ''))}</td></tr>"
        for name, value in metrics.table_rows()
    )
    return ("<h2>Overall</h2><table><tr><th>metric</th><th>value</th><th>what it means</th></tr>"
            f"{rows}</table>")


def _classes_section(page: ReportPage) -> str:
    rows = []
    for scores in page.classes:
        confused = page.most_confused_with.get(scores.name)
        confused_text = (f"{escape(confused[0])} ({100 * confused[1]:.0f}% of its top R)"
                         if confused else "–")
        low = ' class="low"' if scores.map_at_r < page.metrics.map_at_r / 2 else ""
        rows.append(
            f"<tr{low}><td>{escape(scores.name)}</td><td class=\"num\">{scores.size}</td>"
            f'<td class="num">{scores.recall_at_1:.1f}</td>'
            f'<td class="num map">{scores.map_at_r:.1f}</td>'
            f'<td><span class="bar"><span style="width:{scores.map_at_r:.0f}%"></span></span></td>'
            f"<td>{confused_text}</td></tr>"
        )
    return (
        "<h2>Per class, worst first</h2>"
        '<p class="note">The same measures for the photos of one class as queries. Classes at the '
        "top are the ones shoppers will find worst: add photos of them, or check that their "
        "folders hold what they say. <i>Most often confused with</i>: the class whose photos took "
        "most of the places among a photo's R nearest results (R: the other photos of its "
        "class). Red: MAP@R below half the overall figure.</p>"
        "<table><tr><th>class</th><th>photos</th><th>Recall@1</th><th>MAP@R</th><th></th>"
        f"<th>most often confused with</th></tr>{''.join(rows)}</table>"
    )


def _pairs_section(pairs: list[PairSection]) -> str:
    if not pairs:
        return "<h2>Most confused pairs</h2><p>No two classes were confused.</p>"
    blocks = []
    for number, section in enumerate(pairs, 1):
        pair = section.pair
        first, second = escape(pair.first), escape(pair.second)
        image = (f'<img src="{escape(section.image)}" alt="photos of {first} beside the most '
                 f'similar photos of {second}">' if section.image else "")
        blocks.append(
            f'<div class="pair"><h3>{number}. {first} ↔ {second}</h3>'
            f"<p>confusion {100 * pair.confusion:.1f}%: photos of {second} take "
            f"{100 * pair.first_to_second:.1f}% of the top-R places of {first}'s photos, "
            f"and {first} {100 * pair.second_to_first:.1f}% of {second}'s.</p>{image}</div>"
        )
    return (
        "<h2>Most confused pairs</h2>"
        '<p class="note">A pair\'s confusion is the mean of its two directions: the share of '
        "one class's R nearest results that belong to the other. The pictures show the most "
        "similar photos across the two classes, with their similarity (cosine, 1 = "
        "identical); under each photo, its similarity to the nearest other photo of its own "
        "class. A red figure: for one of the two photos at least, the other class's photo is "
        "nearer than any photo of its own class, so a search with it shows the wrong product "
        "first.</p>"
        f'<div class="pairs">{"".join(blocks)}</div>'
    )


def _map_section(page: ReportPage) -> str:
    if page.map_image is None:
        return ""
    return (
        "<h2>Map of the test photos</h2>"
        '<p class="note">Each dot is a photo, placed so that photos the model finds similar '
        "lie close together (t-SNE), coloured by class; each class's name sits at the centre "
        "of its photos. A class whose dots form one island is found well; islands that mix "
        f"colours are classes the model confuses. Layout: {escape(page.map_method)}.</p>"
        f'<div class="map"><img src="{escape(page.map_image)}" alt="t-SNE map of the test '
        'photos, coloured by class"></div>'
    )


def _skipped_section(skipped: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><td>{escape(path)}</td><td>{escape(reason)}</td></tr>"
                   for path, reason in skipped)
    return (f"<h2>Photos left out ({len(skipped)})</h2><p class=\"note\">They could not be "
            f"decoded, so they are in none of the figures.</p><table>{rows}</table>")
