//! Meta URLs of the database servers, in the forms JuiceFS users write them, and the connection
//! pools built from them.
//!
//! - `mysql://user:pass@(host:3306)/db` (also `@host:3306`, `@unix(/path/mysqld.sock)`): MySQL,
//!   MariaDB, OceanBase, TiDB.
//! - `postgres://user:pass@host:5432/db?sslmode=disable` (also `postgresql://`).
//!
//! Query parameters every server URL takes: `max_open_conns`, `max_idle_conns`, `max_idle_time`,
//! `max_life_time` (pool knobs, durations like `30s`, `5m`, `1h`) and `table_prefix`. A password
//! missing from the URL is taken from `META_PASSWORD`. Passwords never appear in messages: they
//! show the URL with `****` instead.

use super::db::Pool;
use super::pool::{Connect, Limits, ServerPool};
use crate::error::{Error, ErrorKind, Result};
use crate::url::redact;
use sqlx::mysql::MySqlConnectOptions;
use sqlx::postgres::PgConnectOptions;
use sqlx::ConnectOptions;
use std::str::FromStr;
use std::time::Duration;

/// An opened server pool.
pub(crate) struct Server {
    pub pool: Pool,
    pub prefix: String,
    pub shown: String,
}

/// Pool settings from the URL.
#[derive(Debug, Clone, PartialEq)]
struct Knobs {
    max_open: u32,
    max_idle: Option<u32>,
    idle_time: Option<Duration>,
    life_time: Option<Duration>,
    prefix: String,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            max_open: 32,
            max_idle: None,
            idle_time: Some(Duration::from_secs(300)),
            life_time: None,
            prefix: String::new(),
        }
    }
}

/// The parts of a server URL.
#[derive(Debug, Clone, PartialEq)]
struct Parts {
    scheme: String,
    user: String,
    password: Option<String>,
    /// `host:port`, or a socket path for `unix(...)`.
    host: String,
    port: Option<u16>,
    socket: Option<String>,
    database: String,
    /// Parameters left for the driver.
    params: Vec<(String, String)>,
    knobs: Knobs,
}

fn bad(url: &str, what: impl std::fmt::Display) -> Error {
    Error::config(format!("meta URL {:?}: {what}", redact(url)))
}

/// Go-style durations as JuiceFS takes them: `300ms`, `30s`, `5m`, `1h`, `1h30m`; a bare number
/// is seconds.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    if let Ok(n) = s.parse::<u64>() {
        return Some(Duration::from_secs(n));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return None,
        };
        total += Duration::from_secs_f64(secs);
        rest = &rest[unit_len..];
    }
    Some(total)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse(url: &str, env_password: Option<String>) -> Result<Parts> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad(url, "has no scheme"))?;
    let scheme = scheme.to_ascii_lowercase();
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let (cred, addr) = match main.rsplit_once('@') {
        Some((c, a)) => (Some(c), a),
        None => (None, main),
    };
    let (user, password) = match cred {
        None => (String::new(), None),
        Some(c) => match c.split_once(':') {
            Some((u, p)) => (percent_decode(u), Some(percent_decode(p))),
            None => (percent_decode(c), None),
        },
    };
    let password = password.filter(|p| !p.is_empty()).or(env_password);
    // the address may be parenthesized (and hold '/' in a socket path)
    let host_end = match addr.find('(') {
        Some(0) | Some(3) | Some(4) => addr.find(')').map(|i| i + 1).unwrap_or(addr.len()),
        _ => 0,
    };
    let (hostpart, database) = match addr[host_end..].find('/') {
        Some(i) => (&addr[..host_end + i], addr[host_end + i + 1..].to_string()),
        None => (addr, String::new()),
    };
    if database.is_empty() {
        return Err(bad(
            url,
            "names no database: write it like mysql://user:pass@(host:3306)/dbname",
        ));
    }
    let mut socket = None;
    let mut hostport = hostpart;
    if let Some(inner) = hostpart
        .strip_prefix("unix(")
        .and_then(|h| h.strip_suffix(')'))
    {
        socket = Some(inner.to_string());
        hostport = "";
    } else if let Some(inner) = hostpart
        .strip_prefix("tcp(")
        .or_else(|| hostpart.strip_prefix('('))
        .and_then(|h| h.strip_suffix(')'))
    {
        hostport = inner;
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && !p.is_empty() => {
            let port = p
                .parse::<u16>()
                .map_err(|_| bad(url, format!("port {p:?} is not a number")))?;
            (h.to_string(), Some(port))
        }
        _ => (hostport.to_string(), None),
    };
    let host = if host.is_empty() && socket.is_none() {
        "localhost".to_string()
    } else {
        host
    };
    let mut knobs = Knobs::default();
    let mut params = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        let number = |what: &str| -> Result<u32> {
            v.parse::<u32>()
                .map_err(|_| bad(url, format!("{what}={v:?} is not a whole number")))
        };
        let duration = |what: &str| -> Result<Duration> {
            parse_duration(&v).ok_or_else(|| {
                bad(
                    url,
                    format!("{what}={v:?} is not a duration (write 30s, 5m, 1h)"),
                )
            })
        };
        match k {
            "max_open_conns" => {
                knobs.max_open = number(k)?;
                if knobs.max_open == 0 {
                    knobs.max_open = Knobs::default().max_open;
                }
            }
            "max_idle_conns" => knobs.max_idle = Some(number(k)?),
            "max_idle_time" => {
                knobs.idle_time = Some(duration(k)?).filter(|d| !d.is_zero());
            }
            "max_life_time" => {
                knobs.life_time = Some(duration(k)?).filter(|d| !d.is_zero());
            }
            "table_prefix" => {
                if !v.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
                    return Err(bad(
                        url,
                        "table_prefix may hold only letters, digits and '_'",
                    ));
                }
                knobs.prefix = v;
            }
            _ => params.push((k.to_string(), v)),
        }
    }
    Ok(Parts {
        scheme,
        user,
        password,
        host,
        port,
        socket,
        database,
        params,
        knobs,
    })
}

/// Connect to the server a meta URL names: the pool is built and one connection made, so an
/// unreachable server or a wrong password is reported here with what to check.
pub(crate) async fn connect(url: &str) -> Result<Server> {
    let parts = parse(url, std::env::var("META_PASSWORD").ok())?;
    let shown = redact(url);
    let knobs = parts.knobs.clone();
    let pool = match parts.scheme.as_str() {
        "mysql" => {
            let (read, write) = mysql_pools(url, &parts).await?;
            Pool::Mysql { read, write }
        }
        "postgres" | "postgresql" => Pool::Postgres(pg_pool(url, &parts).await?),
        other => return Err(bad(url, format!("{other} is not a SQL server scheme"))),
    };
    Ok(Server {
        pool,
        prefix: knobs.prefix,
        shown,
    })
}

fn unreachable_error(url: &str, e: sqlx::Error) -> Error {
    let shown = redact(url);
    let hint = match &e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => {
            "check that the server runs and the host and port are right"
        }
        sqlx::Error::Database(_) => "check the user, password (or META_PASSWORD) and database",
        sqlx::Error::Tls(_) => "check the server's TLS setup or the sslmode parameter",
        _ => "check the URL",
    };
    let kind = match &e {
        sqlx::Error::Database(_) | sqlx::Error::Configuration(_) => ErrorKind::Config,
        _ => ErrorKind::Unavailable,
    };
    Error::new(
        kind,
        format!("cannot connect to the metadata server {shown}: {hint}"),
    )
    .with_source(e)
}

/// The read pool (autocommit) and the write pool (autocommit off) of a MySQL-protocol server;
/// `max_open_conns` and `max_idle_conns` apply to each.
async fn mysql_pools(
    url: &str,
    p: &Parts,
) -> Result<(
    ServerPool<sqlx::MySqlConnection>,
    ServerPool<sqlx::MySqlConnection>,
)> {
    let mut opts = MySqlConnectOptions::new()
        .username(&p.user)
        .database(&p.database);
    if let Some(pw) = &p.password {
        opts = opts.password(pw);
    }
    opts = match &p.socket {
        Some(s) => opts.socket(s),
        None => opts.host(&p.host).port(p.port.unwrap_or(3306)),
    };
    for (k, v) in &p.params {
        match k.as_str() {
            "charset" => opts = opts.charset(v),
            "collation" => opts = opts.collation(v),
            "tls" | "ssl-mode" | "sslmode" => {
                let mode = match v.as_str() {
                    "false" | "disable" | "disabled" => sqlx::mysql::MySqlSslMode::Disabled,
                    "preferred" | "skip-verify" => sqlx::mysql::MySqlSslMode::Preferred,
                    "true" | "required" | "require" => sqlx::mysql::MySqlSslMode::Required,
                    "verify_ca" | "verify-ca" => sqlx::mysql::MySqlSslMode::VerifyCa,
                    "verify_identity" | "verify-full" => sqlx::mysql::MySqlSslMode::VerifyIdentity,
                    other => {
                        return Err(bad(url, format!("TLS mode {other:?} is not known")));
                    }
                };
                opts = opts.ssl_mode(mode);
            }
            // Go driver settings JuiceFS users carry in their DSNs; nothing to do here
            "parseTime" | "loc" | "timeout" | "readTimeout" | "writeTimeout"
            | "interpolateParams" => {}
            other => tracing::warn!(parameter = other, "ignoring an unknown meta URL parameter"),
        }
    }
    let opts = opts.log_statements(tracing::log::LevelFilter::Trace);
    // one connection made here says at once what is wrong (refused, bad password, no such
    // database); a pool would retry until its timeout and report only that
    probe(url, &opts).await?;
    let read = mysql_pool_with(p, opts.clone(), false);
    let write = mysql_pool_with(p, opts, true);
    Ok((read, write))
}

fn limits(p: &Parts) -> Limits {
    Limits {
        max_open: p.knobs.max_open,
        max_idle: p.knobs.max_idle,
        idle_time: p.knobs.idle_time,
        life_time: p.knobs.life_time,
        acquire_timeout: Duration::from_secs(15),
    }
}

fn mysql_pool_with(
    p: &Parts,
    opts: MySqlConnectOptions,
    write: bool,
) -> ServerPool<sqlx::MySqlConnection> {
    let connect: Connect<sqlx::MySqlConnection> = Box::new(move || {
        let opts = opts.clone();
        Box::pin(async move {
            let mut c = opts.connect().await?;
            // JuiceFS runs MySQL at REPEATABLE READ; rows read to be changed are locked
            sqlx::raw_sql("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut c)
                .await?;
            if write {
                // the first statement opens a transaction: no BEGIN round trip
                sqlx::raw_sql("SET autocommit = 0").execute(&mut c).await?;
            }
            Ok(c)
        })
    });
    ServerPool::new(connect, limits(p))
}

async fn probe<O>(url: &str, opts: &O) -> Result<()>
where
    O: ConnectOptions,
    O::Connection: Sized,
{
    let conn = tokio::time::timeout(Duration::from_secs(15), opts.connect())
        .await
        .map_err(|_| {
            Error::new(
                ErrorKind::Unavailable,
                format!(
                    "cannot connect to the metadata server {}: no answer within 15 s; check the host, port and firewall",
                    redact(url)
                ),
            )
        })?
        .map_err(|e| unreachable_error(url, e))?;
    let _ = sqlx::Connection::close(conn).await;
    Ok(())
}

async fn pg_pool(url: &str, p: &Parts) -> Result<ServerPool<sqlx::PgConnection>> {
    // sqlx reads the standard parameters (sslmode, sslrootcert, application_name, ...) from a
    // URL; ours are taken out, and the password comes separately so it can be from the env.
    let mut rest: Vec<String> = Vec::new();
    let mut search_path = None;
    for (k, v) in &p.params {
        if k == "search_path" {
            search_path = Some(v.clone());
        } else {
            rest.push(format!("{k}={v}"));
        }
    }
    let host = match (&p.socket, p.port) {
        (Some(_), _) => "localhost".to_string(),
        (None, Some(port)) => format!("{}:{port}", p.host),
        (None, None) => p.host.clone(),
    };
    let driver_url = format!(
        "postgres://{}@{host}/{}{}{}",
        p.user,
        p.database,
        if rest.is_empty() { "" } else { "?" },
        rest.join("&")
    );
    let mut opts = PgConnectOptions::from_str(&driver_url)
        .map_err(|e| bad(url, "cannot be read as a PostgreSQL URL").with_source(e))?;
    if let Some(pw) = &p.password {
        opts = opts.password(pw);
    }
    if let Some(s) = &p.socket {
        opts = opts.socket(s);
    }
    if let Some(sp) = search_path {
        opts = opts.options([("search_path", sp)]);
    }
    let opts = opts
        .application_name("tidefs")
        .log_statements(tracing::log::LevelFilter::Trace);
    probe(url, &opts).await?;
    let connect: Connect<sqlx::PgConnection> = Box::new(move || {
        let opts = opts.clone();
        Box::pin(async move { opts.connect().await })
    });
    Ok(ServerPool::new(connect, limits(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_forms() -> Result<()> {
        let p = parse(
            "mysql://u:p%40ss@(db.example:3307)/vol?max_open_conns=8&table_prefix=a_",
            None,
        )?;
        assert_eq!(p.user, "u");
        assert_eq!(p.password.as_deref(), Some("p@ss"));
        assert_eq!((p.host.as_str(), p.port), ("db.example", Some(3307)));
        assert_eq!(p.database, "vol");
        assert_eq!(p.knobs.max_open, 8);
        assert_eq!(p.knobs.prefix, "a_");
        let p = parse(
            "mysql://root@unix(/run/mysqld.sock)/jfs",
            Some("env".into()),
        )?;
        assert_eq!(p.socket.as_deref(), Some("/run/mysqld.sock"));
        assert_eq!(p.password.as_deref(), Some("env"));
        let p = parse("mysql://u:pw@127.0.0.1:3306/db", Some("env".into()))?;
        assert_eq!(p.password.as_deref(), Some("pw")); // the URL wins
        assert_eq!((p.host.as_str(), p.port), ("127.0.0.1", Some(3306)));
        Ok(())
    }

    #[test]
    fn postgres_forms_and_knobs() -> Result<()> {
        let p = parse(
            "postgres://u:pw@h:5432/db?sslmode=disable&max_idle_conns=2&max_idle_time=5m&max_life_time=1h30m",
            None,
        )?;
        assert_eq!(
            p.params,
            vec![("sslmode".to_string(), "disable".to_string())]
        );
        assert_eq!(p.knobs.max_idle, Some(2));
        assert_eq!(p.knobs.idle_time, Some(Duration::from_secs(300)));
        assert_eq!(p.knobs.life_time, Some(Duration::from_secs(5400)));
        Ok(())
    }

    #[test]
    fn bad_urls_say_what_is_wrong_without_the_password() {
        for (url, needle) in [
            ("mysql://u:secret@(h:33x6)/db", "port"),
            ("mysql://u:secret@(h:3306)/", "no database"),
            (
                "postgres://u:secret@h/db?max_open_conns=many",
                "whole number",
            ),
            ("postgres://u:secret@h/db?max_idle_time=soon", "duration"),
            (
                "postgres://u:secret@h/db?table_prefix=a;drop",
                "table_prefix",
            ),
        ] {
            let e = match parse(url, None) {
                Err(e) => e.to_string(),
                Ok(p) => format!("accepted: {p:?}"),
            };
            assert!(e.contains(needle), "{url}: {e}");
            assert!(!e.contains("secret"), "{url}: {e}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1x"), None);
    }
}
