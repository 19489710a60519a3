#!/usr/bin/env bash
# Prepares a Debian bookworm machine (as root) for building and testing tsxfer:
#   - PostgreSQL 15 (server, client, server headers) and the build tools,
#   - TimescaleDB 2.19.3 for PostgreSQL 15, built from Debian trixie's source
#     package (Apache-licensed part only; that tarball has no tsl/ tree),
#   - Prometheus (Debian's package; the tests start their own on loopback to scrape
#     a run's metrics),
#   - checks that a Rust toolchain (cargo) is present.
# Idempotent: whatever is already in place is left alone. In particular, an
# already installed TimescaleDB 2.19.3 (which may be a full "timescale"-licensed
# build) is never overwritten.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

TSDB_VERSION=2.19.3
PG_MAJOR=15
PG_CONFIG=/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config
BUILD_ROOT=${TSXFER_BUILD_DIR:-/var/tmp/tsxfer-build}
TRIXIE_SRC_LIST=/etc/apt/sources.list.d/tsxfer-trixie-src.sources

PACKAGES=(
    "postgresql-${PG_MAJOR}"
    "postgresql-client-${PG_MAJOR}"
    "postgresql-server-dev-${PG_MAJOR}"
    build-essential
    cmake
    libssl-dev
    libkrb5-dev
    dpkg-dev
    pkg-config
    prometheus
    pgbouncer
)

say() { printf 'setup: %s\n' "$*"; }
die() {
    printf 'setup: ERROR: %s\n' "$*" >&2
    exit 1
}

exec </dev/null

if [[ $(id -u) -ne 0 ]]; then
    die "must run as root (it installs Debian packages and the TimescaleDB extension)"
fi

start_time=$SECONDS

# --- Rust -------------------------------------------------------------------
# rustup installs into ~/.cargo/bin, which a non-login shell may not have on PATH.
if ! command -v cargo >/dev/null 2>&1 && [[ -x "${HOME:-/root}/.cargo/bin/cargo" ]]; then
    export PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    die "cargo not found on PATH (nor in ~/.cargo/bin). Install a Rust toolchain (rustup) first; this script cannot download one."
fi
say "cargo present: $(cargo --version)"

# --- Debian packages ----------------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ $status != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

# Where the extension lives. pg_config may not be there yet on a brand-new
# machine; the Debian layout is fixed, so fall back to it.
if [[ -x $PG_CONFIG ]]; then
    PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
    SHAREDIR=$("$PG_CONFIG" --sharedir)
else
    PKGLIBDIR=/usr/lib/postgresql/${PG_MAJOR}/lib
    SHAREDIR=/usr/share/postgresql/${PG_MAJOR}
fi
TSDB_SO=${PKGLIBDIR}/timescaledb-${TSDB_VERSION}.so
TSDB_SQL=${SHAREDIR}/extension/timescaledb--${TSDB_VERSION}.sql

need_tsdb=1
if [[ -f $TSDB_SO && -f $TSDB_SQL ]]; then
    need_tsdb=0
fi

need_update=0
if ((${#missing[@]} > 0)); then
    need_update=1
fi

if ((need_tsdb)); then
    # Sources only: nothing from trixie is ever installed as a binary.
    desired_list="Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
    if [[ ! -f $TRIXIE_SRC_LIST ]] || [[ $(cat "$TRIXIE_SRC_LIST") != "$desired_list" ]]; then
        say "adding Debian trixie deb-src entry ($TRIXIE_SRC_LIST)"
        printf '%s\n' "$desired_list" >"$TRIXIE_SRC_LIST"
    fi
    need_update=1
fi

if ((need_update)); then
    say "apt-get update"
    apt-get update -qq
fi

if ((${#missing[@]} > 0)); then
    say "installing: ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    say "Debian packages already installed"
fi

[[ -x $PG_CONFIG ]] || die "$PG_CONFIG missing after installing packages"

# --- TimescaleDB ----------------------------------------------------------------
if ((!need_tsdb)); then
    say "TimescaleDB ${TSDB_VERSION} already installed for PostgreSQL ${PG_MAJOR} ($TSDB_SO), leaving it as it is"
else
    tsdb_start=$SECONDS
    say "building TimescaleDB ${TSDB_VERSION} (Apache-only) for PostgreSQL ${PG_MAJOR} from Debian trixie sources"

    src_version=$(apt-cache showsrc timescaledb 2>/dev/null |
        awk '/^Version:/ {print $2}' | grep -E "^${TSDB_VERSION//./\\.}\+" | sort -V | tail -n1 || true)
    [[ -n $src_version ]] || die "trixie does not offer timescaledb ${TSDB_VERSION} sources (apt-cache showsrc timescaledb)"

    mkdir -p "$BUILD_ROOT"
    cd "$BUILD_ROOT"
    upstream=${src_version#*:}
    upstream=${upstream%-*}
    # dpkg-source unpacks into <package>-<upstream version>.
    srcdir=$BUILD_ROOT/timescaledb-${upstream}
    if [[ ! -f $srcdir/CMakeLists.txt ]]; then
        rm -rf "$srcdir"
        say "apt-get source timescaledb=${src_version}"
        apt-get source "timescaledb=${src_version}" >"$BUILD_ROOT/apt-source.log" 2>&1 || {
            tail -n 20 "$BUILD_ROOT/apt-source.log" >&2
            die "apt-get source failed (log: $BUILD_ROOT/apt-source.log)"
        }
        [[ -f $srcdir/CMakeLists.txt ]] || die "unpacked timescaledb sources not found in $srcdir"
    fi
    say "sources in $srcdir"

    builddir=$srcdir/build-pg${PG_MAJOR}
    rm -rf "$builddir"
    mkdir -p "$builddir"
    cd "$builddir"
    say "cmake configure"
    cmake .. \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DPG_CONFIG="$PG_CONFIG" \
        -DAPACHE_ONLY=ON \
        -DREGRESS_CHECKS=OFF \
        -DTAP_CHECKS=OFF \
        -DLINTER=OFF \
        -DWARNINGS_AS_ERRORS=OFF \
        -DSEND_TELEMETRY_DEFAULT=OFF \
        -DUSE_TELEMETRY=OFF \
        -DGENERATE_DOWNGRADE_SCRIPT=OFF \
        >"$builddir/cmake.log" 2>&1 || {
        tail -n 40 "$builddir/cmake.log" >&2
        die "cmake failed (full log: $builddir/cmake.log)"
    }
    say "make -j$(nproc)"
    make -j"$(nproc)" >"$builddir/make.log" 2>&1 || {
        tail -n 40 "$builddir/make.log" >&2
        die "make failed (full log: $builddir/make.log)"
    }
    say "make install"
    make install >"$builddir/install.log" 2>&1 || {
        tail -n 40 "$builddir/install.log" >&2
        die "make install failed (full log: $builddir/install.log)"
    }
    [[ -f $TSDB_SO && -f $TSDB_SQL ]] || die "after make install, $TSDB_SO or $TSDB_SQL is missing"
    say "TimescaleDB ${TSDB_VERSION} installed in $((SECONDS - tsdb_start))s ($TSDB_SO)"
fi

[[ -f $TSDB_SO ]] || die "$TSDB_SO missing"
say "done in $((SECONDS - start_time))s"
