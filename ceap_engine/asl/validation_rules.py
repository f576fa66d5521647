"""AWS validation rules beyond the field-by-field schema (issue 14, part 2).

Each function returns ``(JSON pointer, message, code)`` triples; the checker in
:mod:`ceap_engine.asl.validation` turns them into problems. The wording follows
what ValidateStateMachineDefinition and CreateStateMachine answer.

Example::

    duplicate_state_names({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}})  # []
"""

from __future__ import annotations

from typing import Any

from .intrinsics import IntrinsicSyntaxError, is_intrinsic, parse_intrinsic

__all__ = [
    "OPTIMIZED_INTEGRATIONS",
    "STRING_INTRINSICS",
    "credentials_problems",
    "duplicate_state_names",
    "exclusive_map_fields",
    "fail_path_problems",
    "integration_problems",
]

Found = list[tuple[str, str, str]]

#: The optimized integrations (``arn:aws:states:::<service>:<action>``) and their actions.
#: A service not listed here is not judged (an AWS SDK integration, or one newer than this table).
OPTIMIZED_INTEGRATIONS: dict[str, frozenset[str]] = {
    "lambda": frozenset({"invoke"}),
    "dynamodb": frozenset({"getItem", "putItem", "updateItem", "deleteItem"}),
    "sns": frozenset({"publish"}),
    "sqs": frozenset({"sendMessage"}),
    "events": frozenset({"putEvents"}),
    "states": frozenset({"startExecution"}),
    "glue": frozenset({"startJobRun"}),
    "databrew": frozenset({"startJobRun"}),
    "ecs": frozenset({"runTask"}),
    "batch": frozenset({"submitJob"}),
    "athena": frozenset({"startQueryExecution", "stopQueryExecution", "getQueryExecution", "getQueryResults"}),
    "apigateway": frozenset({"invoke"}),
    "http": frozenset({"invoke"}),
    "bedrock": frozenset({"invokeModel", "createModelCustomizationJob"}),
    "codebuild": frozenset({"startBuild", "stopBuild", "batchDeleteBuilds", "batchGetReports", "startBuildBatch",
                            "stopBuildBatch", "retryBuildBatch", "deleteBuildBatch"}),
    "eks": frozenset({"createCluster", "deleteCluster", "createFargateProfile", "deleteFargateProfile",
                      "createNodegroup", "deleteNodegroup", "runJob", "call"}),
    "elasticmapreduce": frozenset({"createCluster", "terminateCluster", "addStep", "cancelStep",
                                   "setClusterTerminationProtection", "modifyInstanceFleetByName",
                                   "modifyInstanceGroupByName"}),
    "emr-containers": frozenset({"startJobRun", "createVirtualCluster", "deleteVirtualCluster"}),
    "emr-serverless": frozenset({"createApplication", "startApplication", "stopApplication", "deleteApplication",
                                 "startJobRun", "cancelJobRun"}),
    "sagemaker": frozenset({"createEndpoint", "createEndpointConfig", "createHyperParameterTuningJob",
                            "createLabelingJob", "createModel", "createProcessingJob", "createTrainingJob",
                            "createTransformJob", "updateEndpoint"}),
    "mediaconvert": frozenset({"createJob"}),
    "s3": frozenset({"getObject", "listObjectsV2", "putObject"}),  # Distributed Map ItemReader/ResultWriter
}

#: The intrinsic functions that return a string: the only ones a Fail state's ErrorPath/CausePath may call.
STRING_INTRINSICS = frozenset({
    "States.Format", "States.JsonToString", "States.ArrayGetItem", "States.Base64Encode", "States.Base64Decode",
    "States.Hash", "States.UUID",
})


def duplicate_state_names(definition: Any) -> Found:
    """Every state name used a second time anywhere in the machine (nested levels included).

    >>> inner = {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}
    >>> [f[2] for f in duplicate_state_names({"StartAt": "A", "States": {"A": {
    ...     "Type": "Parallel", "Branches": [inner], "End": True}}})]
    ['DUPLICATE_STATE_NAME']
    """
    found: Found = []
    seen: dict[str, str] = {}
    stack: list[tuple[Any, str]] = [(definition, "")]
    while stack:
        machine, at = stack.pop(0)
        states = machine.get("States") if isinstance(machine, dict) else None
        if not isinstance(states, dict):
            continue
        for name, state in states.items():
            here = f"{at}/States/{name}"
            if name in seen:
                found.append((here, f"The state name '{name}' is already used at {seen[name]}: every state of a "
                              "machine needs a name of its own, nested branches and Map processors included",
                              "DUPLICATE_STATE_NAME"))
            else:
                seen[name] = here
            if not isinstance(state, dict):
                continue
            for i, branch in enumerate(state.get("Branches") or [] if isinstance(state.get("Branches"), list) else []):
                stack.append((branch, f"{here}/Branches/{i}"))
            for key in ("ItemProcessor", "Iterator"):
                if isinstance(state.get(key), dict):
                    stack.append((state[key], f"{here}/{key}"))
    return found


def credentials_problems(state: dict[str, Any], at: str) -> Found:
    """A Task's ``Credentials`` must name the role to assume (``RoleArn`` or ``RoleArn.$``)."""
    if "Credentials" not in state:
        return []
    credentials = state["Credentials"]
    where = f"{at}/Credentials"
    if not isinstance(credentials, dict):
        return [(where, "The field 'Credentials' must be an object with a 'RoleArn'", "SCHEMA_VALIDATION_FAILED")]
    if "RoleArn" not in credentials and "RoleArn.$" not in credentials:
        return [(where, "The field 'RoleArn' is required but was missing", "SCHEMA_VALIDATION_FAILED")]
    return []


def integration_problems(resource: str, at: str) -> Found:
    """An optimized integration whose action the service does not have (``dynamodb:query``)."""
    prefix = "arn:aws:states:::"
    if not resource.startswith(prefix):
        return []
    service, _, action = resource[len(prefix):].partition(":")
    actions = OPTIMIZED_INTEGRATIONS.get(service)
    action = action.split(".", 1)[0]
    if actions is None or action in actions:
        return []
    return [(at, f"The resource provided {resource} is not recognized. The value is not a valid resource ARN, "
             f"or the resource is not available in this region (the {service} integration offers: "
             f"{', '.join(sorted(actions))}; other actions go through arn:aws:states:::aws-sdk:{service}:<action>)",
             "SCHEMA_VALIDATION_FAILED")]


#: (object, field, field given as a path) pairs a Distributed Map may set only one of.
_EXCLUSIVE = (
    ("ItemReader", "ReaderConfig", "MaxItems", "MaxItemsPath"),
    ("ItemBatcher", None, "MaxItemsPerBatch", "MaxItemsPerBatchPath"),
    ("ItemBatcher", None, "MaxInputBytesPerBatch", "MaxInputBytesPerBatchPath"),
)


def exclusive_map_fields(state: dict[str, Any], at: str) -> Found:
    """Distributed Map settings given both as a value and as a path."""
    found: Found = []
    for outer, inner, literal, path in _EXCLUSIVE:
        node = state.get(outer)
        where = f"{at}/{outer}"
        if inner is not None and isinstance(node, dict):
            node, where = node.get(inner), f"{where}/{inner}"
        if isinstance(node, dict) and literal in node and path in node:
            found.append((where, f"The fields '{literal}' and '{path}' are mutually exclusive", "SCHEMA_VALIDATION_FAILED"))
    return found


def fail_path_problems(value: Any, at: str, field: str) -> Found:
    """A Fail state's ErrorPath/CausePath may only call an intrinsic that returns a string."""
    if not (isinstance(value, str) and is_intrinsic(value)):
        return []
    try:
        parse_intrinsic(value)
    except IntrinsicSyntaxError:
        return []  # reported by the path check
    name = value.split("(", 1)[0].strip()  # the outermost call decides the result's type
    if name in STRING_INTRINSICS:
        return []
    return [(at, f"The value for the field '{field}' must be a valid JSONPath or a valid intrinsic function call: "
             f"{name} does not return a string (use one of {', '.join(sorted(STRING_INTRINSICS))})",
             "SCHEMA_VALIDATION_FAILED")]
