#!/usr/bin/env bash
# Installs the Debian packages the test suite drives as real peers (e.g. a real
# Alertmanager, promtool, shellcheck). Called by `make test`; idempotent and quick
# when everything is present. Add a package to APT_PACKAGES with the test needing it.
set -euo pipefail

APT_PACKAGES=(
  prometheus  # promtool: tests/observability/test_deploy.py checks deploy/prometheus/rules.yml
  shellcheck    # make policy: lints every shell script (ADR-003 pipeline checks)
  redis-server  # tests/auth/test_redis_outage.py stops and restarts its own Redis
  jq            # scripts/check-base-digest.sh, driven by tests/image/test_base_digest_script.py
  prometheus-alertmanager # tests/alerts: a real Alertmanager delivering to firewatch
  wrk  # tests/bench: the bench harness drives load with wrk
  valgrind  # tests/bench/test_instructions.py: bench.inprocess --instructions counts with callgrind
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "test-deps: missing Debian packages: ${missing[*]} (run as root or install them)" >&2
  exit 1
fi
echo "test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
