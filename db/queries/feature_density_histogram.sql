-- Feature density histogram: how many features fire on what share of tokens, in
-- half-decade bins of log10(density); 'dead' features never fired on the scanned text.
SELECT sae_id,
       CASE WHEN density = 0 THEN 'dead'
            ELSE printf('1e%.1f..1e%.1f', floor(log10(density) * 2) / 2,
                        floor(log10(density) * 2) / 2 + 0.5) END AS density_bin,
       count(*) AS features
FROM features
GROUP BY ALL
ORDER BY sae_id, min(density)
