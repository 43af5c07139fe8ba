#!/bin/sh
# Sample traffic for docker-compose.yml's `producer` service (runs in the apache/kafka
# image): sends every line of a JSON-lines file to the input topic, waits, and does it
# again, forever. Each line is one comment object ({"id", "text", ...}); values only, no key.
#
#   BOOTSTRAP   Kafka bootstrap servers   (default kafka:9092)
#   TOPIC       input topic               (default comments)
#   FILE        JSON-lines file           (default /samples/comments.jsonl)
#   INTERVAL    seconds between rounds    (default 5)
set -eu
KAFKA_BIN=${KAFKA_BIN:-/opt/kafka/bin}
BOOTSTRAP=${BOOTSTRAP:-kafka:9092}
TOPIC=${TOPIC:-comments}
FILE=${FILE:-/samples/comments.jsonl}
INTERVAL=${INTERVAL:-5}

if [ ! -r "$FILE" ]; then
    echo "produce-samples: cannot read $FILE (is ./examples mounted?)" >&2
    exit 1
fi

trap 'echo "produce-samples: stopping"; exit 0' INT TERM

round=0
while :; do
    round=$((round + 1))
    # Blank lines would become empty messages (and dead letters): leave them out.
    if grep -v '^[[:space:]]*$' "$FILE" \
        | "$KAFKA_BIN/kafka-console-producer.sh" --bootstrap-server "$BOOTSTRAP" --topic "$TOPIC" \
            --property parse.key=false; then
        echo "produce-samples: round $round: sent $(grep -cv '^[[:space:]]*$' "$FILE") comments to $TOPIC"
    else
        echo "produce-samples: round $round failed; retrying after ${INTERVAL}s" >&2
    fi
    # sleep in the background so that SIGTERM (docker compose stop) is handled at once
    sleep "$INTERVAL" &
    wait $! || true
done
