"""Request traces for the simulator: arrival rates and the Poisson arrivals drawn from them.

Each trace is a mean rate per request class per tick (what an oracle knows) and the
arrivals sampled from it with a fixed seed (what every policy is replayed against).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

HOUR_S = 3600.0


class RequestClass(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    prompt_tokens: int = Field(ge=1)
    output_tokens: int = Field(ge=1)


CHAT = RequestClass(name="chat", prompt_tokens=2_000, output_tokens=500)
LONG_CONTEXT = RequestClass(name="long-context", prompt_tokens=24_000, output_tokens=800)


class Trace(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    tick_s: float = Field(gt=0)
    classes: tuple[RequestClass, ...]
    rates: tuple[tuple[float, ...], ...] = Field(description="mean arrivals/s per tick, per class")
    arrivals: tuple[tuple[int, ...], ...] = Field(
        description="sampled arrivals per tick, per class"
    )

    @property
    def duration_s(self) -> float:
        return len(self.arrivals) * self.tick_s

    @property
    def total_requests(self) -> int:
        return sum(sum(tick) for tick in self.arrivals)


def poisson(rng: random.Random, mean: float) -> int:
    """An exact Poisson draw: Knuth's product method on chunks of mean <= 30 (additivity)."""
    count = 0
    while mean > 0:
        chunk = min(mean, 30.0)
        mean -= chunk
        limit, product = math.exp(-chunk), rng.random()
        while product > limit:
            count += 1
            product *= rng.random()
    return count


def build_trace(
    name: str,
    description: str,
    duration_s: float,
    rate_fns: dict[RequestClass, Callable[[float], float]],
    tick_s: float = 1.0,
    seed: int = 0,
) -> Trace:
    rng = random.Random(seed)
    classes = tuple(rate_fns)
    rates, arrivals = [], []
    for tick in range(int(duration_s / tick_s)):
        t = tick * tick_s
        tick_rates = tuple(max(0.0, rate_fns[c](t)) for c in classes)
        rates.append(tick_rates)
        arrivals.append(tuple(poisson(rng, rate * tick_s) for rate in tick_rates))
    return Trace(
        name=name,
        description=description,
        tick_s=tick_s,
        classes=classes,
        rates=tuple(rates),
        arrivals=tuple(arrivals),
    )


def _ramp(t: float, start: float, length: float) -> float:
    """0 before `start`, 1 after `start + length`, linear between."""
    if length <= 0:
        return 1.0 if t >= start else 0.0
    return min(1.0, max(0.0, (t - start) / length))


def steady(rate: float = 30.0, hours: float = 4.0, seed: int = 1) -> Trace:
    return build_trace(
        "steady",
        f"{rate:g} chat req/s for {hours:g} h",
        hours * HOUR_S,
        {CHAT: lambda t: rate},
        seed=seed,
    )


def diurnal(trough: float = 15.0, peak: float = 60.0, hours: float = 24.0, seed: int = 2) -> Trace:
    mid, swing = (peak + trough) / 2, (peak - trough) / 2
    return build_trace(
        "diurnal",
        f"chat req/s from {trough:g} (midnight) to {peak:g} (noon), sinusoidal, {hours:g} h",
        hours * HOUR_S,
        {CHAT: lambda t: mid - swing * math.cos(2 * math.pi * t / (24 * HOUR_S))},
        seed=seed,
    )


def burst(
    base: float = 15.0,
    factor: float = 5.0,
    ramp_up_s: float = 3600.0,
    hold_s: float = 2700.0,
    ramp_down_s: float = 900.0,
    start_s: float = HOUR_S,
    hours: float = 4.0,
    seed: int = 3,
) -> Trace:
    peak = base * factor
    down_at = start_s + ramp_up_s + hold_s

    def rate(t: float) -> float:
        up, down = _ramp(t, start_s, ramp_up_s), _ramp(t, down_at, ramp_down_s)
        return base + (peak - base) * (up - down)

    return build_trace(
        "burst",
        f"{base:g} chat req/s, rising linearly to {factor:g}x ({peak:g}) over "
        f"{ramp_up_s / 60:g} min from t={start_s / 60:g} min, held {hold_s / 60:g} min, "
        f"back over {ramp_down_s / 60:g} min; {hours:g} h",
        hours * HOUR_S,
        {CHAT: rate},
        seed=seed,
    )


def long_context_wave(
    chat: float = 30.0,
    long_peak: float = 3.0,
    rise_s: float = 1800.0,
    hold_s: float = 3600.0,
    start_s: float = HOUR_S,
    hours: float = 4.0,
    seed: int = 4,
) -> Trace:
    fall_at = start_s + rise_s + hold_s

    def long_rate(t: float) -> float:
        return long_peak * (_ramp(t, start_s, rise_s) - _ramp(t, fall_at, rise_s))

    return build_trace(
        "long-context wave",
        f"{chat:g} chat req/s throughout, plus {LONG_CONTEXT.prompt_tokens // 1000}k-token "
        f"prompts rising to {long_peak:g} req/s over {rise_s / 60:g} min from "
        f"t={start_s / 60:g} min, held {hold_s / 60:g} min, falling over {rise_s / 60:g} min; "
        f"{hours:g} h",
        hours * HOUR_S,
        {CHAT: lambda t: chat, LONG_CONTEXT: long_rate},
        seed=seed,
    )
