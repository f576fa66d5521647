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

from ceap_engine.pipeline.spec import WorkflowSpec

from .errors import AwsError, aws_errors
from .packaging import Artifact, LambdaBuild, build_lambda_package, glue_script_artifact
from .session import AwsClients
from .stacks import STACK_BUSY, DeployFailed, describe_stack
from .template import TemplateOptions, stack_name, synthesize, template_body

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
    """Create or update the stack through a change set (or nothing, if template and parameters are the same)."""

    stack: str
    change_set_type: str  # CREATE or UPDATE
    body: str
    parameters: tuple[tuple[str, str], ...]
    unchanged: bool

    def describe(self) -> str:
        if self.unchanged:
            return f"stack {self.stack}: no change (same template and parameters)"
        verb = "create" if self.change_set_type == "CREATE" else "update"
        return f"stack {self.stack}: {verb} through a change set ({len(self.body) / 1024:.0f} KiB template)"


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

    def describe(self) -> list[str]:
        head = f"deploy workflow {self.workflow} ({self.workflow_type}) to account {self.account}, region {self.region}:"
        return [head, *(f"  {n}. {step.describe()}" for n, step in enumerate(self.steps, 1))]


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


async def plan_deploy(aws: AwsClients, spec: WorkflowSpec, request: DeployRequest) -> DeployPlan:
    """Decide what a deploy of ``spec`` does, with read-only calls and a local package build."""
    account = await aws.account()
    region = aws.region
    s3 = await aws.client("s3")
    cfn = await aws.client("cloudformation")
    bucket = request.artifacts_bucket or default_artifacts_bucket(account, region)
    bucket_exists = await _bucket_exists(s3, bucket)
    steps: list[Step] = [EnsureArtifactsBucket(bucket, region, bucket_exists)]

    package = await asyncio.to_thread(build_lambda_package, request.build, request.build_dir)
    steps.append(UploadArtifact("Lambda code", bucket, package,
                                bucket_exists and await _object_exists(s3, bucket, package.key)))
    parameters = {"ArtifactsBucket": bucket, "LambdaCodeKey": package.key}
    glue_stages = [s for s in spec.stages if s.kind == "glue"]
    if glue_stages:
        script = request.glue_script or _default_glue_script(glue_stages[0].script or "")
        glue = glue_script_artifact(script)
        steps.append(UploadArtifact("Glue script", bucket, glue, bucket_exists and await _object_exists(s3, bucket, glue.key)))
        parameters["GlueScriptKey"] = glue.key

    body = template_body(synthesize(spec, request.options))
    name = stack_name(spec)
    stack = await describe_stack(cfn, name)
    if stack is None:
        steps.append(ApplyStack(name, "CREATE", body, tuple(sorted(parameters.items())), unchanged=False))
    else:
        status = stack["StackStatus"]
        if status == "ROLLBACK_COMPLETE" or status.endswith(STACK_BUSY):
            raise DeployFailed(
                f"stack {name} is {status}: "
                + ("a failed first create must be removed first - run `ceap destroy -n " + spec.name + "`"
                   if status == "ROLLBACK_COMPLETE" else "another operation is running; wait for it to finish")
            )
        with aws_errors("CloudFormation GetTemplate", name):
            current = (await cfn.get_template(StackName=name, TemplateStage="Original"))["TemplateBody"]
        current_body = current if isinstance(current, str) else json.dumps(current)
        current_parameters = {p["ParameterKey"]: p.get("ParameterValue") for p in stack.get("Parameters", ())}
        unchanged = _same_template(current_body, body) and current_parameters == parameters
        steps.append(ApplyStack(name, "UPDATE", body, tuple(sorted(parameters.items())), unchanged=unchanged))
    return DeployPlan(spec.name, spec.type, account, region, tuple(steps))


def _same_template(current: str, new: str) -> bool:
    try:
        return json.loads(current) == json.loads(new)
    except json.JSONDecodeError:
        return False


def _default_glue_script(relative: str) -> Path:
    import ceap_engine

    return Path(ceap_engine.__file__).resolve().parent.parent / relative
