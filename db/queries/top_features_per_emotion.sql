-- Top features per emotion: the SAE features whose activation rises most on an emotion's
-- passages: mean activation per passage of that emotion minus the mean over all scanned
-- passages of the corpus (a feature that fires everywhere scores near 0).
WITH corpus_passages AS (
    SELECT sae_id, corpus, sum(passages) AS passages
    FROM (SELECT DISTINCT sae_id, corpus, emotion, passages FROM emotion_feature_activity)
    GROUP BY ALL
), scored AS (
    SELECT a.sae_id, a.corpus, a.emotion, a.feature,
           a.mean_per_passage
               - sum(a.total) OVER (PARTITION BY a.sae_id, a.corpus, a.feature) / c.passages
               AS selectivity
    FROM emotion_feature_activity a
    JOIN corpus_passages c ON c.sae_id = a.sae_id AND c.corpus = a.corpus
)
SELECT sae_id, corpus, emotion, feature, round(selectivity, 3) AS selectivity
FROM scored
QUALIFY row_number() OVER (PARTITION BY sae_id, corpus, emotion ORDER BY selectivity DESC) <= 3
ORDER BY sae_id, corpus, emotion, selectivity DESC
