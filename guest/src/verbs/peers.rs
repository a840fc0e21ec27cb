//! `peers`: the sessions on this bridge, and whom this one talks with.
use std::collections::BTreeSet;

use crate::error::Result;
use crate::ids::SessionId;
use crate::wire::{Kind, Message};
use crate::{Bridge, Context, Peer, PeerEntry, Platform};

impl<P: Platform> Bridge<P> {
    pub(super) fn peers(&self, context: &Context) -> Result<Vec<PeerEntry>> {
        // This session's own directory may be the unsafe one: it is listed
        // as such, like any other.
        let me = match self.resolve(context) {
            Err(refused) if crate::registry::is_refused(&refused) => None,
            other => other?,
        };
        let mut entries = Vec::new();
        for id in self.session_ids()? {
            let entry = match self.manifest(&id) {
                Ok(manifest) => PeerEntry::Valid(Peer {
                    stale: manifest.is_stale(),
                    this_session: me.as_ref() == Some(&id),
                    manifest,
                }),
                Err(err) if crate::registry::is_refused(&err) => PeerEntry::Unsafe {
                    session_id: id.to_string(),
                    reason: crate::registry::REFUSED_SESSION.to_string(),
                },
                Err(err) => PeerEntry::Unreadable {
                    session_id: id.to_string(),
                    reason: err.to_string(),
                },
            };
            entries.push(entry);
        }
        Ok(entries)
    }

    /// Sessions `me` exchanged messages with (of `kind`, or any kind), that
    /// still exist.
    pub(super) fn correspondents(
        &self,
        me: &SessionId,
        kind: Option<Kind>,
    ) -> Result<BTreeSet<SessionId>> {
        let wanted = |m: &Message| kind.is_none_or(|k| m.kind == k);
        let senders = self
            .inbox_history(me)?
            .into_iter()
            .filter(wanted)
            .filter_map(|m| m.sender());
        let recipients = self
            .outbox_history(me)?
            .into_iter()
            .filter(wanted)
            .filter_map(|m| m.recipient());
        Ok(senders
            .chain(recipients)
            .filter(|id| id != me && self.session_exists(id))
            .collect())
    }
}
