#!/bin/sh
# Entry point of prometheus.Dockerfile: a scrape configuration for dbprobe agent, then
# Prometheus on loopback. Storage is in the container (a demo keeps no history).
set -eu

agent=${DBPROBE_AGENT:-127.0.0.1:9187}
interval=${SCRAPE_INTERVAL:-5s}
config=$(mktemp)
cat >"$config" <<CONFIG
global:
  scrape_interval: $interval
  evaluation_interval: $interval
scrape_configs:
  - job_name: dbprobe
    static_configs:
      - targets: ['$agent']
CONFIG
echo "prometheus: scraping dbprobe agent at $agent every $interval" >&2
exec prometheus --config.file="$config" --storage.tsdb.path="$(mktemp -d)" \
    --web.listen-address="127.0.0.1:${PROMETHEUS_PORT:-9090}" "$@"
