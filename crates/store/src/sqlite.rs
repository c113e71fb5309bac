//! `SqliteBackend`: a kine-style append-only log in one SQLite file.
//!
//! Every write appends a row whose `id` is its revision. The current value of a key is
//! its newest row unless that row is a delete tombstone (which keeps the last value, so
//! history can replay the delete with it). `prev_revision` links a row to the row it
//! replaced; compaction uses the links to drop only rows that later history no longer
//! needs, and watch replay uses them to recover `Event::Put::prev`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use crate::backend::check_live;
use crate::watch::{Hub, DEFAULT_WATCH_CAPACITY};
use crate::{Backend, Error, Event, KeyValue, ListResult, Result, Revision, Watch, EMPTY_REVISION};

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE log (
    id              INTEGER PRIMARY KEY,  -- the revision
    name            TEXT    NOT NULL,
    value           BLOB    NOT NULL,     -- for a tombstone: the last value
    create_revision INTEGER NOT NULL,
    prev_revision   INTEGER NOT NULL,     -- the row this one replaced, 0 for a create
    deleted         INTEGER NOT NULL
);
CREATE INDEX log_name_id ON log (name, id, deleted);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta (key, value) VALUES ('compacted', 0);
";

/// Idle read connections kept around; more are opened on demand under load.
const MAX_IDLE_READERS: usize = 4;

/// A lock held by a crashed process is released by SQLite itself, so waiting this long
/// only ever happens when something else really holds the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct SqliteBackend {
    /// All writes go through this one connection, one transaction at a time; the lock is
    /// also what orders `hub.publish` calls.
    writer: Mutex<Connection>,
    readers: Readers,
    hub: Hub,
    /// Only advanced after a commit, under the writer lock.
    revision: AtomicI64,
    compacted: AtomicI64,
}

impl SqliteBackend {
    /// Opens (or creates) the store at `path`. One process should own the file: the
    /// revision counter and the watch fan-out live in this process.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_watch_capacity(path, DEFAULT_WATCH_CAPACITY)
    }

    /// `capacity`: how many live events a watcher may fall behind before `WatchLagged`.
    pub fn open_with_watch_capacity(path: impl AsRef<Path>, capacity: usize) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut conn = Connection::open(&path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(storage(format!(
                "{path:?}: cannot use WAL (journal mode {mode})"
            )));
        }
        // FULL fsyncs the WAL on every commit: an acknowledged write survives power loss.
        conn.pragma_update(None, "synchronous", "FULL")?;
        // The WAL is reused after each checkpoint; this only caps the file a burst left
        // behind.
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        migrate(&mut conn, &path)?;

        let readers = Readers {
            path,
            idle: Mutex::new(Vec::new()),
        };
        let (revision, compacted) = snapshot_revisions(&conn)?;
        readers.put_back(open_reader(&readers.path)?);
        tracing::debug!(path = ?readers.path, revision, compacted, "opened sqlite store");
        Ok(SqliteBackend {
            writer: Mutex::new(conn),
            readers,
            hub: Hub::new(capacity),
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
        })
    }

    fn lock_writer(&self) -> MutexGuard<'_, Connection> {
        // A panic mid-transaction rolls the transaction back when it unwinds, so the
        // connection is still usable.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends one row for `key`. `decide` sees the key's live value (if any) and the
    /// revision this write will get, and returns the event to record or refuses.
    fn write(
        &self,
        key: &str,
        decide: impl FnOnce(Option<KeyValue>, Revision) -> Result<Event>,
    ) -> Result<KeyValue> {
        let mut conn = self.lock_writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current = latest(&tx, key)?;
        let prev_revision = current.as_ref().map_or(0, |kv| kv.mod_revision);
        let rev = self.revision.load(Ordering::SeqCst) + 1;
        let event = decide(current, rev)?;
        let (kv, deleted) = match &event {
            Event::Put { kv, .. } => (kv, false),
            Event::Delete { kv } => (kv, true),
        };
        tx.prepare_cached(
            "INSERT INTO log (id, name, value, create_revision, prev_revision, deleted)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            rev,
            key,
            &kv.value[..],
            kv.create_revision,
            prev_revision,
            deleted
        ])?;
        tx.commit()?;
        self.revision.store(rev, Ordering::SeqCst);
        let kv = kv.clone();
        self.hub.publish(event);
        Ok(kv)
    }
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("path", &self.readers.path)
            .field("revision", &self.revision)
            .field("compacted", &self.compacted)
            .finish_non_exhaustive()
    }
}

impl Backend for SqliteBackend {
    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.readers.with(|conn| latest(conn, key))
    }

    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ListResult> {
        let (lower, lower_op) = match start_after {
            Some(after) if after >= prefix => (after, ">"),
            _ => (prefix, ">="),
        };
        let upper = prefix_end(prefix);
        let limit = limit.unwrap_or(usize::MAX);
        self.readers.with(|conn| {
            let tx = conn.unchecked_transaction()?;
            let (revision, _) = snapshot_revisions(&tx)?;
            let mut items = Vec::new();
            // One row past the page says whether there is more, without counting the rest.
            let sql = format!(
                "SELECT l.name, l.value, l.create_revision, l.id {} ORDER BY l.name LIMIT ?3",
                live_rows(lower_op, upper.is_some())
            );
            let mut stmt = tx.prepare_cached(&sql)?;
            let mut rows =
                stmt.query(params![lower, upper, to_sql_limit(limit.saturating_add(1))])?;
            let mut more = false;
            while let Some(row) = rows.next()? {
                if items.len() == limit {
                    more = true;
                    break;
                }
                items.push(KeyValue {
                    key: row.get(0)?,
                    value: Bytes::from(row.get::<_, Vec<u8>>(1)?),
                    create_revision: row.get(2)?,
                    mod_revision: row.get(3)?,
                });
            }
            drop(rows);
            drop(stmt);
            tx.commit()?;
            Ok(ListResult {
                items,
                revision,
                more,
                remaining: None,
            })
        })
    }

    fn create(&self, key: &str, value: &[u8]) -> Result<KeyValue> {
        self.write(key, |current, rev| {
            if current.is_some() {
                return Err(Error::AlreadyExists {
                    key: key.to_owned(),
                });
            }
            let kv = KeyValue {
                key: key.to_owned(),
                value: Bytes::copy_from_slice(value),
                create_revision: rev,
                mod_revision: rev,
            };
            Ok(Event::Put { kv, prev: None })
        })
    }

    fn update(&self, key: &str, value: &[u8], expected: Revision) -> Result<KeyValue> {
        self.write(key, |current, rev| {
            let prev = check_live(key, current.as_ref(), Some(expected))?.clone();
            let kv = KeyValue {
                key: key.to_owned(),
                value: Bytes::copy_from_slice(value),
                create_revision: prev.create_revision,
                mod_revision: rev,
            };
            Ok(Event::Put {
                kv,
                prev: Some(prev),
            })
        })
    }

    fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.write(key, |current, rev| {
            let mut kv = check_live(key, current.as_ref(), expected)?.clone();
            kv.mod_revision = rev;
            Ok(Event::Delete { kv })
        })
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<Watch> {
        // Subscribe first, then read history: see `watch.rs` for why that leaves no gap.
        let rx = self.hub.subscribe();
        let upper = prefix_end(prefix);
        // `+name` keeps SQLite on the rowid range: watches almost always start at a recent
        // revision, so scanning forward from `after` beats scanning a key range's history.
        let range = match upper {
            Some(_) => "+l.name >= ?2 AND +l.name < ?3",
            None => "+l.name >= ?2 AND ?3 IS NULL",
        };
        let sql = format!(
            "SELECT l.id, l.name, l.value, l.create_revision, l.deleted,
                    p.id, p.value, p.create_revision
             FROM log AS l LEFT JOIN log AS p ON p.id = l.prev_revision
             WHERE l.id > ?1 AND {range} ORDER BY l.id"
        );
        let (history, covered) = self.readers.with(|conn| {
            let tx = conn.unchecked_transaction()?;
            let (covered, compacted) = snapshot_revisions(&tx)?;
            if after < compacted {
                return Err(Error::Compacted {
                    requested: after,
                    compacted,
                });
            }
            let mut history = Vec::new();
            {
                let mut stmt = tx.prepare_cached(&sql)?;
                let mut rows = stmt.query(params![after, prefix, upper])?;
                while let Some(row) = rows.next()? {
                    history.push(event_from_row(row)?);
                }
            }
            tx.commit()?;
            Ok((history, covered))
        })?;
        Ok(Watch::new(prefix, after, history, rx, covered))
    }

    fn compact(&self, revision: Revision) -> Result<()> {
        let mut conn = self.lock_writer();
        let current = self.revision.load(Ordering::SeqCst);
        if revision > current {
            return Err(Error::FutureRevision {
                requested: revision,
                current,
            });
        }
        let old = self.compacted.load(Ordering::SeqCst);
        if revision <= old {
            return Ok(());
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // A row is superseded once a row that replaced it is itself at or below the
        // compaction point; a tombstone there is superseded by nothing at all. Earlier
        // compactions already handled everything at or below `old`.
        let superseded = tx.execute(
            "DELETE FROM log WHERE id IN (SELECT prev_revision FROM log
               WHERE id > ?1 AND id <= ?2 AND prev_revision != 0)",
            params![old, revision],
        )?;
        let tombstones = tx.execute(
            "DELETE FROM log WHERE id > ?1 AND id <= ?2 AND deleted = 1",
            params![old, revision],
        )?;
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'compacted'",
            params![revision],
        )?;
        tx.commit()?;
        self.compacted.store(revision, Ordering::SeqCst);
        tracing::debug!(revision, superseded, tombstones, "compacted sqlite store");
        Ok(())
    }

    fn current_revision(&self) -> Result<Revision> {
        Ok(self.revision.load(Ordering::SeqCst))
    }

    fn current_revision_now(&self) -> Option<Revision> {
        Some(self.revision.load(Ordering::SeqCst))
    }

    fn compacted_revision(&self) -> Revision {
        self.compacted.load(Ordering::SeqCst)
    }
}

/// Read connections, so that gets, lists and watch replays never queue behind a write's
/// fsync (WAL lets readers proceed on the last committed snapshot).
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let idle = self.lock().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_reader(&self.path)?,
        };
        let out = f(&conn);
        self.put_back(conn);
        out
    }

    fn put_back(&self, conn: Connection) {
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    match version {
        0 => {
            tx.execute_batch(SCHEMA)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        SCHEMA_VERSION => {}
        other => {
            return Err(storage(format!(
                "{path:?}: schema version {other} is newer than this skiff ({SCHEMA_VERSION})"
            )))
        }
    }
    tx.commit()?;
    Ok(())
}

/// (current revision, compacted revision) as of the connection's snapshot. The newest row
/// is the current revision unless compaction removed it (a deleted key), in which case
/// the compacted revision is at least as new.
fn snapshot_revisions(conn: &Connection) -> Result<(Revision, Revision)> {
    let (newest, compacted): (Revision, Revision) = conn
        .prepare_cached(
            "SELECT (SELECT IFNULL(MAX(id), 0) FROM log),
                    (SELECT value FROM meta WHERE key = 'compacted')",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok((newest.max(compacted).max(EMPTY_REVISION), compacted))
}

/// The live value of `key`: its newest row, unless that is a tombstone.
fn latest(conn: &Connection, key: &str) -> Result<Option<KeyValue>> {
    let row = conn
        .prepare_cached(
            "SELECT id, value, create_revision, deleted FROM log
             WHERE name = ?1 ORDER BY id DESC LIMIT 1",
        )?
        .query_row([key], |r| {
            Ok((
                r.get::<_, Revision>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Revision>(2)?,
                r.get::<_, bool>(3)?,
            ))
        })
        .optional()?;
    Ok(match row {
        Some((mod_revision, value, create_revision, false)) => Some(KeyValue {
            key: key.to_owned(),
            value: Bytes::from(value),
            create_revision,
            mod_revision,
        }),
        _ => None,
    })
}

/// Decodes one row of the watch replay query.
fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    let kv = KeyValue {
        key: row.get(1)?,
        value: Bytes::from(row.get::<_, Vec<u8>>(2)?),
        create_revision: row.get(3)?,
        mod_revision: row.get(0)?,
    };
    if row.get::<_, bool>(4)? {
        return Ok(Event::Delete { kv });
    }
    let prev = match row.get::<_, Option<Revision>>(5)? {
        Some(mod_revision) => Some(KeyValue {
            key: kv.key.clone(),
            value: Bytes::from(row.get::<_, Vec<u8>>(6)?),
            create_revision: row.get(7)?,
            mod_revision,
        }),
        None => None,
    };
    Ok(Event::Put { kv, prev })
}

/// The smallest string greater than every string starting with `prefix`, so that a
/// prefix becomes an index range. SQLite compares TEXT bytewise and UTF-8 preserves code
/// point order, so bumping the last code point is exact. `None`: no upper bound.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last as u32 + 1 {
            0xD800 => 0xE000, // skip the surrogate gap
            n => n,
        };
        if let Some(next) = char::from_u32(next) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The FROM/WHERE clause selecting the live rows of keys `name <lower_op> ?1` and, if
/// `bounded`, `name < ?2`. It walks the (name, id, deleted) index in key order, so a
/// `LIMIT` stops early and no sort is needed; a row is current when no newer row for its
/// name exists (one index probe), and only current rows are read from the table.
fn live_rows(lower_op: &str, bounded: bool) -> String {
    let upper = if bounded { "l.name < ?2" } else { "?2 IS NULL" };
    format!(
        "FROM log AS l WHERE l.name {lower_op} ?1 AND {upper} AND l.deleted = 0
           AND NOT EXISTS (SELECT 1 FROM log AS n WHERE n.name = l.name AND n.id > l.id)"
    )
}

fn to_sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn storage(message: String) -> Error {
    Error::Storage(message.into())
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_bumps_the_last_code_point() {
        assert_eq!(
            prefix_end("/registry/pods/").as_deref(),
            Some("/registry/pods0")
        );
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("\u{10FFFF}"), None);
    }
}
