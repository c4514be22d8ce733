"""OpenTelemetry tracing, configured by the standard OTel environment variables.

Off unless asked for, so an untraced request costs one `None` check:
- `OTEL_TRACES_EXPORTER` = `otlp`, `console`, `none` (comma-separated), or unset; unset
  means `otlp` when `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
  is set, else no tracing. The OTLP exporter reads its endpoint, headers and protocol
  (`OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`: `http/protobuf`, the default, or `grpc`) itself.
- `GIANTSERVE_TRACES_DIR` (local use): also write every span as one JSON line to
  `<dir>/spans-<pid>.jsonl` (one file per process: no interleaved writes).
These must be set where the replicas run (node environment or the Serve config's
`runtime_env.env_vars`). Spans leave through a BatchSpanProcessor's background thread.

The ingress passes the W3C `traceparent` of its routing span to the engine in the
request body (key `TRACE_KEY`, removed by the engine), so one trace spans both processes.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

TRACE_KEY = "_giantserve_traceparent"
TRACES_DIR_ENV = "GIANTSERVE_TRACES_DIR"


def _span_json_line(span: Any) -> str:
    return span.to_json(indent=None) + "\n"


def exporters_from_env(environ: dict[str, str] | os._Environ = os.environ) -> list[Any]:
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    names = environ.get("OTEL_TRACES_EXPORTER")
    if names is None:
        otlp = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        )
        names = "otlp" if otlp else "none"
    exporters: list[Any] = []
    for name in (n.strip() for n in names.split(",")):
        if name == "otlp":
            exporters.append(_otlp_exporter(environ))
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name != "none":
            raise ValueError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (otlp, console, none)")
    if directory := environ.get(TRACES_DIR_ENV):
        path = Path(directory) / f"spans-{os.getpid()}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        exporters.append(ConsoleSpanExporter(out=path.open("a"), formatter=_span_json_line))
    return exporters


def _otlp_exporter(environ: dict[str, str] | os._Environ) -> Any:
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
        # The OTel spec's default; grpc needs opentelemetry-exporter-otlp-proto-grpc too.
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    elif protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    else:
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} (grpc, http/protobuf)")
    return OTLPSpanExporter()


@cache
def tracer() -> Any | None:
    """This process's tracer, or None when tracing is off."""
    exporters = exporters_from_env()
    if not exporters:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Our own provider, not the global one: vLLM may set up its own.
    default = {} if "OTEL_SERVICE_NAME" in os.environ else {"service.name": "giantserve"}
    provider = TracerProvider(resource=Resource.create(default))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider.get_tracer("giantserve")


def traceparent_of(span: Any) -> str:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    from opentelemetry.trace import set_span_in_context

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=set_span_in_context(span))
    return carrier["traceparent"]


def context_from_traceparent(traceparent: str | None) -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {"traceparent": traceparent} if isinstance(traceparent, str) else {}
    return TraceContextTextMapPropagator().extract(carrier)


def trace_id_hex(span: Any) -> str:
    return format(span.get_span_context().trace_id, "032x")


def child_span(parent: Any, name: str, start_ns: int, **kwargs: Any) -> Any:
    from opentelemetry.trace import set_span_in_context

    return tracer().start_span(
        name, context=set_span_in_context(parent), start_time=start_ns, **kwargs
    )


def closed_child(parent: Any, name: str, start_ns: int, end_ns: int) -> None:
    child_span(parent, name, start_ns).end(end_time=max(end_ns, start_ns))


