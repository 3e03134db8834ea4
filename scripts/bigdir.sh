#!/usr/bin/env bash
# One directory of N entries (default 1 000 000) on a fresh volume: create it with 8 parallel
# writers, list it (`ls -f`, unsorted, streaming), stat every entry (`ls -fl`), remove it, and
# report each phase's time and the mount's peak RSS (VmHWM) after each phase.
#
#   scripts/bigdir.sh META-URL [N]     e.g. sqlite3:///var/tmp/big/meta.db, or a server URL
#                                      (a table_prefix of its own is added; destroyed at the end)
set -euo pipefail
META=$1; N=${2:-1000000}
BIN=${TIDEFS_BIN:-${CARGO_TARGET_DIR:-target}/release/tidefs}
work=$(mktemp -d /var/tmp/tidefs-bigdir.XXXXXX)
case "$META" in
  sqlite3://*) META="sqlite3://$work/meta.db" ;;
  *\?*) META="$META&table_prefix=big$(basename "$work" | tr -cd 'a-z0-9')" ;;
  *) META="$META?table_prefix=big$(basename "$work" | tr -cd 'a-z0-9')" ;;
esac
mkdir -p "$work/data" "$work/mnt"
cleanup() { "$BIN" umount "$work/mnt" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
"$BIN" format "$META" bigdir --bucket "$work/data" --trash-days 0 >/dev/null
"$BIN" mount -d "$META" "$work/mnt" --log "$work/mount.log" >/dev/null
pid=$(pgrep -f " mount .* $work/mnt" | head -1)
hwm() { awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' /proc/$pid/status; }
rss() { awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' /proc/$pid/status; }
d="$work/mnt/big"; mkdir "$d"
phase() { local name=$1; shift; local t0; t0=$(date +%s.%N); "$@"; local t1; t1=$(date +%s.%N);
  printf "%-28s %8.1f s   peak RSS %s (now %s)\n" "$name" "$(echo "$t1 - $t0" | bc)" "$(hwm)" "$(rss)"; }
make_files() { python3 - "$d" "$N" <<'PY'
import os, sys
from multiprocessing import Pool
d, n = sys.argv[1], int(sys.argv[2])
def part(k):
    for i in range(k, n, 8):
        os.close(os.open("%s/f%07d" % (d, i), os.O_CREAT | os.O_WRONLY, 0o644))
with Pool(8) as p: p.map(part, range(8))
PY
}
remove_files() { python3 - "$d" "$N" <<'PY'
import os, sys
from multiprocessing import Pool
d, n = sys.argv[1], int(sys.argv[2])
def part(k):
    for i in range(k, n, 8):
        os.unlink("%s/f%07d" % (d, i))
with Pool(8) as p: p.map(part, range(8))
PY
}
count() { local c; c=$(ls -f "$d" | wc -l); [ "$c" -eq $((N + 2)) ] || { echo "listed $c entries, expected $((N + 2))" >&2; exit 1; }; }
count_long() { local c; c=$(ls -fl "$d" | wc -l); [ "$c" -ge $((N + 2)) ] || { echo "ls -l listed $c" >&2; exit 1; }; }
echo "engine: ${META%%://*}, $N entries in one directory"
phase "create $N" make_files
"$BIN" umount "$work/mnt" >/dev/null; sync; echo 3 > /proc/sys/vm/drop_caches
"$BIN" mount -d "$META" "$work/mnt" --log "$work/mount.log" >/dev/null
pid=$(pgrep -f " mount .* $work/mnt" | head -1)
phase "list (ls -f), cold" count
phase "list + stat (ls -fl)" count_long
phase "remove $N" remove_files
phase "rmdir" rmdir "$d"
"$BIN" umount "$work/mnt" >/dev/null
"$BIN" fsck "$META" | tail -1
if [ "${META%%://*}" != sqlite3 ]; then
  uuid=$("$BIN" status "$META" | sed -nE 's/.*"UUID": "([^"]+)".*/\1/p')
  "$BIN" destroy "$META" "$uuid" >/dev/null
fi
