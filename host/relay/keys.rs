//! The relay's keys: the machine's credentials file, read with errors that
//! name what is wrong in it; the key that signs what the relay publishes;
//! `bridge-host relay keygen` and `bridge-host relay trust`.
//!
//! Which key the receiving side accepts for a machine is the guest's rule
//! (guest/src/relay_keys.rs); the host only signs, and writes a key the
//! user trusts explicitly.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;

/// What a mail signature covers, before the two machine names and the
/// payload: the same as `SIGNED_CONTEXT` in guest/src/relay_keys.rs.
const SIGNED_CONTEXT: &str = "session-bridge relay v1";

/// What a presence signature covers, before the machine, the session and
/// the manifest: the same as `PRESENCE_CONTEXT` in guest/src/relay_keys.rs.
const PRESENCE_CONTEXT: &str = "session-bridge presence v1";

/// A machine's credentials, as `--creds` gives them.
pub enum Creds {
    /// A `.creds` file (a user JWT and its seed), whole, and its seed.
    Jwt { text: String, seed: String },
    /// An nkey user seed.
    Seed(String),
}

impl Creds {
    pub fn seed(&self) -> &str {
        match self {
            Creds::Jwt { seed, .. } | Creds::Seed(seed) => seed,
        }
    }
}

/// Reads a credentials file: a `.creds` file as `nsc` writes it, or a file
/// holding an nkey user seed (`SU...`), alone or with its public key on
/// another line (as `nk -gen user -pubout` prints them).
pub fn read_creds(path: &Path) -> Result<Creds> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the credentials {}", path.display()))?;
    let make = "make one with `bridge-host relay keygen --out FILE`";
    if text.contains("-----BEGIN NATS USER JWT-----") {
        let seed = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("SU"))
            .with_context(|| {
                format!(
                    "{} holds a user JWT but no `-----BEGIN USER NKEY SEED-----` block with its \
                     seed (SU...)",
                    path.display()
                )
            })?;
        check_seed(path, seed)?;
        return Ok(Creds::Jwt {
            seed: seed.to_string(),
            text,
        });
    }
    let mut seed: Option<(usize, &str)> = None;
    let mut public: Vec<(usize, &str)> = Vec::new();
    for (n, line) in text.lines().enumerate().map(|(n, l)| (n + 1, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.get(..2) {
            Some("SU") if seed.is_none() => seed = Some((n, line)),
            Some("SU") => bail!(
                "{} holds two nkey seeds (lines {} and {n}); keep the one this machine uses",
                path.display(),
                seed.map_or(0, |s| s.0)
            ),
            Some("SA" | "SO" | "SN" | "SC") => bail!(
                "line {n} of {} is an account, operator, server or cluster seed, not a user seed \
                 (SU...); {make}",
                path.display()
            ),
            _ if line.starts_with('U') && nkeys::KeyPair::from_public_key(line).is_ok() => {
                public.push((n, line))
            }
            _ => bail!(
                "line {n} of {} is neither an nkey user seed (SU...) nor its public key (U...), \
                 and the file is not a .creds file; {make}",
                path.display()
            ),
        }
    }
    let Some((_, seed)) = seed else {
        bail!(
            "{} holds no nkey user seed (a line SU...) and is not a .creds file; {make}",
            path.display()
        );
    };
    let pair = check_seed(path, seed)?;
    for (n, key) in public {
        if key != pair.public_key() {
            bail!(
                "line {n} of {} is the public key {key}, but the seed's public key is {}: the \
                 file mixes two keys",
                path.display(),
                pair.public_key()
            );
        }
    }
    Ok(Creds::Seed(seed.to_string()))
}

fn check_seed(path: &Path, seed: &str) -> Result<nkeys::KeyPair> {
    match nkeys::KeyPair::from_seed(seed) {
        Ok(pair) => Ok(pair),
        Err(err) => bail!(
            "the seed in {} is not a valid nkey user seed ({err}): a seed is one line of 58 \
             characters starting with SU; make one with `bridge-host relay keygen --out FILE`",
            path.display()
        ),
    }
}

/// The key that signs what this relay publishes: the seed of `--creds`
/// when given, else one kept next to the bridge directory (`<bridge
/// dir>.relay-key`, outside what the guest can reach), made on first use.
pub fn signing_key(creds: Option<&Creds>, bridge_dir: &Path) -> Result<nkeys::KeyPair> {
    if let Some(creds) = creds {
        return nkeys::KeyPair::from_seed(creds.seed()).context("the credentials' seed");
    }
    let path = own_key_path(bridge_dir);
    if path.exists() {
        return nkeys::KeyPair::from_seed(read_creds(&path)?.seed())
            .with_context(|| format!("the signing key {}", path.display()));
    }
    let pair = nkeys::KeyPair::new_user();
    write_secret(&path, &pair.seed().context("a new key's seed")?)?;
    Ok(pair)
}

fn own_key_path(bridge_dir: &Path) -> PathBuf {
    let mut name = bridge_dir.file_name().unwrap_or_default().to_os_string();
    name.push(".relay-key");
    bridge_dir.with_file_name(name)
}

/// Writes `seed` to a new file only its owner can read.
fn write_secret(path: &Path, seed: &str) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    writeln!(file, "{seed}")
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The headers that sign `payload`, published by `from_machine` for
/// `to_machine`.
pub fn sign(
    key: &nkeys::KeyPair,
    to_machine: &str,
    from_machine: &str,
    payload: &[u8],
) -> Result<(String, String)> {
    sign_framed(key, SIGNED_CONTEXT, [to_machine, from_machine], payload)
}

/// The headers that sign the presence entry `manifest` of `machine`'s
/// session `session`.
pub fn sign_presence(
    key: &nkeys::KeyPair,
    machine: &str,
    session: &str,
    manifest: &[u8],
) -> Result<(String, String)> {
    sign_framed(key, PRESENCE_CONTEXT, [machine, session], manifest)
}

/// A signature over `context`, the parts and the payload, a line break
/// between each, as guest/src/relay_keys.rs checks it: (signer, signature).
fn sign_framed(
    key: &nkeys::KeyPair,
    context: &str,
    parts: [&str; 2],
    payload: &[u8],
) -> Result<(String, String)> {
    let mut signed = Vec::with_capacity(payload.len() + 128);
    signed.extend_from_slice(context.as_bytes());
    for part in parts {
        signed.push(b'\n');
        signed.extend_from_slice(part.as_bytes());
    }
    signed.push(b'\n');
    signed.extend_from_slice(payload);
    let signature = key.sign(&signed).context("cannot sign")?;
    Ok((
        key.public_key(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature),
    ))
}

/// `bridge-host relay keygen --out FILE`: a new machine key. The seed goes
/// into FILE (created, readable by its owner only); the public key is
/// printed, for the server's configuration.
pub fn keygen(out: &Path) -> Result<()> {
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the folder {}", parent.display()))?;
    }
    let pair = nkeys::KeyPair::new_user();
    write_secret(out, &pair.seed().context("a new key's seed")?)?;
    println!("{}", pair.public_key());
    eprintln!(
        "wrote the seed to {} (pass it as --creds); the line above is its public key, for the \
         server's configuration (nkey: ...)",
        out.display()
    );
    Ok(())
}

/// Whether `machine` is a machine name: 1 to 32 characters of a-z, 0-9
/// and `-`, not starting with `-` (the guest's rule, checked here too so
/// that a bad name is refused before it becomes a file or a subject).
pub fn check_machine(machine: &str) -> Result<()> {
    let plain = !machine.is_empty()
        && machine.len() <= 32
        && !machine.starts_with('-')
        && machine
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !plain {
        bail!("{machine:?} is not a machine name (1 to 32 characters of a-z, 0-9 and `-`)");
    }
    Ok(())
}

/// Whether `key` is an nkey user public key.
fn check_user_key(key: &str) -> Result<()> {
    let user = nkeys::KeyPair::from_public_key(key)
        .ok()
        .filter(|k| matches!(k.key_pair_type(), nkeys::KeyPairType::User));
    if user.is_none() {
        bail!(
            "{key:?} is not an nkey user public key (56 characters starting with U): \
             `bridge-host relay key` prints a machine's key, and its relay logs it when it \
             starts (`signs as U...`)"
        );
    }
    Ok(())
}

/// `bridge-host relay key`: the public key this machine's relay signs
/// with, made now when it has none yet.
pub fn show(creds: Option<&Path>, bridge_dir: &Path) -> Result<()> {
    let creds = creds.map(read_creds).transpose()?;
    let key = signing_key(creds.as_ref(), bridge_dir)?;
    println!("{}", key.public_key());
    Ok(())
}

/// `bridge-host relay trust MACHINE KEY`: from now on this machine accepts
/// mail and presence from MACHINE only when KEY signed them.
pub fn trust(bridge_dir: &Path, machine: &str, key: &str) -> Result<()> {
    check_machine(machine)?;
    check_user_key(key)?;
    let said = pin(bridge_dir, machine, key)?;
    println!("{said}");
    Ok(())
}

/// `bridge-host relay trust --roster FILE`: each line `MACHINE KEY` of the
/// team's roster trusted, as `trust` trusts one. Blank lines and lines
/// starting with `#` are skipped. The whole file is checked before any key
/// is written, so a bad line changes nothing.
pub fn trust_roster(bridge_dir: &Path, roster: &Path) -> Result<()> {
    let text = std::fs::read_to_string(roster)
        .with_context(|| format!("cannot read the roster {}", roster.display()))?;
    let mut entries: Vec<(&str, &str)> = Vec::new();
    for (n, line) in text.lines().enumerate().map(|(n, l)| (n + 1, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [machine, key] = fields[..] else {
            bail!(
                "line {n} of {} is not `MACHINE KEY` (a machine name, a space, its public key \
                 U...)",
                roster.display()
            );
        };
        check_machine(machine).with_context(|| format!("line {n} of {}", roster.display()))?;
        check_user_key(key).with_context(|| format!("line {n} of {}", roster.display()))?;
        if let Some((_, other)) = entries.iter().find(|(m, k)| *m == machine && k != &key) {
            bail!(
                "line {n} of {} gives machine {machine} the key {key}, but an earlier line gives \
                 it {other}; keep one",
                roster.display()
            );
        }
        entries.push((machine, key));
    }
    if entries.is_empty() {
        bail!(
            "{} lists no machine: write one line `MACHINE KEY` per machine",
            roster.display()
        );
    }
    for (machine, key) in entries {
        println!("{}", pin(bridge_dir, machine, key)?);
    }
    Ok(())
}

/// Writes `key` as the one trusted for `machine`, atomically: a reader sees
/// the old key or the new one, never part of a file. Says what changed.
fn pin(bridge_dir: &Path, machine: &str, key: &str) -> Result<String> {
    let dir = bridge_dir.join("relay-keys");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{machine}.pub"));
    let before = std::fs::read_to_string(&path).ok();
    if before.as_deref().map(str::trim) == Some(key) {
        return Ok(format!("machine {machine}'s key was {key} already"));
    }
    let temp = dir.join(format!(".{machine}.pub.{}", std::process::id()));
    std::fs::write(&temp, key)
        .and_then(|()| std::fs::File::open(&temp)?.sync_all())
        .with_context(|| format!("cannot write {}", temp.display()))?;
    if let Err(err) = std::fs::rename(&temp, &path) {
        let _ = std::fs::remove_file(&temp);
        return Err(err).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(match before.as_deref().map(str::trim) {
        Some(old) => format!("machine {machine}'s key is now {key} (it was {old})"),
        None => format!("machine {machine}'s key is now {key}"),
    })
}
