# germseg: web app (REST API + Gradio UI) on port 8000, CPU PyTorch by default.
#
#   docker build -t germseg:cpu .
#   docker build --build-arg TORCH_VARIANT=cuda -t germseg:cuda .     # PyPI's CUDA torch
#   docker run --rm -p 127.0.0.1:8000:8000 germseg:cpu
#
# TORCH_VARIANT=cpu installs TORCH_SPEC from the PyTorch CPU index (PIP_EXTRA_INDEX_URL), whose
# wheels carry the local version "+cpu" and therefore satisfy torch==X as well; a local wheel
# folder can replace that index: --build-arg PIP_EXTRA_INDEX_URL= --build-arg PIP_FIND_LINKS=DIR
FROM debian:bookworm-slim

ARG TORCH_VARIANT=cpu
ARG TORCH_SPEC="torch==2.13.0"
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_FIND_LINKS=

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

WORKDIR /opt/germseg

# Dependencies first, so that code changes do not reinstall them.
COPY requirements.txt ./
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# TORCH_SPEC pins torch (a build argument, so hadolint cannot see the pin).
# hadolint ignore=DL3013
RUN if [ "$TORCH_VARIANT" = "cuda" ]; then unset PIP_EXTRA_INDEX_URL; \
    elif [ "$TORCH_VARIANT" != "cpu" ]; then echo "TORCH_VARIANT must be cpu or cuda" >&2; exit 1; fi \
    && pip install --no-cache-dir "$TORCH_SPEC" \
    && pip install --no-cache-dir -r requirements.txt

COPY pyproject.toml README.md ./
COPY segmentation ./segmentation
COPY app ./app
# The project itself, from this source tree (its dependencies are pinned above).
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf build ./*.egg-info

COPY weights/ /opt/germseg/weights/

RUN groupadd --gid 10001 germseg \
    && useradd --create-home --uid 10001 --gid germseg germseg \
    && mkdir -p /data/results \
    && chown germseg:germseg /data/results

ENV GERMSEG_WEIGHTS=/opt/germseg/weights/germseg_unet3d.pt \
    GERMSEG_RESULTS_DIR=/data/results \
    GRADIO_ANALYTICS_ENABLED=False \
    MPLCONFIGDIR=/tmp/matplotlib

USER 10001:10001
WORKDIR /home/germseg
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=4)"]
CMD ["germseg", "serve", "--host", "0.0.0.0", "--port", "8000"]
