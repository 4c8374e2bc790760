//! How every Minion client (CLI verbs, workers, pools, adapters, exporter, load generator)
//! authenticates to the API: a bearer token, and a CA to trust when the API serves TLS.

use std::path::PathBuf;

/// `MINION_TOKEN` and `MINION_CA_CERT` unless set otherwise.
#[derive(Debug, Clone, Default)]
pub struct ClientAuth {
    /// Sent as `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// A PEM file with the CA certificate(s) that signed the servers' certificates.
    pub ca_cert: Option<PathBuf>,
}

impl ClientAuth {
    pub fn from_env() -> ClientAuth {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        ClientAuth { token: var("MINION_TOKEN"), ca_cert: var("MINION_CA_CERT").map(PathBuf::from) }
    }

    /// Add the token and the CA to a client builder.
    pub fn apply(&self, mut b: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder, String> {
        if let Some(t) = &self.token {
            let mut headers = reqwest::header::HeaderMap::new();
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
                .map_err(|_| "the token has characters a header cannot carry".to_string())?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
            b = b.default_headers(headers);
        }
        if let Some(path) = &self.ca_cert {
            let pem = std::fs::read(path).map_err(|e| format!("reading the CA certificate {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("the CA certificate {} is not PEM: {e}", path.display()))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        Ok(b)
    }

    /// A client with these credentials and the builder's other settings.
    pub fn build(&self, b: reqwest::ClientBuilder) -> Result<reqwest::Client, String> {
        self.apply(b)?.build().map_err(|e| format!("building the HTTP client: {e}"))
    }
}
