//! Pieces of generated code both macros emit the same way.

use proc_macro2::{Span, TokenStream};
use quote::quote;

/// A span that resolves like the macro's own tokens but is reported at `span` (the user's
/// token), so errors underline what the user wrote.
pub(crate) fn at(span: Span) -> Span {
    Span::call_site().located_at(span)
}

/// The traits whose methods tell a `Result` return from a plain one and pick the richest error
/// report, imported anonymously.
pub(crate) fn kind_imports(private: &TokenStream) -> TokenStream {
    quote! {
        #[allow(unused_imports)]
        use #private::{
            ResultKind as _, PlainKind as _, StdErrorKind as _, SendErrorPointerKind as _,
            ErrorPointerKind as _, DebugKind as _, DisplayKind as _,
        };
    }
}

/// Print the expansion to stderr when `WORKER_MACROS_DEBUG=1`.
pub(crate) fn debug_print(macro_name: &str, name: &str, tokens: &TokenStream) {
    if std::env::var_os("WORKER_MACROS_DEBUG").is_some_and(|v| v == "1") {
        eprintln!("---- {macro_name} on `{name}` expands to:\n{tokens}\n----");
    }
}
