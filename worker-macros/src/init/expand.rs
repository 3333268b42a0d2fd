//! `#[worker::init]`: the generated code.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, ReturnType};

use super::parse::{Init, Options};
use crate::codegen::{at, kind_imports};

/// The user's function unchanged, then `__WorkerInit`, which the module's handler finds by name.
pub(crate) fn expand(init: &Init, options: &Options) -> TokenStream {
    let krate = &options.krate;
    let private = quote!(#krate::__private);
    let item = &init.item;
    let sig = &item.sig;
    let name = &sig.ident;
    let name_str = syn::ext::IdentExt::unraw(name).to_string();
    // Spanned on the attribute: two `#[worker::init]`s in a module underline both attributes.
    let provider = Ident::new("__WorkerInit", Span::call_site());
    let (ret, ret_span) = match &sig.output {
        ReturnType::Type(_, ty) => (quote!(#ty), ty.span()),
        ReturnType::Default => (quote!(()), name.span()),
    };
    let provides = quote_spanned! {at(ret_span)=>
        impl<__S> #private::ProvidesState<__S> for #provider where #ret: #private::InitReturn<__S> {}
    };

    let state_box = quote_spanned!(at(ret_span)=> #private::state_box(__worker_state));
    let failure = quote_spanned! {at(ret_span)=>
        (&&&&#private::ErrorWrap(&__worker_error)).__worker_error()
    };
    let kinds = kind_imports(&private);
    let convert = quote! {
        #kinds
        match (&__worker_ret).__worker_kind().split(__worker_ret) {
            ::core::result::Result::Ok(__worker_state) => ::core::result::Result::Ok(#state_box),
            ::core::result::Result::Err(__worker_error) => ::core::result::Result::Err(#failure),
        }
    };
    let run = if sig.asyncness.is_some() {
        let call = quote_spanned!(at(name.span())=> #private::assert_send(#name()));
        quote! {
            #private::init_async(async move {
                let __worker_ret = #call.await;
                #convert
            })
        }
    } else {
        quote! {
            #private::init_blocking(move || {
                let __worker_ret = #name();
                #convert
            })
        }
    };

    quote! {
        #item

        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        struct #provider;

        #provides

        impl #private::InitProvider for #provider {
            const NAME: &'static str = #name_str;
            fn init() -> #private::InitFuture {
                #run
            }
        }
    }
}

/// Emitted beside the unchanged item when there are errors: a `__WorkerInit` that provides any
/// state, so the module's handler reports nothing more.
pub(crate) fn fallback(options: &Options) -> TokenStream {
    let krate = &options.krate;
    let private = quote!(#krate::__private);
    quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        struct __WorkerInit;
        impl<__S> #private::ProvidesState<__S> for __WorkerInit {}
        impl #private::InitProvider for __WorkerInit {
            const NAME: &'static str = "";
            fn init() -> #private::InitFuture {
                <#private::NoInitFunction as #private::InitProvider>::init()
            }
        }
    }
}
