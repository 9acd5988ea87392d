#!/usr/bin/env bash
# The whole test suite: set-up, the nbdev sync gate, every notebook (quick mode), and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
# A test run must change nothing in the checkout: the state before (status, diff, untracked files) is compared at the end.
tree_state() { git status --porcelain --untracked-files=all; git --no-pager diff HEAD | sha256sum; }
before=$(tree_state)

echo "[test] sync gate: nbdev_clean and nbdev_export must leave no diff"
nbdev_clean
nbdev_export
if [ -n "$(git status --porcelain -- nbs srflow_nb)" ]; then
  git status --porcelain -- nbs srflow_nb
  git --no-pager diff --stat -- nbs srflow_nb
  echo "[test] FAILED: notebooks and srflow_nb/ are out of sync (run nbdev_clean && nbdev_export and commit)"
  exit 1
fi

echo "[test] committed notebook outputs are those of the current code (tools/run_notebooks.py --check)"
python3 tools/run_notebooks.py --check

echo "[test] nbdev_test (quick mode; slow/cuda cells skipped)"
start=$(date +%s)
# One torch/OpenMP thread per notebook worker unless told otherwise: two workers with two threads each on two cores
# oversubscribe, and OpenMP's spinning threads then burn many times the CPU of the work itself.
OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" nbdev_test --n_workers "${SRFLOW_NB_WORKERS:-2}" --timing --flags ""
echo "[test] nbdev_test took $(( $(date +%s) - start )) s"

echo "[test] pytest (with the real-browser tests, JupyterLab and the docs site built by tools/build_docs.py: they fail, never skip, when chromium or playwright is missing)"
start=$(date +%s)
SRFLOW_REQUIRE_BROWSER=1 python3 -m pytest tests -q -p no:cacheprovider --durations=5
echo "[test] pytest took $(( $(date +%s) - start )) s"

echo "[test] the checkout is as the test run found it (git status --porcelain, git diff)"
if [ "$(tree_state)" != "$before" ]; then
  git status --porcelain --untracked-files=all
  echo "[test] FAILED: the test run changed or left files in the checkout (results go to core.output_root's scratch folder under IN_TEST)"
  exit 1
fi
