#!/bin/sh
# Stop a wiki started with start-wiki.sh: shutdown port first, then kill after 30 s (-force).
# Under systemd use "systemctl stop" instead (SIGTERM to the foreground catalina.sh run).
set -e
BASE=$(cd "$(dirname "$0")/.." && pwd)
export CATALINA_HOME=/usr/share/tomcat10
export CATALINA_BASE="$BASE"
export CATALINA_PID="${CATALINA_PID:-$BASE/work/catalina.pid}"
exec "$CATALINA_HOME/bin/catalina.sh" stop 30 -force
