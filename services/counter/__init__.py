"""The counter: a consumer group that turns click events into exact counts."""
