-- Emotions that share features: pairs of emotions whose ten best decoder-aligned features
-- (positive cosine) overlap, with the shared features.
WITH top AS (
    SELECT sae_id, corpus, emotion, feature
    FROM alignments
    WHERE method = 'decoder_cosine' AND rank <= 10 AND score > 0
)
SELECT a.sae_id, a.corpus, a.emotion AS emotion_a, b.emotion AS emotion_b,
       count(*) AS shared, list(a.feature ORDER BY a.feature) AS features
FROM top a
JOIN top b ON a.sae_id = b.sae_id AND a.corpus = b.corpus AND a.feature = b.feature
    AND a.emotion < b.emotion
GROUP BY ALL
ORDER BY shared DESC, emotion_a, emotion_b
LIMIT 20
