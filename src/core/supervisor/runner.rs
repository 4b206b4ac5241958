//! One task per service run, the only code that signals a run's process group.
//!
//! A runner owns the run's exit watch and output capture. Driven by [`RunControl`] messages from the
//! actor, it performs a stop (the stop signal, then SIGKILL once `stop_timeout` has passed without an
//! exit; at once when hurried by a second termination signal), cleans up what is left of the group after
//! the main process exited, lets the capture drain and reports the exit to the actor
//! ([`Internal::Exited`]). It never touches service state and never polls: it wakes on the exit, on a
//! message, on its one deadline, or when the actor has reaped an orphan (the `reaped` counter).

use super::*;

/// What the actor asks of a run's runner.
#[derive(Debug)]
pub(super) enum RunControl {
    /// The stop signal now, SIGKILL once `stop_timeout` has passed without an exit. `why` goes into the
    /// service log. A second `Stop` changes nothing.
    Stop { why: String },
    /// Skip what is left of the stop grace: SIGKILL at once if stopping, and at the start of any later
    /// stop or group clean-up.
    Hurry,
    /// Stop capturing at a read boundary and hand over the unfinished lines; the process keeps running
    /// (tend leaves it to the next tend). The runner ends without reporting an exit.
    Suspend(SuspendRequest),
}

/// The actor's end of a runner. Dropping it does not stop the process.
#[derive(Debug)]
pub(super) struct RunHandle {
    control: mpsc::UnboundedSender<RunControl>,
}

impl RunHandle {
    /// Hands a message to the runner; a runner that already ended (its exit is on the way) ignores it.
    pub(super) fn send(&self, message: RunControl) {
        let _ = self.control.send(message);
    }

    /// Suspends the capture and returns its unfinished lines (empty if the runner already ended).
    pub(super) async fn suspend(&self) -> Carried {
        let (reply, answer) = oneshot::channel();
        if self.control.send(RunControl::Suspend(reply)).is_err() {
            return Carried::default();
        }
        answer.await.unwrap_or_default()
    }
}

/// What a runner needs.
pub(super) struct RunnerArgs {
    pub(super) tx: mpsc::UnboundedSender<Internal>,
    /// Bumped by the actor each time it reaped orphans: a group member may be gone.
    pub(super) reaped: watch::Receiver<u64>,
    pub(super) name: String,
    pub(super) run_id: u64,
    pub(super) stop_signal: i32,
    pub(super) stop_timeout: Duration,
    pub(super) log: ServiceLog,
    /// The run's `TEND_RUN` mark (`None` for a run started by an older tend).
    pub(super) mark: Option<String>,
}

/// Spawns the runner of one run (its exit watch and capture) and returns its handle.
pub(super) fn spawn_runner(args: RunnerArgs, exit: ExitWatch, capture: Capture) -> RunHandle {
    let (control, inbox) = mpsc::unbounded_channel();
    let pid = exit.pid();
    let runner = Runner {
        args,
        capture: Some(capture),
        inbox: Inbox {
            messages: inbox,
            closed: false,
        },
        hurried: false,
        pid,
    };
    tokio::spawn(runner.run(exit));
    RunHandle { control }
}

/// The runner's end of its channel.
struct Inbox {
    messages: mpsc::UnboundedReceiver<RunControl>,
    /// The actor dropped the handle: no more messages will come.
    closed: bool,
}

impl Inbox {
    /// The next message, or never once the actor dropped the handle.
    async fn next(&mut self) -> Option<RunControl> {
        if self.closed {
            return std::future::pending().await;
        }
        let message = self.messages.recv().await;
        self.closed = message.is_none();
        message
    }
}

struct Runner {
    args: RunnerArgs,
    /// Until suspended.
    capture: Option<Capture>,
    inbox: Inbox,
    hurried: bool,
    pid: u32,
}

/// What happened while the runner waited for the main process.
enum Waited {
    Exited(ExitStatus),
    Suspended,
}

impl Runner {
    async fn run(mut self, exit: ExitWatch) {
        let status = match self.wait_for_exit(exit).await {
            Waited::Exited(status) => status,
            Waited::Suspended => return,
        };
        self.clean_up_group().await;
        self.clean_up_escapees().await;
        if let Some(capture) = self.capture.take() {
            // A grandchild outside the group may hold the pipes open; don't wait for it forever.
            let _ = tokio::time::timeout(Duration::from_secs(2), capture).await;
        }
        let RunnerArgs {
            tx, name, run_id, ..
        } = self.args;
        let _ = tx.send(Internal::Exited {
            name,
            run_id,
            pid: self.pid,
            status,
        });
    }

    async fn wait_for_exit(&mut self, exit: ExitWatch) -> Waited {
        let exited = exit.exited();
        tokio::pin!(exited);
        let mut kill_at: Option<Instant> = None;
        let mut killed = false;
        loop {
            tokio::select! {
                status = &mut exited => return Waited::Exited(status),
                message = self.inbox.next() => match message {
                    Some(RunControl::Stop { why }) => {
                        if kill_at.is_none() {
                            self.stop_signal(&why);
                            kill_at = Some(Instant::now() + self.args.stop_timeout);
                        }
                        if self.hurried && !killed {
                            self.kill("the stop grace was skipped");
                            killed = true;
                        }
                    }
                    Some(RunControl::Hurry) => {
                        self.hurried = true;
                        if kill_at.is_some() && !killed {
                            self.kill("the stop grace was skipped");
                            killed = true;
                        }
                    }
                    Some(RunControl::Suspend(reply)) => {
                        let carried = match self.capture.take() {
                            Some(capture) => capture.suspend().await,
                            None => Carried::default(),
                        };
                        let _ = reply.send(carried);
                        return Waited::Suspended;
                    }
                    None => {}
                },
                _ = crate::clock::sleep_until_opt(kill_at.filter(|_| !killed)) => {
                    let timeout = human_ms(self.args.stop_timeout.as_millis() as Millis);
                    self.kill(&format!("still alive after stop_timeout {timeout}"));
                    killed = true;
                }
            }
        }
    }

    fn stop_signal(&self, why: &str) {
        let (pid, signal) = (self.pid, self.args.stop_signal);
        self.args.log.try_marker(format!(
            "stopping pid {pid} with {} ({why})",
            process::signal_name(signal)
        ));
        if let Err(err) = process::signal_group(pid, signal) {
            tracing::warn!(service = %self.args.name, pid, "cannot signal process group: {err}");
        }
    }

    fn kill(&self, why: &str) {
        let pid = self.pid;
        self.args
            .log
            .try_marker(format!("pid {pid}: {why}; sending SIGKILL to its group"));
        if let Err(err) = process::signal_group(pid, libc::SIGKILL) {
            tracing::warn!(service = %self.args.name, pid, "cannot SIGKILL group: {err}");
        }
    }

    /// Processes of this run that left its process group (`setsid`, a new session) carry its mark: they
    /// get the stop signal, then SIGKILL after the stop timeout, like the group. One that survives even
    /// SIGKILL (stuck in the kernel) is named in the log.
    async fn clean_up_escapees(&mut self) {
        let Some(mark) = self.args.mark.clone() else {
            return;
        };
        let found = process::marked(&mark);
        if found.is_empty() {
            return;
        }
        let _ = self
            .args
            .log
            .marker(format!(
                "{} process(es) of this run left its process group: pid {}; sending {}",
                found.len(),
                pids_text(&found),
                process::signal_name(self.args.stop_signal)
            ))
            .await;
        for &pid in &found {
            let _ = process::signal_pid(pid, self.args.stop_signal);
        }
        self.wait_while(|| !process::marked(&mark).is_empty()).await;
        let left = process::marked(&mark);
        if left.is_empty() {
            return;
        }
        for &pid in &left {
            let _ = process::signal_pid(pid, libc::SIGKILL);
        }
        let _ = self
            .args
            .log
            .marker(format!(
                "pid {} still alive; sent SIGKILL",
                pids_text(&left)
            ))
            .await;
        tracing::warn!(service = %self.args.name, pids = %pids_text(&left), "processes that left the service's group were killed");
    }

    /// Waits, for at most `stop_timeout`, while `alive` holds: woken by each reap of the actor (the
    /// processes waited for are tend's children once their parent is gone) and cut short by a hurry.
    async fn wait_while(&mut self, alive: impl Fn() -> bool) {
        let deadline = Instant::now() + self.args.stop_timeout;
        self.args.reaped.borrow_and_update();
        while alive() && !self.hurried {
            tokio::select! {
                changed = self.args.reaped.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep_until(deadline).await;
                        break;
                    }
                }
                message = self.inbox.next() => {
                    if let Some(RunControl::Hurry) = message {
                        self.hurried = true;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
    }

    /// After the main process exited, nothing of its group may linger (orphaned workers holding the
    /// port are the classic supervisor bug): stop signal, then SIGKILL after the stop timeout. Members
    /// that were the main process's children are tend's now (a subreaper), so their end arrives as a
    /// reap by the actor; others are bounded by the timeout.
    async fn clean_up_group(&mut self) {
        let pgid = self.pid;
        if !process::group_alive(pgid) {
            return;
        }
        let _ = self
            .args
            .log
            .marker(format!(
                "main process {pgid} exited but its process group lives on; sending {}",
                process::signal_name(self.args.stop_signal)
            ))
            .await;
        let _ = process::signal_group(pgid, self.args.stop_signal);
        self.wait_while(|| process::group_alive(pgid)).await;
        if process::group_alive(pgid) {
            let _ = self
                .args
                .log
                .marker(format!("process group {pgid} still alive; sending SIGKILL"))
                .await;
            let _ = process::signal_group(pgid, libc::SIGKILL);
        }
    }
}

fn pids_text(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
