//! Appending records to the log, whole or not at all (see the module
//! documentation of `archive`), as messages are sent, taken, or left
//! behind by a removed session.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::INLINE_MAX;
use super::cleanup::mailbox_messages;
use super::record::{Direction, encode, encode_with};
use crate::error::{BridgeError, Result};
use crate::files;
use crate::ids::{SessionId, random_token};
use crate::wire::{Kind, Manifest, Message};
use crate::{Bridge, Platform};

impl<P: Platform> Bridge<P> {
    /// Appends one line to `path`, whole or not at all as far as other
    /// appenders go (see the module documentation).
    pub(super) fn append_line(&self, path: &Path, line: &[u8]) -> io::Result<()> {
        #[cfg(target_os = "wasi")]
        if let Some(appended) = wasi::append(&self.caches.open_logs, path, line) {
            return appended;
        }
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?
            .write_all(line)
    }
}

/// The archive logs an instance keeps open for appending, by path.
#[cfg(target_os = "wasi")]
pub(crate) type OpenLogs = std::collections::HashMap<String, wasi::Appender>;

/// One `blocking-write-and-flush` per line inside the sandbox: the standard
/// library would write through `write`, which wasmtime-wasi hands to a
/// thread of its own.
#[cfg(target_os = "wasi")]
pub(crate) mod wasi {
    use std::cell::RefCell;
    use std::io;
    use std::path::Path;

    use wasip2::filesystem::types::{Descriptor, DescriptorFlags, ErrorCode, OpenFlags, PathFlags};
    use wasip2::io::streams::{OutputStream, StreamError};

    /// None for a path outside the preopened bridge directory.
    pub fn append(
        open: &RefCell<super::OpenLogs>,
        path: &Path,
        line: &[u8],
    ) -> Option<io::Result<()>> {
        crate::files::wasi::at(path, |dir, relative| append_at(open, dir, relative, line))
    }

    /// A log kept open for appending: an instance that runs many verbs
    /// (the benchmarks' reused guests, a long-lived server) opens each log
    /// once. The stream is declared first so that it is dropped before the
    /// descriptor it belongs to.
    pub(crate) struct Appender {
        stream: OutputStream,
        _file: Descriptor,
    }

    /// The most logs kept open at once.
    const MAX_OPEN: usize = 8;

    fn append_at(
        open: &RefCell<super::OpenLogs>,
        dir: &Descriptor,
        relative: &str,
        line: &[u8],
    ) -> io::Result<()> {
        if line.len() > super::INLINE_MAX {
            return Err(io::Error::other(format!(
                "a line of {} bytes is over the {} one append takes",
                line.len(),
                super::INLINE_MAX
            )));
        }
        {
            let mut open = open.borrow_mut();
            // One write on this thread: the host appends it whole. A stream
            // that fails (its file replaced, say) is opened afresh once.
            if let Some(kept) = open.get(relative) {
                if kept.stream.blocking_write_and_flush(line).is_ok() {
                    return Ok(());
                }
                open.remove(relative);
            }
            let file = dir
                .open_at(
                    PathFlags::empty(),
                    relative,
                    OpenFlags::CREATE,
                    DescriptorFlags::WRITE,
                )
                .map_err(code_to_io)?;
            let stream = file.append_via_stream().map_err(code_to_io)?;
            stream
                .blocking_write_and_flush(line)
                .map_err(stream_to_io)?;
            if open.len() >= MAX_OPEN {
                open.clear();
            }
            open.insert(
                relative.to_string(),
                Appender {
                    stream,
                    _file: file,
                },
            );
            Ok(())
        }
    }

    fn code_to_io(code: ErrorCode) -> io::Error {
        let kind = match code {
            ErrorCode::NoEntry => io::ErrorKind::NotFound,
            ErrorCode::Access | ErrorCode::NotPermitted => io::ErrorKind::PermissionDenied,
            ErrorCode::InsufficientSpace => io::ErrorKind::StorageFull,
            ErrorCode::FileTooLarge => io::ErrorKind::FileTooLarge,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, format!("{code:?}"))
    }

    fn stream_to_io(err: StreamError) -> io::Error {
        match err {
            StreamError::LastOperationFailed(e) => io::Error::other(e.to_debug_string()),
            StreamError::Closed => io::Error::other("the stream closed"),
        }
    }
}

impl<P: Platform> Bridge<P> {
    /// Appends one record to the archive `key`, a large one through a file
    /// of its own.
    pub(super) fn append_record(
        &self,
        key: &str,
        message: &Message,
        direction: Direction,
        session: &str,
        never_taken: bool,
    ) -> Result<()> {
        let log = self.layout.archive_log(key);
        let line = encode(message, direction, session, never_taken);
        let appended = if line.len() <= INLINE_MAX {
            self.append_line(&log, &line)
        } else {
            Err(io::Error::other("large"))
        };
        match appended {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                // The archive was removed since `start`: make it again.
                files::ensure_dir(&self.layout.archive(key))?;
                self.append_line(&log, &line)
                    .map_err(|err| BridgeError::io("cannot append", &log, &err))
            }
            Err(_) => {
                let large = self.layout.archive_large(key);
                files::ensure_child_dir(&large)?;
                let name = format!("{}-{}.json", message.id, random_token(6));
                files::replace(&large, &name, &line)?;
                let mut stub = message.clone();
                stub.content = String::new();
                let line = encode_with(&stub, direction, session, never_taken, Some(&name));
                self.append_line(&log, &line)
                    .map_err(|err| BridgeError::io("cannot append", &log, &err))
            }
        }
    }

    /// Called after `message` was delivered by `sender` (whose manifest is
    /// `mine`): keeps it in the sender project's archive. Never fails the send.
    pub(crate) fn archive_sent(
        &self,
        message: &Message,
        mine: &Manifest,
        warnings: &mut Vec<String>,
    ) {
        let kept = SessionId::parse(&mine.session_id).and_then(|me| {
            let key = self.session_key(&me, Some(&mine.project_path))?;
            self.append_record(&key, message, Direction::Out, me.as_str(), false)
        });
        if let Err(err) = kept {
            warnings.push(format!(
                "{} was sent, but not kept in this project's history: {err}",
                message.id
            ));
        }
    }

    /// Called once `message` was taken by `owner`: keeps it in the
    /// receiving project's archive. Never fails the delivery.
    pub(crate) fn archive_received(&self, message: &Message, owner: &SessionId) {
        if !matches!(message.kind, Kind::Query | Kind::Response) {
            return;
        }
        let Ok(key) = self.session_key(owner, None) else {
            return;
        };
        // Sent by a session of the same project: its sender kept it.
        if self.is_member(&key, &message.from) {
            return;
        }
        let _ = self.append_record(&key, message, Direction::In, owner.as_str(), false);
    }

    /// Archives the messages of a session directory about to be deleted
    /// (`dir`, live or moved into `.trash/`): pending ones marked as never
    /// taken, taken ones unless the archive has them. With `dry_run`, only
    /// counts. Returns how many messages it archived.
    ///
    /// # Errors
    /// When one could not be archived: the directory must then be kept.
    pub(crate) fn archive_removed_session(
        &self,
        dir: &Path,
        id: &SessionId,
        project: Option<&str>,
        dry_run: bool,
        warnings: &mut Vec<String>,
    ) -> Result<u32> {
        let messages = mailbox_messages(dir, id, false);
        if messages.is_empty() {
            return Ok(0);
        }
        let key = match Self::recorded_key(dir) {
            Some(key) => key,
            None => {
                let project = project.ok_or_else(|| {
                    BridgeError::corrupt(&dir.join("manifest.json"), "no project to archive into")
                })?;
                match (dry_run, self.archive_key_of(project)) {
                    (_, Some(key)) => key,
                    (true, None) => return Ok(messages.len() as u32),
                    (false, None) => self.archive_key_for_write(project)?,
                }
            }
        };
        let present = self.logged_ids(&key, warnings);
        let mut archived = 0;
        for found in &messages {
            if !(dry_run || found.taken && present.contains(&found.message.id)) {
                self.append_record(
                    &key,
                    &found.message,
                    Direction::In,
                    id.as_str(),
                    !found.taken,
                )?;
            }
            archived += 1;
        }
        Ok(archived)
    }
}
