//! Reading the log: backwards in chunks, one line at an offset, a large
//! record's own file, and the warnings for lines that do not parse.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use super::record::{Record, parse_record, raw_id, record_part};
use super::{CHUNK, MAX_LINE_WARNINGS};
use crate::error::display_path;
use crate::files;
use crate::render::one_line;
use crate::wire::MAX_MESSAGE_FILE_BYTES;
use crate::{Bridge, Platform};

/// The last line break in `bytes`, eight bytes at a time.
pub(super) fn last_newline(bytes: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = 0x0a0a_0a0a_0a0a_0a0a;
    let mut end = bytes.len();
    while end >= 8 {
        let word = u64::from_le_bytes(bytes[end - 8..end].try_into().expect("8 bytes"));
        let x = word ^ NL;
        // Nonzero exactly when one of the eight bytes is a line break.
        if (x.wrapping_sub(LO) & !x & HI) != 0
            && let Some(i) = bytes[end - 8..end].iter().rposition(|&b| b == b'\n')
        {
            return Some(end - 8 + i);
        }
        end -= 8;
    }
    bytes[..end].iter().rposition(|&b| b == b'\n')
}

/// Calls `visit` with every complete line of `path` and its byte offset,
/// the last line first, until `visit` returns false. A last line without a
/// line break is being written (or was torn) and is not visited. Blank
/// lines are skipped. A missing file has no lines.
pub(super) fn scan_back(path: &Path, mut visit: impl FnMut(u64, &[u8]) -> bool) -> io::Result<()> {
    let mut file = match fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    let mut pos = file.seek(SeekFrom::End(0))?;
    // The start of a line whose beginning lies in an earlier chunk, with
    // its line break.
    let mut tail: Vec<u8> = Vec::new();
    let mut first = true;
    let mut buf = Vec::new();
    while pos > 0 {
        let start = pos.saturating_sub(CHUNK);
        buf.clear();
        buf.resize((pos - start) as usize, 0);
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        buf.extend_from_slice(&tail);
        tail.clear();
        pos = start;
        let mut end = buf.len();
        if first {
            match last_newline(&buf) {
                Some(nl) => {
                    end = nl + 1;
                    first = false;
                }
                None if start == 0 => return Ok(()),
                // No line break yet: all of it is the unfinished last line.
                None => continue,
            }
        }
        // `buf[..end]` ends with a line break.
        loop {
            let body_end = end - 1;
            match last_newline(&buf[..body_end]) {
                Some(nl) => {
                    let line = &buf[nl + 1..body_end];
                    if !is_blank(line) && !visit(start + nl as u64 + 1, line) {
                        return Ok(());
                    }
                    end = nl + 1;
                }
                None if start == 0 => {
                    let line = &buf[..body_end];
                    if !is_blank(line) {
                        visit(0, line);
                    }
                    return Ok(());
                }
                None => {
                    tail.extend_from_slice(&buf[..end]);
                    break;
                }
            }
        }
    }
    Ok(())
}

pub(super) fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| b.is_ascii_whitespace())
}

/// Unreadable log lines met by one verb, reported as warnings.
pub(super) struct LineTrouble<'a> {
    pub(super) log: &'a Path,
    pub(super) shown: usize,
    pub(super) more: usize,
}

impl<'a> LineTrouble<'a> {
    pub(super) fn new(log: &'a Path) -> Self {
        LineTrouble {
            log,
            shown: 0,
            more: 0,
        }
    }

    pub(super) fn note(&mut self, offset: u64, reason: &str, warnings: &mut Vec<String>) {
        if self.shown < MAX_LINE_WARNINGS {
            self.shown += 1;
            warnings.push(format!(
                "skipped an unreadable line of {} at byte {offset} ({}); \
                 bridge-host run cleanup sets it aside",
                display_path(self.log),
                one_line(reason)
            ));
        } else {
            self.more += 1;
        }
    }

    pub(super) fn finish(self, warnings: &mut Vec<String>) {
        if self.more > 0 {
            warnings.push(format!(
                "skipped {} more unreadable lines of {}",
                self.more,
                display_path(self.log)
            ));
        }
    }
}

impl<P: Platform> Bridge<P> {
    /// Every message ID in the archive `key`, read without parsing.
    pub(super) fn logged_ids(&self, key: &str, warnings: &mut Vec<String>) -> HashSet<String> {
        let log = self.layout.archive_log(key);
        let mut ids = HashSet::new();
        let scanned = scan_back(&log, |_, line| {
            if let Some(id) = raw_id(record_part(line).0) {
                ids.insert(id.to_string());
            }
            true
        });
        if let Err(err) = scanned {
            warnings.push(format!("could not read {}: {}", display_path(&log), err));
        }
        ids
    }

    /// A record read from the log, with a large one's file read in.
    pub(super) fn complete(
        &self,
        key: &str,
        record: Record,
    ) -> std::result::Result<Record, String> {
        let Some(name) = &record.large else {
            return Ok(record);
        };
        let safe = name.starts_with("msg-")
            && name.ends_with(".json")
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !safe {
            return Err(format!("bad large-record name {name:?}"));
        }
        let path = self.layout.archive_large(key).join(name);
        let bytes = files::read_bounded(&path, 2 * MAX_MESSAGE_FILE_BYTES).map_err(|f| {
            format!(
                "its record {}: {}",
                display_path(&path),
                f.describe(2 * MAX_MESSAGE_FILE_BYTES)
            )
        })?;
        let full = parse_record(bytes.strip_suffix(b"\n").unwrap_or(&bytes))?;
        if full.message.id != record.message.id {
            return Err(format!("{} holds another message", display_path(&path)));
        }
        Ok(full)
    }
}

/// The line of `log` that starts at `offset`, without its line break.
pub(super) fn read_line_at(log: &Path, offset: u64) -> std::result::Result<Vec<u8>, String> {
    let mut file = fs::File::open(log).map_err(|e| e.to_string())?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| e.to_string())?;
    let mut line = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = file.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(line);
        }
        if let Some(nl) = buf[..n].iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&buf[..nl]);
            return Ok(line);
        }
        line.extend_from_slice(&buf[..n]);
        if line.len() as u64 > 2 * MAX_MESSAGE_FILE_BYTES {
            return Err("the line is too long".into());
        }
    }
}
