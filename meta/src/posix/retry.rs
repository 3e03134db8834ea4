//! The one retry policy of every engine, and the macro that runs an operation's body in a
//! transaction under it.
//!
//! - A transaction that fails with a `Conflict` (a lock another transaction held, a deadlock, a
//!   serialization failure, an optimistic commit that lost) runs again from the start, at most
//!   [`MAX_TXN_ATTEMPTS`] times in all, after a jittered pause that doubles from 0.5 ms.
//! - A transaction that fails with the store `Unavailable` (server unreachable or restarting, a
//!   connection lost, a commit whose answer never came) runs again for up to
//!   [`UNAVAILABLE_RETRY`]. Such an attempt may have been applied: its commit may have reached
//!   the server. From then on the body is told so (`again`), and an operation whose second run
//!   would fail because of its own first run (the name it created exists, the entry it moved is
//!   gone, its slice is recorded) recognises its own effect and reports success.
//! - Anything else is the operation's answer.

use crate::error::Result;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often a transaction is tried before its conflict is returned (JuiceFS: 50).
pub const MAX_TXN_ATTEMPTS: u32 = 50;
/// How long an operation keeps retrying while the store cannot be reached.
pub const UNAVAILABLE_RETRY: Duration = Duration::from_secs(60);

/// The retry state of one operation.
pub(crate) struct Retry {
    op: &'static str,
    attempt: u32,
    started: Instant,
    maybe_applied: bool,
}

impl Retry {
    pub(crate) fn new(op: &'static str) -> Self {
        Self {
            op,
            attempt: 0,
            started: Instant::now(),
            maybe_applied: false,
        }
    }

    /// Whether an earlier attempt may have been applied (its outcome is unknown).
    pub(crate) fn maybe_applied(&self) -> bool {
        self.maybe_applied
    }

    /// After an attempt: the operation's result, or None to run it again (after the pause).
    /// `restarts` counts conflicts that ran again.
    pub(crate) async fn after<T>(
        &mut self,
        res: Result<T>,
        restarts: &AtomicU64,
    ) -> Option<Result<T>> {
        let e = match res {
            Ok(v) => return Some(Ok(v)),
            Err(e) => e,
        };
        let op = self.op;
        if e.is_retryable() {
            if self.attempt + 1 < MAX_TXN_ATTEMPTS {
                self.attempt += 1;
                restarts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(op, attempt = self.attempt, error = %e, "transaction conflict, retrying");
                backoff(self.attempt).await;
                return None;
            }
            tracing::warn!(op, attempts = self.attempt + 1, error = %e, "transaction still conflicting after every attempt");
            return Some(Err(e));
        }
        if e.is_unavailable() && self.started.elapsed() < UNAVAILABLE_RETRY {
            self.attempt += 1;
            self.maybe_applied = true;
            tracing::warn!(op, attempt = self.attempt, error = %e, "metadata store unavailable, retrying");
            let pause = Duration::from_millis(200 * u64::from(self.attempt.min(5)));
            tokio::time::sleep(pause).await;
            return None;
        }
        Some(Err(e))
    }
}

/// Pause before try `attempt` + 1 of a conflicting transaction: 0.5 ms doubling up to ~64 ms,
/// plus a jitter of up to as much again, so clients that conflicted do not meet again.
pub(crate) async fn backoff(attempt: u32) {
    let base = 1u64 << attempt.min(7);
    let jitter = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0),
    ) % (base * 500);
    tokio::time::sleep(Duration::from_micros(base * 500 + jitter)).await;
}

/// Run `$body` in a transaction of `$mode` bound to `$tx` (a `&mut W<..>`), under the retry
/// policy above; `lock = $ino` first takes this client's local lock of directory `$ino` (only
/// on optimistic engines, where it keeps this client's own tasks from conflicting). With
/// `|$tx, $again|`, `$again` is true when an earlier attempt may have been applied.
/// The body is an async block: `return Err(..)` / `return Ok(..)` end the attempt early; its
/// value is the attempt's result. A write transaction is committed, a read one ended.
macro_rules! txn {
    ($core:expr, $op:expr, $mode:expr, |$tx:ident| $body:block) => {
        $crate::posix::retry::txn!(@run $core, $op, $mode, None, |$tx, _again| $body)
    };
    ($core:expr, $op:expr, $mode:expr, |$tx:ident, $again:ident| $body:block) => {
        $crate::posix::retry::txn!(@run $core, $op, $mode, None, |$tx, $again| $body)
    };
    ($core:expr, $op:expr, $mode:expr, lock = $ino:expr, |$tx:ident| $body:block) => {
        $crate::posix::retry::txn!(@run $core, $op, $mode, Some($ino), |$tx, _again| $body)
    };
    ($core:expr, $op:expr, $mode:expr, lock = $ino:expr, |$tx:ident, $again:ident| $body:block) => {
        $crate::posix::retry::txn!(@run $core, $op, $mode, Some($ino), |$tx, $again| $body)
    };
    (@run $core:expr, $op:expr, $mode:expr, $lock:expr, |$tx:ident, $again:ident| $body:block) => {{
        let core = &*$core;
        let _local = core.dir_lock($lock).await;
        let mut retry = $crate::posix::retry::Retry::new($op);
        loop {
            #[allow(unused_variables)]
            let $again = retry.maybe_applied();
            core.txns.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let res = match core.engine.begin($mode).await {
                Ok(t) => {
                    let mut w = $crate::posix::W::new(t);
                    #[allow(unused_mut)]
                    let r: $crate::Result<_> = async {
                        let $tx = &mut w;
                        Ok($body)
                    }
                    .await;
                    core.finish(w, r).await
                }
                Err(e) => Err(e),
            };
            if let Some(out) = retry.after(res, &core.restarts).await {
                break out;
            }
        }
    }};
}

pub(crate) use txn;
