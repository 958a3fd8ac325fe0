use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match cutover::cli::parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(cutover::exit::USAGE),
            };
        }
    };
    // Commands that only print (runs, show, inventory…) should end quietly when their output
    // is piped into `head`, like other Unix tools. Runs keep SIGPIPE ignored: a closed pipe to
    // an ssh channel must be an error to handle, never the death of the controller.
    use cutover::cli::Command as C;
    let talks_to_hosts = matches!(
        cli.command,
        C::Apply { .. } | C::Plan { .. } | C::Resume { .. } | C::Rollback { .. } | C::Commit { .. }
    );
    if !talks_to_hosts {
        // SAFETY: restoring the default disposition of one signal before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    cutover::cli::run(cli)
}
