# farm/redis — redis-server from Debian on the local base image (no registry).
#   docker build --network host -f workers/redis.Dockerfile -t farm/redis:latest workers
FROM farm/debian:bookworm
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && mkdir -p /data && chown redis:redis /data
LABEL farm.image.version="1"
WORKDIR /data
USER redis
CMD ["redis-server", "--bind", "127.0.0.1", "--port", "6379", "--dir", "/data", "--protected-mode", "yes"]
