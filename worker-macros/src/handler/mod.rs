//! `#[worker::handler]`: parse → validate → expand.

mod expand;
mod parse;
mod test_input;
mod validate;

use proc_macro2::TokenStream;

use crate::errors::{Errors, with_errors};

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let options = parse::options(attr, &mut errors);
    let handler = match parse::handler(item.clone()) {
        Ok(handler) => handler,
        Err(e) => {
            errors.push(e);
            return match errors.finish() {
                Err(error) => with_errors(item, error, expand::fallback(&options, None, false)),
                Ok(()) => item,
            };
        }
    };
    let roles = validate::validate(&handler, &options, &mut errors);
    match (roles, errors.finish()) {
        (Some(roles), Ok(())) => expand::expand(&handler, &roles, &options),
        (_, Err(error)) => with_errors(
            item,
            error,
            expand::fallback(
                &options,
                Some(&handler.item.sig.ident),
                handler.item.sig.receiver().is_some(),
            ),
        ),
        (None, Ok(())) => item,
    }
}
