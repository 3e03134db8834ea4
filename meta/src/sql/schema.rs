//! The SQL layout, statement for statement as the JuiceFS 1.4 binary creates it on SQLite
//! (read from `sqlite3 meta.db .schema` of a volume `juicefs format` made).

/// DDL for SQLite, in the order JuiceFS issues it.
pub const SQLITE_DDL: &[&str] = &[
    "CREATE TABLE `jfs_setting` (`name` TEXT PRIMARY KEY NOT NULL, `value` TEXT NOT NULL)",
    "CREATE TABLE `jfs_counter` (`name` TEXT PRIMARY KEY NOT NULL, `value` INTEGER NOT NULL)",
    "CREATE TABLE `jfs_edge` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `parent` INTEGER NOT NULL, `name` BLOB NOT NULL, `inode` INTEGER NOT NULL, `type` INTEGER NOT NULL)",
    "CREATE UNIQUE INDEX `UQE_jfs_edge_edge` ON `jfs_edge` (`parent`,`name`)",
    "CREATE INDEX `IDX_jfs_edge_inode` ON `jfs_edge` (`inode`)",
    "CREATE TABLE `jfs_node` (`inode` INTEGER PRIMARY KEY NOT NULL, `type` INTEGER NOT NULL, `flags` INTEGER NOT NULL, `mode` INTEGER NOT NULL, `uid` INTEGER NOT NULL, `gid` INTEGER NOT NULL, `atime` INTEGER NOT NULL, `mtime` INTEGER NOT NULL, `ctime` INTEGER NOT NULL, `atimensec` INTEGER DEFAULT 0 NOT NULL, `mtimensec` INTEGER DEFAULT 0 NOT NULL, `ctimensec` INTEGER DEFAULT 0 NOT NULL, `nlink` INTEGER NOT NULL, `length` INTEGER NOT NULL, `rdev` INTEGER NULL, `parent` INTEGER NULL, `access_acl_id` INTEGER NULL, `default_acl_id` INTEGER NULL, `tier_id` INTEGER NULL)",
    "CREATE TABLE `jfs_symlink` (`inode` INTEGER PRIMARY KEY NOT NULL, `target` BLOB NOT NULL)",
    "CREATE TABLE `jfs_xattr` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `inode` INTEGER NOT NULL, `name` TEXT NOT NULL, `value` BLOB NOT NULL)",
    "CREATE UNIQUE INDEX `UQE_jfs_xattr_name` ON `jfs_xattr` (`inode`,`name`)",
    "CREATE TABLE `jfs_chunk` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `inode` INTEGER NOT NULL, `indx` INTEGER NOT NULL, `slices` BLOB NOT NULL)",
    "CREATE UNIQUE INDEX `UQE_jfs_chunk_chunk` ON `jfs_chunk` (`inode`,`indx`)",
    "CREATE TABLE `jfs_chunk_ref` (`chunkid` INTEGER PRIMARY KEY NOT NULL, `size` INTEGER NOT NULL, `refs` INTEGER NOT NULL)",
    "CREATE INDEX `IDX_jfs_chunk_ref_refs` ON `jfs_chunk_ref` (`refs`)",
    "CREATE TABLE `jfs_delslices` (`chunkid` INTEGER PRIMARY KEY NOT NULL, `deleted` INTEGER NOT NULL, `slices` BLOB NOT NULL)",
    "CREATE TABLE `jfs_session2` (`sid` INTEGER PRIMARY KEY NOT NULL, `expire` INTEGER NOT NULL, `info` BLOB NULL)",
    "CREATE TABLE `jfs_sustained` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `sid` INTEGER NOT NULL, `inode` INTEGER NOT NULL)",
    "CREATE UNIQUE INDEX `UQE_jfs_sustained_sustained` ON `jfs_sustained` (`sid`,`inode`)",
    "CREATE TABLE `jfs_delfile` (`inode` INTEGER PRIMARY KEY NOT NULL, `length` INTEGER NOT NULL, `expire` INTEGER NOT NULL)",
    "CREATE TABLE `jfs_flock` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `inode` INTEGER NOT NULL, `sid` INTEGER NOT NULL, `owner` INTEGER NOT NULL, `ltype` INTEGER NOT NULL)",
    "CREATE UNIQUE INDEX `UQE_jfs_flock_flock` ON `jfs_flock` (`inode`,`sid`,`owner`)",
    "CREATE TABLE `jfs_plock` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `inode` INTEGER NOT NULL, `sid` INTEGER NOT NULL, `owner` INTEGER NOT NULL, `records` BLOB NOT NULL)",
    "CREATE UNIQUE INDEX `UQE_jfs_plock_plock` ON `jfs_plock` (`inode`,`sid`,`owner`)",
    "CREATE TABLE `jfs_dir_quota` (`inode` INTEGER PRIMARY KEY NOT NULL, `max_space` INTEGER NOT NULL, `max_inodes` INTEGER NOT NULL, `used_space` INTEGER NOT NULL, `used_inodes` INTEGER NOT NULL)",
    "CREATE TABLE `jfs_user_group_quota` (`qtype` INTEGER NOT NULL, `qkey` INTEGER NOT NULL, `max_space` INTEGER NOT NULL, `max_inodes` INTEGER NOT NULL, `used_space` INTEGER NOT NULL, `used_inodes` INTEGER NOT NULL, PRIMARY KEY ( `qtype`,`qkey` ))",
    "CREATE TABLE `jfs_dir_stats` (`inode` INTEGER PRIMARY KEY NOT NULL, `data_length` INTEGER NOT NULL, `used_space` INTEGER NOT NULL, `used_inodes` INTEGER NOT NULL)",
    "CREATE TABLE `jfs_detached_node` (`inode` INTEGER PRIMARY KEY NOT NULL, `added` INTEGER NOT NULL)",
    "CREATE TABLE `jfs_acl` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `owner` INTEGER NULL, `group` INTEGER NULL, `mask` INTEGER NULL, `other` INTEGER NULL, `named_users` BLOB NULL, `named_groups` BLOB NULL)",
    "CREATE TABLE `jfs_delegation_token` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `token` BLOB NULL)",
    "CREATE TABLE `jfs_change_log` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `entry` TEXT NOT NULL)",
];

/// DDL for MySQL-protocol servers (MySQL, MariaDB, OceanBase, TiDB), column for column and
/// index for index as `juicefs format` 1.4 creates it on MariaDB (read with `mariadb-dump
/// --no-data`; see `docs/reference/juicefs-1.4.2-ddl-mariadb.sql`). The character set is the
/// server's default, as with JuiceFS.
pub const MYSQL_DDL: &[&str] = &[
    "CREATE TABLE `jfs_setting` (`name` VARCHAR(255) NOT NULL, `value` TEXT NOT NULL, PRIMARY KEY (`name`)) ENGINE=InnoDB",
    "CREATE TABLE `jfs_counter` (`name` VARCHAR(255) NOT NULL, `value` BIGINT(20) NOT NULL, PRIMARY KEY (`name`)) ENGINE=InnoDB",
    "CREATE TABLE `jfs_edge` (`id` BIGINT(20) NOT NULL AUTO_INCREMENT, `parent` BIGINT(20) NOT NULL, `name` VARBINARY(255) NOT NULL, `inode` BIGINT(20) NOT NULL, `type` INT(11) NOT NULL, PRIMARY KEY (`id`), UNIQUE KEY `UQE_jfs_edge_edge` (`parent`,`name`), KEY `IDX_jfs_edge_inode` (`inode`)) ENGINE=InnoDB",
    "CREATE TABLE `jfs_node` (`inode` BIGINT(20) NOT NULL, `type` INT(11) NOT NULL, `flags` INT(11) NOT NULL, `mode` INT(11) NOT NULL, `uid` INT(11) NOT NULL, `gid` INT(11) NOT NULL, `atime` BIGINT(20) NOT NULL, `mtime` BIGINT(20) NOT NULL, `ctime` BIGINT(20) NOT NULL, `atimensec` INT(11) NOT NULL DEFAULT 0, `mtimensec` INT(11) NOT NULL DEFAULT 0, `ctimensec` INT(11) NOT NULL DEFAULT 0, `nlink` INT(11) NOT NULL, `length` BIGINT(20) NOT NULL, `rdev` INT(11) DEFAULT NULL, `parent` BIGINT(20) DEFAULT NULL, `access_acl_id` INT(11) DEFAULT NULL, `default_acl_id` INT(11) DEFAULT NULL, `tier_id` INT(11) DEFAULT NULL, PRIMARY KEY (`inode`)) ENGINE=InnoDB",
    "CREATE TABLE `jfs_symlink` (`inode` BIGINT(20) NOT NULL, `target` VARBINARY(4096) NOT NULL, PRIMARY KEY (`inode`)) ENGINE=InnoDB",
    "CREATE TABLE `jfs_xattr` (`id` BIGINT(20) NOT NULL AUTO_INCREMENT, `inode` BIGINT(20) NOT NULL, `name` VARCHAR(255) NOT NULL, `value` BLOB NOT NULL, PRIMARY KEY (`id`), UNIQUE KEY `UQE_jfs_xattr_name` (`inode`,`name`)) ENGINE=InnoDB",
    "CREATE TABLE `jfs_chunk` (`id` BIGINT(20) NOT NULL AUTO_INCREMENT, `inode` BIGINT(20) NOT NULL, `indx` INT(11) NOT NULL, `slices` BLOB NOT NULL, PRIMARY KEY (`id`), UNIQUE KEY `UQE_jfs_chunk_chunk` (`inode`,`indx`)) ENGINE=InnoDB",
    "CREATE TABLE `jfs_chunk_ref` (`chunkid` BIGINT(20) NOT NULL, `size` INT(11) NOT NULL, `refs` INT(11) NOT NULL, PRIMARY KEY (`chunkid`), KEY `IDX_jfs_chunk_ref_refs` (`refs`)) ENGINE=InnoDB",
    "CREATE TABLE `jfs_delslices` (`chunkid` BIGINT(20) NOT NULL, `deleted` BIGINT(20) NOT NULL, `slices` BLOB NOT NULL, PRIMARY KEY (`chunkid`)) ENGINE=InnoDB",
    "CREATE TABLE `jfs_session2` (`sid` BIGINT(20) NOT NULL, `expire` BIGINT(20) NOT NULL, `info` BLOB DEFAULT NULL, PRIMARY KEY (`sid`)) ENGINE=InnoDB",
    "CREATE TABLE `jfs_sustained` (`id` BIGINT(20) NOT NULL AUTO_INCREMENT, `sid` BIGINT(20) NOT NULL, `inode` BIGINT(20) NOT NULL, PRIMARY KEY (`id`), UNIQUE KEY `UQE_jfs_sustained_sustained` (`sid`,`inode`)) ENGINE=InnoDB",
    "CREATE TABLE `jfs_delfile` (`inode` BIGINT(20) NOT NULL, `length` BIGINT(20) NOT NULL, `expire` BIGINT(20) NOT NULL, PRIMARY KEY (`inode`)) ENGINE=InnoDB",
    "CREATE TABLE `jfs_flock` (`id` BIGINT(20) NOT NULL AUTO_INCREMENT, `inode` BIGINT(20) NOT NULL, `sid` BIGINT(20) NOT NULL, `owner` BIGINT(20) NOT NULL, `ltype` INT(11) NOT NULL, PRIMARY KEY (`id`), UNIQUE KEY `UQE_jfs_flock_flock` (`inode`,`sid`,`owner`)) ENGINE=InnoDB",
    "CREATE TABLE `jfs_plock` (`id` BIGINT(20) NOT NULL AUTO_INCREMENT, `inode` BIGINT(20) NOT NULL, `sid` BIGINT(20) NOT NULL, `owner` BIGINT(20) NOT NULL, `records` BLOB NOT NULL, PRIMARY KEY (`id`), UNIQUE KEY `UQE_jfs_plock_plock` (`inode`,`sid`,`owner`)) ENGINE=InnoDB",
    "CREATE TABLE `jfs_dir_quota` (`inode` BIGINT(20) NOT NULL, `max_space` BIGINT(20) NOT NULL, `max_inodes` BIGINT(20) NOT NULL, `used_space` BIGINT(20) NOT NULL, `used_inodes` BIGINT(20) NOT NULL, PRIMARY KEY (`inode`)) ENGINE=InnoDB",
    "CREATE TABLE `jfs_user_group_quota` (`qtype` INT(11) NOT NULL, `qkey` BIGINT(20) NOT NULL, `max_space` BIGINT(20) NOT NULL, `max_inodes` BIGINT(20) NOT NULL, `used_space` BIGINT(20) NOT NULL, `used_inodes` BIGINT(20) NOT NULL, PRIMARY KEY (`qtype`,`qkey`)) ENGINE=InnoDB",
    "CREATE TABLE `jfs_dir_stats` (`inode` BIGINT(20) NOT NULL, `data_length` BIGINT(20) NOT NULL, `used_space` BIGINT(20) NOT NULL, `used_inodes` BIGINT(20) NOT NULL, PRIMARY KEY (`inode`)) ENGINE=InnoDB",
    "CREATE TABLE `jfs_detached_node` (`inode` BIGINT(20) NOT NULL, `added` BIGINT(20) NOT NULL, PRIMARY KEY (`inode`)) ENGINE=InnoDB",
    "CREATE TABLE `jfs_acl` (`id` INT(11) NOT NULL AUTO_INCREMENT, `owner` INT(11) DEFAULT NULL, `group` INT(11) DEFAULT NULL, `mask` INT(11) DEFAULT NULL, `other` INT(11) DEFAULT NULL, `named_users` BLOB DEFAULT NULL, `named_groups` BLOB DEFAULT NULL, PRIMARY KEY (`id`)) ENGINE=InnoDB",
    "CREATE TABLE `jfs_delegation_token` (`id` INT(11) NOT NULL AUTO_INCREMENT, `token` BLOB DEFAULT NULL, PRIMARY KEY (`id`)) ENGINE=InnoDB",
    "CREATE TABLE `jfs_change_log` (`id` BIGINT(20) NOT NULL AUTO_INCREMENT, `entry` TEXT NOT NULL, PRIMARY KEY (`id`)) ENGINE=InnoDB",
];

/// DDL for PostgreSQL, as `juicefs format` 1.4 creates it there (read with `pg_dump
/// --schema-only`; see `docs/reference/juicefs-1.4.2-ddl-postgres.sql`): serial ids, bytea for
/// names and blobs, the same unique and plain indexes.
pub const POSTGRES_DDL: &[&str] = &[
    "CREATE TABLE jfs_setting (name VARCHAR(255) NOT NULL PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE jfs_counter (name VARCHAR(255) NOT NULL PRIMARY KEY, value BIGINT NOT NULL)",
    "CREATE TABLE jfs_edge (id BIGSERIAL PRIMARY KEY, parent BIGINT NOT NULL, name BYTEA NOT NULL, inode BIGINT NOT NULL, type INTEGER NOT NULL)",
    "CREATE UNIQUE INDEX \"UQE_jfs_edge_edge\" ON jfs_edge (parent, name)",
    "CREATE INDEX \"IDX_jfs_edge_inode\" ON jfs_edge (inode)",
    "CREATE TABLE jfs_node (inode BIGINT NOT NULL PRIMARY KEY, type INTEGER NOT NULL, flags INTEGER NOT NULL, mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL, atime BIGINT NOT NULL, mtime BIGINT NOT NULL, ctime BIGINT NOT NULL, atimensec INTEGER DEFAULT 0 NOT NULL, mtimensec INTEGER DEFAULT 0 NOT NULL, ctimensec INTEGER DEFAULT 0 NOT NULL, nlink INTEGER NOT NULL, length BIGINT NOT NULL, rdev INTEGER, parent BIGINT, access_acl_id INTEGER, default_acl_id INTEGER, tier_id INTEGER)",
    "CREATE TABLE jfs_symlink (inode BIGINT NOT NULL PRIMARY KEY, target BYTEA NOT NULL)",
    "CREATE TABLE jfs_xattr (id BIGSERIAL PRIMARY KEY, inode BIGINT NOT NULL, name VARCHAR(255) NOT NULL, value BYTEA NOT NULL)",
    "CREATE UNIQUE INDEX \"UQE_jfs_xattr_name\" ON jfs_xattr (inode, name)",
    "CREATE TABLE jfs_chunk (id BIGSERIAL PRIMARY KEY, inode BIGINT NOT NULL, indx INTEGER NOT NULL, slices BYTEA NOT NULL)",
    "CREATE UNIQUE INDEX \"UQE_jfs_chunk_chunk\" ON jfs_chunk (inode, indx)",
    "CREATE TABLE jfs_chunk_ref (chunkid BIGINT NOT NULL PRIMARY KEY, size INTEGER NOT NULL, refs INTEGER NOT NULL)",
    "CREATE INDEX \"IDX_jfs_chunk_ref_refs\" ON jfs_chunk_ref (refs)",
    "CREATE TABLE jfs_delslices (chunkid BIGINT NOT NULL PRIMARY KEY, deleted BIGINT NOT NULL, slices BYTEA NOT NULL)",
    "CREATE TABLE jfs_session2 (sid BIGINT NOT NULL PRIMARY KEY, expire BIGINT NOT NULL, info BYTEA)",
    "CREATE TABLE jfs_sustained (id BIGSERIAL PRIMARY KEY, sid BIGINT NOT NULL, inode BIGINT NOT NULL)",
    "CREATE UNIQUE INDEX \"UQE_jfs_sustained_sustained\" ON jfs_sustained (sid, inode)",
    "CREATE TABLE jfs_delfile (inode BIGINT NOT NULL PRIMARY KEY, length BIGINT NOT NULL, expire BIGINT NOT NULL)",
    "CREATE TABLE jfs_flock (id BIGSERIAL PRIMARY KEY, inode BIGINT NOT NULL, sid BIGINT NOT NULL, owner BIGINT NOT NULL, ltype INTEGER NOT NULL)",
    "CREATE UNIQUE INDEX \"UQE_jfs_flock_flock\" ON jfs_flock (inode, sid, owner)",
    "CREATE TABLE jfs_plock (id BIGSERIAL PRIMARY KEY, inode BIGINT NOT NULL, sid BIGINT NOT NULL, owner BIGINT NOT NULL, records BYTEA NOT NULL)",
    "CREATE UNIQUE INDEX \"UQE_jfs_plock_plock\" ON jfs_plock (inode, sid, owner)",
    "CREATE TABLE jfs_dir_quota (inode BIGINT NOT NULL PRIMARY KEY, max_space BIGINT NOT NULL, max_inodes BIGINT NOT NULL, used_space BIGINT NOT NULL, used_inodes BIGINT NOT NULL)",
    "CREATE TABLE jfs_user_group_quota (qtype INTEGER NOT NULL, qkey BIGINT NOT NULL, max_space BIGINT NOT NULL, max_inodes BIGINT NOT NULL, used_space BIGINT NOT NULL, used_inodes BIGINT NOT NULL, PRIMARY KEY (qtype, qkey))",
    "CREATE TABLE jfs_dir_stats (inode BIGINT NOT NULL PRIMARY KEY, data_length BIGINT NOT NULL, used_space BIGINT NOT NULL, used_inodes BIGINT NOT NULL)",
    "CREATE TABLE jfs_detached_node (inode BIGINT NOT NULL PRIMARY KEY, added BIGINT NOT NULL)",
    "CREATE TABLE jfs_acl (id SERIAL PRIMARY KEY, owner INTEGER, \"group\" INTEGER, mask INTEGER, other INTEGER, named_users BYTEA, named_groups BYTEA)",
    "CREATE TABLE jfs_delegation_token (id SERIAL PRIMARY KEY, token BYTEA)",
    "CREATE TABLE jfs_change_log (id BIGSERIAL PRIMARY KEY, entry TEXT NOT NULL)",
];
