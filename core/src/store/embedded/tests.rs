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
    assert!(journal_len(dir.path()) > 0);
    drop(store);
    // The writer checkpoints as it closes, before anything reopens (which would apply the
    // journal instead).
    let deadline = Instant::now() + Duration::from_secs(10);
    while journal_len(dir.path()) > 0 {
        assert!(Instant::now() < deadline, "the journal was never emptied");
        std::thread::sleep(Duration::from_millis(10));
    }
    let reopened = EmbeddedStore::open(dir.path()).unwrap();
    assert!(reopened.get("t", "p", "c").await.unwrap().is_some());
}
