//! The Bus port on Fluvio.
//!
//! Topics are Fluvio topics with computed replica assignment; growing one adds partitions
//! (Fluvio's `AddPartition`), shrinking is refused before Fluvio is asked. Records are sent with
//! a partitioner that hashes keys with [`partition_for`], so a key lands on the same partition
//! whichever engine carries it, at least once and read-committed. A fetch reads from a consumer
//! stream kept open per partition while reads follow on from each other, and reopened at the
//! asked offset otherwise.
//!
//! Committed offsets are Fluvio's own consumer offsets (`offset_consumer` ids): Fluvio stores
//! the last record consumed, the port the next one to read, so a commit of `next` records
//! `next - 1`, through a short-lived stream that reads that one record and flushes it. Fluvio
//! has no "nothing consumed" offset: committing 0 deletes the consumer's offset.
//!
//! When the cluster goes away every call fails with `Unavailable` and the client is dropped; the
//! next call connects again, no sooner than a backoff that doubles up to five seconds.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fluvio::consumer::{
    ConsumerConfigExt, ConsumerStream, OffsetManagementStrategy, Record as FluvioRecord,
};
use fluvio::metadata::topic::{AddPartition, TopicSpec, UpdateTopicAction};
use fluvio::{
    DeliverySemantic, Fluvio, FluvioAdmin, FluvioClusterConfig, FluvioError, Isolation, Offset,
    PartitionId, Partitioner, PartitionerConfig, RetryPolicy, TopicProducerConfigBuilder,
    TopicProducerPool,
};
use fluvio_future::net::{
    BoxReadConnection, BoxWriteConnection, ConnectionFd, DomainConnector, TcpDomainConnector,
};
use futures::{FutureExt, Stream, StreamExt};
use mercato_core::bus::{
    partition_for, validate_topic, Bus, BusError, BusResult, KnownPartitions, Record, TopicChange,
};
use parking_lot::Mutex;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const BACKOFF_START: Duration = Duration::from_millis(250);
/// How long a new topic or new partitions may take to be assigned to SPUs.
const PROVISION_TIMEOUT: Duration = Duration::from_secs(30);
/// A fetch below the end waits this long at most for records the stream has not delivered yet.
const CATCH_UP: Duration = Duration::from_secs(5);
/// A fetch waiting less than this on a stream that has not answered yet asks for the end.
const SHORT_WAIT: Duration = Duration::from_millis(500);
/// No linger: a record goes out at once, and records sent while a request is in flight travel
/// together in the next. (Measured here with 8 partitions: 4,294 sends/s from one sender, 206,849
/// from 400; a flush per send instead serialised every sender at about 650/s.)
const LINGER: Duration = Duration::ZERO;

/// A consumer stream, its errors already text.
type RecordStream = Pin<Box<dyn Stream<Item = Result<FluvioRecord, String>> + Send>>;

/// Where and how to connect, from `fluvio://HOST:PORT[?replication=N]` (the SC's address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FluvioOptions {
    pub endpoint: String,
    /// Replicas of each new topic's partitions.
    pub replication: u32,
}

impl FluvioOptions {
    pub fn from_url(url: &str) -> BusResult<Self> {
        let bad = |why: &str| BusError::Io(format!("bad Fluvio URL {url:?}: {why}"));
        let rest = url
            .strip_prefix("fluvio://")
            .ok_or_else(|| bad("expected fluvio://HOST:PORT (the SC)"))?;
        let (endpoint, query) = rest.split_once('?').unwrap_or((rest, ""));
        let endpoint = endpoint.trim_end_matches('/');
        if endpoint.is_empty() || endpoint.contains('/') {
            return Err(bad("expected fluvio://HOST:PORT"));
        }
        let endpoint = if endpoint.contains(':') {
            endpoint.to_owned()
        } else {
            format!("{endpoint}:9003")
        };
        let mut options = Self {
            endpoint,
            replication: 1,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("replication", n)) => {
                    options.replication = n
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad("replication is a positive number"))?;
                }
                _ => return Err(bad(&format!("unknown option {pair:?}"))),
            }
        }
        Ok(options)
    }
}

/// Connects to the SC and SPUs with `TCP_NODELAY`, and acknowledges what it reads at once.
/// The SPU writes a stream answer as a header, then the records by `sendfile`, on a socket
/// with Nagle's algorithm on: the records wait until the header is acknowledged, and a reader
/// with nothing to send delays that ACK by 40 ms (Linux). Every hop through Fluvio paid it;
/// `TCP_QUICKACK`, set again after each read since the kernel clears it, removes it.
#[derive(Clone)]
struct NoDelayConnector;

/// The read half of a connection, re-arming `TCP_QUICKACK` after each read.
struct QuickAckReader(fluvio_future::net::TcpStream);

impl futures::io::AsyncRead for QuickAckReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let read = Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(read, std::task::Poll::Ready(Ok(n)) if n > 0) {
            // Only a hint to the kernel: a failure changes nothing but latency.
            let _ = socket2::SockRef::from(&self.0).set_tcp_quickack(true);
        }
        read
    }
}

#[async_trait]
impl TcpDomainConnector for NoDelayConnector {
    async fn connect(
        &self,
        addr: &str,
    ) -> Result<(BoxWriteConnection, BoxReadConnection, ConnectionFd), std::io::Error> {
        use std::os::unix::io::AsRawFd;
        let stream = fluvio_future::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let fd = stream.as_raw_fd();
        Ok((
            Box::new(stream.clone()),
            Box::new(QuickAckReader(stream)),
            fd,
        ))
    }

    fn new_domain(&self, _domain: String) -> DomainConnector {
        Box::new(self.clone())
    }

    fn domain(&self) -> &str {
        "localhost"
    }

    fn clone_box(&self) -> DomainConnector {
        Box::new(self.clone())
    }
}

/// Keys go where [`partition_for`] says, as on every other engine.
struct KeyHash;

impl Partitioner for KeyHash {
    fn partition(
        &self,
        config: &PartitionerConfig,
        key: Option<&[u8]>,
        _value: &[u8],
    ) -> PartitionId {
        partition_for(key.unwrap_or_default(), config.partition_count)
    }
}

struct Client {
    fluvio: Arc<Fluvio>,
    admin: Arc<FluvioAdmin>,
}

/// An open stream of one partition and the offset its next record has.
struct Reader {
    next: u64,
    stream: RecordStream,
    /// Nothing has arrived on it yet: its first answer may still be on the way.
    fresh: bool,
}

type ReaderSlot = Arc<tokio::sync::Mutex<Option<Reader>>>;

pub struct FluvioBus {
    options: FluvioOptions,
    client: tokio::sync::Mutex<Option<Client>>,
    /// When connecting last failed, and how long to wait before trying again.
    backoff: Mutex<Option<(Instant, Duration)>>,
    known: KnownPartitions,
    producers: Mutex<HashMap<String, Arc<TopicProducerPool>>>,
    readers: Mutex<HashMap<(String, u32), ReaderSlot>>,
}

impl FluvioBus {
    /// Connects to the SC at `url` (`fluvio://HOST:PORT`).
    pub async fn connect(url: &str) -> BusResult<Self> {
        let bus = Self {
            options: FluvioOptions::from_url(url)?,
            client: tokio::sync::Mutex::new(None),
            backoff: Mutex::new(None),
            known: KnownPartitions::default(),
            producers: Mutex::new(HashMap::new()),
            readers: Mutex::new(HashMap::new()),
        };
        bus.clients().await?;
        Ok(bus)
    }

    async fn clients(&self) -> BusResult<(Arc<Fluvio>, Arc<FluvioAdmin>)> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok((Arc::clone(&c.fluvio), Arc::clone(&c.admin)));
        }
        if let Some((at, wait)) = *self.backoff.lock() {
            if at.elapsed() < wait {
                return Err(BusError::Unavailable(format!(
                    "Fluvio at {} is unreachable; trying again in {} ms",
                    self.options.endpoint,
                    (wait - at.elapsed()).as_millis()
                )));
            }
        }
        let config = FluvioClusterConfig::new(self.options.endpoint.clone());
        let connector: DomainConnector = Box::new(NoDelayConnector);
        let connected = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Fluvio::connect_with_connector(connector, &config),
        )
        .await
        .map_err(|_| "timed out".to_owned())
        .and_then(|r| r.map_err(|e| format!("{e:#}")));
        match connected {
            Ok(fluvio) => {
                let admin = fluvio.admin().await;
                *self.backoff.lock() = None;
                let client = Client {
                    fluvio: Arc::new(fluvio),
                    admin: Arc::new(admin),
                };
                let out = (Arc::clone(&client.fluvio), Arc::clone(&client.admin));
                *slot = Some(client);
                Ok(out)
            }
            Err(why) => {
                let mut backoff = self.backoff.lock();
                let wait = backoff
                    .map(|(_, w)| (w * 2).min(BACKOFF_MAX))
                    .unwrap_or(BACKOFF_START);
                *backoff = Some((Instant::now(), wait));
                Err(BusError::Unavailable(format!(
                    "cannot connect to Fluvio at {}: {why}",
                    self.options.endpoint
                )))
            }
        }
    }

    /// Forgets the client and everything opened through it, after the cluster went away.
    async fn reset(&self) {
        self.producers.lock().clear();
        self.readers.lock().clear();
        *self.client.lock().await = None;
    }

    /// Turns a Fluvio failure into the port's error, dropping the client when the cluster is
    /// what failed, a partition without a leader (an SPU restarting) included: the next call
    /// starts from a fresh connection and fresh metadata.
    async fn fail(&self, what: &str, e: anyhow::Error) -> BusError {
        let error = classify(what, e);
        if matches!(error, BusError::Unavailable(_)) {
            self.reset().await;
        }
        error
    }

    /// A failed send: the topic's producer is built afresh next time, whatever failed.
    async fn fail_send(&self, topic: &str, what: &str, e: anyhow::Error) -> BusError {
        self.producers.lock().remove(topic);
        self.fail(what, e).await
    }

    async fn topic_spec(&self, topic: &str) -> BusResult<Option<(u32, bool)>> {
        let (_, admin) = self.clients().await?;
        let listed = admin
            .list::<TopicSpec, String>(vec![topic.to_owned()])
            .await;
        let listed = match listed {
            Ok(l) => l,
            Err(e) => return Err(self.fail("list topics", e).await),
        };
        Ok(listed.into_iter().find(|m| m.name == topic).map(|m| {
            let provisioned =
                m.status.resolution == fluvio::metadata::topic::TopicResolution::Provisioned;
            (m.spec.replicas().partitions(), provisioned)
        }))
    }

    /// Waits until the topic has `partitions` partitions, all assigned.
    async fn await_provisioned(&self, topic: &str, partitions: u32) -> BusResult<()> {
        let deadline = Instant::now() + PROVISION_TIMEOUT;
        loop {
            if let Some((n, true)) = self.topic_spec(topic).await? {
                if n >= partitions {
                    self.known.record(topic, n);
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(BusError::Unavailable(format!(
                    "Fluvio has not provisioned {partitions} partitions of {topic} after {}s; \
                     are SPUs registered?",
                    PROVISION_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn producer(&self, topic: &str) -> BusResult<Arc<TopicProducerPool>> {
        if let Some(p) = self.producers.lock().get(topic) {
            return Ok(Arc::clone(p));
        }
        let (fluvio, _) = self.clients().await?;
        let config = TopicProducerConfigBuilder::default()
            .partitioner(Arc::new(KeyHash))
            .linger(LINGER)
            .isolation(Isolation::ReadCommitted)
            .delivery_semantic(DeliverySemantic::AtLeastOnce(RetryPolicy::default()))
            .build()
            .map_err(|e| BusError::Io(format!("Fluvio producer config: {e}")))?;
        let producer = match fluvio.topic_producer_with_config(topic, config).await {
            Ok(p) => Arc::new(p),
            Err(e) => return Err(self.fail("create a producer", e).await),
        };
        self.producers
            .lock()
            .insert(topic.to_owned(), Arc::clone(&producer));
        Ok(producer)
    }

    async fn stream(&self, config: ConsumerConfigExt) -> BusResult<RecordStream> {
        let (fluvio, _) = self.clients().await?;
        match fluvio.consumer_with_config(config).await {
            Ok(s) => Ok(Box::pin(
                s.map(|item| item.map_err(|code| code.to_string())),
            )),
            Err(e) => Err(self.fail("open a consumer stream", e).await),
        }
    }

    fn reader_slot(&self, topic: &str, partition: u32) -> ReaderSlot {
        Arc::clone(
            self.readers
                .lock()
                .entry((topic.to_owned(), partition))
                .or_default(),
        )
    }

    async fn open_reader(&self, topic: &str, partition: u32, offset: u64) -> BusResult<Reader> {
        let start = absolute(offset)?;
        let config = ConsumerConfigExt::builder()
            .topic(topic)
            .partition(partition)
            .offset_start(start)
            .isolation(Isolation::ReadCommitted)
            .build()
            .map_err(|e| BusError::Io(format!("Fluvio consumer config: {e}")))?;
        Ok(Reader {
            next: offset,
            stream: self.stream(config).await?,
            fresh: true,
        })
    }
}

/// The port's offsets are `u64`, Fluvio's `i64`.
fn absolute(offset: u64) -> BusResult<Offset> {
    let offset = i64::try_from(offset)
        .map_err(|_| BusError::Io(format!("offset {offset} is beyond Fluvio's range")))?;
    Offset::absolute(offset).map_err(|e| BusError::Io(format!("offset {offset}: {e}")))
}

fn classify(what: &str, e: anyhow::Error) -> BusError {
    let unavailable = match e.downcast_ref::<FluvioError>() {
        Some(
            FluvioError::Socket(_)
            | FluvioError::Io(_)
            | FluvioError::SPUNotFound(_)
            | FluvioError::PartitionNotFound(..)
            // A producer fails when its SPU is gone or no longer leads the partition.
            | FluvioError::Producer(_),
        ) => true,
        Some(FluvioError::TopicNotFound(t)) => return BusError::UnknownTopic(t.clone()),
        Some(_) => false,
        // Errors Fluvio passes through as text are mostly lost connections.
        None => true,
    };
    if unavailable {
        BusError::Unavailable(format!("Fluvio: cannot {what}: {e:#}"))
    } else {
        BusError::Io(format!("Fluvio: cannot {what}: {e:#}"))
    }
}

fn to_record(partition: u32, r: &FluvioRecord) -> Record {
    Record {
        partition,
        offset: u64::try_from(r.offset()).unwrap_or_default(),
        timestamp_ms: u64::try_from(r.timestamp()).unwrap_or_default(),
        key: r.key().map(<[u8]>::to_vec).unwrap_or_default(),
        value: r.value().to_vec(),
    }
}

#[async_trait]
impl Bus for FluvioBus {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> BusResult<TopicChange> {
        validate_topic(topic, partitions)?;
        let change = match self.topic_spec(topic).await? {
            Some((current, _)) if current == partitions => TopicChange::Unchanged,
            Some((current, _)) if current > partitions => {
                return Err(BusError::CannotShrink {
                    topic: topic.to_owned(),
                    current,
                    requested: partitions,
                })
            }
            Some((current, _)) => {
                let (_, admin) = self.clients().await?;
                let action = UpdateTopicAction::AddPartition(AddPartition {
                    count: partitions - current,
                });
                if let Err(e) = admin.update::<TopicSpec>(topic.to_owned(), action).await {
                    return Err(self.fail("add partitions", e).await);
                }
                self.producers.lock().remove(topic);
                TopicChange::Grown { from: current }
            }
            None => {
                let (_, admin) = self.clients().await?;
                let spec = TopicSpec::new_computed(partitions, self.options.replication, None);
                match admin.create(topic.to_owned(), false, spec).await {
                    Ok(()) => TopicChange::Created,
                    // Another process created it first: "already exists" is success, if it
                    // has the partitions asked for.
                    Err(e) if format!("{e:#}").to_lowercase().contains("exist") => {
                        match self.topic_spec(topic).await? {
                            Some((current, _)) if current >= partitions => {}
                            _ => return Err(self.fail("create the topic", e).await),
                        }
                        TopicChange::Unchanged
                    }
                    Err(e) => return Err(self.fail("create the topic", e).await),
                }
            }
        };
        self.await_provisioned(topic, partitions).await?;
        Ok(change)
    }

    async fn partitions(&self, topic: &str) -> BusResult<u32> {
        let (n, _) = self
            .topic_spec(topic)
            .await?
            .ok_or_else(|| BusError::UnknownTopic(topic.to_owned()))?;
        self.known.record(topic, n);
        Ok(n)
    }

    async fn delete_topic(&self, topic: &str) -> BusResult<bool> {
        if self.topic_spec(topic).await?.is_none() {
            return Ok(false);
        }
        let (fluvio, admin) = self.clients().await?;
        // Offsets first: Fluvio keeps consumer offsets apart from the topic, and a topic
        // created again under the name must not resume from them.
        let offsets = match fluvio.consumer_offsets().await {
            Ok(o) => o,
            Err(e) => return Err(self.fail("read consumer offsets", e).await),
        };
        for o in offsets.into_iter().filter(|o| o.topic == topic) {
            let replica = (topic.to_owned(), o.partition);
            if let Err(e) = fluvio
                .delete_consumer_offset(o.consumer_id.clone(), replica)
                .await
            {
                if !format!("{e:#}").to_lowercase().contains("not found") {
                    return Err(self.fail("delete a consumer offset", e).await);
                }
            }
        }
        match admin.delete::<TopicSpec>(topic.to_owned()).await {
            Ok(()) => {}
            Err(e) if format!("{e:#}").to_lowercase().contains("not found") => return Ok(false),
            Err(e) => return Err(self.fail("delete the topic", e).await),
        }
        self.producers.lock().remove(topic);
        self.readers.lock().retain(|(t, _), _| t != topic);
        self.known.forget(topic);
        // Deletion is asynchronous on the SC: wait until the topic is gone, so that a create
        // right after does not meet the old one.
        let deadline = Instant::now() + PROVISION_TIMEOUT;
        while self.topic_spec(topic).await?.is_some() {
            if Instant::now() >= deadline {
                return Err(BusError::Unavailable(format!(
                    "topic {topic} is still being deleted after {PROVISION_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(true)
    }

    async fn send_batch(
        &self,
        topic: &str,
        records: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> BusResult<Vec<(u32, u64)>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        if !self.known.knows(topic) {
            self.partitions(topic).await?;
        }
        let producer = self.producer(topic).await?;
        let mut pending = Vec::with_capacity(records.len());
        for (key, value) in records {
            match producer.send(key, value).await {
                Ok(output) => pending.push(output),
                Err(e) => return Err(self.fail_send(topic, "send", e).await),
            }
        }
        let mut placed = Vec::with_capacity(pending.len());
        for output in pending {
            match output.wait().await {
                Ok(meta) => placed.push((
                    meta.partition_id(),
                    u64::try_from(meta.offset()).unwrap_or_default(),
                )),
                Err(e) => return Err(self.fail_send(topic, "confirm a send", e.into()).await),
            }
        }
        Ok(placed)
    }

    async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max: usize,
        wait: Duration,
    ) -> BusResult<Vec<Record>> {
        self.known.check(self, topic, partition).await?;
        let slot = self.reader_slot(topic, partition);
        let mut guard = slot.lock().await;
        let reader = match guard.as_mut() {
            Some(reader) if reader.next == offset => reader,
            _ => guard.insert(self.open_reader(topic, partition, offset).await?),
        };
        let first = match tokio::time::timeout(wait, reader.stream.next()).await {
            Ok(item) => item,
            // A fresh stream's records are a round trip away: a fetch below the end waits for
            // them even when it asked (nearly) not to wait for new ones.
            Err(_)
                if reader.fresh
                    && wait < SHORT_WAIT
                    && self.end_offset(topic, partition).await? > offset =>
            {
                tokio::time::timeout(CATCH_UP, reader.stream.next())
                    .await
                    .ok()
                    .flatten()
            }
            Err(_) => return Ok(Vec::new()),
        };
        let mut records = Vec::new();
        match first {
            Some(Ok(r)) => records.push(to_record(partition, &r)),
            Some(Err(code)) => {
                *guard = None;
                return Err(BusError::Unavailable(format!(
                    "Fluvio stream of {topic}/{partition}: {code}"
                )));
            }
            None => {
                *guard = None;
                return Ok(Vec::new());
            }
        }
        // Then whatever the stream already holds, without waiting.
        while records.len() < max.max(1) {
            match reader.stream.next().now_or_never() {
                Some(Some(Ok(r))) => records.push(to_record(partition, &r)),
                Some(Some(Err(_))) | Some(None) => {
                    // Keep what was read; the next fetch opens a new stream.
                    let next = records.last().map_or(offset, |r| r.offset + 1);
                    *guard = None;
                    tracing::debug!(topic, partition, next, "Fluvio stream ended; reopening");
                    return Ok(records);
                }
                None => break,
            }
        }
        if let Some(last) = records.last() {
            reader.next = last.offset + 1;
            reader.fresh = false;
        }
        Ok(records)
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> BusResult<u64> {
        self.known.check(self, topic, partition).await?;
        // The last record, read by a stream that stops at the end it found: its offset + 1 is
        // the end. An empty partition yields nothing.
        let config = ConsumerConfigExt::builder()
            .topic(topic)
            .partition(partition)
            .offset_start(Offset::from_end(1))
            .disable_continuous(true)
            .isolation(Isolation::ReadCommitted)
            .build()
            .map_err(|e| BusError::Io(format!("Fluvio consumer config: {e}")))?;
        let mut stream = self.stream(config).await?;
        let mut end = 0;
        while let Some(item) = tokio::time::timeout(CATCH_UP, stream.next())
            .await
            .map_err(|_| {
                BusError::Unavailable(format!("Fluvio: no end offset for {topic}/{partition}"))
            })?
        {
            let record = item.map_err(|code| {
                BusError::Unavailable(format!("Fluvio stream of {topic}/{partition}: {code}"))
            })?;
            end = end.max(u64::try_from(record.offset()).unwrap_or_default() + 1);
        }
        Ok(end)
    }

    async fn committed(
        &self,
        consumer: &str,
        topic: &str,
        partition: u32,
    ) -> BusResult<Option<u64>> {
        let (fluvio, _) = self.clients().await?;
        let offsets = match fluvio.consumer_offsets().await {
            Ok(o) => o,
            Err(e) => return Err(self.fail("read consumer offsets", e).await),
        };
        Ok(offsets
            .into_iter()
            .find(|o| o.consumer_id == consumer && o.topic == topic && o.partition == partition)
            .and_then(|o| u64::try_from(o.offset).ok())
            .map(|last_consumed| last_consumed + 1))
    }

    async fn commit(
        &self,
        consumer: &str,
        topic: &str,
        partition: u32,
        next: u64,
    ) -> BusResult<()> {
        self.known.check(self, topic, partition).await?;
        let Some(last_consumed) = next.checked_sub(1) else {
            let (fluvio, _) = self.clients().await?;
            let replica = (topic.to_owned(), partition);
            return match fluvio.delete_consumer_offset(consumer, replica).await {
                Ok(()) => Ok(()),
                // Nothing to delete is what was asked for.
                Err(e) if format!("{e:#}").to_lowercase().contains("not found") => Ok(()),
                Err(e) => Err(self.fail("reset a consumer offset", e).await),
            };
        };
        let config = ConsumerConfigExt::builder()
            .topic(topic)
            .partition(partition)
            .offset_consumer(consumer.to_owned())
            .offset_strategy(OffsetManagementStrategy::Manual)
            .offset_start(absolute(last_consumed)?)
            .disable_continuous(true)
            .build()
            .map_err(|e| BusError::Io(format!("Fluvio consumer config: {e}")))?;
        let (fluvio, _) = self.clients().await?;
        let mut stream = match fluvio.consumer_with_config(config).await {
            Ok(s) => s,
            Err(e) => return Err(self.fail("open a committing stream", e).await),
        };
        let record = tokio::time::timeout(CATCH_UP, stream.next())
            .await
            .map_err(|_| {
                BusError::Unavailable(format!("Fluvio: commit on {topic}/{partition} timed out"))
            })?;
        match record {
            Some(Ok(r)) if u64::try_from(r.offset()).ok() == Some(last_consumed) => {}
            Some(Ok(r)) => {
                return Err(BusError::Io(format!(
                    "Fluvio: committing {next} on {topic}/{partition} read offset {} instead of {last_consumed}",
                    r.offset()
                )))
            }
            Some(Err(code)) => {
                return Err(BusError::Unavailable(format!(
                    "Fluvio stream of {topic}/{partition}: {code}"
                )))
            }
            None => {
                return Err(BusError::Io(format!(
                    "cannot commit {next} on {topic}/{partition}: past its end"
                )))
            }
        }
        stream
            .offset_commit()
            .await
            .map_err(|code| BusError::Unavailable(format!("Fluvio offset commit: {code}")))?;
        stream
            .offset_flush()
            .await
            .map_err(|code| BusError::Unavailable(format!("Fluvio offset flush: {code}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_defaults_and_refuse_nonsense() {
        let o = FluvioOptions::from_url("fluvio://sc.fluvio:9003").unwrap();
        assert_eq!(o.endpoint, "sc.fluvio:9003");
        assert_eq!(o.replication, 1);
        let o = FluvioOptions::from_url("fluvio://sc?replication=3").unwrap();
        assert_eq!(o.endpoint, "sc:9003");
        assert_eq!(o.replication, 3);
        for bad in [
            "redis://x",
            "fluvio://",
            "fluvio://h:9003/path",
            "fluvio://h?replication=0",
            "fluvio://h?tls=on",
        ] {
            assert!(FluvioOptions::from_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_land_where_every_engine_puts_them() {
        let config = PartitionerConfig {
            partition_count: 7,
            available_partitions: (0..7).collect(),
        };
        for key in [&b"seat-12"[..], b"order-1", b""] {
            assert_eq!(
                KeyHash.partition(&config, Some(key), b"v"),
                partition_for(key, 7)
            );
        }
    }

    #[test]
    fn offsets_beyond_fluvio_range_are_refused() {
        assert!(absolute(5).is_ok());
        assert!(absolute(u64::MAX).is_err());
    }
}
