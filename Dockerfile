# The trainer image for the compose stack (README: "Run the full stack"): `docker compose up --build`.
#
# Checked: installing torch from PyTorch's CPU index
# (`pip install --index-url https://download.pytorch.org/whl/cpu torch==...`) before the
# project so pip keeps it instead of pulling the CUDA build; python:3.11.16-slim-bookworm is
# a published tag (public Dockerfiles pin it by its multi-platform digest).
# tests/deploy/test_dockerfile.py checks USER, ENTRYPOINT, the install and its layer order;
# tests/deploy/test_trainer_entrypoint.py runs the entry point script.
#
# One dependency list: the project's pyproject.toml, the same package the tests install.
# torch is installed first from the CPU index so that pip does not pull the CUDA build
# (gigabytes) when it resolves pyproject's `torch>=2.4,<3`. The dependencies are installed
# from pyproject.toml alone, before any source is copied, so that a change to the code
# rebuilds only the last layers (`pip install --no-deps .`), not every dependency.

FROM python:3.11.16-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

# Install from a throw-away copy of the sources: nothing of the build stays in the image.
WORKDIR /tmp/esper-src

# [project].dependencies, one requirement a line, each handed to pip as one argument.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
    | xargs --delimiter='\n' pip install --no-cache-dir

COPY README.md ./
COPY app ./app
COPY instrumentation ./instrumentation
RUN pip install --no-cache-dir --no-deps . \
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
