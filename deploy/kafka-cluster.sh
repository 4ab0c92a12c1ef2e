#!/usr/bin/env bash
# deploy/kafka-cluster.sh — a three-broker Kafka cluster (KRaft) on this one machine, for the
# replication tests and for trying Clicktrack against replicated topics.
#
# Usage: deploy/kafka-cluster.sh up|down|status|stop-node N|kill-node N|start-node N|bootstrap
#
# Node N (1..3) is a combined broker+controller listening on 127.0.0.1:BASE+2(N-1) (broker) and
# the next port (controller); BASE is KAFKA_CLUSTER_BASE_PORT (default 31092). Internal topics have
# replication factor 3 and min.insync.replicas 2, so the cluster keeps accepting acks=all writes
# with one node down. Data, logs and pids live in CLUSTER_DIR (default .stack/kafka-cluster).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd -P)
CLUSTER_DIR=${CLUSTER_DIR:-$ROOT/.stack/kafka-cluster}
BASE=${KAFKA_CLUSTER_BASE_PORT:-31092}   # below the ephemeral range (32768+): no outgoing socket takes it
NODES=(1 2 3)
TIMEOUT=${STACK_KAFKA_TIMEOUT:-120}

msg() { printf 'kafka-cluster: %s\n' "$*"; }
die() { printf 'kafka-cluster: ERROR: %s\n' "$*" >&2; exit 1; }

broker_port() { echo $((BASE + 2 * ($1 - 1))); }
controller_port() { echo $((BASE + 2 * ($1 - 1) + 1)); }
node_dir() { echo "$CLUSTER_DIR/node$1"; }
pid_file() { echo "$(node_dir "$1")/kafka.pid"; }
bootstrap() {
    local n out=""
    for n in "${NODES[@]}"; do out+="${out:+,}127.0.0.1:$(broker_port "$n")"; done
    echo "$out"
}
voters() {
    local n out=""
    for n in "${NODES[@]}"; do out+="${out:+,}$n@127.0.0.1:$(controller_port "$n")"; done
    echo "$out"
}
port_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"' "$1" 2>/dev/null; }

# our_pid N: the pid of node N if it is alive and is our broker (never a recycled pid).
our_pid() {
    local f pid
    f=$(pid_file "$1")
    [[ -f $f ]] || return 1
    pid=$(tr -dc '0-9' <"$f")
    [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$(node_dir "$1")/server.properties" || return 1
    echo "$pid"
}

java_bin() {
    local c
    for c in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} "$(command -v java || true)" /usr/lib/jvm/*/bin/java; do
        [[ -n $c && -x $c ]] && { echo "$c"; return 0; }
    done
    die "no Java found; run 'bash deploy/stack.sh up' once, it installs one"
}

render() {
    local n=$1 dir
    dir=$(node_dir "$n")
    mkdir -p "$dir/data" "$dir/logs"
    cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$(voters)
listeners=PLAINTEXT://127.0.0.1:$(broker_port "$n"),CONTROLLER://127.0.0.1:$(controller_port "$n")
advertised.listeners=PLAINTEXT://127.0.0.1:$(broker_port "$n")
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=6
default.replication.factor=3
min.insync.replicas=2
auto.create.topics.enable=false
offsets.topic.replication.factor=3
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
unclean.leader.election.enable=false
num.network.threads=2
num.io.threads=2
PROPS
}

run_java() {   # run_java NODE_DIR ARGS...
    local dir=$1
    shift
    "$JAVA" -Xms128m -Xmx384m -XX:+UseG1GC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/log4j2.xml" -Dkafka.logs.dir="$dir/logs" \
        -cp "$LIBS/*" "$@"
}

format_all() {
    local n cid dir
    if [[ -f $CLUSTER_DIR/cluster-id ]]; then
        cid=$(cat "$CLUSTER_DIR/cluster-id")
    else
        cid=$(run_java "$CLUSTER_DIR" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)
        [[ $cid =~ ^[A-Za-z0-9_-]{22}$ ]] || die "could not generate a cluster id"
        echo "$cid" >"$CLUSTER_DIR/cluster-id"
    fi
    for n in "${NODES[@]}"; do
        dir=$(node_dir "$n")
        [[ -f $dir/data/meta.properties ]] && continue
        run_java "$dir" kafka.tools.StorageTool format -t "$cid" -c "$dir/server.properties" \
            >"$dir/logs/format.log" 2>&1 || die "format of node $n failed: see $dir/logs/format.log"
    done
}

start_node() {
    local n=$1 dir pid
    dir=$(node_dir "$n")
    if pid=$(our_pid "$n"); then
        msg "node $n already running (pid $pid)"
        return 0
    fi
    port_open "$(broker_port "$n")" && die "port $(broker_port "$n") is taken by another process"
    [[ -f $dir/logs/server.log ]] && mv -f "$dir/logs/server.log" "$dir/logs/server.log.prev"
    (
        cd "$dir"
        exec setsid nohup "$JAVA" -Xms128m -Xmx384m -XX:+UseG1GC -Djava.awt.headless=true \
            -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/log4j2.xml" -Dkafka.logs.dir="$dir/logs" \
            -cp "$LIBS/*" kafka.Kafka "$dir/server.properties"
    ) >>"$dir/logs/stdout.log" 2>&1 </dev/null &
    echo $! >"$(pid_file "$n")"
    msg "node $n starting on 127.0.0.1:$(broker_port "$n") (pid $!)"
}

wait_node() {
    local n=$1 dir deadline=$((SECONDS + TIMEOUT))
    dir=$(node_dir "$n")
    until port_open "$(broker_port "$n")" && grep -q "Kafka Server started" "$dir/logs/server.log" 2>/dev/null; do
        our_pid "$n" >/dev/null || { tail -n 30 "$dir/logs/server.log" "$dir/logs/stdout.log" >&2 || true; die "node $n exited; logs in $dir/logs"; }
        ((SECONDS < deadline)) || { tail -n 30 "$dir/logs/server.log" >&2 || true; die "node $n not serving after ${TIMEOUT}s; logs in $dir/logs"; }
        sleep 0.5
    done
}

stop_node() {   # stop_node N SIGNAL
    local n=$1 sig=$2 pid i
    pid=$(our_pid "$n") || { msg "node $n not running"; return 0; }
    kill "-$sig" "$pid"
    for ((i = 0; i < 300; i++)); do
        our_pid "$n" >/dev/null || { rm -f "$(pid_file "$n")"; msg "node $n stopped ($sig)"; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$(pid_file "$n")"
    msg "node $n killed after 30 s"
}

prepare() {
    mkdir -p "$CLUSTER_DIR"
    JAVA=$(java_bin)
    LIBS=$(bash "$SCRIPT_DIR/stack.sh" kafka-libs | tail -n1)
    [[ -d $LIBS ]] || die "Kafka jars missing ($LIBS)"
}

case ${1:-} in
    up)
        prepare
        for n in "${NODES[@]}"; do render "$n"; done
        format_all
        for n in "${NODES[@]}"; do start_node "$n"; done
        for n in "${NODES[@]}"; do wait_node "$n"; done
        msg "up: bootstrap servers $(bootstrap)"
        ;;
    start-node)
        prepare
        start_node "${2:?node number}"
        wait_node "$2"
        ;;
    stop-node) stop_node "${2:?node number}" TERM ;;
    kill-node) stop_node "${2:?node number}" KILL ;;
    down)
        # All at once: stopped one by one, the last node waits for a controller quorum that is gone.
        for n in "${NODES[@]}"; do stop_node "$n" TERM & done
        wait
        ;;
    status)
        rc=0
        for n in "${NODES[@]}"; do
            if pid=$(our_pid "$n"); then msg "node $n running (pid $pid, 127.0.0.1:$(broker_port "$n"))"
            else msg "node $n down"; rc=3; fi
        done
        exit $rc
        ;;
    bootstrap) bootstrap ;;
    *) echo "usage: $0 up|down|status|stop-node N|kill-node N|start-node N|bootstrap" >&2; exit 2 ;;
esac
