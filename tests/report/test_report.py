"""The HTML report: built from a real store, self-contained, and rendered by a real browser.

The store is the shared populated workspace; the run that filled it is checked here too, so
that every test of that workspace is in one file (one pytest-xdist worker builds it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from saefeatures.report import build, representations
from saefeatures.store.database import Store
from tests.conftest import assert_user_error, run_cli

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
# Headless, with the network features off and every request sent to a dead proxy.
BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-first-run",
    "--proxy-server=127.0.0.1:9",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=20000",
    "--dump-dom",
]


@pytest.fixture(scope="module")
def workspace(populated_workspace, tmp_path_factory) -> dict[str, Path]:
    return {**populated_workspace, "html": tmp_path_factory.mktemp("report") / "report.html"}


@pytest.fixture(scope="module")
def built(workspace) -> str:
    folder = workspace["html"].parent
    result = run_cli("report", "--out", str(folder), "--db", str(workspace["db"]))
    assert result.code == 0, result.stderr
    assert f"report: {workspace['html']} " in result.stdout
    return workspace["html"].read_text(encoding="utf-8")


def test_every_section_is_filled_from_the_store(built, workspace):
    for section in (
        "headline",
        "geometry",
        "pca",
        "saes",
        "alignment",
        "features",
        "umap",
        "steering",
        "patching",
        "comparisons",
        "provenance",
    ):
        assert f'<section id="{section}">' in built
    assert 'class="empty"' not in built, re.findall(r'<p class="empty">[^<]*', built)
    with Store(workspace["db"], read_only=True) as store:
        runs = store.query("SELECT run_id FROM runs")["run_id"].to_pylist()
        models = store.query("SELECT DISTINCT model FROM pair_scores")["model"].to_pylist()
    assert runs and all(run_id in built for run_id in runs)  # provenance of every run
    assert models and all(model in built for model in models)


def test_the_page_is_self_contained(built):
    """No script, style sheet or image is fetched: scripts are inline, links are anchors."""
    assert not re.findall(r"<(?:script|img|iframe)[^>]*\ssrc=|<link\b", built)
    markup = re.sub(r"<script>.*?</script>", "", built, flags=re.S)
    assert not re.findall(r"""(?:src|href)\s*=\s*["']?(?:[a-z]+:)?//|url\(""", markup)
    assert built.count("<script>") >= 3  # the guard, plotly.js inlined, the render check


def test_headline_numbers_equal_a_direct_computation(workspace):
    with Store(workspace["db"], read_only=True) as store:
        scores = store.query("SELECT * FROM pair_scores WHERE score_name = 'anchors'").to_pylist()
        model = scores[0]["model"]
        pairs = store.query(
            "SELECT cosine, expected_sign FROM vector_pairs WHERE method = 'denoised' AND "
            "(corpus, layer) = (SELECT (corpus, layer) FROM geometry WHERE method = 'denoised' "
            "AND component = 'PC1' ORDER BY pearson_r DESC LIMIT 1)"
        ).to_pylist()
        geometry_model = store.query("SELECT DISTINCT model FROM geometry")["model"][0].as_py()
        rows = {m: build._headline_row(store, m, "") for m in (model, geometry_model)}
    column = build.HEADLINE_COLUMNS.index
    for condition, sign in (("good", 1), ("bad", -1)):
        chosen = [s for s in scores if s["condition"] == condition]
        right = sum(s["clean_score"] * sign > 0 for s in chosen)
        assert rows[model][column(f"anchor sign {condition}")] == f"{right}/{len(chosen)}"
    right = sum((p["cosine"] > 0) == (p["expected_sign"] > 0) for p in pairs)
    assert rows[geometry_model][column("sanity pairs right sign")] == f"{right}/{len(pairs)}"


@pytest.mark.skipif(BROWSER is None, reason="chromium is not installed (make test installs it)")
def test_a_headless_browser_renders_every_figure_without_errors(built, workspace):
    dom, console = _render(workspace["html"])
    figures = re.findall(r'<div id="[^"]+" class="plotly-graph-div[^>]*>', dom)
    assert len(figures) >= 8, len(figures)
    assert all('data-rendered="yes"' in tag for tag in figures), figures
    assert "data-errors" not in dom.split(">", 2)[1]  # the <html> element's attributes
    assert not console, console


def test_every_listed_feature_has_a_dashboard_and_an_index_row(built, workspace):
    with Store(workspace["db"], read_only=True) as store:
        listed = {(row["sae_id"], row["feature"]) for row in representations.top_aligned(store)}
        fired = _fired(store)
    assert listed & fired
    for sae_id, feature in listed:
        assert f'<div class="dashboard" id="feature-{sae_id}-{feature}">' in built
    for sae_id, feature in listed & fired:  # the index lists the features that fired
        assert f'<a href="#feature-{sae_id}-{feature}">{feature}</a>' in built
    assert built.count('<div class="example">') >= len(listed & fired)
    assert '<input type="search" class="index-filter"' in built


def _fired(store: Store) -> set[tuple[str, int]]:
    rows = store.query("SELECT sae_id, feature FROM features WHERE density > 0").to_pylist()
    return {(row["sae_id"], row["feature"]) for row in rows}


# Types a feature id into every index search box once the page has loaded.
TYPE_FEATURE = """<script>window.addEventListener('load', function () {
  document.querySelectorAll('input.index-filter').forEach(function (input) {
    input.value = '%d'; input.dispatchEvent(new Event('input'));
  });
});</script>"""


@pytest.mark.skipif(BROWSER is None, reason="chromium is not installed (make test installs it)")
def test_feature_examples_are_shaded_and_the_index_filters_by_id(built, workspace):
    dom, console = _render(workspace["html"])
    examples = re.findall(r'<div class="example"[^>]*>', dom)
    assert examples and all('data-shaded="yes"' in tag for tag in examples), examples[:3]
    assert not console, console
    with Store(workspace["db"], read_only=True) as store:
        fired = _fired(store)
        feature = next(
            row["feature"]
            for row in representations.top_aligned(store)
            if (row["sae_id"], row["feature"]) in fired
        )
    typed = workspace["tmp"] / "typed.html"
    typed.write_text(built.replace("</body>", TYPE_FEATURE % feature + "</body>"))
    dom, _ = _render(typed)
    rows = re.findall(r'<tr data-feature="(\d+)" data-search="[^"]*"( hidden="")?>', dom)
    shown = {int(f) for f, hidden in rows if not hidden}
    assert shown == {feature} and len(rows) > len(shown), rows[:5]


@pytest.mark.skipif(BROWSER is None, reason="chromium is not installed (make test installs it)")
def test_the_browser_check_sees_a_script_error(built, workspace):
    broken = workspace["tmp"] / "broken.html"
    broken.write_text(built.replace("</body>", "<script>undefinedCall();</script></body>"))
    dom, _ = _render(broken)
    assert 'data-errors="1"' in dom.split(">", 2)[1]


def _render(page: Path) -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and the console messages the browser logged."""
    done = subprocess.run(
        [BROWSER, *BROWSER_FLAGS, page.as_uri()], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, workspace):
    empty = tmp_path / "empty.duckdb"
    Store(empty).close()
    out = tmp_path / "r"
    assert_user_error(run_cli("report", "--out", str(out), "--db", str(empty)), "saefeatures run")
    assert not out.exists()
    folder = tmp_path / "folder"
    (folder / "report.html").mkdir(parents=True)
    assert_user_error(
        run_cli("report", "--out", str(folder), "--db", str(workspace["db"])), "is a folder"
    )


def test_run_aligns_with_an_sae_already_in_the_store(populated_workspace):
    env = populated_workspace["env"]
    assert "emotion vectors aligned with SAE features" in populated_workspace["stdout"]["run"]
    counts = run_cli(
        "sql",
        "SELECT layer, count(DISTINCT emotion) AS n FROM alignments GROUP BY layer",
        "--format",
        "csv",
        env=env,
    )
    assert counts.stdout.splitlines() == ["layer,n", "3,30"], counts.stdout
    assert len(list((populated_workspace["out"] / "umap").glob("*.html"))) == 1
