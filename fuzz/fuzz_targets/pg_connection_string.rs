//! The PostgreSQL connection-string parser (`PgKeyStore::connect`'s `sslmode`/`sslrootcert`
//! reading, over URLs and `key=value` strings): arbitrary input never panics, what it accepts
//! uses the TLS mode the `sslmode` table gives, and an error never repeats the input (it may
//! hold a password).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = axra_auth::postgres::fuzz_connection_string(text);
    // The same body behind each scheme, so the URL branch sees every shape too.
    for scheme in ["postgres://", "postgresql://"] {
        let _ = axra_auth::postgres::fuzz_connection_string(&format!("{scheme}{text}"));
    }
});
