//! `#[worker::init]`: from tokens to a typed description.

use proc_macro2::TokenStream;
use syn::ItemFn;

use crate::attr::{self, Args, Kind};
use crate::errors::Errors;

pub(crate) const MACRO: &str = "#[worker::init]";

/// `#[worker::init]` takes only `crate = "…"`.
pub(crate) const ARGS: &[(&str, Kind)] = &[("crate", Kind::Str("my_worker"))];

pub(crate) struct Options {
    pub(crate) krate: syn::Path,
}

pub(crate) fn options(attr: TokenStream, errors: &mut Errors) -> Options {
    match attr::parse_raw(attr) {
        Ok(raw) => {
            let args = Args::check(MACRO, raw, ARGS, errors);
            Options {
                krate: attr::crate_path(&args, errors),
            }
        }
        Err(e) => {
            errors.push(e);
            Options {
                krate: attr::default_crate_path(),
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
    fn takes_only_crate() {
        let mut errors = Errors::default();
        let o = options(quote!(crate = "w", concurrency = 2), &mut errors);
        let krate = o.krate;
        assert_eq!(quote!(#krate).to_string(), "w");
        assert_eq!(
            errors.messages(),
            ["unknown argument `concurrency` for `#[worker::init]`; the only argument is `crate`"]
        );
    }
}
