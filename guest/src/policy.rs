//! Policies: the parts of the protocol a team may replace without touching
//! the host. A policy sees every message before it leaves (and may change
//! or refuse it) and may render any verb's output its own way. The rest —
//! IDs, claiming, reply matching, identity, cleanup — stays the protocol's.
//!
//! A policy crate depends on this one with `default-features = false`,
//! implements [`GuestPolicy`], and exports itself with
//! [`export_policy!`](crate::export_policy); see docs/policies.md, "Writing a
//! policy".

use crate::error::Result;
use crate::wire::Message;
use crate::{Format, Outcome};

/// Settings passed with `--guest-setting KEY=VALUE` (or
/// `BRIDGE_GUEST_SETTINGS`), in the order given.
pub type Settings = [(String, String)];

/// What a policy may change.
pub trait Policy {
    /// Called with every message this session is about to write into a
    /// peer's inbox (queries, responses, pings, session-ended notices). It
    /// may edit the message, or refuse it with an error. The returned lines
    /// go to this session's `policy-audit.log` and are shown as warnings;
    /// they must never repeat anything secret.
    ///
    /// # Errors
    /// A refusal, usually [`BridgeError::InvalidArgument`](crate::BridgeError)
    /// saying why and what to do.
    fn outgoing(&self, message: &mut Message) -> Result<Vec<String>> {
        let _ = message;
        Ok(Vec::new())
    }

    /// Renders a verb's result; None keeps the default rendering.
    fn render(&self, outcome: &Outcome, format: Format) -> Option<String> {
        let _ = (outcome, format);
        None
    }

    /// Renders a failed verb (`verb` is its command-line name); None keeps
    /// the default wording. Where it is printed (standard output for a
    /// timeout and for JSON, standard error otherwise) stays the same.
    fn render_failure(
        &self,
        error: &crate::BridgeError,
        verb: &str,
        format: Format,
    ) -> Option<String> {
        let _ = (error, verb, format);
        None
    }
}

/// A policy that can be exported as a guest component.
pub trait GuestPolicy: Policy + Sized + 'static {
    /// A short name, shown by `bridge-host guest check` and `guest info`.
    const NAME: &'static str;
    /// The policy's own version.
    const VERSION: &'static str;

    /// Builds the policy from its settings.
    ///
    /// # Errors
    /// An unknown key or a bad value, as `InvalidArgument`.
    fn configure(settings: &Settings) -> Result<Self>;
}

/// The protocol as specified: nothing changed, nothing refused.
#[derive(Debug, Default, Clone, Copy)]
pub struct DefaultPolicy;

impl Policy for DefaultPolicy {}

impl GuestPolicy for DefaultPolicy {
    const NAME: &'static str = "default";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn configure(settings: &Settings) -> Result<Self> {
        match settings.first() {
            None => Ok(DefaultPolicy),
            Some((key, _)) => Err(crate::BridgeError::InvalidArgument(format!(
                "the default guest takes no settings, but {key:?} was given; \
                 drop --guest-setting or use a policy guest (--guest)"
            ))),
        }
    }
}
