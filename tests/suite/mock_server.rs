//! The mock server as a Rust user's test starts it: fixed credentials, the token exchange, the
//! echoing catch-all, key regeneration, the JWKS and /health, over real HTTP on 127.0.0.1.
#![cfg(feature = "mock-server")]

use crate::common;

use axra_auth::mock::MockServer;
use axra_auth::{ApiKey, ApiSecret, AxraTokenProvider, Credentials, TokenProvider};
use bytes::Bytes;
use common::{body_json, hyper_client};
use http_body_util::Full;

const KEY: &str = "bk_test_fixed_mock_key_0001";
const SECRET: &str = "bs_test_fixed_mock_secret_0001";

async fn send(
    method: &str,
    url: String,
    header: Option<(&str, String)>,
) -> (u16, serde_json::Value) {
    let mut request = http::Request::builder().method(method).uri(url);
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    let request = request.body(Full::<Bytes>::default()).unwrap();
    body_json(hyper_client().request(request).await.unwrap()).await
}

#[tokio::test]
async fn the_mock_server_serves_fixed_credentials_and_regenerates_them() {
    let credentials = Credentials::new(ApiKey::new(KEY).unwrap(), ApiSecret::new(SECRET).unwrap());
    let mock = MockServer::with_credentials(&credentials).unwrap();
    assert!(mock.generated_credentials().is_none());
    let running = mock.spawn("127.0.0.1:0").await.unwrap();
    let base = running.base_url();

    let (status, body) = send("GET", format!("http://{}/health", running.addr()), None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));

    // The fixed key, directly and through the token exchange.
    let (status, body) = send(
        "GET",
        format!("{base}/business/anything/at/all"),
        Some(("x-api-key", KEY.to_owned())),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["businessId"], mock.business_id());
    assert_eq!(body["data"]["method"], "api_key");
    assert_eq!(body["data"]["path"], "/api/v1/business/anything/at/all");

    let provider = AxraTokenProvider::new(hyper_client(), credentials)
        .with_base_url(&base)
        .unwrap();
    let token = provider.fetch_token().await.unwrap();
    let (status, body) = send(
        "POST",
        format!("{base}/business/checkout/session"),
        Some(("authorization", format!("Bearer {}", token.expose_secret()))),
    )
    .await;
    assert_eq!(
        (status, body["data"]["method"].as_str()),
        (200, Some("bearer"))
    );

    // The JWKS publishes the signing key.
    let (status, body) = send(
        "GET",
        format!("http://{}/.well-known/jwks.json", running.addr()),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["keys"][0]["kid"], "mock-1");

    // Regeneration: new credentials answered, the old key refused at once.
    let (status, body) = send(
        "POST",
        format!(
            "http://{}/mock/businesses/{}/regenerate",
            running.addr(),
            mock.business_id()
        ),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let new_key = body["data"]["apiKey"].as_str().unwrap().to_owned();
    assert!(new_key.starts_with("bk_test_") && new_key != KEY);
    let (status, _) = send(
        "GET",
        format!("{base}/business/x"),
        Some(("x-api-key", KEY.to_owned())),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = send(
        "GET",
        format!("{base}/business/x"),
        Some(("x-api-key", new_key)),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = send(
        "POST",
        format!(
            "http://{}/mock/businesses/biz_nobody/regenerate",
            running.addr()
        ),
        None,
    )
    .await;
    assert_eq!(status, 404);
    running.shutdown().await;
}

/// The fixed credentials' mock, its base URL's origin (`https://127.0.0.1:PORT`) and its CA
/// roots, served over TLS.
#[cfg(feature = "rustls")]
async fn tls_mock() -> (
    MockServer,
    axra_auth::mock::RunningMock,
    rustls::RootCertStore,
) {
    let credentials = Credentials::new(ApiKey::new(KEY).unwrap(), ApiSecret::new(SECRET).unwrap());
    let mock = MockServer::with_credentials(&credentials).unwrap();
    let running = mock.spawn_tls("127.0.0.1:0").await.unwrap();
    let roots = roots_of(running.ca_certificate_pem().expect("a TLS mock has a CA"));
    (mock, running, roots)
}

#[cfg(feature = "rustls")]
fn roots_of(pem: &str) -> rustls::RootCertStore {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(certificate.unwrap()).unwrap();
    }
    assert_eq!(roots.len(), 1, "one CA certificate");
    roots
}

#[cfg(feature = "rustls")]
async fn get_https(
    client: &axra_auth::https::HttpsClient,
    url: String,
    bearer: Option<&str>,
) -> Result<(u16, http::Version, serde_json::Value), hyper_util::client::legacy::Error> {
    let mut request = http::Request::get(url);
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = client
        .request(request.body(Full::<Bytes>::default()).unwrap())
        .await?;
    let version = response.version();
    let (status, body) = body_json(response).await;
    Ok((status, version, body))
}

#[cfg(feature = "rustls")]
#[tokio::test]
async fn spawn_tls_serves_the_token_exchange_and_the_api_to_a_client_trusting_its_ca_alone() {
    let (mock, running, roots) = tls_mock().await;
    let base = running.base_url();
    assert_eq!(base, format!("https://{}/api/v1", running.addr()));
    let origin = base.trim_end_matches("/api/v1").to_owned();
    let https = axra_auth::https::client_with_roots(roots);

    let (status, version, body) = get_https(&https, format!("{origin}/health"), None)
        .await
        .unwrap();
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    assert_eq!(version, http::Version::HTTP_2, "h2 negotiated by ALPN");

    let credentials = Credentials::new(ApiKey::new(KEY).unwrap(), ApiSecret::new(SECRET).unwrap());
    let provider = AxraTokenProvider::new(https.clone(), credentials)
        .with_base_url(&base)
        .unwrap();
    let token = provider.fetch_token().await.unwrap();
    let (status, _, body) = get_https(
        &https,
        format!("{base}/business/x"),
        Some(token.expose_secret()),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["method"], "bearer");
    assert_eq!(body["data"]["businessId"], mock.business_id());
    assert_eq!(body["data"]["path"], "/api/v1/business/x");

    let (status, _, _) = get_https(&https, format!("{base}/business/x"), Some("not-a-token"))
        .await
        .unwrap();
    assert_eq!(status, 401);

    // Shutdown ends the server (the kept-alive connection is closed or cut) and frees the port.
    let addr = running.addr();
    tokio::time::timeout(std::time::Duration::from_secs(10), running.shutdown())
        .await
        .expect("shutdown within the grace");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[cfg(feature = "rustls")]
#[tokio::test]
async fn a_client_that_does_not_trust_the_mock_ca_fails_the_handshake() {
    let (_mock, running, roots) = tls_mock().await;
    // Another run's CA, as a stale CA file would hold.
    let (_other, other_running, other_roots) = tls_mock().await;
    assert_ne!(
        running.ca_certificate_pem(),
        other_running.ca_certificate_pem()
    );
    let health = format!("https://{}/health", running.addr());

    let stranger = axra_auth::https::client_with_roots(other_roots);
    let error = get_https(&stranger, health.clone(), None)
        .await
        .expect_err("a CA it does not trust");
    assert!(error.is_connect(), "{error:?}");
    let chain = format!("{error:?}");
    assert!(chain.contains("UnknownIssuer"), "{chain}");

    // The same server answers a client that trusts its CA.
    let trusting = axra_auth::https::client_with_roots(roots);
    let (status, _, _) = get_https(&trusting, health, None).await.unwrap();
    assert_eq!(status, 200);
}

/// The `axra-mock-server` binary with `vars` (and no inherited credentials or TLS settings).
#[cfg(unix)]
fn mock_binary(vars: &[(&str, &std::ffi::OsStr)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_axra-mock-server"));
    for name in [
        "AXRA_API_KEY",
        "AXRA_API_SECRET",
        "AXRA_API_KEY_FILE",
        "AXRA_API_SECRET_FILE",
        "AXRA_MOCK_TLS",
        "AXRA_MOCK_CA_FILE",
        "HOST",
        "PORT",
    ] {
        command.env_remove(name);
    }
    command
        .envs(vars.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    command
}

/// The mock server binary on a free port with the fixed credentials, `AXRA_MOCK_TLS=tls` and its
/// CA file at `ca_file`, and its output line by line.
#[cfg(unix)]
fn spawn_with_fixed_credentials(
    tls: &str,
    ca_file: &std::path::Path,
) -> (
    tokio::process::Child,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut child = mock_binary(&[
        ("AXRA_MOCK_TLS", tls.as_ref()),
        ("AXRA_MOCK_CA_FILE", ca_file.as_os_str()),
        ("PORT", "0".as_ref()),
        ("AXRA_API_KEY", KEY.as_ref()),
        ("AXRA_API_SECRET", SECRET.as_ref()),
    ])
    .spawn()
    .unwrap();
    let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// Sends SIGTERM to the mock server and reads its output to the end: whether it logged its
/// shutdown, and how it exited.
#[cfg(unix)]
async fn sigterm_and_wait(
    child: &mut tokio::process::Child,
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> (bool, std::process::ExitStatus) {
    let pid = i32::try_from(child.id().unwrap()).unwrap();
    // SAFETY: kill(2) on our own child's pid, which we have not waited for yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    tokio::time::timeout(std::time::Duration::from_secs(15), async {
        let mut shutdown_logged = false;
        while let Some(line) = lines.next_line().await.unwrap() {
            shutdown_logged |= line.contains(r#""event":"shutdown""#);
        }
        (shutdown_logged, child.wait().await.unwrap())
    })
    .await
    .expect("exits after SIGTERM")
}

#[cfg(all(unix, feature = "rustls"))]
#[tokio::test]
async fn the_binary_serves_https_writes_its_ca_file_and_stops_on_sigterm() {
    use std::time::Duration;

    let dir = std::env::temp_dir().join(format!("axra-mock-tls-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    let (mut child, mut lines) = spawn_with_fixed_credentials("1", &ca_file);

    let (mut base_url, mut printed_ca_file) = (None, None);
    tokio::time::timeout(Duration::from_secs(30), async {
        while base_url.is_none() || printed_ca_file.is_none() {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("the server's start lines");
            if let Some(url) = line.strip_prefix("AXRA_BASE_URL=") {
                base_url = Some(url.to_owned());
            } else if let Some(path) = line.strip_prefix("AXRA_CA_FILE=") {
                printed_ca_file = Some(path.to_owned());
            }
        }
    })
    .await
    .expect("AXRA_BASE_URL and AXRA_CA_FILE printed at start");
    let base_url = base_url.unwrap();
    assert_eq!(
        printed_ca_file.as_deref(),
        ca_file.to_str(),
        "the absolute path"
    );
    let origin = base_url.strip_suffix("/api/v1").expect("a base URL");
    let port: u16 = origin
        .strip_prefix("https://127.0.0.1:")
        .expect("https on loopback")
        .parse()
        .unwrap();
    assert_ne!(port, 0, "the bound port, not the one asked for");

    let pem = std::fs::read_to_string(&ca_file).unwrap();
    let https = axra_auth::https::client_with_roots(roots_of(&pem));
    let (status, _, body) = get_https(&https, format!("{origin}/health"), None)
        .await
        .unwrap();
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));

    let (shutdown_logged, exit) = sigterm_and_wait(&mut child, &mut lines).await;
    assert!(shutdown_logged, "logs its shutdown");
    assert!(exit.success(), "{exit:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A supervisor may send SIGTERM as soon as the server has printed where it listens: the
/// handler must exist by then, or the signal kills the process without its graceful shutdown
/// (this failed under load when the handler was installed on the shutdown future's first poll).
#[cfg(unix)]
#[tokio::test]
async fn a_sigterm_right_after_the_start_lines_shuts_down_gracefully() {
    use std::time::Duration;

    for tls in ["0", "1"] {
        let dir =
            std::env::temp_dir().join(format!("axra-mock-early-term-{}-{tls}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_file = dir.join("ca.pem");
        let (mut child, mut lines) = spawn_with_fixed_credentials(tls, &ca_file);
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("a start line")
            .unwrap()
            .expect("a start line");
        assert!(first.starts_with("AXRA_BASE_URL="), "{first}");
        let (shutdown_logged, exit) = sigterm_and_wait(&mut child, &mut lines).await;
        assert!(exit.success(), "TLS {tls}: {exit:?}");
        assert!(shutdown_logged, "TLS {tls}: logs its shutdown");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(unix)]
#[tokio::test]
async fn the_binary_refuses_an_unclear_tls_switch_naming_the_variable() {
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        mock_binary(&[("AXRA_MOCK_TLS", "maybe".as_ref()), ("PORT", "0".as_ref())]).output(),
    )
    .await
    .expect("exits at once")
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("AXRA_MOCK_TLS"), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !stdout.contains("AXRA_BASE_URL"),
        "refused before serving: {stdout}"
    );
}
