"""SAE features against emotion vectors: scores and nulls, corpus scans, tables, the map."""
