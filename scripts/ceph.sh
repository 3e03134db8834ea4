#!/usr/bin/env bash
# A real S3 server for the tests: a single-node Ceph cluster (one monitor, one BlueStore OSD on a
# sparse file) with the RADOS gateway, from Debian's packages, started by hand (no systemd).
#
#   scripts/ceph.sh start    install (when missing), create the cluster on first use, start the
#                            monitor, the OSD and radosgw on 127.0.0.1:$RGW_PORT, create the S3
#                            user and bucket; prints nothing else on success
#   scripts/ceph.sh stop     stop radosgw, then the OSD, then the monitor (that order: stopping
#                            radosgw and the OSD together makes radosgw hang)
#   scripts/ceph.sh status   say whether the gateway answers
#   scripts/ceph.sh env      `export` lines for the tests (endpoint, bucket, keys) when it answers
#   scripts/ceph.sh restart [pause-seconds]
#                            stop radosgw, stay down for the pause, start it again (fault tests)
#
# Everything lives under $CEPH_DIR (default /var/tmp/tidefs-services/ceph): config, keyring,
# monitor and OSD data, logs, sockets. The settings a one-OSD cluster needs are explained in
# ../shared/SERVICES.md of the project brief; each one was a failure without it.
#
# The OSD's sparse block file never shrinks (BlueStore reuses freed space inside it but does not
# give it back to the host file system), so it is capped at 16 GiB: enough for the live data of
# the tests and benchmarks, and a bound on what it takes from the disk that also holds the
# clients' caches (whose free-space floor it would otherwise eat into).
set -euo pipefail

CEPH_DIR=${CEPH_DIR:-/var/tmp/tidefs-services/ceph}
RGW_PORT=${RGW_PORT:-7480}
S3_ACCESS_KEY=${S3_ACCESS_KEY:-tidefsaccesskey0001}
S3_SECRET_KEY=${S3_SECRET_KEY:-tidefs-test-secret-key-0001}
S3_BUCKET=${S3_BUCKET:-tidefs-test}
C=$CEPH_DIR
CONF=$C/ceph.conf
ENDPOINT=http://127.0.0.1:$RGW_PORT

log() { echo "ceph: $*" >&2; }
ceph_() { timeout 60 ceph -c "$CONF" "$@"; }

install_missing() {
  local pkgs=()
  command -v ceph-mon >/dev/null || pkgs+=(ceph-mon)
  command -v ceph-osd >/dev/null || pkgs+=(ceph-osd)
  command -v radosgw >/dev/null || pkgs+=(radosgw)
  command -v ceph >/dev/null || pkgs+=(ceph-common)
  command -v uuidgen >/dev/null || pkgs+=(uuid-runtime)
  command -v curl >/dev/null || pkgs+=(curl)
  if [ ${#pkgs[@]} -gt 0 ]; then
    log "installing ${pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  fi
}

rgw_up() { curl -fsS -o /dev/null --max-time 2 "$ENDPOINT/" 2>/dev/null; }
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_conf() {
  local fsid=$1
  cat >"$CONF" <<CONF
[global]
fsid = $fsid
mon initial members = a
mon host = [v2:127.0.0.1:3300,v1:127.0.0.1:6789]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $C/keyring
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
mon max pg per osd = 1000
paxos propose interval = 0.05
paxos min wait = 0.01
mon cluster log file = $C/log/cluster.log
log file = $C/log/\$name.log
run dir = $C/run
pid file = $C/run/\$name.pid
admin socket = $C/run/\$name.asok
mon data = $C/mon/\$cluster-\$id
osd data = $C/osd/\$cluster-\$id
osd objectstore = bluestore
bluestore block path = $C/osd/block-\$id
bluestore block size = 17179869184
bluestore block create = true
osd memory target = 1073741824
rgw gc obj min wait = 10
rgw gc processor period = 10

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw data = $C/rgw
CONF
}

create_cluster() {
  log "creating a one-node cluster in $C"
  rm -rf "$C"
  mkdir -p "$C"/{log,run,mon,osd,rgw}
  local fsid; fsid=$(uuidgen)
  write_conf "$fsid"
  ceph-authtool --create-keyring "$C/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool "$C/keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  ceph-authtool "$C/keyring" --gen-key -n osd.0 \
    --cap mon 'allow profile osd' --cap osd 'allow *' --cap mgr 'allow profile osd' >/dev/null
  ceph-authtool "$C/keyring" --gen-key -n client.rgw.a \
    --cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw' >/dev/null
  monmaptool --create --fsid "$fsid" --addv a '[v2:127.0.0.1:3300,v1:127.0.0.1:6789]' "$C/monmap" >/dev/null
  mkdir -p "$C/mon/ceph-a"
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$C/monmap" --keyring "$C/keyring" >"$C/log/mkfs-mon.log" 2>&1
  ceph-mon -c "$CONF" -i a
  local uuid; uuid=$(uuidgen)
  local id; id=$(ceph_ osd create "$uuid")
  [ "$id" = 0 ] || { log "expected OSD id 0, got $id"; exit 1; }
  mkdir -p "$C/osd/ceph-0"
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$uuid" >"$C/log/mkfs-osd.log" 2>&1 ||
    { log "ceph-osd --mkfs failed"; tail -20 "$C/log/mkfs-osd.log" >&2; exit 1; }
  touch "$C/created"
}

start() {
  install_missing
  if rgw_up; then
    ensure_user_and_bucket
    return
  fi
  [ -f "$C/created" ] || create_cluster
  pid_alive "$C/run/mon.a.pid" || ceph-mon -c "$CONF" -i a
  pid_alive "$C/run/osd.0.pid" || ceph-osd -c "$CONF" -i 0
  pid_alive "$C/run/client.rgw.a.pid" || radosgw -c "$CONF" -n client.rgw.a
  for _ in $(seq 1 600); do rgw_up && break; sleep 0.1; done
  rgw_up || { log "radosgw did not answer on $ENDPOINT; logs in $C/log"; tail -20 "$C/log/client.rgw.a.log" >&2 || true; exit 1; }
  ensure_user_and_bucket
}

ensure_user_and_bucket() {
  if ! timeout 60 radosgw-admin -c "$CONF" user info --uid=tidefs >/dev/null 2>&1; then
    timeout 60 radosgw-admin -c "$CONF" user create --uid=tidefs --display-name=tidefs \
      --access-key="$S3_ACCESS_KEY" --secret-key="$S3_SECRET_KEY" >/dev/null
  fi
  # the bucket by a signed PUT (python's standard library only: no AWS CLI on the machine)
  python3 - "$ENDPOINT" "$S3_BUCKET" "$S3_ACCESS_KEY" "$S3_SECRET_KEY" <<'PY'
import datetime, hashlib, hmac, sys, urllib.request, urllib.error
endpoint, bucket, ak, sk = sys.argv[1:]
host = endpoint.split("://", 1)[1]
now = datetime.datetime.now(datetime.timezone.utc)
amz, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
empty = hashlib.sha256(b"").hexdigest()
canon = f"PUT\n/{bucket}\n\nhost:{host}\nx-amz-content-sha256:{empty}\nx-amz-date:{amz}\n\nhost;x-amz-content-sha256;x-amz-date\n{empty}"
scope = f"{day}/us-east-1/s3/aws4_request"
sts = f"AWS4-HMAC-SHA256\n{amz}\n{scope}\n{hashlib.sha256(canon.encode()).hexdigest()}"
k = ("AWS4" + sk).encode()
for part in (day, "us-east-1", "s3", "aws4_request"):
    k = hmac.new(k, part.encode(), hashlib.sha256).digest()
sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
req = urllib.request.Request(f"{endpoint}/{bucket}", method="PUT", headers={
    "x-amz-date": amz, "x-amz-content-sha256": empty,
    "Authorization": f"AWS4-HMAC-SHA256 Credential={ak}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={sig}"})
try:
    urllib.request.urlopen(req, timeout=30)
except urllib.error.HTTPError as e:
    body = e.read().decode(errors="replace")
    if "BucketAlreadyOwnedByYou" not in body and "BucketAlreadyExists" not in body:
        sys.exit(f"ceph: cannot create bucket {bucket}: HTTP {e.code} {body}")
PY
}

stop_pid() {
  local f=$1
  pid_alive "$f" || return 0
  local p; p=$(cat "$f")
  kill "$p" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
}

stop() {
  stop_pid "$C/run/client.rgw.a.pid"
  stop_pid "$C/run/osd.0.pid"
  stop_pid "$C/run/mon.a.pid"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) rgw_up && echo "ceph rgw: up ($ENDPOINT)" || echo "ceph rgw: down" ;;
  env)
    if rgw_up; then
      echo "export TIDEFS_TEST_S3='$ENDPOINT/$S3_BUCKET'"
      echo "export TIDEFS_TEST_S3_ACCESS_KEY='$S3_ACCESS_KEY'"
      echo "export TIDEFS_TEST_S3_SECRET_KEY='$S3_SECRET_KEY'"
    fi
    ;;
  restart)
    stop_pid "$C/run/client.rgw.a.pid"
    sleep "${2:-2}"
    radosgw -c "$CONF" -n client.rgw.a
    for _ in $(seq 1 600); do rgw_up && break; sleep 0.1; done
    rgw_up || { log "radosgw did not come back"; exit 1; }
    ;;
  *) echo "usage: $0 start|stop|status|env|restart [pause]" >&2; exit 2 ;;
esac
