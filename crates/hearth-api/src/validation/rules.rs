//! The service's rules beyond the model's traits, checked on typed inputs.
//!
//! The model cannot say these, but AWS's documentation does: an endpoint
//! token lives at most 60 minutes, a port range runs upwards, hooks need a
//! port, and a `nextToken` must be one the server made.

use super::check::FieldError;
use crate::model::{HookState, Hooks, PortSpecification};
use crate::operation::ApiRequest;
use crate::pagination;

/// The longest a token may live, in minutes.
pub const MAX_TOKEN_MINUTES: i32 = 60;

/// Every rule `request` breaks.
pub fn check(request: &ApiRequest) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match request {
        ApiRequest::CreateMicrovmAuthToken(input) => {
            token_lifetime(input.expiration_in_minutes, &mut errors);
            for (index, port) in input.allowed_ports.iter().enumerate() {
                if let PortSpecification::Range(range) = port {
                    if range.start_port > range.end_port {
                        errors.push(FieldError::new(
                            format!("allowedPorts.{}.member.range", index + 1),
                            "startPort must be less than or equal to endPort",
                        ));
                    }
                }
            }
        }
        ApiRequest::CreateMicrovmShellAuthToken(input) => {
            token_lifetime(input.expiration_in_minutes, &mut errors);
        }
        ApiRequest::CreateMicrovmImage(input) => {
            hooks_have_port(input.config.hooks.as_ref(), &mut errors)
        }
        ApiRequest::UpdateMicrovmImage(input) => {
            hooks_have_port(input.config.hooks.as_ref(), &mut errors)
        }
        _ => {}
    }

    if let Some(token) = request.next_token() {
        if pagination::decode_token(token).is_err() {
            errors.push(pagination::invalid_token());
        }
    }
    errors
}

/// Tokens last at most [`MAX_TOKEN_MINUTES`].
fn token_lifetime(minutes: i32, errors: &mut Vec<FieldError>) {
    if minutes > MAX_TOKEN_MINUTES {
        errors.push(FieldError::new(
            "expirationInMinutes",
            format!("Member must have value less than or equal to {MAX_TOKEN_MINUTES}"),
        ));
    }
}

/// Any enabled hook needs `hooks.port`.
fn hooks_have_port(hooks: Option<&Hooks>, errors: &mut Vec<FieldError>) {
    let Some(hooks) = hooks else { return };
    let runtime = hooks
        .microvm_hooks
        .map(|h| [h.run, h.resume, h.suspend, h.terminate]);
    let build = hooks.microvm_image_hooks.map(|h| [h.ready, h.validate]);
    let enabled = runtime
        .iter()
        .flatten()
        .chain(build.iter().flatten())
        .any(|state| *state == Some(HookState::Enabled));
    if enabled && hooks.port.is_none() {
        errors.push(FieldError::new(
            "hooks.port",
            "Member must not be null when a hook is ENABLED",
        ));
    }
}
