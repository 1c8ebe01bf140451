//! The top-level help (`mo_br help`, `mo_br -h`, `mo_br --help`, `mo_br`
//! alone) laid out as MatrixOne's mo_br prints it (the cobra layout its
//! users know: `Usage:`, `Available Commands:` sorted with `help` among
//! them, `Flags:` in pflag's columns, the closing hint). A subcommand's help
//! stays clap's: the reference shows no other.

use clap::CommandFactory;

use crate::args::Cli;

/// Whether `argv` (without the program name) asks for the top-level help.
pub fn asked(argv: &[std::ffi::OsString]) -> bool {
    match argv {
        [] => true,
        [one] => matches!(one.to_str(), Some("help" | "-h" | "--help")),
        _ => false,
    }
}

/// cobra pads command names to at least this width.
const MIN_NAME_PADDING: usize = 11;

pub fn top_level() -> String {
    let cmd = Cli::command();
    let name = cmd.get_name().to_string();
    let mut commands: Vec<(String, String)> = cmd
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| (c.get_name().to_string(), text(c.get_about())))
        .collect();
    commands.push(("help".into(), "Help about any command".into()));
    commands.sort();
    let pad = commands
        .iter()
        .map(|(n, _)| n.len())
        .max()
        .unwrap_or(0)
        .max(MIN_NAME_PADDING);

    // pflag: `  -h, --name type` or `      --name type`, sorted by name,
    // the help text in one column three spaces after the longest.
    let mut flags: Vec<(String, String, String)> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set() && !a.is_hide_set())
        .filter_map(|a| {
            let long = a.get_long()?;
            let ty = a
                .get_value_names()
                .and_then(|v| v.first())
                .map(|v| format!(" {v}"))
                .unwrap_or_default();
            Some((
                long.to_string(),
                format!("      --{long}{ty}"),
                text(a.get_help()),
            ))
        })
        .collect();
    flags.push((
        "help".into(),
        "  -h, --help".into(),
        format!("help for {name}"),
    ));
    flags.sort();
    let width = flags.iter().map(|(_, f, _)| f.len()).max().unwrap_or(0) + 3;

    let mut out = String::new();
    out.push_str(&text(cmd.get_about()));
    out.push_str(&format!(
        "\n\nUsage:\n  {name} [flags]\n  {name} [command]\n\nAvailable Commands:\n"
    ));
    for (n, about) in &commands {
        out.push_str(&format!("  {n:<pad$} {about}\n"));
    }
    out.push_str("\nFlags:\n");
    for (_, flag, help) in &flags {
        out.push_str(&format!("{flag:<width$}{help}\n"));
    }
    out.push_str(&format!(
        "\nUse \"{name} [command] --help\" for more information about a command.\n"
    ));
    out
}

fn text(s: Option<&clap::builder::StyledStr>) -> String {
    s.map(|s| s.to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn laid_out_like_cobra() {
        let help = top_level();
        assert!(help.starts_with(
            "the backup and restore tool for the matrixone\n\nUsage:\n  mo_br [flags]\n  mo_br [command]\n\nAvailable Commands:\n  backup      backup the matrixone data\n"
        ), "{help}");
        assert!(
            help.contains("  help        Help about any command\n"),
            "{help}"
        );
        assert!(help.contains("  -h, --help "), "{help}");
        assert!(help.contains("      --log_level string "), "{help}");
        assert!(help
            .ends_with("\nUse \"mo_br [command] --help\" for more information about a command.\n"));
        // Every flag's help starts in one column, three after the longest.
        let flags: Vec<&str> = help
            .lines()
            .skip_while(|l| *l != "Flags:")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .collect();
        let starts: Vec<usize> = flags
            .iter()
            .map(|l| {
                let flag_end =
                    l.trim_start().find("  ").unwrap() + (l.len() - l.trim_start().len());
                flag_end + l[flag_end..].len() - l[flag_end..].trim_start().len()
            })
            .collect();
        assert!(flags.len() >= 4, "{help}");
        assert!(starts.windows(2).all(|w| w[0] == w[1]), "{help}");
        assert!(asked(&[]) && asked(&["help".into()]) && asked(&["-h".into()]));
        assert!(!asked(&["help".into(), "backup".into()]));
    }
}
