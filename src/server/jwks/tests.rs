//! A verifier following a JWKS: unknown kids, rotations and the bounds on fetches, in virtual
//! time.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tokio::time::Instant;
use tower_service::Service;

use super::*;
use crate::server::{SigningKey, TokenIssuer, TokenVerifier, VerifyError};

/// What the layer does for a token refused for its unknown key: wait for the JWKS to learn it.
async fn learn_kid(verifier: &TokenVerifier, token: &str) {
    if let Some(learning) = verifier.learn_kid(token) {
        learning.await;
    }
}

/// A JWKS "server" answering after `FETCH` with the keys `issuer` published when the fetch
/// started (so a fetch that started before a rotation does not see its key); counts fetches.
fn slow_jwks(
    issuer: &TokenIssuer,
    fetches: &Arc<AtomicU64>,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
> + Clone
+ Send
+ Sync
+ 'static {
    let (issuer, fetches) = (issuer.clone(), Arc::clone(fetches));
    tower::service_fn(move |_: Request<Full<Bytes>>| {
        fetches.fetch_add(1, Ordering::SeqCst);
        let body = serde_json::to_vec(&issuer.jwks()).unwrap();
        async move {
            tokio::time::sleep(FETCH).await;
            Ok::<_, Infallible>(Response::new(Full::from(body)))
        }
    })
}

const FETCH: Duration = Duration::from_millis(50);

fn made_up(i: u64) -> String {
    use base64::Engine;
    let header = format!(r#"{{"alg":"EdDSA","kid":"made-up-{i}"}}"#);
    format!(
        "{}.eyJzdWIiOiJ4In0.c2ln",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header)
    )
}

/// An attacker sends a token with a new made-up kid every millisecond for 20 s (virtual
/// time); meanwhile the issuer rotates 40 times, at offsets spread over the fetch cycle, and
/// the first token of each new key arrives right after. Measured: every new key is accepted
/// after one wait of at most the interval plus one fetch, and the attacker causes at most one
/// fetch per interval.
#[tokio::test(start_paused = true)]
async fn made_up_kids_cost_one_fetch_per_interval_and_never_delay_a_new_key() {
    let issuer = TokenIssuer::from_key(SigningKey::generate_ed25519("k0").unwrap());
    let fetches = Arc::new(AtomicU64::new(0));
    let verifier = JwksSource::new(slow_jwks(&issuer, &fetches), "http://127.0.0.1/jwks")
        .unwrap()
        .connect()
        .await
        .unwrap();
    let interval = DEFAULT_UNKNOWN_KID_INTERVAL;
    let started = Instant::now();
    let before = fetches.load(Ordering::SeqCst);

    let attacker = {
        let verifier = verifier.clone();
        tokio::spawn(async move {
            for i in 0.. {
                let verifier = verifier.clone();
                tokio::spawn(async move {
                    let token = made_up(i);
                    learn_kid(&verifier, &token).await;
                    assert!(verifier.verify(&token).is_err());
                });
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };

    let business = crate::server::BusinessRecord {
        id: "biz_1".into(),
        name: "Acme".into(),
        environment: crate::Environment::Test,
        key_generation: 1,
    };
    let mut worst = Duration::ZERO;
    for k in 1..=40u64 {
        // Offsets 0..480 ms apart (in 37 ms steps mod 480) hit every phase of the cycle.
        tokio::time::sleep(Duration::from_millis(k * 37 % 480)).await;
        issuer.rotate(SigningKey::generate_ed25519(format!("k{k}")).unwrap());
        let token = issuer.issue(&business).unwrap();
        let token = token.expose_secret();
        assert_eq!(verifier.verify(token).unwrap_err(), VerifyError::UnknownKey);
        let arrived = Instant::now();
        learn_kid(&verifier, token).await;
        assert!(verifier.verify(token).is_ok(), "key k{k} refused");
        worst = worst.max(arrived.elapsed());
        // A JWKS holds at most 32 keys: keep two.
        issuer.retire(&format!("k{}", k - 1));
    }
    attacker.abort();
    let elapsed = started.elapsed();
    let fetched = fetches.load(Ordering::SeqCst) - before;
    // Fetches start at least an interval apart: k of them span (k - 1) intervals.
    let bound = 1 + (elapsed.as_millis() / interval.as_millis()) as u64;
    println!(
        "{} made-up kids over {elapsed:?}: {fetched} fetches (bound {bound}); worst wait for a new key {worst:?}",
        elapsed.as_millis()
    );
    assert!(fetched <= bound, "{fetched} fetches in {elapsed:?}");
    assert!(worst <= interval + FETCH, "a new key waited {worst:?}");
}

/// While the JWKS server fails, unknown kids are refused at once (no wait) and cost one
/// fetch per interval.
#[tokio::test(start_paused = true)]
async fn a_failing_jwks_refuses_unknown_kids_at_once() {
    let issuer = TokenIssuer::from_key(SigningKey::generate_ed25519("k0").unwrap());
    let fetches = Arc::new(AtomicU64::new(0));
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (jwks, switch) = (slow_jwks(&issuer, &fetches), Arc::clone(&down));
    let client = tower::service_fn(move |request: Request<Full<Bytes>>| {
        let mut jwks = jwks.clone();
        let down = switch.load(Ordering::SeqCst);
        async move {
            let mut response = jwks.call(request).await?;
            if down {
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            }
            Ok::<_, Infallible>(response)
        }
    });
    let verifier = JwksSource::new(client, "http://127.0.0.1/jwks")
        .unwrap()
        .connect()
        .await
        .unwrap();
    down.store(true, Ordering::SeqCst);
    learn_kid(&verifier, &made_up(0)).await;
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    let at = Instant::now();
    for i in 1..100 {
        learn_kid(&verifier, &made_up(i)).await;
    }
    assert_eq!(at.elapsed(), Duration::ZERO, "refused at once");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    tokio::time::sleep(DEFAULT_UNKNOWN_KID_INTERVAL).await;
    down.store(false, Ordering::SeqCst);
    issuer.rotate(SigningKey::generate_ed25519("k1").unwrap());
    let business = crate::server::BusinessRecord {
        id: "biz_1".into(),
        name: "Acme".into(),
        environment: crate::Environment::Test,
        key_generation: 1,
    };
    let token = issuer.issue(&business).unwrap();
    learn_kid(&verifier, token.expose_secret()).await;
    assert!(verifier.verify(token.expose_secret()).is_ok());
    assert_eq!(fetches.load(Ordering::SeqCst), 3);
}

/// The periodic refresh holds only a weak reference to the live key set: a verifier derived
/// with `with_legacy_key` shares that set, so the refresh reaches it, even once the verifier
/// it was derived from is gone.
#[tokio::test(start_paused = true)]
async fn the_periodic_refresh_reaches_a_derived_verifier_alone() {
    let issuer = TokenIssuer::from_key(SigningKey::generate_ed25519("k1").unwrap());
    issuer.rotate(SigningKey::generate_ed25519("k2").unwrap());
    let fetches = Arc::new(AtomicU64::new(0));
    let verifier = JwksSource::new(slow_jwks(&issuer, &fetches), "http://127.0.0.1/jwks")
        .unwrap()
        .with_refresh_every(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    let legacy = crate::server::VerifyingKey::hs256("legacy", &[7; 32]).unwrap();
    let derived = verifier.clone().with_legacy_key(legacy);
    drop(verifier);
    assert_eq!(derived.kids(), ["k1", "k2"]);
    assert!(issuer.retire("k1"));
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(derived.kids(), ["k2"], "k1 was withdrawn");
    assert_eq!(derived.jwks_fetches(), 2);
}

#[test]
fn only_https_or_this_machine() {
    let client = tower::service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
    });
    assert!(JwksSource::new(client, "https://auth.example.com/jwks.json").is_ok());
    assert!(JwksSource::new(client, "http://127.0.0.1:9/jwks.json").is_ok());
    assert!(JwksSource::new(client, "http://auth.example.com/jwks.json").is_err());
    assert!(JwksSource::new(client, "https://u:p@auth.example.com/").is_err());
    assert!(JwksSource::new(client, "ftp://auth.example.com/").is_err());
}
