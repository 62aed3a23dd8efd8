use std::{
    ffi::OsString,
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A free port on 127.0.0.1, as the OS hands one out.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub fn connectable(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// One server process listening on 127.0.0.1:`port`, which `stop` and `restart` control.
pub struct Daemon {
    bin: PathBuf,
    args: Vec<OsString>,
    port: u16,
    child: Option<Child>,
}

impl Daemon {
    /// Starts `bin args...`, which must listen on `port`, and waits until it accepts
    /// connections.
    pub fn start(bin: PathBuf, args: Vec<OsString>, port: u16) -> Self {
        let mut d = Self {
            bin,
            args,
            port,
            child: None,
        };
        d.restart();
        d
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server and waits until its port is closed.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // TERM, not KILL, so that the watcher's trap stops the server too. The shell's
            // own `kill`: a minimal machine may have no kill binary (procps).
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!("kill {}", c.id()))
                .status();
            let _ = c.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while connectable(self.port) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the server again, with the same arguments and port.
    pub fn restart(&mut self) {
        self.stop();
        // The shell stops the server once this process is gone, so none outlives a test
        // run; the server's own arguments pass through untouched as "$@".
        let watch = format!(
            "\"$0\" \"$@\" & s=$!; \
             trap 'kill $s 2>/dev/null' EXIT TERM; \
             while kill -0 {parent} 2>/dev/null && kill -0 $s 2>/dev/null; do sleep 0.5; done",
            parent = std::process::id(),
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(watch)
            .arg(&self.bin)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !connectable(self.port) {
            assert!(
                Instant::now() < deadline,
                "{} did not listen on port {} within 30 s",
                self.bin.display(),
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
