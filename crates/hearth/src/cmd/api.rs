//! What every command that talks to `hearth serve` takes: where the API and
//! the S3 API are, and the data directory whose keys sign the requests.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::paths;
use hearth::client::{Client, ClientConfig};

/// Where `hearth serve` listens and which keys to sign with.
#[derive(Args, Clone, Debug)]
pub struct ApiArgs {
    /// The API (default: $HEARTH_ENDPOINT_URL, else http://127.0.0.1:7070).
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// The artifact store's S3 API (default: $HEARTH_S3_ENDPOINT_URL, else
    /// http://127.0.0.1:7071).
    #[arg(long)]
    pub s3_endpoint_url: Option<String>,
    /// The data directory whose `api-credentials.json` holds the keys
    /// (default: $HEARTH_DATA, else the usual place); without one, the
    /// `hearth` AWS profile.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Print JSON for scripts instead of text for people.
    #[arg(long)]
    pub json: bool,
}

impl ApiArgs {
    /// The data directory these arguments name.
    pub fn data_dir(&self) -> PathBuf {
        self.data.clone().unwrap_or_else(paths::data_dir)
    }

    /// A client configured by these arguments.
    pub fn client(&self) -> Result<Client> {
        let config = ClientConfig::resolve(
            self.endpoint_url.as_deref(),
            self.s3_endpoint_url.as_deref(),
            &self.data_dir(),
        )?;
        Ok(Client::new(config))
    }
}

/// Prints `value` as pretty JSON.
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints rows as a table whose columns are as wide as their widest cell.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// A duration in seconds as people say it: `42s`, `5m`, `3h`, `2d`.
pub fn age(seconds: i64) -> String {
    match seconds.max(0) {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_rounded_down_to_their_largest_unit() {
        assert_eq!(age(59), "59s");
        assert_eq!(age(61), "1m");
        assert_eq!(age(7200), "2h");
        assert_eq!(age(200_000), "2d");
        assert_eq!(age(-3), "0s");
    }
}
