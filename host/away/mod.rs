//! The away answerer: answers an away session's queries with read-only
//! forks of its agent's transcript (docs/away.md).
//!
//! The guest decides everything about the protocol: which sessions are
//! away, which queries may be answered (limits, who asks), the claim held
//! meanwhile, the text the fork is given, and the reply. This front end
//! does what the sandbox cannot: it starts itself, detached, when the
//! guest asks (`answer-away`, after a query reached an away session), and
//! runs the client (`fork`).
//!
//! One answerer runs per away session and bridge directory, under an
//! `flock`. A second one started while the first runs waits for the lock
//! and then looks once more, so a query delivered as the first was
//! finishing is never left waiting; the first, meanwhile, waits on the
//! inbox for [`LINGER`] before it ends, so a burst of queries is answered
//! by one process. Only one waits: it holds a second lock while it waits,
//! and a third answerer that finds that lock held ends at once, since the
//! waiting one looks only after the third's query was delivered. So a
//! burst of askers leaves at most two answerers per session, not one per
//! query.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::invoke::{Config, Invocation, Place, print_warnings};
use crate::sandbox::{Answerer, wit};
use crate::{compile_cache, dirs};

mod fork;

/// How long an answerer waits on the inbox for another query before it
/// ends.
const LINGER: Duration = Duration::from_secs(20);
/// How often the claim of a query being answered is renewed; the guest's
/// lease is 10 s.
const RENEW_EVERY: Duration = Duration::from_secs(3);
/// The most answerers one invocation starts in [`STARTS_WINDOW`] (the
/// relay and the MCP server are invocations that last for days).
const MAX_STARTS: usize = 64;
const STARTS_WINDOW: Duration = Duration::from_secs(60);
/// A session's answerer is not started again this soon: the one started
/// sees what arrives meanwhile.
const RESTART_AFTER: Duration = Duration::from_secs(2);

/// The guest's `answer-away` for invocations of `global` on the bridge
/// directory `bridge_dir`: starts `bridge-host away-answer --session <id>`,
/// detached, at most once per [`RESTART_AFTER`] per session and
/// [`MAX_STARTS`] a minute in all.
pub fn spawner(global: &Config, bridge_dir: &Path) -> Answerer {
    let global = global.clone();
    let bridge_dir = bridge_dir.to_path_buf();
    let mut started: HashMap<String, Instant> = HashMap::new();
    Box::new(move |session: &str| {
        let valid = session.len() == 6
            && session
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !valid {
            return Err(wit::HostError::OutsideBridgeDir(session.to_string()));
        }
        started.retain(|_, at| at.elapsed() < STARTS_WINDOW);
        if started
            .get(session)
            .is_some_and(|at| at.elapsed() < RESTART_AFTER)
        {
            return Ok(());
        }
        if started.len() >= MAX_STARTS {
            return Err(wit::HostError::Io(wit::IoFailure {
                path: "bridge-host away-answer".into(),
                kind: wit::IoKind::Other,
                detail: format!(
                    "{MAX_STARTS} answerers were started in the last minute, the most allowed"
                ),
            }));
        }
        start(&global, &bridge_dir, session).map_err(|err| {
            wit::HostError::Io(wit::IoFailure {
                path: "bridge-host away-answer".into(),
                kind: wit::IoKind::Other,
                detail: format!("{err:#}"),
            })
        })?;
        started.insert(session.to_string(), Instant::now());
        Ok(())
    })
}

fn start(global: &Config, bridge_dir: &Path, session: &str) -> Result<()> {
    let mut command = Config {
        bridge_dir: Some(bridge_dir.to_path_buf()),
        ..global.clone()
    }
    .this_program()?;
    command
        .args(["away-answer", "--session", session])
        // The asker's identity is not the answerer's.
        .env_remove("BRIDGE_SESSION_ID")
        .env_remove("PROJECT_DIR");
    let log = state_file(global, bridge_dir, session, "log")?;
    let mut child = crate::process::spawn_detached(&mut command, log.as_deref(), "away answerer")?;
    // Reaped when it ends, so that a process that lasts (the relay, an MCP
    // server) keeps no zombie; a short one exits first and init reaps it.
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// `<cache>/away/<key>.<kind>`: the answerer's lock and log, private, keyed
/// by the bridge directory and the session.
fn state_file(
    global: &Config,
    bridge_dir: &Path,
    session: &str,
    kind: &str,
) -> Result<Option<PathBuf>> {
    let Some(dir) = compile_cache::private_subdir(
        global.cache_dir.as_deref(),
        "away",
        "away answerer directory",
    )?
    else {
        return Ok(None);
    };
    let mut key = blake3::Hasher::new();
    key.update(bridge_dir.as_os_str().as_encoded_bytes());
    let key = key.finalize().to_hex();
    Ok(Some(dir.join(format!("{}-{session}.{kind}", &key[..16]))))
}

/// Opens (creating it) the `kind` lock file of `session`'s answerers.
fn open_lock(
    global: &Config,
    bridge_dir: &Path,
    session: &str,
    kind: &str,
) -> Result<Option<fs::File>> {
    let Some(path) = state_file(global, bridge_dir, session, kind)? else {
        return Ok(None);
    };
    let file = dirs::new_file_options(
        fs::OpenOptions::new().read(true).write(true).create(true),
        0o600,
    )
    .open(&path)
    .with_context(|| format!("cannot open the answerer's lock {}", path.display()))?;
    Ok(Some(file))
}

/// `bridge-host away-answer --session <id>`: answers the away session's
/// queries until none is left (see the module documentation).
pub fn answer(global: &Config, session: &str) -> Result<ExitCode> {
    let bridge_dir = crate::invoke::bridge_dir(global)?;
    let lock = open_lock(global, &bridge_dir, session, "lock")?;
    // Another answerer runs: wait for it, then look once, without
    // lingering (it was waiting on the inbox until it ended).
    let mut linger = LINGER;
    if let Some(file) = &lock {
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let Some(waiting) = open_lock(global, &bridge_dir, session, "wait")? else {
                    bail!("the answerer's lock exists but its folder is gone");
                };
                match waiting.try_lock() {
                    Ok(()) => {}
                    // One is waiting already, and will look after this
                    // answerer's query was delivered.
                    Err(fs::TryLockError::WouldBlock) => return Ok(ExitCode::SUCCESS),
                    Err(fs::TryLockError::Error(err)) => {
                        return Err(err).context("cannot lock the answerers' waiting place");
                    }
                }
                file.lock().context("cannot wait for the other answerer")?;
                // Held no longer than this: the next one may wait from here.
                drop(waiting);
                linger = Duration::ZERO;
            }
            Err(fs::TryLockError::Error(err)) => return Err(err).context("cannot lock"),
        }
    }
    let place = Place {
        working_dir: PathBuf::new(),
        project_dir: PathBuf::new(),
        agent_session: None,
        caller: wit::Caller::AwayAnswerer,
        agent_process: None,
        client: None,
    };
    let mut invocation = Invocation::open(global, place)?;
    if !invocation.guest_has_tool_wakes_and_away() {
        bail!("the guest implements protocol 0.1.0, which has no away answers");
    }
    invocation.context.session = Some(session.to_string());
    let take = wit::Verb::AwayTake(linger.as_secs() as u32);
    loop {
        let job = match invocation.run(&take)? {
            Ok(report) => {
                print_warnings(&report.warnings);
                match report.outcome {
                    wit::Outcome::AwayJob(Some(job)) => job,
                    _ => return Ok(ExitCode::SUCCESS),
                }
            }
            Err(failure) => bail!("{}", Invocation::failure_text(&failure)),
        };
        eprintln!(
            "session-bridge: answering {} from {} with a read-only fork",
            job.query.id, job.query.from
        );
        let result = fork::answer(&mut invocation, &job)?;
        match invocation.run(&wit::Verb::AwayFinish(result))? {
            Ok(report) => {
                print_warnings(&report.warnings);
                if let wit::Outcome::AwayFinished(Some(reply)) = report.outcome {
                    eprintln!(
                        "session-bridge: answered {} with {}",
                        job.query.id, reply.id
                    );
                }
            }
            Err(failure) => eprintln!("session-bridge: {}", Invocation::failure_text(&failure)),
        }
    }
}
