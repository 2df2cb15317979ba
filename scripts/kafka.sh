#!/usr/bin/env bash
# A real single-node Apache Kafka (KRaft) on 127.0.0.1, without Docker.
#
#   bash scripts/kafka.sh up       fetch the jars (once), start a fresh broker, wait until ready;
#                                  the last line printed is the bootstrap address (127.0.0.1:9092)
#   bash scripts/kafka.sh down     stop it (SIGTERM, then SIGKILL after a timeout)
#   bash scripts/kafka.sh status   exit 0 when it runs, 1 when it does not
#   bash scripts/kafka.sh fetch    only fetch the jars into the cache
#
# The broker jars come from Maven Central (scripts/kafka/pom.xml) and are cached
# in .kafka/lib (git-ignored), so only the first `up` downloads anything. Each
# `up` formats a fresh data directory, so every run starts with no topics.
#
# Environment (all optional):
#   KAFKA_PORT             PLAINTEXT listener port                  (9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller port                    (KAFKA_PORT + 1)
#   KAFKA_DIR              state folder: data/, kafka.pid, kafka.log (<repo>/.kafka)
#   KAFKA_LIB              jar cache shared by every KAFKA_DIR       (<repo>/.kafka/lib)
#   KAFKA_HEAP_OPTS        JVM heap flags                            (-Xms512m -Xmx512m)
#   KAFKA_START_TIMEOUT    seconds to wait for "Kafka Server started" (90)
#   KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL (30)
#   KAFKA_SSL_PORT         add an SSL listener on this port; needs:
#     KAFKA_SSL_KEYSTORE         keystore file (.p12/.pfx = PKCS12, .pem = PEM, else JKS)
#     KAFKA_SSL_PASSWORD         keystore password
#     KAFKA_SSL_KEY_PASSWORD     private key password              (KAFKA_SSL_PASSWORD)
#     KAFKA_SSL_KEYSTORE_TYPE    override the type guessed from the file name
#     KAFKA_SSL_TRUSTSTORE       truststore, for client certificates (optional)
#     KAFKA_SSL_TRUSTSTORE_PASSWORD                                   (KAFKA_SSL_PASSWORD)
#     KAFKA_SSL_CLIENT_AUTH      none | requested | required          (none)
#   KAFKA_SASL_PORT        add a SASL_PLAINTEXT listener (mechanism PLAIN); needs:
#     KAFKA_SASL_USERS           comma-separated user:password pairs, e.g. alice:secret
#
# A second, independent broker (for example one with TLS, from a test fixture):
#   KAFKA_DIR=/tmp/x KAFKA_PORT=9192 KAFKA_CONTROLLER_PORT=9193 KAFKA_SSL_PORT=9194 \
#   KAFKA_SSL_KEYSTORE=/tmp/x/broker.p12 KAFKA_SSL_PASSWORD=changeit bash scripts/kafka.sh up
set -euo pipefail

HOST=127.0.0.1
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
POM="$REPO/scripts/kafka/pom.xml"
KAFKA_DIR="${KAFKA_DIR:-$REPO/.kafka}"
KAFKA_LIB="${KAFKA_LIB:-$REPO/.kafka/lib}"
# Absolute paths: they end up in server.properties and a file: URL.
[[ "$KAFKA_DIR" == /* ]] || KAFKA_DIR="$PWD/$KAFKA_DIR"
[[ "$KAFKA_LIB" == /* ]] || KAFKA_LIB="$PWD/$KAFKA_LIB"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms512m -Xmx512m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
KAFKA_SSL_PORT="${KAFKA_SSL_PORT:-}"
KAFKA_SASL_PORT="${KAFKA_SASL_PORT:-}"

PIDFILE="$KAFKA_DIR/kafka.pid"
LOGFILE="$KAFKA_DIR/kafka.log"
DATADIR="$KAFKA_DIR/data"
CONFIG="$KAFKA_DIR/server.properties"
LOG4J="$KAFKA_DIR/log4j.properties"
READY_LINE="Kafka Server started"

say() { printf 'kafka.sh: %s\n' "$*"; }
die() { printf 'kafka.sh: error: %s\n' "$*" >&2; exit 1; }

# --- jars -------------------------------------------------------------------

# The cache is valid when it was filled from the current pom.xml.
jars_ready() {
    [[ -f "$KAFKA_LIB/.pom.sha256" ]] &&
        [[ "$(cat "$KAFKA_LIB/.pom.sha256")" == "$(sha256sum "$POM" | cut -d' ' -f1)" ]]
}

fetch_jars() {
    jars_ready && return 0
    command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch the Kafka jars: apt-get install maven"
    mkdir -p "$(dirname "$KAFKA_LIB")"
    # One fetch at a time, even when several brokers start together.
    exec 8>"$KAFKA_LIB.lock"
    flock 8
    if ! jars_ready; then
        say "fetching Apache Kafka jars with Maven into $KAFKA_LIB (first run only)"
        local tmp="$KAFKA_LIB.tmp.$$"
        rm -rf "$tmp"
        local mvnlog="$KAFKA_LIB.fetch.log"
        if ! (cd "$REPO/scripts/kafka" && mvn -q -B -Dstyle.color=never dependency:copy-dependencies \
            -DoutputDirectory="$tmp" -DincludeScope=runtime) >"$mvnlog" 2>&1; then
            cat "$mvnlog" >&2
            rm -rf "$tmp"
            die "Maven could not fetch the Kafka jars (its output is above and in $mvnlog)"
        fi
        sha256sum "$POM" | cut -d' ' -f1 >"$tmp/.pom.sha256"
        rm -rf "$KAFKA_LIB"
        mv "$tmp" "$KAFKA_LIB"
    fi
    flock -u 8
    exec 8>&-
}

# --- process ----------------------------------------------------------------

running_pid() {
    # Print the broker's pid when the pid file names a live Kafka process.
    [[ -f "$PIDFILE" ]] || return 1
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
    printf '%s\n' "$pid"
}

port_busy() {
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

bootstrap() {
    local out="PLAINTEXT://$HOST:$KAFKA_PORT"
    [[ -n "$KAFKA_SSL_PORT" ]] && out+=" SSL://$HOST:$KAFKA_SSL_PORT"
    [[ -n "$KAFKA_SASL_PORT" ]] && out+=" SASL_PLAINTEXT://$HOST:$KAFKA_SASL_PORT"
    printf '%s\n' "$out"
}

# --- configuration ----------------------------------------------------------

write_config() {
    local listeners="PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT"
    local advertised="PLAINTEXT://$HOST:$KAFKA_PORT"
    local protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    local extra=""

    if [[ -n "$KAFKA_SSL_PORT" ]]; then
        [[ -n "${KAFKA_SSL_KEYSTORE:-}" ]] || die "KAFKA_SSL_PORT needs KAFKA_SSL_KEYSTORE (a keystore file)"
        [[ -f "$KAFKA_SSL_KEYSTORE" ]] || die "keystore $KAFKA_SSL_KEYSTORE does not exist"
        [[ -n "${KAFKA_SSL_PASSWORD:-}" ]] || die "KAFKA_SSL_PORT needs KAFKA_SSL_PASSWORD (the keystore password)"
        local type="${KAFKA_SSL_KEYSTORE_TYPE:-}"
        if [[ -z "$type" ]]; then
            case "$KAFKA_SSL_KEYSTORE" in
                *.p12 | *.pfx) type=PKCS12 ;;
                *.pem) type=PEM ;;
                *) type=JKS ;;
            esac
        fi
        listeners+=",SSL://$HOST:$KAFKA_SSL_PORT"
        advertised+=",SSL://$HOST:$KAFKA_SSL_PORT"
        protocols+=",SSL:SSL"
        extra+="ssl.keystore.location=$KAFKA_SSL_KEYSTORE
ssl.keystore.type=$type
ssl.keystore.password=$KAFKA_SSL_PASSWORD
ssl.key.password=${KAFKA_SSL_KEY_PASSWORD:-$KAFKA_SSL_PASSWORD}
ssl.client.auth=${KAFKA_SSL_CLIENT_AUTH:-none}
ssl.endpoint.identification.algorithm=
"
        if [[ -n "${KAFKA_SSL_TRUSTSTORE:-}" ]]; then
            local ttype="JKS"
            case "$KAFKA_SSL_TRUSTSTORE" in
                *.p12 | *.pfx) ttype=PKCS12 ;;
                *.pem) ttype=PEM ;;
            esac
            extra+="ssl.truststore.location=$KAFKA_SSL_TRUSTSTORE
ssl.truststore.type=${KAFKA_SSL_TRUSTSTORE_TYPE:-$ttype}
"
            [[ "$ttype" == PEM ]] ||
                extra+="ssl.truststore.password=${KAFKA_SSL_TRUSTSTORE_PASSWORD:-$KAFKA_SSL_PASSWORD}
"
        fi
    fi

    if [[ -n "$KAFKA_SASL_PORT" ]]; then
        [[ -n "${KAFKA_SASL_USERS:-}" ]] || die "KAFKA_SASL_PORT needs KAFKA_SASL_USERS (user:password,...)"
        local jaas="org.apache.kafka.common.security.plain.PlainLoginModule required" pair
        local -a pairs
        IFS=',' read -r -a pairs <<<"$KAFKA_SASL_USERS"
        for pair in "${pairs[@]}"; do
            [[ "$pair" == *:* ]] || die "KAFKA_SASL_USERS: '$pair' is not user:password"
            jaas+=" user_${pair%%:*}=\"${pair#*:}\""
        done
        listeners+=",SASL_PLAINTEXT://$HOST:$KAFKA_SASL_PORT"
        advertised+=",SASL_PLAINTEXT://$HOST:$KAFKA_SASL_PORT"
        protocols+=",SASL_PLAINTEXT:SASL_PLAINTEXT"
        extra+="sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=$jaas;
"
    fi

    cat >"$CONFIG" <<EOF
# Written by scripts/kafka.sh; rewritten on every \`up\`.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=$listeners
advertised.listeners=$advertised
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=$protocols
log.dirs=$DATADIR
num.partitions=1
# One node: internal topics must not ask for more replicas than there are.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
# Tests start groups often: do not wait before the first rebalance.
group.initial.rebalance.delay.ms=0
# Tests replay events of fixed dates (2023): time retention (7 days by the
# records' timestamps, checked every 5 minutes) would delete their input
# while it is being read. Keep data until the topic is deleted.
log.retention.ms=-1
$extra
EOF

    cat >"$LOG4J" <<'EOF'
# Written by scripts/kafka.sh: everything to stdout, which goes to kafka.log.
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.coordinator.group=INFO
log4j.logger.org.apache.kafka.storage.internals.log=WARN
# Quiet the lines every topic creation writes (tests create many topics).
log4j.logger.kafka.log=WARN
log4j.logger.kafka.cluster.Partition=WARN
log4j.logger.kafka.server.ReplicaFetcherManager=WARN
log4j.logger.kafka.server.ReplicaAlterLogDirsManager=WARN
log4j.logger.org.apache.kafka.controller.ReplicationControlManager=WARN
log4j.logger.org.apache.kafka.controller.ConfigurationControlManager=WARN
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.org.apache.kafka.common.utils.AppInfoParser=WARN
EOF
}

new_cluster_id() {
    # 16 random bytes, URL-safe base64 without padding, not starting with '-'.
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        [[ "$id" != -* ]] && break
    done
    printf '%s\n' "$id"
}

# --- commands ---------------------------------------------------------------

cmd_up() {
    local pid
    if pid="$(running_pid)"; then
        say "already running (pid $pid) at $(bootstrap)"
        printf '%s:%s\n' "$HOST" "$KAFKA_PORT"
        return 0
    fi
    rm -f "$PIDFILE"
    command -v java >/dev/null || die "Java 17 is needed to run Kafka: apt-get install openjdk-17-jre-headless"
    local port
    for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" $KAFKA_SSL_PORT $KAFKA_SASL_PORT; do
        port_busy "$port" && die "port $HOST:$port is already in use by another process; stop it or choose other ports (KAFKA_PORT, KAFKA_CONTROLLER_PORT)"
    done
    fetch_jars

    mkdir -p "$KAFKA_DIR"
    rm -rf "$DATADIR"
    write_config
    local cp="$KAFKA_LIB/*"
    if ! java -cp "$cp" -Dlog4j.configuration="file:$LOG4J" kafka.tools.StorageTool format \
        -t "$(new_cluster_id)" -c "$CONFIG" >"$KAFKA_DIR/format.log" 2>&1; then
        cat "$KAFKA_DIR/format.log" >&2
        die "formatting the KRaft storage in $DATADIR failed"
    fi

    # Detached from this shell (own session, no inherited stdin/stdout), so a
    # caller capturing our output is not held open by the broker.
    : >"$LOGFILE"
    # shellcheck disable=SC2086
    setsid sh -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" \
        java $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$LOG4J" -Dkafka.logs.dir="$KAFKA_DIR" \
        -cp "$cp" kafka.Kafka "$CONFIG" </dev/null >>"$LOGFILE" 2>&1 &

    local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    while :; do
        if grep -q "$READY_LINE" "$LOGFILE" 2>/dev/null; then
            break
        fi
        if [[ -f "$PIDFILE" ]] && ! running_pid >/dev/null; then
            tail -n 40 "$LOGFILE" >&2 || true
            rm -f "$PIDFILE"
            die "the broker exited during start-up (log: $LOGFILE)"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 40 "$LOGFILE" >&2 || true
            cmd_down >/dev/null || true
            die "the broker did not print '$READY_LINE' within ${KAFKA_START_TIMEOUT}s (log: $LOGFILE)"
        fi
        sleep 0.3
    done
    say "started (pid $(cat "$PIDFILE")) in ${SECONDS}s; log: $LOGFILE"
    say "bootstrap: $(bootstrap)  (tests: export STREAMNB_KAFKA=$HOST:$KAFKA_PORT)"
    printf '%s:%s\n' "$HOST" "$KAFKA_PORT"
}

cmd_down() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PIDFILE"
        say "not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            say "no exit ${KAFKA_STOP_TIMEOUT}s after SIGTERM; sending SIGKILL to $pid"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.2
    done
    rm -f "$PIDFILE"
    say "stopped (pid $pid)"
}

cmd_status() {
    local pid
    if pid="$(running_pid)"; then
        say "running (pid $pid) at $(bootstrap)"
        return 0
    fi
    say "not running"
    return 1
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    fetch) fetch_jars && say "jars ready in $KAFKA_LIB" ;;
    *)
        echo "usage: bash scripts/kafka.sh up|down|status|fetch" >&2
        exit 2
        ;;
esac
