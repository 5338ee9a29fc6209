//! `hearth token`: a token for a microVM's endpoint, asked of the API with
//! `CreateMicrovmAuthToken`, printed for `curl -H "X-aws-proxy-auth: …"`.

use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use hearth_api::model::{
    CreateMicrovmAuthTokenRequest, PortSpecification, Unit, PROXY_AUTH_HEADER,
};

use super::api::{print_json, ApiArgs};

/// Arguments of `hearth token`.
#[derive(Args)]
pub struct TokenArgs {
    /// The microVM.
    id: String,
    /// A port the token opens (repeatable; default: every port).
    #[arg(long = "port")]
    ports: Vec<u16>,
    /// Minutes until the token expires (at most 60).
    #[arg(long, default_value_t = 10)]
    minutes: i32,
    #[command(flatten)]
    api: ApiArgs,
}

/// Runs `hearth token`: prints the `X-aws-proxy-auth` value (with `--json`,
/// every header of the token).
///
/// # Errors
///
/// When the API refuses (an unknown microVM, a bad expiry) or cannot be
/// reached.
pub async fn run(args: TokenArgs) -> Result<ExitCode> {
    let request = CreateMicrovmAuthTokenRequest {
        microvm_identifier: args.id.clone(),
        expiration_in_minutes: args.minutes,
        allowed_ports: allowed_ports(&args.ports),
    };
    let parts = args
        .api
        .client()?
        .create_microvm_auth_token(&request)
        .await
        .context("asking the API for an endpoint token")?
        .auth_token;
    if args.api.json {
        print_json(&parts)?;
    } else {
        let token = parts
            .get(PROXY_AUTH_HEADER)
            .ok_or_else(|| anyhow!("the API's token has no {PROXY_AUTH_HEADER}"))?;
        println!("{token}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The ports a token opens: those named, else every port.
fn allowed_ports(ports: &[u16]) -> Vec<PortSpecification> {
    if ports.is_empty() {
        return vec![PortSpecification::AllPorts(Unit::default())];
    }
    ports
        .iter()
        .map(|&p| PortSpecification::Port(i32::from(p)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_port_named_opens_every_port_and_named_ports_open_only_those() {
        assert_eq!(
            allowed_ports(&[]),
            [PortSpecification::AllPorts(Unit::default())]
        );
        assert_eq!(
            allowed_ports(&[8080, 9000]),
            [PortSpecification::Port(8080), PortSpecification::Port(9000)]
        );
    }
}
