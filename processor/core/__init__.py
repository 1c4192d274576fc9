"""The pure core: events, mapping, outcomes, offsets and the policies around lookups.

Nothing in this package imports Kafka, HTTP or metrics libraries (a test walks
the imports to keep it that way), so all of it is tested without a broker.
"""
