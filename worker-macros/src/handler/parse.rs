//! `#[worker::handler]`: from tokens to a typed description that keeps the user's spans.

use proc_macro2::{Span, TokenStream};
use syn::{FnArg, ItemFn, Type};

use crate::attr::{self, Args, Kind, Value};
use crate::errors::Errors;
use crate::signature::strip;

pub(crate) const MACRO: &str = "#[worker::handler]";

/// The arguments `#[worker::handler(…)]` accepts.
pub(crate) const ARGS: &[(&str, Kind)] = &[
    ("concurrency", Kind::IntOrExpr("4")),
    ("batch", Kind::Int("32")),
    ("batch_wait", Kind::Str("10ms")),
    ("main", Kind::Bool),
    ("refresh_worker", Kind::Flag),
    ("return_aggregate_stream", Kind::Flag),
    ("schema", Kind::Flag),
    ("test_input", Kind::Str("test_input.json")),
    ("flavor", Kind::Str("current_thread")),
    ("crate", Kind::Str("my_worker")),
];

/// What `#[worker::handler(…)]` was told.
pub(crate) struct Options {
    pub(crate) concurrency: Option<(u64, Span)>,
    /// `concurrency = EXPR` other than an integer literal: a `usize` (a `const`) or a
    /// `fn(usize) -> usize` asked for the concurrency as the worker runs.
    pub(crate) concurrency_expr: Option<syn::Expr>,
    /// `batch = N`: the handler takes up to N jobs' inputs at once.
    pub(crate) batch: Option<(u64, Span)>,
    /// `batch_wait = "5ms"`: how long a batch waits for more jobs after its first.
    pub(crate) batch_wait: Option<(String, Span)>,
    /// `refresh_worker`: every job asks the platform for a fresh worker.
    pub(crate) refresh_worker: bool,
    /// `return_aggregate_stream`: a streaming job's final output is every item.
    pub(crate) aggregate_stream: Option<Span>,
    /// `schema`: the input type must derive `JsonSchema` (a compile error at it otherwise).
    pub(crate) schema: Option<Span>,
    /// Generate `fn main` (true) or `fn worker_main` (false).
    pub(crate) main: bool,
    pub(crate) test_input: Option<(String, Span)>,
    /// `flavor = "current_thread"` or `"multi_thread"` (the default): the async runtime's kind.
    pub(crate) flavor: Option<(String, Span)>,
    pub(crate) krate: syn::Path,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            concurrency: None,
            concurrency_expr: None,
            batch: None,
            batch_wait: None,
            refresh_worker: false,
            aggregate_stream: None,
            schema: None,
            main: true,
            test_input: None,
            flavor: None,
            krate: attr::default_crate_path(),
        }
    }
}

/// The handler function: the user's item, and what each parameter is.
pub(crate) struct Handler {
    pub(crate) item: ItemFn,
    pub(crate) params: Vec<Param>,
}

/// One typed parameter of the handler (receivers are not parameters).
pub(crate) struct Param {
    /// The whole declared type, as written.
    pub(crate) ty: Type,
    pub(crate) kind: ParamKind,
}

pub(crate) enum ParamKind {
    /// A by-value parameter of any type but `Job`: deserialized from the job's `input`.
    Input,
    /// `&T` (or `&mut T`, an error): the state built by `#[worker::init]`.
    State {
        /// `&T` as written; `T` is its `elem`.
        reference: Box<syn::TypeReference>,
    },
    /// `&[Job]` or `Vec<Job>`: the jobs of a batch, in the inputs' order.
    Jobs { by_ref: bool },
    /// `Job` or `&Job` (or `&mut Job`, an error): the job context.
    Context {
        by_ref: bool,
        mutable: Option<syn::Token![mut]>,
    },
    /// `StreamSender<T>` or `&StreamSender<T>`: the handler streams its output.
    Stream {
        by_ref: bool,
        mutable: Option<syn::Token![mut]>,
    },
}

/// Parse the macro arguments into `Options`. Problems go to `errors`; the options then hold
/// defaults for what was wrong.
pub(crate) fn options(attr: TokenStream, errors: &mut Errors) -> Options {
    let raw = match attr::parse_raw(attr) {
        Ok(raw) => raw,
        Err(e) => {
            errors.push(e);
            return Options::default();
        }
    };
    let args = Args::check(MACRO, raw, ARGS, errors);
    let mut options = Options {
        krate: attr::crate_path(&args, errors),
        ..Options::default()
    };
    match args.get("concurrency") {
        Some(Value::Int(n, span)) => options.concurrency = Some((*n, *span)),
        Some(Value::Expr(expr)) => options.concurrency_expr = Some((**expr).clone()),
        _ => {}
    }
    if let Some(Value::Int(n, span)) = args.get("batch") {
        options.batch = Some((*n, *span));
    }
    if let Some(Value::Str(wait, span)) = args.get("batch_wait") {
        options.batch_wait = Some((wait.clone(), *span));
    }
    if let Some(Value::Bool(on)) = args.get("refresh_worker") {
        options.refresh_worker = *on;
    }
    if let Some(Value::Bool(true)) = args.get("return_aggregate_stream") {
        options.aggregate_stream = Some(args.span_of("return_aggregate_stream"));
    }
    if let Some(Value::Bool(true)) = args.get("schema") {
        options.schema = Some(args.span_of("schema"));
    }
    if let Some(Value::Bool(b)) = args.get("main") {
        options.main = *b;
    }
    if let Some(Value::Str(path, span)) = args.get("test_input") {
        options.test_input = Some((path.clone(), *span));
    }
    if let Some(Value::Str(flavor, span)) = args.get("flavor") {
        options.flavor = Some((flavor.clone(), *span));
    }
    options
}

/// Parse the annotated item. Fails when it is not a function.
pub(crate) fn handler(item: TokenStream) -> syn::Result<Handler> {
    let item = crate::signature::parse_fn(
        item,
        MACRO,
        "async fn handler(input: Input) -> Result<Output, Error>",
    )?;
    let params = item
        .sig
        .inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(pat) => Some(Param {
                ty: (*pat.ty).clone(),
                kind: classify(&pat.ty),
            }),
            FnArg::Receiver(_) => None,
        })
        .collect();
    Ok(Handler { item, params })
}

/// The parameter rule: `Job`/`&Job` is the context (`&[Job]`/`Vec<Job>` a batch's), any other
/// `&T` the state, anything else the input.
pub(crate) fn classify(ty: &Type) -> ParamKind {
    match strip(ty) {
        Type::Reference(r) if r.mutability.is_none() && is_job_slice(&r.elem) => {
            ParamKind::Jobs { by_ref: true }
        }
        t if vec_element(t).is_some_and(is_job) => ParamKind::Jobs { by_ref: false },
        Type::Reference(r) if is_stream(&r.elem) => ParamKind::Stream {
            by_ref: true,
            mutable: r.mutability,
        },
        t if is_stream(t) => ParamKind::Stream {
            by_ref: false,
            mutable: None,
        },
        Type::Reference(r) if is_job(&r.elem) => ParamKind::Context {
            by_ref: true,
            mutable: r.mutability,
        },
        Type::Reference(r) => ParamKind::State {
            reference: Box::new(r.clone()),
        },
        t if is_job(t) => ParamKind::Context {
            by_ref: false,
            mutable: None,
        },
        _ => ParamKind::Input,
    }
}

/// A path whose last segment is `StreamSender<…>` (`StreamSender<T>`, `worker::StreamSender<T>`).
fn is_stream(ty: &Type) -> bool {
    match strip(ty) {
        Type::Path(p) if p.qself.is_none() && !is_local_path(&p.path) => p
            .path
            .segments
            .last()
            .is_some_and(|seg| seg.ident == "StreamSender"),
        _ => false,
    }
}

/// A path from the user's own crate (`crate::…`, `self::…`, `super::…`): never the runtime's
/// `Job` or `StreamSender`, whatever its last segment. Other paths ending in those names are
/// taken for them, and the expansion checks that they are (`job_parameter_is_worker_job`).
fn is_local_path(path: &syn::Path) -> bool {
    path.leading_colon.is_none()
        && path.segments.len() > 1
        && path
            .segments
            .first()
            .is_some_and(|s| s.ident == "crate" || s.ident == "self" || s.ident == "super")
}

/// The type the expansion asserts is the runtime's: `Job` of `Job`/`&Job`/`&[Job]`/`Vec<Job>`,
/// or the `StreamSender<T>` of `&StreamSender<T>`.
pub(crate) fn context_type(param: &Param) -> Option<&Type> {
    fn unref(t: &Type) -> &Type {
        match strip(t) {
            Type::Reference(r) => strip(&r.elem),
            t => t,
        }
    }
    match param.kind {
        ParamKind::Context { .. } | ParamKind::Stream { .. } => Some(unref(&param.ty)),
        ParamKind::Jobs { .. } => match unref(&param.ty) {
            Type::Slice(s) => Some(strip(&s.elem)),
            t => vec_element(t).map(strip),
        },
        _ => None,
    }
}

/// `[Job]`.
fn is_job_slice(ty: &Type) -> bool {
    matches!(strip(ty), Type::Slice(s) if is_job(&s.elem))
}

/// `T` of a `Vec<T>` (`Vec`, `std::vec::Vec`, `alloc::vec::Vec`), written as such.
pub(crate) fn vec_element(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = strip(ty) else {
        return None;
    };
    let last = p.path.segments.last().filter(|_| p.qself.is_none())?;
    if last.ident != "Vec" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.iter().collect::<Vec<_>>().as_slice() {
        [syn::GenericArgument::Type(t)] => Some(t),
        _ => None,
    }
}

/// A path whose last segment is `Job` (`Job`, `worker::Job`, `::my_worker::Job`).
fn is_job(ty: &Type) -> bool {
    match strip(ty) {
        Type::Path(p) if p.qself.is_none() && !is_local_path(&p.path) => p
            .path
            .segments
            .last()
            .is_some_and(|seg| seg.ident == "Job" && seg.arguments.is_none()),
        _ => false,
    }
}

/// `T` of `StreamSender<T>` (or `&StreamSender<T>`).
pub(crate) fn stream_item(ty: &Type) -> Option<&Type> {
    let ty = match ty {
        Type::Reference(r) => &*r.elem,
        t => t,
    };
    let Type::Path(p) = ty else { return None };
    match &p.path.segments.last()?.arguments {
        syn::PathArguments::AngleBracketed(args) => args.args.iter().find_map(|a| match a {
            syn::GenericArgument::Type(t) => Some(t),
            _ => None,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn kinds(item: TokenStream) -> Vec<&'static str> {
        handler(item)
            .unwrap()
            .params
            .iter()
            .map(|p| match p.kind {
                ParamKind::Input => "input",
                ParamKind::State { .. } => "state",
                ParamKind::Context { by_ref: true, .. } => "&job",
                ParamKind::Context { by_ref: false, .. } => "job",
                ParamKind::Stream { by_ref: true, .. } => "&stream",
                ParamKind::Stream { by_ref: false, .. } => "stream",
                ParamKind::Jobs { by_ref: true } => "&jobs",
                ParamKind::Jobs { by_ref: false } => "jobs",
            })
            .collect()
    }

    #[test]
    fn classifies_parameters_in_any_order() {
        assert_eq!(
            kinds(quote!(
                async fn f(job: &worker::Job, m: &Model, Prompt { text }: Prompt) {}
            )),
            ["&job", "state", "input"]
        );
        assert_eq!(
            kinds(quote!(
                fn f(input: Vec<u8>, job: Job) {}
            )),
            ["input", "job"]
        );
        assert_eq!(
            kinds(quote!(
                fn f(s: &'static str, j: &::my_worker::Job, x: serde_json::Value) {}
            )),
            ["state", "&job", "input"]
        );
        assert_eq!(
            kinds(quote!(
                async fn f(x: Prompt, s: worker::StreamSender<String>, j: &Job) {}
            )),
            ["input", "stream", "&job"]
        );
        assert_eq!(
            kinds(quote!(
                fn f(s: &StreamSender<u8>, x: u8) {}
            )),
            ["&stream", "input"]
        );
        assert_eq!(
            kinds(quote!(
                fn f(x: Vec<Prompt>, j: &[worker::Job], m: &M) {}
            )),
            ["input", "&jobs", "state"]
        );
        assert_eq!(
            kinds(quote!(
                fn f(j: Vec<Job>, x: Vec<u8>) {}
            )),
            ["jobs", "input"]
        );
        // `Job<T>` is not the context type.
        assert_eq!(
            kinds(quote!(
                fn f(x: Job<u8>) {}
            )),
            ["input"]
        );
    }

    #[test]
    fn reads_options() {
        let mut errors = Errors::default();
        let o = options(
            quote!(
                concurrency = 4,
                main = false,
                test_input = "t.json",
                crate = "w"
            ),
            &mut errors,
        );
        assert!(errors.is_empty());
        assert_eq!(o.concurrency.map(|c| c.0), Some(4));
        assert!(!o.main);
        assert_eq!(o.test_input.map(|t| t.0).as_deref(), Some("t.json"));
        let krate = o.krate;
        assert_eq!(quote!(#krate).to_string(), "w");
    }

    #[test]
    fn rejects_items_that_are_not_functions() {
        let e = handler(quote!(
            struct S;
        ))
        .err()
        .unwrap();
        assert!(
            e.to_string()
                .starts_with("`#[worker::handler]` goes on a function"),
            "{e}"
        );
    }
}
