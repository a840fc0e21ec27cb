//! Step files: `receipts/<msg-id>.<stage>` in the sender's session,
//! written once by whichever session makes the step, read back checked,
//! and set aside when corrupt; and the unseen marker.
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::MAX_STEP_FILE_BYTES;
use super::{MAX_DETAIL_CHARS, MAX_TAKER_LEN};
use crate::error::{BridgeError, Result, display_path};
use crate::files::{self, ReadFailure};
use crate::ids::{MessageId, SessionId, random_token};
use crate::{Bridge, Layout, Platform, ReceiptEvent, Stage, clock};

/// One step file.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(super) struct Step {
    pub(super) at: String,
    #[serde(default)]
    pub(super) by: Option<String>,
    #[serde(default)]
    pub(super) taker: Option<String>,
    #[serde(default)]
    pub(super) detail: Option<String>,
}

impl Step {
    /// Parses and checks a step file: a wire stamp, a session ID, a plain
    /// taker word and a bounded detail. Anything else is corrupt.
    pub(super) fn parse(bytes: &[u8]) -> std::result::Result<Step, String> {
        let step: Step =
            serde_json::from_slice(bytes).map_err(|e| format!("not a valid receipt: {e}"))?;
        if clock::parse_stamp(&step.at).is_none() {
            return Err(format!("its time {:?} is not a UTC stamp", step.at));
        }
        if let Some(by) = &step.by {
            SessionId::parse(by).map_err(|_| format!("its session {by:?} is not a session ID"))?;
        }
        if let Some(taker) = &step.taker {
            let plain = !taker.is_empty()
                && taker.len() <= MAX_TAKER_LEN
                && taker
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !plain {
                return Err(format!("its taker {taker:?} is not a taker kind"));
            }
        }
        if let Some(detail) = &step.detail
            && detail.chars().count() > MAX_DETAIL_CHARS
        {
            return Err(format!("its detail is over {MAX_DETAIL_CHARS} characters"));
        }
        Ok(step)
    }

    pub(super) fn event(self, stage: Stage) -> ReceiptEvent {
        ReceiptEvent {
            stage,
            at: self.at,
            by: self.by,
            taker: self.taker,
            detail: self.detail,
        }
    }
}

/// At most [`MAX_DETAIL_CHARS`] of `text`.
pub(super) fn bounded_detail(text: &str) -> String {
    match text.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((end, _)) => text[..end].to_string(),
        None => text.to_string(),
    }
}

impl<P: Platform> Bridge<P> {
    /// Writes the step `stage` of `message` into `sender`'s receipts, made
    /// now by `by` as `taker`. Ok(false) when `sender`'s session directory
    /// is missing or refused. The common case costs one small write: the
    /// folder is looked at only when the write fails.
    pub(super) fn write_step(
        &self,
        sender: &SessionId,
        message: &MessageId,
        stage: Stage,
        by: Option<&SessionId>,
        taker: &str,
        detail: Option<&str>,
    ) -> Result<bool> {
        let step = Step {
            at: clock::now_stamp(),
            by: by.map(SessionId::to_string),
            taker: Some(taker.to_string()),
            detail: detail.map(bounded_detail),
        };
        let bytes = serde_json::to_vec(&step).expect("steps serialize");
        let dir = self.layout.receipts(sender);
        let name = Layout::receipt_name(message, stage.as_str());
        // A take and a hand-over to the relay server are on the hot path
        // and each has one first time: the step is created in place,
        // exclusively, in one write (a reader that meets it half written
        // waits for it, see `read_step`). The other steps are rare and
        // replace what was there, through a temporary file.
        let write = |dir: &Path| -> std::io::Result<bool> {
            if matches!(stage, Stage::Taken | Stage::Relayed) {
                files::write_new_once(&dir.join(&name), &bytes)
            } else {
                files::replace(dir, &name, &bytes)
                    .map(|()| true)
                    .map_err(|e| std::io::Error::other(e.to_string()))
            }
        };
        if let Ok(written) = write(&dir) {
            return Ok(written);
        }
        if !self.session_dir_usable(sender)? {
            return Ok(false);
        }
        files::ensure_child_dir(&dir)?;
        write(&dir)
            .map_err(|err| BridgeError::io("cannot write the receipt", &dir.join(&name), &err))
    }

    /// Leaves a marker that `owner` took `id` from `sender` through the wake
    /// hook, for `seen`.
    pub(super) fn mark_unseen(&self, owner: &SessionId, id: &MessageId, sender: &SessionId) {
        let dir = self.layout.unseen(owner);
        let marker = format!("{sender} {}", clock::epoch_millis());
        if files::replace(&dir, id.as_str(), marker.as_bytes()).is_err()
            && files::ensure_child_dir(&dir).is_ok()
        {
            let _ = files::replace(&dir, id.as_str(), marker.as_bytes());
        }
    }

    /// The step `stage` of `id` in `me`'s receipts, if a sound one is there.
    /// A corrupt one is set aside with a warning.
    pub(super) fn read_step(
        &self,
        me: &SessionId,
        id: &MessageId,
        stage: Stage,
        warnings: &mut Vec<String>,
    ) -> Option<Step> {
        let dir = self.layout.receipts(me);
        let name = Layout::receipt_name(id, stage.as_str());
        let path = dir.join(&name);
        let problem = match files::read_bounded_with_stat(&path, MAX_STEP_FILE_BYTES) {
            Ok((bytes, stat)) => match Step::parse(&bytes) {
                Ok(step) => return Some(step),
                // A take's and a hand-over's steps are written in place:
                // one still being written is left for the next look.
                Err(_)
                    if matches!(stage, Stage::Taken | Stage::Relayed)
                        && stat.modified.is_some()
                        && !clock::older_than(stat.modified, STEP_WRITE_GRACE) =>
                {
                    return None;
                }
                Err(reason) => reason,
            },
            Err(ReadFailure::Missing) => return None,
            Err(ReadFailure::Io(err)) => {
                warnings.push(format!(
                    "could not read the receipt {}: {}; it was left out",
                    display_path(&path),
                    crate::error::describe_io(&err)
                ));
                return None;
            }
            Err(failure) => failure.describe(MAX_STEP_FILE_BYTES),
        };
        self.set_aside_step(me, &name, &problem, warnings);
        None
    }

    /// Moves the corrupt step file `name` of `me` into `receipts/rejected/`
    /// beside a `.reason` file, and says so.
    pub(super) fn set_aside_step(
        &self,
        me: &SessionId,
        name: &str,
        reason: &str,
        warnings: &mut Vec<String>,
    ) {
        let from = self.layout.receipts(me).join(name);
        let rejected = self.layout.rejected_receipts(me);
        let kept = format!("{}-{}-{name}", clock::epoch_millis(), random_token(6));
        let moved = files::ensure_child_dir(&rejected)
            .and_then(|()| {
                std::fs::rename(&from, rejected.join(&kept))
                    .map_err(|err| BridgeError::io("cannot set aside", &from, &err))
            })
            .and_then(|()| files::replace(&rejected, &format!("{kept}.reason"), reason.as_bytes()));
        let shown = display_path(&from);
        warnings.push(match moved {
            Ok(()) => format!(
                "set aside the corrupt receipt {shown}: {reason}; it is kept as {}, and the \
                 receipt goes by the mailboxes instead",
                display_path(&rejected.join(kept))
            ),
            Err(err) => format!(
                "ignored the corrupt receipt {shown}: {reason}; it could not be set aside ({err})"
            ),
        });
    }
}

/// How long a take's step may be seen half written before it counts as
/// corrupt.
pub(super) const STEP_WRITE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// `<sender> <epoch-ms>`.
pub(super) fn parse_marker(bytes: &[u8]) -> Option<(SessionId, u64)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (sender, at) = text.trim().split_once(' ')?;
    Some((SessionId::parse(sender).ok()?, at.parse().ok()?))
}
