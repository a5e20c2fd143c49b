# Prometheus as Debian packages it, scraping dbprobe agent. Build from this folder:
#   docker build -f docker/prometheus.Dockerfile -t dbprobe-prometheus docker
# The entry point writes the scrape configuration from DBPROBE_AGENT (host:port, default
# 127.0.0.1:9187) and serves on 127.0.0.1:PROMETHEUS_PORT (default 9090), every 5 s.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ARG DEBIAN_FRONTEND=noninteractive
ENV LANG=C.UTF-8

# Recommends (the node exporter) are left out; nothing is started at install time.
RUN set -eu; \
    apt-get update; \
    apt-get install -y --no-install-recommends prometheus; \
    rm -rf /var/lib/apt/lists/*; \
    prometheus --version

COPY prometheus-entrypoint.sh /usr/local/bin/prometheus-entrypoint
USER prometheus
ENTRYPOINT ["sh", "/usr/local/bin/prometheus-entrypoint"]
