//! `#[worker::handler]`: the signature rules. Every broken rule is reported on its token, and
//! all of them together.

use quote::ToTokens;
use syn::Type;

use super::parse::{Handler, Options, Param, ParamKind, vec_element};
use crate::errors::Errors;
use crate::signature::{check_attrs, check_common, is_impl_trait};

/// The handler's parameters by role, once the rules hold.
pub(crate) struct Roles<'a> {
    /// The input parameter.
    pub(crate) input: &'a Param,
    /// `T` of the state parameter `&T`, if there is one.
    pub(crate) state: Option<&'a Type>,
    /// The handler streams (it takes a `StreamSender<T>`).
    pub(crate) streams: bool,
    /// `batch = N`: the batch shape, and `T` of the `Vec<T>` input.
    pub(crate) batch: Option<BatchRole<'a>>,
}

/// What a batch handler's expansion needs.
pub(crate) struct BatchRole<'a> {
    /// One job's input type: `T` of the `Vec<T>` parameter.
    pub(crate) element: &'a Type,
    pub(crate) size: (u64, proc_macro2::Span),
    /// `batch_wait`, in microseconds, where it was written.
    pub(crate) wait_micros: Option<(u64, proc_macro2::Span)>,
}

/// A by-value parameter of type `Job`, written without a path.
fn is_bare_job(p: &Param) -> bool {
    matches!(p.kind, ParamKind::Context { by_ref: false, .. })
        && matches!(crate::signature::strip(&p.ty), Type::Path(t) if t.path.is_ident("Job"))
}

/// `batch_wait`'s duration, in microseconds.
fn parse_wait(text: &str) -> Option<u64> {
    crate::attr::parse_duration(text)
}

pub(crate) fn validate<'a>(
    handler: &'a Handler,
    options: &Options,
    errors: &mut Errors,
) -> Option<Roles<'a>> {
    let sig = &handler.item.sig;
    check_common(sig, "a handler", "#[worker::handler]", errors);
    check_attrs(
        &handler.item.attrs,
        "a handler",
        "#[worker::handler]",
        errors,
    );

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

    if options.main && crate::compiled_crate::is_library() {
        errors.push(syn::Error::new(
            proc_macro2::Span::call_site(),
            "`#[worker::handler]` generates `fn main`, which a library never runs: put the \
             handler in `src/main.rs`, or write `#[worker::handler(main = false)]` here and call \
             the generated `worker_main()` from your binary's `main`",
        ));
    }

    if let Some((path, span)) = &options.test_input
        && let Some(problem) = super::test_input::check(path)
    {
        errors.push(syn::Error::new(*span, problem));
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

    let batching = options.batch.is_some();
    if let Some((0, span)) = options.batch {
        errors.push(syn::Error::new(
            span,
            "`batch` must be at least 1 (the most jobs one call of the handler takes), e.g. \
             `batch = 32`",
        ));
    }
    let mut wait_micros = None;
    if let Some((text, span)) = &options.batch_wait {
        if !batching {
            errors.push(syn::Error::new(
                *span,
                "`batch_wait` is for batch handlers: add `batch = 32` (and take `Vec<Input>`), or \
                 remove this argument",
            ));
        }
        match parse_wait(text) {
            Some(micros) => wait_micros = Some((micros, *span)),
            None => errors.push(syn::Error::new(
                *span,
                format!(
                    "`batch_wait = \"{text}\"` is not a duration: write a whole number and a unit, \
                     e.g. `batch_wait = \"5ms\"`, `\"500us\"` or `\"1s\"`"
                ),
            )),
        }
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
            ParamKind::Jobs { .. } => {
                if !batching {
                    errors.push(syn::Error::new_spanned(
                        &param.ty,
                        "a list of jobs is the context of a batch handler: add `batch = 32` to \
                         `#[worker::handler]` (and take the inputs as `Vec<Input>`), or take this \
                         job's context as `&Job`",
                    ));
                }
                contexts.push(param);
            }
            ParamKind::Context { mutable, .. } => {
                if batching {
                    errors.push(syn::Error::new_spanned(
                        &param.ty,
                        "a batch handler runs several jobs in one call: take their contexts as \
                         `jobs: &[Job]` (in the inputs' order), not one `Job`",
                    ));
                }
                if let Some(m) = mutable {
                    errors.push(syn::Error::new(
                        m.span,
                        "take the job as `&Job` or `Job`, not `&mut Job`",
                    ));
                }
                contexts.push(param);
            }
            ParamKind::Stream { mutable, .. } => {
                if batching {
                    errors.push(syn::Error::new_spanned(
                        &param.ty,
                        "a batch handler cannot stream: its jobs end together with one output \
                         each; remove `batch` to stream each job's items, or drop this parameter \
                         and return the outputs",
                    ));
                }
                if let Some(m) = mutable {
                    errors.push(syn::Error::new(
                        m.span,
                        "take the stream as `StreamSender<T>` or `&StreamSender<T>`, not `&mut`",
                    ));
                }
                if let Some(item) = super::parse::stream_item(&param.ty)
                    && let Type::Reference(r) = item
                {
                    let owned = match &*r.elem {
                        Type::Path(p) if p.path.is_ident("str") => "String".to_owned(),
                        Type::Slice(s) => format!("Vec<{}>", s.elem.to_token_stream()),
                        other => other.to_token_stream().to_string(),
                    };
                    errors.push(syn::Error::new_spanned(
                        item,
                        format!(
                            "stream owned items: write `StreamSender<{owned}>` (the worker \
                             makes the stream for the job before the handler runs, so its item \
                             type cannot borrow)"
                        ),
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
        // A borrowed input (`&str`, `&Prompt`) is taken for the state; say to take it owned,
        // on the parameter itself.
        [] if !states.is_empty() => {
            for p in &states {
                let ParamKind::State { reference } = &p.kind else {
                    continue;
                };
                let elem = &reference.elem;
                let owned = match crate::signature::strip(elem) {
                    Type::Path(path) if path.path.is_ident("str") => "String".to_owned(),
                    Type::Slice(slice) => {
                        format!("Vec<{}>", slice.elem.to_token_stream())
                    }
                    other => other.to_token_stream().to_string(),
                };
                errors.push(syn::Error::new_spanned(
                    &p.ty,
                    format!(
                        "a handler takes one input parameter, by value: the job's `input` is \
                         deserialized into it, so it cannot borrow; a `&T` parameter is the \
                         `#[worker::init]` state. If this is the input, take it owned: `{owned}`"
                    ),
                ));
            }
        }
        // The only by-value parameter is a bare `Job`: perhaps the user's own type of that name.
        [] if contexts.iter().any(|p| is_bare_job(p)) => {
            for p in contexts.iter().filter(|p| is_bare_job(p)) {
                errors.push(syn::Error::new_spanned(
                    &p.ty,
                    "a handler takes one input parameter, and a parameter of type `Job` is the \
                     job context (`worker::Job`), not the input: if this `Job` is your own type, \
                     write its path from the crate root (`crate::Job`) or rename it",
                ));
            }
        }
        [] => errors.push(syn::Error::new(
            sig.paren_token.span.join(),
            "a handler takes one input parameter, e.g. `input: worker::Value`, deserialized \
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
    // `&Result<S, E>`: the state is the `Ok` type; a failed init never reaches a handler.
    if let Some(p) = states.first()
        && let ParamKind::State { reference } = &p.kind
        && let Type::Path(path) = &*reference.elem
        && let Some(last) = path.path.segments.last()
        && last.ident == "Result"
    {
        let ok = match &last.arguments {
            syn::PathArguments::AngleBracketed(args) => {
                args.args.first().map(|a| a.to_token_stream().to_string())
            }
            _ => None,
        }
        .unwrap_or_else(|| "T".to_owned());
        errors.push(syn::Error::new_spanned(
            &p.ty,
            format!(
                "take the state as `&{ok}`: it is what `#[worker::init]` returns on success (the \
                 `Ok` of its `Result`); when init fails the worker does not start, so no handler \
                 ever sees the error"
            ),
        ));
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
            "a handler takes at most one job context parameter (`&Job` or `Job`, `&[Job]` for a \
             batch); remove this one",
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
    let mut batch = None;
    if let (Some(size), Some(input)) = (options.batch, inputs.first()) {
        match vec_element(&input.ty) {
            Some(element) => {
                batch = Some(BatchRole {
                    element,
                    size,
                    wait_micros,
                })
            }
            None => errors.push(syn::Error::new_spanned(
                &input.ty,
                format!(
                    "with `batch`, the handler takes the inputs of a batch of jobs: write the \
                     input parameter as `Vec<{0}>` (one `{0}` per job) and return one output per \
                     input",
                    input.ty.to_token_stream()
                ),
            )),
        }
    }
    // Last, and only for an otherwise sound handler: a method or a bad signature says its own
    // problem first, and a test file's `fn main` beside it is not the mistake.
    if errors.is_empty() && options.main && crate::compiled_crate::root_has_own_main() {
        errors.push(syn::Error::new(
            proc_macro2::Span::call_site(),
            "this crate has its own `fn main`, and `#[worker::handler]` generates one: remove \
             yours, or write `#[worker::handler(main = false)]` and call the generated \
             `worker_main()` from your `main`",
        ));
    }
    match (inputs.first(), errors.is_empty()) {
        (Some(input), true) => Some(Roles {
            batch,
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
                async fn f(j: &Job) {}
            ),
        );
        assert_eq!(none.len(), 1);
        assert!(
            none[0].starts_with("a handler takes one input parameter, e.g. `input: worker::Value`")
        );
        let only_state = errors(
            quote!(),
            quote!(
                async fn f(s: &S, j: &Job) {}
            ),
        );
        assert_eq!(only_state.len(), 1);
        assert!(
            only_state[0].ends_with("take it owned: `S`"),
            "{}",
            only_state[0]
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
    fn a_borrowed_input_is_told_to_take_it_owned() {
        let e = errors(
            quote!(),
            quote!(
                fn f(text: &str) -> usize {
                    text.len()
                }
            ),
        );
        assert_eq!(e.len(), 1, "{e:#?}");
        assert!(
            e[0].ends_with("If this is the input, take it owned: `String`"),
            "{}",
            e[0]
        );
        let e = errors(
            quote!(),
            quote!(
                fn f(p: &Prompt) {}
            ),
        );
        assert!(e[0].ends_with("take it owned: `Prompt`"), "{}", e[0]);
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
    fn batch_rules() {
        assert!(
            errors(
                quote!(batch = 32, batch_wait = "5ms"),
                quote!(
                    fn f(inputs: Vec<In>, jobs: &[Job], s: &S) -> Vec<Out> {}
                )
            )
            .is_empty()
        );
        let e = errors(
            quote!(batch = 0, batch_wait = "soon"),
            quote!(
                fn f(input: In, job: &Job, s: StreamSender<u8>) {}
            ),
        );
        assert_eq!(e.len(), 5, "{e:#?}");
        assert!(e[0].contains("`batch` must be at least 1"));
        assert!(e[1].contains("is not a duration"));
        assert!(e[2].contains("take their contexts as `jobs: &[Job]`"));
        assert!(e[3].contains("a batch handler cannot stream"));
        assert!(
            e[4].contains("write the input parameter as `Vec<In>`"),
            "{}",
            e[4]
        );
        let e = errors(
            quote!(batch_wait = "5ms"),
            quote!(
                fn f(input: In, jobs: &[Job]) {}
            ),
        );
        assert_eq!(e.len(), 2, "{e:#?}");
        assert!(e[0].starts_with("`batch_wait` is for batch handlers"));
        assert!(e[1].starts_with("a list of jobs is the context of a batch handler"));
    }

    #[test]
    fn waits() {
        assert_eq!(parse_wait("5ms"), Some(5_000));
        assert_eq!(parse_wait("500us"), Some(500));
        assert_eq!(parse_wait("500µs"), Some(500));
        assert_eq!(parse_wait("2s"), Some(2_000_000));
        assert_eq!(parse_wait("0ms"), Some(0));
        assert_eq!(parse_wait("5"), None);
        assert_eq!(parse_wait("ms"), None);
        assert_eq!(parse_wait("1.5ms"), None);
        assert_eq!(parse_wait("5 minutes"), None);
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
