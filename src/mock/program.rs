//! The `axra-mock-server` program: its environment, what it prints, HTTP or HTTPS, and the stop
//! on SIGTERM or Ctrl-C.

use std::path::PathBuf;

use serde_json::json;

use super::{DEFAULT_CA_FILE, DEFAULT_PORT, MockServer, tls};

/// Runs the mock server as a program until SIGTERM or Ctrl-C: what `axra-mock-server` does.
///
/// Environment:
/// - `AXRA_API_KEY` and `AXRA_API_SECRET` (or `AXRA_API_KEY_FILE` / `AXRA_API_SECRET_FILE`):
///   the business's fixed credentials; when unset, new sandbox credentials are generated and
///   printed once.
/// - `PORT` (default 4010; `0` for a free port, the one printed) and `HOST` (default
///   `127.0.0.1`; `0.0.0.0` in a container).
/// - `AXRA_MOCK_TLS`: `1` or `true` serves HTTPS (HTTP/2 or HTTP/1.1 by ALPN) with a certificate
///   for `localhost`, `127.0.0.1`, `::1`, `HOST` when it is a DNS name or a specific IP address,
///   and the bound address, signed by a CA made at start. `0`, `false`, empty or unset: plain
///   HTTP; any other value is refused.
/// - `AXRA_MOCK_CA_FILE` (with HTTPS; default [`DEFAULT_CA_FILE`] in the working directory):
///   where the CA certificate (PEM, public) is written, through a temporary file and a rename,
///   so a job polling for it never reads half a file. It is written once the server listens,
///   replacing any earlier one.
///
/// Prints `AXRA_BASE_URL=http://HOST:PORT/api/v1` (`https://` with TLS, then
/// `AXRA_CA_FILE=<absolute path>`), `AXRA_BUSINESS_ID` and the generated credentials at start,
/// then one JSON line per request.
///
/// # Errors
///
/// An unusable variable (named, never its value), the bind error, or the CA file unwritable.
pub async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let serve_tls = tls::tls_switch(std::env::var_os(tls::ENV_MOCK_TLS).as_deref())?;
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port
            .trim()
            .parse()
            .map_err(|_| "PORT must be a port number")?,
        Err(_) => DEFAULT_PORT,
    };
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".to_owned());
    let mock = MockServer::from_env()?;
    let listener = tokio::net::TcpListener::bind((host.as_str(), port)).await?;
    // Before anything is printed (see `shutdown_signal`).
    let shutdown = shutdown_signal();
    let addr = listener.local_addr()?;
    let shown = if host == "0.0.0.0" || host == "::" {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    if serve_tls {
        let identity = tls::TlsIdentity::generate(&tls::extra_names(Some(&host), addr))?;
        let ca_file = match std::env::var_os(tls::ENV_MOCK_CA_FILE) {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => PathBuf::from(DEFAULT_CA_FILE),
        };
        // Before the URL is printed: whoever reads it finds the file.
        let ca_file = tls::write_ca_file(&ca_file, &identity.ca_pem)?;
        println!("AXRA_BASE_URL=https://{shown}/api/v1");
        println!("AXRA_CA_FILE={}", ca_file.display());
        print_business(&mock);
        tls::serve(listener, identity.config, mock.router(), shutdown).await;
    } else {
        println!("AXRA_BASE_URL=http://{shown}/api/v1");
        print_business(&mock);
        axum::serve(listener, mock.router())
            .with_graceful_shutdown(shutdown)
            .await?;
    }
    println!("{}", json!({"event": "shutdown"}));
    Ok(())
}

fn print_business(mock: &MockServer) {
    println!("AXRA_BUSINESS_ID={}", mock.business_id());
    if let Some(credentials) = mock.generated_credentials() {
        // Shown once, as Axra's dashboard does; the server keeps only SHA-256 digests.
        println!("AXRA_API_KEY={}", credentials.api_key().expose_secret());
        println!(
            "AXRA_API_SECRET={}",
            credentials.api_secret().expose_secret()
        );
    }
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT). The handlers are installed when this is called, not
/// when the future is first polled: the server's loop may not poll it before it answers its
/// first requests (a busy machine), and a SIGTERM arriving before the handler exists would
/// kill the process without its graceful shutdown. So it is called before the start lines are
/// printed, which is when a supervisor may start sending signals.
fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (term, interrupt) {
                (Ok(mut term), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
