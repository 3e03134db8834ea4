-- Tables juicefs 1.4.2 creates on MariaDB (`juicefs format mysql://...`), dumped with mariadb-dump --no-data.
-- Reference for the MySQL dialect of the SQL engine (issue 5); captured by scripts/services.sh + juicefs format.
CREATE TABLE `jfs_acl` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `owner` int(11) DEFAULT NULL,
  `group` int(11) DEFAULT NULL,
  `mask` int(11) DEFAULT NULL,
  `other` int(11) DEFAULT NULL,
  `named_users` blob DEFAULT NULL,
  `named_groups` blob DEFAULT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci;
CREATE TABLE `jfs_change_log` (
  `id` bigint(20) NOT NULL AUTO_INCREMENT,
  `entry` text NOT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci;
CREATE TABLE `jfs_chunk` (
  `id` bigint(20) NOT NULL AUTO_INCREMENT,
  `inode` bigint(20) NOT NULL,
  `indx` int(11) NOT NULL,
  `slices` blob NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `UQE_jfs_chunk_chunk` (`inode`,`indx`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci;
CREATE TABLE `jfs_chunk_ref` (
  `chunkid` bigint(20) NOT NULL,
  `size` int(11) NOT NULL,
  `refs` int(11) NOT NULL,
  PRIMARY KEY (`chunkid`),
  KEY `IDX_jfs_chunk_ref_refs` (`refs`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci;
CREATE TABLE `jfs_counter` (
  `name` varchar(255) NOT NULL,
  `value` bigint(20) NOT NULL,
  PRIMARY KEY (`name`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci;
CREATE TABLE `jfs_delegation_token` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `token` blob DEFAULT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci;
CREATE TABLE `jfs_delfile` (
  `inode` bigint(20) NOT NULL,
  `length` bigint(20) NOT NULL,
  `expire` bigint(20) NOT NULL,
  PRIMARY KEY (`inode`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci;
CREATE TABLE `jfs_delslices` (
  `chunkid` bigint(20) NOT NULL,
  `deleted` bigint(20) NOT NULL,
  `slices` blob NOT NULL,
  PRIMARY KEY (`chunkid`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci;
CREATE TABLE `jfs_detached_node` (
  `inode` bigint(20) NOT NULL,
  `added` bigint(20) NOT NULL,
  PRIMARY KEY (`inode`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci;
CREATE TABLE `jfs_dir_quota` (
  `inode` bigint(20) NOT NULL,
  `max_space` bigint(20) NOT NULL,
  `max_inodes` bigint(20) NOT NULL,
  `used_space` bigint(20) NOT NULL,
  `used_inodes` bigint(20) NOT NULL,
  PRIMARY KEY (`inode`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci;
CREATE TABLE `jfs_dir_stats` (
  `inode` bigint(20) NOT NULL,
  `data_length` bigint(20) NOT NULL,
  `used_space` bigint(20) NOT NULL,
  `used_inodes` bigint(20) NOT NULL,
  PRIMARY KEY (`inode`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci;
CREATE TABLE `jfs_edge` (
  `id` bigint(20) NOT NULL AUTO_INCREMENT,
  `parent` bigint(20) NOT NULL,
  `name` varbinary(255) NOT NULL,
  `inode` bigint(20) NOT NULL,
  `type` int(11) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `UQE_jfs_edge_edge` (`parent`,`name`),
  KEY `IDX_jfs_edge_inode` (`inode`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci;
CREATE TABLE `jfs_flock` (
  `id` bigint(20) NOT NULL AUTO_INCREMENT,
  `inode` bigint(20) NOT NULL,
  `sid` bigint(20) NOT NULL,
  `owner` bigint(20) NOT NULL,
  `ltype` int(11) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `UQE_jfs_flock_flock` (`inode`,`sid`,`owner`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci;
CREATE TABLE `jfs_node` (
  `inode` bigint(20) NOT NULL,
  `type` int(11) NOT NULL,
  `flags` int(11) NOT NULL,
  `mode` int(11) NOT NULL,
  `uid` int(11) NOT NULL,
  `gid` int(11) NOT NULL,
  `atime` bigint(20) NOT NULL,
  `mtime` bigint(20) NOT NULL,
  `ctime` bigint(20) NOT NULL,
  `atimensec` int(11) NOT NULL DEFAULT 0,
  `mtimensec` int(11) NOT NULL DEFAULT 0,
  `ctimensec` int(11) NOT NULL DEFAULT 0,
  `nlink` int(11) NOT NULL,
  `length` bigint(20) NOT NULL,
  `rdev` int(11) DEFAULT NULL,
  `parent` bigint(20) DEFAULT NULL,
  `access_acl_id` int(11) DEFAULT NULL,
  `default_acl_id` int(11) DEFAULT NULL,
  `tier_id` int(11) DEFAULT NULL,
  PRIMARY KEY (`inode`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci;
CREATE TABLE `jfs_plock` (
  `id` bigint(20) NOT NULL AUTO_INCREMENT,
  `inode` bigint(20) NOT NULL,
  `sid` bigint(20) NOT NULL,
  `owner` bigint(20) NOT NULL,
  `records` blob NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `UQE_jfs_plock_plock` (`inode`,`sid`,`owner`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci;
CREATE TABLE `jfs_session2` (
  `sid` bigint(20) NOT NULL,
  `expire` bigint(20) NOT NULL,
  `info` blob DEFAULT NULL,
  PRIMARY KEY (`sid`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci;
CREATE TABLE `jfs_setting` (
  `name` varchar(255) NOT NULL,
  `value` text NOT NULL,
  PRIMARY KEY (`name`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci;
CREATE TABLE `jfs_sustained` (
  `id` bigint(20) NOT NULL AUTO_INCREMENT,
  `sid` bigint(20) NOT NULL,
  `inode` bigint(20) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `UQE_jfs_sustained_sustained` (`sid`,`inode`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci;
CREATE TABLE `jfs_symlink` (
  `inode` bigint(20) NOT NULL,
  `target` varbinary(4096) NOT NULL,
  PRIMARY KEY (`inode`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci;
CREATE TABLE `jfs_user_group_quota` (
  `qtype` int(11) NOT NULL,
  `qkey` bigint(20) NOT NULL,
  `max_space` bigint(20) NOT NULL,
  `max_inodes` bigint(20) NOT NULL,
  `used_space` bigint(20) NOT NULL,
  `used_inodes` bigint(20) NOT NULL,
  PRIMARY KEY (`qtype`,`qkey`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci;
CREATE TABLE `jfs_xattr` (
  `id` bigint(20) NOT NULL AUTO_INCREMENT,
  `inode` bigint(20) NOT NULL,
  `name` varchar(255) NOT NULL,
  `value` blob NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `UQE_jfs_xattr_name` (`inode`,`name`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci;
