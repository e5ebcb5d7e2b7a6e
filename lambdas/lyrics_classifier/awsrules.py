"""AWS's rules where moto 5.2.5 is lenient, for the local runner and `serve`.

- A Distributed Map whose failed children exceed its ToleratedFailureCount/Percentage (AWS's
  default: 0) fails with States.ExceedToleratedFailureThreshold, and its Catch runs. moto counts
  the failed children but lets the Map succeed with `null` for each (its map_run_record.py
  has a TODO for it), so the AWS path Map -> Catch -> ReportFailure would never run locally.

Applied once per process, before the first execution starts; the patch wraps two methods of
moto's interpreter (checked against moto 5.2.5, which pyproject pins).
"""

from __future__ import annotations

import threading
from typing import Any

EXCEEDED_CAUSE = "The specified tolerated failure threshold was exceeded"  # AWS's wording

_lock = threading.Lock()
_applied = False


def apply() -> None:
    global _applied
    with _lock:
        if not _applied:
            _fail_maps_over_tolerance()
            _applied = True


def _fail_maps_over_tolerance() -> None:
    from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.distributed_iteration_component import (  # noqa: E501
        DistributedIterationComponent,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.state_map import StateMap
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.tolerated_failure import (
        ToleratedFailureCountDecl,
        ToleratedFailurePercentageDecl,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    exceeded_type = StatesErrorNameType.StatesExceedToleratedFailureThreshold
    from_state_props, map_run = StateMap.from_state_props, DistributedIterationComponent._map_run

    def remember_tolerance(self: Any, state_props: Any) -> None:
        from_state_props(self, state_props)
        # moto fills an unset threshold with 0, which reads like an explicit 0: note which are set.
        self.iteration_component.tolerance_set = (
            state_props.get(ToleratedFailureCountDecl) is not None,
            state_props.get(ToleratedFailurePercentageDecl) is not None,
        )

    def map_run_with_tolerance(self: Any, env: Any, eval_input: Any) -> None:
        map_run(self, env, eval_input)  # every child has ended; their outputs are on env.stack
        items = eval_input.map_run_record.item_counter
        failed, total = items.failed.get() + items.timed_out.get(), items.total.get()
        if failed == 0:
            return
        count_set, percentage_set = getattr(self, "tolerance_set", (False, False))
        over_count = failed > eval_input.tolerated_failure_count
        over_percentage = failed * 100.0 / max(total, 1) > eval_input.tolerated_failure_percentage
        if count_set or percentage_set:  # either threshold exceeded fails the Map Run
            exceeded = (count_set and over_count) or (percentage_set and over_percentage)
        else:
            exceeded = True  # AWS's default tolerance is 0
        if exceeded:
            env.stack.pop()  # the outputs list map_run left
            raise FailureEventException(FailureEvent(
                env=env,
                error_name=StatesErrorName(typ=exceeded_type),
                event_type=HistoryEventType.MapRunFailed,
                event_details=EventDetails(mapRunFailedEventDetails=MapRunFailedEventDetails(
                    error=exceeded_type.to_name(), cause=EXCEEDED_CAUSE)),
            ))

    StateMap.from_state_props = remember_tolerance
    DistributedIterationComponent._map_run = map_run_with_tolerance
