//! TOML text into the raw config shape, without stopping at the first key
//! that does not fit it. A syntax error is fatal (the document has no shape
//! to check), but an unknown key or a value of the wrong type is a problem
//! like any other: it is recorded with its key and line, the entry is taken
//! out of the parsed document, and the rest is read again, so that one run
//! reports every such key together with the semantic problems of the rest.

use std::ops::Range;

use serde::Deserialize;
use toml::de::{DeTable, DeValue, Deserializer};
use toml::Spanned;

use super::problems::Problem;
use super::raw::RawConfig;

/// More keys than this that do not fit the shape, and the document is
/// reported as it stands at the last one (a file that is not a proxy config
/// at all has no use for a hundred problems).
const MAX_SHAPE_PROBLEMS: usize = 64;

/// The raw config and the keys that did not fit it; `Err` for a document
/// that is not TOML (or whose errors cannot be placed on a key).
pub(super) fn parse(text: &str) -> Result<(RawConfig, Vec<Problem>), toml::de::Error> {
    let mut root = DeTable::parse(text)?;
    // With the byte offset of each, to list them in the file's order.
    let mut problems: Vec<(usize, Problem)> = Vec::new();
    loop {
        let de = Deserializer::from(root.clone());
        let err = match RawConfig::deserialize(de) {
            Ok(raw) => {
                problems.sort_by_key(|(at, _)| *at);
                return Ok((raw, problems.into_iter().map(|(_, p)| p).collect()));
            }
            Err(err) => err,
        };
        let placed = err
            .span()
            .filter(|_| problems.len() < MAX_SHAPE_PROBLEMS)
            .and_then(|span| take_entry(root.get_mut(), &span, ""));
        let Some(key) = placed else {
            // The same error again, now with the text's snippet.
            return Err(toml::from_str::<RawConfig>(text).err().unwrap_or(err));
        };
        let at = err.span().map_or(0, |s| s.start);
        let line = line_of(text, at);
        problems.push((
            at,
            Problem {
                key,
                message: format!("{} (line {line})", err.message()),
            },
        ));
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// Removes the innermost table entry whose key or value holds `span` and
/// returns its dotted path (`authz.rule[1].match.cn`). An error inside an
/// array that is not an array of tables takes the whole key out: removing
/// one element would renumber the others. Entries of an array of tables
/// are looked into, never removed (rule numbers stay those of the file).
fn take_entry(table: &mut DeTable<'_>, span: &Range<usize>, prefix: &str) -> Option<String> {
    let mut hit: Option<Spanned<toml::de::DeString<'_>>> = None;
    for (key, value) in table.iter_mut() {
        let path = join(prefix, key.get_ref());
        if let Some(found) = take_within(value, span, &path) {
            return Some(found);
        }
        if contains(&key.span(), span) || contains(&value.span(), span) {
            hit = Some(key.clone());
            break;
        }
    }
    let key = hit?;
    let path = join(prefix, key.get_ref());
    table.remove(&key);
    Some(path)
}

/// Looks for the entry below a value: in a table, or in the tables of an
/// array of tables.
fn take_within(
    value: &mut Spanned<DeValue<'_>>,
    span: &Range<usize>,
    path: &str,
) -> Option<String> {
    match value.get_mut() {
        DeValue::Table(inner) => take_entry(inner, span, path),
        DeValue::Array(items) => items.iter_mut().enumerate().find_map(|(i, item)| {
            let item_path = format!("{path}[{i}]");
            match item.get_mut() {
                DeValue::Table(inner) => take_entry(inner, span, &item_path),
                _ => None,
            }
        }),
        _ => None,
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape_problems(text: &str) -> Vec<String> {
        let (_, problems) = parse(text).expect("parses");
        problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_all_reported_with_their_lines() {
        let problems = shape_problems(
            "[listen]\nadress = \"x\"\n[limits]\nmax_connections = \"lots\"\n[tls]\ncert = 5\n",
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].starts_with("listen.adress: unknown field `adress`"),
            "{problems:?}"
        );
        assert!(problems[0].ends_with("(line 2)"), "{problems:?}");
        assert!(
            problems[1].starts_with("limits.max_connections: invalid type: string \"lots\""),
            "{problems:?}"
        );
        assert!(problems[1].ends_with("(line 4)"), "{problems:?}");
        assert!(problems[2].starts_with("tls.cert: invalid type: integer"));
        assert!(problems[2].ends_with("(line 6)"), "{problems:?}");
    }

    #[test]
    fn the_rest_of_a_table_survives_a_bad_key() {
        let (raw, problems) =
            parse("[upstream]\naddress = \"http://a:1\"\nport = 7\nca = 3\n").unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        let upstream = raw.upstream.expect("the table is kept");
        assert_eq!(upstream.address.as_deref(), Some("http://a:1"));
        assert!(upstream.ca.is_none());
    }

    #[test]
    fn a_bad_key_in_a_rule_keeps_the_rule_numbers() {
        let text = "[[authz.rule]]\nname = \"a\"\n[[authz.rule]]\nname = \"b\"\nnamspaces = [\"x\"]\n[[authz.rule]]\nname = \"c\"\n";
        let (raw, problems) = parse(text).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "authz.rule[1].namspaces");
        assert!(problems[0].message.ends_with("(line 5)"));
        let rules = raw.authz.unwrap().rule.unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[2].name.as_deref(), Some("c"));
    }

    #[test]
    fn a_wrong_element_takes_out_its_whole_array() {
        let (raw, problems) = parse("[tls]\ncrl = [\"a.pem\", 5]\ncert = \"c.pem\"\n").unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "tls.crl");
        let tls = raw.tls.unwrap();
        assert!(tls.crl.is_none());
        assert_eq!(tls.cert.as_deref(), Some("c.pem"));
    }

    #[test]
    fn an_unknown_table_is_one_problem() {
        let problems = shape_problems("[lmits]\nmax_connections = 5\nfoo = 1\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("lmits: unknown field `lmits`"));
    }

    #[test]
    fn a_syntax_error_is_fatal_and_keeps_the_snippet() {
        let err = parse("[listen]\naddress = \n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn a_size_of_the_wrong_type_is_placed_on_its_key() {
        let problems = shape_problems(
            "[limits]\nmax_request_message = true\n[[authz.rule]]\nmatch = { cn = 5 }\n",
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with(
                "limits.max_request_message: invalid type: boolean `true`, expected a size"
            ),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("authz.rule[0].match.cn: "),
            "{problems:?}"
        );
    }
}
