//! `portcullis stdio-exec`: the launcher every stdio server is started through. It takes
//! the isolation the route asks for (resource limits, `no_new_privs`, another user and
//! group), starts the server as the leader of a process group of its own, and ends that
//! whole group — the server and whatever it started — when the server exits, when the
//! gateway stops it (SIGTERM), and when the gateway dies, even by SIGKILL: the kernel sends
//! the launcher SIGTERM then (`PR_SET_PDEATHSIG`). It is the subreaper of what the server
//! starts, and waits for every process it ends: none is left a zombie, even under a gateway
//! that runs as PID 1 in a container, which reaps only its own children.
//!
//! A separate program rather than code between `fork` and `exec`, which would need unsafe
//! code; and a process that stays, because the parent-death signal reaches only the
//! process that asked for it, not what the server starts (`npx` starts `node`).

use std::process::ExitCode;

use std::time::{Duration, Instant};

use rustix::process::{Pid, Resource, Rlimit, Signal};

/// The launcher's arguments, written by [`super::launch`]; not for people.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecArgs {
    /// The gateway's process id: the launcher ends at once if that is not its parent.
    #[arg(long)]
    pub parent: i32,
    /// `PR_SET_NO_NEW_PRIVS` for the server and everything it starts.
    #[arg(long)]
    pub no_new_privs: bool,
    /// Run the server as this user id (supplementary groups dropped).
    #[arg(long)]
    pub user: Option<u32>,
    /// Run the server with this group id.
    #[arg(long)]
    pub group: Option<u32>,
    /// `RLIMIT_AS`, bytes.
    #[arg(long)]
    pub address_space: Option<u64>,
    /// `RLIMIT_CPU`, seconds.
    #[arg(long)]
    pub cpu_time: Option<u64>,
    /// `RLIMIT_NOFILE`.
    #[arg(long)]
    pub open_files: Option<u64>,
    /// `RLIMIT_NPROC`.
    #[arg(long)]
    pub processes: Option<u64>,
    /// The server's program and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// What the launcher writes before its own lines on the standard error the server shares
/// (the gateway logs them with the route's name).
const SAY: &str = "portcullis stdio-exec:";

/// Runs the launcher: never returns while the server runs.
pub fn run(args: &ExecArgs) -> ExitCode {
    match prepare(args) {
        Ok(()) => {}
        Err(problem) => {
            eprintln!("{SAY} {problem}");
            return ExitCode::from(126);
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{SAY} cannot start: {e}");
            return ExitCode::from(126);
        }
    };
    runtime.block_on(supervise(args))
}

/// Everything that must hold before the server starts, in this process (inherited by it).
fn prepare(args: &ExecArgs) -> Result<(), String> {
    // First, so that no gateway death can slip in between: then check that the gateway
    // is still the parent (it may have died before the signal was asked for).
    rustix::process::set_parent_process_death_signal(Some(Signal::TERM))
        .map_err(|e| format!("cannot ask for the parent-death signal: {e}"))?;
    if rustix::process::getppid().map(Pid::as_raw_pid) != Some(args.parent) {
        return Err("the gateway is gone".to_owned());
    }
    let limits = [
        (Resource::As, args.address_space, "address-space"),
        (Resource::Cpu, args.cpu_time, "CPU-time"),
        (Resource::Nofile, args.open_files, "open-files"),
        (Resource::Nproc, args.processes, "processes"),
    ];
    for (resource, value, what) in limits {
        let Some(value) = value else { continue };
        let limit = Rlimit {
            current: Some(value),
            maximum: Some(value),
        };
        rustix::process::setrlimit(resource, limit).map_err(|e| {
            format!("cannot set the {what} limit to {value} (upstream.limits): {e}")
        })?;
    }
    // Orphans of the server are this launcher's to reap, not PID 1's.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .map_err(|e| format!("cannot become the subreaper of the server: {e}"))?;
    if args.no_new_privs {
        rustix::thread::set_no_new_privs(true)
            .map_err(|e| format!("cannot set no_new_privs (upstream.no_new_privs): {e}"))?;
    }
    Ok(())
}

/// Starts the server and waits for it to exit or for the launcher to be told to stop;
/// then ends the process group, the launcher with it.
async fn supervise(args: &ExecArgs) -> ExitCode {
    use tokio::signal::unix::{SignalKind, signal};

    let Some((program, rest)) = args.command.split_first() else {
        eprintln!("{SAY} no command");
        return ExitCode::from(126);
    };
    let (Ok(mut term), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("{SAY} cannot handle signals");
        return ExitCode::from(126);
    };
    let mut command = tokio::process::Command::new(program);
    command.args(rest).process_group(0);
    // std drops the supplementary groups when it changes the user.
    if let Some(group) = args.group {
        command.gid(group);
    }
    if let Some(user) = args.user {
        command.uid(user);
    }
    let mut server = match command.spawn() {
        Ok(server) => server,
        Err(e) => {
            let who = match (args.user, args.group) {
                (None, None) => String::new(),
                (user, group) => format!(
                    " as user {} group {}",
                    user.map_or("-".to_owned(), |u| u.to_string()),
                    group.map_or("-".to_owned(), |g| g.to_string())
                ),
            };
            eprintln!("{SAY} cannot start `{program}`{who}: {e}");
            return ExitCode::from(127);
        }
    };
    let group = server
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(Pid::from_raw);
    let code = tokio::select! {
        status = server.wait() => match status {
            Ok(status) => {
                eprintln!("{SAY} the server exited ({status})");
                status.code().and_then(|c| u8::try_from(c).ok()).unwrap_or(1)
            }
            Err(e) => {
                eprintln!("{SAY} the server could not be waited for: {e}");
                1
            }
        },
        _ = term.recv() => 143,
        _ = interrupt.recv() => 130,
    };
    // Whatever the server started goes with it: its whole group.
    if let Some(group) = group {
        let _ = rustix::process::kill_process_group(group, Signal::KILL);
    }
    reap(Duration::from_secs(2));
    ExitCode::from(code)
}

/// Waits for every child (the server, and the orphans this subreaper inherited) until
/// none is left or `patience` runs out (a process that left the server's group and
/// outlives it is then PID 1's).
fn reap(patience: Duration) {
    use rustix::process::{WaitOptions, wait};
    let deadline = Instant::now() + patience;
    loop {
        match wait(WaitOptions::NOHANG) {
            // One reaped: look for more at once.
            Ok(Some(_)) => {}
            // Children left, none exited yet.
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            // None left (ECHILD), or no more patience.
            _ => return,
        }
    }
}
