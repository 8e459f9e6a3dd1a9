//! Crash recovery through the journal.

use super::*;

fn journal_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("store.journal")).map_or(0, |m| m.len())
}

fn copy_dir(from: &Path, to: &Path, files: &[&str]) {
    for f in files {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

/// A copy of the files taken while the store runs is what a crash at that moment leaves:
/// redb at its last checkpoint plus the journal. Every acknowledged write must be back,
/// with its version, and no version is handed out twice afterwards.
#[tokio::test]
async fn acknowledged_writes_survive_a_crash_through_the_journal() {
    let live = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_with(live.path(), None).unwrap();
    let mut kept = Vec::new();
    for i in 0..50 {
        let key = format!("k{i:02}");
        let row = store
            .insert_if_absent("t", "p", &key, vec![i as u8], None)
            .await
            .unwrap();
        assert!(row.applied);
        kept.push(row.current.unwrap());
    }
    // Changes after the first write of a row, a delete, and a row with a TTL.
    let changed = store
        .compare_and_set("t", "p", "k00", kept[0].version, b"changed".to_vec(), None)
        .await
        .unwrap()
        .current
        .unwrap();
    store.delete("t", "p", "k01").await.unwrap();
    let ttl = Some(Duration::from_secs(3600));
    let lasting = store
        .insert_if_absent("t", "q", "ttl", b"x".to_vec(), ttl)
        .await
        .unwrap()
        .current
        .unwrap();

    let crashed = tempfile::tempdir().unwrap();
    copy_dir(
        live.path(),
        crashed.path(),
        &["store.redb", "store.journal"],
    );
    let redb_only = tempfile::tempdir().unwrap();
    copy_dir(live.path(), redb_only.path(), &["store.redb"]);
    drop(store);

    // Without the journal the writes are not there: the test can tell recovery apart.
    let bare = EmbeddedStore::open(redb_only.path()).unwrap();
    assert_eq!(bare.get("t", "p", "k02").await.unwrap(), None);
    drop(bare);

    let recovered = EmbeddedStore::open(crashed.path()).unwrap();
    assert_eq!(
        recovered.get("t", "p", "k00").await.unwrap(),
        Some(changed.clone())
    );
    assert_eq!(recovered.get("t", "p", "k01").await.unwrap(), None);
    for row in &kept[2..] {
        assert_eq!(
            recovered
                .get("t", "p", &row.clustering)
                .await
                .unwrap()
                .as_ref(),
            Some(row)
        );
    }
    assert_eq!(
        recovered.get("t", "q", "ttl").await.unwrap(),
        Some(lasting.clone())
    );
    let newest = kept
        .iter()
        .map(|r| r.version)
        .chain([changed.version, lasting.version])
        .max()
        .unwrap();
    let fresh = recovered
        .insert_if_absent("t", "p", "k01", b"again".to_vec(), None)
        .await
        .unwrap()
        .current
        .unwrap();
    assert!(fresh.version > newest, "version {} reused", fresh.version);
    // What recovery applied is durable in redb by itself (it emptied the journal after).
    let replayed = tempfile::tempdir().unwrap();
    copy_dir(crashed.path(), replayed.path(), &["store.redb"]);
    drop(recovered);
    let redb_alone = EmbeddedStore::open(replayed.path()).unwrap();
    assert_eq!(
        redb_alone.get("t", "p", "k02").await.unwrap().as_ref(),
        Some(&kept[2])
    );
    drop(redb_alone);

    let reopened = EmbeddedStore::open(crashed.path()).unwrap();
    assert_eq!(reopened.get("t", "p", "k01").await.unwrap(), Some(fresh));
    assert_eq!(reopened.get("t", "q", "ttl").await.unwrap(), Some(lasting));
}

#[tokio::test]
async fn a_closed_store_leaves_an_empty_journal() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_with(dir.path(), None).unwrap();
    store.put("t", "p", "c", b"v".to_vec(), None).await.unwrap();
    // An empty journal holds its synced marker alone.
    let empty = crate::log_file::MARKER_LEN;
    assert!(journal_len(dir.path()) > empty);
    drop(store);
    // The writer checkpoints as it closes, before anything reopens (which would apply the
    // journal instead).
    let deadline = Instant::now() + Duration::from_secs(10);
    while journal_len(dir.path()) > empty {
        assert!(Instant::now() < deadline, "the journal was never emptied");
        std::thread::sleep(Duration::from_millis(10));
    }
    let reopened = EmbeddedStore::open(dir.path()).unwrap();
    assert!(reopened.get("t", "p", "c").await.unwrap().is_some());
}

/// A full disk mid-storm (hardening 2): writes are refused while it is full, reads go on, none
/// of the refused writes exists, every acknowledged one survives a restart, and writing resumes
/// once space returns, with no restart. Here the journal meets the full disk first, so redb is
/// never written while there is no room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_and_writing_resumes_when_space_returns() {
    let Some(disk) = mercato_testkit::small_disk::SmallDisk::mount(16 << 20) else {
        return;
    };
    storm_on_a_filling_disk(&disk, None).await;
}

/// The same with the journal on another disk that keeps room: a checkpoint meets the full disk
/// and redb fails (it refuses everything after an I/O error), so the writer reopens it once
/// space returns, applying the journal as a restart would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_failed_by_a_full_disk_is_reopened_when_space_returns() {
    let Some(disk) = mercato_testkit::small_disk::SmallDisk::mount(16 << 20) else {
        return;
    };
    let roomy = tempfile::tempdir().unwrap();
    storm_on_a_filling_disk(&disk, Some(roomy.path())).await;
}

async fn storm_on_a_filling_disk(
    disk: &mercato_testkit::small_disk::SmallDisk,
    journal_elsewhere: Option<&Path>,
) {
    use parking_lot::Mutex;
    const WRITERS: usize = 8;

    let dir = disk.path().join("store");
    if let Some(elsewhere) = journal_elsewhere {
        std::fs::create_dir(&dir).unwrap();
        let journal = elsewhere.join("store.journal");
        std::fs::File::create(&journal).unwrap();
        std::os::unix::fs::symlink(&journal, dir.join("store.journal")).unwrap();
    }
    // Checkpoints every 100 ms, so that they come during the storm.
    let store = Arc::new(EmbeddedStore::open_with(&dir, Some(Duration::from_millis(100))).unwrap());
    disk.fill_leaving(512 * 1024).unwrap();

    let acked = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(Vec::new()));
    let first_refusal = Arc::new(Mutex::new(None::<Instant>));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, acked, refused) = (store.clone(), acked.clone(), refused.clone());
            let first_refusal = first_refusal.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("w{w}-{i:05}");
                    match store
                        .insert_if_absent("t", "p", &key, vec![w as u8; 2048], None)
                        .await
                    {
                        Ok(outcome) => {
                            assert!(outcome.applied);
                            acked.lock().push(key);
                        }
                        Err(e @ (StoreError::Unavailable { .. } | StoreError::Io { .. })) => {
                            refused.lock().push(key);
                            let since = *first_refusal.lock().get_or_insert_with(Instant::now);
                            // Long enough for checkpoints, and reopening a failed
                            // database, to meet the full disk.
                            if since.elapsed() > Duration::from_millis(2500) {
                                break;
                            }
                            let _ = e;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err(e) => panic!("a full disk must refuse as an outage, not {e}"),
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let mut acked = std::mem::take(&mut *acked.lock());
    let refused = std::mem::take(&mut *refused.lock());
    assert!(
        acked.len() > 50,
        "only {} writes fit before the disk filled",
        acked.len()
    );
    assert!(refused.len() >= WRITERS, "the disk never filled");

    disk.free().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    for attempt in 0.. {
        let key = format!("after-{attempt}");
        match store
            .insert_if_absent("t", "p", &key, vec![1; 2048], None)
            .await
        {
            Ok(_) => {
                acked.push(key);
                break;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("writing did not resume within 10 s of freeing space: {e}"),
        }
    }
    for i in 0..20 {
        let key = format!("later-{i}");
        store
            .insert_if_absent("t", "p", &key, vec![2; 2048], None)
            .await
            .unwrap();
        acked.push(key);
    }

    let check = |store: Arc<EmbeddedStore>, when: &'static str| {
        let (acked, refused) = (acked.clone(), refused.clone());
        async move {
            for key in &acked {
                let row = store.get("t", "p", key).await.unwrap();
                assert!(row.is_some(), "{when}: acknowledged {key} is lost");
            }
            for key in &refused {
                let row = store.get("t", "p", key).await.unwrap();
                assert!(row.is_none(), "{when}: refused {key} was written");
            }
        }
    };
    check(store.clone(), "running").await;
    drop(store);
    let reopened = Arc::new(EmbeddedStore::open(&dir).unwrap());
    check(reopened, "reopened").await;
}
