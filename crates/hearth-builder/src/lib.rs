//! hearth-builder: code artifact → Dockerfile → root file system → microVM
//! snapshot; hearth's image builds.
//!
//! The pipeline, module by module:
//!
//! - [`artifact`]: fetch the code artifact (a directory, a local zip, or
//!   `s3://bucket/key` on the configured endpoint) and unpack it safely into
//!   a build directory with a `Dockerfile` at its root.
//! - [`dockerfile`]: parse the Dockerfile into stages of typed instructions.
//! - [`ignore`]: `.dockerignore`, which filters what COPY and ADD see.
//! - [`reference`](mod@reference), [`oci`], [`store`], [`seed`]: base images — references,
//!   pulls from OCI registries, the local store, and images seeded on this
//!   machine (busybox, debootstrap).
//! - [`layer`], [`diff`], [`cache`]: layer tars applied with OCI whiteout
//!   semantics, the diff a step made, and the step cache that keeps diffs.
//! - [`plan`]: execute the stages; RUN goes only through a
//!   [`runner::StepRunner`] (a build microVM in production, never the host),
//!   progress goes out as [`events::BuildEvent`]s, and the result is a root
//!   file system plus a [`config::ImageConfig`].
//! - [`vm`], [`vm_runner`]: the build microVMs that run RUN steps, and the
//!   runner that brings each step's changes back.
//! - [`image`]: the whole build of an image version: artifact, Dockerfile,
//!   the app booted on the managed base image until ready, its snapshot, the
//!   validation, and the layout of built versions on disk.
//!
//! Builds run as root, so that ownership in layers and COPY `--chown` can be
//! applied; without root, owners are left as they fall.
#![forbid(unsafe_code)]

pub mod artifact;
pub mod cache;
pub mod config;
mod copy;
pub mod diff;
pub mod dockerfile;
pub mod events;
pub mod fsutil;
pub mod ignore;
pub mod image;
pub mod layer;
pub mod oci;
pub mod plan;
pub mod reference;
pub mod runner;
pub mod seed;
pub mod store;
pub mod vm;
pub mod vm_runner;

pub use config::ImageConfig;
pub use plan::{BuildError, BuildOutput, BuildRequest, Builder};
pub use runner::{OutputSink, RunOutcome, RunnerError, StepRunner};
