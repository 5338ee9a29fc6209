//! `hearth-agent`: the guest's init. It boots the microVM, then serves the
//! host over the `hearth.agent` virtio-serial port until the guest powers off.
//!
//! PID 1 must never exit (the kernel would panic and the VM hang), so a
//! failure to reach the host powers the guest off instead, which ends QEMU.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use hearth_agent::system::{self, Machine};
use hearth_agent::{boot, describe, port, reaper, say, serve, Agent, AgentConfig};
use hearth_protocol::AGENT_PORT_NAME;

/// How long to wait for the agent's port to appear after boot.
const PORT_TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    if std::process::id() != 1 {
        eprintln!("hearth-agent: this is the guest's init and runs only as PID 1");
        std::process::exit(2);
    }
    std::panic::set_hook(Box::new(|info| say!("panic: {info}")));

    let report = boot::boot();
    reaper::global();
    if let Err(err) = run(report) {
        say!("fatal: {}", describe(err.as_ref()));
    }
    system::power_off_now();
}

fn run(report: boot::BootReport) -> Result<(), Box<dyn Error>> {
    let path = port::wait_for(AGENT_PORT_NAME, PORT_TIMEOUT)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("agent")
        .build()?;

    runtime.block_on(async {
        let (reader, writer) = port::open(&path)?;
        let config = AgentConfig {
            root_mounted: report.root_mounted,
            etc: "/etc".into(),
            fs_root: "/".into(),
        };
        let agent = Agent::new(config, Arc::new(Machine));
        let uptime = agent.info().uptime_secs;
        say!("serving on {} at {uptime:.2} s", path.display());
        serve::serve(agent, reader, writer).await;
        Ok(())
    })
}
