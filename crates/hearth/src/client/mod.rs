//! A client of `hearth serve`: the Lambda MicroVMs API and the artifact
//! store's S3 API over HTTP, signed with SigV4 as the AWS clients sign.
//!
//! [`ClientConfig::resolve`] finds where to connect and with which keys:
//! the API endpoint from `--endpoint-url`, else `HEARTH_ENDPOINT_URL`, else
//! `http://127.0.0.1:7070`; the S3 endpoint likewise from `--s3-endpoint-url`
//! or `HEARTH_S3_ENDPOINT_URL`, else `http://127.0.0.1:7071`; the keys from
//! the data directory's `api-credentials.json` (what `hearth serve`
//! writes), else the `hearth` profile of the AWS config files.
//!
//! Each operation is one typed call ([`operations`]); an error the server
//! answers in AWS's shape becomes [`ClientError::Api`], shown as
//! `<Code>: <message>`.

pub mod config;
pub mod operations;
pub mod s3;

use std::time::SystemTime;

use hearth_api::sigv4::signer::{sign_for, SigningRequest};
use hearth_api::{encode_input, EncodeError, Operation};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use config::ClientConfig;

/// Errors of a call to the API or the S3 API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an AWS error.
    #[error("{code}: {message}")]
    Api {
        /// The error code, such as `ResourceNotFoundException`.
        code: String,
        /// The server's message.
        message: String,
        /// The HTTP status.
        status: u16,
    },
    /// The server could not be reached or the exchange broke off.
    #[error("cannot reach {url}")]
    Transport {
        /// The URL called.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The response was not what the operation returns.
    #[error("unexpected response to {operation}")]
    Decode {
        /// The operation's name.
        operation: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The input could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// No credentials were found or they could not be read.
    #[error("{0}")]
    Credentials(String),
}

impl ClientError {
    /// The AWS error code, if the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether the server said the resource does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some("ResourceNotFoundException")
    }
}

/// A signed HTTP client of one `hearth serve`.
#[derive(Clone, Debug)]
pub struct Client {
    config: ClientConfig,
    http: reqwest::Client,
}

/// A response's status, headers and body.
struct RawResponse {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Client {
    /// A client for `config`.
    pub fn new(config: ClientConfig) -> Self {
        Self {
            config,
            http: reqwest::Client::new(),
        }
    }

    /// Where and as whom this client connects.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Calls `operation` with `input` and decodes its output.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] for an error the server answers, else transport,
    /// encoding or decoding errors.
    pub async fn call<I, O>(&self, operation: Operation, input: &I) -> Result<O, ClientError>
    where
        I: Serialize,
        O: DeserializeOwned,
    {
        let name = operation.spec().name;
        let value = serde_json::to_value(input).map_err(|source| ClientError::Decode {
            operation: name,
            source,
        })?;
        let encoded = encode_input(operation, &value)?;
        let response = self
            .send(
                "lambda",
                &self.config.endpoint,
                encoded.method,
                &encoded.path,
                &encoded.query,
                encoded.body,
            )
            .await?;

        if !(200..300).contains(&response.status) {
            return Err(api_error(&response));
        }
        let body = if response.body.iter().all(u8::is_ascii_whitespace) {
            b"{}".as_slice()
        } else {
            response.body.as_slice()
        };
        serde_json::from_slice(body).map_err(|source| ClientError::Decode {
            operation: name,
            source,
        })
    }

    /// Sends one request signed for `service` to `base` + `path`.
    async fn send(
        &self,
        service: &str,
        base: &reqwest::Url,
        method: &str,
        path: &str,
        query: &str,
        body: Vec<u8>,
    ) -> Result<RawResponse, ClientError> {
        let mut url = base.clone();
        url.set_path(path);
        url.set_query((!query.is_empty()).then_some(query));
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => String::new(),
        };

        let signed = sign_for(
            service,
            &self.config.credentials,
            &self.config.region,
            &SigningRequest {
                method,
                path,
                query,
                host: &host,
                body: &body,
            },
            SystemTime::now(),
        );
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .expect("operation methods are valid HTTP methods");
        let mut request = self
            .http
            .request(method, url.clone())
            .header("authorization", signed.authorization)
            .header("x-amz-date", signed.amz_date)
            .header("x-amz-content-sha256", signed.content_sha256);
        if !body.is_empty() {
            request = request.header("content-type", "application/json");
        }

        let transport = |source| ClientError::Transport {
            url: url.to_string(),
            source,
        };
        let response = request.body(body).send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(transport)?.to_vec();
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }
}

/// The AWS error in a rest-json error response: the code from
/// `x-amzn-errortype` (else the body's `__type` or `code`), the message
/// from the body's `message` or `Message`.
fn api_error(response: &RawResponse) -> ClientError {
    let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_default();
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| body.get(*name).and_then(|v| v.as_str()))
            .map(str::to_owned)
    };
    let code = response
        .headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| field(&["__type", "code", "Code"]))
        .map(|code| trim_code(&code))
        .unwrap_or_else(|| format!("HTTP {}", response.status));
    let message = field(&["message", "Message"])
        .unwrap_or_else(|| String::from_utf8_lossy(&response.body).trim().to_owned());
    ClientError::Api {
        code,
        message,
        status: response.status,
    }
}

/// An error code without the `:` suffix or `#` prefix some services add.
fn trim_code(code: &str) -> String {
    let code = code.split(':').next().unwrap_or(code);
    code.rsplit('#').next().unwrap_or(code).to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn response(status: u16, header: Option<&str>, body: &str) -> RawResponse {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(code) = header {
            headers.insert("x-amzn-errortype", code.parse().unwrap());
        }
        RawResponse {
            status,
            headers,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn aws_errors_read_as_code_and_message() {
        let error = api_error(&response(
            404,
            Some("ResourceNotFoundException:http://internal.amazon.com/"),
            r#"{"message":"microvm m not found"}"#,
        ));
        assert_eq!(
            error.to_string(),
            "ResourceNotFoundException: microvm m not found"
        );
        assert!(error.is_not_found());
    }

    #[test]
    fn an_error_without_a_header_takes_the_body_type() {
        let error = api_error(&response(
            400,
            None,
            r#"{"__type":"aws#ValidationException","Message":"bad name"}"#,
        ));
        assert_eq!(error.to_string(), "ValidationException: bad name");
    }

    #[test]
    fn an_error_that_is_not_json_keeps_its_status() {
        let error = api_error(&response(502, None, "bad gateway"));
        assert_eq!(error.to_string(), "HTTP 502: bad gateway");
    }
}
