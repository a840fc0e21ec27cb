//! `cleanup`: removing sessions whose agents are gone, archiving old
//! read messages, emptying the trash and setting aside unreadable lines.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::json;

use super::record::{Direction, parse_record, record_part};
use super::scan::{is_blank, scan_back};
use super::{DEFAULT_RETENTION, REJECTED_MAX_AGE};
use crate::error::{BridgeError, Result, display_path};
use crate::files;
use crate::ids::SessionId;
use crate::registry::{PRUNE_AFTER_SECS, read_moved_manifest, remove_tree, validate_project_dir};
use crate::wire::{MAX_MESSAGE_FILE_BYTES, Manifest, Message, STALE_AFTER_SECS, Status};
use crate::{Bridge, CleanupReport, Context, Platform, clock};

/// A short human age: `40 s ago`, `12 min ago`, `3 h ago`, `9 d ago`.
pub(super) fn ago(age: Option<Duration>) -> String {
    let Some(age) = age else {
        return "unreadable".to_string();
    };
    let secs = age.as_secs();
    match secs {
        0..60 => format!("{secs} s ago"),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86400 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86400),
    }
}

/// Parses `--retention`.
///
/// # Errors
/// `InvalidArgument` naming the accepted form.
pub(crate) fn parse_retention(text: Option<&str>) -> Result<Duration> {
    let Some(text) = text else {
        return Ok(DEFAULT_RETENTION);
    };
    humantime::parse_duration(text.trim()).map_err(|err| {
        BridgeError::InvalidArgument(format!(
            "retention {text:?} is not a duration ({err}): give a number and a unit, such as \
             7d, 36h or 90min (--retention or BRIDGE_RETENTION; the default is 7d)"
        ))
    })
}

/// One message file of a mailbox being archived.
pub(super) struct MailboxMessage {
    pub(super) path: PathBuf,
    pub(super) message: Message,
    /// False for one still pending (or claimed but not committed).
    pub(super) taken: bool,
    pub(super) modified: Option<SystemTime>,
}

/// The message files under `session_dir` (a session directory, live or
/// moved aside) owned by `owner`: the inbox (pending, or marked read by the
/// original), claims, and `read/` (only when `read_only`, just those).
pub(super) fn mailbox_messages(
    session_dir: &Path,
    owner: &SessionId,
    read_only: bool,
) -> Vec<MailboxMessage> {
    let inbox = session_dir.join("inbox");
    let mut dirs = vec![inbox.join("read")];
    if !read_only {
        dirs.push(inbox.clone());
        dirs.push(inbox.join("claimed"));
    }
    let mut found = Vec::new();
    for dir in dirs {
        let Ok(names) = files::list(&dir) else {
            continue;
        };
        for name in names {
            let (stem, claim) = match name.strip_suffix(".json") {
                Some(stem) => (stem, None),
                None if name.ends_with(".claim") => {
                    (name.split('.').next().unwrap_or(""), Some(false))
                }
                None if name.ends_with(".taken") => {
                    (name.split('.').next().unwrap_or(""), Some(true))
                }
                None => continue,
            };
            let path = dir.join(&name);
            let Ok((bytes, stat)) = files::read_bounded_with_stat(&path, MAX_MESSAGE_FILE_BYTES)
            else {
                continue;
            };
            let Ok(message) = Message::parse(&bytes, stem, Some(owner)) else {
                continue;
            };
            let taken = match claim {
                Some(taken) => taken,
                None => message.status != Status::Pending,
            };
            found.push(MailboxMessage {
                path,
                message,
                taken,
                modified: stat.modified,
            });
        }
    }
    found
}

/// What cleanup decided about one session.
pub(super) enum Fate {
    /// Stale and its agent gone: removed, messages archived.
    Remove { stale_after: u64 },
    /// Kept; `tidy` when its old read messages and files may be cleaned.
    Keep { reason: String, tidy: bool },
}

impl<P: Platform> Bridge<P> {
    /// `cleanup`.
    pub(crate) fn cleanup(
        &self,
        context: &Context,
        dry_run: bool,
        warnings: &mut Vec<String>,
    ) -> Result<CleanupReport> {
        let retention = parse_retention(context.retention.as_deref())?;
        let me = self.resolve(context)?;
        let mut report = CleanupReport {
            dry_run,
            ..CleanupReport::default()
        };
        for id in self.session_ids()? {
            self.clean_session(&id, me.as_ref(), retention, true, &mut report, warnings);
        }
        self.clean_trash(dry_run, &mut report, warnings);
        if validate_project_dir(&context.project_dir).is_ok()
            && let Some(key) = self.archive_key_of(&context.project_dir)
        {
            self.set_aside_lines(&key, dry_run, warnings);
        }
        Ok(report)
    }

    /// The cheap part of cleanup, run by `stop` and `session-start`: ghost
    /// sessions, and this session's own taken messages past the retention.
    /// Nothing it reads reaches an agent; only the counts are reported.
    pub(crate) fn cleanup_cheap(
        &self,
        context: &Context,
        me: &SessionId,
        warnings: &mut Vec<String>,
    ) -> CleanupReport {
        let retention = parse_retention(context.retention.as_deref()).unwrap_or_else(|err| {
            warnings.push(format!("{err}; cleanup used the default"));
            DEFAULT_RETENTION
        });
        let mut report = CleanupReport::default();
        let Ok(ids) = self.session_ids() else {
            return report;
        };
        for id in ids {
            self.clean_session(&id, Some(me), retention, false, &mut report, warnings);
        }
        report
    }

    /// What cleanup makes of session `id`.
    pub(super) fn fate(
        &self,
        id: &SessionId,
        manifest: &Manifest,
        me: Option<&SessionId>,
        thorough: bool,
    ) -> Fate {
        let age = clock::age(&manifest.last_heartbeat);
        if me == Some(id) {
            return Fate::Keep {
                reason: format!("{id}: this session"),
                tidy: true,
            };
        }
        // An away session is ended by `cleanup` itself, never by the
        // cheap pass that every session start runs.
        if manifest.status == crate::away::AWAY_STATUS && self.is_away(id) {
            return if thorough {
                Fate::Remove { stale_after: 0 }
            } else {
                Fate::Keep {
                    reason: format!("{id}: away, answered from its transcript"),
                    tidy: false,
                }
            };
        }
        if !manifest.heartbeat_older_than(STALE_AFTER_SECS) {
            return Fate::Keep {
                reason: format!("{id}: heartbeat {}", ago(age)),
                tidy: false,
            };
        }
        // Early removal only on word that its agent process ended; a stale
        // heartbeat alone (a terminal session nobody is typing in) waits for
        // the abandonment age.
        match self.agent_process_running(id) {
            Some(true) => Fate::Keep {
                reason: format!("{id}: its agent is running (heartbeat {})", ago(age)),
                tidy: true,
            },
            Some(false) => Fate::Remove {
                stale_after: STALE_AFTER_SECS,
            },
            None if manifest.heartbeat_older_than(PRUNE_AFTER_SECS) => Fate::Remove {
                stale_after: PRUNE_AFTER_SECS,
            },
            None => Fate::Keep {
                reason: format!(
                    "{id}: heartbeat {}; without word of its agent it is removed after {} min",
                    ago(age),
                    PRUNE_AFTER_SECS / 60
                ),
                tidy: true,
            },
        }
    }

    /// Removes session `id` when it is a ghost, or archives its taken
    /// messages past `retention` and (when `thorough`) its old files.
    /// Only this session (`me`) is tidied when `thorough` is false.
    pub(super) fn clean_session(
        &self,
        id: &SessionId,
        me: Option<&SessionId>,
        retention: Duration,
        thorough: bool,
        report: &mut CleanupReport,
        warnings: &mut Vec<String>,
    ) {
        let manifest = match self.manifest(id) {
            Ok(manifest) => manifest,
            Err(err) if crate::registry::is_refused(&err) => {
                report
                    .kept
                    .push(format!("{id}: refused as unsafe; left alone"));
                return;
            }
            Err(BridgeError::NoSuchSession(_)) => return,
            Err(err) => {
                report.kept.push(format!("{id}: {err}; left alone"));
                return;
            }
        };
        match self.fate(id, &manifest, me, thorough) {
            Fate::Remove { stale_after } => {
                // An away session (`stale_after` 0) goes while it is away.
                let abandoned = |m: &Manifest| {
                    if stale_after == 0 {
                        m.status == crate::away::AWAY_STATUS
                    } else {
                        m.heartbeat_older_than(stale_after)
                    }
                };
                if report.dry_run {
                    match self.archive_removed_session(
                        &self.layout.session(id),
                        id,
                        Some(&manifest.project_path),
                        true,
                        warnings,
                    ) {
                        Ok(count) => {
                            report.messages_archived += count;
                            report.sessions_removed.push(id.to_string());
                        }
                        Err(err) => report.kept.push(format!("{id}: {err}")),
                    }
                    return;
                }
                match self.remove_session_if(id, abandoned, warnings) {
                    Ok(Some(count)) => {
                        report.messages_archived += count;
                        report.sessions_removed.push(id.to_string());
                    }
                    Ok(None) => report
                        .kept
                        .push(format!("{id}: it came back while being removed")),
                    Err(err) => warnings.push(format!("could not remove session {id}: {err}")),
                }
            }
            Fate::Keep { reason, tidy } => {
                let mine = me == Some(id);
                if tidy && (thorough || mine) {
                    self.archive_old_read(id, &manifest, retention, report, warnings);
                    if thorough {
                        self.remove_old_files(id, report);
                    }
                }
                if !mine || thorough {
                    report.kept.push(reason);
                }
            }
        }
    }

    /// Moves `id`'s taken messages older than `retention` out of `read/`
    /// into its project's archive (those the archive has are only removed).
    pub(super) fn archive_old_read(
        &self,
        id: &SessionId,
        manifest: &Manifest,
        retention: Duration,
        report: &mut CleanupReport,
        warnings: &mut Vec<String>,
    ) {
        let old: Vec<MailboxMessage> = mailbox_messages(&self.layout.session(id), id, true)
            .into_iter()
            .filter(|m| clock::older_than(m.modified, retention))
            .collect();
        if old.is_empty() {
            return;
        }
        if report.dry_run {
            report.messages_archived += old.len() as u32;
            return;
        }
        let key = match self.session_key(id, Some(&manifest.project_path)) {
            Ok(key) => key,
            Err(err) => {
                warnings.push(format!(
                    "could not archive the read messages of {id}: {err}"
                ));
                return;
            }
        };
        let present = self.logged_ids(&key, warnings);
        for found in old {
            let kept = if present.contains(&found.message.id) {
                Ok(())
            } else {
                self.append_record(&key, &found.message, Direction::In, id.as_str(), false)
            };
            match kept.and_then(|()| files::remove_if_present(&found.path)) {
                Ok(()) => report.messages_archived += 1,
                Err(err) => {
                    warnings.push(format!("could not archive {}: {err}", found.message.id));
                    return;
                }
            }
        }
    }

    /// Removes `id`'s set-aside files past [`REJECTED_MAX_AGE`] and
    /// temporary files past [`crate::mailbox::STALE_TEMP_AGE`].
    pub(super) fn remove_old_files(&self, id: &SessionId, report: &mut CleanupReport) {
        let rejected = self.layout.rejected(id);
        let mut old = Vec::new();
        if let Ok(names) = files::list(&rejected) {
            for name in names {
                let path = rejected.join(&name);
                if files::stat(&path).is_ok_and(|m| {
                    m.kind == files::Kind::File && clock::older_than(m.modified, REJECTED_MAX_AGE)
                }) {
                    old.push(path);
                }
            }
        }
        let session = self.layout.session(id);
        let mut dirs = vec![session.clone()];
        dirs.extend(self.layout.session_dirs(id));
        dirs.extend([self.layout.threads(id), self.layout.pings(id)]);
        for dir in dirs {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                if !name.to_string_lossy().starts_with(".tmp-") {
                    continue;
                }
                let path = dir.join(&name);
                if files::stat(&path).is_ok_and(|m| {
                    m.kind == files::Kind::File
                        && clock::older_than(m.modified, crate::mailbox::STALE_TEMP_AGE)
                }) {
                    old.push(path);
                }
            }
        }
        for path in old {
            if report.dry_run || files::remove_if_present(&path).is_ok() {
                report.files_removed += 1;
            }
        }
    }

    /// Deletes what `.trash/` holds past [`crate::mailbox::STALE_TEMP_AGE`]
    /// (a removal that was interrupted, or a session that could not be put
    /// back), after archiving its messages.
    pub(super) fn clean_trash(
        &self,
        dry_run: bool,
        report: &mut CleanupReport,
        warnings: &mut Vec<String>,
    ) {
        let trash = self.layout.trash();
        let Ok(names) = files::list(&trash) else {
            return;
        };
        for name in names {
            let dir = trash.join(&name);
            let Ok(meta) = files::stat(&dir) else {
                continue;
            };
            let id = name.get(..6).and_then(|id| SessionId::parse(id).ok());
            let manifest = id.as_ref().and_then(|id| read_moved_manifest(&dir, id));
            let newest = [
                meta.modified,
                manifest
                    .as_ref()
                    .and_then(|m| clock::parse_stamp(&m.last_heartbeat)),
            ]
            .into_iter()
            .flatten()
            .max();
            if !clock::older_than(newest, crate::mailbox::STALE_TEMP_AGE) {
                report
                    .kept
                    .push(format!(".trash/{name}: being removed right now"));
                continue;
            }
            if meta.kind == files::Kind::Dir {
                let archived = match &id {
                    Some(id) => self.archive_removed_session(
                        &dir,
                        id,
                        manifest.as_ref().map(|m| m.project_path.as_str()),
                        dry_run,
                        warnings,
                    ),
                    None => Ok(0),
                };
                match archived {
                    Ok(count) => report.messages_archived += count,
                    Err(err) => {
                        report
                            .kept
                            .push(format!(".trash/{name}: {err}; its messages stay there"));
                        continue;
                    }
                }
            }
            report.files_removed += 1;
            if !dry_run {
                let removed = match meta.kind {
                    files::Kind::Dir => remove_tree(&dir),
                    _ => files::remove_if_present(&dir),
                };
                if let Err(err) = removed {
                    warnings.push(format!("could not remove .trash/{name}: {err}"));
                }
            }
        }
    }

    /// Copies the unreadable lines of archive `key` to `rejected.jsonl`,
    /// each after a line naming its offset, then blanks them in place.
    /// The log is never rewritten, so appends running meanwhile are safe.
    pub(super) fn set_aside_lines(&self, key: &str, dry_run: bool, warnings: &mut Vec<String>) {
        let log = self.layout.archive_log(key);
        let mut bad: Vec<(u64, Vec<u8>, String)> = Vec::new();
        let _ = scan_back(&log, |offset, line| {
            let (part, at) = record_part(line);
            match parse_record(part) {
                Ok(_) if at == 0 || is_blank(&line[..at]) => {}
                Ok(_) => bad.push((offset, line[..at].to_vec(), "a torn line".to_string())),
                Err(reason) => bad.push((offset, line.to_vec(), reason)),
            }
            true
        });
        if bad.is_empty() {
            return;
        }
        let rejected = self.layout.archive_rejected(key);
        if dry_run {
            warnings.push(format!(
                "would set aside {} unreadable lines of {} into {}",
                bad.len(),
                display_path(&log),
                display_path(&rejected)
            ));
            return;
        }
        let mut copy = Vec::new();
        for (offset, bytes, reason) in &bad {
            let note =
                json!({ "setAside": clock::now_stamp(), "offset": offset, "reason": reason });
            copy.extend_from_slice(note.to_string().as_bytes());
            copy.push(b'\n');
            copy.extend_from_slice(bytes);
            copy.push(b'\n');
        }
        let blanked = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&rejected)
            .and_then(|mut file| file.write_all(&copy))
            .and_then(|()| fs::OpenOptions::new().write(true).open(&log))
            .and_then(|mut file| {
                for (offset, bytes, _) in &bad {
                    file.seek(SeekFrom::Start(*offset))?;
                    file.write_all(&vec![b' '; bytes.len()])?;
                }
                Ok(())
            });
        match blanked {
            Ok(()) => warnings.push(format!(
                "set aside {} unreadable lines of {} into {}",
                bad.len(),
                display_path(&log),
                display_path(&rejected)
            )),
            Err(err) => warnings.push(format!(
                "could not set aside the unreadable lines of {}: {err}",
                display_path(&log)
            )),
        }
    }
}
