//! One conformance suite, every engine: the cases of `tidefs_meta::testkit` run on SQLite and on
//! every database server whose URL the environment gives (see `build.rs`). Each case formats a
//! volume of its own: a temporary file on SQLite, a fresh `table_prefix` on a server (dropped
//! again when the case ends).

use std::sync::Arc;
use tidefs_meta::{testkit, Volume};

mod common;

use common::{unique, Guard};

async fn open_fresh(url: &str) -> (Arc<dyn Volume>, Guard) {
    let meta = tidefs_meta::open(url)
        .await
        .unwrap_or_else(|e| panic!("engine {url} given but not usable: {e}"));
    meta.init(&testkit::test_format(), false)
        .await
        .expect("format");
    meta.load().await.expect("load");
    let guard = Guard {
        server: Some(url.to_string()),
        _dir: None,
    };
    (meta, guard)
}

mod sqlite {
    use super::*;

    async fn fixture() -> (Arc<dyn Volume>, Guard) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite3://{}/meta.db", dir.path().display());
        let (meta, mut guard) = open_fresh(&url).await;
        guard.server = None;
        guard._dir = Some(dir);
        (meta, guard)
    }

    tidefs_meta::conformance_suite!(fixture);
}

/// The in-memory KV engine (`memkv://`), the reference of the KV family: a store of its own per
/// case, emptied when the case ends.
mod memkv {
    use super::*;

    async fn fixture() -> (Arc<dyn Volume>, Guard) {
        open_fresh(&format!("memkv://{}", unique("m"))).await
    }

    tidefs_meta::conformance_suite!(fixture);
}

/// TiKV through the real `tikv-client`, against the protocol-level stand-in (a test double,
/// not TiKV): a stand-in of its own per case.
mod tikv_standin {
    use super::*;

    async fn fixture() -> (Arc<dyn Volume>, Guard) {
        let (_standin, addr) = ::tikv_standin::StandIn::start("127.0.0.1:0")
            .await
            .expect("stand-in");
        let (meta, mut guard) = open_fresh(&format!("tikv://{addr}/case")).await;
        // the stand-in's memory goes with its server task
        guard.server = None;
        (meta, guard)
    }

    tidefs_meta::conformance_suite!(fixture);
}

/// A real TiKV cluster, when `TIDEFS_TEST_TIKV=pd-host:port` is set (a volume name of its own
/// per case, its keys removed at the end).
#[cfg(tidefs_test_tikv)]
mod tikv_real {
    use super::*;

    async fn fixture() -> (Arc<dyn Volume>, Guard) {
        let pd = std::env::var("TIDEFS_TEST_TIKV").expect("TIDEFS_TEST_TIKV");
        open_fresh(&format!("tikv://{pd}/{}", unique("t"))).await
    }

    tidefs_meta::conformance_suite!(fixture);
}

/// Without `TIDEFS_TEST_TIKV` the real-cluster tier does not run: reported as ignored, never as
/// passed.
#[cfg(not(tidefs_test_tikv))]
#[test]
#[ignore = "TIDEFS_TEST_TIKV is not set: the conformance suite did not run against a real TiKV cluster (only against the stand-in)"]
fn real_tikv_cluster_not_configured() {}

#[cfg(tidefs_test_mysql)]
mod mysql {
    use super::common::server_url;
    use super::*;

    async fn fixture() -> (Arc<dyn Volume>, Guard) {
        open_fresh(&server_url("TIDEFS_TEST_MYSQL")).await
    }

    tidefs_meta::conformance_suite!(fixture);
}

#[cfg(tidefs_test_postgres)]
mod postgres {
    use super::common::server_url;
    use super::*;

    async fn fixture() -> (Arc<dyn Volume>, Guard) {
        open_fresh(&server_url("TIDEFS_TEST_POSTGRES")).await
    }

    tidefs_meta::conformance_suite!(fixture);
}
