"""The thin edges of Switchboard: one aiohttp app per service, each built by ``create_app``."""
