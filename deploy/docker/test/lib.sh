# shellcheck shell=bash
# Shared by the deploy tests (deploy/docker/test/compose, deploy/k8s/test/play):
# podman with the project's containers.conf, failing with a message, waiting
# for a condition, and an HS256 session JWT for /api/predict.
export CONTAINERS_CONF=${CONTAINERS_CONF:-$REPO/deploy/docker/podman.conf}

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
say() { printf '%s: %s\n' "${TEST_NAME:-deploy}" "$*"; }

# wait_until SECONDS CMD...: runs CMD every second until it succeeds (0) or
# SECONDS pass (1).
wait_until() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 1
  done
}
# wait_for SECONDS WHAT CMD...: wait_until, failing the test naming WHAT.
wait_for() {
  local secs=$1 what=$2
  shift 2
  wait_until "$secs" "$@" || fail "$what: not within ${secs}s"
}

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

# jwt_hs256 SECRET ORG_ID: a Supabase-style session token for one hour.
jwt_hs256() {
  local h p now
  now=$(date +%s)
  h=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
  p=$(printf '{"sub":"00000000-0000-4000-8000-000000000001","role":"authenticated","aud":"authenticated","exp":%d,"app_metadata":{"org_id":"%s"}}' \
    $((now + 3600)) "$2" | b64url)
  printf '%s.%s.%s' "$h" "$p" "$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -hmac "$1" -binary | b64url)"
}

# A change of one deal, as n8n posts it to ingest's webhook.
deal_json() {
  printf '[{"external_id":"%s","stage":"discovery","created_at":"2026-11-02T09:00:00Z","amount":12000,"close_date":"2027-01-31"}]' "$1"
}

# One deploy test at a time on a machine: the images' tags, the podman secret
# and volumes that the manifests name are the machine's, not a checkout's.
mkdir -p /var/cache/dealscore
exec 9>/var/cache/dealscore/.deploy-test.lock
flock -w 1800 9 || fail "another deploy test held /var/cache/dealscore/.deploy-test.lock for 30 minutes"
