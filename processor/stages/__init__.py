"""The stages: what each does to its records, on the shared runtime."""
