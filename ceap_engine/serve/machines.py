"""State machines, their versions and aliases, activities and tags: the resources of the API.

Every resource is a JSON document in the journal (``kind`` + ARN), so they outlive a restart;
each state machine revision's definition is kept (kind ``revision``) because an execution
answers DescribeStateMachineForExecution with the definition it started on, and resumes on it.
Compiled definitions are cached per revision.

Example::

    machines = StateMachines(journal, default_engine, region="us-east-1", account="123456789012")
    doc = machines.create({"name": "m", "definition": "...", "roleArn": "arn:aws:iam::123456789012:role/r"})
    target = machines.resolve(doc["stateMachineArn"])
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from ceap_engine.asl.definition import (
    StateMachine,
    compile_definition,
    load_definition,
    validate_definition,
)
from ceap_engine.asl.interpreter import EXPRESS, STANDARD, Engine
from ceap_engine.ports import Clock, ExecutionJournal
from ceap_engine.serve.callbacks import with_task_tokens
from ceap_engine.serve.errors import ServiceError

__all__ = ["MachineTarget", "StateMachines", "check_name", "definition_error"]

_NAME_FORBIDDEN = re.compile(r'[\s<>{}\[\]?*"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]')
_ALIAS_RE = re.compile(r"^(?=.*[a-zA-Z_\-.])[a-zA-Z0-9_\-.]+$")


def check_name(name: str, what: str = "Name") -> str:
    """AWS's name rule for state machines, executions and activities (``InvalidName`` otherwise)."""
    if not 1 <= len(name) <= 80 or _NAME_FORBIDDEN.search(name):
        raise ServiceError("InvalidName", f"Invalid {what}: '{name}'")
    return name


def definition_error(problems: list[Any]) -> ServiceError:
    return ServiceError("InvalidDefinition", "Invalid State Machine Definition: '" + ", ".join(str(p) for p in problems) + "'")


@dataclass
class MachineTarget:
    """What an ARN given to StartExecution names: a machine at one revision (maybe via version/alias)."""

    machine: dict[str, Any]  # the state machine's document
    revision_id: str
    definition: str
    compiled: StateMachine
    engine: Engine
    version_arn: str | None = None
    alias_arn: str | None = None

    @property
    def arn(self) -> str:
        return self.machine["stateMachineArn"]

    @property
    def name(self) -> str:
        return self.machine["name"]

    @property
    def type(self) -> str:
        return self.machine["type"]


class StateMachines:
    """The state machines, versions, aliases and activities of one endpoint."""

    def __init__(self, journal: ExecutionJournal, engine: Engine, clock: Clock, *, region: str, account: str) -> None:
        self.journal = journal
        self.engine = engine
        self.clock = clock
        self.region = region
        self.account = account
        self.machines: dict[str, dict[str, Any]] = {d["stateMachineArn"]: d for d in journal.resources("stateMachine")}
        self.versions: dict[str, dict[str, Any]] = {d["stateMachineVersionArn"]: d for d in journal.resources("version")}
        self.aliases: dict[str, dict[str, Any]] = {d["stateMachineAliasArn"]: d for d in journal.resources("alias")}
        self.activities: dict[str, dict[str, Any]] = {d["activityArn"]: d for d in journal.resources("activity")}
        self._revisions: dict[str, str] = {}
        self._compiled: dict[str, StateMachine] = {}
        #: Machines registered by the server itself (ceap's workflows), with their own engines.
        self.engines: dict[str, Engine] = {}
        #: What a machine ARN resolved to, while that machine's document is the same object.
        self._targets: dict[str, MachineTarget] = {}

    # -- ARNs ----------------------------------------------------------------------
    def arn(self, kind: str, name: str) -> str:
        return f"arn:aws:states:{self.region}:{self.account}:{kind}:{name}"

    def check_arn(self, arn: str, kinds: tuple[str, ...] = ("stateMachine",)) -> list[str]:
        parts = arn.split(":") if isinstance(arn, str) else []
        if len(parts) < 7 or parts[0] != "arn" or parts[2] != "states" or parts[5] not in kinds:
            raise ServiceError("InvalidArn", f"Invalid Arn: 'Resource type not valid in this context: {parts[5] if len(parts) > 5 else arn}'"
                               if len(parts) > 5 and parts[0] == "arn" else f"Invalid Arn: '{arn}'")
        return parts

    # -- definitions ---------------------------------------------------------------
    def _store_revision(self, definition: str) -> str:
        revision = str(uuid.uuid4())
        self.journal.put_resource("revision", revision, {"revisionId": revision, "definition": definition})
        self._revisions[revision] = definition
        return revision

    def revision(self, revision_id: str) -> str:
        text = self._revisions.get(revision_id)
        if text is None:
            docs = {d["revisionId"]: d["definition"] for d in self.journal.resources("revision")}
            self._revisions.update(docs)
            text = docs[revision_id]
        return text

    def compiled(self, revision_id: str) -> StateMachine:
        machine = self._compiled.get(revision_id)
        if machine is None:
            text = self.revision(revision_id)
            load_definition(text)  # validated as written, then compiled with callback tokens in place
            machine = self._compiled[revision_id] = compile_definition(with_task_tokens(json.loads(text)))
        return machine

    @staticmethod
    def validate(definition: str, machine_type: str) -> None:
        problems = validate_definition(definition)
        if problems:
            raise definition_error(problems)
        if machine_type == EXPRESS:
            express = load_definition(definition).express_problems
            if express:
                raise definition_error(list(express))

    # -- state machines ------------------------------------------------------------
    def create(self, body: dict[str, Any], *, engine: Engine | None = None) -> dict[str, Any]:
        name = check_name(body["name"])
        machine_type = body.get("type", STANDARD)
        definition = body["definition"]
        self.validate(definition, machine_type)
        _check_role(body["roleArn"])
        arn = self.arn("stateMachine", name)
        existing = self.machines.get(arn)
        if existing is not None:
            if (self.revision(existing["revisionId"]) == definition and existing["roleArn"] == body["roleArn"]
                    and existing["type"] == machine_type):
                return existing  # CreateStateMachine is idempotent for the same name and parameters
            raise ServiceError("StateMachineAlreadyExists", f"State Machine Already Exists: '{arn}'")
        doc = {
            "stateMachineArn": arn, "name": name, "type": machine_type, "roleArn": body["roleArn"],
            "creationDate": self.clock.time(), "revisionId": self._store_revision(definition),
            "description": body.get("description", ""), "status": "ACTIVE",
            "loggingConfiguration": body.get("loggingConfiguration", {"level": "OFF", "includeExecutionData": False}),
            "tracingConfiguration": body.get("tracingConfiguration", {"enabled": False}),
            "tags": {t["key"]: t.get("value", "") for t in body.get("tags", [])}, "nextVersion": 1,
        }
        self._put_machine(doc)
        if engine is not None:
            self.engines[arn] = engine
        if body.get("publish"):
            doc["stateMachineVersionArn"] = self.publish(arn, body.get("versionDescription", ""))["stateMachineVersionArn"]
        return doc

    def _put_machine(self, doc: dict[str, Any]) -> None:
        self.machines[doc["stateMachineArn"]] = doc
        self.journal.put_resource("stateMachine", doc["stateMachineArn"], {k: v for k, v in doc.items() if k != "stateMachineVersionArn"})

    def machine(self, arn: str) -> dict[str, Any]:
        self.check_arn(arn)
        doc = self.machines.get(arn)
        if doc is None:
            raise ServiceError("StateMachineDoesNotExist", f"State Machine Does Not Exist: '{arn}'")
        return doc

    def update(self, body: dict[str, Any]) -> dict[str, Any]:
        arn = body["stateMachineArn"]
        doc = dict(self.machine(arn))
        if "definition" not in body and "roleArn" not in body and "loggingConfiguration" not in body \
                and "tracingConfiguration" not in body:
            raise ServiceError("MissingRequiredParameter", "Either the definition, the role ARN, the LoggingConfiguration, "
                               "or the TracingConfiguration must be specified")
        if "definition" in body:
            self.validate(body["definition"], doc["type"])
            if body["definition"] != self.revision(doc["revisionId"]):
                doc["revisionId"] = self._store_revision(body["definition"])
        if "roleArn" in body:
            _check_role(body["roleArn"])
            doc["roleArn"] = body["roleArn"]
        for key in ("loggingConfiguration", "tracingConfiguration"):
            if key in body:
                doc[key] = body[key]
        doc["updateDate"] = self.clock.time()
        self._put_machine(doc)
        out = {"updateDate": doc["updateDate"], "revisionId": doc["revisionId"]}
        if body.get("publish"):
            out["stateMachineVersionArn"] = self.publish(arn, body.get("versionDescription", ""))["stateMachineVersionArn"]
        return out

    def delete(self, arn: str) -> None:
        self.check_arn(arn, ("stateMachine",))
        parts = arn.split(":")
        if len(parts) == 8:  # a version or an alias ARN: AWS deletes that one
            if arn in self.versions:
                self.delete_version(arn)
            else:
                self.delete_alias(arn)
            return
        if arn in self.machines:
            for version in [v for v, d in self.versions.items() if d["stateMachineArn"] == arn]:
                self.versions.pop(version)
                self.journal.delete_resource("version", version)
            for alias in [a for a in self.aliases if a.rsplit(":", 1)[0] == arn]:
                self.aliases.pop(alias)
                self.journal.delete_resource("alias", alias)
            self.machines.pop(arn)
            self.journal.delete_resource("stateMachine", arn)
            self.engines.pop(arn, None)
            self._targets.pop(arn, None)

    # -- versions and aliases -------------------------------------------------------
    def publish(self, arn: str, description: str = "", revision_id: str | None = None) -> dict[str, Any]:
        doc = self.machine(arn)
        if revision_id is not None and revision_id != doc["revisionId"]:
            raise ServiceError("ConflictException", f"Failed to publish the state machine version: the revision ID "
                               f"{revision_id!r} is not the current one ({doc['revisionId']})")
        for version in self.versions.values():  # publishing an unchanged revision returns its version
            if version["stateMachineArn"] == arn and version["revisionId"] == doc["revisionId"]:
                return {"creationDate": version["creationDate"], "stateMachineVersionArn": version["stateMachineVersionArn"]}
        number = doc["nextVersion"]
        version_arn = f"{arn}:{number}"
        version = {"stateMachineVersionArn": version_arn, "stateMachineArn": arn, "revisionId": doc["revisionId"],
                   "roleArn": doc["roleArn"], "description": description, "creationDate": self.clock.time()}
        self.versions[version_arn] = version
        self.journal.put_resource("version", version_arn, version)
        self._put_machine(doc | {"nextVersion": number + 1})
        return {"creationDate": version["creationDate"], "stateMachineVersionArn": version_arn}

    def version(self, arn: str) -> dict[str, Any]:
        doc = self.versions.get(arn)
        if doc is None:
            raise ServiceError("ResourceNotFound", f"State Machine Version Does Not Exist: '{arn}'")
        return doc

    def delete_version(self, arn: str) -> None:
        if arn not in self.versions:
            return
        for alias in self.aliases.values():
            if any(r["stateMachineVersionArn"] == arn for r in alias["routingConfiguration"]):
                raise ServiceError("ConflictException", f"Version {arn} is referenced by the alias {alias['stateMachineAliasArn']}")
        self.versions.pop(arn)
        self.journal.delete_resource("version", arn)

    def put_alias(self, body: dict[str, Any], *, update: bool) -> dict[str, Any]:
        routing = body.get("routingConfiguration")
        if update:
            alias = dict(self.alias(body["stateMachineAliasArn"]))
        else:
            name = body["name"]
            if not _ALIAS_RE.match(name):
                raise ServiceError("ValidationException", f"Invalid alias name: '{name}'")
            machine_arn = None
            for route in routing or []:
                machine_arn = self.version(route["stateMachineVersionArn"])["stateMachineArn"]
            alias_arn = f"{machine_arn}:{name}"
            if alias_arn in self.aliases:
                raise ServiceError("ConflictException", f"Alias already exists: '{alias_arn}'")
            alias = {"stateMachineAliasArn": alias_arn, "name": name, "creationDate": self.clock.time()}
        if routing is not None:
            machines = {self.version(r["stateMachineVersionArn"])["stateMachineArn"] for r in routing}
            if len(machines) != 1 or sum(r["weight"] for r in routing) != 100:
                raise ServiceError("ValidationException", "The routing configuration must name versions of one state "
                                   "machine with weights that add up to 100")
            alias["routingConfiguration"] = routing
        if "description" in body:
            alias["description"] = body["description"]
        alias["updateDate"] = self.clock.time()
        self.aliases[alias["stateMachineAliasArn"]] = alias
        self.journal.put_resource("alias", alias["stateMachineAliasArn"], alias)
        return alias

    def alias(self, arn: str) -> dict[str, Any]:
        doc = self.aliases.get(arn)
        if doc is None:
            raise ServiceError("ResourceNotFound", f"Resource not found: '{arn}'")
        return doc

    def delete_alias(self, arn: str) -> None:
        if self.aliases.pop(arn, None) is not None:
            self.journal.delete_resource("alias", arn)

    # -- what StartExecution runs ---------------------------------------------------
    def resolve(self, arn: str, rng: Any = None) -> MachineTarget:
        """The machine, revision and engine an ARN (machine, version or alias) starts."""
        target = self._targets.get(arn)
        # Create and Update put a new document, Delete removes it: the same one is the same target.
        if target is not None and self.machines.get(arn) is target.machine \
                and self.engines.get(arn, self.engine) is target.engine:
            return target
        parts = self.check_arn(arn)
        version_arn = alias_arn = None
        if len(parts) == 8:
            if parts[7].isdigit():
                version = self.version(arn)
            else:
                alias = self.alias(arn)
                alias_arn = arn
                routes = alias["routingConfiguration"]
                pick = (rng.random() if rng is not None else 0.0) * 100
                chosen = routes[-1]
                for route in routes:
                    pick -= route["weight"]
                    if pick < 0:
                        chosen = route
                        break
                version = self.version(chosen["stateMachineVersionArn"])
            version_arn = version["stateMachineVersionArn"]
            doc = self.machine(version["stateMachineArn"])
            revision_id = version["revisionId"]
        else:
            doc = self.machine(arn)
            revision_id = doc["revisionId"]
        target = MachineTarget(doc, revision_id, self.revision(revision_id), self.compiled(revision_id),
                               self.engines.get(doc["stateMachineArn"], self.engine), version_arn, alias_arn)
        if len(parts) == 7:
            self._targets[arn] = target
        return target

    def target_of_revision(self, machine_arn: str, revision_id: str) -> MachineTarget:
        doc = self.machine(machine_arn)
        return MachineTarget(doc, revision_id, self.revision(revision_id), self.compiled(revision_id),
                             self.engines.get(machine_arn, self.engine))

    # -- activities ---------------------------------------------------------------
    def create_activity(self, body: dict[str, Any]) -> dict[str, Any]:
        name = check_name(body["name"])
        arn = self.arn("activity", name)
        doc = self.activities.get(arn)
        if doc is None:
            doc = {"activityArn": arn, "name": name, "creationDate": self.clock.time(),
                   "tags": {t["key"]: t.get("value", "") for t in body.get("tags", [])}}
            self.activities[arn] = doc
            self.journal.put_resource("activity", arn, doc)
        return doc

    def activity(self, arn: str) -> dict[str, Any]:
        self.check_arn(arn, ("activity",))
        doc = self.activities.get(arn)
        if doc is None:
            raise ServiceError("ActivityDoesNotExist", f"Activity Does Not Exist: '{arn}'")
        return doc

    def delete_activity(self, arn: str) -> None:
        self.check_arn(arn, ("activity",))
        if self.activities.pop(arn, None) is not None:
            self.journal.delete_resource("activity", arn)

    # -- tags ------------------------------------------------------------------------
    def _tagged(self, arn: str) -> tuple[str, dict[str, Any]]:
        if arn in self.machines:
            return "stateMachine", self.machines[arn]
        if arn in self.activities:
            return "activity", self.activities[arn]
        self.check_arn(arn, ("stateMachine", "activity"))
        raise ServiceError("ResourceNotFound", f"Resource not found: '{arn}'")

    def tags(self, arn: str) -> dict[str, str]:
        return dict(self._tagged(arn)[1].get("tags", {}))

    def set_tags(self, arn: str, tags: dict[str, str]) -> None:
        kind, doc = self._tagged(arn)
        if len(tags) > 50:
            raise ServiceError("TooManyTags", f"Too many tags: a resource has at most 50, this would have {len(tags)}")
        doc["tags"] = tags
        if kind == "stateMachine":
            self._put_machine(doc)
        else:
            self.journal.put_resource("activity", arn, doc)


def _check_role(role_arn: str) -> None:
    if not re.match(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$", role_arn):
        raise ServiceError("InvalidArn", f"Invalid Role Arn: '{role_arn}'")


def definition_text(definition: Any) -> str:
    return definition if isinstance(definition, str) else json.dumps(definition)
