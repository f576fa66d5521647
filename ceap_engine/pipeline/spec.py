"""Workflow specs: the one description from which local and AWS runs are built.

A :class:`WorkflowSpec` names the workflow, its type (EXPRESS or STANDARD), its
bucket and its ordered stages. Each stage names its code by import path
(``stages.etl:run``) - or, for a Glue stage, its PySpark script - with its
timeout, memory, retry policy and configuration. :mod:`.builder` turns a spec
into the ASL that is deployed and that the local engine interprets.

Specs are plain pydantic models, so they load from YAML/JSON as well as code::

    spec = WorkflowSpec.model_validate(json.loads(Path("workflow.json").read_text()))
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ceap_engine.ports import QueueSettings, RedrivePolicy

__all__ = ["QueueSpec", "RetryPolicy", "StageSpec", "WorkflowSpec", "LAMBDA_RETRY", "GLUE_RETRY", "EXPRESS_LAMBDA_RETRY"]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,39}$")
_FUNCTION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
#: Workflow names become parts of bucket, function, queue and role names.
WORKFLOW_NAME = re.compile(r"^[a-z][a-z0-9-]{0,29}$")


class RetryPolicy(BaseModel):
    """The retrier for transient failures (``States.ALL``) of one stage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval_seconds: int = Field(20, ge=1)
    max_attempts: int = Field(2, ge=0)
    backoff_rate: float = Field(2.0, ge=1.0)
    max_delay_seconds: int | None = Field(None, ge=1)
    jitter: Literal["NONE", "FULL"] = "NONE"

    def delays(self) -> list[float]:
        """The waits before each retry, as Step Functions computes them."""
        out = []
        for r in range(self.max_attempts):
            d = self.interval_seconds * self.backoff_rate**r
            if self.max_delay_seconds is not None:
                d = min(d, self.max_delay_seconds)
            out.append(float(d))
        return out


LAMBDA_RETRY = RetryPolicy(interval_seconds=20, max_attempts=2, backoff_rate=2.0)
GLUE_RETRY = RetryPolicy(interval_seconds=300, max_attempts=2, backoff_rate=2.0)
#: Express executions end at 300 s whatever is running, so a retry there must be quick and rare: one retry
#: after 2 s. With LAMBDA_RETRY's waits (20 s, 40 s) five stages spend the whole 300 s waiting alone.
EXPRESS_LAMBDA_RETRY = RetryPolicy(interval_seconds=2, max_attempts=1, backoff_rate=2.0)


def worst_case_seconds(timeout_seconds: float, policy: RetryPolicy) -> float:
    """How long a Task with this TimeoutSeconds and retrier can take: every attempt timing out, plus every wait.

    >>> worst_case_seconds(10, RetryPolicy(interval_seconds=1, max_attempts=1))
    21.0
    """
    return float(timeout_seconds * (policy.max_attempts + 1) + sum(policy.delays()))


class StageSpec(BaseModel):
    """One stage: a Lambda function (``kind="lambda"``) or a Glue job (``kind="glue"``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: Literal["lambda", "glue"] = "lambda"
    function: str | None = None
    script: str | None = None
    timeout_seconds: int = Field(60, ge=1, le=900 * 8 * 60)
    #: The Task state's TimeoutSeconds when it must be shorter than the function's own timeout (an Express
    #: budget); default: ``timeout_seconds``. A timed-out attempt's Lambda may still be running when the
    #: retry starts, which is safe only because stages are idempotent (same input -> same keys, same writes).
    state_timeout_seconds: int | None = Field(None, ge=1)
    #: TimeoutSeconds of a fanned-out stage's ``<Stage>.Manifest`` step, which only adds up its parts'
    #: summaries (default: the same as its parts'). An Express budget gives it a few seconds.
    manifest_timeout_seconds: int | None = Field(None, ge=1)
    #: TimeoutSeconds of each ``<Stage>.Merge`` call of a stage that fans out over its source (default: the
    #: same as its range calls').
    merge_timeout_seconds: int | None = Field(None, ge=1)
    #: The first stage reads its source in byte ranges (its function has ``source_steps``): the definition
    #: runs it as ``<Stage>.Plan``, a Map of ``<Stage>.Range`` calls, a Map of ``<Stage>.Merge`` calls and
    #: ``<Stage>.Manifest`` (docs/architecture.md), each range call with ``state_timeout_seconds``, the plan
    #: and the manifest with ``manifest_timeout_seconds``.
    fan_out_source: bool = False
    memory_mb: int = Field(512, ge=128, le=10240)
    retry: RetryPolicy | None = None
    config: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("a stage name is 1-40 letters and digits, starting with a letter (it names states, functions and keys)")
        return v

    @model_validator(mode="after")
    def _code(self) -> StageSpec:
        if self.kind == "lambda":
            if not self.function or not _FUNCTION.match(self.function):
                raise ValueError(f"stage {self.name}: 'function' must be an import path such as stages.etl:run")
            if self.timeout_seconds > 900:
                raise ValueError(f"stage {self.name}: a Lambda timeout is at most 900 s")
        elif not self.script:
            raise ValueError(f"stage {self.name}: a Glue stage needs 'script' (for example glue_jobs/heavy_etl.py)")
        if self.state_timeout_seconds is not None and self.state_timeout_seconds > self.timeout_seconds:
            raise ValueError(f"stage {self.name}: state_timeout_seconds ({self.state_timeout_seconds}) cannot exceed "
                             f"timeout_seconds ({self.timeout_seconds}): the function would time out first")
        for name in ("manifest_timeout_seconds", "merge_timeout_seconds"):
            value = getattr(self, name)
            if value is not None and value > self.timeout_seconds:
                raise ValueError(f"stage {self.name}: {name} ({value}) cannot exceed timeout_seconds "
                                 f"({self.timeout_seconds}): the function would time out first")
        if self.fan_out_source and self.kind != "lambda":
            raise ValueError(f"stage {self.name}: only a Lambda stage can fan out over its source")
        return self

    @property
    def retry_policy(self) -> RetryPolicy:
        return self.retry or (GLUE_RETRY if self.kind == "glue" else LAMBDA_RETRY)

    @property
    def task_timeout_seconds(self) -> int:
        """The Task state's TimeoutSeconds: when Step Functions stops waiting for one attempt.

        >>> StageSpec(name="ETL", function="stages.etl:run", timeout_seconds=300, state_timeout_seconds=40).task_timeout_seconds
        40
        """
        return self.state_timeout_seconds or self.timeout_seconds

    @property
    def manifest_task_timeout_seconds(self) -> int:
        """TimeoutSeconds of the stage's ``<Stage>.Manifest`` step (when it fans out over parts)."""
        return self.manifest_timeout_seconds or self.task_timeout_seconds

    @property
    def merge_task_timeout_seconds(self) -> int:
        """TimeoutSeconds of each ``<Stage>.Merge`` call (when the stage fans out over its source)."""
        return self.merge_timeout_seconds or self.task_timeout_seconds

    @property
    def merge_worst_case_seconds(self) -> float:
        """A Merge call's worst case: every attempt timing out, plus every retry wait."""
        return worst_case_seconds(self.merge_task_timeout_seconds, self.retry_policy)

    @property
    def manifest_worst_case_seconds(self) -> float:
        """The Manifest step's worst case: every attempt timing out, plus every retry wait.

        >>> StageSpec(name="Store", function="stages.store:run", timeout_seconds=60, manifest_timeout_seconds=5,
        ...           retry=EXPRESS_LAMBDA_RETRY).manifest_worst_case_seconds
        12.0
        """
        return worst_case_seconds(self.manifest_task_timeout_seconds, self.retry_policy)

    @property
    def worst_case_seconds(self) -> float:
        """Every attempt timing out, plus every retry wait.

        >>> StageSpec(name="ETL", function="stages.etl:run", timeout_seconds=60, retry=EXPRESS_LAMBDA_RETRY).worst_case_seconds
        122.0
        """
        return worst_case_seconds(self.task_timeout_seconds, self.retry_policy)


class QueueSpec(BaseModel):
    """The workflow's queue and dead-letter queue: what the stack deploys and the local queue uses.

    The defaults are the original platform's: a 10-minute visibility timeout, the DLQ
    after 3 receives, messages kept 4 days in the queue and 14 days in the DLQ.

    >>> QueueSpec().settings("q-dlq").redrive
    RedrivePolicy(dead_letter_queue='q-dlq', max_receive_count=3)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    visibility_timeout_seconds: int = Field(600, ge=0, le=43_200)
    max_receive_count: int = Field(3, ge=1, le=1000)
    retention_seconds: int = Field(4 * 24 * 3600, ge=60, le=1_209_600)
    dlq_retention_seconds: int = Field(14 * 24 * 3600, ge=60, le=1_209_600)

    def settings(self, dlq_name: str) -> QueueSettings:
        """The queue's settings, redriving to ``dlq_name``."""
        return QueueSettings(visibility_timeout=self.visibility_timeout_seconds, retention_seconds=self.retention_seconds,
                             redrive=RedrivePolicy(dlq_name, self.max_receive_count))

    def dlq_settings(self) -> QueueSettings:
        return QueueSettings(visibility_timeout=self.visibility_timeout_seconds,
                             retention_seconds=self.dlq_retention_seconds)


class WorkflowSpec(BaseModel):
    """A CEAP workflow: ordered stages, a type and a bucket."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: Literal["express", "standard"] = "standard"
    bucket: str | None = None
    stages: tuple[StageSpec, ...]
    queue: QueueSpec = Field(default_factory=QueueSpec)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not WORKFLOW_NAME.match(v):
            raise ValueError("a workflow name is 1-30 characters: a lowercase letter, then lowercase letters, digits or '-'")
        return v

    @model_validator(mode="after")
    def _stages(self) -> WorkflowSpec:
        if not self.stages:
            raise ValueError("a workflow needs at least one stage")
        names = [s.name for s in self.stages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stage names must be unique: {', '.join(dupes)}")
        if self.type == "express" and any(s.kind == "glue" for s in self.stages):
            raise ValueError("a Glue stage waits for its job (.sync), which Express workflows do not support: use type standard")
        if self.stages[0].kind != "lambda":
            raise ValueError("the first stage reads the execution input and must be a Lambda stage")
        later = [s.name for s in self.stages[1:] if s.fan_out_source]
        if later:
            raise ValueError(f"only the first stage reads a source, so only it can fan out over one: {', '.join(later)}")
        return self

    @property
    def workflow_bucket(self) -> str:
        return self.bucket or f"ceap-workflow-{self.name}"

    def stage(self, name: str) -> StageSpec:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def previous(self, name: str) -> str | None:
        names = [s.name for s in self.stages]
        i = names.index(name)
        return names[i - 1] if i else None
