//! `#[worker::init]`: the signature rules.

use syn::FnArg;

use super::parse::Init;
use crate::errors::Errors;
use crate::signature::{check_attrs, check_common, is_impl_future, is_impl_trait};

pub(crate) fn validate(init: &Init, errors: &mut Errors) {
    let sig = &init.item.sig;
    check_common(sig, "an init function", "#[worker::init]", errors);
    check_attrs(
        &init.item.attrs,
        "an init function",
        "#[worker::init]",
        errors,
    );
    let typed: Vec<_> = sig
        .inputs
        .iter()
        .filter(|arg| matches!(arg, FnArg::Typed(_)))
        .collect();
    if let (Some(first), Some(last)) = (typed.first(), typed.last()) {
        errors.push(syn::Error::new_spanned(
            quote::quote!(#first #last),
            "an init function takes no parameters: it runs once, before the first job, with \
             nothing to pass it; read settings from the environment inside it instead",
        ));
    }
    if let syn::ReturnType::Type(_, ty) = &sig.output
        && sig.asyncness.is_none()
        && is_impl_future(ty)
    {
        errors.push(syn::Error::new_spanned(
            ty,
            "write the init function as `async fn load() -> T` (or `-> Result<T, E>`) instead of \
             returning `impl Future`: the worker awaits it, and the handler's `&T` state is \
             checked against the `T` it names",
        ));
    } else if let syn::ReturnType::Type(_, ty) = &sig.output
        && is_impl_trait(ty)
    {
        errors.push(syn::Error::new_spanned(
            ty,
            "an init function must name its return type (the handler's `&T` state is \
             checked against it); replace `impl Trait` with the concrete type",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::parse;
    use proc_macro2::TokenStream;
    use quote::quote;

    fn errors(item: TokenStream) -> Vec<String> {
        let mut errors = Errors::default();
        validate(&parse::init(item).unwrap(), &mut errors);
        errors.messages()
    }

    #[test]
    fn rules() {
        assert!(
            errors(quote!(
                async fn load() -> anyhow::Result<Model> {
                    todo!()
                }
            ))
            .is_empty()
        );
        assert!(
            errors(quote!(
                fn load() -> Model {
                    Model
                }
            ))
            .is_empty()
        );
        let e = errors(quote!(
            async fn load<T>(a: u32, b: u32) -> impl Sized {}
        ));
        assert_eq!(e.len(), 3, "{e:#?}");
        assert!(e[0].starts_with("an init function cannot be generic"));
        assert!(e[1].starts_with("an init function takes no parameters"));
        assert!(e[2].starts_with("an init function must name its return type"));
    }
}
