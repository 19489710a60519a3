//! The one place where names and values become SQL text.

/// Quotes an SQL identifier (schema, table, column, role), always.
pub fn ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `schema.name`, both parts quoted.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// Quotes a string literal; uses the E'' form when the value holds a backslash so the
/// result is right whatever `standard_conforming_strings` says.
pub fn literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 3);
    if value.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A pg_dump `-t`/`-n` pattern that matches exactly this name: inside double quotes
/// pattern characters (`*`, `?`, `.`) are literal and `""` stands for one quote.
pub fn dump_pattern(name: &str) -> String {
    ident(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_always_quoted_and_quotes_doubled() {
        assert_eq!(ident("metrics"), "\"metrics\"");
        assert_eq!(ident("Weird \"name\""), "\"Weird \"\"name\"\"\"");
        assert_eq!(qualified("Ünï", "a.b"), "\"Ünï\".\"a.b\"");
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("a\\b"), "E'a\\\\b'");
    }
}
