#!/usr/bin/env bash
# List a 1 000 000-entry directory on MariaDB whose rows are inserted straight into the tables
# (creating them through a mount is what scripts/bigdir.sh measures; this times only `ls -f` and
# `ls -fl` of the current build). Needs the MariaDB of scripts/services.sh (its Sequence engine).
#   TIDEFS_BIN=target/release/tidefs scripts/bigls-mariadb.sh
set -euo pipefail
eval "$("$(dirname "$0")/services.sh" env)"
T=${TIDEFS_BIN:-target/release/tidefs}
P=bigls$$
U="${TIDEFS_TEST_MYSQL}?table_prefix=$P"
case "$TIDEFS_TEST_MYSQL" in *\?*) U="${TIDEFS_TEST_MYSQL}&table_prefix=$P";; esac
W=/var/tmp/bigls; rm -rf $W; mkdir -p $W/b $W/mnt
$T format "$U" bigls --bucket $W/b --trash-days 0 >/dev/null
$T mount -d "$U" $W/mnt --log $W/log >/dev/null
mkdir $W/mnt/big; D=$(stat -c %i $W/mnt/big)
$T umount $W/mnt
SOCK=${SERVICES_DIR:-/var/tmp/tidefs-services}/mysql/run/mysqld.sock
M="mariadb -S $SOCK -u root tidefs"
t=1700000000000000
time $M -e "INSERT INTO jfs_${P}_node (inode,type,flags,mode,uid,gid,atime,mtime,ctime,atimensec,mtimensec,ctimensec,nlink,length,rdev,parent) SELECT 100000+seq,1,0,420,0,0,$t,$t,$t,0,0,0,1,0,0,$D FROM seq_1_to_1000000;
INSERT INTO jfs_${P}_edge (parent,name,inode,type) SELECT $D, CONCAT('f',LPAD(seq,7,'0')), 100000+seq, 1 FROM seq_1_to_1000000;
UPDATE jfs_${P}_counter SET value = 2000000 WHERE name = 'nextInode'; ANALYZE TABLE jfs_${P}_edge, jfs_${P}_node;" >/dev/null
$T mount -d "$U" $W/mnt --log $W/log >/dev/null
PID=$(python3 -c "import json,glob; print(json.load(open(glob.glob('/run/tidefs/*bigls_mnt.json')[0]))['pid'])")
s=$(date +%s.%N); n=$(ls -f $W/mnt/big | wc -l); e=$(date +%s.%N); echo "ls -f: $n entries in $(echo "$e - $s" | bc) s"
s=$(date +%s.%N); n=$(ls -fl $W/mnt/big | wc -l); e=$(date +%s.%N); echo "ls -fl: $n lines in $(echo "$e - $s" | bc) s"
grep VmHWM /proc/$PID/status
$T umount $W/mnt
$M -e "$(for t in $($M -N -e "SHOW TABLES LIKE 'jfs\_${P}\_%'"); do echo "DROP TABLE $t;"; done)"
rm -rf $W
