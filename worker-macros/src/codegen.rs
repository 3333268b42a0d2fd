//! Pieces of generated code both macros emit the same way.

use proc_macro2::{Delimiter, Group, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned};
use syn::{GenericArgument, PathArguments, Type};

/// The name every `#[worker::init]` gives its provider, and the module's handler looks up (a
/// glob-imported fallback stands in when there is none). It reads as the rule it enforces:
/// two inits in a module are told "the name `one_worker_init_per_module` is defined multiple
/// times", at both attributes.
pub(crate) const INIT_ALIAS: &str = "one_worker_init_per_module";

use crate::signature::strip;

/// The generated code's own `__worker_…` locals (the job, the input, the state, results)
/// resolved with mixed-site hygiene, as `macro_rules!` locals are: user tokens the expansion
/// carries (types, the `concurrency` expression) can neither see nor shadow them. Locations are
/// kept, so errors still point where they did. Names after a `.` (methods of the runtime's
/// helper traits) stay as they are.
pub(crate) fn hygienic_locals(tokens: TokenStream) -> TokenStream {
    let mut after_dot = false;
    tokens
        .into_iter()
        .map(|tree| {
            let tree = match tree {
                TokenTree::Ident(mut ident)
                    if !after_dot && ident.to_string().starts_with("__worker_") =>
                {
                    ident.set_span(ident.span().resolved_at(Span::mixed_site()));
                    TokenTree::Ident(ident)
                }
                TokenTree::Group(group) => {
                    let mut respanned =
                        Group::new(group.delimiter(), hygienic_locals(group.stream()));
                    respanned.set_span(group.span());
                    TokenTree::Group(respanned)
                }
                other => other,
            };
            after_dot = matches!(&tree, TokenTree::Punct(p) if p.as_char() == '.');
            tree
        })
        .collect()
}

/// `{ tokens }` as one expression located at `span` (the user's token), while the tokens inside
/// keep the macro's own spans. The compiler reports a bound on the expression at `span`, so the
/// error underlines what the user wrote, and our local variables still resolve hygienically.
pub(crate) fn block_at(tokens: TokenStream, span: Span) -> TokenStream {
    group_at(Delimiter::Brace, tokens, span)
}

/// `( tokens )` located at `span`, for call arguments.
pub(crate) fn parens_at(tokens: TokenStream, span: Span) -> TokenStream {
    group_at(Delimiter::Parenthesis, tokens, span)
}

fn group_at(delimiter: Delimiter, tokens: TokenStream, span: Span) -> TokenStream {
    let mut group = Group::new(delimiter, tokens);
    group.set_span(span);
    TokenStream::from(TokenTree::Group(group))
}

/// Where to report a problem with a returned value: the innermost first type argument, which
/// is usually the user's own type (`Reply` in `anyhow::Result<Reply>` or `Vec<Reply>`), else
/// the type's last path segment. (A single token: a span cannot cover a whole type on stable.)
pub(crate) fn value_span(ty: &Type) -> Span {
    match strip(ty) {
        Type::Path(p) => match p.path.segments.last() {
            Some(last) => match &last.arguments {
                PathArguments::AngleBracketed(args) => args
                    .args
                    .iter()
                    .find_map(|a| match a {
                        GenericArgument::Type(t) => Some(value_span(t)),
                        _ => None,
                    })
                    .unwrap_or_else(|| last.ident.span()),
                _ => last.ident.span(),
            },
            None => syn::spanned::Spanned::span(ty),
        },
        Type::Reference(r) => value_span(&r.elem),
        other => syn::spanned::Spanned::span(other),
    }
}

/// The traits whose methods tell a `Result` return from a plain one and pick the richest error
/// report, imported anonymously.
pub(crate) fn kind_imports(private: &TokenStream) -> TokenStream {
    quote! {
        #[allow(unused_imports)]
        use #private::{
            ResultKind as _, PlainKind as _, DiagnosticKind as _, FailureKind as _, StdErrorKind as _,
            SendErrorPointerKind as _, ErrorPointerKind as _, DebugKind as _, DisplayKind as _,
        };
    }
}

/// `tokens` with every span set to `span` (e.g. the runtime's path in a call whose errors are
/// reported on the user's token, so no label points at the attribute instead).
pub(crate) fn respan(tokens: &TokenStream, span: Span) -> TokenStream {
    tokens
        .clone()
        .into_iter()
        .map(|tt| match tt {
            TokenTree::Group(g) => group_at(g.delimiter(), respan(&g.stream(), span), span)
                .into_iter()
                .next()
                .unwrap_or(TokenTree::Group(g)),
            mut other => {
                other.set_span(span);
                other
            }
        })
        .collect()
}

/// `private::function({ value })`, all located at `span`: a bound of `function` on the value is
/// reported there. The value's own tokens keep the macro's spans (hygiene).
pub(crate) fn call_at(
    private: &TokenStream,
    function: &str,
    value: TokenStream,
    span: Span,
) -> TokenStream {
    let path = respan(private, span);
    let function = syn::Ident::new(function, span);
    let value = parens_at(block_at(value, span), span);
    quote!(#path::#function #value)
}

/// `(&&&&&&ErrorWrap(&error)).__worker_error()`: the failure report for `error`, with the method
/// call located at `span` (an error type that is not even `Display` is reported there).
pub(crate) fn failure_of(private: &TokenStream, error: TokenStream, span: Span) -> TokenStream {
    let method = syn::Ident::new("__worker_error", span);
    let private = respan(private, span);
    let receiver = parens_at(quote!(&&&&&&#private::ErrorWrap(&#error)), span);
    // The whole call on the user's token: an unmet bound of the last level (`Display`) is
    // reported there, not on the attribute.
    quote_spanned!(span=> #receiver.#method())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_span_handles_every_shape() {
        let types: [Type; 5] = [
            syn::parse_quote!(anyhow::Result<Reply>),
            syn::parse_quote!(Result<Vec<Reply>, E>),
            syn::parse_quote!(&'static str),
            syn::parse_quote!((u8, u8)),
            syn::parse_quote!(Option<'static>),
        ];
        for ty in &types {
            let _ = value_span(ty);
        }
    }
}
