//! A writer of the Prometheus text exposition format, version 0.0.4: `# HELP` and `# TYPE`
//! once per family, then its samples; label values escaped (`\\`, `\"`, `\n`); histograms as
//! cumulative `_bucket{le=...}` lines ending with `le="+Inf"`, then `_sum` and `_count`.

use std::fmt::Write;

/// The content type of this format, for the HTTP response.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic; the name ends in `_total` by convention.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets, sum and count.
    Histogram,
}

/// Accumulates one exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// Escapes a label value as the format requires.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn labels(out: &mut String, labels: &[(&str, &str)]) {
    if labels.is_empty() {
        return;
    }
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{k}=\"{}\"", escape(v));
    }
    out.push('}');
}

/// Formats a float as Prometheus parses it (`+Inf`, integers without a fraction).
fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if v.is_nan() {
        "NaN".to_string()
    } else {
        format!("{v}")
    }
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family: its help text and type. Its samples must follow before the next.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let t = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {t}");
    }

    /// One sample of a counter or gauge family.
    pub fn sample(&mut self, name: &str, label_set: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        labels(&mut self.out, label_set);
        let _ = writeln!(self.out, " {}", number(value));
    }

    /// One histogram of a histogram family: `bounds[i]` is the upper bound of `counts[i]`
    /// (non-cumulative; a last extra count is the overflow), `sum` in the bounds' unit.
    pub fn histogram(
        &mut self,
        name: &str,
        label_set: &[(&str, &str)],
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
        count: u64,
    ) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0u64;
        for (b, c) in bounds.iter().zip(counts) {
            cumulative += c;
            let le = number(*b);
            let mut l = label_set.to_vec();
            l.push(("le", &le));
            self.sample(&bucket, &l, cumulative as f64);
        }
        let mut l = label_set.to_vec();
        l.push(("le", "+Inf"));
        self.sample(&bucket, &l, count as f64);
        self.sample(&format!("{name}_sum"), label_set, sum);
        self.sample(&format!("{name}_count"), label_set, count as f64);
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_cumulative_buckets() {
        let mut e = Exposition::new();
        e.family("x_total", Kind::Counter, "An x.");
        e.sample("x_total", &[("topic", "a\"b\\c\nd")], 3.0);
        e.family("lat", Kind::Histogram, "Latency.");
        e.histogram(
            "lat",
            &[("request", "Produce")],
            &[1.0, 2.5],
            &[2, 1, 4],
            12.5,
            7,
        );
        let text = e.finish();
        assert_eq!(
            text,
            "# HELP x_total An x.\n# TYPE x_total counter\nx_total{topic=\"a\\\"b\\\\c\\nd\"} 3\n\
             # HELP lat Latency.\n# TYPE lat histogram\n\
             lat_bucket{request=\"Produce\",le=\"1\"} 2\n\
             lat_bucket{request=\"Produce\",le=\"2.5\"} 3\n\
             lat_bucket{request=\"Produce\",le=\"+Inf\"} 7\n\
             lat_sum{request=\"Produce\"} 12.5\nlat_count{request=\"Produce\"} 7\n"
        );
    }
}
