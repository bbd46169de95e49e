//! Report output shared by every subcommand.

/// Prints a serializable report as pretty JSON on stdout (every `--json`).
pub fn print_json<T: serde::Serialize + ?Sized>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
