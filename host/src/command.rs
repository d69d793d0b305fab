//! Running external programs: the one helper every part of ze uses to run
//! a command to completion, so a failure always says the same things —
//! the command as it was run, its exit status, and the last lines it
//! printed.

use std::{io, process::Command};

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The program is not on `PATH`.
    #[error("{program} is not installed (not found on PATH)")]
    NotInstalled {
        /// The program.
        program: String,
    },
    /// It could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: io::Error,
    },
    /// It ran and failed.
    #[error("`{shown}` failed ({status}){}", tail_text(.tail))]
    Failed {
        /// The command line, as shown.
        shown: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The last lines of its output and error output.
        tail: Vec<String>,
    },
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!(":\n  {}", tail.join("\n  "))
    }
}

/// How many of its last lines a failed command's error carries.
pub const TAIL_LINES: usize = 6;

/// Run `cmd` to completion, capturing its output; returns its standard
/// output.
pub fn run(cmd: &mut Command) -> Result<String, CommandError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let shown = format!(
        "{program} {}",
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = cmd.output().map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            CommandError::NotInstalled {
                program: program.clone(),
            }
        } else {
            CommandError::Spawn {
                program: program.clone(),
                source,
            }
        }
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let both = format!("{stdout}{stderr}");
        let mut tail: Vec<String> = both
            .lines()
            .rev()
            .take(TAIL_LINES)
            .map(str::to_string)
            .collect();
        tail.reverse();
        return Err(CommandError::Failed {
            shown: shown.trim_end().to_string(),
            status: out.status,
            tail,
        });
    }
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_command_and_its_output() {
        let err = run(Command::new("sh").args(["-c", "echo one; echo two >&2; exit 3"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`sh -c echo one; echo two >&2; exit 3` failed"),
            "{err}"
        );
        assert!(err.contains("exit status: 3") && err.contains("one") && err.contains("two"));
        let err = run(&mut Command::new("ze-no-such-program")).unwrap_err();
        assert!(err.to_string().contains("not installed"), "{err}");
        assert_eq!(run(Command::new("echo").arg("hi")).unwrap(), "hi\n");
    }
}
