"""The Lambda entry point of every stage: ``adapters.aws.handler.handler``.

Each stage's function is the same code package with a different environment
(set by the template):

``CEAP_STAGE_FUNCTION``
    the stage function's import path, for example ``stages.etl:run`` (required);
``CEAP_STAGE_CONFIG``
    the stage's configuration as a JSON object (optional);
``CEAP_CANDIDATE_TABLE``
    the DynamoDB candidates table (optional; stages that use the candidate store need it);
``AWS_ENDPOINT_URL``
    only outside AWS (moto, LocalStack): where the S3 and DynamoDB calls go.

The handler calls :func:`ceap_engine.pipeline.stage_runtime.invoke_stage` - the very
runtime the local engine calls - with the S3 object store and the DynamoDB
candidate store. Exceptions propagate, so Lambda reports them to the state
machine and its Retry/Catch apply (``Ceap.PermanentError`` is not retried).

Example (what Lambda does)::

    result = handler({"executionId": "e-1", "currentStage": "Filter", "previousStage": "ETL",
                      "workflowBucket": "ceap-workflow-demo-123456789012"}, context)
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ceap_engine.errors import CeapError
from ceap_engine.pipeline.stage_runtime import invoke_stage, load_stage_function
from ceap_engine.runtime.memory import tune_malloc

from .candidates import DynamoDBCandidateStore
from .objects import S3ObjectStore
from .session import AwsClients, AwsSettings

__all__ = ["LambdaStage", "handler", "make_handler"]

STAGE_FUNCTION_VARIABLE = "CEAP_STAGE_FUNCTION"
STAGE_CONFIG_VARIABLE = "CEAP_STAGE_CONFIG"
CANDIDATE_TABLE_VARIABLE = "CEAP_CANDIDATE_TABLE"


class StageConfigurationError(CeapError):
    """The function's environment does not say which stage to run, or says it wrongly."""


@dataclass(frozen=True)
class LambdaStage:
    """One stage as a Lambda function's environment describes it."""

    function: str
    config: Mapping[str, Any] = field(default_factory=dict)
    candidate_table: str | None = None
    settings: AwsSettings = field(default_factory=AwsSettings)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> LambdaStage:
        """Read the stage from ``environ``; a missing or malformed variable says which and what to set."""
        function = environ.get(STAGE_FUNCTION_VARIABLE, "").strip()
        if not function:
            raise StageConfigurationError(
                f"{STAGE_FUNCTION_VARIABLE} is not set: set it to the stage function's import path "
                "(for example stages.etl:run); `ceap deploy` sets it for every stage"
            )
        raw_config = environ.get(STAGE_CONFIG_VARIABLE, "").strip()
        config: Any = {}
        if raw_config:
            try:
                config = json.loads(raw_config)
            except json.JSONDecodeError as exc:
                raise StageConfigurationError(f"{STAGE_CONFIG_VARIABLE} is not valid JSON: {exc.msg}") from None
            if not isinstance(config, dict):
                raise StageConfigurationError(f"{STAGE_CONFIG_VARIABLE} must be a JSON object")
        return cls(
            function=function,
            config=config,
            candidate_table=environ.get(CANDIDATE_TABLE_VARIABLE) or None,
            settings=AwsSettings(
                region=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None,
                endpoint_url=environ.get("AWS_ENDPOINT_URL") or None,
            ),
        )

    async def invoke(self, event: Any, context: Any) -> dict[str, Any]:
        """Run the stage for one request with S3 and (if configured) DynamoDB as its ports."""
        async with AwsClients(self.settings) as aws:
            objects = S3ObjectStore(await aws.client("s3"))
            candidates = (
                DynamoDBCandidateStore(await aws.client("dynamodb"), self.candidate_table)
                if self.candidate_table
                else None
            )
            return await invoke_stage(
                event, context, function=self.function, objects=objects, candidates=candidates, config=self.config
            )


def make_handler(environ: Mapping[str, str]) -> Callable[[Any, Any], dict[str, Any]]:
    """A Lambda handler for the stage ``environ`` describes (its import path is checked at once)."""
    stage = LambdaStage.from_environment(environ)
    load_stage_function(stage.function)  # an import error shows at cold start, not on the first request
    tune_malloc()  # warm invocations reuse what earlier ones freed: see ceap_engine.runtime.memory

    def stage_handler(event: Any, context: Any) -> dict[str, Any]:
        return asyncio.run(stage.invoke(event, context))

    return stage_handler


_handler: Callable[[Any, Any], dict[str, Any]] | None = None


def handler(event: Any, context: Any) -> dict[str, Any]:
    """The Lambda entry point (``Handler: adapters.aws.handler.handler``)."""
    global _handler
    if _handler is None:
        # Built on the first request, so importing this module (tests, tools) needs no environment.
        _handler = make_handler(os.environ)
    return _handler(event, context)
