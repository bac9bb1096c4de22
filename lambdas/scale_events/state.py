"""What earlier runs already counted, in one DynamoDB item written with a conditional put.

The state holds:

* ``hpa``: the HPA's ``status.lastScaleTime`` and ``desiredReplicas`` the last run saw. A scale
  decision is a new ``lastScaleTime``: the HPA controller sets it exactly once per rescale
  (pkg/controller/podautoscaler/horizontal.go, ``setStatus`` after a successful scale update), so
  the count never depends on how the event recorder folded, combined, re-created or dropped the
  ``SuccessfulRescale`` Events (client-go tools/record/events_cache.go).
* ``pods``: per pod UID, the restart total already counted and whether its startup was published.
* ``scale_ups``: scale-ups seen but not yet served (time to scale is published when they are;
  ``UnservedScaleUps`` once when their deadline passes unserved).

The item carries a ``version``: ``save`` writes only if the version is still the one ``load``
read (DynamoDB condition expression), so two runs that raced (a duplicate delivery, a retry)
cannot both count: the loser raises StateConflict and publishes nothing. ``expires_at`` is the
table's TTL attribute, refreshed by every save; it is kept above the Event TTL (1 h).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.scale_events.errors import StateConflict, StateError, StateUnreadable

FORMAT: Final = 2


@dataclass(frozen=True)
class PodMemory:
    restarts: int  # container restarts already counted
    startup_reported: bool
    seen_at: float  # epoch seconds of the last run that listed the pod


@dataclass(frozen=True)
class OpenScaleUp:
    key: str  # "hpa:<lastScaleTime epoch>"
    at: float  # epoch seconds of the decision (the HPA's lastScaleTime)
    target: int  # the desired replicas it raised them to
    signal_at: float | None = None  # first evaluation at which the scaling signal crossed its target
    unserved_reported: bool = False  # UnservedScaleUps already published for it
    base: int = 0  # the desired replicas before the decision: the first added pod is serving pod base + 1
    first_reported: bool = False  # TimeToScaleSeconds (first added pod serving) already published


@dataclass
class ScaleState:
    last_scale_time: float | None = None
    desired: int | None = None
    pods: dict[str, PodMemory] = field(default_factory=dict)
    scale_ups: list[OpenScaleUp] = field(default_factory=list)
    updated_at: float | None = None

    def to_json(self) -> str:
        document = {
            "v": FORMAT,
            "updated_at": self.updated_at,
            "hpa": [self.last_scale_time, self.desired],
            "pods": {uid: [p.restarts, int(p.startup_reported), p.seen_at] for uid, p in sorted(self.pods.items())},
            "scale_ups": [
                [s.key, s.at, s.target, s.signal_at, int(s.unserved_reported), s.base, int(s.first_reported)]
                for s in self.scale_ups
            ],
        }
        return json.dumps(document, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ScaleState:
        """Parse a saved state; raises StateUnreadable for anything this version did not write."""
        try:
            document: Any = json.loads(text)
            if not isinstance(document, dict) or document.get("v") != FORMAT:
                raise ValueError(f"unknown state format {document.get('v') if isinstance(document, dict) else None}")
            last, desired = document["hpa"]
            return cls(
                last_scale_time=None if last is None else float(last),
                desired=None if desired is None else int(desired),
                pods={str(uid): PodMemory(int(v[0]), bool(v[1]), float(v[2])) for uid, v in document["pods"].items()},
                scale_ups=[
                    OpenScaleUp(
                        str(k), float(at), int(t), None if sig is None else float(sig), bool(flag), int(b), bool(f)
                    )
                    for k, at, t, sig, flag, b, f in document["scale_ups"]
                ],
                updated_at=None if document.get("updated_at") is None else float(document["updated_at"]),
            )
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
            raise StateUnreadable(f"saved state is unreadable: {type(error).__name__}: {error}") from None


@dataclass(frozen=True)
class Loaded:
    state: ScaleState | None  # None: nothing saved yet (or unreadable): the run records a baseline
    version: int  # 0 when there is no item


class StateStore(Protocol):
    def load(self) -> Loaded: ...

    def save(self, state: ScaleState, expected_version: int, now: float) -> None: ...


class DynamoStateStore:
    """The state in one item (``pk`` = the stage's key) of an on-demand, encrypted table with TTL."""

    def __init__(self, dynamodb_client: Any, table_name: str, key: str, ttl_seconds: float) -> None:
        self._ddb = dynamodb_client
        self.table_name = table_name
        self.key = key
        self.ttl_seconds = ttl_seconds

    def load(self) -> Loaded:
        try:
            answer = self._ddb.get_item(TableName=self.table_name, Key={"pk": {"S": self.key}}, ConsistentRead=True)
        except (ClientError, BotoCoreError) as error:
            raise StateError(f"cannot read the state from {self.table_name}: {error}") from error
        item = answer.get("Item")
        if item is None:
            return Loaded(None, 0)
        version = int(item["version"]["N"])
        try:
            return Loaded(ScaleState.from_json(item["state"]["S"]), version)
        except StateUnreadable:
            # Unreadable (an older format): a baseline, but saved over this version, not around it.
            return Loaded(None, version)

    def save(self, state: ScaleState, expected_version: int, now: float) -> None:
        item = {
            "pk": {"S": self.key},
            "version": {"N": str(expected_version + 1)},
            "state": {"S": state.to_json()},
            "expires_at": {"N": str(int(now + self.ttl_seconds))},
        }
        if expected_version == 0:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            condition = {
                "ConditionExpression": "version = :expected",
                "ExpressionAttributeValues": {":expected": {"N": str(expected_version)}},
            }
        try:
            self._ddb.put_item(TableName=self.table_name, Item=item, **condition)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise StateConflict(
                    f"state version {expected_version} was overwritten by another run: this run publishes nothing"
                ) from error
            raise StateError(f"cannot save the state to {self.table_name}: {error}") from error
        except BotoCoreError as error:
            raise StateError(f"cannot save the state to {self.table_name}: {error}") from error
