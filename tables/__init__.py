"""Faust tables: conversation state, dedup and rate counters, changelog-backed in Kafka."""
