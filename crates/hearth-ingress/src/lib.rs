//! MicroVM endpoints: the ingress proxy of `hearth serve`.
//!
//! A request reaches `http://<microvm-id>.<domain>:<port>` (or the HTTPS
//! listener) and carries a token in `X-aws-proxy-auth` (WebSockets: in the
//! `lambda-microvms.*` subprotocols). The proxy checks the token, the port
//! and the microVM's connectors against the stored record, wakes a
//! suspended microVM whose policy resumes on traffic, and relays the
//! request through the agent's tunnel to the app's port. Statuses: no
//! token 401; an invalid, expired, other microVM's or out-of-scope token
//! 403; suspended without auto-resume 409; terminated 410; nothing
//! listening 502; a wake that does not finish in time 504.
//!
//! - [`route`]: the target and credentials of a request;
//! - [`proxy`]: admission, waking and relaying;
//! - [`tunnel`]: a tunnel stream as a byte stream;
//! - [`tls`]: the HTTPS listener's certificate;
//! - [`shell`]: the `/shell` route's handshake;
//! - [`backend`]: the control plane seam;
//! - [`server`]: the listeners.

#![forbid(unsafe_code)]

pub mod backend;
pub mod proxy;
pub mod route;
pub mod server;
pub mod shell;
pub mod tls;
pub mod tunnel;

pub use backend::{Backend, ControlBackend, TunnelError};
pub use proxy::{IngressConfig, Proxy};
pub use server::{serve_http, serve_https};
pub use tls::{server_config, TlsError, TlsFiles};
