#!/usr/bin/env bash
# Times tsxfer again on the clusters a `benches/run.sh` run kept (BENCH_KEEP=1), so that
# builds can be compared on one generated source (a source of 24,000 chunks takes longer
# to make than to migrate):
#
#   BENCH_DATASET=chunks BENCH_CHUNKS=12000 BENCH_TOOLS=tsxfer BENCH_COPY_RATE=0 \
#       BENCH_KEEP=1 BENCH_DIR=/tmp/bench-scale-12000 bash benches/run.sh
#   bash benches/scale.sh /tmp/bench-scale-12000 target/release/tsxfer after plan
#   bash benches/scale.sh /tmp/bench-scale-12000 target/release/tsxfer after migrate
#   bash benches/scale.sh /tmp/bench-scale-12000 - - stop
#
# Arguments: the run directory, the tsxfer binary, a label for the results, and what to
# do: `plan` times `tsxfer plan`; `migrate` times a whole migration into a new
# cloud-like target database, as benches/run.sh runs it (--jobs 2, to tsdbadmin), prints
# its phases and checks the hypertable's rows, order-independent hash and chunks against
# the source; `guide` times the guide's procedure again (the commands benches/run.sh
# wrote for its `seed` tool, into a new database of the target's superuser, the binary
# argument unused) with the same check, so that the two can be timed in turn on one
# machine in one state (its file system's state moves every time by more than the
# difference between builds, benches/README.md); `start` and `stop` start and stop the
# two clusters. Each timing is printed
# with the machine's load average before and after. As root (the clusters belong to the
# postgres OS user). Results: <run dir>/scale-<label>-<what>-<time>/.
#
# Environment: BENCH_JOBS (tsxfer --jobs, default 2) and BENCH_RTT_MS (round trip added
# between tsxfer and each server by benches/delay_proxy.py, as benches/run.sh does;
# default 0, no proxy). The checks connect directly. The targets of earlier timings are
# renamed retired_<time> and dropped by `stop`.
set -euo pipefail
[[ $# -eq 4 ]] || {
    echo "usage: $0 <bench dir> <tsxfer binary> <label> plan|migrate|guide|start|stop" >&2
    exit 2
}
DIR=$1 BIN=$2 LABEL=$3 WHAT=$4
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_BIN=${TSXFER_PG_BIN:-/usr/lib/postgresql/15/bin}
[[ -d $DIR/clusters/source/data && -d $DIR/clusters/target/data ]] ||
    {
        echo "$DIR has no kept clusters (run benches/run.sh with BENCH_KEEP=1)" >&2
        exit 1
    }
as_pg() { runuser -u postgres -- "$@"; }
port() { awk -F' = ' '/^port = / { p = $2 } END { print p }' "$DIR/clusters/$1/data/postgresql.conf"; }
PORT_source=$(port source) PORT_target=$(port target)
# No parallel workers: each would lock every chunk again, past the lock table's room.
q() { # <side> <db> [psql args...]
    local port=PORT_$1 db=$2
    shift 2
    PGOPTIONS='-c max_parallel_workers_per_gather=0' "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -At -d "host=127.0.0.1 port=${!port} user=postgres dbname=$db" "$@"
}
start() {
    local c
    for c in source target; do
        [[ -f $DIR/clusters/$c/data/postmaster.pid ]] ||
            as_pg "$PG_BIN/pg_ctl" -D "$DIR/clusters/$c/data" -l "$DIR/clusters/$c/server.log" -w -t 120 start >/dev/null
    done
}
case $WHAT in
start)
    start
    exit 0
    ;;
stop)
    if [[ -f $DIR/clusters/target/data/postmaster.pid ]]; then
        q target postgres -c "SELECT datname FROM pg_database WHERE datname LIKE 'retired\\_%'" |
            while read -r d; do q target postgres -c "DROP DATABASE \"$d\" WITH (FORCE)"; done
    fi
    for c in source target; do
        [[ -f $DIR/clusters/$c/data/postmaster.pid ]] &&
            as_pg "$PG_BIN/pg_ctl" -D "$DIR/clusters/$c/data" -m fast -w -t 300 stop >/dev/null
    done
    exit 0
    ;;
plan | migrate) ;;
guide)
    # The variant whose source database is `bench` (the dense one has its own).
    GUIDE=
    for v in chunks sparse; do
        [[ -f $DIR/runs/$v-seed/commands.sh ]] && GUIDE=$DIR/runs/$v-seed/commands.sh && break
    done
    [[ -n $GUIDE ]] || {
        echo "$DIR has no commands of the guide's procedure (run benches/run.sh with seed in BENCH_TOOLS)" >&2
        exit 1
    }
    # Roles are the cluster's: a second run of the guide's roles.sql stops at the first
    # role an earlier run made.
    grep -q '^CREATE ROLE' "$(dirname "$GUIDE")/roles.sql" && {
        echo "the dataset has roles of its own, which the guide's procedure cannot make twice in one target cluster; time it with benches/run.sh" >&2
        exit 1
    }
    ;;
*)
    echo "unknown action '$WHAT' (plan, migrate, guide, start, stop)" >&2
    exit 2
    ;;
esac
[[ $WHAT == guide || -x $BIN ]] || {
    echo "$BIN is not an executable" >&2
    exit 1
}
start
JOBS=${BENCH_JOBS:-2}
RTT_MS=${BENCH_RTT_MS:-0}
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || {
    echo "BENCH_JOBS must be a positive integer, not '$JOBS'" >&2
    exit 2
}
[[ $RTT_MS =~ ^[0-9]+([.][0-9]+)?$ ]] || {
    echo "BENCH_RTT_MS must be a number of milliseconds, not '$RTT_MS'" >&2
    exit 2
}
PROXIES=()
trap 'for p in "${PROXIES[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
# Where tsxfer connects to <side> (sets REACH_<side>): the server itself, or a delay
# proxy in front of it.
reach() { # <side>
    local port=PORT_$1 p i
    if [[ $RTT_MS == 0 ]]; then
        printf -v "REACH_$1" '%s' "${!port}"
        return
    fi
    p=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    python3 "$REPO/benches/delay_proxy.py" "$p" "${!port}" "$(awk -v r="$RTT_MS" 'BEGIN { print r / 2 }')" \
        >"$DIR/scale-proxy-$1.log" 2>&1 &
    PROXIES+=("$!")
    for i in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break
        sleep 0.1
    done
    printf -v "REACH_$1" '%s' "$p"
}
reach source
reach target
SRC="host=127.0.0.1 port=$REACH_source dbname=bench user=postgres"
TGT="host=127.0.0.1 port=$REACH_target dbname=bench user=tsdbadmin password=bench-Adm1n"
# The target database as benches/run.sh makes it (its role tsdbadmin is kept).
# The last target is renamed out of the way, not dropped: files deleted just before would
# slow every file this run makes (see "Nothing is deleted between runs" in benches/run.sh).
# `stop` drops them.
if [[ -n $(q target postgres -c "SELECT 1 FROM pg_database WHERE datname = 'bench'") ]]; then
    q target postgres -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'bench'" >/dev/null
    retired=retired_$(date -u +%s%N)
    q target postgres -c "ALTER DATABASE bench RENAME TO $retired"
    # Nothing left there for autovacuum to do while the run is timed.
    q target "$retired" -c "VACUUM (ANALYZE)"
fi
if [[ $WHAT == guide ]]; then
    # As benches/run.sh gives it to the tools other than tsxfer.
    q target postgres -c "CREATE DATABASE bench TEMPLATE template0"
    q target bench -c "CREATE EXTENSION timescaledb"
else
    q target postgres -c "CREATE DATABASE bench OWNER tsdbadmin TEMPLATE template0"
    q target bench -v admin=tsdbadmin -f "$REPO/scripts/cloud-like-target.sql" >/dev/null
fi
q source postgres -c CHECKPOINT
q target postgres -c CHECKPOINT
sync
RUN=$DIR/scale-$LABEL-$WHAT-$(date -u +%H%M%S)
mkdir -p "$RUN"
load() { cut -d' ' -f1-3 /proc/loadavg; }
before=$(load)
t0=$EPOCHREALTIME
status=0
if [[ $WHAT == guide ]]; then
    # The harness's commands, connected as this run connects and writing into its directory.
    SRC_LINE=$(printf 'SRC=%q' "$SRC")
    TGT_LINE=$(printf 'TGT=%q' "host=127.0.0.1 port=$REACH_target dbname=bench user=postgres")
    CD_LINE=$(printf 'cd %q' "$RUN")
    SRC_LINE=$SRC_LINE TGT_LINE=$TGT_LINE CD_LINE=$CD_LINE awk '
        /^SRC=/ { $0 = ENVIRON["SRC_LINE"] }
        /^TGT=/ { $0 = ENVIRON["TGT_LINE"] }
        /^cd / { $0 = ENVIRON["CD_LINE"] }
        { print }' "$GUIDE" >"$RUN/commands.sh"
    bash "$RUN/commands.sh" >"$RUN/output.log" 2>&1 || status=$?
elif [[ $WHAT == plan ]]; then
    "$BIN" plan --source "$SRC" --target "$TGT" --jobs "$JOBS" >"$RUN/output.log" 2>&1 || status=$?
else
    "$BIN" --source "$SRC" --target "$TGT" --jobs "$JOBS" --buffer-size 1MiB --work-dir "$RUN" \
        --report "$RUN/report.json" --metrics-addr off >"$RUN/output.log" 2>&1 || status=$?
fi
t1=$EPOCHREALTIME
{
    echo "$LABEL $WHAT (--jobs $JOBS, ${RTT_MS} ms added): $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s, exit $status; load average before $before, after $(load)"
    [[ $WHAT == migrate && -f $RUN/report.json ]] &&
        jq -r '[.phases[] | "\(.phase) \(.seconds * 10 | round / 10) s"] | join(", ")' "$RUN/report.json"
    if [[ $WHAT == guide || ($WHAT == migrate && -f $RUN/report.json) ]]; then
        fp="SELECT count(*) || '|' || coalesce(sum(pg_catalog.hashtextextended(r::text, 0)), 0) FROM public.readings r"
        chunks="SELECT count(*) || '/' || count(*) FILTER (WHERE is_compressed) FROM timescaledb_information.chunks"
        s="$(q source bench -c "$fp") $(q source bench -c "$chunks")"
        t="$(q target bench -c "$fp") $(q target bench -c "$chunks")"
        if [[ $s == "$t" ]]; then echo "equal: yes ($s)"; else echo "equal: no (source $s, target $t)"; fi
    fi
} | tee "$RUN/summary.txt"
exit "$status"
