//! Rate limits as configured: defaults, flags that change them, bad flags named, and where
//! the client's address is read.

use std::net::SocketAddr;
use std::time::Duration;

use mercato_gateway::rate_limit::{
    address_key, Bucket, ClientAddress, Limited, RateLimitError, RateLimits,
};
use warp::http::HeaderMap;

#[test]
fn limits_are_the_defaults_changed_in_order() {
    let limits = RateLimits::parse(&["holds-per-user=5/1s", "orders-per-user=off"]).unwrap();
    assert_eq!(
        limits.bucket(Limited::HoldsPerUser),
        Some(Bucket {
            burst: 5,
            every: Duration::from_secs(1)
        })
    );
    assert_eq!(limits.bucket(Limited::OrdersPerUser), None);
    assert_eq!(
        limits.bucket(Limited::SignInPerAccount),
        RateLimits::default().bucket(Limited::SignInPerAccount)
    );
    let some = RateLimits::parse(&["off", "sign-up-per-address=1/1m"]).unwrap();
    assert_eq!(some.bucket(Limited::HoldsPerUser), None);
    assert!(some.bucket(Limited::SignUpPerAddress).is_some());
}

#[test]
fn bad_limits_say_what_is_wrong() {
    for (spec, wanted) in [
        ("holds", RateLimitError::Malformed("holds".into())),
        (
            "holds-per-user=5",
            RateLimitError::Malformed("holds-per-user=5".into()),
        ),
        (
            "holds-per-user=x/1s",
            RateLimitError::Malformed("holds-per-user=x/1s".into()),
        ),
        (
            "holds-per-user=0/1s",
            RateLimitError::OutOfRange("holds-per-user=0/1s".into()),
        ),
        (
            "holds-per-user=1/2h",
            RateLimitError::OutOfRange("holds-per-user=1/2h".into()),
        ),
        (
            "holds=1/1s",
            RateLimitError::UnknownLimit {
                given: "holds".into(),
            },
        ),
    ] {
        assert_eq!(RateLimits::parse(&[spec]), Err(wanted), "{spec}");
    }
    let said = RateLimits::parse(&["nope=1/1s"]).unwrap_err().to_string();
    assert!(said.contains("holds-per-user"), "{said}");
}

#[test]
fn a_forwarded_address_is_the_one_the_proxy_appended() {
    let mut headers = HeaderMap::new();
    headers.append("x-forwarded-for", "6.6.6.6, 10.0.0.1".parse().unwrap());
    headers.append("x-forwarded-for", "203.0.113.7".parse().unwrap());
    let peer: SocketAddr = "10.1.1.1:443".parse().unwrap();
    let header = ClientAddress::Header("x-forwarded-for".into());
    assert_eq!(
        header.of(Some(peer), &headers),
        Some("203.0.113.7".parse().unwrap())
    );
    assert_eq!(
        ClientAddress::Peer.of(Some(peer), &headers),
        Some(peer.ip())
    );
    assert_eq!(
        header.of(Some(peer), &HeaderMap::new()),
        Some(peer.ip()),
        "not through the proxy: the peer is the client"
    );
}

/// An IPv6 client can take a new address in its /64 for every request: the /64 is one
/// bucket. IPv4 addresses, and IPv4 mapped into IPv6, are their own.
#[test]
fn an_ipv6_client_draws_from_its_slash_64() {
    let key = |a: &str| address_key(a.parse().unwrap());
    assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
    assert_eq!(key("2001:db8:1:2:ffff:1:2:3"), key("2001:db8:1:2::9"));
    assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    assert_eq!(key("203.0.113.7"), "203.0.113.7");
    assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
    assert_ne!(key("203.0.113.7"), key("203.0.113.8"));
}
