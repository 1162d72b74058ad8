-- Features whose mean activation tracks valence across emotions: Pearson r between a
-- feature's mean activation per passage on each emotion (0 where it never fired) and
-- the emotion's valence rating, over the rated emotions.
WITH emotions AS (
    SELECT DISTINCT sae_id, corpus, emotion FROM emotion_feature_activity
), grid AS (
    SELECT f.sae_id, f.corpus, f.feature, e.emotion
    FROM (SELECT DISTINCT sae_id, corpus, feature FROM emotion_feature_activity) f
    JOIN emotions e ON e.sae_id = f.sae_id AND e.corpus = f.corpus
)
SELECT g.sae_id, g.corpus, g.feature,
       round(corr(coalesce(a.mean_per_passage, 0), r.valence), 3) AS r_valence,
       count(*) AS emotions
FROM grid g
JOIN emotion_ratings r ON r.emotion = g.emotion
LEFT JOIN emotion_feature_activity a ON a.sae_id = g.sae_id AND a.corpus = g.corpus
    AND a.feature = g.feature AND a.emotion = g.emotion
GROUP BY ALL
HAVING count(*) >= 4 AND r_valence IS NOT NULL
ORDER BY abs(r_valence) DESC
LIMIT 20
