"""The conversions stage: routing, the visitor and person tasks, and its pipeline."""
