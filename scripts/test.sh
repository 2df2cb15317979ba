#!/usr/bin/env bash
# Set everything up from scratch and run the whole test suite, Kafka included.
#   bash scripts/test.sh [pytest args...]
# Creates .venv, installs streamnb with its test extras, installs Debian's
# chromium for the browser test when missing, starts a local Apache Kafka
# (scripts/kafka.sh), runs pytest, and stops Kafka again. Fails when a Kafka
# test was skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

bash scripts/setup.sh test

if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "== installing Debian's chromium for the browser test"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "!! could not install chromium; the browser test will fail"
fi

echo "== starting Kafka"
bash scripts/kafka.sh up
trap 'bash "$ROOT/scripts/kafka.sh" down || true' EXIT

export STREAMNB_KAFKA=127.0.0.1:9092
export STREAMNB_REQUIRE_KAFKA=1
echo "== running tests"
# Two processes (pytest-xdist): most tests wait on brokers, kernels and subprocesses.
.venv/bin/python -m pytest -ra -n 2 "$@"
