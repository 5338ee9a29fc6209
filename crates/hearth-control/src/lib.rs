//! hearth's control plane: images, builds and microVMs behind the Lambda
//! MicroVMs wire API ([`hearth_api::Control`]).
//!
//! - [`control`]: [`HearthControl`], the API's operations and the tasks
//!   that carry them out (builds, starting, suspending, resuming and
//!   terminating microVMs, lifetime timers), and recovery after a restart;
//! - [`store`]: the state in SQLite, written before every action;
//! - [`pipeline`]: the [`ImagePipeline`] seam that builds image versions
//!   into snapshots (the `hearth` binary plugs the image builder into it);
//! - [`node`]: the [`Node`] seam that runs microVMs, and [`ShimNode`],
//!   which runs each under its own shim on this host;
//! - [`hooks`]: lifecycle hooks over the agent's tunnel;
//! - [`capacity`], [`tokens`], [`artifacts`], [`base_images`], [`ids`]:
//!   size classes and admission, endpoint tokens, the artifact store and its
//!   S3 API, managed base images, ARNs and ids;
//! - [`events`]: the named lifecycle events.

#![forbid(unsafe_code)]

pub mod artifacts;
pub mod base_images;
pub mod capacity;
pub mod config;
pub mod control;
pub mod events;
pub mod hooks;
pub mod ids;
pub mod node;
pub mod pipeline;
pub mod store;
pub mod tokens;

pub use config::{ControlConfig, EndpointConfig};
pub use control::{ControlError, HearthControl, IngressView, WakeError};
pub use node::{Egress, Node, NodeError, ShimNode};
pub use pipeline::{
    BuildFailure, BuildJob, BuildProgress, BuiltVersion, ContainerConfig, ImagePipeline,
};
pub use store::Store;
