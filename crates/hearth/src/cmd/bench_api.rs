//! `hearth bench api`: the microVM lifecycle as an API client sees it,
//! against a `hearth serve` the benchmark starts on loopback with a data
//! directory (and AWS config files) of its own, and stops at the end.
//!
//! Figures, each a median: RunMicrovm to RUNNING, SuspendMicrovm to
//! SUSPENDED, ResumeMicrovm to RUNNING, and ten RunMicrovm calls at once
//! until all ten are RUNNING. The image is busybox httpd built from a
//! Dockerfile, without hooks, so the figures are hearth's own.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hearth::client::{Client, ClientConfig};
use hearth_api::model::*;

/// How often a wait polls the API.
const POLL: Duration = Duration::from_millis(25);

/// How long any one wait may take.
const WAIT: Duration = Duration::from_secs(300);

/// The microVMs run at once.
const BURST: usize = 10;

/// The app the benchmark builds.
const DOCKERFILE: &str = "FROM busybox\nEXPOSE 8080\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\"]\n";

/// Runs the benchmark: `runs` of each figure (the burst `max(1, runs/2)`
/// times), guests of `memory` MiB.
pub async fn api(runs: usize, memory: u32) -> Result<ExitCode> {
    let scratch = tempfile::Builder::new()
        .prefix("h-bench-")
        .tempdir_in("/tmp")?;
    let mut server = Server::start(scratch.path(), memory)?;
    let outcome = measure(&server.client, runs).await;
    let ended = end_all(&server.client).await;
    server.stop();
    let figures = outcome?;
    ended?;
    figures.print(runs, memory);
    Ok(ExitCode::SUCCESS)
}

/// The figures, in seconds per sample.
struct Figures {
    run: Vec<f64>,
    suspend: Vec<f64>,
    resume: Vec<f64>,
    burst: Vec<f64>,
}

impl Figures {
    fn print(&self, runs: usize, memory: u32) {
        println!("hearth bench api: {runs} runs, {memory} MiB guests, medians");
        let run = median(&self.run);
        let rows = [
            ("RunMicrovm to RUNNING", run, "AWS 3.5 s launch-to-serving"),
            (
                "SuspendMicrovm to SUSPENDED",
                median(&self.suspend),
                "AWS 2.5 s",
            ),
            (
                "ResumeMicrovm to RUNNING",
                median(&self.resume),
                "AWS 2.6 s",
            ),
            (
                "10 RunMicrovm at once, all RUNNING",
                median(&self.burst),
                "",
            ),
        ];
        for (what, seconds, anchor) in rows {
            println!("{what:<38} {seconds:>7.2} s   {anchor}");
        }
        println!(
            "10 at once / 10 one after another: {:.2}",
            median(&self.burst) / (run * BURST as f64)
        );
    }
}

async fn measure(client: &Client, runs: usize) -> Result<Figures> {
    build_image(client).await?;
    let mut figures = Figures {
        run: Vec::new(),
        suspend: Vec::new(),
        resume: Vec::new(),
        burst: Vec::new(),
    };

    for _ in 0..runs {
        let begun = Instant::now();
        let id = run(client).await?;
        wait(client, &id, MicrovmState::Running).await?;
        figures.run.push(begun.elapsed().as_secs_f64());

        let request = SuspendMicrovmRequest {
            microvm_identifier: id.clone(),
        };
        let begun = Instant::now();
        client.suspend_microvm(&request).await?;
        wait(client, &id, MicrovmState::Suspended).await?;
        figures.suspend.push(begun.elapsed().as_secs_f64());

        let request = ResumeMicrovmRequest {
            microvm_identifier: id.clone(),
        };
        let begun = Instant::now();
        client.resume_microvm(&request).await?;
        wait(client, &id, MicrovmState::Running).await?;
        figures.resume.push(begun.elapsed().as_secs_f64());
        terminate(client, &id).await?;
    }

    for _ in 0..(runs / 2).max(1) {
        let begun = Instant::now();
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..BURST {
            let client = client.clone();
            calls.spawn(async move { run(&client).await });
        }
        let mut ids = Vec::new();
        while let Some(called) = calls.join_next().await {
            ids.push(called??);
        }
        for id in &ids {
            wait(client, id, MicrovmState::Running).await?;
        }
        figures.burst.push(begun.elapsed().as_secs_f64());
        for id in &ids {
            terminate(client, id).await?;
        }
    }
    Ok(figures)
}

/// Uploads the app and builds it into the image `bench`.
async fn build_image(client: &Client) -> Result<()> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("Dockerfile", zip::write::SimpleFileOptions::default())?;
    zip.write_all(DOCKERFILE.as_bytes())?;
    let body = zip.finish()?.into_inner();
    client.ensure_bucket("bench").await?;
    let uri = client.put_object("bench", "app.zip", body).await?;

    let request: CreateMicrovmImageRequest = serde_json::from_value(serde_json::json!({
        "name": "bench",
        "baseImageArn": "arn:aws:lambda:us-east-1:aws:microvm-image:al2023-1",
        "buildRoleArn": "arn:aws:iam::000000000000:role/bench",
        "codeArtifact": {"uri": uri},
    }))?;
    client.create_microvm_image(&request).await?;
    let deadline = Instant::now() + WAIT;
    loop {
        let image = client
            .get_microvm_image(&GetMicrovmImageInput {
                image_identifier: "bench".to_owned(),
            })
            .await?;
        match image.state {
            MicrovmImageState::Created => return Ok(()),
            MicrovmImageState::Creating if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            state => bail!("the benchmark image is {state}"),
        }
    }
}

async fn run(client: &Client) -> Result<String> {
    let request: RunMicrovmRequest =
        serde_json::from_value(serde_json::json!({"imageIdentifier": "bench"}))?;
    Ok(client.run_microvm(&request).await?.microvm_id)
}

async fn terminate(client: &Client, id: &str) -> Result<()> {
    let request = TerminateMicrovmRequest {
        microvm_identifier: id.to_owned(),
    };
    client.terminate_microvm(&request).await?;
    wait(client, id, MicrovmState::Terminated).await
}

/// Polls until microVM `id` is in `state`.
async fn wait(client: &Client, id: &str, state: MicrovmState) -> Result<()> {
    let request = GetMicrovmRequest {
        microvm_identifier: id.to_owned(),
    };
    let deadline = Instant::now() + WAIT;
    loop {
        let microvm = client.get_microvm(&request).await?;
        if microvm.state == state {
            return Ok(());
        }
        if microvm.state == MicrovmState::Terminated || Instant::now() >= deadline {
            bail!(
                "microvm {id} is {} ({}), not {state}",
                microvm.state,
                microvm.state_reason.as_deref().unwrap_or("no reason")
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Terminates whatever still runs, so that stopping the server leaves no VM.
async fn end_all(client: &Client) -> Result<()> {
    for microvm in client
        .list_all_microvms(ListMicrovmsRequest::default())
        .await?
    {
        if microvm.state != MicrovmState::Terminated {
            terminate(client, &microvm.microvm_id).await?;
        }
    }
    Ok(())
}

/// The `hearth serve` under test.
struct Server {
    child: Child,
    client: Client,
}

impl Server {
    /// Starts `hearth serve` on free loopback ports with its data and AWS
    /// config files under `scratch`.
    fn start(scratch: &Path, memory: u32) -> Result<Self> {
        let data = scratch.join("data");
        seed_base_images(&data)?;
        let mut child = Command::new(std::env::current_exe()?)
            .arg("serve")
            .arg("--data")
            .arg(&data)
            .args(["--listen", "127.0.0.1:0", "--s3-listen", "127.0.0.1:0"])
            .args(["--guest-memory-cap-mib", &memory.to_string()])
            .arg("--exit-on-stdin-eof")
            .env("AWS_CONFIG_FILE", scratch.join("aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                scratch.join("aws-credentials"),
            )
            .env("HEARTH_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting hearth serve")?;

        let stdout = child.stdout.take().context("serve's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut endpoint = None;
        let mut s3 = None;
        while endpoint.is_none() || s3.is_none() {
            let Some(line) = lines.next().transpose()? else {
                let _ = child.kill();
                bail!("hearth serve exited before it listened");
            };
            match line.split_once(' ') {
                Some(("api", url)) => endpoint = Some(url.to_owned()),
                Some(("s3", url)) => s3 = Some(url.to_owned()),
                _ => {}
            }
        }
        let config = ClientConfig::resolve(endpoint.as_deref(), s3.as_deref(), &data)?;
        Ok(Self {
            child,
            client: Client::new(config),
        })
    }

    /// Closes the server's standard input (it exits) and waits for it.
    fn stop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Gives the benchmark's data directory the base images its Dockerfile
/// starts FROM: the usual data directory's store, linked, else busybox
/// seeded from the host's static busybox (`hearth image seed --no-debian`).
fn seed_base_images(data: &Path) -> Result<()> {
    std::fs::create_dir_all(data)?;
    let shared = crate::paths::data_dir().join("base-images");
    if shared.is_dir() {
        std::os::unix::fs::symlink(&shared, data.join("base-images"))?;
        return Ok(());
    }
    let seeded = Command::new(std::env::current_exe()?)
        .args(["image", "seed", "--no-debian"])
        .env("HEARTH_DATA", data)
        .status()
        .context("seeding busybox")?;
    if !seeded.success() {
        bail!("hearth image seed --no-debian failed ({seeded})");
    }
    Ok(())
}

/// The median of `samples` (0 when there are none).
fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians_take_the_middle_or_the_mean_of_the_two_middles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
