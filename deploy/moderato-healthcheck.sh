#!/usr/bin/env bash
# Container health probe for `moderato serve`: GET /healthz on the HTTP side and succeed on
# a 200 status. Uses bash's /dev/tcp because the runtime image has no curl or wget.
#
# The port comes from MODERATO_HTTP (HOST:PORT, as the service reads it), default 9464;
# the probe always connects to 127.0.0.1 inside the container. Exit 0 = healthy, 1 = not.
set -u
addr=${MODERATO_HTTP:-0.0.0.0:9464}
if [ "$addr" = off ]; then
    echo "moderato-healthcheck: MODERATO_HTTP=off, nothing to probe" >&2
    exit 1
fi
port=${addr##*:}
path=${1:-/healthz}

exec 3<>"/dev/tcp/127.0.0.1/$port" || { echo "moderato-healthcheck: cannot connect to port $port" >&2; exit 1; }
printf 'GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$path" >&3
# Status line: "HTTP/1.1 200 OK". read times out rather than hanging the probe.
if ! IFS=' ' read -r -t 5 _version status _rest <&3; then
    echo "moderato-healthcheck: no answer on port $port" >&2
    exit 1
fi
exec 3<&- 3>&-
if [ "$status" = 200 ]; then
    exit 0
fi
echo "moderato-healthcheck: GET $path answered $status" >&2
exit 1
