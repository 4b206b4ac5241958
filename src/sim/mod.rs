//! `tend-sim`: an emulator of the Telethon send_text / send_media webhook services (see TELETHON.md §6).
// ---- TEMPORARY STUB (replaced by the sim branch) ----
#[derive(Debug, clap::Args)]
pub struct SimArgs {}
pub fn run_blocking(_a: SimArgs) -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
