//! The token endpoint leaves no parsed copy of `apiKey` or `apiSecret` in freed memory (issue 19,
//! defect 12): a global allocator looks into every heap block freed while the endpoint answers,
//! and counts those that still hold the key or the secret. The raw request body is the caller's
//! (kept alive here; the crate docs list it as not zeroed).
//!
//! One test in this file: the allocator's switch is global.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use axra_auth::Environment;
use axra_auth::server::{MemoryKeyStore, TokenEndpoint, TokenIssuer};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use tower::ServiceExt;

struct Scanning;

static SCANNING: AtomicBool = AtomicBool::new(false);
static NEEDLES: OnceLock<Mutex<Vec<Vec<u8>>>> = OnceLock::new();
static HITS: AtomicUsize = AtomicUsize::new(0);

fn needles() -> &'static Mutex<Vec<Vec<u8>>> {
    NEEDLES.get_or_init(Mutex::default)
}

/// Whether the freed block holds one of the needles. Allocates nothing (the needles are set
/// before scanning starts; `try_lock` so a block freed while they are set is skipped).
fn holds_a_needle(block: &[u8]) -> bool {
    let Ok(needles) = needles().try_lock() else {
        return false;
    };
    needles.iter().any(|needle| {
        block
            .windows(needle.len())
            .any(|window| window == &needle[..])
    })
}

// SAFETY: forwards to the system allocator; reads a block only before handing it back, within
// its layout.
unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if SCANNING.load(Ordering::SeqCst) {
            // SAFETY: `ptr` is a live block of `layout.size()` bytes until it is freed below.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            if holds_a_needle(block) {
                HITS.fetch_add(1, Ordering::SeqCst);
            }
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Scanning = Scanning;

/// Freed blocks that held the key or the secret while `endpoint` answered `body`.
async fn leaked_copies(endpoint: &TokenEndpoint<MemoryKeyStore>, body: &Bytes) -> usize {
    let request = Request::post("/business/auth/token")
        .body(Full::new(body.clone()))
        .unwrap();
    HITS.store(0, Ordering::SeqCst);
    SCANNING.store(true, Ordering::SeqCst);
    let response = endpoint.clone().oneshot(request).await.unwrap();
    SCANNING.store(false, Ordering::SeqCst);
    assert_eq!(response.status(), StatusCode::OK);
    HITS.load(Ordering::SeqCst)
}

#[tokio::test]
async fn the_endpoint_frees_no_unzeroed_copy_of_the_key_or_the_secret() {
    let store = MemoryKeyStore::new();
    let issued = store.create_business("Acme", Environment::Test);
    let endpoint = TokenEndpoint::new(store, TokenIssuer::random());
    let (key, secret) = (
        issued.api_key().expose_secret().to_owned(),
        issued.api_secret().expose_secret().to_owned(),
    );
    needles()
        .lock()
        .unwrap()
        .extend([key.as_bytes().to_vec(), secret.as_bytes().to_vec()]);

    // As every client sends it.
    let plain = Bytes::from(format!(r#"{{"apiKey":"{key}","apiSecret":"{secret}"}}"#));
    assert_eq!(leaked_copies(&endpoint, &plain).await, 0, "plain strings");

    // With JSON escapes (a client may escape any character): serde_json would unescape them
    // into its scratch buffer, which it frees without zeroing.
    let escape = |value: &str| {
        let (head, tail) = value.split_at(8);
        let first = tail.chars().next().unwrap();
        format!("{head}\\u{:04x}{}", first as u32, &tail[1..])
    };
    let escaped = Bytes::from(format!(
        r#"{{"apiKey":"{}","apiSecret":"{}"}}"#,
        escape(&key),
        escape(&secret)
    ));
    assert!(
        !escaped
            .windows(secret.len())
            .any(|w| w == secret.as_bytes())
    );
    assert_eq!(
        leaked_copies(&endpoint, &escaped).await,
        0,
        "escaped strings"
    );

    drop((plain, escaped));
}
