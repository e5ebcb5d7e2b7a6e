"""Faults as AWS delivers them, injected into a local run (`run --fault`, `serve --fault`).

Each fault is STEP:KIND. The Lambda router (local.LambdaRouter) applies it to the step's
invocations, the way the Lambda service and Step Functions would behave; nothing in the
handlers or the ASL knows about it:

    repeat    the step runs and succeeds, then its response is lost (Lambda.ServiceException):
              Step Functions' retry runs it again, as at-least-once delivery may
    timeout   the step runs to the end, then the invocation reports a timeout (Sandbox.Timedout),
              as a function timeout that strikes after its side effects
    throttle  the first invocations are refused with HTTP 429 (Lambda.TooManyRequestsException)
    fail      every invocation fails (an unhandled error): the step fails for good
    execution:timeout  the execution ends while ranges are being classified, as its
              TimeoutSeconds would: no Catch runs, the Cleanup rule's event does

repeat, timeout and throttle strike once per distinct invocation (each range for classify).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter

STEP_FUNCTIONS = {"split": "Split", "classify": "Classify", "merge": "Merge", "report-failure": "ReportFailure"}
STEPS = (*STEP_FUNCTIONS, "execution")
KINDS = ("repeat", "timeout", "throttle", "fail")
EXECUTION_KINDS = ("timeout",)
THROTTLES_PER_INVOCATION = 2  # 429s before an invocation goes through


@dataclasses.dataclass(frozen=True)
class Fault:
    step: str
    kind: str

    def __str__(self) -> str:
        return f"{self.step}:{self.kind}"


def parse_fault(text: str) -> Fault:
    """`merge:repeat` -> Fault; ValueError naming the allowed values otherwise."""
    step, _, kind = text.strip().lower().partition(":")
    if step not in STEPS:
        raise ValueError(f"--fault {text!r}: the step must be one of {', '.join(STEPS)}")
    allowed = EXECUTION_KINDS if step == "execution" else KINDS
    if kind not in allowed:
        raise ValueError(f"--fault {text!r}: the kind for {step} must be one of {', '.join(allowed)}")
    return Fault(step, kind)


class FaultPlan:
    """The faults of a run, and how often each has struck (thread-safe: the interpreter
    invokes from many threads)."""

    def __init__(self, faults: list[Fault] | tuple[Fault, ...] = ()):
        self.faults = tuple(dict.fromkeys(faults))
        self._struck: Counter[tuple[str, str, bytes]] = Counter()
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self.faults)

    def kinds(self, function: str) -> set[str]:
        return {f.kind for f in self.faults if STEP_FUNCTIONS.get(f.step) == function}

    @property
    def execution_timeout(self) -> bool:
        return Fault("execution", "timeout") in self.faults

    def strike(self, function: str, kind: str, invocation: bytes, times: int = 1) -> bool:
        """True the first `times` times this kind meets this invocation (its request body)."""
        if kind not in self.kinds(function):
            return False
        with self._lock:
            key = (function, kind, invocation)
            if self._struck[key] >= times:
                return False
            self._struck[key] += 1
            return True

    def struck(self) -> dict[str, int]:
        """step:kind -> how many times it struck, for the run's summary line."""
        counts: Counter[str] = Counter()
        names = {v: k for k, v in STEP_FUNCTIONS.items()}
        for (function, kind, _), n in self._struck.items():
            counts[f"{names.get(function, function)}:{kind}"] += n
        return dict(counts)
