"""Switchboard's one settings class.

Every value comes from an environment variable prefixed ``SWITCHBOARD_`` (or a ``.env`` file),
and the defaults run the local stack that ``make up`` starts. Build it once at start-up and pass
it into factories; tests construct ``Settings(...)`` directly.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core.security.local_secrets import LocalSecretsSource

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: The web services, in the order their default ports are handed out (from ``web_base_port``).
SERVICES: tuple[str, ...] = (
    "users",
    "applications",
    "chatbots",
    "conversations",
    "files",
    "bots",
    "integrations",
    "socket",
)


class Settings(BaseSettings):
    """Configuration for every Switchboard process and for the local infrastructure."""

    model_config = SettingsConfigDict(
        env_prefix="SWITCHBOARD_", env_file=".env", extra="ignore", frozen=True
    )

    # Backing services.
    kafka_url: str = "kafka://127.0.0.1:9092"
    mongo_url: str = "mongodb://127.0.0.1:27017/"
    mongo_database: str = "switchboard"
    # Pooled connections idle this long are dropped, not reused: one the server closed meanwhile
    # (a restart) would fail the next write, which the driver does not retry on FerretDB.
    mongo_max_idle_ms: int = Field(default=10_000, ge=100)
    redis_url: str = "redis://127.0.0.1:6379/0"
    s3_endpoint: str = "127.0.0.1:9000"
    s3_access_key: str = "switchboard"
    s3_secret_key: SecretStr = SecretStr("switchboard-local-secret")
    s3_bucket: str = "switchboard"
    s3_region: str = "us-east-1"
    s3_secure: bool = False

    # Secrets. The defaults are published: only the local stack may run with them
    # (core/security/default_secrets.py), and it generates its own on the first run.
    jwt_secret: SecretStr = SecretStr("local-development-jwt-secret-change-me")
    encryption_key: SecretStr = SecretStr("local-development-encryption-key-change-me")
    access_token_ttl_s: int = Field(default=900, ge=30, le=24 * 3600)
    refresh_token_ttl_s: int = Field(default=30 * 24 * 3600, ge=300)
    # A widget visitor's token; issued again on every visit, so it lapses only after this idle.
    visitor_token_ttl_s: int = Field(default=180 * 24 * 3600, ge=60)

    # The default LLM; chatbots may override every one of these.
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_model: str | None = None
    # What a tenant may ask of the platform's model (README, "The platform's model key"): the
    # models a chatbot may name there (comma-separated; empty: only llm_model), more models per
    # workspace (JSON: {"<workspace id>": ["model", ...]}), and the most max_tokens per call.
    llm_platform_models: str = ""
    llm_workspace_models: dict[str, list[str]] = Field(default_factory=dict)
    llm_platform_max_tokens: int = Field(default=4_096, ge=1)
    # Networks a tenant's own model URL may reach although not public (comma-separated CIDRs).
    llm_allow_networks: str = ""

    # Base URLs of external platform APIs, so tests can point them at local fakes.
    telegram_api_base: str = "https://api.telegram.org"
    meta_graph_api_base: str = "https://graph.facebook.com/v21.0"
    slack_api_base: str = "https://slack.com/api"

    # How fast the platform sender sends through one Telegram bot: per chat, and over all its
    # chats (the Bot API's documented limits; bots with paid broadcasts may go faster).
    telegram_chat_rate_per_s: float = Field(default=1.0, gt=0)
    telegram_bot_rate_per_s: float = Field(default=30.0, gt=0)

    # Channels. The public address of the gateway, which platforms call back (a Telegram
    # webhook is <public_url>/webhooks/telegram/<channel id>); unset: the local gateway's.
    public_url: str | None = None
    # The largest webhook body taken (WhatsApp documents up to 3 MB); larger ones answer 413.
    webhook_max_body_bytes: int = Field(default=3 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    # How long a platform's delivery id is remembered, so a redelivered webhook is taken once
    # (Telegram keeps an undelivered update 24 hours; WhatsApp may redeliver for 7 days).
    webhook_dedup_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)
    # The API channel's outgoing webhooks: retried with exponential backoff for this long.
    api_webhook_retry_horizon_s: float = Field(default=24 * 3600, gt=0)
    # Networks an API channel's webhook URL may reach although not public (comma-separated
    # CIDRs, as tool_allow_networks): a self-hoster's receiver on its private network.
    channel_allow_networks: str = ""

    # The pipeline.
    worker_datadir: Path = PROJECT_ROOT / ".local" / "data" / "worker"
    # The AI stage: off only where something else answers agent.requests (pipeline tests).
    ai_agent_enabled: bool = True
    # The platform sender: off only where something else reads platform.outbound (pipeline
    # tests, whose channels are not connected to any platform).
    platform_sender_enabled: bool = True
    # Hand records from Faust's consumer to the streams inline (streams/faust_fixes/intake.py):
    # several times the AI stage's throughput under load; false falls back to Faust's own hand-off.
    worker_inline_intake: bool = True
    ai_max_in_flight: int = Field(default=256, ge=1)  # model calls at once, per worker
    ai_turn_timeout_s: float = Field(default=60.0, gt=0)  # a whole turn, retries included
    ai_max_tool_rounds: int = Field(default=4, ge=0)  # rounds of tool calls in one turn
    ai_turn_token_budget: int = Field(default=16_000, ge=1)  # tokens over a turn's model calls
    ai_max_model_clients: int = Field(default=64, ge=1)  # model clients kept open per worker
    # Model tokens a day (UTC) per workspace and per application (an application's
    # budget.tokens_per_day overrides the latter, up to the workspace's).
    workspace_tokens_per_day: int = Field(default=2_000_000, ge=0)
    application_tokens_per_day: int = Field(default=1_000_000, ge=0)
    # Tenant HTTP tools: networks they may reach beyond the public internet (comma-separated
    # CIDRs, for self-hosters whose tools live on a private network), and their limits.
    tool_allow_networks: str = ""
    tool_timeout_s: float = Field(default=10.0, gt=0, le=60)
    tool_max_response_bytes: int = Field(default=256 * 1024, ge=1024, le=8 * 1024 * 1024)
    # A tool's parameter schema: its size as compact JSON, its nesting, each pattern's length,
    # and the time to check one call's arguments (a timeout fails that call, the model is told).
    tool_max_schema_bytes: int = Field(default=32 * 1024, ge=256, le=1024 * 1024)
    tool_max_schema_depth: int = Field(default=32, ge=2, le=100)
    tool_max_pattern_chars: int = Field(default=512, ge=1, le=10_000)
    tool_validation_timeout_s: float = Field(default=2.0, gt=0, le=30)

    # The web chat widget: messages one visitor may send in a minute (its key is public).
    widget_messages_per_minute: int = Field(default=30, ge=1)
    # Widget messages a minute per application (its budget.messages_per_minute overrides this)
    # and per workspace, whoever the visitors are: a fresh visitor per connect gets no more.
    application_messages_per_minute: int = Field(default=60, ge=1)
    workspace_messages_per_minute: int = Field(default=300, ge=1)
    # Widget connects a minute from one client address (a tokenless connect is a new visitor).
    widget_connects_per_minute: int = Field(default=60, ge=1)

    # Web services: every service listens on its own port, whether run alone or with ``web all``.
    web_host: str = "127.0.0.1"
    web_base_port: int = Field(default=8100, ge=1, le=65535 - len(SERVICES))
    readiness_timeout: float = Field(default=2.0, gt=0)
    # Proxies whose X-Forwarded-For is believed (comma-separated addresses or CIDRs): the
    # gateway's. Requests from anywhere else are throttled by their own address.
    trusted_proxies: str = "127.0.0.1,::1"

    # Operator accounts (web/users.py). Sign-in: attempts per account from one address, per
    # address across accounts (both per login_window_s), and per account from everywhere (a
    # ceiling with a short window, so a distributed guesser is slowed and the owner waits little).
    login_attempts_per_account_address: int = Field(default=5, ge=1)
    login_attempts_per_address: int = Field(default=30, ge=1)
    login_window_s: int = Field(default=15 * 60, ge=1)
    login_attempts_per_account: int = Field(default=20, ge=1)
    login_account_window_s: int = Field(default=5 * 60, ge=1)
    # Sign-ups one address may make per window (each is an Argon2 hash and a new workspace).
    signups_per_address: int = Field(default=10, ge=1)
    signup_window_s: int = Field(default=3600, ge=1)
    # Password resets: how long a reset link works, and requests per address and per email.
    password_reset_ttl_s: int = Field(default=30 * 60, ge=60, le=24 * 3600)
    password_resets_per_address: int = Field(default=5, ge=1)
    password_resets_per_email: int = Field(default=3, ge=1)
    password_reset_window_s: int = Field(default=3600, ge=1)
    # Where a reset link points (its token goes after `#token=`); unset: the gateway's
    # /reset-password page.
    password_reset_url: str | None = None
    # Outgoing mail: smtp://[user:password@]host:port (smtps:// for TLS). Unset (the local
    # stack), mail is written to the log instead, reset links included.
    mail_url: SecretStr | None = None
    mail_from: str = "Switchboard <switchboard@localhost>"

    # The gateway and the static file server.
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    gateway_ping_port: int = 8081
    nginx_port: int = 8090

    # Local infrastructure (``switchboard up``): where it is installed and which versions.
    state_dir: Path = PROJECT_ROOT / ".local"
    kafka_version: str = "4.1.1"
    kafka_controller_port: int = 9093
    kafka_heap: str = "768m"
    ferretdb_version: str = "v1.24.2"
    ferretdb_debug_port: int = 8088
    versitygw_version: str = "v1.8.0"

    log_level: str = "info"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The usual sources, then the local stack's generated secrets (``state_dir``)."""
        above = (init_settings, env_settings, dotenv_settings)
        local = LocalSecretsSource(settings_cls, above)
        return (*above, local, file_secret_settings)

    def service_port(self, service: str) -> int:
        """The port a web service listens on."""
        return self.web_base_port + SERVICES.index(service)

    def service_url(self, service: str) -> str:
        return f"http://{self.web_host}:{self.service_port(service)}"

    @property
    def gateway_url(self) -> str:
        host = "localhost" if self.gateway_host in ("127.0.0.1", "0.0.0.0") else self.gateway_host
        return f"http://{host}:{self.gateway_port}"

    @property
    def public_base_url(self) -> str:
        """Where platforms reach the gateway: ``public_url``, else the local gateway."""
        return (self.public_url or self.gateway_url).rstrip("/")

    @property
    def kafka_bootstrap(self) -> str:
        """``host:port`` list for Kafka clients, from the ``kafka://`` URL Faust understands."""
        return ",".join(
            urlsplit(part if "://" in part else f"kafka://{part}").netloc
            for part in self.kafka_url.split(";")
        )

    @property
    def redis_port(self) -> int:
        return urlsplit(self.redis_url).port or 6379

    @property
    def mongo_port(self) -> int:
        return urlsplit(self.mongo_url).port or 27017

    @property
    def kafka_port(self) -> int:
        return int(self.kafka_bootstrap.split(",")[0].rsplit(":", 1)[1])

    @property
    def s3_port(self) -> int:
        return int(self.s3_endpoint.rsplit(":", 1)[1]) if ":" in self.s3_endpoint else 80
