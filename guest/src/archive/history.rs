//! `history`: the newest records of the acting project, filtered by peer
//! or text.

use std::collections::HashMap;

use super::record::{Direction, is_stub, json_escaped, parse_record, raw_names_peer, record_part};
use super::scan::{LineTrouble, scan_back};
use super::{DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT};
use crate::error::{BridgeError, Result, display_path};
use crate::ids::SessionId;
use crate::registry::validate_project_dir;
use crate::wire::{Kind, Message, Status};
use crate::{Bridge, Context, HistoryEntry, HistoryQuery, Platform};

/// What `history` keeps of one line.
pub(super) struct Filter<'a> {
    pub(super) peer: Option<&'a str>,
    pub(super) grep: Option<&'a str>,
    pub(super) raw_peer: Option<[String; 2]>,
    pub(super) raw_grep: Option<String>,
    /// Searches a raw line for `raw_grep`, built once.
    pub(super) grep_finder: Option<memchr::memmem::Finder<'static>>,
}

impl<'a> Filter<'a> {
    pub(super) fn new(peer: Option<&'a str>, grep: Option<&'a str>) -> Self {
        Filter {
            peer,
            grep,
            raw_peer: peer.map(|p| [format!(",\"from\":\"{p}\""), format!(",\"to\":\"{p}\"")]),
            raw_grep: grep.map(json_escaped),
            grep_finder: grep
                .map(|g| memchr::memmem::Finder::new(json_escaped(g).as_bytes()).into_owned()),
        }
    }

    /// False when the raw line cannot hold a match: cheap, and never wrong
    /// that way. A large record's stub always may.
    pub(super) fn may_match(&self, line: &[u8]) -> bool {
        if self.raw_peer.is_none() && self.raw_grep.is_none() {
            return true;
        }
        if is_stub(line) {
            return true;
        }
        if let Some(peer) = self.peer
            && !raw_names_peer(line, peer, self.raw_peer.as_ref())
        {
            return false;
        }
        match &self.grep_finder {
            Some(finder) => finder.find(line).is_some(),
            None => true,
        }
    }

    /// Conversations only: a ping or a session-ended notice kept from a
    /// removed session's inbox says nothing worth listing.
    pub(super) fn matches(&self, message: &Message) -> bool {
        matches!(message.kind, Kind::Query | Kind::Response)
            && self
                .peer
                .is_none_or(|p| message.from == p || message.to == p)
            && self.grep.is_none_or(|g| message.content.contains(g))
    }
}

/// How far a record's status says it got, for merging the two records of
/// a message sent and taken within one project.
pub(super) fn status_rank(status: Status) -> u8 {
    match status {
        Status::Sent => 0,
        Status::Pending => 1,
        Status::Read => 2,
    }
}

impl<P: Platform> Bridge<P> {
    /// The project whose history `history` and `thread` read: the acting
    /// session's when a session is given (`--session`, or the agent's own),
    /// whatever the working directory; else the working directory's.
    pub(super) fn acting_project(&self, context: &Context) -> String {
        if context.session.is_none() && context.agent_session.is_none() {
            return context.project_dir.clone();
        }
        let acting = match self.identify(context) {
            Ok(Some((_, Some(manifest)))) => Some(manifest),
            Ok(Some((id, None))) => self.manifest(&id).ok(),
            _ => None,
        };
        acting.map_or_else(|| context.project_dir.clone(), |m| m.project_path)
    }

    /// `history`.
    pub(crate) fn history(
        &self,
        context: &Context,
        query: &HistoryQuery,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<HistoryEntry>> {
        let project = self.acting_project(context);
        validate_project_dir(&project)?;
        let peer = query.peer.as_deref().map(SessionId::parse).transpose()?;
        let limit = match query.limit {
            None => DEFAULT_HISTORY_LIMIT,
            Some(0) => {
                return Err(BridgeError::InvalidArgument(format!(
                    "--limit 0 lists nothing; give 1 to {MAX_HISTORY_LIMIT} (the default is \
                     {DEFAULT_HISTORY_LIMIT})"
                )));
            }
            Some(n) if n > MAX_HISTORY_LIMIT => {
                warnings.push(format!(
                    "--limit {n} is over the most history lists at once; showing the newest \
                     {MAX_HISTORY_LIMIT}"
                ));
                MAX_HISTORY_LIMIT
            }
            Some(n) => n,
        };
        let Some(key) = self.archive_key_of(&project) else {
            return Ok(Vec::new());
        };
        let filter = Filter::new(peer.as_ref().map(SessionId::as_str), query.grep.as_deref());
        Ok(self.search(&key, &filter, limit as usize, warnings))
    }

    /// The newest `limit` messages of archive `key` that `filter` keeps,
    /// newest last.
    pub(super) fn search(
        &self,
        key: &str,
        filter: &Filter,
        limit: usize,
        warnings: &mut Vec<String>,
    ) -> Vec<HistoryEntry> {
        let log = self.layout.archive_log(key);
        let mut trouble = LineTrouble::new(&log);
        // Newest first while reading; (entry, order read).
        let mut found: Vec<HistoryEntry> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let scanned = scan_back(&log, |offset, line| {
            if !filter.may_match(line) {
                return true;
            }
            let record = match parse_record(line) {
                Ok(record) => Ok(record),
                Err(reason) => match record_part(line) {
                    (part, at) if at > 0 => parse_record(part).map_err(|_| reason),
                    _ => Err(reason),
                },
            }
            .and_then(|record| self.complete(key, record));
            let record = match record {
                Ok(record) => record,
                Err(reason) => {
                    trouble.note(offset, &reason, warnings);
                    return true;
                }
            };
            if !filter.matches(&record.message) {
                return true;
            }
            let outgoing = record.direction == Direction::Out;
            match index.get(&record.message.id) {
                Some(&at) => {
                    let entry = &mut found[at];
                    entry.outgoing |= outgoing;
                    if status_rank(record.message.status) > status_rank(entry.message.status) {
                        entry.message.status = record.message.status;
                    }
                }
                None => {
                    index.insert(record.message.id.clone(), found.len());
                    found.push(HistoryEntry {
                        message: record.message,
                        outgoing,
                    });
                }
            }
            found.len() < limit
        });
        if let Err(err) = scanned {
            warnings.push(format!("could not read {}: {err}", display_path(&log)));
        }
        trouble.finish(warnings);
        found.reverse();
        // Oldest first by the time each was sent; the log's order breaks ties.
        found.sort_by(|a, b| a.message.timestamp.cmp(&b.message.timestamp));
        found
    }
}
