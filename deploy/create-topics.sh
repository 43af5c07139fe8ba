#!/bin/sh
# One-shot topic setup for docker-compose.yml's `topics` service (runs in the apache/kafka
# image). Idempotent: --if-not-exists, so re-running `docker compose up` is harmless.
#
#   BOOTSTRAP   Kafka bootstrap servers        (default kafka:9092)
#   TOPICS      "name:partitions[:replication]" entries, space separated
set -eu
KAFKA_BIN=${KAFKA_BIN:-/opt/kafka/bin}
BOOTSTRAP=${BOOTSTRAP:-kafka:9092}
TOPICS=${TOPICS:-"comments:6 comment-labels:6 comments.dlq:1 comment-feedback:1"}

# depends_on waits for the broker's healthcheck; this loop also covers a broker that is
# still electing its controller when the first request arrives.
tries=0
until "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --list >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 30 ]; then
        echo "create-topics: broker $BOOTSTRAP not reachable after $tries tries" >&2
        exit 1
    fi
    echo "create-topics: waiting for $BOOTSTRAP ($tries)"
    sleep 2
done

for spec in $TOPICS; do
    name=${spec%%:*}
    rest=${spec#*:}
    partitions=${rest%%:*}
    replication=1
    case $rest in *:*) replication=${rest#*:} ;; esac
    "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
        --topic "$name" --partitions "$partitions" --replication-factor "$replication"
    echo "create-topics: $name ready ($partitions partitions, replication $replication)"
done

"$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --describe --exclude-internal \
    | grep '^Topic:' || true
