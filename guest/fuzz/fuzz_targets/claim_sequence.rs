//! The claim logic driven through the public `Bridge` API: a fuzzed sequence
//! of at most 16 operations (send, listen with timeout 0, commit a real
//! ticket, commit a forged ticket, plant a hostile file in an inbox or its
//! `claimed/` folder) on a fresh bridge directory with two sessions, then a
//! drain that listens until both inboxes are empty.
//!
//! Invariants:
//! - nothing panics;
//! - a message sent through the bridge is delivered exactly once, unchanged,
//!   and ends up in `read/` marked read once committed;
//! - a real outstanding ticket always commits, and only once;
//! - a forged ticket commits only when it equals a real outstanding ticket
//!   or names a claim file this harness planted itself;
//! - no operation creates or removes a session directory, and a send to an
//!   ID with no session fails;
//! - a file set aside into `rejected/` stays where the warning says, and
//!   never replaces another one there;
//! - nothing is created outside the bridge root, nothing outside it is
//!   changed, and the symbolic links in it are planted ones, never copies.
//!
//! The exactly-once rule covers every message that went through `send` (or
//! answered a ping), except those whose ID a planted file also used: a
//! planted file may take any ID, a sent one included, and then decides that
//! message's fate.

#![no_main]

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use session_bridge_guest::clock;
use session_bridge_guest::ids::{MessageId, SessionId};
use session_bridge_guest::wire::{Kind, Message, Metadata, Status};
use session_bridge_guest::{
    Bridge, BridgeError, ClaimTicket, Context, Delivery, Format, Layout, LocalPlatform, Outcome,
    Verb,
};

/// An enum with an `Arbitrary` implementation like the derived one, except
/// that the variant costs one input byte instead of four, so that short
/// inputs already hold several operations.
macro_rules! compact_enum {
    (
        $(#[$meta:meta])*
        enum $name:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident
                $( ( $($tty:ty),* $(,)? ) )?
                $( { $($field:ident : $fty:ty),* $(,)? } )?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        enum $name {
            $(
                $(#[$vmeta])*
                $variant
                $( ( $($tty),* ) )?
                $( { $($field : $fty),* } )?
            ),*
        }

        impl<'a> Arbitrary<'a> for $name {
            fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
                type Make<'b> = fn(&mut Unstructured<'b>) -> arbitrary::Result<$name>;
                let choices: &[Make<'a>] = &[
                    $(
                        |_u| Ok($name::$variant
                            $( ( $( _u.arbitrary::<$tty>()? ),* ) )?
                            $( { $( $field: _u.arbitrary::<$fty>()? ),* } )?
                        )
                    ),*
                ];
                let index = u.choose_index(choices.len())?;
                choices[index](u)
            }
        }
    };
}

const MAX_OPS: usize = 16;
const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const SENTINEL_TEXT: &[u8] = b"outside the bridge root\n";

fn token(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| ALPHABET[(*b % 36) as usize] as char)
        .collect()
}

fn kind(k: u8) -> Kind {
    [Kind::Query, Kind::Response, Kind::Ping, Kind::SessionEnded][k as usize % 4]
}

fn status(s: u8) -> Status {
    [Status::Pending, Status::Read, Status::Sent][s as usize % 3]
}

compact_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Who {
        A,
        B,
    }
}

compact_enum! {
    #[derive(Debug)]
    enum To {
        Session(Who),
        /// A well-formed ID with no session.
        Absent([u8; 6]),
        Text(String),
    }
}

compact_enum! {
    #[derive(Debug)]
    enum ReplyTo {
        /// The ID of the n-th message sent so far.
        Sent(u8),
        Token([u8; 12]),
        Text(String),
    }
}

compact_enum! {
    /// A message ID for a planted file or a forged ticket.
    #[derive(Debug)]
    enum PlantId {
        /// One of four fixed IDs, so plants and forgeries collide often.
        Fixed(u8),
        /// The ID of the n-th message sent so far.
        Sent(u8),
        Token([u8; 12]),
        Text(String),
    }
}

compact_enum! {
    #[derive(Debug)]
    enum Millis {
        /// Older than the claim lease: recovered into the inbox.
        Expired,
        Fresh,
        Future,
        Text(String),
    }
}

compact_enum! {
    #[derive(Debug)]
    enum PlantName {
        Json(PlantId),
        Claim {
            id: PlantId,
            token: [u8; 8],
            millis: Millis,
        },
        Text(String),
    }
}

compact_enum! {
    #[derive(Debug)]
    enum PlantDir {
        Inbox,
        Claimed,
    }
}

compact_enum! {
    #[derive(Debug)]
    enum PlantContent {
        Bytes(Vec<u8>),
        /// A well-formed message whose ID is the planted name's ID.
        Message {
            from: Who,
            to: Who,
            kind: u8,
            status: u8,
            content: String,
            in_reply_to: Option<ReplyTo>,
            stamp: u32,
        },
        Directory,
        /// A symbolic link to a file outside the bridge root.
        LinkOut,
    }
}

compact_enum! {
    #[derive(Debug)]
    enum Mutation {
        /// An exact replay.
        None,
        Session(To),
        MessageId(PlantId),
        ClaimName(String),
        ClaimPrefix(String),
        ClaimSuffix(String),
        ClaimToken([u8; 8]),
        ClaimMillis(Millis),
    }
}

compact_enum! {
    #[derive(Debug)]
    enum Forged {
        Fields {
            session: To,
            message_id: PlantId,
            claim_name: PlantName,
        },
        /// The n-th real ticket, altered.
        Mutated { index: u8, mutation: Mutation },
        /// A ticket for the n-th claim file planted, altered.
        Planted { index: u8, mutation: Mutation },
    }
}

compact_enum! {
    #[derive(Debug)]
    enum Op {
        Send {
            from: Who,
            to: To,
            kind: u8,
            content: String,
            in_reply_to: Option<ReplyTo>,
        },
        Listen(Who),
        /// Commits the n-th real ticket.
        Commit(u8),
        CommitForged(Forged),
        Plant {
            who: Who,
            dir: PlantDir,
            name: PlantName,
            content: PlantContent,
        },
    }
}

struct Ticket {
    ticket: ClaimTicket,
    committed: bool,
}

struct Harness {
    _dir: tempfile::TempDir,
    outer: PathBuf,
    root: PathBuf,
    sentinel: PathBuf,
    layout: Layout,
    bridge: Bridge<LocalPlatform>,
    a: SessionId,
    b: SessionId,
    /// Messages that went through the bridge, by ID.
    sent: Vec<Message>,
    /// IDs a planted file used.
    tainted: HashSet<String>,
    /// (session, claim file name) planted into `claimed/`.
    planted_claims: Vec<(String, String)>,
    /// How often each message ID was delivered.
    delivered: HashMap<String, usize>,
    tickets: Vec<Ticket>,
    /// Symbolic links planted (all point at the sentinel).
    links: usize,
    /// Where the warnings said files were set aside.
    set_aside: HashSet<PathBuf>,
}

fn context(session: Option<&SessionId>, project: &str) -> Context {
    Context {
        session: session.map(|s| s.to_string()),
        agent_session: None,
        project_dir: project.to_string(),
        working_dir: project.to_string(),
        format: Format::Text,
        settings: Vec::new(),
    }
}

impl Harness {
    fn new() -> Self {
        // tmpfs when there is one: the runs are file system bound.
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::Builder::new()
                .prefix("bridge-fuzz-")
                .tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .unwrap();
        let outer = dir.path().to_path_buf();
        let root = outer.join("bridge");
        fs::create_dir(&root).unwrap();
        let sentinel = outer.join("sentinel");
        fs::write(&sentinel, SENTINEL_TEXT).unwrap();
        let start = |project: &str| {
            // A fresh platform each time, so the pointer does not make the
            // second start reuse the first session.
            let bridge = Bridge::new(Layout::new(&root), LocalPlatform::default());
            match bridge.run(&context(None, project), Verb::Start) {
                Ok(report) => match report.outcome {
                    Outcome::Session(m) => SessionId::parse(&m.session_id).unwrap(),
                    other => panic!("start gave {other:?}"),
                },
                Err(failure) => panic!("start failed: {failure:?}"),
            }
        };
        let a = start("/p/a");
        let b = start("/p/b");
        assert_ne!(a, b);
        Harness {
            _dir: dir,
            outer,
            sentinel,
            layout: Layout::new(&root),
            bridge: Bridge::new(Layout::new(&root), LocalPlatform::default()),
            root,
            a,
            b,
            sent: Vec::new(),
            tainted: HashSet::new(),
            planted_claims: Vec::new(),
            delivered: HashMap::new(),
            tickets: Vec::new(),
            links: 0,
            set_aside: HashSet::new(),
        }
    }

    fn id(&self, who: Who) -> &SessionId {
        match who {
            Who::A => &self.a,
            Who::B => &self.b,
        }
    }

    fn to_text(&self, to: &To) -> String {
        match to {
            To::Session(who) => self.id(*who).to_string(),
            To::Absent(b) => token(b),
            To::Text(t) => t.clone(),
        }
    }

    fn nth_sent(&self, n: u8) -> Option<&Message> {
        (!self.sent.is_empty()).then(|| &self.sent[n as usize % self.sent.len()])
    }

    fn reply_to_text(&self, reply_to: &ReplyTo) -> String {
        match reply_to {
            ReplyTo::Sent(n) => self
                .nth_sent(*n)
                .map_or_else(|| "msg-nothingsent0".into(), |m| m.id.clone()),
            ReplyTo::Token(b) => format!("msg-{}", token(b)),
            ReplyTo::Text(t) => t.clone(),
        }
    }

    fn plant_id(&self, id: &PlantId) -> String {
        match id {
            PlantId::Fixed(n) => format!("msg-fuzzfixed00{}", n % 4),
            PlantId::Sent(n) => self
                .nth_sent(*n)
                .map_or_else(|| "msg-nothingsent0".into(), |m| m.id.clone()),
            PlantId::Token(b) => format!("msg-{}", token(b)),
            PlantId::Text(t) => t.clone(),
        }
    }

    fn millis(millis: &Millis) -> String {
        let now = clock::epoch_millis();
        match millis {
            Millis::Expired => (now - 60_000).to_string(),
            Millis::Fresh => now.to_string(),
            Millis::Future => (now + 1_000_000_000).to_string(),
            Millis::Text(t) => t.clone(),
        }
    }

    /// The file name and the message ID part it carries.
    fn plant_name(&self, name: &PlantName) -> (String, String) {
        match name {
            PlantName::Json(id) => {
                let id = self.plant_id(id);
                (format!("{id}.json"), id)
            }
            PlantName::Claim {
                id,
                token: t,
                millis,
            } => {
                let id = self.plant_id(id);
                let name = format!("{id}.{}.{}.claim", token(t), Self::millis(millis));
                (name, id)
            }
            PlantName::Text(t) => {
                let id = t.split('.').next().unwrap_or_default().to_string();
                (t.clone(), id)
            }
        }
    }

    fn run(&mut self, op: &Op) {
        self.apply(op);
        self.check_sessions();
    }

    /// No operation creates or removes a session directory.
    fn check_sessions(&self) {
        let mut found: Vec<String> = fs::read_dir(self.layout.sessions())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        found.sort();
        let mut expected = vec![self.a.to_string(), self.b.to_string()];
        expected.sort();
        assert_eq!(found, expected, "the session directories changed");
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Send {
                from,
                to,
                kind: k,
                content,
                in_reply_to,
            } => self.send(*from, to, kind(*k), content, in_reply_to.as_ref()),
            Op::Listen(who) => {
                self.listen(*who);
            }
            Op::Commit(n) => {
                if !self.tickets.is_empty() {
                    let index = *n as usize % self.tickets.len();
                    self.commit_real(index);
                }
            }
            Op::CommitForged(forged) => self.commit_forged(forged),
            Op::Plant {
                who,
                dir,
                name,
                content,
            } => self.plant(*who, dir, name, content),
        }
    }

    fn send(
        &mut self,
        from: Who,
        to: &To,
        kind: Kind,
        content: &str,
        in_reply_to: Option<&ReplyTo>,
    ) {
        let to_text = self.to_text(to);
        let in_reply_to = in_reply_to.map(|r| self.reply_to_text(r));
        let verb = Verb::Send {
            to: to_text.clone(),
            kind,
            content: content.to_string(),
            in_reply_to: in_reply_to.clone(),
        };
        let from_id = self.id(from).clone();
        let result = self.bridge.run(&context(Some(&from_id), "/p/x"), verb);
        let should_work = matches!(to, To::Session(_))
            && in_reply_to
                .as_deref()
                .is_none_or(|r| MessageId::parse(r).is_ok());
        let no_session = to_text != self.a.as_str() && to_text != self.b.as_str();
        match result {
            Ok(report) => {
                let Outcome::Sent(message) = report.outcome else {
                    panic!("send gave {:?}", report.outcome);
                };
                assert!(!no_session, "sent to {to_text:?}, which is no session");
                assert_eq!(message.from, from_id.as_str());
                assert_eq!(message.to, to_text);
                assert_eq!(message.kind, kind);
                assert_eq!(message.content, content);
                assert_eq!(message.in_reply_to, in_reply_to);
                assert_eq!(message.status, Status::Pending);
                self.record_sent(message);
            }
            Err(failure) => assert!(!should_work, "send failed: {failure:?}"),
        }
    }

    fn record_sent(&mut self, message: Message) {
        assert!(
            !self.sent.iter().any(|m| m.id == message.id),
            "a message ID was issued twice"
        );
        assert!(!self.tainted.contains(&message.id));
        self.sent.push(message);
    }

    /// One listen with timeout 0; true when something was delivered.
    fn listen(&mut self, who: Who) -> bool {
        let me = self.id(who).clone();
        let result = self.bridge.run(
            &context(Some(&me), "/p/x"),
            Verb::Listen {
                timeout_seconds: Some(0),
            },
        );
        let warnings = match &result {
            Ok(report) => &report.warnings,
            Err(failure) => &failure.warnings,
        };
        self.record_set_aside(&me, warnings);
        match result {
            Ok(report) => {
                let Outcome::Delivered(delivery) = report.outcome else {
                    panic!("listen gave {:?}", report.outcome);
                };
                self.record_delivery(&me, delivery);
                true
            }
            Err(failure) => {
                assert_eq!(
                    failure.error,
                    BridgeError::TimedOut(0),
                    "listen failed: {failure:?}"
                );
                false
            }
        }
    }

    /// Notes the files `warnings` say were set aside. Each must be there,
    /// under a name no earlier one had.
    fn record_set_aside(&mut self, owner: &SessionId, warnings: &[String]) {
        let rejected = self.layout.rejected(owner);
        let marker = format!("; it is kept as {}/", rejected.display());
        for warning in warnings {
            let Some(at) = warning.find(&marker) else {
                continue;
            };
            let kept = rejected.join(&warning[at + marker.len()..]);
            assert!(
                fs::symlink_metadata(&kept).is_ok(),
                "set aside as {kept:?}, which does not exist"
            );
            assert!(
                self.set_aside.insert(kept.clone()),
                "set aside as {kept:?}, replacing a file set aside earlier"
            );
        }
    }

    fn record_delivery(&mut self, me: &SessionId, delivery: Delivery) {
        let Delivery {
            message,
            ticket,
            answered_ping,
            ..
        } = delivery;
        assert_eq!(ticket.session_id, me.as_str());
        assert_eq!(ticket.message_id, message.id);
        assert!(ticket.claim_name.starts_with(&format!("{}.", message.id)));
        assert!(ticket.claim_name.ends_with(".claim"));
        assert!(!ticket.claim_name.contains('/'));
        assert_eq!(message.to, me.as_str());
        assert_ne!(message.from, me.as_str(), "a session got its own message");
        assert_eq!(message.status, Status::Read);
        assert!(
            !self.tickets.iter().any(|t| t.ticket == ticket),
            "a ticket was issued twice"
        );
        let count = self.delivered.entry(message.id.clone()).or_default();
        *count += 1;
        if !self.tainted.contains(&message.id) {
            let original = self
                .sent
                .iter()
                .find(|m| m.id == message.id)
                .unwrap_or_else(|| panic!("delivered a message never sent: {message:?}"));
            assert_eq!(*count, 1, "delivered twice: {message:?}");
            let mut expected = original.clone();
            expected.status = Status::Read;
            assert_eq!(message, expected, "delivered altered");
        }
        if let Some(pong) = answered_ping {
            assert_eq!(message.kind, Kind::Ping);
            assert_eq!(pong.kind, Kind::Ping);
            assert_eq!(pong.in_reply_to.as_deref(), Some(message.id.as_str()));
            assert_eq!(pong.from, me.as_str());
            assert_eq!(pong.to, message.from);
            self.record_sent(pong);
        }
        self.tickets.push(Ticket {
            ticket,
            committed: false,
        });
    }

    fn commit_real(&mut self, index: usize) {
        let ticket = self.tickets[index].ticket.clone();
        let result = self.bridge.commit_delivery(&ticket);
        if self.tickets[index].committed {
            assert!(result.is_err(), "a ticket committed twice: {ticket:?}");
            return;
        }
        if result.is_ok() {
            self.tickets[index].committed = true;
        } else {
            // A planted file may stand where the commit writes; for a sent
            // message nothing may.
            assert!(
                self.tainted.contains(&ticket.message_id),
                "a real ticket did not commit: {ticket:?}: {result:?}"
            );
        }
    }

    fn commit_forged(&mut self, forged: &Forged) {
        let ticket = match forged {
            Forged::Fields {
                session,
                message_id,
                claim_name,
            } => ClaimTicket {
                session_id: self.to_text(session),
                message_id: self.plant_id(message_id),
                claim_name: self.plant_name(claim_name).0,
            },
            Forged::Mutated { index, mutation } => {
                if self.tickets.is_empty() {
                    return;
                }
                let real = &self.tickets[*index as usize % self.tickets.len()].ticket;
                self.mutated(real.clone(), mutation)
            }
            Forged::Planted { index, mutation } => {
                if self.planted_claims.is_empty() {
                    return;
                }
                let (session, name) =
                    &self.planted_claims[*index as usize % self.planted_claims.len()];
                let ticket = ClaimTicket {
                    session_id: session.clone(),
                    message_id: name.split('.').next().unwrap_or_default().to_string(),
                    claim_name: name.clone(),
                };
                self.mutated(ticket, mutation)
            }
        };
        let outstanding = self
            .tickets
            .iter()
            .position(|t| !t.committed && t.ticket == ticket);
        let planted = self
            .planted_claims
            .iter()
            .any(|(s, n)| *s == ticket.session_id && *n == ticket.claim_name);
        let result = self.bridge.commit_delivery(&ticket);
        match (result, outstanding) {
            (Ok(()), Some(index)) => self.tickets[index].committed = true,
            (Ok(()), None) => assert!(planted, "a forged ticket committed: {ticket:?}"),
            (Err(err), Some(_)) => assert!(
                self.tainted.contains(&ticket.message_id),
                "a real ticket did not commit: {ticket:?}: {err:?}"
            ),
            (Err(_), None) => {}
        }
    }

    fn mutated(&self, mut ticket: ClaimTicket, mutation: &Mutation) -> ClaimTicket {
        let mut claim_parts: Vec<String> =
            ticket.claim_name.split('.').map(str::to_string).collect();
        match mutation {
            Mutation::None => {}
            Mutation::Session(to) => ticket.session_id = self.to_text(to),
            Mutation::MessageId(id) => ticket.message_id = self.plant_id(id),
            Mutation::ClaimName(name) => ticket.claim_name = name.clone(),
            Mutation::ClaimPrefix(p) => ticket.claim_name.insert_str(0, p),
            Mutation::ClaimSuffix(s) => ticket.claim_name.push_str(s),
            Mutation::ClaimToken(t) if claim_parts.len() > 1 => {
                claim_parts[1] = token(t);
                ticket.claim_name = claim_parts.join(".");
            }
            Mutation::ClaimMillis(m) if claim_parts.len() > 2 => {
                claim_parts[2] = Self::millis(m);
                ticket.claim_name = claim_parts.join(".");
            }
            Mutation::ClaimToken(_) | Mutation::ClaimMillis(_) => {}
        }
        ticket
    }

    fn plant(&mut self, who: Who, dir: &PlantDir, name: &PlantName, content: &PlantContent) {
        let owner = self.id(who).clone();
        let (name, id) = self.plant_name(name);
        // The harness stays inside the root itself: one path component.
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.contains('/')
            || name.contains('\0')
            || name.len() > 255
        {
            return;
        }
        let folder = match dir {
            PlantDir::Inbox => self.layout.inbox(&owner),
            PlantDir::Claimed => self.layout.claimed(&owner),
        };
        let path = folder.join(&name);
        if fs::symlink_metadata(&path).is_ok() {
            return;
        }
        // A plant reusing a sent message's ID makes that message's fate the
        // planter's: it is no longer checked.
        self.tainted.insert(id.clone());
        let made = match content {
            PlantContent::Bytes(bytes) => fs::write(&path, bytes),
            PlantContent::Message {
                from,
                to,
                kind: k,
                status: s,
                content,
                in_reply_to,
                stamp,
            } => {
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs((*stamp).into());
                let message = Message {
                    id: id.clone(),
                    from: self.id(*from).to_string(),
                    to: self.id(*to).to_string(),
                    kind: kind(*k),
                    timestamp: clock::stamp(t),
                    status: status(*s),
                    content: content.clone(),
                    in_reply_to: in_reply_to.as_ref().map(|r| self.reply_to_text(r)),
                    metadata: Metadata::default(),
                };
                fs::write(&path, message.to_bytes())
            }
            PlantContent::Directory => fs::create_dir(&path),
            PlantContent::LinkOut => {
                let made = std::os::unix::fs::symlink(&self.sentinel, &path);
                if made.is_ok() {
                    self.links += 1;
                }
                made
            }
        };
        // Names the file system refuses (too long in bytes, and so on) are
        // simply not planted.
        if made.is_ok() && matches!(dir, PlantDir::Claimed) {
            self.planted_claims.push((owner.to_string(), name));
        }
    }

    /// Listens on both sessions until neither gets anything, committing
    /// every outstanding ticket.
    fn drain(&mut self) {
        for index in 0..self.tickets.len() {
            if !self.tickets[index].committed {
                self.commit_real(index);
            }
        }
        let mut rounds = 0;
        loop {
            rounds += 1;
            assert!(rounds < 200, "the inboxes never drained");
            let got_a = self.listen(Who::A);
            let got_b = self.listen(Who::B);
            for index in 0..self.tickets.len() {
                if !self.tickets[index].committed {
                    self.commit_real(index);
                }
            }
            if !got_a && !got_b {
                break;
            }
        }
    }

    fn check_final_state(&self) {
        self.check_sessions();
        for message in &self.sent {
            if self.tainted.contains(&message.id) || message.from == message.to {
                continue;
            }
            assert_eq!(
                self.delivered.get(&message.id).copied().unwrap_or(0),
                1,
                "not delivered exactly once: {message:?}"
            );
            let to = SessionId::parse(&message.to).unwrap();
            let kept = self
                .layout
                .read(&to)
                .join(MessageId::parse(&message.id).unwrap().file_name());
            let bytes = fs::read(&kept).unwrap_or_else(|e| panic!("{kept:?}: {e}"));
            // Kept in read/ as it was delivered, marked read.
            let stored = Message::parse(&bytes, &message.id, Some(&to)).unwrap();
            let mut expected = message.clone();
            expected.status = Status::Read;
            assert_eq!(stored, expected);
        }
        self.check_confined();
    }

    /// Everything under the temporary folder is the root's, bar the
    /// sentinel, which is unchanged; links in the root are planted ones
    /// (some may have been replaced by renames, none copied); whatever was
    /// set aside is still there.
    fn check_confined(&self) {
        let mut top: Vec<_> = fs::read_dir(&self.outer)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        top.sort();
        let mut expected = vec![self.root.clone(), self.sentinel.clone()];
        expected.sort();
        assert_eq!(top, expected, "something was created beside the root");
        let meta = fs::symlink_metadata(&self.sentinel).unwrap();
        assert!(meta.is_file());
        assert_eq!(fs::read(&self.sentinel).unwrap(), SENTINEL_TEXT);
        let mut links = 0;
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = fs::symlink_metadata(&path).unwrap();
                if meta.is_symlink() {
                    assert_eq!(fs::read_link(&path).unwrap(), self.sentinel);
                    links += 1;
                } else if meta.is_dir() {
                    stack.push(path);
                }
            }
        }
        assert!(links <= self.links, "a link was created or copied");
        for kept in &self.set_aside {
            assert!(
                fs::symlink_metadata(kept).is_ok(),
                "{kept:?} was set aside, then lost"
            );
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut harness = Harness::new();
    for op in ops.iter().take(MAX_OPS) {
        harness.run(op);
    }
    harness.drain();
    harness.check_final_state();
});
