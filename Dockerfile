# The trainer image for the compose stack (README: "Run the full stack"): `docker compose up --build`.
#
# Checked (via the `search` tool): installing torch from PyTorch's CPU index
# (`pip install --index-url https://download.pytorch.org/whl/cpu torch==...`) before the
# project so pip keeps it instead of pulling the CUDA build; python:3.11.15-slim-bookworm is
# a published tag. tests/deploy/test_dockerfile.py checks USER, ENTRYPOINT and the install;
# tests/deploy/test_trainer_entrypoint.py runs the entry point script.
#
# One dependency list: the project's pyproject.toml, installed with `pip install .`, the same
# package the tests install. torch is installed first from the CPU index so that pip does
# not pull the CUDA build (gigabytes) when it resolves pyproject's `torch>=2.4,<3`.

FROM python:3.11.15-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

# Install from a throw-away copy of the sources: nothing of the build stays in the image.
WORKDIR /tmp/esper-src
COPY pyproject.toml README.md ./
COPY app ./app
COPY instrumentation ./instrumentation
RUN pip install --no-cache-dir . \
    && cd / \
    && rm -rf /tmp/esper-src

RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin esper \
    && mkdir -p /var/lib/esper/telemetry \
    && chown -R esper:esper /var/lib/esper

# `esper train ARGS`, or torchrun with ESPER_NPROC processes (deploy/trainer-entrypoint.sh).
# Owned by root, so the image user cannot change what the container runs.
COPY --chmod=0755 deploy/trainer-entrypoint.sh /usr/local/bin/trainer-entrypoint

USER esper
WORKDIR /var/lib/esper

ENTRYPOINT ["/usr/local/bin/trainer-entrypoint"]
CMD ["--telemetry-dir=/var/lib/esper/telemetry", "--no-progress"]
