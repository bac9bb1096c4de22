"""EKS access: the IAM token against its documented format, the CA, the client, the error mapping."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import ipaddress
import re
import ssl
import time
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import urllib3
from botocore.session import Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client as k8s

from lambdas.common import eks_client
from lambdas.health_check.kube import ApiKubernetesReader
from lambdas.health_check.rollout import wait_for_rollout
from tests.unit.lambdas import k8s_fixtures as fx

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
CLUSTER = "radstream-cluster"
REGION = "us-east-1"


def _session(token: str | None = None) -> Session:
    session = Session()
    session.set_credentials(ACCESS_KEY, SECRET_KEY, token)
    return session


def _decode(token: str) -> str:
    body = token.removeprefix(eks_client.TOKEN_PREFIX)
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


def _sigv4_presigned_signature(url: str, headers: dict[str, str], secret: str) -> str:
    """SigV4 query-string signing, written from the AWS specification, independent of botocore."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True)
    pairs = sorted(
        (quote(k, safe="-_.~"), quote(v[0], safe="-_.~")) for k, v in query.items() if k != "X-Amz-Signature"
    )
    canonical_query = "&".join(f"{k}={v}" for k, v in pairs)
    signed = query["X-Amz-SignedHeaders"][0].split(";")
    all_headers = {"host": parts.netloc, **{k.lower(): v for k, v in headers.items()}}
    canonical_headers = "".join(f"{name}:{all_headers[name].strip()}\n" for name in signed)
    canonical_request = "\n".join(
        [
            "GET",
            parts.path or "/",
            canonical_query,
            canonical_headers,
            ";".join(signed),
            hashlib.sha256(b"").hexdigest(),
        ]
    )
    amz_date = query["X-Amz-Date"][0]
    scope = query["X-Amz-Credential"][0].split("/", 1)[1]
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    date, region, service, _ = scope.split("/")
    key = f"AWS4{secret}".encode()
    for item in (date, region, service, "aws4_request"):
        key = hmac.new(key, item.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


# ---- the token ---------------------------------------------------------------------------------


def test_token_has_the_k8s_aws_v1_prefix_and_unpadded_base64url_body() -> None:
    token = eks_client.generate_token(CLUSTER, REGION, _session())
    assert token.startswith("k8s-aws-v1.")
    body = token.removeprefix("k8s-aws-v1.")
    assert re.fullmatch(r"[A-Za-z0-9_-]+", body), "base64url alphabet, no padding"
    assert not body.endswith("=")
    assert _decode(token).startswith("https://")


def test_token_is_a_presigned_sts_get_caller_identity_url_valid_60_seconds() -> None:
    url = _decode(eks_client.generate_token(CLUSTER, REGION, _session()))
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert parts.scheme == "https"
    assert parts.netloc == f"sts.{REGION}.amazonaws.com"
    assert parts.path == "/"
    assert query["Action"] == "GetCallerIdentity"
    assert query["Version"] == "2011-06-15"
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Expires"] == "60"
    assert query["X-Amz-SignedHeaders"] == "host;x-k8s-aws-id"
    assert re.fullmatch(rf"{ACCESS_KEY}/\d{{8}}/{REGION}/sts/aws4_request", query["X-Amz-Credential"])
    assert re.fullmatch(r"\d{8}T\d{6}Z", query["X-Amz-Date"])
    assert re.fullmatch(r"[0-9a-f]{64}", query["X-Amz-Signature"])
    # The cluster name travels as a signed header, never in the URL.
    assert CLUSTER not in url


def test_token_signature_covers_the_x_k8s_aws_id_header() -> None:
    url = _decode(eks_client.generate_token(CLUSTER, REGION, _session()))
    signature = parse_qs(urlsplit(url).query)["X-Amz-Signature"][0]
    assert _sigv4_presigned_signature(url, {"x-k8s-aws-id": CLUSTER}, SECRET_KEY) == signature
    # STS, called by EKS with another cluster's name, would compute another signature.
    assert _sigv4_presigned_signature(url, {"x-k8s-aws-id": "other-cluster"}, SECRET_KEY) != signature


def test_token_carries_the_session_token_of_role_credentials() -> None:
    url = _decode(eks_client.generate_token(CLUSTER, REGION, _session(token="FwoGZXIvYXdzEXAMPLE")))
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Security-Token"] == ["FwoGZXIvYXdzEXAMPLE"]
    signature = query["X-Amz-Signature"][0]
    assert _sigv4_presigned_signature(url, {"x-k8s-aws-id": CLUSTER}, SECRET_KEY) == signature


def test_token_uses_the_regional_sts_endpoint() -> None:
    url = _decode(eks_client.generate_token(CLUSTER, "eu-west-1", _session()))
    assert urlsplit(url).netloc == "sts.eu-west-1.amazonaws.com"


def test_token_without_credentials_is_a_typed_auth_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(eks_client.KubernetesAuthError, match="cannot sign an EKS token for radstream-cluster"):
        eks_client.generate_token(CLUSTER, REGION, Session())


# ---- the cluster CA and the client -----------------------------------------------------------------


def _self_signed(common_name: str = "kubernetes") -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _authorization(api: k8s.ApiClient) -> str:
    """The Authorization header value the client will send."""
    return str(api.configuration.auth_settings()["BearerToken"]["value"])


def test_ca_file_holds_the_decoded_pem(tmp_path: Path) -> None:
    pem, _ = _self_signed()
    path = eks_client.write_ca_file(base64.b64encode(pem).decode(), tmp_path)
    assert path.read_bytes() == pem
    assert eks_client.write_ca_file(base64.b64encode(pem).decode(), tmp_path) == path


@pytest.mark.parametrize(
    ("value", "message"),
    [("not base64!", "CLUSTER_CA is not valid base64"), (base64.b64encode(b"hello").decode(), "PEM certificate")],
)
def test_a_bad_ca_is_a_config_error_naming_cluster_ca(value: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(eks_client.EksConfigError, match=message):
        eks_client.write_ca_file(value, tmp_path)


def test_api_client_verifies_the_ca_and_sends_the_bearer_token(tmp_path: Path) -> None:
    pem, _ = _self_signed()
    api = eks_client.build_api_client(
        "https://ABCDEF.gr7.us-east-1.eks.amazonaws.com",
        base64.b64encode(pem).decode(),
        lambda: "k8s-aws-v1.abc",
        ca_directory=tmp_path,
    )
    conf = api.configuration
    assert conf.host == "https://ABCDEF.gr7.us-east-1.eks.amazonaws.com"
    assert conf.verify_ssl is True
    assert Path(conf.ssl_ca_cert).read_bytes() == pem
    assert _authorization(api) == "Bearer k8s-aws-v1.abc"
    assert conf.retries is False


def test_api_client_refreshes_the_token_before_it_expires(tmp_path: Path) -> None:
    now = [0.0]
    issued = iter(["k8s-aws-v1.first", "k8s-aws-v1.second"])
    api = eks_client.build_api_client(
        "http://127.0.0.1:1", None, lambda: next(issued), refresh_after_s=600, clock=lambda: now[0]
    )
    now[0] = 599.0
    assert _authorization(api) == "Bearer k8s-aws-v1.first"
    now[0] = 601.0
    assert _authorization(api) == "Bearer k8s-aws-v1.second"


@pytest.mark.parametrize(
    ("endpoint", "ca", "message"),
    [
        ("ABCDEF.gr7.us-east-1.eks.amazonaws.com", "x", "must be a URL"),
        ("https://ABCDEF.gr7.us-east-1.eks.amazonaws.com", None, "CLUSTER_CA is required"),
    ],
)
def test_bad_endpoint_settings_are_config_errors(endpoint: str, ca: str | None, message: str) -> None:
    with pytest.raises(eks_client.EksConfigError, match=message):
        eks_client.build_api_client(endpoint, ca, lambda: "t")


def test_real_client_over_tls_with_the_cluster_ca(tmp_path: Path) -> None:
    cert_pem, key_pem = _self_signed()
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    cluster = fx.Cluster()
    with fx.FakeApiServer(cluster, tls=context).running() as server:
        token = eks_client.generate_token(CLUSTER, REGION, _session())
        api = eks_client.build_api_client(
            server.url, base64.b64encode(cert_pem).decode(), lambda: token, ca_directory=tmp_path
        )
        deployment = ApiKubernetesReader(api, timeout_s=5).read_deployment(fx.NAMESPACE, fx.DEPLOYMENT)
        assert deployment.status.ready_replicas == 2
        path, authorization, _ = cluster.requests[-1]
        assert path == f"/apis/apps/v1/namespaces/{fx.NAMESPACE}/deployments/{fx.DEPLOYMENT}"
        assert authorization == f"Bearer {token}"

        other_ca, _ = _self_signed("not-the-cluster")
        untrusted = eks_client.build_api_client(
            server.url, base64.b64encode(other_ca).decode(), lambda: token, ca_directory=tmp_path
        )
        with pytest.raises(eks_client.KubernetesApiError, match="TLS verification failed") as caught:
            ApiKubernetesReader(untrusted, timeout_s=5).read_deployment(fx.NAMESPACE, fx.DEPLOYMENT)
        assert not isinstance(caught.value, eks_client.KubernetesUnavailable)


# ---- error mapping -----------------------------------------------------------------------------------


def _raise(error: BaseException) -> object:
    raise error


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (404, eks_client.KubernetesNotFound),
        (401, eks_client.KubernetesAuthError),
        (403, eks_client.KubernetesAuthError),
        (429, eks_client.KubernetesUnavailable),
        (500, eks_client.KubernetesUnavailable),
        (503, eks_client.KubernetesUnavailable),
        (422, eks_client.KubernetesApiError),
    ],
)
def test_api_exceptions_map_to_typed_errors(status: int, expected: type[Exception]) -> None:
    with pytest.raises(expected, match=f"read pod radstream/p: HTTP {status}") as caught:
        eks_client.call_api("read pod radstream/p", lambda: _raise(k8s.ApiException(status=status, reason="Why")))
    assert type(caught.value) is expected


def test_a_read_timeout_is_unavailable() -> None:
    timeout = urllib3.exceptions.ReadTimeoutError(None, "/api", "Read timed out. (read timeout=0.2)")  # type: ignore[arg-type]
    with pytest.raises(eks_client.KubernetesUnavailable, match="list pods: ReadTimeoutError"):
        eks_client.call_api("list pods", lambda: _raise(timeout))


def test_the_real_client_gives_up_on_a_slow_api_after_its_timeout() -> None:
    cluster = fx.Cluster(delay_s=3.0)
    with fx.FakeApiServer(cluster).running() as server:
        api = eks_client.build_api_client(server.url, None, lambda: "k8s-aws-v1.t")
        reader = ApiKubernetesReader(api, timeout_s=0.3)
        started = time.monotonic()
        with pytest.raises(eks_client.KubernetesUnavailable, match="read deployment radstream/triton-inference-server"):
            reader.read_deployment(fx.NAMESPACE, fx.DEPLOYMENT)
        assert time.monotonic() - started < 2.0, "one bounded attempt, no hidden urllib3 retries"


def test_the_real_client_reports_a_missing_deployment_as_not_found() -> None:
    cluster = fx.Cluster(deployment=None)
    with fx.FakeApiServer(cluster).running() as server:
        reader = ApiKubernetesReader(eks_client.build_api_client(server.url, None, lambda: "t"), timeout_s=5)
        with pytest.raises(eks_client.KubernetesNotFound, match="HTTP 404"):
            reader.read_deployment(fx.NAMESPACE, fx.DEPLOYMENT)
        pods = reader.list_pods(fx.NAMESPACE, fx.SELECTOR)
        assert sorted(p.metadata.name for p in pods) == sorted(p["metadata"]["name"] for p in fx.steady_pods())


def test_the_real_client_waits_a_fix_forward_out_through_the_api() -> None:
    """The rollout wait over the real kubernetes client and the API's paths: the Deployment, its
    ReplicaSets and pods; the old ReplicaSet's crash-looping pod does not fail the fix (revision 4)."""
    old = fx.old_replica_set_crash_looping_pod()
    cluster = fx.Cluster(
        deployment=fx.deployment(revision=4),
        pods=[*fx.steady_pods(), old],
        replica_sets=fx.replica_sets_of_fix_forward(),
    )
    with fx.FakeApiServer(cluster).running() as server:
        reader = ApiKubernetesReader(eks_client.build_api_client(server.url, None, lambda: "t"), timeout_s=5)
        result = wait_for_rollout(reader, fx.NAMESPACE, fx.DEPLOYMENT, timeout_s=5, poll_s=0.1)
    assert result.status.complete
    paths = {path for path, _, _ in cluster.requests}
    assert f"/apis/apps/v1/namespaces/{fx.NAMESPACE}/replicasets" in paths
