#!/usr/bin/env bash
# The Kafka Streams oracle (scripts/kstreams-oracle): windowed aggregations run
# through Kafka Streams 3.9's TopologyTestDriver, no broker. tests/oracle/kstreams.py
# drives it; the case/result format is documented there.
#
#   bash scripts/oracle.sh build        compile it (skipped when the jar is newer than
#                                       pom.xml and every source file)
#   bash scripts/oracle.sh run [args]   build if needed, then read cases (JSON lines) on
#                                       stdin and write results (JSON lines) on stdout;
#                                       --metrics also prints the late/drop metrics on stderr
#   bash scripts/oracle.sh classpath    build if needed, print the java classpath
#
# The jar and its dependencies (Kafka Streams, Jackson, from Maven Central) go to
# .kafka/oracle (git-ignored; ORACLE_DIR overrides it). Maven runs offline first and
# only goes online when its local repository lacks something.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$REPO/scripts/kstreams-oracle"
ORACLE_DIR="${ORACLE_DIR:-$REPO/.kafka/oracle}"
[[ "$ORACLE_DIR" == /* ]] || ORACLE_DIR="$PWD/$ORACLE_DIR"
LIB="$ORACLE_DIR/lib"
JAR="$LIB/kstreams-oracle.jar"
MAIN=dev.streamnb.oracle.Oracle

die() { printf 'oracle.sh: error: %s\n' "$*" >&2; exit 1; }

up_to_date() {
    [[ -f "$JAR" ]] && [[ -z "$(find "$SRC/pom.xml" "$SRC/src" -newer "$JAR" -print -quit)" ]]
}

build() {
    command -v java >/dev/null || die "Java 17 is needed for the Kafka Streams oracle: apt-get install openjdk-17-jdk-headless"
    command -v javac >/dev/null || die "a JDK (javac) is needed to build the Kafka Streams oracle: apt-get install openjdk-17-jdk-headless"
    up_to_date && return 0
    command -v mvn >/dev/null || die "Maven (mvn) is needed to build the Kafka Streams oracle: apt-get install maven"
    mkdir -p "$ORACLE_DIR"
    # One build at a time, even when several test processes start together.
    exec 9>"$ORACLE_DIR/build.lock"
    flock 9
    if ! up_to_date; then
        printf 'oracle.sh: building the Kafka Streams oracle into %s\n' "$LIB" >&2
        local tmp="$ORACLE_DIR/lib.tmp.$$" log="$ORACLE_DIR/build.log"
        rm -rf "$tmp" "$ORACLE_DIR/build"
        local -a goals=(-B -Dstyle.color=never "-Doracle.build=$ORACLE_DIR/build" package
            dependency:copy-dependencies "-DoutputDirectory=$tmp" -DincludeScope=runtime)
        if ! (cd "$SRC" && mvn -q -o "${goals[@]}") >"$log" 2>&1; then
            rm -rf "$tmp"
            if ! (cd "$SRC" && mvn -q "${goals[@]}") >"$log" 2>&1; then
                cat "$log" >&2
                rm -rf "$tmp"
                die "Maven could not build the Kafka Streams oracle (its output is above and in $log)"
            fi
        fi
        cp "$ORACLE_DIR/build/kstreams-oracle.jar" "$tmp/kstreams-oracle.jar"
        rm -rf "$LIB"
        mv "$tmp" "$LIB"
    fi
    flock -u 9
    exec 9>&-
}

case "${1:-}" in
    build) build ;;
    run)
        shift
        build
        exec java -XX:+UseSerialGC -cp "$LIB/*" "$MAIN" "$@"
        ;;
    classpath)
        build
        printf '%s\n' "$LIB/*"
        ;;
    *)
        echo "usage: bash scripts/oracle.sh build|run [--metrics]|classpath" >&2
        exit 2
        ;;
esac
