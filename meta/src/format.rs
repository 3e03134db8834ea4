//! The volume setting (`format`), a JSON object stored in the metadata engine.
//!
//! Field names are the JuiceFS CE ones. Unknown fields are kept as they were read and written back
//! unchanged, so a newer client's settings survive a round trip through tidefs.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Highest `MetaVersion` this client understands.
pub const MAX_META_VERSION: u32 = 1;
/// The JuiceFS client version whose volume format this client implements.
pub const COMPAT_CLIENT_VERSION: (u32, u32, u32) = (1, 4, 2);
/// Default block size in KiB.
pub const DEFAULT_BLOCK_SIZE_KIB: u32 = 4096;
/// Smallest allowed block size in KiB.
pub const MIN_BLOCK_SIZE_KIB: u32 = 64;
/// Largest allowed block size in KiB.
pub const MAX_BLOCK_SIZE_KIB: u32 = 16384;

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}
fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}

/// The volume setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Format {
    /// Volume name (also the object key prefix).
    #[serde(rename = "Name")]
    pub name: String,
    /// Volume UUID.
    #[serde(rename = "UUID")]
    pub uuid: String,
    /// Object storage kind (`file`, `s3`, ...).
    #[serde(rename = "Storage")]
    pub storage: String,
    /// Bucket: a directory ending in `/` for `file`, a URL for object stores.
    #[serde(rename = "Bucket")]
    pub bucket: String,
    /// Access key for the object store.
    #[serde(
        rename = "AccessKey",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub access_key: String,
    /// Secret key for the object store (redacted by `status`).
    #[serde(
        rename = "SecretKey",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub secret_key: String,
    /// Block size in KiB.
    #[serde(rename = "BlockSize")]
    pub block_size_kib: u32,
    /// `none`, `lz4` or `zstd`.
    #[serde(rename = "Compression", default = "default_compression")]
    pub compression: String,
    /// Number of buckets data is spread over (0 = one).
    #[serde(rename = "Shards", default, skip_serializing_if = "is_zero_u32")]
    pub shards: u32,
    /// Whether object keys carry a hash prefix.
    #[serde(rename = "HashPrefix", default, skip_serializing_if = "is_false")]
    pub hash_prefix: bool,
    /// Capacity limit in bytes (0 = unlimited).
    #[serde(rename = "Capacity", default, skip_serializing_if = "is_zero_u64")]
    pub capacity: u64,
    /// Inode limit (0 = unlimited).
    #[serde(rename = "Inodes", default, skip_serializing_if = "is_zero_u64")]
    pub inodes: u64,
    /// Encryption key (encrypted volumes are not supported yet).
    #[serde(
        rename = "EncryptKey",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub encrypt_key: String,
    /// Default upload bandwidth limit of a client, megabits per second (0: none).
    #[serde(rename = "UploadLimit", default, skip_serializing_if = "is_zero_i64")]
    pub upload_limit: i64,
    /// Default download bandwidth limit of a client, megabits per second (0: none).
    #[serde(rename = "DownloadLimit", default, skip_serializing_if = "is_zero_i64")]
    pub download_limit: i64,
    /// Days unlinked files stay in the trash (0 = no trash).
    #[serde(rename = "TrashDays", default)]
    pub trash_days: u32,
    /// Version of the metadata layout.
    #[serde(rename = "MetaVersion", default)]
    pub meta_version: u32,
    /// Oldest client version allowed to mount.
    #[serde(
        rename = "MinClientVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub min_client_version: String,
    /// Newest client version allowed to mount.
    #[serde(
        rename = "MaxClientVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub max_client_version: String,
    /// Whether per-directory statistics are kept.
    #[serde(rename = "DirStats", default, skip_serializing_if = "is_false")]
    pub dir_stats: bool,
    /// Whether usage per user and group is kept (user and group quotas).
    #[serde(rename = "UserGroupQuota", default, skip_serializing_if = "is_false")]
    pub user_group_quota: bool,
    /// Whether POSIX ACLs are enabled.
    #[serde(rename = "EnableACL", default)]
    pub enable_acl: bool,
    /// Every field this client does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn default_compression() -> String {
    "none".into()
}

impl Format {
    /// A new setting with the defaults `juicefs format` uses.
    pub fn new(name: &str, storage: &str, bucket: &str) -> Self {
        let mut extra = serde_json::Map::new();
        extra.insert(
            "EncryptAlgo".into(),
            serde_json::Value::String("aes256gcm-rsa".into()),
        );
        Format {
            name: name.into(),
            uuid: uuid::Uuid::new_v4().to_string(),
            storage: storage.into(),
            bucket: bucket.into(),
            access_key: String::new(),
            secret_key: String::new(),
            block_size_kib: DEFAULT_BLOCK_SIZE_KIB,
            compression: default_compression(),
            shards: 0,
            hash_prefix: false,
            capacity: 0,
            inodes: 0,
            encrypt_key: String::new(),
            upload_limit: 0,
            download_limit: 0,
            trash_days: 1,
            meta_version: 1,
            min_client_version: "1.1.0-A".into(),
            max_client_version: String::new(),
            dir_stats: true,
            user_group_quota: false,
            enable_acl: false,
            extra,
        }
    }

    /// Whether the secrets are stored encrypted (`KeyEncrypted`, as `juicefs format` stores
    /// them).
    pub fn keys_encrypted(&self) -> bool {
        self.extra
            .get("KeyEncrypted")
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }

    /// The cipher JuiceFS uses for stored secrets: AES-GCM keyed by the MD5 of the volume UUID
    /// (its default `EncryptAlgo`; the SM4 variant is not supported).
    fn key_cipher(&self) -> Result<aes_gcm::Aes128Gcm> {
        use aes_gcm::KeyInit;
        use md5::Digest;
        let algo = self
            .extra
            .get("EncryptAlgo")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        if algo.starts_with("sm4") {
            return Err(Error::incompatible(format!(
                "volume {:?} stores its keys with {algo}, which tidefs does not support",
                self.name
            )));
        }
        let key = md5::Md5::digest(self.uuid.as_bytes());
        aes_gcm::Aes128Gcm::new_from_slice(&key)
            .map_err(|_| Error::corrupt("cannot derive the key cipher of the volume"))
    }

    /// The object store secret key in clear text.
    pub fn plain_secret_key(&self) -> Result<String> {
        self.plain_secret(&self.secret_key, "SecretKey")
    }

    /// The object store session token in clear text (empty when none).
    pub fn plain_session_token(&self) -> Result<String> {
        let token = self
            .extra
            .get("SessionToken")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        self.plain_secret(&token, "SessionToken")
    }

    fn plain_secret(&self, stored: &str, what: &str) -> Result<String> {
        use aes_gcm::aead::Aead;
        use base64::Engine;
        if stored.is_empty() || !self.keys_encrypted() {
            return Ok(stored.to_string());
        }
        if stored == "removed" {
            return Err(Error::invalid(format!(
                "the {what} of volume {:?} was removed from its setting: pass it again (tidefs format --force with the key)",
                self.name
            )));
        }
        let bad = || {
            Error::corrupt(format!(
                "the stored {what} of volume {:?} cannot be decrypted",
                self.name
            ))
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(stored)
            .map_err(|_| bad())?;
        if raw.len() < 12 + 16 {
            return Err(bad());
        }
        let (nonce, ct) = raw.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| bad())?;
        let plain = self
            .key_cipher()?
            .decrypt(&nonce.into(), ct)
            .map_err(|_| bad())?;
        String::from_utf8(plain).map_err(|_| bad())
    }

    /// Store the secrets encrypted, as `juicefs format` does (so the database holds no key in
    /// clear text); idempotent.
    pub fn encrypt_keys(&mut self) -> Result<()> {
        use aes_gcm::aead::Aead;
        use base64::Engine;
        if self.keys_encrypted() || self.secret_key.is_empty() {
            return Ok(());
        }
        let cipher = self.key_cipher()?;
        // a fresh random nonce per secret (a v4 UUID is 122 random bits)
        let id = uuid::Uuid::new_v4();
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&id.as_bytes()[..12]);
        let ct = cipher
            .encrypt(&nonce.into(), self.secret_key.as_bytes())
            .map_err(|_| Error::invalid("cannot encrypt the secret key"))?;
        let mut buf = nonce.to_vec();
        buf.extend_from_slice(&ct);
        self.secret_key = base64::engine::general_purpose::STANDARD.encode(buf);
        self.extra
            .insert("KeyEncrypted".into(), serde_json::Value::Bool(true));
        Ok(())
    }

    /// Parse the stored JSON.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| {
            Error::corrupt(
                "the volume setting (format) stored in the metadata engine is not valid JSON",
            )
            .with_source(e)
        })
    }

    /// The JSON to store.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map_err(|e| Error::invalid("cannot encode the volume setting").with_source(e))
    }

    /// The same setting with secrets replaced by `removed`, for display.
    pub fn redacted(&self) -> Self {
        let mut f = self.clone();
        if !f.secret_key.is_empty() {
            f.secret_key = "removed".into();
        }
        if !f.encrypt_key.is_empty() {
            f.encrypt_key = "removed".into();
        }
        for key in ["SessionToken", "AccessKey2", "SecretKey2"] {
            if f.extra.contains_key(key) {
                f.extra
                    .insert(key.into(), serde_json::Value::String("removed".into()));
            }
        }
        f
    }

    /// Block size in bytes.
    pub fn block_size(&self) -> usize {
        self.block_size_kib as usize * 1024
    }

    /// Refuse a setting this client cannot serve safely, naming what is wrong.
    pub fn check_supported(&self) -> Result<()> {
        if self.meta_version > MAX_META_VERSION {
            return Err(Error::incompatible(format!(
                "volume {:?} has metadata version {}, but tidefs supports up to {}: upgrade tidefs",
                self.name, self.meta_version, MAX_META_VERSION
            )));
        }
        if !self.min_client_version.is_empty() {
            let min = parse_version(&self.min_client_version).ok_or_else(|| {
                Error::incompatible(format!(
                    "volume {:?} has an unreadable MinClientVersion {:?}",
                    self.name, self.min_client_version
                ))
            })?;
            if min > COMPAT_CLIENT_VERSION {
                return Err(Error::incompatible(format!(
                    "volume {:?} requires a client compatible with JuiceFS {} or newer; tidefs implements the {}.{}.{} format: upgrade tidefs",
                    self.name, self.min_client_version, COMPAT_CLIENT_VERSION.0, COMPAT_CLIENT_VERSION.1, COMPAT_CLIENT_VERSION.2
                )));
            }
        }
        if !self.max_client_version.is_empty() {
            if let Some(max) = parse_version(&self.max_client_version) {
                if max < COMPAT_CLIENT_VERSION {
                    return Err(Error::incompatible(format!(
                        "volume {:?} allows clients up to JuiceFS {} only",
                        self.name, self.max_client_version
                    )));
                }
            }
        }
        if !self.encrypt_key.is_empty() {
            return Err(Error::incompatible(format!(
                "volume {:?} is encrypted; tidefs does not support encrypted volumes yet",
                self.name
            )));
        }
        if self.shards > 1 {
            return Err(Error::incompatible(format!(
                "volume {:?} is sharded over {} buckets; tidefs does not support sharded volumes yet",
                self.name, self.shards
            )));
        }
        if !(MIN_BLOCK_SIZE_KIB..=MAX_BLOCK_SIZE_KIB).contains(&self.block_size_kib) {
            return Err(Error::corrupt(format!(
                "volume {:?} has block size {} KiB, outside {}..={} KiB",
                self.name, self.block_size_kib, MIN_BLOCK_SIZE_KIB, MAX_BLOCK_SIZE_KIB
            )));
        }
        if !matches!(self.compression.as_str(), "none" | "lz4" | "zstd" | "") {
            return Err(Error::incompatible(format!(
                "volume {:?} uses compression {:?}; tidefs supports none, lz4 and zstd",
                self.name, self.compression
            )));
        }
        Ok(())
    }
}

/// Parse `1.2.3` or `1.2.3-A` into numbers (the suffix is ignored).
fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let core = v.split(['-', '+']).next()?;
    let mut it = core.split('.');
    let a = it.next()?.parse().ok()?;
    let b = it.next().unwrap_or("0").parse().ok()?;
    let c = it.next().unwrap_or("0").parse().ok()?;
    Some((a, b, c))
}

/// Whether `name` is a valid volume name: 3..=63 characters of lowercase letters, digits and `-`,
/// starting and ending with a letter or digit (the rule JuiceFS applies, since names become
/// bucket prefixes).
pub fn valid_volume_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_survive_round_trip() {
        let text = r#"{"Name":"v1","UUID":"u","Storage":"file","Bucket":"/b/","BlockSize":4096,
            "Compression":"none","TrashDays":1,"MetaVersion":1,"MinClientVersion":"1.1.0-A",
            "Tiers":{"0":{"ID":0}},"EnableACL":false,"FutureThing":42}"#;
        let f = Format::from_json(text).expect("parse");
        assert_eq!(f.extra.get("FutureThing"), Some(&serde_json::json!(42)));
        let back = Format::from_json(&f.to_json().expect("encode")).expect("reparse");
        assert_eq!(back, f);
        f.check_supported().expect("supported");
    }

    #[test]
    fn refuses_newer_versions() {
        let mut f = Format::new("vol", "file", "/b/");
        f.meta_version = 2;
        assert_eq!(
            f.check_supported().map_err(|e| e.kind()).err(),
            Some(crate::ErrorKind::Incompatible)
        );
        let mut f = Format::new("vol", "file", "/b/");
        f.min_client_version = "1.9.0".into();
        assert!(f.check_supported().is_err());
        f.min_client_version = "1.1.0-A".into();
        assert!(f.check_supported().is_ok());
    }

    #[test]
    fn volume_names() {
        assert!(valid_volume_name("myjfs"));
        assert!(valid_volume_name("a-1"));
        assert!(!valid_volume_name("ab"));
        assert!(!valid_volume_name("Bad"));
        assert!(!valid_volume_name("-abc"));
        assert!(!valid_volume_name("a_b_c"));
    }

    #[test]
    fn redaction_hides_secrets() {
        let mut f = Format::new("vol", "s3", "http://x/b");
        f.secret_key = "hunter2".into();
        let shown = f.redacted().to_json().expect("json");
        assert!(!shown.contains("hunter2"));
    }
}
