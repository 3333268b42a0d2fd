//! `#[worker::init]`: from tokens to a typed description.

use proc_macro2::TokenStream;
use syn::ItemFn;

use crate::attr::{self, Args, Kind, Value};
use crate::errors::Errors;

pub(crate) const MACRO: &str = "#[worker::init]";

/// The arguments `#[worker::init(…)]` accepts.
pub(crate) const ARGS: &[(&str, Kind)] = &[
    ("timeout", Kind::Str("10m")),
    ("crate", Kind::Str("my_worker")),
];

pub(crate) struct Options {
    pub(crate) krate: syn::Path,
    /// `timeout = "10m"`: the longest init may run, in microseconds.
    pub(crate) timeout_micros: Option<u64>,
}

pub(crate) fn options(attr: TokenStream, errors: &mut Errors) -> Options {
    match attr::parse_raw(attr) {
        Ok(raw) => {
            let args = Args::check(MACRO, raw, ARGS, errors);
            let timeout_micros = match args.get("timeout") {
                Some(Value::Str(text, span)) => match attr::parse_duration(text) {
                    Some(0) => {
                        errors.push(syn::Error::new(
                            *span,
                            "`timeout` must be longer than 0: it bounds how long init may run, \
                             e.g. `timeout = \"10m\"`",
                        ));
                        None
                    }
                    Some(micros) => Some(micros),
                    None => {
                        errors.push(syn::Error::new(
                            *span,
                            format!(
                                "`timeout = \"{text}\"` is not a duration: write a whole number \
                                 and a unit, e.g. `timeout = \"10m\"`, `\"90s\"` or `\"1h\"`"
                            ),
                        ));
                        None
                    }
                },
                _ => None,
            };
            Options {
                krate: attr::crate_path(&args, errors),
                timeout_micros,
            }
        }
        Err(e) => {
            errors.push(e);
            Options {
                krate: attr::default_crate_path(),
                timeout_micros: None,
            }
        }
    }
}

/// The init function as written.
pub(crate) struct Init {
    pub(crate) item: ItemFn,
}

pub(crate) fn init(item: TokenStream) -> syn::Result<Init> {
    let item = crate::signature::parse_fn(item, MACRO, "async fn load() -> anyhow::Result<Model>")?;
    Ok(Init { item })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn takes_timeout_and_crate() {
        let mut errors = Errors::default();
        let o = options(quote!(crate = "w", concurrency = 2), &mut errors);
        let krate = o.krate;
        assert_eq!(quote!(#krate).to_string(), "w");
        assert_eq!(
            errors.messages(),
            [
                "unknown argument `concurrency` for `#[worker::init]`; valid arguments are \
                 `timeout` and `crate`"
            ]
        );
        let mut errors = Errors::default();
        assert_eq!(
            options(quote!(timeout = "90s"), &mut errors).timeout_micros,
            Some(90_000_000)
        );
        assert!(errors.is_empty());
        let _ = options(quote!(timeout = "soon"), &mut errors);
        let _ = options(quote!(timeout = "0s"), &mut errors);
        let messages = errors.messages();
        assert!(messages[0].contains("is not a duration"), "{messages:?}");
        assert!(messages[1].contains("longer than 0"), "{messages:?}");
    }
}
