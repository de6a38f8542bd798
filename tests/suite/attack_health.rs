//! Attack review (interactions): readiness (`TokenCache::health`, the documented `/ready` route)
//! against a token rejection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axra_auth::{AccessToken, TokenCache};

/// ATTACK: one 401 takes an instance out of service for most of an hour.
///
/// Readiness gates traffic: the orchestrator sends requests only while `/ready` (that is,
/// `health().is_ready()`) says yes. After a single rejection the cache drops its token and, by
/// design since 08f8d5d, does not wake the background refresher: "the next request fetches".
/// But the instance is now unready, so no next request comes; the refresher sleeps until the
/// dropped token's refresh time (54 min 30 s after a one-hour token was fetched). One spurious
/// 401 (an API deploy glitch, or, with `attack_redirects`, any origin our API redirects to)
/// takes the pod out of rotation for up to ~54 minutes, though the credentials are fine and a
/// fetch would succeed at once. This is issue 19 #8 ("readiness that never comes back") through
/// another door: rejection × health × background refresher.
///
/// Fix at the cause: when a rejection drops the token, have the refresher fetch after the
/// rejection hold (or a short settle time that lets credential watchers re-read files first),
/// or make `health()` wake the refresher when it finds no usable token and no backoff pending.
#[tokio::test(start_paused = true)]
async fn attack_one_rejection_keeps_the_instance_unready_without_traffic() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let cache = TokenCache::builder(move || {
        let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok(AccessToken::new(format!("t{n}"), Duration::from_secs(3600))) }
    })
    .build();
    let token = cache.token().await.unwrap();
    assert!(cache.health().is_ready());
    // Ten minutes of normal service, then one 401 for this token.
    tokio::time::sleep(Duration::from_secs(600)).await;
    cache.invalidate(&token);
    assert!(!cache.health().is_ready(), "unready: traffic stops");
    // The orchestrator probes every 10 s for five minutes; no request arrives meanwhile.
    let mut ready_after = None;
    for probe in 1..=30u64 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        if cache.health().is_ready() {
            ready_after = Some(probe * 10);
            break;
        }
    }
    assert!(
        ready_after.is_some(),
        "still unready 5 minutes after one rejection, with valid credentials ({} exchanges): \
         nothing fetches until the dropped token's refresh time, ~45 more minutes",
        calls.load(Ordering::SeqCst)
    );
}
