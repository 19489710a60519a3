#!/usr/bin/env bash
# Offline dump size and time: `pg_dump -Fd` (default gzip, one job and -j N) against
# `tsxfer dump --jobs N` on two databases, side by side in alternating rounds.
#
#   bash benches/dump-size.sh                       # as root
#   DUMPZ_TSXFER="old=/tmp/tsxfer-old new=target/release/tsxfer" bash benches/dump-size.sh
#
# Databases (in one throwaway PostgreSQL 15 + TimescaleDB cluster):
#   random  one plain table of random text and jsonb (md5/random() values: text that only
#           entropy coding shrinks, jsonb objects of random numbers and strings, a float,
#           a timestamp), about DUMPZ_RANDOM_MB MB in the heap
#   mixed   the bench dataset of benches/run.sh (dataset-*.sql) at BENCH_GB=DUMPZ_GB:
#           hypertables with compressed chunks, a continuous aggregate, plain tables
#
# Settings:
#   DUMPZ_RANDOM_MB  size of the random table, default 200
#   DUMPZ_GB         scale of the mixed dataset, default 0.3
#   DUMPZ_JOBS       N for pg_dump -j and tsxfer dump --jobs, default 2
#   DUMPZ_ROUNDS     rounds (each runs every tool once, in turn), default 2
#   DUMPZ_DATASETS   default "random mixed"
#   DUMPZ_TSXFER     tsxfer binaries to compare, "name=path ..." (a path alone is named
#                    tsxfer), default target/release/tsxfer (built when missing)
#   DUMPZ_TSXFER_ARGS extra arguments for every tsxfer dump (e.g. --compress-level 5)
#   DUMPZ_KEEP_DIRS  1 keeps the dump directories of the last round
#
# Prints one line per dataset, tool and round (bytes, wall seconds, CPU seconds of the
# tool's process tree and of the server), then the median of each over the rounds. The
# machine may be shared: alternate rounds are what make two tools comparable.
set -euo pipefail
exec </dev/null

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCHES=$REPO/benches
PG_BIN=${TSXFER_PG_BIN:-/usr/lib/postgresql/15/bin}
RANDOM_MB=${DUMPZ_RANDOM_MB:-200}
GB=${DUMPZ_GB:-0.3}
JOBS=${DUMPZ_JOBS:-2}
ROUNDS=${DUMPZ_ROUNDS:-2}
DATASETS=${DUMPZ_DATASETS:-random mixed}
EXTRA_ARGS=${DUMPZ_TSXFER_ARGS:-}

say() { printf 'dump-size: %s\n' "$*" >&2; }
die() {
    printf 'dump-size: ERROR: %s\n' "$*" >&2
    exit 1
}

[[ $(id -u) -eq 0 ]] || die "run as root (initdb runs as the postgres OS user through runuser)"
[[ $RANDOM_MB =~ ^[1-9][0-9]*$ ]] || die "DUMPZ_RANDOM_MB must be a positive integer, not '$RANDOM_MB'"
[[ $GB =~ ^[0-9]+([.][0-9]+)?$ ]] || die "DUMPZ_GB must be a number, not '$GB'"
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || die "DUMPZ_JOBS must be a positive integer, not '$JOBS'"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "DUMPZ_ROUNDS must be a positive integer, not '$ROUNDS'"
for d in $DATASETS; do
    [[ $d == random || $d == mixed ]] || die "unknown dataset '$d' in DUMPZ_DATASETS (random, mixed)"
done
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found (apt-get install time)"

if [[ -z ${DUMPZ_TSXFER:-} ]]; then
    if [[ ! -x $REPO/target/release/tsxfer ]]; then
        say "cargo build --release"
        (cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
    fi
    DUMPZ_TSXFER="tsxfer=$REPO/target/release/tsxfer"
fi
declare -A BIN=()
NAMES=()
for spec in $DUMPZ_TSXFER; do
    name=tsxfer path=$spec
    [[ $spec == *=* ]] && name=${spec%%=*} path=${spec#*=}
    [[ -x $path ]] || die "$path is not an executable"
    BIN[$name]=$(realpath "$path")
    NAMES+=("$name")
done

WORK=$(mktemp -d /tmp/tsxfer-dumpz.XXXXXX)
chmod 755 "$WORK"
DATA=$WORK/cluster
SOCK=$WORK/s
mkdir -p "$SOCK"
chown postgres:postgres "$WORK" "$SOCK"
as_pg() { runuser -u postgres -- "$@"; }
# shellcheck disable=SC2317 # runs from the EXIT trap
cleanup() {
    local status=$?
    if [[ -f $DATA/postmaster.pid ]]; then
        as_pg "$PG_BIN/pg_ctl" -D "$DATA" -m fast -w -t 120 stop >/dev/null 2>&1 || true
    fi
    if [[ ${DUMPZ_KEEP_DIRS:-0} == 1 ]]; then
        rm -rf "$DATA"
        say "dump directories kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

as_pg "$PG_BIN/initdb" -D "$DATA" --username=postgres --auth=trust --encoding=UTF8 \
    --locale=C.UTF-8 --no-sync --no-instructions >"$WORK/initdb.log" 2>&1 || die "initdb failed"
PORT=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
cat >>"$DATA/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$SOCK'
port = $PORT
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
timescaledb.max_background_workers = 0
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = '256MB'
max_wal_size = '4GB'
EOF
as_pg "$PG_BIN/pg_ctl" -D "$DATA" -l "$WORK/server.log" -w -t 120 start >/dev/null || die "cannot start the cluster"

q() { # <db> [psql args...]
    local db=$1
    shift
    PGOPTIONS='-c client_min_messages=warning' \
        "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d "host=$SOCK port=$PORT user=postgres dbname=$db" "$@"
}
conninfo() { printf 'host=%s port=%s user=postgres dbname=%s' "$SOCK" "$PORT" "$1"; }

load_random() {
    q postgres -c "CREATE DATABASE random"
    # About 190 bytes of heap per row.
    local rows=$((RANDOM_MB * 1024 * 1024 / 190))
    say "random: $rows rows"
    q random -v rows="$rows" <<'SQL'
CREATE TABLE public.notes (
    id      bigint PRIMARY KEY,
    title   text NOT NULL,
    body    text NOT NULL,
    attrs   jsonb NOT NULL,
    score   double precision NOT NULL,
    created timestamptz NOT NULL
);
INSERT INTO public.notes
SELECT g,
       md5(random()::text),
       md5(random()::text) || ' ' || md5(random()::text),
       jsonb_build_object('k', md5(random()::text), 'n', (random() * 1000000)::int,
                          'x', random(), 'ok', random() < 0.5),
       random(),
       TIMESTAMPTZ '2024-01-01 00:00:00+00' + random() * INTERVAL '365 days'
FROM generate_series(1, :rows) AS g;
VACUUM (FREEZE, ANALYZE) public.notes;
SQL
}

load_mixed() {
    q postgres -c "CREATE DATABASE mixed"
    q mixed -v scale="$GB" -f "$BENCHES/dataset-common.sql"
    q mixed -v scale="$GB" -f "$BENCHES/dataset-hypertables.sql" &
    local h=$!
    q mixed -v scale="$GB" -f "$BENCHES/dataset-tables.sql" || die "dataset-tables.sql failed"
    wait "$h" || die "dataset-hypertables.sql failed"
    q mixed -c "VACUUM (FREEZE, ANALYZE)"
}

server_cpu() { # CPU seconds of the postmaster and its children, live and reaped
    local pm
    pm=$(head -n 1 "$DATA/postmaster.pid")
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } |
        awk -v pm="$pm" -v hz="$(getconf CLK_TCK)" '
            { pid = $1; sub(/^.*\) /, "")
              if (pid == pm) t += $12 + $13 + $14 + $15
              else if ($2 == pm) t += $12 + $13 }
            END { printf "%.2f", t / hz }'
}

RESULTS=$WORK/results.tsv
: >"$RESULTS"
run_tool() { # <dataset> <tool> <round> <command...>
    local dataset=$1 tool=$2 round=$3 out=$WORK/out/$1-$2
    shift 3
    rm -rf "$out"
    mkdir -p "$out"
    q "$dataset" -c CHECKPOINT
    sync
    local s0 t0 t1 s1
    s0=$(server_cpu)
    t0=$EPOCHREALTIME
    /usr/bin/time -f '%U %S' -o "$out/time" "$@" "$out/dump" >"$out/log" 2>&1 ||
        {
            tail -n 20 "$out/log" >&2
            die "$tool failed on $dataset"
        }
    t1=$EPOCHREALTIME
    s1=$(server_cpu)
    local bytes cpu
    bytes=$(du -sb "$out/dump" | cut -f1)
    cpu=$(awk '{ printf "%.1f", $1 + $2 }' "$out/time")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$dataset" "$tool" "$round" "$bytes" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" "$cpu" \
        "$(awk -v a="$s0" -v b="$s1" 'BEGIN { printf "%.1f", b - a }')" | tee -a "$RESULTS"
    [[ ${DUMPZ_KEEP_DIRS:-0} == 1 ]] || rm -rf "$out/dump"
}

for d in $DATASETS; do
    say "loading $d"
    "load_$d"
    q "$d" -Atc "SELECT 'dump-size: ' || current_database() || ': ' || pg_size_pretty(pg_database_size(current_database()))" >&2
done

printf 'dataset\ttool\tround\tbytes\twall_s\tcpu_s\tserver_cpu_s\n'
for round in $(seq "$ROUNDS"); do
    for d in $DATASETS; do
        src=$(conninfo "$d")
        # Alternate the order of the tools from one round to the next.
        tools=(pgdump pgdump-j "${NAMES[@]}")
        if ((round % 2 == 0)); then
            rev=()
            for ((i = ${#tools[@]} - 1; i >= 0; i--)); do rev+=("${tools[i]}"); done
            tools=("${rev[@]}")
        fi
        for t in "${tools[@]}"; do
            case $t in
                pgdump) run_tool "$d" "pg_dump-Fd" "$round" "$PG_BIN/pg_dump" -d "$src" -Fd -f ;;
                pgdump-j) run_tool "$d" "pg_dump-Fd-j$JOBS" "$round" "$PG_BIN/pg_dump" -d "$src" -Fd -j "$JOBS" -f ;;
                *)
                    # shellcheck disable=SC2086 # DUMPZ_TSXFER_ARGS is a list of words
                    run_tool "$d" "$t" "$round" "${BIN[$t]}" dump --source "$src" --jobs "$JOBS" \
                        --metrics-addr off --quiet $EXTRA_ARGS --dir
                    ;;
            esac
        done
    done
done

echo
echo "medians over $ROUNDS round(s), jobs $JOBS${EXTRA_ARGS:+, tsxfer $EXTRA_ARGS}:"
printf '%-8s %-16s %12s %10s %8s %8s %9s\n' dataset tool bytes MiB wall_s cpu_s server_s
sort -t$'\t' -k1,1 -k2,2 "$RESULTS" | awk -F'\t' '
    function median(list,   n, a, i, j, t) {
        n = split(list, a, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { k = $1 "\t" $2; if (!(k in b)) order[++n] = k
      b[k] = b[k] " " $4; w[k] = w[k] " " $5; c[k] = c[k] " " $6; s[k] = s[k] " " $7 }
    END { for (i = 1; i <= n; i++) { k = order[i]; split(k, p, "\t"); m = median(b[k])
            printf "%-8s %-16s %12d %10.1f %8.2f %8.1f %9.1f\n", p[1], p[2], m, m / 1048576, median(w[k]), median(c[k]), median(s[k]) } }'
