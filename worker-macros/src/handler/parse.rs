//! `#[worker::handler]`: from tokens to a typed description that keeps the user's spans.

use proc_macro2::{Span, TokenStream};
use syn::{FnArg, ItemFn, Type};

use crate::attr::{self, Args, Kind, Value};
use crate::errors::Errors;
use crate::signature::strip;

pub(crate) const MACRO: &str = "#[worker::handler]";

/// The arguments `#[worker::handler(…)]` accepts.
pub(crate) const ARGS: &[(&str, Kind)] = &[
    ("concurrency", Kind::Int("4")),
    ("main", Kind::Bool),
    ("test_input", Kind::Str("test_input.json")),
    ("crate", Kind::Str("my_worker")),
];

/// What `#[worker::handler(…)]` was told.
pub(crate) struct Options {
    pub(crate) concurrency: Option<(u64, Span)>,
    /// Generate `fn main` (true) or `fn worker_main` (false).
    pub(crate) main: bool,
    pub(crate) test_input: Option<(String, Span)>,
    pub(crate) krate: syn::Path,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            concurrency: None,
            main: true,
            test_input: None,
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
    /// `Job` or `&Job` (or `&mut Job`, an error): the job context.
    Context {
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
    if let Some(Value::Int(n, span)) = args.get("concurrency") {
        options.concurrency = Some((*n, *span));
    }
    if let Some(Value::Bool(b)) = args.get("main") {
        options.main = *b;
    }
    if let Some(Value::Str(path, span)) = args.get("test_input") {
        options.test_input = Some((path.clone(), *span));
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

/// The parameter rule: `Job`/`&Job` is the context, any other `&T` the state, anything else the
/// input.
pub(crate) fn classify(ty: &Type) -> ParamKind {
    match strip(ty) {
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

/// A path whose last segment is `Job` (`Job`, `worker::Job`, `::my_worker::Job`).
fn is_job(ty: &Type) -> bool {
    match strip(ty) {
        Type::Path(p) if p.qself.is_none() => p
            .path
            .segments
            .last()
            .is_some_and(|seg| seg.ident == "Job" && seg.arguments.is_none()),
        _ => false,
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
