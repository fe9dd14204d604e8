//! SigV4 for the submit URL: a function URL with `AuthType: AWS_IAM` admits a request signed for service `lambda`
//! in the URL's region by credentials whose principal may invoke it. The credentials are the caller's own, from
//! the same provider chain as every SDK client of the process (so profiles, SSO and roles work alike).

use std::time::SystemTime;

use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use gameforge_aws::PortError;

/// The region a function URL names (`https://<id>.lambda-url.<region>.on.aws`); `None` for any other host (a
/// local URL), which is signed for the configured region.
pub fn url_region(host: &str) -> Option<&str> {
    let rest = host.split_once(".lambda-url.")?.1;
    rest.split_once('.').map(|(region, _)| region).filter(|r| !r.is_empty())
}

/// Signs requests to one function URL as the configured caller.
#[derive(Debug, Clone)]
pub struct Signer {
    config: SdkConfig,
    region: String,
}

impl Signer {
    /// A signer for the URL on `host`: its own region, else the configured one.
    pub fn new(config: &SdkConfig, host: &str) -> Result<Self, PortError> {
        let region = url_region(host)
            .map(str::to_owned)
            .or_else(|| config.region().map(|r| r.as_ref().to_owned()))
            .ok_or_else(|| PortError::new("sign request", "no region: the URL names none and none is configured"))?;
        Ok(Self { config: config.clone(), region })
    }

    /// Adds the signature headers (`authorization`, `x-amz-date`, `x-amz-security-token`) to `request`, whose
    /// URI must be absolute. The body is signed with it.
    pub async fn sign(
        &self,
        request: &mut hyper::Request<http_body_util::Full<bytes::Bytes>>,
        body: &[u8],
    ) -> Result<(), PortError> {
        let provider = self
            .config
            .credentials_provider()
            .ok_or_else(|| PortError::new("sign request", "no AWS credentials are configured"))?;
        let credentials = provider.provide_credentials().await.map_err(|e| PortError::new("sign request", e))?;
        let identity: Identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("lambda")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| PortError::new("sign request", e))?
            .into();
        let uri = request.uri().to_string();
        let headers: Vec<(&str, &str)> =
            request.headers().iter().filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?))).collect();
        let signable =
            SignableRequest::new(request.method().as_str(), uri, headers.into_iter(), SignableBody::Bytes(body))
                .map_err(|e| PortError::new("sign request", e))?;
        let (instructions, _signature) =
            sign(signable, &params).map_err(|e| PortError::new("sign request", e))?.into_parts();
        instructions.apply_to_request_http1x(request);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_url_names_its_region() {
        assert_eq!(url_region("abc123.lambda-url.eu-west-1.on.aws"), Some("eu-west-1"));
        assert_eq!(url_region("127.0.0.1"), None);
        assert_eq!(url_region("example.com"), None);
    }
}
