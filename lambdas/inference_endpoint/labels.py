"""The 14 finding labels, in the classifier's output order, from the ``labels.txt`` beside this file.

``labels.txt`` is a copy of ``triton/model_repository/cxr_classifier/labels.txt`` (the function's
package must not depend on ``triton/`` at run time); a unit test fails when the two drift apart.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

LABELS_PATH = Path(__file__).resolve().with_name("labels.txt")


def read_labels(path: Path) -> tuple[str, ...]:
    labels = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if len(set(labels)) != len(labels):
        raise ValueError(f"{path} repeats a label")
    return labels


@cache
def finding_labels() -> tuple[str, ...]:
    return read_labels(LABELS_PATH)
