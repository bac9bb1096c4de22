"""Access to the EKS API from a Lambda: an IAM-signed bearer token and a kubernetes ApiClient.

The token is what ``aws eks get-token`` and aws-iam-authenticator produce: ``k8s-aws-v1.``
followed by the unpadded base64url of a presigned STS ``GetCallerIdentity`` GET URL, valid
for 60 seconds (``X-Amz-Expires=60``), whose signature covers the ``x-k8s-aws-id`` header
carrying the cluster name. The header is not a GetCallerIdentity parameter, so it is passed
through botocore's event hooks: ``provide-client-params`` takes it out of the parameters
before validation, ``before-sign`` puts it on the request so SigV4 signs it.

EKS accepts such a token for 15 minutes after signing; the ApiClient refreshes it before
each request once it is older than ``TOKEN_REFRESH_SECONDS``.

Used by the health check and the scale-events hook (both read the workload's namespace).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import urllib3
from botocore.exceptions import BotoCoreError
from botocore.session import Session
from kubernetes import client as k8s

TOKEN_PREFIX: Final = "k8s-aws-v1."  # noqa: S105 - the token format's prefix, not a secret
CLUSTER_ID_HEADER: Final = "x-k8s-aws-id"
PRESIGN_EXPIRES_SECONDS: Final = 60
# EKS rejects a token 15 minutes after signing; refresh well before.
TOKEN_REFRESH_SECONDS: Final = 600.0

T = TypeVar("T")


class KubernetesApiError(Exception):
    """A Kubernetes API call failed; the message says which call and why."""


class KubernetesUnavailable(KubernetesApiError):
    """The API did not answer in time, refused the connection or answered 429/5xx: worth retrying later."""


class KubernetesAuthError(KubernetesApiError):
    """401 or 403: the Lambda's role has no (or not enough) access to the cluster."""


class KubernetesNotFound(KubernetesApiError):
    """404: the object does not exist (or vanished between two reads)."""


class EksConfigError(ValueError):
    """The cluster endpoint or CA cannot be used; the message names the setting."""


def _provide_cluster_id(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    if CLUSTER_ID_HEADER in params:
        context[CLUSTER_ID_HEADER] = params.pop(CLUSTER_ID_HEADER)


def _sign_cluster_id(request: Any, **_: Any) -> None:
    if CLUSTER_ID_HEADER in request.context:
        request.headers[CLUSTER_ID_HEADER] = request.context[CLUSTER_ID_HEADER]


def sts_client(region: str, session: Session | None = None) -> Any:
    """An STS client (regional endpoint) whose GetCallerIdentity signs the x-k8s-aws-id header."""
    client = (session or Session()).create_client("sts", region_name=region)
    client.meta.events.register("provide-client-params.sts.GetCallerIdentity", _provide_cluster_id)
    client.meta.events.register("before-sign.sts.GetCallerIdentity", _sign_cluster_id)
    return client


def presigned_identity_url(cluster_name: str, region: str, session: Session | None = None) -> str:
    url = sts_client(region, session).generate_presigned_url(
        "get_caller_identity",
        Params={CLUSTER_ID_HEADER: cluster_name},
        ExpiresIn=PRESIGN_EXPIRES_SECONDS,
        HttpMethod="GET",
    )
    return str(url)


def generate_token(cluster_name: str, region: str, session: Session | None = None) -> str:
    """The bearer token for ``cluster_name`` (the EKS cluster's name, not its ARN)."""
    try:
        url = presigned_identity_url(cluster_name, region, session)
    except BotoCoreError as error:  # no credentials, bad region
        raise KubernetesAuthError(f"cannot sign an EKS token for {cluster_name}: {error}") from error
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode("utf-8")).decode("ascii").rstrip("=")


def write_ca_file(ca_base64: str, directory: Path | None = None) -> Path:
    """Decode the cluster's CA bundle (EKS ``certificateAuthority.data``) into a PEM file.

    The file is named after the bundle's digest, so concurrent or warm invocations reuse it.
    """
    try:
        pem = base64.b64decode(ca_base64.strip(), validate=True)
    except (binascii.Error, ValueError) as error:
        raise EksConfigError(f"CLUSTER_CA is not valid base64: {error}") from None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise EksConfigError("CLUSTER_CA does not decode to a PEM certificate bundle")
    folder = directory or Path(tempfile.gettempdir()) / "eks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ca-{hashlib.sha256(pem).hexdigest()[:16]}.pem"
    if not path.exists() or path.read_bytes() != pem:
        path.write_bytes(pem)
    return path


def build_api_client(
    endpoint: str,
    ca_base64: str | None,
    token_provider: Callable[[], str],
    *,
    ca_directory: Path | None = None,
    refresh_after_s: float = TOKEN_REFRESH_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> k8s.ApiClient:
    """A kubernetes ApiClient for ``endpoint`` that verifies the cluster CA and sends the bearer token.

    ``ca_base64`` may be None only for a plain-HTTP endpoint (tests). urllib3 retries are off:
    callers decide when to retry, so a slow API costs one timeout per call, not four.
    """
    if not endpoint.startswith(("https://", "http://")):
        raise EksConfigError(f"CLUSTER_ENDPOINT={endpoint!r} must be a URL such as https://ABC.gr7.us-east-1.eks...")
    configuration = k8s.Configuration(host=endpoint.rstrip("/"))
    if endpoint.startswith("https://"):
        if not ca_base64:
            raise EksConfigError("CLUSTER_CA is required for an https CLUSTER_ENDPOINT")
        configuration.ssl_ca_cert = str(write_ca_file(ca_base64, ca_directory))
        configuration.verify_ssl = True
    configuration.retries = False
    issued: dict[str, float] = {}

    def refresh(conf: k8s.Configuration) -> None:
        now = clock()
        if "at" not in issued or now - issued["at"] >= refresh_after_s:
            token = token_provider()
            # "BearerToken" is the client's key from 36.0 on; "authorization" the one before.
            for key in ("BearerToken", "authorization"):
                conf.api_key[key] = token
                conf.api_key_prefix[key] = "Bearer"
            issued["at"] = now

    configuration.refresh_api_key_hook = refresh
    refresh(configuration)
    return k8s.ApiClient(configuration)


def _typed(description: str, error: k8s.ApiException) -> KubernetesApiError:
    status = int(error.status or 0)
    detail = " ".join(str(error.reason or "").split())
    if status == 0 and "SSLError" in detail:
        # Not worth retrying: the endpoint's certificate does not match CLUSTER_CA.
        return KubernetesApiError(f"{description}: TLS verification failed ({detail}); check CLUSTER_CA")
    reason = f"{description}: HTTP {status} {detail}".strip()
    if status == 404:
        return KubernetesNotFound(reason)
    if status in (401, 403):
        return KubernetesAuthError(f"{reason} (is the Lambda role mapped by an EKS access entry?)")
    if status == 0 or status == 429 or status >= 500:
        return KubernetesUnavailable(reason)
    return KubernetesApiError(reason)


def call_api(description: str, call: Callable[[], T]) -> T:
    """Run one API call and map its failures to the typed errors above."""
    try:
        return call()
    except k8s.ApiException as error:
        raise _typed(description, error) from error
    except AttributeError as error:
        # kubernetes 36.0.x decodes the body of every ApiException, and a transport-level one
        # (TLS failure) has none: the AttributeError hides the ApiException it replaced.
        if isinstance(error.__context__, k8s.ApiException):
            raise _typed(description, error.__context__) from error
        raise
    except (urllib3.exceptions.HTTPError, OSError) as error:
        # Read/connect timeouts, refused connections, dropped connections.
        raise KubernetesUnavailable(f"{description}: {type(error).__name__}: {error}") from error
