"""Controller decisions as commands: issued, then executed or failed (COMMAND_* events).

Every action other than WAIT that a controller takes on a slot is a command. It is
issued when decided and then either executed by the slot or failed, with the reason: the
action mask forbade it, the seed's stage does not allow it, or the fossilization gate
rejected it.
"""

from __future__ import annotations

from typing import Any

from app.contracts.actions import Action
from app.contracts.events import EventType, TelemetryEvent
from app.contracts.stages import SeedStage
from app.telemetry import emit
from app.training.environment import HostEnvironment


def run_command(env: HostEnvironment, action: Action, allowed: bool, controller: str) -> bool:
    """Apply `action` to the env's slot unless the mask forbids it; True if it executed."""
    if action == Action.WAIT:
        return False
    data = _command_data(env, action, controller)
    _emit(env, EventType.COMMAND_ISSUED, f"{action.name} issued", data)
    stage_before = env.slot.stage
    if not allowed:
        return _failed(env, action, data, "masked: not a valid action for the slot now")
    if not env.apply(action):
        if action == Action.FOSSILIZE and stage_before == SeedStage.PROBATIONARY:
            return _failed(env, action, data, "rejected by the fossilization gate")
        return _failed(env, action, data, f"invalid for stage {stage_before.name}")
    _emit(env, EventType.COMMAND_EXECUTED, f"{action.name} executed", data)
    return True


def _command_data(env: HostEnvironment, action: Action, controller: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "action": action.name,
        "env_id": env.env_id,
        "slot_id": env.slot.slot_id,
        "controller": controller,
    }
    if action.blueprint is not None:
        data["blueprint"] = action.blueprint
    return data


def _failed(env: HostEnvironment, action: Action, data: dict[str, Any], reason: str) -> bool:
    event_data = {**data, "reason": reason}
    _emit(env, EventType.COMMAND_FAILED, f"{action.name} failed: {reason}", event_data)
    return False


def _emit(env: HostEnvironment, event_type: EventType, message: str, data: dict[str, Any]) -> None:
    signals = env.signals
    emit(
        TelemetryEvent(
            event_type=event_type,
            message=message,
            data=data,
            seed_id=env.slot.seed_id,
            slot_id=env.slot.slot_id,
            epoch=None if signals is None else signals.epoch,
        )
    )
