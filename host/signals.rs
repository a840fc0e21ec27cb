//! The signals that end a long-running front end (the MCP server, the
//! relay): SIGTERM and SIGINT, or Ctrl-C elsewhere than Unix.

/// Listens for a termination signal from the moment it is made, so that a
/// signal that arrives while the front end is busy elsewhere is not lost:
/// listening only when awaited, a signal delivered between two waits went
/// unseen and the process ran on until killed.
pub struct Termination {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Termination {
    /// Starts listening now. Needs a Tokio runtime.
    pub fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let streams = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(term), Ok(int)) => Some((term, int)),
                _ => None,
            };
            Termination { streams }
        }
        #[cfg(not(unix))]
        {
            Termination {}
        }
    }

    /// The next termination signal since [`Termination::listen`], by name;
    /// never, when the signals could not be listened to.
    pub async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            match &mut self.streams {
                Some((term, int)) => tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                },
                None => std::future::pending().await,
            }
        }
        #[cfg(not(unix))]
        {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                Err(_) => std::future::pending().await,
            }
        }
    }
}

/// The next termination signal, listening from the first poll on; for a
/// front end that waits for it in one place only.
pub async fn termination() -> &'static str {
    Termination::listen().recv().await
}
