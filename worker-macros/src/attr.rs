//! Macro arguments shared by both attributes: a comma-separated `key = value` list, checked
//! against the keys a macro accepts. Every problem is reported on its own token and all of them
//! are returned together.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Ident, Lit, Token};

use crate::errors::Errors;

/// One `key = value`, or a bare `key` (a flag, or an error for other keys).
pub(crate) struct RawArg {
    pub(crate) key: Ident,
    pub(crate) value: Option<Expr>,
}

impl Parse for RawArg {
    fn parse(input: ParseStream<'_>) -> syn::Result<RawArg> {
        // `crate` is a keyword; `parse_any` takes it as an identifier.
        let key = Ident::parse_any(input)?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        Ok(RawArg { key, value })
    }
}

/// Parse the attribute's tokens into a list of arguments (syntax only).
pub(crate) fn parse_raw(attr: TokenStream) -> syn::Result<Vec<RawArg>> {
    let list = Punctuated::<RawArg, Token![,]>::parse_terminated.parse2(attr)?;
    Ok(list.into_iter().collect())
}

/// What a key's value must be.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    /// `true` or `false`.
    Bool,
    /// A string literal, e.g. `test_input = "test_input.json"`.
    Str(&'static str),
    /// A flag: the bare key means `true` (`refresh_worker`); `key = false` turns it off.
    Flag,
    /// An integer literal, or an expression for the compiler to check (`concurrency = 4`,
    /// `concurrency = MAX_JOBS`, `concurrency = scale`, `concurrency = |n| n`).
    IntOrExpr(&'static str),
    /// An integer literal (`batch = 32`).
    Int(&'static str),
}

/// A checked value, with the span of the value for later messages.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Int(u64, Span),
    Bool(bool),
    Str(String, Span),
    Expr(Box<Expr>),
}

/// The arguments of one macro, looked up by key after parsing.
pub(crate) struct Args {
    values: Vec<(String, Value, Span)>,
}

impl Args {
    /// Check `raw` against `spec` (key and value kind): unknown keys, duplicates, missing
    /// values and values of the wrong kind are added to `errors`.
    pub(crate) fn check(
        macro_name: &str,
        raw: Vec<RawArg>,
        spec: &[(&'static str, Kind)],
        errors: &mut Errors,
    ) -> Args {
        let mut values: Vec<(String, Value, Span)> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for arg in raw {
            let key = arg.key.unraw().to_string();
            let Some(&(_, kind)) = spec.iter().find(|(k, _)| *k == key) else {
                errors.push(syn::Error::new(
                    arg.key.span(),
                    format!(
                        "unknown argument `{key}` for `{macro_name}`; {}",
                        valid_keys(spec)
                    ),
                ));
                continue;
            };
            if seen.contains(&key) {
                errors.push(syn::Error::new(
                    arg.key.span(),
                    format!("`{key}` is given more than once; keep only one `{key} = …`"),
                ));
                continue;
            }
            seen.push(key.clone());
            let Some(expr) = arg.value else {
                if let Kind::Flag = kind {
                    values.push((key, Value::Bool(true), arg.key.span()));
                    continue;
                }
                errors.push(syn::Error::new(
                    arg.key.span(),
                    format!("`{key}` needs a value: write `{}`", example(&key, kind)),
                ));
                continue;
            };
            match value_of(&expr, kind) {
                Some(value) => values.push((key, value, arg.key.span())),
                None => errors.push(syn::Error::new(
                    expr.span(),
                    format!(
                        "`{key}` takes {}: write `{}`",
                        kind_name(kind),
                        example(&key, kind)
                    ),
                )),
            }
        }
        Args { values }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.values
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, _)| v)
    }

    /// Where `key` was written (the call site if it was not).
    pub(crate) fn span_of(&self, key: &str) -> Span {
        self.values
            .iter()
            .find(|(k, _, _)| k == key)
            .map_or_else(Span::call_site, |(_, _, span)| *span)
    }
}

fn value_of(expr: &Expr, kind: Kind) -> Option<Value> {
    if let Kind::IntOrExpr(_) = kind {
        return match expr {
            // A literal that is not an integer is a mistake worth a word here; an integer too
            // large for u64 is left to the compiler ("literal out of range for `usize`").
            Expr::Lit(ExprLit {
                lit: Lit::Int(i), ..
            }) => Some(match i.base10_parse::<u64>() {
                Ok(n) => Value::Int(n, i.span()),
                Err(_) => Value::Expr(Box::new(expr.clone())),
            }),
            Expr::Lit(_) => None,
            _ => Some(Value::Expr(Box::new(expr.clone()))),
        };
    }
    let Expr::Lit(ExprLit { lit, attrs }) = expr else {
        return None;
    };
    if !attrs.is_empty() {
        return None;
    }
    match (kind, lit) {
        (Kind::Int(_), Lit::Int(i)) => i
            .base10_parse::<u64>()
            .ok()
            .map(|n| Value::Int(n, i.span())),
        (Kind::Bool | Kind::Flag, Lit::Bool(b)) => Some(Value::Bool(b.value)),
        (Kind::Str(_), Lit::Str(s)) => Some(Value::Str(s.value(), s.span())),
        _ => None,
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Bool => "`true` or `false`",
        Kind::Str(_) => "a string literal",
        Kind::Flag => "no value (or `true`/`false`)",
        Kind::IntOrExpr(_) => "a number of jobs (`usize`) or a `fn(usize) -> usize`",
        Kind::Int(_) => "a positive integer literal",
    }
}

fn example(key: &str, kind: Kind) -> String {
    match kind {
        Kind::Bool => format!("{key} = true` or `{key} = false"),
        Kind::Str(e) => format!("{key} = \"{e}\""),
        Kind::Flag => key.to_owned(),
        Kind::IntOrExpr(e) => format!("{key} = {e}` or `{key} = my_scaling_fn"),
        Kind::Int(e) => format!("{key} = {e}"),
    }
}

fn valid_keys(spec: &[(&'static str, Kind)]) -> String {
    let list: Vec<String> = spec.iter().map(|(k, _)| format!("`{k}`")).collect();
    match list.as_slice() {
        [one] => format!("the only argument is {one}"),
        [rest @ .., last] => format!("valid arguments are {} and {last}", rest.join(", ")),
        [] => "it takes no arguments".to_owned(),
    }
}

/// A duration written as a whole number and a unit: `"500us"` (or `"500µs"`), `"5ms"`, `"30s"`,
/// `"10m"`, `"1h"`; in microseconds.
pub(crate) fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let scale: u64 = match unit.trim() {
        "us" | "µs" => 1,
        "ms" => 1_000,
        "s" => 1_000_000,
        "m" | "min" => 60_000_000,
        "h" => 3_600_000_000,
        _ => return None,
    };
    number.checked_mul(scale)
}

/// The path generated code starts with: what `crate = "…"` says, else the runtime's name in
/// `Cargo.toml` ([`default_crate_path`]).
pub(crate) fn crate_path(args: &Args, errors: &mut Errors) -> syn::Path {
    match args.get("crate") {
        Some(Value::Str(text, span)) => match syn::parse_str::<syn::Path>(text) {
            Ok(path) => respan_path(path, *span),
            Err(_) => {
                errors.push(syn::Error::new(
                    *span,
                    format!(
                        "`crate = \"{text}\"` is not a path; write the name the runtime crate \
                         has here, e.g. `crate = \"my_worker\"` after `use worker as my_worker;`"
                    ),
                ));
                default_crate_path()
            }
        },
        _ => default_crate_path(),
    }
}

/// `::worker`, or the name `Cargo.toml` gives the runtime when it renames it
/// (`rp = { package = "worker-runtime" }`: `::rp`).
pub(crate) fn default_crate_path() -> syn::Path {
    crate::manifest::renamed_runtime()
        .and_then(|name| syn::parse_str(&format!("::{name}")).ok())
        .unwrap_or_else(|| syn::parse_quote!(::worker))
}

/// Give a path parsed from a string literal the literal's location (resolved at the call site),
/// so a path that does not resolve is reported on the literal.
fn respan_path(path: syn::Path, span: Span) -> syn::Path {
    let span = Span::call_site().located_at(span);
    let tokens: TokenStream = quote::ToTokens::to_token_stream(&path)
        .into_iter()
        .map(|mut tt| {
            tt.set_span(span);
            tt
        })
        .collect();
    syn::parse2(tokens).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    const SPEC: &[(&str, Kind)] = &[
        ("concurrency", Kind::IntOrExpr("4")),
        ("main", Kind::Bool),
        ("crate", Kind::Str("my_worker")),
    ];

    fn check(attr: TokenStream) -> (Args, Vec<String>) {
        let mut errors = Errors::default();
        let raw = parse_raw(attr).unwrap();
        let args = Args::check("#[worker::handler]", raw, SPEC, &mut errors);
        (args, errors.messages())
    }

    #[test]
    fn accepts_known_keys() {
        let (args, errors) = check(quote!(concurrency = 4, main = false, crate = "w"));
        assert!(errors.is_empty(), "{errors:?}");
        assert!(matches!(args.get("concurrency"), Some(Value::Int(4, _))));
        assert!(matches!(args.get("main"), Some(Value::Bool(false))));
        assert!(matches!(args.get("crate"), Some(Value::Str(s, _)) if s == "w"));
    }

    #[test]
    fn reports_every_problem() {
        let (_, errors) = check(quote!(
            concurency = 4,
            main = false,
            main = true,
            concurrency = "4",
            crate
        ));
        assert_eq!(
            errors,
            [
                "unknown argument `concurency` for `#[worker::handler]`; valid arguments are \
                 `concurrency`, `main` and `crate`",
                "`main` is given more than once; keep only one `main = …`",
                "`concurrency` takes a number of jobs (`usize`) or a `fn(usize) -> usize`: \
                 write `concurrency = 4` or `concurrency = my_scaling_fn`",
                "`crate` needs a value: write `crate = \"my_worker\"`",
            ]
        );
    }

    #[test]
    fn bad_crate_path_is_an_error() {
        let (args, _) = check(quote!(crate = "not a path"));
        let mut errors = Errors::default();
        let path = crate_path(&args, &mut errors);
        assert_eq!(quote!(#path).to_string(), quote!(::worker).to_string());
        assert_eq!(errors.messages().len(), 1);
    }
}
