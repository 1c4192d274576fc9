"""The conversions domain: what Clearbit Conversions decides, as pure functions and values.

Click IDs captured from web events (``clicks``), match keys hashed per ad platform
(``matching``), audiences read from YAML with CEL criteria (``audiences``), the entry
rules that turn a person's traits into at most one conversion per event timestamp
(``entries``), and the record written to the conversions topic (``record``).

Nothing here touches Kafka, HTTP or metrics; the stateful stage keeps these values in
its stores and counts the reasons they report.
"""
