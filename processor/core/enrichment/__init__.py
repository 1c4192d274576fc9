"""The enrichment stage's pure domain: events, the email check, the trait mapping, outcomes."""
