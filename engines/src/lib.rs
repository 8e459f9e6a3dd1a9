//! Mercato's ports on real engines.
//!
//! - [`postgres::PostgresStore`]: the Store on PostgreSQL.
//! - [`redis_coord::RedisCoord`]: the Coord on Redis.
//! - [`redis_bus::RedisBus`]: the Bus on Redis Streams.
//! - [`scylla_store::ScyllaStore`]: the Store on ScyllaDB.
//! - [`fluvio_bus::FluvioBus`]: the Bus on Fluvio.
//!
//! Each passes its port's conformance suite (`mercato_core::conformance`) unchanged; the tests
//! in `tests/` run it when `MERCATO_TEST_POSTGRES`, `MERCATO_TEST_SCYLLA`, `MERCATO_TEST_REDIS` or
//! `MERCATO_TEST_FLUVIO` names a server.

pub mod fluvio_bus;
pub mod postgres;
pub mod postgres_tls;
pub mod redis_bus;
mod redis_conn;
pub mod redis_coord;
pub mod scylla_store;
mod tls;

pub use redis_conn::RedisConnectError;
