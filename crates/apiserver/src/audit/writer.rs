//! The log file's writer: a thread of its own that takes encoded events from
//! a bounded channel, writes each batch through a buffer and flushes it, and
//! rotates the file as upstream's lumberjack does (`--audit-log-maxsize`,
//! `--audit-log-maxbackup`): the full file is renamed
//! `<name>-<UTC time>.<ext>` and a new one opened; rotated files beyond the
//! newest `maxbackup` are removed.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use super::AuditMetrics;

/// Events waiting for the writer before new ones are dropped (upstream's
/// buffered backend holds as many).
pub const CAPACITY: usize = 10_000;
/// Events written between flushes at most.
const BATCH: usize = 512;
/// lumberjack's size when none is given: 100 MB.
pub const DEFAULT_MAX_BYTES: u64 = 100 * 1024 * 1024;
/// lumberjack's time in rotated names (Go's `2006-01-02T15-04-05.000`).
const BACKUP_TIME_FORMAT: &str = "%Y-%m-%dT%H-%M-%S%.3f";

/// When the file is rotated and how many rotated files stay.
#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    pub max_bytes: u64,
    /// 0 keeps them all.
    pub max_backups: usize,
}

/// The sending end: never blocks.
pub struct Sink {
    tx: mpsc::Sender<Vec<u8>>,
}

impl Sink {
    /// A sink nothing reads, for tests of a full channel.
    #[cfg(test)]
    pub(crate) fn detached(capacity: usize) -> (Self, mpsc::Receiver<Vec<u8>>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self { tx }, rx)
    }

    /// Queues one encoded event; `false` when the channel is full (or the
    /// writer is gone) and the event was dropped.
    pub fn try_send(&self, line: Vec<u8>) -> bool {
        self.tx.try_send(line).is_ok()
    }
}

enum Output {
    Stdout,
    File {
        path: PathBuf,
        out: BufWriter<File>,
        size: u64,
        rotation: Rotation,
    },
}

/// Opens `path` (`-`: standard output) and starts the writer thread. Events
/// a failed write loses are counted in `metrics`.
pub fn start(path: &Path, rotation: Rotation, metrics: AuditMetrics) -> io::Result<Sink> {
    let mut output = if path == Path::new("-") {
        Output::Stdout
    } else {
        let (file, size) = open(path)?;
        Output::File {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(64 * 1024, file),
            size,
            rotation,
        }
    };
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CAPACITY);
    std::thread::Builder::new()
        .name("audit-log".to_string())
        .spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            while let Some(first) = rx.blocking_recv() {
                batch.push(first);
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(line) => batch.push(line),
                        Err(_) => break,
                    }
                }
                if let Err(e) = output.write_batch(&batch) {
                    metrics.lost(batch.len() as u64);
                    tracing::warn!(error = %e, events = batch.len(), "writing the audit log failed");
                }
                batch.clear();
            }
        })?;
    Ok(Sink { tx })
}

/// Opens (creating, mode 0600, as upstream) the log for appending; its size.
fn open(path: &Path) -> io::Result<(File, u64)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let file = opts.open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

impl Output {
    fn write_batch(&mut self, batch: &[Vec<u8>]) -> io::Result<()> {
        match self {
            Output::Stdout => {
                let mut out = io::stdout().lock();
                for line in batch {
                    out.write_all(line)?;
                }
                out.flush()
            }
            Output::File {
                path,
                out,
                size,
                rotation,
            } => {
                for line in batch {
                    let len = line.len() as u64;
                    if *size > 0 && *size + len > rotation.max_bytes {
                        out.flush()?;
                        let (file, new_size) = rotate(path, *rotation)?;
                        *out = BufWriter::with_capacity(64 * 1024, file);
                        *size = new_size;
                    }
                    out.write_all(line)?;
                    *size += len;
                }
                out.flush()
            }
        }
    }
}

/// `<dir>/<stem>` and `.<ext>` of the log's name, as lumberjack splits it.
fn name_parts(path: &Path) -> (PathBuf, String, String) {
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.rfind('.').filter(|&i| i > 0) {
        Some(i) => (dir, name[..i].to_string(), name[i..].to_string()),
        None => (dir, name, String::new()),
    }
}

/// Renames the full log aside, opens a new one and removes old backups.
fn rotate(path: &Path, rotation: Rotation) -> io::Result<(File, u64)> {
    let (dir, stem, ext) = name_parts(path);
    let stamp = chrono::Utc::now().format(BACKUP_TIME_FORMAT);
    std::fs::rename(path, dir.join(format!("{stem}-{stamp}{ext}")))?;
    let opened = open(path)?;
    if rotation.max_backups > 0 {
        let mut backups: Vec<String> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.strip_prefix(&format!("{stem}-"))
                    .and_then(|rest| rest.strip_suffix(ext.as_str()))
                    .is_some_and(|t| {
                        chrono::NaiveDateTime::parse_from_str(t, BACKUP_TIME_FORMAT).is_ok()
                    })
            })
            .collect();
        // The time sorts as text: newest last.
        backups.sort();
        let excess = backups.len().saturating_sub(rotation.max_backups);
        for old in &backups[..excess] {
            let _ = std::fs::remove_file(dir.join(old));
        }
    }
    Ok(opened)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits (at most 5s) until the file holds `want`.
    fn wait_for(path: &Path, want: &str) {
        for _ in 0..500 {
            if std::fs::read_to_string(path).unwrap_or_default() == want {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(std::fs::read_to_string(path).unwrap_or_default(), want);
    }

    #[test]
    fn lines_reach_the_file_and_a_full_file_is_rotated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("logs/audit.log");
        let sink = start(
            &path,
            Rotation {
                max_bytes: 25,
                max_backups: 1,
            },
            AuditMetrics::default(),
        )
        .expect("start");
        // 9 bytes a line: two fit in 25, the third rotates.
        assert!(sink.try_send(b"line-000\n".to_vec()));
        wait_for(&path, "line-000\n");
        assert!(sink.try_send(b"line-001\n".to_vec()));
        wait_for(&path, "line-000\nline-001\n");
        assert!(sink.try_send(b"line-002\n".to_vec()));
        wait_for(&path, "line-002\n");
        // A second rotation: only the newest backup stays (maxbackup 1).
        std::thread::sleep(std::time::Duration::from_millis(5));
        for line in ["line-003\n", "line-004\n"] {
            assert!(sink.try_send(line.as_bytes().to_vec()));
        }
        wait_for(&path, "line-004\n");
        let backups: Vec<String> = std::fs::read_dir(dir.path().join("logs"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n != "audit.log")
            .collect();
        assert_eq!(backups.len(), 1, "{backups:?}");
        assert!(
            backups[0].starts_with("audit-") && backups[0].ends_with(".log"),
            "{backups:?}"
        );
        let rotated =
            std::fs::read_to_string(dir.path().join("logs").join(&backups[0])).expect("read");
        assert_eq!(rotated, "line-002\nline-003\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn names_split_as_lumberjack_splits_them() {
        let (dir, stem, ext) = name_parts(Path::new("/var/log/audit.log"));
        assert_eq!(
            (dir, stem.as_str(), ext.as_str()),
            (PathBuf::from("/var/log"), "audit", ".log")
        );
        let (_, stem, ext) = name_parts(Path::new("audit"));
        assert_eq!((stem.as_str(), ext.as_str()), ("audit", ""));
    }
}
