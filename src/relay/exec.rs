//! `portcullis stdio-exec`: the launcher every stdio server is started through. The
//! gateway starts it as the leader of a new process group; it takes the isolation the
//! route asks for (resource limits, `no_new_privs`, another user and group), starts the
//! server in its own group, and ends the whole group — the server and whatever it started
//! — when the server exits, when the gateway stops it, and when the gateway dies, even by
//! SIGKILL: the kernel sends the launcher SIGTERM then (`PR_SET_PDEATHSIG`).
//!
//! A separate program rather than code between `fork` and `exec`, which would need unsafe
//! code; and a process that stays, because the parent-death signal reaches only the
//! process that asked for it, not what the server starts (`npx` starts `node`).

use std::process::ExitCode;

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
    command.args(rest);
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
    tokio::select! {
        status = server.wait() => match status {
            Ok(status) => eprintln!("{SAY} the server exited ({status})"),
            Err(e) => eprintln!("{SAY} the server could not be waited for: {e}"),
        },
        _ = term.recv() => {}
        _ = interrupt.recv() => {}
    }
    // Whatever the server started goes with it: the whole group, this launcher last.
    let _ = rustix::process::kill_process_group(rustix::process::getpid(), Signal::KILL);
    ExitCode::FAILURE
}
