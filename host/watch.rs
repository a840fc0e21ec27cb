//! Waiting for changes in a bridge folder, for the guest's `watcher`
//! resource.
//!
//! On Linux this uses dnotify (`fcntl(F_NOTIFY)`) on a directory opened
//! through the bridge directory's capability handle. inotify would do the
//! same job, but closing an inotify instance waits for an RCU grace period
//! (measured here: 8–23 ms per process), which every waiting `listen` or
//! `ask` would pay before it exits; dnotify marks belong to one global group
//! and go away without that wait.
//!
//! dnotify reports through a real-time signal. [`install`] blocks that
//! signal before any thread exists, so every thread inherits the block and
//! one dispatcher thread collects the signals with `sigwaitinfo`, waking the
//! watcher whose descriptor they name. Without [`install`] watching is
//! refused and the guest falls back to short timed waits.
//!
//! Everywhere else (and on Linux with the `portable` feature) the `notify`
//! crate watches the folder: kqueue on macOS, `ReadDirectoryChangesW` on
//! Windows, inotify on Linux. It watches by path, so the watch is set on the
//! folder's path and then checked to be the very folder opened through the
//! capability handle: a folder swapped for a link meanwhile is refused.

use std::path::Path;
use std::time::Duration;

use crate::sandbox::{io_failure, wit::HostError};

/// A watch on one folder inside the bridge directory.
pub struct DirWatcher {
    #[cfg(native_linux)]
    inner: linux::Watch,
    #[cfg(not(native_linux))]
    inner: portable::Watch,
}

/// Prepares the process for change notifications. Call it first thing in
/// `main`, before any thread is started.
pub fn install() {
    #[cfg(native_linux)]
    linux::install();
}

impl DirWatcher {
    /// Watches `dir`, a folder already opened inside the bridge directory,
    /// for entries created in or moved into it. `path` is where that folder
    /// is, for watches that can only be set by path.
    ///
    /// # Errors
    ///
    /// Why the folder cannot be watched; the guest then waits in short
    /// timed steps instead.
    pub fn new(dir: &cap_std::fs::Dir, path: &Path) -> Result<Self, HostError> {
        #[cfg(native_linux)]
        {
            linux::Watch::new(dir, path).map(|inner| DirWatcher { inner })
        }
        #[cfg(not(native_linux))]
        {
            portable::Watch::new(dir, path).map(|inner| DirWatcher { inner })
        }
    }

    /// Blocks until an entry arrived since the watch began or since the
    /// last call, or until `timeout` passes. True when something arrived.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        self.inner.wait(timeout)
    }
}

#[cfg(not(native_linux))]
mod portable {
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::{Duration, Instant};

    use notify::event::{ModifyKind, RenameMode};
    use notify::{Event, EventKind, RecursiveMode, Watcher};

    use super::{HostError, io_failure};

    /// Whether something arrived since the last wait.
    #[derive(Default)]
    struct Arrivals {
        arrived: Mutex<bool>,
        changed: Condvar,
    }

    pub struct Watch {
        arrivals: Arc<Arrivals>,
        // Dropping it ends the watch and its thread.
        _watcher: notify::RecommendedWatcher,
    }

    impl Watch {
        pub fn new(dir: &cap_std::fs::Dir, path: &Path) -> Result<Self, HostError> {
            let failed = |e: notify::Error| match e.kind {
                notify::ErrorKind::Io(io) => io_failure(path, &io),
                _ => io_failure(path, &std::io::Error::other(e.to_string())),
            };
            let arrivals = Arc::new(Arrivals::default());
            let sink = Arc::clone(&arrivals);
            let watched = path.to_path_buf();
            let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
                // An error may mean lost events: count it as an arrival, so
                // the guest looks again.
                if event.as_ref().map_or(true, |e| is_arrival(e, &watched)) {
                    *sink.arrived.lock().unwrap_or_else(|e| e.into_inner()) = true;
                    sink.changed.notify_all();
                }
            })
            .map_err(failed)?;
            watcher
                .watch(path, RecursiveMode::NonRecursive)
                .map_err(failed)?;
            // The watch is set by path: it must be on the folder the
            // capability opened, not on whatever a link planted since leads to.
            if !same_folder(dir, path)? {
                return Err(HostError::Replaced(path.display().to_string()));
            }
            Ok(Watch {
                arrivals,
                _watcher: watcher,
            })
        }

        pub fn wait(&mut self, timeout: Duration) -> bool {
            let deadline = Instant::now() + timeout;
            let mut arrived = self
                .arrivals
                .arrived
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            loop {
                if std::mem::take(&mut *arrived) {
                    return true;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                arrived = self
                    .arrivals
                    .changed
                    .wait_timeout(arrived, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
    }

    /// An entry created in or moved into the folder, or a change the backend
    /// cannot tell from one. Entries leaving the folder (a listener's own
    /// claims), reads and metadata changes are not arrivals.
    fn is_arrival(event: &Event, watched: &PathBuf) -> bool {
        if event.need_rescan() {
            return true;
        }
        match event.kind {
            EventKind::Create(_) => true,
            EventKind::Modify(ModifyKind::Name(RenameMode::From)) => false,
            EventKind::Modify(ModifyKind::Name(_)) => true,
            // kqueue reports a write to the folder itself when it cannot tell
            // which entry is new.
            EventKind::Modify(ModifyKind::Data(_)) => event.paths.iter().any(|p| p == watched),
            EventKind::Modify(ModifyKind::Any) => true,
            EventKind::Modify(ModifyKind::Metadata(_) | ModifyKind::Other) => false,
            EventKind::Access(_) | EventKind::Remove(_) => false,
            EventKind::Any | EventKind::Other => true,
        }
    }

    fn same_folder(dir: &cap_std::fs::Dir, path: &Path) -> Result<bool, HostError> {
        let failed = |e: std::io::Error| io_failure(path, &e);
        let opened = dir.try_clone().map_err(failed)?.into_std_file();
        let opened = same_file::Handle::from_file(opened).map_err(failed)?;
        let at_path = same_file::Handle::from_path(path).map_err(failed)?;
        Ok(opened == at_path)
    }
}

#[cfg(native_linux)]
mod linux {
    use std::collections::HashMap;
    use std::os::fd::{AsRawFd, OwnedFd, RawFd};
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Condvar, Mutex, OnceLock};
    use std::time::{Duration, Instant};

    use super::{HostError, io_failure};

    static INSTALLED: AtomicBool = AtomicBool::new(false);

    // From <fcntl.h>; the libc crate does not carry the dnotify names.
    const F_SETSIG: libc::c_int = 10;
    const DN_CREATE: libc::c_int = 0x0000_0004;
    const DN_MULTISHOT: libc::c_int = 0x8000_0000_u32 as libc::c_int;

    /// The real-time signal dnotify raises; glibc keeps the first few.
    fn wake_signal() -> libc::c_int {
        libc::SIGRTMIN() + 4
    }

    fn signal_set() -> libc::sigset_t {
        // SAFETY: sigemptyset/sigaddset initialise and fill a local set.
        unsafe {
            let mut set = std::mem::zeroed::<libc::sigset_t>();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, wake_signal());
            // Raised instead when the real-time queue overflows.
            libc::sigaddset(&mut set, libc::SIGIO);
            set
        }
    }

    extern "C" fn ignore(_: libc::c_int) {}

    pub fn install() {
        let set = signal_set();
        // SAFETY: blocking signals in the calling thread and installing a
        // handler that does nothing are sound at any time.
        unsafe {
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            // Should a thread started before `install` receive one, the
            // signal must not terminate the process.
            for signal in [wake_signal(), libc::SIGIO] {
                let mut action = std::mem::zeroed::<libc::sigaction>();
                action.sa_sigaction = ignore as *const () as libc::sighandler_t;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(signal, &action, std::ptr::null_mut());
            }
        }
        INSTALLED.store(true, Ordering::SeqCst);
    }

    /// Which watched descriptors have had an event since their last wait.
    struct Dispatcher {
        arrived: Mutex<HashMap<RawFd, bool>>,
        changed: Condvar,
    }

    fn dispatcher() -> &'static Dispatcher {
        static DISPATCHER: OnceLock<&'static Dispatcher> = OnceLock::new();
        DISPATCHER.get_or_init(|| {
            let dispatcher: &'static Dispatcher = Box::leak(Box::new(Dispatcher {
                arrived: Mutex::new(HashMap::new()),
                changed: Condvar::new(),
            }));
            std::thread::Builder::new()
                .name("bridge-dnotify".into())
                .spawn(move || dispatch(dispatcher))
                .expect("start the change-notification thread");
            dispatcher
        })
    }

    fn dispatch(dispatcher: &Dispatcher) {
        let set = signal_set();
        loop {
            // SAFETY: `info` is written by sigwaitinfo; `set` is blocked in
            // every thread since `install`.
            let (signal, fd) = unsafe {
                let mut info = std::mem::zeroed::<libc::siginfo_t>();
                let signal = libc::sigwaitinfo(&set, &mut info);
                (signal, info.si_fd())
            };
            if signal < 0 {
                continue; // EINTR
            }
            let mut arrived = dispatcher.arrived.lock().unwrap_or_else(|e| e.into_inner());
            if signal == wake_signal() {
                if let Some(flag) = arrived.get_mut(&fd) {
                    *flag = true;
                }
            } else {
                // The queue overflowed: any watched folder may have changed.
                arrived.values_mut().for_each(|flag| *flag = true);
            }
            dispatcher.changed.notify_all();
        }
    }

    pub struct Watch {
        fd: OwnedFd,
    }

    impl Watch {
        pub fn new(dir: &cap_std::fs::Dir, path: &Path) -> Result<Self, HostError> {
            if !INSTALLED.load(Ordering::SeqCst) {
                return Err(HostError::Unsupported);
            }
            // cap-std may hold the folder as an O_PATH descriptor, which
            // fcntl(F_NOTIFY) refuses; reopen it for reading through itself.
            use rustix::fs::{Mode, OFlags};
            let fd = rustix::fs::openat(
                dir,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_failure(path, &e.into()))?;
            let raw = fd.as_raw_fd();
            let dispatcher = dispatcher();
            dispatcher
                .arrived
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(raw, false);
            // SAFETY: plain fcntl calls on a descriptor we own.
            let armed = unsafe {
                libc::fcntl(raw, F_SETSIG, wake_signal()) == 0
                    && libc::fcntl(raw, libc::F_NOTIFY, DN_CREATE | DN_MULTISHOT) == 0
            };
            if !armed {
                let err = std::io::Error::last_os_error();
                forget(raw);
                return Err(io_failure(path, &err));
            }
            Ok(Watch { fd })
        }

        pub fn wait(&mut self, timeout: Duration) -> bool {
            let raw = self.fd.as_raw_fd();
            let dispatcher = dispatcher();
            let deadline = Instant::now() + timeout;
            let mut arrived = dispatcher.arrived.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(flag) = arrived.get_mut(&raw)
                    && std::mem::take(flag)
                {
                    return true;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                arrived = dispatcher
                    .changed
                    .wait_timeout(arrived, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
    }

    fn forget(raw: RawFd) {
        dispatcher()
            .arrived
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&raw);
    }

    impl Drop for Watch {
        fn drop(&mut self) {
            // SAFETY: clears the notification on a descriptor we still own.
            unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_NOTIFY, 0) };
            forget(self.fd.as_raw_fd());
        }
    }
}

#[cfg(all(test, not(native_linux)))]
mod tests {
    use super::*;
    use std::time::Instant;

    fn open(path: &Path) -> cap_std::fs::Dir {
        cap_std::fs::Dir::open_ambient_dir(path, cap_std::ambient_authority()).unwrap()
    }

    #[test]
    fn an_entry_moved_in_wakes_the_waiter_and_one_moved_out_does_not() {
        let root = tempfile::tempdir().unwrap();
        let inbox = root.path().join("inbox");
        std::fs::create_dir_all(inbox.join("claimed")).unwrap();
        std::fs::write(inbox.join("old.json"), "{}").unwrap();
        let mut watcher = DirWatcher::new(&open(&inbox), &inbox).unwrap();

        // Taken out of the folder: a listener's own claim is no arrival.
        std::fs::rename(inbox.join("old.json"), inbox.join("claimed/old.json")).unwrap();
        assert!(
            !watcher.wait(Duration::from_millis(300)),
            "a claim woke the waiter"
        );

        let writer = {
            let inbox = inbox.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                std::fs::write(inbox.join(".msg.tmp"), "{}").unwrap();
                std::fs::rename(inbox.join(".msg.tmp"), inbox.join("msg.json")).unwrap();
            })
        };
        let began = Instant::now();
        assert!(
            watcher.wait(Duration::from_secs(30)),
            "the arrival was missed"
        );
        assert!(began.elapsed() < Duration::from_secs(10));
        writer.join().unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_swapped_for_a_link_is_not_watched() {
        let root = tempfile::tempdir().unwrap();
        let inbox = root.path().join("inbox");
        let elsewhere = root.path().join("elsewhere");
        std::fs::create_dir(&inbox).unwrap();
        std::fs::create_dir(&elsewhere).unwrap();
        let opened = open(&inbox);
        std::fs::rename(&inbox, root.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &inbox).unwrap();
        let refused = DirWatcher::new(&opened, &inbox).err().expect("refused");
        assert!(
            matches!(&refused, HostError::Replaced(path) if *path == inbox.display().to_string()),
            "{refused:?}"
        );
    }
}
