//! Steps the relay carries between machines: those due to a sender of
//! another machine, and those that arrive for a sender here.

use super::MAX_STEP_FILE_BYTES;
use super::steps::Step;
use crate::error::Result;
use crate::files::{self};
use crate::ids::{MessageId, SessionId};
use crate::{Bridge, Layout, Platform, Stage};

impl<P: Platform> Bridge<P> {
    /// The steps written into `remote`, a session of another machine, by
    /// sessions of this one: each a (file name, message, stage, bytes) to
    /// carry back to `remote`'s machine, at most `limit` of them (the rest
    /// wait for the next batch, so a pile of steps is read once, not on
    /// every pass). `answered` stays: the reply itself travels, and its
    /// arrival records the step there.
    pub(crate) fn steps_to_carry(
        &self,
        remote: &SessionId,
        limit: usize,
    ) -> Vec<(String, MessageId, Stage, Vec<u8>)> {
        let dir = self.layout.receipts(remote);
        let Ok(names) = files::list(&dir) else {
            return Vec::new();
        };
        let mut steps = Vec::new();
        for name in names {
            if steps.len() >= limit {
                break;
            }
            let Some((id, stage)) = name.rsplit_once('.') else {
                continue;
            };
            let stage = match stage {
                "taken" => Stage::Taken,
                "seen" => Stage::Seen,
                "set-aside" => Stage::SetAside,
                "recipient-gone" => Stage::RecipientGone,
                "held" => Stage::Held,
                _ => continue,
            };
            let Ok(id) = MessageId::parse(id) else {
                continue;
            };
            if let Ok(bytes) = files::read_bounded(&dir.join(&name), MAX_STEP_FILE_BYTES)
                && Step::parse(&bytes).is_ok()
            {
                steps.push((name, id, stage, bytes));
            }
        }
        steps
    }

    /// Removes a step carried to its session's machine.
    pub(crate) fn carried_step(&self, remote: &SessionId, name: &str) -> Result<()> {
        files::remove_if_present(&self.layout.receipts(remote).join(name))
    }

    /// A step made on machine `from_machine` for a message `sender`, a
    /// session of this machine, sent there. Written only when the step is
    /// well formed, names as its maker a session of that machine, and the
    /// sender's outbox shows the message went to that session.
    pub(crate) fn accept_carried_step(
        &self,
        from_machine: &str,
        sender: &SessionId,
        id: &MessageId,
        stage: &str,
        step: &[u8],
    ) -> std::result::Result<bool, String> {
        let stage = match stage {
            "taken" => Stage::Taken,
            "seen" => Stage::Seen,
            "set-aside" => Stage::SetAside,
            "recipient-gone" => Stage::RecipientGone,
            "held" => Stage::Held,
            other => {
                return Err(format!(
                    "{id}: {:?} is not a stage carried between machines",
                    other.chars().take(40).collect::<String>()
                ));
            }
        };
        if step.len() as u64 > MAX_STEP_FILE_BYTES {
            return Err(format!(
                "the {} step of {id} is over {MAX_STEP_FILE_BYTES} bytes",
                stage.as_str()
            ));
        }
        let parsed = Step::parse(step)
            .map_err(|why| format!("the {} step of {id}: {why}", stage.as_str()))?;
        let by = parsed
            .by
            .as_deref()
            .and_then(|by| SessionId::parse(by).ok())
            .ok_or_else(|| format!("the {} step of {id} names no session", stage.as_str()))?;
        if self.remote_machine(&by).as_deref() != Some(from_machine) {
            return Err(format!(
                "the {} step of {id} names {by}, which is not a session of machine {from_machine:?}",
                stage.as_str()
            ));
        }
        match self.sent_copy(sender, id) {
            Some(message) if message.to == by.as_str() => {}
            _ => {
                return Err(format!(
                    "{sender} sent no message {id} to {by}, so its {} step is not taken",
                    stage.as_str()
                ));
            }
        }
        let dir = self.layout.receipts(sender);
        files::ensure_child_dir(&dir).map_err(|e| e.to_string())?;
        let name = Layout::receipt_name(id, stage.as_str());
        // A take in place, as one made here is (see `write_step`).
        if stage == Stage::Taken {
            return files::write_new_once(&dir.join(&name), step).map_err(|e| e.to_string());
        }
        if files::stat(&dir.join(&name)).is_ok() {
            return Ok(false);
        }
        files::replace(&dir, &name, step).map_err(|e| e.to_string())?;
        Ok(true)
    }
}
