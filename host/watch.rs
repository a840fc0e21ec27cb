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
//! watcher whose descriptor they name. Without [`install`] (or off Linux)
//! watching is refused and the guest falls back to short timed waits.

use std::time::Duration;

/// A watch on one folder inside the bridge directory.
pub struct DirWatcher {
    #[cfg(target_os = "linux")]
    inner: linux::Watch,
}

/// Prepares the process for change notifications. Call it first thing in
/// `main`, before any thread is started.
pub fn install() {
    #[cfg(target_os = "linux")]
    linux::install();
}

impl DirWatcher {
    /// Watches `dir`, a folder already opened inside the bridge directory,
    /// for entries created in or moved into it.
    pub fn new(dir: &cap_std::fs::Dir) -> Result<Self, String> {
        #[cfg(target_os = "linux")]
        {
            linux::Watch::new(dir).map(|inner| DirWatcher { inner })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = dir;
            Err("change notifications are only implemented on Linux".into())
        }
    }

    /// Blocks until an entry arrived since the watch began or since the
    /// last call, or until `timeout` passes. True when something arrived.
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
    use std::collections::HashMap;
    use std::os::fd::{AsRawFd, OwnedFd, RawFd};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Condvar, Mutex, OnceLock};
    use std::time::{Duration, Instant};

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
        pub fn new(dir: &cap_std::fs::Dir) -> Result<Self, String> {
            if !INSTALLED.load(Ordering::SeqCst) {
                return Err("change notifications were not installed in this process".into());
            }
            // cap-std may hold the folder as an O_PATH descriptor, which
            // fcntl(F_NOTIFY) refuses; reopen it for reading through itself.
            // SAFETY: openat on a descriptor we borrow, with a constant path;
            // the result is checked and owned below.
            let reopened = unsafe {
                libc::openat(
                    std::os::fd::AsFd::as_fd(dir).as_raw_fd(),
                    c".".as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
            };
            if reopened < 0 {
                return Err(format!(
                    "cannot open the folder: {}",
                    std::io::Error::last_os_error()
                ));
            }
            // SAFETY: `reopened` is a fresh descriptor nobody else owns.
            let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(reopened) };
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
                return Err(format!("dnotify: {err}"));
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
