//! Printing for people (tables, colour only on a terminal) and for tools (`--json`).

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, Color, ContentArrangement, Table};
use serde::Serialize;

use crate::error::CliError;

/// How results are printed.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    /// Prints `value` as pretty JSON.
    pub fn json<T: Serialize>(&self, value: &T) -> Result<(), CliError> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| CliError::Other(format!("cannot write JSON: {e}")))?;
        println!("{text}");
        Ok(())
    }
}

/// A table with `headers`; comfy-table styles cells only when stdout is a
/// terminal, so pipes get plain text.
pub fn table(headers: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(headers.iter().map(|h| Cell::new(h).fg(Color::Cyan)));
    table
}

/// A cell marking the current (winning) value.
pub fn current_cell(current: bool) -> Cell {
    if current {
        Cell::new("current").fg(Color::Green)
    } else {
        Cell::new("kept").fg(Color::Yellow)
    }
}

/// Milliseconds since the epoch as UTC time, or "—".
pub fn time(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || "—".to_owned(),
            |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string(),
        )
}

/// A UUID or hash shortened for a table (the JSON output has it whole): its last
/// eight characters, because UUIDv7s made in the same minute share their first ones.
pub fn short(id: &str) -> String {
    let tail: Vec<char> = id.chars().rev().take(8).collect();
    tail.into_iter().rev().collect()
}

/// A JSON value for a table cell (strings unquoted, long ones cut).
pub fn value(value: &serde_json::Value) -> String {
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(59).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_of_one_minute_still_differ() {
        let a = "01a2109c-3032-7298-a0da-f89c9c0879b2";
        let b = "01a2109c-3032-7298-a0da-1e2f3a4b5c6d";
        assert_eq!(short(a), "9c0879b2");
        assert_ne!(short(a), short(b));
        assert_eq!(short("abc"), "abc");
    }
}
