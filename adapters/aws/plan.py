"""What a deploy will do, decided with read-only calls: a :class:`DeployPlan` of frozen steps.

:func:`plan_deploy` makes only read-only calls (STS, HeadBucket, HeadObject,
DescribeStacks, GetTemplate) and builds the code package locally; the steps are
instructions that :mod:`adapters.aws.execute` carries out (chalice style), so a
dry run and a deploy print the same plan.

Example::

    async with AwsClients(AwsSettings(region="eu-west-1")) as aws:
        plan = await plan_deploy(aws, workflow_spec("demo", "express"), DeployRequest(build_dir=Path("build")))
        print("\\n".join(plan.describe()))
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ceap_engine.pipeline.names import BUCKET_NAME_MAX, REGION_BUDGET, workflow_bucket_name
from ceap_engine.pipeline.spec import WorkflowSpec

from .clashes import named_resources, taken_names
from .errors import AwsError, aws_errors
from .packaging import Artifact, LambdaBuild, build_lambda_package, glue_script_artifact
from .session import AwsClients
from .stacks import STACK_BUSY, DeployFailed, Report, describe_stack
from .template import TemplateOptions, deploy_body, resource_names, stack_name, synthesize

REVIEW_IN_PROGRESS = "REVIEW_IN_PROGRESS"

__all__ = [
    "ApplyStack",
    "DeployPlan",
    "DeployRequest",
    "EnsureArtifactsBucket",
    "Step",
    "UploadArtifact",
    "default_artifacts_bucket",
    "plan_deploy",
]


@dataclass(frozen=True)
class EnsureArtifactsBucket:
    """Create the artifacts bucket (SSE, public access blocked) unless it exists."""

    name: str
    region: str
    exists: bool

    def describe(self) -> str:
        return f"artifacts bucket s3://{self.name}: " + ("exists" if self.exists else "create (SSE, public access blocked)")


@dataclass(frozen=True)
class UploadArtifact:
    """Upload one artifact under its content-hash key unless that key is already there."""

    what: str
    bucket: str
    artifact: Artifact
    present: bool

    def describe(self) -> str:
        size = f"{self.artifact.size / 1e6:.1f} MB"
        state = "already uploaded, skipped" if self.present else f"upload ({size})"
        return f"{self.what}: s3://{self.bucket}/{self.artifact.key}: {state}"


@dataclass(frozen=True)
class ApplyStack:
    """Create or update the stack through a change set (or nothing, if template and parameters are the same).

    ``current_status`` is the stack's status (``None``: there is no stack); ``type_switch`` is
    ``(deployed, new)`` when the workflow type changes; ``blockers`` say why the change set
    would fail (taken physical names, a type switch) - a deploy with blockers changes nothing.
    """

    stack: str
    change_set_type: str  # CREATE or UPDATE
    body: str
    parameters: tuple[tuple[str, str], ...]
    unchanged: bool
    current_status: str | None = None
    type_switch: tuple[str, str] | None = None
    blockers: tuple[str, ...] = ()
    pending_change_sets: tuple[str, ...] = ()

    @property
    def exists(self) -> bool:
        """True if a stack of that name exists with resources (not only an unexecuted first change set)."""
        return self.current_status is not None and self.current_status != REVIEW_IN_PROGRESS

    def describe(self) -> str:
        size = f"{len(self.body) / 1024:.0f} KiB template"
        if self.unchanged:
            text = f"stack {self.stack}: no change (same template and parameters)"
        elif self.current_status == REVIEW_IN_PROGRESS:
            text = (f"stack {self.stack}: REVIEW_IN_PROGRESS (its first change set was never executed, or failed) "
                    f"and has no resources; remove it with its unexecuted change sets, then create it through a new "
                    f"change set ({size})")
        elif self.change_set_type == "CREATE":
            text = f"stack {self.stack}: does not exist; create it through a change set ({size})"
        else:
            text = f"stack {self.stack}: update through a change set ({size})"
        if self.type_switch:
            text += f"; the workflow type changes from {self.type_switch[0]} to {self.type_switch[1]}"
        if self.pending_change_sets:
            text += f"; change sets waiting for review: {', '.join(self.pending_change_sets)}"
        return text


Step = EnsureArtifactsBucket | UploadArtifact | ApplyStack


@dataclass(frozen=True)
class DeployPlan:
    """Everything a deploy will do, decided from read-only calls; print it, execute it."""

    workflow: str
    workflow_type: str
    account: str
    region: str
    steps: tuple[Step, ...]

    @property
    def stack(self) -> ApplyStack:
        return next(s for s in self.steps if isinstance(s, ApplyStack))

    @property
    def blockers(self) -> tuple[str, ...]:
        """Why this deploy cannot succeed; a deploy refuses to start while there are any."""
        return self.stack.blockers

    def describe(self) -> list[str]:
        head = f"deploy workflow {self.workflow} ({self.workflow_type}) to account {self.account}, region {self.region}:"
        lines = [head, *(f"  {n}. {step.describe()}" for n, step in enumerate(self.steps, 1))]
        lines += [f"  blocked: {b}" for b in self.blockers]
        return lines


@dataclass(frozen=True)
class DeployRequest:
    """The choices of one deploy besides the workflow itself."""

    build_dir: Path
    build: LambdaBuild = field(default_factory=LambdaBuild)
    options: TemplateOptions = field(default_factory=TemplateOptions)
    artifacts_bucket: str | None = None
    glue_script: Path | None = None


def default_artifacts_bucket(account: str, region: str) -> str:
    """``ceap-artifacts-{account}-{region}``, shared by every workflow of the account and region (like SAM's)."""
    return f"ceap-artifacts-{account}-{region}"


async def _bucket_exists(s3: Any, bucket: str) -> bool:
    try:
        with aws_errors("S3 HeadBucket", f"s3://{bucket}"):
            await s3.head_bucket(Bucket=bucket)
    except AwsError as exc:
        if exc.code in {"404", "NoSuchBucket", "NotFound"}:
            return False
        if exc.code in {"403", "AccessDenied"}:
            raise AwsError(
                f"the artifacts bucket {bucket} exists but belongs to another account or refuses these credentials; "
                "pass --artifacts-bucket with a bucket of yours", code=exc.code, operation="S3 HeadBucket",
            ) from exc
        raise
    return True


async def _object_exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        with aws_errors("S3 HeadObject", f"s3://{bucket}/{key}"):
            await s3.head_object(Bucket=bucket, Key=key)
    except AwsError as exc:
        if exc.code in {"404", "NoSuchKey", "NotFound"}:
            return False
        raise
    return True


async def plan_deploy(aws: AwsClients, spec: WorkflowSpec, request: DeployRequest, *,
                      report: Report | None = None) -> DeployPlan:
    """Decide what a deploy of ``spec`` does, with read-only calls and a local package build.

    ``report`` hears about slow steps (downloading the Lambda wheels).
    """
    if request.options.runtime != request.build.runtime:
        raise DeployFailed(f"the template's runtime {request.options.runtime} and the package's wheels "
                           f"({request.build.runtime}) differ: pass the same runtime to both")
    account = await aws.account()
    region = aws.region
    bucket_name = workflow_bucket_name(spec, account, region)
    if len(bucket_name) > BUCKET_NAME_MAX:
        raise DeployFailed(f"the workflow bucket name {bucket_name} would be over S3's {BUCKET_NAME_MAX} characters "
                           f"(region names over {REGION_BUDGET} characters are not provided for)")
    s3 = await aws.client("s3")
    cfn = await aws.client("cloudformation")
    bucket = request.artifacts_bucket or default_artifacts_bucket(account, region)
    bucket_exists = await _bucket_exists(s3, bucket)
    steps: list[Step] = [EnsureArtifactsBucket(bucket, region, bucket_exists)]

    package = await asyncio.to_thread(build_lambda_package, request.build, request.build_dir, report=report)
    steps.append(UploadArtifact("Lambda code", bucket, package,
                                bucket_exists and await _object_exists(s3, bucket, package.key)))
    parameters = {"ArtifactsBucket": bucket, "LambdaCodeKey": package.key}
    glue_stages = [s for s in spec.stages if s.kind == "glue"]
    if glue_stages:
        script = request.glue_script or _default_glue_script(glue_stages[0].script or "")
        glue = glue_script_artifact(script)
        steps.append(UploadArtifact("Glue script", bucket, glue, bucket_exists and await _object_exists(s3, bucket, glue.key)))
        parameters["GlueScriptKey"] = glue.key

    template = synthesize(spec, request.options)
    try:
        body = deploy_body(template)
    except ValueError as exc:
        raise DeployFailed(f"the deploy of {spec.name} would fail, nothing was changed: {exc}") from None
    name = stack_name(spec)
    stack = await describe_stack(cfn, name)
    ordered = tuple(sorted(parameters.items()))
    status = stack["StackStatus"] if stack else None
    if stack is None or status == REVIEW_IN_PROGRESS:
        # A stack left REVIEW_IN_PROGRESS has no resources: the execution removes it and creates it anew.
        pending = await _pending_change_sets(cfn, name) if stack else ()
        blockers = await _clashes(aws, template, account, region, skip=set())
        steps.append(ApplyStack(name, "CREATE", body, ordered, unchanged=False, current_status=status,
                                blockers=blockers, pending_change_sets=pending))
        return DeployPlan(spec.name, spec.type, account, region, tuple(steps))
    if status == "ROLLBACK_COMPLETE" or status.endswith(STACK_BUSY):
        raise DeployFailed(
            f"stack {name} is {status}: "
            + ("a failed first create must be removed first - run `ceap destroy -n " + spec.name + "`"
               if status == "ROLLBACK_COMPLETE" else "another operation is running; wait for it to finish")
        )
    with aws_errors("CloudFormation GetTemplate", name):
        current = (await cfn.get_template(StackName=name, TemplateStage="Original"))["TemplateBody"]
    current_body = current if isinstance(current, str) else json.dumps(current)
    current_template = _loads(current_body)
    current_parameters = {p["ParameterKey"]: p.get("ParameterValue") for p in stack.get("Parameters", ())}
    unchanged = current_template == json.loads(body) and current_parameters == parameters
    deployed_type = _machine_type(current_template)
    new_type = spec.type.upper()
    switch = (deployed_type, new_type) if deployed_type and deployed_type != new_type else None
    blockers: list[str] = []
    if switch:
        blockers.append(
            f"the deployed workflow is {deployed_type} and this deploy is {new_type}: CloudFormation must replace "
            f"the state machine {resource_names(spec).state_machine}, which it cannot do for a named resource. "
            f"Run `ceap destroy -n {spec.name}` first (it removes the workflow's data), or deploy under another -n NAME")
    if not unchanged:
        blockers += await _clashes(aws, template, account, region, skip=set(current_template.get("Resources", {})))
    steps.append(ApplyStack(name, "UPDATE", body, ordered, unchanged=unchanged, current_status=status,
                            type_switch=switch, blockers=tuple(blockers),
                            pending_change_sets=await _pending_change_sets(cfn, name)))
    return DeployPlan(spec.name, spec.type, account, region, tuple(steps))


async def _clashes(aws: AwsClients, template: dict[str, Any], account: str, region: str, *,
                   skip: set[str]) -> tuple[str, ...]:
    taken = await taken_names(aws, named_resources(template, account, region, skip))
    if not taken:
        return ()
    return (f"these names are already taken outside the stack (a stack of the original platform, or what a "
            f"deleted stack left behind): {'; '.join(taken)}. Delete them (or the stack that owns them), "
            f"or deploy under another -n NAME",)


async def _pending_change_sets(cfn: Any, stack: str) -> tuple[str, ...]:
    """Change sets of the stack that were created but not executed (``--no-execute``, or a failed one)."""
    try:
        with aws_errors("CloudFormation ListChangeSets", stack):
            summaries = (await cfn.list_change_sets(StackName=stack)).get("Summaries", ())
    except AwsError:
        return ()  # only informative: a backend without ListChangeSets does not stop the plan
    return tuple(f"{c['ChangeSetName']} ({c.get('Status', '?')})" for c in summaries
                 if c.get("ExecutionStatus") in {"AVAILABLE", "UNAVAILABLE"})


def _loads(body: str) -> dict[str, Any]:
    try:
        loaded = json.loads(body)
    except json.JSONDecodeError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _machine_type(template: dict[str, Any]) -> str | None:
    machine = template.get("Resources", {}).get("StateMachine", {})
    return machine.get("Properties", {}).get("StateMachineType") if machine else None


def _default_glue_script(relative: str) -> Path:
    import ceap_engine

    return Path(ceap_engine.__file__).resolve().parent.parent / relative
