#!/usr/bin/env bash
# The test command (README.md): makes sure what the tests need is installed and running, then runs
# the whole workspace's tests. Works on a bare machine with only the Rust toolchain (as root, with
# Debian's packages reachable) and on a developer machine where PostgreSQL already runs.
# Arguments go to both cargo test runs (a test name filter, say).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "test.sh: missing $*; install it (Debian: apt-get install $*) or run as root" >&2
    exit 1
  fi
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# A C compiler for the bundled SQLite and aws-lc.
command -v cc >/dev/null || apt_install build-essential

# Headless Chromium: a test renders the daemon's status page in it.
command -v chromium >/dev/null || apt_install chromium

# PostgreSQL on 127.0.0.1:5432 (trust auth for local TCP): the storage tests and the whole
# integration suite run against it as well as against SQLite.
pg_ready() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
if ! pg_ready; then
  if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    apt_install postgresql
  fi
  if command -v pg_ctlcluster >/dev/null && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
    ver=$(ls /etc/postgresql | sort -V | tail -1)
    hba=/etc/postgresql/$ver/main/pg_hba.conf
    # Debian's default asks for a password over TCP; the tests connect as postgres without one.
    if [ -w "$hba" ] && ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
      sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    fi
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  fi
  for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
  pg_ready || { echo "test.sh: PostgreSQL did not start on 127.0.0.1:5432" >&2; exit 1; }
fi
export PPSYNC_TEST_PG_URL="${PPSYNC_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

# A real SMTP server for the e-mail tests (aiosmtpd), a real iCalendar parser for the calendar
# feed's test (icalendar) and a real Singer target for the tap's test (target-jsonl, pinned: its
# `target-jsonl` executable sits beside the venv's python), in a Python virtual environment of our own.
if ! target/py/bin/python -c 'import aiosmtpd, icalendar, target_jsonl' 2>/dev/null ||
  [ ! -x target/py/bin/target-jsonl ]; then
  python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
  rm -rf target/py
  python3 -m venv target/py
  target/py/bin/pip install -q aiosmtpd icalendar target-jsonl==0.1.4
fi
export PPSYNC_TEST_PYTHON="$PWD/target/py/bin/python"

# Each test makes its own database, ppsync_t_<pid of the test process>_<random>; drop those whose
# process is gone, at the start (what crashed runs left) and at exit. A database whose process still
# runs belongs to another run on this machine (a second checkout, a helper), which is left alone.
drop_test_databases() {
  command -v psql >/dev/null || return 0
  psql "$PPSYNC_TEST_PG_URL" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'ppsync\_t\_%'" 2>/dev/null |
    while read -r db; do
      pid=${db#ppsync_t_}; pid=${pid%%_*}
      case $pid in '' | *[!0-9]*) ;; *) kill -0 "$pid" 2>/dev/null && continue ;; esac
      psql "$PPSYNC_TEST_PG_URL" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
    done
}
drop_test_databases
trap drop_test_databases EXIT

# Every test on SQLite, then the integration suite again on PostgreSQL.
cargo test --workspace "$@"
PPSYNC_TEST_BACKEND=postgres cargo test -p ppsync --test it "$@"
