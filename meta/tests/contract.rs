//! The engine contract suite (`tidefs_meta::testkit::contract`) on every engine: SQLite, memkv,
//! TiKV through the real `tikv-client` against the stand-in (a test double, not TiKV), and the
//! database servers whose URLs the environment gives (see `build.rs`). Each case gets a fresh
//! engine with its layout prepared: a temporary SQLite file, a fresh store, or a fresh
//! `table_prefix` on a server (dropped when the case ends).

use std::sync::Arc;
use tidefs_meta::engine::Engine;
use tidefs_meta::kv::{keys::Keys, mem::MemKv, tikv::TikvStore, tikv::TikvUrl, KvEngine};
use tidefs_meta::sql::SqlEngine;

mod common;

use common::{unique, Guard};

async fn sql(url: String, dir: Option<tempfile::TempDir>) -> (SqlEngine, Guard) {
    let e = SqlEngine::open(&url)
        .await
        .unwrap_or_else(|e| panic!("engine {url} given but not usable: {e}"));
    e.prepare().await.expect("prepare");
    let server = dir.is_none().then_some(url);
    (e, Guard { server, _dir: dir })
}

mod sqlite {
    use super::*;

    async fn fixture() -> (SqlEngine, Guard) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite3://{}/meta.db", dir.path().display());
        sql(url, Some(dir)).await
    }

    tidefs_meta::contract_suite!(fixture);
}

mod memkv {
    use super::*;

    async fn fixture() -> (KvEngine, Guard) {
        let name = unique("c");
        let e = KvEngine::new(
            MemKv::named(&name),
            Keys::new(""),
            format!("memkv://{name}"),
        );
        (
            e,
            Guard {
                server: None,
                _dir: None,
            },
        )
    }

    tidefs_meta::contract_suite!(fixture);
}

mod tikv_standin {
    use super::*;

    async fn fixture() -> (KvEngine, Guard) {
        let (_standin, addr) = ::tikv_standin::StandIn::start("127.0.0.1:0")
            .await
            .expect("stand-in");
        let url = TikvUrl::parse(&format!("{addr}/case")).expect("url");
        let store = Arc::new(TikvStore::connect(&url).await.expect("connect"));
        let e = KvEngine::new(store, Keys::new("case"), format!("tikv://{addr}/case"));
        // the stand-in's memory goes with its server task
        (
            e,
            Guard {
                server: None,
                _dir: None,
            },
        )
    }

    tidefs_meta::contract_suite!(fixture);
}

#[cfg(tidefs_test_mysql)]
mod mysql {
    use super::common::server_url;
    use super::*;

    async fn fixture() -> (SqlEngine, Guard) {
        sql(server_url("TIDEFS_TEST_MYSQL"), None).await
    }

    tidefs_meta::contract_suite!(fixture);
}

#[cfg(tidefs_test_postgres)]
mod postgres {
    use super::common::server_url;
    use super::*;

    async fn fixture() -> (SqlEngine, Guard) {
        sql(server_url("TIDEFS_TEST_POSTGRES"), None).await
    }

    tidefs_meta::contract_suite!(fixture);
}
