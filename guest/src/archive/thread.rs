//! `thread`: one conversation, from the query it started with to its
//! last reply.

use std::collections::{HashMap, HashSet};

use super::record::{parse_record, raw_id, raw_reply_to, record_part};
use super::scan::{LineTrouble, read_line_at, scan_back};
use crate::error::{BridgeError, Result, display_path};
use crate::ids::MessageId;
use crate::registry::validate_project_dir;
use crate::wire::Message;
use crate::{Bridge, Context, Platform};

impl<P: Platform> Bridge<P> {
    /// `thread`: the conversation `id` belongs to, oldest first.
    pub(crate) fn thread(
        &self,
        context: &Context,
        id: &str,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<Message>> {
        let id = MessageId::parse(id)?;
        let project = self.acting_project(context);
        validate_project_dir(&project)?;
        // Every message known here: id -> (message or where its line is, parent).
        let mut known: HashMap<String, Known> = HashMap::new();
        let key = self.archive_key_of(&project);
        if let Some(key) = &key {
            let log = self.layout.archive_log(key);
            let mut order = 0u64;
            let scanned = scan_back(&log, |offset, line| {
                let (part, at) = record_part(line);
                if let Some(found) = raw_id(part) {
                    order += 1;
                    known.entry(found.to_string()).or_insert(Known {
                        parent: raw_reply_to(part).map(str::to_string),
                        message: None,
                        line: Some(offset + at as u64),
                        order,
                    });
                }
                true
            });
            if let Err(err) = scanned {
                warnings.push(format!("could not read {}: {err}", display_path(&log)));
            }
        }
        // This session's live mailbox: what the archive does not have yet.
        if let Some(me) = self.resolve(context)? {
            let mut live = self.inbox_history(&me)?;
            live.extend(self.outbox_history(&me)?);
            for message in live {
                let order = u64::MAX - known.len() as u64;
                known.entry(message.id.clone()).or_insert(Known {
                    parent: message.in_reply_to.clone(),
                    message: Some(message),
                    line: None,
                    order,
                });
            }
        }
        if !known.contains_key(id.as_str()) {
            return Err(BridgeError::NoSuchMessage(id.to_string()));
        }
        let root_of = |start: &str| -> String {
            let mut at = start.to_string();
            let mut seen = HashSet::new();
            while let Some(parent) = known.get(&at).and_then(|k| k.parent.clone()) {
                if !known.contains_key(&parent) || !seen.insert(at.clone()) {
                    break;
                }
                at = parent;
            }
            at
        };
        let root = root_of(id.as_str());
        let members: Vec<String> = known
            .keys()
            .filter(|k| root_of(k) == root)
            .cloned()
            .collect();
        let mut messages = Vec::new();
        let log = key.as_ref().map(|k| self.layout.archive_log(k));
        let mut trouble = log.as_deref().map(LineTrouble::new);
        for member in members {
            let entry = &known[&member];
            let message = match (&entry.message, entry.line, &key, &log) {
                (Some(message), _, _, _) => message.clone(),
                (None, Some(offset), Some(key), Some(log)) => {
                    match read_line_at(log, offset)
                        .and_then(|line| parse_record(&line))
                        .and_then(|record| self.complete(key, record))
                    {
                        Ok(record) => record.message,
                        Err(reason) => {
                            if let Some(trouble) = trouble.as_mut() {
                                trouble.note(offset, &reason, warnings);
                            }
                            continue;
                        }
                    }
                }
                _ => continue,
            };
            let depth = depth_of(&known, &member);
            messages.push((message, depth, std::cmp::Reverse(entry.order)));
        }
        if let Some(trouble) = trouble {
            trouble.finish(warnings);
        }
        messages.sort_by(|a, b| (&a.0.timestamp, a.1, a.2).cmp(&(&b.0.timestamp, b.1, b.2)));
        Ok(messages.into_iter().map(|(m, _, _)| m).collect())
    }
}

/// A message `thread` knows of.
pub(super) struct Known {
    pub(super) parent: Option<String>,
    pub(super) message: Option<Message>,
    /// Where its record starts in the log.
    pub(super) line: Option<u64>,
    /// Its place in the log, newest first (mailbox messages last).
    pub(super) order: u64,
}

/// How many known ancestors `id` has.
pub(super) fn depth_of(known: &HashMap<String, Known>, id: &str) -> usize {
    let mut depth = 0;
    let mut at = id;
    while let Some(parent) = known.get(at).and_then(|k| k.parent.as_deref()) {
        if !known.contains_key(parent) || depth > known.len() {
            break;
        }
        depth += 1;
        at = parent;
    }
    depth
}
