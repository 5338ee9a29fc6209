//! Identifiers and ARNs in AWS's forms.
//!
//! A microVM is `microvm-<32 hex>`; a build is `build-<16 hex>`; an image is
//! named by its owner and has the ARN
//! `arn:aws:lambda:<region>:<account>:microvm-image:<name>`; a microVM's ARN
//! is `arn:aws:lambda:<region>:<account>:microvm:<id>`; managed base images
//! belong to the account `aws`. Identifiers in requests may be an ARN or the
//! bare name or id; [`Arns`] reads both and refuses ARNs of another region
//! or account.

use std::fmt;

use rand::RngCore;

/// The prefix of every microVM id.
pub const MICROVM_PREFIX: &str = "microvm-";

/// A microVM's id: `microvm-` and 32 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MicrovmId(String);

impl MicrovmId {
    /// A fresh random id.
    pub fn generate() -> Self {
        Self(format!("{MICROVM_PREFIX}{}", random_hex(16)))
    }

    /// Reads an id, if `text` has the form.
    pub fn parse(text: &str) -> Option<Self> {
        let hex = text.strip_prefix(MICROVM_PREFIX)?;
        let ok = hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| Self(text.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MicrovmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A fresh build id: `build-` and 16 hex digits.
pub fn new_build_id() -> String {
    format!("build-{}", random_hex(8))
}

/// Random lowercase hex of `bytes` bytes.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Makes and reads the ARNs of one region and account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arns {
    region: String,
    account: String,
}

impl Arns {
    /// ARNs in `region` for `account`.
    pub fn new(region: impl Into<String>, account: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            account: account.into(),
        }
    }

    /// The region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// An image's ARN.
    pub fn image(&self, name: &str) -> String {
        format!("{}:microvm-image:{name}", self.prefix(&self.account))
    }

    /// A microVM's ARN.
    pub fn microvm(&self, id: &MicrovmId) -> String {
        format!("{}:microvm:{id}", self.prefix(&self.account))
    }

    /// A managed base image's ARN.
    pub fn base_image(&self, name: &str) -> String {
        format!("{}:microvm-image:{name}", self.prefix("aws"))
    }

    /// The image name an identifier (name or ARN) names, if it can name one
    /// of this account's images.
    pub fn image_name<'a>(&self, identifier: &'a str) -> Option<&'a str> {
        self.resource(identifier, &self.account, "microvm-image")
    }

    /// The microVM id an identifier (id or ARN) names, if it has the form.
    pub fn microvm_id(&self, identifier: &str) -> Option<MicrovmId> {
        let id = self.resource(identifier, &self.account, "microvm")?;
        MicrovmId::parse(id)
    }

    /// The base image name an identifier (name or ARN) names.
    pub fn base_image_name<'a>(&self, identifier: &'a str) -> Option<&'a str> {
        self.resource(identifier, "aws", "microvm-image")
    }

    /// `arn:aws:lambda:<region>:<account>`.
    fn prefix(&self, account: &str) -> String {
        format!("arn:aws:lambda:{}:{account}", self.region)
    }

    /// The last part of `identifier` when it is `kind` in `account`, or the
    /// identifier itself when it is not an ARN.
    fn resource<'a>(&self, identifier: &'a str, account: &str, kind: &str) -> Option<&'a str> {
        if !identifier.starts_with("arn:") {
            return (!identifier.is_empty() && !identifier.contains(':')).then_some(identifier);
        }
        let expected = format!("{}:{kind}:", self.prefix(account));
        identifier
            .strip_prefix(&expected)
            .filter(|rest| !rest.is_empty() && !rest.contains(':'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microvm_ids_have_aws_form() {
        let id = MicrovmId::generate();
        assert_eq!(id.as_str().len(), 8 + 32);
        assert_eq!(MicrovmId::parse(id.as_str()), Some(id));
        assert_eq!(MicrovmId::parse("microvm-XYZ"), None);
    }

    #[test]
    fn identifiers_are_names_or_arns_of_this_account() {
        let arns = Arns::new("us-east-1", "000000000000");
        assert_eq!(
            arns.image("app"),
            "arn:aws:lambda:us-east-1:000000000000:microvm-image:app"
        );
        assert_eq!(arns.image_name("app"), Some("app"));
        assert_eq!(arns.image_name(&arns.image("app")), Some("app"));
        let other = "arn:aws:lambda:eu-west-1:000000000000:microvm-image:app";
        assert_eq!(arns.image_name(other), None);
        assert_eq!(
            arns.base_image_name("arn:aws:lambda:us-east-1:aws:microvm-image:al2023-1"),
            Some("al2023-1")
        );

        let id = MicrovmId::generate();
        assert_eq!(arns.microvm_id(&arns.microvm(&id)), Some(id.clone()));
        assert_eq!(arns.microvm_id(id.as_str()), Some(id));
    }
}
