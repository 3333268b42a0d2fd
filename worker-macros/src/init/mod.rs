//! `#[worker::init]`: parse → validate → expand.

mod expand;
mod parse;
mod validate;

use proc_macro2::TokenStream;

use crate::errors::{Errors, with_errors};

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let options = parse::options(attr, &mut errors);
    let init = match parse::init(item.clone()) {
        Ok(init) => init,
        Err(e) => {
            errors.push(e);
            return match errors.finish() {
                Err(error) => with_errors(item, error, expand::fallback(&options)),
                Ok(()) => item,
            };
        }
    };
    validate::validate(&init, &mut errors);
    match errors.finish() {
        Ok(()) => expand::expand(&init, &options),
        Err(error) => with_errors(item, error, expand::fallback(&options)),
    }
}
