-- The snippets that most activate a given feature, with the firing token in [[ ]]: the
-- feature best aligned with $emotion by decoder cosine (e.g. --param emotion=happy);
-- replace the `chosen` query with e.g. SELECT '<sae_id>' AS sae_id, 123 AS feature.
WITH chosen AS (
    SELECT sae_id, feature FROM alignments
    WHERE emotion = $emotion AND method = 'decoder_cosine'
    ORDER BY rank
    LIMIT 1
), top AS (
    SELECT a.sae_id, a.corpus, a.passage_id, a.position, a.feature, a.value
    FROM feature_activations a
    JOIN chosen c ON c.sae_id = a.sae_id AND c.feature = a.feature
    ORDER BY a.value DESC
    LIMIT 10
)
SELECT t.feature, round(t.value, 2) AS value, t.corpus, t.passage_id, t.position,
       string_agg(CASE WHEN k.position = t.position THEN '[[' || k.token || ']]' ELSE k.token END,
                  '' ORDER BY k.position) AS snippet
FROM top t
JOIN saes s ON s.sae_id = t.sae_id
JOIN passage_tokens k ON k.model = s.model AND k.corpus = t.corpus
    AND k.passage_id = t.passage_id AND k.position BETWEEN t.position - 10 AND t.position + 4
GROUP BY ALL
ORDER BY value DESC
