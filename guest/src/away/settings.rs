//! A project's away settings and its ledger of read-only forks.
//!
//! Both live in the project's archive folder, which outlives its sessions:
//! `archives/<key>/away.json` holds the settings, and
//! `archives/<key>/away-ledger/` one small file per fork started
//! (`<epoch-ms>.<msg-id>.start`) and per fork finished
//! (`<epoch-ms>.<msg-id>.done`, holding the US dollars it cost); an entry
//! of the same kind for the same query in the same millisecond is named
//! `<epoch-ms>-<n>.<msg-id>.<kind>`, so none replaces another. The rate
//! limits count starts, so a fork that crashed still counts; the spend cap
//! adds the costs. Entries older than a day are removed as new ones are
//! written.

use serde::{Deserialize, Serialize};

use crate::error::{BridgeError, Result};
use crate::files::{self};
use crate::ids::MessageId;
use crate::{AwaySettings, Bridge, Platform, clock};

/// The largest settings file read.
const MAX_SETTINGS_BYTES: u64 = 4096;
/// The largest ledger entry read.
const MAX_ENTRY_BYTES: u64 = 64;
const HOUR_MS: u64 = 60 * 60 * 1000;
const DAY_MS: u64 = 24 * HOUR_MS;
/// The most ledger entries of one kind for one query in one millisecond.
const MAX_SAME_MS: u32 = 1000;

/// A project's away settings, with the defaults a project gets at `away on`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct Settings {
    pub enabled: bool,
    pub max_turns: u32,
    pub max_seconds: u32,
    pub per_hour: u32,
    pub per_day: u32,
    pub spend_per_day: f64,
    pub allow_other_machines: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: false,
            max_turns: 8,
            max_seconds: 180,
            per_hour: 20,
            per_day: 100,
            spend_per_day: 2.0,
            allow_other_machines: false,
        }
    }
}

/// The accepted range of each limit.
const TURNS: (u32, u32) = (1, 100);
const SECONDS: (u32, u32) = (10, 3600);
const PER_HOUR: (u32, u32) = (0, 10_000);
const PER_DAY: (u32, u32) = (0, 100_000);
const SPEND: (f64, f64) = (0.0, 1000.0);

fn within(name: &str, flag: &str, value: u32, (low, high): (u32, u32)) -> Result<u32> {
    if (low..=high).contains(&value) {
        Ok(value)
    } else {
        Err(BridgeError::InvalidArgument(format!(
            "{name} {value} is outside {low} to {high}; pass {flag} with a value in that range"
        )))
    }
}

impl Settings {
    /// These settings with `change` applied, every value checked.
    ///
    /// # Errors
    /// `InvalidArgument` naming the value out of range and its range.
    pub(crate) fn with(&self, change: &AwaySettings) -> Result<Settings> {
        let mut next = self.clone();
        if let Some(v) = change.max_turns {
            next.max_turns = within("max-turns", "--max-turns", v, TURNS)?;
        }
        if let Some(v) = change.max_seconds {
            next.max_seconds = within("max-seconds", "--max-seconds", v, SECONDS)?;
        }
        if let Some(v) = change.per_hour {
            next.per_hour = within("per-hour", "--per-hour", v, PER_HOUR)?;
        }
        if let Some(v) = change.per_day {
            next.per_day = within("per-day", "--per-day", v, PER_DAY)?;
        }
        if let Some(v) = change.spend_per_day {
            if !(v.is_finite() && v >= SPEND.0 && v <= SPEND.1) {
                return Err(BridgeError::InvalidArgument(format!(
                    "spend-per-day {v} is outside {} to {} US dollars; pass --spend-per-day \
                     with a value in that range",
                    SPEND.0, SPEND.1
                )));
            }
            next.spend_per_day = v;
        }
        if let Some(v) = change.allow_other_machines {
            next.allow_other_machines = v;
        }
        Ok(next)
    }
}

/// What the ledger says about the last hour and day.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Spent {
    pub last_hour: u32,
    pub last_day: u32,
    pub dollars_last_day: f64,
}

impl<P: Platform> Bridge<P> {
    /// The away settings of `project`; the defaults, off, when it has none.
    /// A settings file that cannot be read counts as off, with a warning.
    pub(crate) fn away_settings(&self, project: &str, warnings: &mut Vec<String>) -> Settings {
        let Some(key) = self.archive_key_of(project) else {
            return Settings::default();
        };
        let path = self.layout.archive(&key).join("away.json");
        match files::read_bounded(&path, MAX_SETTINGS_BYTES) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|err| {
                warnings.push(format!(
                    "{}: {err}; away answers are off until `bridge-host run away on` writes it again",
                    crate::error::display_path(&path)
                ));
                Settings::default()
            }),
            Err(_) => Settings::default(),
        }
    }

    /// Writes the away settings of `project`.
    pub(crate) fn write_away_settings(&self, project: &str, settings: &Settings) -> Result<()> {
        let key = self.archive_key_for_write(project)?;
        let bytes = serde_json::to_vec_pretty(settings).expect("settings serialize");
        files::replace(&self.layout.archive(&key), "away.json", &bytes)
    }

    fn ledger_dir(&self, project: &str) -> Option<std::path::PathBuf> {
        self.archive_key_of(project)
            .map(|key| self.layout.archive(&key).join("away-ledger"))
    }

    /// Records that a fork for `query` starts now.
    pub(crate) fn ledger_start(&self, project: &str, query: &MessageId) -> Result<()> {
        self.ledger_write(project, query, "start", b"")
    }

    /// Records that the fork for `query` ended, having cost `dollars`.
    pub(crate) fn ledger_done(&self, project: &str, query: &MessageId, dollars: f64) -> Result<()> {
        let dollars = if dollars.is_finite() && dollars > 0.0 {
            dollars
        } else {
            0.0
        };
        self.ledger_write(project, query, "done", format!("{dollars:.6}").as_bytes())
    }

    fn ledger_write(
        &self,
        project: &str,
        query: &MessageId,
        kind: &str,
        bytes: &[u8],
    ) -> Result<()> {
        let key = self.archive_key_for_write(project)?;
        let dir = self.layout.archive(&key).join("away-ledger");
        files::ensure_dir(&dir)?;
        let now = clock::epoch_millis();
        // Two entries of one kind for one query can fall in the same
        // millisecond (a fork cut off at once, then its retry): each gets a
        // name of its own, so none replaces another and every one counts.
        let mut written = false;
        for n in 0..MAX_SAME_MS {
            let name = if n == 0 {
                format!("{now}.{query}.{kind}")
            } else {
                format!("{now}-{n}.{query}.{kind}")
            };
            if files::create(&dir, &name, bytes)? {
                written = true;
                break;
            }
        }
        if !written {
            return Err(BridgeError::Io {
                path: crate::error::display_path(&dir),
                reason: format!(
                    "{MAX_SAME_MS} ledger entries for {query} were written in one millisecond"
                ),
            });
        }
        // Forget what no window counts any more.
        for name in files::list(&dir).unwrap_or_default() {
            if entry_time(&name).is_some_and(|at| now.saturating_sub(at) > DAY_MS) {
                let _ = files::remove_if_present(&dir.join(name));
            }
        }
        Ok(())
    }

    /// Forks started in the last hour and day, and what those of the last
    /// day cost.
    pub(crate) fn away_spent(&self, project: &str) -> Spent {
        let mut spent = Spent::default();
        let Some(dir) = self.ledger_dir(project) else {
            return spent;
        };
        let now = clock::epoch_millis();
        for name in files::list(&dir).unwrap_or_default() {
            let Some(at) = entry_time(&name) else {
                continue;
            };
            let age = now.saturating_sub(at);
            if age > DAY_MS {
                continue;
            }
            if name.ends_with(".start") {
                spent.last_day += 1;
                if age <= HOUR_MS {
                    spent.last_hour += 1;
                }
            } else if name.ends_with(".done") {
                let dollars = files::read_bounded(&dir.join(&name), MAX_ENTRY_BYTES)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|t| t.trim().parse::<f64>().ok())
                    .filter(|d| d.is_finite() && *d >= 0.0)
                    .unwrap_or(0.0);
                spent.dollars_last_day += dollars;
            }
        }
        spent
    }

    /// How many forks for `query` ended without an answer.
    pub(crate) fn away_failures(&self, project: &str, query: &MessageId) -> u32 {
        let Some(dir) = self.ledger_dir(project) else {
            return 0;
        };
        let suffix = format!(".{query}.failed");
        files::list(&dir)
            .unwrap_or_default()
            .iter()
            .filter(|n| n.ends_with(&suffix))
            .count() as u32
    }

    /// Records that a fork for `query` ended without an answer.
    pub(crate) fn ledger_failed(&self, project: &str, query: &MessageId) -> Result<()> {
        self.ledger_write(project, query, "failed", b"")
    }
}

/// The time part of a ledger entry's name (`<epoch-ms>` or
/// `<epoch-ms>-<n>`).
fn entry_time(name: &str) -> Option<u64> {
    let stamp = name.split('.').next()?;
    stamp.split('-').next()?.parse().ok()
}
