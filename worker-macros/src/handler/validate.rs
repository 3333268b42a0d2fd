//! `#[worker::handler]`: the signature rules. Every broken rule is reported on its token, and
//! all of them together.

use quote::ToTokens;
use syn::Type;

use super::parse::{Handler, Options, Param, ParamKind};
use crate::errors::Errors;
use crate::signature::{check_common, is_impl_trait};

/// The handler's parameters by role, once the rules hold.
pub(crate) struct Roles<'a> {
    /// The input parameter.
    pub(crate) input: &'a Param,
    /// `T` of the state parameter `&T`, if there is one.
    pub(crate) state: Option<&'a Type>,
    /// The handler streams (it takes a `StreamSender<T>`).
    pub(crate) streams: bool,
}

pub(crate) fn validate<'a>(
    handler: &'a Handler,
    options: &Options,
    errors: &mut Errors,
) -> Option<Roles<'a>> {
    let sig = &handler.item.sig;
    check_common(sig, "a handler", "#[worker::handler]", errors);

    let generated = if options.main { "main" } else { "worker_main" };
    if sig.ident == generated {
        let other = if options.main {
            "or keep the name and write `#[worker::handler(main = false)]`"
        } else {
            "e.g. `handler`"
        };
        errors.push(syn::Error::new(
            sig.ident.span(),
            format!(
                "`#[worker::handler]` generates `fn {generated}`, so the handler cannot be named \
                 `{generated}`; rename it, {other}"
            ),
        ));
    }

    if let Some((0, span)) = options.concurrency {
        errors.push(syn::Error::new(
            span,
            "`concurrency` must be at least 1 (the number of jobs run at once)",
        ));
    }

    if let Some((flavor, span)) = &options.flavor
        && !matches!(flavor.as_str(), "multi_thread" | "current_thread")
    {
        errors.push(syn::Error::new(
            *span,
            format!(
                "unknown runtime flavor `{flavor}`: write `flavor = \"multi_thread\"` (the \
                 default: jobs and the job loop share a thread pool) or `flavor = \"current_thread\"` \
                 (everything on one thread)"
            ),
        ));
    }

    let mut inputs = Vec::new();
    let mut states = Vec::new();
    let mut contexts = Vec::new();
    let mut streams = Vec::new();
    for param in &handler.params {
        match &param.kind {
            ParamKind::Input => inputs.push(param),
            ParamKind::State { reference, .. } => {
                if let Some(m) = &reference.mutability {
                    let and = &reference.and_token;
                    errors.push(syn::Error::new_spanned(
                        quote::quote!(#and #m),
                        "the state from `#[worker::init]` is shared by every job, so a handler \
                         borrows it as `&T`, not `&mut T`; keep a `Mutex` or atomics inside the \
                         state for what must change",
                    ));
                }
                states.push(param);
            }
            ParamKind::Context { mutable, .. } => {
                if let Some(m) = mutable {
                    errors.push(syn::Error::new(
                        m.span,
                        "take the job as `&Job` or `Job`, not `&mut Job`",
                    ));
                }
                contexts.push(param);
            }
            ParamKind::Stream { mutable, .. } => {
                if let Some(m) = mutable {
                    errors.push(syn::Error::new(
                        m.span,
                        "take the stream as `StreamSender<T>` or `&StreamSender<T>`, not `&mut`",
                    ));
                }
                streams.push(param);
            }
        }
        if is_impl_trait(&param.ty) {
            errors.push(syn::Error::new_spanned(
                &param.ty,
                "a handler's parameter types must be named: replace `impl Trait` with a concrete \
                 type",
            ));
        }
    }

    match inputs.as_slice() {
        [] => errors.push(syn::Error::new(
            sig.paren_token.span.join(),
            "a handler takes one input parameter, e.g. `input: serde_json::Value`, deserialized \
             from the job's `input` (a `&T` parameter is the state and a `&Job` parameter is the \
             job context)",
        )),
        [_] => {}
        [_, extra @ ..] => {
            for p in extra {
                errors.push(syn::Error::new_spanned(
                    &p.ty,
                    format!(
                        "a handler takes exactly one input parameter, and this is a second one: \
                         put all inputs in one `#[derive(Deserialize)]` struct; a `&T` parameter \
                         would be the `#[worker::init]` state, a `&Job` one the job context (got \
                         `{}`)",
                        p.ty.to_token_stream()
                    ),
                ));
            }
        }
    }
    for p in states.iter().skip(1) {
        errors.push(syn::Error::new_spanned(
            &p.ty,
            "a handler takes at most one state parameter `&T` (what `#[worker::init]` returns); \
             to share several values, return a struct holding them from the init function",
        ));
    }
    for p in contexts.iter().skip(1) {
        errors.push(syn::Error::new_spanned(
            &p.ty,
            "a handler takes at most one job context parameter (`&Job` or `Job`); remove this one",
        ));
    }

    for p in streams.iter().skip(1) {
        errors.push(syn::Error::new_spanned(
            &p.ty,
            "a handler streams through one `StreamSender<T>`; remove this one (send every item \
             through the first)",
        ));
    }
    if let (Some(span), true) = (options.aggregate_stream, streams.is_empty()) {
        errors.push(syn::Error::new(
            span,
            "`return_aggregate_stream` is for streaming handlers: add a `stream: \
             worker::StreamSender<T>` parameter, or remove this argument",
        ));
    }
    match (inputs.first(), errors.is_empty()) {
        (Some(input), true) => Some(Roles {
            input,
            state: states.first().and_then(|p| match &p.kind {
                ParamKind::State { reference } => Some(&*reference.elem),
                _ => None,
            }),
            streams: !streams.is_empty(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::parse;
    use proc_macro2::TokenStream;
    use quote::quote;

    fn errors(attr: TokenStream, item: TokenStream) -> Vec<String> {
        let mut errors = Errors::default();
        let options = parse::options(attr, &mut errors);
        let handler = parse::handler(item).unwrap();
        let roles = validate(&handler, &options, &mut errors);
        assert_eq!(roles.is_some(), errors.is_empty());
        errors.messages()
    }

    #[test]
    fn a_good_handler_has_roles() {
        assert!(
            errors(
                quote!(),
                quote!(
                    async fn f(j: &Job, i: In, s: &S) {}
                )
            )
            .is_empty()
        );
        assert!(
            errors(
                quote!(),
                quote!(
                    fn f(i: In) -> Out {
                        x
                    }
                )
            )
            .is_empty()
        );
    }

    #[test]
    fn input_count() {
        let none = errors(
            quote!(),
            quote!(
                async fn f(s: &S, j: &Job) {}
            ),
        );
        assert_eq!(none.len(), 1);
        assert!(
            none[0].starts_with(
                "a handler takes one input parameter, e.g. `input: serde_json::Value`"
            )
        );
        let two = errors(
            quote!(),
            quote!(
                async fn f(a: A, b: B, c: C) {}
            ),
        );
        assert_eq!(two.len(), 2);
        assert!(two[0].contains("got `B`"), "{}", two[0]);
    }

    #[test]
    fn state_and_context_rules() {
        let e = errors(
            quote!(),
            quote!(
                fn f(i: I, s: &mut S, t: &T, j: Job, k: &mut Job) {}
            ),
        );
        assert_eq!(e.len(), 4, "{e:#?}");
        assert!(e[0].contains("not `&mut T`"));
        assert!(e[1].contains("not `&mut Job`"));
        assert!(e[2].contains("at most one state parameter"));
        assert!(e[3].contains("at most one job context parameter"));
    }

    #[test]
    fn signature_rules_are_all_reported() {
        let e = errors(
            quote!(concurrency = 0),
            quote!(
                unsafe extern "C" fn main<T>(&self, i: impl Sized) {}
            ),
        );
        assert_eq!(e.len(), 7, "{e:#?}");
        assert!(e[0].starts_with("a handler is a free function, not a method"));
        assert!(e[1].starts_with("a handler cannot be generic"));
        assert!(e[2].contains("`unsafe fn`"));
        assert!(e[3].contains("remove `extern \"C\"`"));
        assert!(e[4].contains("cannot be named `main`"));
        assert!(e[5].contains("at least 1"));
        assert!(e[6].contains("replace `impl Trait`"));
    }

    #[test]
    fn main_false_frees_the_name_main() {
        assert!(
            errors(
                quote!(main = false),
                quote!(
                    fn main(i: I) {}
                )
            )
            .is_empty()
        );
        assert_eq!(
            errors(
                quote!(main = false),
                quote!(
                    fn worker_main(i: I) {}
                )
            )
            .len(),
            1
        );
    }
}
