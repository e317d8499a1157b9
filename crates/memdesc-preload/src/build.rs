//! Building what the tests and the bench run: our preload library (a nested
//! `cargo build`), mimalloc's (from the vendored C sources of the
//! `libmimalloc-sys` crate), and the C programs of `c/`.
//!
//! Builds go into the workspace's `target/` directory (or `out_dir` where a
//! function takes one) and are redone only when a source is newer than the
//! output, except our library, which cargo itself keeps up to date.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::Mutex;

/// Names the environment variable that points at a prebuilt
/// `libmemdesc_malloc.so`, used instead of building it.
pub const MEMDESC_MALLOC_SO: &str = "MEMDESC_MALLOC_SO";

/// The target directory of the nested build of our library, relative to the
/// workspace root: apart from `target/`, so the nested cargo never waits for
/// the lock of the cargo that runs the tests.
const PRELOAD_TARGET_DIR: &str = "target/preload";

/// Why something could not be built.
#[derive(Debug)]
pub enum BuildError {
    /// A tool (`cc`, `cargo`) could not be started.
    Spawn {
        /// The command.
        what: String,
        /// The error from the operating system.
        error: io::Error,
    },
    /// A tool ran and failed.
    Failed {
        /// The command.
        what: String,
        /// Its exit status.
        status: ExitStatus,
        /// The end of its standard error.
        stderr: String,
    },
    /// A file that should exist does not.
    Missing {
        /// The path.
        path: PathBuf,
        /// What was expected there.
        what: &'static str,
    },
    /// A file-system operation failed.
    Io {
        /// The path it was about.
        path: PathBuf,
        /// The error from the operating system.
        error: io::Error,
    },
    /// `cargo metadata` did not name the `libmimalloc-sys` package.
    NoMimallocSources,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Spawn { what, error } => write!(f, "could not start `{what}`: {error}"),
            BuildError::Failed { what, status, stderr } => write!(f, "`{what}` failed ({status}):\n{stderr}"),
            BuildError::Missing { path, what } => write!(f, "{what} missing: {}", path.display()),
            BuildError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            BuildError::NoMimallocSources => {
                f.write_str("cargo metadata names no libmimalloc-sys package (the mimalloc crate's C sources)")
            }
        }
    }
}

impl std::error::Error for BuildError {}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().nth(2).unwrap_or(manifest).to_path_buf()
}

/// The directory of the C sources.
pub fn c_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("c")
}

/// Runs `cmd`, turning a failure into a [`BuildError`] that shows the end of
/// its standard error.
fn run_tool(mut cmd: Command) -> Result<(), BuildError> {
    let what = format!("{cmd:?}");
    let out = cmd.output().map_err(|error| BuildError::Spawn { what: what.clone(), error })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
    let stderr = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    Err(BuildError::Failed { what, status: out.status, stderr })
}

/// Whether `output` exists and is newer than every one of `sources`.
fn up_to_date(output: &Path, sources: &[&Path]) -> bool {
    let modified = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
    match modified(output) {
        Some(out) => sources.iter().all(|s| modified(s).is_some_and(|src| src <= out)),
        None => false,
    }
}

/// Our preload library, `libmemdesc_malloc.so`: the file named by
/// `MEMDESC_MALLOC_SO` if set, else built by `cargo build -p memdesc-malloc
/// --release` into `target/preload` (once per process; cargo skips the work
/// when nothing changed).
///
/// # Errors
/// [`BuildError::Missing`] if `MEMDESC_MALLOC_SO` names no file or the build
/// produced none; [`BuildError::Spawn`] or [`BuildError::Failed`] if cargo
/// could not build the library. Never a silent fallback: a test that needs
/// the library fails.
pub fn memdesc_malloc() -> Result<PathBuf, BuildError> {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    if let Some(path) = std::env::var_os(MEMDESC_MALLOC_SO) {
        // Absolute, so it still names the library in a child that runs in
        // another directory.
        let path = PathBuf::from(path);
        return match path.canonicalize() {
            Ok(path) if path.is_file() => Ok(path),
            _ => Err(BuildError::Missing { path, what: "the library named by MEMDESC_MALLOC_SO" }),
        };
    }
    let mut built = BUILT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = built.as_ref() {
        return Ok(path.clone());
    }
    let root = workspace_root();
    let target = root.join(PRELOAD_TARGET_DIR);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--release", "-p", "memdesc-malloc", "--target-dir"])
        .arg(&target)
        // The library is built as a user builds it, whatever flags the
        // cargo running these tests was given (loom, mutants).
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR");
    run_tool(cmd)?;
    let path = target.join("release").join("libmemdesc_malloc.so");
    if !path.is_file() {
        return Err(BuildError::Missing { path, what: "libmemdesc_malloc.so after `cargo build -p memdesc-malloc`" });
    }
    *built = Some(path.clone());
    Ok(path)
}

/// The directory of the `libmimalloc-sys` crate that the workspace's
/// `mimalloc` dependency resolved to, from `cargo metadata`.
fn libmimalloc_sys_dir() -> Result<PathBuf, BuildError> {
    let root = workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root).args(["metadata", "--format-version", "1"]);
    let what = format!("{cmd:?}");
    let out = cmd.output().map_err(|error| BuildError::Spawn { what: what.clone(), error })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        return Err(BuildError::Failed { what, status: out.status, stderr });
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|_| BuildError::NoMimallocSources)?;
    let packages = meta["packages"].as_array().ok_or(BuildError::NoMimallocSources)?;
    let manifest = packages
        .iter()
        .find(|p| p["name"] == "libmimalloc-sys")
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or(BuildError::NoMimallocSources)?;
    Path::new(manifest).parent().map(Path::to_path_buf).ok_or(BuildError::NoMimallocSources)
}

/// mimalloc as a preload library, `out_dir/libmimalloc.so`, compiled from
/// the C sources vendored in the `libmimalloc-sys` crate, so it is the same
/// mimalloc as the in-process peer of S1–S3 (version 3, the crate's default:
/// the workspace does not enable its `v2` feature). Built as that crate's
/// build script builds it, plus `MI_MALLOC_OVERRIDE`, which exports
/// `malloc`, `free` and the rest of the C API.
///
/// # Errors
/// [`BuildError::NoMimallocSources`] if cargo does not know the crate,
/// [`BuildError::Missing`] if its sources lack `static.c`, and the compiler's
/// errors.
pub fn mimalloc(out_dir: &Path) -> Result<PathBuf, BuildError> {
    let sources = libmimalloc_sys_dir()?.join("c_src").join("mimalloc").join("v3");
    let unit = sources.join("src").join("static.c");
    if !unit.is_file() {
        return Err(BuildError::Missing { path: unit, what: "mimalloc's src/static.c" });
    }
    let output = out_dir.join("libmimalloc.so");
    if up_to_date(&output, &[&unit]) {
        return Ok(output);
    }
    std::fs::create_dir_all(out_dir).map_err(|error| BuildError::Io { path: out_dir.to_path_buf(), error })?;
    let mut cmd = Command::new("cc");
    cmd.args(["-O2", "-shared", "-fPIC", "-DMI_MALLOC_OVERRIDE", "-DMI_BUILD_RELEASE", "-DNDEBUG", "-DMI_DEBUG=0"])
        .args(["-ftls-model=initial-exec", "-fno-builtin-malloc", "-Wno-error=date-time"])
        .arg("-I")
        .arg(sources.join("include"))
        .arg("-I")
        .arg(sources.join("src"))
        .arg(&unit)
        .arg("-o")
        .arg(&output)
        .arg("-lpthread");
    run_tool(cmd)?;
    Ok(output)
}

/// A C program of `c/`.
#[derive(Clone, Copy, Debug)]
pub struct CProgram {
    /// The source's file stem (`c/<name>.c`) and the executable's name.
    pub name: &'static str,
}

impl CProgram {
    /// Compiles `c/<name>.c` with `cc -O2 -pthread` into `out_dir/<name>`
    /// unless it is up to date; returns the executable's path.
    ///
    /// # Errors
    /// [`BuildError::Missing`] without the source; the compiler's errors.
    pub fn compile(&self, out_dir: &Path) -> Result<PathBuf, BuildError> {
        let source = c_dir().join(format!("{}.c", self.name));
        if !source.is_file() {
            return Err(BuildError::Missing { path: source, what: "C source" });
        }
        let output = out_dir.join(self.name);
        if up_to_date(&output, &[&source]) {
            return Ok(output);
        }
        std::fs::create_dir_all(out_dir).map_err(|error| BuildError::Io { path: out_dir.to_path_buf(), error })?;
        let mut cmd = Command::new("cc");
        cmd.args(["-O2", "-Wall", "-Wextra", "-Werror", "-pthread"]).arg(&source).arg("-o").arg(&output);
        run_tool(cmd)?;
        Ok(output)
    }
}
