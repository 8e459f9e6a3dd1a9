//! The consume -> decide -> write -> emit -> commit loop every worker shares.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mercato_core::bus::{owned_partitions, Bus, BusError, KeyedRecords, Record};
use mercato_core::codec;
use mercato_core::domain::commands::{CommandResult, Outcome};
pub use mercato_core::domain::dead_letters::DeadLetter;
use mercato_core::names::topics;
use mercato_core::repo::RepoError;
use mercato_core::store::report;
use mercato_core::Ports;
use tokio::sync::{watch, Mutex, OwnedMutexGuard};

/// A record a handler wants emitted once its batch is decided.
#[derive(Debug, Clone)]
pub struct Emit {
    pub topic: Cow<'static, str>,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

impl Emit {
    pub fn new<T: codec::Record>(topic: &'static str, key: impl Into<Vec<u8>>, value: &T) -> Self {
        Self {
            topic: Cow::Borrowed(topic),
            key: key.into(),
            value: codec::encode(value),
        }
    }

    /// To a topic named at run time (a warehouse's own topic).
    pub fn to<T: codec::Record>(topic: String, key: impl Into<Vec<u8>>, value: &T) -> Self {
        Self {
            topic: Cow::Owned(topic),
            key: key.into(),
            value: codec::encode(value),
        }
    }

    /// A record no handler can decode goes to the dead-letter topic with its reason and origin.
    pub fn dead_letter(origin: &Record, topic: &str, reason: &str) -> Self {
        let letter = DeadLetter {
            topic: topic.to_owned(),
            partition: origin.partition,
            offset: origin.offset,
            reason: reason.to_owned(),
            key: origin.key.clone(),
            value: origin.value.clone(),
        };
        Self::new(topics::DEAD_LETTERS, origin.key.clone(), &letter)
    }
}

/// The failed result that answers command `command_id` when it is set aside as poison.
pub fn poisoned_result(command_id: &str, error: &RepoError) -> Emit {
    let result = CommandResult {
        command_id: command_id.to_owned(),
        outcome: Outcome::poisoned(error.label()),
    };
    Emit::new(topics::RESULTS, command_id.to_owned(), &result)
}

#[async_trait]
pub trait BatchHandler: Send + Sync + 'static {
    /// Decides a batch and writes its effects. An error means nothing may be committed: the
    /// same batch is offered again after a backoff, so handlers must be idempotent.
    async fn handle(&self, topic: &str, records: &[Record]) -> Result<Vec<Emit>, RepoError>;

    /// What answers a record given up on as poison, besides its dead letter: a failed result
    /// for the caller waiting on a command. Nothing by default.
    fn poisoned(&self, _record: &Record, _error: &RepoError) -> Vec<Emit> {
        Vec::new()
    }
}

/// Decides a batch with one task per key: records with the same key are decided one after
/// another, in offset order; different keys concurrently, so their store writes share group
/// commits. Emits come back in the batch's key order. Any error fails the whole batch.
pub async fn per_key<'a, F, Fut>(records: &'a [Record], decide: F) -> Result<Vec<Emit>, RepoError>
where
    F: Fn(&'a Record) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Emit>, RepoError>>,
{
    let mut groups: Vec<Vec<&'a Record>> = Vec::new();
    let mut index: std::collections::HashMap<&[u8], usize> = std::collections::HashMap::new();
    for r in records {
        let i = *index.entry(r.key.as_slice()).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[i].push(r);
    }
    let decide = &decide;
    let decided = futures::future::join_all(groups.into_iter().map(|group| async move {
        let mut emits = Vec::new();
        for r in group {
            emits.extend(decide(r).await?);
        }
        Ok::<_, RepoError>(emits)
    }))
    .await;
    let mut emits = Vec::new();
    for d in decided {
        emits.extend(d?);
    }
    Ok(emits)
}

#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub role: &'static str,
    pub topic: &'static str,
    pub replica: u32,
    pub replicas: u32,
    pub max_batch: usize,
    /// How many times one record may fail in a way retrying cannot fix (an unreadable row, an
    /// event spec that no longer parses) before it goes to the dead letters.
    pub poison_attempts: u32,
}

/// The default of `WorkerSpec::poison_attempts`.
pub const DEFAULT_POISON_ATTEMPTS: u32 = 3;

const MAX_BACKOFF: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// Runs the worker over every partition this replica owns until `shutdown` turns true.
pub async fn run_worker(
    ports: Ports,
    spec: WorkerSpec,
    handler: Arc<dyn BatchHandler>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), BusError> {
    let partitions = ports.bus.partitions(spec.topic).await?;
    let owned = owned_partitions(partitions, spec.replica, spec.replicas);
    tracing::info!(
        role = spec.role,
        topic = spec.topic,
        ?owned,
        "worker starting"
    );
    let mut loops = Vec::new();
    for p in owned {
        let bus = Arc::clone(&ports.bus);
        let handler = Arc::clone(&handler);
        let spec = spec.clone();
        let shutdown = shutdown.clone();
        loops.push(tokio::spawn(async move {
            partition_loop(bus, spec, p, handler, shutdown).await
        }));
    }
    for l in loops {
        if let Ok(Err(e)) = l.await {
            return Err(e);
        }
    }
    Ok(())
}

async fn partition_loop(
    bus: Arc<dyn Bus>,
    spec: WorkerSpec,
    partition: u32,
    handler: Arc<dyn BatchHandler>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), BusError> {
    let consumer = spec.role;
    let mut backoff = FIRST_BACKOFF;
    let mut position = loop {
        match bus.committed(consumer, spec.topic, partition).await {
            Ok(p) => break p.unwrap_or(0),
            Err(e) => {
                tracing::warn!(role = spec.role, partition, error = %e, "reading committed offset failed; retrying");
                if sleep_or_shutdown(&mut shutdown, &mut backoff).await {
                    return Ok(());
                }
            }
        }
    };
    tracing::debug!(role = spec.role, partition, position, "resuming");
    let finishing = Arc::new(Mutex::new(()));
    loop {
        if *shutdown.borrow() {
            break;
        }
        let fetched = tokio::select! {
            r = bus.fetch(spec.topic, partition, position, spec.max_batch, Duration::from_secs(1)) => r,
            _ = shutdown.changed() => break,
        };
        let records = match fetched {
            Ok(r) if r.is_empty() => continue,
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(role = spec.role, partition, error = %e, "fetch failed; backing off");
                if sleep_or_shutdown(&mut shutdown, &mut backoff).await {
                    break;
                }
                continue;
            }
        };
        let next = records.last().map_or(position, |r| r.offset + 1);
        let emits = match handler.handle(spec.topic, &records).await {
            Ok(emits) => emits,
            Err(e) if e.is_permanent() => {
                tracing::warn!(role = spec.role, partition, error = %report(&e), reason = e.label(), "batch failed in a way a retry cannot fix; deciding its records one by one");
                match isolate(&*handler, &spec, partition, &records, &mut shutdown).await {
                    Some(emits) => emits,
                    None => break,
                }
            }
            Err(e) => {
                tracing::warn!(role = spec.role, partition, error = %report(&e), reason = e.label(), "batch failed; it will be retried");
                if sleep_or_shutdown(&mut shutdown, &mut backoff).await {
                    break;
                }
                continue;
            }
        };
        // Effects are written. Emitting and committing run behind the next batch's decisions
        // (a two-stage pipeline), in batch order: this waits for the previous batch's finish.
        let turn = Arc::clone(&finishing).lock_owned().await;
        let finish = Finish {
            bus: Arc::clone(&bus),
            role: spec.role,
            topic: spec.topic,
            partition,
            next,
        };
        tokio::spawn(finish.run(emits, turn, shutdown.clone()));
        position = next;
        backoff = FIRST_BACKOFF;
    }
    // Let the last batch finish (or give up at shutdown) before the loop ends.
    let _last = finishing.lock().await;
    Ok(())
}

/// Decides a batch that failed permanently one record at a time, in offset order (so each
/// key's order holds), to find the poison in it: a record that fails permanently
/// `poison_attempts` times goes to the dead letters with its error, its caller is answered,
/// and the rest of the batch is done. A transient failure is waited out, as for a batch.
/// `None` at shutdown.
async fn isolate(
    handler: &dyn BatchHandler,
    spec: &WorkerSpec,
    partition: u32,
    records: &[Record],
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Vec<Emit>> {
    let mut emits = Vec::new();
    for record in records {
        let mut failures = 0;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let error = match handler
                .handle(spec.topic, std::slice::from_ref(record))
                .await
            {
                Ok(decided) => {
                    emits.extend(decided);
                    break;
                }
                Err(e) => e,
            };
            let reason = report(&error);
            if error.is_permanent() {
                failures += 1;
                if failures >= spec.poison_attempts.max(1) {
                    tracing::error!(role = spec.role, partition, offset = record.offset, error = %reason, attempts = failures, "record set aside as poison: sent to the dead letters");
                    emits.push(Emit::dead_letter(record, spec.topic, &reason));
                    emits.extend(handler.poisoned(record, &error));
                    break;
                }
            }
            tracing::warn!(role = spec.role, partition, offset = record.offset, error = %reason, "record failed; retrying it alone");
            if sleep_or_shutdown(shutdown, &mut backoff).await {
                return None;
            }
        }
    }
    Some(emits)
}

/// Emits a decided batch's records, then commits its offset; retried until done or shutdown.
/// A crash before the commit replays the batch, which handlers answer idempotently.
struct Finish {
    bus: Arc<dyn Bus>,
    role: &'static str,
    topic: &'static str,
    partition: u32,
    next: u64,
}

impl Finish {
    async fn run(
        self,
        emits: Vec<Emit>,
        _turn: OwnedMutexGuard<()>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut backoff = FIRST_BACKOFF;
        while let Err(e) = emit_all(&*self.bus, &emits).await {
            tracing::warn!(role = self.role, partition = self.partition, error = %e, "emitting results failed; retrying");
            if sleep_or_shutdown(&mut shutdown, &mut backoff).await {
                return;
            }
        }
        while let Err(e) = self
            .bus
            .commit(self.role, self.topic, self.partition, self.next)
            .await
        {
            tracing::warn!(role = self.role, partition = self.partition, error = %e, "commit failed; retrying");
            if sleep_or_shutdown(&mut shutdown, &mut backoff).await {
                return;
            }
        }
    }
}

async fn emit_all(bus: &dyn Bus, emits: &[Emit]) -> Result<(), BusError> {
    let mut by_topic: BTreeMap<&str, KeyedRecords> = BTreeMap::new();
    for e in emits {
        by_topic
            .entry(e.topic.as_ref())
            .or_default()
            .push((e.key.clone(), e.value.clone()));
    }
    for (topic, records) in by_topic {
        bus.send_batch(topic, records).await?;
    }
    Ok(())
}

/// Sleeps for the backoff (doubling it) unless shutdown comes first; true means stop.
async fn sleep_or_shutdown(shutdown: &mut watch::Receiver<bool>, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    tokio::select! {
        _ = tokio::time::sleep(wait) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}
