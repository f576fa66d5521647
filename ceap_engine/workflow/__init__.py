"""Workflow specs and the builder that turns them into ASL."""

from .builder import build_definition, express_duration_warnings, function_placeholder, substitute, substitution_keys
from .builtin import BATCH, BUILTIN, REALTIME, builtin
from .spec import GLUE_RETRY, LAMBDA_RETRY, RetryPolicy, StageSpec, WorkflowSpec

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
