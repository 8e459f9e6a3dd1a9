//! Engine flags parse into engines, and addresses print without their passwords.

use mercato::engines::{BusEngine, EngineError, Engines, StoreEngine};

#[test]
fn flags_parse_into_engines() {
    let e = Engines::parse("redis://r:6379", "postgres://u:p@h/db", "redis://r:6379").unwrap();
    assert_eq!(e.bus, BusEngine::Redis("redis://r:6379".into()));
    assert_eq!(e.store, StoreEngine::Postgres("postgres://u:p@h/db".into()));
    assert!(e.require_shared("gateway").is_ok());
    let e = Engines::parse("fluvio://sc:9003", "scylla://db1,db2/shop", "redis://r").unwrap();
    assert_eq!(e.bus, BusEngine::Fluvio("fluvio://sc:9003".into()));
    assert!(matches!(&e.store, StoreEngine::Scylla(o) if o.keyspace == "shop"));
    assert!(e.require_shared("worker holds").is_ok());
    let e = Engines::parse("embedded", "embedded:/tmp/x", "embedded").unwrap();
    assert_eq!(e.store, StoreEngine::EmbeddedAt("/tmp/x".into()));
    assert!(e.require_shared("worker holds").is_err());
    for (bus, store, coord) in [
        ("kafka://x", "embedded", "embedded"),
        ("embedded", "mysql://x", "embedded"),
        ("embedded", "embedded:", "embedded"),
        ("embedded", "embedded", "memcached://x"),
        ("fluvio://sc:9003/x", "embedded", "embedded"),
        ("embedded", "scylla://h/bad-keyspace", "embedded"),
    ] {
        let err = Engines::parse(bus, store, coord).unwrap_err();
        assert!(matches!(err, EngineError::BadFlag { .. }), "{err}");
    }
}

#[test]
fn passwords_are_not_printed() {
    let e = Engines::parse(
        "redis://:hunter2@r:6379",
        "postgres://mercato:s3cret@db:5432/mercato",
        "redis://r:6379",
    )
    .unwrap();
    let scylla = Engines::parse("embedded", "scylla://app:pw@db1:9042/shop", "embedded").unwrap();
    assert_eq!(
        scylla.to_string(),
        "bus embedded, store scylla://app:***@db1:9042/shop, coord embedded"
    );
    assert_eq!(
        e.to_string(),
        "bus redis://:***@r:6379, store postgres://mercato:***@db:5432/mercato, \
         coord redis://r:6379"
    );
}
