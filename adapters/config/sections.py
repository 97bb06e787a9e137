"""The keys of a ``[model.<name>]`` section of the configuration file: one model's own settings
(placement, default version, batching, signature, and its rollout: weighted aliases, shadow,
inference logging). Defined like the settings of :mod:`adapters.config.environment`, which
holds the sections; ``docs/configuration.md`` lists them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from adapters.config.fields import key


class ModelSection(BaseModel):
    """``[model.<name>]`` of the configuration file: one model's own settings."""

    model_config = ConfigDict(extra="forbid")

    placement: str | None = key(
        """This model's placement. An entry naming it in `OIP_PLACEMENT` (`churn=runner`) wins
        over this key.""",
        values="`inprocess` or `runner`",
    )
    default_version: str | None = key(
        """What this model's unversioned routes answer with. An entry naming it in
        `OIP_DEFAULT_VERSION` (`churn=latest`) wins over this key.""",
        values="`latest`, `best`, a version or a weighted alias",
    )
    max_batch_size: int | None = key(
        """This model's own batching: the most calls merged into one predict. In process the
        model has its own queue anyway; on the runner it gets its own batchable API
        (`run_<model>`; BentoML batches per API), the other models share `run`.""",
        gt=0,
    )
    max_latency_ms: int | None = key(
        """This model's own batching latency budget: a call that waits longer for its turn is
        refused with 503 and `Retry-After`.""",
        gt=0,
    )
    signature: dict[str, Any] | None = key(
        """The V2 signature every version of this model is served with, instead of the stored
        or derived one: `inputs` and `outputs`, each a list of `name`, `datatype`, `shape`;
        `frame = true` when the inputs are the columns of a pandas DataFrame.""",
        values="a table",
    )
    aliases: dict[str, dict[str, Annotated[float, Field(ge=0)]]] | None = key(
        """Weighted aliases (`[model.<name>.aliases]`, `canary = { "<v1>" = 90, "<v2>" = 10 }`):
        a request for one (or for the default, when the default is one) picks a version by
        weight; with the request parameter `routing_key`, by a hash of the key, so one key
        always lands on one version. Targets are versions, `latest`, `best` or other aliases.
        A repository load re-reads them (docs/rollout.md).""",
        values="alias = { version or alias = weight, ... }",
        unset="no weighted alias",
    )
    shadow: str | None = key(
        """A version or alias that every request answered by the model's default also runs
        on, off the request path (a bounded queue; drops counted); the agreement with the
        default's answers is exported as Prometheus metrics (docs/rollout.md).""",
        values="a version or alias",
        unset="no shadow",
    )
    log_inferences: bool | None = key(
        """Write this model's inferences into `OIP_PREDICTIONS_DB`, table `inferences`."""
    )
