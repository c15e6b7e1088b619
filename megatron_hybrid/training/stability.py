"""Step skipping (Olmo): drop an update whose loss or grad norm spikes, or that is not finite.

A value spikes when it exceeds the mean of its recent history (``window`` steps) by ``sigma``
standard deviations. The test only starts once ``min_history`` values exist, so the noisy first
steps are never judged. Every finite value enters the history, skipped or not: a lasting shift in
level (after an LR change) then stops counting as a spike within a window, rather than skipping
forever. Non-finite values never enter; ``max_nonfinite`` of them in a row stop the run.
"""

from __future__ import annotations

import math
from collections import deque


class NonFiniteLossError(RuntimeError):
    """Too many consecutive steps with a NaN/inf loss or grad norm."""


class SpikeDetector:
    def __init__(self, sigma: float = 6.0, window: int = 128, min_history: int = 20, max_nonfinite: int = 8):
        self.sigma, self.min_history, self.max_nonfinite = sigma, min_history, max_nonfinite
        self.history = {"loss": deque(maxlen=window), "grad_norm": deque(maxlen=window)}
        self.consecutive_nonfinite = 0
        self.skipped_total = 0

    def _spikes(self, name: str, value: float) -> bool:
        hist = self.history[name]
        if self.sigma <= 0 or len(hist) < self.min_history:
            return False
        mean = sum(hist) / len(hist)
        std = math.sqrt(sum((x - mean) ** 2 for x in hist) / len(hist))
        return value > mean + self.sigma * std

    def judge(self, loss: float, grad_norm: float) -> str | None:
        """The reason to skip this step (``"nonfinite"``, ``"loss spike"``, ...), or None."""
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            self.consecutive_nonfinite += 1
            self.skipped_total += 1
            if self.consecutive_nonfinite >= self.max_nonfinite:
                raise NonFiniteLossError(
                    f"{self.consecutive_nonfinite} consecutive steps with a non-finite loss or grad norm "
                    f"(loss={loss}, grad_norm={grad_norm}); stopping. Lower the LR or check the data."
                )
            return "nonfinite"
        self.consecutive_nonfinite = 0
        reasons = [name for name, v in (("loss", loss), ("grad_norm", grad_norm)) if self._spikes(name, v)]
        self.history["loss"].append(loss)
        self.history["grad_norm"].append(grad_norm)
        if reasons:
            self.skipped_total += 1
            return " and ".join(reasons) + " spike"
        return None

    def state_dict(self) -> dict:
        return {
            "loss": list(self.history["loss"]),
            "grad_norm": list(self.history["grad_norm"]),
            "consecutive_nonfinite": self.consecutive_nonfinite,
            "skipped_total": self.skipped_total,
        }

    def load_state_dict(self, state: dict) -> None:
        for name in ("loss", "grad_norm"):
            self.history[name].clear()
            self.history[name].extend(state[name])
        self.consecutive_nonfinite = state["consecutive_nonfinite"]
        self.skipped_total = state["skipped_total"]
