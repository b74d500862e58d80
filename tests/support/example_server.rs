//! The real example server binary (`examples/server.rs`), started on a free loopback port.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The example server's binary; see [`example_binary`].
pub fn server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| example_binary("server"))
}

/// The binary of example `name`, built with the features this test was built with, so it is never
/// stale and shares this build's artifacts (a no-op when `cargo test` has just built it).
pub fn example_binary(name: &str) -> PathBuf {
    {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test>-* -> target/<profile>/examples/server
        let profile_dir = exe.parent().and_then(Path::parent).expect("test executable in target/<profile>/deps");
        let binary = profile_dir.join("examples").join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        let features: Vec<&str> = [
            ("axum", cfg!(feature = "axum")),
            ("redis", cfg!(feature = "redis")),
            ("postgres", cfg!(feature = "postgres")),
            ("mysql", cfg!(feature = "mysql")),
            ("sqlite", cfg!(feature = "sqlite")),
            ("tonic", cfg!(feature = "tonic")),
            ("metrics", cfg!(feature = "metrics")),
        ]
        .into_iter()
        .filter_map(|(name, enabled)| enabled.then_some(name))
        .collect();
        let mut build = Command::new(env!("CARGO"));
        build.current_dir(env!("CARGO_MANIFEST_DIR")).args(["build", "--example", name]);
        if !features.is_empty() {
            build.args(["--features", &features.join(",")]);
        }
        let status = build.status().expect("run cargo build --example");
        assert!(status.success(), "cargo build --example {name} failed");
        assert!(binary.exists(), "{} missing after the build", binary.display());
        binary
    }
}

/// A running example server (`--addr 127.0.0.1:0` plus `args`), killed when dropped. Its stderr (the
/// request log) is collected for [`logs`](Self::logs).
pub struct ExampleServer {
    pub child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl ExampleServer {
    /// Starts the server and waits until it accepts connections.
    pub fn start(args: &[&str], rust_log: &str) -> Self {
        Self::start_in(None, args, rust_log)
    }

    /// Like [`start`](Self::start), in the working directory `dir` when given.
    pub fn start_in(dir: Option<&Path>, args: &[&str], rust_log: &str) -> Self {
        Self::start_binary(
            server_binary(),
            dir,
            &[&["--addr", "127.0.0.1:0"], args].concat(),
            &[("RUST_LOG", rust_log)],
        )
    }

    /// Starts `binary` with `args` and `env`, and waits until it prints `listening on http://ADDR` and
    /// accepts connections there.
    pub fn start_binary(binary: &Path, dir: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(binary);
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let mut child = command
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the example server");
        let (address_tx, address_rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let printed = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("listening on http://") {
                    let _ = address_tx.send(address.to_owned());
                }
                printed.lock().unwrap().push(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buffer) {
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        let address = match address_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(address) => address,
            Err(_) => {
                let _ = child.kill();
                panic!("server printed no listen address; stderr:\n{}", stderr.lock().unwrap());
            }
        };
        let addr: SocketAddr = address.parse().expect("a socket address");
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "server never accepted a connection on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, addr, stderr, stdout: lines }
    }

    /// The lines printed on stdout so far.
    pub fn printed(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Everything the server wrote to stderr so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for ExampleServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
