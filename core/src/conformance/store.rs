//! The Store suite: what ScyllaDB's lightweight transactions, TTLs and partition scans promise.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::unique;
use crate::store::{Store, Write};

pub async fn run_all(store: Arc<dyn Store>) {
    versions_and_puts(&*store).await;
    insert_if_absent_and_conditions(&*store).await;
    insert_if_absent_race(Arc::clone(&store)).await;
    batch_race_is_all_or_nothing(Arc::clone(&store)).await;
    ttl_expiry(&*store).await;
    scan_pages_in_order(&*store).await;
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
