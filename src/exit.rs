//! The exit code of every `meshguard` command: one enum, the same three values everywhere
//! (docs/commands.md, "Exit codes", has the table per command).

/// How a command ended. Every command's `run` returns one; `main` exits with its [`code`].
/// clap's own usage errors (an unknown flag, a missing argument) exit 2 as well.
///
/// [`code`]: Exit::code
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Exit {
    /// Done, and nothing fails it: no deny-level finding (`check`, `audit`), the request is
    /// allowed (`simulate`), every test passed (`test`), nothing opened (`diff`), the page,
    /// certificates, catalogue or objects were written, the server stopped cleanly.
    Ok = 0,
    /// Done, and the answer is "no": deny-level findings (`check`, `audit`), the request is
    /// denied (`simulate`), a test failed (`test`), the change opens access or adds a deny-level
    /// finding (`diff`, under `--fail-on`).
    Findings = 1,
    /// Not done: bad usage, unreadable or invalid input (manifests, policy, MeshConfig, test
    /// files, git), the cluster could not be read or written, an output could not be written,
    /// the server or auditor could not start.
    Error = 2,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// [`Exit::Findings`] when `failed`, else [`Exit::Ok`].
    pub(crate) fn failed_if(failed: bool) -> Exit {
        if failed {
            Exit::Findings
        } else {
            Exit::Ok
        }
    }
}

impl From<Exit> for i32 {
    fn from(e: Exit) -> i32 {
        e.code()
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> std::process::ExitCode {
        std::process::ExitCode::from(e as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::Exit;

    #[test]
    fn codes_are_the_documented_ones() {
        assert_eq!(
            [Exit::Ok, Exit::Findings, Exit::Error].map(Exit::code),
            [0, 1, 2]
        );
        assert_eq!(Exit::failed_if(true), Exit::Findings);
        assert_eq!(Exit::failed_if(false), Exit::Ok);
    }
}
