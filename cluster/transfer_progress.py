"""Per-node transfer progress for people: bytes, rate and ETA from (time, bytes) samples."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# The rate is measured over this much recent history: long enough to smooth chunked writes,
# short enough to follow a node that slows down.
RATE_WINDOW_S = 10.0


class Sample(BaseModel):
    model_config = ConfigDict(frozen=True)

    at_s: float
    done_bytes: int


def rate_bytes_per_s(samples: list[Sample]) -> float | None:
    """Bytes per second over the last RATE_WINDOW_S of samples; None before two samples."""
    if len(samples) < 2:
        return None
    last = samples[-1]
    first = next(s for s in samples if s.at_s >= last.at_s - RATE_WINDOW_S)
    if first is last:
        first = samples[-2]
    elapsed = last.at_s - first.at_s
    return max(0.0, (last.done_bytes - first.done_bytes) / elapsed) if elapsed > 0 else None


def format_line(node: str, samples: list[Sample], total_bytes: int, state: str) -> str:
    done = min(samples[-1].done_bytes, total_bytes) if samples else 0
    percent = 100.0 * done / total_bytes if total_bytes else 100.0
    rate = rate_bytes_per_s(samples)
    if state != "fetching":
        speed = state
    elif rate is None:
        speed = "starting"
    elif rate == 0:
        speed = "0 MB/s, ETA unknown"
    else:
        speed = f"{rate / 1e6:.1f} MB/s, ETA {_duration((total_bytes - done) / rate)}"
    return f"{node}  {done / 1e9:8.2f} / {total_bytes / 1e9:.2f} GB  {percent:5.1f}%  {speed}"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"
