//! The verbs of `bridge-host run`.

use crate::error::{BridgeError, Result};
use crate::wire::MAX_CONTENT_BYTES;

/// What `connect` sends, and a listener answers with.
const PING_CONTENT: &str = "connected";

/// What `stop` sends to peers.
const SESSION_ENDED_CONTENT: &str = "Session ended";

/// Refuses content over [`MAX_CONTENT_BYTES`].
pub fn check_content(content: &str) -> Result<()> {
    if content.len() > MAX_CONTENT_BYTES {
        return Err(BridgeError::ContentTooLarge {
            size: content.len() as u64,
            limit: MAX_CONTENT_BYTES as u64,
        });
    }
    Ok(())
}

/// Up to this many pending messages are read in full and handed out oldest
/// first. Past it (a backlog), messages are tried in arbitrary order, each
/// read only when reached, so that taking one costs little however many
/// wait and concurrent listeners do not all contend for the same one.
pub(crate) const OLDEST_FIRST_LIMIT: usize = 64;

// A look must read past the limit to know that a backlog is there.
const _: () = assert!(crate::mailbox::PENDING_WINDOW > OLDEST_FIRST_LIMIT);

mod dispatch;
mod listen;
mod peers;
mod send;
mod session;
mod wait;

pub(crate) use session::refuse_remote;
pub(crate) use wait::Pick;
