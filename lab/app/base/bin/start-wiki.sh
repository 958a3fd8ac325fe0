#!/bin/sh
# Start this wiki bundle with Debian's Tomcat 10 (package tomcat10-common/libtomcat10-java).
#   start-wiki.sh        background (catalina.sh start, PID in work/catalina.pid)
#   start-wiki.sh run    foreground (what the systemd unit runs, as user wiki)
set -e
BASE=$(cd "$(dirname "$0")/.." && pwd)
export CATALINA_HOME=/usr/share/tomcat10
export CATALINA_BASE="$BASE"
export CATALINA_PID="${CATALINA_PID:-$BASE/work/catalina.pid}"
exec "$CATALINA_HOME/bin/catalina.sh" "${1:-start}"
