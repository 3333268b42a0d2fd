//! `#[worker::handler]`: the generated code. The only place that writes tokens for it.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, LitInt, LitStr, ReturnType};

use super::parse::{Handler, Options, ParamKind};
use super::validate::Roles;
use crate::codegen::{at, kind_imports};

/// The user's function unchanged, the glob import of the init fallback, and the entry point.
pub(crate) fn expand(handler: &Handler, roles: &Roles<'_>, options: &Options) -> TokenStream {
    let krate = &options.krate;
    let private = quote!(#krate::__private);
    let item = &handler.item;
    let sig = &item.sig;
    let name = &sig.ident;
    let name_str = syn::ext::IdentExt::unraw(name).to_string();
    let init = Ident::new("__WorkerInit", Span::call_site());

    // Settings::new("name").concurrency(n).test_input(path, contents)
    let mut settings = quote!(#private::Settings::new(#name_str));
    if let Some((n, span)) = options.concurrency {
        let n = LitInt::new(&n.to_string(), span);
        settings = quote!(#settings.concurrency(#n));
    }
    if let Some((path, span)) = &options.test_input {
        let path = LitStr::new(path, *span);
        settings = quote_spanned! {at(*span)=>
            #settings.test_input(
                #path,
                ::core::include_str!(::core::concat!(::core::env!("CARGO_MANIFEST_DIR"), "/", #path)),
            )
        };
    }

    // Checks spanned on the user's types, so a failure underlines them.
    let input_ty = &roles.input.ty;
    let input_check = quote_spanned! {at(input_ty.span())=>
        #private::assert_input::<#input_ty>();
    };
    let deserialize = quote_spanned! {at(input_ty.span())=>
        #private::deserialize_input::<#input_ty>(&__worker_job)
    };
    let (state_field, state_check, make_handler, take_state) = match roles.state {
        Some(elem) => {
            let check = quote_spanned! {at(elem.span())=>
                #private::assert_state::<#init, #elem>();
            };
            (
                quote!({ state: &'static #elem }),
                check,
                quote! {
                    |__worker_state| ::core::result::Result::Ok(__WorkerHandler {
                        state: #private::state::<#elem>(__worker_state)?,
                    })
                },
                quote!(let __worker_state = self.state;),
            )
        }
        None => (
            quote!(;),
            quote!(),
            quote!(|_| ::core::result::Result::Ok(__WorkerHandler)),
            quote!(),
        ),
    };

    // The call, with arguments in the user's order.
    let args = handler.params.iter().map(|p| match p.kind {
        ParamKind::Input => quote!(__worker_input),
        ParamKind::State { .. } => quote!(__worker_state),
        ParamKind::Context { by_ref: true, .. } => quote!(&__worker_job),
        ParamKind::Context { by_ref: false, .. } => quote!(__worker_job),
    });
    let call = quote!(#name(#(#args),*));

    // What the return value becomes; the output's `Serialize` bound is checked on the return
    // type.
    let ret_span = match &sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => name.span(),
    };
    let output = quote_spanned!(at(ret_span)=> #private::output(__worker_output));
    let failure = quote_spanned! {at(ret_span)=>
        (&&&&#private::ErrorWrap(&__worker_error)).__worker_error()
    };
    let outcome = quote! {
        match (&__worker_ret).__worker_kind().split(__worker_ret) {
            ::core::result::Result::Ok(__worker_output) => #output,
            ::core::result::Result::Err(__worker_error) => #private::Outcome::failed(#failure),
        }
    };
    let invocation = if sig.asyncness.is_some() {
        let call = quote_spanned!(at(name.span())=> #private::assert_send(#call));
        quote! {
            #private::Invocation::new(async move {
                let __worker_ret = #call.await;
                #outcome
            })
        }
    } else {
        quote! {
            #private::Invocation::blocking(move || {
                let __worker_ret = #call;
                #outcome
            })
        }
    };

    let kinds = kind_imports(&private);
    let (entry, vis) = if options.main {
        (Ident::new("main", Span::call_site()), quote!())
    } else {
        let vis = &item.vis;
        (Ident::new("worker_main", Span::call_site()), quote!(#vis))
    };

    quote! {
        #item

        #[allow(unused_imports)]
        use #private::fallback::*;

        #vis fn #entry() -> ::std::process::ExitCode {
            #[allow(non_camel_case_types)]
            struct __WorkerHandler #state_field

            impl #private::Handler for __WorkerHandler {
                fn call(&self, __worker_job: #private::Job) -> #private::Invocation {
                    #kinds
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

            #input_check
            #state_check
            #private::main(
                #settings,
                <#init as #private::InitProvider>::init,
                #make_handler,
            )
        }
    }
}

/// What is emitted beside the unchanged item when there are errors: a stub of the entry point,
/// so the crate does not also fail with "`main` function not found".
pub(crate) fn fallback(options: &Options, name: Option<&Ident>) -> TokenStream {
    let entry = if options.main { "main" } else { "worker_main" };
    if name.is_some_and(|n| n == entry) {
        return quote!();
    }
    let entry = Ident::new(entry, Span::call_site());
    quote! {
        #[allow(dead_code)]
        fn #entry() -> ::std::process::ExitCode {
            ::std::process::ExitCode::FAILURE
        }
    }
}
