"""GPU stats: NVML values mapped with a stand-in NVML module; the real no-NVML path."""

from __future__ import annotations

import logging
import types
from types import SimpleNamespace

import pytest

from cluster.gpu_stats import GpuSample, open_nvml


class NVMLError(Exception):
    pass


class NVMLError_Timeout(NVMLError):  # noqa: N801 - pynvml's naming
    pass


def fake_nvml(power_supported: bool = True, xids: list[int] | None = None) -> types.ModuleType:
    """The part of pynvml's interface that cluster.gpu_stats uses, for two GPUs."""
    nv = types.ModuleType("fake_pynvml")
    pending = list(xids or [])
    nv.NVMLError = NVMLError
    nv.NVML_TEMPERATURE_GPU = 0
    nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    nv.NVML_VOLATILE_ECC = 0
    nv.nvmlEventTypeXidCriticalError = 8
    nv.nvmlInit = lambda: None
    nv.nvmlDeviceGetCount = lambda: 2
    nv.nvmlDeviceGetHandleByIndex = lambda i: f"h{i}"
    nv.nvmlDeviceGetUUID = lambda h: f"GPU-{h}".encode()
    nv.nvmlDeviceGetName = lambda h: b"NVIDIA H200"
    nv.nvmlDeviceGetUtilizationRates = lambda h: SimpleNamespace(gpu=87, memory=40)
    nv.nvmlDeviceGetMemoryInfo = lambda h: SimpleNamespace(used=70 * 2**30, total=141 * 2**30, free=0)
    nv.nvmlDeviceGetTemperature = lambda h, sensor: 61

    def power(h):
        if not power_supported:
            raise NVMLError("Not Supported")
        return 512_345  # milliwatts

    nv.nvmlDeviceGetPowerUsage = power
    nv.nvmlDeviceGetTotalEccErrors = lambda h, kind, counter: 0 if h == "h0" else 3
    nv.nvmlEventSetCreate = lambda: "events"
    nv.nvmlDeviceRegisterEvents = lambda h, kinds, events: None

    def wait(events, timeout_ms):
        if not pending:
            raise NVMLError_Timeout("Timeout")
        return SimpleNamespace(device="h1", eventData=pending.pop(0))

    nv.nvmlEventSetWait_v2 = wait
    return nv


def test_nvml_readings_map_to_samples_in_si_units():
    samples = open_nvml(fake_nvml()).samples()
    assert samples[1] == GpuSample(
        index=1, uuid="GPU-h1", name="NVIDIA H200", utilization_pct=87.0,
        memory_used_bytes=70 * 2**30, memory_total_bytes=141 * 2**30, temperature_c=61.0,
        power_w=512.345, ecc_uncorrected_errors=3,
    )  # fmt: skip


def test_a_reading_the_gpu_does_not_support_is_none():
    (first, _) = open_nvml(fake_nvml(power_supported=False)).samples()
    assert first.power_w is None and first.temperature_c == 61.0


def test_xid_events_are_drained_without_waiting():
    nvml = open_nvml(fake_nvml(xids=[79, 48]))
    nvml.watch_xid_errors()
    assert nvml.xid_errors() == [("GPU-h1", 79), ("GPU-h1", 48)]
    assert nvml.xid_errors() == []


def test_samples_export_as_gauges_tagged_by_node_and_gpu(monkeypatch):
    from cluster import gpu_stats_actor

    seen: dict[str, list] = {}

    class Fake:
        def __init__(self, name):
            self.name = name

        def set(self, value, tags):
            seen.setdefault(self.name, []).append((value, tags))

        inc = set

    monkeypatch.setattr(gpu_stats_actor, "ray_metric", lambda spec: Fake(spec.name))
    samples = open_nvml(fake_nvml(power_supported=False)).samples()
    gpu_stats_actor.export_samples("node-1", samples, [("GPU-h1", 79)])
    assert seen["giantserve_gpu_utilization_percent"][1] == (
        87.0, {"node": "node-1", "gpu": "1", "gpu_uuid": "GPU-h1"}
    )
    assert "giantserve_gpu_power_watts" not in seen  # unsupported: not exported as 0
    assert seen["giantserve_gpu_xid_errors"] == [(1, {"node": "node-1", "gpu_uuid": "GPU-h1", "xid": "79"})]


def test_without_nvml_it_says_so_and_returns_none(caplog):
    # This machine has nvidia-ml-py but no NVIDIA driver: the real path.
    pytest.importorskip("pynvml")
    with caplog.at_level(logging.WARNING, logger="giantserve.gpu_stats"):
        assert open_nvml() is None
    assert [r.getMessage() for r in caplog.records if "no NVML" in r.getMessage()]

