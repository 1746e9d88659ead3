//! Test support (feature `testing`): a real `s3s-fs` server on a loopback
//! port, for the tests of this crate and of the applications using it.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::S3Settings;

/// The credentials the test server accepts.
pub const ACCESS_KEY: &str = "teatime-test-access";
pub const SECRET_KEY: &str = "teatime-test-secret";

/// A running `s3s-fs`, killed on drop.
pub struct S3Server {
    child: Child,
    pub data_dir: TempDir,
    pub endpoint: String,
}

impl S3Server {
    /// Starts `s3s-fs` on a free port with an empty data dir.
    pub fn start() -> Self {
        let binary = s3s_fs_binary();
        let data_dir = TempDir::new().expect("temp dir");
        // The port is free when probed but could be taken before s3s-fs binds it.
        for _ in 0..5 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let mut child = Command::new(&binary)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                .arg(data_dir.path())
                .stdout(Stdio::null())
                .spawn()
                .expect("start s3s-fs");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if child.try_wait().expect("s3s-fs status").is_some() {
                    break;
                }
                if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                    return Self {
                        child,
                        data_dir,
                        endpoint: format!("http://127.0.0.1:{port}"),
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("s3s-fs did not start listening");
    }

    /// Creates a bucket (s3s-fs keeps each as a directory of its data dir).
    pub fn create_bucket(&self, bucket: &str) {
        std::fs::create_dir(self.data_dir.path().join(bucket)).expect("bucket directory");
    }

    /// Settings for a store on `bucket` of this server.
    pub fn settings(&self, bucket: &str) -> S3Settings {
        S3Settings {
            endpoint: self.endpoint.clone(),
            bucket: bucket.to_owned(),
            region: "auto".to_owned(),
            access_key_id: ACCESS_KEY.to_owned(),
            secret_access_key: SECRET_KEY.to_owned(),
            force_path_style: true,
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3s_fs_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("s3s-fs"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let in_cargo_home =
        std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo/bin/s3s-fs"));
    on_path.into_iter().chain(in_cargo_home).find(|candidate| candidate.is_file()).unwrap_or_else(|| {
        panic!("s3s-fs is not on PATH nor in ~/.cargo/bin; run scripts/install-test-deps.sh to install it")
    })
}
