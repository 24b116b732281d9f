"""One progress helper for long work: a periodic line with rate and ETA.

A line per interval (not a redrawing bar) because most long work here runs inside Ray
workers whose stdout is forwarded line by line to the driver.
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("saerec")


def print_line(msg: str) -> None:
    """One line to stdout, flushed. Used inside Ray Train workers instead of ``print``: Train
    patches print there to log *and* echo, which shows every line twice on the driver."""
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def fmt_seconds(s: float) -> str:
    s = max(0.0, float(s))
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


class Progress:
    """Counts units of work and prints ``what: done/total (pct) rate unit/s ETA`` now and then."""

    def __init__(self, what: str, total: float | None, unit: str = "it", every_s: float = 10.0,
                 printer=None, enabled: bool = True):
        self.what, self.total, self.unit, self.every_s = what, total, unit, every_s
        self.done = 0.0
        self.start = self.last = time.perf_counter()
        self.printer = printer or (lambda msg: print(msg, flush=True))
        self.enabled = enabled

    def update(self, n: float = 1.0, extra: str = "") -> None:
        self.done += n
        now = time.perf_counter()
        if self.enabled and now - self.last >= self.every_s:
            self.last = now
            self.printer(self.line(extra))

    def rate(self) -> float:
        return self.done / max(time.perf_counter() - self.start, 1e-9)

    def line(self, extra: str = "") -> str:
        rate = self.rate()
        parts = [f"{self.what}: {self.done:,.0f}"]
        if self.total:
            parts[0] += f"/{self.total:,.0f} ({100 * self.done / self.total:.0f}%)"
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            parts.append(f"ETA {fmt_seconds(eta)}")
        parts.insert(1, f"{rate:,.0f} {self.unit}/s")
        if extra:
            parts.append(extra)
        return " | ".join(parts)
