"""The DuckDB store: connection and migrations, shared reads, Parquet exchange, queries."""
