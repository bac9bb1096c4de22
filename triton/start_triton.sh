#!/usr/bin/env bash
# The one way RadStream starts Triton: in the container and in the local mode.
# Configuration comes from environment variables (defaults below; the admin key
# from TRITON_ADMIN_KEY or the file named by TRITON_ADMIN_KEY_FILE); anything
# passed as arguments is appended to the tritonserver command line.
set -euo pipefail

MODEL_REPOSITORY="${MODEL_REPOSITORY:-/opt/radstream/model_repository}"
TRITON_HTTP_PORT="${TRITON_HTTP_PORT:-8000}"
TRITON_GRPC_PORT="${TRITON_GRPC_PORT:-8001}"
TRITON_METRICS_PORT="${TRITON_METRICS_PORT:-8002}"
TRITON_LOG_LEVEL="${TRITON_LOG_LEVEL:-info}"
# Must stay below the pod's terminationGracePeriodSeconds so in-flight
# requests drain before the kubelet sends SIGKILL.
TRITON_EXIT_TIMEOUT_SECS="${TRITON_EXIT_TIMEOUT_SECS:-25}"
# Upper bound on one HTTP request body, for servers that support the flag.
TRITON_HTTP_MAX_INPUT_BYTES="${TRITON_HTTP_MAX_INPUT_BYTES:-67108864}"
TRITON_METRICS_INTERVAL_MS="${TRITON_METRICS_INTERVAL_MS:-2000}"
TRITONSERVER_BIN="${TRITONSERVER_BIN:-tritonserver}"
TRITON_BACKEND_DIR="${TRITON_BACKEND_DIR:-}"
# 0.0.0.0 in a pod; the local mode binds loopback only.
TRITON_BIND_ADDRESS="${TRITON_BIND_ADDRESS:-0.0.0.0}"
ADMIN_APIS="model-repository,model-config,shared-memory,trace,logging"

fail() {
  echo "start_triton.sh: $*" >&2
  exit 64
}

require_port() {
  local name="$1" value="$2"
  if ! [[ "$value" =~ ^[0-9]{1,5}$ ]] || ((10#$value < 1 || 10#$value > 65535)); then
    fail "$name=$value is not a port number (1-65535)"
  fi
}

require_positive_integer() {
  local name="$1" value="$2"
  if ! [[ "$value" =~ ^[0-9]{1,12}$ ]] || ((10#$value == 0)); then
    fail "$name=$value is not a positive integer"
  fi
}

require_port TRITON_HTTP_PORT "$TRITON_HTTP_PORT"
require_port TRITON_GRPC_PORT "$TRITON_GRPC_PORT"
require_port TRITON_METRICS_PORT "$TRITON_METRICS_PORT"
require_positive_integer TRITON_EXIT_TIMEOUT_SECS "$TRITON_EXIT_TIMEOUT_SECS"
require_positive_integer TRITON_HTTP_MAX_INPUT_BYTES "$TRITON_HTTP_MAX_INPUT_BYTES"
require_positive_integer TRITON_METRICS_INTERVAL_MS "$TRITON_METRICS_INTERVAL_MS"

if [[ "$TRITON_HTTP_PORT" == "$TRITON_GRPC_PORT" || "$TRITON_HTTP_PORT" == "$TRITON_METRICS_PORT" ||
  "$TRITON_GRPC_PORT" == "$TRITON_METRICS_PORT" ]]; then
  fail "TRITON_HTTP_PORT, TRITON_GRPC_PORT and TRITON_METRICS_PORT must differ" \
    "(got $TRITON_HTTP_PORT, $TRITON_GRPC_PORT, $TRITON_METRICS_PORT)"
fi

[[ "$TRITON_BIND_ADDRESS" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] ||
  fail "TRITON_BIND_ADDRESS=$TRITON_BIND_ADDRESS is not an IPv4 address"

case "$TRITON_LOG_LEVEL" in
  error) log_args=(--log-info=false --log-warning=false --log-error=true) ;;
  warning) log_args=(--log-info=false --log-warning=true --log-error=true) ;;
  info) log_args=(--log-info=true --log-warning=true --log-error=true) ;;
  verbose) log_args=(--log-info=true --log-warning=true --log-error=true --log-verbose=1) ;;
  *) fail "TRITON_LOG_LEVEL=$TRITON_LOG_LEVEL is not one of error, warning, info, verbose" ;;
esac

case "$MODEL_REPOSITORY" in
  s3://?*) ;; # Triton reads S3 itself, with the pod's IAM identity.
  *)
    [[ -d "$MODEL_REPOSITORY" ]] || fail "MODEL_REPOSITORY=$MODEL_REPOSITORY is not a directory"
    compgen -G "$MODEL_REPOSITORY/*/config.pbtxt" >/dev/null ||
      fail "MODEL_REPOSITORY=$MODEL_REPOSITORY holds no model (no */config.pbtxt)"
    ;;
esac

command -v "$TRITONSERVER_BIN" >/dev/null || fail "TRITONSERVER_BIN=$TRITONSERVER_BIN is not an executable"

# In Kubernetes the key arrives as a mounted Secret file (optional).
TRITON_ADMIN_KEY_FILE="${TRITON_ADMIN_KEY_FILE:-}"
if [[ -z "${TRITON_ADMIN_KEY:-}" && -n "$TRITON_ADMIN_KEY_FILE" && -r "$TRITON_ADMIN_KEY_FILE" ]]; then
  TRITON_ADMIN_KEY="$(tr -d '\r\n' <"$TRITON_ADMIN_KEY_FILE")"
fi
if [[ -z "${TRITON_ADMIN_KEY:-}" ]]; then
  # No key configured: lock the admin APIs with a random key nobody knows.
  TRITON_ADMIN_KEY="$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')"
  echo "start_triton.sh: TRITON_ADMIN_KEY not set; admin APIs are locked with a random key" >&2
fi
[[ "$TRITON_ADMIN_KEY" =~ ^[A-Za-z0-9._~-]+$ ]] ||
  fail "TRITON_ADMIN_KEY must be letters, digits or ._~- (it is sent as an HTTP header value)"

args=(
  --model-repository="$MODEL_REPOSITORY"
  --model-control-mode=none
  --strict-readiness=true
  --exit-on-error=true
  --disable-auto-complete-config
  --exit-timeout-secs="$TRITON_EXIT_TIMEOUT_SECS"
  --http-address="$TRITON_BIND_ADDRESS"
  --grpc-address="$TRITON_BIND_ADDRESS"
  --metrics-address="$TRITON_BIND_ADDRESS"
  --http-port="$TRITON_HTTP_PORT"
  --grpc-port="$TRITON_GRPC_PORT"
  --metrics-port="$TRITON_METRICS_PORT"
  --allow-metrics=true
  --metrics-interval-ms="$TRITON_METRICS_INTERVAL_MS"
  # Latency quantiles per model (nv_inference_*_summary_us) for the dashboard and the
  # p99 alarm; the highest quantile comes last (cdk_app/metric_catalog.py explains why).
  --metrics-config=summary_latencies=true
  "--metrics-config=summary_quantiles=0.5:0.05,0.95:0.01,0.99:0.001"
  --allow-sagemaker=false
  --allow-vertex-ai=false
  --http-restricted-api="$ADMIN_APIS:admin-key=$TRITON_ADMIN_KEY"
  --grpc-restricted-protocol="$ADMIN_APIS:admin-key=$TRITON_ADMIN_KEY"
  "${log_args[@]}"
)
if [[ -n "$TRITON_BACKEND_DIR" ]]; then
  [[ -d "$TRITON_BACKEND_DIR" ]] || fail "TRITON_BACKEND_DIR=$TRITON_BACKEND_DIR is not a directory"
  args+=(--backend-directory="$TRITON_BACKEND_DIR")
fi
# --http-max-input-size arrived in Triton 2.52; 2.51 (NGC 24.10) has no HTTP
# body bound, so the preprocessing model enforces max_encoded_bytes instead.
if "$TRITONSERVER_BIN" --help 2>&1 | grep -q -- '--http-max-input-size'; then
  args+=(--http-max-input-size="$TRITON_HTTP_MAX_INPUT_BYTES")
fi

exec "$TRITONSERVER_BIN" "${args[@]}" "$@"
