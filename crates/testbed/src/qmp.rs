//! QEMU's machine protocol (QMP) on a unix socket, for tests that steer a running QEMU
//! (a migration: `migrate`, `query-migrate`).
//!
//! How it works: QEMU listens (`-qmp unix:PATH,server=on,wait=off`); [`Qmp::connect`]
//! waits for the socket, reads the greeting and leaves negotiation mode
//! (`qmp_capabilities`). [`Qmp::execute`] sends one command as a JSON line and returns
//! its `return` value, skipping the asynchronous events QEMU interleaves.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::{Error, Result};

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects to QEMU's monitor at `path`, waiting up to `timeout` for it to listen.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => {
                    return Err(Error::Fixture(format!(
                        "QEMU's monitor {} did not open within {timeout:?}: {e}",
                        path.display()
                    )));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let io = |e: std::io::Error| Error::Fixture(format!("QMP {}: {e}", path.display()));
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
        };
        qmp.line()?; // the greeting
        qmp.execute("qmp_capabilities", serde_json::json!({}))?;
        Ok(qmp)
    }

    /// Runs `command` with `arguments`; its `return` value, or QEMU's error.
    pub fn execute(
        &mut self,
        command: &str,
        arguments: serde_json::Value,
    ) -> Result<serde_json::Value> {
        let request = serde_json::json!({ "execute": command, "arguments": arguments });
        writeln!(self.writer, "{request}")
            .map_err(|e| Error::Fixture(format!("QMP {command}: {e}")))?;
        loop {
            let reply = self.line()?;
            if let Some(r) = reply.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = reply.get("error") {
                return Err(Error::Fixture(format!("QMP {command}: {e}")));
            }
            // An event: not the reply.
        }
    }

    fn line(&mut self) -> Result<serde_json::Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(Error::Fixture("QEMU closed its monitor".into())),
            Ok(_) => serde_json::from_str(&line)
                .map_err(|e| Error::Fixture(format!("QMP sent {line:?}: {e}"))),
            Err(e) => Err(Error::Fixture(format!("QMP: {e}"))),
        }
    }
}
