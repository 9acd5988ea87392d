#!/usr/bin/env bash
# The README's first command: set up (idempotent), then run the main job on the bundled images and checkpoint.
# usage: bash tools/demo.sh [srflow demo options, e.g. --quick]   (output: demo_out/ unless -o is given)
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
if [[ " $* " == *" -o "* || " $* " == *" --out "* ]]; then srflow demo "$@"; else srflow demo -o demo_out/ "$@"; fi
