#!/bin/sh
# check_send_text_ready.sh: is a Telethon webhook service (send_text / send_media) really ready?
#
# `/health` says "ok" as soon as the Telethon client object exists, before the dialog cache is loaded, so
# it cannot tell a ready service from a "zombie" whose start-up sweep died in a flood wait. The dialog
# cache size in `/stats` can: 0 means not ready, ~3,900+ is normal.
#
# Nagios plugin convention (as run by tend's `exec` checks):
#   exit 0 OK        cache_size >= WARN_BELOW
#   exit 1 WARNING   0 < cache_size < WARN_BELOW
#   exit 2 CRITICAL  cache_size is 0, or /stats did not answer (refused, timeout, HTTP error)
#   exit 3 UNKNOWN   bad input: TEND_PORT or arguments invalid, /stats not JSON or without cache_size
# Output: one line, `STATE - message | cache_size=N;WARN:;1:;0`.
#
# Environment: TEND_PORT (required; set by tend), TEND_HOST (default 127.0.0.1).
# Arguments:   -w WARN_BELOW (default 3900)   -t TIMEOUT_SECONDS (default 5)
# Needs python3 (for HTTP and JSON; curl is not guaranteed to be installed).

warn=3900
timeout=5

usage() {
    echo "UNKNOWN - usage: check_send_text_ready.sh [-w WARN_BELOW] [-t TIMEOUT_SECONDS], with TEND_PORT set"
    exit 3
}

while [ $# -gt 0 ]; do
    case "$1" in
        -w) [ $# -ge 2 ] || usage; warn=$2; shift 2 ;;
        -t) [ $# -ge 2 ] || usage; timeout=$2; shift 2 ;;
        *) usage ;;
    esac
done
case "$warn" in '' | *[!0-9]*) usage ;; esac
case "$timeout" in '' | *[!0-9]* | 0) usage ;; esac

port=${TEND_PORT-}
case "$port" in
    '' | *[!0-9]*)
        echo "UNKNOWN - TEND_PORT must be a port number, got \"$port\""
        exit 3
        ;;
esac
host=${TEND_HOST:-127.0.0.1}

command -v python3 >/dev/null 2>&1 || {
    echo "UNKNOWN - python3 is not installed; this plugin needs it"
    exit 3
}

exec python3 - "$host" "$port" "$warn" "$timeout" <<'PY'
import json
import sys
import urllib.error
import urllib.request

host, port, warn, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
url = f"http://{host}:{port}/stats"
STATES = ["OK", "WARNING", "CRITICAL", "UNKNOWN"]


def done(code, message, perfdata=None):
    line = f"{STATES[code]} - {message}"
    if perfdata:
        line += f" | {perfdata}"
    print(line)
    sys.exit(code)


try:
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        body = reply.read(1 << 20)
except urllib.error.HTTPError as e:
    done(2, f"{url} answered HTTP {e.code}")
except Exception as e:  # refused, timed out, reset: all mean the service is not answering
    done(2, f"no answer from {url} ({getattr(e, 'reason', e)})")

try:
    doc = json.loads(body)
except ValueError:
    done(3, "/stats did not answer JSON")

size = doc.get("cache_size") if isinstance(doc, dict) else None
if isinstance(size, bool) or not isinstance(size, (int, float)):
    done(3, "/stats has no numeric cache_size")

shown = str(int(size)) if float(size).is_integer() else str(size)
perfdata = f"cache_size={shown};{warn}:;1:;0"
if size <= 0:
    done(2, "dialog cache is empty: not ready (or stuck in a flood wait)", perfdata)
if size < warn:
    done(1, f"dialog cache holds {shown} entities, below {warn}", perfdata)
done(0, f"dialog cache holds {shown} entities", perfdata)
PY
