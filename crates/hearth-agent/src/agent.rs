//! The agent's state and the dispatch of each request to its handler.
//!
//! Every request arrives on a stream of its own and ends with the stream
//! closed. A request that fails gets `Error { message }` and then the close.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hearth_protocol::{AgentInfo, Control, Request, Stream, StreamSender};
use tokio::sync::watch;

use crate::app::{self, App};
use crate::fsexport::{self, Tree};
use crate::process::Capabilities;
use crate::system::{self, System};
use crate::{exec, files, net, quiesce, shell, tunnel, users};

/// What boot found out, and where the root filesystem's `/etc` is.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Whether the image's root filesystem was mounted and entered.
    pub root_mounted: bool,
    /// The directory holding `passwd` and `group` (`/etc` in a guest).
    pub etc: PathBuf,
    /// The root filesystem that `FsMark` and `FsExport` read (`/`).
    pub fs_root: PathBuf,
}

/// The agent: the guest's app and the handlers of the host's requests.
pub struct Agent {
    config: AgentConfig,
    app: App,
    system: Arc<dyn System>,
    /// The tree recorded by the last `FsMark`.
    baseline: Mutex<Option<Tree>>,
    /// Set, with a reason, once the guest is powering off.
    stopping: watch::Sender<Option<String>>,
}

impl Agent {
    /// An agent with no app started yet.
    pub fn new(config: AgentConfig, system: Arc<dyn System>) -> Arc<Agent> {
        Arc::new(Agent {
            config,
            app: App::default(),
            system,
            baseline: Mutex::new(None),
            stopping: watch::Sender::new(None),
        })
    }

    /// What the agent reports about itself, as of now.
    pub fn info(&self) -> AgentInfo {
        let kernel_release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let uptime_secs = std::fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|text| text.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        AgentInfo {
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            kernel_release,
            uptime_secs,
            root_mounted: self.config.root_mounted,
        }
    }

    /// Serves one request on its stream, to the end of the stream.
    pub async fn handle(self: Arc<Self>, payload: Bytes, stream: Stream) {
        let request: Request = match serde_json::from_slice(&payload) {
            Ok(request) => request,
            Err(err) => return refuse(&stream.sender, &format!("bad request: {err}")),
        };

        let etc = &self.config.etc;
        match request {
            Request::Ping => answer(&stream.sender, Control::Info(self.info())),
            Request::StartApp(spec) => match self.app.start(&spec, etc) {
                Ok(pid) => {
                    let value = serde_json::json!({ "pid": pid });
                    answer(&stream.sender, Control::Ok { value });
                }
                Err(err) => refuse(&stream.sender, &crate::describe(&err)),
            },
            Request::AppStatus => answer(&stream.sender, Control::App(self.app.status())),
            Request::Exec(spec) => exec::run(spec, Capabilities::All, etc, stream).await,
            Request::Shell(spec) => {
                let app = self.app.spec();
                let stopping = self.stopping.subscribe();
                shell::run(spec, app, stopping, &self.config, stream).await;
            }
            Request::WriteFile { path, mode, as_app } => {
                let owner = match as_app {
                    true => self.app_owner(),
                    false => Ok(None),
                };
                match owner {
                    Ok(owner) => files::write(path, mode, owner, stream).await,
                    Err(err) => refuse(&stream.sender, &crate::describe(&err)),
                }
            }
            Request::ReadFile { path } => files::read(path, stream).await,
            Request::Tunnel { port } => tunnel::run(port, stream).await,
            Request::Logs { follow } => app::serve_logs(self.app.logs(), follow, stream).await,
            Request::Identity(identity) => {
                let applied = system::apply_identity(self.system.as_ref(), &identity);
                // Processes stopped for a snapshot continue only now, with
                // the guest reseeded (or, failing that, anyway).
                quiesce::continue_all();
                match applied {
                    Ok(()) => answer(&stream.sender, ok()),
                    Err(err) => refuse(&stream.sender, &crate::describe(&err)),
                }
            }
            Request::Quiesce => {
                // It waits, briefly, for the stops to take effect.
                let stopped = tokio::task::spawn_blocking(quiesce::stop_all)
                    .await
                    .unwrap_or(0);
                answer(
                    &stream.sender,
                    Control::Ok {
                        value: serde_json::json!({ "stopped": stopped }),
                    },
                );
            }
            Request::Shutdown => {
                // Shells end with a reason rather than as killed processes.
                self.stopping
                    .send_replace(Some("the microVM is shutting down".to_owned()));
                answer(&stream.sender, ok());
                self.system.power_off();
            }
            Request::Network(spec) => {
                let configured = tokio::task::spawn_blocking(move || net::configure(&spec)).await;
                match configured {
                    Ok(Ok(())) => answer(&stream.sender, ok()),
                    Ok(Err(err)) => refuse(&stream.sender, &crate::describe(&err)),
                    Err(err) => refuse(&stream.sender, &format!("network: {err}")),
                }
            }
            Request::FsMark => {
                let tree = fsexport::mark(self.config.fs_root.clone(), stream).await;
                if let Some(tree) = tree {
                    *self.baseline() = Some(tree);
                }
            }
            Request::FsExport { since_mark } => {
                let before = match since_mark {
                    true => match self.baseline().clone() {
                        Some(tree) => Some(tree),
                        None => return refuse(&stream.sender, "export: no FsMark was made"),
                    },
                    false => None,
                };
                fsexport::export(self.config.fs_root.clone(), before, stream).await;
            }
        }
    }

    /// The app's user and group ids, when it runs as a user of its own.
    fn app_owner(&self) -> Result<Option<(u32, u32)>, users::UserError> {
        let spec = self.app.spec().and_then(|app| app.user);
        let Some(spec) = spec.filter(|spec| !spec.trim().is_empty()) else {
            return Ok(None);
        };
        let user = users::resolve_in(spec.trim(), &self.config.etc)?;
        Ok(Some((user.uid, user.gid)))
    }

    fn baseline(&self) -> std::sync::MutexGuard<'_, Option<Tree>> {
        self.baseline
            .lock()
            .expect("the baseline lock is never held across a panic")
    }
}

fn ok() -> Control {
    Control::Ok {
        value: serde_json::Value::Null,
    }
}

/// Sends one answer and closes the stream.
pub fn answer(tx: &StreamSender, control: Control) {
    let _ = tx.control(&control);
    tx.close(None);
}

/// Refuses a request: `Error { message }`, then the close.
pub fn refuse(tx: &StreamSender, message: &str) {
    answer(
        tx,
        Control::Error {
            message: message.to_owned(),
        },
    );
}
