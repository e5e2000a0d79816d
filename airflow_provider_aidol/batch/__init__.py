"""The batch engine and its records: conversations under one limiter, results log, image folder."""
