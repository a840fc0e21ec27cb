//! `bridge-host run <verb>` and `bridge-host guest …`: one verb from the
//! command line, its content read from the arguments or standard input,
//! the guest's text printed as it gave it.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use crate::compile_cache;
use crate::guests;
use crate::invoke::{Config, GuestSource, Invocation, Place, print_warnings};
use crate::sandbox::{Guest, wit};
use crate::verbs::{self, VerbArgs};

#[derive(Subcommand)]
pub enum GuestAction {
    /// Show the embedded guest's name, version, protocol and hash.
    Info,
    /// Show which protocol version a guest component implements, and
    /// whether this host can run it (exit 1 when it cannot).
    Check {
        /// The guest component (.wasm).
        file: PathBuf,
    },
}

pub fn run_verb(global: &Config, verb: VerbArgs) -> Result<ExitCode> {
    // Never dropped: the process exits right after the verb, and the system
    // takes back the guest's memory, code and descriptors at once. Dropping
    // them first (unmapping, freeing tables) cost about 5 % of a `send`.
    let mut invocation =
        std::mem::ManuallyDrop::new(Invocation::open(global, Place::of_process(global)?)?);
    let wit_verb = to_wit_verb(verb, &invocation.limits, global.escapes)?;
    let verb_name = verbs::name_of(&wit_verb);
    let report = match invocation.run(&wit_verb)? {
        Ok(report) => report,
        Err(failure) => {
            print_warnings(&failure.warnings);
            invocation.print_withheld(&failure.refused);
            print_failure(&failure)?;
            return Ok(ExitCode::from(1));
        }
    };
    print_warnings(&report.warnings);
    invocation.print_withheld(&[]);
    invocation.hand_over(&report, verb_name, &mut io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}

/// Prints a failure as the guest rendered it.
fn print_failure(failure: &wit::Failure) -> Result<()> {
    if failure.to_stdout {
        let mut out = io::stdout().lock();
        out.write_all(failure.rendered.as_bytes())?;
        out.flush()?;
    } else {
        io::stderr().write_all(failure.rendered.as_bytes())?;
    }
    Ok(())
}

pub fn guest_command(global: &Config, action: GuestAction) -> Result<ExitCode> {
    let source = match &action {
        GuestAction::Info => GuestSource::from_global(global)?,
        GuestAction::Check { file } => GuestSource::file(file)?,
    };
    let (component, compiled) = source
        .component(global)
        .with_context(|| format!("{} is not a loadable WebAssembly component", source.origin))?;
    println!("guest: {}", source.origin);
    println!(
        "machine code: {}",
        match compiled {
            compile_cache::Source::Shipped => "compiled when bridge-host was built, shipped in it",
            compile_cache::Source::Cache => "loaded from the compile cache",
            compile_cache::Source::Compiled => "compiled now",
        }
    );
    println!(
        "implements: {}",
        guests::protocol_version(&component)
            .map_or("no session-bridge:protocol version".to_string(), |v| {
                format!("{}@{v}", guests::PACKAGE)
            })
    );
    println!("this host supports: {}", guests::supported());
    println!("size: {} bytes", source.wasm.bytes.len());
    println!("blake3: {}", source.wasm.digest.to_hex());
    if let Err(why) = guests::check_compatible(&component, &source.origin) {
        println!("can run: no");
        eprintln!("bridge-host: {why:#}");
        return Ok(ExitCode::from(1));
    }
    let scratch = guests::ScratchDir::new()?;
    let info = Guest::instantiate(&component, scratch.path(), scratch.path())
        .and_then(|mut guest| guest.info());
    match info {
        Ok(info) => {
            println!("policy: {} {}", info.name, info.version);
            println!("can run: yes");
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            println!("can run: no");
            eprintln!("bridge-host: {why:#}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Content from an argument, or from standard input for `-` less one
/// final line break, refusing more than the guest accepts before reading
/// it all.
fn content(arg: String, limit: u64) -> Result<String> {
    if arg != "-" {
        return Ok(arg);
    }
    let mut bytes = Vec::new();
    io::stdin()
        .lock()
        .take(limit + 2)
        .read_to_end(&mut bytes)
        .context("cannot read the content from standard input")?;
    // A here-document, `echo` and most editors end the text with a line
    // break that is not part of it: one final "\n" is dropped, so that an
    // answer written in a here-document arrives byte for byte.
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    if bytes.len() as u64 > limit {
        bail!(
            "the content on standard input is over the limit of {limit} bytes; send a summary \
             or split it"
        );
    }
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "the content on standard input is not valid UTF-8 (bad byte at offset {}); \
             messages carry text",
            e.utf8_error().valid_up_to()
        )
    })
}

/// `text` with its escapes (`--escapes`) turned into the characters they
/// name: `\\`, `\n`, `\r`, `\t`, `\0` and `\u{HEX}`. Any other backslash
/// is refused, so that a backslash meant literally is never taken for an
/// escape or the reverse.
fn unescape(text: &str) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let decoded = match chars.next().map(|(_, e)| e) {
            Some('\\') => '\\',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('0') => '\0',
            Some('u') => {
                let rest = chars.as_str();
                let hex = rest
                    .strip_prefix('{')
                    .and_then(|r| r.split_once('}'))
                    .map(|(hex, _)| hex)
                    .filter(|hex| (1..=6).contains(&hex.len()));
                let c = hex
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .and_then(char::from_u32);
                match (hex, c) {
                    (Some(hex), Some(c)) => {
                        for _ in 0..hex.len() + 2 {
                            chars.next();
                        }
                        c
                    }
                    _ => bail!(
                        "--escapes: `\\u` at byte {at} is not `\\u{{HEX}}` naming a character \
                         (for example `\\u{{1b}}`); write a backslash as `\\\\`"
                    ),
                }
            }
            Some(other) => bail!(
                "--escapes: `\\{other}` at byte {at} is not an escape (`\\r`, `\\n`, `\\t`, \
                 `\\0`, `\\u{{HEX}}`); write a backslash as `\\\\`"
            ),
            None => {
                bail!("--escapes: the text ends in a lone backslash; write a backslash as `\\\\`")
            }
        };
        out.push(decoded);
    }
    Ok(out)
}

fn to_wit_verb(verb: VerbArgs, limits: &wit::Limits, escapes: bool) -> Result<wit::Verb> {
    let limit = limits.max_content_bytes;
    // Escaped text is longer than what it names (`\u{1b}` is one byte);
    // the guest checks the limit on the decoded content.
    verb.into_wit(limits, |arg| {
        if escapes {
            unescape(&content(arg, limit.saturating_mul(6))?)
        } else {
            content(arg, limit)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn escapes_name_control_characters_and_a_backslash_must_be_doubled() {
        assert_eq!(
            unescape(r"line one\r\nline two\r\n\tx \\ C:\\path \u{1b}[2J \u{0}\0 é").unwrap(),
            "line one\r\nline two\r\n\tx \\ C:\\path \u{1b}[2J \u{0}\u{0} é"
        );
        assert_eq!(
            unescape("no escapes: $HOME `id`").unwrap(),
            "no escapes: $HOME `id`"
        );
        for bad in [
            r"C:\path",
            r"\u{110000}",
            r"\u{}",
            r"\u1b",
            r"\u{1234567}",
            "end\\",
        ] {
            let err = unescape(bad).unwrap_err().to_string();
            assert!(
                err.contains("--escapes") && err.contains(r"\\"),
                "{bad}: {err}"
            );
        }
    }
}
