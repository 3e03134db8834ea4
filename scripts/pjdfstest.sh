#!/usr/bin/env bash
# POSIX tier: run pjdfstest (the Rust port, `cargo install pjdfstest`) on a real tidefs mount,
# once with the trash on (the JuiceFS default) and once with it off. Fails on any failed case.
# Metadata in SQLite, or on the server of PJDFSTEST_META (a mysql:// or postgres:// URL), in
# tables of a prefix of their own that `tidefs destroy` removes afterwards.
set -euo pipefail
BIN=${TIDEFS_BIN:-${CARGO_TARGET_DIR:-target}/debug/tidefs}
command -v pjdfstest >/dev/null || { echo "pjdfstest not found: cargo install pjdfstest --locked --version 0.2.2" >&2; exit 1; }
[ -x "$BIN" ] || { echo "tidefs binary not found at $BIN: run cargo build first" >&2; exit 1; }
work=$(mktemp -d /tmp/tidefs-pjdfstest.XXXXXX)
# pjdfstest switches to unprivileged users, who must be able to reach the mount point
chmod 755 "$work"
cleanup() { "$BIN" umount "$work/mnt" >/dev/null 2>&1 || fusermount3 -uz "$work/mnt" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cat > "$work/conf.toml" <<'CONF'
[features]
posix_fallocate = {}
rename_ctime = {}
utimensat = {}
utime_now = {}

[settings]
naptime = 0.001
allow_remount = false

[dummy_auth]
entries = [["nobody", "nogroup"], ["daemon", "daemon"], ["bin", "bin"]]
CONF
status=0
passed=0; failed=0; skipped=0
for trash in 1 0; do
  rm -rf "$work/meta.db"* "$work/data" && mkdir -p "$work/mnt" "$work/data"
  if [ -n "${PJDFSTEST_META:-}" ]; then
    case "$PJDFSTEST_META" in *\?*) sep='&' ;; *) sep='?' ;; esac
    meta="${PJDFSTEST_META}${sep}table_prefix=pjd${trash}_$(basename "$work" | tr -cd 'a-zA-Z0-9' | tr 'A-Z' 'a-z')"
  else
    meta="sqlite3://$work/meta.db"
  fi
  "$BIN" format "$meta" pjdfs --bucket "$work/data" --trash-days "$trash" >/dev/null
  "$BIN" mount -d "$meta" "$work/mnt" --log "$work/mount.log" >/dev/null
  (cd "$work/mnt" && pjdfstest -c "$work/conf.toml" -p "$work/mnt") > "$work/out.txt" 2>&1 || true
  summary=$(grep '^Summary:' "$work/out.txt" || echo "Summary: pjdfstest did not finish")
  echo "pjdfstest (trash-days $trash): $summary"
  read -r f s p <<<"$(sed -nE 's/^Summary: ([0-9]+) failed, ([0-9]+) skipped, ([0-9]+) passed.*/\1 \2 \3/p' "$work/out.txt")"
  failed=$((failed + ${f:-1})); skipped=$((skipped + ${s:-0})); passed=$((passed + ${p:-0}))
  grep -E 'FAILED' "$work/out.txt" || true
  case "$summary" in
    "Summary: 0 failed,"*) ;;
    *) status=1; tail -50 "$work/out.txt" ;;
  esac
  "$BIN" umount "$work/mnt"
  "$BIN" fsck "$meta" | tail -1
  if [ -n "${PJDFSTEST_META:-}" ]; then
    uuid=$("$BIN" status "$meta" | sed -nE 's/.*"UUID": "([^"]+)".*/\1/p')
    "$BIN" destroy "$meta" "$uuid" --force >/dev/null
  fi
done
echo "pjdfstest: $passed passed, $failed failed, $skipped skipped"
exit $status
