//! Uploads through the artifact store's S3 API: path-style requests signed
//! for the `s3` service with the same keys as the API.
//!
//! Only what the CLI needs: making a bucket if it is missing and putting an
//! object. S3 answers errors in XML; their `Code` and `Message` become
//! [`ClientError::Api`].

use super::{Client, ClientError, RawResponse};

/// The signing name of S3.
const S3: &str = "s3";

impl Client {
    /// Makes `bucket` unless it exists already.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] when the store refuses the bucket, else
    /// transport errors.
    pub async fn ensure_bucket(&self, bucket: &str) -> Result<(), ClientError> {
        let path = format!("/{bucket}");
        let head = self.s3_send("HEAD", &path, Vec::new()).await?;
        if (200..300).contains(&head.status) {
            return Ok(());
        }

        let created = self.s3_send("PUT", &path, Vec::new()).await?;
        match s3_error(&created) {
            None => Ok(()),
            Some(error) if error.code() == Some("BucketAlreadyOwnedByYou") => Ok(()),
            Some(error) => Err(error),
        }
    }

    /// Puts `body` at `key` in `bucket` and returns its `s3://` URI.
    ///
    /// `key` is sent as it is: keep it to letters, digits, `-`, `_`, `.`
    /// and `/`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] when the store refuses the object, else
    /// transport errors.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> Result<String, ClientError> {
        let response = self
            .s3_send("PUT", &format!("/{bucket}/{key}"), body)
            .await?;
        match s3_error(&response) {
            None => Ok(format!("s3://{bucket}/{key}")),
            Some(error) => Err(error),
        }
    }

    /// Deletes `key` from `bucket` (deleting a missing key succeeds, as S3
    /// does).
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] when the store refuses, else transport errors.
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), ClientError> {
        let response = self
            .s3_send("DELETE", &format!("/{bucket}/{key}"), Vec::new())
            .await?;
        match s3_error(&response) {
            None => Ok(()),
            Some(error) => Err(error),
        }
    }

    async fn s3_send(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<RawResponse, ClientError> {
        let base = self.config.s3_endpoint.clone();
        self.send(S3, &base, method, path, "", body).await
    }
}

/// The error in an S3 response, if it is one.
fn s3_error(response: &RawResponse) -> Option<ClientError> {
    if (200..300).contains(&response.status) {
        return None;
    }
    let text = String::from_utf8_lossy(&response.body);
    let element = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].to_owned())
    };
    Some(ClientError::Api {
        code: element("Code").unwrap_or_else(|| format!("HTTP {}", response.status)),
        message: element("Message").unwrap_or_default(),
        status: response.status,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn s3_errors_read_from_their_xml() {
        let response = RawResponse {
            status: 403,
            headers: reqwest::header::HeaderMap::new(),
            body: b"<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code>\
                    <Message>no</Message></Error>"
                .to_vec(),
        };
        assert_eq!(
            s3_error(&response).unwrap().to_string(),
            "SignatureDoesNotMatch: no"
        );
    }
}
