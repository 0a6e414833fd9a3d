"""In-process OTLP receivers that decode the real protobuf requests, over gRPC and HTTP.

The SDK's own exporters send to them, so a test sees exactly what a collector would.
A receiver can also misbehave as collectors do: answer every export with an error
(`fail_with`: an HTTP status or a gRPC status code), answer slowly (`delay_s`), hold
every request until released (`hold`/`release`), or die after its first accepted trace
exports (`kill_after_traces`; `kill` at any time): it stops listening, so later
connections are refused. Only exports answered with success are stored; `attempts`
counts every export request and `headers` keeps the metadata of each.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

ExportTraceServiceRequest = trace_service_pb2.ExportTraceServiceRequest
ExportMetricsServiceRequest = metrics_service_pb2.ExportMetricsServiceRequest
ExportLogsServiceRequest = logs_service_pb2.ExportLogsServiceRequest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def value_of(value: AnyValue) -> Any:
    """An OTLP AnyValue as a Python value (arrays as lists)."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return attributes_of(value.kvlist_value.values)
    return getattr(value, kind) if kind else None


def attributes_of(attributes: Any) -> dict[str, Any]:
    pairs: list[KeyValue] = list(attributes)
    return {pair.key: value_of(pair.value) for pair in pairs}


class Received:
    """What a receiver stored: the decoded export requests, with accessors; and how it
    answers (module docstring)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.trace_requests: list[Any] = []
        self.metric_requests: list[Any] = []
        self.log_requests: list[Any] = []
        self.attempts: Counter[str] = Counter()
        self.headers: list[dict[str, str]] = []
        self.fail_with: Any = None
        self.delay_s = 0.0
        self.kill_after_traces: int | None = None
        self.dead = False
        self._released = threading.Event()
        self._released.set()

    def hold(self) -> None:
        """Keep every request waiting, unanswered, until `release`."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def _accept(self, signal: str, headers: dict[str, str]) -> bool:
        """Whether to store and acknowledge this export (else answer with an error)."""
        with self.lock:
            self.attempts[signal] += 1
            self.headers.append(headers)
        self._released.wait()
        if self.delay_s:
            time.sleep(self.delay_s)
        return not self.dead and self.fail_with is None

    def _store(self, signal: str, request: Any) -> None:
        with self.lock:
            requests = {
                "traces": self.trace_requests,
                "metrics": self.metric_requests,
                "logs": self.log_requests,
            }[signal]
            requests.append(request)
            dying = signal == "traces" and len(requests) == self.kill_after_traces
            if dying:
                self.dead = True
        if dying:
            threading.Thread(target=self._die, daemon=True).start()

    def _die(self) -> None:
        time.sleep(0.1)  # the acknowledgement goes out first
        self.kill()

    def kill(self) -> None:
        """Stop listening, as a collector that was killed."""
        self.stop()

    def stop(self) -> None:
        raise NotImplementedError

    def spans(self) -> list[Span]:
        with self.lock:
            return [
                span
                for request in self.trace_requests
                for resource_spans in request.resource_spans
                for scope_spans in resource_spans.scope_spans
                for span in scope_spans.spans
            ]

    def log_records(self) -> list[LogRecord]:
        with self.lock:
            return [
                record
                for request in self.log_requests
                for resource_logs in request.resource_logs
                for scope_logs in resource_logs.scope_logs
                for record in scope_logs.log_records
            ]

    def resources(self) -> list[Resource]:
        with self.lock:
            requests = [*self.trace_requests, *self.metric_requests, *self.log_requests]
        resources = []
        for request in requests:
            for field in ("resource_spans", "resource_metrics", "resource_logs"):
                resources.extend(item.resource for item in getattr(request, field, ()))
        return resources

    def metrics(self) -> dict[str, list[Metric]]:
        """Every exported metric by name, in export order (the last is the latest)."""
        found: dict[str, list[Metric]] = {}
        with self.lock:
            for request in self.metric_requests:
                for resource_metrics in request.resource_metrics:
                    for scope_metrics in resource_metrics.scope_metrics:
                        for metric in scope_metrics.metrics:
                            found.setdefault(metric.name, []).append(metric)
        return found


class GrpcReceiver(Received):
    """A gRPC OTLP receiver on 127.0.0.1 (TraceService, MetricsService, LogsService)."""

    def __init__(self) -> None:
        super().__init__()
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        receiver = self

        def answer(signal: str, request: Any, context: Any) -> None:
            headers = dict(context.invocation_metadata())
            if not receiver._accept(signal, headers):
                status = grpc.StatusCode.UNAVAILABLE if receiver.dead else receiver.fail_with
                context.abort(status, f"test receiver answers {status.name}")
            receiver._store(signal, request)

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC name)
                answer("traces", request, context)
                return trace_service_pb2.ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
                answer("metrics", request, context)
                return metrics_service_pb2.ExportMetricsServiceResponse()

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
                answer("logs", request, context)
                return logs_service_pb2.ExportLogsServiceResponse()

        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self._server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self._server)
        self._server.add_insecure_port(f"127.0.0.1:{self.port}")

    def start(self) -> GrpcReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self.dead = True  # held requests are then let go unanswered, as the client gave up
        self.release()
        self._server.stop(grace=None)


class HttpReceiver(Received):
    """An OTLP/HTTP (protobuf) receiver on 127.0.0.1: POST /v1/traces, /v1/metrics and
    /v1/logs."""

    def __init__(self) -> None:
        super().__init__()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/v1/traces":
                    signal = "traces"
                    request: Any = ExportTraceServiceRequest.FromString(body)
                    reply: Any = trace_service_pb2.ExportTraceServiceResponse()
                elif self.path == "/v1/metrics":
                    signal = "metrics"
                    request = ExportMetricsServiceRequest.FromString(body)
                    reply = metrics_service_pb2.ExportMetricsServiceResponse()
                elif self.path == "/v1/logs":
                    signal = "logs"
                    request = ExportLogsServiceRequest.FromString(body)
                    reply = logs_service_pb2.ExportLogsServiceResponse()
                else:
                    self.send_error(404)
                    return
                headers = {key.lower(): value for key, value in self.headers.items()}
                if not receiver._accept(signal, headers):
                    self.send_error(503 if receiver.dead else receiver.fail_with)
                    return
                receiver._store(signal, request)
                payload = reply.SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> HttpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.dead = True  # held requests are then let go unanswered, as the client gave up
        self.release()
        self._server.shutdown()
        self._server.server_close()


class BlackHole:
    """A TCP listener that accepts connections and never answers."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        self.port = self._socket.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self._accepted.append(connection)

    def stop(self) -> None:
        self._socket.close()
        for connection in self._accepted:
            connection.close()
