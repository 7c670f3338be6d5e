//! baton-nats: the [`Bus`] on NATS JetStream, for many `serve` instances on many hosts.
//!
//! A topic is a stream (`BATON_<topic>`, subject `baton.<topic>`); a consumer group is a
//! durable pull consumer shared by every `serve` instance, with explicit acks, the group's
//! ack wait, and unlimited redelivery (the consumer dead-letters past `max_deliveries`, so
//! nothing is dropped silently by the server). Publishes carry `Nats-Msg-Id`: a replay
//! inside the stream's duplicate window is dropped by the server, and baton's own
//! idempotence covers replays outside it.
//!
//! The traits are synchronous; the adapter owns a small tokio runtime and blocks on it.
//! Invariant: JetStream is never the source of truth (NATS 2.9 acks a publish before it is
//! fsynced); the outbox in the state store is, and reconcile repairs what the bus loses.
#![deny(missing_docs)]

use async_nats::jetstream::{self, consumer::PullConsumer, message::PublishMessage};
use baton_ports::{Bus, Delivery, Error, GroupSettings, Published, Result};
use futures_util::StreamExt;
use jiff::Timestamp;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one bus operation may take before it fails as retryable.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// The stream's duplicate window: replays of a message id inside it are dropped.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The JetStream bus.
pub struct NatsBus {
    runtime: tokio::runtime::Runtime,
    js: jetstream::Context,
    url: String,
    streams: Mutex<HashSet<String>>,
    consumers: Mutex<HashMap<(String, String), PullConsumer>>,
    inflight: Mutex<HashMap<(String, String, i64), jetstream::Message>>,
}

/// A message as stored in a stream: sequence, message id, payload, publish time.
type StoredMessage = (u64, String, Vec<u8>, Timestamp);

fn stream_name(topic: &str) -> String {
    format!("BATON_{}", topic.replace(['-', '.'], "_"))
}

fn subject(topic: &str) -> String {
    format!("baton.{topic}")
}

fn retryable(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Retryable(format!("NATS {what}: {e}"))
}

impl NatsBus {
    /// Connects; an unreachable server fails at once with one line.
    pub fn connect(url: &str) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .thread_name("baton-nats")
            .build()
            .map_err(|e| Error::Permanent(format!("cannot start the NATS client runtime: {e}")))?;
        let client = runtime
            .block_on(async {
                tokio::time::timeout(
                    OP_TIMEOUT,
                    async_nats::ConnectOptions::new()
                        .connection_timeout(OP_TIMEOUT)
                        .connect(url),
                )
                .await
            })
            .map_err(|_| {
                Error::Retryable(format!(
                    "cannot connect to NATS at {url}: timed out after {OP_TIMEOUT:?}"
                ))
            })?
            .map_err(|e| Error::Retryable(format!("cannot connect to NATS at {url}: {e}")))?;
        // The JetStream context spawns on the runtime: build it inside.
        let js = {
            let _inside = runtime.enter();
            jetstream::new(client)
        };
        Ok(Self {
            js,
            runtime,
            url: url.to_owned(),
            streams: Mutex::new(HashSet::new()),
            consumers: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
        })
    }

    /// Deletes the streams of these topics (and their consumers): the demo's fresh start.
    pub fn delete_topics(&self, topics: &[String]) -> Result<()> {
        for topic in topics {
            self.block("delete stream", async {
                // A stream that does not exist is already deleted.
                let _ = self.js.delete_stream(stream_name(topic)).await;
                Ok(())
            })?;
        }
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.consumers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        Ok(())
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn block<T>(&self, what: &str, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        self.runtime
            .block_on(async { tokio::time::timeout(OP_TIMEOUT, f).await })
            .map_err(|_| Error::Retryable(format!("NATS {what}: timed out after {OP_TIMEOUT:?}")))?
    }

    fn ensure_stream(&self, topic: &str) -> Result<()> {
        if self
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(topic)
        {
            return Ok(());
        }
        let config = jetstream::stream::Config {
            name: stream_name(topic),
            subjects: vec![subject(topic)],
            duplicate_window: DUPLICATE_WINDOW,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        };
        self.block("create stream", async {
            self.js
                .get_or_create_stream(config)
                .await
                .map(|_| ())
                .map_err(|e| retryable("create stream", e))
        })?;
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(topic.to_owned());
        Ok(())
    }

    fn consumer(&self, topic: &str, group: &str, settings: GroupSettings) -> Result<PullConsumer> {
        let key = (topic.to_owned(), group.to_owned());
        if let Some(c) = self
            .consumers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(c.clone());
        }
        self.ensure_stream(topic)?;
        let ack_wait =
            std::time::Duration::try_from(settings.ack_wait).unwrap_or(Duration::from_secs(30));
        let consumer: PullConsumer = self.block("create consumer", async {
            let stream = self
                .js
                .get_stream(stream_name(topic))
                .await
                .map_err(|e| retryable("get stream", e))?;
            stream
                .get_or_create_consumer(
                    group,
                    jetstream::consumer::pull::Config {
                        durable_name: Some(group.to_owned()),
                        ack_policy: jetstream::consumer::AckPolicy::Explicit,
                        ack_wait,
                        max_deliver: -1,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| retryable("create consumer", e))
        })?;
        self.consumers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, consumer.clone());
        Ok(consumer)
    }

    fn stream_messages(&self, topic: &str) -> Result<Vec<StoredMessage>> {
        self.ensure_stream(topic)?;
        self.block("read stream", async {
            let mut stream = self
                .js
                .get_stream(stream_name(topic))
                .await
                .map_err(|e| retryable("get stream", e))?;
            let state = stream
                .info()
                .await
                .map_err(|e| retryable("stream info", e))?
                .state
                .clone();
            let mut out = Vec::new();
            if state.messages == 0 {
                return Ok(out);
            }
            for seq in state.first_sequence..=state.last_sequence {
                // A deleted sequence has no message; skip it.
                if let Ok(m) = stream.get_raw_message(seq).await {
                    let id = m
                        .headers
                        .get("Nats-Msg-Id")
                        .map(|v| v.as_str().to_owned())
                        .unwrap_or_default();
                    let at = Timestamp::from_second(m.time.unix_timestamp())
                        .unwrap_or(Timestamp::UNIX_EPOCH);
                    out.push((seq, id, m.payload.to_vec(), at));
                }
            }
            Ok(out)
        })
    }
}

impl Bus for NatsBus {
    fn publish(&self, topic: &str, message_id: &str, payload: &[u8]) -> Result<Published> {
        self.ensure_stream(topic)?;
        let ack = self.block("publish", async {
            let message = PublishMessage::build()
                .message_id(message_id)
                .payload(payload.to_vec().into());
            let future = self
                .js
                .send_publish(subject(topic), message)
                .await
                .map_err(|e| retryable("publish", e))?;
            future.await.map_err(|e| retryable("publish ack", e))
        })?;
        Ok(if ack.duplicate {
            Published::Duplicate
        } else {
            Published::New
        })
    }

    fn fetch(
        &self,
        topic: &str,
        group: &str,
        max: usize,
        settings: GroupSettings,
    ) -> Result<Vec<Delivery>> {
        let consumer = self.consumer(topic, group, settings)?;
        let messages: Vec<jetstream::Message> = self.block("fetch", async {
            let mut batch = consumer.fetch().max_messages(max.max(1)).messages().await.map_err(|e| retryable("fetch", e))?;
            let mut out = Vec::new();
            while let Some(m) = batch.next().await {
                match m {
                    Ok(m) => out.push(m),
                    Err(e) => tracing::warn!(error = %e, topic, group, "a fetched message could not be read; it will be redelivered"),
                }
            }
            Ok(out)
        })?;
        let mut out = Vec::with_capacity(messages.len());
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        for m in messages {
            let Ok(info) = m.info() else { continue };
            let (seq, attempt) = (info.stream_sequence as i64, info.delivered.max(1) as u32);
            let id = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            out.push(Delivery {
                seq,
                message_id: id,
                payload: m.payload.to_vec(),
                attempt,
            });
            inflight.insert((topic.to_owned(), group.to_owned(), seq), m);
        }
        out.sort_by_key(|d| d.seq);
        Ok(out)
    }

    fn ack(&self, topic: &str, group: &str, seqs: &[i64]) -> Result<()> {
        let messages: Vec<jetstream::Message> = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            seqs.iter()
                .filter_map(|s| inflight.remove(&(topic.to_owned(), group.to_owned(), *s)))
                .collect()
        };
        self.block("ack", async {
            // double_ack waits for the server to confirm, so `pending` agrees right after;
            // a batch's acks are in flight together, not one round trip each.
            let acks =
                futures_util::future::join_all(messages.iter().map(|m| m.double_ack())).await;
            for ack in acks {
                ack.map_err(|e| retryable("ack", e))?;
            }
            Ok(())
        })
    }

    fn pending(&self, topic: &str, group: &str) -> Result<u64> {
        self.ensure_stream(topic)?;
        self.block("consumer info", async {
            let mut stream = self
                .js
                .get_stream(stream_name(topic))
                .await
                .map_err(|e| retryable("get stream", e))?;
            // A group that never fetched has every message of the topic pending; asking
            // must not create its consumer (that would fix its ack wait before its first fetch).
            match stream
                .get_consumer::<jetstream::consumer::pull::Config>(group)
                .await
            {
                Ok(mut consumer) => {
                    let info = consumer
                        .info()
                        .await
                        .map_err(|e| retryable("consumer info", e))?;
                    Ok(info.num_pending + info.num_ack_pending as u64)
                }
                Err(_) => Ok(stream
                    .info()
                    .await
                    .map_err(|e| retryable("stream info", e))?
                    .state
                    .messages),
            }
        })
    }

    fn published_since(&self, topic: &str, since: Timestamp) -> Result<u64> {
        self.ensure_stream(topic)?;
        let start_time = time::OffsetDateTime::from_unix_timestamp_nanos(since.as_nanosecond())
            .map_err(|e| Error::Permanent(format!("NATS published_since: {e}")))?;
        // One round trip, not one per message: a consumer starting at `since` is told at its
        // creation how many messages lie ahead of it; it is deleted at once (and would expire
        // by itself).
        self.block("count messages since", async {
            let stream = self
                .js
                .get_stream(stream_name(topic))
                .await
                .map_err(|e| retryable("get stream", e))?;
            let consumer: PullConsumer = stream
                .create_consumer(jetstream::consumer::pull::Config {
                    deliver_policy: jetstream::consumer::DeliverPolicy::ByStartTime { start_time },
                    ack_policy: jetstream::consumer::AckPolicy::None,
                    inactive_threshold: Duration::from_secs(30),
                    ..Default::default()
                })
                .await
                .map_err(|e| retryable("create counting consumer", e))?;
            let info = consumer.cached_info();
            let pending = info.num_pending;
            let _ = stream.delete_consumer(&info.name).await;
            Ok(pending)
        })
    }

    fn messages(&self, topic: &str) -> Result<Vec<Delivery>> {
        Ok(self
            .stream_messages(topic)?
            .into_iter()
            .map(|(seq, message_id, payload, _)| Delivery {
                seq: seq as i64,
                message_id,
                payload,
                attempt: 0,
            })
            .collect())
    }
}

/// The JetStream bus, connected on first use.
///
/// Most commands never touch the bus: `run` writes its data and its completion's outbox row
/// in the state store, and `status`, `reconcile` and `drift` read the store. Opening the bus
/// lazily means a NATS restart cannot fail them; the relay in `serve` publishes later. A
/// failed connect is not remembered: the next operation tries again (the error is
/// retryable, so a `serve` round is retried), and once connected the client reconnects by
/// itself.
pub struct LazyNatsBus {
    url: String,
    bus: Mutex<Option<Arc<NatsBus>>>,
}

impl LazyNatsBus {
    /// A bus for `url`, not connected yet.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            bus: Mutex::new(None),
        }
    }

    /// Whether it has connected (tests: a command that needs no bus never does).
    pub fn connected(&self) -> bool {
        self.bus.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// The connected bus, connecting now if it has not yet.
    pub fn get(&self) -> Result<Arc<NatsBus>> {
        let mut bus = self.bus.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = bus.as_ref() {
            return Ok(b.clone());
        }
        let connected = Arc::new(NatsBus::connect(&self.url)?);
        *bus = Some(connected.clone());
        Ok(connected)
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// See [`NatsBus::delete_topics`].
    pub fn delete_topics(&self, topics: &[String]) -> Result<()> {
        self.get()?.delete_topics(topics)
    }
}

impl Bus for LazyNatsBus {
    fn publish(&self, topic: &str, message_id: &str, payload: &[u8]) -> Result<Published> {
        self.get()?.publish(topic, message_id, payload)
    }
    fn fetch(
        &self,
        topic: &str,
        group: &str,
        max: usize,
        settings: GroupSettings,
    ) -> Result<Vec<Delivery>> {
        self.get()?.fetch(topic, group, max, settings)
    }
    fn ack(&self, topic: &str, group: &str, seqs: &[i64]) -> Result<()> {
        self.get()?.ack(topic, group, seqs)
    }
    fn pending(&self, topic: &str, group: &str) -> Result<u64> {
        self.get()?.pending(topic, group)
    }
    fn published_since(&self, topic: &str, since: Timestamp) -> Result<u64> {
        self.get()?.published_since(topic, since)
    }
    fn messages(&self, topic: &str) -> Result<Vec<Delivery>> {
        self.get()?.messages(topic)
    }
}
