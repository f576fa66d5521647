"""Deploy a workflow as plan, then execute (chalice style); destroy, status, send and run it.

The parts live in modules of their own; this module is the one front door the CLI uses:

* :mod:`adapters.aws.plan` - :func:`plan_deploy` decides, with read-only calls and a local
  package build, a :class:`DeployPlan` of frozen steps;
* :mod:`adapters.aws.execute` - :func:`execute_deploy` carries the plan out (bucket, uploads,
  change set shown then executed, stack events); :func:`preview_change_set` for a dry run;
* :mod:`adapters.aws.operations` - destroy, status, send and run of a deployed workflow;
* :mod:`adapters.aws.execution_logs` - Express executions read from the log group;
* :mod:`adapters.aws.stacks` - the stack as all of them read it.

Example::

    async with AwsClients(AwsSettings(region="eu-west-1")) as aws:
        plan = await plan_deploy(aws, workflow_spec("demo", "express"), DeployRequest(build_dir=Path("build")))
        print("\\n".join(plan.describe()))
        result = await execute_deploy(aws, plan, report=print)
"""

from __future__ import annotations

from .execute import DeployResult, describe_changes, execute_deploy, preview_change_set, resources_to_create
from .execution_logs import express_executions_from_logs
from .operations import (
    DestroyResult,
    WorkflowStatus,
    destroy_workflow,
    dlq_depth,
    run_workflow,
    send_payload,
    state_machine_arn,
    workflow_status,
)
from .plan import (
    ApplyStack,
    DeployPlan,
    DeployRequest,
    EnsureArtifactsBucket,
    UploadArtifact,
    default_artifacts_bucket,
    plan_deploy,
)
from .stacks import DeployFailed, describe_stack, workflow_outputs

__all__ = [
    "ApplyStack",
    "DeployFailed",
    "DeployPlan",
    "DeployRequest",
    "DeployResult",
    "DestroyResult",
    "EnsureArtifactsBucket",
    "UploadArtifact",
    "WorkflowStatus",
    "default_artifacts_bucket",
    "describe_changes",
    "describe_stack",
    "destroy_workflow",
    "dlq_depth",
    "execute_deploy",
    "express_executions_from_logs",
    "plan_deploy",
    "preview_change_set",
    "resources_to_create",
    "run_workflow",
    "send_payload",
    "state_machine_arn",
    "workflow_outputs",
    "workflow_status",
]
