//! AWS SDK configuration, built once per cold start with a pinned behavior version.

use aws_config::{BehaviorVersion, Region};

/// The roots every AWS endpoint's certificate chains to (Amazon Trust Services): Amazon Root
/// CA 1–4 and the Starfield Services root that cross-signs them.
pub const AWS_ROOTS_PEM: &[u8] = include_bytes!("../certs/aws-roots.pem");

/// Which roots the HTTPS client trusts (`GATEHOUSE_TLS_ROOTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsRoots {
    /// [`AWS_ROOTS_PEM`]: five certificates, parsed at cold start in microseconds.
    #[default]
    Aws,
    /// The platform's store (about 150 certificates read from files and parsed at cold start;
    /// most of a function's init before this change, docs/performance.md "Cold start"): for
    /// a TLS-inspecting proxy or a partition whose endpoints chain elsewhere.
    Platform,
}

impl TlsRoots {
    /// `GATEHOUSE_TLS_ROOTS`: `aws` (the default) or `platform`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "aws" => Some(Self::Aws),
            "platform" => Some(Self::Platform),
            _ => None,
        }
    }

    /// From the environment; a value other than the two is refused by `Config::from_env`
    /// first, and reads as the default here.
    pub fn from_env() -> Self {
        std::env::var("GATEHOUSE_TLS_ROOTS")
            .ok()
            .and_then(|v| Self::parse(&v))
            .unwrap_or_default()
    }

    pub fn trust_store(self) -> aws_smithy_http_client::tls::TrustStore {
        use aws_smithy_http_client::tls::TrustStore;
        match self {
            Self::Aws => TrustStore::empty().with_pem_certificate(AWS_ROOTS_PEM),
            Self::Platform => TrustStore::default(),
        }
    }
}

/// The HTTPS client every AWS SDK client uses: rustls with ring, trusting [`TlsRoots::from_env`].
pub fn http_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    http_client_with(TlsRoots::from_env())
}

pub fn http_client_with(roots: TlsRoots) -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    let builder = aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(
        tls::rustls_provider::CryptoMode::Ring,
    ));
    // Building a context from a trust store only fails for a provider that cannot hold it;
    // rustls holds both.
    match tls::TlsContext::builder()
        .with_trust_store(roots.trust_store())
        .build()
    {
        Ok(context) => builder.tls_context(context).build_https(),
        Err(_) => builder.build_https(),
    }
}

/// The pinned behavior version of every AWS SDK client.
fn behavior() -> BehaviorVersion {
    BehaviorVersion::v2026_01_12()
}

/// `AWS_REGION` (set by Lambda), else `AWS_DEFAULT_REGION`, else `us-east-1`.
fn region() -> Region {
    let region = std::env::var("AWS_REGION")
        .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|_| "us-east-1".to_owned());
    Region::new(region)
}

/// The full default chain of credentials (environment, profiles with SSO and
/// `credential_process`, web identity, containers, instance metadata): for the operator's CLI
/// and the local server, run from a laptop or a CI job. Endpoint overrides (`AWS_ENDPOINT_URL`)
/// are honored for DynamoDB-compatible servers.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(behavior())
        .region(region())
        .http_client(http_client())
        .load()
        .await
}

/// What a Lambda function needs and nothing else: the credentials Lambda puts in the
/// environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), the region,
/// and `AWS_ENDPOINT_URL` when set. Retries, timeouts, the identity cache and the sleep come
/// from the clients' defaults for the pinned behavior version. Without the default chain, no profile file is
/// read at cold start, and its providers (STS, SSO, instance metadata, containers) are not
/// linked into the functions (docs/performance.md, "Binary size").
pub fn lambda_sdk_config() -> aws_config::SdkConfig {
    use aws_config::environment::EnvironmentVariableCredentialsProvider;
    use aws_sdk_dynamodb::config::SharedCredentialsProvider;
    let builder = aws_config::SdkConfig::builder()
        .behavior_version(behavior())
        .region(region())
        .http_client(http_client())
        .credentials_provider(SharedCredentialsProvider::new(
            EnvironmentVariableCredentialsProvider::new(),
        ));
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(url) if !url.trim().is_empty() => builder.endpoint_url(url).build(),
        _ => builder.build(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use sha2::{Digest, Sha256};

    /// The SHA-256 fingerprints Amazon Trust Services publishes for its roots
    /// (<https://www.amazontrust.com/repository/>).
    const PUBLISHED: [&str; 5] = [
        "8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e", // Amazon Root CA 1
        "1ba5b2aa8c65401a82960118f80bec4f62304d83cec4713a19c39c011ea46db4", // Amazon Root CA 2
        "18ce6cfe7bf14e60b2e347b8dfe868cb31d02ebb3ada271569f50343b46db3a4", // Amazon Root CA 3
        "e35d28419ed02025cfa69038cd623962458da5c695fbdea3c22b0bfb25897092", // Amazon Root CA 4
        "568d6905a2c88708a4b3025190edcfedb1974a606a13c6e5290fcb2ae63edab5", // Starfield Services G2
    ];

    fn certificates() -> Vec<Vec<u8>> {
        let pem = std::str::from_utf8(AWS_ROOTS_PEM).unwrap_or_default();
        pem.split("-----BEGIN CERTIFICATE-----")
            .skip(1)
            .map(|block| {
                let body: String = block
                    .split("-----END CERTIFICATE-----")
                    .next()
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect();
                base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .unwrap_or_default()
            })
            .collect()
    }

    #[test]
    fn the_bundled_roots_are_exactly_amazon_trust_services_roots() {
        let fingerprints: Vec<String> = certificates()
            .iter()
            .map(|der| {
                Sha256::digest(der)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            })
            .collect();
        assert_eq!(fingerprints, PUBLISHED);
    }

    #[test]
    fn roots_are_aws_unless_platform_is_asked_for() {
        assert_eq!(TlsRoots::default(), TlsRoots::Aws);
        assert_eq!(TlsRoots::parse("aws"), Some(TlsRoots::Aws));
        assert_eq!(TlsRoots::parse("platform"), Some(TlsRoots::Platform));
        assert_eq!(TlsRoots::parse("Platform"), None);
        assert_eq!(TlsRoots::parse(""), None);
    }
}
