"""GPU health of one node from NVML (`nvidia-ml-py`, imported as `pynvml`).

Pure mapping from NVML to `GpuSample`s; the Ray side (one actor per GPU node exporting
them as Ray metrics) is cluster.gpu_stats_actor. A reading NVML does not support on a
GPU (power on some boards, ECC on consumer parts) is None, not an error.

`python -m cluster.gpu_stats` prints one sample of this node as JSON.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

logger = logging.getLogger("giantserve.gpu_stats")


@dataclass(frozen=True)
class GpuSample:
    index: int
    uuid: str
    name: str
    utilization_pct: float | None
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    temperature_c: float | None
    power_w: float | None
    ecc_uncorrected_errors: int | None  # volatile: since the driver last loaded


class Nvml:
    """An initialized NVML (the real `pynvml` or a stand-in with its interface)."""

    def __init__(self, module: ModuleType):
        self.module = module
        self._xid_events = None

    def samples(self) -> list[GpuSample]:
        nv = self.module
        return [_sample(nv, i, nv.nvmlDeviceGetHandleByIndex(i)) for i in range(nv.nvmlDeviceGetCount())]

    def watch_xid_errors(self) -> None:
        """Register for XID (critical error) events on every GPU, where NVML supports it."""
        nv = self.module
        try:
            events = nv.nvmlEventSetCreate()
            for index in range(nv.nvmlDeviceGetCount()):
                handle = nv.nvmlDeviceGetHandleByIndex(index)
                nv.nvmlDeviceRegisterEvents(handle, nv.nvmlEventTypeXidCriticalError, events)
        except nv.NVMLError as error:
            logger.info("XID events not available here: %s", error)
            return
        self._xid_events = events

    def xid_errors(self) -> list[tuple[str, int]]:
        """(GPU uuid, XID code) of each XID event since the last call; never waits."""
        nv = self.module
        found: list[tuple[str, int]] = []
        if self._xid_events is None:
            return found
        while True:
            try:
                event = nv.nvmlEventSetWait_v2(self._xid_events, 0)
            except nv.NVMLError:  # NVMLError_Timeout: no more events
                return found
            found.append((_text(nv.nvmlDeviceGetUUID(event.device)), int(event.eventData)))


def open_nvml(module: ModuleType | None = None) -> Nvml | None:
    """NVML initialized, or None (logged once) on a node without a GPU driver."""
    try:
        nv = module if module is not None else __import__("pynvml")
        nv.nvmlInit()
    except Exception as error:  # ImportError, NVMLError_LibraryNotFound, DriverNotLoaded
        logger.warning("no NVML on this node (%s): GPU stats are off here", error)
        return None
    return Nvml(nv)


def _sample(nv: ModuleType, index: int, handle: Any) -> GpuSample:
    def read(call, *args):
        try:
            return call(handle, *args)
        except nv.NVMLError:  # NotSupported and friends: this GPU has no such reading
            return None

    utilization = read(nv.nvmlDeviceGetUtilizationRates)
    memory = read(nv.nvmlDeviceGetMemoryInfo)
    power_mw = read(nv.nvmlDeviceGetPowerUsage)
    return GpuSample(
        index=index,
        uuid=_text(nv.nvmlDeviceGetUUID(handle)),
        name=_text(nv.nvmlDeviceGetName(handle)),
        utilization_pct=None if utilization is None else float(utilization.gpu),
        memory_used_bytes=None if memory is None else int(memory.used),
        memory_total_bytes=None if memory is None else int(memory.total),
        temperature_c=_float(read(nv.nvmlDeviceGetTemperature, nv.NVML_TEMPERATURE_GPU)),
        power_w=None if power_mw is None else power_mw / 1000.0,
        ecc_uncorrected_errors=read(
            nv.nvmlDeviceGetTotalEccErrors, nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nv.NVML_VOLATILE_ECC
        ),
    )


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    nvml = open_nvml()
    json.dump([asdict(s) for s in nvml.samples()] if nvml else [], sys.stdout, indent=2)
    print()
