#!/bin/bash
# End-to-end test of the stand-in wiki on THIS machine, loopback only:
# a private MariaDB (datadir under a temp dir, port 13306) and Tomcat instances from the built bundles.
#   selftest.sh [BUNDLE_DIR]    (default: build the bundles into the temp dir first)
# Prints "N passed, N failed"; exits non-zero if any check failed. Everything it starts is stopped on exit.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d /tmp/wiki-selftest.XXXXXX)
BUNDLES=${1:-$T/out}
DBPORT=13306
SOCK=$T/mysqld.sock
INTERVAL=2        # -Dwiki.safety.interval.seconds, short so a panic shows up within seconds
STEP_DELAY=3      # -Dwiki.upgrade.step.delay.seconds, long enough to see STARTING
DBPASS='pw&S3cret<x>'   # XML-special characters: must be escaped in wiki.cfg.xml, must never be logged
PASS=0 FAIL=0
declare -A PIDS=()   # instance name -> java pid
DBPID=

log() { printf '\n== %s\n' "$*"; }
ok() { PASS=$((PASS + 1)); printf '  ok    %s\n' "$1"; }
bad() { FAIL=$((FAIL + 1)); printf '  FAIL  %s%s\n' "$1" "${2:+ ($2)}"; }
eq() { if [ "$2" == "$3" ]; then ok "$1"; else bad "$1" "got '$2', want '$3'"; fi; }
match() { if [[ $2 =~ $3 ]]; then ok "$1"; else bad "$1" "'$2' !~ /$3/"; fi; }
has_line() { if grep -qE -- "$3" "$2" 2>/dev/null; then ok "$1"; else bad "$1" "no /$3/ in $2"; fi; }
no_line() { if grep -qF -- "$3" "$2" 2>/dev/null; then bad "$1" "found '$3' in $2"; else ok "$1"; fi; }

sql() { mariadb --no-defaults -uroot --socket="$SOCK" -N -B wiki -e "$1"; }

cleanup() {
  for n in "${!PIDS[@]}"; do stop_wiki "$n"; done
  if [ -n "$DBPID" ] && kill -0 "$DBPID" 2>/dev/null; then
    kill "$DBPID"
    for _ in $(seq 60); do kill -0 "$DBPID" 2>/dev/null || break; sleep 0.5; done
  fi
  if [ "$FAIL" -eq 0 ] && [ -z "${KEEP:-}" ]; then rm -rf "$T"; else echo "logs kept in $T"; fi
}
trap cleanup EXIT

# ---- MariaDB ------------------------------------------------------------------------------------
start_db() {
  mariadbd --no-defaults --user=root --datadir="$T/db" --socket="$SOCK" --port=$DBPORT \
    --bind-address=127.0.0.1 --pid-file="$T/mysqld.pid" --log-error="$T/mysqld.err" \
    --innodb-buffer-pool-size=64M --skip-name-resolve &
  DBPID=$!
  for _ in $(seq 60); do
    mariadb-admin --no-defaults -uroot --socket="$SOCK" ping >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "MariaDB did not start; see $T/mysqld.err" >&2
  exit 2
}
stop_db() {
  kill "$DBPID"
  for _ in $(seq 60); do kill -0 "$DBPID" 2>/dev/null || break; sleep 0.5; done
  DBPID=
}

# ---- wiki instances -----------------------------------------------------------------------------
# start_wiki NAME VERSION NODE CLUSTER HTTP_PORT AJP_PORT [HOME]
# Unpacks the bundle into $T/NAME/, points wiki-init.properties at the home (as the orchestrator does),
# writes wiki.cfg.xml if the home has none, binds the connectors to 127.0.0.1 on private ports.
start_wiki() {
  local name=$1 version=$2 node=$3 cluster=$4 http=$5 ajp=$6 home=${7:-$T/home-$1}
  local base=$T/$name/wiki-$version
  rm -rf "$T/$name"; mkdir -p "$T/$name" "$home"
  tar -xzf "$BUNDLES/wiki-$version.tar.gz" -C "$T/$name"
  printf 'wiki.home=%s\n' "$home" >"$base/webapps/ROOT/WEB-INF/classes/wiki-init.properties"
  sed -i -e 's/port="8005"/port="-1"/' \
    -e "s/port=\"8080\"/port=\"$http\" address=\"127.0.0.1\"/" \
    -e "s/port=\"8009\" protocol=\"AJP\/1.3\" address=\"0.0.0.0\"/port=\"$ajp\" protocol=\"AJP\/1.3\" address=\"127.0.0.1\"/" \
    "$base/conf/server.xml"
  if [ ! -e "$home/wiki.cfg.xml" ]; then
    local pw=${DBPASS//&/\&amp;}; pw=${pw//</\&lt;}; pw=${pw//>/\&gt;}
    cat >"$home/wiki.cfg.xml" <<XML
<?xml version="1.0" encoding="UTF-8"?>
<wiki-configuration>
  <buildNumber>0</buildNumber>
  <properties>
    <property name="hibernate.connection.url">jdbc:mariadb://127.0.0.1:$DBPORT/wiki</property>
    <property name="hibernate.connection.username">wiki</property>
    <property name="hibernate.connection.password">$pw</property>
    <property name="cluster.name">$cluster</property>
    <property name="cluster.node.name">$node</property>
    <property name="cluster.peers">127.0.0.1</property>
    <property name="mail.enabled">true</property>
    <property name="mail.smtp.host">smtp.example.test</property>
  </properties>
</wiki-configuration>
XML
  fi
  WIKI_JVM_ROUTE=$node WIKI_AJP_SECRET=selftest-secret \
  CATALINA_OPTS="-Dwiki.safety.interval.seconds=$INTERVAL -Dwiki.upgrade.step.delay.seconds=$STEP_DELAY" \
  CATALINA_HOME=/usr/share/tomcat10 CATALINA_BASE="$base" \
    /usr/share/tomcat10/bin/catalina.sh run >"$T/$name.out" 2>&1 &
  PIDS[$name]=$!
}
stop_wiki() {
  local pid=${PIDS[$1]:-}
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null
  unset "PIDS[$1]"
}

# http METHOD PORT PATH [curl args...]: sets CODE, BODY, HDRS
http() {
  local m=$1 port=$2 path=$3; shift 3
  CODE=$(curl -s -m 20 -X "$m" -D "$T/hdrs" -o "$T/body" -w '%{http_code}' "$@" "http://127.0.0.1:$port$path")
  BODY=$(cat "$T/body" 2>/dev/null); HDRS=$(tr -d '\r' <"$T/hdrs" 2>/dev/null)
}
# wait_state PORT: poll /status until it leaves STARTING (or 90 s); records whether STARTING was seen.
wait_state() {
  SAW_STARTING=no
  for _ in $(seq 180); do
    http GET "$1" /status
    if [ "$CODE" != 000 ]; then
      if [[ $BODY == *'"STARTING"'* ]]; then SAW_STARTING=yes; else return 0; fi
    fi
    sleep 0.5
  done
}
# wait_log FILE REGEX SECONDS
wait_log() {
  for _ in $(seq $(($3 * 2))); do grep -qE -- "$2" "$1" 2>/dev/null && return 0; sleep 0.5; done
  return 1
}

# ---- build ---------------------------------------------------------------------------------------
if [ -z "${1:-}" ]; then "$HERE/build.sh" "$BUNDLES" || exit 2; fi
for v in 1.0.0 2.0.0 3.0.0; do
  (cd "$BUNDLES" && sha256sum -c --quiet "wiki-$v.tar.gz.sha256") || { echo "bad checksum for $v" >&2; exit 2; }
done

log "MariaDB on 127.0.0.1:$DBPORT, datadir $T/db"
mariadb-install-db --no-defaults --user=root --datadir="$T/db" --auth-root-authentication-method=socket >"$T/install-db.log" 2>&1 ||
  { echo "mariadb-install-db failed" >&2; cat "$T/install-db.log" >&2; exit 2; }
start_db
mariadb --no-defaults -uroot --socket="$SOCK" -e "CREATE DATABASE wiki CHARACTER SET utf8mb4;
  CREATE USER 'wiki'@'127.0.0.1' IDENTIFIED BY '$DBPASS'; GRANT ALL ON wiki.* TO 'wiki'@'127.0.0.1';"

H1=$T/home-node1   # node1's local home, kept across upgrades like /var/lib/wiki
LOG1=$H1/logs/wiki.log

# ---- 1.0.0 on an empty database -----------------------------------------------------------------
log "1.0.0 fresh install (node1, cluster prod)"
start_wiki n1 1.0.0 node1 prod 18081 18009 "$H1"
wait_state 18081
eq "v1 /status HTTP 200" "$CODE" 200
eq "v1 /status body" "$BODY" '{"state":"RUNNING","version":"1.0.0","schema":1,"node":"node1"}'
match "X-Wiki-Version header" "$HDRS" $'X-Wiki-Version: 1.0.0'
match "X-Wiki-Node header" "$HDRS" $'X-Wiki-Node: node1'
http PUT 18081 /pages/Home --data-binary 'Hello from v1'
eq "PUT new page -> 201" "$CODE" 201
http PUT 18081 /pages/Home --data-binary 'Hello from v1, edited'
eq "PUT existing page -> 204" "$CODE" 204
http GET 18081 /pages/Home
eq "GET page" "$CODE:$BODY" "200:Hello from v1, edited"
http GET 18081 /pages/Nope
eq "GET missing page -> 404" "$CODE" 404
http GET 18081 /pages
eq "GET /pages lists names" "$CODE:$BODY" "200:Home"
http GET 18081 /
match "GET / shows version and node" "$CODE $BODY" '^200 .*1\.0\.0.*node1'
rm -f "$T/jar1"
http GET 18081 /session -c "$T/jar1" -b "$T/jar1"
http GET 18081 /session -c "$T/jar1" -b "$T/jar1"
match "session counter increments, id ends with .node1" "$BODY" '"node":"node1","sessionId":"[0-9A-F]+\.node1","count":2'
eq "SCHEMAINFO version" "$(sql 'SELECT VERSION FROM SCHEMAINFO')" 1
has_line "log: schema created" "$LOG1" 'Empty database: creating schema 1'
has_line "log: mail would be sent" "$LOG1" 'would send mail via smtp\.example\.test'
has_line "wiki.cfg.xml buildNumber updated to 1" "$H1/wiki.cfg.xml" '<buildNumber>1</buildNumber>'
http GET 18081 /plugins
eq "no plugins dir: /plugins lists none" "$CODE $BODY" '200 {"release":"1.0.0","plugins":[]}'
# Installed into the running node (rescanned on each GET /plugins): one for 1.0.0, one for 2.0.0 only.
mkdir -p "$H1/plugins"
cp "$BUNDLES/plugins/calendar-1.0.plugin" "$H1/plugins/calendar.plugin"
cp "$BUNDLES/plugins/diagrams-1.1.plugin" "$H1/plugins/diagrams.plugin"
http GET 18081 /plugins
match "v1: calendar 1.0 enabled while running" "$BODY" '"name":"calendar","version":"1.0","state":"ENABLED","supports":\["1.0.0"\]'
match "v1: diagrams 1.1 (2.0.0 only) refused with the reason" "$BODY" '"name":"diagrams","version":"1.1","state":"REFUSED","supports":\["2.0.0"\],"file":"diagrams.plugin","reason":"incompatible: declares support for 2.0.0, not 1.0.0"'
has_line "log: refused plugin named" "$LOG1" 'ERROR .*Plugin diagrams.plugin refused: incompatible'
sleep $((INTERVAL + 1))
eq "CLUSTERSAFETY: one row by prod/node1" "$(sql 'SELECT COUNT(*), CLUSTER_NAME, NODE FROM CLUSTERSAFETY GROUP BY 2,3' | tr '\t' ' ')" "1 prod node1"
eq "tables are InnoDB, upper case" "$(sql "SELECT GROUP_CONCAT(TABLE_NAME ORDER BY TABLE_NAME), GROUP_CONCAT(DISTINCT ENGINE) FROM information_schema.TABLES WHERE TABLE_SCHEMA='wiki'" | tr '\t' ' ')" "CLUSTERSAFETY,PAGES,SCHEMAINFO InnoDB"
stop_wiki n1

# ---- 2.0.0 upgrade in place ------------------------------------------------------------------------
log "2.0.0 against the schema-1 database (upgrade on first start)"
start_wiki n1 2.0.0 node1 prod 18081 18009 "$H1"
wait_state 18081
eq "v2 reported STARTING while migrating" "$SAW_STARTING" yes
eq "v2 /status body" "$CODE $BODY" '200 {"state":"RUNNING","version":"2.0.0","schema":2,"node":"node1"}'
http GET 18081 /pages/Home
eq "v1 page readable with v2" "$CODE:$BODY" "200:Hello from v1, edited"
match "migrated page carries UPDATED_BY" "$HDRS" 'X-Wiki-Updated-By: upgrade-task-2'
http PUT 18081 /pages/Second --data-binary 'written by v2'
eq "v2 PUT -> 201" "$CODE" 201
eq "PAGE_HISTORY seeded + new revision" "$(sql 'SELECT COUNT(*) FROM PAGE_HISTORY')" 2
eq "SCHEMAINFO version" "$(sql 'SELECT VERSION FROM SCHEMAINFO')" 2
has_line "log: upgrade task 1 -> 2" "$LOG1" 'Upgrade task 1 -> 2: done'
has_line "wiki.cfg.xml buildNumber updated to 2" "$H1/wiki.cfg.xml" '<buildNumber>2</buildNumber>'
http GET 18081 /plugins
match "v2 start: calendar 1.0 (1.0.0 only) refused" "$BODY" '"name":"calendar","version":"1.0","state":"REFUSED"'
match "v2 start: diagrams 1.1 enabled" "$BODY" '"name":"diagrams","version":"1.1","state":"ENABLED"'
cp "$BUNDLES/plugins/calendar-2.0.plugin" "$H1/plugins/calendar.plugin"
http GET 18081 /plugins
match "v2: calendar 2.0 (2.0.0+) replaced while running, enabled" "$BODY" '"name":"calendar","version":"2.0","state":"ENABLED","supports":\["2.0.0\+"\]'
has_line "log: plugin enabled" "$LOG1" 'INFO .*Plugin calendar 2.0 enabled'

log "second node of the SAME cluster shares the database without panic"
start_wiki n2 2.0.0 node2 prod 18082 18010
wait_state 18082
eq "node2 /status" "$CODE $BODY" '200 {"state":"RUNNING","version":"2.0.0","schema":2,"node":"node2"}'
http GET 18082 /pages/Second
eq "node2 reads node1's page" "$CODE:$BODY" "200:written by v2"
rm -f "$T/jar2"
http GET 18082 /session -c "$T/jar2" -b "$T/jar2"
match "node2 session id ends with .node2" "$BODY" '"sessionId":"[0-9A-F]+\.node2","count":1'
sleep $((INTERVAL * 4))
no_line "no panic on node1" "$LOG1" 'ClusterPanicListener'
no_line "no panic on node2" "$T/home-n2/logs/wiki.log" 'ClusterPanicListener'
http GET 18081 /pages/Home
eq "node1 pages still 200" "$CODE" 200
stop_wiki n2

log "database restart: /status goes ERROR, then recovers without restarting the wiki"
stop_db
http GET 18081 /status
match "DB down -> /status 500 ERROR" "$CODE $BODY" '^500 \{"state":"ERROR".*Database unreachable'
start_db
http GET 18081 /status
eq "DB back -> /status 200 RUNNING" "$CODE" 200
http GET 18081 /pages/Home
eq "DB back -> pages 200" "$CODE" 200
stop_wiki n1

# ---- old release against newer schema -------------------------------------------------------------
log "1.0.0 against the schema-2 database refuses"
start_wiki n1 1.0.0 node1 prod 18081 18009 "$H1"
wait_state 18081
match "v1 on schema 2: /status 500 ERROR" "$CODE $BODY" '^500 \{"state":"ERROR","version":"1.0.0".*too new'
http GET 18081 /pages/Home
eq "v1 on schema 2: pages 500" "$CODE" 500
has_line "log: schema too new" "$LOG1" 'schema 2 is too new for wiki 1\.0\.0'
eq "schema untouched" "$(sql 'SELECT VERSION FROM SCHEMAINFO')" 2
stop_wiki n1

# ---- cluster panic ---------------------------------------------------------------------------------
log "an instance of ANOTHER cluster on the same database -> cluster panic"
start_wiki n1 2.0.0 node1 prod 18081 18009 "$H1"
wait_state 18081
eq "prod node1 RUNNING" "$CODE" 200
start_wiki stg 2.0.0 staging1 staging 18082 18010
wait_state 18082
PANIC='ClusterPanicListener.*Fatal error in wiki cluster: Database is being updated by an instance which is not part of the current cluster'
if wait_log "$T/home-stg/logs/wiki.log" "$PANIC" 20; then ok "staging instance logs the panic"; else bad "staging instance logs the panic"; fi
if wait_log "$LOG1" "$PANIC" 20; then ok "prod node1 panics too (panic rewrites the number)"; else bad "prod node1 panics too"; fi
for p in 18081 18082; do
  http GET $p /pages/Home
  eq "port $p: page 500 during panic" "$CODE" 500
  http GET $p /status
  match "port $p: /status still 200 RUNNING during panic" "$CODE $BODY" '^200 \{"state":"RUNNING"'
done
stop_wiki stg
stop_wiki n1

# ---- broken 3.0.0 -----------------------------------------------------------------------------------
log "3.0.0 migrates to schema 3 and is broken"
start_wiki n1 3.0.0 node1 prod 18081 18009 "$H1"
wait_state 18081
match "v3 /status 500 ERROR schema 3" "$CODE $BODY" '^500 \{"state":"ERROR","version":"3.0.0","schema":3,"node":"node1"'
http GET 18081 /pages/Home
eq "v3 pages 500" "$CODE" 500
match "v3 still stamps headers" "$HDRS" 'X-Wiki-Version: 3.0.0'
eq "SCHEMAINFO version" "$(sql 'SELECT VERSION FROM SCHEMAINFO')" 3
eq "schema 3 added PAGES.BODY_FORMAT" "$(sql "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA='wiki' AND TABLE_NAME='PAGES' AND COLUMN_NAME='BODY_FORMAT'")" 1
has_line "log: upgrade task 2 -> 3" "$LOG1" 'Upgrade task 2 -> 3: done'
stop_wiki n1

log "rolling back the binaries to 2.0.0 without restoring the database refuses"
start_wiki n1 2.0.0 node1 prod 18081 18009 "$H1"
wait_state 18081
match "v2 on schema 3: /status 500 too new" "$CODE $BODY" '^500 .*too new'
stop_wiki n1

log "hygiene"
no_line "password never logged (wiki.log)" "$LOG1" "$DBPASS"
if grep -qF -- "$DBPASS" "$T"/*.out "$T"/home-*/logs/wiki.log; then bad "password never logged (anywhere)"; else ok "password never logged (anywhere)"; fi
eq "exactly one CLUSTERSAFETY row" "$(sql 'SELECT COUNT(*) FROM CLUSTERSAFETY')" 1

echo
echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
