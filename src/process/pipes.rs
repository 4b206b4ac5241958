//! Output pipes that outlive tend: one named pipe (FIFO) per stream per run, under `STATE_DIR/pipes/`.
//!
//! Why FIFOs and not the usual anonymous pipes: a service must survive tend (a `tend reexec`, a crash,
//! an OOM kill) with its output still captured afterwards. An anonymous pipe's read end dies with the
//! process holding it, so the service would get SIGPIPE on its next write. Here the service's stdout
//! and stderr are the FIFO opened *read-write*: the service itself counts as a reader, so a write never
//! fails for want of one; while no tend reads, writes fill the pipe buffer (raised to
//! [`PIPE_BUFFER_BYTES`]) and then block until a tend reads again, which loses nothing. The next tend
//! opens the same FIFO by its path (kept in the state file) and reads on from where the last one stopped.
//!
//! This module creates, opens and removes the FIFOs. It must not read them (the log readers do) or
//! decide which run they belong to (the core does).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use tokio::net::unix::pipe;

/// Size asked for each pipe's kernel buffer: what a service can write while no tend reads before its
/// writes block. 1 MiB is Linux's default `pipe-max-size`; a smaller grant is accepted silently.
pub const PIPE_BUFFER_BYTES: i32 = 1024 * 1024;

/// The two FIFOs of one run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutputPipes {
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl OutputPipes {
    /// `DIR/SERVICE.RUN.out` and `.err`; `run` keeps two runs (or two tends) from sharing a FIFO.
    pub fn for_run(dir: &Path, service: &str, run: &str) -> OutputPipes {
        OutputPipes {
            stdout: dir.join(format!("{service}.{run}.out")),
            stderr: dir.join(format!("{service}.{run}.err")),
        }
    }

    /// Creates both FIFOs (mode 0600), replacing leftovers of the same name.
    pub fn create(&self) -> io::Result<()> {
        for path in [&self.stdout, &self.stderr] {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let _ = std::fs::remove_file(path);
            nix::unistd::mkfifo(
                path,
                nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
            )
            .map_err(io::Error::from)?;
        }
        Ok(())
    }

    /// Both read ends, for tend. Never blocks (opened non-blocking); a FIFO with no writer left reads as
    /// end-of-file at once.
    pub fn open_readers(&self) -> io::Result<(pipe::Receiver, pipe::Receiver)> {
        Ok((open_reader(&self.stdout)?, open_reader(&self.stderr)?))
    }

    /// Both ends the service gets as stdout and stderr: read-write, so it never lacks a reader.
    pub fn open_for_service(&self) -> io::Result<(File, File)> {
        Ok((
            open_for_service(&self.stdout)?,
            open_for_service(&self.stderr)?,
        ))
    }

    /// Removes both FIFOs; the run is over (a missing file is fine).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.stdout);
        let _ = std::fs::remove_file(&self.stderr);
    }

    /// Whether both FIFOs still exist (a run whose pipes are gone cannot be captured again).
    pub fn exist(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        [&self.stdout, &self.stderr].iter().all(|p| {
            std::fs::symlink_metadata(p)
                .map(|m| m.file_type().is_fifo())
                .unwrap_or(false)
        })
    }
}

fn open_reader(path: &Path) -> io::Result<pipe::Receiver> {
    // read_write(false): tend must see end-of-file once the service and its children are gone.
    pipe::OpenOptions::new().open_receiver(path)
}

fn open_for_service(path: &Path) -> io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    // SAFETY: F_SETPIPE_SZ takes an int and touches no memory; failure only leaves the default size.
    unsafe {
        libc::fcntl(file.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BUFFER_BYTES);
    }
    Ok(file)
}

/// Removes FIFOs in `dir` that no run in `keep` uses (leftovers of runs that ended while no tend ran).
pub fn remove_unused(dir: &Path, keep: &[&OutputPipes]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let used = keep.iter().any(|p| p.stdout == path || p.stderr == path);
        if !used {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn output_written_while_nobody_reads_is_kept_for_the_next_reader() {
        let dir = tempfile::tempdir().unwrap();
        let pipes = OutputPipes::for_run(dir.path(), "svc", "1");
        pipes.create().unwrap();
        let (mut out, _err) = pipes.open_for_service().unwrap();
        // First reader comes and goes, as a tend that dies.
        let (first, _) = pipes.open_readers().unwrap();
        drop(first);
        // No reader now: a write must neither fail nor raise SIGPIPE.
        use std::io::Write;
        out.write_all(b"written while no tend ran\n").unwrap();
        let (mut second, _) = pipes.open_readers().unwrap();
        drop(out);
        let mut text = String::new();
        second.read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "written while no tend ran\n");
        pipes.remove();
        assert!(!pipes.exist());
    }
}
