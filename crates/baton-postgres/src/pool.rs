//! A small connection pool: idle clients kept up to a size, a broken client discarded.

use baton_ports::{Error, Result};
use postgres::{Client, NoTls};
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// The URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

pub struct Pool {
    url: String,
    idle: Mutex<Vec<Client>>,
    size: usize,
}

impl Pool {
    /// Opens one connection now, so a bad URL or an unreachable server fails at start with
    /// one line.
    pub fn new(url: &str, size: usize) -> Result<Self> {
        let first = connect(url)?;
        Ok(Self {
            url: url.to_owned(),
            idle: Mutex::new(vec![first]),
            size: size.max(1),
        })
    }

    pub fn get(&self) -> Result<Pooled<'_>> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let client = match idle {
            Some(c) if !c.is_closed() => c,
            _ => connect(&self.url)?,
        };
        Ok(Pooled {
            pool: self,
            client: Some(client),
        })
    }
}

pub(crate) fn connect(url: &str) -> Result<Client> {
    Client::connect(url, NoTls).map_err(|e| {
        let why = match e.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string()),
        };
        let text = format!("cannot connect to PostgreSQL at {}: {why}", redact(url));
        // A refused or dropped connection, a server starting up or shutting down, or one
        // with no free connection slot may come back; bad credentials or a missing database
        // won't.
        match e.code() {
            None => Error::Retryable(text),
            Some(code) if server_comes_back(code) => Error::Retryable(text),
            Some(_) => Error::Permanent(text),
        }
    })
}

/// SQLSTATEs a server returns while it is not (yet, or any more) taking connections.
fn server_comes_back(code: &postgres::error::SqlState) -> bool {
    use postgres::error::SqlState;
    [
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::TOO_MANY_CONNECTIONS,
    ]
    .contains(code)
        || code.code().starts_with("08")
}

pub struct Pooled<'a> {
    pool: &'a Pool,
    client: Option<Client>,
}

impl Pooled<'_> {
    /// Drops the connection instead of returning it to the pool.
    pub fn discard(mut self) {
        self.client = None;
    }
}

impl Deref for Pooled<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        // Present from construction until drop or discard (which consumes self).
        self.client
            .as_ref()
            .unwrap_or_else(|| unreachable!("invariant: a pooled client is present until dropped"))
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client
            .as_mut()
            .unwrap_or_else(|| unreachable!("invariant: a pooled client is present until dropped"))
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let mut idle = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner());
            if !c.is_closed() && idle.len() < self.pool.size {
                idle.push(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_a_message() {
        assert_eq!(
            redact("postgresql://baton:s3cret@db:5432/baton"),
            "postgresql://baton:***@db:5432/baton"
        );
        assert_eq!(
            redact("postgresql://baton@db/baton"),
            "postgresql://baton@db/baton"
        );
    }
}
