"""EKS access for this Lambda: the health-check Lambda's ``eks_client`` module, not a copy.

In the Lambda zip the CDK app stages ``lambdas/health_check/eks_client.py`` at this zip's
root as ``eks_client``; tests and tools import it from its package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lambdas.health_check import eks_client
else:
    try:
        import eks_client
    except ImportError:  # tests and tools: the repository root is on sys.path
        from lambdas.health_check import eks_client

__all__ = ["eks_client"]
