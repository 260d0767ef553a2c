//! The JSON Lines export: one record per line, to stdout or a file. Each
//! line goes out in one write(2) on an O_APPEND descriptor, so `tail -f`
//! never sees half a record from us. Rotation: by size (the file is renamed
//! to `.1`, older ones shift up to `.keep`), or by anyone (logrotate) who
//! renames the file and sends SIGHUP, which makes rtcgw reopen the path.
//! File I/O runs on its own thread, fed by a bounded queue that drops and
//! counts when the disk cannot keep up; the pollers never wait on a disk.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use prometheus_client::metrics::counter::Counter;

use crate::config::ExportTarget;

/// Why the export could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    #[error("cannot open stats export {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot rotate stats export {path}: {source}")]
    Rotate {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write stats export: {0}")]
    Write(#[from] std::io::Error),
}

/// Where the lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File {
        path: PathBuf,
        /// Rotate when a line would take the file past this (0: never).
        rotate_bytes: u64,
        /// Rotated files kept: path.1 (newest) .. path.keep.
        keep: u32,
    },
}

impl Target {
    /// From the config's `stats.export`: none, stdout, or a file with its
    /// rotation.
    pub fn from_config(export: &ExportTarget, rotate_bytes: u64, keep: u32) -> Option<Self> {
        match export {
            ExportTarget::None => None,
            ExportTarget::Stdout => Some(Self::Stdout),
            ExportTarget::File(path) => Some(Self::File {
                path: path.clone(),
                rotate_bytes,
                keep,
            }),
        }
    }
}

/// A JSON Lines writer (blocking; see [`Exporter`] for the threaded one).
pub struct JsonLines {
    target: Target,
    file: Option<File>,
    /// Bytes in the current file.
    size: u64,
}

fn open_append(path: &Path) -> Result<(File, u64), ExportError> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| ExportError::Open {
            path: path.to_owned(),
            source,
        })?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((f, size))
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl JsonLines {
    pub fn open(target: Target) -> Result<Self, ExportError> {
        let (file, size) = match &target {
            Target::Stdout => (None, 0),
            Target::File { path, .. } => {
                let (f, size) = open_append(path)?;
                (Some(f), size)
            }
        };
        Ok(Self { target, file, size })
    }

    /// Writes one line (a newline is added). Rotates first when the line
    /// would take the file past the limit.
    pub fn write_line(&mut self, line: &str) -> Result<(), ExportError> {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        if let Target::File { rotate_bytes, .. } = self.target
            && rotate_bytes > 0
            && self.size > 0
            && self.size + buf.len() as u64 > rotate_bytes
        {
            self.rotate()?;
        }
        match &mut self.file {
            Some(f) => f.write_all(&buf)?,
            None => {
                let mut out = std::io::stdout().lock();
                out.write_all(&buf)?;
                out.flush()?;
            }
        }
        self.size += buf.len() as u64;
        Ok(())
    }

    /// Opens the path again (after logrotate renamed it; SIGHUP).
    pub fn reopen(&mut self) -> Result<(), ExportError> {
        if let Target::File { path, .. } = &self.target {
            let (f, size) = open_append(path)?;
            self.file = Some(f);
            self.size = size;
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), ExportError> {
        let Target::File { path, keep, .. } = &self.target else {
            return Ok(());
        };
        let err = |source| ExportError::Rotate {
            path: path.clone(),
            source,
        };
        let keep = (*keep).max(1);
        for n in (1..keep).rev() {
            let from = numbered(path, n);
            if from.exists() {
                std::fs::rename(&from, numbered(path, n + 1)).map_err(err)?;
            }
        }
        std::fs::rename(path, numbered(path, 1)).map_err(err)?;
        self.reopen()
    }
}

enum Msg {
    Lines(Vec<String>),
    Reopen,
}

/// The export's writer thread and the queue to it. Cheap to clone.
#[derive(Clone)]
pub struct Exporter {
    tx: SyncSender<Msg>,
    /// Lines dropped because the queue was full, or that the writer
    /// failed to write (logged).
    dropped: Counter,
}

impl Exporter {
    /// Opens the target (so a bad path is a startup error) and starts the
    /// writer thread.
    pub fn spawn(target: Target, dropped: Counter) -> Result<Self, ExportError> {
        const QUEUE: usize = 1024; // batches (one per poll) or reopens
        let lines = JsonLines::open(target)?;
        let (tx, rx) = sync_channel(QUEUE);
        let failed = dropped.clone();
        std::thread::Builder::new()
            .name("stats-export".into())
            .spawn(move || writer(lines, rx, failed))
            .map_err(ExportError::Write)?;
        Ok(Self { tx, dropped })
    }

    /// Queues lines to be written in order; never blocks.
    pub fn send(&self, lines: Vec<String>) {
        let n = lines.len() as u64;
        if n == 0 {
            return;
        }
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.tx.try_send(Msg::Lines(lines))
        {
            self.dropped.inc_by(n);
        }
    }

    pub fn reopen(&self) {
        let _ = self.tx.try_send(Msg::Reopen);
    }
}

fn writer(mut out: JsonLines, rx: Receiver<Msg>, failed: Counter) {
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Lines(lines) => {
                for l in &lines {
                    if let Err(e) = out.write_line(l) {
                        failed.inc();
                        tracing::warn!("{e}");
                    }
                }
            }
            Msg::Reopen => match out.reopen() {
                Ok(()) => tracing::info!("stats export reopened"),
                Err(e) => tracing::warn!("{e}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "rtcgw-export-{}-{name}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("stats.jsonl")
    }

    fn lines(p: &Path) -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn size_rotation_keeps_whole_lines_and_n_files() {
        let path = tmp("rotate");
        let target = Target::File {
            path: path.clone(),
            rotate_bytes: 114,
            keep: 2,
        };
        let mut w = JsonLines::open(target).unwrap();
        for i in 0..20 {
            w.write_line(&format!(
                "{{\"n\":{i:02},\"pad\":\"xxxxxxxxxxxxxxxxxxxx\"}}"
            ))
            .unwrap();
        }
        // 38-byte lines (with the newline), 114-byte files: 3 lines each.
        let cur = lines(&path);
        let one = lines(&numbered(&path, 1));
        let two = lines(&numbered(&path, 2));
        assert_eq!(cur.len(), 2, "{cur:?}"); // 18 and 19
        assert_eq!((one.len(), two.len()), (3, 3));
        assert!(cur[0].starts_with("{\"n\":18"), "{cur:?}");
        assert!(one[0].starts_with("{\"n\":15") && two[0].starts_with("{\"n\":12"));
        assert!(!numbered(&path, 3).exists(), "only `keep` rotated files");
        for l in cur.iter().chain(&one).chain(&two) {
            serde_json::from_str::<serde_json::Value>(l).unwrap();
        }
    }

    #[test]
    fn reopen_follows_a_rename_like_logrotate() {
        let path = tmp("reopen");
        let mut w = JsonLines::open(Target::File {
            path: path.clone(),
            rotate_bytes: 0,
            keep: 1,
        })
        .unwrap();
        w.write_line("{\"a\":1}").unwrap();
        let moved = path.with_extension("old");
        std::fs::rename(&path, &moved).unwrap();
        w.write_line("{\"a\":2}").unwrap(); // still the renamed file
        w.reopen().unwrap();
        w.write_line("{\"a\":3}").unwrap();
        assert_eq!(lines(&moved), vec!["{\"a\":1}", "{\"a\":2}"]);
        assert_eq!(lines(&path), vec!["{\"a\":3}"]);
    }

    #[test]
    fn an_unwritable_path_is_a_named_error() {
        let e = JsonLines::open(Target::File {
            path: "/nonexistent-dir/x.jsonl".into(),
            rotate_bytes: 0,
            keep: 1,
        })
        .err()
        .unwrap();
        assert!(e.to_string().contains("/nonexistent-dir/x.jsonl"), "{e}");
    }

    #[test]
    fn config_values_choose_the_target() {
        let t = |s: &str| ExportTarget::from(s.to_string());
        assert_eq!(Target::from_config(&t(""), 0, 1), None);
        assert_eq!(
            Target::from_config(&t("stdout"), 0, 1),
            Some(Target::Stdout)
        );
        assert!(matches!(
            Target::from_config(&t("/var/log/rtcgw/stats.jsonl"), 10, 3),
            Some(Target::File {
                rotate_bytes: 10,
                keep: 3,
                ..
            })
        ));
    }
}
