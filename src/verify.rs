//! `parlor verify`: checks a room's history export (the JSON Lines of
//! `GET /rooms/{id}/messages/export`) against the seeds the room revealed in it.

use std::path::Path;

use anyhow::Context;
use base64::Engine as _;
use parlor_games::{dice::DiceLimits, verify};
use parlor_protocol::v1;
use prost::Message;

/// Reads the export, checks it, and prints what was checked.
pub(crate) fn run(
    export: &Path,
    deck: Option<&Path>,
    limits: DiceLimits,
    commitment: Option<&str>,
) -> anyhow::Result<verify::Report> {
    let text =
        std::fs::read_to_string(export).with_context(|| format!("reading {}", export.display()))?;
    let mut updates = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("line {}: not JSON", n + 1))?;
        let Some(b64) = v.get("game").and_then(|g| g.as_str()) else {
            continue;
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .with_context(|| format!("line {}: game is not base64", n + 1))?;
        let u = v1::GameUpdate::decode(bytes.as_slice())
            .with_context(|| format!("line {}: game is not a GameUpdate", n + 1))?;
        updates.extend(u.update);
    }
    let deck: Vec<String> = match deck {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("reading {}", p.display()))?
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        None => parlor_games::cards::standard_deck(),
    };
    let report = verify::history(&updates, &limits, &deck, commitment)?;
    println!(
        "ok: {} seeds match their commitments; {} rolls and {} cards replay; {} draws not revealed yet",
        report.seeds, report.rolls, report.cards, report.unrevealed
    );
    Ok(report)
}
