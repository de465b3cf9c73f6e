# farm/postgres — PostgreSQL from Debian on the local base image (no registry).
#   scripts/images.sh postgres
#   (= docker build --network host -f workers/postgres.Dockerfile -t farm/postgres:latest workers)
# Env: FARM_PG_PASSWORD (required), FARM_PG_PORT (default 5432), FARM_PG_LISTEN
# (default 127.0.0.1). The cluster is made on first start in /var/lib/postgresql/data
# (user and database "farm", password auth).
FROM farm/debian:bookworm
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
 && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/farm-postgres
LABEL farm.image.version="1"
USER postgres
ENTRYPOINT ["/usr/local/bin/farm-postgres"]
