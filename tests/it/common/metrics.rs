//! A Prometheus text exposition parser.

/// Label pairs of a sample, sorted.
pub type Labels = Vec<(String, String)>;

/// Samples of a Prometheus text exposition.
#[derive(Debug, Default)]
pub struct Metrics {
    pub samples: Vec<(String, Labels, f64)>,
    pub text: String,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let name_end = line
                .find(['{', ' '])
                .unwrap_or_else(|| panic!("bad sample {line:?}"));
            let name = line[..name_end].to_owned();
            let mut rest = &line[name_end..];
            let mut labels = Vec::new();
            if rest.starts_with('{') {
                let mut chars = rest[1..].char_indices().peekable();
                let mut key = String::new();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '}' => {
                            end = Some(i + 2);
                            break;
                        }
                        ',' | ' ' => {}
                        '=' => {
                            assert_eq!(
                                chars.next().map(|x| x.1),
                                Some('"'),
                                "bad labels in {line:?}"
                            );
                            let mut val = String::new();
                            while let Some((_, c)) = chars.next() {
                                match c {
                                    '\\' => match chars.next().map(|x| x.1) {
                                        Some('n') => val.push('\n'),
                                        Some(o) => val.push(o),
                                        None => {}
                                    },
                                    '"' => break,
                                    o => val.push(o),
                                }
                            }
                            labels.push((std::mem::take(&mut key), val));
                        }
                        o => key.push(o),
                    }
                }
                rest = &rest[end.unwrap_or_else(|| panic!("unclosed labels in {line:?}"))..];
            }
            let value_str = rest
                .split_whitespace()
                .next()
                .unwrap_or_else(|| panic!("no value in {line:?}"));
            let value: f64 = match value_str {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            labels.sort();
            samples.push((name, labels, value));
        }
        Metrics {
            samples,
            text: text.to_owned(),
        }
    }

    /// The value of the sample with exactly this name and label set.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        want.sort();
        let found: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| n == name && *l == want)
            .map(|s| s.2)
            .collect();
        assert!(
            found.len() <= 1,
            "{name}{labels:?} appears {} times",
            found.len()
        );
        found.first().copied()
    }

    /// Like [`Metrics::get`], 0 when the sample is absent (a counter never incremented).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// `(value of label key, sample value)` of the non-zero samples of a metric with
    /// one label, sorted by label value (series pre-registered at 0 are left out).
    pub fn nonzero_by(&self, name: &str, key: &str) -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = self
            .all(name)
            .into_iter()
            .filter(|(_, v)| *v != 0.0)
            .map(|(l, v)| {
                assert_eq!(l.len(), 1, "{name}: labels {l:?}");
                assert_eq!(l[0].0, key, "{name}: labels {l:?}");
                (l[0].1.clone(), v)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Records rated (`tollgate_records_total{outcome="rated"}`).
    pub fn rated(&self) -> Option<f64> {
        self.get("tollgate_records_total", &[("outcome", "rated")])
    }

    /// `(reason, count)` of the non-zero `tollgate_records_total{outcome="rejected"}`
    /// samples, sorted by reason.
    pub fn rejected_by_reason(&self) -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = self
            .all("tollgate_records_total")
            .into_iter()
            .filter(|(l, v)| *v != 0.0 && l.iter().any(|(k, x)| k == "outcome" && x == "rejected"))
            .map(|(l, v)| {
                assert_eq!(l.len(), 2, "labels {l:?}");
                let r = l.iter().find(|(k, _)| k == "reason").expect("reason label");
                (r.1.clone(), v)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// All samples of a metric name, as (labels, value).
    pub fn all(&self, name: &str) -> Vec<(Labels, f64)> {
        self.samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, v)| (l.clone(), *v))
            .collect()
    }
}
