"""Workflow specs and the builder that turns them into ASL."""

from ceap_engine.pipeline.builder import (
    build_definition,
    express_duration_warnings,
    function_placeholder,
    substitute,
    substitution_keys,
)
from ceap_engine.pipeline.builtin import BATCH, BUILTIN, REALTIME, builtin
from ceap_engine.pipeline.spec import GLUE_RETRY, LAMBDA_RETRY, RetryPolicy, StageSpec, WorkflowSpec

__all__ = [
    "BATCH",
    "BUILTIN",
    "GLUE_RETRY",
    "LAMBDA_RETRY",
    "REALTIME",
    "RetryPolicy",
    "StageSpec",
    "WorkflowSpec",
    "build_definition",
    "builtin",
    "express_duration_warnings",
    "function_placeholder",
    "substitute",
    "substitution_keys",
]
