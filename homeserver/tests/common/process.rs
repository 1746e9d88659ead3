//! The `teatime` binary as a child process, for tests of the whole program.

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use reqwest::StatusCode;

/// `teatime` run in `dir`, with no `TEATIME_*` variables inherited.
pub fn teatime(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_teatime"));
    command.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("TEATIME_") {
            command.env_remove(key);
        }
    }
    command
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A `teatime serve` child process, killed when dropped.
pub struct Served {
    pub child: Child,
    pub base: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `teatime serve` in `dir` (so its data goes to `dir/data`) on a free
/// port, with `envs` added, and waits until `/healthz` answers.
pub async fn serve(dir: &Path, envs: &[(&str, &str)]) -> Served {
    serve_logging_to(dir, envs, Stdio::null()).await
}

/// Like [`serve`], with the server's log (stderr) going to `log`.
pub async fn serve_logging_to(dir: &Path, envs: &[(&str, &str)], log: impl Into<Stdio>) -> Served {
    let port = free_port();
    let child = teatime(dir)
        .arg("serve")
        .env("TEATIME_LISTEN", format!("127.0.0.1:{port}"))
        .env("TEATIME_FEDERATION_LISTEN", "127.0.0.1:0")
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("teatime starts");
    let served = Served {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = reqwest::get(format!("{}/healthz", served.base)).await
            && response.status() == StatusCode::OK
        {
            return served;
        }
        assert!(
            Instant::now() < deadline,
            "teatime did not become healthy within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
