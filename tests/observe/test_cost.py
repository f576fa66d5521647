"""The cost model against the seed's figures and AWS's billing rules; ``ceap cost`` end to end."""

import json

import pytest

from ceap_engine.errors import InputError
from ceap_engine.observe.cost import (
    Deployment,
    LambdaTimeRule,
    Measurement,
    PriceTable,
    StageMeasure,
    deployment_from_template,
    estimate_cost,
)

from .conftest import json_out

PRICES = PriceTable.load(region="us-east-1")


def line(estimate, service, item_start):
    return next(x for x in estimate.lines if x.service == service and x.item.startswith(item_start))


def batch_measurement(**overrides):
    values = dict(workflow="batch", execution_type="STANDARD", records=1000, transitions=14,
                  stages=[StageMeasure("ETL", "lambda", 1, 0.2), StageMeasure("HeavyETL", "glue", 1, 25.0)],
                  s3_puts=6, s3_gets=5, s3_bytes_written=4_000_000, candidates_written=500)
    values.update(overrides)
    return Measurement(**values)


DEPLOYED = Deployment({"ETL": 512}, glue_workers=2, glue_worker_type="G.1X", s3_expiration_days=7)


def test_the_seeds_glue_figure_2_dpus_1_hour_30_runs_is_60_dpu_hours_at_0_44():
    estimate = estimate_cost(batch_measurement(), DEPLOYED, PRICES, executions_per_day=1, glue_run_seconds=3600)
    glue = line(estimate, "Glue", "job runs")
    assert glue.quantity == pytest.approx(60.0)
    assert glue.unit_price == 0.44
    assert glue.cost == pytest.approx(26.40)
    assert glue.cost_after_free_tier == pytest.approx(26.40)  # Glue has no free tier


def test_a_short_glue_run_is_billed_for_the_one_minute_minimum():
    estimate = estimate_cost(batch_measurement(), DEPLOYED, PRICES, executions_per_day=1, glue_run_seconds=12)
    assert line(estimate, "Glue", "job runs").quantity == pytest.approx(2 * 60 / 3600 * 30)
    measured = estimate_cost(batch_measurement(), DEPLOYED, PRICES, executions_per_day=1)  # 25 s measured locally
    assert line(measured, "Glue", "job runs").quantity == pytest.approx(1.0)


def test_express_is_billed_per_request_and_gb_second_not_per_transition():
    m = Measurement(workflow="realtime", execution_type="EXPRESS", records=1000, transitions=14,
                    stages=[StageMeasure("ETL", "lambda", 1, 0.5), StageMeasure("Score", "lambda", 1, 0.25)],
                    definition_bytes=10_000, max_payload_bytes=2_000)
    estimate = estimate_cost(m, Deployment({"ETL": 1769, "Score": 1769}), PRICES, executions_per_day=1000)
    assert not [x for x in estimate.lines if "transition" in x.item]
    requests = line(estimate, "Step Functions", "Express requests")
    assert requests.quantity == 30_000 and requests.cost == pytest.approx(0.03)
    duration = line(estimate, "Step Functions", "Express duration")
    assert duration.quantity == pytest.approx(0.8 * 64 / 1024 * 30_000)  # 0.75 s -> 0.8 s, 64 MB
    # The seed's way - $1 per million *transitions* - would say 14 x 30,000 / 1e6 = $0.42 and miss the duration.
    assert requests.cost + duration.cost != pytest.approx(14 * 30_000 / 1e6)


def test_standard_counts_every_transition_and_retry_and_shows_the_4000_free():
    estimate = estimate_cost(batch_measurement(transitions=16), DEPLOYED, PRICES, executions_per_day=1)
    transitions = line(estimate, "Step Functions", "Standard")
    assert transitions.quantity == 16 * 30
    assert transitions.free == 480 and transitions.cost_after_free_tier == 0  # all inside the 4,000 free
    busy = estimate_cost(batch_measurement(transitions=16), DEPLOYED, PRICES, executions_per_day=100)
    t = line(busy, "Step Functions", "Standard")
    assert t.free == 4000 and t.cost_after_free_tier == pytest.approx((48_000 - 4000) * 0.000025)


def test_lambda_time_scales_with_memory_and_the_rule_is_stated_and_overridable():
    rule = LambdaTimeRule()
    assert rule.lambda_seconds(1.0, 512) == pytest.approx(1769 / 512)
    assert rule.lambda_seconds(1.0, 3008) == 1.0  # more than one vCPU does not help single-threaded code
    assert LambdaTimeRule(speed=2.0).lambda_seconds(1.0, 1769) == 2.0
    estimate = estimate_cost(batch_measurement(), DEPLOYED, PRICES, executions_per_day=1, rule=LambdaTimeRule(speed=2.0))
    assert any("x 2 (local core vs Lambda vCPU" in note for note in estimate.assumptions)
    gb_s = line(estimate, "Lambda", "duration").quantity
    assert gb_s == pytest.approx(0.2 * 2 * 1769 / 512 * 0.5 * 30)


def test_records_scale_what_grows_with_the_data():
    base = estimate_cost(batch_measurement(), DEPLOYED, PRICES, executions_per_day=1)
    double = estimate_cost(batch_measurement(), DEPLOYED, PRICES, executions_per_day=1, records=2000)
    assert line(double, "Lambda", "duration").quantity == pytest.approx(2 * line(base, "Lambda", "duration").quantity)
    assert line(double, "DynamoDB", "write").quantity == 2 * line(base, "DynamoDB", "write").quantity
    assert line(double, "S3", "storage").quantity == pytest.approx(2 * line(base, "S3", "storage").quantity)
    assert line(double, "Lambda", "requests").quantity == line(base, "Lambda", "requests").quantity
    assert double.records_per_execution == 2000


def test_s3_storage_follows_the_lifecycle():
    estimate = estimate_cost(batch_measurement(s3_bytes_written=1_000_000_000), DEPLOYED, PRICES, executions_per_day=2)
    assert line(estimate, "S3", "storage").quantity == pytest.approx(2 * 7)  # 2 GB a day kept 7 days


def test_map_fan_out_inner_transitions_and_distributed_children():
    m = batch_measurement(transitions=10, map_transitions=40, distributed_children=10, child_type="EXPRESS")
    estimate = estimate_cost(m, DEPLOYED, PRICES, executions_per_day=1, records=2000)
    assert line(estimate, "Step Functions", "Standard").quantity == (10 + 80) * 30
    assert line(estimate, "Step Functions", "Distributed Map").quantity == 20 * 30


def test_price_table_has_date_sources_regions_and_can_be_overridden(tmp_path):
    assert PRICES.compiled and "glue" in PRICES.sources
    with pytest.raises(InputError, match="no prices for region 'mars-1'"):
        PriceTable.load(region="mars-1")
    mine = tmp_path / "prices.json"
    mine.write_text(json.dumps({"compiled": "2030-01-01", "regions": {"eu-west-9": {"glue.dpu_hour": 1.0}}}))
    table = PriceTable.load(mine, region="eu-west-9")
    assert table.price("glue.dpu_hour") == 1.0 and table.compiled == "2030-01-01"
    with pytest.raises(InputError, match="has no 'lambda.request.x86_64'"):
        table.price("lambda.request.x86_64")
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(InputError, match="is not a price table"):
        PriceTable.load(tmp_path / "bad.json")


def test_tiered_express_duration_price():
    first_tier = PRICES.cost("stepfunctions.express.gb_second", 3_600_000)
    assert first_tier == pytest.approx(60.0, rel=1e-5)  # 1,000 GB-hours at $0.06
    assert PRICES.cost("stepfunctions.express.gb_second", 3_600_000 + 3600) == pytest.approx(60.0 + 0.03, rel=1e-3)


def test_deployment_is_read_from_the_template():
    from adapters.aws.template import synthesize

    from ceap_engine.pipeline import builtin
    from ceap_engine.pipeline.names import lambda_function_name

    spec = builtin("batch")
    functions = {s.name: lambda_function_name(spec, s) for s in spec.stages if s.kind == "lambda"}
    deployed = deployment_from_template(synthesize(spec), functions)
    assert set(deployed.lambda_memory_mb) == set(functions)
    assert deployed.lambda_memory_mb["ETL"] == spec.stage("ETL").memory_mb
    assert (deployed.glue_workers, deployed.glue_worker_type, deployed.glue_dpus) == (2, "G.1X", 2.0)
    assert deployed.s3_expiration_days == 7 and deployed.queue_triggered


def test_ceap_cost_realtime_json(run_ceap):
    proc = run_ceap("cost", "--workflow", "realtime", "--executions-per-day", "24", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json_out(proc)
    assert doc["executionsPerMonth"] == 720 and doc["region"] == "us-east-1"
    items = {f"{x['service']} {x['item']}" for x in doc["lines"]}
    assert {"Step Functions Express requests", "Step Functions Express duration", "Lambda requests",
            "EventBridge Pipes requests"} <= items
    assert not any("transitions" in i for i in items)
    lambda_requests = next(x for x in doc["lines"] if x["item"] == "requests" and x["service"] == "Lambda")
    # ETL's Plan, one range call, one merge call and its manifest (the example is one range and one
    # partition group), then each of the four per-record stages: one call on the example's one part,
    # one manifest assembly
    assert lambda_requests["quantity"] == 12 * 720
    assert [s["attempts"] for s in doc["measured"]["stages"]] == [4, 2, 2, 2, 2]
    # Input, ETL's Plan, (Map, Range), (Map, Merge) and Manifest, four (Map, Part, Manifest) triples,
    # Summary: the seed counted 6 for its unfanned machine
    assert doc["measured"]["transitions"] == 20 and doc["measured"]["s3Puts"] >= 5
    assert any("min(1, memory MB / 1769)" in a for a in doc["assumptions"])
    assert doc["total"] >= doc["totalAfterFreeTier"] > 0


@pytest.mark.spark
def test_ceap_cost_batch_table_meets_the_seed_figure(run_ceap):
    proc = run_ceap("cost", "--workflow", "batch", "--glue-run-seconds", "3600", env={"COLUMNS": "200"}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.replace("│", " ").split())
    assert "Glue job runs 60 DPU-hours" in text and "$26.40" in text
    # 15 a run: Input, ETL's Plan, its two Maps and Manifest, HeavyETL, Summary and each later stage's
    # Map and Manifest (a Distributed Map's iterations run as child executions of their own; the seed said 6)
    assert "Step Functions Standard state transitions 450 transitions" in text
    assert "$0.00 " in text.split("Standard state transitions")[1][:120]  # inside the 4,000 free


def test_ceap_cost_bad_region_exits_2(run_ceap):
    proc = run_ceap("cost", "--region", "mars-1", "--format", "json")
    assert proc.returncode == 2
    assert "no prices for region 'mars-1'" in json_out(proc)["details"][0]["message"]
