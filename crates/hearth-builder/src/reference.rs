//! Image references: `name[:tag][@digest]` with an optional registry host.
//!
//! The first path component is a registry host when it contains a `.` or a
//! `:` or is `localhost` (Docker's rule), so `127.0.0.1:5000/x:y` and
//! `host.tld/x` name registries while `debian:12` and `busybox` are bare
//! names. A reference without tag or digest means `:latest`.

use std::fmt;
use std::net::IpAddr;

/// Why a reference is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The reference is empty or malformed; `reason` says how.
    #[error("invalid image reference {reference:?}: {reason}")]
    Invalid {
        /// The reference as given.
        reference: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// The registry host (and port), when the reference names one.
    pub registry: Option<String>,
    /// The repository path, such as `debian` or `team/app`.
    pub repository: String,
    /// The tag; `latest` when neither tag nor digest is given.
    pub tag: Option<String>,
    /// The digest, `sha256:…`.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses a reference.
    ///
    /// # Errors
    ///
    /// [`ReferenceError::Invalid`] naming what is wrong.
    pub fn parse(reference: &str) -> Result<ImageRef, ReferenceError> {
        let invalid = |reason| ReferenceError::Invalid {
            reference: reference.to_owned(),
            reason,
        };
        if reference.is_empty() {
            return Err(invalid("empty"));
        }

        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => {
                let valid = digest
                    .split_once(':')
                    .is_some_and(|(alg, hex)| !alg.is_empty() && !hex.is_empty());
                if !valid {
                    return Err(invalid("digest must be algorithm:hex"));
                }
                (rest, Some(digest.to_owned()))
            }
            None => (reference, None),
        };

        let (registry, path) = match rest.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
                (Some(first.to_owned()), path)
            }
            _ => (None, rest),
        };

        let last_slash = path.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match path[last_slash..].rfind(':') {
            Some(i) => (&path[..last_slash + i], Some(&path[last_slash + i + 1..])),
            None => (path, None),
        };

        if repository.is_empty() || repository.split('/').any(str::is_empty) {
            return Err(invalid("empty repository component"));
        }
        let repo_ok = repository
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c));
        if !repo_ok {
            return Err(invalid(
                "repository must be lowercase letters, digits, . _ - /",
            ));
        }
        if let Some(tag) = tag {
            let tag_ok = !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if !tag_ok {
                return Err(invalid("tag must be 1-128 letters, digits, . _ -"));
            }
        }

        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some(String::from("latest")),
        };
        Ok(ImageRef {
            registry,
            repository: repository.to_owned(),
            tag,
            digest,
        })
    }

    /// The registry host without its port.
    pub fn registry_host(&self) -> Option<&str> {
        let registry = self.registry.as_deref()?;
        if let Some(rest) = registry.strip_prefix('[') {
            return rest.split(']').next();
        }
        Some(registry.rsplit_once(':').map_or(registry, |(host, _)| host))
    }

    /// Whether the registry is on this machine (`localhost`, 127.0.0.0/8,
    /// `::1`), where plain HTTP is allowed.
    pub fn is_loopback_registry(&self) -> bool {
        match self.registry_host() {
            Some("localhost") => true,
            Some(host) => host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()),
            None => false,
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(registry) = &self.registry {
            write!(f, "{registry}/")?;
        }
        f.write_str(&self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_have_no_registry() {
        let r = ImageRef::parse("debian:12").unwrap();
        assert_eq!(
            (r.registry, r.repository.as_str(), r.tag.as_deref()),
            (None, "debian", Some("12"))
        );
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "busybox:latest");
        let r = ImageRef::parse("team/app:v1").unwrap();
        assert_eq!((r.registry, r.repository.as_str()), (None, "team/app"));
    }

    #[test]
    fn hosts_with_dots_ports_or_localhost_are_registries() {
        let r = ImageRef::parse("127.0.0.1:5000/fixture:1").unwrap();
        assert_eq!(r.registry.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(r.repository, "fixture");
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert!(r.is_loopback_registry());

        let r = ImageRef::parse("host.tld/x").unwrap();
        assert_eq!(r.registry.as_deref(), Some("host.tld"));
        assert_eq!(r.to_string(), "host.tld/x:latest");
        assert!(!r.is_loopback_registry());

        assert!(ImageRef::parse("localhost/a")
            .unwrap()
            .is_loopback_registry());
        assert!(ImageRef::parse("[::1]:5000/a")
            .unwrap()
            .is_loopback_registry());
    }

    #[test]
    fn digests_are_kept() {
        let r = ImageRef::parse("localhost:5000/a/b@sha256:abc").unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some("sha256:abc"));
        assert_eq!(r.to_string(), "localhost:5000/a/b@sha256:abc");
    }

    #[test]
    fn malformed_references_are_errors() {
        for bad in ["", "Debian", "a:", "a//b", "a@sha256", "x:t@", "a:b:c"] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }
}
