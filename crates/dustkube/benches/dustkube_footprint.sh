#!/usr/bin/env bash
# Footprint of `dustkube server` on a real etcd (loopback, temp dirs, free ports):
# RSS idle and after 1,000 pods stored; p50/p99 latency of GET one pod and LIST 1,000 pods with
# kubectl's Table Accept header (curl over one kept-alive TLS connection, client certificate).
#
# Usage: crates/dustkube/benches/dustkube_footprint.sh [SAMPLES]   (default 60)
# DUSTKUBE=path/to/dustkube to use a given binary; otherwise a release build is made.
set -euo pipefail

SAMPLES=${1:-60}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
KUBECTL=${KUBECTL:-/usr/lib/google-cloud-sdk/bin/kubectl.1.33}
if [[ -z "${DUSTKUBE:-}" ]]; then
  (cd "$ROOT" && cargo build --release -q -p dustkube)
  DUSTKUBE="${CARGO_TARGET_DIR:-$ROOT/target}/release/dustkube"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
API=$(free_port); ETCD=$(free_port); PEER=$(free_port)
DIR=$(mktemp -d)
INIT_PID=
cleanup() {
  if [[ -n "$INIT_PID" ]]; then kill -TERM "$INIT_PID" 2>/dev/null || true; wait "$INIT_PID" 2>/dev/null || true; fi
  rm -rf "$DIR"
}
trap cleanup EXIT

"$DUSTKUBE" init --foreground --node-name bench --advertise-address 127.0.0.1 \
  --apiserver-bind-address 127.0.0.1 --apiserver-bind-port "$API" \
  --etcd-client-port "$ETCD" --etcd-peer-port "$PEER" \
  --pki-dir "$DIR/pki" --kubeconfig-dir "$DIR/conf" --data-dir "$DIR/etcd" --log-dir "$DIR/logs" \
  --key-algorithm ecdsa-p256 --skip-preflight all >"$DIR/init.out" 2>&1 &
INIT_PID=$!
for _ in $(seq 1 300); do
  grep -q "running in the foreground" "$DIR/init.out" 2>/dev/null && break
  kill -0 "$INIT_PID" 2>/dev/null || { cat "$DIR/init.out"; exit 1; }
  sleep 0.2
done
grep -q "running in the foreground" "$DIR/init.out" || { cat "$DIR/init.out"; exit 1; }
SERVER_PID=$(sed -n 's/.*started dustkube server (pid \([0-9]*\)).*/\1/p' "$DIR/init.out" | tail -1)
CONF="$DIR/conf/super-admin.conf"
k() { "$KUBECTL" --kubeconfig "$CONF" --cache-dir "$DIR/kcache" "$@"; }

# Client certificate for curl, from super-admin.conf.
python3 - "$CONF" "$DIR" <<'PY'
import base64, re, sys
text = open(sys.argv[1]).read()
get = lambda k: base64.b64decode(re.search(k + r": (\S+)", text).group(1))
open(sys.argv[2] + "/c.crt", "wb").write(get("client-certificate-data"))
open(sys.argv[2] + "/c.key", "wb").write(get("client-key-data"))
PY

rss() { awk '/VmRSS/ {printf "%.1f MB", $2/1024}' "/proc/$SERVER_PID/status"; }
sleep 3
RSS_IDLE=$(rss)

k create namespace bench >/dev/null
python3 - "$DIR/pods.yaml" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(1000):
        f.write(f"---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-{i:04}\n  namespace: bench\n  labels:\n    app: bench\nspec:\n  containers:\n  - name: web\n    image: nginx:1.27\n    ports:\n    - containerPort: 80\n")
PY
START=$(date +%s.%N)
k create -f "$DIR/pods.yaml" >/dev/null
CREATE_S=$(echo "$(date +%s.%N) - $START" | bc)
COUNT=$(k get pods -n bench --no-headers | wc -l)
[[ "$COUNT" == 1000 ]] || { echo "expected 1000 pods, found $COUNT"; exit 1; }
sleep 2
RSS_1000=$(rss)

ACCEPT='application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json'
# One curl, many transfers over one kept-alive connection; the first (connect + TLS) is dropped.
latencies() {
  local url=$1 args=()
  for _ in $(seq 0 "$SAMPLES"); do args+=(-o /dev/null "$url"); done
  curl -s --cacert "$DIR/pki/ca.crt" --cert "$DIR/c.crt" --key "$DIR/c.key" -H "Accept: $ACCEPT" \
    -w '%{http_code} %{time_total}\n' "${args[@]}" | tail -n +2
}
stats() {
  awk '$1 != 200 {bad++} {print $2*1000}
       END {if (bad) {print "non-200 answers: " bad > "/dev/stderr"; exit 1}}' |
    sort -n | awk '{v[NR]=$1} END {p50=v[int((NR+1)*0.50)]; i=int(NR*0.99+0.999); if (i>NR) i=NR;
                    printf "%.1f ms  %.1f ms  (%d samples)", p50, v[i], NR}'
}
BASE="https://127.0.0.1:$API/api/v1/namespaces/bench/pods"
GET=$(latencies "$BASE/pod-0500" | stats)
LIST=$(latencies "$BASE" | stats)
LIST_BYTES=$(curl -s --cacert "$DIR/pki/ca.crt" --cert "$DIR/c.crt" --key "$DIR/c.key" -H "Accept: $ACCEPT" "$BASE" | wc -c)
RSS_AFTER=$(rss)

printf '%-38s %s\n' "dustkube footprint ($(basename "$DUSTKUBE"), etcd $(/usr/bin/etcd --version | head -1 | awk '{print $3}'))" ""
printf '%-38s %s\n' "RSS idle" "$RSS_IDLE   (target <= 60 MB)"
printf '%-38s %s\n' "RSS after 1,000 pods stored" "$RSS_1000"
printf '%-38s %s\n' "RSS after the latency runs" "$RSS_AFTER"
printf '%-38s %s\n' "create 1,000 pods (kubectl create -f)" "${CREATE_S%???????} s"
printf '%-38s %s\n' "GET one pod (Table)    p50  p99" "$GET"
printf '%-38s %s\n' "LIST 1,000 pods (Table) p50  p99" "$LIST   (target p50 <= 50 ms; $LIST_BYTES bytes)"
