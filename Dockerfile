# syntax=docker/dockerfile:1
# The one image every modelferry role runs: `modelferry controller` (the manager Deployment),
# `modelferry worker` (the per-node Jobs and the optional DaemonSet), and the other subcommands.
#
#   docker build --tag ghcr.io/modelferry/modelferry:0.1.0 .
#
# The reference is the one in org.opencontainers.image.ref.name below; deploy/ and the default of
# WorkerSettings.image (modelferry/settings.py) name the same one, and its tag is the project's
# version (tests/deploy/test_image_is_what_deploy_references.py checks all four agree).
#
# The base is pinned to an exact patch release; pin its digest too (FROM python:...@sha256:...)
# where the registry is reachable when this file changes.

FROM python:3.11.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/modelferry
WORKDIR /src
COPY pyproject.toml README.md ./
COPY modelferry ./modelferry
COPY workflows ./workflows
COPY activities ./activities
COPY watcher ./watcher
# The project and its runtime dependencies only: no extras (dev, test).
RUN /opt/modelferry/bin/pip install /src

FROM python:3.11.13-slim-bookworm
LABEL org.opencontainers.image.title="modelferry" \
      org.opencontainers.image.description="Puts AI models on Kubernetes nodes via Temporal workflows" \
      org.opencontainers.image.ref.name="ghcr.io/modelferry/modelferry:0.1.0" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/modelferry /opt/modelferry
# HOME: uid 65532 has no home directory; /tmp is a writable emptyDir in the deploy/ Pods, whose
# root filesystem is read-only.
ENV PATH=/opt/modelferry/bin:$PATH \
    HOME=/tmp \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Non-root by default (the node-worker DaemonSet overrides it: deploy/node-worker/daemonset.yaml).
USER 65532:65532
ENTRYPOINT ["modelferry"]
CMD ["--help"]
