//! Inputs of the token operations.
//!
//! Written from the model; `tests/conformance` compares it with botocore's copy.

use super::*;

/// `CreateMicrovmAuthTokenRequest`.
pub static CREATE_MICROVM_AUTH_TOKEN_REQUEST: Shape = Shape::structure(
    "CreateMicrovmAuthTokenRequest",
    &[
        Member::uri("microvmIdentifier", &MICROVM_IDENTIFIER),
        Member::body("expirationInMinutes", &POSITIVE_INTEGER).required(),
        Member::body("allowedPorts", &LIST_OF_PORT_SPECIFICATION).required(),
    ],
);

/// `ListOfPortSpecification`.
pub static LIST_OF_PORT_SPECIFICATION: Shape = Shape::list(
    "ListOfPortSpecification",
    &PORT_SPECIFICATION,
    Some(1),
    None,
);

/// `PortSpecification`.
pub static PORT_SPECIFICATION: Shape = Shape::union(
    "PortSpecification",
    &[
        Member::body("port", &PORT_NUMBER),
        Member::body("range", &PORT_RANGE),
        Member::body("allPorts", &UNIT),
    ],
);

/// `PortRange`.
pub static PORT_RANGE: Shape = Shape::structure(
    "PortRange",
    &[
        Member::body("startPort", &PORT_NUMBER).required(),
        Member::body("endPort", &PORT_NUMBER).required(),
    ],
);

/// `PortNumber`.
pub static PORT_NUMBER: Shape = Shape::integer("PortNumber", Some(1), Some(65535));

/// `CreateMicrovmShellAuthTokenRequest`.
pub static CREATE_MICROVM_SHELL_AUTH_TOKEN_REQUEST: Shape = Shape::structure(
    "CreateMicrovmShellAuthTokenRequest",
    &[
        Member::uri("microvmIdentifier", &MICROVM_IDENTIFIER),
        Member::body("expirationInMinutes", &POSITIVE_INTEGER).required(),
    ],
);
