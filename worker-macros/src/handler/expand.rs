//! `#[worker::handler]`: the generated code. The only place that writes tokens for it.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, LitInt, LitStr, ReturnType};

use super::parse::{Handler, Options, ParamKind};
use super::validate::Roles;
use crate::codegen::{
    INIT_ALIAS, call_at, failure_of, hygienic_locals, kind_imports, parens_at, value_span,
};

/// The user's function unchanged, the glob import of the init fallback, and the entry point.
pub(crate) fn expand(handler: &Handler, roles: &Roles<'_>, options: &Options) -> TokenStream {
    let krate = &options.krate;
    let private = quote!(#krate::__private);
    let item = &handler.item;
    let sig = &item.sig;
    let name = &sig.ident;
    let name_str = syn::ext::IdentExt::unraw(name).to_string();
    // The module's init, by the one name every `#[worker::init]` defines (so two of them in a
    // module are told, in that name, that a module has one).
    let init = Ident::new(INIT_ALIAS, Span::call_site());

    // Settings::new("name").concurrency(n).test_input(path, contents)
    let mut settings = quote!(#private::Settings::new(#name_str));
    if let Some((n, span)) = options.concurrency {
        let n = LitInt::new(&n.to_string(), span);
        settings = quote!(#settings.concurrency(#n));
    }
    if let Some(expr) = &options.concurrency_expr {
        // Spanned on the expression: a value of the wrong type is reported there, in words
        // (`IntoConcurrency`'s message). A closure goes where its parameter type is inferred.
        let method = match expr {
            syn::Expr::Closure(_) => quote_spanned!(expr.span()=> concurrency_fn),
            _ => quote_spanned!(expr.span()=> concurrency_of),
        };
        settings = quote_spanned!(expr.span()=> #settings.#method(#expr));
    }
    if options.refresh_worker {
        settings = quote!(#settings.refresh_worker());
    }
    if options.aggregate_stream.is_some() {
        settings = quote!(#settings.return_aggregate_stream());
    }
    if options
        .flavor
        .as_ref()
        .is_some_and(|(flavor, _)| flavor == "current_thread")
    {
        settings = quote!(#settings.current_thread());
    }
    let contract = contract(handler, roles, &private);
    let test_of_inputs = test_of_inputs(handler, roles, options, &private);
    if let Some((path, span)) = &options.test_input {
        // Spanned on the literal: a missing file is reported there.
        let path = LitStr::new(path, *span);
        let contents = quote_spanned! {*span=>
            ::core::include_str!(::core::concat!(::core::env!("CARGO_MANIFEST_DIR"), "/", #path))
        };
        settings = quote!(#settings.test_input(#path, #contents));
    }

    settings = quote!(#settings.contract(#contract));

    // The input's `DeserializeOwned` bound, reported on the input type. Both uses are in the
    // same function with the same span, so the compiler reports the failure once.
    let input_ty = &roles.input.ty;
    // A batch handler's `Vec<T>` holds one job's input `T` per job: `T` is deserialized.
    let job_input_ty = roles.batch.as_ref().map_or(input_ty, |b| b.element);
    let mut input_check = quote!(#private::input_deserializes::<#job_input_ty>(););
    // `schema`: the input and output types must describe themselves (not `{}`), checked at
    // each type.
    if options.schema.is_some() {
        input_check = quote!(#input_check #private::type_has_json_schema::<#job_input_ty>(););
        if let Some(output) = output_type(handler, roles) {
            input_check = quote!(#input_check #private::type_has_json_schema::<#output>(););
        }
    }
    // A parameter taken for the job context or the stream by its name must be the runtime's
    // type: a user's own `Job` gets a message saying how to take it as the input instead.
    // How one job's input is checked against its declared constraints, chosen by autoref now
    // that the type is concrete.
    let check_of_input = check_of(job_input_ty, &private);
    for param in &handler.params {
        if let Some(ty) = super::parse::context_type(param) {
            let check = match param.kind {
                ParamKind::Stream { .. } => {
                    quote_spanned!(ty.span()=> stream_parameter_is_worker_stream_sender)
                }
                _ => quote_spanned!(ty.span()=> job_parameter_is_worker_job),
            };
            input_check = quote!(#input_check #private::#check::<#ty>(););
        }
    }
    let schema_of_input = schema_fn(job_input_ty, &private);
    let deserialize = quote!(
        #private::deserialize_checked::<#input_ty>(&__worker_job, #check_of_input, #schema_of_input)
    );

    // The state: a `&'static T` field, checked against what `#[worker::init]` returns. The check
    // names the module's init at the state type so a failure underlines it.
    // The adapter is named at the state type in its `Handler` impl: a state that is not `Sync`
    // is then reported on the handler's `&T` too.
    // The adapter struct has the handler's own name (a braced struct: no value of that name
    // hides the function), so notes such as "required because it appears within the type
    // `generate`" read in the user's words.
    let adapter_name = |span: Span| {
        let mut ident = name.clone();
        ident.set_span(span);
        ident
    };
    let mut adapter = adapter_name(Span::call_site());
    let (state_field, state_check, make_handler, take_state) = match roles.state {
        Some(elem) => {
            let provider = Ident::new(INIT_ALIAS, elem.span());
            adapter = adapter_name(elem.span());
            (
                quote!({ state: &'static #elem }),
                quote!(#private::state_matches_the_init::<#provider, #elem>();),
                quote! {
                    |__worker_state| ::core::result::Result::Ok(#adapter {
                        state: #private::state::<#elem>(__worker_state)?,
                    })
                },
                quote!(let __worker_state = self.state;),
            )
        }
        None => (
            quote!({}),
            quote!(),
            quote!(|_| ::core::result::Result::Ok(#adapter {})),
            quote!(),
        ),
    };

    // A batch handler is wrapped in the runtime's gathering handler.
    let make_handler = match &roles.batch {
        Some(batch) => {
            let size = LitInt::new(&batch.size.0.to_string(), batch.size.1);
            let mut batched = quote!(#private::Batched::new(__worker_handler, #size));
            if let Some((micros, span)) = batch.wait_micros {
                let micros = LitInt::new(&micros.to_string(), span);
                batched = quote!(#batched.wait(::core::time::Duration::from_micros(#micros)));
            }
            quote! {
                |__worker_state| {
                    let __worker_make = #make_handler;
                    let __worker_handler = __worker_make(__worker_state)?;
                    ::core::result::Result::Ok(#batched)
                }
            }
        }
        None => make_handler,
    };

    // The call, with arguments in the user's order, located at the function's name.
    let args = handler.params.iter().map(|p| match p.kind {
        ParamKind::Input => quote!(__worker_input),
        ParamKind::State { .. } => quote!(__worker_state),
        ParamKind::Context { by_ref: true, .. } => quote!(&__worker_job),
        ParamKind::Context { by_ref: false, .. } => quote!(__worker_job),
        ParamKind::Stream { by_ref: true, .. } => quote!(&__worker_stream),
        ParamKind::Stream { by_ref: false, .. } => quote!(__worker_stream),
        ParamKind::Jobs { by_ref: true } => quote!(&__worker_jobs),
        ParamKind::Jobs { by_ref: false } => quote!(__worker_jobs),
    });
    // The stream sender is made before the job can be moved into the call.
    let make_stream = if roles.streams {
        quote!(let __worker_stream = #private::StreamSender::new(&__worker_job);)
    } else {
        quote!()
    };
    let call = {
        let args = parens_at(quote!(#(#args),*), name.span());
        quote!(#name #args)
    };

    // What the return value becomes. The output's `Serialize` bound and the error's `Display`
    // bound are reported on the return type.
    let ret_span = match &sig.output {
        ReturnType::Type(_, ty) => value_span(ty),
        ReturnType::Default => name.span(),
    };
    // A streaming handler's output is its items: it returns `()` (or `Result<(), E>`).
    let output_fn = if roles.streams {
        "stream_returns_nothing"
    } else {
        "output"
    };
    let output = call_at(&private, output_fn, quote!(__worker_output), ret_span);
    let failure = failure_of(&private, quote!(__worker_error), ret_span);
    let outcome = quote! {
        match (&__worker_ret).__worker_kind().split(__worker_ret) {
            ::core::result::Result::Ok(__worker_output) => #output,
            ::core::result::Result::Err(__worker_error) => #private::Outcome::failed(#failure),
        }
    };
    let handler_impl = match &roles.batch {
        Some(batch) => {
            let element = batch.element;
            let outputs = call_at(
                &private,
                "one_output_per_input",
                quote!(__worker_outputs),
                ret_span,
            );
            let item_output = call_at(&private, "output", quote!(__worker_output), ret_span);
            let item_failure = failure_of(&private, quote!(__worker_error), ret_span);
            let batch_failure = failure_of(&private, quote!(__worker_error), ret_span);
            let outcome = quote! {
                match (&__worker_ret).__worker_kind().split(__worker_ret) {
                    ::core::result::Result::Ok(__worker_outputs) => {
                        let mut __worker_outcomes = ::std::vec::Vec::new();
                        for __worker_item in #outputs {
                            __worker_outcomes.push(
                                match (&__worker_item).__worker_kind().split(__worker_item) {
                                    ::core::result::Result::Ok(__worker_output) => #item_output,
                                    ::core::result::Result::Err(__worker_error) => {
                                        #private::Outcome::failed(#item_failure)
                                    }
                                },
                            );
                        }
                        ::core::result::Result::Ok(__worker_outcomes)
                    }
                    ::core::result::Result::Err(__worker_error) => {
                        ::core::result::Result::Err(#batch_failure)
                    }
                }
            };
            let invocation = if sig.asyncness.is_some() {
                let future_is_send = quote_spanned!(name.span()=> future_is_send);
                let future = parens_at(call.clone(), name.span());
                quote! {
                    #private::BatchInvocation::new(async move {
                        let __worker_ret = #private::#future_is_send #future.await;
                        #outcome
                    })
                }
            } else {
                // A sync batch handler (a model's forward pass) runs on a blocking thread.
                quote! {
                    #private::BatchInvocation::blocking(move || {
                        let __worker_ret = #call;
                        #outcome
                    })
                }
            };
            let kinds = kind_imports(&private);
            quote! {
                impl #private::BatchHandler for #adapter {
                    type Input = #element;

                    fn check_input(
                        &self,
                        __worker_input: &#element,
                        __worker_raw: &#private::serde_json::Value,
                    ) -> ::core::result::Result<(), #private::Failure> {
                        (#check_of_input)(__worker_input, __worker_raw)
                    }

                    fn input_schema(&self) -> ::core::option::Option<#private::serde_json::Value> {
                        (#schema_of_input)()
                    }

                    // The value checks wrap user-located expressions in `{ … }`.
                    #[allow(unused_braces)]
                    fn call(
                        &self,
                        __worker_batch: #private::Batch<#element>,
                    ) -> #private::BatchInvocation {
                        #kinds
                        #input_check
                        let (__worker_input, __worker_jobs) = __worker_batch.into_parts();
                        #take_state
                        #invocation
                    }
                }
            }
        }
        None => quote!(),
    };
    let invocation = if sig.asyncness.is_some() {
        // `Send` is checked on the handler's own future, so the error names the function and
        // points at what is held across an `.await`.
        let future_is_send = quote_spanned!(name.span()=> future_is_send);
        let future = parens_at(call, name.span());
        quote! {
            #make_stream
            #private::Invocation::new(async move {
                let __worker_ret = #private::#future_is_send #future.await;
                #outcome
            })
        }
    } else {
        // A sync handler may block: it runs on a blocking thread.
        quote! {
            #make_stream
            #private::Invocation::blocking(move || {
                let __worker_ret = #call;
                #outcome
            })
        }
    };

    let handler_impl = if roles.batch.is_some() {
        handler_impl
    } else {
        let kinds = kind_imports(&private);
        quote! {
            impl #private::Handler for #adapter {
                // The value checks wrap user-located expressions in `{ … }`.
                #[allow(unused_braces)]
                fn call(&self, __worker_job: #private::Job) -> #private::Invocation {
                    #kinds
                    #input_check
                    let __worker_input: #input_ty = match #deserialize {
                        ::core::result::Result::Ok(value) => value,
                        ::core::result::Result::Err(failure) => {
                            return #private::Invocation::ready(#private::Outcome::failed(failure));
                        }
                    };
                    #take_state
                    #invocation
                }
            }
        }
    };
    let (entry, vis) = if options.main {
        (Ident::new("main", Span::call_site()), quote!())
    } else {
        let vis = &item.vis;
        (Ident::new("worker_main", Span::call_site()), quote!(#vis))
    };

    // A plain `fn` that streams cannot await: a `stream.send(x);` there is a future dropped
    // unpolled (the item is lost, silently but for a warning), as is an ignored
    // `send_blocking` result. Make both hard errors, pointing at the call.
    let deny = if roles.streams && item.sig.asyncness.is_none() {
        quote!(#[deny(unused_must_use)])
    } else {
        quote!()
    };

    // Two handlers in a module clash on `main` (or `worker_main`); this name clashes too and
    // says the rule in words, listed first.
    let one_per_module = Ident::new("one_worker_handler_per_module", Span::call_site());

    let generated = hygienic_locals(quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        enum #one_per_module {}

        #[allow(unused_imports)]
        use #private::fallback::*;

        #test_of_inputs

        #vis fn #entry() -> ::std::process::ExitCode {
            #[allow(non_camel_case_types)]
            struct #adapter #state_field

            #handler_impl

            #state_check
            #private::main::<#init, _>(#settings, #make_handler)
        }
    });
    quote! {
        #deny
        #item
        #generated
    }
}

/// `|| Contract { input, output }`: the schemas of one job's input and output, looked up by
/// type (`None` for a type without `JsonSchema`; see `worker::__private::SchemaOf`). The
/// output of a streaming handler is one item; of a batch handler, one job's output.
fn contract(handler: &Handler, roles: &Roles<'_>, private: &TokenStream) -> TokenStream {
    // One job's input: a batch's element.
    let input = schema_fn(
        roles.batch.as_ref().map_or(&roles.input.ty, |b| b.element),
        private,
    );
    // `-> impl Serialize` cannot be named: no schema.
    let opaque =
        matches!(&handler.item.sig.output, ReturnType::Type(_, ty) if names_impl_trait(ty));
    let returned = match &handler.item.sig.output {
        ReturnType::Type(_, ty) if !opaque => quote!(#ty),
        _ => quote!(()),
    };
    let stream_item = handler.params.iter().find_map(|p| match p.kind {
        ParamKind::Stream { .. } => super::parse::stream_item(&p.ty),
        _ => None,
    });
    let output = match (stream_item, &roles.batch) {
        (Some(item), _) => quote!(#private::SchemaOf::<#item>::new()),
        (None, Some(_)) => quote!(#private::SchemaOf::<#returned, #private::PerItem>::new()),
        (None, None) => quote!(#private::SchemaOf::<#returned>::new()),
    };
    let output = if opaque && stream_item.is_none() {
        quote!(::core::option::Option::None)
    } else {
        quote!((&&&&#output).__worker_schema())
    };
    quote! {
        || {
            #[allow(unused_imports)]
            use #private::schema_levels::{
                NoSchema as _, SchemaOfOk as _, SchemaOfOkItems as _, SchemaOfType as _,
            };
            #private::Contract {
                input: (#input)(),
                output: #output,
            }
        }
    }
}

/// A `#[test]` (compiled only by `cargo test`) that the test input built in with `test_input =
/// "…"`, and `./test_input.json` of the crate, deserialize into one job's input type.
fn test_of_inputs(
    handler: &Handler,
    roles: &Roles<'_>,
    options: &Options,
    private: &TokenStream,
) -> TokenStream {
    let input_ty = roles.batch.as_ref().map_or(&roles.input.ty, |b| b.element);
    let check = check_of(input_ty, private);
    let schema = schema_fn(input_ty, private);
    let embedded = match &options.test_input {
        Some((path, span)) => {
            let path = LitStr::new(path, *span);
            quote! {
                ::core::option::Option::Some((#path, ::core::include_str!(
                    ::core::concat!(::core::env!("CARGO_MANIFEST_DIR"), "/", #path)
                )))
            }
        }
        None => quote!(::core::option::Option::None),
    };
    let name = Ident::new(
        &format!(
            "{}_test_input_matches_its_input_type",
            syn::ext::IdentExt::unraw(&handler.item.sig.ident)
        ),
        Span::call_site(),
    );
    quote! {
        #[cfg(test)]
        #[test]
        fn #name() {
            #private::check_test_inputs::<#input_ty>(
                ::core::env!("CARGO_MANIFEST_DIR"),
                #embedded,
                #check,
                #schema,
            );
        }
    }
}

/// The type one job's output is, as written, for `schema`'s check: a stream's item, the `T` of a
/// `Result<T, E>` (by its last segment's name, as `anyhow::Result<T>`), or the returned type.
/// `None` where it cannot be named (`()`, `-> impl …`) or is a batch's (its contract comes
/// from the autoref lookup alone).
fn output_type<'h>(handler: &'h Handler, roles: &Roles<'h>) -> Option<&'h syn::Type> {
    if roles.batch.is_some() {
        return None;
    }
    if let Some(item) = handler.params.iter().find_map(|p| match p.kind {
        ParamKind::Stream { .. } => super::parse::stream_item(&p.ty),
        _ => None,
    }) {
        return Some(item);
    }
    let ReturnType::Type(_, ty) = &handler.item.sig.output else {
        return None;
    };
    if names_impl_trait(ty) {
        return None;
    }
    if let syn::Type::Path(path) = &**ty
        && let Some(last) = path.path.segments.last()
        && last.ident == "Result"
        && let syn::PathArguments::AngleBracketed(args) = &last.arguments
        && let Some(syn::GenericArgument::Type(ok)) = args.args.first()
    {
        return Some(ok);
    }
    match &**ty {
        syn::Type::Tuple(unit) if unit.elems.is_empty() => None,
        ty => Some(ty),
    }
}

/// `|| Option<Value>`: `T`'s JSON Schema when it derives `JsonSchema` (for the message about a
/// missing field), computed only when called.
fn schema_fn(ty: &syn::Type, private: &TokenStream) -> TokenStream {
    quote! {
        || {
            #[allow(unused_imports)]
            use #private::schema_levels::{
                NoSchema as _, SchemaOfOk as _, SchemaOfOkItems as _, SchemaOfType as _,
            };
            (&&&&#private::SchemaOf::<#ty>::new()).__worker_schema()
        }
    }
}

/// `fn(&T, &Value) -> Result<(), Failure>`: garde's check when `T` derives `garde::Validate`,
/// a no-op otherwise (see `worker::__private::check_levels`).
fn check_of(ty: &syn::Type, private: &TokenStream) -> TokenStream {
    quote! {{
        #[allow(unused_imports)]
        use #private::check_levels::{GardeChecks as _, NoChecks as _};
        (&&#private::check_levels::ChecksOf::<#ty>::new()).__worker_check()
    }}
}

/// Whether a type mentions `impl Trait` anywhere (it cannot be named in a turbofish).
fn names_impl_trait(ty: &syn::Type) -> bool {
    fn any_impl(tokens: TokenStream) -> bool {
        tokens.into_iter().any(|t| match t {
            proc_macro2::TokenTree::Ident(i) => i == "impl",
            proc_macro2::TokenTree::Group(g) => any_impl(g.stream()),
            _ => false,
        })
    }
    any_impl(quote!(#ty))
}

/// What is emitted beside the unchanged item when there are errors: a stub of the entry point,
/// so the crate does not also fail with "`main` function not found".
pub(crate) fn fallback(options: &Options, name: Option<&Ident>, method: bool) -> TokenStream {
    let krate = &options.krate;
    // The module's `#[worker::init]` still finds its handler (not from an `impl` block, where
    // a `use` is itself an error).
    let fallback_imports = if method {
        quote!()
    } else {
        quote! {
            #[allow(unused_imports)]
            use #krate::__private::fallback::*;
        }
    };
    // Beside the user's own `fn main` a generated one would only add "defined multiple times".
    let main = options.main && !crate::compiled_crate::root_has_own_main();
    let entry = if main { "main" } else { "worker_main" };
    if name.is_some_and(|n| n == entry) {
        return fallback_imports;
    }
    let entry = Ident::new(entry, Span::call_site());
    quote! {
        #fallback_imports

        #[allow(dead_code)]
        fn #entry() -> ::std::process::ExitCode {
            ::std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse, validate};
    use super::*;
    use crate::errors::Errors;

    fn expand_str(attr: TokenStream, item: TokenStream) -> String {
        let mut errors = Errors::default();
        let options = parse::options(attr, &mut errors);
        let handler = parse::handler(item).unwrap();
        let roles = validate::validate(&handler, &options, &mut errors).unwrap();
        expand(&handler, &roles, &options).to_string()
    }

    #[test]
    fn async_handler_with_state_and_context() {
        let out = expand_str(
            quote!(concurrency = 4),
            quote!(
                async fn generate(job: &Job, input: Prompt, model: &Model) -> R {
                    x
                }
            ),
        );
        let has = |s: TokenStream| {
            let s = s.to_string();
            assert!(out.contains(&s), "missing `{s}` in\n{out}");
        };
        has(quote!(
            async fn generate(job: &Job, input: Prompt, model: &Model) -> R {
                x
            }
        ));
        has(quote!(
            use ::worker::__private::fallback::*;
        ));
        has(quote!(fn main() -> ::std::process::ExitCode));
        assert!(
            out.contains("struct generate { state : & 'static Model }"),
            "{out}"
        );
        has(quote!(
            ::worker::__private::Settings::new("generate").concurrency(4)
        ));
        has(quote!(::worker::__private::input_deserializes::<Prompt>();));
        has(
            quote!(::worker::__private::state_matches_the_init::<one_worker_init_per_module, Model>();),
        );
        assert!(
            out.contains(":: worker :: __private :: Invocation :: new (async move {"),
            "{out}"
        );
        has(quote!(
            ::worker::__private::future_is_send(generate(
                &__worker_job,
                __worker_input,
                __worker_state
            ))
            .await
        ));
        has(quote!(::worker::__private::output({ __worker_output })));
        has(quote!(
            ::worker::__private::main::<one_worker_init_per_module, _>
        ));
    }

    #[test]
    fn sync_handler_options() {
        let out = expand_str(
            quote!(main = false, test_input = "t.json", crate = "w"),
            quote!(
                pub fn run(input: I, job: w::Job) {}
            ),
        );
        assert!(out.contains("pub fn worker_main ()"), "{out}");
        assert!(
            out.contains("w :: __private :: Invocation :: blocking (move ||"),
            "{out}"
        );
        assert!(out.contains("run (__worker_input , __worker_job)"), "{out}");
        assert!(
            out.contains(". test_input (\"t.json\" , :: core :: include_str !"),
            "{out}"
        );
        assert!(!out.contains("current_thread"), "{out}");
        assert!(!out.contains("state_matches_the_init"), "{out}");
        assert!(!out.contains("::worker"), "{out}");
    }

    #[test]
    fn current_thread_flavor() {
        let out = expand_str(
            quote!(flavor = "current_thread", concurrency = 2),
            quote!(
                async fn run(input: I) {}
            ),
        );
        assert!(
            out.contains("Settings :: new (\"run\") . concurrency (2) . current_thread ()"),
            "{out}"
        );
        let out = expand_str(
            quote!(flavor = "multi_thread"),
            quote!(
                async fn run(input: I) {}
            ),
        );
        assert!(!out.contains("current_thread"), "{out}");
    }
}
