//! A small command-line parser with the rules of cobra/pflag, which both real tools use.
//!
//! What matters for fidelity: flags may appear anywhere among the operands (interspersed);
//! `--` ends the options (everything after it is an operand, even `-x`); long flags take
//! `--flag=value` or `--flag value` (the next word is consumed even if it starts with `-`);
//! short flags take `-f value`, `-f=value` or `-fvalue` and boolean ones can be grouped (`-nq`);
//! booleans accept `--flag=false`; an unknown flag is an error.

/// How a flag takes its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `--flag` or `--flag=true|false`.
    Bool,
    /// One value; the last occurrence wins.
    Value,
    /// A value that may be repeated (pflag `StringArray`/`StringSlice`).
    Multi,
}

/// One accepted flag.
#[derive(Clone, Copy, Debug)]
pub struct Flag {
    pub long: &'static str,
    pub short: Option<char>,
    pub kind: Kind,
}

/// Shorthand for building flag tables.
pub const fn flag(long: &'static str, short: Option<char>, kind: Kind) -> Flag {
    Flag { long, short, kind }
}

/// Every command understands `-h/--help`, as in cobra.
const HELP: Flag = flag("help", Some('h'), Kind::Bool);

/// The result of parsing: operands in order and flag values by long name.
#[derive(Debug, Default)]
pub struct Parsed {
    pub positionals: Vec<String>,
    values: Vec<(&'static str, String)>,
}

impl Parsed {
    /// Whether a boolean flag is set (its last occurrence decides).
    pub fn bool(&self, long: &str) -> bool {
        self.value(long) == Some("true")
    }

    /// The last value given for a flag.
    pub fn value(&self, long: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(name, _)| *name == long)
            .map(|(_, v)| v.as_str())
    }

    /// All values given for a repeatable flag, in order.
    pub fn values(&self, long: &str) -> Vec<&str> {
        self.values
            .iter()
            .filter(|(name, _)| *name == long)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether the flag appeared at all.
    pub fn has(&self, long: &str) -> bool {
        self.values.iter().any(|(name, _)| *name == long)
    }
}

fn find_long<'a>(specs: &'a [Flag], name: &str) -> Option<&'a Flag> {
    specs
        .iter()
        .find(|f| f.long == name)
        .or((name == HELP.long).then_some(&HELP))
}

fn find_short(specs: &[Flag], c: char) -> Option<&Flag> {
    specs
        .iter()
        .find(|f| f.short == Some(c))
        .or((Some(c) == HELP.short).then_some(&HELP))
}

/// Go's `strconv.ParseBool`.
fn parse_bool(long: &str, v: &str) -> Result<&'static str, String> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok("true"),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok("false"),
        _ => Err(format!(
            "invalid argument \"{v}\" for \"--{long}\" flag: strconv.ParseBool: parsing \"{v}\": invalid syntax"
        )),
    }
}

/// Parses `args` against `specs`. Errors carry pflag's wording.
pub fn parse(args: &[String], specs: &[Flag]) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    let mut only_operands = false;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if only_operands || arg == "-" || !arg.starts_with('-') {
            parsed.positionals.push(arg.clone());
            continue;
        }
        if arg == "--" {
            only_operands = true;
            continue;
        }
        if let Some(body) = arg.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let spec = find_long(specs, name).ok_or_else(|| format!("unknown flag: --{name}"))?;
            let value = match spec.kind {
                Kind::Bool => parse_bool(spec.long, inline.unwrap_or("true"))?.to_string(),
                Kind::Value | Kind::Multi => match inline {
                    Some(v) => v.to_string(),
                    None if i < args.len() => {
                        i += 1;
                        args[i - 1].clone()
                    }
                    None => return Err(format!("flag needs an argument: --{name}")),
                },
            };
            parsed.values.push((spec.long, value));
            continue;
        }
        // A group of short flags: `-n`, `-nq`, `-tvalue`, `-t=value`, `-t value`.
        let body = &arg[1..];
        for (idx, c) in body.char_indices() {
            let spec = find_short(specs, c).ok_or_else(|| format!("unknown shorthand flag: '{c}' in {arg}"))?;
            let rest = &body[idx + c.len_utf8()..];
            match spec.kind {
                Kind::Bool => {
                    if let Some(v) = rest.strip_prefix('=') {
                        parsed.values.push((spec.long, parse_bool(spec.long, v)?.to_string()));
                        break;
                    }
                    parsed.values.push((spec.long, "true".to_string()));
                }
                Kind::Value | Kind::Multi => {
                    let value = if let Some(v) = rest.strip_prefix('=') {
                        v.to_string()
                    } else if !rest.is_empty() {
                        rest.to_string()
                    } else if i < args.len() {
                        i += 1;
                        args[i - 1].clone()
                    } else {
                        return Err(format!("flag needs an argument: '{c}' in -{c}"));
                    };
                    parsed.values.push((spec.long, value));
                    break;
                }
            }
        }
    }
    Ok(parsed)
}

/// Finds the sub-command word: the first operand, skipping the root's (global) flags before it.
/// Returns the verb (if any) and the remaining arguments with the verb removed.
pub fn split_verb(args: &[String], globals: &[Flag]) -> Result<(Option<String>, Vec<String>), String> {
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "--" {
            break;
        }
        if arg == "-" || !arg.starts_with('-') {
            let mut rest = args.to_vec();
            let verb = rest.remove(i);
            return Ok((Some(verb), rest));
        }
        let takes_value = if let Some(body) = arg.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, _)) => (n, true),
                None => (body, false),
            };
            let spec = find_long(globals, name).ok_or_else(|| format!("unknown flag: --{name}"))?;
            spec.kind != Kind::Bool && !inline
        } else {
            let mut takes = false;
            let body = &arg[1..];
            for (idx, c) in body.char_indices() {
                let spec = find_short(globals, c).ok_or_else(|| format!("unknown shorthand flag: '{c}' in {arg}"))?;
                if spec.kind != Kind::Bool {
                    takes = body[idx + c.len_utf8()..].is_empty();
                    break;
                }
            }
            takes
        };
        i += if takes_value { 2 } else { 1 };
    }
    Ok((None, args.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[Flag] = &[
        flag("type", Some('t'), Kind::Value),
        flag("silent", None, Kind::Bool),
        flag("dry-run", Some('n'), Kind::Bool),
        flag("quiet", Some('q'), Kind::Bool),
        flag("labels", Some('l'), Kind::Multi),
    ];

    fn v(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn forms() {
        let p = parse(
            &v(&[
                "a",
                "--type=bug",
                "-nq",
                "-lx,y",
                "-l",
                "z",
                "--silent=false",
                "--",
                "-b",
            ]),
            SPECS,
        )
        .unwrap();
        assert_eq!(p.positionals, v(&["a", "-b"]));
        assert_eq!(p.value("type"), Some("bug"));
        assert!(p.bool("dry-run") && p.bool("quiet"));
        assert!(!p.bool("silent") && p.has("silent"));
        assert_eq!(p.values("labels"), vec!["x,y", "z"]);
        let p = parse(&v(&["--type", "-weird", "-t=x"]), SPECS).unwrap();
        assert_eq!(p.value("type"), Some("x"));
        assert!(parse(&v(&["--nope"]), SPECS).is_err());
        assert!(parse(&v(&["-x"]), SPECS).is_err());
        assert!(parse(&v(&["--type"]), SPECS).is_err());
    }

    #[test]
    fn verb() {
        let g = &[flag("json", None, Kind::Bool), flag("actor", None, Kind::Value)];
        let (verb, rest) = split_verb(&v(&["--actor", "me", "--json", "show", "x"]), g).unwrap();
        assert_eq!(verb.as_deref(), Some("show"));
        assert_eq!(rest, v(&["--actor", "me", "--json", "x"]));
        assert!(split_verb(&v(&["--bogus", "show"]), g).is_err());
    }
}
