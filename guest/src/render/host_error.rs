//! A failed host call, in words: the host only classes the failure.

use std::fmt;

use crate::{HostError, IoKind};

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::OutsideBridgeDir(path) => {
                write!(
                    f,
                    "{path} is not a relative path inside the bridge directory"
                )
            }
            HostError::Withheld(path) => write!(
                f,
                "{path}: bridge-host withholds this session directory (it is not private)"
            ),
            HostError::Replaced(path) => {
                write!(
                    f,
                    "{path} was replaced by another folder while it was opened"
                )
            }
            HostError::TooManyWatchers(most) => write!(f, "at most {most} watchers at once"),
            HostError::NoProjectDir => f.write_str("this invocation has no project directory"),
            HostError::Unsupported => f.write_str("this platform has no such operation"),
            HostError::Io { path, kind, detail } => {
                write!(f, "{path}: {detail}")?;
                match kind {
                    IoKind::PermissionDenied => f.write_str(
                        "; give your user write access to that folder, or run from a project \
                         you own",
                    ),
                    IoKind::NoSpace => f.write_str("; free some space on that disk"),
                    IoKind::ReadOnly => f.write_str("; the file system there is read-only"),
                    IoKind::NotFound | IoKind::Other => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_failure_names_the_path_the_system_error_and_what_to_do() {
        let denied = HostError::Io {
            path: "/p/.claude/bridge-session".into(),
            kind: IoKind::PermissionDenied,
            detail: "Permission denied (os error 13)".into(),
        };
        assert_eq!(
            denied.to_string(),
            "/p/.claude/bridge-session: Permission denied (os error 13); give your user write \
             access to that folder, or run from a project you own"
        );
        let missing = HostError::Io {
            path: "x".into(),
            kind: IoKind::NotFound,
            detail: "No such file or directory (os error 2)".into(),
        };
        assert_eq!(
            missing.to_string(),
            "x: No such file or directory (os error 2)"
        );
    }
}
