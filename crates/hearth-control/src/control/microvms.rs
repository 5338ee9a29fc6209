//! MicroVM calls: run, read, list, suspend, resume, terminate, and their
//! endpoint and shell tokens.

use std::sync::Arc;

use hearth_api::model::*;
use hearth_api::pagination::PageRequest;
use hearth_api::ApiError;

use super::images::version_not_found;
use super::{internal, lock, Inner};
use crate::capacity;
use crate::ids::MicrovmId;
use crate::store::MicrovmRow;
use crate::tokens::{self, AllowedPorts, TokenKind};

/// A microVM's lifetime when the request does not set one (8 hours).
pub const DEFAULT_MAXIMUM_DURATION_SECONDS: i32 = 28_800;

/// The port of a microVM's shell.
const SHELL_PORT: u16 = 8022;

impl Inner {
    /// `RunMicrovm`: resolves the version, admits the guest, records the
    /// microVM as PENDING and starts it in a task.
    pub(super) fn run_microvm(
        self: &Arc<Self>,
        mut input: RunMicrovmRequest,
    ) -> Result<Microvm, ApiError> {
        check_ingress_connectors(input.ingress_network_connectors.as_deref())?;
        let image = self.find_image(&input.image_identifier)?;
        let versions = self.store.versions(image.image_id).map_err(internal)?;
        let runnable = |v: &&crate::store::VersionRow| {
            v.state == MicrovmImageVersionState::Successful
                && v.status == MicrovmImageVersionStatus::Active
        };
        let version = match &input.image_version {
            Some(wanted) => {
                let version = self.find_version(&image, wanted)?;
                if !runnable(&&version) {
                    let message = format!(
                        "version {wanted} is {} and {}; only a SUCCESSFUL, ACTIVE version runs",
                        version.state, version.status
                    );
                    return Err(ApiError::conflict(
                        "microvm-image-version",
                        &format!("{}:{wanted}", image.arn),
                        message,
                    ));
                }
                version
            }
            None => versions
                .iter()
                .rev()
                .find(runnable)
                .cloned()
                .ok_or_else(|| {
                    ApiError::conflict(
                        "microvm-image",
                        &image.arn,
                        "image has no SUCCESSFUL, ACTIVE version",
                    )
                })?,
        };
        if version.snapshot_dir.is_none() {
            return Err(version_not_found(&image, &version.version.to_string()));
        }

        input.client_token = None;
        let id = MicrovmId::generate();
        let row = MicrovmRow {
            endpoint: self.config.endpoint_url(id.as_str()),
            microvm_id: id.clone(),
            image_id: image.image_id,
            image_arn: image.arn.clone(),
            image_version: version.version,
            state: MicrovmState::Pending,
            state_reason: None,
            request: input,
            guest_memory_mib: version.guest.memory_mib,
            started_at: Timestamp::now(),
            terminated_at: None,
            updated_at: None,
            suspended_snapshot: None,
        };
        self.admit_and_insert(&row)?;
        tracing::info!(microvm_id = %id, image = %image.name, version = version.version, "microvm pending");

        let inner = self.clone();
        let task_id = id.clone();
        self.spawn_task(async move { inner.start_microvm(task_id).await });
        Ok(self.describe(&row))
    }

    /// Checks capacity and records the microVM as one step, so that two
    /// runs cannot both take the last room.
    fn admit_and_insert(&self, row: &MicrovmRow) -> Result<(), ApiError> {
        let _admission = lock(&self.admission);
        let live = self.store.live_guest_memory_mib().map_err(internal)?;
        capacity::admit(
            row.guest_memory_mib,
            live,
            self.config.memory_budget_mib,
            std::path::Path::new("/proc/meminfo"),
        )
        .map_err(|e| ApiError::insufficient_capacity(e.to_string()))?;
        self.store.insert_microvm(row).map_err(internal)
    }

    /// `GetMicrovm`.
    pub(super) fn get_microvm(&self, identifier: &str) -> Result<Microvm, ApiError> {
        let row = self.find_microvm(identifier)?;
        Ok(self.describe(&row))
    }

    /// `ListMicrovms`, by id, filtered by image and version.
    pub(super) fn list_microvms(
        &self,
        input: ListMicrovmsRequest,
    ) -> Result<ListMicrovmsResponse, ApiError> {
        let page = PageRequest::new(input.max_results, input.next_token.as_deref())?;
        let image_arn = input
            .image_identifier
            .as_deref()
            .map(|i| self.arns.image_name(i).map(|name| self.arns.image(name)));
        let rows = self.store.microvms().map_err(internal)?;
        let items = rows
            .into_iter()
            .filter(|m| match &image_arn {
                None => true,
                Some(arn) => arn.as_deref() == Some(m.image_arn.as_str()),
            })
            .filter(|m| {
                input
                    .image_version
                    .as_ref()
                    .is_none_or(|v| *v == m.image_version.to_string())
            })
            .map(|m| MicrovmItem {
                microvm_id: m.microvm_id.to_string(),
                state: m.state,
                image_arn: m.image_arn,
                image_version: m.image_version.to_string(),
                started_at: m.started_at,
            });
        let page = page.apply(items, |m| m.microvm_id.clone());
        Ok(ListMicrovmsResponse {
            next_token: page.next_token,
            items: page.items,
        })
    }

    /// `SuspendMicrovm`: only a RUNNING microVM.
    pub(super) fn suspend_microvm(
        self: &Arc<Self>,
        identifier: &str,
    ) -> Result<SuspendMicrovmResponse, ApiError> {
        let row = self.find_microvm(identifier)?;
        let id = row.microvm_id.clone();
        let moved = self
            .store
            .move_microvm(
                &id,
                &[MicrovmState::Running],
                MicrovmState::Suspending,
                None,
                Timestamp::now(),
            )
            .map_err(internal)?;
        if !moved {
            return Err(wrong_state(&row, "suspended", "RUNNING"));
        }
        let inner = self.clone();
        self.spawn_task(async move { inner.suspend_task(id).await });
        Ok(SuspendMicrovmResponse {})
    }

    /// `ResumeMicrovm`: only a SUSPENDED microVM, admitted like a run.
    pub(super) fn resume_microvm(
        self: &Arc<Self>,
        identifier: &str,
    ) -> Result<ResumeMicrovmResponse, ApiError> {
        let row = self.find_microvm(identifier)?;
        if row.state != MicrovmState::Suspended {
            return Err(wrong_state(&row, "resumed", "SUSPENDED"));
        }
        let id = row.microvm_id.clone();
        {
            let _admission = lock(&self.admission);
            let live = self.store.live_guest_memory_mib().map_err(internal)?;
            capacity::admit(
                row.guest_memory_mib,
                live,
                self.config.memory_budget_mib,
                std::path::Path::new("/proc/meminfo"),
            )
            .map_err(|e| ApiError::insufficient_capacity(e.to_string()))?;
            let moved = self
                .store
                .move_microvm(
                    &id,
                    &[MicrovmState::Suspended],
                    MicrovmState::Pending,
                    None,
                    Timestamp::now(),
                )
                .map_err(internal)?;
            if !moved {
                return Err(wrong_state(&row, "resumed", "SUSPENDED"));
            }
        }
        let inner = self.clone();
        self.spawn_task(async move { inner.resume_task(id).await });
        Ok(ResumeMicrovmResponse {})
    }

    /// `TerminateMicrovm`: records TERMINATING and ends the microVM in a
    /// task; terminating a terminated (or terminating) microVM succeeds.
    pub(super) fn terminate_microvm(
        self: &Arc<Self>,
        identifier: &str,
    ) -> Result<TerminateMicrovmResponse, ApiError> {
        let row = self.find_microvm(identifier)?;
        self.begin_termination(&row.microvm_id, "USER_INITIATED")
            .map_err(internal)?;
        Ok(TerminateMicrovmResponse {})
    }

    /// `CreateMicrovmAuthToken`.
    pub(super) fn auth_token(
        &self,
        input: CreateMicrovmAuthTokenRequest,
    ) -> Result<CreateMicrovmAuthTokenResponse, ApiError> {
        let row = self.find_microvm(&input.microvm_identifier)?;
        self.check_live(&row)?;
        let ports = AllowedPorts::from_specs(&input.allowed_ports);
        let token = self.token(
            &row,
            TokenKind::Endpoint,
            input.expiration_in_minutes,
            ports,
        );
        Ok(CreateMicrovmAuthTokenResponse {
            auth_token: [(PROXY_AUTH_HEADER.to_owned(), token)].into(),
        })
    }

    /// `CreateMicrovmShellAuthToken`: needs the `SHELL_INGRESS` connector.
    pub(super) fn shell_token(
        &self,
        input: CreateMicrovmShellAuthTokenRequest,
    ) -> Result<CreateMicrovmShellAuthTokenResponse, ApiError> {
        let row = self.find_microvm(&input.microvm_identifier)?;
        self.check_live(&row)?;
        let shell = row
            .request
            .ingress_network_connectors
            .iter()
            .flatten()
            .any(|c| c.rsplit(':').next() == Some("SHELL_INGRESS"));
        if !shell {
            return Err(ApiError::conflict(
                "microvm",
                row.microvm_id.as_str(),
                "microvm was not run with the SHELL_INGRESS connector",
            ));
        }
        let ports = AllowedPorts::Ranges(vec![(SHELL_PORT, SHELL_PORT)]);
        let token = self.token(&row, TokenKind::Shell, input.expiration_in_minutes, ports);
        Ok(CreateMicrovmShellAuthTokenResponse {
            auth_token: [(PROXY_AUTH_HEADER.to_owned(), token)].into(),
        })
    }

    /// A signed token for `row`.
    fn token(
        &self,
        row: &MicrovmRow,
        kind: TokenKind,
        minutes: i32,
        ports: AllowedPorts,
    ) -> String {
        let exp = Timestamp::now().unix_seconds() + i64::from(minutes.max(1)) * 60;
        let claims = tokens::claims(kind, row.microvm_id.as_str(), exp, ports);
        self.signer.sign(&claims)
    }

    /// Tokens are for microVMs that are not ending.
    fn check_live(&self, row: &MicrovmRow) -> Result<(), ApiError> {
        if matches!(
            row.state,
            MicrovmState::Terminating | MicrovmState::Terminated
        ) {
            return Err(ApiError::conflict(
                "microvm",
                row.microvm_id.as_str(),
                format!("microvm is {}", row.state),
            ));
        }
        Ok(())
    }

    /// The microVM an identifier names.
    pub(super) fn find_microvm(&self, identifier: &str) -> Result<MicrovmRow, ApiError> {
        let not_found = || ApiError::not_found("microvm", identifier);
        let id = self.arns.microvm_id(identifier).ok_or_else(not_found)?;
        self.store
            .microvm(&id)
            .map_err(internal)?
            .ok_or_else(not_found)
    }

    /// A microVM as the API shows it.
    fn describe(&self, row: &MicrovmRow) -> Microvm {
        let request = &row.request;
        Microvm {
            microvm_id: row.microvm_id.to_string(),
            state: row.state,
            endpoint: row.endpoint.clone(),
            image_arn: row.image_arn.clone(),
            image_version: row.image_version.to_string(),
            execution_role_arn: request.execution_role_arn.clone(),
            idle_policy: request.idle_policy,
            maximum_duration_in_seconds: request
                .maximum_duration_in_seconds
                .unwrap_or(DEFAULT_MAXIMUM_DURATION_SECONDS),
            started_at: row.started_at,
            terminated_at: row.terminated_at,
            state_reason: row.state_reason.clone(),
            ingress_network_connectors: Some(
                request
                    .ingress_network_connectors
                    .clone()
                    .unwrap_or_else(|| vec!["ALL_INGRESS".to_owned()]),
            ),
            egress_network_connectors: Some(
                request
                    .egress_network_connectors
                    .clone()
                    .unwrap_or_else(|| vec!["INTERNET_EGRESS".to_owned()]),
            ),
        }
    }
}

/// The managed ingress connectors a microVM can be run with.
pub const INGRESS_CONNECTORS: [&str; 3] = ["ALL_INGRESS", "SHELL_INGRESS", "NO_INGRESS"];

/// The managed ingress connector `connector` names, given by name
/// (`SHELL_INGRESS`) or by ARN
/// (`arn:aws:lambda:<region>:aws:network-connector:aws-network-connector:SHELL_INGRESS`).
fn managed_ingress(connector: &str) -> Option<&'static str> {
    let name = match connector.strip_prefix("arn:") {
        None => connector,
        Some(_) => {
            let parts: Vec<&str> = connector.split(':').collect();
            let managed = parts.len() == 8
                && parts[1] == "aws"
                && parts[2] == "lambda"
                && !parts[3].is_empty()
                && parts[4] == "aws"
                && parts[5] == "network-connector"
                && parts[6] == "aws-network-connector";
            if !managed {
                return None;
            }
            parts[7]
        }
    };
    INGRESS_CONNECTORS.into_iter().find(|known| *known == name)
}

/// `ingressNetworkConnectors` must name managed connectors only: a
/// microVM run with an unknown one would be refused at every request.
fn check_ingress_connectors(connectors: Option<&[String]>) -> Result<(), ApiError> {
    for (n, connector) in connectors.unwrap_or_default().iter().enumerate() {
        if managed_ingress(connector).is_none() {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value at 'ingressNetworkConnectors.{}.member' \
                 failed to satisfy constraint: Member must be one of {} or its ARN \
                 arn:aws:lambda:<region>:aws:network-connector:aws-network-connector:<NAME> \
                 (got '{connector}')",
                n + 1,
                INGRESS_CONNECTORS.join(", ")
            )));
        }
    }
    Ok(())
}

/// The refusal of a call the microVM's state forbids.
fn wrong_state(row: &MicrovmRow, verb: &str, needed: &str) -> ApiError {
    ApiError::conflict(
        "microvm",
        row.microvm_id.as_str(),
        format!(
            "microvm is {}; only a {needed} microvm can be {verb}",
            row.state
        ),
    )
}

#[cfg(test)]
mod ingress_connector_tests {
    use super::*;

    #[test]
    fn managed_names_and_their_arns_are_accepted() {
        for name in INGRESS_CONNECTORS {
            assert_eq!(managed_ingress(name), Some(name));
            let arn = format!(
                "arn:aws:lambda:us-east-1:aws:network-connector:aws-network-connector:{name}"
            );
            assert_eq!(managed_ingress(&arn), Some(name));
        }
        let list = vec!["SHELL_INGRESS".to_owned(), "ALL_INGRESS".to_owned()];
        assert!(check_ingress_connectors(Some(&list)).is_ok());
        assert!(check_ingress_connectors(None).is_ok());
    }

    #[test]
    fn unknown_connectors_are_a_validation_error_naming_the_field() {
        for bad in [
            "BOGUS",
            "all_ingress",
            "arn:aws:lambda:us-east-1:123456789012:network-connector:aws-network-connector:ALL_INGRESS",
            "arn:aws:lambda:us-east-1:aws:network-connector:aws-network-connector:BOGUS",
        ] {
            let err = check_ingress_connectors(Some(&[bad.to_owned()])).unwrap_err();
            let text = format!("{err:?}");
            assert!(text.contains("Validation"), "{bad}: {text}");
            assert!(text.contains("ingressNetworkConnectors"), "{bad}: {text}");
        }
    }
}
