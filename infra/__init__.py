"""Local infrastructure: install, start, health-check and stop the real servers Switchboard uses."""
