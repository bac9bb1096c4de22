"""What a release is made of, as fingerprints the health gate's function carries in its environment.

The CDK Trigger runs the gate again when its handler's version changes
(``execute_on_handler_change``: the Trigger points at ``currentVersion``, whose logical ID hashes the
function's configuration, environment included). So everything the gate protects goes into that
environment: the image URI (its tag is the image asset's hash), the model repository's content hash,
and the hash of the rendered workload objects. A new image, a new model or a changed manifest is a
new function version, hence a new gate run.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

MODEL_REPOSITORY_DIR: Final = Path(__file__).resolve().parents[1] / "triton" / "model_repository"
FINGERPRINT_LENGTH: Final = 16
# CDK token placeholders in synthesized strings: their numbering follows construct creation order,
# not content; what they stand for (image URI, security group) is fingerprinted on its own.
_TOKEN = re.compile(r"\$\{Token\[[^\]]*\]\}")
_IGNORED_PARTS: Final = frozenset({"__pycache__", ".ipynb_checkpoints"})


def model_repository_hash(directory: Path | None = None) -> str:
    """SHA-256 over every file of the model repository (relative path and bytes), in path order."""
    root = directory or MODEL_REPOSITORY_DIR
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root)
        if _IGNORED_PARTS.intersection(relative.parts) or path.suffix == ".pyc":
            continue
        digest.update(relative.as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:FINGERPRINT_LENGTH]


def workload_hash(objects: Sequence[dict[str, Any]], image_uri: str | None = None) -> str:
    """SHA-256 of the workload's Kubernetes objects as applied (canonical JSON), the image URI and CDK
    tokens masked: the image has its own fingerprint, so each change shows as what it is."""
    text = json.dumps(list(objects), sort_keys=True, separators=(",", ":"))
    if image_uri:
        text = text.replace(json.dumps(image_uri)[1:-1], "<image>")
    text = _TOKEN.sub("<token>", text)
    return hashlib.sha256(text.encode()).hexdigest()[:FINGERPRINT_LENGTH]


def gate_environment(
    image_uri: str, objects: Sequence[dict[str, Any]], model_directory: Path | None = None
) -> dict[str, str]:
    """The gate function's release variables (lambdas/health_check/config.py reads and reports them)."""
    return {
        "GATE_IMAGE_URI": image_uri,
        "GATE_MODEL_REPOSITORY_HASH": model_repository_hash(model_directory),
        "GATE_WORKLOAD_HASH": workload_hash(objects, image_uri),
    }


def main() -> None:
    """``python -m cdk_app.release``: each stage's gate budget and this checkout's model repository hash."""
    from cdk_app.config import STAGES, gate_budget, load_config

    for stage in STAGES:
        config = load_config(stage)
        budget = gate_budget(config)
        print(
            f"{stage}: {budget.describe()}; Lambda timeout {config.hooks.health_gate_timeout_seconds} s; "
            f"progressDeadlineSeconds {budget.progress_deadline_seconds}"
        )
    print(f"model repository hash: {model_repository_hash()}")


if __name__ == "__main__":
    main()
