//! The Coord suite: what Redis promises for the commands Mercato uses.

use std::sync::Arc;
use std::time::Duration;

use super::unique;
use mercato_core::coord::Coord;

pub async fn run_all(coord: Arc<dyn Coord>) {
    keys_with_ttl(&*coord).await;
    set_if_absent_race(Arc::clone(&coord)).await;
    rate_limit_window(&*coord).await;
    queues_are_fifo(&*coord).await;
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
