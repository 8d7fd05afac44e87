# A PostgreSQL image from Debian's own package, for running the compose stack where the official
# postgres image cannot be pulled (docker/README.md, "Images from Debian packages"). It reads the
# official image's variables (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB) on first start.
#   podman build -f docker/local/postgres.Dockerfile --build-arg BASE_IMAGE=localhost/sweeplab-base:bookworm docker/local
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/postgresql/data /run/postgresql \
 && chown -R postgres:postgres /var/lib/postgresql /run/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
CMD ["/usr/local/bin/postgres-entrypoint.sh"]
