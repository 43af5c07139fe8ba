#!/usr/bin/env bash
# The new-site benchmark (benches/newsite/newsite.py): builds the release binary, then runs the
# script in benches/peers' virtualenv (scikit-learn for the peer column; created if missing).
# A full run trains the default config once per toxicity set: about an hour on 2 cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
cargo build --release --quiet
PY=python3
if [[ " $* " != *" --no-peers "* ]]; then
  benches/peers/run.sh --help >/dev/null   # creates the virtualenv and installs its pins
  PY=benches/peers/.venv/bin/python
fi
exec "$PY" benches/newsite/newsite.py "$@"
