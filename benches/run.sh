#!/usr/bin/env bash
# Benchmark harness: tsxfer against the documented pg_dump | psql procedure (the
# "seed"), pg_dump -Fd -j N + pg_restore -j N, and pgcopydb (when it is on PATH).
#
#   bash benches/run.sh                 # as root, from anywhere; default 2 GB dataset
#   BENCH_GB=0.2 bash benches/run.sh    # smoke check, about 75 s
#
# It starts its own throwaway source and target PostgreSQL 15 + TimescaleDB clusters
# (initdb as the postgres OS user, free ports, sockets in the run directory), generates
# the dataset (benches/dataset-*.sql: hypertables with many chunks, the older half
# compressed, a continuous aggregate, large plain tables with and without a primary key,
# TOASTed values, sparse columns), then for every variant and tool: a fresh target
# database, the tool timed (wall time; peak RSS through /usr/bin/time -v), and an
# equality check of the result against the source in SQL (rows and an order-independent
# hash per hypertable through its parent, per continuous aggregate and per plain table;
# compressed chunks per hypertable). It also measures the servers' own COPY rates on
# the same data (server-side COPY TO files on the source, COPY FROM those files on the
# target, JOBS sessions at a time), and prints markdown tables, also written to
# $BENCH_DIR/results.md, with the CPU the tool, the servers and everything else on the
# machine used meanwhile. Both clusters are stopped at the end, also on failure; their
# logs are kept in $BENCH_DIR. benches/README.md says more.
#
# Variants: "sparse" is the dataset as generated; some compressed batches hold no value
# at all in a column, which TimescaleDB 2.19 stores as a placeholder it cannot load back
# (timescaledb#8893), so pg_dump-based tools lose those chunks. "dense" is the same
# database without those columns (DROP COLUMN), so every tool can load it: its timings
# are the fair comparison.
#
# Environment:
#   BENCH_DATASET   "mixed" (default: the dataset described above) or "chunks": one
#                   hypertable of BENCH_CHUNKS one-hour chunks of six rows each, the
#                   older half compressed, and a small plain table, to measure what each
#                   object costs (variant "chunks"; BENCH_GB and BENCH_VARIANTS unused)
#   BENCH_CHUNKS    chunks of the "chunks" dataset, default 6000; the source's
#                   max_locks_per_transaction is raised so pg_dump can lock them all
#   BENCH_RTT_MS    round-trip time added between every tool and both servers, default
#                   0: each cluster gets a delay proxy in front of it
#                   (benches/delay_proxy.py, half the time each way), and the tools
#                   connect through it; the harness's own checks do not
#   BENCH_GB        dataset size in GB (source database size, roughly), default 2
#   BENCH_JOBS      N for every tool (tsxfer --jobs, pg_dump/pg_restore -j, pgcopydb), default 2
#   BENCH_VARIANTS  variants to run, default "sparse dense"
#   BENCH_TOOLS     tools to run, default "seed pgdump pgdump-z0 pgcopydb tsxfer
#                   tsxfer-offline"; tsxfer-count is tsxfer with --verify count (to
#                   weigh what --verify checksum costs); pgdump-z0 is pg_dump -Fd -Z0 (no gzip); it and
#                   pgcopydb run on the dense variant only; pgcopydb is skipped when it
#                   is not on PATH; tsxfer-offline is `tsxfer dump` into a directory,
#                   then `tsxfer restore` from it
#   BENCH_BUFFER    tsxfer --buffer-size, default 1MiB
#   BENCH_COPY_RATE 1 (default) measures the servers' own COPY rates; 0 skips it
#   BENCH_PERF      1 records a system-wide perf profile (cpu-clock) of the first
#                   tsxfer run: $BENCH_DIR/perf.data, summed up by process, by tsxfer
#                   phase and by symbol in $BENCH_DIR/perf-summary.txt, and drawn as
#                   flame graphs (flamegraph.svg, flamegraph-tsxfer.svg) when inferno
#                   is installed (cargo install inferno); default 0
#   BENCH_TIMEOUT   seconds one tool may run before it is stopped, default 1800
#   BENCH_DIR       run directory (default: a new /tmp/tsxfer-bench.XXXXXX); the cluster
#                   data is removed at the end unless BENCH_KEEP=1, logs and results stay
#   TSXFER_BIN      tsxfer binary to run (default: cargo build --release, then
#                   target/release/tsxfer)
#   TSXFER_PG_BIN   PostgreSQL programs, default /usr/lib/postgresql/15/bin
#
# The non-tsxfer tools run as the target's superuser (the seed's procedure fails on a
# non-superuser target before it loads any data; pg_restore and pgcopydb need a superuser
# for timescaledb_pre_restore()). tsxfer runs as `tsdbadmin`, a non-superuser that owns
# the target database, as on a managed service (the same setup as scripts/demo.sh), with
# --metrics-addr off when it has that flag. Every tool connects over TCP to 127.0.0.1.
#
# The whole script is one brace group, read before any of it runs: bash reads a script as
# it goes, and an edit of this file during a run once cut that run short before its
# tables were printed.
{
set -euo pipefail
exec </dev/null

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCHES=$REPO/benches
PG_BIN=${TSXFER_PG_BIN:-/usr/lib/postgresql/15/bin}
BENCH_GB=${BENCH_GB:-2}
JOBS=${BENCH_JOBS:-2}
DATASET=${BENCH_DATASET:-mixed}
CHUNKS=${BENCH_CHUNKS:-6000}
RTT_MS=${BENCH_RTT_MS:-0}
VARIANTS=${BENCH_VARIANTS:-sparse dense}
[[ $DATASET == chunks ]] && VARIANTS=chunks
TOOLS=${BENCH_TOOLS:-seed pgdump pgdump-z0 pgcopydb tsxfer tsxfer-offline}
BUFFER=${BENCH_BUFFER:-1MiB}
COPY_RATE=${BENCH_COPY_RATE:-1}
PERF=${BENCH_PERF:-0}
TOOL_TIMEOUT=${BENCH_TIMEOUT:-1800}
DB=bench
ADMIN=tsdbadmin
ADMIN_PASSWORD='bench-Adm1n'

say() { printf 'bench: %s\n' "$*" >&2; }
die() {
    printf 'bench: ERROR: %s\n' "$*" >&2
    exit 1
}

[[ $(id -u) -eq 0 ]] || die "run as root (initdb runs as the postgres OS user through runuser)"
[[ $BENCH_GB =~ ^[0-9]+([.][0-9]+)?$ ]] || die "BENCH_GB must be a number of GB, not '$BENCH_GB'"
[[ $DATASET == mixed || $DATASET == chunks ]] || die "BENCH_DATASET must be mixed or chunks, not '$DATASET'"
[[ $CHUNKS =~ ^[1-9][0-9]*$ ]] || die "BENCH_CHUNKS must be a positive integer, not '$CHUNKS'"
[[ $RTT_MS =~ ^[0-9]+([.][0-9]+)?$ ]] || die "BENCH_RTT_MS must be a number of milliseconds, not '$RTT_MS'"
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || die "BENCH_JOBS must be a positive integer, not '$JOBS'"
for v in $VARIANTS; do
    [[ $v == sparse || $v == dense || $v == chunks ]] || die "unknown variant '$v' in BENCH_VARIANTS (sparse, dense)"
done
for t in $TOOLS; do
    case $t in seed | pgdump | pgdump-z0 | pgcopydb | tsxfer | tsxfer-count | tsxfer-offline) ;; *) die "unknown tool '$t' in BENCH_TOOLS" ;; esac
done
for prog in initdb pg_ctl psql pg_dump pg_dumpall pg_restore; do
    [[ -x $PG_BIN/$prog ]] || die "$PG_BIN/$prog not found (set TSXFER_PG_BIN, or run scripts/setup.sh)"
done
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found (apt-get install time)"
command -v jq >/dev/null || die "jq not found (apt-get install jq)"
HAVE_PGCOPYDB=0
command -v pgcopydb >/dev/null && HAVE_PGCOPYDB=1
if [[ $PERF == 1 ]] && ! command -v perf >/dev/null; then
    say "BENCH_PERF=1 but perf is not installed (apt-get install linux-perf): no profile"
    PERF=0
fi

if ! command -v cargo >/dev/null 2>&1 && [[ -x "${HOME:-/root}/.cargo/bin/cargo" ]]; then
    export PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi
if [[ -n ${TSXFER_BIN:-} ]]; then
    TSXFER=$TSXFER_BIN
    TSXFER_BUILT="TSXFER_BIN, $("$TSXFER" --version 2>/dev/null || echo 'version unknown')"
else
    say "cargo build --release"
    (cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
    TSXFER=$REPO/target/release/tsxfer
    TSXFER_BUILT="built from $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$REPO" && git diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' with uncommitted changes')"
fi
[[ -x $TSXFER ]] || die "$TSXFER is not an executable"
# No metrics endpoint: a fixed port may be taken by another tsxfer on this machine.
TSXFER_EXTRA=''
if "$TSXFER" --help 2>/dev/null | grep -q -- --metrics-addr; then
    TSXFER_EXTRA='--metrics-addr off'
fi

if [[ -n ${BENCH_DIR:-} ]]; then
    mkdir -p "$BENCH_DIR"
    BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
else
    BENCH_DIR=$(mktemp -d /tmp/tsxfer-bench.XXXXXX)
fi
chmod 755 "$BENCH_DIR"
CLUSTERS=$BENCH_DIR/clusters
RUNS=$BENCH_DIR/runs
RESULTS=$BENCH_DIR/results.md
rm -rf "$RUNS"
mkdir -p "$CLUSTERS" "$RUNS"
: >"$RESULTS"
(( ${#CLUSTERS} < 80 )) || die "BENCH_DIR is too long for unix socket paths: $BENCH_DIR"

# --- clusters -------------------------------------------------------------------------
as_pg() { runuser -u postgres -- "$@"; }

STARTED=()
PORT_source='' SOCK_source='' PORT_target='' SOCK_target=''
BG_PIDS=()
PROXY_PIDS=()
# shellcheck disable=SC2317 # runs from the EXIT trap
cleanup() {
    local status=$?
    for p in "${BG_PIDS[@]}" "${PROXY_PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    delete_deferred
    for c in "${STARTED[@]}"; do
        if [[ -f $c/data/postmaster.pid ]]; then
            say "stopping $(basename "$c")"
            as_pg "$PG_BIN/pg_ctl" -D "$c/data" -m fast -w -t 120 stop >/dev/null 2>&1 ||
                as_pg "$PG_BIN/pg_ctl" -D "$c/data" -m immediate -w stop >/dev/null 2>&1 || true
        fi
        cp "$c/server.log" "$BENCH_DIR/$(basename "$c")-server.log" 2>/dev/null || true
    done
    if [[ ${BENCH_KEEP:-0} != 1 ]]; then
        rm -rf "$CLUSTERS"
    fi
    say "logs and results in $BENCH_DIR"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_cluster() { # <name>: sets PORT_<name>, SOCK_<name>
    local name=$1 dir=$CLUSTERS/$1
    rm -rf "$dir"
    mkdir -p "$dir/s"
    chown postgres:postgres "$dir" "$dir/s"
    as_pg "$PG_BIN/initdb" -D "$dir/data" --username=postgres --auth=trust \
        --encoding=UTF8 --locale=C.UTF-8 --no-sync --no-instructions >"$dir/initdb.log" 2>&1 ||
        {
            cat "$dir/initdb.log" >&2
            die "initdb $name failed"
        }
    cat >>"$dir/data/postgresql.conf" <<EOF

# --- tsxfer benchmark ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/s'
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
timescaledb.max_background_workers = 0
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = '512MB'
max_wal_size = '8GB'
checkpoint_timeout = '30min'
max_connections = 100
password_encryption = 'scram-sha-256'
log_autovacuum_min_duration = 0
log_lock_waits = on
max_locks_per_transaction = $LOCKS
EOF
    cat >"$dir/data/pg_hba.conf" <<EOF
local all postgres trust
host all postgres 127.0.0.1/32 trust
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
EOF
    local port attempt
    for attempt in 1 2 3 4 5; do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        port_in_use "$port" && continue
        sed -i '/^port = /d' "$dir/data/postgresql.conf"
        echo "port = $port" >>"$dir/data/postgresql.conf"
        STARTED+=("$dir")
        if as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 120 start >/dev/null; then
            printf -v "PORT_$name" '%s' "$port"
            printf -v "SOCK_$name" '%s' "$dir/s"
            say "$name cluster on 127.0.0.1:$port"
            return 0
        fi
        grep -q -e 'could not bind' -e 'already in use' "$dir/server.log" || break
        say "port $port was taken, trying another (attempt $attempt)"
    done
    tail -n 30 "$dir/server.log" >&2 || true
    die "cannot start the $name cluster"
}

# Room in the lock table for pg_dump to lock every chunk and compressed chunk at once.
LOCKS=64
if [[ $DATASET == chunks ]]; then
    LOCKS=$((CHUNKS * 3 / 100 + 64))
fi

# A delay proxy in front of <side> (BENCH_RTT_MS): sets PROXY_<side>.
start_proxy() { # <side>
    local side=$1 port=PORT_$1 p attempt
    for attempt in 1 2 3 4 5; do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        port_in_use "$p" && continue
        python3 "$BENCHES/delay_proxy.py" "$p" "${!port}" "$(awk -v r="$RTT_MS" 'BEGIN { print r / 2 }')" \
            >"$BENCH_DIR/proxy-$side.log" 2>&1 &
        PROXY_PIDS+=("$!")
        local i
        for i in $(seq 50); do
            port_in_use "$p" && break
            sleep 0.1
        done
        if port_in_use "$p"; then
            printf -v "PROXY_$side" '%s' "$p"
            say "$side reached through a proxy on 127.0.0.1:$p adding ${RTT_MS} ms of round trip"
            return 0
        fi
    done
    die "cannot start the delay proxy for the $side"
}

# The port the tools connect to: the proxy's when there is one.
tool_port() { # <side>
    local proxy=PROXY_$1 port=PORT_$1
    printf '%s' "${!proxy:-${!port}}"
}

# psql as the superuser over the unix socket: <side> <db> [psql args...]
q() {
    local side=$1 db=$2 sock port
    shift 2
    sock=SOCK_$side port=PORT_$side
    PGOPTIONS='-c client_min_messages=warning' \
        "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d "host=${!sock} port=${!port} user=postgres dbname=$db" "$@"
}
qv() { q "$@" -At; } # one value per line, unaligned

# TCP connection strings the tools use.
tcp_conninfo() { # <side> <db> [user] [password]
    local s="host=127.0.0.1 port=$(tool_port "$1") dbname=$2 user=${3:-postgres}"
    [[ -n ${4:-} ]] && s+=" password=$4"
    printf '%s' "$s"
}
tcp_uri() { # <side> <db>
    printf 'postgresql://postgres@127.0.0.1:%s/%s' "$(tool_port "$1")" "$2"
}

now() { printf '%s' "$EPOCHREALTIME"; }

# CPU seconds: the whole machine's busy time, and what our two clusters used (the
# postmasters, their live children, and the children they have reaped).
machine_busy_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '/^cpu / { print ($2 + $3 + $4 + $7 + $8 + $9) / hz; exit }' /proc/stat
}
clusters_cpu_seconds() {
    local pms=() c
    for c in "${STARTED[@]}"; do
        [[ -f $c/data/postmaster.pid ]] && pms+=("$(head -n 1 "$c/data/postmaster.pid")")
    done
    if ((${#pms[@]} == 0)); then
        echo 0
        return
    fi
    # After the "(comm) " prefix: $2 ppid, $12 utime, $13 stime, $14 cutime, $15 cstime.
    # Processes may end while this reads them: cat then fails, which is fine.
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } |
        awk -v pms=" ${pms[*]} " -v hz="$(getconf CLK_TCK)" '
            { pid = $1; sub(/^.*\) /, "")
              if (index(pms, " " pid " ")) t += $12 + $13 + $14 + $15
              else if (index(pms, " " $2 " ")) t += $12 + $13 }
            END { printf "%.2f", t / hz }'
}
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# --- dataset -----------------------------------------------------------------------------
# Compressed batches where a column has no value at all (TimescaleDB's placeholder).
NULL_BATCHES_SQL=$(
    cat <<'SQL'
CREATE FUNCTION pg_temp.null_batches() RETURNS bigint LANGUAGE plpgsql AS $f$
DECLARE
    r record;
    n bigint := 0;
    m bigint;
BEGIN
    FOR r IN
        SELECT a.attrelid::regclass AS rel, a.attname
        FROM pg_attribute a
        JOIN pg_type t ON t.oid = a.atttypid
        JOIN pg_class c ON c.oid = a.attrelid
        WHERE t.typname = 'compressed_data' AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind = 'r'
    LOOP
        EXECUTE format('SELECT count(*) FROM %s WHERE pg_catalog.pg_column_size(%I) < 8 AND %I::text = %L',
                       r.rel, r.attname, r.attname, 'Bg==') INTO m;
        n := n + m;
    END LOOP;
    RETURN n;
END
$f$;
SELECT pg_temp.null_batches();
SQL
)

# The "chunks" dataset (BENCH_DATASET=chunks).
generate_chunks_dataset() {
    say "generating the many-chunk dataset (BENCH_CHUNKS=$CHUNKS) in source database $DB"
    local t0 gen_log=$BENCH_DIR/generate.log
    t0=$(now)
    q source postgres -c "CREATE DATABASE $DB TEMPLATE template0"
    LICENSE=$(qv source "$DB" -c "CREATE EXTENSION IF NOT EXISTS timescaledb" -c "SHOW timescaledb.license" | tail -n 1)
    [[ $LICENSE == timescale ]] ||
        die "timescaledb.license is '$LICENSE': the dataset needs TimescaleDB's compression (a full build, license timescale)"
    q source "$DB" -v chunks="$CHUNKS" -f "$BENCHES/dataset-chunks.sql" >"$gen_log" 2>&1 ||
        die "dataset-chunks.sql failed (see $gen_log)"
    q source "$DB" -c "VACUUM (FREEZE, ANALYZE)" >>"$gen_log" 2>&1
    say "dataset generated in $(elapsed "$t0" "$(now)") s"
}

generate_dataset() {
    if [[ $DATASET == chunks ]]; then
        generate_chunks_dataset
        return
    fi
    say "generating the dataset (BENCH_GB=$BENCH_GB) in source database $DB"
    local t0 gen_log=$BENCH_DIR/generate.log
    t0=$(now)
    q source postgres -c "CREATE DATABASE $DB TEMPLATE template0"
    q source "$DB" -v scale="$BENCH_GB" -f "$BENCHES/dataset-common.sql" >"$gen_log" 2>&1 ||
        die "dataset-common.sql failed (see $gen_log)"
    LICENSE=$(qv source "$DB" -c "SHOW timescaledb.license")
    [[ $LICENSE == timescale ]] ||
        die "timescaledb.license is '$LICENSE': the dataset needs TimescaleDB's compression and continuous aggregates (a full build, license timescale)"
    # The hypertables and the plain tables load in parallel sessions.
    local pid status=0
    q source "$DB" -v scale="$BENCH_GB" -f "$BENCHES/dataset-hypertables.sql" >>"$gen_log" 2>&1 &
    pid=$!
    BG_PIDS+=("$pid")
    q source "$DB" -v scale="$BENCH_GB" -f "$BENCHES/dataset-tables.sql" >>"$gen_log" 2>&1 || status=$?
    wait "$pid" || status=$?
    BG_PIDS=()
    ((status == 0)) || die "generating the dataset failed (see $gen_log)"
    # Every tool then reads the same settled pages (no hint bits left to set).
    q source "$DB" -c "VACUUM (FREEZE, ANALYZE)" >>"$gen_log" 2>&1
    say "dataset generated in $(elapsed "$t0" "$(now)") s"
}

make_dense_variant() {
    say "making the dense variant (${DB}_dense): the sparse columns dropped"
    q source postgres -c "CREATE DATABASE ${DB}_dense TEMPLATE $DB STRATEGY FILE_COPY"
    q source "${DB}_dense" -c "ALTER TABLE public.metrics DROP COLUMN error_code" \
        -c "ALTER TABLE public.metrics DROP COLUMN firmware" \
        -c "ALTER TABLE public.events DROP COLUMN ack_by" >/dev/null
}

describe_dataset() { # <db> <source fingerprint>: one markdown line
    local db=$1 fp=$2 size chunks caggs null_batches rows
    size=$(qv source "$db" -c "SELECT pg_size_pretty(pg_database_size(current_database()))")
    chunks=$(qv source "$db" -c "SELECT count(*) || ' chunks, ' || count(*) FILTER (WHERE is_compressed) || ' of them compressed' FROM timescaledb_information.chunks")
    caggs=$(qv source "$db" -c "SELECT count(*) FROM timescaledb_information.continuous_aggregates")
    null_batches=$(qv source "$db" -c "$NULL_BATCHES_SQL" | tail -n 1)
    rows=$(awk -F'|' '{ printf "%s%s %s rows", (NR > 1 ? ", " : ""), $1, $2 }' "$fp")
    # shellcheck disable=SC2016 # backquotes are markdown
    printf -- '- `%s`: %s; %s; %s continuous aggregate(s); %s compressed column batch(es) with no value at all; %s\n' \
        "$db" "$size" "$chunks" "$caggs" "$null_batches" "$rows"
}

# --- equality ------------------------------------------------------------------------------
# What is compared, listed on the source: hypertables (through their parent, so compressed
# rows count), continuous aggregates (through their view) and plain tables.
RELATIONS_SQL=$(
    cat <<'SQL'
SELECT 'hypertable ' || format('%I.%I', h.hypertable_schema, h.hypertable_name)
FROM timescaledb_information.hypertables h
WHERE NOT EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates a
                  WHERE a.materialization_hypertable_schema = h.hypertable_schema
                    AND a.materialization_hypertable_name = h.hypertable_name)
UNION ALL
SELECT 'cagg ' || format('%I.%I', view_schema, view_name) FROM timescaledb_information.continuous_aggregates
UNION ALL
SELECT 'table ' || c.oid::regclass::text
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE '\_timescaledb%' AND n.nspname NOT LIKE 'timescaledb\_%'
  AND NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables h
                  WHERE format('%I.%I', h.hypertable_schema, h.hypertable_name)::regclass = c.oid)
ORDER BY 1
SQL
)

# One line of a fingerprint: <psql> <conninfo> "<label>\t<query>".
fingerprint_one() {
    local label=${3%%$'\t'*} sql=${3#*$'\t'} r
    if r=$("$1" -X -At -d "$2" -c "$sql" 2>&1); then
        echo "$r"
    else
        echo "$label|error: $(tr '\n|' ' /' <<<"$r")"
    fi
}
export -f fingerprint_one

# Writes "<kind> <relation>|<rows>|<hash>[|<chunks>/<compressed>]" lines, sorted, to <out>.
fingerprint() { # <side> <db> <relations file> <out>
    local side=$1 db=$2 list=$3 out=$4 port=PORT_$1
    local conn="host=127.0.0.1 port=${!port} user=postgres dbname=$db"
    local sqlfile=$out.sql
    : >"$sqlfile"
    local kind rel chunk_sql
    while read -r kind rel; do
        chunk_sql="''"
        if [[ $kind == hypertable ]]; then
            chunk_sql="(SELECT '|' || count(*) || '/' || count(*) FILTER (WHERE is_compressed) FROM timescaledb_information.chunks WHERE format('%I.%I', hypertable_schema, hypertable_name)::regclass = '${rel//\'/\'\'}'::regclass)"
        fi
        printf "%s %s\tSELECT '%s %s|' || count(*) || '|' || coalesce(sum(pg_catalog.hashtextextended(r::text, 0)), 0) || %s FROM %s AS r\n" \
            "$kind" "$rel" "$kind" "${rel//\'/\'\'}" "$chunk_sql" "$rel" >>"$sqlfile"
    done <"$list"
    # One session per relation, JOBS at a time; a failing query says why in its line.
    # No parallel workers: each would lock every chunk again, past the lock table's room
    # at tens of thousands of chunks.
    PGOPTIONS='-c max_parallel_workers_per_gather=0' xargs -a "$sqlfile" -d '\n' -P "$JOBS" -n 1 bash -c 'fingerprint_one "$@"' _ "$PG_BIN/psql" "$conn" |
        sort >"$out"
}

# Compares two fingerprints; prints "yes", or "no: <reasons>".
compare_fingerprints() { # <source fp> <target fp> <relations file>
    local src=$1 tgt=$2 list=$3 kind rel s t reasons=()
    while read -r kind rel; do
        s=$(grep -F -- "$kind $rel|" "$src" | head -n 1 || true)
        t=$(grep -F -- "$kind $rel|" "$tgt" | head -n 1 || true)
        [[ $s == "$t" ]] && continue
        local s_rows t_rows s_chunks t_chunks
        IFS='|' read -r _ s_rows _ s_chunks <<<"$s"
        IFS='|' read -r _ t_rows _ t_chunks <<<"$t"
        if [[ -z $t || ! $t_rows =~ ^[0-9]+$ ]]; then
            reasons+=("$rel unreadable on the target (${t_rows:0:160})")
        elif [[ $s_rows != "$t_rows" ]]; then
            reasons+=("$rel $t_rows of $s_rows rows")
        elif [[ $s_chunks != "$t_chunks" ]]; then
            reasons+=("$rel chunks/compressed $t_chunks, source $s_chunks")
        else
            reasons+=("$rel row hash differs")
        fi
    done <"$list"
    if ((${#reasons[@]} == 0)); then
        echo "yes"
    else
        local IFS=';'
        echo "no: ${reasons[*]}" | sed 's/;/; /g'
    fi
}

# --- targets -----------------------------------------------------------------------------------
# Nothing is deleted between runs: ext4 does not hand an inode out again until a minute
# after its file was deleted (longer while the inode's block is dirty, which making files
# beside it makes it: recently_deleted() in fs/ext4/ialloc.c), and skips past every such
# inode to allocate one. After the DROP DATABASE of a many-chunk target
# (tens of thousands of files), every file the next run made paid for that: tsxfer on the
# same 6,000-chunk clusters took 18.0 s right after a drop and 11.0 s 45 s later. So a
# run's target database is renamed out of the way instead of dropped, its dump files are
# kept, and all of it is deleted when the harness ends (start the next harness run some
# minutes after that).
RETIRED=0
DEFERRED=()
retire_database() { # <db>: out of the way, not dropped
    [[ -n $(qv target postgres -c "SELECT 1 FROM pg_database WHERE datname = '$1'") ]] || return 0
    q target postgres -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$1' AND pid <> pg_backend_pid()" >/dev/null
    RETIRED=$((RETIRED + 1))
    q target postgres -c "ALTER DATABASE \"$1\" RENAME TO \"retired_${RETIRED}_$1\""
    # Vacuumed and analyzed now, so that autovacuum finds nothing to do there while the
    # next tool is timed (it did: the guide's 2 GB target beside tsxfer's run).
    q target "retired_${RETIRED}_$1" -c "VACUUM (ANALYZE)"
}

reset_target() {
    retire_database "$DB"
    retire_database copy_rate
    # Roles a previous run brought over (roles are cluster-wide): what they own in the
    # retired databases goes to postgres first, and their grants there go (no file is
    # deleted by either).
    local r d
    while read -r r; do
        [[ -n $r ]] || continue
        while read -r d; do
            q target "$d" -c "REASSIGN OWNED BY $r TO postgres" -c "DROP OWNED BY $r"
        done < <(qv target postgres -c "SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1")
        q target postgres -c "DROP ROLE $r"
    done < <(qv target postgres -c "SELECT quote_ident(rolname) FROM pg_roles
        WHERE rolname NOT IN ('postgres', '$ADMIN') AND rolname !~ '^pg_' ORDER BY 1")
}

# At the end: the retired databases and the files kept, once nothing is timed any more.
delete_deferred() {
    local d
    if [[ -n $PORT_target && -f $CLUSTERS/target/data/postmaster.pid ]]; then
        while read -r d; do
            [[ -n $d ]] && q target postgres -c "DROP DATABASE \"$d\" WITH (FORCE)" >/dev/null 2>&1
        done < <(qv target postgres -c "SELECT datname FROM pg_database WHERE datname LIKE 'retired\\_%'" 2>/dev/null)
    fi
    ((${#DEFERRED[@]} == 0)) || rm -rf "${DEFERRED[@]}"
}

# So that one run's writes do not land in the next run's time.
settle() {
    q source postgres -c CHECKPOINT
    q target postgres -c CHECKPOINT
    sync
}

fresh_target_superuser() {
    reset_target
    q target postgres -c "CREATE DATABASE $DB TEMPLATE template0"
    q target "$DB" -c "CREATE EXTENSION timescaledb"
}

# Like a managed service: the database belongs to a non-superuser admin role with
# CREATEROLE, the extension is created by the superuser, and the admin may call the
# restore helpers (SECURITY DEFINER) and use the internal schemas.
fresh_target_cloud_like() {
    reset_target
    if [[ -z $(qv target postgres -c "SELECT 1 FROM pg_roles WHERE rolname = '$ADMIN'") ]]; then
        q target postgres -v admin="$ADMIN" -v pw="$ADMIN_PASSWORD" <<'SQL'
SET password_encryption = 'scram-sha-256';
CREATE ROLE :"admin" LOGIN CREATEROLE NOSUPERUSER PASSWORD :'pw';
SQL
    fi
    q target postgres -c "CREATE DATABASE $DB OWNER $ADMIN TEMPLATE template0"
    q target "$DB" -v admin="$ADMIN" -f "$REPO/scripts/cloud-like-target.sql" >/dev/null
}

# --- tools -------------------------------------------------------------------------------------
# Each tool's commands are written to <run dir>/commands.sh and run under /usr/bin/time -v.

# The seed's roles step: pg_dumpall --roles-only and its sed lines.
roles_commands() { # <source db>
    cat <<EOF
"\$PG_BIN/pg_dumpall" -d "\$SRC" -l $1 --quote-all-identifiers --roles-only --file=roles.sql
sed -i -E \\
    -e '/CREATE ROLE "postgres";/d' \\
    -e '/ALTER ROLE "postgres"/d' \\
    -e '/CREATE ROLE "tsdbadmin";/d' \\
    -e '/ALTER ROLE "tsdbadmin"/d' \\
    -e 's/(NO)*SUPERUSER//g' \\
    -e 's/(NO)*REPLICATION//g' \\
    -e 's/(NO)*BYPASSRLS//g' \\
    -e 's/GRANTED BY "[^"]*"//g' \\
    roles.sql
EOF
}

write_commands() { # <tool> <source db> <dir>
    local tool=$1 srcdb=$2 dir=$3
    {
        echo '#!/usr/bin/env bash'
        echo "# $tool, as run by benches/run.sh"
        echo 'set -uo pipefail'
        printf 'PG_BIN=%q\nSRC=%q\nTGT=%q\nJOBS=%q\n' "$PG_BIN" "$(tcp_conninfo source "$srcdb")" \
            "$(tcp_conninfo target "$DB")" "$JOBS"
        echo "cd $(printf %q "$dir")"
        case $tool in
        seed)
            roles_commands "$srcdb"
            cat <<'EOF'
"$PG_BIN/pg_dump" -d "$SRC" --format=plain --quote-all-identifiers --no-tablespaces \
    --no-owner --no-privileges --file=dump.sql || exit 1
"$PG_BIN/psql" -X -d "$TGT" -v ON_ERROR_STOP=1 --echo-errors \
    -f roles.sql \
    -c "SELECT public.timescaledb_pre_restore();" \
    -f dump.sql \
    -c "SELECT public.timescaledb_post_restore();"
EOF
            ;;
        pgdump | pgdump-z0)
            local z=''
            [[ $tool == pgdump-z0 ]] && z=' -Z0'
            roles_commands "$srcdb"
            cat <<EOF
"\$PG_BIN/psql" -X -q -d "\$TGT" -f roles.sql || exit 1
"\$PG_BIN/pg_dump" -d "\$SRC" -Fd -j "\$JOBS"$z --no-tablespaces -f dump || exit 1
"\$PG_BIN/pg_restore" -l dump >all.list || exit 1
# TimescaleDB's catalog rows, loaded serially after the pre-data schema (in parallel
# they fail); everything else in parallel.
grep -E '^[0-9]+; [0-9]+ [0-9]+ TABLE DATA (_timescaledb_catalog|_timescaledb_config) ' all.list >catalog.list
grep -v -E '^[0-9]+; [0-9]+ [0-9]+ TABLE DATA (_timescaledb_catalog|_timescaledb_config) ' all.list >rest.list
"\$PG_BIN/psql" -X -q -d "\$TGT" -v ON_ERROR_STOP=1 -c "SELECT public.timescaledb_pre_restore();" || exit 1
status=0
"\$PG_BIN/pg_restore" -d "\$TGT" --section=pre-data --exit-on-error dump || status=1
"\$PG_BIN/pg_restore" -d "\$TGT" -L catalog.list --exit-on-error dump || status=1
"\$PG_BIN/pg_restore" -d "\$TGT" -j "\$JOBS" -L rest.list --section=data --section=post-data dump || status=1
"\$PG_BIN/psql" -X -q -d "\$TGT" -v ON_ERROR_STOP=1 -c "SELECT public.timescaledb_post_restore();" || status=1
exit \$status
EOF
            ;;
        pgcopydb)
            roles_commands "$srcdb"
            printf 'SRC_URI=%q\nTGT_URI=%q\n' "$(tcp_uri source "$srcdb")" "$(tcp_uri target "$DB")"
            cat <<'EOF'
"$PG_BIN/psql" -X -q -d "$TGT" -f roles.sql || exit 1
"$PG_BIN/psql" -X -q -d "$TGT" -v ON_ERROR_STOP=1 -c "SELECT public.timescaledb_pre_restore();" || exit 1
status=0
# pgcopydb ends a failed run by signalling its whole process group: give it its own.
setsid --wait pgcopydb clone --source "$SRC_URI" --target "$TGT_URI" \
    --table-jobs "$JOBS" --index-jobs "$JOBS" --dir "$PWD/work" || status=$?
"$PG_BIN/psql" -X -q -d "$TGT" -v ON_ERROR_STOP=1 -c "SELECT public.timescaledb_post_restore();" || status=1
exit $status
EOF
            ;;
        tsxfer | tsxfer-count)
            local extra=$TSXFER_EXTRA
            [[ $tool == tsxfer-count ]] && extra+=' --verify count'
            printf 'TSXFER=%q\nTGT_ADMIN=%q\nBUFFER=%q\nEXTRA=(%s)\n' "$TSXFER" \
                "$(tcp_conninfo target "$DB" "$ADMIN" "$ADMIN_PASSWORD")" "$BUFFER" "$extra"
            cat <<'EOF'
# tsxfer's own peak RSS (VmHWM), sampled until it exits; /usr/bin/time's maximum
# also covers the pg_dump and pg_restore it runs.
"$TSXFER" --source "$SRC" --target "$TGT_ADMIN" --jobs "$JOBS" --buffer-size "$BUFFER" \
    --work-dir "$PWD" --report "$PWD/report.json" "${EXTRA[@]}" &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
    hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status" 2>/dev/null) && [[ -n $hwm ]] && echo "$hwm" >tsxfer-hwm-kb
    sleep 0.1
done
wait "$pid"
EOF
            ;;
        tsxfer-offline)
            printf 'TSXFER=%q\nTGT_ADMIN=%q\nBUFFER=%q\n' "$TSXFER" \
                "$(tcp_conninfo target "$DB" "$ADMIN" "$ADMIN_PASSWORD")" "$BUFFER"
            cat <<'EOF'
# Each half timed on its own; the directory's size is what crosses on disk.
date +%s.%N >dump-start
"$TSXFER" dump --source "$SRC" --dir "$PWD/dump" --jobs "$JOBS" --buffer-size "$BUFFER" || exit 1
date +%s.%N >dump-end
"$TSXFER" restore --dir "$PWD/dump" --target "$TGT_ADMIN" --jobs "$JOBS" --buffer-size "$BUFFER" \
    --work-dir "$PWD" --report "$PWD/report.json" --metrics-addr off
status=$?
date +%s.%N >restore-end
exit $status
EOF
            ;;
        esac
    } >"$dir/commands.sh"
}

tool_label() {
    case $1 in
    seed) echo "seed: pg_dumpall+sed, pg_dump plain, psql" ;;
    pgdump) echo "pg_dump -Fd -j$JOBS + pg_restore -j$JOBS" ;;
    pgdump-z0) echo "pg_dump -Fd -j$JOBS -Z0 + pg_restore -j$JOBS" ;;
    pgcopydb) echo "pgcopydb clone ($(pgcopydb --version 2>/dev/null | awk '/^pgcopydb version/ { print $3 }'))" ;;
    tsxfer) echo "tsxfer --jobs $JOBS" ;;
    tsxfer-count) echo "tsxfer --jobs $JOBS --verify count" ;;
    tsxfer-offline) echo "tsxfer dump + tsxfer restore, --jobs $JOBS" ;;
    esac
}

human_kb() { awk -v k="$1" 'BEGIN { if (k == "" || k == "-") { print "-"; exit } printf "%.0f MiB", k / 1024 }'; }
human_bytes() { awk -v b="$1" 'BEGIN { if (b == "" || b == "-") { print "-"; exit } if (b >= 1073741824) printf "%.2f GiB", b / 1073741824; else printf "%.0f MiB", b / 1048576 }'; }

# Results of one variant, one line per tool: tool|wall|rss_kb|tool_rss_kb|bytes|status|equal|notes
declare -A WALL=() ROWLINE=()

run_tool() { # <variant> <tool> <source db> <relations> <source fingerprint>
    local variant=$1 tool=$2 srcdb=$3 list=$4 src_fp=$5
    local dir=$RUNS/$variant-$tool
    mkdir -p "$dir"
    chmod 777 "$dir"
    if [[ $tool == tsxfer || $tool == tsxfer-count || $tool == tsxfer-offline ]]; then
        fresh_target_cloud_like
    else
        fresh_target_superuser
    fi
    settle
    write_commands "$tool" "$srcdb" "$dir"
    say "[$variant] $(tool_label "$tool")"
    # Marks in the servers' logs, to tell the runs apart there.
    q source postgres -c "DO \$\$BEGIN RAISE LOG 'bench: % % starts', '$variant', '$tool'; END\$\$"
    q target postgres -c "DO \$\$BEGIN RAISE LOG 'bench: % % starts', '$variant', '$tool'; END\$\$"
    local perf_pid=''
    if [[ $tool == tsxfer && $PERF == 1 && ! -f $BENCH_DIR/perf.data ]]; then
        perf record -a -g -k realtime -e cpu-clock -F 999 -o "$BENCH_DIR/perf.data" >"$dir/perf.log" 2>&1 &
        perf_pid=$!
        BG_PIDS+=("$perf_pid")
        sleep 1
    fi
    local t0 t1 status=0 busy0 busy1 srv0 srv1
    busy0=$(machine_busy_seconds)
    srv0=$(clusters_cpu_seconds)
    t0=$(now)
    (cd "$dir" && timeout --signal=TERM "$TOOL_TIMEOUT" /usr/bin/time -v -o "$dir/time.txt" \
        bash "$dir/commands.sh" >"$dir/output.log" 2>&1) || status=$?
    t1=$(now)
    busy1=$(machine_busy_seconds)
    srv1=$(clusters_cpu_seconds)
    if [[ -n $perf_pid ]]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
        BG_PIDS=()
        perf_summary "$BENCH_DIR/perf.data" "$dir/output.log" "${t1/,/.}"
    fi
    local wall rss tool_rss='' bytes='-' notes=()
    wall=$(elapsed "$t0" "$t1")
    rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$dir/time.txt" 2>/dev/null || true)
    # CPU: the tool's process tree, our two servers, and whatever else ran meanwhile.
    local cpu_client cpu_servers other
    cpu_client=$(awk -F': ' '/(User|System) time \(seconds\)/ { t += $2 } END { printf "%.1f", t }' "$dir/time.txt" 2>/dev/null || echo 0)
    cpu_servers=$(awk -v a="$srv0" -v b="$srv1" 'BEGIN { printf "%.1f", b - a }')
    other=$(awk -v b0="$busy0" -v b1="$busy1" -v c="$cpu_client" -v s="$cpu_servers" -v w="$wall" \
        'BEGIN { o = (b1 - b0 - c - s) / (w > 0 ? w : 1); printf "%.2f", (o < 0 ? 0 : o) }')
    case $tool in
    seed)
        bytes=$(($(stat -c %s "$dir/dump.sql" 2>/dev/null || echo 0) + $(stat -c %s "$dir/roles.sql" 2>/dev/null || echo 0)))
        local errors
        errors=$(grep -c '^psql:.*ERROR:' "$dir/output.log" || true)
        if ((errors > 0)); then
            notes+=("psql stopped at its first error (ON_ERROR_STOP=1 as documented): $(grep -m1 '^psql:.*ERROR:' "$dir/output.log" | sed 's/^psql:[^:]*:[0-9]*: //' | head -c 200)")
        fi
        ;;
    pgdump | pgdump-z0)
        bytes=$(du -sb "$dir/dump" 2>/dev/null | cut -f1)
        local errors
        errors=$(grep -c 'error: ' "$dir/output.log" || true)
        ((errors > 0)) && notes+=("$errors pg_restore error(s), first: $(grep -m1 'error: ' "$dir/output.log" | head -c 200)")
        ;;
    pgcopydb)
        if ((status != 0)); then
            notes+=("first error: $(grep -m1 -E ' ERROR +(TARGET|SOURCE) ' "$dir/output.log" | sed -E 's/^[0-9:]+ [0-9]+ ERROR +//' | head -c 200); last: $(grep -E ' FATAL ' "$dir/output.log" | tail -n 1 | sed -E 's/^[0-9:]+ [0-9]+ FATAL +//' | head -c 120)")
        fi
        ;;
    tsxfer)
        tool_rss=$(cat "$dir/tsxfer-hwm-kb" 2>/dev/null || true)
        if [[ -f $dir/report.json ]]; then
            bytes=$(jq '[.units[].bytes] | add // 0' "$dir/report.json")
            TSXFER_PHASES[$variant]=$(jq -r '[.phases[] | "\(.phase) \(.seconds * 10 | round / 10) s"] | join(", ")' "$dir/report.json")
            TSXFER_DATA[$variant]=$(jq -r '[.phases[] | select(.phase == "data") | .seconds] | add // 0' "$dir/report.json")
            TSXFER_ANALYZE[$variant]=$(jq -r '.data_analyze_seconds // 0' "$dir/report.json")
            TSXFER_BYTES[$variant]=$bytes
        fi
        ((status != 0)) && notes+=("exit status $status: $(grep -m1 '^tsxfer:' "$dir/output.log" | head -c 240)")
        ;;
    tsxfer-count)
        tool_rss=$(cat "$dir/tsxfer-hwm-kb" 2>/dev/null || true)
        if [[ -f $dir/report.json ]]; then
            bytes=$(jq '[.units[].bytes] | add // 0' "$dir/report.json")
            notes+=("phases: $(jq -r '[.phases[] | "\(.phase) \(.seconds * 10 | round / 10) s"] | join(", ")' "$dir/report.json")")
        fi
        ((status != 0)) && notes+=("exit status $status: $(grep -m1 '^tsxfer:' "$dir/output.log" | head -c 240)")
        ;;
    tsxfer-offline)
        bytes=$(du -sb "$dir/dump" 2>/dev/null | cut -f1)
        if [[ -f $dir/restore-end ]]; then
            local ds de re logical_bytes
            ds=$(cat "$dir/dump-start") de=$(cat "$dir/dump-end") re=$(cat "$dir/restore-end")
            logical_bytes=$(jq '[.files[].stream_bytes] | add // 0' "$dir/dump/manifest.json" 2>/dev/null || echo 0)
            notes+=("dump $(elapsed "$ds" "$de") s ($(mbps "$logical_bytes" "$(elapsed "$ds" "$de")") MB/s of COPY data), restore $(elapsed "$de" "$re") s ($(mbps "$logical_bytes" "$(elapsed "$de" "$re")") MB/s); directory $(human_bytes "$bytes") for $(human_bytes "$logical_bytes") of COPY data")
        fi
        ((status != 0)) && notes+=("exit status $status: $(grep -m1 '^tsxfer:' "$dir/output.log" | head -c 240)")
        ;;
    esac
    # A target left in restoring mode shows only part of a hypertable's rows.
    local restoring
    restoring=$(qv target "$DB" -c "SELECT current_setting('timescaledb.restoring', true)" 2>/dev/null || echo "?")
    [[ $restoring == on ]] && notes+=("target left in TimescaleDB's restoring mode")
    fingerprint target "$DB" "$list" "$dir/fingerprint.txt"
    local equal
    equal=$(compare_fingerprints "$src_fp" "$dir/fingerprint.txt" "$list")
    WALL[$variant-$tool]=$wall
    local note_text=''
    ((${#notes[@]} > 0)) && note_text=$(printf '%s; ' "${notes[@]}" | sed 's/; $//')
    ROWLINE[$variant-$tool]="$tool|$wall|$rss|$tool_rss|$bytes|$status|$cpu_client|$cpu_servers|$other|${equal//|//}|${note_text//|//}"
    say "[$variant] $tool: ${wall} s, exit $status, equal: ${equal:0:200}"
    retire_database "$DB"
    DEFERRED+=("$dir/dump" "$dir/dump.sql" "$dir/work")
}

declare -A TSXFER_PHASES=() TSXFER_DATA=() TSXFER_ANALYZE=() TSXFER_BYTES=()
declare -A COPY_RATE_LINE=()

perf_summary() { # <perf.data> <tsxfer's output.log> <end, epoch seconds>
    local - # options set here stay here
    set +e +o pipefail
    local data=$1 log=$2 end=$3 out=$BENCH_DIR/perf-summary.txt hz=999
    report() { perf report -i "$data" --stdio --no-children -g none "$@" 2>/dev/null | grep -v -e '^#' -e '^$'; }
    # "<samples> <comm>" lines -> CPU seconds by process name, tsxfer's threads together.
    by_comm() {
        report --sort comm -F sample,comm "$@" |
            awk -v hz="$hz" '{ n = $1; $1 = ""; sub(/^ /, ""); if ($0 ~ /^(tokio-rt-worker|tsxfer)$/) $0 = "tsxfer"
                               if ($0 == "swapper") $0 = "(idle)"; t[$0] += n }
                             END { for (c in t) printf "%8.1f s  %s\n", t[c] / hz, c }' | sort -k1,1nr | head -n 8
    }
    {
        echo "# CPU seconds by process over the whole tsxfer run (system-wide cpu-clock samples at $hz Hz;"
        echo "# processes of other users of the machine count too: see the run's other load)"
        by_comm
        echo
        echo "# The same by phase (phases from tsxfer's log)"
        local stamps=() names=() line i a b
        while IFS= read -r line; do
            stamps+=("$(date -u -d "${line%% *}" +%s.%N)")
            names+=("${line#* }")
        done < <(sed 's/\x1b\[[0-9;]*m//g' "$log" | awk '/ phase: / { t = $1; sub(/^.* phase: /, ""); print t, $0 }')
        stamps+=("$end")
        for ((i = 0; i < ${#names[@]}; i++)); do
            [[ ${names[i]} == "done" ]] && continue
            a=${stamps[i]} b=${stamps[i + 1]}
            echo "## ${names[i]}: $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f", b - a }') s wall"
            by_comm --time "$a,$b" | head -n 5
        done
        echo
        echo "# postgres's hottest symbols over the whole run"
        report --comms postgres --sort dso,sym | head -n 25
        echo
        echo "# tsxfer's hottest symbols"
        report --comms tokio-rt-worker,tsxfer --sort dso,sym | head -n 25
    } >"$out"
    say "profile summary in $out"
    # Flame graphs (inferno: cargo install inferno): the whole machine, and tsxfer alone.
    if command -v inferno-collapse-perf >/dev/null && command -v inferno-flamegraph >/dev/null; then
        local folded=$BENCH_DIR/perf.folded
        perf script -i "$data" 2>/dev/null | inferno-collapse-perf --all >"$folded"
        inferno-flamegraph --title "tsxfer run: both servers and tsxfer (cpu-clock)" \
            <"$folded" >"$BENCH_DIR/flamegraph.svg"
        grep -E '^(tokio-rt-worker|tsxfer)[;-]' "$folded" |
            inferno-flamegraph --title "tsxfer's own threads (cpu-clock)" >"$BENCH_DIR/flamegraph-tsxfer.svg"
        say "flame graphs in $BENCH_DIR/flamegraph.svg and flamegraph-tsxfer.svg"
    else
        say "no flame graphs: inferno is not installed (cargo install inferno)"
    fi
}

# The servers' own COPY rates on the same data: every table tsxfer copies, in the
# format it copies it (binary), server-side
# COPY TO files on the source and COPY FROM those files on the target into the
# pre-data schema (no indexes yet, like tsxfer's data pass), JOBS sessions at a time,
# largest first.
# Deals the lines of <statements> to JOBS files <prefix>NN: in order of size (from
# <sizes>, one a line), each to the file with the fewest bytes so far.
deal_lanes() { # <statements> <sizes> <prefix>
    rm -f "$3"[0-9]*
    paste -d '\t' "$2" "$1" | sort -t $'\t' -k1,1nr |
        awk -F '\t' -v jobs="$JOBS" -v prefix="$3" '
            { best = 0
              for (i = 1; i < jobs; i++) if (load[i] < load[best]) best = i
              load[best] += $1
              sub(/^[^\t]*\t/, "")
              print > sprintf("%s%02d", prefix, best) }'
}

measure_copy_rates() { # <variant> <source db>
    local variant=$1 srcdb=$2 files=$BENCH_DIR/copy-files-$variant
    rm -rf "$files"
    mkdir -p "$files"
    chown postgres:postgres "$files"
    local list=$RUNS/$variant-copy-rate.list
    # Compressed chunks as tsxfer sends them to TimescaleDB 2.19: binary, with the "no value"
    # placeholder as NULL where there is one (the target cannot load the placeholder,
    # timescaledb#8893; tsxfer rewrites it as it relays, here the source's query does).
    qv source "$srcdb" -F '|' -c "
        SELECT c.oid::regclass::text,
               c.oid,
               pg_total_relation_size(c.oid),
               (SELECT string_agg(CASE WHEN t.typname = 'compressed_data'
                                       THEN format('CASE WHEN pg_catalog.pg_column_size(%1\$I) < 8 AND %1\$I::text = ''Bg=='' THEN NULL ELSE %1\$I END AS %1\$I', a.attname)
                                       ELSE quote_ident(a.attname) END, ', ' ORDER BY a.attnum)
                FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                HAVING bool_or(t.typname = 'compressed_data'))
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', '_timescaledb_catalog', '_timescaledb_config')
          AND n.nspname NOT LIKE 'timescaledb\_%' AND pg_relation_size(c.oid) > 0
        ORDER BY pg_total_relation_size(c.oid) DESC" >"$list"
    local out_sql=$RUNS/$variant-copy-out.sql in_sql=$RUNS/$variant-copy-in.sql rel oid size select_list
    local sizes=$RUNS/$variant-copy-rate.sizes
    : >"$out_sql"
    : >"$in_sql"
    : >"$sizes"
    while IFS='|' read -r rel oid size select_list; do
        echo "$size" >>"$sizes"
        if [[ -n $select_list && $variant == sparse ]]; then
            echo "COPY (SELECT $select_list FROM ONLY $rel) TO '$files/$oid' (FORMAT binary);" >>"$out_sql"
        else
            echo "COPY $rel TO '$files/$oid' (FORMAT binary);" >>"$out_sql"
        fi
        echo "COPY $rel FROM '$files/$oid' (FORMAT binary);" >>"$in_sql"
    done <"$list"
    # JOBS sessions, each with its share of the tables: largest first, each to the
    # session with the fewest bytes so far (tsxfer's pool takes the next unit when a
    # stream is free, which comes to about the same).
    deal_lanes "$out_sql" "$sizes" "$out_sql.lane"
    local src_conn tgt_conn t0 t1 t2 lane p pids=() status=0
    src_conn="host=$SOCK_source port=$PORT_source user=postgres dbname=$srcdb"
    tgt_conn="host=$SOCK_target port=$PORT_target user=postgres dbname=copy_rate"
    reset_target
    q target postgres -c "CREATE DATABASE copy_rate TEMPLATE template0"
    q target copy_rate -c "CREATE EXTENSION timescaledb" -c "SELECT public.timescaledb_pre_restore()" >/dev/null
    "$PG_BIN/pg_dump" -d "host=$SOCK_source port=$PORT_source user=postgres dbname=$srcdb" \
        --schema-only --section=pre-data --no-owner --no-privileges --no-tablespaces 2>"$RUNS/$variant-copy-rate-dump.log" |
        q target copy_rate >"$RUNS/$variant-copy-rate-schema.log" 2>&1 ||
        die "copying the pre-data schema for the COPY rate failed (see $RUNS/$variant-copy-rate-schema.log)"
    settle
    # Other load: cores busy outside our servers while they copy (psql only waits).
    other_load() { # <busy before> <servers before> <start> <end>
        awk -v b0="$1" -v b1="$(machine_busy_seconds)" -v s0="$2" -v s1="$(clusters_cpu_seconds)" -v w="$(elapsed "$3" "$4")" \
            'BEGIN { o = (b1 - b0 - (s1 - s0)) / (w > 0 ? w : 1); printf "%.2f", (o < 0 ? 0 : o) }'
    }
    local busy0 srv0 other_out other_in
    busy0=$(machine_busy_seconds)
    srv0=$(clusters_cpu_seconds)
    t0=$(now)
    for lane in "$out_sql".lane[0-9]*; do
        "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d "$src_conn" -f "$lane" >>"$RUNS/$variant-copy-out.log" 2>&1 &
        pids+=("$!")
    done
    for p in "${pids[@]}"; do wait "$p" || status=1; done
    t1=$(now)
    other_out=$(other_load "$busy0" "$srv0" "$t0" "$t1")
    ((status == 0)) || die "COPY TO files failed (see $RUNS/$variant-copy-out.log)"
    # The target's sessions are dealt by the files' sizes.
    : >"$sizes"
    while IFS='|' read -r rel oid size select_list; do
        stat -c %s "$files/$oid" >>"$sizes"
    done <"$list"
    deal_lanes "$in_sql" "$sizes" "$in_sql.lane"
    settle
    pids=()
    busy0=$(machine_busy_seconds)
    srv0=$(clusters_cpu_seconds)
    t2=$(now)
    for lane in "$in_sql".lane[0-9]*; do
        "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d "$tgt_conn" -f "$lane" >>"$RUNS/$variant-copy-in.log" 2>&1 &
        pids+=("$!")
    done
    for p in "${pids[@]}"; do wait "$p" || status=1; done
    ((status == 0)) || die "COPY FROM files failed (see $RUNS/$variant-copy-in.log)"
    local t3 bytes
    t3=$(now)
    other_in=$(other_load "$busy0" "$srv0" "$t2" "$t3")
    bytes=$(du -sb "$files" | cut -f1)
    COPY_RATE_LINE[$variant]="$bytes|$(elapsed "$t0" "$t1")|$(elapsed "$t2" "$t3")|$(wc -l <"$list")|$other_out|$other_in"
    q target copy_rate -c "SELECT public.timescaledb_post_restore()" >/dev/null
    retire_database copy_rate
    DEFERRED+=("$files")
}

mbps() { awk -v b="$1" -v s="$2" 'BEGIN { if (s <= 0 || b == "" || b == "-") print "-"; else printf "%.1f", b / 1048576 / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b <= 0) print "-"; else printf "%.2f×", a / b }'; }

print_variant() { # <variant> <source db>
    local variant=$1 srcdb=$2 tool
    local logical=${TSXFER_BYTES[$variant]:-}
    local seed_wall=${WALL[$variant-seed]:-} pgd_wall=${WALL[$variant-pgdump]:-}
    # A ratio to a reference that lost data says nothing about speed.
    local seed_ok=0 pgd_ok=0
    [[ ${ROWLINE[$variant-seed]:-} == *"|yes|"* ]] && seed_ok=1
    [[ ${ROWLINE[$variant-pgdump]:-} == *"|yes|"* ]] && pgd_ok=1
    {
        echo
        echo "### Variant \`$variant\` (source database \`$srcdb\`)"
        echo
        echo "| tool | wall s | × seed | × pg_dump -j | peak RSS (process tree) | peak RSS (tsxfer itself) | bytes moved | throughput MB/s | CPU s client / servers | other load | exit | equal |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        for tool in $TOOLS; do
            [[ -n ${ROWLINE[$variant-$tool]:-} ]] || continue
            local t wall rss trss bytes status cpu_c cpu_s other equal notes
            IFS='|' read -r t wall rss trss bytes status cpu_c cpu_s other equal notes <<<"${ROWLINE[$variant-$tool]}"
            local r_seed=- r_pgd=-
            if ((seed_ok)); then r_seed=$(ratio "$wall" "$seed_wall"); elif [[ -n $seed_wall ]]; then r_seed="n/a (seed lost data)"; fi
            if ((pgd_ok)); then r_pgd=$(ratio "$wall" "$pgd_wall"); elif [[ -n $pgd_wall ]]; then r_pgd="n/a (pg_dump lost data)"; fi
            local tp=-
            [[ -n $logical ]] && tp=$(mbps "$logical" "$wall")
            local shown_equal=$equal
            [[ -n $notes ]] && shown_equal+=" — $notes"
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s | %s | %s |\n' "$(tool_label "$t")" "$wall" "$r_seed" "$r_pgd" \
                "$(human_kb "$rss")" "$(human_kb "${trss:--}")" "$(human_bytes "$bytes")" "$tp" "$cpu_c" "$cpu_s" "$other" "$status" "$shown_equal"
        done
        echo
        if [[ -n $logical ]]; then
            echo "Throughput: the database's data as tsxfer's COPY streams carry it ($(human_bytes "$logical")) over each tool's wall time, the same yardstick for every tool. Bytes moved: what the tool itself wrote or sent (the seed's SQL files, pg_dump's archive directory, tsxfer's COPY data). CPU: seconds used by the tool's process tree (with the pg_dump/pg_restore it runs) and by both servers. Other load: cores busy with processes that are not part of the run, on average (anything above 0.1 makes that row's time unreliable)."
        fi
        if [[ $variant == sparse && " $VARIANTS " == *" dense "* && (" $TOOLS " == *" pgdump-z0 "* || (" $TOOLS " == *" pgcopydb "* && $HAVE_PGCOPYDB == 1)) ]]; then
            echo
            echo "pgcopydb and pg_dump -Z0 run on the dense variant only (pgcopydb fails on TimescaleDB whatever the data; -Z0 is there for its time)."
        fi
        if [[ -n ${TSXFER_PHASES[$variant]:-} ]]; then
            echo
            echo "tsxfer phases: ${TSXFER_PHASES[$variant]}."
        fi
        if [[ -n ${COPY_RATE_LINE[$variant]:-} ]]; then
            local cbytes cout cin ntables other_out other_in
            IFS='|' read -r cbytes cout cin ntables other_out other_in <<<"${COPY_RATE_LINE[$variant]}"
            echo
            echo "Servers' own COPY rates on the same data ($ntables tables, $(human_bytes "$cbytes") in tsxfer's formats, $JOBS sessions at a time, server-side files): source COPY TO $(mbps "$cbytes" "$cout") MB/s ($cout s, other load $other_out), target COPY FROM into the pre-data schema $(mbps "$cbytes" "$cin") MB/s ($cin s, other load $other_in)."
            if [[ -n ${TSXFER_DATA[$variant]:-} && -n $logical ]]; then
                local data_rate target_rate
                data_rate=$(mbps "$logical" "${TSXFER_DATA[$variant]}")
                target_rate=$(mbps "$cbytes" "$cin")
                # With both servers on one machine, the source's COPY TO and the target's
                # COPY FROM share its cores: one byte costs the time of both.
                local source_rate ceiling
                source_rate=$(mbps "$cbytes" "$cout")
                ceiling=$(awk -v s="$source_rate" -v t="$target_rate" 'BEGIN { printf "%.1f", 1 / (1 / s + 1 / t) }')
                echo "tsxfer's data pass: $(human_bytes "$logical") in $(awk -v s="${TSXFER_DATA[$variant]}" 'BEGIN { printf "%.1f", s }') s = $data_rate MB/s: $(awk -v a="$data_rate" -v b="$target_rate" 'BEGIN { printf "%.0f%%", 100 * a / b }') of the target's own COPY FROM rate, $(awk -v a="$data_rate" -v b="$ceiling" 'BEGIN { printf "%.0f%%", 100 * a / b }') of the $ceiling MB/s that the two servers reach together when, as here, they share this machine's $(nproc) cores (1 / (1/source + 1/target))."
                # The data pass also analyzes each table as it commits; the servers' COPY
                # rates above do not. Its share of the wall time: the streams' ANALYZE
                # seconds over the streams.
                local analyze=${TSXFER_ANALYZE[$variant]:-0}
                if awk -v a="$analyze" 'BEGIN { exit !(a > 0) }'; then
                    local copy_secs copy_rate
                    copy_secs=$(awk -v d="${TSXFER_DATA[$variant]}" -v a="$analyze" -v j="$JOBS" 'BEGIN { printf "%.2f", d - a / j }')
                    copy_rate=$(mbps "$logical" "$copy_secs")
                    echo "Less the ANALYZE it runs as tables commit ($(awk -v a="$analyze" 'BEGIN { printf "%.1f", a }') stream-seconds, about $(awk -v a="$analyze" -v j="$JOBS" 'BEGIN { printf "%.1f", a / j }') s over $JOBS streams): $copy_rate MB/s, $(awk -v a="$copy_rate" -v b="$target_rate" 'BEGIN { printf "%.0f%%", 100 * a / b }') of the target's own COPY FROM rate, $(awk -v a="$copy_rate" -v b="$ceiling" 'BEGIN { printf "%.0f%%", 100 * a / b }') of what the two servers reach together."
                fi
            fi
        fi
    } | tee -a "$RESULTS"
}

# --- run ---------------------------------------------------------------------------------------
HARNESS_START=$SECONDS
start_cluster source
start_cluster target
if awk -v r="$RTT_MS" 'BEGIN { exit !(r > 0) }'; then
    start_proxy source
    start_proxy target
fi
generate_dataset
[[ " $VARIANTS " == *" dense "* ]] && make_dense_variant

declare -A SRCDB=()
for variant in $VARIANTS; do
    SRCDB[$variant]=$DB
    [[ $variant == dense ]] && SRCDB[$variant]=${DB}_dense
    qv source "${SRCDB[$variant]}" -c "$RELATIONS_SQL" >"$RUNS/$variant-relations.txt"
    say "[$variant] fingerprinting the source ($(wc -l <"$RUNS/$variant-relations.txt") relations)"
    fingerprint source "${SRCDB[$variant]}" "$RUNS/$variant-relations.txt" "$RUNS/$variant-source-fingerprint.txt"
done
# The servers' COPY rates are measured once, on the last variant.
RATE_VARIANT=''
for variant in $VARIANTS; do RATE_VARIANT=$variant; done

{
    echo "## tsxfer benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "- machine: $(uname -srm); $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)); $(free -g | awk '/^Mem:/ { print $2 }') GiB memory"
    echo "- PostgreSQL $(qv source postgres -c 'SHOW server_version'), TimescaleDB $(qv source "$DB" -c "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'") (license $LICENSE); source and target clusters on this machine, fsync off, shared_buffers 512MB, max_wal_size 8GB; every tool over TCP to 127.0.0.1"
    echo "- tsxfer: $TSXFER ($TSXFER_BUILT), --jobs $JOBS --buffer-size $BUFFER, to a non-superuser database owner (tsdbadmin); the other tools as the target's superuser"
    if [[ $DATASET == chunks ]]; then
        echo "- BENCH_DATASET=chunks, BENCH_CHUNKS=$CHUNKS"
    else
        echo "- BENCH_GB=$BENCH_GB"
    fi
    echo "- round trip added between the tools and each server: ${RTT_MS} ms"
    for variant in $VARIANTS; do
        describe_dataset "${SRCDB[$variant]}" "$RUNS/$variant-source-fingerprint.txt"
    done
} | tee -a "$RESULTS"

for variant in $VARIANTS; do
    srcdb=${SRCDB[$variant]}
    for tool in $TOOLS; do
        if [[ $tool == pgcopydb && $HAVE_PGCOPYDB == 0 ]]; then
            say "pgcopydb is not on PATH: skipped"
            continue
        fi
        # Timing-only rows (pg_dump without gzip) and pgcopydb, which fails on TimescaleDB
        # whatever the data, run on one variant only.
        if [[ ($tool == pgcopydb || $tool == pgdump-z0) && $variant == sparse && " $VARIANTS " == *" dense "* ]]; then
            continue
        fi
        run_tool "$variant" "$tool" "$srcdb" "$RUNS/$variant-relations.txt" "$RUNS/$variant-source-fingerprint.txt"
    done
    if [[ $COPY_RATE == 1 && $variant == "$RATE_VARIANT" ]]; then
        say "[$variant] measuring the servers' own COPY rates"
        measure_copy_rates "$variant" "$srcdb"
    fi
    print_variant "$variant" "$srcdb"
done

{
    echo
    echo "Tools' commands and logs: $RUNS/<variant>-<tool>/ (commands.sh, output.log, time.txt; tsxfer's report.json). The whole harness took $((SECONDS - HARNESS_START)) s."
} | tee -a "$RESULTS"
}; exit
