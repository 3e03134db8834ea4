//! The transactional-KV engine family, in the JuiceFS CE 1.x TiKV layout ([`keys`]), over the
//! small interface of [`store`]: `memkv://` ([`mem::MemKv`]) and TiKV ([`tikv`]).
//!
//! This is storage only: [`KvEngine`] implements the engine contract ([`crate::engine`]) with
//! gets, puts and scans ([`txn`]); every rule of what an operation does lives in the core.
//! Transactions are optimistic: a conflict surfaces at commit and the core runs the
//! transaction again; the core also serializes this client's own transactions on one directory
//! locally, and may skip a directory's time update moments after the last one (`--skip-dir-mtime`),
//! guarding against a concurrent removal with [`keys::Keys::dir_guard`] instead.

pub mod keys;
pub mod latest;
pub mod mem;
pub mod store;
pub mod tikv;
mod txn;

pub use crate::posix::DEFAULT_SKIP_DIR_MTIME;
pub use txn::KvTx;

use crate::engine::{Engine, Features, Mode};
use crate::error::Result;
use async_trait::async_trait;
use keys::{prefix_end, Keys};
use std::sync::Arc;
use store::KvStore;

/// The KV metadata engine of one volume.
pub struct KvEngine {
    store: Arc<dyn KvStore>,
    keys: Keys,
    /// The meta URL without secrets, for messages.
    shown: String,
}

impl KvEngine {
    /// The engine over `store`, for the volume whose keys start with `keys`' prefix.
    pub fn new(store: Arc<dyn KvStore>, keys: Keys, shown: String) -> Self {
        Self { store, keys, shown }
    }
}

/// A metadata client over a KV store (tests build these directly).
pub type KvMeta = crate::Client<KvEngine>;

impl KvMeta {
    /// A client of the volume whose keys start with `keys`' prefix in `store`.
    pub fn over(store: Arc<dyn KvStore>, keys: Keys, shown: String) -> Self {
        crate::Client::new(KvEngine::new(store, keys, shown))
    }
}

#[async_trait]
impl Engine for KvEngine {
    type Txn<'a> = KvTx<'a>;

    fn name(&self) -> &'static str {
        self.store.name()
    }

    fn shown(&self) -> &str {
        &self.shown
    }

    fn features(&self) -> Features {
        Features {
            optimistic: true,
            one_step: false,
        }
    }

    async fn begin(&self, mode: Mode) -> Result<KvTx<'_>> {
        let t = match mode {
            Mode::Latest => self.store.begin_latest().await?,
            Mode::Write | Mode::Read | Mode::Single => self.store.begin().await?,
        };
        Ok(KvTx {
            t,
            k: &self.keys,
            read_only: matches!(mode, Mode::Read | Mode::Latest),
        })
    }

    async fn destroy(&self) -> Result<()> {
        let prefix = self.keys.prefix().to_vec();
        let end = prefix_end(&prefix);
        self.store.delete_range(&prefix, &end).await
    }

    async fn maintain(&self) -> Result<()> {
        self.store.maintain().await
    }
}
