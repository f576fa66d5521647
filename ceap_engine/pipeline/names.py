"""How a workflow's resources are named, locally and on AWS (one place, so both agree)."""

from __future__ import annotations

import hashlib
import re

from ceap_engine.pipeline.spec import StageSpec, WorkflowSpec

__all__ = [
    "BUCKET_NAME_MAX",
    "REGION_BUDGET",
    "dlq_name",
    "glue_job_name",
    "kebab",
    "lambda_function_name",
    "queue_name",
    "state_machine_name",
    "workflow_bucket_name",
    "workflow_bucket_prefix",
]

# S3 bucket names are 3-63 characters and global across regions, so the workflow bucket carries
# the account (12 digits) and the region. The region is only known at deploy time, so the prefix
# leaves room for the longest region name AWS has (15 characters: us-isof-south-1).
BUCKET_NAME_MAX = 63
ACCOUNT_ID_LENGTH = 12
REGION_BUDGET = 15
_PREFIX_MAX = BUCKET_NAME_MAX - ACCOUNT_ID_LENGTH - REGION_BUDGET - 2


def kebab(name: str) -> str:
    """``HeavyETL`` -> ``heavy-etl``: a stage name as it goes into lowercase AWS names.

    >>> kebab("HeavyETL")
    'heavy-etl'
    """
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name).lower()


def lambda_function_name(spec: WorkflowSpec, stage: StageSpec) -> str:
    """``CeapWorkflow-{name}-{Stage}Lambda``."""
    return f"CeapWorkflow-{spec.name}-{stage.name}Lambda"


def glue_job_name(spec: WorkflowSpec, stage: StageSpec) -> str:
    """``ceap-workflow-{name}-heavy-etl`` for the HeavyETL stage."""
    return f"ceap-workflow-{spec.name}-{kebab(stage.name)}"


def state_machine_name(spec: WorkflowSpec) -> str:
    """``Ceap-{name}-Workflow``."""
    return f"Ceap-{spec.name}-Workflow"


def queue_name(spec: WorkflowSpec) -> str:
    """``ceap-workflow-{name}-queue``: where payloads go to start executions."""
    return f"ceap-workflow-{spec.name}-queue"


def dlq_name(spec: WorkflowSpec) -> str:
    """``ceap-workflow-{name}-dlq``: where a message goes after ``spec.queue.max_receive_count`` receives."""
    return f"ceap-workflow-{spec.name}-dlq"
def workflow_bucket_prefix(spec: WorkflowSpec) -> str:
    """``ceap-workflow-{name}``, or for a long name its start and a hash of the whole name (34 characters at most).

    >>> from ceap_engine.pipeline.builtin import REALTIME
    >>> workflow_bucket_prefix(REALTIME.model_copy(update={"name": "demo"}))
    'ceap-workflow-demo'
    >>> len(workflow_bucket_prefix(REALTIME.model_copy(update={"name": "a" * 30})))
    34
    """
    full = f"ceap-workflow-{spec.name}"
    if len(full) <= _PREFIX_MAX:
        return full
    digest = hashlib.sha256(spec.name.encode()).hexdigest()[:6]
    return f"{full[:_PREFIX_MAX - 7].rstrip('-')}-{digest}"


def workflow_bucket_name(spec: WorkflowSpec, account: str, region: str) -> str:
    """The workflow bucket on AWS: ``{prefix}-{account}-{region}``, 63 characters at most.

    The same workflow name deploys to several regions of one account (bucket names are global).

    >>> from ceap_engine.pipeline.builtin import REALTIME
    >>> workflow_bucket_name(REALTIME.model_copy(update={"name": "demo"}), "123456789012", "eu-west-1")
    'ceap-workflow-demo-123456789012-eu-west-1'
    """
    return f"{workflow_bucket_prefix(spec)}-{account}-{region}"
