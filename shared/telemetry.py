"""Tracing and structured logs.

Tracing is OpenTelemetry, configured from the environment: spans are exported over
OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set and kept in-process otherwise.
Trace context crosses HTTP in the W3C ``traceparent`` header and Kafka in record
headers of the same name. Logs are one JSON object a line carrying the service, the
tenant and the trace id; nothing here ever logs a token or a secret.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

current_tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_tenant", default=None
)

_configured_service: str | None = None


def setup_telemetry(service_name: str, otlp_endpoint: str = "", log_level: str = "INFO") -> None:
    """Installs the tracer provider and the JSON log handler once per process."""
    global _configured_service
    if _configured_service is not None:
        return
    _configured_service = service_name
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _install_record_context()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service_name))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(log_level.upper())
    # uvicorn's access log would print request lines without tenant or trace id.
    logging.getLogger("uvicorn.access").disabled = True
    # Its own lines (started, stopped, a request it could not read) in JSON as every
    # other: its command line gave them a plain-text handler of their own.
    uvicorn_log = logging.getLogger("uvicorn")
    uvicorn_log.handlers[:] = []
    uvicorn_log.propagate = True
    # httpx says each call it makes: the services' poll of revoked tokens every second
    # filled the logs, and the lines a crash leaves, with it. Its failures still show.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _install_record_context() -> None:
    """Stamps tenant and trace id on each record when it is created, in its context,
    so handlers that format later (queues, test capture) still see them."""
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.tenant = current_tenant.get()
        record.trace_id = current_trace_id()
        return record

    logging.setLogRecordFactory(factory)


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def current_trace_id() -> str | None:
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return format(span_context.trace_id, "032x")


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            # UTC to the millisecond, whatever the host's zone: lines of several hosts
            # and of the audit trail compare as they are.
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        tenant = getattr(record, "tenant", None) or current_tenant.get()
        if tenant:
            entry["tenant"] = tenant
        trace_id = getattr(record, "trace_id", None) or current_trace_id()
        if trace_id:
            entry["trace_id"] = trace_id
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def inject_headers(carrier: dict[str, str] | None = None) -> dict[str, str]:
    """The current trace context as HTTP headers."""
    carrier = carrier if carrier is not None else {}
    propagate.inject(carrier)
    return carrier


def kafka_headers() -> list[tuple[str, bytes]]:
    """The current trace context as Kafka record headers."""
    return [(k, v.encode()) for k, v in inject_headers().items()]


def context_from_kafka(headers: Iterable[tuple[str, bytes]] | None) -> otel_context.Context:
    carrier = {k: v.decode(errors="replace") for k, v in (headers or ())}
    return propagate.extract(carrier)


def context_from_http(headers: Mapping[str, str]) -> otel_context.Context:
    return propagate.extract(dict(headers))
