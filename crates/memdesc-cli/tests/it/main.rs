//! Integration tests of the `memdesc` binary, run as a user runs it: a
//! process with arguments, its output and its exit status.

mod interrupt;
mod race;
mod usage;

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The longest any run in these tests may take.
const LIMIT: Duration = Duration::from_secs(120);

/// The built binary with `args`.
fn memdesc(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_memdesc"));
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command
}

/// What a finished process left.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Starts `command`, runs `meanwhile` on the child, then waits (killing it
/// and failing the test after [`LIMIT`]) and collects its output.
fn run_with(mut command: Command, meanwhile: impl FnOnce(&mut Child)) -> Finished {
    let mut child = command.spawn().expect("the binary starts");
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    meanwhile(&mut child);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            break status;
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("memdesc did not finish within {LIMIT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Finished { status, stdout: stdout.join().unwrap_or_default(), stderr: stderr.join().unwrap_or_default() }
}

/// Runs `memdesc args` to the end.
fn run(args: &[&str]) -> Finished {
    run_with(memdesc(args), |_| {})
}
