"""The conversions domain: what Clearbit Conversions decides, as pure functions and values.

Click IDs captured from web events (``clicks``) and the browser context beside them
(``visits``); match keys hashed per ad platform (``matching``); audiences read from
YAML (``audiences``, ``destinations``) with CEL criteria (``criteria``); the entry
rules that turn a person's traits into at most one conversion per event timestamp
(``entries``); the record written to the conversions topic (``record``); and the
instants and durations they are written in (``timestamps``, ``durations``).

Nothing here touches Kafka, HTTP or metrics; the stateful stage keeps these values in
its stores and counts the reasons they report.
"""
