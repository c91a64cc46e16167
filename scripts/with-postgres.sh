#!/usr/bin/env bash
# with-postgres.sh CMD ARGS... runs CMD with a throw-away PostgreSQL server.
#
# The server lives in a fresh mktemp directory, listens on a free port of
# 127.0.0.1 only (its unix socket stays in that directory), runs with
# fsync=on and synchronous_commit=on like production, and is stopped and
# deleted when CMD exits. CMD sees
#
#   GTTEST_POSTGRES_URL=postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable
#   GTTEST_POSTGRES_CTL=DIR/ctl
#
# "$GTTEST_POSTGRES_CTL stop" stops the server (fast shutdown: sessions are
# ended) and "$GTTEST_POSTGRES_CTL start" starts it again on the same port,
# for tests of a database restart; only a test that has the server to
# itself may use them (cmd/govtrust's M-08 test runs this script itself).
#
# The superuser "postgres" logs in without a password (trust, loopback only);
# every other role must give its password (scram-sha-256), so tests can check
# that a password is really sent. System clusters (pg_ctlcluster,
# /etc/postgresql) are never touched. The exit status is CMD's.
#
# As root the server runs as the "postgres" user; otherwise as the caller.
set -eu

if [ "$#" -eq 0 ]; then
	echo "usage: $0 CMD [ARGS...]" >&2
	exit 2
fi

# The newest installed major version (sort -V orders 9.6 before 15).
bindir=
for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V); do
	if [ -x "$d/postgres" ]; then
		bindir=$d
	fi
done
if [ -z "$bindir" ]; then
	echo "$0: no PostgreSQL server in /usr/lib/postgresql/*/bin (apt-get install postgresql)" >&2
	exit 1
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/gt-postgres.XXXXXX")
data=$dir/data
log=$dir/server.log

# as_pg runs a command as the server's owner.
if [ "$(id -u)" -eq 0 ]; then
	chown postgres:postgres "$dir"
	as_pg() { runuser -u postgres -- "$@"; }
else
	as_pg() { "$@"; }
fi

started=
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
	status=$?
	if [ -n "$started" ]; then
		as_pg "$bindir/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
			as_pg "$bindir/pg_ctl" -D "$data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
	fi
	rm -rf "$dir"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

as_pg "$bindir/initdb" -D "$data" -U postgres -E UTF8 --no-locale \
	--auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1 || {
	cat "$dir/initdb.log" >&2
	exit 1
}
# Superuser without a password on loopback; everyone else with a password.
cat >"$data/pg_hba.conf" <<'EOF'
local all all                 trust
host  all postgres 127.0.0.1/32 trust
host  all all      127.0.0.1/32 scram-sha-256
EOF
if [ "$(id -u)" -eq 0 ]; then
	chown postgres:postgres "$data/pg_hba.conf"
fi

# Pick a random high port that nothing answers on; if another process takes it
# before the server binds, pg_ctl fails and the next candidate is tried.
tries=0
while :; do
	tries=$((tries + 1))
	if [ "$tries" -gt 10 ]; then
		echo "$0: cannot start PostgreSQL; server log:" >&2
		cat "$log" >&2 || true
		exit 1
	fi
	port=$((20000 + RANDOM % 40000))
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		continue # in use
	fi
	opts="-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=on -c synchronous_commit=on -c full_page_writes=on"
	if as_pg "$bindir/pg_ctl" -D "$data" -l "$log" -w -t 60 -o "$opts" start >/dev/null; then
		started=1
		break
	fi
done

GTTEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
export GTTEST_POSTGRES_URL

# ctl stop|start, as the server's owner, with the options it started with.
runas=
if [ "$(id -u)" -eq 0 ]; then
	runas="runuser -u postgres --"
fi
cat >"$dir/ctl" <<CTL
#!/bin/sh
case "\$1" in
stop) exec $runas "$bindir/pg_ctl" -D "$data" -m fast -w -t 60 stop ;;
start)
	$runas "$bindir/pg_ctl" -D "$data" -l "$log" -w -t 60 -o "$opts" start && exit 0
	echo "server log:" >&2
	tail -n 30 "$log" >&2
	exit 1
	;;
*) echo "usage: \$0 stop|start" >&2; exit 2 ;;
esac
CTL
chmod 755 "$dir/ctl"
GTTEST_POSTGRES_CTL=$dir/ctl
export GTTEST_POSTGRES_CTL

set +e
"$@"
status=$?
set -e
exit "$status"
