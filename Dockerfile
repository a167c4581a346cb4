# One image for every component: `llmchat chat-service | model-worker | judge | operator`.
#
#   docker build -t llm-in-the-chat:0.1.0 .          (users, kind)
#   make image                                       (here: buildah, no registry, see tools/image/)
#
# Both build this file: no heredocs (buildah 1.28 does not know them); the steps are scripts in
# tools/image/. The build stage installs exactly uv.lock (hash-checked, by uv pinned by hash)
# into /opt/venv, with every runtime dependency, and llama-cpp-python built from its locked
# sdist with the CPU flags of tools/llama/cmake-args (the default -march=native build can emit
# AMX/AVX-512 instructions that crash on other CPUs); `make image` hands it the wheel the local
# build made with the same flags instead of compiling again. The runtime stage is non-root and
# runs with a read-only root file system (the chart and the operator mount an emptyDir on /tmp,
# where LLMCHAT_CACHE keeps the model's verified digest).

# Any Debian bookworm image with python3 (3.11) and its venv module; `make image` passes a base
# made locally by mmdebstrap when no registry is reachable.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
WORKDIR /src
# uv reads the system's CA store (a proxy's CA included); Python comes from the base image
ENV UV_SYSTEM_CERTS=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_NO_CACHE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# dependencies first, in their own cached layer: they change only with the lock
COPY tools/uv/requirements.txt tools/uv/
COPY tools/llama/cmake-args tools/llama/build-wheel.sh tools/llama/lock-info.sh tools/llama/
COPY tools/image/build-venv.sh tools/image/
# the wheel `make image` hands over (with what it was built from), if any
COPY tools/image/wheels/ tools/image/wheels/
COPY pyproject.toml uv.lock ./
RUN bash tools/image/build-venv.sh
# then the project itself
COPY README.md ./
COPY llmchat ./llmchat
COPY llmchat-tools ./llmchat-tools
COPY chat-service ./chat-service
COPY model-worker ./model-worker
COPY judge ./judge
COPY operator ./operator
COPY tools/image/install-project.sh tools/image/smoke_model.py tools/image/
RUN bash tools/image/install-project.sh

FROM ${BASE_IMAGE}
# the OpenMP runtime llama.cpp links, and tini as PID 1 (a base from `make image` has both)
RUN (dpkg -s libgomp1 tini >/dev/null 2>&1 \
     || (apt-get update \
         && apt-get install -y --no-install-recommends libgomp1 tini \
         && rm -rf /var/lib/apt/lists/*)) \
 && useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin llmchat
COPY --from=build /opt/venv /opt/venv
USER 1000:1000
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LLMCHAT_HOST=0.0.0.0 \
    LLMCHAT_LOG_FORMAT=json \
    LLMCHAT_CACHE=/tmp/llm-in-the-chat \
    HOME=/home/llmchat
EXPOSE 8000
ENTRYPOINT ["/usr/bin/tini", "--", "llmchat"]
CMD ["chat-service"]
