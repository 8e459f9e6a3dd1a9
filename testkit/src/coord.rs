//! The Coord suite: what Redis promises for the commands Mercato uses.

use std::sync::Arc;
use std::time::Duration;

use super::unique;
use mercato_core::coord::{Coord, Taken};

pub async fn run_all(coord: Arc<dyn Coord>) {
    keys_with_ttl(&*coord).await;
    set_if_absent_race(Arc::clone(&coord)).await;
    rate_limit_window(&*coord).await;
    token_buckets(&*coord).await;
    queues_are_fifo(&*coord).await;
    ranked_sets_order_by_score_then_member(&*coord).await;
    ranked_insert_race(Arc::clone(&coord)).await;
    pub_sub_fans_out(&*coord).await;
}

pub async fn keys_with_ttl(coord: &dyn Coord) {
    let k = unique("key");
    assert!(coord
        .set_if_absent(&k, b"a", Duration::from_millis(300))
        .await
        .unwrap());
    assert!(!coord
        .set_if_absent(&k, b"b", Duration::from_millis(300))
        .await
        .unwrap());
    assert_eq!(coord.get(&k).await.unwrap(), Some(b"a".to_vec()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(coord.get(&k).await.unwrap(), None, "keys expire");
    assert!(coord
        .set_if_absent(&k, b"c", Duration::from_secs(5))
        .await
        .unwrap());
    assert!(coord.delete(&k).await.unwrap());
    assert!(!coord.delete(&k).await.unwrap());

    // SET overwrites and gives a fresh TTL.
    coord
        .set(&k, b"d", Duration::from_millis(300))
        .await
        .unwrap();
    coord
        .set(&k, b"e", Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(coord.get(&k).await.unwrap(), Some(b"e".to_vec()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    coord
        .set(&k, b"f", Duration::from_millis(300))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        coord.get(&k).await.unwrap(),
        Some(b"f".to_vec()),
        "the TTL starts again at each SET"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(coord.get(&k).await.unwrap(), None);
}

pub async fn set_if_absent_race(coord: Arc<dyn Coord>) {
    let k = unique("race");
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let coord = Arc::clone(&coord);
            let k = k.clone();
            tokio::spawn(async move {
                coord
                    .set_if_absent(&k, b"x", Duration::from_secs(5))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1, "exactly one SET NX wins");
}

pub async fn rate_limit_window(coord: &dyn Coord) {
    let k = unique("rl");
    for want in 1..=3 {
        assert_eq!(
            coord
                .incr_window(&k, Duration::from_millis(300))
                .await
                .unwrap(),
            want
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        coord
            .incr_window(&k, Duration::from_millis(300))
            .await
            .unwrap(),
        1,
        "a new window starts at 1"
    );
}

/// A bucket of 3 refilled one per 200 ms: 3 at once, then a refusal saying how long to wait,
/// then one more after that wait; buckets are per key.
pub async fn token_buckets(coord: &dyn Coord) {
    let k = unique("bucket");
    let every = Duration::from_millis(200);
    for _ in 0..3 {
        assert_eq!(coord.take_token(&k, 3, every).await.unwrap(), Taken::Yes);
    }
    let Taken::No { retry_after } = coord.take_token(&k, 3, every).await.unwrap() else {
        panic!("the bucket is empty after 3");
    };
    assert!(
        retry_after > Duration::ZERO && retry_after <= every,
        "{retry_after:?}"
    );
    assert_eq!(
        coord.take_token(&unique("bucket"), 3, every).await.unwrap(),
        Taken::Yes,
        "another key, another bucket"
    );
    tokio::time::sleep(retry_after + Duration::from_millis(20)).await;
    assert_eq!(coord.take_token(&k, 3, every).await.unwrap(), Taken::Yes);
    assert!(matches!(
        coord.take_token(&k, 3, every).await.unwrap(),
        Taken::No { .. }
    ));
}

pub async fn queues_are_fifo(coord: &dyn Coord) {
    let q = unique("q");
    assert_eq!(coord.pop(&q).await.unwrap(), None);
    for (i, item) in [b"a", b"b", b"c"].iter().enumerate() {
        assert_eq!(coord.push(&q, *item).await.unwrap(), i as u64 + 1);
    }
    assert_eq!(coord.len(&q).await.unwrap(), 3);
    assert_eq!(coord.pop(&q).await.unwrap(), Some(b"a".to_vec()));
    assert_eq!(coord.pop(&q).await.unwrap(), Some(b"b".to_vec()));
    assert_eq!(coord.len(&q).await.unwrap(), 1);
}

pub async fn pub_sub_fans_out(coord: &dyn Coord) {
    let ch = unique("ch");
    let mut a = coord.subscribe(&ch).await.unwrap();
    let mut b = coord.subscribe(&ch).await.unwrap();
    // Real engines confirm a subscription asynchronously; give it a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    coord.publish(&ch, b"seat-changed").await.unwrap();
    for rx in [&mut a, &mut b] {
        let got = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, b"seat-changed");
    }
}

pub async fn ranked_sets_order_by_score_then_member(coord: &dyn Coord) {
    let set = unique("ranked");
    assert_eq!(
        coord.rank_head(&set, 3).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(coord.rank_of(&set, "ada").await.unwrap(), None);
    // Scores up to 2^53 stay exact (Redis keeps doubles).
    let big = (1u64 << 53) - 1;
    for (member, score) in [
        ("cy", 7),
        ("ada", 7),
        ("bo", 2),
        ("dee", big),
        ("eve", big - 1),
    ] {
        assert!(coord.rank_insert(&set, member, score).await.unwrap());
    }
    assert!(
        !coord.rank_insert(&set, "bo", 100).await.unwrap(),
        "a member keeps its first score"
    );
    assert_eq!(coord.rank_len(&set).await.unwrap(), 5);
    for (member, rank) in [("bo", 0), ("ada", 1), ("cy", 2), ("eve", 3), ("dee", 4)] {
        assert_eq!(
            coord.rank_of(&set, member).await.unwrap(),
            Some(rank),
            "{member}"
        );
    }
    assert!(coord.rank_remove(&set, "cy").await.unwrap());
    assert!(!coord.rank_remove(&set, "cy").await.unwrap());
    assert_eq!(coord.rank_of(&set, "eve").await.unwrap(), Some(2));
    assert_eq!(coord.rank_head(&set, 2).await.unwrap(), ["bo", "ada"]);
    assert_eq!(
        coord.rank_head(&set, 0).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        coord.rank_head(&set, 5).await.unwrap(),
        ["bo", "ada", "eve", "dee"],
        "the head stays in the set"
    );
    for member in ["bo", "ada", "eve", "dee"] {
        assert!(coord.rank_remove(&set, member).await.unwrap());
    }
    assert_eq!(coord.rank_len(&set).await.unwrap(), 0);
    assert!(
        coord.rank_insert(&set, "bo", 1).await.unwrap(),
        "removed: may join again"
    );
    assert!(coord.delete(&set).await.unwrap());
    assert_eq!(coord.rank_len(&set).await.unwrap(), 0);

    // Trimming by score: members scored below the bound go, the rest stay in order.
    for (member, score) in [("a", 5), ("b", 10), ("c", 10), ("d", 11)] {
        coord.rank_insert(&set, member, score).await.unwrap();
    }
    assert_eq!(coord.rank_trim(&set, 10).await.unwrap(), 1);
    assert_eq!(coord.rank_of(&set, "b").await.unwrap(), Some(0));
    assert_eq!(coord.rank_trim(&set, 12).await.unwrap(), 3);
    assert_eq!(coord.rank_len(&set).await.unwrap(), 0);
    assert_eq!(coord.rank_trim(&set, 12).await.unwrap(), 0);
}

/// Many clients insert the same members at once, with different scores: each member is in
/// once, and one insert of each wins.
pub async fn ranked_insert_race(coord: Arc<dyn Coord>) {
    let set = unique("ranked-race");
    let tasks: Vec<_> = (0..64u64)
        .map(|i| {
            let (coord, set) = (Arc::clone(&coord), set.clone());
            tokio::spawn(async move {
                coord
                    .rank_insert(&set, &format!("m{}", i % 8), i)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 8, "one insert of each member wins");
    assert_eq!(coord.rank_len(&set).await.unwrap(), 8);
    let popped = coord.rank_head(&set, 100).await.unwrap();
    let mut distinct = popped.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 8, "{popped:?}");
}
