#!/usr/bin/env bash
# Mutation testing of the code that guards patient records and alerts (mutmut, one module at a
# time with the tests meant to guard it). Too slow for every CI run: docs/testing.md gives the
# duration per module, the scores and the equivalent mutants.
#
#   scripts/mutation.sh                    # every module (hours on 2 cores)
#   scripts/mutation.sh journal writer     # some of them
#   MUTATION_JOBS=4 MUTATION_TIMEOUT=1800 scripts/mutation.sh drift
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
if [ ! -x "$BIN/mutmut" ]; then
    "$BIN/pip" install --quiet -e '.[mutation]'
fi
exec "$BIN/python" scripts/mutation.py "$@"
