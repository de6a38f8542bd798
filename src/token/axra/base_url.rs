//! Base URLs of the token exchange: turned into the token endpoint's URI exactly as written, or
//! refused. The key and secret go wherever this URI points, so the checks are strict: no user
//! information, query or fragment, nothing the URI parser would change, and plain `http://`
//! only to this machine unless the caller opts in.

use http::Uri;

use super::TOKEN_PATH;
use crate::error::InvalidBaseUrl;

/// Whether plain `http://` is accepted for a base URL's host.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlainHttp {
    /// Only for loopback hosts (127.0.0.0/8, `::1`, `localhost`): the credentials never leave
    /// the machine.
    LoopbackOnly,
    /// For any host: the key and secret cross the network in clear text.
    Anywhere,
}

/// Turns a base URL into the token endpoint's URI: exactly `{base_url}/business/auth/token`, or
/// an error.
pub(crate) fn token_uri(base_url: &str, plain_http: PlainHttp) -> Result<Uri, InvalidBaseUrl> {
    let base = base_url.trim_end_matches('/');
    if base.contains('#') {
        // `http::Uri` drops a fragment and everything after it, so the exchange would be posted
        // to the base URL itself.
        return Err(InvalidBaseUrl::new("it has a fragment (#)"));
    }
    if base.contains('?') {
        return Err(InvalidBaseUrl::new("it has a query string"));
    }
    let wanted = format!("{base}{TOKEN_PATH}");
    let uri: Uri = wanted
        .parse()
        .map_err(|_| InvalidBaseUrl::new("it is not a valid URI"))?;
    let scheme = match uri.scheme_str() {
        Some(scheme @ ("http" | "https")) => scheme,
        Some(_) => return Err(InvalidBaseUrl::new("its scheme is neither http nor https")),
        None => {
            return Err(InvalidBaseUrl::new(
                "it has no scheme (http:// or https://)",
            ));
        }
    };
    match uri.authority() {
        None => return Err(InvalidBaseUrl::new("it has no host")),
        // Credentials in a URL end up in transport errors' text (and proxies' logs).
        Some(authority) if authority.as_str().contains('@') => {
            return Err(InvalidBaseUrl::new(
                "it holds user information (user:password@)",
            ));
        }
        Some(_) => {}
    }
    if uri.query().is_some() {
        return Err(InvalidBaseUrl::new("it has a query string"));
    }
    // Whatever the parser would change or drop, the exchange must go exactly where the caller
    // said.
    if uri.to_string() != wanted {
        return Err(InvalidBaseUrl::new(
            "it does not survive parsing unchanged (unexpected characters)",
        ));
    }
    if scheme == "http" && plain_http == PlainHttp::LoopbackOnly && !is_loopback(uri.host()) {
        return Err(InvalidBaseUrl::new(
            "it is plain http:// to a host other than this machine, which would send the key \
             and secret in clear text; use https://, or with_insecure_http_base_url if you mean it",
        ));
    }
    Ok(uri)
}

/// Whether `host` is this machine: `localhost`, 127.0.0.0/8 or `::1`.
pub(crate) fn is_loopback(host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::DEFAULT_BASE_URL;

    #[test]
    fn base_urls_are_checked() {
        let loopback = |url| token_uri(url, PlainHttp::LoopbackOnly);
        let uri = loopback("http://127.0.0.1:4010/api/v1/").unwrap();
        assert_eq!(uri, "http://127.0.0.1:4010/api/v1/business/auth/token");
        assert_eq!(
            loopback(DEFAULT_BASE_URL).unwrap(),
            "https://api.useaxra.com/api/v1/business/auth/token"
        );
        for bad in [
            "",
            "api.useaxra.com/api/v1",
            "ftp://x/y",
            "http://",
            "http://a b",
            "https://user:pw@api.example.com/v1",
            "https://api.example.com/v1?x=1",
            // A fragment would silently drop the token path.
            "https://api.example.com/api/v1#frag",
            "https://api.example.com/api/v1#",
            "http://127.0.0.1:4010/api/v1#/x",
        ] {
            assert!(loopback(bad).is_err(), "{bad}");
        }
        assert!(
            loopback("https://api.example.com/api/v1#frag")
                .unwrap_err()
                .to_string()
                .contains("fragment")
        );
    }
}
