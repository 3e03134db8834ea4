//! A COMMIT that reaches the database server but whose answer is lost with the connection: the
//! engine cannot know whether it was applied, runs the transaction again, and must not then
//! fail because of its own first run (a rename finding its source gone, a create finding its
//! name taken) nor apply it twice (a slice recorded twice).
//!
//! A TCP proxy between the engine and MariaDB / PostgreSQL (the real servers of
//! `scripts/services.sh`) forwards a COMMIT when told to, holds back the server's answer and
//! closes both connections.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
#[allow(unused_imports)]
use tidefs_meta::testkit;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Forwards to `target`; `armed` COMMITs are delivered and their answers dropped.
#[derive(Clone, Default)]
struct LosingProxy {
    armed: Arc<AtomicU32>,
    lost: Arc<AtomicU32>,
}

impl LosingProxy {
    async fn start(target: String) -> (Self, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let proxy = Self::default();
        let p = proxy.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (p, target) = (p.clone(), target.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&target).await {
                        p.relay(client, server).await;
                    }
                });
            }
        });
        (proxy, addr)
    }

    /// Lose the answer of the next COMMIT.
    fn arm(&self) {
        self.armed.store(1, Ordering::SeqCst);
    }

    async fn relay(&self, client: TcpStream, server: TcpStream) {
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let frozen = Arc::new(AtomicBool::new(false));
        let f = frozen.clone();
        let back = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 << 10];
            loop {
                match sr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if f.load(Ordering::SeqCst) || cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let commit = buf[..n].windows(6).any(|w| w == b"COMMIT");
            let lose = commit
                && self
                    .armed
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |a| a.checked_sub(1))
                    .is_ok();
            if lose {
                frozen.store(true, Ordering::SeqCst);
                self.lost.fetch_add(1, Ordering::SeqCst);
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
            if lose {
                // the server applies it; its answer is dropped and the connection goes
                tokio::time::sleep(Duration::from_millis(300)).await;
                break;
            }
        }
        back.abort();
    }
}

/// `url` with its `host:port` replaced by `addr`, and a table prefix of its own.
#[allow(dead_code)]
fn through(url: &str, addr: SocketAddr) -> (String, String) {
    let at = url.find('@').map(|i| i + 1).unwrap_or(0);
    let rest = &url[at..];
    let end = rest.find('/').unwrap_or(rest.len());
    let hostport = rest[..end]
        .trim_matches(|c| c == '(' || c == ')')
        .to_string();
    let proxied = url.replacen(&hostport, &addr.to_string(), 1);
    let sep = if proxied.contains('?') { '&' } else { '?' };
    let prefix = format!("lost{}_", std::process::id());
    (format!("{proxied}{sep}table_prefix={prefix}"), hostport)
}

impl testkit::lost::Loser for LosingProxy {
    fn arm(&self) {
        LosingProxy::arm(self)
    }
    fn lost(&self) -> u32 {
        self.lost.load(Ordering::SeqCst)
    }
}

#[allow(dead_code)]
async fn lost_commits_are_not_errors(var: &str) {
    let base = std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set"));
    let (_, hostport) = through(&base, "127.0.0.1:1".parse().expect("addr"));
    let (proxy, addr) = LosingProxy::start(hostport).await;
    let (url, _) = through(&base, addr);
    let m = tidefs_meta::open(&url)
        .await
        .expect("open through the proxy");
    // a capacity makes PostgreSQL write slices in a transaction (COMMIT) rather than in its one
    // autocommit statement, whose text a prepared statement does not resend
    let mut fmt = testkit::test_format();
    fmt.capacity = 1 << 40;
    m.init(&fmt, false).await.expect("format");
    m.load().await.expect("load");
    testkit::lost::sequence(&m, &proxy).await;
    m.destroy().await.expect("destroy");
}

#[cfg(tidefs_test_mysql)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_lost_commit_answers() {
    lost_commits_are_not_errors("TIDEFS_TEST_MYSQL").await;
}

#[cfg(tidefs_test_postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lost_commit_answers() {
    lost_commits_are_not_errors("TIDEFS_TEST_POSTGRES").await;
}

/// Without the servers this file has no test to run; say so rather than pass.
#[cfg(not(any(tidefs_test_mysql, tidefs_test_postgres)))]
#[test]
#[ignore = "TIDEFS_TEST_MYSQL / TIDEFS_TEST_POSTGRES not set: start scripts/services.sh"]
fn servers_not_configured() {}
