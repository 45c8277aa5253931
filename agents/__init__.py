"""Faust agents of the pipeline (message processing, AI agent, function calls, delivery, sending).

Discovered by the app in streams/app.py; each agent module imports its topics from streams.topics.
"""
