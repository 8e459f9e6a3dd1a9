//! Mercato's ports on real engines.
//!
//! - [`postgres::PostgresStore`]: the Store on PostgreSQL.
//! - [`redis_coord::RedisCoord`]: the Coord on Redis.
//! - [`redis_bus::RedisBus`]: the Bus on Redis Streams.
//!
//! Each passes its port's conformance suite (`mercato_core::conformance`) unchanged; the tests
//! in `tests/` run it when `MERCATO_TEST_POSTGRES` or `MERCATO_TEST_REDIS` names a server.

pub mod postgres;
pub mod redis_bus;
mod redis_conn;
pub mod redis_coord;

pub use redis_conn::RedisConnectError;
