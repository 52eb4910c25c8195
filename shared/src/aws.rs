//! AWS SDK configuration, built once per cold start with a pinned behavior version.

use aws_config::{BehaviorVersion, Region};

/// The HTTPS client every AWS SDK client uses: rustls with ring, the platform's roots.
pub fn http_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// Region from the standard environment (`AWS_REGION`, set by Lambda), else `us-east-1`;
/// endpoint overrides (`AWS_ENDPOINT_URL`) are honored for DynamoDB-compatible servers.
pub async fn sdk_config() -> aws_config::SdkConfig {
    let region = std::env::var("AWS_REGION")
        .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|_| "us-east-1".to_owned());
    aws_config::defaults(BehaviorVersion::v2026_01_12())
        .region(Region::new(region))
        .http_client(http_client())
        .load()
        .await
}
