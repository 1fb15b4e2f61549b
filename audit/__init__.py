"""The append-only, hash-chained, verifiable audit trail."""
