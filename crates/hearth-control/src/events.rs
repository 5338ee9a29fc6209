//! Lifecycle events: the small, named set that operators and tests rely on,
//! apart from free-form logs. Each is one `tracing` event with target
//! `hearth::lifecycle`, an `event` field naming it, and the resource's ids.

/// A microVM's lifecycle event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MicrovmEvent {
    /// It runs (after RunMicrovm).
    Started,
    /// It was suspended.
    Suspended,
    /// It was resumed.
    Resumed,
    /// It terminated; the reason says why.
    Terminated,
}

impl MicrovmEvent {
    fn name(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Suspended => "suspended",
            Self::Resumed => "resumed",
            Self::Terminated => "terminated",
        }
    }
}

/// Records a microVM's lifecycle event.
pub fn microvm(event: MicrovmEvent, microvm_id: &str, reason: Option<&str>) {
    tracing::info!(
        target: "hearth::lifecycle",
        event = event.name(),
        microvm_id,
        reason = reason.unwrap_or_default(),
    );
}

/// Records the end of a build: `built`, or `build_failed` with its reason.
pub fn build(image: &str, version: u32, build_id: &str, failure: Option<&str>) {
    let event = if failure.is_some() {
        "build_failed"
    } else {
        "built"
    };
    tracing::info!(
        target: "hearth::lifecycle",
        event,
        image,
        version,
        build_id,
        reason = failure.unwrap_or_default(),
    );
}
