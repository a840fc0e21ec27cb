//! The archive: every message a project exchanged, kept past `stop`, and
//! what `history`, `thread` and `cleanup` read and do.
//!
//! SKELETON (to be written): see the doc comment of each function.

use crate::error::Result;
use crate::ids::SessionId;
use crate::wire::{Manifest, Message};
use crate::{Bridge, CleanupReport, Context, HistoryEntry, HistoryQuery, Platform};

impl<P: Platform> Bridge<P> {
    /// Called after `message` was delivered by `sender` (whose manifest is
    /// `mine`): keeps it in the sender project's archive. Never fails the send.
    pub(crate) fn archive_sent(&self, message: &Message, mine: &Manifest, warnings: &mut Vec<String>) {
        let _ = (message, mine, warnings);
    }

    /// Called once `message` was taken by `owner`: keeps it in the
    /// receiving project's archive. Never fails the delivery.
    pub(crate) fn archive_received(&self, message: &Message, owner: &SessionId) {
        let _ = (message, owner);
    }

    /// `history`.
    pub(crate) fn history(&self, context: &Context, query: &HistoryQuery, warnings: &mut Vec<String>) -> Result<Vec<HistoryEntry>> {
        let _ = (context, query, warnings);
        unimplemented!("archive")
    }

    /// `thread`: the conversation `id` belongs to, oldest first.
    pub(crate) fn thread(&self, context: &Context, id: &str, warnings: &mut Vec<String>) -> Result<Vec<Message>> {
        let _ = (context, id, warnings);
        unimplemented!("archive")
    }

    /// `cleanup`.
    pub(crate) fn cleanup(&self, context: &Context, dry_run: bool, warnings: &mut Vec<String>) -> Result<CleanupReport> {
        let _ = (context, dry_run, warnings);
        unimplemented!("archive")
    }

    /// The cheap part of cleanup, run by `stop` and `session-start`.
    pub(crate) fn cleanup_cheap(&self, me: &SessionId, warnings: &mut Vec<String>) -> CleanupReport {
        let _ = (me, warnings);
        CleanupReport::default()
    }
}

pub(crate) fn history_text(entries: &[HistoryEntry]) -> String {
    let _ = entries;
    unimplemented!("archive")
}

pub(crate) fn history_json(entries: &[HistoryEntry]) -> serde_json::Value {
    let _ = entries;
    unimplemented!("archive")
}

pub(crate) fn thread_text(messages: &[Message]) -> String {
    let _ = messages;
    unimplemented!("archive")
}

pub(crate) fn thread_json(messages: &[Message]) -> serde_json::Value {
    let _ = messages;
    unimplemented!("archive")
}

pub(crate) fn cleanup_text(report: &CleanupReport) -> String {
    let _ = report;
    unimplemented!("archive")
}

pub(crate) fn cleanup_json(report: &CleanupReport) -> serde_json::Value {
    let _ = report;
    unimplemented!("archive")
}
