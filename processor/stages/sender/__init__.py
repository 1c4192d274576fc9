"""The conversions sender: conversions-topic records to Meta and Google, results to the
audit topic, rejections to the dead-letter topic (``processor conversions send``)."""
