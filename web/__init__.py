"""The thin edges of Switchboard: one aiohttp app per service, each with ``create_app(settings)``."""
