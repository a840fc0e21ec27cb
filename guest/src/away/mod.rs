//! Away answers: a session whose agent stopped, in a project that opted
//! in, stays registered as `away`, and each query to it is answered by a
//! read-only fork of its agent's transcript, which the host's away
//! answerer runs (`bridge-host away-answer`).
//!
//! The guest holds the rules: which projects opted in and their limits
//! (`settings`), when a session goes away and comes back (`session`), and
//! which queries a fork may answer, the claim it holds meanwhile, the text
//! it is given and the reply's provenance (`answer`). The host runs the
//! fork and reports how it ended.
//!
//! An away session's folder holds `away.json` (the agent session to
//! resume, its working directory and transcript, since when) and
//! `away-held/<msg-id>` for each query a limit held for its next live
//! session (the reason).

mod answer;
mod session;
mod settings;

#[cfg(test)]
mod tests;

pub(crate) use session::answerable;
pub(crate) use settings::Settings;

/// The manifest status of an away session.
pub(crate) const AWAY_STATUS: &str = "away";
