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

-- version 19: feature circuits across SAE layers (Marks et al., Sparse Feature Circuits).
-- A node is one SAE feature, or one SAE's error term, at one residual-stream layer; its
-- effect is the change in the pair score when the node takes its clean value in the
-- corrupted run, summed over the prompt positions after the shared prefix.
CREATE TABLE circuit_nodes (
    run_id            VARCHAR NOT NULL,
    model             VARCHAR NOT NULL,
    sae_id            VARCHAR NOT NULL,
    layer             INTEGER NOT NULL,
    hook              VARCHAR NOT NULL,
    condition         VARCHAR NOT NULL,
    node              VARCHAR NOT NULL CHECK (node IN ('feature', 'error')),
    feature           INTEGER,
    position          INTEGER,
    method            VARCHAR NOT NULL CHECK (method IN ('attribution', 'integrated_gradients', 'exact')),
    effect            DOUBLE NOT NULL,
    normalized_effect DOUBLE,
    pairs             INTEGER NOT NULL,
    in_circuit        BOOLEAN NOT NULL
);
COMMENT ON TABLE circuit_nodes IS 'Effect of each SAE feature and SAE error node on the pair score, per condition and estimation method, mean over the selection pairs.';
COMMENT ON COLUMN circuit_nodes.run_id IS 'The circuit run that wrote the row (runs.run_id).';
COMMENT ON COLUMN circuit_nodes.model IS 'Model the circuit was found in.';
COMMENT ON COLUMN circuit_nodes.sae_id IS 'SAE whose feature or error term the node is (saes.sae_id).';
COMMENT ON COLUMN circuit_nodes.layer IS 'Transformer block whose output (hook) the SAE reads.';
COMMENT ON COLUMN circuit_nodes.hook IS 'Hook point of the SAE, e.g. blocks.10.hook_resid_post.';
COMMENT ON COLUMN circuit_nodes.condition IS 'Pair condition: good or bad news (clean) against the neutral corrupted prompt.';
COMMENT ON COLUMN circuit_nodes.node IS 'feature: one SAE latent; error: the SAE reconstruction error (residual minus reconstruction).';
COMMENT ON COLUMN circuit_nodes.feature IS 'SAE latent index; NULL for the error node.';
COMMENT ON COLUMN circuit_nodes.position IS 'Token position counted from the end of the prompt (-1: the scored last token); NULL: summed over the positions after the shared prefix.';
COMMENT ON COLUMN circuit_nodes.method IS 'attribution: gradient times (clean - corrupted); integrated_gradients: the same with the gradient averaged along the straight path; exact: the node patched alone.';
COMMENT ON COLUMN circuit_nodes.effect IS 'Mean over pairs of the score change (score units) from giving the node its clean value in the corrupted run.';
COMMENT ON COLUMN circuit_nodes.normalized_effect IS 'Mean over pairs of effect / (clean score - corrupted score).';
COMMENT ON COLUMN circuit_nodes.pairs IS 'Pairs the mean is over.';
COMMENT ON COLUMN circuit_nodes.in_circuit IS 'The node is one of the circuit''s nodes (largest absolute integrated-gradients effects, chosen on the selection pairs).';

CREATE TABLE circuit_edges (
    run_id              VARCHAR NOT NULL,
    model               VARCHAR NOT NULL,
    condition           VARCHAR NOT NULL,
    upstream_sae_id     VARCHAR NOT NULL,
    upstream_layer      INTEGER NOT NULL,
    upstream_feature    INTEGER,
    downstream_sae_id   VARCHAR NOT NULL,
    downstream_layer    INTEGER NOT NULL,
    downstream_feature  INTEGER,
    effect              DOUBLE NOT NULL,
    normalized_effect   DOUBLE,
    pairs               INTEGER NOT NULL
);
COMMENT ON TABLE circuit_edges IS 'Effect of one circuit node on the score through one node of the next SAE layer (chain rule through the downstream SAE, its error term kept), mean over the edge pairs; only edges above the run''s threshold.';
COMMENT ON COLUMN circuit_edges.run_id IS 'The circuit run that wrote the row (runs.run_id).';
COMMENT ON COLUMN circuit_edges.model IS 'Model the circuit was found in.';
COMMENT ON COLUMN circuit_edges.condition IS 'Pair condition: good or bad news.';
COMMENT ON COLUMN circuit_edges.upstream_sae_id IS 'SAE of the upstream node.';
COMMENT ON COLUMN circuit_edges.upstream_layer IS 'Layer of the upstream node.';
COMMENT ON COLUMN circuit_edges.upstream_feature IS 'Upstream SAE latent; NULL: the upstream SAE''s error node.';
COMMENT ON COLUMN circuit_edges.downstream_sae_id IS 'SAE of the downstream node (the next SAE layer).';
COMMENT ON COLUMN circuit_edges.downstream_layer IS 'Layer of the downstream node.';
COMMENT ON COLUMN circuit_edges.downstream_feature IS 'Downstream SAE latent; NULL: the downstream SAE''s error node.';
COMMENT ON COLUMN circuit_edges.effect IS 'Mean over pairs of dscore/d(downstream) x d(downstream)/d(upstream) x (clean - corrupted upstream), summed over positions (score units).';
COMMENT ON COLUMN circuit_edges.normalized_effect IS 'Mean over pairs of effect / (clean score - corrupted score).';
COMMENT ON COLUMN circuit_edges.pairs IS 'Pairs the mean is over.';

CREATE TABLE circuit_curves (
    run_id     VARCHAR NOT NULL,
    model      VARCHAR NOT NULL,
    condition  VARCHAR NOT NULL,
    curve      VARCHAR NOT NULL CHECK (curve IN ('faithfulness', 'completeness')),
    selection  VARCHAR NOT NULL CHECK (selection IN ('circuit', 'random')),
    nodes      INTEGER NOT NULL,
    value      DOUBLE,
    spread     DOUBLE,
    draws      INTEGER NOT NULL,
    pairs      INTEGER NOT NULL
);
COMMENT ON TABLE circuit_curves IS 'Faithfulness and completeness of the circuit''s n largest nodes, and of random node sets of the same size, scored on the evaluation pairs (not those that chose the nodes).';
COMMENT ON COLUMN circuit_curves.run_id IS 'The circuit run that wrote the row (runs.run_id).';
COMMENT ON COLUMN circuit_curves.model IS 'Model the circuit was found in.';
COMMENT ON COLUMN circuit_curves.condition IS 'Pair condition: good or bad news.';
COMMENT ON COLUMN circuit_curves.curve IS 'faithfulness: (m(C) - m(none)) / (m(all) - m(none)) with only the nodes C kept and every other node mean-ablated; completeness: the same with C ablated and the rest kept (0: C is all that matters).';
COMMENT ON COLUMN circuit_curves.selection IS 'circuit: the n nodes with the largest absolute effect; random: n nodes drawn among those whose activation differs between the prompts.';
COMMENT ON COLUMN circuit_curves.nodes IS 'Size n of the node set.';
COMMENT ON COLUMN circuit_curves.value IS 'The curve''s value at n, m being the clean prompt''s mean score over the evaluation pairs; NULL where m(all) = m(none).';
COMMENT ON COLUMN circuit_curves.spread IS 'Standard deviation of the value over the random draws; NULL for the circuit.';
COMMENT ON COLUMN circuit_curves.draws IS 'Random node sets drawn (1 for the circuit).';
COMMENT ON COLUMN circuit_curves.pairs IS 'Evaluation pairs the scores are means over.';

CREATE TABLE circuit_directions (
    run_id             VARCHAR NOT NULL,
    model              VARCHAR NOT NULL,
    condition          VARCHAR NOT NULL,
    layer              INTEGER NOT NULL,
    hook               VARCHAR NOT NULL,
    intervention       VARCHAR NOT NULL CHECK (intervention IN ('valence', 'emotions', 'circuit', 'layer')),
    dimensions         INTEGER NOT NULL,
    effect             DOUBLE NOT NULL,
    normalized_effect  DOUBLE,
    pairs              INTEGER NOT NULL
);
COMMENT ON TABLE circuit_directions IS 'The direction view beside the circuit, per SAE layer: the score change from patching clean values into the corrupted run for the valence axis, the emotion subspace, the circuit''s nodes at the layer, or the whole residual, on the evaluation pairs.';
COMMENT ON COLUMN circuit_directions.run_id IS 'The circuit run that wrote the row (runs.run_id).';
COMMENT ON COLUMN circuit_directions.model IS 'Model the circuit was found in.';
COMMENT ON COLUMN circuit_directions.condition IS 'Pair condition: good or bad news.';
COMMENT ON COLUMN circuit_directions.layer IS 'Layer whose output is patched.';
COMMENT ON COLUMN circuit_directions.hook IS 'Hook point patched, e.g. blocks.10.hook_resid_post.';
COMMENT ON COLUMN circuit_directions.intervention IS 'valence: only the projection on the valence axis (PC1 of the emotion vectors, signed by rated valence); emotions: only the projection on the emotion subspace; circuit: only the circuit''s nodes at this layer; layer: the whole residual.';
COMMENT ON COLUMN circuit_directions.dimensions IS 'Dimensions patched: 1 for valence, the subspace rank for emotions, the node count for circuit, d_model for layer.';
COMMENT ON COLUMN circuit_directions.effect IS 'Mean over pairs of patched score - corrupted score (score units), at the positions after the shared prefix.';
COMMENT ON COLUMN circuit_directions.normalized_effect IS 'Mean over pairs of effect / (clean score - corrupted score).';
COMMENT ON COLUMN circuit_directions.pairs IS 'Evaluation pairs the mean is over.';

-- version 20: a store that explains itself. Every layer is stored with its hook point
-- (`blocks.L.hook_resid_post`: the output of block L, where the emotion vectors and the
-- SAEs live; the patching sweeps' `blocks.L.hook_resid_pre` and `blocks.L.attn.hook_z`),
-- `emotion_vectors.hook` holds the full hook name like `saes.hook`, every table, view and
-- column carries a comment (`saefeatures schema` prints them), `metrics` holds the
-- vocabulary of the metric names of the (metric, value) tables, and a few views answer the
-- common questions with each feature's model, layer and hook.
UPDATE emotion_vectors SET hook = 'blocks.' || CAST(layer AS VARCHAR) || '.hook_' || hook
WHERE hook NOT LIKE 'blocks.%';

ALTER TABLE geometry ADD COLUMN hook VARCHAR;
ALTER TABLE geometry_best ADD COLUMN hook VARCHAR;
ALTER TABLE pca_scores ADD COLUMN hook VARCHAR;
ALTER TABLE vector_pairs ADD COLUMN hook VARCHAR;
ALTER TABLE logit_lens ADD COLUMN hook VARCHAR;
ALTER TABLE alignments ADD COLUMN hook VARCHAR;
ALTER TABLE alignment_summary ADD COLUMN hook VARCHAR;
ALTER TABLE alignment_curves ADD COLUMN hook VARCHAR;
ALTER TABLE feature_map_points ADD COLUMN hook VARCHAR;
ALTER TABLE steering_results ADD COLUMN hook VARCHAR;
ALTER TABLE comparisons ADD COLUMN hook VARCHAR;
ALTER TABLE feature_patching ADD COLUMN hook VARCHAR;
ALTER TABLE patching_faithfulness ADD COLUMN hook VARCHAR;
ALTER TABLE retrieval_results ADD COLUMN hook VARCHAR;
ALTER TABLE retrieval_top_passages ADD COLUMN hook VARCHAR;
ALTER TABLE behaviour_results ADD COLUMN hook VARCHAR;
ALTER TABLE behaviour_summary ADD COLUMN hook VARCHAR;
ALTER TABLE preference_comparisons ADD COLUMN hook VARCHAR;
ALTER TABLE preference_correlations ADD COLUMN hook VARCHAR;
ALTER TABLE preference_steering ADD COLUMN hook VARCHAR;
ALTER TABLE quantity_scores ADD COLUMN hook VARCHAR;
ALTER TABLE quantity_results ADD COLUMN hook VARCHAR;
ALTER TABLE quantity_summary ADD COLUMN hook VARCHAR;
ALTER TABLE patching_results ADD COLUMN hook VARCHAR;

CREATE TEMP MACRO _resid_post(layer) AS 'blocks.' || CAST(layer AS VARCHAR) || '.hook_resid_post';
UPDATE geometry SET hook = _resid_post(layer);
UPDATE geometry_best SET hook = _resid_post(layer);
UPDATE pca_scores SET hook = _resid_post(layer);
UPDATE vector_pairs SET hook = _resid_post(layer);
UPDATE logit_lens SET hook = _resid_post(layer);
UPDATE alignments SET hook = _resid_post(layer);
UPDATE alignment_summary SET hook = _resid_post(layer);
UPDATE alignment_curves SET hook = _resid_post(layer);
UPDATE feature_map_points SET hook = _resid_post(layer);
UPDATE steering_results SET hook = _resid_post(layer);
UPDATE comparisons SET hook = _resid_post(layer);
UPDATE feature_patching SET hook = _resid_post(layer);
UPDATE patching_faithfulness SET hook = _resid_post(layer);
UPDATE retrieval_results SET hook = _resid_post(layer);
UPDATE retrieval_top_passages SET hook = _resid_post(layer);
UPDATE behaviour_results SET hook = _resid_post(layer);
UPDATE behaviour_summary SET hook = _resid_post(layer);
UPDATE preference_comparisons SET hook = _resid_post(layer);
UPDATE preference_correlations SET hook = _resid_post(layer);
UPDATE preference_steering SET hook = _resid_post(layer);
UPDATE quantity_scores SET hook = _resid_post(layer);
UPDATE quantity_results SET hook = _resid_post(layer);
UPDATE quantity_summary SET hook = _resid_post(layer);
UPDATE patching_results SET hook = CASE level
    WHEN 'resid' THEN 'blocks.' || CAST(layer AS VARCHAR) || '.hook_resid_pre'
    WHEN 'heads' THEN 'blocks.' || CAST(layer AS VARCHAR) || '.attn.hook_z' END;
DROP MACRO _resid_post;

-- The metric names of the (metric, value) tables. A name in braces ({emotion}, {k}, ...) is
-- filled in at run time: `mean_danger_rho:{emotion}` stands for `mean_danger_rho:happy`, ...
CREATE TABLE metrics (
    stored_in VARCHAR NOT NULL,
    name      VARCHAR NOT NULL,
    meaning   VARCHAR NOT NULL,
    unit      VARCHAR NOT NULL,
    PRIMARY KEY (stored_in, name)
);
INSERT INTO metrics VALUES
    ('sae_metrics', 'l0', 'Mean number of active latents per evaluated token.', 'latents'),
    ('sae_metrics', 'explained_variance', '1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over the evaluated tokens (1: perfect reconstruction).', 'fraction, at most 1'),
    ('sae_metrics', 'mse', 'Mean over tokens and dimensions of (x - x_hat)^2.', 'squared activation units'),
    ('sae_metrics', 'cosine', 'Mean over tokens of the cosine between the activation and its reconstruction.', 'cosine, -1..1'),
    ('sae_metrics', 'dead_fraction', 'Share of latents never active on the evaluated tokens.', 'fraction, 0..1'),
    ('sae_metrics', 'dense_fraction', 'Share of latents active on more than 10 % of the evaluated tokens.', 'fraction, 0..1'),
    ('sae_metrics', 'eval_tokens', 'Token positions the reconstruction metrics are computed over (special tokens left out).', 'tokens'),
    ('sae_metrics', 'ce_clean', 'Mean next-token cross-entropy of the unchanged model on the evaluation text.', 'nats'),
    ('sae_metrics', 'ce_sae', 'The same with the hook''s activations replaced by the SAE reconstruction.', 'nats'),
    ('sae_metrics', 'ce_ablate', 'The same with the hook''s activations replaced by zeros.', 'nats'),
    ('sae_metrics', 'ce_loss_recovered', '(ce_ablate - ce_sae) / (ce_ablate - ce_clean): 1 is as good as the model, 0 no better than zeros.', 'fraction, usually 0..1'),
    ('sae_metrics', 'kl_sae', 'Mean KL(clean || spliced) of the next-token distributions with the SAE reconstruction spliced in.', 'nats'),
    ('sae_metrics', 'kl_ablate', 'Mean KL(clean || ablated) with the activations replaced by zeros.', 'nats'),
    ('sae_training', 'loss', 'The SAE trainer''s total loss on the training batch.', 'loss units'),
    ('sae_training', 'mse', 'The trainer''s reconstruction (MSE) loss on the training batch.', 'squared activation units'),
    ('sae_training', 'l0', 'Mean active latents per token of the training batch.', 'latents'),
    ('sae_training', 'explained_variance', '1 - FVU of the reconstruction on the training batch.', 'fraction, at most 1'),
    ('steering_results', 'delta_logprob', 'Change in log P of the target emotion word (all its tokens, teacher-forced) after "He feels", steered minus unsteered.', 'nats'),
    ('steering_results', 'effective_scale', 'How far the edit moved the prompt''s residual: mean norm of the change over positions, over the layer''s mean residual norm.', 'x mean residual norm'),
    ('steering_results', 'generation_lexicon_valence', 'Valence of the greedy generation under steering, scored with the VADER word ratings.', 'VADER compound, -1..1'),
    ('steering_results', 'generation_axis_valence', 'Projection of the generation on the valence axis (PC1 of the emotion vectors), read by the unsteered model.', 'residual units along a unit axis'),
    ('alignment_summary', 'best_abs_cos', 'Largest |cosine| between the emotion vector and any SAE decoder row.', 'cosine, 0..1'),
    ('alignment_summary', 'best_cos_feature', 'The latent with that largest |cosine|.', 'latent index'),
    ('alignment_summary', 'omp_r2_k1', 'R^2 of the emotion vector by its best single decoder row (orthogonal matching pursuit, k = 1).', 'fraction, 0..1'),
    ('alignment_summary', 'omp_r2_k{k}', 'R^2 of the emotion vector by k decoder rows chosen by orthogonal matching pursuit (k: the run''s k_max).', 'fraction, 0..1'),
    ('alignment_summary', 'shuffled_omp_r2_k{k}_p99', '99th percentile of the same R^2 for contrast vectors built with shuffled emotion labels.', 'fraction, 0..1'),
    ('alignment_summary', 'omp_exceeds_shuffled', '1 when omp_r2_k{k} exceeds its shuffled-label 99th percentile, else 0.', 'flag, 0 or 1'),
    ('alignment_summary', 'best_mean_diff', 'Largest difference of a latent''s mean activation per passage between the emotion''s passages and the others.', 'activation units'),
    ('alignment_summary', 'best_feature_auroc', 'Largest AUROC of a latent''s max activation per passage at telling the emotion''s passages from the others (chosen and scored on all passages).', 'AUROC, 0..1'),
    ('alignment_summary', 'heldout_feature', 'The latent with the best AUROC on the choosing half of the passages.', 'latent index'),
    ('alignment_summary', 'heldout_feature_auroc', 'That latent''s AUROC on the other half of the passages.', 'AUROC, 0..1'),
    ('alignment_summary', 'heldout_feature_auroc_p', 'Permutation p of the held-out AUROC (labels shuffled).', 'p-value, 0..1'),
    ('alignment_summary', 'noise_max_feature_auroc', 'The held-out AUROC that chance reaches: the same choice made on shuffled labels.', 'AUROC, 0..1'),
    ('alignment_summary', 'probe_auroc', 'Held-out AUROC of a logistic probe on the mean residual per passage: what the layer holds, SAE or not.', 'AUROC, 0..1'),
    ('alignment_summary', 'overlap@{top}:{method_a}~{method_b}', 'Share of the top-{top} latents two alignment methods have in common.', 'fraction, 0..1'),
    ('alignment_summary', 'spearman:{method_a}~{method_b}', 'Spearman rho between two alignment methods'' scores over every latent.', 'rho, -1..1'),
    ('alignment_summary', 'shuffled_null_p99', '99th percentile of the best |cosine| reached by contrast vectors with shuffled emotion labels (the SAE''s null).', 'cosine, 0..1'),
    ('alignment_summary', 'random_p99', '99th percentile of the best |cosine| of random directions with the decoder.', 'cosine, 0..1'),
    ('alignment_summary', 'exceeds_random_p99', '1 when best_abs_cos exceeds random_p99, else 0.', 'flag, 0 or 1'),
    ('alignment_summary', 'exceeds_shuffled_null', '1 when best_abs_cos exceeds shuffled_null_p99, else 0.', 'flag, 0 or 1'),
    ('comparisons', 'steering_self_effect@k={k},scale={scale}', 'Steering self effect (mean change in log P of the emotion''s own word) of the direction and of the top-k features at one scale.', 'nats'),
    ('comparisons', 'steering_specificity@k={k},scale={scale}', 'Self effect minus the effect on the other emotions'' words, direction against top-k features.', 'nats'),
    ('comparisons', 'patching_effect@{condition},k={k}', 'Mean normalized patching effect of the whole layer (direction_value) and of its top-k features by attribution (feature_value).', 'fraction of the clean-corrupted score gap'),
    ('comparisons', 'pc1_valence_best_depth ({corpus})', 'Relative depth (layer / (n_layers - 1)) of the layer with the largest PC1-valence r, model against other_model.', 'fraction, 0..1'),
    ('comparisons', 'pc1_valence_best_r ({corpus})', 'The largest PC1-valence r over layers, model against other_model.', 'Pearson r, 0..1'),
    ('comparisons', 'patching_peak_depth ({condition})', 'Mean relative depth of the pairs'' peak residual patches, model against other_model.', 'fraction, 0..1'),
    ('comparisons', 'steering_self_effect (direction, smallest scale)', 'The direction''s mean self effect at the smallest scale steered, model against other_model.', 'nats'),
    ('comparisons', 'p_unethical shift ({emotion}, scale {scale})', 'Mean shift of P(unethical option) under steering, steered minus unsteered.', 'probability difference, -1..1'),
    ('comparisons', 'mean Elo shift ({emotion}, scale {scale})', 'Mean Elo shift of the steered activities.', 'Elo points'),
    ('comparisons', 'Elo shift vs preference r across emotions (scale {scale})', 'Pearson r over emotions between the mean Elo shift and the emotion''s preference correlation at the layer.', 'Pearson r, -1..1'),
    ('comparisons', 'mean_danger_rho:{emotion}', 'Mean over quantity families of the read-out''s Spearman rho with danger.', 'rho, -1..1'),
    ('comparisons', 'mean_average_precision ({corpus}, {split} split)', 'Retrieval: mean over emotions of the average precision of the held-out passages.', 'fraction, 0..1'),
    ('comparisons', 'mean_precision_at_10 ({corpus}, {split} split)', 'Retrieval: mean over emotions of the precision among the 10 best-scored texts.', 'fraction, 0..1'),
    ('comparisons', 'share_p_below_0.05 ({corpus}, {split} split)', 'Retrieval: share of emotions whose average precision beats the shuffled-label null at p < 0.05.', 'fraction, 0..1'),
    ('comparisons', 'circuit_{curve}@{condition},nodes={nodes}', 'Faithfulness or completeness of the circuit at its size (feature_value); extra holds the random node sets'' mean and sd.', 'fraction of the full model''s score change'),
    ('comparisons', 'circuit_node_share@{condition},depth={depth}', 'Share of the circuit''s nodes at this SAE layer (feature_value), placed by relative depth.', 'fraction, 0..1'),
    ('comparisons', 'circuit_patch_effect@{condition},depth={depth}', 'Normalized effect of patching the valence axis (direction_value) and the circuit''s nodes (feature_value) at this SAE layer; extra holds the whole layer''s and the emotion subspace''s.', 'fraction of the clean-corrupted score gap');

-- Views for the common questions, each row with its model, layer and hook.
CREATE VIEW sae_features AS
SELECT s.model, s.layer, s.hook, f.sae_id, f.feature, f.density, f.max_activation, f.mean_active,
       f.promoted_tokens, f.promoted_logits, f.suppressed_tokens, f.suppressed_logits,
       f.top_snippets
FROM features f
JOIN saes s USING (sae_id);

CREATE VIEW sae_feature_activations AS
SELECT s.model, s.layer, s.hook, a.sae_id, a.corpus, a.passage_id, a.position, t.token,
       a.feature, a.value
FROM feature_activations a
JOIN saes s USING (sae_id)
LEFT JOIN passage_tokens t ON t.model = s.model AND t.corpus = a.corpus
    AND t.passage_id = a.passage_id AND t.position = a.position;

CREATE VIEW top_aligned_features AS
SELECT a.model, a.layer, a.hook, a.sae_id, a.corpus, a.emotion, a.method, a.rank, a.feature,
       a.score, f.density, f.promoted_tokens[1:5] AS promotes, f.suppressed_tokens[1:5] AS suppresses
FROM alignments a
LEFT JOIN features f ON f.sae_id = a.sae_id AND f.feature = a.feature
WHERE a.rank <= 10;

CREATE VIEW sae_summary AS
SELECT s.model, s.layer, s.hook, s.sae_id, s.source, s.architecture, s.d_sae, s.k,
       max(m.value) FILTER (WHERE m.metric = 'l0') AS l0,
       max(m.value) FILTER (WHERE m.metric = 'explained_variance') AS explained_variance,
       max(m.value) FILTER (WHERE m.metric = 'dead_fraction') AS dead_fraction,
       max(m.value) FILTER (WHERE m.metric = 'ce_loss_recovered') AS ce_loss_recovered,
       max(m.value) FILTER (WHERE m.metric = 'kl_sae') AS kl_sae
FROM saes s
LEFT JOIN sae_metrics m ON m.sae_id = s.sae_id AND m.split = 'heldout'
GROUP BY s.model, s.layer, s.hook, s.sae_id, s.source, s.architecture, s.d_sae, s.k;

-- What every table, view and column holds.
COMMENT ON TABLE schema_version IS 'The migrations of db/schema.sql applied to this store, one row each.';
COMMENT ON COLUMN schema_version.version IS 'Migration number (the "-- version N:" block of db/schema.sql).';
COMMENT ON COLUMN schema_version.applied IS 'When the migration was applied (UTC).';
COMMENT ON COLUMN schema_version.package_version IS 'saefeatures version that applied it.';

COMMENT ON TABLE runs IS 'One row per command that wrote to the store: what ran, with which configuration, on which code, and how it ended. Every results row refers to its run.';
COMMENT ON COLUMN runs.run_id IS 'Run identifier (12 hex digits), referred to by every results row.';
COMMENT ON COLUMN runs.command IS 'The command or stage that ran, e.g. vectors, align, steer, run.';
COMMENT ON COLUMN runs.config IS 'Its options as JSON, with the dtype and device used when it computed.';
COMMENT ON COLUMN runs.package_version IS 'saefeatures version that ran it.';
COMMENT ON COLUMN runs.git_revision IS 'Short git revision of the code, when it ran from a git checkout.';
COMMENT ON COLUMN runs.host IS 'Host name of the machine.';
COMMENT ON COLUMN runs.pid IS 'Process id of the run.';
COMMENT ON COLUMN runs.started IS 'Start time (UTC).';
COMMENT ON COLUMN runs.finished IS 'End time (UTC); NULL while running.';
COMMENT ON COLUMN runs.status IS 'running, ok or failed (a run found running by a later writer was interrupted and is marked failed).';
COMMENT ON COLUMN runs.error IS 'Why the run failed, in one line; NULL unless failed.';

COMMENT ON TABLE models IS 'Each model results were computed on: where it comes from and its shape, as views and reports read it.';
COMMENT ON COLUMN models.run_id IS 'The run that registered the model (runs.run_id).';
COMMENT ON COLUMN models.model IS 'Model name as results refer to it (an embedded name, a Hugging Face name or a local directory).';
COMMENT ON COLUMN models.source IS 'Where it was loaded from, e.g. embedded, huggingface or local.';
COMMENT ON COLUMN models.reference IS 'Its Hugging Face repository or folder.';
COMMENT ON COLUMN models.architecture IS 'Hugging Face architecture class.';
COMMENT ON COLUMN models.n_layers IS 'Transformer blocks; layers are numbered 0..n_layers - 1.';
COMMENT ON COLUMN models.d_model IS 'Width of the residual stream.';
COMMENT ON COLUMN models.n_heads IS 'Attention heads per layer.';
COMMENT ON COLUMN models.n_kv_heads IS 'Key/value heads per layer (fewer than n_heads with grouped-query attention).';
COMMENT ON COLUMN models.d_vocab IS 'Vocabulary size.';
COMMENT ON COLUMN models.is_chat IS 'Instruction-tuned with a chat template: prompts are chat-formatted.';
COMMENT ON COLUMN models.dtype IS 'Dtype the model was loaded in for the run that registered it.';
COMMENT ON COLUMN models.weights_path IS 'Local folder of the weights, when known.';

COMMENT ON TABLE corpora IS 'Each corpus of passages: built in, imported or generated stories.';
COMMENT ON COLUMN corpora.run_id IS 'The run that wrote the corpus (runs.run_id).';
COMMENT ON COLUMN corpora.corpus IS 'Corpus name, e.g. templates, stories, neutral.';
COMMENT ON COLUMN corpora.kind IS 'builtin (shipped), import (from a file) or generated (stories written by a model).';
COMMENT ON COLUMN corpora.source IS 'Where the passages come from: a description, a file or the generating model.';
COMMENT ON COLUMN corpora.n_passages IS 'Passages of the corpus (rows in passages).';
COMMENT ON COLUMN corpora.meta IS 'JSON facts about the corpus, e.g. {"emotions": 30}.';

COMMENT ON TABLE passages IS 'The texts of every corpus, one row per passage.';
COMMENT ON COLUMN passages.run_id IS 'The run that wrote the passage (runs.run_id).';
COMMENT ON COLUMN passages.corpus IS 'Its corpus (corpora.corpus).';
COMMENT ON COLUMN passages.passage_id IS 'Index of the passage in its corpus, from 0.';
COMMENT ON COLUMN passages.emotion IS 'The emotion the passage expresses; NULL for neutral text.';
COMMENT ON COLUMN passages.topic IS 'Topic or situation of the passage, when the corpus has one.';
COMMENT ON COLUMN passages.text IS 'The passage.';
COMMENT ON COLUMN passages.meta IS 'JSON facts about the passage, e.g. its train/heldout split.';

COMMENT ON TABLE emotion_vectors IS 'Emotion contrast vectors per model, corpus, layer and method: mean residual over the emotion''s passages (tokens from token_offset on) minus the mean over emotions.';
COMMENT ON COLUMN emotion_vectors.run_id IS 'The vectors run that wrote the row (runs.run_id).';
COMMENT ON COLUMN emotion_vectors.model IS 'Model the vector was read from (models.model).';
COMMENT ON COLUMN emotion_vectors.corpus IS 'Corpus whose passages were pooled.';
COMMENT ON COLUMN emotion_vectors.layer IS 'Transformer block whose output (hook resid_post) was pooled.';
COMMENT ON COLUMN emotion_vectors.hook IS 'Hook point of the vector: blocks.{layer}.hook_resid_post (the output of block layer).';
COMMENT ON COLUMN emotion_vectors.emotion IS 'Emotion word.';
COMMENT ON COLUMN emotion_vectors.method IS 'raw: the contrast vector; denoised: with the top principal components of neutral passages projected out.';
COMMENT ON COLUMN emotion_vectors.n_passages IS 'Passages of the emotion that were pooled.';
COMMENT ON COLUMN emotion_vectors.vector IS 'The vector, d_model floats in residual-stream units (not normalized).';
COMMENT ON COLUMN emotion_vectors.token_offset IS 'Tokens at the start of each passage left out of the pooling.';
COMMENT ON COLUMN emotion_vectors.n_removed IS 'Neutral principal components projected out (0 for raw).';

COMMENT ON TABLE geometry IS 'Per layer: PC1 of the emotion vectors against valence and PC2 against arousal, with resampled intervals and permutation p-values.';
COMMENT ON COLUMN geometry.run_id IS 'The geometry run that wrote the row (runs.run_id).';
COMMENT ON COLUMN geometry.model IS 'Model (models.model).';
COMMENT ON COLUMN geometry.corpus IS 'Corpus of the vectors.';
COMMENT ON COLUMN geometry.layer IS 'Layer of the vectors (the output of block layer, see hook).';
COMMENT ON COLUMN geometry.rel_depth IS 'layer / (n_layers - 1), 0..1.';
COMMENT ON COLUMN geometry.method IS 'Vectors used: denoised or raw.';
COMMENT ON COLUMN geometry.component IS 'PC1 or PC2 of the emotions'' vectors at the layer.';
COMMENT ON COLUMN geometry.rating IS 'Rating the component is set against: valence (PC1) or arousal (PC2).';
COMMENT ON COLUMN geometry.var_explained IS 'Share of the vectors'' variance the component explains, 0..1.';
COMMENT ON COLUMN geometry.pearson_r IS 'Pearson r of the component scores (oriented, so r >= 0) with the rating.';
COMMENT ON COLUMN geometry.spearman_r IS '|Spearman rho| of the component scores with the rating.';
COMMENT ON COLUMN geometry.ci_low IS 'Lower bound of the 95 % bootstrap interval of pearson_r (emotions resampled, PCA refitted).';
COMMENT ON COLUMN geometry.ci_high IS 'Upper bound of that interval.';
COMMENT ON COLUMN geometry.p_value IS 'Permutation p of pearson_r against shuffled ratings at this layer.';
COMMENT ON COLUMN geometry.q_value IS 'Benjamini-Hochberg q over the layers of the component.';
COMMENT ON COLUMN geometry.n_emotions IS 'Rated emotions the fit is over.';
COMMENT ON COLUMN geometry.emotion_set IS 'all: every rated emotion with a vector; default: the 30 default emotions.';
COMMENT ON COLUMN geometry.hook IS 'Hook point of layer: blocks.{layer}.hook_resid_post, where the emotion vectors live.';

COMMENT ON TABLE saes IS 'Each registered sparse autoencoder: the model and hook it reads, its shape and where its weights are.';
COMMENT ON COLUMN saes.run_id IS 'The train or load run that registered it (runs.run_id).';
COMMENT ON COLUMN saes.sae_id IS 'SAE identifier, e.g. <model>-L3-resid_post-topk64-...; results refer to it.';
COMMENT ON COLUMN saes.model IS 'Model the SAE reads (models.model).';
COMMENT ON COLUMN saes.layer IS 'Transformer block of its hook.';
COMMENT ON COLUMN saes.hook IS 'Hook point it encodes, e.g. blocks.3.hook_resid_post (the output of block 3).';
COMMENT ON COLUMN saes.architecture IS 'SAE architecture, e.g. topk, standard, jumprelu.';
COMMENT ON COLUMN saes.d_in IS 'Input width (d_model for a residual hook).';
COMMENT ON COLUMN saes.d_sae IS 'Number of latents (features), indexed 0..d_sae - 1.';
COMMENT ON COLUMN saes.k IS 'Active latents per token of a top-k SAE; NULL otherwise.';
COMMENT ON COLUMN saes.tokens IS 'Training tokens, when known.';
COMMENT ON COLUMN saes.path IS 'Folder of its SAELens weights and config.';
COMMENT ON COLUMN saes.config IS 'Its training or loading configuration as JSON.';
COMMENT ON COLUMN saes.source IS 'trained here, or where it was loaded from (a folder or a release).';
COMMENT ON COLUMN saes.dataset IS 'Text it was trained on, when known.';
COMMENT ON COLUMN saes.created IS 'When it was registered (UTC).';

COMMENT ON TABLE sae_metrics IS 'Evaluation metrics of each SAE on held-out text, one row per metric (the names are described in metrics).';
COMMENT ON COLUMN sae_metrics.run_id IS 'The run that evaluated the SAE (runs.run_id).';
COMMENT ON COLUMN sae_metrics.sae_id IS 'The SAE (saes.sae_id).';
COMMENT ON COLUMN sae_metrics.split IS 'Text evaluated on: heldout (tokens not used in training).';
COMMENT ON COLUMN sae_metrics.metric IS 'Metric name (metrics.name where stored_in = sae_metrics).';
COMMENT ON COLUMN sae_metrics.value IS 'Its value, in the unit metrics.unit gives.';

COMMENT ON TABLE features IS 'Per SAE latent: how often and how strongly it fired on the scanned corpora, the tokens its decoder row promotes and suppresses, and its top snippets.';
COMMENT ON COLUMN features.run_id IS 'The align run that wrote the row (runs.run_id).';
COMMENT ON COLUMN features.sae_id IS 'The SAE (saes.sae_id); model, layer and hook are in saes or the sae_features view.';
COMMENT ON COLUMN features.feature IS 'Latent index, 0..d_sae - 1.';
COMMENT ON COLUMN features.density IS 'Share of scanned tokens on which it fired (non-zero activation), 0..1; 0: dead on the scanned text.';
COMMENT ON COLUMN features.max_activation IS 'Largest activation on the scanned tokens (SAE activation units).';
COMMENT ON COLUMN features.mean_active IS 'Mean activation over the tokens where it fired; NULL if it never fired.';
COMMENT ON COLUMN features.promoted_tokens IS 'The tokens its decoder row promotes most through the logit lens, as they read, best first.';
COMMENT ON COLUMN features.suppressed_tokens IS 'The tokens its decoder row suppresses most through the logit lens, most suppressed first.';
COMMENT ON COLUMN features.top_snippets IS 'JSON list of its largest activations: corpus, passage_id, position, value and text with the firing token in [[ ]].';
COMMENT ON COLUMN features.promoted_logits IS 'Logit-lens logits of promoted_tokens (decoder row times unembedding); NULL in rows written before version 18.';
COMMENT ON COLUMN features.suppressed_logits IS 'Logit-lens logits of suppressed_tokens; NULL in rows written before version 18.';

COMMENT ON TABLE feature_activations IS 'Every non-zero SAE activation on the scanned corpora, one row per (token, latent); join sae_feature_activations for model, layer, hook and token.';
COMMENT ON COLUMN feature_activations.run_id IS 'The align run that wrote the row (runs.run_id).';
COMMENT ON COLUMN feature_activations.sae_id IS 'The SAE (saes.sae_id).';
COMMENT ON COLUMN feature_activations.corpus IS 'Corpus of the passage.';
COMMENT ON COLUMN feature_activations.passage_id IS 'Passage (passages.passage_id within corpus).';
COMMENT ON COLUMN feature_activations.position IS 'Token position in the passage, from 0 (passage_tokens.position).';
COMMENT ON COLUMN feature_activations.feature IS 'Latent index.';
COMMENT ON COLUMN feature_activations.value IS 'Its activation there (non-zero, SAE activation units).';

COMMENT ON TABLE alignments IS 'Per SAE, emotion and alignment method: the latents that best match the emotion, ranked.';
COMMENT ON COLUMN alignments.run_id IS 'The align run that wrote the row (runs.run_id).';
COMMENT ON COLUMN alignments.model IS 'Model (models.model).';
COMMENT ON COLUMN alignments.sae_id IS 'The SAE (saes.sae_id).';
COMMENT ON COLUMN alignments.layer IS 'Layer of the SAE and of the emotion vector (see hook).';
COMMENT ON COLUMN alignments.corpus IS 'Corpus of the vectors and of the scanned passages.';
COMMENT ON COLUMN alignments.emotion IS 'Emotion word.';
COMMENT ON COLUMN alignments.method IS 'decoder_cosine: cosine of the decoder row with the emotion vector; omp: orthogonal matching pursuit of the vector; mean_diff: mean activation on the emotion''s passages minus on the others; auroc: AUROC of the max activation per passage.';
COMMENT ON COLUMN alignments.feature IS 'Latent index.';
COMMENT ON COLUMN alignments.score IS 'The method''s score: a cosine (-1..1), an OMP coefficient (residual units), a difference of mean activations, or an AUROC (0..1).';
COMMENT ON COLUMN alignments.rank IS 'Rank within (SAE, corpus, emotion, method), 1 = best (by |cosine| for decoder_cosine, selection order for omp).';
COMMENT ON COLUMN alignments.extra IS 'JSON details: for omp, {"r2": R^2 of the vector by the features up to this rank}.';
COMMENT ON COLUMN alignments.hook IS 'Hook point of layer: blocks.{layer}.hook_resid_post (the SAE''s hook, where the vector lives).';

COMMENT ON TABLE steering_results IS 'Steering: per lever (level, emotion, k), scale and target word, the change the edit makes, one row per metric (the names are described in metrics).';
COMMENT ON COLUMN steering_results.run_id IS 'The steer run that wrote the row (runs.run_id).';
COMMENT ON COLUMN steering_results.model IS 'Model (models.model).';
COMMENT ON COLUMN steering_results.layer IS 'The steered layer (see hook).';
COMMENT ON COLUMN steering_results.level IS 'direction, features (top-k latents added), features clamp (top-k latents set to a multiple of their largest activation), random features, random clamp, or none (the unsteered generation).';
COMMENT ON COLUMN steering_results.emotion IS 'The emotion steered towards (none for the unsteered generation).';
COMMENT ON COLUMN steering_results.target IS 'Emotion word whose log P is measured (delta_logprob); NULL for other metrics.';
COMMENT ON COLUMN steering_results.k IS 'Features steered with (feature levels); NULL for the direction.';
COMMENT ON COLUMN steering_results.scale IS 'Push size: x the layer''s mean residual norm for additions, x each feature''s largest observed activation for clamps (0: ablation).';
COMMENT ON COLUMN steering_results.metric IS 'Metric name (metrics.name where stored_in = steering_results).';
COMMENT ON COLUMN steering_results.value IS 'Its value, in the unit metrics.unit gives.';
COMMENT ON COLUMN steering_results.extra IS 'JSON details: for generation metrics, {"text": the generated text}.';
COMMENT ON COLUMN steering_results.hook IS 'Hook point steered: blocks.{layer}.hook_resid_post.';

COMMENT ON TABLE patching_results IS 'Activation patching sweeps: the change in the pair score when one clean activation replaces the corrupted run''s, per pair, layer and position (resid) or head (heads).';
COMMENT ON COLUMN patching_results.run_id IS 'The patch run that wrote the row (runs.run_id).';
COMMENT ON COLUMN patching_results.model IS 'Model (models.model).';
COMMENT ON COLUMN patching_results.level IS 'resid: one residual position patched; heads: one attention head''s output (all positions after the shared prefix).';
COMMENT ON COLUMN patching_results.pair_id IS 'The prompt pair (pair_scores.pair_id).';
COMMENT ON COLUMN patching_results.condition IS 'Pair condition: good or bad news in the clean prompt.';
COMMENT ON COLUMN patching_results.layer IS 'Patched layer (see hook for where in the block).';
COMMENT ON COLUMN patching_results.position IS 'Patched token position in the prompt, from 0 (resid); NULL for heads.';
COMMENT ON COLUMN patching_results.head IS 'Patched head (heads); NULL for resid.';
COMMENT ON COLUMN patching_results.feature IS 'Unused by the sweeps (NULL): feature-level patching is in feature_patching.';
COMMENT ON COLUMN patching_results.effect IS 'Patched score - corrupted score (score units, see pair_scores.score_definition).';
COMMENT ON COLUMN patching_results.normalized IS 'effect / (clean score - corrupted score); NaN when the gap is 0.';
COMMENT ON COLUMN patching_results.extra IS 'JSON: {"score": the score name, "aligned": whether the prompts have equal lengths}.';
COMMENT ON COLUMN patching_results.differs IS 'The clean and corrupted prompts differ at this position; NULL for heads and unaligned pairs.';
COMMENT ON COLUMN patching_results.hook IS 'Hook point patched: blocks.{layer}.hook_resid_pre (the input of block layer) for resid, blocks.{layer}.attn.hook_z for heads.';

COMMENT ON TABLE comparisons IS 'Direction against features (kind levels and validation-*) and model against model (kind models), one row per metric (the names are described in metrics).';
COMMENT ON COLUMN comparisons.run_id IS 'The run that wrote the row (runs.run_id).';
COMMENT ON COLUMN comparisons.kind IS 'levels (compare: steering and patching), models (compare: two models), circuits (compare: feature circuits), or validation-retrieval, validation-behaviour, validation-preferences, validation-quantity.';
COMMENT ON COLUMN comparisons.model IS 'Model (models.model).';
COMMENT ON COLUMN comparisons.other_model IS 'The model compared with (kind models); NULL otherwise.';
COMMENT ON COLUMN comparisons.layer IS 'Layer compared at (see hook); NULL for a row about a whole model.';
COMMENT ON COLUMN comparisons.metric IS 'Metric name (matches a metrics.name pattern where stored_in = comparisons).';
COMMENT ON COLUMN comparisons.direction_value IS 'The value at the direction level (kind models: the model''s value).';
COMMENT ON COLUMN comparisons.feature_value IS 'The value at the feature level; NULL for kind models.';
COMMENT ON COLUMN comparisons.extra IS 'JSON details: e.g. the SAE, corpus, emotion and scale, or {"other_value": the other model''s value}.';
COMMENT ON COLUMN comparisons.hook IS 'Hook point of layer: blocks.{layer}.hook_resid_post; NULL without a layer.';

COMMENT ON TABLE vector_pairs IS 'Sanity pairs: the cosine of two emotion vectors expected to point alike (happy, joyful) or apart (happy, sad), per layer.';
COMMENT ON COLUMN vector_pairs.run_id IS 'The geometry run that wrote the row (runs.run_id).';
COMMENT ON COLUMN vector_pairs.model IS 'Model (models.model).';
COMMENT ON COLUMN vector_pairs.corpus IS 'Corpus of the vectors.';
COMMENT ON COLUMN vector_pairs.layer IS 'Layer of the vectors (see hook).';
COMMENT ON COLUMN vector_pairs.method IS 'Vectors used: denoised or raw.';
COMMENT ON COLUMN vector_pairs.emotion_a IS 'First emotion.';
COMMENT ON COLUMN vector_pairs.emotion_b IS 'Second emotion.';
COMMENT ON COLUMN vector_pairs.expected_sign IS '1: the vectors should point alike; -1: apart.';
COMMENT ON COLUMN vector_pairs.cosine IS 'Cosine of the two vectors, -1..1.';
COMMENT ON COLUMN vector_pairs.hook IS 'Hook point of layer: blocks.{layer}.hook_resid_post.';

COMMENT ON TABLE logit_lens IS 'The tokens each emotion vector promotes and suppresses through the unembedding (logit lens), per layer.';
COMMENT ON COLUMN logit_lens.run_id IS 'The geometry run that wrote the row (runs.run_id).';
COMMENT ON COLUMN logit_lens.model IS 'Model (models.model).';
COMMENT ON COLUMN logit_lens.corpus IS 'Corpus of the vectors.';
COMMENT ON COLUMN logit_lens.layer IS 'Layer of the vector (see hook).';
COMMENT ON COLUMN logit_lens.method IS 'Vectors used: denoised or raw.';
COMMENT ON COLUMN logit_lens.emotion IS 'Emotion word.';
COMMENT ON COLUMN logit_lens.direction IS 'promoted (largest logits) or suppressed (smallest).';
COMMENT ON COLUMN logit_lens.rank IS 'Rank within the direction, 1 = most promoted or suppressed.';
COMMENT ON COLUMN logit_lens.token IS 'The token as the tokenizer spells it (vocabulary entry).';
COMMENT ON COLUMN logit_lens.logit IS 'Logit of the token from the vector through the final norm and unembedding.';
COMMENT ON COLUMN logit_lens.hook IS 'Hook point of layer: blocks.{layer}.hook_resid_post.';

COMMENT ON TABLE sae_training IS 'Training curves of SAEs trained here: metrics of the training batch at regular token counts (the names are described in metrics).';
COMMENT ON COLUMN sae_training.run_id IS 'The train run that wrote the row (runs.run_id).';
COMMENT ON COLUMN sae_training.sae_id IS 'The SAE (saes.sae_id).';
COMMENT ON COLUMN sae_training.tokens IS 'Training tokens seen at this point.';
COMMENT ON COLUMN sae_training.metric IS 'Metric name (metrics.name where stored_in = sae_training).';
COMMENT ON COLUMN sae_training.value IS 'Its value, in the unit metrics.unit gives.';

COMMENT ON TABLE alignment_summary IS 'Per SAE and emotion: what alignment measured beside the ranked latents, with its nulls, one row per metric (the names are described in metrics).';
COMMENT ON COLUMN alignment_summary.run_id IS 'The align run that wrote the row (runs.run_id).';
COMMENT ON COLUMN alignment_summary.model IS 'Model (models.model).';
COMMENT ON COLUMN alignment_summary.sae_id IS 'The SAE (saes.sae_id).';
COMMENT ON COLUMN alignment_summary.layer IS 'Layer of the SAE and vector (see hook).';
COMMENT ON COLUMN alignment_summary.corpus IS 'Corpus of the vectors and passages.';
COMMENT ON COLUMN alignment_summary.emotion IS 'Emotion word.';
COMMENT ON COLUMN alignment_summary.metric IS 'Metric name (matches a metrics.name pattern where stored_in = alignment_summary).';
COMMENT ON COLUMN alignment_summary.value IS 'Its value, in the unit metrics.unit gives.';
COMMENT ON COLUMN alignment_summary.hook IS 'Hook point of layer: blocks.{layer}.hook_resid_post.';

COMMENT ON TABLE alignment_curves IS 'R^2 of the emotion vector by its first k OMP latents, against the same for shuffled-label contrasts.';
COMMENT ON COLUMN alignment_curves.run_id IS 'The align run that wrote the row (runs.run_id).';
COMMENT ON COLUMN alignment_curves.model IS 'Model (models.model).';
COMMENT ON COLUMN alignment_curves.sae_id IS 'The SAE (saes.sae_id).';
COMMENT ON COLUMN alignment_curves.layer IS 'Layer of the SAE and vector (see hook).';
COMMENT ON COLUMN alignment_curves.corpus IS 'Corpus of the vectors.';
COMMENT ON COLUMN alignment_curves.emotion IS 'Emotion word.';
COMMENT ON COLUMN alignment_curves.curve IS 'omp: the emotion vector; shuffled: mean over contrasts built with shuffled labels; random: random latent sets (rows written before version 12).';
COMMENT ON COLUMN alignment_curves.k IS 'Number of latents, from 1.';
COMMENT ON COLUMN alignment_curves.r2 IS 'Share of the vector''s squared norm the k latents'' decoder rows reconstruct, 0..1.';
COMMENT ON COLUMN alignment_curves.hook IS 'Hook point of layer: blocks.{layer}.hook_resid_post.';

COMMENT ON TABLE passage_tokens IS 'The tokens of every scanned passage, so snippets and activations can be read with SQL.';
COMMENT ON COLUMN passage_tokens.run_id IS 'The align run that wrote the row (runs.run_id).';
COMMENT ON COLUMN passage_tokens.model IS 'Model whose tokenizer split the passage.';
COMMENT ON COLUMN passage_tokens.corpus IS 'Corpus of the passage.';
COMMENT ON COLUMN passage_tokens.passage_id IS 'Passage (passages.passage_id within corpus).';
COMMENT ON COLUMN passage_tokens.position IS 'Token position, from 0 (feature_activations.position).';
COMMENT ON COLUMN passage_tokens.token_id IS 'Token id in the model''s vocabulary.';
COMMENT ON COLUMN passage_tokens.token IS 'The token''s text as it reads.';

COMMENT ON TABLE emotion_ratings IS 'Human ratings of each emotion word (NRC-VAD by default, or a user file).';
COMMENT ON COLUMN emotion_ratings.run_id IS 'The run that wrote the ratings (runs.run_id).';
COMMENT ON COLUMN emotion_ratings.emotion IS 'Emotion word.';
COMMENT ON COLUMN emotion_ratings.valence IS 'Valence, -1 (negative) .. 1 (positive).';
COMMENT ON COLUMN emotion_ratings.arousal IS 'Arousal, -1 (calm) .. 1 (excited).';
COMMENT ON COLUMN emotion_ratings.source IS 'Where the rating comes from.';

COMMENT ON TABLE emotion_feature_activity IS 'Per SAE, corpus, emotion and latent: summed activation over every token of the emotion''s passages and its mean per passage; latents that never fired there have no row.';
COMMENT ON COLUMN emotion_feature_activity.run_id IS 'The align run that wrote the row (runs.run_id).';
COMMENT ON COLUMN emotion_feature_activity.sae_id IS 'The SAE (saes.sae_id).';
COMMENT ON COLUMN emotion_feature_activity.corpus IS 'Corpus of the passages.';
COMMENT ON COLUMN emotion_feature_activity.emotion IS 'Emotion word.';
COMMENT ON COLUMN emotion_feature_activity.feature IS 'Latent index.';
COMMENT ON COLUMN emotion_feature_activity.passages IS 'Scanned passages of the emotion.';
COMMENT ON COLUMN emotion_feature_activity.total IS 'Summed activation over all their tokens.';
COMMENT ON COLUMN emotion_feature_activity.mean_per_passage IS 'total / passages.';

COMMENT ON TABLE pair_scores IS 'Per prompt pair of the patching stage: the score of the clean (news) and corrupted (neutral) prompts.';
COMMENT ON COLUMN pair_scores.run_id IS 'The patch run that wrote the row (runs.run_id).';
COMMENT ON COLUMN pair_scores.model IS 'Model (models.model).';
COMMENT ON COLUMN pair_scores.pair_id IS 'Pair identifier.';
COMMENT ON COLUMN pair_scores.condition IS 'good or bad news in the clean prompt.';
COMMENT ON COLUMN pair_scores.situation IS 'The situation the pair describes (pairs of one situation share it).';
COMMENT ON COLUMN pair_scores.topic IS 'Topic of the situation, when given.';
COMMENT ON COLUMN pair_scores.score_name IS 'anchors: mean logit of the positive anchors'' first tokens minus the negative anchors'' at the first reply position; replies: mean log P of the warm replies minus of the sympathetic ones.';
COMMENT ON COLUMN pair_scores.score_definition IS 'The score''s definition in words, with its tokens.';
COMMENT ON COLUMN pair_scores.clean_score IS 'Score of the clean prompt (score units).';
COMMENT ON COLUMN pair_scores.corrupted_score IS 'Score of the corrupted prompt.';
COMMENT ON COLUMN pair_scores.aligned IS 'The prompts have equal token lengths (every position has its partner).';
COMMENT ON COLUMN pair_scores.prefix_length IS 'Tokens of the prefix both prompts share.';
COMMENT ON COLUMN pair_scores.clean_tokens IS 'Tokens of the clean prompt.';
COMMENT ON COLUMN pair_scores.corrupted_tokens IS 'Tokens of the corrupted prompt.';
COMMENT ON COLUMN pair_scores.selection IS 'The pair belongs to the selection situations (the first 20), on which choices are made and which are never scored.';

COMMENT ON TABLE feature_patching IS 'Feature-level patching per pair: every latent whose activation differs between the clean and corrupted runs, and the SAE error node, with attribution and exact effects.';
COMMENT ON COLUMN feature_patching.run_id IS 'The patch run that wrote the row (runs.run_id).';
COMMENT ON COLUMN feature_patching.model IS 'Model (models.model).';
COMMENT ON COLUMN feature_patching.sae_id IS 'The SAE patched (saes.sae_id).';
COMMENT ON COLUMN feature_patching.layer IS 'Layer of the SAE (see hook).';
COMMENT ON COLUMN feature_patching.pair_id IS 'The prompt pair (pair_scores.pair_id).';
COMMENT ON COLUMN feature_patching.condition IS 'good or bad news.';
COMMENT ON COLUMN feature_patching.node IS 'feature: one latent; error: the SAE error term (activation minus reconstruction).';
COMMENT ON COLUMN feature_patching.feature IS 'Latent index; NULL for the error node.';
COMMENT ON COLUMN feature_patching.attribution IS 'Gradient of the score times (clean - corrupted activation), summed over positions: a linear estimate of the effect (score units).';
COMMENT ON COLUMN feature_patching.normalized_attribution IS 'attribution / (clean score - corrupted score).';
COMMENT ON COLUMN feature_patching.exact_effect IS 'Score change from patching the node''s clean value into the corrupted run; NULL except for the best-attributed nodes and the error node.';
COMMENT ON COLUMN feature_patching.normalized_exact IS 'exact_effect / (clean score - corrupted score).';
COMMENT ON COLUMN feature_patching.hook IS 'Hook point of the SAE: blocks.{layer}.hook_resid_post.';

COMMENT ON TABLE patching_faithfulness IS 'Faithfulness: patching only the top-k latents by attribution, against patching the whole layer and k random differing latents.';
COMMENT ON COLUMN patching_faithfulness.run_id IS 'The patch run that wrote the row (runs.run_id).';
COMMENT ON COLUMN patching_faithfulness.model IS 'Model (models.model).';
COMMENT ON COLUMN patching_faithfulness.sae_id IS 'The SAE (saes.sae_id).';
COMMENT ON COLUMN patching_faithfulness.layer IS 'Layer of the SAE (see hook).';
COMMENT ON COLUMN patching_faithfulness.pair_id IS 'The prompt pair (pair_scores.pair_id).';
COMMENT ON COLUMN patching_faithfulness.condition IS 'good or bad news.';
COMMENT ON COLUMN patching_faithfulness.k IS 'Latents patched.';
COMMENT ON COLUMN patching_faithfulness.effect IS 'Score change from patching the top-k latents (score units).';
COMMENT ON COLUMN patching_faithfulness.layer_effect IS 'Score change from patching the whole layer.';
COMMENT ON COLUMN patching_faithfulness.gap IS 'Clean score - corrupted score: effects / gap are normalized.';
COMMENT ON COLUMN patching_faithfulness.recovered IS 'clip(effect / layer_effect, 0, 1) (version 16 on).';
COMMENT ON COLUMN patching_faithfulness.random_effect IS 'Score change from patching k latents drawn at random among those whose activation differs.';
COMMENT ON COLUMN patching_faithfulness.random_recovered IS 'clip(random_effect / layer_effect, 0, 1).';
COMMENT ON COLUMN patching_faithfulness.hook IS 'Hook point of the SAE: blocks.{layer}.hook_resid_post.';

COMMENT ON TABLE feature_map_points IS 'The points of the UMAP feature map (decoder rows and emotion vectors), so the report draws the map from the store alone.';
COMMENT ON COLUMN feature_map_points.run_id IS 'The umap run that wrote the row (runs.run_id).';
COMMENT ON COLUMN feature_map_points.model IS 'Model (models.model).';
COMMENT ON COLUMN feature_map_points.sae_id IS 'The SAE (saes.sae_id).';
COMMENT ON COLUMN feature_map_points.layer IS 'Layer of the SAE (see hook).';
COMMENT ON COLUMN feature_map_points.corpus IS 'Corpus of the vectors.';
COMMENT ON COLUMN feature_map_points.kind IS 'background (any latent), feature (an aligned latent) or emotion (an emotion vector).';
COMMENT ON COLUMN feature_map_points.label IS 'Latent index or emotion word.';
COMMENT ON COLUMN feature_map_points.x IS 'UMAP x coordinate (cosine metric).';
COMMENT ON COLUMN feature_map_points.y IS 'UMAP y coordinate.';
COMMENT ON COLUMN feature_map_points.colour IS 'Valence (for features, times the sign of their cosine); NULL: unrated.';
COMMENT ON COLUMN feature_map_points.hover IS 'Plotly hover text (HTML).';
COMMENT ON COLUMN feature_map_points.title IS 'Title of the map.';
COMMENT ON COLUMN feature_map_points.hook IS 'Hook point of the SAE: blocks.{layer}.hook_resid_post.';

COMMENT ON TABLE stage_runs IS 'The stages of the main job (saefeatures run): what each ran on, how long it took, its summary and the rows it wrote, so a rerun on the same inputs skips it.';
COMMENT ON COLUMN stage_runs.run_id IS 'The run job (runs.run_id).';
COMMENT ON COLUMN stage_runs.stage IS 'Stage name, e.g. vectors, geometry, align, steer.';
COMMENT ON COLUMN stage_runs.part IS 'The stage''s instance: a corpus, a layer and corpus, ...';
COMMENT ON COLUMN stage_runs.key IS 'Content hash of the stage''s inputs and configuration.';
COMMENT ON COLUMN stage_runs.status IS 'ran, skipped (same key, rows still stored), failed or blocked (a stage it needs failed).';
COMMENT ON COLUMN stage_runs.seconds IS 'Wall-clock seconds the stage took.';
COMMENT ON COLUMN stage_runs.summary IS 'The stage''s printed summary as JSON.';
COMMENT ON COLUMN stage_runs.finished IS 'When the stage ended (UTC).';
COMMENT ON COLUMN stage_runs.error IS 'failed: the error; blocked: which needed stage failed.';
COMMENT ON COLUMN stage_runs.model IS 'Whose stage it was (all models for compare).';
COMMENT ON COLUMN stage_runs.runs IS 'The runs (runs.run_id) the stage started.';
COMMENT ON COLUMN stage_runs.written IS 'Rows those runs wrote, per table, as JSON: {"emotion_vectors": 480}.';

COMMENT ON TABLE retrieval_results IS 'Retrieval on unseen text: per emotion, how well its split-half vector (direction) or top-k aligned latents (features) rank its held-out passages among the candidates.';
COMMENT ON COLUMN retrieval_results.run_id IS 'The validate retrieval run that wrote the row (runs.run_id).';
COMMENT ON COLUMN retrieval_results.model IS 'Model (models.model).';
COMMENT ON COLUMN retrieval_results.corpus IS 'Corpus of the passages.';
COMMENT ON COLUMN retrieval_results.split IS 'How passages were held out: passage or topic.';
COMMENT ON COLUMN retrieval_results.layer IS 'Layer read (see hook).';
COMMENT ON COLUMN retrieval_results.level IS 'direction or features.';
COMMENT ON COLUMN retrieval_results.sae_id IS 'The SAE (features only).';
COMMENT ON COLUMN retrieval_results.k IS 'Top-k aligned latents summed (features only).';
COMMENT ON COLUMN retrieval_results.emotion IS 'Emotion word.';
COMMENT ON COLUMN retrieval_results.n_relevant IS 'The emotion''s held-out passages.';
COMMENT ON COLUMN retrieval_results.n_candidates IS 'Every text but the emotion''s training passages.';
COMMENT ON COLUMN retrieval_results.precision_at_10 IS 'Share of held-out passages among the 10 best-scored candidates (expected over tied orders), 0..1.';
COMMENT ON COLUMN retrieval_results.average_precision IS 'Average precision of the held-out passages (expected over tied orders), 0..1.';
COMMENT ON COLUMN retrieval_results.p_value IS 'p of average_precision against shuffled labels.';
COMMENT ON COLUMN retrieval_results.chance_average_precision IS 'Exact expected average precision of a random ranking.';
COMMENT ON COLUMN retrieval_results.hook IS 'Hook point of layer: blocks.{layer}.hook_resid_post.';

COMMENT ON TABLE retrieval_top_passages IS 'The best-scored candidates of each retrieval, with whether they are the emotion''s held-out passages.';
COMMENT ON COLUMN retrieval_top_passages.run_id IS 'The validate retrieval run that wrote the row (runs.run_id).';
COMMENT ON COLUMN retrieval_top_passages.model IS 'Model (models.model).';
COMMENT ON COLUMN retrieval_top_passages.corpus IS 'Corpus of the retrieval.';
COMMENT ON COLUMN retrieval_top_passages.split IS 'passage or topic.';
COMMENT ON COLUMN retrieval_top_passages.layer IS 'Layer read (see hook).';
COMMENT ON COLUMN retrieval_top_passages.level IS 'direction or features.';
COMMENT ON COLUMN retrieval_top_passages.sae_id IS 'The SAE (features only).';
COMMENT ON COLUMN retrieval_top_passages.k IS 'Top-k latents summed (features only).';
COMMENT ON COLUMN retrieval_top_passages.emotion IS 'Emotion retrieved for.';
COMMENT ON COLUMN retrieval_top_passages.rank IS 'Rank of the candidate, 1 = best scored (tied scores in a seeded random order).';
COMMENT ON COLUMN retrieval_top_passages.part IS 'held-out, training or neutral: where the candidate comes from.';
COMMENT ON COLUMN retrieval_top_passages.source_corpus IS 'Corpus of the candidate: join passages on (source_corpus, passage_id).';
COMMENT ON COLUMN retrieval_top_passages.passage_id IS 'The candidate passage.';
COMMENT ON COLUMN retrieval_top_passages.passage_emotion IS 'The candidate''s emotion; NULL for neutral text.';
COMMENT ON COLUMN retrieval_top_passages.relevant IS 'The candidate is one of the emotion''s held-out passages.';
COMMENT ON COLUMN retrieval_top_passages.score IS 'Its score: projection on the vector, or summed latent activation.';
COMMENT ON COLUMN retrieval_top_passages.hook IS 'Hook point of layer: blocks.{layer}.hook_resid_post.';

COMMENT ON TABLE behaviour_results IS 'Behaviour under steering: P(unethical option) of each pressure scenario in both option orders, unsteered and steered.';
COMMENT ON COLUMN behaviour_results.run_id IS 'The validate behaviour run that wrote the row (runs.run_id).';
COMMENT ON COLUMN behaviour_results.model IS 'Model (models.model).';
COMMENT ON COLUMN behaviour_results.layer IS 'The steered layer (see hook).';
COMMENT ON COLUMN behaviour_results.level IS 'none (unsteered), direction or features.';
COMMENT ON COLUMN behaviour_results.emotion IS 'The emotion steered towards; NULL unsteered.';
COMMENT ON COLUMN behaviour_results.k IS 'Latents steered with (features only).';
COMMENT ON COLUMN behaviour_results.scale IS 'Push size, x the layer''s mean residual norm (0 unsteered).';
COMMENT ON COLUMN behaviour_results.scenario_id IS 'The pressure scenario.';
COMMENT ON COLUMN behaviour_results.category IS 'The scenario''s category.';
COMMENT ON COLUMN behaviour_results.swapped IS 'The options were presented in the other order.';
COMMENT ON COLUMN behaviour_results.unethical IS 'The unethical option''s letter as presented (A or B).';
COMMENT ON COLUMN behaviour_results.p_unethical IS 'Probability of the unethical letter: softmax over the A/B logits after "(", 0..1.';
COMMENT ON COLUMN behaviour_results.p_a IS 'Probability of A, 0..1.';
COMMENT ON COLUMN behaviour_results.hook IS 'Hook point steered: blocks.{layer}.hook_resid_post.';

COMMENT ON TABLE behaviour_summary IS 'Behaviour per condition: means over scenarios (each the mean of its two orders) with 95 % bootstrap intervals; shift = steered - unsteered, paired by scenario.';
COMMENT ON COLUMN behaviour_summary.run_id IS 'The validate behaviour run that wrote the row (runs.run_id).';
COMMENT ON COLUMN behaviour_summary.model IS 'Model (models.model).';
COMMENT ON COLUMN behaviour_summary.layer IS 'The steered layer (see hook).';
COMMENT ON COLUMN behaviour_summary.level IS 'none, direction or features.';
COMMENT ON COLUMN behaviour_summary.emotion IS 'The emotion steered towards; NULL unsteered.';
COMMENT ON COLUMN behaviour_summary.k IS 'Latents steered with (features only).';
COMMENT ON COLUMN behaviour_summary.scale IS 'Push size, x the layer''s mean residual norm.';
COMMENT ON COLUMN behaviour_summary.scenarios IS 'Scenarios averaged over.';
COMMENT ON COLUMN behaviour_summary.p_unethical IS 'Mean P(unethical option), 0..1.';
COMMENT ON COLUMN behaviour_summary.ci_low IS 'Lower bound of its 95 % bootstrap interval over scenarios.';
COMMENT ON COLUMN behaviour_summary.ci_high IS 'Upper bound of that interval.';
COMMENT ON COLUMN behaviour_summary.shift IS 'Mean steered - unsteered P(unethical), paired by scenario, -1..1.';
COMMENT ON COLUMN behaviour_summary.shift_ci_low IS 'Lower bound of the shift''s 95 % bootstrap interval.';
COMMENT ON COLUMN behaviour_summary.shift_ci_high IS 'Upper bound of that interval.';
COMMENT ON COLUMN behaviour_summary.p_a IS 'Mean P(A) over both orders: the position bias.';
COMMENT ON COLUMN behaviour_summary.shift_p IS 'Sign-flip p of the shift (per-scenario differences).';
COMMENT ON COLUMN behaviour_summary.shift_q IS 'Benjamini-Hochberg q over the run''s steered conditions; highlight on q only.';
COMMENT ON COLUMN behaviour_summary.hook IS 'Hook point steered: blocks.{layer}.hook_resid_post.';

COMMENT ON TABLE preference_comparisons IS 'Preferences: "Would you prefer to (A) ... or (B) ...?" for seeded ordered pairs of activities, unsteered and steered on one activity''s tokens.';
COMMENT ON COLUMN preference_comparisons.run_id IS 'The validate preferences run that wrote the row (runs.run_id).';
COMMENT ON COLUMN preference_comparisons.model IS 'Model (models.model).';
COMMENT ON COLUMN preference_comparisons.layer IS 'The steered layer (see hook).';
COMMENT ON COLUMN preference_comparisons.level IS 'none (unsteered), direction or features.';
COMMENT ON COLUMN preference_comparisons.emotion IS 'The emotion steered towards; NULL unsteered.';
COMMENT ON COLUMN preference_comparisons.k IS 'Latents steered with (features only).';
COMMENT ON COLUMN preference_comparisons.scale IS 'Push size, x the layer''s mean residual norm.';
COMMENT ON COLUMN preference_comparisons.target IS 'The steered activity; NULL unsteered.';
COMMENT ON COLUMN preference_comparisons.first_activity IS 'Option (A).';
COMMENT ON COLUMN preference_comparisons.second_activity IS 'Option (B).';
COMMENT ON COLUMN preference_comparisons.logit_diff IS 'Logit of A minus logit of B after "(".';
COMMENT ON COLUMN preference_comparisons.p_first IS 'P(A): softmax over the two letters, 0..1.';
COMMENT ON COLUMN preference_comparisons.hook IS 'Hook point steered: blocks.{layer}.hook_resid_post.';

COMMENT ON TABLE preference_scores IS 'Bradley-Terry fit of the unsteered comparisons (with a first-position term), in Elo points, with 95 % bootstrap intervals over pairs.';
COMMENT ON COLUMN preference_scores.run_id IS 'The validate preferences run that wrote the row (runs.run_id).';
COMMENT ON COLUMN preference_scores.model IS 'Model (models.model).';
COMMENT ON COLUMN preference_scores.activity IS 'The activity.';
COMMENT ON COLUMN preference_scores.category IS 'Its category.';
COMMENT ON COLUMN preference_scores.comparisons IS 'Comparisons it took part in.';
COMMENT ON COLUMN preference_scores.strength IS 'Natural-log Bradley-Terry strength, centred over activities.';
COMMENT ON COLUMN preference_scores.elo IS '1500 + 400 log10(e) x strength (Elo points).';
COMMENT ON COLUMN preference_scores.ci_low IS 'Lower bound of the Elo''s 95 % bootstrap interval.';
COMMENT ON COLUMN preference_scores.ci_high IS 'Upper bound of that interval.';

COMMENT ON TABLE preference_correlations IS 'Per layer and emotion: correlation over activities of the vector''s projection on the activity''s tokens with the activity''s Elo.';
COMMENT ON COLUMN preference_correlations.run_id IS 'The validate preferences run that wrote the row (runs.run_id).';
COMMENT ON COLUMN preference_correlations.model IS 'Model (models.model).';
COMMENT ON COLUMN preference_correlations.layer IS 'Layer read (see hook).';
COMMENT ON COLUMN preference_correlations.emotion IS 'Emotion whose vector is projected on.';
COMMENT ON COLUMN preference_correlations.activities IS 'Activities correlated over.';
COMMENT ON COLUMN preference_correlations.pearson_r IS 'Pearson r of projection (mean over positions and prompts) with Elo, -1..1.';
COMMENT ON COLUMN preference_correlations.spearman_r IS 'Spearman rho of the same, -1..1.';
COMMENT ON COLUMN preference_correlations.ci_low IS 'Lower bound of the 95 % bootstrap interval of pearson_r over activities.';
COMMENT ON COLUMN preference_correlations.ci_high IS 'Upper bound of that interval.';
COMMENT ON COLUMN preference_correlations.hook IS 'Hook point read: blocks.{layer}.hook_resid_post.';

COMMENT ON TABLE preference_steering IS 'Steering one activity''s tokens: its Elo refitted with its comparisons steered.';
COMMENT ON COLUMN preference_steering.run_id IS 'The validate preferences run that wrote the row (runs.run_id).';
COMMENT ON COLUMN preference_steering.model IS 'Model (models.model).';
COMMENT ON COLUMN preference_steering.layer IS 'The steered layer (see hook).';
COMMENT ON COLUMN preference_steering.level IS 'direction or features.';
COMMENT ON COLUMN preference_steering.emotion IS 'The emotion steered towards.';
COMMENT ON COLUMN preference_steering.k IS 'Latents steered with (features only).';
COMMENT ON COLUMN preference_steering.scale IS 'Push size, x the layer''s mean residual norm.';
COMMENT ON COLUMN preference_steering.activity IS 'The steered activity.';
COMMENT ON COLUMN preference_steering.elo_base IS 'Its unsteered Elo.';
COMMENT ON COLUMN preference_steering.elo_steered IS 'Its Elo with its comparisons steered.';
COMMENT ON COLUMN preference_steering.shift IS 'elo_steered - elo_base (Elo points).';
COMMENT ON COLUMN preference_steering.hook IS 'Hook point steered: blocks.{layer}.hook_resid_post.';

COMMENT ON TABLE quantity_scores IS 'The quantity test: each prompt''s final-token read-out per family, quantity, layer, level and emotion.';
COMMENT ON COLUMN quantity_scores.run_id IS 'The validate quantity run that wrote the row (runs.run_id).';
COMMENT ON COLUMN quantity_scores.model IS 'Model (models.model).';
COMMENT ON COLUMN quantity_scores.family IS 'The prompt family (one template, many quantities).';
COMMENT ON COLUMN quantity_scores.quantity IS 'The quantity filled into the template.';
COMMENT ON COLUMN quantity_scores.layer IS 'Layer read (see hook).';
COMMENT ON COLUMN quantity_scores.level IS 'direction or features.';
COMMENT ON COLUMN quantity_scores.sae_id IS 'The SAE (features only).';
COMMENT ON COLUMN quantity_scores.k IS 'Top-k aligned latents summed (features only).';
COMMENT ON COLUMN quantity_scores.emotion IS 'Emotion read out.';
COMMENT ON COLUMN quantity_scores.value IS 'Projection on the direction, or signed summed latent activation.';
COMMENT ON COLUMN quantity_scores.hook IS 'Hook point read: blocks.{layer}.hook_resid_post.';

COMMENT ON TABLE quantity_results IS 'Per family: the read-out''s trend with the quantity (Spearman rho) and a permutation p over the quantity order.';
COMMENT ON COLUMN quantity_results.run_id IS 'The validate quantity run that wrote the row (runs.run_id).';
COMMENT ON COLUMN quantity_results.model IS 'Model (models.model).';
COMMENT ON COLUMN quantity_results.family IS 'The prompt family.';
COMMENT ON COLUMN quantity_results.stakes IS 'rise: danger rises with the quantity; fall: it falls.';
COMMENT ON COLUMN quantity_results.layer IS 'Layer read (see hook).';
COMMENT ON COLUMN quantity_results.level IS 'direction or features.';
COMMENT ON COLUMN quantity_results.sae_id IS 'The SAE (features only).';
COMMENT ON COLUMN quantity_results.k IS 'Top-k latents summed (features only).';
COMMENT ON COLUMN quantity_results.emotion IS 'Emotion read out.';
COMMENT ON COLUMN quantity_results.n_quantities IS 'Quantities of the family.';
COMMENT ON COLUMN quantity_results.spearman_rho IS 'Spearman rho of the read-out with log-quantity; NULL when the read-out is constant.';
COMMENT ON COLUMN quantity_results.danger_rho IS 'The same, signed so that > 0 means rising with danger.';
COMMENT ON COLUMN quantity_results.p_value IS 'Two-sided p, quantity order permuted.';
COMMENT ON COLUMN quantity_results.hook IS 'Hook point read: blocks.{layer}.hook_resid_post.';

COMMENT ON TABLE quantity_summary IS 'The quantity test per layer, level and emotion: mean danger rho over families with its nulls.';
COMMENT ON COLUMN quantity_summary.run_id IS 'The validate quantity run that wrote the row (runs.run_id).';
COMMENT ON COLUMN quantity_summary.model IS 'Model (models.model).';
COMMENT ON COLUMN quantity_summary.layer IS 'Layer read (see hook).';
COMMENT ON COLUMN quantity_summary.level IS 'direction or features.';
COMMENT ON COLUMN quantity_summary.sae_id IS 'The SAE (features only).';
COMMENT ON COLUMN quantity_summary.k IS 'Top-k latents summed (features only).';
COMMENT ON COLUMN quantity_summary.emotion IS 'Emotion read out.';
COMMENT ON COLUMN quantity_summary.families IS 'Families with a defined rho.';
COMMENT ON COLUMN quantity_summary.families_rising IS 'Of those, families with danger_rho > 0.';
COMMENT ON COLUMN quantity_summary.mean_danger_rho IS 'Mean danger_rho over families, -1..1.';
COMMENT ON COLUMN quantity_summary.p_value IS 'Two-sided p against directions drawn at random within the span of the emotion vectors (features: their top-k latents).';
COMMENT ON COLUMN quantity_summary.p_random IS 'Two-sided p against isotropic random directions (features: random k-latent sets).';
COMMENT ON COLUMN quantity_summary.p_order IS 'Two-sided p with the quantity order permuted within every family.';
COMMENT ON COLUMN quantity_summary.headline IS 'The layer fixed in advance for the claim (the steering layer); other layers are descriptive.';
COMMENT ON COLUMN quantity_summary.hook IS 'Hook point read: blocks.{layer}.hook_resid_post.';

COMMENT ON TABLE left_out IS 'Every emotion a stage left out, and why (e.g. too few passages).';
COMMENT ON COLUMN left_out.run_id IS 'The run of the stage that left the emotion out (runs.run_id).';
COMMENT ON COLUMN left_out.stage IS 'The stage, e.g. vectors or corpus generate.';
COMMENT ON COLUMN left_out.model IS 'Model (models.model).';
COMMENT ON COLUMN left_out.corpus IS 'Corpus.';
COMMENT ON COLUMN left_out.emotion IS 'The emotion left out.';
COMMENT ON COLUMN left_out.n_passages IS 'Passages it had (after cleaning and the token offset).';
COMMENT ON COLUMN left_out.reason IS 'Why it was left out.';

COMMENT ON TABLE geometry_best IS 'The best layer of each (model, corpus, method, emotion set) for PC1 against valence, with what its choice is worth.';
COMMENT ON COLUMN geometry_best.run_id IS 'The geometry run that wrote the row (runs.run_id).';
COMMENT ON COLUMN geometry_best.model IS 'Model (models.model).';
COMMENT ON COLUMN geometry_best.corpus IS 'Corpus of the vectors.';
COMMENT ON COLUMN geometry_best.method IS 'denoised or raw vectors.';
COMMENT ON COLUMN geometry_best.emotion_set IS 'all or default.';
COMMENT ON COLUMN geometry_best.layer IS 'The layer with the largest PC1-valence r (see hook).';
COMMENT ON COLUMN geometry_best.rel_depth IS 'layer / (n_layers - 1), 0..1.';
COMMENT ON COLUMN geometry_best.pearson_r IS 'PC1 (oriented) against valence there.';
COMMENT ON COLUMN geometry_best.ci_low IS 'Lower bound of the 95 % interval over resamples of the emotions that refit the PCA and choose the layer anew.';
COMMENT ON COLUMN geometry_best.ci_high IS 'Upper bound of that interval.';
COMMENT ON COLUMN geometry_best.p_value IS 'p against the largest r over layers of shuffled ratings.';
COMMENT ON COLUMN geometry_best.same_layer IS 'Share of resamples choosing this layer, 0..1.';
COMMENT ON COLUMN geometry_best.heldout_r IS 'Mean r on half of the emotions at the layer the other half chose, over 200 random halves.';
COMMENT ON COLUMN geometry_best.heldout_low IS '2.5th percentile of the held-out r.';
COMMENT ON COLUMN geometry_best.heldout_high IS '97.5th percentile of the held-out r.';
COMMENT ON COLUMN geometry_best.split_r IS 'What a pure positive/negative split reaches: |r(valence, sign(valence))|.';
COMMENT ON COLUMN geometry_best.n_emotions IS 'Rated emotions the fit is over.';
COMMENT ON COLUMN geometry_best.hook IS 'Hook point of layer: blocks.{layer}.hook_resid_post.';

COMMENT ON TABLE pca_scores IS 'Each emotion''s oriented PC1 and PC2 at its set''s best layer, so figures never refit the PCA.';
COMMENT ON COLUMN pca_scores.run_id IS 'The geometry run that wrote the row (runs.run_id).';
COMMENT ON COLUMN pca_scores.model IS 'Model (models.model).';
COMMENT ON COLUMN pca_scores.corpus IS 'Corpus of the vectors.';
COMMENT ON COLUMN pca_scores.method IS 'denoised or raw vectors.';
COMMENT ON COLUMN pca_scores.emotion_set IS 'all or default.';
COMMENT ON COLUMN pca_scores.layer IS 'The set''s best layer (see hook).';
COMMENT ON COLUMN pca_scores.emotion IS 'Emotion word.';
COMMENT ON COLUMN pca_scores.pc1 IS 'Score on PC1, oriented to correlate non-negatively with valence (residual units).';
COMMENT ON COLUMN pca_scores.pc2 IS 'Score on PC2, oriented to correlate non-negatively with arousal.';
COMMENT ON COLUMN pca_scores.hook IS 'Hook point of layer: blocks.{layer}.hook_resid_post.';

COMMENT ON TABLE metrics IS 'The vocabulary of metric names in the (metric, value) tables: what each means and its unit. A {name} in braces is filled in at run time.';
COMMENT ON COLUMN metrics.stored_in IS 'The table whose metric column holds the name.';
COMMENT ON COLUMN metrics.name IS 'Metric name, or a pattern whose {placeholders} stand for run-time values (an emotion, k, a scale, ...).';
COMMENT ON COLUMN metrics.meaning IS 'What the value measures.';
COMMENT ON COLUMN metrics.unit IS 'Unit or range of the value.';

COMMENT ON VIEW steering_effects IS 'Steering per model, layer, level, k and scale: mean change in log P of each emotion''s own word (self effect), of the other emotions'' words, their gap, and how far the edit moved the residual.';
COMMENT ON COLUMN steering_effects.model IS 'Model (models.model).';
COMMENT ON COLUMN steering_effects.layer IS 'The steered layer (hook blocks.{layer}.hook_resid_post).';
COMMENT ON COLUMN steering_effects.level IS 'Steering level (steering_results.level).';
COMMENT ON COLUMN steering_effects.k IS 'Latents steered with; NULL for the direction.';
COMMENT ON COLUMN steering_effects.scale IS 'Push size (steering_results.scale).';
COMMENT ON COLUMN steering_effects.self_effect IS 'Mean delta_logprob of the steered emotion''s own word (nats).';
COMMENT ON COLUMN steering_effects.other_effect IS 'Mean delta_logprob of the other emotions'' words (nats).';
COMMENT ON COLUMN steering_effects.specificity IS 'self_effect - other_effect (nats).';
COMMENT ON COLUMN steering_effects.effective_scale IS 'Mean residual change, x the layer''s mean residual norm.';
COMMENT ON COLUMN steering_effects.emotions IS 'Emotions steered.';
COMMENT ON COLUMN steering_effects.run_id IS 'The runs the rows come from, comma-separated.';

COMMENT ON VIEW steering_self_effect IS 'The headline: the direction''s self effect at the smallest scale steered (the least distorting push), per model and layer.';
COMMENT ON COLUMN steering_self_effect.model IS 'Model (models.model).';
COMMENT ON COLUMN steering_self_effect.layer IS 'The steered layer (hook blocks.{layer}.hook_resid_post).';
COMMENT ON COLUMN steering_self_effect.scale IS 'The smallest direction scale steered, x the layer''s mean residual norm.';
COMMENT ON COLUMN steering_self_effect.self_effect IS 'Mean delta_logprob of the steered emotion''s own word (nats).';
COMMENT ON COLUMN steering_self_effect.specificity IS 'self_effect minus the mean effect on the other emotions'' words (nats).';
COMMENT ON COLUMN steering_self_effect.emotions IS 'Emotions steered.';
COMMENT ON COLUMN steering_self_effect.run_id IS 'The runs the rows come from, comma-separated.';

COMMENT ON VIEW patching_peaks IS 'Per pair: the (layer, position) among the positions where the prompts differ at which patching the clean residual moves the score furthest towards the clean prompt''s.';
COMMENT ON COLUMN patching_peaks.model IS 'Model (models.model).';
COMMENT ON COLUMN patching_peaks.pair_id IS 'The prompt pair (pair_scores.pair_id).';
COMMENT ON COLUMN patching_peaks.condition IS 'good or bad news.';
COMMENT ON COLUMN patching_peaks.situation IS 'The pair''s situation.';
COMMENT ON COLUMN patching_peaks.selection IS 'The pair is one of the selection situations.';
COMMENT ON COLUMN patching_peaks.score_name IS 'Score patched (pair_scores.score_name).';
COMMENT ON COLUMN patching_peaks.score_gap IS 'The clean prompt''s score (score units); its sign gives the direction of a move towards it.';
COMMENT ON COLUMN patching_peaks.peak_layer IS 'Layer of the peak patch (hook blocks.{layer}.hook_resid_pre).';
COMMENT ON COLUMN patching_peaks.peak_position IS 'Token position of the peak patch.';
COMMENT ON COLUMN patching_peaks.peak_depth IS 'peak_layer / (n_layers - 1), 0..1.';
COMMENT ON COLUMN patching_peaks.max_effect IS 'The peak''s raw effect, signed towards the clean score (score units).';

COMMENT ON VIEW sae_features IS 'features with the model, layer and hook of their SAE.';
COMMENT ON COLUMN sae_features.model IS 'Model the SAE reads (saes.model).';
COMMENT ON COLUMN sae_features.layer IS 'Layer of the SAE (saes.layer).';
COMMENT ON COLUMN sae_features.hook IS 'Hook point the SAE encodes (saes.hook).';
COMMENT ON COLUMN sae_features.sae_id IS 'The SAE (saes.sae_id).';
COMMENT ON COLUMN sae_features.feature IS 'Latent index.';
COMMENT ON COLUMN sae_features.density IS 'Share of scanned tokens on which it fired, 0..1.';
COMMENT ON COLUMN sae_features.max_activation IS 'Largest activation on the scanned tokens.';
COMMENT ON COLUMN sae_features.mean_active IS 'Mean activation where it fired; NULL if it never fired.';
COMMENT ON COLUMN sae_features.promoted_tokens IS 'Tokens its decoder row promotes most through the logit lens.';
COMMENT ON COLUMN sae_features.promoted_logits IS 'Their logit-lens logits.';
COMMENT ON COLUMN sae_features.suppressed_tokens IS 'Tokens its decoder row suppresses most through the logit lens.';
COMMENT ON COLUMN sae_features.suppressed_logits IS 'Their logit-lens logits.';
COMMENT ON COLUMN sae_features.top_snippets IS 'JSON list of its largest activations with their text, the firing token in [[ ]].';

COMMENT ON VIEW sae_feature_activations IS 'feature_activations with the model, layer and hook of their SAE and the token they fired on.';
COMMENT ON COLUMN sae_feature_activations.model IS 'Model the SAE reads (saes.model).';
COMMENT ON COLUMN sae_feature_activations.layer IS 'Layer of the SAE (saes.layer).';
COMMENT ON COLUMN sae_feature_activations.hook IS 'Hook point the SAE encodes (saes.hook).';
COMMENT ON COLUMN sae_feature_activations.sae_id IS 'The SAE (saes.sae_id).';
COMMENT ON COLUMN sae_feature_activations.corpus IS 'Corpus of the passage.';
COMMENT ON COLUMN sae_feature_activations.passage_id IS 'Passage (passages.passage_id within corpus).';
COMMENT ON COLUMN sae_feature_activations.position IS 'Token position in the passage, from 0.';
COMMENT ON COLUMN sae_feature_activations.token IS 'The token there (passage_tokens.token); NULL if its tokens are not stored.';
COMMENT ON COLUMN sae_feature_activations.feature IS 'Latent index.';
COMMENT ON COLUMN sae_feature_activations.value IS 'Its activation there (non-zero).';

COMMENT ON VIEW top_aligned_features IS 'The ten best-aligned latents per SAE, corpus, emotion and method, with the tokens each promotes and suppresses (its label).';
COMMENT ON COLUMN top_aligned_features.model IS 'Model (models.model).';
COMMENT ON COLUMN top_aligned_features.layer IS 'Layer of the SAE and vector.';
COMMENT ON COLUMN top_aligned_features.hook IS 'Hook point: blocks.{layer}.hook_resid_post.';
COMMENT ON COLUMN top_aligned_features.sae_id IS 'The SAE (saes.sae_id).';
COMMENT ON COLUMN top_aligned_features.corpus IS 'Corpus of the vectors and passages.';
COMMENT ON COLUMN top_aligned_features.emotion IS 'Emotion word.';
COMMENT ON COLUMN top_aligned_features.method IS 'Alignment method (alignments.method).';
COMMENT ON COLUMN top_aligned_features.rank IS 'Rank, 1 = best.';
COMMENT ON COLUMN top_aligned_features.feature IS 'Latent index.';
COMMENT ON COLUMN top_aligned_features.score IS 'The method''s score (alignments.score).';
COMMENT ON COLUMN top_aligned_features.density IS 'Share of scanned tokens on which the latent fired, 0..1.';
COMMENT ON COLUMN top_aligned_features.promotes IS 'The five tokens its decoder row promotes most through the logit lens.';
COMMENT ON COLUMN top_aligned_features.suppresses IS 'The five tokens it suppresses most.';

COMMENT ON VIEW sae_summary IS 'One row per SAE: where it reads and its headline held-out metrics (NULL where not evaluated).';
COMMENT ON COLUMN sae_summary.model IS 'Model the SAE reads.';
COMMENT ON COLUMN sae_summary.layer IS 'Layer of its hook.';
COMMENT ON COLUMN sae_summary.hook IS 'Hook point it encodes.';
COMMENT ON COLUMN sae_summary.sae_id IS 'The SAE (saes.sae_id).';
COMMENT ON COLUMN sae_summary.source IS 'trained here, or where it was loaded from.';
COMMENT ON COLUMN sae_summary.architecture IS 'SAE architecture.';
COMMENT ON COLUMN sae_summary.d_sae IS 'Number of latents.';
COMMENT ON COLUMN sae_summary.k IS 'Active latents per token of a top-k SAE.';
COMMENT ON COLUMN sae_summary.l0 IS 'Mean active latents per token.';
COMMENT ON COLUMN sae_summary.explained_variance IS '1 - FVU of the reconstruction, at most 1.';
COMMENT ON COLUMN sae_summary.dead_fraction IS 'Share of latents never active, 0..1.';
COMMENT ON COLUMN sae_summary.ce_loss_recovered IS '(ce_ablate - ce_sae) / (ce_ablate - ce_clean).';
COMMENT ON COLUMN sae_summary.kl_sae IS 'Mean KL(clean || spliced) of next-token distributions (nats).';

-- version 21: the direction view gets a null for each intervention, and every normalized
-- effect of a circuit becomes a ratio of means, mean(effect) / mean(clean score -
-- corrupted score), which one pair with a gap near 0 can no longer swamp. Circuits stored
-- before this version were normalized by a mean of per-pair ratios and had no null for
-- the direction view; they are removed (`saefeatures circuit` finds them again).
DELETE FROM circuit_nodes;
DELETE FROM circuit_edges;
DELETE FROM circuit_curves;
DELETE FROM circuit_directions;

ALTER TABLE circuit_directions ADD COLUMN null_effect DOUBLE;
ALTER TABLE circuit_directions ADD COLUMN null_spread DOUBLE;
ALTER TABLE circuit_directions ADD COLUMN null_draws INTEGER;
ALTER TABLE circuit_directions ADD COLUMN p_value DOUBLE;

COMMENT ON COLUMN circuit_nodes.normalized_effect IS 'Mean effect / mean (clean score - corrupted score) over the same pairs (a ratio of means); NULL where the mean gap is 0.';
COMMENT ON COLUMN circuit_edges.normalized_effect IS 'Mean effect / mean (clean score - corrupted score) over the same pairs (a ratio of means); NULL where the mean gap is 0.';
COMMENT ON COLUMN circuit_directions.normalized_effect IS 'Mean effect / mean (clean score - corrupted score) over the same pairs (a ratio of means); NULL where the mean gap is 0.';
COMMENT ON TABLE circuit_directions IS 'The direction view beside the circuit, per SAE layer: the score change from patching clean values into the corrupted run for the valence axis, the emotion subspace, the circuit''s nodes at the layer, or the whole residual, on the evaluation pairs, each against a null of its own size.';
COMMENT ON COLUMN circuit_directions.null_effect IS 'Mean over the null draws of their mean effect: random subspaces of the same rank for valence and emotions, random sets of as many nodes with an effect at the layer for circuit; NULL for layer (the reference).';
COMMENT ON COLUMN circuit_directions.null_spread IS 'Standard deviation over the null draws of their mean effect.';
COMMENT ON COLUMN circuit_directions.null_draws IS 'Null draws (circuit --null-directions); 0 for layer.';
COMMENT ON COLUMN circuit_directions.p_value IS 'Two-sided: (1 + draws with |mean effect| >= |effect|) / (1 + draws); the smallest possible is 1 / (1 + draws).';
