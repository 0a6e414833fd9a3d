"""Shared by the end-to-end telemetry tests: `esper train` in a child process with an
environment of our choosing, its stderr read line by line on a thread, readers of the
JSONL log it writes, and a real Prometheus of our own scraping a run's --prometheus-port.
(Not in conftest.py: every test directory has a module of that name.)"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest

# Short PPO runs: two environments, two batches of 2 x 6 epochs; seed 0 is the default.
SHORT_RUN = ("--dataset", "synthetic", "--envs", "2", "--max-epochs", "6", "--no-progress")
# More episodes than any test lets run: the test stops it with a signal.
ENDLESS = ("--episodes", "100000")
# `esper train` in one process.
TRAIN = (sys.executable, "-m", "app", "train")


def torchrun(processes: int) -> tuple[str, ...]:
    """`esper train` in `processes` ranks on this machine, launched by torchrun."""
    return (
        *(sys.executable, "-m", "torch.distributed.run", "--standalone"),
        *(f"--nproc-per-node={processes}", "-m", "app", "train"),
    )


def child_environment(otel: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any OTEL_* variable, plus `otel`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environment.update(otel or {})
    return environment


def train_to_the_end(
    args: Sequence[str],
    telemetry_dir: Path,
    otel: Mapping[str, str] | None = None,
    command: Sequence[str] = TRAIN,
) -> subprocess.CompletedProcess[str]:
    """`python -m app train ARGS --telemetry-dir DIR` (or `command` ARGS ...) run to its
    end in a child process (in DIR's parent, with `child_environment(otel)`), its output
    captured."""
    return subprocess.run(
        [*command, *args, "--telemetry-dir", str(telemetry_dir)],
        cwd=telemetry_dir.parent,
        env=child_environment(otel),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _default_sigint() -> None:
    # A child of a non-interactive shell's background job inherits SIGINT ignored.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Training:
    """`python -m app train ARGS` (or `command` ARGS) running in a child process; stderr
    collected by a thread, with a wait for the first line that starts with a prefix."""

    def __init__(
        self,
        args: Sequence[str],
        cwd: Path,
        otel: Mapping[str, str] | None = None,
        command: Sequence[str] = TRAIN,
    ) -> None:
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [*command, *args],
            cwd=cwd,
            env=child_environment(otel),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_default_sigint,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    @property
    def stderr(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def wait_for_line(self, prefix: str, timeout: float, after: int = -1) -> int:
        """The index of the first stderr line after line `after` that starts with `prefix`;
        fails after `timeout` seconds or when the process ends without printing it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for index in range(after + 1, len(self.lines)):
                    if self.lines[index].startswith(prefix):
                        return index
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"no stderr line starting with {prefix!r} after {timeout}s "
                        f"(exit code {self.process.poll()}):\n{''.join(self.lines)}"
                    )
                self._changed.wait(min(left, 0.2))

    def wait(self, timeout: float) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def stop(self) -> None:
        """Kill the child and every process it started, if they still run (test
        teardown): torchrun starts its ranks in sessions of their own."""
        with contextlib.suppress(psutil.NoSuchProcess):
            for descendant in psutil.Process(self.process.pid).children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    descendant.kill()
        self.process.kill()
        self.process.wait()
        self._reader.join(timeout=10)


def only_run_dir(telemetry_dir: Path) -> Path:
    runs = list(telemetry_dir.glob("telemetry_*"))
    assert len(runs) == 1, f"expected one run directory under {telemetry_dir}, found {runs}"
    return runs[0]


def log_records(telemetry_dir: Path) -> list[dict[str, Any]]:
    """Every line of the run's events.jsonl, parsed (each must be a whole JSON line)."""
    text = (only_run_dir(telemetry_dir) / "events.jsonl").read_text(encoding="utf-8")
    assert text.endswith("\n"), "the last line of the log is incomplete"
    return [json.loads(line) for line in text.splitlines()]


def count_of(records: list[dict[str, Any]], event_type: str) -> int:
    return sum(record["event_type"] == event_type for record in records)


# A real Prometheus (Debian package `prometheus`) scraping a run's --prometheus-port.
JOB = "esper"


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").is_file() else None
    )
    if found is None:
        pytest.fail(
            "the `prometheus` binary is missing: this test needs the Debian package "
            "`prometheus` (sudo apt-get install prometheus; .ci/run installs it)",
            pytrace=False,
        )
    return found


class Prometheus:
    """A Prometheus server of our own (not the Debian service) scraping the targets;
    with `exemplars`, it stores the exemplars it scrapes (`query_exemplars`)."""

    def __init__(
        self, binary: str, directory: Path, *targets: str, exemplars: bool = False
    ) -> None:
        from receivers import free_port  # tests/otel: on sys.path once conftest ran

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = directory / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            f"  - job_name: {JOB}\n"
            "    static_configs:\n"
            f"      - targets: [{', '.join(repr(target) for target in targets)}]\n",
            encoding="utf-8",
        )
        self.log = directory / "prometheus.log"
        with self.log.open("w", encoding="utf-8") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    *(["--enable-feature=exemplar-storage"] if exemplars else []),
                ],
                cwd=directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def query(self, promql: str) -> list[dict[str, Any]]:
        """What `promql` evaluates to now: [{"metric": labels, "value": ...}] for an
        instant vector, "values" in place of "value" for a range vector."""
        result: list[dict[str, Any]] = self._get("query", {"query": promql})["result"]
        return result

    def query_exemplars(self, promql: str, start: float, end: float) -> list[dict[str, Any]]:
        """The exemplars stored for the series `promql` selects, between the Unix times
        `start` and `end`: [{"seriesLabels": labels, "exemplars": [{"labels": ...,
        "value": ..., "timestamp": ...}]}]."""
        found: list[dict[str, Any]] = self._get(
            "query_exemplars", {"query": promql, "start": start, "end": end}
        )
        return found

    def _get(self, endpoint: str, parameters: Mapping[str, object]) -> Any:
        url = f"{self.url}/api/v1/{endpoint}?{urllib.parse.urlencode(parameters)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def wait_until(self, promql: str, timeout: float) -> list[dict[str, Any]]:
        """Poll `promql` until it returns a series; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"prometheus exited with {self.process.returncode}:\n{self.logs()}")
            try:
                result = self.query(promql)
            except (urllib.error.URLError, ConnectionError):
                result = []  # not listening yet
            if result:
                return result
            if time.monotonic() > deadline:
                targets = ""
                try:
                    with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=5) as reply:
                        targets = reply.read().decode()
                except OSError as error:
                    targets = repr(error)
                pytest.fail(
                    f"no series for {promql!r} after {timeout}s\n"
                    f"targets: {targets}\nprometheus log:\n{self.logs()}"
                )
            time.sleep(0.25)

    def logs(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def scraped_run(
    tmp_path: Path,
    binary: str,
    training: list[Training],
    servers: list[Prometheus],
    processes: int = 1,
    *,
    otel: Mapping[str, str] | None = None,
    exemplars: bool = False,
) -> tuple[Training, Prometheus, str]:
    """A short synthetic `esper train --prometheus-port 0` that runs until stopped (in
    `processes` ranks under torchrun when more than one, with the OTEL_* variables
    `otel`), and a Prometheus of our own scraping every rank's endpoint every second,
    storing exemplars if asked: (the run, the server, the run id).

    The critic is judged from its first update, whose explained variance is below the
    collapse threshold, so that the run raises a warning event within seconds."""
    telemetry_dir = tmp_path / "telemetry"
    run = Training(
        [
            *SHORT_RUN,
            *ENDLESS,
            *("--set", "anomaly.value_warmup_updates=0"),
            *("--prometheus-port", "0", "--telemetry-dir", str(telemetry_dir)),
        ],
        cwd=tmp_path,
        otel=otel,
        command=TRAIN if processes == 1 else torchrun(processes),
    )
    training.append(run)
    targets, after = [], -1
    for _ in range(processes):
        after = run.wait_for_line("esper: metrics at http://localhost:", 120, after)
        port = run.lines[after].split("http://localhost:", 1)[1].split("/", 1)[0]
        targets.append(f"127.0.0.1:{port}")
    run_id = json.loads((only_run_dir(telemetry_dir) / "run.json").read_text())["run_id"]

    (tmp_path / "prometheus").mkdir()
    prometheus = Prometheus(binary, tmp_path / "prometheus", *targets, exemplars=exemplars)
    servers.append(prometheus)
    return run, prometheus, run_id
