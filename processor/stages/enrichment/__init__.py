"""The enrichment stage: the pipeline, the lookup pool, the lookup cache."""
