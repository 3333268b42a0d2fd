//! `#[worker::init]`: the generated code.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::{Ident, ReturnType};

use super::parse::{Init, Options};
use crate::codegen::{
    INIT_ALIAS, call_at, failure_of, hygienic_locals, kind_imports, parens_at, value_span,
};

/// The user's function unchanged, then its provider, which the module's handler finds by the
/// name [`INIT_ALIAS`].
pub(crate) fn expand(init: &Init, options: &Options) -> TokenStream {
    let krate = &options.krate;
    let private = quote!(#krate::__private);
    let item = &init.item;
    let sig = &item.sig;
    let name = &sig.ident;
    let name_str = syn::ext::IdentExt::unraw(name).to_string();
    // The provider is a type with the function's own name (an empty enum: the type namespace
    // only, so it does not hide the function), found by handlers through the fixed alias. Notes
    // then read "required for `load` to implement …", and two `#[worker::init]`s in a module
    // clash only on the alias (one error, on both attributes, in words), not on their impls.
    let mut provider = name.clone();
    provider.set_span(Span::call_site());
    let alias = Ident::new(INIT_ALIAS, Span::call_site());
    let (ret, ret_span) = match &sig.output {
        ReturnType::Type(_, ty) => (quote!(#ty), value_span(ty)),
        ReturnType::Default => (quote!(()), name.span()),
    };
    // Located at the return type: a handler whose state differs is told "required for
    // `load` to implement `ProvidesState<…>`" there.
    let provides = quote_spanned! {ret_span=>
        impl<__S> #private::ProvidesState<__S> for #provider where #ret: #private::InitReturn<__S> {}
    };

    let state_is_send_and_sync = call_at(
        &private,
        "state_is_send_and_sync",
        quote!(__worker_state),
        ret_span,
    );
    let failure = failure_of(&private, quote!(__worker_error), ret_span);
    let kinds = kind_imports(&private);
    let convert = quote! {
        #kinds
        match (&__worker_ret).__worker_kind().split(__worker_ret) {
            ::core::result::Result::Ok(__worker_state) => ::core::result::Result::Ok(#state_is_send_and_sync),
            ::core::result::Result::Err(__worker_error) => ::core::result::Result::Err(#failure),
        }
    };
    let timeout = match options.timeout_micros {
        Some(micros) => {
            let micros = proc_macro2::Literal::u64_unsuffixed(micros);
            quote!(const TIMEOUT_MICROS: u64 = #micros;)
        }
        None => quote!(),
    };
    let call = {
        let no_args = parens_at(quote!(), name.span());
        quote!(#name #no_args)
    };
    let run = hygienic_locals(if sig.asyncness.is_some() {
        let future_is_send = quote_spanned!(name.span()=> future_is_send);
        let future = parens_at(call, name.span());
        quote! {
            #private::init_async(async move {
                let __worker_ret = #private::#future_is_send #future.await;
                #convert
            })
        }
    } else {
        quote! {
            #private::init_blocking(move || {
                let __worker_ret = #call;
                #convert
            })
        }
    });

    // An init is only ever run by the module's handler: without one it would compile and do
    // nothing. The handler's glob import brings this name; without it the error is at `load`.
    let needs_handler = quote_spanned!(name.span()=> worker_init_needs_a_handler_in_this_module);

    quote! {
        #item

        #[doc(hidden)]
        const _: ::core::marker::PhantomData<#needs_handler> = ::core::marker::PhantomData;

        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        enum #provider {}

        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        type #alias = #provider;

        #provides

        impl #private::InitProvider for #provider {
            const NAME: &'static str = #name_str;
            #timeout
            // The value checks wrap user-located expressions in `{ … }`.
            #[allow(unused_braces)]
            fn init() -> #private::InitFuture {
                #run
            }
        }
    }
}

/// Emitted beside the unchanged item when there are errors: a provider that provides any
/// state, so the module's handler reports nothing more.
pub(crate) fn fallback(options: &Options) -> TokenStream {
    let krate = &options.krate;
    let private = quote!(#krate::__private);
    let alias = Ident::new(INIT_ALIAS, Span::call_site());
    quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        enum #alias {}
        impl<__S> #private::ProvidesState<__S> for #alias {}
        impl #private::InitProvider for #alias {
            const NAME: &'static str = "";
            fn init() -> #private::InitFuture {
                <#private::NoInitFunction as #private::InitProvider>::init()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;
    use crate::errors::Errors;

    fn expand_str(attr: TokenStream, item: TokenStream) -> String {
        let mut errors = Errors::default();
        let options = parse::options(attr, &mut errors);
        assert!(errors.is_empty());
        expand(&parse::init(item).unwrap(), &options).to_string()
    }

    #[test]
    fn async_init() {
        let out = expand_str(
            quote!(),
            quote!(
                async fn load() -> anyhow::Result<Model> {
                    x
                }
            ),
        );
        let has = |s: TokenStream| {
            let s = s.to_string();
            assert!(out.contains(&s), "missing `{s}` in\n{out}");
        };
        has(quote!(
            async fn load() -> anyhow::Result<Model> {
                x
            }
        ));
        has(quote!(
            enum load {}
        ));
        has(quote!(
            type one_worker_init_per_module = load;
        ));
        has(quote!(
            impl<__S> ::worker::__private::ProvidesState<__S> for load where
                anyhow::Result<Model>: ::worker::__private::InitReturn<__S>
            {
            }
        ));
        has(quote!(
            const NAME: &'static str = "load";
        ));
        assert!(
            out.contains(":: worker :: __private :: init_async (async move {"),
            "{out}"
        );
        has(quote!(::worker::__private::future_is_send(load()).await));
        has(quote!(::worker::__private::state_is_send_and_sync({
            __worker_state
        })));
    }

    #[test]
    fn sync_init_without_return_type() {
        let out = expand_str(
            quote!(crate = "w"),
            quote!(
                fn setup() {}
            ),
        );
        assert!(
            out.contains("w :: __private :: init_blocking (move ||"),
            "{out}"
        );
        assert!(
            out.contains("where () : w :: __private :: InitReturn < __S >"),
            "{out}"
        );
    }
}
