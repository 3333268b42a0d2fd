//! Parts of a function signature both macros look at the same way.

use syn::{Signature, Type};

use crate::errors::Errors;

/// Strip the invisible groups and parentheses a type may be wrapped in (e.g. from `$t:ty`).
pub(crate) fn strip(ty: &Type) -> &Type {
    match ty {
        Type::Group(g) => strip(&g.elem),
        Type::Paren(p) => strip(&p.elem),
        _ => ty,
    }
}

/// Report what neither macro accepts: a `self` receiver, generics, `unsafe`, an ABI, variadics.
/// `what` names the function for messages ("a handler", "an init function").
pub(crate) fn check_common(sig: &Signature, what: &str, attr: &str, errors: &mut Errors) {
    if let Some(receiver) = sig.receiver() {
        errors.push(syn::Error::new(
            receiver.self_token.span,
            format!(
                "{what} is a free function, not a method: move `{attr}` to a function outside \
                 the `impl` block (it can call this method)"
            ),
        ));
    }
    if !sig.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            format!(
                "{what} cannot be generic: the worker calls it with concrete types; remove the \
                 generic parameters and name the types (use `&'static T` for a borrowed state)"
            ),
        ));
    } else if let Some(where_clause) = &sig.generics.where_clause {
        errors.push(syn::Error::new(
            where_clause.where_token.span,
            format!("{what} cannot be generic; remove the `where` clause"),
        ));
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.push(syn::Error::new(
            unsafety.span,
            format!(
                "{what} cannot be `unsafe fn`; remove `unsafe` and use an `unsafe` block inside"
            ),
        ));
    }
    if let Some(abi) = &sig.abi {
        errors.push(syn::Error::new_spanned(
            abi,
            format!(
                "{what} cannot have an ABI; remove `{}`",
                quote::quote!(#abi)
            ),
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(syn::Error::new_spanned(
            variadic,
            format!("{what} cannot be variadic; remove `...`"),
        ));
    }
}

/// Whether a type mentions `impl Trait` at its top level (cannot be named in generated code).
/// An attribute that makes the function an async entry point of its own (`#[tokio::main]`,
/// `#[tokio::test]`, async-std's, actix's), stacked under ours: the worker starts the runtime.
pub(crate) fn check_attrs(attrs: &[syn::Attribute], what: &str, attr: &str, errors: &mut Errors) {
    for a in attrs {
        let segments: Vec<String> = a
            .path()
            .segments
            .iter()
            .map(|s| s.ident.to_string())
            .collect();
        let runtime = ["tokio", "async_std", "actix_web", "actix_rt", "smol_potat"];
        if let [first, .., last] = segments.as_slice()
            && runtime.contains(&first.as_str())
            && (last == "main" || last == "test")
        {
            let written = segments.join("::");
            errors.push(syn::Error::new_spanned(
                a,
                format!(
                    "remove `#[{written}]`: {what} is not an entry point; `{attr}` generates the \
                     `main` and starts the async runtime itself (`flavor = \"current_thread\"` \
                     on `#[worker::handler]` picks a single-threaded one)"
                ),
            ));
        }
    }
}

/// `impl Future<…>` (or `impl IntoFuture<…>`) as a return type.
pub(crate) fn is_impl_future(ty: &Type) -> bool {
    match strip(ty) {
        Type::ImplTrait(t) => t.bounds.iter().any(|b| {
            matches!(b, syn::TypeParamBound::Trait(t)
                if t.path.segments.last().is_some_and(|s| s.ident == "Future" || s.ident == "IntoFuture"))
        }),
        _ => false,
    }
}

pub(crate) fn is_impl_trait(ty: &Type) -> bool {
    match strip(ty) {
        Type::ImplTrait(_) => true,
        Type::Reference(r) => is_impl_trait(&r.elem),
        _ => false,
    }
}

/// Parse the annotated item as a function, or say what the attribute goes on.
pub(crate) fn parse_fn(
    item: proc_macro2::TokenStream,
    attr: &str,
    example: &str,
) -> syn::Result<syn::ItemFn> {
    match syn::parse2::<syn::Item>(item)? {
        syn::Item::Fn(f) => Ok(f),
        other => Err(syn::Error::new_spanned(
            item_head(&other),
            format!("`{attr}` goes on a function, e.g. `{example}`"),
        )),
    }
}

/// The start of an item (up to its name), to underline rather than the whole item.
fn item_head(item: &syn::Item) -> proc_macro2::TokenStream {
    use quote::ToTokens;
    let mut out = proc_macro2::TokenStream::new();
    macro_rules! head {
        ($i:expr, $($t:tt)*) => {{ let i = $i; $( i.$t.to_tokens(&mut out); )* }};
    }
    match item {
        syn::Item::Struct(i) => head!(i, vis struct_token ident),
        syn::Item::Enum(i) => head!(i, vis enum_token ident),
        syn::Item::Union(i) => head!(i, vis union_token ident),
        syn::Item::Const(i) => head!(i, vis const_token ident),
        syn::Item::Static(i) => head!(i, vis static_token ident),
        syn::Item::Mod(i) => head!(i, vis mod_token ident),
        syn::Item::Trait(i) => head!(i, vis trait_token ident),
        syn::Item::Type(i) => head!(i, vis type_token ident),
        syn::Item::Impl(i) => head!(i, impl_token self_ty),
        syn::Item::Use(i) => head!(i, vis use_token),
        other => other.to_tokens(&mut out),
    }
    out
}
