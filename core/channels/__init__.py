"""Messaging channels: one adapter module per platform behind the protocol in ``base``."""
