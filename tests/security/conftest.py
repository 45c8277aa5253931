"""What Switchboard defends against, one module per finding, each probe written as an attacker
would try it. They run against the real local services, with the integration tests' fixtures."""

from tests.integration.conftest import *  # noqa: F403
