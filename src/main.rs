use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match cutover::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(cutover::cli::exit::USAGE),
            };
        }
    };
    cutover::cli::run(cli)
}
