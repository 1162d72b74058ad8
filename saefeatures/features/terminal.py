"""A feature's dashboard on the terminal: examples shaded by activation, a text histogram,
the emotions it aligns with and the tokens it promotes and suppresses."""

from __future__ import annotations

from rich.console import Console
from rich.style import Style
from rich.table import Table
from rich.text import Text

from saefeatures.features.dashboard import SHADE, FeatureDashboard, intensity, visible

BAR_WIDTH = 40
FIRING_SHOWN = 5  # the strongest tokens of an example listed with their values


def shade(value: float, peak: float) -> str | None:
    """The background of a token: white to orange with its activation; None where it is 0."""
    share = intensity(value, peak)
    if share == 0:
        return None
    red, green, blue = (round(255 + (c - 255) * share) for c in SHADE)
    return f"rgb({red},{green},{blue})"


def show(console: Console, dash: FeatureDashboard) -> None:
    console.print(Text(f"feature {dash.feature} of SAE {dash.sae_id}", style="bold"))
    console.print(
        f"{dash.model}, layer {dash.layer}, {dash.d_sae} features; fires on "
        f"{_number(dash.density)} of scanned tokens ({dash.activations} activations), "
        f"max {_number(dash.max_activation)}, mean when active {_number(dash.mean_active)}",
        markup=False,
        highlight=False,
    )
    console.print(_examples(dash))
    console.print(_histogram(dash))
    console.print(_emotions(dash))
    for name, tokens, logits in (
        ("promoted", dash.promoted, dash.promoted_logits),
        ("suppressed", dash.suppressed, dash.suppressed_logits),
    ):
        console.print(_tokens(f"{name} by its decoder row (logit lens): ", tokens, logits))


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _examples(dash: FeatureDashboard) -> Table:
    table = Table(
        title="top activations (shading: activation / the feature's max)", title_justify="left"
    )
    for column in ("max", "passage", "tokens around the peak"):
        table.add_column(column, overflow="fold")
    peak = dash.max_activation or max((e.max_value for e in dash.examples), default=0.0)
    for example in dash.examples:
        text = Text()
        for i, (token, value) in enumerate(zip(example.tokens, example.values, strict=True)):
            background = shade(value, peak)
            style = Style(
                bgcolor=background,
                color="black" if background else None,
                bold=i == example.peak,
                underline=i == example.peak,
            )
            text.append(visible(token), style)
        firing = sorted(
            (pair for pair in zip(example.values, example.tokens, strict=True) if pair[0] > 0),
            reverse=True,
        )[:FIRING_SHOWN]
        text.append("\n" + "  ".join(f"'{visible(t)}' {v:.3g}" for v, t in firing), Style(dim=True))
        label = example.emotion or "unlabelled"
        table.add_row(
            f"{example.max_value:.3g}",
            Text(f"{example.corpus} {example.passage_id} ({label})"),
            text,
        )
    if not dash.examples:
        table.add_row("-", "-", "no stored activation of this feature")
    return table


def _histogram(dash: FeatureDashboard) -> Table:
    table = Table(title="non-zero activations", title_justify="left", box=None)
    for column in ("from", "to", "", "count"):
        table.add_column(column, justify="right" if column != "" else "left")
    top = max(dash.histogram.counts, default=0)
    edges = dash.histogram.edges
    for i, count in enumerate(dash.histogram.counts):
        bar = "█" * (round(BAR_WIDTH * count / top) if top else 0)
        table.add_row(f"{edges[i]:.3g}", f"{edges[i + 1]:.3g}", bar, str(count))
    return table


def _emotions(dash: FeatureDashboard) -> Table:
    table = Table(
        title="aligned emotions (rank among the emotion's features)", title_justify="left"
    )
    methods = sorted({m for a in dash.emotions for m in a.scores})
    for column in ("corpus", "emotion", *methods, "held-out AUROC (p)"):
        table.add_column(column)
    for aligned in dash.emotions:
        scores = [
            f"{aligned.scores[m]:+.3f} (#{aligned.ranks[m]})" if m in aligned.scores else ""
            for m in methods
        ]
        heldout = (
            f"{aligned.heldout_auroc:.3f} ({aligned.heldout_p:.3g})"
            if aligned.heldout_auroc is not None
            else ""
        )
        table.add_row(Text(aligned.corpus), Text(aligned.emotion), *scores, heldout)
    if not dash.emotions:
        table.add_row("-", "no emotion ranks this feature among its top features")
    return table


def _tokens(title: str, tokens: list[str], logits: list[float] | None) -> Text:
    values = logits or [None] * len(tokens)
    shown = [
        f"'{visible(t)}'" + ("" if v is None else f" {v:+.2f}")
        for t, v in zip(tokens, values, strict=True)
    ]
    return Text(title, style="bold") + Text("  ".join(shown) or "-")
