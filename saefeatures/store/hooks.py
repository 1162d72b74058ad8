"""The hook point each stored layer means, so that no layer is stored without its hook.

A layer alone does not say where in the block a value was read or written: the emotion
vectors, the residual SAEs and every edit that steers them use the block's output
(`blocks.L.hook_resid_post`), the patching sweeps its input (`blocks.L.hook_resid_pre`) and
its attention heads (`blocks.L.attn.hook_z`). Writers give the layer; `Store.insert` adds
the hook named here unless the rows bring their own, and migration 20 gave the rows stored
before the same names.
"""

from __future__ import annotations

from collections.abc import Iterable

RESID_POST = "'blocks.' || CAST(layer AS VARCHAR) || '.hook_resid_post'"
PATCHING_SWEEP = (
    "CASE level WHEN 'resid' THEN 'blocks.' || CAST(layer AS VARCHAR) || '.hook_resid_pre' "
    "WHEN 'heads' THEN 'blocks.' || CAST(layer AS VARCHAR) || '.attn.hook_z' END"
)

# Table -> SQL expression of its hook from the row's `layer` (and `level`).
HOOK_OF_LAYER: dict[str, str] = {
    **dict.fromkeys(
        (
            "emotion_vectors",
            "geometry",
            "geometry_best",
            "pca_scores",
            "vector_pairs",
            "logit_lens",
            "alignments",
            "alignment_summary",
            "alignment_curves",
            "feature_map_points",
            "steering_results",
            "comparisons",
            "feature_patching",
            "patching_faithfulness",
            "retrieval_results",
            "retrieval_top_passages",
            "behaviour_results",
            "behaviour_summary",
            "preference_comparisons",
            "preference_correlations",
            "preference_steering",
            "quantity_scores",
            "quantity_results",
            "quantity_summary",
        ),
        RESID_POST,
    ),
    "patching_results": PATCHING_SWEEP,
}


def selected(table: str, columns: Iterable[str]) -> str:
    """The select list that inserts rows with `columns` into `table`: all of them, and the
    hook of their layer when the table keeps one and the rows have none."""
    names = set(columns)
    if table in HOOK_OF_LAYER and "layer" in names and "hook" not in names:
        return f"*, {HOOK_OF_LAYER[table]} AS hook"
    return "*"


def fill(table: str) -> str | None:
    """The statement that names the hook of rows stored without one (or with a bare site
    such as 'resid_post', as exports made before migration 20 hold); None for tables
    without a hook of their layer."""
    if table not in HOOK_OF_LAYER:
        return None
    return (
        f'UPDATE "{table}" SET hook = {HOOK_OF_LAYER[table]} '
        "WHERE hook IS NULL OR hook NOT LIKE 'blocks.%'"
    )
