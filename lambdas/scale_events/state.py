"""What earlier runs already counted, kept in one SSM parameter so that nothing is counted twice.

The state holds, for the look-back window only:

* ``events``: per HPA event UID, how many occurrences (the Event's ``count``) were counted and
  when it last occurred. Kubernetes folds a repeated identical event into the same object and
  raises its ``count``, so the key is the UID and the new occurrences are the count's increase.
* ``pods``: per pod UID, the restart total already counted and whether its startup time was
  published (once per pod).
* ``scale_ups``: scale-ups seen but not yet served by enough Ready replicas (time-to-scale is
  published when they are, or dropped once older than the look-back window).

Anything older than the window is neither counted nor remembered, so the state stays small
(a few hundred bytes for this workload; SSM Intelligent-Tiering allows up to 8 KB).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.scale_events.errors import StateError, StateUnreadable

VERSION: Final = 1
MAX_STATE_BYTES: Final = 8192


@dataclass(frozen=True)
class PodMemory:
    restarts: int  # container restarts already counted
    startup_reported: bool
    seen_at: float  # epoch seconds of the last run that listed the pod


@dataclass(frozen=True)
class OpenScaleUp:
    key: str  # "<event uid>:<occurrence count>"
    at: float  # epoch seconds when the HPA raised the desired replicas
    target: int  # the desired replicas it raised them to


@dataclass
class ScaleState:
    events: dict[str, tuple[int, float]] = field(default_factory=dict)
    pods: dict[str, PodMemory] = field(default_factory=dict)
    scale_ups: list[OpenScaleUp] = field(default_factory=list)
    updated_at: float | None = None

    def to_json(self) -> str:
        document = {
            "v": VERSION,
            "updated_at": self.updated_at,
            "events": {uid: [count, at] for uid, (count, at) in sorted(self.events.items())},
            "pods": {uid: [p.restarts, int(p.startup_reported), p.seen_at] for uid, p in sorted(self.pods.items())},
            "scale_ups": [[s.key, s.at, s.target] for s in self.scale_ups],
        }
        return json.dumps(document, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ScaleState:
        """Parse a saved state; raises StateUnreadable for anything this version did not write."""
        try:
            document: Any = json.loads(text)
            if not isinstance(document, dict) or document.get("v") != VERSION:
                raise ValueError(f"unknown state version {document.get('v') if isinstance(document, dict) else None}")
            return cls(
                events={str(uid): (int(v[0]), float(v[1])) for uid, v in document["events"].items()},
                pods={str(uid): PodMemory(int(v[0]), bool(v[1]), float(v[2])) for uid, v in document["pods"].items()},
                scale_ups=[OpenScaleUp(str(k), float(at), int(t)) for k, at, t in document["scale_ups"]],
                updated_at=None if document.get("updated_at") is None else float(document["updated_at"]),
            )
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
            raise StateUnreadable(f"saved state is unreadable: {type(error).__name__}: {error}") from None


class StateStore(Protocol):
    def load(self) -> ScaleState | None: ...

    def save(self, state: ScaleState) -> None: ...


class SsmStateStore:
    """The state in one SSM String parameter (created on first save).

    Run the function with reserved concurrency 1: SSM has no conditional write, and one run
    at a time is what makes "read, count, save" safe against a duplicate delivery.
    """

    def __init__(self, ssm_client: Any, parameter_name: str) -> None:
        self._ssm = ssm_client
        self.parameter_name = parameter_name

    def load(self) -> ScaleState | None:
        """The saved state, or None when there is none yet."""
        try:
            answer = self._ssm.get_parameter(Name=self.parameter_name)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ParameterNotFound":
                return None
            raise StateError(f"cannot read SSM parameter {self.parameter_name}: {error}") from error
        except BotoCoreError as error:
            raise StateError(f"cannot read SSM parameter {self.parameter_name}: {error}") from error
        return ScaleState.from_json(str(answer["Parameter"]["Value"]))

    def save(self, state: ScaleState) -> None:
        value = state.to_json()
        if len(value.encode("utf-8")) > MAX_STATE_BYTES:
            raise StateError(f"state is {len(value)} bytes, over SSM's {MAX_STATE_BYTES}: lower LOOKBACK_SECONDS")
        try:
            self._ssm.put_parameter(
                Name=self.parameter_name,
                Value=value,
                Type="String",
                Overwrite=True,
                Tier="Intelligent-Tiering",
            )
        except (ClientError, BotoCoreError) as error:
            raise StateError(f"cannot save SSM parameter {self.parameter_name}: {error}") from error
