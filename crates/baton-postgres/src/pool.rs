//! A small connection pool: idle clients kept up to a size, a broken client discarded,
//! each with the statements it has prepared ([`Statements`]).
//!
//! A statement sent as text is parsed in one round trip and run in another; a prepared one
//! runs in one. Each connection keeps what it prepared, keyed by the SQL, so the statements
//! baton repeats (every query it sends is one of a fixed set, or one per warehouse table)
//! cost one round trip after their first use on that connection.

use baton_ports::{Error, Result};
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement, Transaction};
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// Statements a connection keeps prepared at most: baton's own set and a few per warehouse
/// table fit; past it, a statement is prepared for its one use only, so SQL that varies
/// cannot grow a connection without bound.
pub const STATEMENTS_KEPT: usize = 512;

/// The statements one connection has prepared, by their SQL.
#[derive(Default)]
pub struct Statements(HashMap<String, Statement>);

/// A connection and the statements prepared on it.
pub struct Conn {
    client: Client,
    statements: Statements,
}

impl Conn {
    fn new(client: Client) -> Self {
        Self {
            client,
            statements: Statements::default(),
        }
    }

    /// Whether the connection is closed (it is discarded then).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Opens a transaction that prepares its statements through this connection's cache.
    pub fn transaction(&mut self) -> std::result::Result<Sql<'_>, postgres::Error> {
        let Conn { client, statements } = self;
        Ok(Sql {
            on: On::Transaction(client.transaction()?),
            statements,
        })
    }

    /// Runs statements on their own, each its own transaction (autocommit): for an operation
    /// that is one statement, which then needs no `BEGIN` and `COMMIT` round trips.
    pub fn autocommit(&mut self) -> Sql<'_> {
        let Conn { client, statements } = self;
        Sql {
            on: On::Autocommit(client),
            statements,
        }
    }
}

enum On<'a> {
    Transaction(Transaction<'a>),
    Autocommit(&'a mut Client),
}

/// Where baton's SQL runs: an open transaction, or a connection in autocommit; each
/// statement is prepared once per connection ([`Statements`]).
pub struct Sql<'a> {
    on: On<'a>,
    statements: &'a mut Statements,
}

type Params<'p> = [&'p (dyn ToSql + Sync)];

impl<'a> Sql<'a> {
    /// The prepared statement for `sql`, preparing it on first use.
    fn statement(&mut self, sql: &str) -> std::result::Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.0.get(sql) {
            return Ok(s.clone());
        }
        let s = match &mut self.on {
            On::Transaction(t) => t.prepare(sql)?,
            On::Autocommit(c) => c.prepare(sql)?,
        };
        if self.statements.0.len() < STATEMENTS_KEPT {
            self.statements.0.insert(sql.to_owned(), s.clone());
        }
        Ok(s)
    }

    /// Runs a query, returning its rows.
    pub fn query(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> std::result::Result<Vec<Row>, postgres::Error> {
        let s = self.statement(sql)?;
        match &mut self.on {
            On::Transaction(t) => t.query(&s, params),
            On::Autocommit(c) => c.query(&s, params),
        }
    }

    /// Runs a query that returns exactly one row.
    pub fn query_one(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> std::result::Result<Row, postgres::Error> {
        let s = self.statement(sql)?;
        match &mut self.on {
            On::Transaction(t) => t.query_one(&s, params),
            On::Autocommit(c) => c.query_one(&s, params),
        }
    }

    /// Runs a statement, returning how many rows it changed.
    pub fn execute(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> std::result::Result<u64, postgres::Error> {
        let s = self.statement(sql)?;
        match &mut self.on {
            On::Transaction(t) => t.execute(&s, params),
            On::Autocommit(c) => c.execute(&s, params),
        }
    }

    /// Runs statements as text, without parameters (DDL, `NOTIFY`), one round trip.
    pub fn batch_execute(&mut self, sql: &str) -> std::result::Result<(), postgres::Error> {
        match &mut self.on {
            On::Transaction(t) => t.batch_execute(sql),
            On::Autocommit(c) => c.batch_execute(sql),
        }
    }

    /// The open transaction itself (the bench's baselines, which prepare their own
    /// statements); `None` in autocommit.
    pub fn raw(&mut self) -> Option<&mut Transaction<'a>> {
        match &mut self.on {
            On::Transaction(t) => Some(t),
            On::Autocommit(_) => None,
        }
    }

    /// Commits the transaction (nothing to do in autocommit).
    pub fn commit(self) -> std::result::Result<(), postgres::Error> {
        match self.on {
            On::Transaction(t) => t.commit(),
            On::Autocommit(_) => Ok(()),
        }
    }
}

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
    idle: Mutex<Vec<Conn>>,
    size: usize,
}

impl Pool {
    /// Opens one connection now, so a bad URL or an unreachable server fails at start with
    /// one line.
    pub fn new(url: &str, size: usize) -> Result<Self> {
        let first = connect(url)?;
        Ok(Self {
            url: url.to_owned(),
            idle: Mutex::new(vec![Conn::new(first)]),
            size: size.max(1),
        })
    }

    /// Closes every idle connection (and forgets what it prepared): after the schema was
    /// dropped and made again, no statement prepared against the old one is kept.
    pub fn clear(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn get(&self) -> Result<Pooled<'_>> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let client = match idle {
            Some(c) if !c.is_closed() => c,
            _ => Conn::new(connect(&self.url)?),
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
    client: Option<Conn>,
}

impl Pooled<'_> {
    /// Drops the connection instead of returning it to the pool.
    pub fn discard(mut self) {
        self.client = None;
    }
}

impl Deref for Pooled<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        // Present from construction until drop or discard (which consumes self).
        self.client
            .as_ref()
            .unwrap_or_else(|| unreachable!("invariant: a pooled client is present until dropped"))
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
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
