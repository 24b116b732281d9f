# saerec image: what every manifest in k8s/ runs (head, workers, job submitter), and a plain
# `docker run` too. Ray's own image supplies Python 3.11, Ray 2.60 and the tools KubeRay expects.
#   docker build -t saerec:0.1.0 .                                          # CPU (default)
#   docker build -t saerec:0.1.0-gpu --build-arg BASE_IMAGE=rayproject/ray:2.60.0-py311-gpu .
# Dependencies are the exact versions of constraints.txt, the set CI tests (scripts/lock.sh).
ARG BASE_IMAGE=rayproject/ray:2.60.0-py311
FROM ${BASE_IMAGE}

# torch's wheel index: empty takes the default index (the CUDA build on Linux, right for the GPU
# image); a CPU image is much smaller with PyTorch's CPU-only wheel index here.
ARG TORCH_INDEX_URL=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Ray's image runs as `ray` (uid 1000, group users/100); say so numerically, so that Kubernetes'
# runAsNonRoot can verify it.
USER 1000:100
WORKDIR /home/ray/saerec

# Dependencies first: this layer is rebuilt only when the pins change, not with every code change.
COPY --chown=1000:100 constraints.txt ./
# (hadolint reads the optional --index-url expansion as an unpinned package: torch is pinned)
# hadolint ignore=DL3013
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==2.13.0" \
 && pip install -r constraints.txt

COPY --chown=1000:100 pyproject.toml README.md ./
COPY --chown=1000:100 saerec ./saerec
RUN pip install --no-deps -c constraints.txt . \
 && python -c "import saerec.cli, saerec.v1.recommender_pb2_grpc, saerec.serving.deployment"

# Deployment assets the commands read by relative path (serve deploy serve/config.yaml, --spec tune/...).
COPY --chown=1000:100 serve ./serve
COPY --chown=1000:100 tune ./tune

CMD ["saerec", "--help"]
