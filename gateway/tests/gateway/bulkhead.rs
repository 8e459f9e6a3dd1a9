//! CPU-heavy work is bounded: at most `slots` run at once, at most `queue` more wait, and the
//! rest are refused with 503 `overloaded` at once; a wait that outlasts `max_wait` is refused
//! too. Real concurrency: tasks on a multi-threaded runtime, work on blocking threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mercato_gateway::bulkhead::{Bulkhead, BulkheadSize};

/// Work that records how many run at once.
fn work(running: &Arc<AtomicUsize>, most: &Arc<AtomicUsize>, for_ms: u64) -> impl FnOnce() + Send {
    let (running, most) = (Arc::clone(running), Arc::clone(most));
    move || {
        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(for_ms));
        running.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_runs_slots_at_a_time_and_the_overflow_is_refused() {
    let bulkhead = Arc::new(Bulkhead::new(
        "password",
        BulkheadSize {
            slots: 2,
            queue: 4,
            max_wait: Duration::from_secs(30),
        },
    ));
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let start = Arc::new(tokio::sync::Barrier::new(40));
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (bulkhead, start) = (Arc::clone(&bulkhead), Arc::clone(&start));
            let job = work(&running, &most, 50);
            tokio::spawn(async move {
                start.wait().await;
                bulkhead.run(job).await
            })
        })
        .collect();
    let (mut done, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => done += 1,
            Err(e) => {
                assert_eq!((e.status.as_u16(), e.code.as_ref()), (503, "overloaded"));
                assert_eq!(e.retry_after_secs, Some(1));
                assert!(e.message.contains("password"), "{}", e.message);
                refused += 1;
            }
        }
    }
    assert_eq!(
        most.load(Ordering::SeqCst),
        2,
        "never more than the slots at once"
    );
    assert!(done >= 2 + 4, "the slots and the queue are served: {done}");
    assert!(refused >= 1, "40 at once overflow 2 slots and 4 places");
    assert_eq!(done + refused, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_longer_than_allowed_is_refused_and_the_slot_outlives_its_caller() {
    let bulkhead = Arc::new(Bulkhead::new(
        "search",
        BulkheadSize {
            slots: 1,
            queue: 8,
            max_wait: Duration::from_millis(100),
        },
    ));
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // The caller of a long job gives up at once: its job keeps the slot until it ends.
    let long = {
        let b = Arc::clone(&bulkhead);
        let job = work(&running, &most, 600);
        tokio::spawn(async move { b.run(job).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    long.abort();
    let refused = bulkhead.run(work(&running, &most, 1)).await.unwrap_err();
    assert_eq!(refused.code, "overloaded");
    assert!(refused.message.contains("in time"), "{}", refused.message);
    // Once the long job is done, the slot is free again.
    tokio::time::sleep(Duration::from_millis(700)).await;
    bulkhead.run(work(&running, &most, 1)).await.unwrap();
    assert_eq!(most.load(Ordering::SeqCst), 1);
}
