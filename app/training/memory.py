"""MEMORY_WARNING (docs/events.md): memory use approaching the limit that will actually
stop the run.

An out-of-memory kill ends a run without a word in the event log, so the trainer samples
memory after every lockstep epoch and warns while there is still room to act:

- host: the process's resident set size against the smallest limit that applies to it, a
  cgroup memory limit (a container's or a job scheduler's) or else physical memory;
- CUDA: memory in use on the device (everything, other processes and the CUDA context
  included, as `cudaMemGetInfo` sees it) against the device's total, with PyTorch's own
  allocated and reserved bytes in the event so that a reader can tell cache from live tensors.

Each warns once per crossing: a warning disarms it until usage falls back below the warning
fraction minus a hysteresis, so usage hovering at the threshold does not flood the log.
Sampling is cheap: one read of /proc for the RSS and, on CUDA, one driver query; no tensor
is allocated and no stream is synchronized.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil
import torch

from app.contracts.events import EventType, Severity, TelemetryEvent
from app.settings import check
from app.telemetry import emit

_GIB = 2**30
# How a limit's source reads in a warning's message.
_SOURCE_WORDS = {
    "cgroup": "cgroup limit",
    "physical": "physical memory",
    "device_total": "device total",
}


@dataclass(frozen=True)
class MemoryConfig:
    """`warning_fraction`: warn when usage reaches this fraction of the limit.
    `hysteresis`: a warned check re-arms once usage falls below
    `warning_fraction - hysteresis` of the limit.
    """

    warning_fraction: float = 0.9
    hysteresis: float = 0.05

    def __post_init__(self) -> None:
        check(self, "warning_fraction", gt=0, le=1)
        check(self, "hysteresis", ge=0, lt="warning_fraction")

    @property
    def rearm_fraction(self) -> float:
        return self.warning_fraction - self.hysteresis


@dataclass(frozen=True)
class MemoryLimit:
    """How many bytes the process may use, and where that number comes from
    ("cgroup" or "physical")."""

    limit_bytes: int
    source: str

    def __post_init__(self) -> None:
        check(self, "limit_bytes", gt=0)


def host_memory_limit(
    cgroup_root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")
) -> MemoryLimit:
    """The memory limit that applies to this process: the smallest cgroup limit (v2
    `memory.max`, v1 `memory.limit_in_bytes`) at the cgroup root and at the process's own
    cgroup, or physical memory when no cgroup limits it below that.

    Both places are read because in a container the namespaced root is the process's own
    cgroup, while on a host the limit sits at the process's cgroup path. A file that is
    missing, unreadable or malformed contributes no limit.
    """
    physical = int(psutil.virtual_memory().total)
    files = [cgroup_root / "memory.max", cgroup_root / "memory" / "memory.limit_in_bytes"]
    for line in _read(proc_cgroup).splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        relative = path.strip().lstrip("/")
        if controllers == "":
            files.append(cgroup_root / relative / "memory.max")
        elif "memory" in controllers.split(","):
            files.append(cgroup_root / "memory" / relative / "memory.limit_in_bytes")
    # v1 writes "no limit" as a huge number; anything at or above physical memory limits nothing.
    limits = [limit for limit in map(_read_limit, files) if limit is not None and limit < physical]
    if limits:
        return MemoryLimit(min(limits), "cgroup")
    return MemoryLimit(physical, "physical")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return ""


def _read_limit(path: Path) -> int | None:
    """The positive byte count in a cgroup limit file; None for "max" or anything else."""
    text = _read(path).strip()
    return int(text) if text.isdecimal() and int(text) > 0 else None


class MemoryMonitor:
    """Samples host (and, on a CUDA device, device) memory and emits MEMORY_WARNING.

    `limit` is the host limit; None reads `host_memory_limit()` once, here. The trainer calls
    `sample` after every lockstep epoch. `samples`, `peak_fraction` (of the host limit) and
    `warnings` summarize the run.
    """

    def __init__(
        self, config: MemoryConfig, device: torch.device, limit: MemoryLimit | None = None
    ) -> None:
        self.config = config
        self.device = device
        self.limit = host_memory_limit() if limit is None else limit
        self._process = psutil.Process()
        self._armed = {"host": True, "cuda": True}
        self.samples = 0
        self.peak_fraction = 0.0
        self.warnings = 0

    def sample(self, batch: int, epoch: int) -> None:
        self.samples += 1
        rss = int(self._process.memory_info().rss)
        limit = self.limit
        self.peak_fraction = max(self.peak_fraction, rss / limit.limit_bytes)
        self._check(
            "host", "cpu", "process RSS", rss, limit.limit_bytes, limit.source, batch, epoch
        )
        if self.device.type == "cuda":
            used, total, allocated, reserved = self._cuda_usage()
            self._check(
                "cuda",
                str(self.device),
                f"{self.device} memory in use",
                used,
                total,
                "device_total",
                batch,
                epoch,
                {"allocated_bytes": allocated, "reserved_bytes": reserved},
            )

    def _cuda_usage(self) -> tuple[int, int, int, int]:
        """Bytes in use on the device (by anyone), its total, and PyTorch's allocated and
        reserved bytes; driver and allocator queries only, no synchronization."""
        free, total = torch.cuda.mem_get_info(self.device)
        allocated = torch.cuda.memory_allocated(self.device)
        reserved = torch.cuda.memory_reserved(self.device)
        return total - free, total, allocated, reserved

    def _check(
        self,
        memory: str,
        device: str,
        what: str,
        used: int,
        limit: int,
        source: str,
        batch: int,
        epoch: int,
        extra: dict[str, int] | None = None,
    ) -> None:
        """Warn on an armed crossing of the warning fraction; re-arm below the re-arm one."""
        config = self.config
        fraction = used / limit
        if not self._armed[memory]:
            self._armed[memory] = fraction < config.rearm_fraction
            return
        if fraction < config.warning_fraction:
            return
        self._armed[memory] = False
        self.warnings += 1
        emit(
            TelemetryEvent(
                event_type=EventType.MEMORY_WARNING,
                severity=Severity.WARNING,
                epoch=epoch,
                message=(
                    f"{what} {used / _GIB:.2f} GiB is {fraction:.0%} of the "
                    f"{limit / _GIB:.2f} GiB {_SOURCE_WORDS[source]} "
                    f"(warning at {config.warning_fraction:.0%})"
                ),
                data={
                    "memory": memory,
                    "device": device,
                    "used_bytes": used,
                    "limit_bytes": limit,
                    "limit_source": source,
                    "fraction": fraction,
                    "warning_fraction": config.warning_fraction,
                    "rearm_fraction": config.rearm_fraction,
                    "batch": batch,
                    "epoch": epoch,
                    **(extra or {}),
                },
            )
        )
