"""Lifecycle analytics as Ibis expressions over the engine tables (DuckDB or Spark)."""
