"""The memory warning (app/training/memory.py) driven by real memory: the process's RSS grown
and shrunk by real allocations, cgroup limits read from real files laid out as the kernel
does, and (with a GPU) a real CUDA allocation."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy
import psutil
import pytest
import torch
from helpers import EventRecorder

from app.contracts.events import EventType, Severity
from app.training.config import RunConfig
from app.training.datasets import Dataset
from app.training.memory import MemoryConfig, MemoryLimit, MemoryMonitor, host_memory_limit
from app.training.vectorized import VectorizedTrainer

MIB = 2**20
PHYSICAL = int(psutil.virtual_memory().total)
V1_UNLIMITED = "9223372036854771712\n"


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def config_above(used: int, limit: int, margin: int, hysteresis: int) -> MemoryConfig:
    """A config whose threshold is `margin` bytes above `used`, re-arming `hysteresis` bytes
    below the threshold."""
    return MemoryConfig(warning_fraction=(used + margin) / limit, hysteresis=hysteresis / limit)


def touched_array(size: int) -> numpy.ndarray:
    """`size` bytes whose pages are all written, so they count in the RSS."""
    return numpy.ones(size // 8)


# --- host RSS --------------------------------------------------------------------------------


def test_rss_growth_warns_once_per_crossing_and_rearms(events: EventRecorder) -> None:
    limit = host_memory_limit()
    config = config_above(rss(), limit.limit_bytes, margin=150 * MIB, hysteresis=75 * MIB)
    threshold = config.warning_fraction * limit.limit_bytes
    monitor = MemoryMonitor(config, torch.device("cpu"), limit=limit)

    monitor.sample(batch=0, epoch=1)
    assert events.of_type(EventType.MEMORY_WARNING) == []

    block = touched_array(300 * MIB)
    monitor.sample(batch=2, epoch=3)
    [warning] = events.of_type(EventType.MEMORY_WARNING)
    assert warning.severity == Severity.WARNING
    assert warning.epoch == 3
    data = warning.data
    assert set(data) == {
        "memory",
        "device",
        "used_bytes",
        "limit_bytes",
        "limit_source",
        "fraction",
        "warning_fraction",
        "rearm_fraction",
        "batch",
        "epoch",
    }
    assert data["memory"] == "host"
    assert data["device"] == "cpu"
    assert data["used_bytes"] >= threshold
    assert data["used_bytes"] <= rss()
    assert data["limit_bytes"] == limit.limit_bytes
    assert data["limit_source"] == limit.source
    assert data["fraction"] == pytest.approx(data["used_bytes"] / limit.limit_bytes)
    assert data["warning_fraction"] == config.warning_fraction
    assert data["rearm_fraction"] == pytest.approx(config.warning_fraction - config.hysteresis)
    assert (data["batch"], data["epoch"]) == (2, 3)
    assert "process RSS" in warning.message
    assert f"{limit.limit_bytes / 2**30:.2f} GiB" in warning.message

    # Still above the threshold: the crossing was already reported.
    monitor.sample(batch=2, epoch=4)
    assert len(events.of_type(EventType.MEMORY_WARNING)) == 1

    high = rss()
    del block
    if rss() >= config.rearm_fraction * limit.limit_bytes:
        pytest.skip(f"the allocator kept the freed 300 MiB (RSS {high} -> {rss()} bytes)")
    monitor.sample(batch=3, epoch=0)
    assert len(events.of_type(EventType.MEMORY_WARNING)) == 1

    block = touched_array(300 * MIB)
    monitor.sample(batch=3, epoch=1)
    del block
    warnings = events.of_type(EventType.MEMORY_WARNING)
    assert len(warnings) == 2
    assert (warnings[1].data["batch"], warnings[1].data["epoch"]) == (3, 1)
    assert monitor.samples == 5
    assert monitor.warnings == 2
    assert monitor.peak_fraction >= config.warning_fraction


def test_cpu_sample_never_queries_cuda(
    events: EventRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("sample on a CPU device queried CUDA")

    for name in ("mem_get_info", "memory_allocated", "memory_reserved"):
        monkeypatch.setattr(torch.cuda, name, forbidden)
    monitor = MemoryMonitor(MemoryConfig(), torch.device("cpu"), limit=MemoryLimit(2**62, "x"))
    monitor.sample(batch=0, epoch=0)
    monitor.sample(batch=0, epoch=1)
    assert monitor.samples == 2
    assert 0 < monitor.peak_fraction < 1e-6
    assert events == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA branch needs a GPU")
def test_cuda_allocation_warns_with_device_data(events: EventRecorder) -> None:
    device = torch.device("cuda", 0)
    free, total = torch.cuda.mem_get_info(device)
    config = config_above(total - free, total, margin=256 * MIB, hysteresis=64 * MIB)
    # A host limit no RSS reaches, so that only the device can warn.
    monitor = MemoryMonitor(config, device, limit=MemoryLimit(2**62, "physical"))
    monitor.sample(batch=0, epoch=0)
    assert events.of_type(EventType.MEMORY_WARNING) == []

    block = torch.empty(512 * MIB, dtype=torch.uint8, device=device)
    monitor.sample(batch=1, epoch=2)
    [warning] = events.of_type(EventType.MEMORY_WARNING)
    data = warning.data
    assert data["memory"] == "cuda"
    assert data["device"] == "cuda:0"
    assert data["limit_source"] == "device_total"
    assert data["limit_bytes"] == total
    assert data["used_bytes"] >= config.warning_fraction * total
    assert data["fraction"] == pytest.approx(data["used_bytes"] / total)
    assert data["allocated_bytes"] >= block.numel()
    assert data["reserved_bytes"] >= data["allocated_bytes"]
    assert (data["batch"], data["epoch"], warning.epoch) == (1, 2, 2)
    assert "device total" in warning.message
    del block


# --- host_memory_limit -----------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_cgroup_v2_limit_at_root(tmp_path: Path) -> None:
    write(tmp_path / "memory.max", f"{2**30}\n")
    proc = write(tmp_path / "proc", "0::/\n")
    assert host_memory_limit(tmp_path, proc) == MemoryLimit(2**30, "cgroup")


def test_cgroup_v2_max_means_physical(tmp_path: Path) -> None:
    write(tmp_path / "memory.max", "max\n")
    proc = write(tmp_path / "proc", "0::/\n")
    assert host_memory_limit(tmp_path, proc) == MemoryLimit(PHYSICAL, "physical")


def test_cgroup_v2_nested_path_takes_the_smallest(tmp_path: Path) -> None:
    write(tmp_path / "memory.max", f"{2**31}\n")
    write(tmp_path / "user.slice" / "job-7" / "memory.max", f"{2**29}\n")
    proc = write(tmp_path / "proc", "0::/user.slice/job-7\n")
    assert host_memory_limit(tmp_path, proc) == MemoryLimit(2**29, "cgroup")


def test_cgroup_v1_limit_at_the_process_cgroup(tmp_path: Path) -> None:
    write(tmp_path / "memory" / "memory.limit_in_bytes", V1_UNLIMITED)
    write(tmp_path / "memory" / "docker" / "abc" / "memory.limit_in_bytes", f"{2**30}\n")
    proc = write(tmp_path / "proc", "5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/\n")
    assert host_memory_limit(tmp_path, proc) == MemoryLimit(2**30, "cgroup")


def test_cgroup_v1_unlimited_means_physical(tmp_path: Path) -> None:
    write(tmp_path / "memory" / "memory.limit_in_bytes", V1_UNLIMITED)
    write(tmp_path / "memory" / "job" / "memory.limit_in_bytes", V1_UNLIMITED)
    proc = write(tmp_path / "proc", "4:memory:/job\n")
    assert host_memory_limit(tmp_path, proc) == MemoryLimit(PHYSICAL, "physical")


def test_missing_cgroup_root_means_physical(tmp_path: Path) -> None:
    limit = host_memory_limit(tmp_path / "absent", tmp_path / "absent-proc")
    assert limit == MemoryLimit(PHYSICAL, "physical")


@pytest.mark.parametrize("content", [b"", b"lots\n", b"12.5\n", b"-1\n", b"0\n", b"\xff\xfe1"])
def test_malformed_limit_means_physical(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory.max").write_bytes(content)
    (tmp_path / "memory" / "memory.limit_in_bytes").write_bytes(content)
    proc = write(tmp_path / "proc", "garbage\n4:memory\n0::/\n")
    assert host_memory_limit(tmp_path, proc) == MemoryLimit(PHYSICAL, "physical")


def test_real_host_limit_is_positive_and_at_most_physical() -> None:
    limit = host_memory_limit()
    assert 0 < limit.limit_bytes <= PHYSICAL
    assert limit.source in {"cgroup", "physical"}


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"warning_fraction": 0.0}, "warning_fraction must be greater than 0 and at most 1, got 0"),
        (
            {"warning_fraction": -0.5},
            "warning_fraction must be greater than 0 and at most 1, got -0.5",
        ),
        (
            {"warning_fraction": 1.5},
            "warning_fraction must be greater than 0 and at most 1, got 1.5",
        ),
        (
            {"warning_fraction": math.nan},
            "warning_fraction must be greater than 0 and at most 1, got nan",
        ),
        (
            {"hysteresis": -0.01},
            "hysteresis must be at least 0 and less than warning_fraction (0.9), got -0.01",
        ),
        (
            {"warning_fraction": 0.5, "hysteresis": 0.5},
            "hysteresis must be at least 0 and less than warning_fraction (0.5), got 0.5",
        ),
        (
            {"hysteresis": math.nan},
            "hysteresis must be at least 0 and less than warning_fraction (0.9), got nan",
        ),
    ],
)
def test_config_validation_names_the_field(changes: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as error:
        MemoryConfig(**changes)
    assert str(error.value) == f"MemoryConfig.{message}"


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError) as error:
        MemoryLimit(0, "cgroup")
    assert str(error.value) == "MemoryLimit.limit_bytes must be greater than 0, got 0"


# --- in the trainer ----------------------------------------------------------------------------


def test_the_trainer_samples_every_epoch_and_warns_with_its_numbers(
    events: EventRecorder, make_config: Callable[..., RunConfig], synthetic: Dataset
) -> None:
    """A threshold below any real process's RSS: the first lockstep epoch warns, once."""
    config = make_config(memory=MemoryConfig(warning_fraction=1e-6, hysteresis=0.0))
    trainer = VectorizedTrainer(config, synthetic)
    while not trainer.finished:
        trainer.run_batch()
    [warning] = events.of_type(EventType.MEMORY_WARNING)
    assert (warning.data["batch"], warning.data["epoch"]) == (1, 1)
    assert warning.data["used_bytes"] > 10 * MIB
    assert warning.data["limit_bytes"] == host_memory_limit().limit_bytes
    assert trainer.memory.samples == config.batches * config.max_epochs
    assert trainer.memory.warnings == 1
    assert 0 < trainer.memory.peak_fraction < 1
