//! The JWKS document parser (`JwksSource`'s fetches): arbitrary input never panics, at most
//! `MAX_JWKS_KEYS` keys are taken, each kid once, and an accepted document holds at least one.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(kids) = axra_auth::server::fuzz_parse_jwks(data) {
        assert!(!kids.is_empty());
        assert!(kids.len() <= axra_auth::server::MAX_JWKS_KEYS);
        let mut sorted = kids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), kids.len(), "a kid taken twice");
    }
});
