//! Parsing of meta URLs as JuiceFS users write them.

use crate::error::{Error, Result};

/// A meta URL split into its scheme and the engine-specific rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MetaUrl {
    pub scheme: String,
    /// Everything after `scheme://`.
    pub rest: String,
}

impl MetaUrl {
    pub fn parse(url: &str) -> Result<Self> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(Error::config(format!(
                "meta URL {:?} has no scheme: write it like sqlite3:///var/lib/tidefs/meta.db",
                redact(url)
            )));
        };
        if scheme.is_empty() || !scheme.bytes().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::config(format!(
                "meta URL {:?} has an invalid scheme",
                redact(url)
            )));
        }
        Ok(Self {
            scheme: scheme.to_ascii_lowercase(),
            rest: rest.to_string(),
        })
    }

    /// The SQLite file path and query of `sqlite3:///abs/path.db?x=y`.
    pub fn sqlite_path(&self) -> Result<(String, Option<String>)> {
        let (path, query) = match self.rest.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (self.rest.clone(), None),
        };
        if path.is_empty() {
            return Err(Error::config(
                "the sqlite3 meta URL has no file path: write sqlite3:///abs/path/meta.db",
            ));
        }
        Ok((path, query))
    }
}

/// The URL with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((cred, host)) = rest.rsplit_once('@') {
            if let Some((user, _)) = cred.split_once(':') {
                return format!("{scheme}://{user}:****@{host}");
            }
        }
    }
    url.to_string()
}

/// The URL without its password, and the password. A mount hands the password to its daemon
/// (and to itself, re-executed) through `META_PASSWORD`, so it shows in no process title.
pub fn split_password(url: &str) -> (String, Option<String>) {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (main, query) = match rest.split_once('?') {
            Some((m, q)) => (m, Some(q)),
            None => (rest, None),
        };
        if let Some((cred, host)) = main.rsplit_once('@') {
            if let Some((user, pass)) = cred.split_once(':') {
                let q = query.map(|q| format!("?{q}")).unwrap_or_default();
                return (
                    format!("{scheme}://{user}@{host}{q}"),
                    Some(pass.to_string()),
                );
            }
        }
    }
    (url.to_string(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sqlite() {
        let u = MetaUrl::parse("sqlite3:///tmp/a.db?_busy=1").expect("parse");
        assert_eq!(u.scheme, "sqlite3");
        assert_eq!(
            u.sqlite_path().expect("path"),
            ("/tmp/a.db".to_string(), Some("_busy=1".to_string()))
        );
        assert!(MetaUrl::parse("/tmp/a.db").is_err());
        assert!(MetaUrl::parse("sqlite3://")
            .expect("p")
            .sqlite_path()
            .is_err());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("mysql://u:secret@(h:3306)/db"),
            "mysql://u:****@(h:3306)/db"
        );
        assert_eq!(redact("sqlite3:///a"), "sqlite3:///a");
        assert_eq!(
            split_password("postgres://u:p:w@h:5432/db?sslmode=disable"),
            (
                "postgres://u@h:5432/db?sslmode=disable".to_string(),
                Some("p:w".to_string())
            )
        );
        assert_eq!(
            split_password("sqlite3:///a"),
            ("sqlite3:///a".to_string(), None)
        );
    }
}
