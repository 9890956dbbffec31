//! The StatsD / DogStatsD line protocol:
//! `<name>:<value>[:<value>…]|<type>[|@<rate>][|#<tag>,<tag>…]`, one metric per line.
//!
//! Types: `c` counter, `g` gauge (`+`/`-` make it a delta), `ms` timer, `h` histogram, `d`
//! distribution, `s` set. Several values may be packed into one line (DogStatsD 1.1), except
//! for sets, whose value is one member of any text. A line is checked whole before any of it is
//! applied, so a bad line changes nothing.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Counter,
    Gauge,
    Timer,
    Histogram,
    Distribution,
    Set,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("no ':' between name and value")]
    NoValue,
    #[error("empty metric name")]
    EmptyName,
    #[error("no '|type'")]
    NoType,
    #[error("unknown metric type")]
    UnknownType,
    #[error("value is not a finite number")]
    BadValue,
    #[error("sample rate is not in (0, 1]")]
    BadRate,
    #[error("unknown '|' section")]
    BadSection,
    #[error("sets take one value")]
    PackedSet,
    #[error("DogStatsD events and service checks are not metrics")]
    NotAMetric,
}

/// One parsed line, borrowing from the packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    pub name: &'a str,
    pub kind: Type,
    values: &'a str,
    /// The fraction of events the client sent (1 when not sampled).
    pub rate: f64,
    tags: &'a str,
}

/// One value of a line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Number(f64),
    /// A gauge value written with a sign: a change, not a new value.
    Delta(f64),
    /// A set member.
    Member(&'a str),
}

impl<'a> Line<'a> {
    /// The values, already validated by `parse_line`.
    pub fn values(&self) -> impl Iterator<Item = Value<'a>> + 'a {
        let kind = self.kind;
        let values = self.values;
        let mut members = (kind == Type::Set).then_some(values);
        let mut numbers = (kind != Type::Set).then(|| values.split(':'));
        std::iter::from_fn(move || {
            if let Some(m) = members.take() {
                return Some(Value::Member(m));
            }
            let v = numbers.as_mut()?.next()?;
            number(v, kind)
        })
    }

    /// Tags as written (`key:value` or bare `key`), empty ones skipped.
    pub fn tags(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.tags.split(',').filter(|t| !t.is_empty())
    }
}

fn number(v: &str, kind: Type) -> Option<Value<'_>> {
    let n: f64 = v.parse().ok().filter(|n: &f64| n.is_finite())?;
    let signed = v.starts_with('+') || v.starts_with('-');
    Some(if kind == Type::Gauge && signed { Value::Delta(n) } else { Value::Number(n) })
}

pub fn parse_line(line: &str) -> Result<Line<'_>, ParseError> {
    if line.starts_with("_e{") || line.starts_with("_sc|") {
        return Err(ParseError::NotAMetric);
    }
    let (name, rest) = line.split_once(':').ok_or(ParseError::NoValue)?;
    if name.trim().is_empty() {
        return Err(ParseError::EmptyName);
    }
    let mut sections = rest.split('|');
    let values = sections.next().unwrap_or_default();
    let kind = match sections.next().ok_or(ParseError::NoType)? {
        "c" => Type::Counter,
        "g" => Type::Gauge,
        "ms" => Type::Timer,
        "h" => Type::Histogram,
        "d" => Type::Distribution,
        "s" => Type::Set,
        _ => return Err(ParseError::UnknownType),
    };
    let mut parsed = Line { name, kind, values, rate: 1.0, tags: "" };
    for section in sections {
        if let Some(r) = section.strip_prefix('@') {
            parsed.rate = r.parse().ok().filter(|r| *r > 0.0 && *r <= 1.0).ok_or(ParseError::BadRate)?;
        } else if let Some(t) = section.strip_prefix('#') {
            parsed.tags = t;
        } else if !(section.starts_with("c:") || section.starts_with('T') || section.starts_with("e:")) {
            // Container id (`c:`), timestamp (`T`) and external data (`e:`) are DogStatsD
            // fields the agent has no use for; anything else is a malformed line.
            return Err(ParseError::BadSection);
        }
    }
    if kind == Type::Set {
        if values.is_empty() {
            return Err(ParseError::BadValue);
        }
        if values.contains(':') {
            return Err(ParseError::PackedSet);
        }
    } else if values.split(':').any(|v| number(v, kind).is_none()) {
        return Err(ParseError::BadValue);
    }
    Ok(parsed)
}

/// The lines of a datagram: split on `\n`, `\r` trimmed, blank lines skipped.
pub fn lines(packet: &str) -> impl Iterator<Item = &str> {
    packet.split('\n').map(|l| l.trim_end_matches('\r')).filter(|l| !l.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Value::{Delta, Member, Number};

    /// Line, type, values, sample rate, tags.
    type Case<'a> = (&'a str, Type, &'a [Value<'a>], f64, &'a [&'a str]);

    #[test]
    fn table() {
        let cases: &[Case<'_>] = &[
            ("gorets:1|c", Type::Counter, &[Number(1.0)], 1.0, &[]),
            ("gorets:1|c|@0.1", Type::Counter, &[Number(1.0)], 0.1, &[]),
            ("gorets:-3|c", Type::Counter, &[Number(-3.0)], 1.0, &[]),
            ("gaugor:333|g", Type::Gauge, &[Number(333.0)], 1.0, &[]),
            ("gaugor:-10|g", Type::Gauge, &[Delta(-10.0)], 1.0, &[]),
            ("gaugor:+4|g", Type::Gauge, &[Delta(4.0)], 1.0, &[]),
            ("glork:320|ms", Type::Timer, &[Number(320.0)], 1.0, &[]),
            ("glork:320|ms|@0.5", Type::Timer, &[Number(320.0)], 0.5, &[]),
            ("song.length:240|h", Type::Histogram, &[Number(240.0)], 1.0, &[]),
            ("load.time:320.5|d", Type::Distribution, &[Number(320.5)], 1.0, &[]),
            ("uniques:765|s", Type::Set, &[Member("765")], 1.0, &[]),
            ("users:alice@example.com|s", Type::Set, &[Member("alice@example.com")], 1.0, &[]),
            ("users.online:1|c|@0.5|#country:china,env:prod", Type::Counter, &[Number(1.0)], 0.5, &["country:china", "env:prod"]),
            ("a:1:2:3|ms", Type::Timer, &[Number(1.0), Number(2.0), Number(3.0)], 1.0, &[]),
            ("a:1:+2|g", Type::Gauge, &[Number(1.0), Delta(2.0)], 1.0, &[]),
            ("a:1|c|#bare,,k:v|c:abc123|T1700000000", Type::Counter, &[Number(1.0)], 1.0, &["bare", "k:v"]),
            ("a:1.5e3|ms", Type::Timer, &[Number(1500.0)], 1.0, &[]),
        ];
        for (text, kind, values, rate, tags) in cases {
            let line = parse_line(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(line.kind, *kind, "{text}");
            assert_eq!(line.values().collect::<Vec<_>>(), *values, "{text}");
            assert_eq!(line.rate, *rate, "{text}");
            assert_eq!(line.tags().collect::<Vec<_>>(), *tags, "{text}");
        }
    }

    #[test]
    fn bad_lines() {
        let cases = [
            ("gorets", ParseError::NoValue),
            (":1|c", ParseError::EmptyName),
            ("a:1", ParseError::NoType),
            ("a:1|x", ParseError::UnknownType),
            ("a:1|", ParseError::UnknownType),
            ("a:x|c", ParseError::BadValue),
            ("a:|c", ParseError::BadValue),
            ("a:1::2|ms", ParseError::BadValue),
            ("a:NaN|g", ParseError::BadValue),
            ("a:inf|ms", ParseError::BadValue),
            ("a:1|c|@0", ParseError::BadRate),
            ("a:1|c|@2", ParseError::BadRate),
            ("a:1|c|@x", ParseError::BadRate),
            ("a:1|c|zz", ParseError::BadSection),
            ("a:1:2|s", ParseError::PackedSet),
            ("a:|s", ParseError::BadValue),
            ("_e{5,4}:title|text", ParseError::NotAMetric),
            ("_sc|check|0", ParseError::NotAMetric),
        ];
        for (text, err) in cases {
            assert_eq!(parse_line(text), Err(err), "{text}");
        }
    }

    #[test]
    fn packet_lines() {
        let got: Vec<&str> = lines("a:1|c\r\n\nb:2|g\n  \n").collect();
        assert_eq!(got, ["a:1|c", "b:2|g"]);
    }
}
