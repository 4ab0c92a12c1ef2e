#!/usr/bin/env bash
# deploy/stack.sh — run Clicktrack's infrastructure natively (no Docker):
#   Kafka 4.1 (KRaft, single combined node, jars fetched by Maven),
#   Redis (Debian's redis-server), PostgreSQL (Debian's server binaries).
#
# Usage: deploy/stack.sh up|down|purge|status
#
# Configuration (same defaults as the Python code):
#   KAFKA_BOOTSTRAP_SERVERS  127.0.0.1:9092   (Kafka controller uses port+1)
#   REDIS_URL                redis://127.0.0.1:6379/0
#   POSTGRES_DSN             postgresql://clicktrack:clicktrack@127.0.0.1:5432/clicktrack
#   STACK_DIR                <repo>/.stack    (all data, logs and pid files)
#   STACK_KAFKA_TIMEOUT      90               (seconds to wait for the broker)
#
# If something already answers on a service's host:port, it is reused and
# never stopped by `down`. `down` stops only processes this script started.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd -P)
STACK_DIR=${STACK_DIR:-$ROOT/.stack}
mkdir -p "$STACK_DIR"
STACK_DIR=$(cd "$STACK_DIR" && pwd -P)

KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
POSTGRES_DSN=${POSTGRES_DSN:-postgresql://clicktrack:clicktrack@127.0.0.1:5432/clicktrack}
KAFKA_TIMEOUT=${STACK_KAFKA_TIMEOUT:-90}

KAFKA_TEMPLATE_DIR=$SCRIPT_DIR/kafka
KAFKA_POM=$KAFKA_TEMPLATE_DIR/pom.xml
KAFKA_DIR=$STACK_DIR/kafka
KAFKA_LIBS=$KAFKA_DIR/libs
KAFKA_DATA=$KAFKA_DIR/data
KAFKA_LOGS=$KAFKA_DIR/logs
KAFKA_CONF=$KAFKA_DIR/server.properties
KAFKA_PID=$KAFKA_DIR/kafka.pid
KAFKA_LOG=$KAFKA_LOGS/server.log
KAFKA_STDOUT=$KAFKA_LOGS/stdout.log

REDIS_DIR=$STACK_DIR/redis
REDIS_PID=$REDIS_DIR/redis.pid
REDIS_LOG=$REDIS_DIR/redis.log
# Redis holds two roles: counters (no TTL: never evicted) and the redirectors' cache of codes and
# links (every key with a TTL). volatile-lru evicts only keys with a TTL: under memory pressure
# the cache shrinks and the counters stay (docs/redirector.md, Redis memory).
REDIS_MAXMEMORY=${REDIS_MAXMEMORY:-1gb}
REDIS_POLICY=volatile-lru

PG_HOME=$STACK_DIR/postgres          # always under STACK_DIR; holds `location` on fallback
PG_LOCATION_FILE=$PG_HOME/location

export DEBIAN_FRONTEND=noninteractive

# ----------------------------------------------------------------- helpers --

msg()  { printf 'stack: %s\n' "$*"; }
warn() { printf 'stack: WARNING: %s\n' "$*" >&2; }
die()  { printf 'stack: ERROR: %s\n' "$*" >&2; exit 1; }

# fail_service NAME REASON LOGFILE... : report a service failure with log tails.
fail_service() {
    local name=$1 reason=$2 f
    shift 2
    printf 'stack: FAILED: %s: %s\n' "$name" "$reason" >&2
    for f in "$@"; do
        [[ -s $f ]] || continue
        printf 'stack: ---- last 30 lines of %s ----\n' "$f" >&2
        tail -n 30 "$f" >&2 || true
        printf 'stack: ---- end of %s ----\n' "$f" >&2
    done
    printf 'stack: %s log: %s\n' "$name" "$*" >&2
    exit 1
}

urldecode() {
    local s=${1//\\/\\\\}
    printf '%b' "${s//%/\\x}"
}

# split_hostport "host:port" DEFAULT_PORT -> sets _HOST _PORT
split_hostport() {
    local hp=$1 rest
    _HOST="" _PORT=""
    if [[ $hp == \[*\]* ]]; then          # [ipv6]:port
        _HOST=${hp%%]*}; _HOST=${_HOST#[}
        rest=${hp#*]}; _PORT=${rest#:}
    elif [[ $hp == *:* ]]; then
        _HOST=${hp%:*}; _PORT=${hp##*:}
    else
        _HOST=$hp
    fi
    [[ -n $_HOST ]] || _HOST=127.0.0.1
    [[ -n $_PORT ]] || _PORT=$2
    [[ $_PORT =~ ^[0-9]+$ ]] && (( _PORT > 0 && _PORT < 65536 )) || die "invalid port in '$hp'"
}

# Address to bind a server we start to (Redis wants an IP, not a name).
bind_addr() { [[ $1 == localhost ]] && echo 127.0.0.1 || echo "$1"; }

parse_config() {
    local s authority userinfo path
    # Kafka: first entry of the bootstrap list, optional SCHEME:// prefix.
    s=${KAFKA_BOOTSTRAP_SERVERS%%,*}; s=${s#*://}
    [[ $KAFKA_BOOTSTRAP_SERVERS == *,* ]] && warn "KAFKA_BOOTSTRAP_SERVERS lists several brokers; managing only '$s'"
    split_hostport "$s" 9092
    KAFKA_HOST=$_HOST KAFKA_PORT=$_PORT
    KAFKA_CONTROLLER_PORT=$((KAFKA_PORT + 1))

    # Redis: redis://[[user]:password@]host[:port][/db]
    s=${REDIS_URL#*://}; authority=${s%%/*}; authority=${authority%%\?*}
    REDIS_PASSWORD=""
    if [[ $authority == *@* ]]; then
        userinfo=${authority%@*}; authority=${authority##*@}
        [[ $userinfo == *:* ]] && REDIS_PASSWORD=$(urldecode "${userinfo#*:}") || REDIS_PASSWORD=$(urldecode "$userinfo")
    fi
    split_hostport "$authority" 6379
    REDIS_HOST=$_HOST REDIS_PORT=$_PORT

    # Postgres: postgresql[+driver]://user[:password]@host[:port]/db[?params]
    s=${POSTGRES_DSN#*://}; authority=${s%%/*}; authority=${authority%%\?*}
    path=""; [[ $s == */* ]] && path=${s#*/}; path=${path%%\?*}
    PG_USER="" PG_PASSWORD=""
    if [[ $authority == *@* ]]; then
        userinfo=${authority%@*}; authority=${authority##*@}
        if [[ $userinfo == *:* ]]; then
            PG_USER=$(urldecode "${userinfo%%:*}"); PG_PASSWORD=$(urldecode "${userinfo#*:}")
        else
            PG_USER=$(urldecode "$userinfo")
        fi
    fi
    authority=${authority%%,*}
    split_hostport "$authority" 5432
    PG_HOST=$_HOST PG_PORT=$_PORT
    PG_USER=${PG_USER:-clicktrack}
    PG_DB=$(urldecode "${path:-$PG_USER}")
    # libpq does not know SQLAlchemy-style "postgresql+psycopg://".
    PG_DSN_LIBPQ="postgresql://${POSTGRES_DSN#*://}"
    PG_DSN_SAFE="postgresql://$PG_USER@$PG_HOST:$PG_PORT/$PG_DB"     # never print the password
}

port_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null; }

# redis_ping HOST PORT : true if the server answers +PONG (AUTH first if REDIS_PASSWORD).
redis_ping() {
    LC_ALL=C RP_PW=$REDIS_PASSWORD timeout 3 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        if [ -n "$RP_PW" ]; then
            printf "*2\r\n\$4\r\nAUTH\r\n\$%d\r\n%s\r\n" "${#RP_PW}" "$RP_PW" >&3
            IFS= read -r l <&3 || exit 1
        fi
        printf "PING\r\n" >&3
        IFS= read -r l <&3 || exit 1
        [ "${l%$(printf "\r")}" = "+PONG" ]' "$1" "$2" 2>/dev/null
}

pid_alive() {   # exists and is not a zombie
    [[ ${1:-} =~ ^[0-9]+$ ]] || return 1
    local stat
    { IFS= read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    stat=${stat##*) }
    [[ -n $stat && ${stat%% *} != Z && ${stat%% *} != X ]]
}
# pids whose command line contains WORD (cheap pre-filter for /proc scans)
pids_with() {
    grep -lzF -- "$1" /proc/[0-9]*/cmdline 2>/dev/null | sed -n 's:^/proc/\([0-9]*\)/cmdline$:\1:p' || true
}
pid_cmdline() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true; }
# pid_matches PID SUBSTRING... : alive and cmdline contains every substring.
pid_matches() {
    local pid=$1 cmd s
    shift
    pid_alive "$pid" || return 1
    cmd=$(pid_cmdline "$pid")
    for s in "$@"; do [[ $cmd == *"$s"* ]] || return 1; done
}
read_pidfile() { [[ -f $1 ]] && head -n1 "$1" 2>/dev/null | tr -dc '0-9' || true; }

# stop_pid NAME PID TIMEOUT CHECK... : SIGTERM, wait, SIGKILL. CHECK = cmdline substrings.
stop_pid() {
    local name=$1 pid=$2 timeout=$3 i
    shift 3
    pid_matches "$pid" "$@" || return 0
    msg "$name: stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 5; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.2
    done
    if pid_matches "$pid" "$@"; then
        warn "$name: pid $pid did not stop within ${timeout}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do pid_alive "$pid" || return 0; sleep 0.2; done
        die "$name: pid $pid survived SIGKILL"
    fi
}

is_root() { [[ $EUID -eq 0 ]]; }

# ---------------------------------------------------------- installation --

NEED_PKGS=()
need_pkg() { local p; for p in "${NEED_PKGS[@]+"${NEED_PKGS[@]}"}"; do [[ $p == "$1" ]] && return 0; done; NEED_PKGS+=("$1"); }

apt_install() {
    (($# > 0)) || return 0
    is_root || die "missing packages ($*) and not root: install them first"
    local log=$STACK_DIR/apt.log policy=/usr/sbin/policy-rc.d own_policy=0 rc=0
    msg "installing with apt: $* (log: $log)"
    # Keep the packages' own services (redis-server, postgresql 'main') from starting.
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
    fi
    {
        apt-get update -q &&
        apt-get install -y -q --no-install-recommends "$@"
    } >"$log" 2>&1 || rc=$?
    ((own_policy)) && rm -f "$policy"
    if ((rc != 0)); then
        tail -n 30 "$log" >&2
        die "apt-get install $* failed (exit $rc), see $log"
    fi
}

java_major() {
    local v
    v=$("$1" -version 2>&1 | awk -F'"' '/version/ { print $2; exit }') || true
    [[ $v == 1.* ]] && v=${v#1.}
    v=${v%%[^0-9]*}
    echo "${v:-0}"
}
find_java() {
    local c
    for c in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} "$(command -v java || true)" /usr/lib/jvm/*/bin/java; do
        [[ -n $c && -x $c ]] || continue
        if (( $(java_major "$c") >= 17 )); then JAVA=$c; return 0; fi
    done
    return 1
}

# newest Debian PostgreSQL server binaries (or the ones matching an existing data dir)
find_pg_bin() {
    PGBIN=""
    local ver d
    if [[ -n ${PG_DATA:-} && -f $PG_DATA/PG_VERSION ]]; then
        ver=$(cat "$PG_DATA/PG_VERSION")
        if [[ -x /usr/lib/postgresql/$ver/bin/postgres ]]; then PGBIN=/usr/lib/postgresql/$ver/bin; return 0; fi
    fi
    d=$(for d in /usr/lib/postgresql/*/bin; do [[ -x $d/postgres ]] && echo "$d"; done | sort -V | tail -n1)
    [[ -n $d ]] && PGBIN=$d
    [[ -n $PGBIN ]]
}
find_psql() {
    if [[ -n ${PGBIN:-} && -x $PGBIN/psql ]]; then PSQL=$PGBIN/psql; return 0; fi
    local d
    d=$(for d in /usr/lib/postgresql/*/bin; do [[ -x $d/psql ]] && echo "$d"; done | sort -V | tail -n1)
    if [[ -n $d ]]; then PSQL=$d/psql; return 0; fi
    PSQL=$(command -v psql) || return 1
}

# ------------------------------------------------------------------ kafka --

kafka_version() { sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM" | head -n1; }

# pid of the Kafka this script started for this STACK_DIR, if running.
kafka_our_pid() {
    local pid p
    pid=$(read_pidfile "$KAFKA_PID")
    if [[ -n $pid ]] && pid_matches "$pid" kafka.Kafka "$KAFKA_CONF"; then echo "$pid"; return 0; fi
    # pid file lost: find it by its command line (our config path is unique to STACK_DIR).
    for p in $(pids_with kafka.Kafka); do
        if pid_matches "$p" kafka.Kafka "$KAFKA_CONF"; then echo "$p" >"$KAFKA_PID"; echo "$p"; return 0; fi
    done
    return 1
}

kafka_fetch_libs() {
    local version want
    version=$(kafka_version)
    want="kafka=$version pom=$(sha256sum <"$KAFKA_POM" | cut -c1-16)"
    if [[ -f $KAFKA_LIBS/.stamp && $(cat "$KAFKA_LIBS/.stamp") == "$want" && -f $KAFKA_LIBS/kafka_2.13-$version.jar ]]; then
        return 0
    fi
    command -v mvn >/dev/null || die "kafka: mvn not found"
    msg "kafka: fetching Kafka $version jars with Maven (cached in ~/.m2) ..."
    mkdir -p "$KAFKA_DIR"
    rm -rf "$KAFKA_LIBS.tmp"
    if ! mvn -B -q -f "$KAFKA_POM" dependency:copy-dependencies \
            -DoutputDirectory="$KAFKA_LIBS.tmp" -DincludeScope=runtime \
            >"$KAFKA_DIR/mvn.log" 2>&1 </dev/null; then
        fail_service kafka "maven could not fetch the Kafka jars" "$KAFKA_DIR/mvn.log"
    fi
    [[ -f $KAFKA_LIBS.tmp/kafka_2.13-$version.jar ]] || fail_service kafka "kafka_2.13-$version.jar missing after fetch" "$KAFKA_DIR/mvn.log"
    rm -rf "$KAFKA_LIBS"
    mv "$KAFKA_LIBS.tmp" "$KAFKA_LIBS"
    echo "$want" >"$KAFKA_LIBS/.stamp"
    msg "kafka: $(ls "$KAFKA_LIBS"/*.jar | wc -l) jars in $KAFKA_LIBS"
}

kafka_render_config() {
    local esc_host esc_data
    esc_host=$(printf '%s' "$KAFKA_HOST" | sed 's/[&|\\]/\\&/g')
    esc_data=$(printf '%s' "$KAFKA_DATA" | sed 's/[&|\\]/\\&/g')
    sed -e "s|@HOST@|$esc_host|g" -e "s|@PORT@|$KAFKA_PORT|g" \
        -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" -e "s|@DATA_DIR@|$esc_data|g" \
        "$KAFKA_TEMPLATE_DIR/server.properties" >"$KAFKA_CONF.tmp"
    mv "$KAFKA_CONF.tmp" "$KAFKA_CONF"
}

kafka_java() {   # kafka_java HEAP CLASS ARGS...
    local heap=$1
    shift
    "$JAVA" "$heap" -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KAFKA_TEMPLATE_DIR/log4j2.xml" \
        -Dkafka.logs.dir="$KAFKA_LOGS" \
        -cp "$KAFKA_LIBS/*" "$@"
}

kafka_format() {
    local cid addr_file=$KAFKA_DIR/formatted-for
    if [[ -f $KAFKA_DATA/meta.properties ]]; then
        if [[ -f $addr_file && $(cat "$addr_file") != "$KAFKA_HOST:$KAFKA_CONTROLLER_PORT" ]]; then
            warn "kafka: data in $KAFKA_DATA was formatted for controller $(cat "$addr_file"); if the broker fails, run '$0 down' and remove $KAFKA_DATA"
        fi
        return 0
    fi
    rm -rf "$KAFKA_DATA"
    mkdir -p "$KAFKA_DATA"
    msg "kafka: formatting storage in $KAFKA_DATA"
    cid=$(kafka_java -Xmx256m kafka.tools.StorageTool random-uuid 2>>"$KAFKA_LOGS/format.log" </dev/null | tail -n1) || true
    [[ $cid =~ ^[A-Za-z0-9_-]{22}$ ]] || fail_service kafka "could not generate a cluster id" "$KAFKA_LOGS/format.log"
    if ! kafka_java -Xmx256m kafka.tools.StorageTool format --standalone -t "$cid" -c "$KAFKA_CONF" \
            >>"$KAFKA_LOGS/format.log" 2>&1 </dev/null; then
        rm -rf "$KAFKA_DATA"
        fail_service kafka "storage format failed" "$KAFKA_LOGS/format.log"
    fi
    echo "$KAFKA_HOST:$KAFKA_CONTROLLER_PORT" >"$addr_file"
}

# Start the broker in the background; health is checked later by kafka_wait.
kafka_launch() {
    local f i pid=""
    if port_open "$KAFKA_HOST" "$KAFKA_CONTROLLER_PORT"; then
        die "kafka: controller port $KAFKA_HOST:$KAFKA_CONTROLLER_PORT (broker port + 1) is already in use by another process"
    fi
    find_java || die "kafka: no Java 17+ found"
    kafka_fetch_libs
    mkdir -p "$KAFKA_LOGS"
    kafka_render_config
    # fresh logs per start (previous one kept as *.prev) so the health check reads this run only
    for f in "$KAFKA_LOG" "$KAFKA_STDOUT"; do [[ -f $f ]] && mv -f "$f" "$f.prev"; done
    rm -f "$KAFKA_LOG".[0-9]*
    kafka_format
    [[ -f $KAFKA_LOG ]] && mv -f "$KAFKA_LOG" "$KAFKA_LOGS/format-server.log"
    msg "kafka: starting broker on $KAFKA_HOST:$KAFKA_PORT (controller :$KAFKA_CONTROLLER_PORT)"
    (
        cd "$KAFKA_DIR"
        exec setsid nohup "$JAVA" -Xms256m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true -Dfile.encoding=UTF-8 \
            -Dlog4j2.configurationFile="$KAFKA_TEMPLATE_DIR/log4j2.xml" \
            -Dkafka.logs.dir="$KAFKA_LOGS" \
            -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONF"
    ) >>"$KAFKA_STDOUT" 2>&1 </dev/null 9>&- &
    for ((i = 0; i < 50; i++)); do
        if pid_matches "$!" kafka.Kafka "$KAFKA_CONF"; then pid=$!; break; fi
        if pid=$(kafka_our_pid); then break; fi
        pid_alive "$!" || break
        sleep 0.1
    done
    [[ -n $pid ]] || fail_service kafka "the JVM exited right after start" "$KAFKA_STDOUT" "$KAFKA_LOG"
    echo "$pid" >"$KAFKA_PID"
    KAFKA_STARTED_PID=$pid
}

# kafka_wait PID FRESH : wait until the broker serves (port open + "Kafka Server started").
kafka_wait() {
    local pid=$1 fresh=$2 deadline=$((SECONDS + KAFKA_TIMEOUT))
    while :; do
        if ! pid_matches "$pid" kafka.Kafka; then
            rm -f "$KAFKA_PID"
            fail_service kafka "broker process $pid exited" "$KAFKA_LOG" "$KAFKA_STDOUT"
        fi
        if port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
            [[ $fresh == 0 ]] && return 0
            grep -q "Kafka Server started" "$KAFKA_LOG" 2>/dev/null && return 0
        fi
        if ((SECONDS >= deadline)); then
            if [[ $fresh == 1 ]]; then
                stop_pid kafka "$pid" 30 kafka.Kafka "$KAFKA_CONF"
                rm -f "$KAFKA_PID"
            fi
            fail_service kafka "broker not serving on $KAFKA_HOST:$KAFKA_PORT after ${KAFKA_TIMEOUT}s" "$KAFKA_LOG" "$KAFKA_STDOUT"
        fi
        sleep 0.5
    done
}

kafka_down() {
    local pid
    if pid=$(kafka_our_pid); then
        stop_pid kafka "$pid" 30 kafka.Kafka "$KAFKA_CONF"
        msg "kafka: stopped"
    else
        msg "kafka: not running (nothing started by us)"
    fi
    rm -f "$KAFKA_PID"
}

# ------------------------------------------------------------------ redis --

redis_matches() {   # a redis-server whose working dir is our REDIS_DIR
    pid_matches "$1" redis-server || return 1
    [[ $(readlink "/proc/$1/cwd" 2>/dev/null) == "$REDIS_DIR" ]]
}
redis_our_pid() {
    local pid p
    pid=$(read_pidfile "$REDIS_PID")
    if [[ -n $pid ]] && redis_matches "$pid"; then echo "$pid"; return 0; fi
    for p in $(pids_with redis-server); do
        if redis_matches "$p"; then echo "$p"; return 0; fi
    done
    return 1
}

redis_start() {
    local bind args=() conf i
    command -v redis-server >/dev/null || die "redis: redis-server not found"
    mkdir -p "$REDIS_DIR"
    bind=$(bind_addr "$REDIS_HOST")
    if [[ -n $REDIS_PASSWORD ]]; then      # keep the password off the command line
        conf=$REDIS_DIR/auth.conf
        (umask 077 && printf 'requirepass "%s"\n' "${REDIS_PASSWORD//\"/\\\"}" >"$conf")
        args+=("$conf")
    fi
    args+=(--bind "$bind" --port "$REDIS_PORT" --daemonize yes
           --pidfile "$REDIS_PID" --logfile "$REDIS_LOG" --dir "$REDIS_DIR"
           --appendonly yes --appendfsync everysec --save ""
           --maxmemory "$REDIS_MAXMEMORY" --maxmemory-policy "$REDIS_POLICY")
    msg "redis: starting on $bind:$REDIS_PORT"
    if ! (cd "$REDIS_DIR" && exec redis-server "${args[@]}") >"$REDIS_DIR/startup.log" 2>&1 </dev/null 9>&-; then
        fail_service redis "redis-server failed to start" "$REDIS_DIR/startup.log" "$REDIS_LOG"
    fi
    for ((i = 0; i < 100; i++)); do
        redis_ping "$REDIS_HOST" "$REDIS_PORT" && return 0
        sleep 0.2
    done
    fail_service redis "no PONG from $REDIS_HOST:$REDIS_PORT after 20s" "$REDIS_LOG" "$REDIS_DIR/startup.log"
}

redis_down() {
    local pid
    if pid=$(redis_our_pid); then
        stop_pid redis "$pid" 30 redis-server
        msg "redis: stopped"
    else
        msg "redis: not running (nothing started by us)"
    fi
    rm -f "$REDIS_PID"
}

# --------------------------------------------------------------- postgres --

short_hash() { printf '%s' "$1" | sha256sum | cut -c1-10; }

as_pg() {
    if is_root; then (cd / && runuser -u postgres -- "$@"); else (cd / && "$@"); fi
}

# Where our cluster lives (PG_BASE/data). Read-only variant for down/status.
pg_resolve_location() {
    if [[ -f $PG_LOCATION_FILE ]]; then PG_BASE=$(cat "$PG_LOCATION_FILE"); else PG_BASE=$PG_HOME; fi
    pg_set_paths
}
pg_set_paths() {
    PG_DATA=$PG_BASE/data
    PG_LOG=$PG_BASE/log/postgres.log
    PG_SOCKDIR=$PG_BASE/run
    # unix socket paths are limited to ~107 bytes
    if (( ${#PG_SOCKDIR} + 20 > 100 )); then PG_SOCKDIR=/tmp/clicktrack-pg-$(short_hash "$PG_BASE"); fi
}

pg_ensure_user() {
    is_root || return 0
    id -u postgres >/dev/null 2>&1 && return 0
    msg "postgres: creating system user 'postgres'"
    useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
        --shell /usr/sbin/nologin postgres
}

# Pick PG_BASE for `up`: STACK_DIR/postgres if the postgres user can reach it,
# else /var/tmp/clicktrack-<hash>/postgres (recorded in STACK_DIR/postgres/location).
pg_prepare_location() {
    local fallback
    mkdir -p "$PG_HOME"
    if [[ -f $PG_LOCATION_FILE ]]; then
        PG_BASE=$(cat "$PG_LOCATION_FILE")
        mkdir -p "$PG_BASE"
    else
        PG_BASE=$PG_HOME
        if is_root; then
            chown postgres:postgres "$PG_HOME"
            chmod 700 "$PG_HOME"
            if ! runuser -u postgres -- test -w "$PG_HOME" 2>/dev/null; then
                fallback=/var/tmp/clicktrack-$(short_hash "$STACK_DIR")
                msg "postgres: NOTE: user 'postgres' cannot reach $PG_HOME (a parent directory is not traversable);"
                msg "postgres: NOTE: using $fallback/postgres instead (recorded in $PG_LOCATION_FILE)"
                chown root:root "$PG_HOME"; chmod 755 "$PG_HOME"
                mkdir -p "$fallback"; chmod 755 "$fallback"
                PG_BASE=$fallback/postgres
                mkdir -p "$PG_BASE"
                echo "$PG_BASE" >"$PG_LOCATION_FILE"
            fi
        fi
    fi
    pg_set_paths
    mkdir -p "$PG_BASE/log" "$PG_SOCKDIR"
    if is_root; then
        chown postgres:postgres "$PG_BASE" "$PG_BASE/log" "$PG_SOCKDIR"
        chmod 700 "$PG_BASE"
        chmod 755 "$PG_SOCKDIR"
    fi
    if is_root && ! runuser -u postgres -- test -w "$PG_BASE"; then
        die "postgres: user 'postgres' cannot write $PG_BASE"
    fi
}

pg_our_pid() {
    local pid
    [[ -n ${PG_DATA:-} && -f $PG_DATA/postmaster.pid ]] || return 1
    pid=$(read_pidfile "$PG_DATA/postmaster.pid")
    [[ -n $pid ]] && pid_matches "$pid" postgres "$PG_DATA" || return 1
    echo "$pid"
}

pg_initdb() {
    [[ -f $PG_DATA/PG_VERSION ]] && return 0
    local locale=C
    locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$' && locale=C.UTF-8
    rm -rf "$PG_DATA"
    msg "postgres: initdb $PG_DATA ($("$PGBIN/postgres" --version | awk '{print $3}'), locale $locale)"
    if ! as_pg "$PGBIN/initdb" -D "$PG_DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
            --encoding=UTF8 --locale="$locale" --no-instructions >"$PG_BASE/log/initdb.log" 2>&1; then
        fail_service postgres "initdb failed" "$PG_BASE/log/initdb.log"
    fi
    cat >>"$PG_DATA/postgresql.conf" <<'EOF'

# ---- clicktrack dev/test stack (deploy/stack.sh) ----
shared_buffers = 128MB
max_connections = 200
EOF
}

pg_start() {
    local bind
    bind=$(bind_addr "$PG_HOST")
    msg "postgres: starting on $bind:$PG_PORT (data $PG_DATA)"
    if ! as_pg "$PGBIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
            -o "-c listen_addresses='$bind' -p $PG_PORT -c unix_socket_directories='$PG_SOCKDIR'" \
            start >"$PG_BASE/log/pg_ctl.log" 2>&1 </dev/null 9>&-; then
        fail_service postgres "pg_ctl start failed" "$PG_LOG" "$PG_BASE/log/pg_ctl.log"
    fi
}

sql_lit() { local s=${1//\\/\\\\}; printf "'%s'" "${s//\'/\'\'}"; }

# Create role + database from the DSN (idempotent), as superuser over the unix socket.
pg_bootstrap() {
    local out
    [[ -n $PG_PASSWORD ]] || warn "postgres: POSTGRES_DSN has no password; TCP logins use scram-sha-256 and will fail"
    if ! out=$(as_pg "$PGBIN/psql" -X -q -h "$PG_SOCKDIR" -p "$PG_PORT" -U postgres -d postgres 2>&1 <<EOF
\set ON_ERROR_STOP 1
\set u $(sql_lit "$PG_USER")
\set pw $(sql_lit "$PG_PASSWORD")
\set db $(sql_lit "$PG_DB")
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'u') AS need_role \gset
\if :need_role
CREATE ROLE :"u" LOGIN CREATEDB;
\endif
SELECT length(:'pw') > 0 AS has_pw \gset
\if :has_pw
ALTER ROLE :"u" LOGIN PASSWORD :'pw';
\endif
SELECT NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') AS need_db \gset
\if :need_db
CREATE DATABASE :"db" OWNER :"u";
\endif
EOF
    ); then
        printf '%s\n' "$out" >"$PG_BASE/log/bootstrap.log"
        fail_service postgres "could not create role/database" "$PG_BASE/log/bootstrap.log" "$PG_LOG"
    fi
}

pg_check_dsn() {   # pg_check_dsn LOGFILE... (for the failure message)
    local i out=""
    find_psql || die "postgres: psql not found"
    if [[ -n ${PGBIN:-} && -x $PGBIN/pg_isready ]]; then
        for ((i = 0; i < 60; i++)); do
            "$PGBIN/pg_isready" -q -h "$PG_HOST" -p "$PG_PORT" -t 2 && break
            sleep 0.5
        done
    fi
    for ((i = 0; i < 10; i++)); do
        if out=$(PGCONNECT_TIMEOUT=5 "$PSQL" "$PG_DSN_LIBPQ" -X -qAt -c 'select 1' 2>&1) && [[ $out == 1 ]]; then
            return 0
        fi
        sleep 0.5
    done
    printf 'stack: psql %s: %s\n' "$PG_DSN_SAFE" "$out" >&2
    return 1
}

pg_down() {
    local pid
    pg_resolve_location
    if ! pid=$(pg_our_pid); then
        msg "postgres: not running (nothing started by us)"
        return 0
    fi
    msg "postgres: stopping pid $pid (pg_ctl stop -m fast)"
    if find_pg_bin && as_pg "$PGBIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null 2>&1; then
        :
    elif [[ -n ${PGBIN:-} ]] && as_pg "$PGBIN/pg_ctl" -D "$PG_DATA" -m immediate -w -t 30 stop >/dev/null 2>&1; then
        warn "postgres: fast shutdown failed, used immediate"
    else
        stop_pid postgres "$pid" 30 postgres
    fi
    # pg_ctl returns once postmaster.pid is gone; the process itself may take a moment longer.
    for ((i = 0; i < 50; i++)); do
        pid_alive "$pid" || break
        sleep 0.2
    done
    pid_alive "$pid" && die "postgres: pid $pid still running"
    msg "postgres: stopped"
}

# -------------------------------------------------------------- commands --

take_lock() {
    exec 9>"$STACK_DIR/.lock"
    flock -w 600 9 || die "another deploy/stack.sh is running (lock $STACK_DIR/.lock)"
}

cmd_up() {
    local start=$SECONDS pid
    take_lock
    parse_config

    # 1. What is already there?
    KAFKA_MODE=start REDIS_MODE=start PG_MODE=start
    KAFKA_OUR_PID="" REDIS_OUR_PID="" PG_OUR_PID=""
    if KAFKA_OUR_PID=$(kafka_our_pid); then KAFKA_MODE=ours
    elif port_open "$KAFKA_HOST" "$KAFKA_PORT"; then KAFKA_MODE=external; rm -f "$KAFKA_PID"
    else rm -f "$KAFKA_PID"; fi

    if REDIS_OUR_PID=$(redis_our_pid); then REDIS_MODE=ours
    elif port_open "$REDIS_HOST" "$REDIS_PORT"; then REDIS_MODE=external; rm -f "$REDIS_PID"
    else rm -f "$REDIS_PID"; fi

    pg_resolve_location
    if PG_OUR_PID=$(pg_our_pid); then PG_MODE=ours
    elif port_open "$PG_HOST" "$PG_PORT"; then PG_MODE=external
    fi

    # 2. Install only what is missing for what we must start.
    NEED_PKGS=()
    if [[ $KAFKA_MODE == start ]]; then
        find_java || need_pkg openjdk-17-jre-headless
        command -v mvn >/dev/null || need_pkg maven
    fi
    [[ $REDIS_MODE == start ]] && ! command -v redis-server >/dev/null && need_pkg redis-server
    if [[ $PG_MODE == start ]]; then
        find_pg_bin || need_pkg postgresql
    else
        find_pg_bin || true
        find_psql || need_pkg postgresql-client
    fi
    apt_install "${NEED_PKGS[@]+"${NEED_PKGS[@]}"}"

    # 3. Kafka first (slow JVM start), the others while it boots.
    case $KAFKA_MODE in
        ours) msg "kafka: already running (pid $KAFKA_OUR_PID, started by us)" ;;
        external) msg "reusing kafka at $KAFKA_HOST:$KAFKA_PORT" ;;
        start) kafka_launch; KAFKA_OUR_PID=$KAFKA_STARTED_PID ;;
    esac

    case $REDIS_MODE in
        ours) msg "redis: already running (pid $REDIS_OUR_PID, started by us)"
              redis_ping "$REDIS_HOST" "$REDIS_PORT" || fail_service redis "pid $REDIS_OUR_PID does not answer PING" "$REDIS_LOG" ;;
        external) msg "reusing redis at $REDIS_HOST:$REDIS_PORT"
              redis_ping "$REDIS_HOST" "$REDIS_PORT" || die "redis: something listens on $REDIS_HOST:$REDIS_PORT but does not answer PING (wrong password in REDIS_URL?)" ;;
        start) redis_start; REDIS_OUR_PID=$(redis_our_pid || true) ;;
    esac

    case $PG_MODE in
        ours)
            msg "postgres: already running (pid $PG_OUR_PID, started by us)"
            find_pg_bin || die "postgres: server binaries not found"
            pg_bootstrap ;;
        external)
            msg "reusing postgres at $PG_HOST:$PG_PORT"
            pg_check_dsn || die "postgres: a server answers on $PG_HOST:$PG_PORT but POSTGRES_DSN ($PG_DSN_SAFE) cannot connect; fix the DSN or stop that server" ;;
        start)
            pg_ensure_user
            pg_prepare_location
            find_pg_bin || die "postgres: server binaries not found under /usr/lib/postgresql"
            pg_initdb
            pg_start
            pg_bootstrap
            PG_OUR_PID=$(pg_our_pid || true) ;;
    esac
    if [[ $PG_MODE != external ]]; then
        pg_check_dsn || fail_service postgres "cannot connect with POSTGRES_DSN ($PG_DSN_SAFE)" "$PG_LOG"
    fi

    case $KAFKA_MODE in
        ours) kafka_wait "$KAFKA_OUR_PID" 0 ;;
        start) kafka_wait "$KAFKA_OUR_PID" 1 ;;
    esac

    # 4. Summary
    msg "up in $((SECONDS - start))s"
    local kd rd pd
    case $KAFKA_MODE in external) kd="reused external" ;; *) kd="pid $KAFKA_OUR_PID, log $KAFKA_LOG" ;; esac
    case $REDIS_MODE in external) rd="reused external" ;; *) rd="pid $REDIS_OUR_PID, log $REDIS_LOG" ;; esac
    case $PG_MODE in external) pd="reused external" ;; *) pd="pid $PG_OUR_PID, log $PG_LOG" ;; esac
    printf '  %-9s %-55s %s\n' kafka "$KAFKA_HOST:$KAFKA_PORT" "$kd" \
        redis "redis://$REDIS_HOST:$REDIS_PORT" "$rd" \
        postgres "$PG_DSN_SAFE" "$pd"
    if [[ -f $KAFKA_LIBS/.stamp ]]; then
        printf '  kafka tools: java -cp '\''%s/*'\'' org.apache.kafka.tools.TopicCommand --bootstrap-server %s --list\n' \
            "$KAFKA_LIBS" "$KAFKA_HOST:$KAFKA_PORT"
    fi
}

cmd_down() {
    take_lock
    parse_config
    kafka_down
    redis_down
    pg_down
    # verify nothing of ours is left
    local left=""
    kafka_our_pid >/dev/null && left+=" kafka"
    redis_our_pid >/dev/null && left+=" redis"
    pg_our_pid >/dev/null && left+=" postgres"
    [[ -z $left ]] || die "still running after down:$left"
    msg "down: all services started by this script are stopped"
}

# `down`, then delete the services' data and logs (the Kafka jars stay): a fresh start for `up`.
cmd_purge() {
    cmd_down
    pg_resolve_location
    rm -rf "$KAFKA_DATA" "$KAFKA_LOGS" "$KAFKA_CONF" "$KAFKA_DIR/formatted-for" "$REDIS_DIR" "$PG_HOME"
    case $PG_BASE in
        /var/tmp/clicktrack-*/postgres) rm -rf "$(dirname "$PG_BASE")" ;;
    esac
    [[ $PG_SOCKDIR == /tmp/clicktrack-pg-* ]] && rm -rf "$PG_SOCKDIR"
    msg "purge: the data of Kafka, Redis and Postgres under $STACK_DIR is deleted"
}

cmd_status() {
    parse_config
    local ok=0 pid
    # kafka
    if pid=$(kafka_our_pid); then
        if port_open "$KAFKA_HOST" "$KAFKA_PORT"; then msg "kafka    running at $KAFKA_HOST:$KAFKA_PORT (pid $pid, started by us)"
        else msg "kafka    starting/unhealthy (pid $pid, started by us, $KAFKA_HOST:$KAFKA_PORT not answering)"; ok=1; fi
    elif port_open "$KAFKA_HOST" "$KAFKA_PORT"; then msg "kafka    reusing external at $KAFKA_HOST:$KAFKA_PORT"
    else msg "kafka    down ($KAFKA_HOST:$KAFKA_PORT)"; ok=1; fi
    # redis
    if pid=$(redis_our_pid); then
        if redis_ping "$REDIS_HOST" "$REDIS_PORT"; then msg "redis    running at $REDIS_HOST:$REDIS_PORT (pid $pid, started by us)"
        else msg "redis    unhealthy (pid $pid, started by us, no PONG)"; ok=1; fi
    elif redis_ping "$REDIS_HOST" "$REDIS_PORT"; then msg "redis    reusing external at $REDIS_HOST:$REDIS_PORT"
    else msg "redis    down ($REDIS_HOST:$REDIS_PORT)"; ok=1; fi
    # postgres
    pg_resolve_location
    if pid=$(pg_our_pid); then
        if port_open "$PG_HOST" "$PG_PORT"; then msg "postgres running at $PG_HOST:$PG_PORT (pid $pid, started by us, data $PG_DATA)"
        else msg "postgres unhealthy (pid $pid, started by us, $PG_HOST:$PG_PORT not answering)"; ok=1; fi
    elif port_open "$PG_HOST" "$PG_PORT"; then msg "postgres reusing external at $PG_HOST:$PG_PORT"
    else msg "postgres down ($PG_HOST:$PG_PORT)"; ok=1; fi
    ((ok == 0)) || exit 3
}

# The pid of a service this script started for STACK_DIR, as the stack recorded it (pid files and
# Postgres's `location`): tests and benchmarks that stop or pause a service ask here.
cmd_pid() {
    parse_config
    case ${1:-} in
        kafka) kafka_our_pid ;;
        redis) redis_our_pid ;;
        postgres) pg_resolve_location; pg_our_pid ;;
        *) die "pid: name kafka, redis or postgres" ;;
    esac || die "${1}: not running as started by this script for $STACK_DIR"
}

usage() {
    cat <<EOF
usage: $0 up|down|purge|status|pid SERVICE
  up      install what is missing, start Kafka, Redis and Postgres (idempotent)
  down    stop what 'up' started (never touches reused external services)
  purge   down, then delete their data and logs (Postgres's too where it lives in /var/tmp)
  status  one line per service; exit 0 if all answer, 3 otherwise
  pid     SERVICE (kafka, redis, postgres): the pid of the one 'up' started, else exit 1
  kafka-libs  fetch the Kafka jars only and print their folder (used by kafka-cluster.sh)
state: $STACK_DIR
EOF
}

case ${1:-} in
    up) cmd_up ;;
    kafka-libs) find_java || die "kafka: no Java 17+ found"; kafka_fetch_libs; echo "$KAFKA_LIBS" ;;
    down) cmd_down ;;
    purge) cmd_purge ;;
    status) cmd_status ;;
    pid) cmd_pid "${2:-}" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
esac
