#!/usr/bin/env bash
# Run CMD with the services and Debian tools the LiteMX test suite needs.
#
#   scripts/with-test-services.sh CMD [ARGS...]
#
# PostgreSQL: exports LITEMX_TEST_PG_URL (postgresql+psycopg://USER@HOST:PORT/DBNAME) for CMD.
#   1. LITEMX_TEST_PG_URL already set            -> used as is.
#   2. a server answers on LITEMX_TEST_PG_PROBE  -> postgresql+psycopg://postgres@HOST:PORT/test
#      (host:port, default 127.0.0.1:5432; trust auth and a database "test" are assumed).
#   3. otherwise -> a throwaway cluster (initdb in a temp dir, trust auth, loopback, free port,
#      database "test"), stopped and deleted when this script exits, whatever the reason.
#      Debian's postgresql is installed first when initdb is missing.
# Debian tools: smtp-source/smtp-sink (postfix, installed without a running mail system),
#   swaks, Perl's Mail::DKIM (libmail-dkim-perl); with LITEMX_BENCH_TOOLS=1 (`make bench`) also
#   notmuch, its Python bindings (python3-notmuch2) and wrk. Missing ones are installed in one
#   apt-get call; LITEMX_SKIP_APT=1 only reports them.
# Exit status: CMD's (or non-zero, with a message, when the services cannot be set up).
set -euo pipefail

log() { printf 'test services: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $# -gt 0 ]] || { echo "usage: $0 CMD [ARGS...]" >&2; exit 2; }

# smtp-source and smtp-sink live in /usr/sbin, which a non-root PATH may lack.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin" ;; esac
export PATH

as_root=()
if [[ $EUID -ne 0 ]] && command -v sudo >/dev/null; then as_root=(sudo -n); fi

tmp=""            # throwaway cluster's directory, when we made one
pg_bin=""         # its binaries
cleanup() {
    trap '' HUP INT TERM   # a second signal must not cut the cleanup short
    if [[ -n $tmp && -d $tmp ]]; then
        if [[ -f $tmp/data/postmaster.pid ]]; then
            run_pg "$pg_bin/pg_ctl" -D "$tmp/data" -m immediate -w -t 15 stop >/dev/null 2>&1 || true
            if [[ -f $tmp/data/postmaster.pid ]]; then   # still there: kill our postmaster only
                local pid
                pid=$(head -n1 "$tmp/data/postmaster.pid" 2>/dev/null || true)
                if [[ $pid =~ ^[0-9]+$ ]]; then
                    kill -KILL "$pid" 2>/dev/null || true
                    for _ in {1..50}; do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
                fi
            fi
        fi
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# Run a PostgreSQL server binary: initdb and postgres refuse to run as root.
run_pg() {
    if [[ $EUID -eq 0 ]]; then
        (cd "$tmp" && runuser -u postgres -- "$@")
    else
        (cd "$tmp" && "$@")
    fi
}

# Does something accept TCP connections on host $1 port $2?
pg_answers() {
    if command -v pg_isready >/dev/null; then
        pg_isready -q -h "$1" -p "$2" -t 3
    else
        # shellcheck disable=SC2016  # expanded by the inner bash
        timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
    fi
}

find_pg_bin() {
    local d
    while read -r d; do   # newest major version first
        [[ -x $d/initdb ]] && { echo "$d"; return 0; }
    done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r)
    d=$(command -v initdb 2>/dev/null) || return 1
    d=$(readlink -f "$d"); echo "${d%/*}"
}

have_tool() { command -v "$1" >/dev/null || [[ -x /usr/sbin/$1 ]]; }

# --- decide where PostgreSQL comes from ---------------------------------------------------------
probe=${LITEMX_TEST_PG_PROBE:-127.0.0.1:5432}
probe_host=${probe%:*} probe_port=${probe##*:}
pg_mode=throwaway
if [[ -n ${LITEMX_TEST_PG_URL:-} ]]; then
    pg_mode=given
elif pg_answers "$probe_host" "$probe_port"; then
    pg_mode=running
    export LITEMX_TEST_PG_URL="postgresql+psycopg://postgres@$probe_host:$probe_port/test"
fi

# --- Debian packages: everything missing, in one apt-get call -----------------------------------
missing=()
if [[ $pg_mode == throwaway ]]; then
    if ! find_pg_bin >/dev/null || { [[ $EUID -eq 0 ]] && ! id postgres >/dev/null 2>&1; }; then
        missing+=(postgresql)
    fi
fi
{ have_tool smtp-source && have_tool smtp-sink; } || missing+=(postfix)
have_tool swaks || missing+=(swaks)
perl -MMail::DKIM::Verifier -e1 2>/dev/null || missing+=(libmail-dkim-perl)
if [[ ${LITEMX_BENCH_TOOLS:-} == 1 ]]; then  # `make bench`: the peers bench/ measures LiteMX against
    have_tool notmuch || missing+=(notmuch)
    /usr/bin/python3 -c 'import notmuch2' 2>/dev/null || missing+=(python3-notmuch2)
    have_tool wrk || missing+=(wrk)
fi

port25_taken() { (exec 3<>/dev/tcp/127.0.0.1/25) 2>/dev/null; }

if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ ${LITEMX_SKIP_APT:-} == 1 ]]; then
        log "LITEMX_SKIP_APT=1: not installing missing Debian packages: ${missing[*]}"
        [[ " ${missing[*]} " != *" postgresql "* ]] || die "no PostgreSQL server and no initdb"
    else
        [[ $EUID -eq 0 || ${#as_root[@]} -gt 0 ]] ||
            die "missing Debian packages (${missing[*]}) and not root: install them or set LITEMX_SKIP_APT=1"
        command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get"
        log "installing Debian packages: ${missing[*]}"
        had_port25=0; port25_taken && had_port25=1
        # Postfix only for its smtp-source/smtp-sink: no configuration, no running mail system.
        echo 'postfix postfix/main_mailer_type select No configuration' |
            "${as_root[@]}" debconf-set-selections 2>/dev/null || true
        apt_log=$(mktemp)
        # Keep maintainer scripts from starting daemons, unless a policy is already in place.
        policy_added=0
        if [[ ! -e /usr/sbin/policy-rc.d ]]; then
            printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee /usr/sbin/policy-rc.d >/dev/null
            "${as_root[@]}" chmod 755 /usr/sbin/policy-rc.d
            policy_added=1
            trap '"${as_root[@]}" rm -f /usr/sbin/policy-rc.d; cleanup' EXIT
        fi
        apt_ok=1
        { "${as_root[@]}" apt-get update -q &&
          "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
              --no-install-recommends -o DPkg::Lock::Timeout=300 \
              -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
        } </dev/null >"$apt_log" 2>&1 || apt_ok=0
        if [[ $policy_added == 1 ]]; then
            "${as_root[@]}" rm -f /usr/sbin/policy-rc.d
            trap cleanup EXIT
        fi
        if [[ $apt_ok == 0 ]]; then
            tail -n 40 "$apt_log" >&2; rm -f "$apt_log"
            die "apt-get install ${missing[*]} failed (see above); the tests need these tools"
        fi
        rm -f "$apt_log"
        # No postfix daemon may be left running, nor port 25 taken by one.
        if [[ -f /var/spool/postfix/pid/master.pid ]]; then
            pid=$(tr -dc 0-9 </var/spool/postfix/pid/master.pid)
            if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
                log "stopping the postfix daemon the install started (pid $pid)"
                "${as_root[@]}" postfix stop >/dev/null 2>&1 || "${as_root[@]}" kill "$pid" || true
            fi
        fi
        if [[ $had_port25 == 0 ]] && port25_taken; then log "WARNING: port 25 is taken after install"; fi
        # Check again: all must be there now.
        still=()
        { have_tool smtp-source && have_tool smtp-sink; } || still+=(smtp-source/smtp-sink)
        have_tool swaks || still+=(swaks)
        perl -MMail::DKIM::Verifier -e1 2>/dev/null || still+=(Mail::DKIM)
        [[ $pg_mode != throwaway ]] || find_pg_bin >/dev/null || still+=(initdb)
        [[ ${#still[@]} -eq 0 ]] || die "still missing after apt-get install: ${still[*]}"
    fi
fi

# --- PostgreSQL ----------------------------------------------------------------------------------
case $pg_mode in
given)
    log "PostgreSQL from LITEMX_TEST_PG_URL (given)" ;;
running)
    log "PostgreSQL at $probe_host:$probe_port (running)" ;;
throwaway)
    pg_bin=$(find_pg_bin) || die "initdb not found"
    if [[ $EUID -eq 0 ]]; then id postgres >/dev/null 2>&1 || die "no postgres user to run initdb as"; fi
    tmp=$(mktemp -d /tmp/litemx-pg.XXXXXX)
    [[ $EUID -ne 0 ]] || chown postgres: "$tmp"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    run_pg "$pg_bin/initdb" -D "$tmp/data" -U postgres -A trust -E UTF8 --no-locale --no-sync \
        >"$tmp/initdb.log" 2>&1 || { cat "$tmp/initdb.log" >&2; die "initdb failed"; }
    run_pg mkdir "$tmp/sock"
    cat >>"$tmp/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$tmp/sock'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
    run_pg "$pg_bin/pg_ctl" -D "$tmp/data" -l "$tmp/server.log" -w -t 30 start >/dev/null ||
        { cat "$tmp/server.log" >&2; die "the throwaway PostgreSQL did not start within 30 s"; }
    for _ in $(seq 1 60); do   # bounded: 30 s
        "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break
        sleep 0.5
    done
    "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$port" || die "the throwaway PostgreSQL does not answer"
    "$pg_bin/createdb" -h 127.0.0.1 -p "$port" -U postgres test || die "createdb test failed"
    export LITEMX_TEST_PG_URL="postgresql+psycopg://postgres@127.0.0.1:$port/test"
    log "PostgreSQL in a throwaway cluster on port $port"
    set +e
    "$@"
    status=$?
    set -e
    exit "$status"   # the EXIT trap stops the cluster and deletes $tmp
    ;;
esac

exec "$@"
