//! [`HearthControl`]: the control plane behind the wire API.
//!
//! Each API call checks what needs state, persists the change it makes, and
//! answers; the work that takes time (a build, starting, suspending,
//! resuming or terminating a microVM) runs in a task of its own that moves
//! the resource on when it is done. A per-microVM lock orders the tasks of
//! one microVM, and each state move is conditional on the state it starts
//! from, so an API call and a task never undo each other.
//!
//! On start the control plane reads the database back: builds that were
//! cut short fail, and microVMs whose VM is gone terminate with a reason.

mod builds;
mod images;
mod ingress;
mod lifecycle;
mod microvms;
mod recovery;
mod tags;
mod timers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use hearth_api::model::*;
use hearth_api::{ApiError, Control, RequestContext};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::artifacts::ArtifactStore;
use crate::base_images::BaseImage;
use crate::config::ControlConfig;
use crate::ids::Arns;
use crate::node::Node;
use crate::pipeline::ImagePipeline;
use crate::store::{Store, StoreError};
use crate::tokens::{KeyError, TokenSigner};

pub use ingress::{IngressView, WakeError};

/// How long a stop waits for microVM tasks to finish.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// How often the timers look for microVMs past their lifetime.
const TIMER_INTERVAL: Duration = Duration::from_secs(5);

/// Errors starting the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The data directory could not be made.
    #[error("cannot create data directory {path}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be opened.
    #[error("cannot open the state database")]
    Store(#[from] StoreError),
    /// The token key could not be loaded.
    #[error("cannot load the token key")]
    TokenKey(#[from] KeyError),
}

/// The control plane.
#[derive(Clone)]
pub struct HearthControl {
    inner: Arc<Inner>,
}

/// What the control plane and its tasks share.
struct Inner {
    config: ControlConfig,
    arns: Arns,
    store: Arc<Store>,
    pipeline: Arc<dyn ImagePipeline>,
    node: Arc<dyn Node>,
    artifacts: ArtifactStore,
    signer: TokenSigner,
    base: BaseImage,
    /// Orders the tasks of each microVM.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Makes capacity checks and the records they admit one step.
    admission: Mutex<()>,
    /// Builds run one at a time: each holds a VM and a core.
    build_slots: Semaphore,
    /// Running builds, aborted on stop.
    builds: Mutex<JoinSet<()>>,
    /// Running microVM tasks, awaited on stop.
    tasks: Mutex<JoinSet<()>>,
    /// When each microVM last carried ingress traffic.
    activity: timers::Activity,
    /// Endpoint traffic, shim connections for tunnels.
    ingress: ingress::IngressState,
}

impl HearthControl {
    /// Opens the control plane on `config`'s data directory, reads its state
    /// back, and starts its timers. Must run inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`ControlError`] when the data directory, database or token key
    /// cannot be used.
    pub async fn open(
        config: ControlConfig,
        pipeline: Arc<dyn ImagePipeline>,
        node: Arc<dyn Node>,
    ) -> Result<Self, ControlError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| ControlError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let store = Arc::new(Store::open(&config.database())?);
        let signer = TokenSigner::load_or_create(&config.token_key())?;
        let inner = Inner {
            arns: Arns::new(&config.region, &config.account),
            artifacts: ArtifactStore::new(config.artifacts_dir()),
            base: BaseImage::from_manifest(&config.manifest()),
            config,
            store,
            pipeline,
            node,
            signer,
            locks: Mutex::default(),
            admission: Mutex::default(),
            build_slots: Semaphore::new(1),
            builds: Mutex::default(),
            tasks: Mutex::default(),
            activity: timers::Activity::default(),
            ingress: ingress::IngressState::default(),
        };
        let control = Self {
            inner: Arc::new(inner),
        };

        control.inner.recover().await?;
        let timers = Arc::downgrade(&control.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(TIMER_INTERVAL).await;
                let Some(inner) = timers.upgrade() else {
                    return;
                };
                // One read of the table for every timer of this tick.
                match inner.store.microvms() {
                    Ok(rows) => {
                        let now = Timestamp::now().unix_millis();
                        if let Err(error) = inner.enforce_lifetimes(&rows, now) {
                            tracing::error!(error = %error, "timers: cannot move a microvm");
                        }
                        if let Err(error) = inner.end_exited(&rows).await {
                            tracing::error!(error = %error, "timers: cannot move a microvm");
                        }
                        inner.forget_stopped(&rows);
                    }
                    Err(error) => tracing::error!(error = %error, "timers: cannot read microvms"),
                }
                if let Err(error) = inner.flush_traffic() {
                    tracing::error!(error = %error, "cannot record endpoint traffic");
                }
            }
        });
        Ok(control)
    }

    /// The database, which also keeps the API's `clientToken` records.
    pub fn store(&self) -> Arc<Store> {
        self.inner.store.clone()
    }

    /// The token signer, for the ingress proxy.
    pub fn token_signer(&self) -> TokenSigner {
        self.inner.signer.clone()
    }

    /// The name of hearth's managed base image.
    pub fn base_image_name(&self) -> &str {
        &self.inner.base.name
    }

    /// Stops the control plane: builds are aborted and fail with a reason
    /// (their VMs stopped); microVM tasks get a grace period to finish.
    /// MicroVMs themselves keep running under their shims.
    pub async fn shutdown(&self) {
        let builds = std::mem::take(&mut *lock(&self.inner.builds));
        drop(builds);
        let mut tasks = std::mem::take(&mut *lock(&self.inner.tasks));
        let drained = tokio::time::timeout(STOP_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("stopping with microvm tasks still running");
        }
        if let Err(error) = self.inner.flush_traffic() {
            tracing::error!(error = %error, "cannot record endpoint traffic");
        }
        if let Err(error) = self
            .inner
            .fail_unfinished_builds("the server stopped during the build")
            .await
        {
            tracing::error!(error = %error, "cannot record interrupted builds");
        }
    }
}

impl Inner {
    /// The lock of one microVM's tasks.
    fn microvm_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.locks).entry(id.to_owned()).or_default().clone()
    }

    /// Runs a microVM task, tracked so that a stop can wait for it.
    fn spawn_task(self: &Arc<Self>, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut tasks = lock(&self.tasks);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    /// Runs a build, tracked so that a stop can abort it.
    fn spawn_build(self: &Arc<Self>, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut builds = lock(&self.builds);
        while builds.try_join_next().is_some() {}
        builds.spawn(task);
    }
}

/// A std mutex's guard, poisoned or not: the data stays consistent because
/// every critical section here is a plain update.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A store failure as the API reports it.
fn internal(error: StoreError) -> ApiError {
    ApiError::internal(error)
}

#[async_trait]
impl Control for HearthControl {
    async fn create_microvm_image(
        &self,
        _ctx: &RequestContext,
        input: CreateMicrovmImageRequest,
    ) -> Result<CreateMicrovmImageResponse, ApiError> {
        self.inner.create_image(input)
    }

    async fn get_microvm_image(
        &self,
        _ctx: &RequestContext,
        input: GetMicrovmImageInput,
    ) -> Result<GetMicrovmImageOutput, ApiError> {
        self.inner.get_image(&input.image_identifier)
    }

    async fn update_microvm_image(
        &self,
        _ctx: &RequestContext,
        input: UpdateMicrovmImageRequest,
    ) -> Result<UpdateMicrovmImageResponse, ApiError> {
        self.inner.update_image(input)
    }

    async fn delete_microvm_image(
        &self,
        _ctx: &RequestContext,
        input: DeleteMicrovmImageInput,
    ) -> Result<DeleteMicrovmImageOutput, ApiError> {
        self.inner.delete_image(input).await
    }

    async fn list_microvm_images(
        &self,
        _ctx: &RequestContext,
        input: ListMicrovmImagesRequest,
    ) -> Result<ListMicrovmImagesResponse, ApiError> {
        self.inner.list_images(input)
    }

    async fn get_microvm_image_version(
        &self,
        _ctx: &RequestContext,
        input: GetMicrovmImageVersionInput,
    ) -> Result<GetMicrovmImageVersionOutput, ApiError> {
        self.inner
            .get_version(&input.image_identifier, &input.image_version)
    }

    async fn update_microvm_image_version(
        &self,
        _ctx: &RequestContext,
        input: UpdateMicrovmImageVersionRequest,
    ) -> Result<UpdateMicrovmImageVersionResponse, ApiError> {
        self.inner.update_version(input)
    }

    async fn delete_microvm_image_version(
        &self,
        _ctx: &RequestContext,
        input: DeleteMicrovmImageVersionInput,
    ) -> Result<DeleteMicrovmImageVersionOutput, ApiError> {
        self.inner.delete_version(input).await
    }

    async fn list_microvm_image_versions(
        &self,
        _ctx: &RequestContext,
        input: ListMicrovmImageVersionsInput,
    ) -> Result<ListMicrovmImageVersionsOutput, ApiError> {
        self.inner.list_versions(input)
    }

    async fn get_microvm_image_build(
        &self,
        _ctx: &RequestContext,
        input: GetMicrovmImageBuildInput,
    ) -> Result<GetMicrovmImageBuildOutput, ApiError> {
        self.inner.get_build(input)
    }

    async fn list_microvm_image_builds(
        &self,
        _ctx: &RequestContext,
        input: ListMicrovmImageBuildsInput,
    ) -> Result<ListMicrovmImageBuildsOutput, ApiError> {
        self.inner.list_builds(input)
    }

    async fn list_managed_microvm_images(
        &self,
        _ctx: &RequestContext,
        input: ListManagedMicrovmImagesInput,
    ) -> Result<ListManagedMicrovmImagesOutput, ApiError> {
        self.inner.list_base_images(input)
    }

    async fn list_managed_microvm_image_versions(
        &self,
        _ctx: &RequestContext,
        input: ListManagedMicrovmImageVersionsInput,
    ) -> Result<ListManagedMicrovmImageVersionsOutput, ApiError> {
        self.inner.list_base_image_versions(input)
    }

    async fn run_microvm(
        &self,
        _ctx: &RequestContext,
        input: RunMicrovmRequest,
    ) -> Result<RunMicrovmResponse, ApiError> {
        self.inner.run_microvm(input)
    }

    async fn get_microvm(
        &self,
        _ctx: &RequestContext,
        input: GetMicrovmRequest,
    ) -> Result<GetMicrovmResponse, ApiError> {
        self.inner.get_microvm(&input.microvm_identifier)
    }

    async fn list_microvms(
        &self,
        _ctx: &RequestContext,
        input: ListMicrovmsRequest,
    ) -> Result<ListMicrovmsResponse, ApiError> {
        self.inner.list_microvms(input)
    }

    async fn suspend_microvm(
        &self,
        _ctx: &RequestContext,
        input: SuspendMicrovmRequest,
    ) -> Result<SuspendMicrovmResponse, ApiError> {
        self.inner.suspend_microvm(&input.microvm_identifier)
    }

    async fn resume_microvm(
        &self,
        _ctx: &RequestContext,
        input: ResumeMicrovmRequest,
    ) -> Result<ResumeMicrovmResponse, ApiError> {
        self.inner.resume_microvm(&input.microvm_identifier)
    }

    async fn terminate_microvm(
        &self,
        _ctx: &RequestContext,
        input: TerminateMicrovmRequest,
    ) -> Result<TerminateMicrovmResponse, ApiError> {
        self.inner.terminate_microvm(&input.microvm_identifier)
    }

    async fn create_microvm_auth_token(
        &self,
        _ctx: &RequestContext,
        input: CreateMicrovmAuthTokenRequest,
    ) -> Result<CreateMicrovmAuthTokenResponse, ApiError> {
        self.inner.auth_token(input)
    }

    async fn create_microvm_shell_auth_token(
        &self,
        _ctx: &RequestContext,
        input: CreateMicrovmShellAuthTokenRequest,
    ) -> Result<CreateMicrovmShellAuthTokenResponse, ApiError> {
        self.inner.shell_token(input)
    }

    async fn tag_resource(
        &self,
        _ctx: &RequestContext,
        input: TagResourceRequest,
    ) -> Result<(), ApiError> {
        self.inner.tag(input)
    }

    async fn untag_resource(
        &self,
        _ctx: &RequestContext,
        input: UntagResourceRequest,
    ) -> Result<(), ApiError> {
        self.inner.untag(input)
    }

    async fn list_tags(
        &self,
        _ctx: &RequestContext,
        input: ListTagsRequest,
    ) -> Result<ListTagsResponse, ApiError> {
        self.inner.list_tags(input)
    }
}
