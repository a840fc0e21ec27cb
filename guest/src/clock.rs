//! Wire timestamps: UTC, second precision, `YYYY-MM-DDTHH:MM:SSZ`.

use std::time::{Duration, SystemTime};

/// The current time in the wire format.
pub fn now_stamp() -> String {
    stamp(SystemTime::now())
}

/// `time` in the wire format.
pub fn stamp(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Parses a wire timestamp; None when it is not in the wire format.
pub fn parse_stamp(text: &str) -> Option<SystemTime> {
    // Exactly the wire shape; humantime alone would also take offsets and
    // fractions that the original never writes.
    let shape_ok = text.len() == 20 && text.ends_with('Z') && text.as_bytes()[10] == b'T';
    if !shape_ok {
        return None;
    }
    humantime::parse_rfc3339(text).ok()
}

/// How long ago `text` was, or None when it is not a wire timestamp.
/// A time in the future counts as zero seconds ago.
pub fn age(text: &str) -> Option<Duration> {
    let then = parse_stamp(text)?;
    Some(
        SystemTime::now()
            .duration_since(then)
            .unwrap_or(Duration::ZERO),
    )
}

/// Milliseconds since the Unix epoch, for claim and wait deadlines.
pub fn epoch_millis() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// True when `time` (a file's modification time, say) is known and more
/// than `age` ago.
pub fn older_than(time: Option<SystemTime>, age: Duration) -> bool {
    time.and_then(|t| t.elapsed().ok()).is_some_and(|e| e > age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_in_the_wire_shape() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_428_000);
        let s = stamp(t);
        assert_eq!(s, "2026-11-23T10:00:00Z");
        assert_eq!(parse_stamp(&s), Some(t));
    }

    #[test]
    fn other_shapes_are_not_wire_stamps() {
        for bad in [
            "2026-11-23T10:00:00.5Z",
            "2026-11-23T10:00:00+00:00",
            "2026-11-23 10:00:00Z",
            "yesterday",
            "",
        ] {
            assert_eq!(parse_stamp(bad), None, "{bad:?}");
        }
    }
}
