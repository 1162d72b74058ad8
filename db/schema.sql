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

-- version 8: the validation experiments (`saefeatures validate ...`), each at the direction
-- and the feature level; their direction-vs-feature summaries go to `comparisons`.

-- retrieval on unseen text: per emotion, how well its split-half vector (direction) or its
-- top-k aligned features (features) rank its own held-out passages among the candidates
CREATE TABLE retrieval_results (
    run_id            VARCHAR NOT NULL,
    model             VARCHAR NOT NULL,
    corpus            VARCHAR NOT NULL,
    split             VARCHAR NOT NULL,  -- passage or topic
    layer             INTEGER NOT NULL,
    level             VARCHAR NOT NULL CHECK (level IN ('direction', 'features')),
    sae_id            VARCHAR,           -- features only
    k                 INTEGER,           -- features only: top-k aligned features summed
    emotion           VARCHAR NOT NULL,
    n_relevant        INTEGER NOT NULL,  -- the emotion's held-out passages
    n_candidates      INTEGER NOT NULL,  -- every text but the emotion's training passages
    precision_at_10   DOUBLE NOT NULL,
    average_precision DOUBLE NOT NULL,
    chance            DOUBLE NOT NULL,   -- n_relevant / n_candidates
    p_value           DOUBLE NOT NULL    -- shuffled-label null of average precision
);

CREATE TABLE retrieval_top_passages (
    run_id          VARCHAR NOT NULL,
    model           VARCHAR NOT NULL,
    corpus          VARCHAR NOT NULL,
    split           VARCHAR NOT NULL,
    layer           INTEGER NOT NULL,
    level           VARCHAR NOT NULL,
    sae_id          VARCHAR,
    k               INTEGER,
    emotion         VARCHAR NOT NULL,
    rank            INTEGER NOT NULL,
    part            VARCHAR NOT NULL CHECK (part IN ('held-out', 'training', 'neutral')),
    source_corpus   VARCHAR NOT NULL,   -- join passages on (source_corpus, passage_id)
    passage_id      INTEGER NOT NULL,
    passage_emotion VARCHAR,
    relevant        BOOLEAN NOT NULL,
    score           DOUBLE NOT NULL
);

-- behaviour under steering: P(unethical option) of each pressure scenario, asked in both
-- option orders, unsteered (level 'none', scale 0) and under each emotion's direction or
-- its top-k aligned features at each scale
CREATE TABLE behaviour_results (
    run_id      VARCHAR NOT NULL,
    model       VARCHAR NOT NULL,
    layer       INTEGER NOT NULL,  -- the steered layer
    level       VARCHAR NOT NULL CHECK (level IN ('none', 'direction', 'features')),
    emotion     VARCHAR,
    k           INTEGER,           -- features only
    scale       DOUBLE NOT NULL,   -- x the layer's mean residual norm
    scenario_id VARCHAR NOT NULL,
    category    VARCHAR,
    swapped     BOOLEAN NOT NULL,  -- options presented in the other order
    unethical   VARCHAR NOT NULL,  -- the unethical option's letter as presented
    p_unethical DOUBLE NOT NULL,   -- softmax over the A/B logits after "("
    p_a         DOUBLE NOT NULL
);

-- per condition: means over scenarios (each the mean of its two orders), 95 % bootstrap
-- intervals over scenarios; shift = steered - unsteered, paired by scenario
CREATE TABLE behaviour_summary (
    run_id        VARCHAR NOT NULL,
    model         VARCHAR NOT NULL,
    layer         INTEGER NOT NULL,
    level         VARCHAR NOT NULL,
    emotion       VARCHAR,
    k             INTEGER,
    scale         DOUBLE NOT NULL,
    scenarios     INTEGER NOT NULL,
    p_unethical   DOUBLE NOT NULL,
    ci_low        DOUBLE NOT NULL,
    ci_high       DOUBLE NOT NULL,
    shift         DOUBLE NOT NULL,
    shift_ci_low  DOUBLE NOT NULL,
    shift_ci_high DOUBLE NOT NULL,
    p_a           DOUBLE NOT NULL   -- mean P(A) over both orders: the position bias
);

-- preferences: "Would you prefer to (A) ... or (B) ...?" for a seeded sample of ordered
-- pairs of activities, unsteered (level 'none') and steered on one activity's tokens
CREATE TABLE preference_comparisons (
    run_id          VARCHAR NOT NULL,
    model           VARCHAR NOT NULL,
    layer           INTEGER NOT NULL,  -- the steered layer
    level           VARCHAR NOT NULL CHECK (level IN ('none', 'direction', 'features')),
    emotion         VARCHAR,
    k               INTEGER,
    scale           DOUBLE NOT NULL,
    target          VARCHAR,           -- the steered activity
    first_activity  VARCHAR NOT NULL,  -- option (A)
    second_activity VARCHAR NOT NULL,  -- option (B)
    logit_diff      DOUBLE NOT NULL,   -- logit of A minus logit of B after "("
    p_first         DOUBLE NOT NULL    -- softmax over the two letters
);

-- Bradley-Terry fit of the unsteered comparisons (logistic regression with a first-position
-- term), in Elo points (1500 + 400 log10(e) θ, θ the natural-log strength), 95 %
-- bootstrap interval over pairs (over the resamples that compare the activity)
CREATE TABLE preference_scores (
    run_id      VARCHAR NOT NULL,
    model       VARCHAR NOT NULL,
    activity    VARCHAR NOT NULL,
    category    VARCHAR NOT NULL,
    comparisons INTEGER NOT NULL,
    strength    DOUBLE NOT NULL,  -- natural-log BT strength, centred
    elo         DOUBLE NOT NULL,
    ci_low      DOUBLE NOT NULL,
    ci_high     DOUBLE NOT NULL
);

-- per layer and emotion: correlation over activities of the vector's projection on the
-- activity's tokens (mean over its positions and prompts) with the activity's Elo
CREATE TABLE preference_correlations (
    run_id       VARCHAR NOT NULL,
    model        VARCHAR NOT NULL,
    layer        INTEGER NOT NULL,
    emotion      VARCHAR NOT NULL,
    activities   INTEGER NOT NULL,
    pearson_r    DOUBLE NOT NULL,
    spearman_r   DOUBLE NOT NULL,
    ci_low       DOUBLE,           -- 95 % bootstrap over activities, of pearson_r
    ci_high      DOUBLE
);

-- steering one activity's tokens: its Elo refitted with its comparisons steered
CREATE TABLE preference_steering (
    run_id      VARCHAR NOT NULL,
    model       VARCHAR NOT NULL,
    layer       INTEGER NOT NULL,
    level       VARCHAR NOT NULL CHECK (level IN ('direction', 'features')),
    emotion     VARCHAR NOT NULL,
    k           INTEGER,
    scale       DOUBLE NOT NULL,
    activity    VARCHAR NOT NULL,
    elo_base    DOUBLE NOT NULL,
    elo_steered DOUBLE NOT NULL,
    shift       DOUBLE NOT NULL
);

-- the quantity test: each prompt's final-token read-out, each family's trend with the
-- quantity (Spearman rho, permutation p over the quantity order), and the mean over families
CREATE TABLE quantity_scores (
    run_id   VARCHAR NOT NULL,
    model    VARCHAR NOT NULL,
    family   VARCHAR NOT NULL,
    quantity DOUBLE NOT NULL,
    layer    INTEGER NOT NULL,
    level    VARCHAR NOT NULL CHECK (level IN ('direction', 'features')),
    sae_id   VARCHAR,
    k        INTEGER,
    emotion  VARCHAR NOT NULL,
    value    DOUBLE NOT NULL  -- projection on the direction, or signed summed activation
);

CREATE TABLE quantity_results (
    run_id       VARCHAR NOT NULL,
    model        VARCHAR NOT NULL,
    family       VARCHAR NOT NULL,
    stakes       VARCHAR NOT NULL CHECK (stakes IN ('rise', 'fall')),
    layer        INTEGER NOT NULL,
    level        VARCHAR NOT NULL CHECK (level IN ('direction', 'features')),
    sae_id       VARCHAR,
    k            INTEGER,
    emotion      VARCHAR NOT NULL,
    n_quantities INTEGER NOT NULL,
    spearman_rho DOUBLE,  -- with log-quantity; NULL when the read-out is constant
    danger_rho   DOUBLE,  -- the same, signed so that > 0 means rising with danger
    p_value      DOUBLE   -- two-sided, quantity order permuted
);

CREATE TABLE quantity_summary (
    run_id          VARCHAR NOT NULL,
    model           VARCHAR NOT NULL,
    layer           INTEGER NOT NULL,
    level           VARCHAR NOT NULL CHECK (level IN ('direction', 'features')),
    sae_id          VARCHAR,
    k               INTEGER,
    emotion         VARCHAR NOT NULL,
    families        INTEGER NOT NULL,  -- families with a defined rho
    families_rising INTEGER NOT NULL,  -- of those, with danger_rho > 0
    mean_danger_rho DOUBLE,
    p_value         DOUBLE             -- two-sided, order permuted within every family
);

-- version 9: retrieval's chance is the exact expected average precision of a random ranking
-- (the mean of its shuffled-label null), not the share of hits n_relevant / n_candidates
-- (about half of it when hits are few). From this version precision_at_10 and
-- average_precision are expected values over the orderings of tied scores, and
-- retrieval_top_passages lists tied scores in a seeded random order.
ALTER TABLE retrieval_results ADD COLUMN chance_average_precision DOUBLE;
UPDATE retrieval_results SET chance_average_precision = (harmonic + (n_relevant - 1)
    / greatest(n_candidates - 1, 1) * (n_candidates - harmonic)) / n_candidates
FROM (SELECT DISTINCT n_candidates AS n, list_sum(list_transform(range(1, n_candidates + 1),
      lambda k: 1.0 / k)) AS harmonic FROM retrieval_results) AS sums
WHERE sums.n = retrieval_results.n_candidates;
ALTER TABLE retrieval_results DROP COLUMN chance;

-- version 10: the main job survives a failing stage, and a stage is skipped only while the rows
-- it wrote are still in the store. stage_runs gains the statuses 'failed' (the stage raised;
-- `error` says what) and 'blocked' (a stage it needs failed), the runs the stage started and
-- the rows they wrote per table. `left_out` records every emotion a stage left out, and why.
CREATE TABLE stage_runs_v10 (
    run_id   VARCHAR NOT NULL,  -- the `run` job
    stage    VARCHAR NOT NULL,
    part     VARCHAR NOT NULL,  -- the stage's instance: a corpus, a layer and corpus, ...
    key      VARCHAR NOT NULL,
    status   VARCHAR NOT NULL CHECK (status IN ('ran', 'skipped', 'failed', 'blocked')),
    seconds  DOUBLE NOT NULL,
    summary  JSON,
    finished TIMESTAMP NOT NULL DEFAULT current_timestamp,
    error    VARCHAR,            -- failed: the error; blocked: which needed stage failed
    model    VARCHAR,            -- whose stage it was ('all models' for compare)
    runs     VARCHAR[],          -- the runs (runs.run_id) the stage started
    written  JSON                -- rows those runs wrote, per table: {"emotion_vectors": 480}
);
INSERT INTO stage_runs_v10 (run_id, stage, part, key, status, seconds, summary, finished)
    SELECT run_id, stage, part, key, status, seconds, summary, finished FROM stage_runs;
DROP TABLE stage_runs;
ALTER TABLE stage_runs_v10 RENAME TO stage_runs;

CREATE TABLE left_out (
    run_id     VARCHAR NOT NULL,  -- the run of the stage that left the emotion out
    stage      VARCHAR NOT NULL,  -- e.g. 'vectors', 'corpus generate'
    model      VARCHAR NOT NULL,
    corpus     VARCHAR NOT NULL,
    emotion    VARCHAR NOT NULL,
    n_passages INTEGER NOT NULL,  -- passages it had (after cleaning and the token offset)
    reason     VARCHAR NOT NULL
);

-- version 11: geometry statistics that see the choices made. `geometry` rows gain the emotion
-- set they describe ('all': every rated emotion with a vector; 'default': the 30 defaults);
-- their CIs now come from resamples that recompute the PCA. `geometry_best` holds the best
-- layer of each (model, corpus, method, set) with what its choice is worth, and `pca_scores`
-- each emotion's oriented PC1 and PC2 there, so that figures never refit the PCA.
ALTER TABLE geometry ADD COLUMN emotion_set VARCHAR DEFAULT 'all';

CREATE TABLE geometry_best (
    run_id       VARCHAR NOT NULL,
    model        VARCHAR NOT NULL,
    corpus       VARCHAR NOT NULL,
    method       VARCHAR NOT NULL,  -- 'denoised' or 'raw' vectors
    emotion_set  VARCHAR NOT NULL,  -- 'all' or 'default'
    layer        INTEGER NOT NULL,  -- the layer with the largest PC1-valence r
    rel_depth    DOUBLE NOT NULL,
    pearson_r    DOUBLE NOT NULL,   -- PC1 (oriented) against valence there
    ci_low       DOUBLE,            -- 95% CI over resamples of the emotions that refit the
    ci_high      DOUBLE,            --   PCA and choose the layer anew
    p_value      DOUBLE,            -- against the largest r over layers of shuffled ratings
    same_layer   DOUBLE,            -- share of resamples choosing this layer
    heldout_r    DOUBLE,            -- mean r on half of the emotions at the layer the other
    heldout_low  DOUBLE,            --   half chose, over 200 random halves, with the 2.5 and
    heldout_high DOUBLE,            --   97.5 percentiles
    split_r      DOUBLE,            -- what a pure positive/negative split reaches: |r(v, sign v)|
    n_emotions   INTEGER NOT NULL
);

CREATE TABLE pca_scores (
    run_id      VARCHAR NOT NULL,
    model       VARCHAR NOT NULL,
    corpus      VARCHAR NOT NULL,
    method      VARCHAR NOT NULL,
    emotion_set VARCHAR NOT NULL,
    layer       INTEGER NOT NULL,  -- the set's best layer
    emotion     VARCHAR NOT NULL,
    pc1         DOUBLE NOT NULL,   -- oriented to correlate non-negatively with valence
    pc2         DOUBLE NOT NULL    -- oriented to correlate non-negatively with arousal
);

-- version 12: alignment claims against shuffled-label nulls. OMP's baseline curve is OMP on
-- contrasts built with shuffled emotion labels ('shuffled'), no longer random feature sets;
-- curves stored before keep their 'random' rows.
CREATE TABLE alignment_curves_v12 (
    run_id  VARCHAR NOT NULL,
    model   VARCHAR NOT NULL,
    sae_id  VARCHAR NOT NULL,
    layer   INTEGER NOT NULL,
    corpus  VARCHAR NOT NULL,
    emotion VARCHAR NOT NULL,
    curve   VARCHAR NOT NULL CHECK (curve IN ('omp', 'shuffled', 'random')),
    k       INTEGER NOT NULL,
    r2      DOUBLE NOT NULL
);
INSERT INTO alignment_curves_v12 SELECT * FROM alignment_curves;
DROP TABLE alignment_curves;
ALTER TABLE alignment_curves_v12 RENAME TO alignment_curves;

-- version 13: the quantity test against nulls read out the same way. `p_value` of a summary
-- row is now against directions drawn at random within the span of the emotion vectors (at
-- the feature level: the top-k features of such directions); `p_random` against isotropic
-- random directions (random k-feature sets); `p_order` is the former p, the quantity order
-- permuted within every family. `headline` marks the layer fixed in advance for the claim
-- (the steering layer); the other layers are descriptive.
ALTER TABLE quantity_summary ADD COLUMN p_random DOUBLE;
ALTER TABLE quantity_summary ADD COLUMN p_order DOUBLE;
ALTER TABLE quantity_summary ADD COLUMN headline BOOLEAN DEFAULT false;

-- version 14: summary metrics defined once, as views that the command line, `compare` and the
-- report all read.
-- Steering: per model, layer, level, k and scale, the mean change in log P of each emotion's
-- own word (self effect), of the other emotions' words, their gap (specificity), and how far
-- the edit moved the residual, in units of the layer's mean residual norm.
CREATE VIEW steering_effects AS
SELECT model, layer, level, k, scale,
       avg(value) FILTER (WHERE metric = 'delta_logprob' AND emotion = target) AS self_effect,
       avg(value) FILTER (WHERE metric = 'delta_logprob' AND emotion <> target) AS other_effect,
       avg(value) FILTER (WHERE metric = 'delta_logprob' AND emotion = target)
         - avg(value) FILTER (WHERE metric = 'delta_logprob' AND emotion <> target)
         AS specificity,
       avg(value) FILTER (WHERE metric = 'effective_scale') AS effective_scale,
       count(DISTINCT emotion) AS emotions,
       string_agg(DISTINCT run_id, ', ' ORDER BY run_id) AS run_id
FROM steering_results
WHERE metric IN ('delta_logprob', 'effective_scale')
GROUP BY model, layer, level, k, scale;

-- The headline: the direction's self effect at the smallest scale steered (the least
-- distorting push), per model and layer.
CREATE VIEW steering_self_effect AS
SELECT model, layer, scale, self_effect, specificity, emotions, run_id
FROM steering_effects
WHERE level = 'direction'
QUALIFY scale = min(scale) OVER (PARTITION BY model, layer);

-- version 15: patching read as the source study reads it. A patch's `differs` says whether the
-- clean and corrupted prompts differ at its position (the positions where the news is); the
-- score gap of a pair is its clean prompt's own score (`pair_scores.clean_score`), and a
-- pair's `selection` flag marks the situations (the first 20) on which choices are made (the
-- reply set of the `replies` score, the flip layer), never scored.
ALTER TABLE patching_results ADD COLUMN differs BOOLEAN;
ALTER TABLE pair_scores ADD COLUMN selection BOOLEAN DEFAULT false;

-- Per pair: the (layer, position) among the positions where the prompts differ at which
-- patching the clean residual moves the score furthest towards the clean prompt's, that raw
-- effect, and the pair's score gap. Pairs whose clean score is 0 have no direction and no
-- peak; pairs of unequal length have no aligned positions and no peak.
CREATE VIEW patching_peaks AS
WITH gaps AS (
    SELECT model, pair_id, condition, situation, selection, score_name, clean_score AS score_gap
    FROM pair_scores WHERE clean_score <> 0
), moves AS (
    SELECT r.model, r.pair_id, g.score_name, r.layer, r.position,
           r.effect * sign(g.score_gap) AS toward
    FROM patching_results r
    JOIN gaps g ON g.model = r.model AND g.pair_id = r.pair_id
        AND g.score_name = json_extract_string(r.extra, '$.score')
    WHERE r.level = 'resid' AND r.differs AND NOT isnan(r.effect)
)
SELECT g.model, g.pair_id, g.condition, g.situation, g.selection, g.score_name, g.score_gap,
       p.peak.layer AS peak_layer, p.peak.position AS peak_position,
       p.peak.layer / greatest(m.n_layers - 1, 1) AS peak_depth, p.max_effect
FROM (SELECT model, pair_id, score_name,
             arg_max({'layer': layer, 'position': position}, toward) AS peak,
             max(toward) AS max_effect
      FROM moves GROUP BY model, pair_id, score_name) p
JOIN gaps g USING (model, pair_id, score_name)
JOIN models m USING (model);

-- version 16: feature-level faithfulness with its baseline. `recovered` is now
-- clip(effect / layer_effect, 0, 1): a set that moves the score away from the clean run
-- counts 0, one that overshoots the whole layer's effect counts 1 (the raw ratio stays
-- computable from effect and layer_effect). `random_effect` patches k features drawn at
-- random among those whose activation differs, `random_recovered` is its recovery.
ALTER TABLE patching_faithfulness ADD COLUMN random_effect DOUBLE;
ALTER TABLE patching_faithfulness ADD COLUMN random_recovered DOUBLE;

-- version 17: behaviour's steered conditions tested, and corrected for testing many: a
-- shift's p flips the signs of the per-scenario differences (steered - unsteered), q is
-- Benjamini-Hochberg over the run's steered conditions. Highlight a condition on q only.
ALTER TABLE behaviour_summary ADD COLUMN shift_p DOUBLE;
ALTER TABLE behaviour_summary ADD COLUMN shift_q DOUBLE;

-- version 18: features named for what they hold, in readable text. `top_tokens` and
-- `bottom_tokens` were the tokens a feature's decoder row promotes and suppresses through
-- the logit lens (not the tokens it fires on), written as vocabulary entries ('Ġhappy');
-- they are renamed `promoted_tokens` and `suppressed_tokens` and hold each token as it
-- reads (' happy'), with the lens logits beside them (NULL in rows written before).
-- Stored entries are decoded here: a byte-level BPE entry maps back to its bytes when they
-- are UTF-8, a SentencePiece '▁' is a space and a byte token '<0x0A>' its byte.
CREATE TEMP MACRO _lens_byte(code) AS CASE
    WHEN code BETWEEN 33 AND 126 OR code BETWEEN 161 AND 172 OR code BETWEEN 174 AND 255
        THEN code
    WHEN code BETWEEN 256 AND 288 THEN code - 256
    WHEN code BETWEEN 289 AND 322 THEN code - 162
    WHEN code = 323 THEN 173
END;
CREATE TEMP MACRO _lens_text(entry) AS coalesce(
    CASE WHEN regexp_full_match(entry, '<0x[0-9A-Fa-f]{2}>')
        THEN try(decode(unhex(substr(entry, 4, 2)))) END,
    CASE WHEN length(entry) > 0 AND list_bool_and(list_transform(string_split(entry, ''),
            lambda c: _lens_byte(unicode(c)) IS NOT NULL))
        THEN try(decode(unhex(array_to_string(list_transform(string_split(entry, ''),
            lambda c: printf('%02x', _lens_byte(unicode(c)))), '')))) END,
    replace(entry, '▁', ' '));
ALTER TABLE features RENAME COLUMN top_tokens TO promoted_tokens;
ALTER TABLE features RENAME COLUMN bottom_tokens TO suppressed_tokens;
ALTER TABLE features ADD COLUMN promoted_logits DOUBLE[];
ALTER TABLE features ADD COLUMN suppressed_logits DOUBLE[];
UPDATE features SET promoted_tokens = list_transform(promoted_tokens, lambda t: _lens_text(t)),
    suppressed_tokens = list_transform(suppressed_tokens, lambda t: _lens_text(t));
DROP MACRO _lens_text;
DROP MACRO _lens_byte;
