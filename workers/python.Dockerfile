# farm/python:3.11 — the air-gapped stand-in for Docker Hub's python:3.11, built by
# scripts/images.sh on farm/debian:bookworm (Debian's python3 is 3.11).
# It behaves like the image it stands for: `pip install` works (Debian's PEP 668
# EXTERNALLY-MANAGED marker is removed, as the official image has none; packages go
# to /usr/local like there), and `python`/`pip` name Python 3.
FROM farm/debian:bookworm
RUN set -e; \
    rm -f /usr/lib/python3*/EXTERNALLY-MANAGED; \
    ln -sf /usr/bin/python3 /usr/local/bin/python; \
    ln -sf /usr/bin/pip3 /usr/local/bin/pip; \
    ln -sf /usr/bin/pip3 /usr/local/bin/pip3.11
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
CMD ["python3"]
