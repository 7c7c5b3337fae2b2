# Source this file, then: pg_start [DIR]  -> a throwaway PostgreSQL 15 on a free
# loopback port; pg_stop removes it. Exports PGHOST PGPORT PGUSER PGDATABASE
# and MIGFIX_TEST_URL (superuser "postgres", trust on loopback) plus a password
# role "migfix_pw" (password in MIGFIX_TEST_PW) that must authenticate with
# scram-sha-256.
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

pg_free_port() {
    perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0) or die; print $s->sockport, "\n"'
}

pg_as() { # run a command as the postgres OS user when we are root
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_start() {
    PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/migfix-pg.XXXXXX")
    chmod 755 "$PG_DIR"
    [ "$(id -u)" = 0 ] && chown postgres "$PG_DIR"
    PGPORT=$(pg_free_port)
    pg_as "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust --no-sync -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 \
        || { cat "$PG_DIR/initdb.log" >&2; return 1; }
    cat >"$PG_DIR/data/pg_hba.conf" <<HBA
local all all trust
host all migfix_pw 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
host all all ::1/128 trust
HBA
    pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
        -o "-p $PGPORT -c listen_addresses=127.0.0.1 -k $PG_DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        start >/dev/null || { cat "$PG_DIR/server.log" >&2; return 1; }
    export PGHOST=127.0.0.1 PGPORT PGUSER=postgres PGDATABASE=postgres
    export MIGFIX_TEST_URL="postgresql://postgres@127.0.0.1:$PGPORT/postgres"
    export MIGFIX_TEST_PW="pw-$(date +%s)-S3cret"
    psql -qX -v ON_ERROR_STOP=1 -c "CREATE ROLE migfix_pw LOGIN SUPERUSER PASSWORD '$MIGFIX_TEST_PW'" >/dev/null
    export PG_DIR
}

pg_stop() {
    [ -n "${PG_DIR:-}" ] || return 0
    pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
    PG_DIR=
}
