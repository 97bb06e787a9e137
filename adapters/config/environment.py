"""Every setting, defined once: what each ``OIP_*`` variable (or ``OIP_CONFIG`` file key) may
hold, with pydantic-settings.

Each field of :class:`Environment` is one setting: its name (``OIP_`` + the field's, upper
case), type, default, constraint, group and description; :class:`ModelSection`
(:mod:`adapters.config.sections`) holds the keys of a ``[model.<name>]`` section of the file. The
rest follows from them: :mod:`adapters.config` starts from :data:`DEFAULTS`,
:mod:`adapters.config.sources` validates against these types and constraints, and the reference,
``docs/configuration.md``, is generated from these descriptions by ``make docs``
(:mod:`adapters.config.reference`).

A new setting is one field here, then ``make docs``. For the code to read it, the dataclass it
belongs to (:class:`~adapters.config.Settings` or :class:`~adapters.config.Limits`) gets a field
of the same name whose default is the definition's (``x: int = DEFAULTS.x``); ``from_env``
fills it by name.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from adapters.config.fields import Group, setting
from adapters.config.sections import ModelSection as ModelSection  # the sections' keys


class Environment(BaseSettings):
    """The raw configuration, typed: what each ``OIP_*`` variable (or file key) may hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)  # type: ignore[assignment]

    models: str = setting(
        "iris,diabetes,text",
        Group.SERVING,
        """The models to serve, by their names in the BentoML store (in the file, also a list).
        Each needs a servable version at start-up. Empty: the default.""",
        values="comma list of model names",
    )
    placement: str = setting(
        "inprocess",
        Group.SERVING,
        """Where each model's predict runs: `inprocess` (in the gateway process, off the event
        loop) or `runner` (in a separate BentoML runner service, batching its calls). One
        value for every model, or per model: `iris=runner,text=inprocess`; `*=` sets the models
        not named (`iris=runner,*=inprocess`).""",
        values="`inprocess`, `runner`, or per model `name=value,...`",
    )
    default_version: str = setting(
        "latest",
        Group.SERVING,
        """What the routes without `/versions/{version}` answer with: `latest` (the newest
        version), `best` (the best selection metric) or a version. One value for every model,
        or per model: `iris=best,text=latest`; `*=` sets the models not named. A version that
        does not exist stops start-up.""",
        values="`latest`, `best`, a version, or per model `name=value,...`",
    )
    workers: int = setting(
        1,
        Group.SERVING,
        """Processes of the gateway (HTTP and gRPC). Each has its own registry and in-process
        executors; gRPC binds its port in every one (SO_REUSEPORT).""",
        gt=0,
    )
    runner_workers: int = setting(
        1,
        Group.SERVING,
        "Processes of the runner service, which starts only when a model is placed on `runner`.",
        gt=0,
    )
    runner_lane: bool = setting(
        True,
        Group.SERVING,
        """Calls from the gateway to the runner take a Unix socket of each runner worker straight
        into its batching, instead of BentoML's HTTP client and server (about half the cost of
        a small call; `adapters/execution/lane.py`). `0`: BentoML's path only, with the same
        answers, except that a call whose only runner worker dies under it waits for the
        restart (at most until the request deadline) instead of a 503.""",
    )
    max_loaded_versions: int = setting(
        0,
        Group.SERVING,
        """Most model versions whose estimators one process holds (a gateway worker for the
        in-process models; on the runner, what each gateway worker keeps there). Past it the
        least recently used are evicted: still served, loaded again with their warm-up on their
        next call, which waits at most the model's `OIP_MAX_LATENCY_MS` and then gets 503 with
        `Retry-After`. A version with calls in flight or queued is never evicted. `0`: no
        limit.""",
        ge=0,
    )
    poll_interval_s: float = setting(
        0.0,
        Group.SERVING,
        """Every N seconds, load the new versions and moved aliases of the served models from
        the store (as `POST /v2/repository/models/{name}/load` does); `0` is off.""",
        ge=0,
    )
    config: str = setting(
        "",
        Group.SERVING,
        """A configuration file: TOML, or YAML when it ends in `.yaml` or `.yml`. It holds the
        same settings (lower-case names without `OIP_`) and `[model.<name>]` sections;
        variables win over it. A file that cannot be read or parsed stops start-up.""",
        values="a path",
    )
    bento_models: str = setting(
        "",
        Group.SERVING,
        """Build time only: the versions `bentoml build` packs, each `name:version` with a
        version, `latest` or `best`; each model of `OIP_MODELS` needs one. Empty: every stored
        version of each served model. `make bento MODELS="churn:best fraud:latest"` sets it.""",
        values="comma or space list of `name:version`",
    )
    max_batch_size: int = setting(
        64,
        Group.BATCHING,
        """Adaptive batching: the most concurrent calls of one model merged into one predict,
        in both placements. Per model: `max_batch_size` in `[model.<name>]`.""",
        gt=0,
    )
    max_latency_ms: int = setting(
        10000,
        Group.BATCHING,
        """Adaptive batching: a call that waits longer than this for its turn is refused with
        503 and `Retry-After`. Per model: `max_latency_ms` in `[model.<name>]`.""",
        gt=0,
    )
    request_timeout_s: float = setting(
        60.0,
        Group.LIMITS,
        """Deadline of one inference request, body to answer, REST and gRPC. Past it: 504
        `{"error"}` (gRPC DEADLINE_EXCEEDED); a queued predict is dropped, a chunked one stops
        at its next chunk. BentoML's own `traffic.timeout` is one second later, a backstop.""",
        gt=0,
    )
    read_timeout_s: float = setting(
        10.0,
        Group.LIMITS,
        """Longest silence while a client sends a request body (past it, 408), and the time it
        has to send complete request headers (past it, the connection is closed).""",
        gt=0,
    )
    max_body_bytes: int = setting(
        64 * 2**20,
        Group.LIMITS,
        """Largest request body, on `Content-Length`, while reading and after decompression:
        past it, 413 (a decompression bomb stops at the limit). Also the largest gRPC message
        received (RESOURCE_EXHAUSTED).""",
        gt=0,
    )
    max_response_bytes: int = setting(
        64 * 2**20,
        Group.LIMITS,
        """Largest answer, counted as its output tensors' data (numbers at their datatype's
        width, a BYTES element at its UTF-8 length + 4: what gRPC and the binary extension
        send; JSON writes the same data as text). Past it, 413 (gRPC RESOURCE_EXHAUSTED),
        before predict when the signature sizes the outputs, else before encoding.""",
        gt=0,
    )
    max_elements: int = setting(
        16 * 2**20,
        Group.LIMITS,
        """Most tensor elements in one request, counted from the shapes before anything is
        decoded: past it, 413.""",
        gt=0,
    )
    max_bytes_element: int = setting(
        2**20, Group.LIMITS, "Largest single element of a BYTES tensor: past it, 413.", gt=0
    )
    max_connections: int = setting(
        1000,
        Group.LIMITS,
        """Most open connections per gateway worker: past it, a new connection is closed at
        once (one log line a second says so).""",
        gt=0,
    )
    auth_token: str = setting(
        "",
        Group.SECURITY,
        """A bearer token every route requires (`Authorization: Bearer <token>`; gRPC: the
        `authorization` metadata) except the probes: `/v2/health/live`, `/v2/health/ready`,
        `/livez`, `/readyz`, `/healthz` and gRPC health. Without it: 401 `{"error"}` with
        `WWW-Authenticate: Bearer` (gRPC UNAUTHENTICATED). Compared in constant time, never
        logged. Unset (and no tokens file): no authentication.""",
        values="a token",
    )
    auth_tokens_file: str = setting(
        "",
        Group.SECURITY,
        """A file of further accepted tokens, one a line (lines starting with `#` are comments),
        for rotation. Read at start-up; a file that cannot be read stops it.""",
        values="a path",
    )
    cors_origins: str = setting(
        "",
        Group.SECURITY,
        """Origins allowed cross-origin requests (preflights are answered before auth). Unset:
        no CORS.""",
        values="comma list of origins",
    )
    grpc_port: int = setting(
        8001,
        Group.GRPC,
        """Port of the gRPC server (`inference.GRPCInferenceService` and `grpc.health.v1`);
        `0` turns gRPC off. The port is one server's: held by another process, it stops
        start-up with one line naming it.""",
        ge=0,
        le=65535,
    )
    grpc_host: str = setting(
        "127.0.0.1",
        Group.GRPC,
        "Address the gRPC server binds; `0.0.0.0` for every interface (the container image's).",
        values="an address",
    )
    server_name: str = setting(
        "bentoml-oip-sklearn", Group.OPERATIONS, "The `name` in `GET /v2`.", values="text"
    )
    access_log: bool = setting(
        False,
        Group.OPERATIONS,
        """One log line per HTTP request. Off by default: BentoML relays every worker's output
        through its arbiter process, and a line per request costs about 30 % of small-request
        throughput and most of the p99 tail.""",
    )
    tracing: bool = setting(
        False,
        Group.OPERATIONS,
        """OpenTelemetry spans for the V2 routes and the runner's; needs `OIP_FAST_LANE=0` (and
        `OIP_RUNNER_LANE=0` for the runner's).
        Off, they are left out of tracing: a span costs more than a small predict, and no
        exporter is configured by default.""",
    )
    fast_lane: bool = setting(
        True,
        Group.OPERATIONS,
        """V2 requests skip BentoML's per-request middlewares straight to the V2 router;
        `adapters/bento/gateway.py` lists each one and what stands in for it. `0`: the full BentoML
        stack, same V2 behaviour.""",
    )
    drain_delay_s: float = setting(
        0.0,
        Group.OPERATIONS,
        """On SIGTERM to `bentoml serve`: report not ready (`/v2/health/ready` 503, gRPC health
        NOT_SERVING) and keep serving this long, so that a load balancer's health checks take
        the replica out first; then stop accepting, finish every request held, and exit (the
        runner after the gateway). `0`: stop at once. SIGINT always stops at once.""",
        ge=0,
    )
    predictions_db: str = setting(
        "",
        Group.OPERATIONS,
        """The database `score.py` writes predictions to: `GET
        /v2/models/{name}/predictions/{key}` reads them back from it (unset: that route
        answers 404); inference logging writes there too.""",
        values="a SQLAlchemy URL",
    )
    log_inferences: bool = setting(
        False,
        Group.OPERATIONS,
        """Write every inference (request id, model, version, inputs, outputs, status, latency;
        shadow answers tagged) into `OIP_PREDICTIONS_DB`, table `inferences`, off the request
        path: a bounded queue (drops counted) and batched inserts. Per model: `log_inferences`
        in `[model.<name>]`.""",
    )
    model: dict[str, ModelSection] = Field(
        default_factory=dict,
        description="The `[model.<name>]` sections of the file (file only).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # the variables and the file arrive as init values (sources.py)


FIELDS = frozenset(Environment.model_fields) - {"model"}
"""The settings a variable can set: every field but the file's sections."""
DEFAULTS = Environment()
"""Every setting's default: what :mod:`adapters.config` starts from."""
