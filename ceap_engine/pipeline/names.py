"""How a workflow's resources are named, locally and on AWS (one place, so both agree)."""

from __future__ import annotations

import re

from ceap_engine.pipeline.spec import StageSpec, WorkflowSpec

__all__ = ["dlq_name", "glue_job_name", "lambda_function_name", "queue_name", "state_machine_name",
           "workflow_bucket_name"]


def _kebab(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name).lower()


def lambda_function_name(spec: WorkflowSpec, stage: StageSpec) -> str:
    """``CeapWorkflow-{name}-{Stage}Lambda``."""
    return f"CeapWorkflow-{spec.name}-{stage.name}Lambda"


def glue_job_name(spec: WorkflowSpec, stage: StageSpec) -> str:
    """``ceap-workflow-{name}-heavy-etl`` for the HeavyETL stage."""
    return f"ceap-workflow-{spec.name}-{_kebab(stage.name)}"


def state_machine_name(spec: WorkflowSpec) -> str:
    """``Ceap-{name}-Workflow``."""
    return f"Ceap-{spec.name}-Workflow"


def workflow_bucket_name(spec: WorkflowSpec, account: str | None = None) -> str:
    """The workflow bucket: ``ceap-workflow-{name}-{account}`` on AWS, the spec's bucket locally."""
    if account:
        return f"ceap-workflow-{spec.name}-{account}"
    return spec.workflow_bucket


def queue_name(spec: WorkflowSpec) -> str:
    """``ceap-workflow-{name}-queue``: where payloads go to start executions."""
    return f"ceap-workflow-{spec.name}-queue"


def dlq_name(spec: WorkflowSpec) -> str:
    """``ceap-workflow-{name}-dlq``: where a message goes after ``spec.queue.max_receive_count`` receives."""
    return f"ceap-workflow-{spec.name}-dlq"
