//! Isolation with real namespaces: a stand-in guest behind each VM network
//! reaches a server standing for the internet (in a namespace this test
//! makes), but neither the host's own addresses nor another VM, and a VM
//! without egress reaches nothing outside.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hearth_net::{Egress, GuestLink, HostNetwork, VmNet, GUEST_ADDRESS, GUEST_GATEWAY};

/// Everything the test made, removed even when it fails.
struct Lab {
    host: HostNetwork,
    namespaces: Vec<String>,
    links: Vec<String>,
    servers: Vec<Child>,
    nets: Vec<VmNet>,
    forwarding: String,
    www: tempfile_dir::Dir,
}

mod tempfile_dir {
    /// A scratch directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Lab {
    fn new() -> Lab {
        let tag = std::process::id() % 10000;
        let host = HostNetwork {
            prefix: format!("ht{tag}"),
            table: format!("hearth_test_{tag}"),
            uplinks: [10, 202],
        };
        let forwarding =
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("ip_forward");
        let www = std::env::temp_dir().join(format!("hearth-net-www-{tag}"));
        std::fs::create_dir_all(&www).expect("www");
        std::fs::write(www.join("index.html"), "hello from outside\n").expect("index");
        Lab {
            host,
            namespaces: Vec::new(),
            links: Vec::new(),
            servers: Vec::new(),
            nets: Vec::new(),
            forwarding: forwarding.trim().to_owned(),
            www: tempfile_dir::Dir(www),
        }
    }

    fn netns(&mut self, name: &str) -> String {
        let ns = format!("{}-{name}", self.host.prefix);
        sh(&["ip", "netns", "add", &ns]);
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        self.namespaces.push(ns.clone());
        ns
    }

    /// An HTTP server in `ns` on `addr:port`.
    fn serve(&mut self, ns: Option<&str>, addr: &str, port: u16) {
        let listen = format!("{addr}:{port}");
        let www = self.www.0.to_str().expect("path").to_owned();
        let mut command = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args([
                    "netns", "exec", ns, "busybox", "httpd", "-f", "-p", &listen, "-h", &www,
                ]);
                c
            }
            None => {
                let mut c = Command::new("busybox");
                c.args(["httpd", "-f", "-p", &listen, "-h", &www]);
                c
            }
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("httpd");
        self.servers.push(child);
        std::thread::sleep(Duration::from_millis(300));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            for net in &self.nets {
                net.destroy().await;
            }
            self.host.remove().await;
        });
        for link in &self.links {
            let _ = Command::new("ip").args(["link", "del", link]).output();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", &self.forwarding);
    }
}

/// Whether an HTTP GET from inside `ns` succeeds within a few seconds.
// (curl, not busybox wget: the static busybox's wget crashes with `-T`.)
fn reaches(ns: &str, url: &str) -> bool {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-s", "-m", "3", url])
        .output()
        .expect("curl");
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("hello")
}

/// Like [`reaches`], trying for up to 15 seconds.
fn eventually_reaches(ns: &str, url: &str) -> bool {
    (0..15).any(|_| reaches(ns, url) || (std::thread::sleep(Duration::from_secs(1)), false).1)
}

fn configure_guest(ns: &str) {
    sh(&["ip", "-n", ns, "addr", "add", GUEST_ADDRESS, "dev", "eth0"]);
    sh(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
    sh(&[
        "ip",
        "-n",
        ns,
        "route",
        "add",
        "default",
        "via",
        GUEST_GATEWAY,
    ]);
}

#[test]
fn guests_reach_the_internet_but_not_the_host_or_each_other() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut lab = Lab::new();
    runtime.block_on(lab.host.install()).expect("host rules");

    // The internet: a namespace routed from the host, with a web server.
    let inet = lab.netns("inet");
    // Named outside the VM prefix: the host forwards to it like any uplink.
    let inet_link = format!("hx{}", std::process::id() % 10000);
    sh(&[
        "ip", "link", "add", &inet_link, "type", "veth", "peer", "name", "eth0", "netns", &inet,
    ]);
    lab.links.push(inet_link.clone());
    sh(&["ip", "addr", "add", "198.51.100.1/24", "dev", &inet_link]);
    sh(&["ip", "link", "set", &inet_link, "up"]);
    sh(&[
        "ip",
        "-n",
        &inet,
        "addr",
        "add",
        "198.51.100.2/24",
        "dev",
        "eth0",
    ]);
    sh(&["ip", "-n", &inet, "link", "set", "eth0", "up"]);
    sh(&[
        "ip",
        "-n",
        &inet,
        "route",
        "add",
        "default",
        "via",
        "198.51.100.1",
    ]);
    lab.serve(Some(&inet), "198.51.100.2", 8080);

    // Three VMs: two with egress, one without, each with a stand-in guest.
    let mut guests = Vec::new();
    for (slot, egress) in [
        (1, Egress::Internet),
        (2, Egress::Internet),
        (3, Egress::None),
    ] {
        let guest = lab.netns(&format!("g{slot}"));
        let link = GuestLink::Veth {
            peer_netns: guest.clone(),
        };
        let net = runtime
            .block_on(VmNet::create(&lab.host, slot, egress, link))
            .expect("vm network");
        lab.nets.push(net);
        configure_guest(&guest);
        guests.push(guest);
    }
    let (a, b) = (lab.nets[0].clone(), lab.nets[1].clone());

    // A service on the host's own address facing VM a, and one inside VM b's
    // namespace.
    lab.serve(None, &a.host_address, 8081);
    lab.serve(Some(&b.netns), &b.netns_address, 8082);
    lab.serve(None, "198.51.100.1", 8083);

    // New links take a moment to carry traffic: the positive checks wait for
    // it, so that the negative ones after them cannot pass by accident.
    assert!(
        eventually_reaches(&guests[0], "http://198.51.100.2:8080/"),
        "guest a cannot reach the internet"
    );
    assert!(
        eventually_reaches(&guests[1], "http://198.51.100.2:8080/"),
        "guest b cannot reach the internet"
    );
    assert!(
        !reaches(&guests[0], &format!("http://{}:8081/", a.host_address)),
        "guest a reached the host's uplink address"
    );
    assert!(
        !reaches(&guests[0], "http://198.51.100.1:8083/"),
        "guest a reached another of the host's addresses"
    );
    assert!(
        !reaches(&guests[0], &format!("http://{}:8082/", b.netns_address)),
        "guest a reached VM b's namespace"
    );
    let gateway_up = (0..20).any(|_| {
        let ping = [
            "netns",
            "exec",
            &guests[2],
            "busybox",
            "ping",
            "-c1",
            "-W1",
            GUEST_GATEWAY,
        ];
        Command::new("ip")
            .args(ping)
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(
        gateway_up,
        "the guest without egress cannot reach its gateway"
    );
    assert!(
        !reaches(&guests[2], "http://198.51.100.2:8080/"),
        "a VM without egress got out"
    );

    // The host itself still reaches the internet namespace: nothing else broke.
    let out = Command::new("curl")
        .args(["-s", "-m", "3", "http://198.51.100.2:8080/"])
        .output()
        .expect("curl");
    assert!(out.status.success());
}

#[tokio::test]
async fn a_slot_beyond_the_plan_is_refused() {
    let host = HostNetwork::default();
    let err = VmNet::create(&host, 20000, Egress::None, GuestLink::Tap)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("20000"), "{err}");
}
