//! Connections to a database server, reused across operations.
//!
//! sqlx's `Pool` pings every connection given back: a spawned task and one more command for the
//! server per metadata operation. Here a connection goes back to the idle list as it is, unless the operation on it
//! failed in a way that may have left it broken or mid-transaction, in which case it is closed.
//! The knobs are JuiceFS's: at most `max_open` connections, at most `max_idle` idle ones,
//! closed after `idle_time` unused or `life_time` in all.

use futures::future::BoxFuture;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, SemaphorePermit};

/// Makes one new connection, set up for its pool.
pub(crate) type Connect<C> =
    Box<dyn Fn() -> BoxFuture<'static, Result<C, sqlx::Error>> + Send + Sync>;

/// Limits of a pool.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub max_open: u32,
    pub max_idle: Option<u32>,
    pub idle_time: Option<Duration>,
    pub life_time: Option<Duration>,
    /// How long to wait for a connection when `max_open` are in use.
    pub acquire_timeout: Duration,
}

struct Idle<C> {
    conn: C,
    since: Instant,
    born: Instant,
}

pub(crate) struct ServerPool<C> {
    connect: Connect<C>,
    idle: Mutex<Vec<Idle<C>>>,
    permits: Semaphore,
    limits: Limits,
}

/// A connection lent out; it goes back to the idle list when dropped, unless marked broken.
pub(crate) struct Lease<'a, C> {
    conn: Option<C>,
    born: Instant,
    pool: &'a ServerPool<C>,
    _permit: SemaphorePermit<'a>,
    /// Cleared when an operation may have left the connection unusable.
    pub(crate) reusable: bool,
}

impl<C> ServerPool<C> {
    pub(crate) fn new(connect: Connect<C>, limits: Limits) -> Self {
        ServerPool {
            connect,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(limits.max_open.max(1) as usize),
            limits,
        }
    }

    pub(crate) async fn acquire(&self) -> Result<Lease<'_, C>, sqlx::Error> {
        let permit = tokio::time::timeout(self.limits.acquire_timeout, self.permits.acquire())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        loop {
            let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
            let Some(i) = idle else { break };
            let stale = self.limits.idle_time.is_some_and(|t| i.since.elapsed() > t)
                || self.limits.life_time.is_some_and(|t| i.born.elapsed() > t);
            if !stale {
                return Ok(Lease {
                    conn: Some(i.conn),
                    born: i.born,
                    pool: self,
                    _permit: permit,
                    reusable: true,
                });
            }
        }
        let conn = (self.connect)().await?;
        Ok(Lease {
            conn: Some(conn),
            born: Instant::now(),
            pool: self,
            _permit: permit,
            reusable: true,
        })
    }
}

impl<C> Lease<'_, C> {
    pub(crate) fn conn(&mut self) -> Option<&mut C> {
        self.conn.as_mut()
    }
}

impl<C> Drop for Lease<'_, C> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !self.reusable {
            return; // closed by dropping: the server rolls back whatever was open
        }
        if let Ok(mut v) = self.pool.idle.lock() {
            let cap = self.pool.limits.max_idle.unwrap_or(u32::MAX) as usize;
            if v.len() < cap {
                v.push(Idle {
                    conn,
                    since: Instant::now(),
                    born: self.born,
                });
            }
        }
    }
}
