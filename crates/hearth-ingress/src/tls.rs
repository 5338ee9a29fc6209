//! The HTTPS listener's certificate: the one configured, else a
//! self-signed one made on first start and kept in the data directory,
//! naming `*.localhost`, `localhost` and the endpoint domain.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Errors setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("cannot use {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path} holds no usable {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// A certificate or a key.
        what: &'static str,
    },
    /// The certificate could not be made.
    #[error("cannot make a certificate")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate or key.
    #[error("the certificate or key is not usable")]
    Rustls(#[from] rustls::Error),
}

/// The certificate chain and key files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// The self-signed pair's place in `data_dir`.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self {
            cert: data_dir.join("ingress-cert.pem"),
            key: data_dir.join("ingress-key.pem"),
        }
    }

    /// Makes a self-signed pair for `domain` here unless one exists.
    ///
    /// # Errors
    ///
    /// [`TlsError`] when it cannot be made or written.
    pub fn ensure_self_signed(&self, domain: &str) -> Result<(), TlsError> {
        if self.cert.is_file() && self.key.is_file() {
            return Ok(());
        }
        let mut names = vec!["localhost".to_owned(), "*.localhost".to_owned()];
        if domain != "localhost" {
            names.push(domain.to_owned());
            names.push(format!("*.{domain}"));
        }
        let made = rcgen::generate_simple_self_signed(names)?;
        write_private(&self.key, made.signing_key.serialize_pem().as_bytes())?;
        write_private(&self.cert, made.cert.pem().as_bytes())?;
        tracing::info!(cert = %self.cert.display(), "made a self-signed ingress certificate");
        Ok(())
    }
}

/// A rustls server configuration for `files`, offering HTTP/2 and HTTP/1.1.
///
/// # Errors
///
/// [`TlsError`] when the files cannot be read or used.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let pem_error = |path: &Path, what| TlsError::Pem {
        path: path.to_owned(),
        what,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|_| pem_error(&files.cert, "certificate"))?
        .collect::<Result<_, _>>()
        .map_err(|_| pem_error(&files.cert, "certificate"))?;
    if certs.is_empty() {
        return Err(pem_error(&files.cert, "certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|_| pem_error(&files.key, "key"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Writes a file only its owner can read, atomically.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| TlsError::Io {
        path: path.to_owned(),
        source,
    };
    let temp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&temp, path).map_err(io)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_made_once_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles::in_data_dir(dir.path());
        files.ensure_self_signed("example.test").unwrap();
        let first = std::fs::read(&files.cert).unwrap();
        files.ensure_self_signed("example.test").unwrap();
        assert_eq!(std::fs::read(&files.cert).unwrap(), first);
        let config = server_config(&files).unwrap();
        assert_eq!(config.alpn_protocols[0], b"h2");
    }
}
