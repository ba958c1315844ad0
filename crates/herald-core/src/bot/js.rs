//! A deliberately small JavaScript tokenizer, just enough to find `createPushback(...)` calls whose
//! event argument (the 4th) is a string literal, so that reserved event names are caught at load
//! time. It understands comments, the three kinds of string literals and nested brackets; it does
//! not need to understand anything else.

/// A `createPushback` call whose 4th argument is a string literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PushbackCall {
    /// The literal's value.
    pub event: String,
    /// 0-based line of the `createPushback` name within the snippet.
    pub line: usize,
    /// 0-based column (in characters) of the name within that line.
    pub col: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Punct(char),
    Other,
}

/// Every `createPushback(a, b, c, "literal", ...)` in `src`.
pub(crate) fn pushback_calls(src: &str) -> Vec<PushbackCall> {
    let toks = tokenize(src);
    let mut out = Vec::new();
    for (i, (tok, at)) in toks.iter().enumerate() {
        if *tok != Tok::Ident("createPushback".into()) {
            continue;
        }
        if toks.get(i + 1).map(|t| &t.0) != Some(&Tok::Punct('(')) {
            continue;
        }
        let mut args: Vec<Vec<&Tok>> = vec![Vec::new()];
        let mut depth = 0usize;
        for (t, _) in &toks[i + 2..] {
            match t {
                Tok::Punct('(' | '[' | '{') => depth += 1,
                Tok::Punct(')') if depth == 0 => break,
                Tok::Punct(')' | ']' | '}') => depth = depth.saturating_sub(1),
                Tok::Punct(',') if depth == 0 => {
                    args.push(Vec::new());
                    continue;
                }
                _ => {}
            }
            if let Some(last) = args.last_mut() {
                last.push(t);
            }
        }
        if let Some([Tok::Str(event)]) = args.get(3).map(Vec::as_slice) {
            let before = &src[..*at];
            let line = before.matches('\n').count();
            let col = before[before.rfind('\n').map_or(0, |n| n + 1)..]
                .chars()
                .count();
            out.push(PushbackCall {
                event: event.clone(),
                line,
                col,
            });
        }
    }
    out
}

/// Tokens with their byte offsets.
fn tokenize(src: &str) -> Vec<(Tok, usize)> {
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let peek = |k: usize| chars.get(k).map(|&(_, c)| c);
    while let Some(&(at, c)) = chars.get(i) {
        match c {
            c if c.is_whitespace() => i += 1,
            '/' if peek(i + 1) == Some('/') => {
                while peek(i).is_some_and(|c| c != '\n') {
                    i += 1;
                }
            }
            '/' if peek(i + 1) == Some('*') => {
                i += 2;
                while peek(i).is_some() && !(peek(i) == Some('*') && peek(i + 1) == Some('/')) {
                    i += 1;
                }
                i += 2;
            }
            '"' | '\'' => {
                let mut value = String::new();
                i += 1;
                while let Some(d) = peek(i) {
                    i += 1;
                    match d {
                        '\\' => {
                            if let Some(e) = peek(i) {
                                value.push(e);
                                i += 1;
                            }
                        }
                        d if d == c => break,
                        '\n' => break,
                        d => value.push(d),
                    }
                }
                toks.push((Tok::Str(value), at));
            }
            '`' => {
                i += 1;
                while let Some(d) = peek(i) {
                    i += 1;
                    match d {
                        '\\' => i += 1,
                        '`' => break,
                        _ => {}
                    }
                }
                toks.push((Tok::Other, at));
            }
            c if c.is_alphabetic() || c == '_' || c == '$' => {
                let mut name = String::new();
                while let Some(d) =
                    peek(i).filter(|d| d.is_alphanumeric() || *d == '_' || *d == '$')
                {
                    name.push(d);
                    i += 1;
                }
                toks.push((Tok::Ident(name), at));
            }
            c if c.is_ascii_digit() => {
                while peek(i).is_some_and(|d| d.is_alphanumeric() || d == '.') {
                    i += 1;
                }
                toks.push((Tok::Other, at));
            }
            c => {
                toks.push((Tok::Punct(c), at));
                i += 1;
            }
        }
    }
    toks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fourth_argument_literal_is_found_with_its_line() {
        let src = "// createPushback(a, b, c, \"noMatch\")\nvar p = $pushgate.createPushback(\n  f(a, [b, c]), { x: 'y,z' }, `t${1}`,\n  'noMatch', {}\n);";
        let calls = pushback_calls(src);
        assert_eq!(
            calls,
            vec![PushbackCall {
                event: "noMatch".into(),
                line: 1,
                col: 18
            }]
        );
    }

    #[test]
    fn computed_event_names_are_ignored() {
        assert!(pushback_calls("createPushback(a, b, c, name, {})").is_empty());
        assert!(pushback_calls("createPushback(a, b, c, 'x' + y)").is_empty());
        assert!(pushback_calls("createPushback(a, b)").is_empty());
        assert_eq!(pushback_calls("createPushback(a,b,c,\"\")")[0].event, "");
    }
}
