//! Waiting for changes in a bridge folder, for the guest's `watcher`
//! resource. On Linux this is inotify on a directory opened through the
//! bridge directory's capability handle; elsewhere the watch is refused and
//! the guest falls back to short timed waits.

use std::time::Duration;

/// A watch on one folder inside the bridge directory.
pub struct DirWatcher {
    #[cfg(target_os = "linux")]
    inner: linux::Inotify,
}

impl DirWatcher {
    /// Watches `dir`, a folder already opened inside the bridge directory.
    pub fn new(dir: &cap_std::fs::Dir) -> Result<Self, String> {
        #[cfg(target_os = "linux")]
        {
            linux::Inotify::watch(dir).map(|inner| DirWatcher { inner })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = dir;
            Err("change notifications are only implemented on Linux".into())
        }
    }

    /// Blocks until an entry was created in or moved into the folder, or
    /// `timeout` passes. True when something arrived.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        #[cfg(target_os = "linux")]
        {
            self.inner.wait(timeout)
        }
        #[cfg(not(target_os = "linux"))]
        {
            std::thread::sleep(timeout);
            false
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::os::fd::{AsFd, AsRawFd};
    use std::time::{Duration, Instant};

    use inotify::WatchMask;

    pub struct Inotify {
        inotify: inotify::Inotify,
        buffer: Vec<u8>,
    }

    impl Inotify {
        pub fn watch(dir: &cap_std::fs::Dir) -> Result<Self, String> {
            let inotify = inotify::Inotify::init().map_err(|e| format!("inotify: {e}"))?;
            // The path goes through our own open descriptor, so what is
            // watched is exactly the folder cap-std resolved inside the
            // bridge directory, whatever happens to names meanwhile.
            let by_fd = format!("/proc/self/fd/{}", dir.as_fd().as_raw_fd());
            // Only arrivals: the guest's own reads and claims must not wake it.
            let mask = WatchMask::CREATE
                | WatchMask::MOVED_TO
                | WatchMask::DELETE_SELF
                | WatchMask::MOVE_SELF;
            inotify
                .watches()
                .add(&by_fd, mask)
                .map_err(|e| format!("inotify watch: {e}"))?;
            Ok(Inotify {
                inotify,
                buffer: vec![0; 4096],
            })
        }

        /// Drains queued events; true when there were any.
        fn drain(&mut self) -> bool {
            let mut any = false;
            while let Ok(mut events) = self.inotify.read_events(&mut self.buffer) {
                if events.next().is_none() {
                    break;
                }
                any = true;
            }
            any
        }

        pub fn wait(&mut self, timeout: Duration) -> bool {
            if self.drain() {
                return true;
            }
            let deadline = Instant::now() + timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let ms = left.as_millis().min(i32::MAX as u128) as i32;
                let mut poll = libc::pollfd {
                    fd: self.inotify.as_fd().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, owned by this frame.
                let ready = unsafe { libc::poll(&mut poll, 1, ms) };
                if ready > 0 {
                    return self.drain();
                }
                let interrupted = ready < 0
                    && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted;
                if !interrupted || left.is_zero() {
                    return false;
                }
            }
        }
    }
}
