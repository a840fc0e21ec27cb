//! A policy that looks for likely secrets in every message before it
//! leaves: private keys, cloud access keys, API tokens, `.env`-style
//! assignments of secret-named variables, and long high-entropy strings.
//!
//! Setting `mode` (`--guest-setting mode=...`):
//! - `redact` (default): each secret is replaced by `[REDACTED:<kind>]` and
//!   the message is sent;
//! - `refuse`: the send fails, naming the kinds found.
//!
//! Each redaction leaves an audit line in the session's `policy-audit.log`
//! naming the kinds and counts, never the secret itself.

use std::ops::Range;

use session_bridge_guest::wire::Message;
use session_bridge_guest::{BridgeError, GuestPolicy, Policy, Result, Settings};

/// What to do with a message that holds likely secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Redact,
    Refuse,
}

/// Redacts or refuses likely secrets.
pub struct RedactSecrets {
    pub mode: Mode,
}

/// A likely secret: where it is, and what kind it looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub range: Range<usize>,
    pub kind: &'static str,
}

/// Variable names whose values are secrets in `.env`-style assignments.
const SECRET_NAME_PARTS: &[&str] = &[
    "SECRET",
    "TOKEN",
    "PASSWORD",
    "PASSWD",
    "API_KEY",
    "APIKEY",
    "ACCESS_KEY",
    "PRIVATE_KEY",
    "CREDENTIAL",
    "AUTH",
];

/// Token prefixes of well-known credentials, with the shortest plausible
/// total length.
const TOKEN_PREFIXES: &[(&str, usize, &str)] = &[
    ("AKIA", 20, "aws-access-key"),
    ("ASIA", 20, "aws-access-key"),
    ("ghp_", 36, "github-token"),
    ("gho_", 36, "github-token"),
    ("ghu_", 36, "github-token"),
    ("ghs_", 36, "github-token"),
    ("ghr_", 36, "github-token"),
    ("github_pat_", 40, "github-token"),
    ("glpat-", 24, "gitlab-token"),
    ("xoxb-", 20, "slack-token"),
    ("xoxp-", 20, "slack-token"),
    ("xoxa-", 20, "slack-token"),
    ("xapp-", 20, "slack-token"),
    ("sk-ant-", 32, "anthropic-key"),
    ("sk-", 32, "api-key"),
    ("AIza", 39, "google-api-key"),
    ("npm_", 36, "npm-token"),
];

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_+/.".contains(c)
}

/// Bits of Shannon entropy per character.
fn entropy(text: &str) -> f64 {
    let mut counts = [0usize; 128];
    let mut total = 0usize;
    for b in text.bytes().filter(|b| b.is_ascii()) {
        counts[b as usize] += 1;
        total += 1;
    }
    if total == 0 {
        return 0.0;
    }
    counts
        .iter()
        .filter(|&&n| n > 0)
        .map(|&n| {
            let p = n as f64 / total as f64;
            -p * p.log2()
        })
        .sum()
}

fn classify_token(token: &str) -> Option<&'static str> {
    for &(prefix, min_len, kind) in TOKEN_PREFIXES {
        if token.starts_with(prefix) && token.len() >= min_len {
            return Some(kind);
        }
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() == 3 && parts[0].starts_with("eyJ") && parts[1].starts_with("eyJ") {
        return Some("jwt");
    }
    let has_digit = token.bytes().any(|b| b.is_ascii_digit());
    let has_alpha = token.bytes().any(|b| b.is_ascii_alphabetic());
    let is_hex = token.bytes().all(|b| b.is_ascii_hexdigit());
    // Paths and dotted names are long but not random.
    let plain_word = token.contains('/') && token.split('/').all(|p| p.len() < 20);
    if has_digit && has_alpha && !plain_word {
        if is_hex && token.len() >= 32 && entropy(token) >= 3.0 {
            return Some("high-entropy-string");
        }
        if token.len() >= 24 && entropy(token) >= 4.2 {
            return Some("high-entropy-string");
        }
    }
    None
}

fn private_keys(text: &str, found: &mut Vec<Finding>) {
    let mut from = 0;
    while let Some(start) = text[from..].find("-----BEGIN ").map(|i| i + from) {
        let header_end = text[start..].find("-----\n").map(|i| start + i);
        let header = header_end.map_or("", |end| &text[start..end]);
        if !header.contains("PRIVATE KEY") {
            from = start + 11;
            continue;
        }
        let end = text[start..]
            .find("-----END ")
            .map(|i| start + i)
            .and_then(|e| text[e + 9..].find("-----").map(|j| e + 9 + j + 5))
            .unwrap_or(text.len());
        found.push(Finding {
            range: start..end,
            kind: "private-key",
        });
        from = end;
    }
}

/// `NAME=value` or `NAME: value` where NAME looks like a secret's name,
/// anywhere in the text (a `.env` line, a shell command, a YAML key).
fn env_assignments(text: &str, found: &mut Vec<Finding>) {
    let bytes = text.as_bytes();
    let is_name = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if !is_name(bytes[i]) || (i > 0 && is_name(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let name_end = (i..bytes.len())
            .find(|&j| !is_name(bytes[j]))
            .unwrap_or(bytes.len());
        let name = text[i..name_end].to_ascii_uppercase();
        i = name_end;
        if !SECRET_NAME_PARTS.iter().any(|p| name.contains(p)) {
            continue;
        }
        let mut j = name_end;
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        if j >= bytes.len() || (bytes[j] != b'=' && bytes[j] != b':') {
            continue;
        }
        j += 1;
        while j < bytes.len() && (bytes[j] == b' ' || bytes[j] == b'"' || bytes[j] == b'\'') {
            j += 1;
        }
        let value_end = (j..bytes.len())
            .find(|&k| bytes[k].is_ascii_whitespace() || bytes[k] == b'"' || bytes[k] == b'\'')
            .unwrap_or(bytes.len());
        let value = &text[j..value_end];
        let placeholder = value.starts_with("${") || value.starts_with('<');
        if value.len() >= 4 && !placeholder {
            found.push(Finding {
                range: j..value_end,
                kind: "env-secret",
            });
        }
        i = value_end.max(name_end);
    }
}

/// Every likely secret in `text`, in order, without overlaps.
pub fn find_secrets(text: &str) -> Vec<Finding> {
    let mut found = Vec::new();
    private_keys(text, &mut found);
    env_assignments(text, &mut found);
    let mut start = None;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        match (is_token_char(c), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                let token = text[s..i].trim_end_matches(['.', '=']);
                if let Some(kind) = classify_token(token) {
                    found.push(Finding {
                        range: s..s + token.len(),
                        kind,
                    });
                }
                start = None;
            }
            _ => {}
        }
    }
    found.sort_by_key(|f| (f.range.start, std::cmp::Reverse(f.range.end)));
    let mut merged: Vec<Finding> = Vec::new();
    for finding in found {
        match merged.last_mut() {
            Some(last) if finding.range.start < last.range.end => {
                last.range.end = last.range.end.max(finding.range.end);
            }
            _ => merged.push(finding),
        }
    }
    merged
}

/// `text` with every finding replaced by `[REDACTED:<kind>]`.
pub fn redact(text: &str, findings: &[Finding]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in findings {
        out.push_str(&text[at..f.range.start]);
        out.push_str(&format!("[REDACTED:{}]", f.kind));
        at = f.range.end;
    }
    out.push_str(&text[at..]);
    out
}

/// "2 aws-access-key, 1 env-secret": kinds and counts, nothing else.
fn summary(findings: &[Finding]) -> String {
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for f in findings {
        match kinds.iter_mut().find(|(k, _)| *k == f.kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((f.kind, 1)),
        }
    }
    kinds
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Policy for RedactSecrets {
    fn outgoing(&self, message: &mut Message) -> Result<Vec<String>> {
        let findings = find_secrets(&message.content);
        if findings.is_empty() {
            return Ok(Vec::new());
        }
        let summary = summary(&findings);
        match self.mode {
            Mode::Refuse => Err(BridgeError::InvalidArgument(format!(
                "redact-secrets refused to send: the content holds likely secrets ({summary}); \
                 remove them, or send with --guest-setting mode=redact"
            ))),
            Mode::Redact => {
                message.content = redact(&message.content, &findings);
                Ok(vec![format!("redacted {summary}")])
            }
        }
    }
}

impl GuestPolicy for RedactSecrets {
    const NAME: &'static str = "redact-secrets";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn configure(settings: &Settings) -> Result<Self> {
        let mut mode = Mode::Redact;
        for (key, value) in settings {
            match (key.as_str(), value.as_str()) {
                ("mode", "redact") => mode = Mode::Redact,
                ("mode", "refuse") => mode = Mode::Refuse,
                ("mode", other) => {
                    return Err(BridgeError::InvalidArgument(format!(
                        "redact-secrets: mode {other:?} is neither redact nor refuse"
                    )));
                }
                (other, _) => {
                    return Err(BridgeError::InvalidArgument(format!(
                        "redact-secrets: unknown setting {other:?}; the only setting is mode=redact|refuse"
                    )));
                }
            }
        }
        Ok(RedactSecrets { mode })
    }
}

#[cfg(target_family = "wasm")]
session_bridge_guest::export_policy!(RedactSecrets);

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<&'static str> {
        find_secrets(text).into_iter().map(|f| f.kind).collect()
    }

    #[test]
    fn finds_each_kind() {
        assert_eq!(kinds("key AKIAIOSFODNN7EXAMPLE here"), ["aws-access-key"]);
        assert_eq!(
            kinds("token ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
            ["github-token"]
        );
        assert_eq!(
            kinds("DATABASE_PASSWORD=hunter2-but-longer\n"),
            ["env-secret"]
        );
        assert_eq!(kinds("export API_KEY=\"abcd1234\""), ["env-secret"]);
        assert_eq!(
            kinds(
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----\n"
            ),
            ["private-key"]
        );
        assert_eq!(
            kinds("random 9f8Qz1LmP0xYv7RtK3wBn6Hs2JdC4aGe"),
            ["high-entropy-string"]
        );
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        for text in [
            "init() is now setup(); see src/config/loader.rs line 42",
            "PASSWORD_MIN_LENGTH is a constant",
            "TOKEN=${TOKEN_FROM_VAULT}",
            "version 1.2.3, commit message: fix the parser",
            "https://example.com/docs/getting-started/installation",
        ] {
            assert!(kinds(text).is_empty(), "{text}: {:?}", kinds(text));
        }
    }

    #[test]
    fn redaction_keeps_everything_else_and_never_the_secret() {
        let policy = RedactSecrets { mode: Mode::Redact };
        let mut message = Message {
            id: "msg-aaaaaaaaaaaa".into(),
            from: "aaaaaa".into(),
            to: "bbbbbb".into(),
            kind: session_bridge_guest::wire::Kind::Response,
            timestamp: "2026-11-23T10:00:00Z".into(),
            status: session_bridge_guest::wire::Status::Pending,
            content: "use AKIAIOSFODNN7EXAMPLE with SECRET_TOKEN=s3cr3t-value ok".into(),
            in_reply_to: None,
            metadata: Default::default(),
        };
        let audit = policy.outgoing(&mut message).unwrap();
        assert_eq!(
            message.content,
            "use [REDACTED:aws-access-key] with SECRET_TOKEN=[REDACTED:env-secret] ok"
        );
        assert_eq!(audit, ["redacted 1 aws-access-key, 1 env-secret"]);
        assert!(!audit[0].contains("AKIA") && !audit[0].contains("s3cr3t"));
        let refuse = RedactSecrets { mode: Mode::Refuse };
        let mut again = message.clone();
        again.content = "AKIAIOSFODNN7EXAMPLE".into();
        let err = refuse.outgoing(&mut again).unwrap_err().to_string();
        assert!(
            err.contains("1 aws-access-key") && !err.contains("AKIAIOSF"),
            "{err}"
        );
    }
}
