"""Self-contained HTML QA reports for a quality department's records."""
