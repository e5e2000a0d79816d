"""The batch engine and its records: many conversations under one limiter, and the results log."""
