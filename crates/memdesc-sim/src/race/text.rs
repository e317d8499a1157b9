//! The step table as text: one column per CPU, time running down, the way
//! the seed threads draw a race, then the outcome and the verdict.

use super::{GetterResult, RaceReport};
use memdesc::Pfn;
use std::fmt::{self, Write as _};

/// Width of one CPU's column, in characters.
const COLUMN: usize = 40;

impl fmt::Display for RaceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "race {} ({} variant)", self.scenario, self.variant)?;
        writeln!(f, "  {}", self.summary)?;
        writeln!(f)?;
        let mut header = String::from("step ");
        for cpu in &self.cpus {
            let _ = write!(header, "| {:<COLUMN$} ", format!("CPU {}: {}", cpu.cpu, cpu.role));
        }
        writeln!(f, "{}", header.trim_end())?;
        writeln!(f, "{}", rule(self.cpus.len()))?;
        for row in &self.rows {
            let mut text = format!("{} {}", row.protocol_step, row.text);
            if row.skipped {
                text.push_str(" [check skipped]");
            }
            let lines = wrap(&text, COLUMN);
            for (i, line) in lines.iter().enumerate() {
                let mut out = if i == 0 { format!("{:>4} ", row.index) } else { "     ".to_owned() };
                for cpu in &self.cpus {
                    let cell = if cpu.cpu == row.cpu { line.as_str() } else { "" };
                    let _ = write!(out, "| {cell:<COLUMN$} ");
                }
                writeln!(f, "{}", out.trim_end())?;
            }
        }
        writeln!(f, "{}", rule(self.cpus.len()))?;
        let o = &self.outcome;
        let actor = self.actor;
        match &o.fast_path.refused_by {
            Some(by) => writeln!(f, "fast:     {actor} refused the reference at the {by} and gave up on the page")?,
            None if o.fast_path.fell_back => writeln!(f, "fast:     {actor} gave up on the page")?,
            None => writeln!(f, "fast:     {actor} took the page itself, no check refused it")?,
        }
        match &o.getter {
            GetterResult::Held { page, folio, order } => writeln!(
                f,
                "getter:   {actor} returned pfn {} (it went for pfn {}), held by a reference on folio {} (order {order})",
                Pfn(*page),
                Pfn(o.target_pfn),
                Pfn(*folio)
            )?,
            GetterResult::Failed { reason } => writeln!(f, "getter:   {actor} holds nothing: {reason}")?,
        }
        if let Some(bug) = &o.bug {
            writeln!(f, "caught:   {bug}")?;
        }
        writeln!(f, "audit:    {} frames leaked, {} violations", o.leaked_frames, o.violations)?;
        writeln!(f, "verdict:  {}", o.verdict)
    }
}

fn rule(cpus: usize) -> String {
    let mut line = String::from("-----");
    for _ in 0..cpus {
        line.push('+');
        line.push_str(&"-".repeat(COLUMN + 2));
    }
    line
}

/// Breaks `text` at spaces into lines of at most `width` characters (a
/// longer word gets a line of its own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wrap_breaks_at_spaces_within_the_width() {
        assert_eq!(wrap("reads the PTE: pfn 513", 10), ["reads the", "PTE: pfn", "513"]);
        assert_eq!(wrap("", 10), [""]);
        assert_eq!(wrap("averyveryverylongword x", 5), ["averyveryverylongword", "x"]);
    }
}
