#!/usr/bin/env bash
# End-to-end demo: two throwaway PostgreSQL 15 + TimescaleDB clusters under
# ./demo-run, a demo source database (scripts/demo-data.sql), a cloud-like
# target database owned by the non-superuser `tsdbadmin`, and a migration with
# target/release/tsxfer. Both clusters are stopped when the script ends, also
# when it fails. The cluster directories and logs stay in ./demo-run until the
# next run.
#
# Environment: TSXFER_BIN (use this tsxfer binary, skip the build),
# JOBS (tsxfer --jobs, default 4), TSXFER_PG_BIN (PostgreSQL programs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD

PG_BIN=${TSXFER_PG_BIN:-/usr/lib/postgresql/15/bin}
RUN_DIR=$REPO/demo-run
DB=demo
ADMIN=tsdbadmin
ADMIN_PASSWORD='s3cr!t-Pa55'
JOBS=${JOBS:-4}

say() { printf 'demo: %s\n' "$*"; }
die() {
    printf 'demo: ERROR: %s\n' "$*" >&2
    exit 1
}

exec </dev/null

if ! command -v cargo >/dev/null 2>&1 && [[ -x "${HOME:-/root}/.cargo/bin/cargo" ]]; then
    export PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi

bash scripts/setup.sh
# TSXFER_BIN=/path/to/tsxfer runs that binary instead of building target/release/tsxfer.
if [[ -n ${TSXFER_BIN:-} ]]; then
    TSXFER=$TSXFER_BIN
    say "using $TSXFER (TSXFER_BIN), not building"
else
    say "cargo build --release"
    cargo build --release
    TSXFER=$REPO/target/release/tsxfer
fi
[[ -x $TSXFER ]] || die "$TSXFER is not an executable"

# Server programs run as the postgres OS user when we are root (initdb refuses root).
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# --- leftovers of an earlier run ------------------------------------------------
stop_cluster_dir() { # <cluster dir> <mode>
    if [[ -f $1/data/postmaster.pid ]]; then
        as_pg "$PG_BIN/pg_ctl" -D "$1/data" -m "$2" -w -t 60 stop >/dev/null 2>&1 || true
    fi
}
if [[ -d $RUN_DIR ]]; then
    for d in "$RUN_DIR"/*/; do
        [[ -d $d ]] && stop_cluster_dir "${d%/}" immediate
    done
    if [[ -f $RUN_DIR/clusters-dir ]]; then
        old=$(cat "$RUN_DIR/clusters-dir")
        for d in "$old"/*/; do
            [[ -d $d ]] && stop_cluster_dir "${d%/}" immediate
        done
        [[ $old == /tmp/tsxfer-demo.* ]] && rm -rf "$old"
    fi
    rm -rf "$RUN_DIR"
fi
mkdir -p "$RUN_DIR"

# The clusters live in ./demo-run when the postgres user can reach it and the
# socket paths stay short enough (unix socket paths are limited to ~107 bytes);
# otherwise in a temp dir that ./demo-run/clusters-dir points to.
CLUSTERS_DIR=$RUN_DIR
if [[ $(id -u) -eq 0 ]] && ! runuser -u postgres -- test -x "$RUN_DIR"; then
    CLUSTERS_DIR=
fi
if ((${#RUN_DIR} > 70)); then
    CLUSTERS_DIR=
fi
if [[ -z $CLUSTERS_DIR ]]; then
    CLUSTERS_DIR=$(mktemp -d /tmp/tsxfer-demo.XXXXXX)
    chmod 755 "$CLUSTERS_DIR"
    echo "$CLUSTERS_DIR" >"$RUN_DIR/clusters-dir"
    say "clusters in $CLUSTERS_DIR (./demo-run is not usable for them)"
fi

STARTED=()
# Set by start_cluster.
PORT_source='' SOCK_source='' PORT_target='' SOCK_target=''
# shellcheck disable=SC2317 # runs from the EXIT trap
cleanup() {
    local status=$?
    for c in "${STARTED[@]}"; do
        say "stopping $(basename "$c")"
        stop_cluster_dir "$c" fast
    done
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_in_use() { # true when something accepts connections on 127.0.0.1:<port>
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# start_cluster <name>: sets PORT_<name> and SOCK_<name>
start_cluster() {
    local name=$1 dir=$CLUSTERS_DIR/$1
    mkdir -p "$dir/s"
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres:postgres "$dir" "$dir/s"
    fi
    say "initdb $name"
    as_pg "$PG_BIN/initdb" -D "$dir/data" --username=postgres --auth=trust \
        --encoding=UTF8 --locale=C.UTF-8 --no-sync --no-instructions >"$dir/initdb.log" 2>&1 ||
        {
            cat "$dir/initdb.log" >&2
            die "initdb $name failed"
        }
    cat >>"$dir/data/postgresql.conf" <<EOF

# --- tsxfer demo ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/s'
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 100
password_encryption = 'scram-sha-256'
EOF
    cat >"$dir/data/pg_hba.conf" <<EOF
local all postgres trust
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
EOF
    local port attempt
    for attempt in 1 2 3 4 5; do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        port_in_use "$port" && continue
        echo "port = $port" >>"$dir/data/postgresql.conf"
        STARTED+=("$dir")
        if as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 120 start >/dev/null; then
            say "$name listening on 127.0.0.1:$port and $dir/s"
            printf -v "PORT_$name" '%s' "$port"
            printf -v "SOCK_$name" '%s' "$dir/s"
            return 0
        fi
        if ! grep -q -e 'could not bind' -e 'already in use' "$dir/server.log"; then
            break
        fi
        say "port $port was taken, trying another (attempt $attempt)"
    done
    tail -n 30 "$dir/server.log" >&2 || true
    die "cannot start cluster $name"
}

start_cluster source
start_cluster target

src_su() { # psql as superuser on the source: <db> [psql args...]
    local db=$1
    shift
    "$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -q -d "host=$SOCK_source port=$PORT_source user=postgres dbname=$db" "$@"
}
tgt_su() {
    local db=$1
    shift
    "$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -q -d "host=$SOCK_target port=$PORT_target user=postgres dbname=$db" "$@"
}

# --- source ------------------------------------------------------------------------
say "loading scripts/demo-data.sql into source database $DB"
load_start=$SECONDS
src_su postgres -c "CREATE DATABASE $DB TEMPLATE template0"
src_su "$DB" -f "$REPO/scripts/demo-data.sql"
say "loaded in $((SECONDS - load_start))s; TimescaleDB license: $(src_su "$DB" -At -c 'SHOW timescaledb.license')"

# --- cloud-like target ----------------------------------------------------------------
# Like a managed service: the database belongs to a non-superuser admin role
# with CREATEROLE, the extension is created by the superuser, and the admin
# may call the restore helpers (SECURITY DEFINER) and use the internal schemas.
say "preparing cloud-like target database $DB owned by $ADMIN"
tgt_su postgres -v admin="$ADMIN" -v pw="$ADMIN_PASSWORD" <<'SQL'
SET password_encryption = 'scram-sha-256';
CREATE ROLE :"admin" LOGIN CREATEROLE NOSUPERUSER PASSWORD :'pw';
SQL
tgt_su postgres -c "CREATE DATABASE $DB OWNER $ADMIN TEMPLATE template0"
tgt_su "$DB" -v admin="$ADMIN" -f "$REPO/scripts/cloud-like-target.sql"

SOURCE_CONNINFO="host=$SOCK_source port=$PORT_source user=postgres dbname=$DB"
TARGET_CONNINFO="host=$SOCK_target port=$PORT_target user=$ADMIN password=$ADMIN_PASSWORD dbname=$DB"

# --- migrate ------------------------------------------------------------------------------
say "running: tsxfer --source \"$SOURCE_CONNINFO\" --target \"${TARGET_CONNINFO/password=$ADMIN_PASSWORD/password=***}\" --jobs $JOBS"
migrate_start=$SECONDS
status=0
(cd "$RUN_DIR" && "$TSXFER" --source "$SOURCE_CONNINFO" --target "$TARGET_CONNINFO" --jobs "$JOBS") || status=$?
say "tsxfer exited with status $status after $((SECONDS - migrate_start))s"

# --- compare --------------------------------------------------------------------------------
count_rows() { # <psql function> <table>: row count, or "-" when the table is not there
    "$1" "$DB" -At -c "SELECT count(*) FROM $2" 2>/dev/null || echo "-"
}
count_chunks() { # "<chunks>/<compressed chunks>"
    "$1" "$DB" -At -c "SELECT count(*) || '/' || count(*) FILTER (WHERE is_compressed)
        FROM timescaledb_information.chunks WHERE format('%I.%I', hypertable_schema, hypertable_name) = '$2'" \
        2>/dev/null || echo "-"
}
mapfile -t hypertables < <(src_su "$DB" -At -c \
    "SELECT format('%I.%I', hypertable_schema, hypertable_name) FROM timescaledb_information.hypertables ORDER BY 1")
tables=("${hypertables[@]}")
if [[ $(src_su "$DB" -At -c "SELECT to_regclass('metrics_hourly') IS NOT NULL") == t ]]; then
    tables+=(public.metrics_hourly)
fi
tables+=(public.devices public.sites)
mismatch=0
printf '\n%-28s %12s %12s %14s %14s\n' "table" "source rows" "target rows" "src chunks/cmp" "tgt chunks/cmp"
for t in "${tables[@]}"; do
    s_rows=$(count_rows src_su "$t")
    t_rows=$(count_rows tgt_su "$t")
    s_chk=""
    t_chk=""
    for h in "${hypertables[@]}"; do
        if [[ $h == "$t" ]]; then
            s_chk=$(count_chunks src_su "$t")
            t_chk=$(count_chunks tgt_su "$t")
        fi
    done
    printf '%-28s %12s %12s %14s %14s\n' "$t" "$s_rows" "$t_rows" "$s_chk" "$t_chk"
    [[ $s_rows == "$t_rows" ]] || mismatch=1
done
echo
if ((status == 0 && mismatch == 0)); then
    say "OK: row counts match"
elif ((status == 0)); then
    say "row counts differ"
    status=1
fi
exit "$status"
