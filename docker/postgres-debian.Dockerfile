# PostgreSQL 15 as Debian packages it: built with --enable-dtrace, so dbprobe uses its USDT
# probes (the official postgres image is built without them). Build from this folder:
#   docker build -f docker/postgres-debian.Dockerfile -t dbprobe-postgres-debian docker
# and run the demo with POSTGRES_IMAGE=dbprobe-postgres-debian.
#
# STRIP_USDT=true removes the probes (.note.stapsdt) from the server binary: the result
# stands in for the official image where it cannot be pulled, with the same interface
# (POSTGRES_* variables, PGDATA, PGPORT, psql and pgbench on the PATH) and no USDT.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ARG DEBIAN_FRONTEND=noninteractive
ARG STRIP_USDT=false
ENV LANG=C.UTF-8 \
    PG_MAJOR=15 \
    PGDATA=/var/lib/postgresql/data
ENV PATH=/usr/lib/postgresql/$PG_MAJOR/bin:$PATH

# No cluster at install time: the entry point makes one in $PGDATA on first start.
RUN set -eu; \
    mkdir -p /etc/postgresql-common/createcluster.d; \
    echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/no-main-cluster.conf; \
    apt-get update; \
    apt-get install -y --no-install-recommends "postgresql-$PG_MAJOR"; \
    if [ "$STRIP_USDT" = true ]; then \
        apt-get install -y --no-install-recommends binutils; \
        objcopy --remove-section .note.stapsdt "/usr/lib/postgresql/$PG_MAJOR/bin/postgres"; \
        apt-get purge -y --autoremove binutils; \
    fi; \
    rm -rf /var/lib/apt/lists/*; \
    mkdir -p /var/run/postgresql "$PGDATA"; \
    chown postgres:postgres /var/run/postgresql "$PGDATA"

COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENTRYPOINT ["docker-entrypoint.sh"]
# Fast shutdown, as the official image: SIGTERM would wait for every client to leave.
STOPSIGNAL SIGINT
CMD ["postgres"]
