//! Shapes many inputs share: identifiers, ARNs, versions, connectors and
//! the plain scalars.
//!
//! Written from the model; `tests/conformance` compares it with botocore's copy.

use super::*;

/// `String`.
pub static STRING: Shape = Shape::string("String", None, None, None);

/// `Integer`.
pub static INTEGER: Shape = Shape::integer("Integer", None, None);

/// `Boolean`.
pub static BOOLEAN: Shape = Shape::boolean("Boolean");

/// `Unit`.
pub static UNIT: Shape = Shape::structure("Unit", &[]);

static NON_BLANK_STRING_PATTERN: Pattern = Pattern::new(r#"[^\s]+"#);
/// `NonBlankString`.
pub static NON_BLANK_STRING: Shape = Shape::string(
    "NonBlankString",
    Some(1),
    Some(2048),
    Some(&NON_BLANK_STRING_PATTERN),
);

static VERSION_PATTERN: Pattern = Pattern::new(r#"[^\s]+"#);
/// `Version`.
pub static VERSION: Shape = Shape::string("Version", Some(1), Some(2048), Some(&VERSION_PATTERN));

static ROLE_ARN_PATTERN: Pattern =
    Pattern::new(r#"arn:aws[a-z\-]*:iam::[0-9]{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+"#);
/// `RoleArn`.
pub static ROLE_ARN: Shape =
    Shape::string("RoleArn", Some(20), Some(2048), Some(&ROLE_ARN_PATTERN));

/// `MicrovmIdentifier`.
pub static MICROVM_IDENTIFIER: Shape = Shape::string("MicrovmIdentifier", Some(1), Some(256), None);

/// `MicrovmImageIdentifier`.
pub static MICROVM_IMAGE_IDENTIFIER: Shape =
    Shape::string("MicrovmImageIdentifier", Some(1), Some(256), None);

/// `NetworkConnector`.
pub static NETWORK_CONNECTOR: Shape = Shape::string("NetworkConnector", Some(1), Some(2048), None);

/// `NetworkConnectorList`.
pub static NETWORK_CONNECTOR_LIST: Shape = Shape::list(
    "NetworkConnectorList",
    &NETWORK_CONNECTOR,
    Some(0),
    Some(10),
);

/// `PositiveInteger`.
pub static POSITIVE_INTEGER: Shape = Shape::integer("PositiveInteger", Some(1), None);

/// `Architecture`.
pub static ARCHITECTURE: Shape =
    Shape::enumeration("Architecture", crate::model::Architecture::VALUES);
