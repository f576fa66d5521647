"""A monthly AWS estimate of a workflow, built from one measured local run.

Three inputs, each data: a :class:`Measurement` of a local execution (state
transitions from its history, each stage's attempts and wall time, object
store requests and bytes, records read and candidates written), the
:class:`Deployment` it would have on AWS (Lambda memory and architecture, Glue
workers, the S3 lifecycle, whether a queue and Pipe start it - read from the
CloudFormation template), and a :class:`PriceTable` (``prices.json`` in this
package, per region, with its date and sources; or a file of your own).
:func:`estimate_cost` multiplies them out, one :class:`CostLine` per billed
quantity, and lists every assumption it made. Pure: no I/O but reading a table.

Example::

    estimate = estimate_cost(measurement, deployment, PriceTable.load(region="us-east-1"), executions_per_day=24)
    estimate.total, estimate.total_after_free_tier
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import InputError, Problem

__all__ = [
    "CostEstimate", "CostLine", "Deployment", "LambdaTimeRule", "Measurement", "PriceTable", "StageMeasure",
    "deployment_from_template", "estimate_cost",
]

#: DPUs per Glue worker type.
GLUE_DPU_PER_WORKER = {"G.025X": 0.25, "G.1X": 1.0, "G.2X": 2.0, "G.4X": 4.0, "G.8X": 8.0, "Standard": 1.0}
#: Glue 2.0 and later bill per second with this minimum per job run.
GLUE_MINIMUM_SECONDS = 60.0
#: An SQS or Pipes request is billed per 64 KB chunk of payload.
_CHUNK_BYTES = 65_536


@dataclass(frozen=True)
class PriceTable:
    """Unit prices of one region, and the always-free allowances."""

    region: str
    prices: Mapping[str, Any]
    free_tier: Mapping[str, float]
    compiled: str
    sources: Mapping[str, str]
    source_file: str

    @classmethod
    def load(cls, path: Path | None = None, *, region: str = "us-east-1") -> PriceTable:
        """The table shipped in the package, or ``path``; an unknown region or a bad file is an InputError.

        >>> PriceTable.load(region="us-east-1").price("glue.dpu_hour")
        0.44
        """
        if path is None:
            text = resources.files("ceap_engine.observe").joinpath("prices.json").read_text(encoding="utf-8")
            where = "ceap_engine/observe/prices.json"
        else:
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise InputError([Problem("/prices", f"cannot read the price table {path}: {exc.strerror}")], "arguments") from None
            where = str(path)
        try:
            document = json.loads(text)
            regions = document["regions"]
        except (ValueError, KeyError, TypeError):
            raise InputError([Problem("/prices", f"{where} is not a price table: a JSON object with 'regions' "
                                                 "(see ceap_engine/observe/prices.json for the shape)")], "arguments") from None
        if region not in regions:
            raise InputError([Problem("/region", f"no prices for region {region!r} in {where} (it has {', '.join(sorted(regions))}); "
                                                 "copy that file, add the region, and pass it with --prices FILE")], "arguments")
        free = {k: v for k, v in (document.get("free_tier") or {}).items() if isinstance(v, int | float)}
        return cls(region, regions[region], free, str(document.get("compiled", "?")), document.get("sources") or {}, where)

    def price(self, key: str) -> Any:
        try:
            return self.prices[key]
        except KeyError:
            raise InputError([Problem("/prices", f"the price table {self.source_file} has no {key!r} for {self.region}")],
                             "arguments") from None

    def cost(self, key: str, quantity: float, already: float = 0.0) -> float:
        """The price of ``quantity`` units (tiered prices: ``[[up_to, price], ...]``, ``already`` units used before)."""
        price = self.price(key)
        if isinstance(price, int | float):
            return quantity * price
        total, position, remaining = 0.0, already, quantity
        for up_to, unit in price:
            if remaining <= 0:
                break
            room = remaining if up_to is None else max(0.0, up_to - position)
            used = min(room, remaining)
            total += used * unit
            position += used
            remaining -= used
        return total

    def first_price(self, key: str) -> float:
        price = self.price(key)
        return float(price if isinstance(price, int | float) else price[0][1])


@dataclass(frozen=True)
class LambdaTimeRule:
    """How long local stage time takes in Lambda: Lambda's CPU share grows with memory.

    Lambda gives a function one full vCPU at ``full_cpu_mb`` (1,769 MB) and proportionally less
    below, so single-threaded stage code at 512 MB runs about 3.5 times longer than on one full
    core. ``speed`` is how much faster one local core is than one Lambda vCPU (1.0: as fast).

    >>> LambdaTimeRule().lambda_seconds(1.0, 1769)
    1.0
    """

    full_cpu_mb: float = 1769.0
    speed: float = 1.0

    def lambda_seconds(self, local_seconds: float, memory_mb: float) -> float:
        return local_seconds * self.speed / min(1.0, memory_mb / self.full_cpu_mb)

    def describe(self) -> str:
        return (f"Lambda seconds = local seconds x {self.speed:g} (local core vs Lambda vCPU, --lambda-speed) "
                f"/ min(1, memory MB / {self.full_cpu_mb:g}) (Lambda's CPU share scales with memory: one vCPU at "
                f"{self.full_cpu_mb:g} MB)")


@dataclass(frozen=True)
class StageMeasure:
    """One stage of the measured run: how many attempts and how long they took on the wall, locally."""

    name: str
    kind: str  # lambda or glue
    attempts: int
    local_seconds: float


@dataclass(frozen=True)
class Measurement:
    """What one local execution did, as billing counts it."""

    workflow: str
    execution_type: str  # STANDARD or EXPRESS
    records: int  # lines read (ETL processedCount): what --records scales
    transitions: int  # states entered plus retries, outside any Map
    map_transitions: int = 0  # inside Map iterations: grows with the records
    distributed_children: int = 0  # child executions of Distributed Maps
    child_type: str = "STANDARD"
    stages: Sequence[StageMeasure] = ()
    s3_puts: int = 0
    s3_gets: int = 0
    s3_bytes_written: int = 0
    candidates_written: int = 0
    definition_bytes: int = 0
    max_payload_bytes: int = 0
    parallel_or_map_steps: int = 0
    retry_wait_seconds: float = 0.0
    input_bytes: int = 0


@dataclass(frozen=True)
class Deployment:
    """How the workflow runs on AWS, as its template configures it."""

    lambda_memory_mb: Mapping[str, int]
    lambda_arch: str = "x86_64"
    glue_workers: int = 2
    glue_worker_type: str = "G.1X"
    s3_expiration_days: int = 7
    queue_triggered: bool = True

    @property
    def glue_dpus(self) -> float:
        return self.glue_workers * GLUE_DPU_PER_WORKER.get(self.glue_worker_type, 1.0)


def deployment_from_template(template: Mapping[str, Any], stage_functions: Mapping[str, str]) -> Deployment:
    """Read the deployment of a CloudFormation template (``ceap synth``).

    ``stage_functions`` maps each Lambda stage to its function name in the template.
    """
    memory: dict[str, int] = {}
    arch, workers, worker_type, days, queue = "x86_64", 0, "G.1X", 0, False
    by_name = {v: k for k, v in stage_functions.items()}
    for resource in (template.get("Resources") or {}).values():
        kind, props = resource.get("Type"), resource.get("Properties") or {}
        if kind == "AWS::Lambda::Function" and props.get("FunctionName") in by_name:
            memory[by_name[props["FunctionName"]]] = int(props.get("MemorySize", 128))
            arch = (props.get("Architectures") or ["x86_64"])[0]
        elif kind == "AWS::Glue::Job":
            workers += int(props.get("NumberOfWorkers", 0))
            worker_type = props.get("WorkerType", worker_type)
        elif kind == "AWS::S3::Bucket":
            for rule in (props.get("LifecycleConfiguration") or {}).get("Rules") or []:
                if rule.get("Status") == "Enabled" and "ExpirationInDays" in rule:
                    days = max(days, int(rule["ExpirationInDays"]))
        elif kind == "AWS::Pipes::Pipe":
            queue = True
    return Deployment(memory, arch, workers or 2, worker_type, days or 30, queue)


@dataclass(frozen=True)
class CostLine:
    """One billed quantity per month."""

    service: str
    item: str
    quantity: float
    unit: str
    unit_price: float
    cost: float
    free: float = 0.0  # how much of the quantity the always-free tier covers
    cost_after_free_tier: float = 0.0


@dataclass
class CostEstimate:
    region: str
    workflow: str
    executions_per_month: float
    records_per_execution: int
    lines: list[CostLine]
    assumptions: list[str] = field(default_factory=list)
    prices: str = ""

    @property
    def total(self) -> float:
        return sum(line.cost for line in self.lines)

    @property
    def total_after_free_tier(self) -> float:
        return sum(line.cost_after_free_tier for line in self.lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "schemaVersion": 1, "region": self.region, "workflow": self.workflow,
            "executionsPerMonth": self.executions_per_month, "recordsPerExecution": self.records_per_execution,
            "lines": [asdict(line) for line in self.lines],
            "total": round(self.total, 4), "totalAfterFreeTier": round(self.total_after_free_tier, 4),
            "assumptions": self.assumptions, "prices": self.prices,
        }


def estimate_cost(
    m: Measurement,
    deployment: Deployment,
    prices: PriceTable,
    *,
    executions_per_day: float = 1.0,
    records: int | None = None,
    rule: LambdaTimeRule | None = None,
    glue_run_seconds: float | None = None,
    days: int = 30,
) -> CostEstimate:
    """The monthly estimate of running the measured execution ``executions_per_day`` times a day.

    ``records`` per execution scales what grows with the data (stage time, bytes, Map iterations,
    candidate writes) linearly from the measured run; ``glue_run_seconds`` replaces the measured
    local Spark time of a Glue attempt.
    """
    rule = rule or LambdaTimeRule()
    runs = executions_per_day * days
    scale = (records / m.records) if records and m.records else 1.0
    lines: list[CostLine] = []
    notes = [f"a month is {days} days: {runs:,.0f} executions ({executions_per_day:g} a day)",
             f"measured locally: one {m.workflow} execution of {m.records:,} records"
             + (f", scaled x{scale:.3g} to {records:,} records per execution (stage time, bytes, Map items, writes grow linearly)"
                if scale != 1.0 else ""),
             "local time of a Lambda stage: the CPU time its attempts took here (steady on a busy machine); "
             "of a Glue stage: the wall time of its local Spark run",
             rule.describe()]
    free = prices.free_tier

    def add(service: str, item: str, quantity: float, unit: str, key: str, free_key: str | None = None,
            free_scale: float = 1.0) -> None:
        cost = prices.cost(key, quantity)
        allowance = free.get(free_key, 0.0) * free_scale if free_key else 0.0
        covered = min(quantity, allowance)
        lines.append(CostLine(service, item, quantity, unit, prices.first_price(key), cost, covered,
                              prices.cost(key, quantity - covered, covered)))

    arch = deployment.lambda_arch
    lambda_seconds = 0.0  # per execution, in Lambda
    gb_seconds = requests = 0.0
    glue_dpu_hours = 0.0
    for stage in m.stages:
        if stage.kind == "glue":
            per_attempt = glue_run_seconds if glue_run_seconds is not None else stage.local_seconds * scale / max(stage.attempts, 1)
            billed = max(per_attempt, GLUE_MINIMUM_SECONDS)
            glue_dpu_hours += deployment.glue_dpus * billed / 3600 * stage.attempts * runs
            notes.append(f"Glue {stage.name}: {deployment.glue_workers} x {deployment.glue_worker_type} = {deployment.glue_dpus:g} DPU, "
                         f"{per_attempt:,.1f} s a run ({'--glue-run-seconds' if glue_run_seconds is not None else 'measured local Spark time'}), "
                         f"billed per second with a {GLUE_MINIMUM_SECONDS:.0f} s minimum: {billed:,.1f} s x {stage.attempts} attempt(s)")
            continue
        memory = deployment.lambda_memory_mb.get(stage.name, 512)
        seconds = rule.lambda_seconds(stage.local_seconds * scale, memory)
        lambda_seconds += seconds
        gb_seconds += seconds * memory / 1024 * runs
        requests += stage.attempts * runs
    if requests:
        add("Lambda", "requests", requests, "requests", f"lambda.request.{arch}", "lambda.request")
        add("Lambda", f"duration ({arch})", gb_seconds, "GB-seconds", f"lambda.gb_second.{arch}", "lambda.gb_second")
    if glue_dpu_hours:
        add("Glue", "job runs", glue_dpu_hours, "DPU-hours", "glue.dpu_hour")

    inner = m.map_transitions * scale
    if m.execution_type == "EXPRESS":
        add("Step Functions", "Express requests", runs, "requests", "stepfunctions.express.request")
        seconds = math.ceil((lambda_seconds + m.retry_wait_seconds) * 10) / 10  # billed in 100 ms steps
        memory_mb = 50 + (m.definition_bytes + m.max_payload_bytes * max(1, m.parallel_or_map_steps)) / 1_048_576
        billed_mb = 64 * math.ceil(memory_mb / 64)
        add("Step Functions", "Express duration", seconds * billed_mb / 1024 * runs, "GB-seconds",
            "stepfunctions.express.gb_second")
        notes.append(f"Express duration {seconds:.1f} s an execution (its stages' Lambda time and retry waits, rounded up "
                     f"to 100 ms; an inline Map inside adds its items' time) at {billed_mb} MB (50 MB + definition + "
                     "payload, in 64 MB steps); Express has no per-transition charge and no free tier")
    else:
        transitions = (m.transitions + inner) * runs
        add("Step Functions", "Standard state transitions", transitions, "transitions",
            "stepfunctions.standard.transition", "stepfunctions.standard.transition")
        notes.append(f"{m.transitions + inner:,.0f} state transitions an execution (every state entered, plus each retry)")
    if m.distributed_children:
        children = m.distributed_children * scale * runs
        if m.child_type == "EXPRESS":
            add("Step Functions", "Distributed Map child executions (Express)", children, "requests",
                "stepfunctions.express.request")
        notes.append(f"{m.distributed_children * scale:,.0f} Distributed Map child executions an execution, billed as "
                     f"{m.child_type} workflows")

    add("S3", "PUT requests", m.s3_puts * runs, "requests", "s3.put_request")
    add("S3", "GET requests", m.s3_gets * runs, "requests", "s3.get_request")
    stored_gb = m.s3_bytes_written * scale * executions_per_day * deployment.s3_expiration_days / 1e9
    add("S3", f"storage ({deployment.s3_expiration_days}-day lifecycle)", stored_gb, "GB-months", "s3.gb_month")
    notes.append(f"S3 holds {deployment.s3_expiration_days} days of execution data at a time (the bucket's lifecycle "
                 f"rule): {m.s3_bytes_written * scale / 1e6:,.2f} MB an execution; the 12-month S3 free tier is left out")
    if m.candidates_written:
        add("DynamoDB", "write request units", m.candidates_written * scale * runs, "WRU", "dynamodb.write_request_unit")
        notes.append("one DynamoDB write request unit per stored candidate (items up to 1 KB), on-demand capacity")
    if deployment.queue_triggered:
        chunks = max(1, math.ceil(m.input_bytes / _CHUNK_BYTES))
        add("SQS", "requests (send, receive, delete)", 3 * chunks * runs, "requests", "sqs.request", "sqs.request")
        add("EventBridge Pipes", "requests", chunks * runs, "requests", "pipes.request")
        notes.append("each execution starts from one queue message: SQS send + receive + delete, one Pipe request "
                     "(per 64 KB); the Pipe's empty polls of an idle queue are not counted")
    notes.append(f"prices: {prices.region} from {prices.source_file} (compiled {prices.compiled}); free tier: the "
                 "always-free monthly allowances, shared with everything else in the account")
    return CostEstimate(prices.region, m.workflow, runs, int(m.records * scale), lines, notes,
                        f"{prices.source_file} ({prices.compiled})")
