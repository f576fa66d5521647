"""Fixtures of the stage tests: a stage context on in-memory stores and a virtual clock.

``make_context("Filter", config={...})`` builds a :class:`StageContext` whose
object store, candidate store and clock are the fixtures of the same test,
so a test can look at what a stage wrote.
"""

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from ceap_engine.pipeline.stage import StageContext, split_lines
from ceap_engine.ports import CandidateRecord, CandidateStore, PutResult
from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.storage.memory import MemoryCandidateStore, MemoryObjectStore
from stages.domain import (
    CamelModel,
    Candidate,
    CandidateAttributes,
    CandidateMetadata,
    Subject,
    candidate_context,
    timing_window_after,
)

BUCKET = "ceap-test"
EXECUTION_ID = "exec-1"
#: The virtual "now" of every stage test: the morning after the example date range.
NOW = datetime(2025, 4, 5, 8, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(NOW)


@pytest.fixture
def objects() -> MemoryObjectStore:
    return MemoryObjectStore()


@pytest.fixture
def candidates() -> MemoryCandidateStore:
    return MemoryCandidateStore()


@pytest.fixture
def make_context(objects, candidates, clock) -> Callable[..., StageContext]:
    def make(
        stage: str,
        config: dict[str, Any] | None = None,
        *,
        execution_id: str = EXECUTION_ID,
        candidate_store: CandidateStore | None | str = "default",
    ) -> StageContext:
        return StageContext(
            execution_id=execution_id,
            stage=stage,
            bucket=BUCKET,
            objects=objects,
            candidates=candidates if candidate_store == "default" else candidate_store,
            clock=clock,
            config=config or {},
        )

    return make


class RefusingCandidateStore:
    """A candidate store that reports some writes as failed (as DynamoDB reports unprocessed items).

    ``refuse(record)`` returns the failure reason, or ``None`` to store the
    record in ``inner``.
    """

    def __init__(self, inner: CandidateStore, refuse: Callable[[CandidateRecord], str | None]) -> None:
        self.inner = inner
        self.refuse = refuse
        self.put_calls = 0

    async def put_batch(self, records: Sequence[CandidateRecord], *, expected_versions=None) -> PutResult:
        self.put_calls += 1
        refused = [((r.pk, r.sk), reason) for r in records if (reason := self.refuse(r)) is not None]
        result = await self.inner.put_batch([r for r in records if self.refuse(r) is None],
                                            expected_versions=expected_versions)
        return PutResult(stored=result.stored, failed=result.failed + tuple(refused), conflicts=result.conflicts)

    async def get(self, pk: str, sk: str) -> CandidateRecord | None:
        return await self.inner.get(pk, sk)

    async def query(self, program_id, channel=None, *, marketplace=None, limit=None):
        return await self.inner.query(program_id, channel, marketplace=marketplace, limit=limit)

    async def delete(self, pk: str, sk: str) -> None:
        await self.inner.delete(pk, sk)

    async def claim_engagements(self, keys, execution_id):
        return await self.inner.claim_engagements(keys, execution_id)


def through_json(model: type[CamelModel], output: CamelModel) -> Any:
    """``output`` as the runtime hands it to the next stage: dumped by alias, sent as JSON text, validated."""
    return model.model_validate(json.loads(json.dumps(output.model_dump(mode="json", by_alias=True))))


def make_candidate(
    customer_id: str = "C1",
    subject_id: str = "B01",
    *,
    program_id: str = "reviews",
    marketplace: str = "US",
    **attributes: Any,
) -> Candidate:
    """A candidate that passes every default filter; ``attributes`` override its attributes."""
    delivered = datetime(2025, 3, 28, 12, tzinfo=UTC)
    values: dict[str, Any] = {
        "event_date": datetime(2025, 3, 26, 9, tzinfo=UTC),
        "delivery_date": delivered,
        "timing_window": timing_window_after(delivered),
        "order_value": 42.5,
        "currency": "USD",
        "media_eligible": True,
        "channel_eligibility": {"email": True, "push": False, "sms": False, "inApp": False},
        "customer_trust_score": 0.8,
        "review_quality_score": 0.7,
        "prior_review_count": 3,
        "order_count": 1,
        "order_ids": ["O1"],
        "source_event_ids": ["e1"],
    }
    values.update(attributes)
    return Candidate(
        customer_id=customer_id,
        context=candidate_context(program_id, marketplace),
        subject=Subject(type="PRODUCT", id=subject_id, metadata={"category": "Books"}),
        attributes=CandidateAttributes(**values),
        metadata=CandidateMetadata(created_at=NOW, updated_at=NOW, version=1, workflow_execution_id=EXECUTION_ID),
    )


def order_event(**overrides: Any) -> dict[str, Any]:
    """One valid source record (JSON form) in the example date range; ``overrides`` replace fields."""
    event = {
        "eventId": "e1",
        "customerId": "C1",
        "orderId": "O1",
        "marketplace": "US",
        "productId": "B01",
        "category": "Books",
        "orderDate": "2025-03-20T10:00:00Z",
        "deliveryDate": "2025-03-22T15:00:00Z",
        "orderValue": 20.0,
        "currency": "USD",
        "quantity": 1,
        "channelOptIns": {"email": True, "push": False},
        "customerTrustScore": 0.8,
        "fraudFlag": False,
        "reviewQualityScore": 0.7,
        "priorReviewCount": 2,
        "mediaEligible": False,
    }
    event.update(overrides)
    return event


class EtlRun:
    """ETL's output with the candidates and errors it wrote to its parts, read back as the next stage reads them."""

    def __init__(self, output: Any, candidates: list[Candidate], errors: list[Any], parts: dict[str, Any]) -> None:
        self.output, self.candidates, self.errors, self.parts = output, candidates, errors, parts

    def __getattr__(self, name: str) -> Any:
        return getattr(self.output, name)

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        return {**self.output.model_dump(**kwargs), "candidates": [c.model_dump(**kwargs) for c in self.candidates],
                "errors": [e.model_dump(**kwargs) for e in self.errors]}

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


async def run_etl(input: Any, context: StageContext) -> EtlRun:
    """Run ETL and read back every part it wrote (candidates and errors, in part order)."""
    from stages import etl

    output = await etl.run(input, context)
    parts = context.written_parts()
    candidates, errors = [], []
    for part in parts.get("candidates", []):
        for line in split_lines(await context.objects.get(context.bucket, part.key)):
            candidates.append(Candidate.model_validate_json(line))
    for part in parts.get("errors", []):
        for line in split_lines(await context.objects.get(context.bucket, part.key)):
            errors.append(etl.RecordError.model_validate_json(line))
    errors.sort(key=lambda e: e.line)
    return EtlRun(output, candidates, errors, parts)
