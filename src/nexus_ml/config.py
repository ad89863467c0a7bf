"""Settings: the one place the service reads its environment.

Every other module receives a ``Settings`` instance; nothing reads ``os.environ``
on its own (except prometheus_client, which reads ``PROMETHEUS_MULTIPROC_DIR``
at import time and must therefore be set before Python starts).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SCOPES = ("predict", "monitor", "admin")
Scope = Literal["predict", "monitor", "admin"]


class Settings(BaseSettings):
    """Service configuration, from ``ML_*`` environment variables (and the guide's three names)."""

    # hide_input_in_errors: a refused key or token must not appear in the error message.
    model_config = SettingsConfigDict(
        env_prefix="ML_", extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    # The guide names these three without a uniform prefix; keep its names.
    database_url: str = Field(
        default="",
        validation_alias=AliasChoices("DATABASE_URL", "ML_DATABASE_URL"),
        description="SQLAlchemy URL; empty means a SQLite file under the data folder.",
    )
    model_path: Path = Field(
        default=Path("models"),
        validation_alias=AliasChoices("ML_MODEL_PATH"),
        description="Folder holding model bundles.",
    )
    log_level: str = Field(
        default="INFO",
        validation_alias=AliasChoices("ML_LOG_LEVEL"),
        description="DEBUG, INFO, WARNING…",
    )

    data_dir: Path = Field(default=Path("data"), description="SQLite file, API key, spill buffer.")
    log_json: bool = Field(default=False, description="Emit logs as JSON lines.")

    # Access
    api_keys: SecretStr = Field(
        default=SecretStr(""),
        description="Comma-separated scope:key pairs, e.g. admin:K1,predict:K2.",
    )
    metrics_token: SecretStr = Field(
        default=SecretStr(""),
        description="If set, /metrics requires 'Authorization: Bearer <token>'.",
    )
    # NoDecode: the environment gives "https://a,https://b", not JSON.
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated allowed origins; CORS closed by default."
    )

    # Input limits
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Request bodies above this get 413."
    )
    max_batch: int = Field(
        default=1000, ge=1, le=100_000, description="Max instances per batch predict."
    )
    body_timeout_seconds: float = Field(
        default=15.0, gt=0, description="A request body not received in full by then gets 408."
    )
    max_url_bytes: int = Field(
        default=8192, ge=256, description="A request target (path and query) above this gets 414."
    )
    max_header_bytes: int = Field(
        default=65_536,
        ge=4096,
        le=1_048_576,
        description="A request line plus header fields above this gets 431.",
    )
    max_header_count: int = Field(
        default=100, ge=16, le=10_000, description="More header fields than this gets 431."
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="A request head not received in full by then gets 408 and the connection "
        "is closed (an idle new connection is closed silently).",
    )

    # Shadow challengers (service/shadow.py)
    shadow_queue_size: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="Instances waiting to be scored by a shadow challenger; beyond, they are "
        "dropped and counted (the champion never waits).",
    )

    # Prediction record writer
    # 1,000, not 200: a record costs the serving process 27 µs of SQLite work in batches of
    # 1,000 against 51 µs in batches of 200 (docs/benchmarks.md); a batch is written at least
    # every writer_flush_seconds, so at low volume nothing waits longer.
    writer_batch_size: int = Field(
        default=1000, ge=1, description="Records per database insert (at most)."
    )
    writer_flush_seconds: float = Field(
        default=0.5, gt=0, description="Longest a record waits before its batch is written."
    )
    writer_max_pending: int = Field(
        default=50_000, ge=1, description="Records held in memory before spilling to disk."
    )
    writer_insert_timeout_seconds: float = Field(
        default=15.0, gt=0, description="An insert taking longer counts as a database outage."
    )
    # Records the database refuses for their values are kept (0600) for a human, within limits.
    writer_rejected_max_bytes: int = Field(
        default=100 * 1024 * 1024,
        ge=1024 * 1024,
        description="Bytes of refused records kept in rejected-*.jsonl files; oldest go first.",
    )
    writer_rejected_max_age_seconds: float = Field(
        default=30 * 86400.0,
        gt=0,
        description="Refused-record files last written longer ago than this are deleted.",
    )
    feedback_wait_seconds: float = Field(
        default=5.0,
        ge=0,
        le=60,
        description="Feedback for a prediction minted in the last minute but not stored yet "
        "(still queued in another worker's or replica's writer) is looked up again for this "
        "long before 404; 0 turns the wait off.",
    )
    shutdown_grace_seconds: float = Field(
        default=20.0,
        gt=0,
        description="SIGTERM: half to finish requests, half to write queued records.",
    )

    # Retention of patient data (docs/operations.md, "Retention")
    retention_days: int = Field(
        default=180,
        ge=0,
        le=36_500,
        description="Raw predictions, their feedback and spilled records older than this many "
        "days are purged daily; 0 keeps them forever. Aggregates, drift results and the audit "
        "log are kept.",
    )

    # Monitoring
    system_interval_seconds: float = Field(
        default=30.0, gt=0, description="System collector period (one collector per host)."
    )
    drift_interval_seconds: float = Field(
        default=300.0, gt=0, description="Model-quality job period (drift, quality, accuracy)."
    )
    drift_first_run_seconds: float = Field(
        default=10.0,
        gt=0,
        description="First model-quality round this long after start; rounds keep this pace "
        "until every model's drift window is decided (for one ML_DRIFT_INTERVAL_SECONDS at "
        "most), then come every interval. Also how often every process re-exports the latest "
        "stored results (one process of the cluster runs each round).",
    )
    drift_window_size: int = Field(default=1000, ge=50, description="Count-based drift window.")
    drift_window_seconds: float | None = Field(
        default=None, gt=0, description="If set, a time-based window (last N seconds) instead."
    )
    drift_min_window: int = Field(default=200, ge=10, description="Below this no drift is decided.")
    accuracy_window_seconds: float = Field(
        default=7 * 86400,
        gt=0,
        description="Realised accuracy covers predictions made this recently.",
    )
    clinical_min_count: int = Field(
        default=30,
        ge=1,
        le=1_000_000,
        description="A clinical metric (recall, precision, AUC, calibration...) is reported only "
        "when its denominator holds this many rows; below, only the count is.",
    )
    segment_max_groups: int = Field(
        default=16,
        ge=1,
        # A bundle holds at most 64 groups (ml.segments.MAX_STORED_SEGMENT_GROUPS; config sits
        # below ml, so the number is repeated here): a larger setting could never be used.
        le=64,
        description="Most segment groups (over all declared features) reported per model: "
        "bounds the segment label of the clinical gauges; a bundle declaring more has the "
        "first ones reported, in declared order.",
    )
    alert_interval_seconds: float = Field(
        default=15.0, gt=0, description="In-process alert evaluation period."
    )
    alertmanager_url: str = Field(
        default="", description="If set, /alerts includes Alertmanager's."
    )
    thresholds_file: Path | None = Field(
        default=None, description="YAML/JSON thresholds overrides."
    )
    promotion_policy_file: Path | None = Field(
        default=None,
        description="TOML promotion policy per model (docs/governance.md); absent: every "
        "model manual, a retrain waits for a person's promote.",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("metrics_token")
    @classmethod
    def _valid_token(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if secret and (len(secret) < 16 or not _sendable(secret)):
            # The token itself is never part of the message.
            raise ValueError(
                "ML_METRICS_TOKEN must be empty or at least 16 characters, each a printable "
                "ASCII character other than a space"
            )
        return value

    @field_validator("api_keys")
    @classmethod
    def _valid_keys(cls, value: SecretStr) -> SecretStr:
        _parse_keys(value.get_secret_value())  # refuse a bad entry at start, not at first use
        return value

    @property
    def resolved_database_url(self) -> str:
        """The configured URL, or the embedded SQLite default under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'nexus_ml.db').resolve()}"

    @property
    def spill_dir(self) -> Path:
        """Where prediction records go when the database is unreachable and memory is full."""
        return self.data_dir / "spill"

    def parsed_api_keys(self) -> dict[str, Scope]:
        """Map key -> scope from ``ML_API_KEYS``; raises ValueError on a malformed entry."""
        return _parse_keys(self.api_keys.get_secret_value())


class AlertReceiverSettings(BaseSettings):
    """Where Alertmanager delivers, from ``ML_ALERT_*``; read by ``nexus-ml render`` only.

    A class apart from ``Settings``: the service never delivers alerts itself, so a typo in a
    mail host must stop a render, not the service. Secrets are never values here, only the
    path of a file Alertmanager reads at send time (``*_FILE``), as seen by Alertmanager.
    Every field empty (the default) means the local webhook receiver of ``nexus-ml stack``.
    """

    # hide_input_in_errors: a refused URL may hold the very credential it is refused for.
    model_config = SettingsConfigDict(
        env_prefix="ML_ALERT_", extra="ignore", hide_input_in_errors=True
    )

    webhook_url: str = Field(
        default="",
        description="Generic webhook (incident bridge) for critical alerts, and for any "
        "severity whose own channel is not configured; empty: the local receiver.",
    )
    webhook_token_file: str = Field(
        default="", description="File holding a bearer token sent to the webhook."
    )
    smtp_smarthost: str = Field(default="", description="SMTP host:port for e-mail receivers.")
    smtp_from: str = Field(default="", description="Sender address of alert mail.")
    smtp_auth_username: str = Field(default="", description="SMTP login, if the host wants one.")
    smtp_auth_password_file: str = Field(default="", description="File holding the SMTP password.")
    smtp_require_tls: bool = Field(default=True, description="Refuse to send mail without TLS.")
    email_oncall: str = Field(default="", description="Address paged for critical alerts.")
    email_business: str = Field(default="", description="Address for info (business) alerts.")
    slack_api_url_file: str = Field(
        default="", description="File holding the Slack incoming-webhook URL (a secret)."
    )
    slack_critical_channel: str = Field(default="#ml-critical", description="Critical alerts.")
    slack_warning_channel: str = Field(default="#ml-alerts", description="Warnings (tickets).")

    @field_validator("webhook_url")
    @classmethod
    def _safe_webhook(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("ML_ALERT_WEBHOOK_URL must be an http(s) URL with a host")
        if parts.username or parts.password or parts.query:
            # Alertmanager 0.25 has no url_file for webhooks: the URL is written into
            # alertmanager.yml, so it must carry no secret. The token goes in a file instead.
            raise ValueError(
                "ML_ALERT_WEBHOOK_URL must not carry credentials or a query string (it is "
                "written into alertmanager.yml); put a token in ML_ALERT_WEBHOOK_TOKEN_FILE"
            )
        return value

    @field_validator("webhook_token_file", "smtp_auth_password_file", "slack_api_url_file")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if value and not value.startswith("/"):
            raise ValueError("a secret file must be an absolute path (as Alertmanager sees it)")
        return value

    @field_validator("smtp_smarthost")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if value and not (sep and host and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError("ML_ALERT_SMTP_SMARTHOST must be host:port")
        return value

    @field_validator("smtp_from", "email_oncall", "email_business")
    @classmethod
    def _address(cls, value: str) -> str:
        local, at, domain = value.partition("@")
        if value and not (at and local and "." in domain and not any(c.isspace() for c in value)):
            raise ValueError("an alert e-mail address must look like name@domain.tld")
        return value

    @field_validator("slack_critical_channel", "slack_warning_channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError("a Slack channel is a non-empty name without spaces, e.g. #ml-alerts")
        return value

    @model_validator(mode="after")
    def _complete(self) -> AlertReceiverSettings:
        mail = self.email_oncall or self.email_business
        if mail and not (self.smtp_smarthost and self.smtp_from):
            raise ValueError(
                "ML_ALERT_EMAIL_* needs ML_ALERT_SMTP_SMARTHOST and ML_ALERT_SMTP_FROM"
            )
        if (self.smtp_smarthost or self.smtp_from) and not mail:
            raise ValueError("ML_ALERT_SMTP_* is set but no ML_ALERT_EMAIL_* address to send to")
        if bool(self.smtp_auth_username) != bool(self.smtp_auth_password_file):
            raise ValueError(
                "ML_ALERT_SMTP_AUTH_USERNAME and ML_ALERT_SMTP_AUTH_PASSWORD_FILE go together"
            )
        return self


def _sendable(secret: str) -> bool:
    """Whether a client can present ``secret`` in an HTTP header exactly as configured.

    Header values travel as bytes that servers decode as Latin-1, and a leading or trailing
    space is stripped: a key with a non-ASCII character, a space or a control character would
    be accepted here and then never match. Visible ASCII only (``!`` to ``~``).
    """
    return all("!" <= ch <= "~" for ch in secret)


def _parse_keys(raw: str) -> dict[str, Scope]:
    keys: dict[str, Scope] = {}
    # Only ASCII blanks around an entry are formatting; anything else belongs to it.
    for item in filter(None, (p.strip(" \t\r\n") for p in raw.split(","))):
        scope, sep, key = item.partition(":")
        if not sep or scope not in SCOPES or len(key) < 16 or not _sendable(key):
            # Name the scope only, and only if it is one: the key itself (or a key pasted
            # where the scope belongs) must never reach a log.
            named = repr(scope) if scope in SCOPES else "<not a scope>"
            raise ValueError(
                f"ML_API_KEYS entry for scope {named} is invalid: expected "
                f"'<{'|'.join(SCOPES)}>:<key>', the key at least 16 characters, each a "
                "printable ASCII character other than a space"
            )
        keys[key] = scope  # type: ignore[assignment]
    return keys


@lru_cache
def get_settings() -> Settings:
    """Settings from the environment, read once per process (tests build their own)."""
    return Settings()
