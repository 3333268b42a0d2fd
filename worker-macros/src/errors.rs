//! Collecting every error of one macro call, so the user sees them all at once.

use proc_macro2::TokenStream;

/// The errors found so far, combined into one `syn::Error` at the end.
#[derive(Default)]
pub(crate) struct Errors {
    combined: Option<syn::Error>,
}

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.combined {
            Some(all) => all.combine(error),
            None => self.combined = Some(error),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.combined.is_none()
    }

    /// `Ok(())` if nothing went wrong, else every error as one.
    pub(crate) fn finish(self) -> Result<(), syn::Error> {
        match self.combined {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    #[cfg(test)]
    pub(crate) fn messages(&self) -> Vec<String> {
        self.combined
            .iter()
            .flat_map(|e| e.clone().into_iter().map(|e| e.to_string()))
            .collect()
    }
}

/// The user's item unchanged, then the errors, then `fallback` (items that keep other code
/// compiling so only our messages show, e.g. a stub `fn main`).
pub(crate) fn with_errors(
    item: TokenStream,
    error: syn::Error,
    fallback: TokenStream,
) -> TokenStream {
    let mut out = item;
    out.extend(error.into_compile_error());
    out.extend(fallback);
    out
}
