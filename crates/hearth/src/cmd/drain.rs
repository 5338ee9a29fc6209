//! `hearth drain`: suspends every RUNNING microVM of a `hearth serve` and
//! waits until none is running or between states, so that the host can
//! shut down without losing any; each resumes with ResumeMicrovm (or a
//! request to its endpoint) once the host is back.
//!
//! A microVM that is PENDING while the drain runs is suspended once it is
//! RUNNING; one that a suspend cannot keep ends TERMINATED with the reason
//! the server gives, which the drain reports.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;
use hearth_api::model::{ListMicrovmsRequest, MicrovmState, SuspendMicrovmRequest};

use super::api::ApiArgs;

/// How often the drain looks at the microVMs again.
const POLL: Duration = Duration::from_millis(500);

/// Arguments of `hearth drain`.
#[derive(Args)]
pub struct DrainArgs {
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    #[command(flatten)]
    api: ApiArgs,
}

/// `hearth drain`: prints each microVM it suspended, and fails if any is
/// still running or between states when the timeout runs out.
pub async fn run(args: DrainArgs) -> Result<ExitCode> {
    let client = args.api.client()?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut asked = BTreeSet::new();
    loop {
        let items = client
            .list_all_microvms(ListMicrovmsRequest::default())
            .await?;
        let busy: Vec<_> = items
            .iter()
            .filter(|m| {
                matches!(
                    m.state,
                    MicrovmState::Running | MicrovmState::Pending | MicrovmState::Suspending
                )
            })
            .collect();
        if busy.is_empty() {
            break;
        }
        for microvm in busy.iter().filter(|m| m.state == MicrovmState::Running) {
            let request = SuspendMicrovmRequest {
                microvm_identifier: microvm.microvm_id.clone(),
            };
            match client.suspend_microvm(&request).await {
                Ok(_) => {
                    tracing::info!(microvm_id = %microvm.microvm_id, "suspending");
                    asked.insert(microvm.microvm_id.clone());
                }
                // It moved on since the listing; the next look sees where.
                Err(error) if error.code() == Some("ConflictException") => {}
                Err(error) => return Err(error.into()),
            }
        }
        if Instant::now() >= deadline {
            let ids: Vec<_> = busy.iter().map(|m| m.microvm_id.as_str()).collect();
            bail!(
                "still not suspended after {}s: {}",
                args.timeout,
                ids.join(", ")
            );
        }
        tokio::time::sleep(POLL).await;
    }

    // Report how each microVM the drain suspended ended up.
    let items = client
        .list_all_microvms(ListMicrovmsRequest::default())
        .await?;
    let mut lost = false;
    for microvm in items.iter().filter(|m| asked.contains(&m.microvm_id)) {
        if microvm.state == MicrovmState::Suspended {
            println!("{}", microvm.microvm_id);
        } else {
            eprintln!("hearth: {} is {}", microvm.microvm_id, microvm.state);
            lost = true;
        }
    }
    Ok(if lost {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
