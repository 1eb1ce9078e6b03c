//! How the binary logs: one `tracing` formatter for every line (text or JSON), chosen by
//! `--json-logs` or `PPSYNC_LOG_FORMAT`, with colours only on a terminal and never under
//! `NO_COLOR` (https://no-color.org: set and not empty).

use std::ffi::OsStr;

/// The log lines' form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `--json-logs` wins; otherwise `PPSYNC_LOG_FORMAT` (`json` or `text`; unset or empty: text).
pub fn log_format(json_flag: bool, env: Option<&OsStr>) -> Result<LogFormat, String> {
    if json_flag {
        return Ok(LogFormat::Json);
    }
    let value = env.map(|v| v.to_string_lossy().trim().to_ascii_lowercase());
    match value.as_deref() {
        None | Some("") | Some("text") => Ok(LogFormat::Text),
        Some("json") => Ok(LogFormat::Json),
        Some(other) => Err(format!(
            "PPSYNC_LOG_FORMAT={other:?} is not a log format: set it to json or text, or unset it"
        )),
    }
}

/// Whether log lines may carry ANSI colours: on a terminal, unless `NO_COLOR` is set (an empty
/// value does not count, as the convention says).
pub fn colours(terminal: bool, no_color: Option<&OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_or_the_variable_chooses_json() {
        let env = |s: &'static str| Some(OsStr::new(s));
        assert_eq!(log_format(false, None), Ok(LogFormat::Text));
        assert_eq!(log_format(false, env("")), Ok(LogFormat::Text));
        assert_eq!(log_format(false, env("text")), Ok(LogFormat::Text));
        assert_eq!(log_format(false, env(" JSON ")), Ok(LogFormat::Json));
        assert_eq!(log_format(true, env("text")), Ok(LogFormat::Json));
        assert_eq!(log_format(true, env("xml")), Ok(LogFormat::Json));
        let e = log_format(false, env("xml")).unwrap_err();
        assert!(
            e.contains("PPSYNC_LOG_FORMAT") && e.contains("json or text"),
            "{e}"
        );
    }

    #[test]
    fn no_color_set_and_not_empty_turns_colours_off() {
        assert!(colours(true, None));
        assert!(colours(true, Some(OsStr::new(""))));
        assert!(!colours(true, Some(OsStr::new("1"))));
        assert!(!colours(false, None));
    }
}
