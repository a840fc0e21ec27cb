//! What exists on the server for the relays, and `bridge-host relay admin`,
//! which makes it with the team admin's credentials.
//!
//! Under the team's configuration (docs/relay.md) no machine may create,
//! update or delete a stream, or create a consumer: a machine that could
//! would give its stream sources, a mirror or a republish, or a consumer a
//! deliver subject, and so read or forge another machine's mail. The admin
//! makes, per machine, its mail stream with the consumer its relay reads,
//! and its consumer on the presence bucket; and the bucket once.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use async_nats::jetstream::{self, consumer::pull, stream};

/// How long the server waits for an acknowledgement before it delivers a
/// message again.
pub const SERVER_ACK_WAIT: Duration = Duration::from_secs(30);
/// How long the server remembers a message ID to drop a second publish.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(3600);
/// The largest message the stream stores: a message file's limit (7 MiB)
/// plus room. The server's own `max_payload` must allow it (docs/relay.md).
pub const MAX_MESSAGE_BYTES: i32 = 8 << 20;
/// The durable consumer through which a machine's relay reads its mail.
pub const MAIL_CONSUMER: &str = "relay";
/// The largest presence entry the bucket stores, headers included: a
/// manifest is at most 64 KiB (the guest's limit), and its signature
/// headers take about 200 bytes more.
pub const MAX_PRESENCE_BYTES: i32 = 80 << 10;

/// The names and settings the relays of one team share.
#[derive(Clone, Debug)]
pub struct Layout {
    pub prefix: String,
    pub hold_hours: u64,
    pub presence_ttl: u64,
    pub replicas: usize,
}

impl Layout {
    pub fn mail_stream(&self, machine: &str) -> String {
        format!("{}-mail-{machine}", self.prefix)
    }

    pub fn bucket(&self) -> String {
        format!("{}-presence", self.prefix)
    }

    pub fn bucket_stream(&self) -> String {
        format!("KV_{}", self.bucket())
    }

    /// The consumer on the presence bucket through which `machine`'s relay
    /// follows the changes.
    pub fn presence_consumer(&self, machine: &str) -> String {
        format!("presence-{machine}")
    }

    pub fn mail_config(&self, machine: &str) -> stream::Config {
        let hold = Duration::from_secs(self.hold_hours.max(1) * 3600);
        stream::Config {
            name: self.mail_stream(machine),
            subjects: vec![format!("{}.mail.{machine}.*", self.prefix)],
            storage: stream::StorageType::File,
            max_age: hold,
            duplicate_window: DUPLICATE_WINDOW.min(hold),
            max_message_size: MAX_MESSAGE_BYTES,
            discard: stream::DiscardPolicy::New,
            num_replicas: self.replicas,
            ..Default::default()
        }
    }

    /// The bucket's stream, laid out as a key-value bucket is. It is made
    /// as a stream because the client's own bucket creation first reads
    /// the account's limits, in a shape nats-server 2.9 does not answer
    /// with. No rollups: a machine may put only its own keys, and a rollup
    /// of all would remove every other machine's.
    pub fn bucket_config(&self) -> stream::Config {
        let bucket = self.bucket();
        stream::Config {
            name: self.bucket_stream(),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            max_message_size: MAX_PRESENCE_BYTES,
            max_age: Duration::from_secs(self.presence_ttl),
            storage: stream::StorageType::File,
            allow_rollup: false,
            deny_delete: true,
            deny_purge: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            duplicate_window: Duration::from_secs(120).min(Duration::from_secs(self.presence_ttl)),
            num_replicas: self.replicas,
            ..Default::default()
        }
    }

    pub fn mail_consumer_config() -> pull::Config {
        pull::Config {
            durable_name: Some(MAIL_CONSUMER.into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: SERVER_ACK_WAIT,
            ..Default::default()
        }
    }

    pub fn presence_consumer_config(&self, machine: &str) -> pull::Config {
        pull::Config {
            durable_name: Some(self.presence_consumer(machine)),
            deliver_policy: jetstream::consumer::DeliverPolicy::LastPerSubject,
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: SERVER_ACK_WAIT,
            filter_subject: format!("$KV.{}.>", self.bucket()),
            ..Default::default()
        }
    }
}

/// The number of replicas when none is given: 3 on a cluster, else 1.
pub fn default_replicas(client: &async_nats::Client) -> usize {
    if client.server_info().cluster.is_some() {
        3
    } else {
        1
    }
}

/// What [`ensure_stream`] did.
pub enum Made {
    Created,
    Updated,
    Unchanged,
}

/// Creates the stream `config` names, or brings an existing one's subjects,
/// limits and replicas to `config`.
pub async fn ensure_stream(js: &jetstream::Context, config: stream::Config) -> Result<Made> {
    let name = config.name.clone();
    match js.get_stream(&name).await {
        Ok(mut existing) => {
            let now = existing.info().await?.config.clone();
            let mut wanted = now.clone();
            wanted.subjects = config.subjects.clone();
            wanted.max_age = config.max_age;
            wanted.duplicate_window = config.duplicate_window;
            wanted.max_message_size = config.max_message_size;
            wanted.max_messages_per_subject = config.max_messages_per_subject;
            wanted.discard = config.discard;
            wanted.allow_rollup = config.allow_rollup;
            wanted.deny_delete = config.deny_delete;
            wanted.deny_purge = config.deny_purge;
            wanted.allow_direct = config.allow_direct;
            wanted.num_replicas = config.num_replicas;
            // Whatever could carry mail elsewhere goes.
            wanted.sources = None;
            wanted.mirror = None;
            wanted.republish = None;
            if format!("{wanted:?}") == format!("{now:?}") {
                return Ok(Made::Unchanged);
            }
            js.update_stream(wanted)
                .await
                .with_context(|| format!("cannot update the stream {name}"))?;
            Ok(Made::Updated)
        }
        Err(_) => {
            js.create_stream(config)
                .await
                .with_context(|| format!("cannot create the stream {name}"))?;
            Ok(Made::Created)
        }
    }
}

/// Creates the durable consumer `config` names on `stream_name`, unless it
/// exists.
pub async fn ensure_consumer(
    js: &jetstream::Context,
    stream_name: &str,
    config: pull::Config,
) -> Result<Made> {
    let name = config.durable_name.clone().unwrap_or_default();
    let stream = js
        .get_stream(stream_name)
        .await
        .with_context(|| format!("cannot read the stream {stream_name}"))?;
    match stream.consumer_info(&name).await {
        Ok(info) => {
            let now = &info.config;
            // A consumer made before the machines' permissions were these
            // (a push consumer delivering elsewhere, another filter) is
            // replaced: its acknowledgements are lost, and what the
            // machine's relay receives again it drops as received before.
            let stale = now.deliver_subject.is_some()
                || now.filter_subject != config.filter_subject
                || now.deliver_policy != config.deliver_policy
                || now.ack_policy != config.ack_policy;
            if !stale {
                return Ok(Made::Unchanged);
            }
            stream
                .delete_consumer(&name)
                .await
                .with_context(|| format!("cannot delete the stale consumer {name}"))?;
            stream
                .create_consumer(config)
                .await
                .with_context(|| format!("cannot create the consumer {name} on {stream_name}"))?;
            Ok(Made::Updated)
        }
        Err(_) => {
            stream
                .create_consumer(config)
                .await
                .with_context(|| format!("cannot create the consumer {name} on {stream_name}"))?;
            Ok(Made::Created)
        }
    }
}

/// `bridge-host relay admin`: makes, or brings up to date, what each
/// machine's relay uses on the server.
pub async fn run(
    client: async_nats::Client,
    mut layout: Layout,
    explicit: Option<usize>,
    machines: &[String],
) -> Result<()> {
    if machines.is_empty() {
        bail!("name at least one machine: bridge-host relay admin --machine NAME ...");
    }
    for machine in machines {
        super::keys::check_machine(machine)?;
    }
    layout.replicas = explicit.unwrap_or_else(|| default_replicas(&client));
    let js = jetstream::new(client);
    let said = |what: &str, made: Made| {
        let how = match made {
            Made::Created => "created",
            Made::Updated => "updated",
            Made::Unchanged => "up to date",
        };
        println!("{what}: {how} ({} replicas)", layout.replicas);
    };
    let bucket = layout.bucket_stream();
    said(
        &format!("presence bucket {}", layout.bucket()),
        ensure_stream(&js, layout.bucket_config()).await?,
    );
    for machine in machines {
        let stream = layout.mail_stream(machine);
        said(
            &format!("mail stream {stream}"),
            ensure_stream(&js, layout.mail_config(machine)).await?,
        );
        let consumer = |made: Made| match made {
            Made::Created => "created",
            Made::Updated => "replaced: it was not as the relay needs it",
            Made::Unchanged => "exists",
        };
        let made = ensure_consumer(&js, &stream, Layout::mail_consumer_config()).await?;
        println!("consumer {MAIL_CONSUMER} on {stream}: {}", consumer(made));
        let name = layout.presence_consumer(machine);
        let made = ensure_consumer(&js, &bucket, layout.presence_consumer_config(machine)).await?;
        println!("consumer {name} on {bucket}: {}", consumer(made));
    }
    Ok(())
}
