//! End-to-end: real VMs booted, driven, snapshotted and restored through the
//! `hearth` binary.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::Hearth;

/// An app that counts in memory and publishes the count atomically.
const COUNTER: &str =
    "i=0; while true; do i=$((i+1)); echo $i > /tmp/c.new; mv /tmp/c.new /tmp/count; sleep 0.1; done";

fn count(hearth: &Hearth, id: &str) -> u64 {
    let out = hearth.sh(id, "cat /tmp/count");
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("counter in {id} is {out:?}"))
}

/// The counter once the app has written it.
fn started_count(hearth: &Hearth, id: &str) -> u64 {
    hearth.wait_for("the counter", Duration::from_secs(30), || {
        let (code, out, _) = hearth.exec(id, &["cat", "/tmp/count"]);
        if code == 0 {
            out.trim().parse().ok()
        } else {
            None
        }
    })
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    let mut file = std::fs::File::open("/dev/urandom").expect("urandom");
    std::io::Read::read_exact(&mut file, &mut data).expect("random bytes");
    data
}

#[test]
fn busybox_vm_runs_commands_through_its_agent() {
    let hearth = Hearth::new();
    let id = hearth.boot(None);

    // The CLI that booted it has exited; the VM is still reachable.
    let (code, out, _) = hearth.exec(&id, &["uname", "-r"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), hearth.kernel_release());

    let (code, out, err) = hearth.exec(&id, &["sh", "-c", "echo out; echo oops >&2; exit 3"]);
    assert_eq!((code, out.as_str(), err.as_str()), (3, "out\n", "oops\n"));

    // 1 MiB through `cat` comes back byte for byte.
    let data = random_bytes(1 << 20);
    let mut child = hearth
        .cmd()
        .args(["vm", "exec", &id, "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("exec cat");
    let mut stdin = child.stdin.take().expect("stdin");
    let to_send = data.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&to_send).expect("write stdin"));
    let out = child.wait_with_output().expect("cat output");
    writer.join().expect("writer");
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "cat returned different bytes");

    // Sixteen execs at once, each with its own output.
    let children: Vec<_> = (0..16)
        .map(|i| {
            hearth
                .cmd()
                .args([
                    "vm",
                    "exec",
                    &id,
                    "--",
                    "sh",
                    "-c",
                    &format!("sleep 0.2; echo exec-{i}"),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn exec")
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("exec output");
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("exec-{i}\n"));
    }

    // A program that does not exist is an error, not a hang.
    let (code, _, err) = hearth.exec(&id, &["/no/such/program"]);
    assert_ne!(code, 0);
    assert!(err.contains("/no/such/program"), "stderr: {err}");

    hearth.ok(&["vm", "rm", &id]);
    assert!(!hearth.vm_dir(&id).exists());
}

#[test]
fn files_round_trip_and_tunnels_reach_guest_ports() {
    let hearth = Hearth::new();
    let id = hearth.boot(Some("nc -ll -p 7000 -e cat"));

    let local = hearth.path("payload.bin");
    let data = random_bytes(300 * 1024);
    std::fs::write(&local, &data).expect("write payload");
    hearth.ok(&[
        "vm",
        "cp",
        local.to_str().expect("path"),
        &format!("{id}:/root/payload.bin"),
    ]);
    let back = hearth.path("back.bin");
    hearth.ok(&[
        "vm",
        "cp",
        &format!("{id}:/root/payload.bin"),
        back.to_str().expect("path"),
    ]);
    assert!(
        std::fs::read(&back).expect("read back") == data,
        "file changed in the round trip"
    );
    let sum = hearth.sh(&id, "md5sum /root/payload.bin");
    assert!(
        sum.starts_with(&format!("{:032x}", md5_of(&data))),
        "guest md5 {sum}"
    );

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let dir = hearth_shim::VmDir::at(hearth.vm_dir(&id));
        let client = hearth_shim::ShimClient::connect(&dir)
            .await
            .expect("connect");

        // The echo server may need a moment to listen.
        let stream = loop {
            match client.tunnel(7000).await {
                Ok(stream) => break stream,
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let (tx, mut rx) = stream.split();
        tx.data(0, b"ping through the tunnel\n")
            .await
            .expect("send");
        let mut got = Vec::new();
        while !got.ends_with(b"\n") {
            match rx.recv().await {
                hearth_protocol::Event::Data { bytes, .. } => got.extend_from_slice(&bytes),
                other => panic!("tunnel ended early: {other:?}"),
            }
        }
        assert_eq!(got, b"ping through the tunnel\n");

        // Nothing listens on another port: a clear refusal.
        let err = client.tunnel(7001).await.err().expect("refused");
        assert!(err.to_string().contains("7001"), "{err}");
    });
}

fn md5_of(data: &[u8]) -> u128 {
    let out = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().expect("stdin").write_all(data)?;
            child.wait_with_output()
        })
        .expect("md5sum");
    let text = String::from_utf8_lossy(&out.stdout);
    u128::from_str_radix(&text[..32], 16).expect("hex")
}

#[test]
fn interactive_shell_over_a_pty() {
    let hearth = Hearth::new();
    let id = hearth.boot(None);

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        use hearth_protocol::{Control, Event, ExecSpec, Request, TtySize};
        let dir = hearth_shim::VmDir::at(hearth.vm_dir(&id));
        let client = hearth_shim::ShimClient::connect(&dir)
            .await
            .expect("connect");
        let spec = ExecSpec {
            argv: vec!["sh".into(), "-i".into()],
            tty: Some(TtySize {
                rows: 30,
                cols: 100,
            }),
            ..ExecSpec::default()
        };
        let (tx, mut rx) = client.agent(Request::Exec(spec)).expect("open").split();
        let mut screen = String::new();
        let mut exit = None;

        let mut read_until = async |screen: &mut String, needle: &str| {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !screen.contains(needle) {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, rx.recv())
                    .await
                    .expect("output in time")
                {
                    Event::Data { bytes, .. } => screen.push_str(&String::from_utf8_lossy(&bytes)),
                    Event::Control(Control::Exit(status)) => exit = Some(status),
                    Event::Closed { .. } => break,
                    _ => {}
                }
            }
        };

        read_until(&mut screen, "# ").await;
        tx.data(0, b"echo pty-$((6*7))\n").await.expect("type");
        read_until(&mut screen, "pty-42").await;
        tx.data(0, b"stty size\n").await.expect("type");
        read_until(&mut screen, "30 100").await;
        tx.control(&Control::Resize(TtySize {
            rows: 40,
            cols: 120,
        }))
        .expect("resize");
        tx.data(0, b"stty size\n").await.expect("type");
        read_until(&mut screen, "40 120").await;
        tx.data(0, b"exit 7\n").await.expect("type");
        read_until(&mut screen, "\u{0}never").await;
        assert_eq!(exit.and_then(|s| s.code), Some(7), "screen: {screen}");
    });
}

#[test]
fn restored_vms_continue_with_their_own_randomness_and_the_hosts_clock() {
    let hearth = Hearth::new();
    let id = hearth.boot(Some(COUNTER));
    hearth.wait_for("the counter", Duration::from_secs(30), || {
        (started_count(&hearth, &id) >= 5).then_some(())
    });

    let snap = hearth.path("snap");
    let before = count(&hearth, &id);
    hearth.ok(&[
        "vm",
        "snapshot",
        &id,
        snap.to_str().expect("path"),
        "--stop",
    ]);
    let stopped = hearth.state(&id);
    assert_eq!(stopped["status"], "exited", "{stopped}");

    let a = hearth
        .ok(&["vm", "restore", snap.to_str().expect("path")])
        .trim()
        .to_owned();
    let b = hearth
        .ok(&["vm", "restore", snap.to_str().expect("path")])
        .trim()
        .to_owned();
    assert_ne!(a, b);

    for vm in [&a, &b] {
        let first = count(&hearth, vm);
        assert!(
            first >= before,
            "{vm} restarted its count: {first} < {before}"
        );
        assert!(
            first < before + 100,
            "{vm} did not continue from the snapshot: {first}"
        );
        hearth.wait_for("the count to move", Duration::from_secs(20), || {
            (count(&hearth, vm) > first).then_some(())
        });

        let guest: u64 = hearth.sh(vm, "date +%s").trim().parse().expect("date");
        let host = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        assert!(
            guest.abs_diff(host) <= 2,
            "{vm} clock {guest} vs host {host}"
        );
    }

    let random_a = hearth.sh(&a, "head -c 32 /dev/urandom | od -An -tx1");
    let random_b = hearth.sh(&b, "head -c 32 /dev/urandom | od -An -tx1");
    assert_ne!(
        random_a, random_b,
        "two restored VMs read the same random bytes"
    );
}

#[test]
fn twenty_snapshot_restore_cycles_keep_memory_and_disk() {
    let hearth = Hearth::new();
    let mut id = hearth.boot(Some(COUNTER));
    hearth.sh(&id, "echo 'kept across cycles' > /root/note");
    let mut last = started_count(&hearth, &id);

    for cycle in 0..20 {
        let snap = hearth.path(&format!("snap-{cycle}"));
        hearth.ok(&[
            "vm",
            "snapshot",
            &id,
            snap.to_str().expect("path"),
            "--stop",
        ]);
        let next = hearth
            .ok(&["vm", "restore", snap.to_str().expect("path")])
            .trim()
            .to_owned();
        hearth.ok(&["vm", "rm", &id]);
        std::fs::remove_dir_all(&snap).expect("remove snapshot");
        id = next;

        let now = count(&hearth, &id);
        assert!(
            now >= last,
            "cycle {cycle}: count went back from {last} to {now}"
        );
        last = now;
    }
    assert_eq!(hearth.sh(&id, "cat /root/note"), "kept across cycles\n");
    hearth.wait_for("the count to move", Duration::from_secs(20), || {
        (count(&hearth, &id) > last).then_some(())
    });
}

#[test]
fn a_snapshot_taken_while_running_lets_the_vm_continue() {
    let hearth = Hearth::new();
    let id = hearth.boot(Some(COUNTER));
    started_count(&hearth, &id);
    let snap = hearth.path("live");
    hearth.ok(&["vm", "snapshot", &id, snap.to_str().expect("path")]);

    let first = count(&hearth, &id);
    hearth.wait_for("the count to move", Duration::from_secs(20), || {
        (count(&hearth, &id) > first).then_some(())
    });
    assert_eq!(hearth.state(&id)["status"], "running");
}

#[test]
fn damaged_snapshots_are_refused() {
    let hearth = Hearth::new();
    let id = hearth.boot(None);
    let snap = hearth.path("snap");
    hearth.ok(&[
        "vm",
        "snapshot",
        &id,
        snap.to_str().expect("path"),
        "--stop",
    ]);

    let truncated = hearth.path("truncated");
    copy_dir(&snap, &truncated);
    let memory = truncated.join("memory");
    let len = std::fs::metadata(&memory).expect("memory").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&memory)
        .expect("open")
        .set_len(len / 2)
        .expect("truncate");

    let flipped = hearth.path("flipped");
    copy_dir(&snap, &flipped);
    let memory = flipped.join("memory");
    let mut bytes = std::fs::read(&memory).expect("memory");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&memory, bytes).expect("write");

    for (damaged, expect) in [
        (&truncated, "memory"),
        (&flipped, "memory"),
        (&hearth.path("none"), "snapshot"),
    ] {
        let out = hearth.run(&["vm", "restore", damaged.to_str().expect("path")]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "restoring {} succeeded",
            damaged.display()
        );
        assert!(
            err.contains(expect),
            "error for {}: {err}",
            damaged.display()
        );
    }

    // Nothing was left behind by the refusals.
    let vms = std::fs::read_dir(hearth.path("vms")).expect("vms").count();
    assert_eq!(vms, 1, "a refused restore left a VM directory");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

#[test]
fn a_killed_qemu_is_the_vms_exit_not_a_hang() {
    let hearth = Hearth::new();
    let id = hearth.boot(None);
    let mut sleeper = hearth
        .cmd()
        .args(["vm", "exec", &id, "--", "sleep", "300"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("exec sleep");
    std::thread::sleep(Duration::from_secs(1));

    let qemu = hearth.state(&id)["qemu_pid"].as_u64().expect("qemu pid");
    Command::new("kill")
        .args(["-9", &qemu.to_string()])
        .status()
        .expect("kill");

    let started = Instant::now();
    let status = loop {
        if let Some(status) = sleeper.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "exec hung after QEMU was killed"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut sleeper.stderr.take().expect("stderr"), &mut err)
        .expect("stderr");
    assert!(
        err.contains("signal 9") || err.contains("killed"),
        "exec said: {err}"
    );

    let state = hearth.wait_for("the exit to be recorded", Duration::from_secs(10), || {
        let state = hearth.state(&id);
        (state["status"] == "exited").then_some(state)
    });
    let reason = state["exit"].as_str().unwrap_or_default().to_owned();
    assert!(
        reason.contains("signal 9") || reason.contains("killed"),
        "recorded exit: {reason}"
    );

    let (code, _, err) = hearth.exec(&id, &["true"]);
    assert_ne!(code, 0);
    assert!(err.contains("not running"), "{err}");
}

#[test]
fn errors_name_their_cause() {
    let hearth = Hearth::new();
    let out = hearth.run(&["vm", "exec", "vm-000000000000", "--", "true"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such vm"));

    let out = hearth
        .cmd()
        .env("HEARTH_ASSETS", hearth.path("nowhere"))
        .args([
            "vm",
            "boot",
            "--rootfs",
            hearth.rootfs.to_str().expect("path"),
        ])
        .output()
        .expect("boot");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("guest assets missing"));

    let out = hearth.run(&["vm", "boot", "--rootfs", "/no/such/rootfs"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/rootfs"));
}

#[test]
fn the_accelerator_probe_picks_one_in_bounded_time() {
    let hearth = Hearth::probing();
    let started = Instant::now();
    let id = hearth.boot(None);
    let accel = hearth.state(&id)["accel"]
        .as_str()
        .expect("accel")
        .to_owned();
    assert!(accel == "tcg" || accel == "kvm", "accel {accel}");

    // The answer must actually run a guest, and is cached for the next VM.
    let (code, _, _) = hearth.exec(&id, &["true"]);
    assert_eq!(code, 0);
    assert!(
        hearth.path("accel.json").is_file(),
        "the probe's answer was not cached"
    );
    assert!(started.elapsed() < Duration::from_secs(120));
}

/// An app that appends numbered random values as fast as it can.
const RANDOM_WRITER: &str = "i=0; while true; do i=$((i+1)); \
     echo \"$i $(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \\n')\" >> /tmp/rnd; done";

#[test]
fn restored_vms_share_no_random_output_made_after_the_snapshot() {
    let hearth = Hearth::new();
    let id = hearth.boot(Some(RANDOM_WRITER));
    hearth.wait_for("random lines", Duration::from_secs(30), || {
        (hearth
            .sh(&id, "cat /tmp/rnd 2>/dev/null | wc -l")
            .trim()
            .parse::<u32>()
            .unwrap_or(0)
            >= 20)
            .then_some(())
    });
    let snap = hearth.path("snap");
    hearth.ok(&[
        "vm",
        "snapshot",
        &id,
        snap.to_str().expect("path"),
        "--stop",
    ]);

    let a = hearth
        .ok(&["vm", "restore", snap.to_str().expect("path")])
        .trim()
        .to_owned();
    let b = hearth
        .ok(&["vm", "restore", snap.to_str().expect("path")])
        .trim()
        .to_owned();
    std::thread::sleep(Duration::from_secs(2));
    let lines_a: Vec<String> = hearth
        .sh(&a, "cat /tmp/rnd")
        .lines()
        .map(str::to_owned)
        .collect();
    let lines_b: Vec<String> = hearth
        .sh(&b, "cat /tmp/rnd")
        .lines()
        .map(str::to_owned)
        .collect();
    let common = lines_a
        .iter()
        .zip(&lines_b)
        .take_while(|(x, y)| x == y)
        .count();
    assert!(
        common > 0 && lines_a.len() > common && lines_b.len() > common,
        "no new output"
    );

    // Every value both share was drawn before the snapshot, so it is in the
    // snapshot's memory (as raw bytes in a pipe, as `od` text, or in the
    // guest's page cache); a value drawn after the restore would not be.
    let memory = std::fs::read(snap.join("memory")).expect("memory");
    let last_shared = &lines_a[common - 1];
    let hex = last_shared.split_whitespace().nth(1).expect("a value");
    let raw: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    let spaced: String = raw.iter().map(|b| format!(" {b:02x}")).collect();
    let forms = [raw, hex.as_bytes().to_vec(), spaced.into_bytes()];
    assert!(
        forms
            .iter()
            .any(|form| memory.windows(form.len()).any(|w| w == &form[..])),
        "value {last_shared:?}, shared by both restored VMs, was drawn after the restore"
    );
}
