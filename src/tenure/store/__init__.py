"""Storage: the state DB (SQLite | PostgreSQL), the Parquet lake and the analytics engine."""
