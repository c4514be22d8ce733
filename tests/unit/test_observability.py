"""Observability without Ray: metric specs and recording, the engine's report, the
ingress's request record (log line, overhead, trace spans across both sides)."""

from __future__ import annotations

import json
import logging
import time
from types import SimpleNamespace

import pytest

from deployments.observability import metrics, tracing
from deployments.observability.engine_side import (
    REPORT_KEY,
    EngineReport,
    EngineRequest,
    RequestStatsProbe,
)
from deployments.observability.request import TRACE_ID_HEADER, RequestObservation
from deployments.observability.request_log import logger as request_logger


class FakeMetric:
    def __init__(self):
        self.calls: list[tuple[str, float, dict]] = []

    def inc(self, value, tags):
        self.calls.append(("inc", value, tags))

    def observe(self, value, tags):
        self.calls.append(("observe", value, tags))

    def set(self, value, tags):
        self.calls.append(("set", value, tags))


@pytest.fixture()
def recorded(monkeypatch) -> dict[str, FakeMetric]:
    fakes: dict[str, FakeMetric] = {}
    monkeypatch.setattr(metrics, "ray_metric", lambda spec: fakes.setdefault(spec.name, FakeMetric()))
    return fakes


def finished_stats(request_id: str, prompt: int, generated: int, **times) -> SimpleNamespace:
    return SimpleNamespace(
        request_id=request_id, num_prompt_tokens=prompt, num_generation_tokens=generated,
        mean_time_per_output_token=times.get("tpot", 0.02), queued_time=times.get("queued", 0.1),
        prefill_time=times.get("prefill", 0.2), decode_time=times.get("decode", 0.3),
    )  # fmt: skip


def iteration(*finished, hits=0, queries=0) -> tuple:
    prefix = SimpleNamespace(hits=hits, queries=queries)
    scheduler = SimpleNamespace(num_running_reqs=1, num_waiting_reqs=2, kv_cache_usage=0.5,
                                prefix_cache_stats=prefix)  # fmt: skip
    return scheduler, SimpleNamespace(finished_requests=list(finished))


def test_exported_names_follow_rays_prometheus_naming():
    assert metrics.REQUESTS.exported_names() == {"ray_giantserve_requests_total"}
    assert metrics.RUNNING.exported_names() == {"ray_giantserve_engine_running_requests"}
    assert "ray_giantserve_serving_overhead_seconds_bucket" in metrics.OVERHEAD.exported_names()


def test_record_request_tags_by_model_and_replica_and_skips_unknowns(recorded):
    metrics.record_request(metrics.RequestNumbers("m", "r1", 200, 1.5, ttft_s=0.2, overhead_s=0.004,
                                                  prompt_tokens=7, generated_tokens=9))  # fmt: skip
    assert recorded["giantserve_requests"].calls == [("inc", 1, {"model": "m", "replica": "r1", "status": "200"})]
    assert recorded["giantserve_serving_overhead_seconds"].calls == [("observe", 0.004, {"model": "m", "replica": "r1"})]
    assert recorded["giantserve_generation_tokens"].calls[0][1] == 9
    assert "giantserve_inter_token_latency_seconds" not in recorded  # not measured: not recorded
    metrics.record_request(metrics.RequestNumbers("", "", 401, 0.001))
    assert "giantserve_time_to_first_token_seconds" in recorded
    assert len(recorded["giantserve_time_to_first_token_seconds"].calls) == 1


def test_probe_keeps_finished_requests_by_id_and_sums_prefix_cache():
    probe = RequestStatsProbe()
    probe.record(*iteration(finished_stats("chatcmpl-a", 5, 3), hits=16, queries=32))
    probe.record(*iteration(hits=0, queries=32))
    assert [f.num_generation_tokens for f in probe.claim("chatcmpl-a")] == [3]
    assert probe.claim("chatcmpl-a") == []
    assert (probe.prefix_hits, probe.prefix_queries) == (16, 64)


def test_probe_groups_a_multi_prompt_completion_under_its_request(monkeypatch):
    probe = RequestStatsProbe()
    observer = SimpleNamespace(probe=probe, replica="r", model="m")
    body = {"prompt": ["a", "b"]}
    request = EngineRequest(observer, "completions", body)
    # vLLM finishes a two-prompt completion as <id>-0 and <id>-1.
    probe.record(*iteration(finished_stats(f"cmpl-{body['request_id']}-0", 2, 4),
                            finished_stats(f"cmpl-{body['request_id']}-1", 3, 5)))  # fmt: skip
    report = request.report()
    assert (report.prompt_tokens, report.generated_tokens) == (5, 9)


def test_engine_request_strips_trace_context_and_reports_vllm_numbers():
    probe = RequestStatsProbe()
    observer = SimpleNamespace(probe=probe, replica="replica-1", model="m")
    body = {"messages": [], tracing.TRACE_KEY: "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    request = EngineRequest(observer, "chat", body)
    assert tracing.TRACE_KEY not in body and isinstance(body["request_id"], str)
    probe.record(*iteration(finished_stats(f"chatcmpl-{body['request_id']}", 11, 4, tpot=0.05)))
    reply = request.attach({"id": "x"})
    report = reply[REPORT_KEY]
    assert (report.replica, report.prompt_tokens, report.generated_tokens) == ("replica-1", 11, 4)
    assert report.inter_token_s == 0.05 and report.engine_s >= 0


def test_a_client_request_id_is_kept():
    body = {"request_id": "mine"}
    EngineRequest(SimpleNamespace(probe=RequestStatsProbe(), replica="", model="m"), "chat", body)
    assert body["request_id"] == "mine"


def log_lines(caplog) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "giantserve.requests"]


@pytest.fixture()
def captured(caplog, monkeypatch):
    # The request logger does not propagate (its own handler); let caplog see it.
    monkeypatch.setattr(request_logger, "propagate", True)
    caplog.set_level(logging.INFO, logger="giantserve.requests")
    return caplog


def test_request_log_line_has_ids_tokens_timings_and_no_prompt(recorded, captured, monkeypatch):
    # Off explicitly: an e2e module in the same run turns tracing on through the environment.
    monkeypatch.setattr(tracing, "tracer", lambda: None)
    observation = RequestObservation("chat")
    observation.identify("team-a")
    body = observation.to_engine("m", {"model": "alias", "messages": [{"role": "user", "content": "secret"}]})
    reply = {"choices": [], REPORT_KEY: EngineReport("r9", 0.0, 12, 3, 0.01)}
    observation.first_reply(reply)
    assert REPORT_KEY not in reply  # never sent to the client
    response = observation.respond(SimpleNamespace(status_code=200, headers={}))
    assert TRACE_ID_HEADER not in response.headers  # tracing is off
    (line,) = log_lines(captured)
    assert line["key_id"] == "team-a" and line["model"] == "m" and line["status"] == 200
    assert (line["prompt_tokens"], line["generated_tokens"], line["replica"]) == (12, 3, "r9")
    assert line["overhead_s"] == pytest.approx(line["latency_s"], abs=1e-5)  # engine_s was 0
    assert line["stream"] is False and "secret" not in json.dumps(line) and body["model"] == "alias"
    assert recorded["giantserve_requests"].calls[0][2] == {"model": "m", "replica": "r9", "status": "200"}


def test_prompt_is_logged_only_at_debug(recorded, captured):
    captured.set_level(logging.DEBUG, logger="giantserve.requests")
    observation = RequestObservation("completions")
    observation.to_engine("m", {"prompt": "tell me"})
    observation.finish(400, streamed=False)
    assert log_lines(captured)[0]["prompt"] == "tell me"


def test_a_stream_records_once_with_ttft_and_the_engines_report(recorded, captured):
    observation = RequestObservation("chat")
    observation.to_engine("m", {})
    observation.first_reply("data: {}\n\n")
    observation.engine_report(EngineReport("r", 0.0, 1, 2, None))
    observation.finish(200)
    observation.finish(499)  # the stream's finally after an earlier end: ignored
    (line,) = log_lines(captured)
    assert line["stream"] is True and line["ttft_s"] is not None and line["status"] == 200


@pytest.fixture()
def traces_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.setenv(tracing.TRACES_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # ms: spans reach the file soon
    tracing.tracer.cache_clear()
    yield tmp_path
    tracing.tracer.cache_clear()


def wait_for_spans(directory, count: int) -> list[dict]:
    deadline = time.monotonic() + 30
    while True:
        spans = [json.loads(line) for f in directory.glob("*.jsonl") for line in f.read_text().splitlines()]
        if len(spans) >= count or time.monotonic() > deadline:
            return spans
        time.sleep(0.1)


def test_one_trace_links_ingress_route_engine_and_engine_phases(traces_dir, recorded, captured):
    from opentelemetry import trace as otel_trace

    observation = RequestObservation("chat")
    body = observation.to_engine("m", {"messages": []})
    probe = RequestStatsProbe()
    engine = EngineRequest(SimpleNamespace(probe=probe, replica="r", model="m"), "chat", dict(body))
    observation.first_reply("data: x\n\n")
    probe.record(*iteration(finished_stats(f"chatcmpl-{engine._vllm_id[9:]}", 3, 2)))
    observation.engine_report(engine.report())
    response = observation.respond(SimpleNamespace(status_code=200, headers={}))
    spans = wait_for_spans(traces_dir, 6)
    by_name = {s["name"]: s for s in spans}
    assert set(by_name) == {"POST /v1/chat", "route", "engine", "queue", "prefill", "decode"}
    trace_ids = {s["context"]["trace_id"] for s in spans}
    assert trace_ids == {"0x" + response.headers[TRACE_ID_HEADER]}
    assert by_name["route"]["parent_id"] == by_name["POST /v1/chat"]["context"]["span_id"]
    assert by_name["engine"]["parent_id"] == by_name["route"]["context"]["span_id"]
    for phase in ("queue", "prefill", "decode"):
        assert by_name[phase]["parent_id"] == by_name["engine"]["context"]["span_id"]
    assert otel_trace.SpanKind.SERVER.name in by_name["engine"]["kind"]


@pytest.mark.parametrize(
    ("env", "kinds"),
    [
        ({}, []),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["ConsoleSpanExporter"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, ["OTLPSpanExporter"]),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
         ["OTLPSpanExporter"]),
    ],
)  # fmt: skip
def test_exporters_come_from_the_standard_otel_variables(env, kinds):
    assert [type(e).__name__ for e in tracing.exporters_from_env(env)] == kinds


def test_otlp_protocol_picks_the_matching_exporter():
    (http,) = tracing.exporters_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert "proto.http" in type(http).__module__  # the spec's default protocol
    (grpc,) = tracing.exporters_from_env({"OTEL_TRACES_EXPORTER": "otlp",
                                          "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})  # fmt: skip
    assert "proto.grpc" in type(grpc).__module__


def test_unknown_exporter_names_the_variable():
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER"):
        tracing.exporters_from_env({"OTEL_TRACES_EXPORTER": "zipkin"})
