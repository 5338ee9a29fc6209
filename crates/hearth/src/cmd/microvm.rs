//! The native CLI's microVM commands over the API: `hearth run`, `ps`,
//! `rm`, `suspend`, `resume` and `logs`.
//!
//! Each is a few API calls through [`hearth::client`]; `logs` alone also
//! reaches the microVM's shim in `<data>/vms/<id>`, as `hearth vm logs`
//! does, since the API has no call for an app's output.
//!
//! Limitation: `hearth logs` works only on the server's host (it reads the
//! server's data directory), and it honours the image version's `logging`
//! but not RunMicrovm's, which the control plane does not keep.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use hearth_api::model::{
    GetMicrovmImageVersionInput, GetMicrovmRequest, IdlePolicy, ListMicrovmsRequest, Logging,
    Microvm, MicrovmState, ResumeMicrovmRequest, RunMicrovmRequest, SuspendMicrovmRequest,
    TerminateMicrovmRequest, Timestamp,
};

use super::api::{age, print_json, print_table, ApiArgs};
use hearth::client::Client;

/// How often a wait polls the API.
const POLL: Duration = Duration::from_millis(500);

/// Arguments of `hearth run`.
#[derive(Args)]
pub struct RunArgs {
    /// The image's name or ARN.
    image: String,
    /// The image version (default: the newest ACTIVE one).
    #[arg(long)]
    version: Option<String>,
    /// The body of the image's `run` hook.
    #[arg(long)]
    payload: Option<String>,
    /// Suspend after this many seconds without ingress traffic (at least 60);
    /// the microVM is then terminated after --suspended-for seconds and
    /// resumed by traffic.
    #[arg(long)]
    idle: Option<i32>,
    /// With --idle: seconds spent suspended before termination (0 = at once).
    #[arg(long, default_value_t = 3600, requires = "idle")]
    suspended_for: i32,
    /// The hard lifetime in seconds (at most 28800).
    #[arg(long)]
    max_duration: Option<i32>,
    /// An ingress connector (repeatable): ALL_INGRESS (the endpoint's
    /// ports), SHELL_INGRESS (`hearth shell`), NO_INGRESS. Default:
    /// ALL_INGRESS.
    #[arg(long = "ingress", value_enum, value_name = "CONNECTOR")]
    ingress: Vec<IngressConnector>,
    /// An egress connector (repeatable), a name such as INTERNET_EGRESS or
    /// an ARN. Default: the internet.
    #[arg(
        long = "egress",
        value_name = "CONNECTOR",
        conflicts_with = "no_egress"
    )]
    egress: Vec<String>,
    /// No egress at all: the microVM reaches no network.
    #[arg(long)]
    no_egress: bool,
    /// Print the id at once instead of waiting for RUNNING.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    #[command(flatten)]
    api: ApiArgs,
}

/// The managed ingress connectors `hearth run --ingress` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(clippy::enum_variant_names)] // the connectors' own names
pub enum IngressConnector {
    /// Every port of the endpoint.
    AllIngress,
    /// The shell (`hearth shell`).
    ShellIngress,
    /// No ingress.
    NoIngress,
}

impl IngressConnector {
    /// The connector's name as RunMicrovm takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::AllIngress => "ALL_INGRESS",
            Self::ShellIngress => "SHELL_INGRESS",
            Self::NoIngress => "NO_INGRESS",
        }
    }
}

/// RunMicrovm's connector lists from `hearth run`'s flags: `None` (the
/// server's default) for a flag not given.
fn connectors(args: &RunArgs) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let ingress = (!args.ingress.is_empty())
        .then(|| args.ingress.iter().map(|c| c.name().to_owned()).collect());
    let egress = match (args.no_egress, args.egress.is_empty()) {
        (true, _) => Some(Vec::new()),
        (false, true) => None,
        (false, false) => Some(args.egress.clone()),
    };
    (ingress, egress)
}

/// Arguments of `hearth ps`.
#[derive(Args)]
pub struct PsArgs {
    /// Include TERMINATED microVMs.
    #[arg(short, long)]
    all: bool,
    /// Only microVMs of this image.
    #[arg(long)]
    image: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

/// Arguments of commands that take microVM ids.
#[derive(Args)]
pub struct IdsArgs {
    /// The microVMs.
    #[arg(required = true)]
    ids: Vec<String>,
    /// Do not wait for the new state.
    #[arg(long)]
    no_wait: bool,
    #[command(flatten)]
    api: ApiArgs,
}

/// Arguments of `hearth logs`.
#[derive(Args)]
pub struct LogsArgs {
    /// The microVM.
    id: String,
    /// Keep printing new output.
    #[arg(short, long)]
    follow: bool,
    #[command(flatten)]
    api: ApiArgs,
}

/// `hearth run`: runs a microVM and prints its id once it is RUNNING.
pub async fn run(args: RunArgs) -> Result<ExitCode> {
    let client = args.api.client()?;
    let (ingress, egress) = connectors(&args);
    let request = RunMicrovmRequest {
        image_identifier: args.image.clone(),
        image_version: args.version.clone(),
        ingress_network_connectors: ingress,
        egress_network_connectors: egress,
        execution_role_arn: None,
        idle_policy: args.idle.map(|idle| IdlePolicy {
            max_idle_duration_seconds: idle,
            suspended_duration_seconds: args.suspended_for,
            auto_resume_enabled: true,
        }),
        logging: None,
        run_hook_payload: args.payload.clone(),
        maximum_duration_in_seconds: args.max_duration,
        client_token: None,
    };
    let mut microvm = client.run_microvm(&request).await?;
    if !args.no_wait {
        microvm = wait_for(
            &client,
            &microvm.microvm_id,
            MicrovmState::Running,
            Duration::from_secs(args.timeout),
        )
        .await?;
    }

    if args.api.json {
        print_json(&microvm)?;
    } else {
        println!("{}", microvm.microvm_id);
    }
    Ok(ExitCode::SUCCESS)
}

/// `hearth ps`: the microVMs, newest first.
pub async fn ps(args: PsArgs) -> Result<ExitCode> {
    let client = args.api.client()?;
    let filter = ListMicrovmsRequest {
        image_identifier: args.image.clone(),
        ..ListMicrovmsRequest::default()
    };
    let mut items = client.list_all_microvms(filter).await?;
    if !args.all {
        items.retain(|item| item.state != MicrovmState::Terminated);
    }
    items.sort_by_key(|item| std::cmp::Reverse(item.started_at));

    // The listing has no endpoint; a GetMicrovm per row fills it in.
    let mut microvms = Vec::with_capacity(items.len());
    for item in &items {
        let request = GetMicrovmRequest {
            microvm_identifier: item.microvm_id.clone(),
        };
        match client.get_microvm(&request).await {
            Ok(microvm) => microvms.push(microvm),
            Err(error) if error.is_not_found() => {}
            Err(error) => return Err(error.into()),
        }
    }

    if args.api.json {
        print_json(&microvms)?;
        return Ok(ExitCode::SUCCESS);
    }
    let now = Timestamp::now().unix_seconds();
    let rows: Vec<Vec<String>> = microvms
        .iter()
        .map(|m| {
            vec![
                m.microvm_id.clone(),
                image_name(&m.image_arn).to_owned(),
                m.image_version.clone(),
                m.state.to_string(),
                age(now - m.started_at.unix_seconds()),
                m.endpoint.clone(),
            ]
        })
        .collect();
    print_table(
        &["MICROVM ID", "IMAGE", "VERSION", "STATE", "AGE", "ENDPOINT"],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

/// `hearth rm`: terminates microVMs and waits until they are TERMINATED.
pub async fn rm(args: IdsArgs) -> Result<ExitCode> {
    let client = args.api.client()?;
    each(&args, |id| {
        let client = &client;
        async move {
            let request = TerminateMicrovmRequest {
                microvm_identifier: id.clone(),
            };
            client.terminate_microvm(&request).await?;
            settle(client, &id, MicrovmState::Terminated, args.no_wait).await
        }
    })
    .await
}

/// `hearth suspend`: suspends microVMs, memory and disk kept.
pub async fn suspend(args: IdsArgs) -> Result<ExitCode> {
    let client = args.api.client()?;
    each(&args, |id| {
        let client = &client;
        async move {
            let request = SuspendMicrovmRequest {
                microvm_identifier: id.clone(),
            };
            client.suspend_microvm(&request).await?;
            settle(client, &id, MicrovmState::Suspended, args.no_wait).await
        }
    })
    .await
}

/// `hearth resume`: resumes suspended microVMs.
pub async fn resume(args: IdsArgs) -> Result<ExitCode> {
    let client = args.api.client()?;
    each(&args, |id| {
        let client = &client;
        async move {
            let request = ResumeMicrovmRequest {
                microvm_identifier: id.clone(),
            };
            client.resume_microvm(&request).await?;
            settle(client, &id, MicrovmState::Running, args.no_wait).await
        }
    })
    .await
}

/// `hearth logs`: the app's standard output and error.
pub async fn logs(args: LogsArgs) -> Result<ExitCode> {
    let client = args.api.client()?;
    let microvm = client
        .get_microvm(&GetMicrovmRequest {
            microvm_identifier: args.id.clone(),
        })
        .await?;
    let version = client
        .get_microvm_image_version(&GetMicrovmImageVersionInput {
            image_identifier: microvm.image_arn.clone(),
            image_version: microvm.image_version.clone(),
        })
        .await?;
    if matches!(version.config.logging, Some(Logging::Disabled(_))) {
        bail!(
            "logging is disabled for image {} version {}",
            image_name(&microvm.image_arn),
            microvm.image_version
        );
    }
    if microvm.state == MicrovmState::Terminated {
        bail!(
            "microvm {} is TERMINATED: its logs went with it",
            microvm.microvm_id
        );
    }

    let dir = args.api.data_dir().join("vms").join(&microvm.microvm_id);
    super::vm::stream_logs(&dir, args.follow, args.api.json)
        .await
        .with_context(|| format!("reading the logs of {}", microvm.microvm_id))
}

/// Runs `action` on every id; prints each id that succeeded (or the JSON of
/// the results) and each failure, and fails if any did.
async fn each<F, Fut>(args: &IdsArgs, action: F) -> Result<ExitCode>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Microvm>>,
{
    let mut failed = false;
    let mut done = Vec::new();
    for id in &args.ids {
        match action(id.clone()).await {
            Ok(microvm) => {
                if !args.api.json {
                    println!("{}", microvm.microvm_id);
                }
                done.push(microvm);
            }
            Err(error) => {
                eprintln!("hearth: {id}: {}", crate::chain(&error));
                failed = true;
            }
        }
    }
    if args.api.json {
        print_json(&done)?;
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The microVM after it reached `state`, or as it is now with `no_wait`.
async fn settle(client: &Client, id: &str, state: MicrovmState, no_wait: bool) -> Result<Microvm> {
    if no_wait {
        let request = GetMicrovmRequest {
            microvm_identifier: id.to_owned(),
        };
        return Ok(client.get_microvm(&request).await?);
    }
    wait_for(client, id, state, Duration::from_secs(600)).await
}

/// Polls until the microVM is in `state`; fails if it ends up TERMINATED
/// instead, or after `timeout`.
pub async fn wait_for(
    client: &Client,
    id: &str,
    state: MicrovmState,
    timeout: Duration,
) -> Result<Microvm> {
    let request = GetMicrovmRequest {
        microvm_identifier: id.to_owned(),
    };
    let deadline = Instant::now() + timeout;
    loop {
        let microvm = client.get_microvm(&request).await?;
        if microvm.state == state {
            return Ok(microvm);
        }
        if microvm.state == MicrovmState::Terminated {
            bail!(
                "microvm {id} is TERMINATED ({})",
                microvm.state_reason.as_deref().unwrap_or("no reason given")
            );
        }
        if Instant::now() >= deadline {
            bail!("microvm {id} is still {} after {timeout:?}", microvm.state);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The name at the end of an image ARN (`…:microvm-image:<name>`).
pub fn image_name(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or(arn)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(args: &[&str]) -> Result<RunArgs, clap::Error> {
        Cli::try_parse_from(["hearth-run", "app"].iter().chain(args)).map(|cli| cli.run)
    }

    #[test]
    fn run_without_connector_flags_leaves_the_server_defaults() {
        assert_eq!(connectors(&parse(&[]).unwrap()), (None, None));
    }

    #[test]
    fn run_ingress_flags_become_connector_names() {
        let args = parse(&["--ingress", "SHELL_INGRESS", "--ingress", "ALL_INGRESS"]).unwrap();
        let (ingress, egress) = connectors(&args);
        assert_eq!(
            ingress,
            Some(vec!["SHELL_INGRESS".to_owned(), "ALL_INGRESS".to_owned()])
        );
        assert_eq!(egress, None);
        assert!(parse(&["--ingress", "BOGUS"]).is_err());
    }

    #[test]
    fn run_no_egress_sends_an_empty_egress_list() {
        let (_, egress) = connectors(&parse(&["--no-egress"]).unwrap());
        assert_eq!(egress, Some(Vec::new()));
        let (_, egress) = connectors(&parse(&["--egress", "INTERNET_EGRESS"]).unwrap());
        assert_eq!(egress, Some(vec!["INTERNET_EGRESS".to_owned()]));
        assert!(parse(&["--no-egress", "--egress", "INTERNET_EGRESS"]).is_err());
    }
}
