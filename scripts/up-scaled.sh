#!/usr/bin/env bash
# `make up-scaled`: the production-like local topology (README "Operating CareLine"): HAProxy on 127.0.0.1:$PORT
# in front of $WEB_NODES daphne nodes sharing Redis, 2 Celery workers + beat, the MLLP listener, the demo FHIR
# server, PostgreSQL (scratch database $SCALED_DB, created if missing) and Redis (database $SCALED_REDIS_DB).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
PY="$VENV/bin/python"
PORT="${PORT:-8000}"
WEB_NODES="${WEB_NODES:-2}"
FIRST_WEB_PORT="${FIRST_WEB_PORT:-8101}"
FHIR_PORT="${FHIR_PORT:-8091}"
MLLP_PORT="${MLLP_PORT:-2575}"
SCALED_DB="${SCALED_DB:-careline_scaled}"
SCALED_REDIS_DB="${SCALED_REDIS_DB:-3}"
OUT="var/scaled"

CARELINE_SKIP_CHROMIUM=1 scripts/ensure-test-services.sh >/dev/null
if ! psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$SCALED_DB'" | grep -q 1; then
  echo "creating database $SCALED_DB"
  createdb -h 127.0.0.1 -U postgres "$SCALED_DB"
fi

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/$SCALED_DB}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/$SCALED_REDIS_DB}"
export FHIR_BASE_URL="${FHIR_BASE_URL:-http://127.0.0.1:$FHIR_PORT/fhir}"
export PUBLIC_BASE_URL="${PUBLIC_BASE_URL:-http://127.0.0.1:$PORT}"
export LOG_FORMAT="${LOG_FORMAT:-json}"
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-careline.settings.base}"

"$PY" manage.py migrate --noinput
"$PY" manage.py collectstatic --noinput --verbosity 0
"$PY" manage.py seed_demo --base-url "http://127.0.0.1:$PORT"
"$PY" manage.py topology_config --out "$OUT" --web-nodes "$WEB_NODES" --port "$PORT" \
  --first-web-port "$FIRST_WEB_PORT" --fhir-port "$FHIR_PORT" --mllp-port "$MLLP_PORT"
echo "proxy: http://127.0.0.1:$PORT/console/  (nodes: $FIRST_WEB_PORT..$((FIRST_WEB_PORT + WEB_NODES - 1)); drain one with"
echo "  DATABASE_URL=$DATABASE_URL REDIS_URL=$REDIS_URL $PY manage.py drain --node web1 --wait)"
exec "$VENV/bin/honcho" --procfile "$OUT/Procfile" --app-root "$PWD" start
