#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster on 127.0.0.1 for the tests and exports its URL as
# AXRA_TEST_DATABASE_URL, with TLS on (its CA in AXRA_TEST_DATABASE_CA). Source it: `source .ci/postgres.sh`. Installs PostgreSQL from Debian's
# packages when absent. The cluster is stopped and removed when the sourcing shell exits.

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/postgres" ]; then
  echo "installing PostgreSQL from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
fi
PG_BIN="$(pg_bin)"

AXRA_PG_DIR="$(mktemp -d /tmp/axra-pg.XXXXXX)"
AXRA_PG_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
if [ "$(id -u)" = 0 ]; then chown postgres "$AXRA_PG_DIR"; fi

as_postgres "$PG_BIN/initdb" -D "$AXRA_PG_DIR/data" -A trust -U postgres >/dev/null

# TLS on, with a throwaway CA made now: a server certificate for localhost and 127.0.0.1.
# (openssl comes with Debian's postgresql packages, through ssl-cert.)
AXRA_PG_TLS="$AXRA_PG_DIR/tls"
mkdir -p "$AXRA_PG_TLS"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=axra-auth test CA" -keyout "$AXRA_PG_TLS/ca.key" -out "$AXRA_PG_TLS/ca.crt" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -subj "/CN=localhost" -keyout "$AXRA_PG_TLS/server.key" -out "$AXRA_PG_TLS/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$AXRA_PG_TLS/server.ext"
openssl x509 -req -in "$AXRA_PG_TLS/server.csr" -CA "$AXRA_PG_TLS/ca.crt" -CAkey "$AXRA_PG_TLS/ca.key" \
  -CAcreateserial -days 2 -extfile "$AXRA_PG_TLS/server.ext" -out "$AXRA_PG_TLS/server.crt" 2>/dev/null
chmod 600 "$AXRA_PG_TLS/server.key"
if [ "$(id -u)" = 0 ]; then chown -R postgres "$AXRA_PG_TLS"; fi

as_postgres "$PG_BIN/pg_ctl" -D "$AXRA_PG_DIR/data" -l "$AXRA_PG_DIR/log" -w \
  -o "-p $AXRA_PG_PORT -k $AXRA_PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off -c ssl=on -c ssl_cert_file=$AXRA_PG_TLS/server.crt -c ssl_key_file=$AXRA_PG_TLS/server.key" \
  start >/dev/null
as_postgres "$PG_BIN/psql" -h 127.0.0.1 -p "$AXRA_PG_PORT" -U postgres -q \
  -c "CREATE DATABASE axra_test" >/dev/null

export AXRA_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$AXRA_PG_PORT/axra_test"
export AXRA_TEST_DATABASE_CA="$AXRA_PG_TLS/ca.crt"
echo "PostgreSQL for the tests: $AXRA_TEST_DATABASE_URL (TLS on; CA $AXRA_TEST_DATABASE_CA)"

axra_pg_stop() {
  as_postgres "$PG_BIN/pg_ctl" -D "$AXRA_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$AXRA_PG_DIR"
}
trap axra_pg_stop EXIT
