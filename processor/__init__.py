"""A Kafka stream processor that enriches Segment Identify events with Clearbit data."""

__version__ = "0.1.0"
