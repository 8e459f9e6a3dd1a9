//! The Store suite: what ScyllaDB's lightweight transactions, TTLs and partition scans promise.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::unique;
use mercato_core::store::{PartitionWrite, Store, Write};

pub async fn run_all(store: Arc<dyn Store>) {
    versions_and_puts(&*store).await;
    insert_if_absent_and_conditions(&*store).await;
    insert_if_absent_race(Arc::clone(&store)).await;
    batch_race_is_all_or_nothing(Arc::clone(&store)).await;
    a_batch_names_each_row_once(&*store).await;
    ttl_expiry(&*store).await;
    scan_pages_in_order(&*store).await;
    write_many_across_partitions(&*store).await;
    for seed in [1, 2, 3] {
        random_operations_match_a_model(&*store, seed).await;
    }
}

/// A row and its version outlive the client that wrote them (and, embedded, the process), and
/// the next write's version is higher: `open` connects afresh each time it is called, after the
/// previous client is dropped.
pub async fn versions_outlive_the_connection<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Store>>,
{
    let t = unique("t");
    let first = open().await;
    let row = first
        .put(&t, "p", "k", b"kept".to_vec(), None)
        .await
        .unwrap();
    drop(first);
    let again = open().await;
    assert_eq!(again.get(&t, "p", "k").await.unwrap(), Some(row.clone()));
    let next = again.put(&t, "p", "k", b"v2".to_vec(), None).await.unwrap();
    assert!(
        next.version > row.version,
        "versions keep growing across connections"
    );
}

pub async fn versions_and_puts(store: &dyn Store) {
    let t = unique("t");
    assert_eq!(store.get(&t, "p", "a").await.unwrap(), None);
    let first = store
        .put(&t, "p", "a", b"one".to_vec(), None)
        .await
        .unwrap();
    let second = store
        .put(&t, "p", "a", b"two".to_vec(), None)
        .await
        .unwrap();
    assert_ne!(
        first.version, second.version,
        "every write gets a new version"
    );
    let got = store.get(&t, "p", "a").await.unwrap().unwrap();
    assert_eq!(got.value, b"two");
    assert_eq!(got.version, second.version);
    assert_eq!(got.expires_at_ms, None);
    assert_eq!(
        store.get(&t, "other", "a").await.unwrap(),
        None,
        "partitions are separate"
    );
    store.delete(&t, "p", "a").await.unwrap();
    assert_eq!(store.get(&t, "p", "a").await.unwrap(), None);
}

pub async fn insert_if_absent_and_conditions(store: &dyn Store) {
    let t = unique("t");
    let won = store
        .insert_if_absent(&t, "p", "k", b"mine".to_vec(), None)
        .await
        .unwrap();
    assert!(won.applied);
    let row = won.current.clone().unwrap();
    let lost = store
        .insert_if_absent(&t, "p", "k", b"yours".to_vec(), None)
        .await
        .unwrap();
    assert!(!lost.applied);
    assert_eq!(
        lost.current.as_ref().unwrap().value,
        b"mine",
        "a refusal shows the row in the way"
    );

    let stale = store
        .compare_and_set(&t, "p", "k", row.version + 1_000_000, b"x".to_vec(), None)
        .await
        .unwrap();
    assert!(!stale.applied);
    assert_eq!(stale.current.as_ref().unwrap().version, row.version);
    let cas = store
        .compare_and_set(&t, "p", "k", row.version, b"next".to_vec(), None)
        .await
        .unwrap();
    assert!(cas.applied);
    let next = cas.current.unwrap();
    assert_eq!(next.value, b"next");
    let again = store
        .compare_and_set(&t, "p", "k", row.version, b"again".to_vec(), None)
        .await
        .unwrap();
    assert!(!again.applied, "a version is good for one CAS only");

    let del_stale = store
        .delete_if_version(&t, "p", "k", row.version)
        .await
        .unwrap();
    assert!(!del_stale.applied);
    let del = store
        .delete_if_version(&t, "p", "k", next.version)
        .await
        .unwrap();
    assert!(del.applied);
    assert_eq!(store.get(&t, "p", "k").await.unwrap(), None);
    let cas_absent = store
        .compare_and_set(&t, "p", "k", next.version, b"z".to_vec(), None)
        .await
        .unwrap();
    assert!(!cas_absent.applied);
    assert_eq!(cas_absent.current, None);

    // A conditional batch applies whole or not at all.
    store
        .put(&t, "b", "taken", b"x".to_vec(), None)
        .await
        .unwrap();
    let batch = store
        .batch(
            &t,
            "b",
            vec![
                Write::InsertIfAbsent {
                    clustering: "free".into(),
                    value: b"y".to_vec(),
                    ttl: None,
                },
                Write::InsertIfAbsent {
                    clustering: "taken".into(),
                    value: b"y".to_vec(),
                    ttl: None,
                },
            ],
        )
        .await
        .unwrap();
    assert!(!batch.applied);
    assert_eq!(batch.rows[0], None);
    assert_eq!(batch.rows[1].as_ref().unwrap().value, b"x");
    assert_eq!(
        store.get(&t, "b", "free").await.unwrap(),
        None,
        "nothing of a refused batch is written"
    );
}

/// Many tasks race to insert the same key: exactly one wins, and every loser sees the winner.
pub async fn insert_if_absent_race(store: Arc<dyn Store>) {
    let t = unique("t");
    let mut tasks = Vec::new();
    for i in 0..64u32 {
        let store = Arc::clone(&store);
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let r = store
                .insert_if_absent(&t, "p", "seat", i.to_le_bytes().to_vec(), None)
                .await
                .unwrap();
            (i, r)
        }));
    }
    let mut winners = Vec::new();
    let mut seen = HashSet::new();
    for task in tasks {
        let (i, r) = task.await.unwrap();
        if r.applied {
            winners.push(i);
        }
        seen.insert(r.current.unwrap().value);
    }
    assert_eq!(winners.len(), 1, "exactly one insert wins: {winners:?}");
    assert_eq!(seen.len(), 1, "every answer shows the winner's row");
    assert_eq!(
        seen.into_iter().next().unwrap(),
        winners[0].to_le_bytes().to_vec()
    );
}

/// Tasks race to claim overlapping sets of rows in one partition with conditional batches:
/// the sets that won are disjoint, and every claimed row belongs to exactly one winner.
/// Two writes to one row in one batch are refused as invalid, and nothing of the batch is
/// written: checked against the row before the batch, two claims of one seat would both apply.
pub async fn a_batch_names_each_row_once(store: &dyn Store) {
    let t = unique("t");
    let claim = |seat: &str| Write::InsertIfAbsent {
        clustering: seat.into(),
        value: b"hold".to_vec(),
        ttl: None,
    };
    let twice = vec![claim("s1-1-1"), claim("s1-1-2"), claim("s1-1-1")];
    let refused = store.batch(&t, "event", twice).await;
    assert!(
        matches!(
            refused,
            Err(mercato_core::store::StoreError::Invalid { .. })
        ),
        "a batch claiming one seat twice is refused: {refused:?}"
    );
    let mixed = vec![
        Write::Put {
            clustering: "s1-1-3".into(),
            value: b"a".to_vec(),
            ttl: None,
        },
        Write::Delete {
            clustering: "s1-1-3".into(),
        },
    ];
    assert!(matches!(
        store.batch(&t, "event", mixed).await,
        Err(mercato_core::store::StoreError::Invalid { .. })
    ));
    let page = store.scan(&t, "event", None, 10).await.unwrap();
    assert!(
        page.rows.is_empty(),
        "nothing of a refused batch is written"
    );
    let once = vec![claim("s1-1-1"), claim("s1-1-2")];
    assert!(store.batch(&t, "event", once).await.unwrap().applied);
}

pub async fn batch_race_is_all_or_nothing(store: Arc<dyn Store>) {
    let t = unique("t");
    let mut tasks = Vec::new();
    for i in 0..48u32 {
        let store = Arc::clone(&store);
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let seats: Vec<String> = (0..3)
                .map(|k| format!("s{:02}", (i + k * 5) % 20))
                .collect();
            let writes = seats
                .iter()
                .map(|s| Write::InsertIfAbsent {
                    clustering: s.clone(),
                    value: i.to_le_bytes().to_vec(),
                    ttl: None,
                })
                .collect();
            let r = store.batch(&t, "event", writes).await.unwrap();
            (i, seats, r.applied)
        }));
    }
    let mut claimed = HashSet::new();
    let mut winners = Vec::new();
    for task in tasks {
        let (i, seats, applied) = task.await.unwrap();
        if applied {
            for s in &seats {
                assert!(claimed.insert(s.clone()), "{s} claimed twice");
            }
            winners.push((i, seats));
        }
    }
    assert!(!winners.is_empty());
    for (i, seats) in winners {
        for s in seats {
            let row = store.get(&t, "event", &s).await.unwrap().unwrap();
            assert_eq!(
                row.value,
                i.to_le_bytes().to_vec(),
                "{s} belongs to its winner"
            );
        }
    }
    let page = store.scan(&t, "event", None, 100).await.unwrap();
    assert_eq!(
        page.rows.len(),
        claimed.len(),
        "no row of a losing batch was written"
    );
}

pub async fn write_many_across_partitions(store: &dyn Store) {
    let t = unique("t");
    store
        .put(&t, "p3", "x", b"old".to_vec(), None)
        .await
        .unwrap();
    let old = store.get(&t, "p3", "x").await.unwrap().unwrap();
    let mut writes: Vec<PartitionWrite> = (0..300)
        .map(|i| PartitionWrite {
            partition: format!("p{}", i % 7),
            write: Write::Put {
                clustering: format!("c{i:04}"),
                value: format!("v{i}").into_bytes(),
                ttl: None,
            },
        })
        .collect();
    writes.push(PartitionWrite {
        partition: "p3".into(),
        write: Write::Delete {
            clustering: "x".into(),
        },
    });
    store.write_many(&t, writes).await.unwrap();
    for i in [0, 1, 150, 299] {
        let row = store
            .get(&t, &format!("p{}", i % 7), &format!("c{i:04}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.value, format!("v{i}").into_bytes());
        assert_ne!(row.version, old.version, "versions stay unique");
    }
    assert_eq!(
        store.get(&t, "p3", "x").await.unwrap(),
        None,
        "deletes apply too"
    );
    let total: usize = {
        let mut n = 0;
        for p in 0..7 {
            n += store
                .scan(&t, &format!("p{p}"), None, 1000)
                .await
                .unwrap()
                .rows
                .len();
        }
        n
    };
    assert_eq!(total, 300);
    let conditional = vec![PartitionWrite {
        partition: "p0".into(),
        write: Write::InsertIfAbsent {
            clustering: "c9999".into(),
            value: vec![],
            ttl: None,
        },
    }];
    assert!(
        store.write_many(&t, conditional).await.is_err(),
        "conditions need one partition's atomicity: write_many refuses them"
    );
    assert_eq!(store.get(&t, "p0", "c9999").await.unwrap(), None);
}

pub async fn ttl_expiry(store: &dyn Store) {
    let t = unique("t");
    let held = store
        .insert_if_absent(
            &t,
            "p",
            "seat",
            b"hold-1".to_vec(),
            Some(Duration::from_millis(1500)),
        )
        .await
        .unwrap();
    assert!(held.applied);
    let held = held.current.unwrap();
    assert!(held.expires_at_ms.is_some());
    assert!(store.get(&t, "p", "seat").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        store.get(&t, "p", "seat").await.unwrap(),
        None,
        "expired rows read as absent"
    );
    assert!(store.scan(&t, "p", None, 10).await.unwrap().rows.is_empty());
    let cas = store
        .compare_and_set(&t, "p", "seat", held.version, b"sold".to_vec(), None)
        .await
        .unwrap();
    assert!(!cas.applied, "an expired row cannot be compared and set");
    let again = store
        .insert_if_absent(&t, "p", "seat", b"hold-2".to_vec(), None)
        .await
        .unwrap();
    assert!(again.applied, "an expired row no longer blocks an insert");
    assert_ne!(
        again.current.unwrap().version,
        held.version,
        "versions are never reused"
    );
}

pub async fn scan_pages_in_order(store: &dyn Store) {
    let t = unique("t");
    for i in (0..25).rev() {
        store
            .put(&t, "p", &format!("k{i:03}"), vec![i], None)
            .await
            .unwrap();
    }
    store.put(&t, "p2", "k000", vec![99], None).await.unwrap();
    store
        .put(&t, "p", "k010", vec![10], Some(Duration::from_millis(1)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store.scan(&t, "p", after.as_deref(), 10).await.unwrap();
        pages += 1;
        assert!(page.rows.len() <= 10);
        all.extend(page.rows.into_iter().map(|r| r.clustering));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
        assert!(pages < 10, "paging must end");
    }
    let expected: Vec<String> = (0..25)
        .filter(|i| *i != 10)
        .map(|i| format!("k{i:03}"))
        .collect();
    assert_eq!(
        all, expected,
        "live rows of the partition, in clustering order"
    );
}

/// Thousands of random conditional writes over a few keys, each checked against a model of what
/// a ScyllaDB partition would hold: whether it applied, the row it answered with, and what a
/// read and a scan see afterwards. Deterministic for a given seed.
pub async fn random_operations_match_a_model(store: &dyn Store, seed: u64) {
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;

    let t = unique("model");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // (partition, clustering) -> (value, version)
    let mut model: BTreeMap<(String, String), (Vec<u8>, u64)> = BTreeMap::new();
    let mut stale_versions: Vec<u64> = vec![0];
    for step in 0..2_000u32 {
        let partition = format!("p{}", rng.gen_range(0..3));
        let key = format!("k{}", rng.gen_range(0..5));
        let value = step.to_le_bytes().to_vec();
        let slot = (partition.clone(), key.clone());
        let current = model.get(&slot).cloned();
        let expected_version = match (&current, rng.gen_bool(0.6)) {
            (Some((_, v)), true) => *v,
            _ => stale_versions[rng.gen_range(0..stale_versions.len())],
        };
        let write = match rng.gen_range(0..5) {
            0 => Write::Put {
                clustering: key.clone(),
                value: value.clone(),
                ttl: None,
            },
            1 => Write::InsertIfAbsent {
                clustering: key.clone(),
                value: value.clone(),
                ttl: None,
            },
            2 => Write::CompareAndSet {
                clustering: key.clone(),
                expected: expected_version,
                value: value.clone(),
                ttl: None,
            },
            3 => Write::DeleteIfVersion {
                clustering: key.clone(),
                expected: expected_version,
            },
            _ => Write::Delete {
                clustering: key.clone(),
            },
        };
        let should_apply = match &write {
            Write::InsertIfAbsent { .. } => current.is_none(),
            Write::CompareAndSet { expected, .. } | Write::DeleteIfVersion { expected, .. } => {
                current.as_ref().is_some_and(|(_, v)| v == expected)
            }
            Write::Put { .. } | Write::Delete { .. } => true,
        };
        let is_conditional = write.is_conditional();
        let writes_value = matches!(
            write,
            Write::Put { .. } | Write::InsertIfAbsent { .. } | Write::CompareAndSet { .. }
        );
        let outcome = store.batch(&t, &partition, vec![write]).await.unwrap();
        assert_eq!(outcome.applied, should_apply, "step {step}: applied");
        let answered = outcome.rows.into_iter().next().flatten();
        if should_apply {
            if writes_value {
                let row =
                    answered.unwrap_or_else(|| panic!("step {step}: a write answers with its row"));
                assert_eq!(row.value, value, "step {step}");
                if let Some((_, old)) = &current {
                    assert_ne!(row.version, *old, "step {step}: a write gets a new version");
                    stale_versions.push(*old);
                }
                model.insert(slot.clone(), (value, row.version));
            } else {
                assert_eq!(answered, None, "step {step}: a delete answers with no row");
                if let Some((_, old)) = model.remove(&slot) {
                    stale_versions.push(old);
                }
            }
        } else if is_conditional {
            let shown = answered.map(|r| (r.value, r.version));
            assert_eq!(
                shown, current,
                "step {step}: a refusal shows the current row"
            );
        }
        let read = store
            .get(&t, &partition, &key)
            .await
            .unwrap()
            .map(|r| (r.value, r.version));
        assert_eq!(
            read,
            model.get(&slot).cloned(),
            "step {step}: read after write"
        );
    }
    for p in 0..3 {
        let partition = format!("p{p}");
        let page = store.scan(&t, &partition, None, 100).await.unwrap();
        let seen: Vec<(String, Vec<u8>)> = page
            .rows
            .into_iter()
            .map(|r| (r.clustering, r.value))
            .collect();
        let expected: Vec<(String, Vec<u8>)> = model
            .iter()
            .filter(|((part, _), _)| *part == partition)
            .map(|((_, k), (v, _))| (k.clone(), v.clone()))
            .collect();
        assert_eq!(seen, expected, "scan of {partition} after the run");
    }
}
