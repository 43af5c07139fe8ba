#!/usr/bin/env bash
# Run the peer benchmark: creates benches/peers/.venv if missing, installs the pinned
# requirements (only when requirements.txt changed), then runs peers.py with the given args.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null 2>&1; then PY="$c"; break; fi
  done
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "[run.sh] creating virtualenv $VENV with $PY" >&2
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.requirements.sha256"
WANT="$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "[run.sh] installing requirements.txt" >&2
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$HERE/requirements.txt"
  echo "$WANT" > "$STAMP"
fi
cd "$HERE/../.."
exec "$VENV/bin/python" "$HERE/peers.py" "$@"
