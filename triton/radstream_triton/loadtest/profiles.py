"""Arrival schedules for the load tests, as pure functions.

Each profile returns a sorted list of send offsets in seconds from the start of
the run. Requests are sent at those offsets whether or not earlier requests have
finished (open loop), so the schedule is the offered load.

Arrival processes (``arrivals``):

- ``"even"`` (the default): arrivals are evenly spaced inside each window,
  ``offset_i = start + i * window / count``. Deterministic, so two runs offer
  exactly the same load.
- ``"poisson"``: a Poisson process with the same number of arrivals in each
  window (``count`` uniform times drawn with ``numpy.random.default_rng(seed)``
  and sorted, which is a Poisson process conditioned on its count). Burstier,
  reproducible for a given ``seed``.

``time_scale`` compresses a profile: every offset is divided by it, so
``time_scale=60`` runs a 60 s profile in 1 s with the same number of requests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

Arrivals = Literal["even", "poisson"]
ARRIVALS: tuple[Arrivals, ...] = ("even", "poisson")

#: The brief's burst: 50 images within 1 minute.
BURST_COUNT = 50
BURST_WINDOW_S = 60.0
#: The brief's sustained load: 10 images per minute for 30 minutes.
SUSTAINED_RATE_PER_MIN = 10.0
SUSTAINED_DURATION_S = 30 * 60.0
#: The step profile: one minute at each rate, in images per minute.
RAMP_RATES_PER_MIN: tuple[float, ...] = (2.0, 5.0, 10.0, 20.0)
RAMP_STEP_S = 60.0


def _check(time_scale: float, arrivals: str) -> None:
    if not time_scale > 0:
        raise ValueError(f"time_scale must be > 0, got {time_scale}")
    if arrivals not in ARRIVALS:
        raise ValueError(f"arrivals must be one of {', '.join(ARRIVALS)}, got {arrivals!r}")


def window(
    count: int,
    window_s: float,
    *,
    start_s: float = 0.0,
    time_scale: float = 1.0,
    arrivals: Arrivals = "even",
    seed: int = 0,
) -> list[float]:
    """``count`` arrivals inside ``[start_s, start_s + window_s)``, scaled by ``time_scale``."""
    _check(time_scale, arrivals)
    if count < 0 or window_s < 0:
        raise ValueError(f"count and window_s must be >= 0, got {count} and {window_s}")
    if count == 0:
        return []
    if arrivals == "even":
        raw = start_s + np.arange(count, dtype=np.float64) * (window_s / count)
    else:
        raw = start_s + np.sort(np.random.default_rng(seed).uniform(0.0, window_s, size=count))
    return [float(offset) / time_scale for offset in raw]


def burst(
    time_scale: float = 1.0,
    *,
    count: int = BURST_COUNT,
    window_s: float = BURST_WINDOW_S,
    arrivals: Arrivals = "even",
    seed: int = 0,
) -> list[float]:
    """50 images within one minute (nominal span 60 s)."""
    return window(count, window_s, time_scale=time_scale, arrivals=arrivals, seed=seed)


def sustained(
    time_scale: float = 1.0,
    *,
    rate_per_min: float = SUSTAINED_RATE_PER_MIN,
    duration_s: float = SUSTAINED_DURATION_S,
    arrivals: Arrivals = "even",
    seed: int = 0,
) -> list[float]:
    """10 images per minute for 30 minutes: 300 arrivals, one every 6 s (nominal)."""
    count = round(rate_per_min * duration_s / 60.0)
    return window(count, duration_s, time_scale=time_scale, arrivals=arrivals, seed=seed)


def ramp(
    time_scale: float = 1.0,
    *,
    rates_per_min: Sequence[float] = RAMP_RATES_PER_MIN,
    step_s: float = RAMP_STEP_S,
    arrivals: Arrivals = "even",
    seed: int = 0,
) -> list[float]:
    """Steps of increasing rate: by default 2, 5, 10 then 20 images per minute, one minute each."""
    offsets: list[float] = []
    for step, rate in enumerate(rates_per_min):
        count = round(rate * step_s / 60.0)
        offsets += window(
            count, step_s, start_s=step * step_s, time_scale=time_scale, arrivals=arrivals, seed=seed + step
        )
    return sorted(offsets)


def nominal_duration_s(name: str) -> float:
    """The unscaled span of a named profile (what ``time_scale`` divides)."""
    return {
        "burst": BURST_WINDOW_S,
        "sustained": SUSTAINED_DURATION_S,
        "ramp": RAMP_STEP_S * len(RAMP_RATES_PER_MIN),
    }[name]


ProfileFunction = Callable[..., list[float]]
PROFILES: dict[str, ProfileFunction] = {"burst": burst, "sustained": sustained, "ramp": ramp}


def schedule(name: str, time_scale: float = 1.0, arrivals: Arrivals = "even", seed: int = 0) -> list[float]:
    """The named profile's send offsets (seconds), compressed by ``time_scale``."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}: choose one of {', '.join(PROFILES)}")
    return PROFILES[name](time_scale, arrivals=arrivals, seed=seed)
