-- saefeatures store schema.
-- Each "-- version N:" block is one migration; blocks apply in order, each in
-- its own transaction, and the applied versions are recorded in schema_version.
-- Never edit a block that has shipped: add a new one below it.
-- Every results table carries run_id, which refers to runs.run_id.

-- version 1: runs and the core tables
CREATE TABLE runs (
    run_id          VARCHAR PRIMARY KEY,
    command         VARCHAR NOT NULL,
    config          JSON,
    package_version VARCHAR NOT NULL,
    git_revision    VARCHAR,
    host            VARCHAR,
    pid             INTEGER,
    started         TIMESTAMP NOT NULL,
    finished        TIMESTAMP,
    status          VARCHAR NOT NULL CHECK (status IN ('running', 'ok', 'failed')),
    error           VARCHAR
);

CREATE TABLE models (
    run_id       VARCHAR NOT NULL,
    model        VARCHAR PRIMARY KEY,
    source       VARCHAR NOT NULL,
    reference    VARCHAR NOT NULL,
    architecture VARCHAR NOT NULL,
    n_layers     INTEGER NOT NULL,
    d_model      INTEGER NOT NULL,
    n_heads      INTEGER NOT NULL,
    n_kv_heads   INTEGER NOT NULL,
    d_vocab      INTEGER NOT NULL,
    is_chat      BOOLEAN NOT NULL,
    dtype        VARCHAR NOT NULL,
    weights_path VARCHAR
);

CREATE TABLE corpora (
    run_id     VARCHAR NOT NULL,
    corpus     VARCHAR PRIMARY KEY,
    kind       VARCHAR NOT NULL,
    source     VARCHAR,
    n_passages INTEGER NOT NULL,
    meta       JSON
);

CREATE TABLE passages (
    run_id     VARCHAR NOT NULL,
    corpus     VARCHAR NOT NULL,
    passage_id INTEGER NOT NULL,
    emotion    VARCHAR,
    topic      VARCHAR,
    text       VARCHAR NOT NULL,
    meta       JSON,
    PRIMARY KEY (corpus, passage_id)
);

CREATE TABLE emotion_vectors (
    run_id     VARCHAR NOT NULL,
    model      VARCHAR NOT NULL,
    corpus     VARCHAR NOT NULL,
    layer      INTEGER NOT NULL,
    hook       VARCHAR NOT NULL,
    emotion    VARCHAR NOT NULL,
    method     VARCHAR NOT NULL,
    n_passages INTEGER NOT NULL,
    vector     FLOAT[] NOT NULL
);

CREATE TABLE geometry (
    run_id         VARCHAR NOT NULL,
    model          VARCHAR NOT NULL,
    corpus         VARCHAR NOT NULL,
    layer          INTEGER NOT NULL,
    rel_depth      DOUBLE NOT NULL,
    method         VARCHAR NOT NULL,
    component      VARCHAR NOT NULL,
    rating         VARCHAR,
    var_explained  DOUBLE,
    pearson_r      DOUBLE,
    spearman_r     DOUBLE,
    ci_low         DOUBLE,
    ci_high        DOUBLE,
    p_value        DOUBLE,
    q_value        DOUBLE,
    n_emotions     INTEGER
);

CREATE TABLE saes (
    run_id       VARCHAR NOT NULL,
    sae_id       VARCHAR PRIMARY KEY,
    model        VARCHAR NOT NULL,
    layer        INTEGER NOT NULL,
    hook         VARCHAR NOT NULL,
    architecture VARCHAR NOT NULL,
    d_in         INTEGER NOT NULL,
    d_sae        INTEGER NOT NULL,
    k            INTEGER,
    tokens       BIGINT,
    path         VARCHAR NOT NULL,
    config       JSON
);

CREATE TABLE sae_metrics (
    run_id VARCHAR NOT NULL,
    sae_id VARCHAR NOT NULL,
    split  VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    value  DOUBLE
);

CREATE TABLE features (
    run_id         VARCHAR NOT NULL,
    sae_id         VARCHAR NOT NULL,
    feature        INTEGER NOT NULL,
    density        DOUBLE,
    max_activation DOUBLE,
    mean_active    DOUBLE,
    top_tokens     VARCHAR[],
    bottom_tokens  VARCHAR[],
    top_snippets   JSON
);

CREATE TABLE feature_activations (
    run_id     VARCHAR NOT NULL,
    sae_id     VARCHAR NOT NULL,
    corpus     VARCHAR NOT NULL,
    passage_id INTEGER NOT NULL,
    position   INTEGER NOT NULL,
    feature    INTEGER NOT NULL,
    value      FLOAT NOT NULL
);

CREATE TABLE alignments (
    run_id  VARCHAR NOT NULL,
    model   VARCHAR NOT NULL,
    sae_id  VARCHAR NOT NULL,
    layer   INTEGER NOT NULL,
    corpus  VARCHAR NOT NULL,
    emotion VARCHAR NOT NULL,
    method  VARCHAR NOT NULL,
    feature INTEGER,
    score   DOUBLE,
    rank    INTEGER,
    extra   JSON
);

CREATE TABLE steering_results (
    run_id  VARCHAR NOT NULL,
    model   VARCHAR NOT NULL,
    layer   INTEGER NOT NULL,
    level   VARCHAR NOT NULL,
    emotion VARCHAR NOT NULL,
    target  VARCHAR,
    k       INTEGER,
    scale   DOUBLE NOT NULL,
    metric  VARCHAR NOT NULL,
    value   DOUBLE,
    extra   JSON
);

CREATE TABLE patching_results (
    run_id     VARCHAR NOT NULL,
    model      VARCHAR NOT NULL,
    level      VARCHAR NOT NULL,
    pair_id    VARCHAR NOT NULL,
    condition  VARCHAR NOT NULL,
    layer      INTEGER,
    position   INTEGER,
    head       INTEGER,
    feature    INTEGER,
    effect     DOUBLE,
    normalized DOUBLE,
    extra      JSON
);

CREATE TABLE comparisons (
    run_id          VARCHAR NOT NULL,
    kind            VARCHAR NOT NULL,
    model           VARCHAR NOT NULL,
    other_model     VARCHAR,
    layer           INTEGER,
    metric          VARCHAR NOT NULL,
    direction_value DOUBLE,
    feature_value   DOUBLE,
    extra           JSON
);

-- version 2: how vectors were made, and the geometry's companion tables
ALTER TABLE emotion_vectors ADD COLUMN token_offset INTEGER;
ALTER TABLE emotion_vectors ADD COLUMN n_removed INTEGER;

CREATE TABLE vector_pairs (
    run_id        VARCHAR NOT NULL,
    model         VARCHAR NOT NULL,
    corpus        VARCHAR NOT NULL,
    layer         INTEGER NOT NULL,
    method        VARCHAR NOT NULL,
    emotion_a     VARCHAR NOT NULL,
    emotion_b     VARCHAR NOT NULL,
    expected_sign INTEGER NOT NULL,
    cosine        DOUBLE NOT NULL
);

CREATE TABLE logit_lens (
    run_id    VARCHAR NOT NULL,
    model     VARCHAR NOT NULL,
    corpus    VARCHAR NOT NULL,
    layer     INTEGER NOT NULL,
    method    VARCHAR NOT NULL,
    emotion   VARCHAR NOT NULL,
    direction VARCHAR NOT NULL CHECK (direction IN ('promoted', 'suppressed')),
    rank      INTEGER NOT NULL,
    token     VARCHAR NOT NULL,
    logit     DOUBLE NOT NULL
);

-- version 3: where SAEs come from, and their training curves
ALTER TABLE saes ADD COLUMN source VARCHAR;
ALTER TABLE saes ADD COLUMN dataset VARCHAR;
ALTER TABLE saes ADD COLUMN created TIMESTAMP;

CREATE TABLE sae_training (
    run_id VARCHAR NOT NULL,
    sae_id VARCHAR NOT NULL,
    tokens BIGINT NOT NULL,
    metric VARCHAR NOT NULL,
    value  DOUBLE
);

-- version 4: what alignment measures beside the ranked features, and the tokens of
-- scanned passages (so that snippets can be read back with SQL)
CREATE TABLE alignment_summary (
    run_id  VARCHAR NOT NULL,
    model   VARCHAR NOT NULL,
    sae_id  VARCHAR NOT NULL,
    layer   INTEGER NOT NULL,
    corpus  VARCHAR NOT NULL,
    emotion VARCHAR NOT NULL,
    metric  VARCHAR NOT NULL,
    value   DOUBLE
);

CREATE TABLE alignment_curves (
    run_id  VARCHAR NOT NULL,
    model   VARCHAR NOT NULL,
    sae_id  VARCHAR NOT NULL,
    layer   INTEGER NOT NULL,
    corpus  VARCHAR NOT NULL,
    emotion VARCHAR NOT NULL,
    curve   VARCHAR NOT NULL CHECK (curve IN ('omp', 'random')),
    k       INTEGER NOT NULL,
    r2      DOUBLE NOT NULL
);

CREATE TABLE passage_tokens (
    run_id     VARCHAR NOT NULL,
    model      VARCHAR NOT NULL,
    corpus     VARCHAR NOT NULL,
    passage_id INTEGER NOT NULL,
    position   INTEGER NOT NULL,
    token_id   INTEGER NOT NULL,
    token      VARCHAR NOT NULL
);

CREATE TABLE emotion_ratings (
    run_id  VARCHAR NOT NULL,
    emotion VARCHAR PRIMARY KEY,
    valence DOUBLE NOT NULL,
    arousal DOUBLE,
    source  VARCHAR
);

-- Per SAE, corpus, emotion and feature: summed activation over every token of the
-- emotion's scanned passages and its mean per passage. Written by the alignment stage
-- with the activations, so per-emotion questions need not re-aggregate millions of rows;
-- features that never fired on an emotion's passages have no row (their mean is 0).
CREATE TABLE emotion_feature_activity (
    run_id           VARCHAR NOT NULL,
    sae_id           VARCHAR NOT NULL,
    corpus           VARCHAR NOT NULL,
    emotion          VARCHAR NOT NULL,
    feature          INTEGER NOT NULL,
    passages         INTEGER NOT NULL,
    total            DOUBLE NOT NULL,
    mean_per_passage DOUBLE NOT NULL
);

-- version 5: per-prompt scores of the patching stage (its sweeps go to patching_results)
CREATE TABLE pair_scores (
    run_id           VARCHAR NOT NULL,
    model            VARCHAR NOT NULL,
    pair_id          VARCHAR NOT NULL,
    condition        VARCHAR NOT NULL CHECK (condition IN ('good', 'bad')),
    situation        VARCHAR,
    topic            VARCHAR,
    score_name       VARCHAR NOT NULL,
    score_definition VARCHAR NOT NULL,
    clean_score      DOUBLE NOT NULL,
    corrupted_score  DOUBLE NOT NULL,
    aligned          BOOLEAN NOT NULL,
    prefix_length    INTEGER NOT NULL,
    clean_tokens     INTEGER NOT NULL,
    corrupted_tokens INTEGER NOT NULL
);

-- Feature-level patching: per pair, every SAE feature whose activation differs between
-- the clean and corrupted runs, and the SAE error node (feature NULL); exact effects are
-- filled for the best-attributed features and the error node.
CREATE TABLE feature_patching (
    run_id                 VARCHAR NOT NULL,
    model                  VARCHAR NOT NULL,
    sae_id                 VARCHAR NOT NULL,
    layer                  INTEGER NOT NULL,
    pair_id                VARCHAR NOT NULL,
    condition              VARCHAR NOT NULL,
    node                   VARCHAR NOT NULL CHECK (node IN ('feature', 'error')),
    feature                INTEGER,
    attribution            DOUBLE NOT NULL,
    normalized_attribution DOUBLE,
    exact_effect           DOUBLE,
    normalized_exact       DOUBLE
);

-- Faithfulness: patching only the top-k features by attribution, against the whole layer.
CREATE TABLE patching_faithfulness (
    run_id       VARCHAR NOT NULL,
    model        VARCHAR NOT NULL,
    sae_id       VARCHAR NOT NULL,
    layer        INTEGER NOT NULL,
    pair_id      VARCHAR NOT NULL,
    condition    VARCHAR NOT NULL,
    k            INTEGER NOT NULL,
    effect       DOUBLE NOT NULL,
    layer_effect DOUBLE NOT NULL,
    gap          DOUBLE NOT NULL,  -- clean - corrupted score: effects / gap are normalized
    recovered    DOUBLE
);

-- version 6: the UMAP map's points, so the report draws the map from the store alone
CREATE TABLE feature_map_points (
    run_id  VARCHAR NOT NULL,
    model   VARCHAR NOT NULL,
    sae_id  VARCHAR NOT NULL,
    layer   INTEGER NOT NULL,
    corpus  VARCHAR NOT NULL,
    kind    VARCHAR NOT NULL CHECK (kind IN ('background', 'feature', 'emotion')),
    label   VARCHAR NOT NULL,  -- feature index or emotion word
    x       DOUBLE NOT NULL,
    y       DOUBLE NOT NULL,
    colour  DOUBLE,            -- valence (x sign of cosine for features); NULL: unrated
    hover   VARCHAR NOT NULL,  -- plotly hover text (HTML)
    title   VARCHAR NOT NULL
);

-- version 7: the main job's stages: what each ran on (a content hash of its inputs and config), how
-- long it took, and its printed summary, so a rerun on the same inputs skips it.
CREATE TABLE stage_runs (
    run_id   VARCHAR NOT NULL,  -- the `run` job
    stage    VARCHAR NOT NULL,
    part     VARCHAR NOT NULL,  -- the stage's instance: a corpus, a layer and corpus, ...
    key      VARCHAR NOT NULL,
    status   VARCHAR NOT NULL CHECK (status IN ('ran', 'skipped')),
    seconds  DOUBLE NOT NULL,
    summary  JSON,
    finished TIMESTAMP NOT NULL DEFAULT current_timestamp
);
